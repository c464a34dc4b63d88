//! The agent's outbound WebSocket to the cloud: hello, heartbeats, requests carried out as
//! they come (each on its own task), answers back; reconnects with backoff when it drops.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use idbridge_channel::{
    decode_cloud_frame, encode, AgentFrame, CloudFrame, Operation, Outcome, MAX_FRAME_BYTES,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::ops::Dc;
use super::{load_keys, load_registration, Registration, WritebackError};
use crate::config::AgentConfig;
use crate::state::StateFile;

/// The channel's state as `idbridge agent status` and the status endpoint show it.
pub const CHANNEL_STATUS_FILE: &str = "channel.json";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChannelStatus {
    pub agent_id: String,
    pub connected: bool,
    /// When the channel last connected or dropped (RFC 3339).
    pub since: String,
    pub last_error: Option<String>,
}

/// Answers given recently, by request id: a request delivered twice is carried out once.
const REMEMBERED: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Recent {
    outcomes: HashMap<String, Option<Outcome>>,
    order: VecDeque<String>,
}

impl Recent {
    /// `None` if the request is new (and now in flight); else what is known of it.
    fn claim(&mut self, id: &str) -> Option<Option<Outcome>> {
        if let Some(known) = self.outcomes.get(id) {
            return Some(known.clone());
        }
        self.outcomes.insert(id.to_owned(), None);
        self.order.push_back(id.to_owned());
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
        None
    }

    fn finish(&mut self, id: &str, outcome: &Outcome) {
        if let Some(slot) = self.outcomes.get_mut(id) {
            *slot = Some(outcome.clone());
        }
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Runs the channel until the process ends. Returns at once, with the reason, if the agent is
/// not registered.
pub async fn run_channel(config: AgentConfig) -> Result<(), WritebackError> {
    let data_dir = config.storage.data_dir.clone();
    let registration = load_registration(&data_dir)?;
    load_keys(&data_dir)?;
    let dc = Arc::new(Dc {
        ad: crate::sync::ad_settings(&config).map_err(|e| WritebackError::File {
            path: data_dir.clone(),
            message: e.to_string(),
        })?,
        base_dn: idbridge_core::Dn::parse(&config.ad.base_dn).map_err(|e| {
            WritebackError::File {
                path: data_dir.clone(),
                message: format!("ad.base_dn: {e}"),
            }
        })?,
    });
    let status = StateFile::<ChannelStatus>::new(&data_dir, CHANNEL_STATUS_FILE);
    let recent = Arc::new(Mutex::new(Recent::default()));
    let mut backoff = Duration::from_millis(500);
    loop {
        let connected_at = std::time::Instant::now();
        let ended = session(&config, &registration, &dc, &status, &recent).await;
        let message = match &ended {
            Ok(()) => "the cloud closed the channel".to_owned(),
            Err(e) => e.clone(),
        };
        tracing::warn!(error = %message, "writeback channel down; reconnecting");
        let _ = status.save(&ChannelStatus {
            agent_id: registration.agent_id.clone(),
            connected: false,
            since: now(),
            last_error: Some(message),
        });
        // A session that lasted resets the backoff: the cloud restarted, it did not refuse us.
        if connected_at.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_millis(500);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn tls(config: &AgentConfig) -> Result<Option<tokio_tungstenite::Connector>, String> {
    let Some(path) = &config.cloud.ca_cert else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|e| format!("cloud.ca_cert {}: {e}", path.display()))?;
    let tls = idbridge_ad::tls_config(&pem).map_err(|e| e.to_string())?;
    Ok(Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls))))
}

/// One connection, until it drops; the error says why.
async fn session(
    config: &AgentConfig,
    registration: &Registration,
    dc: &Arc<Dc>,
    status: &StateFile<ChannelStatus>,
    recent: &Arc<Mutex<Recent>>,
) -> Result<(), String> {
    let url = format!(
        "{}/api/v1/agents/channel",
        registration.cloud_url.replacen("https://", "wss://", 1)
    );
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{url}: {e}"))?;
    let bearer = format!("Bearer {}", registration.credential.expose())
        .parse()
        .map_err(|_| "the saved credential is not a valid header value".to_owned())?;
    request.headers_mut().insert("authorization", bearer);
    let limits = WebSocketConfig::default().max_message_size(Some(MAX_FRAME_BYTES));
    let (socket, _) =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(limits), true, tls(config)?)
            .await
            .map_err(|e| format!("connecting to {url}: {e}"))?;
    let (mut sink, mut stream) = socket.split();
    let hello = AgentFrame::Hello {
        agent_id: registration.agent_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    sink.send(Message::Text(encode(&hello).into()))
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(%url, agent = %registration.agent_id, "writeback channel connected");
    let _ = status.save(&ChannelStatus {
        agent_id: registration.agent_id.clone(),
        connected: true,
        since: now(),
        last_error: None,
    });
    let (answers, mut outgoing) = mpsc::channel::<AgentFrame>(64);
    let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            frame = outgoing.recv() => {
                let Some(frame) = frame else { return Ok(()) };
                sink.send(Message::Text(encode(&frame).into())).await.map_err(|e| e.to_string())?;
            }
            _ = heartbeat.tick() => {
                let at_ms = i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                sink.send(Message::Text(encode(&AgentFrame::Heartbeat { at_ms }).into())).await.map_err(|e| e.to_string())?;
            }
            message = tokio::time::timeout(Duration::from_secs(45), stream.next()) => {
                let message = match message {
                    Err(_) => return Err("the cloud has been silent for 45 s".into()),
                    Ok(None) => return Ok(()),
                    Ok(Some(Err(e))) => return Err(e.to_string()),
                    Ok(Some(Ok(m))) => m,
                };
                let text = match message {
                    Message::Text(text) => text,
                    Message::Close(_) => return Ok(()),
                    _ => continue,
                };
                match decode_cloud_frame(text.as_str()).map_err(|e| e.to_string())? {
                    CloudFrame::Welcome { heartbeat_interval_ms, .. } => {
                        heartbeat = tokio::time::interval(Duration::from_millis(heartbeat_interval_ms.max(1000)));
                    }
                    CloudFrame::HeartbeatAck { .. } => {}
                    CloudFrame::Request { request_id, operation } => {
                        handle(config, dc, recent, &answers, request_id, *operation);
                    }
                }
            }
        }
    }
}

/// Carries out one request on its own task and queues the answer.
fn handle(
    config: &AgentConfig,
    dc: &Arc<Dc>,
    recent: &Arc<Mutex<Recent>>,
    answers: &mpsc::Sender<AgentFrame>,
    request_id: String,
    operation: Operation,
) {
    let known = recent
        .lock()
        .map(|mut r| r.claim(&request_id))
        .unwrap_or(None);
    match known {
        // Already in flight: its answer is on the way.
        Some(None) => return,
        Some(Some(outcome)) => {
            let _ = answers.try_send(AgentFrame::Response {
                request_id,
                outcome,
            });
            return;
        }
        None => {}
    }
    let (dc, recent, answers) = (dc.clone(), recent.clone(), answers.clone());
    let data_dir = config.storage.data_dir.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let outcome = match load_keys(&data_dir) {
            Ok(keys) => dc.execute(&keys, &request_id, &operation).await,
            Err(e) => Outcome::Failed {
                message: e.to_string(),
            },
        };
        tracing::info!(
            request = %request_id,
            operation = operation.name(),
            user = %operation.user().user_principal_name,
            result = %serde_json::to_value(&outcome).ok().and_then(|v| v.get("result").cloned()).unwrap_or_default(),
            ms = started.elapsed().as_millis(),
            "writeback request"
        );
        if let Ok(mut r) = recent.lock() {
            r.finish(&request_id, &outcome);
        }
        let _ = answers
            .send(AgentFrame::Response {
                request_id,
                outcome,
            })
            .await;
    });
}
