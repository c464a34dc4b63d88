//! The agent killed between sending an export and recording it: the next run confirms through
//! the cloud (hard match on the anchor) and creates no duplicate. The kill is real: the
//! `idbridge` process aborts at the crash point `export-before-confirm`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "../../idbridge-agent/tests/common/mod.rs"]
mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use common::ad::Ad;
use common::TestCloud;
use idbridge_agent::crash_point;
use idbridge_testkit::Lab;

/// The signal `std::process::abort` raises.
const SIGABRT: i32 = 6;

fn idbridge(config: &Path, args: &[&str], crash_at: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idbridge"));
    command.arg("sync").args(args).arg("--config").arg(config);
    command.env_remove(crash_point::ENV);
    if let Some(point) = crash_at {
        command.env(crash_point::ENV, point);
    }
    command.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_between_export_and_confirm_creates_no_duplicate() {
    let lab = Lab::load().unwrap();
    let mut test_ou = lab.test_ou("crash").await.unwrap();
    let cloud = TestCloud::start("crash").await;
    let ou = test_ou.dn.clone();
    let mut ad = Ad {
        ou: &mut test_ou,
        realm: lab.ad.realm.to_lowercase(),
    };
    let names =
        ["kit", "kai", "kim"].map(|n| format!("{n}{}", &idbridge_testkit::unique_suffix()[..6]));
    for name in &names {
        ad.add_user(&ou, name, &[]).await;
    }
    let config = cloud.dir.join("agent.toml");
    std::fs::write(
        &config,
        cloud.agent_toml(&lab, &format!("[sync]\ninclude_ous = [\"{ou}\"]\n")),
    )
    .unwrap();

    let killed = idbridge(&config, &["cycle"], Some("export-before-confirm"));
    assert_eq!(
        killed.status.signal(),
        Some(SIGABRT),
        "the run must die at the crash point: {:?} {}",
        killed.status,
        String::from_utf8_lossy(&killed.stderr)
    );
    // A full cycle exports pages while it imports them: the first confirmation may come
    // before every test user was sent, but at least one was created and not recorded.
    let mut created_before_death = 0;
    for name in &names {
        if cloud.user_by_name(&ad.upn(name)).await.is_some() {
            created_before_death += 1;
        }
    }
    assert!(
        created_before_death > 0,
        "the cloud created a user before the agent died"
    );

    let resumed = idbridge(&config, &["cycle", "--json"], None);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(report["status"], "success", "{report}");
    assert_eq!(report["adds"], names.len(), "joined by anchor: {report}");
    let users = cloud.scim_get("/Users?count=1").await;
    assert_eq!(users["totalResults"], names.len(), "no duplicates: {users}");

    let history = idbridge(&config, &["history", "--json"], None);
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "interrupted"),
        "the killed run is recorded as interrupted: {runs}"
    );

    drop(ad);
    test_ou.remove().await.unwrap();
}
