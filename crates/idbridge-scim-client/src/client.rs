//! The HTTP edge: requests, retries and response decoding.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use futures_util::StreamExt;
use idbridge_core::Secret;
use idbridge_scim::ResourceKind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::PatchOp;

const SCIM_JSON: &str = "application/scim+json";
const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// Longest wait a server's `Retry-After` can impose on one attempt.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Requests in flight at once when independent ones go one by one (writes to a server without
/// Bulk, searches for one value each): enough to hide the round trips, few enough not to be
/// throttled.
pub const REQUESTS_IN_FLIGHT: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ScimClientError {
    #[error("invalid SCIM client configuration: {0}")]
    Config(String),
    #[error("{method} {url}: the server answered {status}{}: {detail}", scim_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Scim {
        method: Method,
        url: String,
        status: u16,
        scim_type: Option<String>,
        detail: String,
    },
    #[error("{method} {url}: {source}")]
    Transport {
        method: Method,
        url: String,
        source: reqwest::Error,
    },
    #[error("{method} {url}: the response is not SCIM JSON: {reason}")]
    BadResponse {
        method: Method,
        url: String,
        reason: String,
    },
}

impl ScimClientError {
    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Scim { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The RFC 7644 `scimType`, if the server gave one.
    pub fn scim_type(&self) -> Option<&str> {
        match self {
            Self::Scim { scim_type, .. } => scim_type.as_deref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScimClientConfig {
    /// The SCIM base URL, e.g. `https://cloud.example/scim/v2`.
    pub base_url: String,
    pub token: Secret,
    /// PEM of the CA to trust instead of the system's roots (a lab or private CA).
    pub ca_cert_pem: Option<Vec<u8>>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkLimits {
    pub max_operations: usize,
    pub max_payload_size: usize,
}

/// What the server's `/ServiceProviderConfig` says it supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub patch: bool,
    pub bulk: Option<BulkLimits>,
    pub etag: bool,
}

impl Capabilities {
    fn from_config(doc: &Value) -> Self {
        let supported = |feature: &str| {
            doc.pointer(&format!("/{feature}/supported"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let limit = |key: &str| {
            doc.pointer(&format!("/bulk/{key}"))
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
        };
        let bulk = match (
            supported("bulk"),
            limit("maxOperations"),
            limit("maxPayloadSize"),
        ) {
            (true, Some(ops), Some(size)) if ops > 0 => Some(BulkLimits {
                max_operations: ops,
                max_payload_size: size,
            }),
            _ => None,
        };
        Self {
            patch: supported("patch"),
            bulk,
            etag: supported("etag"),
        }
    }
}

/// One operation of a Bulk request; `bulk_id` is required for POST. Its `Display` is its JSON
/// text, as a Bulk request carries it.
#[derive(Debug, Clone)]
pub struct BulkOperation<'a> {
    pub method: Method,
    pub bulk_id: Option<String>,
    pub path: String,
    /// Borrowed where the write holds it (a create's document: a group's can hold tens of
    /// thousands of members).
    pub data: Option<Cow<'a, Value>>,
}

impl fmt::Display for BulkOperation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |s: &str| Value::from(s).to_string();
        write!(
            f,
            r#"{{"method":{},"path":{}"#,
            text(self.method.as_str()),
            text(&self.path)
        )?;
        if let Some(id) = &self.bulk_id {
            write!(f, r#","bulkId":{}"#, text(id))?;
        }
        if let Some(data) = &self.data {
            write!(f, r#","data":{data}"#)?;
        }
        f.write_str("}")
    }
}

/// One independent write of [`ScimClient::write_all`].
#[derive(Debug, Clone)]
pub enum Write {
    Create {
        kind: ResourceKind,
        body: Value,
    },
    Patch {
        kind: ResourceKind,
        id: String,
        ops: Vec<PatchOp>,
    },
    Delete {
        kind: ResourceKind,
        id: String,
    },
}

impl Write {
    fn bulk_operation(&self, bulk_id: String) -> BulkOperation<'_> {
        let (method, path, data) = match self {
            Write::Create { kind, body } => (
                Method::POST,
                kind.endpoint().to_owned(),
                Some(Cow::Borrowed(body)),
            ),
            Write::Patch { kind, id, ops } => (
                Method::PATCH,
                format!("{}/{id}", kind.endpoint()),
                Some(Cow::Owned(json!({
                    "schemas": [PATCH_OP_SCHEMA],
                    "Operations": ops.iter().map(PatchOp::to_json).collect::<Vec<_>>(),
                }))),
            ),
            Write::Delete { kind, id } => {
                (Method::DELETE, format!("{}/{id}", kind.endpoint()), None)
            }
        };
        BulkOperation {
            method,
            bulk_id: Some(bulk_id),
            path,
            data,
        }
    }

    /// This write's result, from its Bulk operation's answer.
    fn outcome(
        &self,
        result: BulkResult,
        method: Method,
        url: String,
    ) -> Result<Option<String>, ScimClientError> {
        match (self, result.status) {
            (Write::Delete { .. }, 200..=299 | 404) => Ok(None),
            (Write::Patch { id, .. }, 200..=299) => Ok(Some(id.clone())),
            (Write::Create { .. }, 200..=299) => {
                result
                    .id
                    .map(Some)
                    .ok_or_else(|| ScimClientError::BadResponse {
                        method,
                        url,
                        reason: "a created resource without a location".into(),
                    })
            }
            (_, status) => {
                let text = |key: &str| {
                    result
                        .response
                        .as_ref()
                        .and_then(|r| r.get(key))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                Err(ScimClientError::Scim {
                    method,
                    url,
                    status,
                    scim_type: text("scimType"),
                    detail: text("detail").unwrap_or_default(),
                })
            }
        }
    }
}

/// What a search returned: its first page, and whether that page holds every match.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    pub resources: Vec<Value>,
    /// The server's `totalResults` is no more than the page holds or, from a server that leaves
    /// it out, the page is not full.
    pub complete: bool,
}

/// The server's answer for one Bulk operation.
#[derive(Debug, Clone)]
pub struct BulkResult {
    pub bulk_id: Option<String>,
    pub status: u16,
    /// The created or updated resource's id, from its `location`.
    pub id: Option<String>,
    pub response: Option<Value>,
}

pub struct ScimClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
    retry: RetryPolicy,
    capabilities: Capabilities,
}

impl ScimClient {
    /// Builds the client and reads the server's capabilities.
    pub async fn connect(config: ScimClientConfig) -> Result<Self, ScimClientError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout);
        if let Some(pem) = &config.ca_cert_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| ScimClientError::Config(format!("CA certificate: {e}")))?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| ScimClientError::Config(e.to_string()))?;
        let mut client = Self {
            http,
            base: config.base_url.trim_end_matches('/').to_string(),
            token: config.token,
            retry: config.retry,
            capabilities: Capabilities {
                patch: false,
                bulk: None,
                etag: false,
            },
        };
        let spc = client
            .request(Method::GET, "/ServiceProviderConfig", None)
            .await?;
        client.capabilities = Capabilities::from_config(&spc.unwrap_or(Value::Null));
        Ok(client)
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub async fn get(
        &self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<Value>, ScimClientError> {
        match self
            .request(Method::GET, &format!("{}/{id}", kind.endpoint()), None)
            .await
        {
            Err(e) if e.status() == Some(404) => Ok(None),
            other => other,
        }
    }

    /// The resources matching a filter (first page of up to `count`).
    pub async fn search(
        &self,
        kind: ResourceKind,
        filter: &str,
        count: usize,
    ) -> Result<SearchPage, ScimClientError> {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": filter,
            "count": count,
        });
        let mut list = self
            .request(
                Method::POST,
                &format!("{}/.search", kind.endpoint()),
                Some(body.to_string()),
            )
            .await?
            .unwrap_or_default();
        let total = list
            .get("totalResults")
            .and_then(Value::as_u64)
            .map(|t| usize::try_from(t).unwrap_or(usize::MAX));
        let resources = match list.get_mut("Resources").map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let complete = match total {
            Some(total) => total <= resources.len(),
            None => resources.len() < count,
        };
        Ok(SearchPage {
            resources,
            complete,
        })
    }

    pub async fn create(&self, kind: ResourceKind, body: &Value) -> Result<Value, ScimClientError> {
        let path = kind.endpoint().to_owned();
        self.request(Method::POST, &path, Some(body.to_string()))
            .await?
            .ok_or_else(|| self.empty(Method::POST, &path))
    }

    /// Applies a PATCH; returns the resource when the server sends it (200), `None` on 204.
    pub async fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        ops: &[PatchOp],
    ) -> Result<Option<Value>, ScimClientError> {
        let body = json!({
            "schemas": [PATCH_OP_SCHEMA],
            "Operations": ops.iter().map(PatchOp::to_json).collect::<Vec<_>>(),
        });
        self.request(
            Method::PATCH,
            &format!("{}/{id}", kind.endpoint()),
            Some(body.to_string()),
        )
        .await
    }

    /// Deletes a resource. A resource that is already gone counts as deleted, so a repeated
    /// export of the same deletion is harmless.
    pub async fn delete(&self, kind: ResourceKind, id: &str) -> Result<(), ScimClientError> {
        match self
            .request(Method::DELETE, &format!("{}/{id}", kind.endpoint()), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends operations as Bulk requests no larger than the server allows. Per-operation failures
    /// are results, not errors: the caller records them on the objects concerned.
    pub async fn bulk(
        &self,
        ops: &[BulkOperation<'_>],
    ) -> Result<Vec<BulkResult>, ScimClientError> {
        let limits = self.capabilities.bulk.ok_or_else(|| {
            ScimClientError::Config("the server does not support SCIM Bulk".to_string())
        })?;
        let mut results = Vec::with_capacity(ops.len());
        for body in bulk_requests(ops, limits) {
            let mut response = self
                .request(Method::POST, "/Bulk", Some(body))
                .await?
                .ok_or_else(|| self.empty(Method::POST, "/Bulk"))?;
            if let Some(Value::Array(answered)) = response.get_mut("Operations").map(Value::take) {
                results.extend(answered.into_iter().map(bulk_result));
            }
        }
        Ok(results)
    }

    /// Sends independent writes: as one Bulk request when the server offers Bulk (split to its
    /// limits), else as single requests, [`REQUESTS_IN_FLIGHT`] at a time. One result per write,
    /// in order: the id of the created or patched resource, `None` for a delete (a resource
    /// already gone counts as deleted). The outer error means a whole Bulk request failed.
    pub async fn write_all(
        &self,
        writes: &[Write],
    ) -> Result<Vec<Result<Option<String>, ScimClientError>>, ScimClientError> {
        if self.capabilities.bulk.is_none() || writes.len() < 2 {
            let singles = writes.iter().map(|w| self.write_one(w));
            return Ok(futures_util::stream::iter(singles)
                .buffered(REQUESTS_IN_FLIGHT)
                .collect()
                .await);
        }
        let ops: Vec<BulkOperation> = writes
            .iter()
            .enumerate()
            .map(|(i, w)| w.bulk_operation(format!("w{i}")))
            .collect();
        let answered = self.bulk(&ops).await?;
        let mut by_id: std::collections::HashMap<String, BulkResult> = answered
            .into_iter()
            .filter_map(|r| r.bulk_id.clone().map(|id| (id, r)))
            .collect();
        Ok(writes
            .iter()
            .zip(&ops)
            .map(|(write, op)| {
                let url = format!("{}{}", self.base, op.path);
                let Some(result) = op.bulk_id.as_ref().and_then(|id| by_id.remove(id)) else {
                    return Err(ScimClientError::BadResponse {
                        method: op.method.clone(),
                        url,
                        reason: "the Bulk response has no result for this operation".into(),
                    });
                };
                write.outcome(result, op.method.clone(), url)
            })
            .collect())
    }

    async fn write_one(&self, write: &Write) -> Result<Option<String>, ScimClientError> {
        match write {
            Write::Create { kind, body } => {
                let created = self.create(*kind, body).await?;
                Ok(created
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string))
            }
            Write::Patch { kind, id, ops } => {
                self.patch(*kind, id, ops).await?;
                Ok(Some(id.clone()))
            }
            Write::Delete { kind, id } => self.delete(*kind, id).await.map(|()| None),
        }
    }

    fn empty(&self, method: Method, path: &str) -> ScimClientError {
        ScimClientError::BadResponse {
            method,
            url: format!("{}{path}", self.base),
            reason: "empty body where a resource was expected".to_string(),
        }
    }

    /// Sends one request (`body`: JSON text), retrying only what is safe to retry (see the
    /// crate invariant).
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<Option<Value>, ScimClientError> {
        let url = format!("{}{path}", self.base);
        // Shared by every attempt, not copied for each (a Bulk request runs to megabytes).
        let body = body.map(bytes::Bytes::from);
        let mut backoff = self.retry.initial_backoff;
        let mut attempt = 1;
        loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(self.token.expose())
                .header(reqwest::header::ACCEPT, SCIM_JSON);
            if let Some(body) = &body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, SCIM_JSON)
                    .body(body.clone());
            }
            let wait = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(&resp);
                    if !should_retry_status(status) || attempt >= self.retry.max_attempts {
                        return decode(method, url, resp).await;
                    }
                    retry_after.unwrap_or(backoff)
                }
                // A connection that was never established carried nothing: safe to try again.
                Err(e) if e.is_connect() && attempt < self.retry.max_attempts => backoff,
                Err(source) => {
                    return Err(ScimClientError::Transport {
                        method,
                        url,
                        source,
                    })
                }
            };
            tracing::warn!(%method, %url, attempt, wait_ms = wait.as_millis() as u64, "SCIM server asked to retry");
            tokio::time::sleep(wait.min(MAX_RETRY_AFTER)).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
            attempt += 1;
        }
    }
}

/// 429 and 503 mean the server did not process the request.
fn should_retry_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
}

/// `Retry-After` in delta-seconds (the form SCIM servers use for throttling).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let value = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

async fn decode(
    method: Method,
    url: String,
    resp: reqwest::Response,
) -> Result<Option<Value>, ScimClientError> {
    let status = resp.status();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(source) => {
            return Err(ScimClientError::Transport {
                method,
                url,
                source,
            })
        }
    };
    let json: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes).ok()
    };
    if status.is_success() {
        if json.is_none() && !bytes.is_empty() {
            let reason = format!("{} bytes that do not parse as JSON", bytes.len());
            return Err(ScimClientError::BadResponse {
                method,
                url,
                reason,
            });
        }
        return Ok(json);
    }
    let field = |key: &str| {
        json.as_ref()
            .and_then(|j| j.get(key))
            .and_then(Value::as_str)
    };
    let detail = field("detail")
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
    let scim_type = field("scimType").map(str::to_string);
    Err(ScimClientError::Scim {
        method,
        url,
        status: status.as_u16(),
        scim_type,
        detail,
    })
}

/// The bodies (JSON text) of the Bulk requests that carry `ops` within the server's limits: at
/// most `maxOperations` operations and `maxPayloadSize` bytes each (an operation larger than
/// that alone goes alone, for the server to refuse). Each operation is serialized once: its
/// text is both what is counted and what is sent.
fn bulk_requests(ops: &[BulkOperation<'_>], limits: BulkLimits) -> Vec<String> {
    let body = |operations: &[String]| {
        format!(
            r#"{{"schemas":["{BULK_REQUEST_SCHEMA}"],"Operations":[{}]}}"#,
            operations.join(",")
        )
    };
    let envelope = body(&[]).len();
    let mut bodies = Vec::new();
    let mut batch: Vec<String> = Vec::new();
    // The text so far, with a comma after each operation (one more than the body will have).
    let mut size = envelope;
    for op in ops {
        let op = op.to_string();
        let op_size = op.len() + 1;
        let full = batch.len() >= limits.max_operations
            || size.saturating_add(op_size) > limits.max_payload_size;
        if full && !batch.is_empty() {
            bodies.push(body(&batch));
            batch.clear();
            size = envelope;
        }
        size = size.saturating_add(op_size);
        batch.push(op);
    }
    if !batch.is_empty() {
        bodies.push(body(&batch));
    }
    bodies
}

fn bulk_result(op: Value) -> BulkResult {
    let text = |key: &str| op.get(key).and_then(Value::as_str);
    // RFC 7644 sends the status as a string; some servers send a number.
    let status = text("status")
        .and_then(|s| s.parse().ok())
        .or_else(|| {
            op.get("status")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
        })
        .unwrap_or(0);
    let id = text("location")
        .and_then(|l| l.rsplit('/').next())
        .map(str::to_string);
    BulkResult {
        bulk_id: text("bulkId").map(str::to_string),
        status,
        id,
        response: op.get("response").cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::State;
    use axum::response::IntoResponse;
    use axum::Json;
    use std::sync::{Arc, Mutex};

    /// A server that answers each POST with the next status of `answers` (then 201), with
    /// `Retry-After: 1` on a 429, and keeps every body it received.
    async fn throttling_server(answers: Vec<u16>) -> (ScimClient, Arc<Mutex<Vec<String>>>) {
        use axum::routing::{get, post};
        type Received = Arc<Mutex<Vec<String>>>;
        type Answers = Arc<Mutex<std::vec::IntoIter<u16>>>;
        let received: Received = Arc::default();
        let answers: Answers = Arc::new(Mutex::new(answers.into_iter()));
        let create = |State((answers, received)): State<(Answers, Received)>, body: String| async move {
            received.lock().unwrap().push(body);
            let next = answers.lock().unwrap().next();
            match next.map(|s| StatusCode::from_u16(s).unwrap()) {
                Some(StatusCode::TOO_MANY_REQUESTS) => {
                    (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "").into_response()
                }
                Some(status) => (status, "").into_response(),
                None => (
                    StatusCode::CREATED,
                    Json(json!({"id": "u1", "userName": "ann"})),
                )
                    .into_response(),
            }
        };
        let app = axum::Router::new()
            .route("/ServiceProviderConfig", get(|| async { Json(json!({})) }))
            .route("/Users", post(create))
            .with_state((answers, received.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = ScimClient::connect(ScimClientConfig {
            base_url,
            token: Secret::new("token"),
            ca_cert_pem: None,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(100),
            },
        })
        .await
        .unwrap();
        (client, received)
    }

    #[tokio::test]
    async fn throttled_requests_are_sent_again_after_retry_after_with_the_same_body() {
        let (client, received) = throttling_server(vec![429, 503]).await;
        let user = json!({"userName": "ann", "title": "x".repeat(10_000)});
        let started = std::time::Instant::now();
        let created = client.create(ResourceKind::User, &user).await.unwrap();
        assert_eq!(created["id"], "u1");
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After: 1 was honoured"
        );
        let received = received.lock().unwrap();
        assert_eq!(received.len(), 3, "a 429, a 503, then the create");
        let sent = user.to_string();
        assert!(received.iter().all(|body| *body == sent));
    }

    #[tokio::test]
    async fn a_server_error_is_not_retried_and_retries_end() {
        let (client, received) = throttling_server(vec![500]).await;
        let e = client
            .create(ResourceKind::User, &json!({"userName": "ann"}))
            .await;
        assert_eq!(e.unwrap_err().status(), Some(500));
        assert_eq!(
            received.lock().unwrap().len(),
            1,
            "a 500 may have been processed"
        );

        let (client, received) = throttling_server(vec![503, 503, 503, 503]).await;
        let e = client
            .create(ResourceKind::User, &json!({"userName": "ann"}))
            .await;
        assert_eq!(
            e.unwrap_err().status(),
            Some(503),
            "the last answer, after max_attempts"
        );
        assert_eq!(received.lock().unwrap().len(), 3);
    }

    #[test]
    fn capabilities_come_from_the_service_provider_config() {
        let spc = json!({
            "patch": {"supported": true},
            "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576},
            "etag": {"supported": false},
        });
        assert_eq!(
            Capabilities::from_config(&spc),
            Capabilities {
                patch: true,
                bulk: Some(BulkLimits {
                    max_operations: 1000,
                    max_payload_size: 1_048_576
                }),
                etag: false
            }
        );
        let no_bulk = json!({"bulk": {"supported": true, "maxOperations": 0, "maxPayloadSize": 1}});
        assert_eq!(Capabilities::from_config(&no_bulk).bulk, None);
    }

    #[test]
    fn bulk_requests_keep_to_both_limits() {
        let op = |n: usize| BulkOperation {
            method: Method::POST,
            bulk_id: Some(format!("w{n}")),
            path: "/Users".into(),
            data: Some(Cow::Owned(json!({"userName": "x".repeat(n * 100)}))),
        };
        let ops: Vec<BulkOperation> = (1..=6).map(op).collect();
        let by_count = bulk_requests(
            &ops,
            BulkLimits {
                max_operations: 4,
                max_payload_size: 1 << 20,
            },
        );
        let operations = |body: &String| {
            let body: Value = serde_json::from_str(body).unwrap();
            body["Operations"].as_array().unwrap().clone()
        };
        let counts: Vec<usize> = by_count.iter().map(|b| operations(b).len()).collect();
        assert_eq!(counts, [4, 2]);
        assert_eq!(
            operations(&by_count[1])[1],
            json!({"method": "POST", "path": "/Users", "bulkId": "w6",
                   "data": {"userName": "x".repeat(600)}})
        );
        let limits = BulkLimits {
            max_operations: 1000,
            max_payload_size: 1000,
        };
        let by_size = bulk_requests(&ops, limits);
        let counts: Vec<usize> = by_size.iter().map(|b| operations(b).len()).collect();
        assert_eq!(counts.iter().sum::<usize>(), 6);
        assert!(counts.len() > 2, "{counts:?}");
        for (i, request) in by_size.iter().enumerate() {
            let len = request.len();
            // Within the limit, unless a single operation exceeds it alone.
            assert!(len <= 1000 || counts[i] == 1, "{counts:?}");
            // As full as the limit lets it be: the next request's first operation did not fit.
            if let Some(next) = by_size.get(i + 1) {
                let first = operations(next)[0].to_string().len();
                assert!(len + 1 + first > 1000, "{counts:?}");
            }
        }
    }

    #[test]
    fn a_bulk_operation_is_written_as_json() {
        let op = BulkOperation {
            method: Method::DELETE,
            bulk_id: None,
            path: r#"/Groups/a"b\c"#.into(),
            data: None,
        };
        let text: Value = serde_json::from_str(&op.to_string()).unwrap();
        assert_eq!(
            text,
            json!({"method": "DELETE", "path": r#"/Groups/a"b\c"#})
        );
    }

    #[test]
    fn bulk_results_carry_status_and_id() {
        let r = bulk_result(json!({
            "method": "POST", "bulkId": "u1", "status": "201",
            "location": "https://x/scim/v2/Users/92b725cd"
        }));
        assert_eq!(
            (r.bulk_id.as_deref(), r.status, r.id.as_deref()),
            (Some("u1"), 201, Some("92b725cd"))
        );
    }
}
