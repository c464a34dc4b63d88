//! A real cloud directory per test: HTTPS on a loopback port, SQLite in a fresh directory or a
//! fresh PostgreSQL database, and a controllable clock.

// Test support: failing loudly is the point, and each test binary uses a different subset.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use std::path::PathBuf;
use std::sync::Arc;

use idbridge_cloud::{CloudConfig, Directory, RunningServer, Scope};
use idbridge_core::ManualClock;
use idbridge_testkit::{unique_suffix, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestCloud {
    pub server: Option<RunningServer>,
    pub http: reqwest::Client,
    pub base: String,
    pub admin: String,
    pub sync: String,
    pub read: String,
    pub clock: Arc<ManualClock>,
    pub config: CloudConfig,
    dir: PathBuf,
    db: Option<TestDatabase>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestCloud {
    pub async fn start(backend: Backend, label: &str) -> Self {
        Self::start_with(backend, label, "").await
    }

    /// `extra` is appended to the generated cloud.toml.
    pub async fn start_with(backend: Backend, label: &str, extra: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("idbridge-cloud-{label}-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(TestDatabase::create(label).await.unwrap()),
        };
        let mut toml = format!(
            "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = \"{}\"\n",
            dir.display()
        );
        if let Some(db) = &db {
            toml.push_str(&format!("database_url = \"{}\"\n", db.url()));
        }
        toml.push_str("[[licenses]]\nsku = \"premium\"\nseats = 3\n");
        toml.push_str(extra);
        let config = CloudConfig::parse(&toml).unwrap();
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let directory = idbridge_cloud::open_directory(config.clone(), clock.clone())
            .await
            .unwrap();
        let token = |scope| {
            let directory = directory.clone();
            async move {
                directory
                    .create_token(&format!("test-{scope:?}"), scope)
                    .await
                    .unwrap()
                    .expose()
                    .to_owned()
            }
        };
        let (admin, sync, read) = (
            token(Scope::Admin).await,
            token(Scope::Sync).await,
            token(Scope::Read).await,
        );
        let server = idbridge_cloud::start(config.clone(), clock.clone())
            .await
            .unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(server.ca_cert_pem.as_bytes()).unwrap(),
            )
            .tls_built_in_root_certs(false)
            .build()
            .unwrap();
        // The certificate names localhost and 127.0.0.1; use the address so no resolver is asked.
        let base = format!("https://127.0.0.1:{}", server.addr.port());
        Self {
            server: Some(server),
            http,
            base,
            admin,
            sync,
            read,
            clock,
            config,
            dir,
            db,
        }
    }

    /// A second directory over the same store, for what the server does on its own schedule.
    pub async fn directory(&self) -> Arc<Directory> {
        idbridge_cloud::open_directory(self.config.clone(), self.clock.clone())
            .await
            .unwrap()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn raw(&self, method: Method, path: &str, token: &str, body: Vec<u8>) -> Reply {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
        if let Some(db) = self.db.take() {
            db.drop_database().await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// POSTs a SCIM user and returns its id.
    pub async fn scim_user(&self, token: &str, body: Value) -> String {
        let r = self
            .call(Method::POST, "/scim/v2/Users", Some(token), Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    pub async fn sign_in(&self, username: &str, password: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/v1/signin",
            None,
            Some(serde_json::json!({"username": username, "password": password})),
        )
        .await
    }
}

/// Runs each listed scenario once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Postgres).await })*
        }
    };
}
