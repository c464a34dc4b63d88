//! The on-premises agent. Today: password hash sync (MS-DRSR -> salted verifier -> cloud).
//! The sync engine's LDAP and SCIM edges join it as they land.
//!
//! Invariant: the agent only makes outbound connections (to the DC and to the cloud over
//! HTTPS); decisions are pure functions ([`phs::plan`]); secrets are never logged or stored.

pub mod cloud;
pub mod config;
pub mod crash_point;
pub mod phs;
pub mod state;
pub mod sync;
pub mod writeback;

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

/// `GET /status` on the configured address: the last cycle of each part of the agent, as JSON.
/// It reads the state files, so it shows what a restart would resume from.
pub async fn serve_status(
    listen: std::net::SocketAddr,
    data_dir: PathBuf,
) -> Result<(), std::io::Error> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let app = axum::Router::new().route(
        "/status",
        axum::routing::get(move || {
            let data_dir = data_dir.clone();
            async move {
                let phs: state::StateFile<phs::PhsState> =
                    state::StateFile::new(&data_dir, "phs.json");
                let phs = match phs.load() {
                    Ok(s) => {
                        serde_json::json!({"last": s.last, "last_targeted": s.last_targeted,
                                           "has_watermark": s.watermark.is_some()})
                    }
                    Err(e) => serde_json::json!({"error": e.to_string()}),
                };
                let channel: state::StateFile<writeback::ChannelStatus> =
                    state::StateFile::new(&data_dir, writeback::CHANNEL_STATUS_FILE);
                let channel = match channel.load() {
                    Ok(c) => serde_json::json!(c),
                    Err(e) => serde_json::json!({"error": e.to_string()}),
                };
                let body = serde_json::json!({"phs": phs, "channel": channel});
                axum::Json(body)
            }
        }),
    );
    axum::serve(listener, app).await
}
