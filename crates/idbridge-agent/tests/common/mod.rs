//! What the agent's live tests share: a real cloud directory over HTTPS and an agent.toml
//! pointing at it and at the lab DC.
#![allow(clippy::unwrap_used, dead_code)]

pub mod ad;

use std::path::PathBuf;
use std::sync::Arc;

use idbridge_agent::AgentConfig;
use idbridge_cloud::{CloudConfig, Scope};
use idbridge_core::{Secret, SystemClock};
use idbridge_testkit::{unique_suffix, Lab, TestOu};

pub struct TestCloud {
    pub url: String,
    pub dir: PathBuf,
    pub sync_token: Secret,
    pub admin_token: Secret,
    pub http: reqwest::Client,
    config: CloudConfig,
    server: Option<idbridge_cloud::RunningServer>,
}

fn https_client(ca_cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// What a live test starts from: the lab, an OU of its own under `OU=Tests`, and a new cloud.
pub async fn lab_ou_and_cloud(label: &str) -> (Lab, TestOu, TestCloud) {
    let lab = Lab::load().unwrap();
    let test_ou = lab.test_ou(label).await.unwrap();
    let cloud = TestCloud::start(label).await;
    (lab, test_ou, cloud)
}

impl TestCloud {
    /// A cloud directory on SQLite in a fresh directory, listening on a free loopback port.
    pub async fn start(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("idbridge-{label}-{}", unique_suffix()));
        let mut config = CloudConfig::parse(&format!(
            "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = \"{}\"\n\
             [[licenses]]\nsku = \"premium\"\nseats = 100\n[sspr]\noutbox = \"{}\"\n",
            dir.join("cloud").display(),
            dir.join("outbox").display()
        ))
        .unwrap();
        let directory = idbridge_cloud::open_directory(config.clone(), Arc::new(SystemClock))
            .await
            .unwrap();
        let sync_token = directory.create_token(label, Scope::Sync).await.unwrap();
        let admin_token = directory
            .create_token(&format!("{label}-admin"), Scope::Admin)
            .await
            .unwrap();
        let server = idbridge_cloud::start(config.clone(), Arc::new(SystemClock))
            .await
            .unwrap();
        // A restart listens on the same port.
        config.server.listen = server.addr;
        let http = https_client(&server.ca_cert_pem);
        Self {
            url: format!("https://127.0.0.1:{}", server.addr.port()),
            dir,
            sync_token,
            admin_token,
            http,
            config,
            server: Some(server),
        }
    }

    /// Stops the server (open connections end) and starts it again on the same port.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
        let server = idbridge_cloud::start(self.config.clone(), Arc::new(SystemClock))
            .await
            .unwrap();
        // Pooled connections went down with the old server; a request must not pick one up.
        self.http = https_client(&server.ca_cert_pem);
        self.server = Some(server);
    }

    /// An admin API call; the status and JSON body.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .request(method, format!("{}/api/v1{path}", self.url))
            .bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// An agent.toml for the lab DC (as the least-privilege service account) and this cloud;
    /// `extra` is appended (e.g. a `[sync]` table).
    pub fn agent_config(&self, lab: &Lab, extra: &str) -> AgentConfig {
        AgentConfig::parse(&self.agent_toml(lab, extra)).unwrap()
    }

    /// The text of [`Self::agent_config`], for an agent run as a process.
    pub fn agent_toml(&self, lab: &Lab, extra: &str) -> String {
        format!(
            r#"version = 1
[ad]
dc_host = "127.0.0.1"
base_dn = "{}"
account = "{}"
password = "{}"
ldap_url = "{}"
ca_cert = "{}"
[cloud]
url = "{}"
ca_cert = "{}"
token = "{}"
[storage]
data_dir = "{}"
{extra}
"#,
            lab.ad.base_dn,
            lab.ad.service_account_upn,
            lab.ad.service_account_password,
            lab.ad.ldaps_url,
            lab.ad.ca_cert.display(),
            self.url,
            self.dir.join("cloud/tls/cert.pem").display(),
            self.sync_token.expose(),
            self.dir.join("agent").display()
        )
    }

    /// GET a SCIM path as the admin; the JSON body.
    pub async fn scim_get(&self, path: &str) -> serde_json::Value {
        let response = self
            .http
            .get(format!("{}/scim/v2{path}", self.url))
            .bearer_auth(self.admin_token.expose())
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    /// The cloud Users (live) whose userName matches.
    pub async fn user_by_name(&self, user_name: &str) -> Option<serde_json::Value> {
        let filter = format!("userName eq \"{user_name}\"");
        let list = self
            .http
            .get(format!("{}/scim/v2/Users", self.url))
            .query(&[("filter", filter)])
            .bearer_auth(self.admin_token.expose())
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        list["Resources"]
            .as_array()
            .and_then(|r| r.first().cloned())
    }
}
