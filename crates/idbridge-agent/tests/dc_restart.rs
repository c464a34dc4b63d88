//! The domain controller going away in the middle of an import: the run waits for it, connects
//! again and finishes, with nothing lost and nothing deprovisioned. This stops the shared lab DC,
//! so it is the only test in its binary (cargo runs test binaries one after another).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ad::Ad;
use idbridge_agent::sync::{Profile, SyncContext};
use idbridge_core::SystemClock;

const USERS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dc_restart_during_an_import_is_survived() {
    let (lab, mut test_ou, cloud) = common::lab_ou_and_cloud("restart").await;
    let ou = test_ou.dn.clone();
    let mut ad = Ad::new(&lab, &mut test_ou);
    // Unique names: an aborted earlier run may have left its users behind.
    let prefix = format!("rs{}", &idbridge_testkit::unique_suffix()[..6]);
    ad.add_bulk_users(&ou, &prefix, USERS).await;
    let config = cloud.agent_config(&lab, &format!("[sync]\ninclude_ous = [\"{ou}\"]\n"));
    let sync = SyncContext::open(&config, Arc::new(SystemClock))
        .await
        .unwrap();

    let outage = async {
        // The run is recorded before it first reads the DC: stop the DC right then.
        while sync.history(1).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stopped = Instant::now();
        let lab_stop = lab.clone();
        tokio::task::spawn_blocking(move || lab_stop.stop_dc())
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let lab_start = lab.clone();
        let start = tokio::task::spawn_blocking(move || lab_start.start_dc());
        // The outage ends when the DC listens again, not when `./lab dc` has also checked the
        // sample directory and accounts (seconds more on a slow machine).
        let address = lab.ad.ldaps_url.trim_start_matches("ldaps://").to_owned();
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let down_for = stopped.elapsed();
        start.await.unwrap().unwrap();
        down_for
    };
    let (report, down_for) = tokio::join!(sync.run(Profile::FullCycle), outage);
    let report = report.unwrap();
    assert_eq!(report.status, "success", "{report:?}");
    assert_eq!(report.counts.adds, USERS as i64, "{report:?}");
    assert_eq!(report.counts.deletes, 0, "{report:?}");
    assert!(
        report.duration_ms >= down_for.as_millis() / 2,
        "the run waited for the DC ({report:?}, DC down for {down_for:?})"
    );
    let users = cloud.scim_get("/Users?count=1").await;
    assert_eq!(users["totalResults"], USERS, "{users}");

    // The next cycle finds nothing to do: the interrupted read left no gap and no duplicate.
    let again = sync.run(Profile::FullCycle).await.unwrap();
    assert_eq!(
        (
            again.counts.adds,
            again.counts.updates,
            again.counts.deletes
        ),
        (0, 0, 0),
        "{again:?}"
    );

    drop(ad);
    test_ou.reconnect(&lab).await.unwrap();
    test_ou.remove().await.unwrap();
}
