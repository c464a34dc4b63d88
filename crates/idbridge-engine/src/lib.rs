//! The sync engine core.
//!
//! Invariant: pure. The engine decides (what is in scope, what joins to what, what to export);
//! callers load state, ask, and persist the answer in one transaction.

pub mod scope;
