//! The cloud directory: the tenant that the agent syncs into and that users sign in to.
//!
//! Invariant: SCIM semantics live in `idbridge-scim` (pure), tenant rules in [`directory`],
//! persistence in [`store`], and HTTP only in [`http`]; no secret (password, hash, verifier,
//! token) is ever logged, audited, or returned except a password generated for the caller.

pub mod config;
pub mod directory;
pub mod error;
pub mod http;
pub mod hub;
pub mod secrets;
pub mod settings;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use idbridge_core::Clock;

pub use config::CloudConfig;
pub use directory::{Directory, Principal, Scope};
pub use http::RunningServer;
pub use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} (is another process using the port?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Opens the store and the directory a configuration describes.
pub async fn open_directory(
    config: CloudConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<Directory>, ServeError> {
    std::fs::create_dir_all(&config.storage.data_dir).map_err(ServeError::Io)?;
    let store = Store::open(&config.database_url()).await?;
    Ok(Arc::new(
        Directory::new(store, clock, Arc::new(config)).await?,
    ))
}

/// Opens everything and starts serving HTTPS; also purges expired soft-deleted objects hourly.
pub async fn start(
    mut config: CloudConfig,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer, ServeError> {
    let listen = config.server.listen;
    let listener = std::net::TcpListener::bind(listen).map_err(|source| ServeError::Bind {
        addr: listen,
        source,
    })?;
    // With port 0 the system picks one; the URLs the server hands out must name it.
    config.server.listen = listener.local_addr().map_err(ServeError::Io)?;
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
        hosts.push(listen.ip().to_string());
    }
    let tls = http::ensure_certificate(&config.storage.data_dir, &hosts)?;
    let directory = open_directory(config, clock).await?;
    let sweeper = directory.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            match sweeper.purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "purged soft-deleted objects past retention"),
                Err(e) => tracing::warn!(error = %e, "retention purge failed"),
            }
        }
    });
    http::start(directory, listener, &tls).await
}
