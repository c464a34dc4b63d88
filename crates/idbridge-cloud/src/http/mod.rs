//! The HTTPS edge: routes, authentication, body limits and response shapes. Handlers parse,
//! call [`Directory`], and serialize; they hold no rules of their own.

mod admin;
mod agents;
mod scim;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsAcceptor;
use serde_json::Value;

use crate::directory::{Directory, Principal, Scope};
use crate::error::ApiError;

pub use tls::{ensure_certificate, TlsFiles};

#[derive(Clone)]
pub(crate) struct AppState {
    pub directory: Arc<Directory>,
}

pub fn router(directory: Arc<Directory>) -> Router {
    let state = AppState { directory };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest("/scim/v2", scim::routes())
        .nest("/api/v1", admin::routes().merge(agents::routes()))
        .with_state(state)
}

/// A bound, running server.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub ca_cert_pem: String,
    directory: Arc<Directory>,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish (up to 10 s), and waits.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.directory.hub().close_all();
        self.handle
            .graceful_shutdown(Some(std::time::Duration::from_secs(10)));
        self.task.await.unwrap_or(Ok(()))
    }

    /// Waits until the server ends on its own or `signal` resolves.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> std::io::Result<()> {
        signal.await;
        self.shutdown().await
    }
}

/// Serves HTTPS on a bound listener with the data directory's certificate.
pub async fn start(
    directory: Arc<Directory>,
    listener: std::net::TcpListener,
    tls: &TlsFiles,
) -> Result<RunningServer, crate::ServeError> {
    listener
        .set_nonblocking(true)
        .map_err(crate::ServeError::Io)?;
    let addr = listener.local_addr().map_err(crate::ServeError::Io)?;
    let config = tls::rustls_config(tls)?;
    let handle = axum_server::Handle::new();
    // TCP_NODELAY, as axum's own `serve` sets it: without it, a response's last small segment
    // may wait for the client's delayed ACK of the one before (up to 40 ms on Linux).
    let acceptor = RustlsAcceptor::new(config).acceptor(NoDelayAcceptor::new());
    let server = axum_server::from_tcp(listener)
        .acceptor(acceptor)
        .handle(handle.clone());
    let app = router(directory.clone());
    let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    Ok(RunningServer {
        addr,
        ca_cert_pem: tls.cert_pem.clone(),
        directory,
        handle,
        task,
    })
}

/// Reads the whole body, up to the configured limit.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, usize> {
    axum::body::to_bytes(body, limit).await.map_err(|_| limit)
}

/// Parses a JSON body; the message says where it broke (serde gives line and column).
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    if bytes.is_empty() {
        return Err("the request has no body; a JSON object is expected".into());
    }
    serde_json::from_slice(bytes).map_err(|e| format!("the body is not valid JSON: {e}"))
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Why a request was not let in.
pub(crate) enum Denied {
    Unauthenticated,
    Forbidden(String),
    Failed(ApiError),
}

/// Authenticates the bearer token and checks it holds one of `allowed` scopes (an empty list
/// admits signed-in users instead).
pub(crate) async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    allowed: &[Scope],
) -> Result<Principal, Denied> {
    let token = bearer(headers).ok_or(Denied::Unauthenticated)?;
    let principal = state
        .directory
        .authenticate(token)
        .await
        .map_err(|e| Denied::Failed(e.into()))?
        .ok_or(Denied::Unauthenticated)?;
    let permitted = match principal.scope() {
        Some(scope) => allowed.contains(&scope),
        None => allowed.is_empty(),
    };
    if !permitted {
        let wanted: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
        return Err(Denied::Forbidden(if wanted.is_empty() {
            "this route is for signed-in users".into()
        } else {
            format!(
                "this route needs a token with scope {}",
                wanted.join(" or ")
            )
        }));
    }
    Ok(principal)
}

pub(crate) fn json_response(status: u16, content_type: &'static str, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        body.to_string(),
    )
        .into_response()
}
