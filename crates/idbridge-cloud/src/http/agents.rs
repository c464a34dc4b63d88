//! `/api/v1/agents`: registration, key rotation, status, and the channel itself (a WebSocket
//! the agent opens; the cloud never connects to the agent).

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use idbridge_channel::{
    decode_agent_frame, encode, AgentFrame, AgentPublicKey, CloudFrame, MAX_FRAME_BYTES,
};
use idbridge_core::Secret;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::admin::{admin, body_as, ok, ApiResult, Failure};
use super::{bearer, AppState};
use crate::error::ApiError;
use crate::hub::{HEALTHY_WITHIN, HEARTBEAT_INTERVAL};
use crate::store::AgentRecord;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/agents", get(status))
        .route("/agents/registrations", post(create_registration))
        .route("/agents/register", post(register))
        .route("/agents/self/key", put(rotate_key))
        .route("/agents/channel", get(channel))
}

async fn agent(state: &AppState, headers: &HeaderMap) -> Result<AgentRecord, ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    state
        .directory
        .authenticate_agent(token)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                401,
                "unauthorized",
                "an agent credential (from `idbridge agent register`) is required",
            )
        })
}

async fn status(State(state): State<AppState>, headers: HeaderMap) -> ApiResult {
    admin(&state, &headers).await?;
    ok(StatusCode::OK, &state.directory.agent_status().await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrationRequest {
    name: String,
}

async fn create_registration(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let principal = admin(&state, &headers).await?;
    let request: RegistrationRequest = body_as(&state, body).await?;
    let (token, expires_at) = state
        .directory
        .create_agent_registration(&principal.actor(), &request.name)
        .await?;
    ok(
        StatusCode::CREATED,
        &json!({"token": token.expose(), "expires_at": crate::directory::rfc3339(expires_at)}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    token: Secret,
    public_key: String,
}

async fn register(State(state): State<AppState>, body: Body) -> ApiResult {
    let request: RegisterRequest = body_as(&state, body).await?;
    let registered = state
        .directory
        .register_agent(&request.token, &request.public_key)
        .await?;
    ok(
        StatusCode::CREATED,
        &json!({"agent_id": registered.agent_id, "credential": registered.credential.expose()}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    public_key: String,
}

async fn rotate_key(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult {
    let agent = agent(&state, &headers).await?;
    let request: KeyRequest = body_as(&state, body).await?;
    state
        .directory
        .rotate_agent_key(&agent, &request.public_key)
        .await?;
    ok(
        StatusCode::OK,
        &json!({"agent_id": agent.id, "rotated": true}),
    )
}

async fn channel(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let agent = match agent(&state, &headers).await {
        Ok(agent) => agent,
        Err(e) => return Failure(e).into_response(),
    };
    let key: AgentPublicKey = match agent.public_key.parse() {
        Ok(key) => key,
        Err(e) => {
            return Failure(ApiError::new(
                500,
                "internal",
                format!("stored agent key: {e}"),
            ))
            .into_response()
        }
    };
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| serve(state, agent, key, socket))
}

/// One agent connection: frames out from the hub, answers and heartbeats in. Ends when either
/// side closes, a frame is malformed, or the agent is silent past the health limit.
async fn serve(state: AppState, agent: AgentRecord, key: AgentPublicKey, socket: WebSocket) {
    let hub = state.directory.hub();
    let (mut sink, mut stream) = socket.split();
    let (frames, mut outgoing) = mpsc::channel::<CloudFrame>(64);
    let acks = frames.clone();
    let connection = hub.attach(&agent.id, key, frames);
    tracing::info!(agent = %agent.name, connection, "agent connected");
    let welcome = CloudFrame::Welcome {
        agent_id: agent.id.clone(),
        heartbeat_interval_ms: u64::try_from(HEARTBEAT_INTERVAL.as_millis()).unwrap_or(10_000),
    };
    let writer = async {
        if sink
            .send(Message::Text(encode(&welcome).into()))
            .await
            .is_err()
        {
            return;
        }
        while let Some(frame) = outgoing.recv().await {
            if sink
                .send(Message::Text(encode(&frame).into()))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let reader = async {
        loop {
            let message = match tokio::time::timeout(HEALTHY_WITHIN, stream.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(_) => break,
                Err(_) => {
                    tracing::warn!(agent = %agent.name, connection, "agent silent: closing its channel");
                    break;
                }
            };
            hub.heard(connection);
            let text = match message {
                Message::Text(text) => text,
                Message::Close(_) => break,
                _ => continue,
            };
            match decode_agent_frame(text.as_str()) {
                Ok(AgentFrame::Response {
                    request_id,
                    outcome,
                }) => hub.answer(connection, &request_id, outcome),
                Ok(AgentFrame::Heartbeat { at_ms }) => {
                    // A full queue means requests are flowing: the agent hears us anyway.
                    let _ = acks.try_send(CloudFrame::HeartbeatAck { at_ms });
                }
                Ok(AgentFrame::Hello { version, .. }) => {
                    tracing::info!(agent = %agent.name, connection, %version, "agent hello");
                }
                Err(e) => {
                    tracing::warn!(agent = %agent.name, connection, error = %e, "malformed frame: closing the channel");
                    break;
                }
            }
        }
    };
    tokio::select! {
        () = writer => {}
        () = reader => {}
        () = hub.closing() => {}
    }
    hub.detach(connection);
    tracing::info!(agent = %agent.name, connection, "agent disconnected");
}
