//! Cloud directory throughput over real HTTPS, on SQLite and (with `--postgres`) PostgreSQL.
//!
//! `cargo bench -p idbridge-cloud --bench cloud [-- --postgres] [--users N]`
//!
//! Each figure is also printed as a ratio to `GET /healthz` measured in the same run with the same
//! client and concurrency: the cost of HTTPS and the router alone, so the ratio shows what the
//! directory adds and stays comparable across machines.

// A measuring tool reading its own server's replies; a missing field shows as Null.
#![allow(clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Instant;

use idbridge_cloud::{CloudConfig, Scope};
use idbridge_core::SystemClock;
use idbridge_testkit::{unique_suffix, TestDatabase};
use serde_json::{json, Value};

const CONCURRENCY: usize = 32;
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const SYNC_EXT: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> BenchResult<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            return Err(format!("{path}: {status} {text}").into());
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Runs `total` calls of `f(i)` with `CONCURRENCY` in flight; returns calls per second.
async fn rate<F, Fut>(total: usize, f: F) -> BenchResult<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = BenchResult<()>> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (f, next) = (f.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), Box<dyn std::error::Error + Send + Sync>>(());
                }
                f(i).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

struct Figures {
    backend: &'static str,
    rows: Vec<(&'static str, f64, &'static str)>,
}

async fn run(
    backend: &'static str,
    database_url: Option<String>,
    users: usize,
) -> BenchResult<Figures> {
    let dir = std::env::temp_dir().join(format!("idbridge-cloud-bench-{}", unique_suffix()));
    let mut toml = format!(
        "version = 1\n[server]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = \"{}\"\n",
        dir.display()
    );
    if let Some(url) = &database_url {
        toml.push_str(&format!("database_url = \"{url}\"\n"));
    }
    let config = CloudConfig::parse(&toml)?;
    let directory = idbridge_cloud::open_directory(config.clone(), Arc::new(SystemClock)).await?;
    let admin = directory
        .create_token("bench-admin", Scope::Admin)
        .await?
        .expose()
        .to_owned();
    let sync = directory
        .create_token("bench-sync", Scope::Sync)
        .await?
        .expose()
        .to_owned();
    let server = idbridge_cloud::start(config, Arc::new(SystemClock)).await?;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(
            server.ca_cert_pem.as_bytes(),
        )?)
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(CONCURRENCY)
        .build()?;
    let client = Arc::new(Client {
        http,
        base: format!("https://127.0.0.1:{}", server.addr.port()),
    });
    let mut rows = Vec::new();
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let c = client.clone();
    let baseline = rate(users, move |_| {
        let c = c.clone();
        async move {
            let r = c.http.get(format!("{}/healthz", c.base)).send().await?;
            r.error_for_status()?.bytes().await?;
            Ok(())
        }
    })
    .await?;
    rows.push(("GET /healthz (baseline)", baseline, "req/s"));

    let (c, t) = (client.clone(), admin.clone());
    let creates = rate(users, move |i| {
        let (c, t) = (c.clone(), t.clone());
        async move {
            let body = json!({"schemas": [USER], "userName": format!("u{i}@bench.test"), "displayName": format!("User {i}"),
                              "emails": [{"value": format!("u{i}@bench.test"), "type": "work"}]});
            c.send(reqwest::Method::POST, "/scim/v2/Users", Some(&t), Some(&body)).await?;
            Ok(())
        }
    })
    .await?;
    rows.push(("SCIM create (single)", creates, "req/s"));

    let list = client
        .send(
            get.clone(),
            "/scim/v2/Users?count=100000&attributes=id",
            Some(&admin),
            None,
        )
        .await?;
    let ids: Arc<Vec<String>> = Arc::new(
        list["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect(),
    );
    let (c, t, i2) = (client.clone(), admin.clone(), ids.clone());
    let by_id = rate(users * 2, move |i| {
        let (c, t, ids) = (c.clone(), t.clone(), i2.clone());
        async move {
            let id = ids.get(i % ids.len().max(1)).cloned().unwrap_or_default();
            c.send(
                reqwest::Method::GET,
                &format!("/scim/v2/Users/{id}"),
                Some(&t),
                None,
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    rows.push(("SCIM GET by id", by_id, "req/s"));

    let (c, t) = (client.clone(), admin.clone());
    let by_name = rate(users * 2, move |i| {
        let (c, t) = (c.clone(), t.clone());
        async move {
            let path = format!(
                "/scim/v2/Users?filter=userName%20eq%20%22u{}@bench.test%22",
                i % users
            );
            let found = c.send(reqwest::Method::GET, &path, Some(&t), None).await?;
            if found["totalResults"] != 1 {
                return Err(format!("{path}: {found}").into());
            }
            Ok(())
        }
    })
    .await?;
    rows.push(("SCIM GET userName eq", by_name, "req/s"));

    let batches = 5;
    let start = Instant::now();
    for b in 0..batches {
        let ops: Vec<Value> = (0..1000)
            .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"),
                            "data": {"schemas": [USER], "userName": format!("bulk{b}-{i}@bench.test")}}))
            .collect();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops});
        let reply = client
            .send(post.clone(), "/scim/v2/Bulk", Some(&admin), Some(&body))
            .await?;
        let failed = reply["Operations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["status"] != "201")
            .count();
        if failed > 0 {
            return Err(format!("{failed} bulk operations failed").into());
        }
    }
    rows.push((
        "SCIM Bulk create (1000/request)",
        (batches * 1000) as f64 / start.elapsed().as_secs_f64(),
        "objects/s",
    ));

    // Sign-in of synced users against PPH1_MD4 verifiers at 1,000 iterations.
    let signers = 200.min(users);
    let password = "Bench-pässword-1";
    let nt = idbridge_phs::NtHash::from_password(password);
    for i in 0..signers {
        let body = json!({"schemas": [USER, SYNC_EXT], "userName": format!("s{i}@bench.test"), SYNC_EXT: {"source": "on_premises"}});
        let created = client
            .send(post.clone(), "/scim/v2/Users", Some(&sync), Some(&body))
            .await?;
        let id = created["id"].as_str().unwrap_or_default();
        let verifier =
            idbridge_phs::PhsVerifier::compute(&nt, 1000, &mut rand::thread_rng()).to_string();
        client
            .send(
                reqwest::Method::PUT,
                &format!("/api/v1/sync/users/{id}/password-hash"),
                Some(&sync),
                Some(&json!({"verifier": verifier})),
            )
            .await?;
    }
    let c = client.clone();
    let signins = rate(signers * 5, move |i| {
        let c = c.clone();
        async move {
            let body =
                json!({"username": format!("s{}@bench.test", i % signers), "password": password});
            c.send(reqwest::Method::POST, "/api/v1/signin", None, Some(&body))
                .await?;
            Ok(())
        }
    })
    .await?;
    rows.push(("sign-in, PHS verifier (1000 iterations)", signins, "req/s"));

    server.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Figures { backend, rows })
}

fn print(f: &Figures) {
    let baseline = f.rows.first().map_or(1.0, |r| r.1);
    println!("\n{} ({} concurrent clients)", f.backend, CONCURRENCY);
    println!(
        "{:<42} {:>12} {:<10} {:>16}",
        "measure", "rate", "unit", "ratio to healthz"
    );
    for (name, value, unit) in &f.rows {
        println!(
            "{name:<42} {value:>12.0} {unit:<10} {:>16.2}",
            value / baseline
        );
    }
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let users = args
        .iter()
        .position(|a| a == "--users")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(5000);
    let mut all = vec![run("SQLite", None, users).await?];
    if args.iter().any(|a| a == "--postgres") {
        let db = TestDatabase::create("bench").await?;
        let figures = run("PostgreSQL", Some(db.url().to_owned()), users).await;
        db.drop_database().await?;
        all.push(figures?);
    }
    for f in &all {
        print(f);
    }
    let results: Vec<Value> = all
        .iter()
        .map(|f| json!({"backend": f.backend, "concurrency": CONCURRENCY, "users": users,
                        "figures": f.rows.iter().map(|(n, v, u)| json!({"measure": n, "rate": v, "unit": u})).collect::<Vec<_>>()}))
        .collect();
    let out =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results/cloud.json");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
    println!("\nwritten to bench/results/cloud.json");
    Ok(())
}
