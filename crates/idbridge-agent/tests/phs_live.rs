//! Password hash sync end to end: the lab's Samba DC (replicated as the least-privilege
//! `idbridge-sync` account) -> agent -> a real cloud directory over HTTPS -> cloud sign-in.
// Scenario code under #[tokio::test]; failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::HashSet;

use common::TestCloud;

use idbridge_agent::cloud::CloudClient;
use idbridge_agent::phs::{self, Mode, PhsState};
use idbridge_agent::state::StateFile;
use idbridge_agent::AgentConfig;
use idbridge_core::ObjectGuid;
use idbridge_testkit::{unique_suffix, Lab, TestOu};
use ldap3::{Scope as LdapScope, SearchEntry};
use serde_json::json;

fn quoted_utf16(password: &str) -> HashSet<Vec<u8>> {
    let bytes = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    HashSet::from([bytes])
}

/// An AD user in the test OU with `password`, and its cloud user joined by anchor as the sync
/// engine leaves it (no verifier yet).
struct JoinedUser {
    upn: String,
    dn: String,
    guid: ObjectGuid,
}

async fn joined_user(ou: &mut TestOu, lab: &Lab, cloud: &TestCloud, password: &str) -> JoinedUser {
    let name = format!("phs{}", &unique_suffix()[..6]);
    let upn = format!("{name}@{}", lab.ad.realm.to_lowercase());
    let dn = format!("CN={name},{}", ou.dn);
    let attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
        (b"objectClass".to_vec(), HashSet::from([b"user".to_vec()])),
        (
            b"sAMAccountName".to_vec(),
            HashSet::from([name.clone().into_bytes()]),
        ),
        (
            b"userPrincipalName".to_vec(),
            HashSet::from([upn.clone().into_bytes()]),
        ),
        (b"unicodePwd".to_vec(), quoted_utf16(password)),
        (
            b"userAccountControl".to_vec(),
            HashSet::from([b"512".to_vec()]),
        ),
    ];
    ou.ldap().add(&dn, attrs).await.unwrap().success().unwrap();
    let (entries, _) = ou
        .ldap()
        .search(
            &dn,
            LdapScope::Base,
            "(objectClass=user)",
            vec!["objectGUID"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let entry = SearchEntry::construct(entries.into_iter().next().unwrap());
    let guid = ObjectGuid::from_bytes(&entry.bin_attrs["objectGUID"][0]).unwrap();
    let ext = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";
    let created = cloud
        .http
        .post(format!("{}/scim/v2/Users", cloud.url))
        .bearer_auth(cloud.sync_token.expose())
        .json(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ext],
                      "userName": upn, ext: {"source": "on_premises", "immutableId": guid.to_base64(),
                                             "onPremisesDistinguishedName": dn}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    JoinedUser { upn, dn, guid }
}

/// The agent's configuration for the test cloud, its client and its hash sync state.
fn agent(test_cloud: &TestCloud, lab: &Lab) -> (AgentConfig, CloudClient, StateFile<PhsState>) {
    let config = test_cloud.agent_config(lab, "");
    let cloud = CloudClient::new(&config.cloud).unwrap();
    let state = StateFile::new(&config.storage.data_dir, "phs.json");
    (config, cloud, state)
}

/// The HTTP status of a cloud sign-in.
async fn sign_in(cloud: &TestCloud, upn: &str, password: &str) -> u16 {
    cloud
        .http
        .post(format!("{}/api/v1/signin", cloud.url))
        .json(&json!({"username": upn, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// An on-premises password change, as the admin of the test OU.
async fn set_password(ou: &mut TestOu, dn: &str, password: &str) {
    ou.ldap()
        .modify(
            dn,
            vec![ldap3::Mod::Replace(
                b"unicodePwd".to_vec(),
                quoted_utf16(password),
            )],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_prem_password_changes_reach_cloud_sign_in() {
    let lab = Lab::load().unwrap();
    let mut ou = lab.test_ou("phs").await.unwrap();
    let first = "Först-pässword 🔑 1";
    // A cloud directory with this user joined by its anchor, as the sync engine leaves it.
    let test_cloud = TestCloud::start("phs").await;
    let user = joined_user(&mut ou, &lab, &test_cloud, first).await;
    let dir = test_cloud.dir.clone();
    let sign_in = |password: &'static str| sign_in(&test_cloud, &user.upn, password);
    assert_eq!(sign_in(first).await, 401, "no verifier yet");

    let (config, cloud, state) = agent(&test_cloud, &lab);
    let now = || "now".to_owned();

    let full = phs::run_once(&config, &cloud, &state, Mode::Full, now)
        .await
        .unwrap();
    assert_eq!(full.mode, "full");
    assert_eq!((full.sent, full.errors.len()), (1, 0), "{full:?}");
    assert!(
        full.skipped_machine >= 1,
        "the DC's own account is never sent: {full:?}"
    );
    assert_eq!(sign_in(first).await, 200);

    // An on-premises change: the new password works in the cloud, the old one no longer does.
    let second = "Zweites-Passwort-2";
    set_password(&mut ou, &user.dn, second).await;
    let delta = phs::run_once(&config, &cloud, &state, Mode::Delta, now)
        .await
        .unwrap();
    assert_eq!(delta.mode, "delta");
    assert_eq!(delta.sent, 1, "{delta:?}");
    assert_eq!(sign_in(second).await, 200);
    assert_eq!(sign_in(first).await, 401);

    // Nothing changed: nothing is sent.
    let idle = phs::run_once(&config, &cloud, &state, Mode::Delta, now)
        .await
        .unwrap();
    assert_eq!(idle.sent, 0, "{idle:?}");
    let saved = state.load().unwrap();
    assert_eq!(saved.last.unwrap().sent, 0);
    assert!(!std::fs::read_to_string(dir.join("agent/phs.json"))
        .unwrap()
        .contains(second));

    drop(test_cloud);
    ou.remove().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targeted_cycle_sends_the_changed_account_and_leaves_the_watermark() {
    let lab = Lab::load().unwrap();
    let mut ou = lab.test_ou("phs-targeted").await.unwrap();
    let test_cloud = TestCloud::start("phs-targeted").await;
    let first = "Erstes-Passwort-1";
    let user = joined_user(&mut ou, &lab, &test_cloud, first).await;
    let bystander = joined_user(&mut ou, &lab, &test_cloud, "Bystander-pass-1").await;
    let (config, cloud, state) = agent(&test_cloud, &lab);
    let now = || "now".to_owned();
    let full = phs::run_once(&config, &cloud, &state, Mode::Full, now)
        .await
        .unwrap();
    assert_eq!((full.sent, full.errors.len()), (2, 0), "{full:?}");
    let before = state.load().unwrap();

    // Both change their password; object sync reported only the first (and a GUID no object
    // has, as for an account deleted since).
    let second = "Zweites-Passw\u{f6}rt-\u{1F511}-2";
    set_password(&mut ou, &bystander.dn, "Bystander-pass-2").await;
    set_password(&mut ou, &user.dn, second).await;
    let changed = std::time::Instant::now();
    let gone = ObjectGuid::parse("5a5a5a5a-0000-4000-8000-00000000a5a5").unwrap();
    let targeted = phs::run_targeted(&config, &cloud, &state, &[gone, user.guid], now)
        .await
        .unwrap();
    eprintln!(
        "password change -> targeted cycle done (connect, fetch, verifier sent): {:?}",
        changed.elapsed()
    );
    assert_eq!(targeted.mode, "targeted");
    assert_eq!((targeted.replicated, targeted.sent), (1, 1), "{targeted:?}");
    assert_eq!(targeted.outcome, "completed_with_errors");
    let [error] = targeted.errors.as_slice() else {
        panic!("expected the unknown object as the one error: {targeted:?}");
    };
    assert_eq!(error.object_guid, gone.to_string());
    assert!(error.message.contains(&gone.to_string()), "{error:?}");

    assert_eq!(sign_in(&test_cloud, &user.upn, second).await, 200);
    assert_eq!(sign_in(&test_cloud, &user.upn, first).await, 401);
    // Not reported, not sent: the bystander's new password waits for the watermark cycle.
    assert_eq!(
        sign_in(&test_cloud, &bystander.upn, "Bystander-pass-2").await,
        401
    );

    // The watermark and the last watermark cycle are as the full cycle left them.
    let after = state.load().unwrap();
    assert_eq!(after.watermark, before.watermark);
    assert_eq!(after.last, before.last);
    assert_eq!(after.last_targeted.as_ref(), Some(&targeted));

    // The next delta is still the safety net: it brings both changes.
    let delta = phs::run_once(&config, &cloud, &state, Mode::Delta, now)
        .await
        .unwrap();
    assert_eq!(delta.sent, 2, "{delta:?}");
    assert_eq!(
        sign_in(&test_cloud, &bystander.upn, "Bystander-pass-2").await,
        200
    );
    assert_ne!(state.load().unwrap().watermark, before.watermark);

    let dir = test_cloud.dir.clone();
    drop(test_cloud);
    ou.remove().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
