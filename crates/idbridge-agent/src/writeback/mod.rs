//! Writeback: the agent's end of the channel to the cloud. Registration gives the agent an id
//! and a credential and leaves its private key on this host only; the channel then carries the
//! cloud's requests (password set and change, unlock, pass-through verification) to the DC.

mod channel;
mod ops;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use idbridge_channel::AgentKeyPair;
use idbridge_core::Secret;
use serde::Deserialize;
use serde_json::{json, Value};

pub use channel::{run_channel, ChannelStatus, CHANNEL_STATUS_FILE};

use crate::config::AgentConfig;

const KEY_FILE: &str = "agent-key";
const CREDENTIAL_FILE: &str = "agent-credential.json";

#[derive(Debug, thiserror::Error)]
pub enum WritebackError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("this agent is not registered: run `idbridge agent register --cloud URL --token TOKEN` ({0} is missing)")]
    NotRegistered(PathBuf),
    #[error("the cloud at {url}: {message}")]
    Cloud { url: String, message: String },
}

/// Who this agent is to the cloud, as saved by `idbridge agent register`.
#[derive(Clone, Deserialize)]
pub struct Registration {
    pub agent_id: String,
    pub cloud_url: String,
    pub credential: Secret,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("agent_id", &self.agent_id)
            .field("cloud_url", &self.cloud_url)
            .field("credential", &"[redacted]")
            .finish()
    }
}

/// Writes a file only its owner can read, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), WritebackError> {
    let failed = |e: std::io::Error| WritebackError::File {
        path: path.to_owned(),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

fn read(path: &Path) -> Result<String, WritebackError> {
    std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => WritebackError::NotRegistered(path.to_owned()),
        _ => WritebackError::File {
            path: path.to_owned(),
            message: e.to_string(),
        },
    })
}

fn load_key(path: PathBuf) -> Result<AgentKeyPair, WritebackError> {
    let text = Secret::new(read(&path)?);
    AgentKeyPair::from_base64(text.expose()).map_err(|e| WritebackError::File {
        path,
        message: e.to_string(),
    })
}

/// The agent's key, then the one a rotation is installing (the cloud may seal to it a moment
/// before the rotation renames it into place).
pub fn load_keys(data_dir: &Path) -> Result<Vec<AgentKeyPair>, WritebackError> {
    let mut keys = vec![load_key(data_dir.join(KEY_FILE))?];
    let staged = data_dir.join(format!("{KEY_FILE}.new"));
    if staged.exists() {
        keys.push(load_key(staged)?);
    }
    Ok(keys)
}

pub fn load_registration(data_dir: &Path) -> Result<Registration, WritebackError> {
    let path = data_dir.join(CREDENTIAL_FILE);
    serde_json::from_str(&read(&path)?).map_err(|e| WritebackError::File {
        path,
        message: format!("unreadable ({e}); register the agent again"),
    })
}

/// An HTTPS client trusting the configured cloud CA (or the system's roots).
fn https(config: &AgentConfig) -> Result<reqwest::Client, WritebackError> {
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .timeout(std::time::Duration::from_secs(30));
    if let Some(path) = &config.cloud.ca_cert {
        let file = |message: String| WritebackError::File {
            path: path.clone(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| file(e.to_string()))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| file(e.to_string()))?;
        builder = builder
            .add_root_certificate(cert)
            .tls_built_in_root_certs(false);
    }
    builder.build().map_err(|e| WritebackError::Cloud {
        url: config.cloud.url.clone(),
        message: e.to_string(),
    })
}

async fn call(
    request: reqwest::RequestBuilder,
    url: &str,
    body: &Value,
) -> Result<Value, WritebackError> {
    let failed = |message: String| WritebackError::Cloud {
        url: url.to_owned(),
        message,
    };
    let response = request
        .json(body)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = reply
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no details");
        return Err(failed(format!("{status}: {message}")));
    }
    Ok(reply)
}

/// `idbridge agent register`: creates this agent's key pair, registers its public key with the
/// one-time token, and saves the credential. The private key never leaves this host.
pub async fn register(
    config: &AgentConfig,
    cloud_url: &str,
    token: &Secret,
) -> Result<Registration, WritebackError> {
    let cloud_url = cloud_url.trim_end_matches('/').to_owned();
    let keys = AgentKeyPair::generate(&mut rand::rngs::OsRng);
    let url = format!("{cloud_url}/api/v1/agents/register");
    let reply = call(
        https(config)?.post(&url),
        &url,
        &json!({"token": token.expose(), "public_key": keys.public().to_string()}),
    )
    .await?;
    let field = |key: &str| {
        reply
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| WritebackError::Cloud {
                url: url.clone(),
                message: format!("the answer has no {key}"),
            })
    };
    let registration = Registration {
        agent_id: field("agent_id")?,
        cloud_url,
        credential: Secret::new(field("credential")?),
    };
    let data_dir = &config.storage.data_dir;
    write_private(
        &data_dir.join(KEY_FILE),
        keys.to_base64().expose().as_bytes(),
    )?;
    let saved = serde_json::json!({
        "agent_id": registration.agent_id,
        "cloud_url": registration.cloud_url,
        "credential": registration.credential.expose(),
    });
    write_private(
        &data_dir.join(CREDENTIAL_FILE),
        serde_json::to_string_pretty(&saved)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(registration)
}

/// `idbridge agent rotate-key`: a new key pair; the cloud seals to the new public key from the
/// moment it accepts it, and the running agent reads the key file for every request.
pub async fn rotate_key(config: &AgentConfig) -> Result<(), WritebackError> {
    let data_dir = &config.storage.data_dir;
    let registration = load_registration(data_dir)?;
    let keys = AgentKeyPair::generate(&mut rand::rngs::OsRng);
    // The new private key is on disk before the cloud may use its public half.
    let staged = data_dir.join(format!("{KEY_FILE}.new"));
    write_private(&staged, keys.to_base64().expose().as_bytes())?;
    let url = format!("{}/api/v1/agents/self/key", registration.cloud_url);
    call(
        https(config)?
            .put(&url)
            .bearer_auth(registration.credential.expose()),
        &url,
        &json!({"public_key": keys.public().to_string()}),
    )
    .await?;
    std::fs::rename(&staged, data_dir.join(KEY_FILE)).map_err(|e| WritebackError::File {
        path: staged,
        message: e.to_string(),
    })
}
