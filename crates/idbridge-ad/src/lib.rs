//! The Active Directory LDAP connector: full imports (paged search, ranged attributes completed)
//! and delta imports (DirSync), over LDAPS or StartTLS, bound with a simple bind.
//!
//! Invariant: this is an edge crate (it does I/O), but what it hands out is typed and complete:
//! every [`AdEntry`] has its objectGUID, a parsed DN and every value of every requested
//! attribute; an object that cannot be converted becomes an [`AdEntryError`] naming it and never
//! aborts an import. Connection, bind and search failures are [`AdError`]s carrying the LDAP
//! result code and the DC's message, never the password.
//!
//! The BER of the controls used (paged results, DirSync; show-deleted has no value) is in
//! [`ber`], pure and tested.
//!
//! What the lab's Samba 4.17 DC does (checked by `tests/live.rs`):
//! - DirSync accepts flags 0, `OBJECT_SECURITY` (1), `ANCESTORS_FIRST_ORDER` and
//!   `INCREMENTAL_VALUES | OBJECT_SECURITY` alike, for the domain admin and for the
//!   least-privilege sync account. idbridge sends [`DIRSYNC_FLAGS`] = `OBJECT_SECURITY`, so a
//!   changed attribute comes back with all its values. A delta carries only the changed
//!   attributes plus `objectGUID`, `instanceType` (and `parentGUID` when the name changed):
//!   [`AdConnector::dirsync`] reads `objectClass` by GUID for entries without it, so
//!   [`AdEntry::class`] is always set for live objects.
//! - Deleted objects come back with `isDeleted: TRUE` and their tombstone DN
//!   (`CN=<name>\0ADEL:<guid>,CN=Deleted Objects,<NC>`, which [`Dn::parse`](idbridge_core::Dn::parse)
//!   accepts) **only to an account that may read `CN=Deleted Objects`**: the lab's sync account
//!   (replication rights only) sees adds, modifications and renames but no deletions, with any
//!   flags. Deletions then have to be found by a full import (or the account needs
//!   list/read rights on the Deleted Objects container). Should Samba report a deletion as an
//!   entry with an empty DN and only its objectGUID (its code does so for tombstones the caller
//!   may not read), the entry is marked deleted with the DN `CN=Deleted Objects,<NC>`.
//! - `uSNChanged` is indexed for equality only: DirSync's `uSNChanged>=N` scans the naming
//!   context, while [`AdConnector::changed_in`]'s `or` of equality terms is an index lookup.
//!   With the show-deleted control a deleted object comes back as its tombstone, to the sync
//!   account too.
//! - Samba has no `MaxValRange`: a plain `member` read returns every value at once. It honours
//!   explicit `member;range=a-b` requests like AD, which is how the completion of ranged
//!   values (needed against Windows DCs, which range at 1500) is exercised live.

pub mod ber;
mod connector;
mod entry;
mod password;

pub use connector::{
    tls_config, AdConnector, AdError, AdSettings, DirSyncBatch, Page, PagedSearch, DIRSYNC_FLAGS,
    PAGE_SIZE,
};
pub use entry::{
    base_attr_name, is_binary_attr, is_dn_attr, object_class, parse_range, strip_extended_dn,
    AdEntry, AdEntryError, RangedAttr,
};
