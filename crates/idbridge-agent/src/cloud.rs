//! The agent's calls to the cloud directory that are not plain SCIM sync: which cloud users are
//! joined to AD objects, and their password hash verifiers. HTTPS only.

use std::collections::HashMap;

use idbridge_core::Secret;
use idbridge_phs::PhsVerifier;
use idbridge_scim_client::or_filters;
use serde_json::{json, Value};

use crate::config::CloudConfig;
use crate::AgentError;

const SYNC_USER: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";

pub struct CloudClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl CloudClient {
    pub fn new(config: &CloudConfig) -> Result<Self, AgentError> {
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .timeout(std::time::Duration::from_secs(30));
        if let Some(path) = &config.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                AgentError::Cloud(format!("cannot read cloud.ca_cert {}: {e}", path.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| AgentError::Cloud(format!("cloud.ca_cert {}: {e}", path.display())))?;
            builder = builder
                .add_root_certificate(cert)
                .tls_built_in_root_certs(false);
        }
        Ok(Self {
            http: builder
                .build()
                .map_err(|e| AgentError::Cloud(e.to_string()))?,
            base: config.url.trim_end_matches('/').to_owned(),
            token: config.token.clone(),
        })
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Value, AgentError> {
        let response = request
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| AgentError::Cloud(format!("{what}: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = body
                .get("detail")
                .or_else(|| body.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(AgentError::Cloud(format!("{what}: {status} {detail}")));
        }
        Ok(body)
    }

    /// Source anchor (`immutableId`) -> cloud id, for the on-premises users among `anchors`.
    /// One `or` search per few dozen anchors (see [`or_filters`]), which the cloud answers from its anchor index: a
    /// hash sync cycle asks only about the accounts it has hashes for, however many users the
    /// cloud holds (listing them all cost the cloud a scan of every user per page).
    pub async fn joined_users(
        &self,
        anchors: &[String],
    ) -> Result<HashMap<String, String>, AgentError> {
        let path = format!("{SYNC_USER}:immutableId");
        let anchors: Vec<&str> = anchors.iter().map(String::as_str).collect();
        let mut joined = HashMap::new();
        for (filter, batch) in or_filters(&path, &anchors) {
            let body = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": filter,
                "attributes": ["id", &path, format!("{SYNC_USER}:source")],
                "count": 2 * batch.len(),
            });
            let url = format!("{}/scim/v2/Users/.search", self.base);
            let page = self
                .call(self.http.post(url).json(&body), "looking up synced users")
                .await?;
            let resources = page.get("Resources").and_then(Value::as_array);
            for r in resources.into_iter().flatten() {
                let sync = r.get(SYNC_USER);
                let field = |name: &str| sync.and_then(|e| e.get(name)).and_then(Value::as_str);
                // A cloud-only user an administrator gave an anchor is not joined yet.
                if field("source") != Some("on_premises") {
                    continue;
                }
                if let (Some(id), Some(anchor)) =
                    (r.get("id").and_then(Value::as_str), field("immutableId"))
                {
                    joined.insert(anchor.to_owned(), id.to_owned());
                }
            }
        }
        Ok(joined)
    }

    pub async fn put_verifier(
        &self,
        cloud_id: &str,
        verifier: &PhsVerifier,
    ) -> Result<(), AgentError> {
        let url = format!("{}/api/v1/sync/users/{cloud_id}/password-hash", self.base);
        let body = json!({"verifier": verifier.to_string()});
        self.call(
            self.http.put(url).json(&body),
            &format!("sending the verifier of cloud user {cloud_id}"),
        )
        .await
        .map(drop)
    }
}
