//! A SCIM 2.0 client for the agent's export to the cloud: ours, or any compliant third-party server.
//!
//! Invariant: a request that may have reached the server is never blindly repeated. Only requests
//! the server refused to process (429, 503) or that never left this machine are retried; the
//! caller confirms anything else through the target (e.g. a search by `externalId`) before trying
//! again, so a crash or timeout cannot create duplicates.

mod client;
mod filter;
mod patch;

pub use client::{
    BulkLimits, BulkOperation, BulkResult, Capabilities, RetryPolicy, ScimClient, ScimClientConfig,
    ScimClientError, SearchPage, Write, REQUESTS_IN_FLIGHT,
};
pub use filter::{eq_filter, or_filters, MAX_FILTER_BYTES, MAX_TERMS};
pub use patch::{minimal_patch, PatchOp};
