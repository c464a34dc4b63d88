//! The on-premises agent. Today: password hash sync (MS-DRSR -> salted verifier -> cloud).
//! The sync engine's LDAP and SCIM edges join it as they land.
//!
//! Invariant: the agent only makes outbound connections (to the DC and to the cloud over
//! HTTPS); decisions are pure functions ([`phs::plan`]); secrets are never logged or stored.

pub mod cloud;
pub mod config;
pub mod phs;
pub mod state;

use std::path::PathBuf;

pub use config::AgentConfig;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Drs(#[from] idbridge_drsuapi::DrsError),
    #[error("cloud: {0}")]
    Cloud(String),
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
}
