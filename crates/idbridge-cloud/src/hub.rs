//! The agents connected over the channel and the requests in flight to them. In memory, per
//! cloud process: a request is answered on the connection it was sent on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use idbridge_channel::{AgentPublicKey, CloudFrame, Operation, Outcome};
use tokio::sync::{mpsc, oneshot};

/// An agent not heard from for this long is not sent requests.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(30);
/// How often agents are asked to send a heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no agent is connected")]
    Offline,
    #[error("the agent did not answer in time")]
    Timeout,
    #[error("the agent's connection closed before it answered")]
    Disconnected,
}

/// One connected agent, as the admin API shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Presence {
    pub agent_id: String,
    pub connection: u64,
    pub connected_ms_ago: u128,
    pub heard_ms_ago: u128,
    pub healthy: bool,
}

struct Connection {
    agent_id: String,
    public_key: AgentPublicKey,
    frames: mpsc::Sender<CloudFrame>,
    connected: Instant,
    heard: Instant,
}

#[derive(Default)]
struct State {
    next_id: u64,
    connections: HashMap<u64, Connection>,
    /// request id -> (connection it went to, who waits for the answer)
    pending: HashMap<String, (u64, oneshot::Sender<Outcome>)>,
}

pub struct AgentHub {
    state: Mutex<State>,
    /// Becomes true when the server shuts down: every channel closes at once.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for AgentHub {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            closing: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// A request on its way: await [`PendingCall::answer`]; dropping it forgets the request.
pub struct PendingCall {
    answer: oneshot::Receiver<Outcome>,
}

impl PendingCall {
    /// The agent's outcome, waiting at most `timeout`; on timeout the call can be awaited again.
    pub async fn answer(&mut self, timeout: Duration) -> Result<Outcome, CallError> {
        match tokio::time::timeout(timeout, &mut self.answer).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(CallError::Disconnected),
            Err(_) => Err(CallError::Timeout),
        }
    }
}

impl AgentHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the hub: keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection; returns its id.
    pub fn attach(
        &self,
        agent_id: &str,
        public_key: AgentPublicKey,
        frames: mpsc::Sender<CloudFrame>,
    ) -> u64 {
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        let now = Instant::now();
        state.connections.insert(
            id,
            Connection {
                agent_id: agent_id.to_owned(),
                public_key,
                frames,
                connected: now,
                heard: now,
            },
        );
        id
    }

    /// Resolves when the server shuts down (channels are upgraded connections the HTTP
    /// server's graceful shutdown does not end by itself).
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut watch = self.closing.subscribe();
        async move {
            // An error means the hub is gone: closing all the same.
            let _ = watch.wait_for(|closing| *closing).await;
        }
    }

    /// Closes every channel (agents reconnect to whatever serves next).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Forgets a connection; requests waiting on it fail at once.
    pub fn detach(&self, connection: u64) {
        let mut state = self.lock();
        state.connections.remove(&connection);
        state.pending.retain(|_, (c, _)| *c != connection);
    }

    /// The agent on `connection` spoke (any frame counts as a heartbeat).
    pub fn heard(&self, connection: u64) {
        if let Some(c) = self.lock().connections.get_mut(&connection) {
            c.heard = Instant::now();
        }
    }

    /// Delivers an answer; answers from another connection than the request's are ignored.
    pub fn answer(&self, connection: u64, request_id: &str, outcome: Outcome) {
        let mut state = self.lock();
        let ours = state
            .pending
            .get(request_id)
            .is_some_and(|(c, _)| *c == connection);
        if ours {
            if let Some((_, waiter)) = state.pending.remove(request_id) {
                // The caller may have given up: nothing to do then.
                let _ = waiter.send(outcome);
            }
        }
    }

    /// The agent's key changed: requests are sealed to the new one from now on.
    pub fn rekey(&self, agent_id: &str, public_key: AgentPublicKey) {
        for c in self.lock().connections.values_mut() {
            if c.agent_id == agent_id {
                c.public_key = public_key;
            }
        }
    }

    pub fn presence(&self) -> Vec<Presence> {
        let state = self.lock();
        let mut list: Vec<Presence> = state
            .connections
            .iter()
            .map(|(id, c)| Presence {
                agent_id: c.agent_id.clone(),
                connection: *id,
                connected_ms_ago: c.connected.elapsed().as_millis(),
                heard_ms_ago: c.heard.elapsed().as_millis(),
                healthy: c.heard.elapsed() < HEALTHY_WITHIN,
            })
            .collect();
        list.sort_by_key(|p| p.connection);
        list
    }

    pub fn any_healthy(&self) -> bool {
        self.lock()
            .connections
            .values()
            .any(|c| c.heard.elapsed() < HEALTHY_WITHIN)
    }

    /// Sends a request to the healthy agent heard from most recently; `operation` seals its
    /// secrets to that agent's key.
    pub fn call(
        &self,
        request_id: &str,
        operation: impl FnOnce(&AgentPublicKey) -> Operation,
    ) -> Result<PendingCall, CallError> {
        let mut state = self.lock();
        let Some((&connection, chosen)) = state
            .connections
            .iter()
            .filter(|(_, c)| c.heard.elapsed() < HEALTHY_WITHIN)
            .min_by_key(|(_, c)| c.heard.elapsed())
        else {
            return Err(CallError::Offline);
        };
        let frame = CloudFrame::Request {
            request_id: request_id.to_owned(),
            operation: Box::new(operation(&chosen.public_key)),
        };
        chosen
            .frames
            .try_send(frame)
            .map_err(|_| CallError::Disconnected)?;
        let (waiter, answer) = oneshot::channel();
        state
            .pending
            .insert(request_id.to_owned(), (connection, waiter));
        Ok(PendingCall { answer })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use idbridge_channel::{AgentKeyPair, UserRef};
    use rand::SeedableRng;

    fn key() -> AgentPublicKey {
        AgentKeyPair::generate(&mut rand::rngs::StdRng::seed_from_u64(3)).public()
    }

    fn unlock(_: &AgentPublicKey) -> Operation {
        Operation::Unlock {
            user: UserRef {
                object_guid: "AAAA".into(),
                user_principal_name: "u@lab.test".into(),
                distinguished_name: None,
            },
        }
    }

    fn request_id(frame: CloudFrame) -> String {
        match frame {
            CloudFrame::Request { request_id, .. } => request_id,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn requests_go_to_the_agent_heard_most_recently_and_answers_come_back() {
        let hub = AgentHub::default();
        assert_eq!(hub.call("r0", unlock).err(), Some(CallError::Offline));
        let (tx_a, mut rx_a) = mpsc::channel(4);
        let (tx_b, mut rx_b) = mpsc::channel(4);
        let a = hub.attach("agent-a", key(), tx_a);
        let b = hub.attach("agent-b", key(), tx_b);
        hub.heard(a);
        let mut call = hub.call("r1", unlock).unwrap();
        assert_eq!(request_id(rx_a.try_recv().unwrap()), "r1");
        assert!(rx_b.try_recv().is_err(), "one agent per request");
        // An answer on another connection is not the answer.
        hub.answer(b, "r1", Outcome::Done);
        hub.answer(a, "r1", Outcome::Locked);
        assert_eq!(
            call.answer(Duration::from_secs(1)).await,
            Ok(Outcome::Locked)
        );
        hub.heard(b);
        hub.call("r2", unlock).unwrap();
        assert_eq!(request_id(rx_b.try_recv().unwrap()), "r2");
        assert_eq!(hub.presence().len(), 2);
        assert!(hub.any_healthy());
    }

    #[tokio::test]
    async fn a_request_fails_at_once_when_its_agent_goes_away() {
        let hub = AgentHub::default();
        let (tx, _rx) = mpsc::channel(4);
        let connection = hub.attach("agent", key(), tx);
        let mut call = hub.call("r1", unlock).unwrap();
        hub.detach(connection);
        assert_eq!(
            call.answer(Duration::from_secs(5)).await,
            Err(CallError::Disconnected)
        );
        assert!(!hub.any_healthy());
    }
}
