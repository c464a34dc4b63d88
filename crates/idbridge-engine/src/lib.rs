//! The sync engine core.
//!
//! Invariant: pure. The engine decides (what is in scope, what joins to what, what to export);
//! callers load state, ask, and persist the answer in one transaction.

pub mod object;
pub mod project;
pub mod scope;

pub use object::{decode_values, encode_values, AdObject, Attributes, StoredAttributes};
pub use project::{
    managed_attributes, member_set, project, render, resolve_references, unresolved_references,
    CloudKind, Disposition, OutOfScope, Projection, Rendered, ScimDialect, SyncScope,
    UNRESOLVED_REFERENCE,
};
