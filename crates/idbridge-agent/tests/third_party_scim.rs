//! Export to a third-party SCIM 2.0 server (the Python reference server `scim2-server`, RFC 7643
//! schemas only, Bulk offered): the `core` dialect carries the anchor as `externalId`, matches on
//! it, and sends nothing of idbridge's own schemas.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::ad::Ad;
use common::TestCloud;
use idbridge_agent::sync::{Profile, SyncContext};
use idbridge_core::SystemClock;
use idbridge_testkit::Lab;
use serde_json::{json, Value};

const TOKEN: &str = "third-party-test-token";

/// The server process, killed when the test ends however it ends.
struct ScimServer {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl ScimServer {
    async fn start(lab: &Lab) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(lab.scim_reference_server().unwrap())
            .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
            .args(["--bearer-token", TOKEN])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..100 {
            if server.get("/ServiceProviderConfig").await.is_some() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the SCIM reference server did not start on {}", server.url);
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())?;
        response.json().await.ok()
    }

    async fn users(&self) -> Vec<Value> {
        let list = self.get("/Users?count=1000").await.unwrap();
        list["Resources"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_objects_reach_a_third_party_scim_server() {
    let lab = Lab::load().unwrap();
    let server = ScimServer::start(&lab).await;
    let mut test_ou = lab.test_ou("scim3p").await.unwrap();
    let cloud = TestCloud::start("scim3p").await;
    let ou = test_ou.dn.clone();
    let mut ad = Ad::new(&lab, &mut test_ou);
    let suffix = &idbridge_testkit::unique_suffix()[..6];
    let name = |n: &str| format!("{n}{suffix}");
    let una = ad
        .add_user(&ou, &name("una"), &[("title", "Analyst")])
        .await;
    let vic = ad.add_user(&ou, &name("vic"), &[]).await;
    ad.add_group(&ou, &name("crew"), &[&una, &vic]).await;
    let config = cloud.agent_config(
        &lab,
        &format!(
            "[sync]\ninclude_ous = [\"{ou}\"]\nscim_url = \"{}\"\nscim_token = \"{TOKEN}\"\n\
             scim_dialect = \"core\"\n",
            server.url
        ),
    );
    let sync = SyncContext::open(&config, Arc::new(SystemClock))
        .await
        .unwrap();

    let first = sync.run(Profile::Cycle).await.unwrap();
    assert_eq!(
        (first.status.as_str(), first.counts.adds),
        ("success", 3),
        "{first:?} {:?}",
        sync.errors().await.unwrap()
    );
    let users = server.users().await;
    assert_eq!(users.len(), 2, "{users:?}");
    let una_doc = users
        .iter()
        .find(|u| u["userName"] == ad.upn(&name("una")).as_str())
        .unwrap();
    assert_eq!(una_doc["title"], "Analyst");
    let anchor = una_doc["externalId"].as_str().unwrap().to_owned();
    assert!(!anchor.is_empty());
    assert!(
        una_doc
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("urn:idbridge")),
        "nothing of idbridge's schemas: {una_doc}"
    );
    let groups = server.get("/Groups").await.unwrap();
    let crew = &groups["Resources"][0];
    let members: HashSet<&str> = crew["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    let ids: HashSet<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(members, ids, "members are the server's ids: {crew}");

    // A change travels as a PATCH.
    ad.replace(&una, "title", "Lead Analyst").await;
    let changed = sync.run(Profile::Cycle).await.unwrap();
    assert_eq!(changed.counts.updates, 1, "{changed:?}");
    let una_now = server
        .get(&format!("/Users/{}", una_doc["id"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(una_now["title"], "Lead Analyst");

    // A user the server already holds under the anchor (a create whose answer was lost) is
    // joined by externalId, not duplicated.
    let wes = ad.add_user(&ou, &name("wes"), &[]).await;
    let staged = SyncContext::open(
        &cloud.agent_config(
            &lab,
            &format!(
                "[sync]\ninclude_ous = [\"{ou}\"]\nscim_url = \"{}\"\nscim_token = \"{TOKEN}\"\n\
                 scim_dialect = \"core\"\nstaging = true\n",
                server.url
            ),
        ),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    staged.run(Profile::Cycle).await.unwrap();
    let pending = staged.pending().await.unwrap();
    let wes_export = pending.iter().find(|p| p.dn == wes).unwrap();
    let created = server
        .http
        .post(format!("{}/Users", server.url))
        .bearer_auth(TOKEN)
        .json(&wes_export.doc)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let joined = sync.run(Profile::Cycle).await.unwrap();
    assert_eq!(
        joined.counts.errors,
        0,
        "{:?}",
        sync.errors().await.unwrap()
    );
    let wes_upn = ad.upn(&name("wes"));
    let holders = server
        .users()
        .await
        .into_iter()
        .filter(|u| u["userName"] == wes_upn.as_str())
        .count();
    assert_eq!(holders, 1, "no duplicate");

    // Deletion in AD deletes on the server (soft delete is the cloud's; a generic server
    // deletes).
    ad.delete(&vic).await;
    let gone = sync.run(Profile::Cycle).await.unwrap();
    assert_eq!(gone.counts.deletes, 1, "{gone:?}");
    assert!(server
        .users()
        .await
        .iter()
        .all(|u| u["userName"] != json!(ad.upn(&name("vic")))));

    drop(ad);
    test_ou.remove().await.unwrap();
}
