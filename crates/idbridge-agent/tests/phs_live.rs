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
use idbridge_core::ObjectGuid;
use idbridge_testkit::{unique_suffix, Lab};
use ldap3::{Scope as LdapScope, SearchEntry};
use serde_json::json;

fn quoted_utf16(password: &str) -> HashSet<Vec<u8>> {
    let bytes = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    HashSet::from([bytes])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_prem_password_changes_reach_cloud_sign_in() {
    let lab = Lab::load().unwrap();
    let mut ou = lab.test_ou("phs").await.unwrap();
    let name = format!("phs{}", &unique_suffix()[..6]);
    let upn = format!("{name}@{}", lab.ad.realm.to_lowercase());
    let dn = format!("CN={name},{}", ou.dn);
    let first = "Först-pässword 🔑 1";
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
        (b"unicodePwd".to_vec(), quoted_utf16(first)),
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

    // A cloud directory with this user joined by its anchor, as the sync engine leaves it.
    let test_cloud = TestCloud::start("phs").await;
    let (http, url, token, dir) = (
        test_cloud.http.clone(),
        test_cloud.url.clone(),
        test_cloud.sync_token.clone(),
        test_cloud.dir.clone(),
    );
    let ext = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";
    let created = http
        .post(format!("{url}/scim/v2/Users"))
        .bearer_auth(token.expose())
        .json(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ext],
                      "userName": upn, ext: {"source": "on_premises", "immutableId": guid.to_base64(),
                                             "onPremisesDistinguishedName": dn}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let sign_in = |password: &'static str| {
        let (http, url, upn) = (http.clone(), url.clone(), upn.clone());
        async move {
            http.post(format!("{url}/api/v1/signin"))
                .json(&json!({"username": upn, "password": password}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(sign_in(first).await, 401, "no verifier yet");

    let config = test_cloud.agent_config(&lab, "");
    let cloud = CloudClient::new(&config.cloud).unwrap();
    let state: StateFile<PhsState> = StateFile::new(&config.storage.data_dir, "phs.json");
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
    ou.ldap()
        .modify(
            &dn,
            vec![ldap3::Mod::Replace(
                b"unicodePwd".to_vec(),
                quoted_utf16(second),
            )],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
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
