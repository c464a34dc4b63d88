//! Password hash sync core: replicate the NT hashes of a domain from a DC over MS-DRSR.
//!
//! [`DrsClient`] binds to DRSUAPI over `ncacn_ip_tcp` with Kerberos or NTLMv2 ([`RpcAuth`]) at
//! packet privacy, calls `IDL_DRSBind`, then pages through `IDL_DRSGetNCChanges` (request V8,
//! reply V6) over the domain naming context with a partial attribute set limited to what hash
//! sync needs. Each page yields [`ReplicatedAccount`]s and a [`Watermark`] (USN high-water mark
//! and up-to-dateness vector) to persist and pass back for the next delta.
//! [`DrsClient::replicate_object`] reads the same attributes of one object by objectGUID
//! (`EXOP_REPL_OBJ`), without touching any watermark.
//!
//! Invariant: everything but [`client`] and the KDC round trip in [`kerberos`] is pure (bytes
//! in, values out) and never panics on hostile input; an NT hash exists only inside [`NtHash`],
//! and no secret, key or password is ever formatted.

pub mod client;
pub mod crypto;
mod error;
pub mod idl;
pub mod kerberos;
mod ntlm;
pub mod prefix;
pub mod replicate;

pub use client::{AuthMechanism, AuthOptions, Credentials, DrsClient, Replication, RpcAuth};
pub use error::{win32, DrsError};
pub use idbridge_phs::NtHash;
pub use replicate::{ObjectSecrets, ReplicatedAccount, SecretsPage, UpToDateCursor, Watermark};
