//! The admin API, sign-in, licenses, soft delete and audit over real HTTPS, on both stores.
// Scenario functions run under macro-generated #[test]s, which clippy does not see as tests.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{Backend, TestCloud};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SYNC_EXT: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";

async fn create_user(c: &TestCloud, body: Value) -> Value {
    let r = c
        .call(Method::POST, "/api/v1/users", Some(&c.admin), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

/// The user listing (its password, lockout and licenses read for all users at once) says of
/// each user what the user's own view says.
async fn listing_shows_each_users_view(c: &TestCloud) {
    let listing = c
        .call(Method::GET, "/api/v1/users", Some(&c.admin), None)
        .await;
    assert_eq!(listing.status, StatusCode::OK, "{}", listing.body);
    let users = listing.body["users"].as_array().unwrap();
    assert!(!users.is_empty());
    for listed in users {
        let path = format!("/api/v1/users/{}", listed["id"].as_str().unwrap());
        let view = c.call(Method::GET, &path, Some(&c.admin), None).await;
        assert_eq!(listed, &view.body);
    }
}

async fn cloud_users_sign_in_and_change_passwords(backend: Backend) {
    let c = TestCloud::start(backend, "admin_signin").await;
    // Without a password: a temporary one that must be changed.
    let u = create_user(
        &c,
        json!({"userPrincipalName": "amy@corp.test", "displayName": "Amy"}),
    )
    .await;
    assert_eq!(u["source"], "cloud");
    let temporary = u["temporary_password"].as_str().unwrap().to_owned();
    let r = c.sign_in("AMY@corp.test", &temporary).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.body["error"], "password_change_required");
    let change_token = r.body["change_token"].as_str().unwrap().to_owned();
    // The change-only token is good for nothing else.
    let r = c
        .call(Method::GET, "/api/v1/users", Some(&change_token), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let weak = json!({"old_password": temporary, "new_password": "short"});
    let r = c
        .call(
            Method::POST,
            "/api/v1/me/password",
            Some(&change_token),
            Some(weak),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("policy_violation"))
    );
    let change = json!({"old_password": temporary, "new_password": "Amy's new pass 1"});
    let r = c
        .call(
            Method::POST,
            "/api/v1/me/password",
            Some(&change_token),
            Some(change),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        c.sign_in("amy@corp.test", &temporary).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = c.sign_in("amy@corp.test", "Amy's new pass 1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["token"].as_str().unwrap().starts_with("ids_"));

    // With a password: signs in at once; unknown users and wrong passwords look the same.
    create_user(
        &c,
        json!({"userPrincipalName": "ben@corp.test", "password": "Ben-Passw0rd"}),
    )
    .await;
    assert_eq!(
        c.sign_in("ben@corp.test", "Ben-Passw0rd").await.status,
        StatusCode::OK
    );
    let wrong = c.sign_in("ben@corp.test", "nope").await;
    let unknown = c.sign_in("nobody@corp.test", "nope").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body["error"], "invalid_credentials");

    // Admin reset with require_change.
    let id = u["id"].as_str().unwrap();
    let r = c
        .call(
            Method::POST,
            &format!("/api/v1/users/{id}/password-reset"),
            Some(&c.admin),
            Some(json!({"require_change": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["written_back"], false);
    let reset = r.body["temporary_password"].as_str().unwrap();
    assert_eq!(
        c.sign_in("amy@corp.test", reset).await.body["error"],
        "password_change_required"
    );
    let r = c
        .call(
            Method::POST,
            &format!("/api/v1/users/{id}/password-reset"),
            Some(&c.admin),
            Some(json!({"new_password": "Chosen-by-admin-9", "require_change": false})),
        )
        .await;
    assert!(r.body.get("temporary_password").is_none(), "{}", r.body);
    assert_eq!(
        c.sign_in("amy@corp.test", "Chosen-by-admin-9").await.status,
        StatusCode::OK
    );

    // Disabled accounts are refused.
    c.call(
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        Some(&c.admin),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": false}]}),
        ),
    )
    .await;
    let r = c.sign_in("amy@corp.test", "Chosen-by-admin-9").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["error"], "account_disabled");

    // Bad bodies are named.
    let r = c
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&c.admin),
            Some(json!({"displayName": "x"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("userPrincipalName"));
    let r = c
        .call(
            Method::POST,
            "/api/v1/signin",
            None,
            Some(json!({"username": "a", "pasword": "b"})),
        )
        .await;
    assert!(
        r.body["message"].as_str().unwrap().contains("pasword"),
        "{}",
        r.body
    );
    c.stop().await;
}

async fn lockout_and_synced_password_verifiers(backend: Backend) {
    let c = TestCloud::start(backend, "admin_lockout").await;
    let r = c
        .call(
            Method::PUT,
            "/api/v1/tenant/settings",
            Some(&c.admin),
            Some(
                json!({"lockout": {"threshold": 3, "window_seconds": 60, "duration_seconds": 120}}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A synced user signs in with a PPH1_MD4 verifier of the on-premises password.
    let id = c
        .scim_user(
            &c.sync,
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", SYNC_EXT],
                   "userName": "jill@lab.test", SYNC_EXT: {"source": "on_premises"}}),
        )
        .await;
    let nt = idbridge_phs::NtHash::from_password("Jill's pässword 🔑");
    let verifier =
        idbridge_phs::PhsVerifier::compute(&nt, 1000, &mut rand::thread_rng()).to_string();
    let path = format!("/api/v1/sync/users/{id}/password-hash");
    let r = c
        .call(
            Method::PUT,
            &path,
            Some(&c.admin),
            Some(json!({"verifier": verifier})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "only the sync agent sends verifiers"
    );
    let r = c
        .call(
            Method::PUT,
            &path,
            Some(&c.sync),
            Some(json!({"verifier": "v1;PPH1_MD4,zz,1,00;"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = c
        .call(
            Method::PUT,
            &path,
            Some(&c.sync),
            Some(json!({"verifier": verifier})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        c.sign_in("jill@lab.test", "Jill's pässword 🔑")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        c.sign_in("jill@lab.test", "Jill's password 🔑")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // On-premises users' passwords go through the agent, and only for premium users.
    let r = c
        .call(
            Method::POST,
            &format!("/api/v1/users/{id}/password-reset"),
            Some(&c.admin),
            Some(json!({"require_change": false})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_eligible"))
    );

    // Two more failures reach the threshold of 3: locked, even with the right password.
    for _ in 0..2 {
        assert_eq!(
            c.sign_in("jill@lab.test", "wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = c.sign_in("jill@lab.test", "Jill's pässword 🔑").await;
    assert_eq!(r.status, StatusCode::LOCKED, "{}", r.body);
    assert_eq!(r.body["error"], "locked");
    let view = c
        .call(
            Method::GET,
            &format!("/api/v1/users/{id}"),
            Some(&c.admin),
            None,
        )
        .await;
    assert!(view.body["lockedUntil"].is_string(), "{}", view.body);
    listing_shows_each_users_view(&c).await;
    c.clock.advance(time::Duration::seconds(121));
    assert_eq!(
        c.sign_in("jill@lab.test", "Jill's pässword 🔑")
            .await
            .status,
        StatusCode::OK
    );
    c.stop().await;
}

async fn licenses_have_seats(backend: Backend) {
    let c = TestCloud::start(backend, "admin_licenses").await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let u = create_user(
            &c,
            json!({"userPrincipalName": format!("l{n}@corp.test"), "password": "Lic-passw0rd"}),
        )
        .await;
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    let assign = |id: String, sku: &'static str| {
        let c = &c;
        async move {
            c.call(
                Method::POST,
                &format!("/api/v1/users/{id}/licenses"),
                Some(&c.admin),
                Some(json!({"sku": sku})),
            )
            .await
        }
    };
    for id in &ids[..3] {
        let r = assign(id.clone(), "premium").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["licenses"], json!(["premium"]));
    }
    // Assigning twice is idempotent; the fourth seat does not exist.
    assert_eq!(
        assign(ids[0].clone(), "premium").await.status,
        StatusCode::OK
    );
    let r = assign(ids[3].clone(), "premium").await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (StatusCode::CONFLICT, Some("no_seats"))
    );
    assert!(r.body["message"].as_str().unwrap().contains("all 3 seats"));
    let r = assign(ids[3].clone(), "platinum").await;
    assert_eq!(r.body["error"], "unknown_sku");
    assert!(r.body["message"].as_str().unwrap().contains("premium"));
    // Licenses show in SCIM as entitlements.
    let scim = c
        .call(
            Method::GET,
            &format!("/scim/v2/Users/{}", ids[0]),
            Some(&c.admin),
            None,
        )
        .await;
    assert_eq!(
        scim.body["entitlements"],
        json!([{"value": "premium", "type": "license"}])
    );
    let r = c
        .call(
            Method::DELETE,
            &format!("/api/v1/users/{}/licenses/premium", ids[0]),
            Some(&c.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["licenses"], json!([]));
    assert_eq!(
        assign(ids[3].clone(), "premium").await.status,
        StatusCode::OK
    );
    listing_shows_each_users_view(&c).await;
    c.stop().await;
}

async fn soft_delete_restore_purge(backend: Backend) {
    let c = TestCloud::start(backend, "admin_softdelete").await;
    let u = create_user(
        &c,
        json!({"userPrincipalName": "dan@corp.test", "password": "Dan-passw0rd"}),
    )
    .await;
    let id = u["id"].as_str().unwrap().to_owned();
    let g = c
        .call(
            Method::POST,
            "/scim/v2/Groups",
            Some(&c.admin),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                        "displayName": "Team", "members": [{"value": id}]}),
            ),
        )
        .await;
    let gid = g.body["id"].as_str().unwrap().to_owned();

    let r = c
        .call(
            Method::DELETE,
            &format!("/api/v1/users/{id}"),
            Some(&c.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        c.sign_in("dan@corp.test", "Dan-passw0rd").await.status,
        StatusCode::UNAUTHORIZED
    );
    let deleted = c
        .call(Method::GET, "/api/v1/deleted-users", Some(&c.admin), None)
        .await;
    assert_eq!(deleted.body["users"][0]["id"], id.as_str());
    assert_eq!(deleted.body["users"][0]["name"], "dan@corp.test");
    // The deleted user still holds its name, and the message says which object and what to do.
    let r = c
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&c.admin),
            Some(json!({"userPrincipalName": "dan@corp.test"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let message = r.body["message"].as_str().unwrap();
    assert!(
        message.contains(&id) && message.contains("restore"),
        "{message}"
    );

    let r = c
        .call(
            Method::POST,
            &format!("/api/v1/deleted-users/{id}/restore"),
            Some(&c.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        c.sign_in("dan@corp.test", "Dan-passw0rd").await.status,
        StatusCode::OK
    );

    // Purge: the user is gone for good, its memberships too, and the name is free again.
    c.call(
        Method::DELETE,
        &format!("/api/v1/users/{id}"),
        Some(&c.admin),
        None,
    )
    .await;
    let r = c
        .call(
            Method::DELETE,
            &format!("/api/v1/deleted-users/{id}"),
            Some(&c.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let group = c
        .call(
            Method::GET,
            &format!("/scim/v2/Groups/{gid}"),
            Some(&c.admin),
            None,
        )
        .await;
    assert!(group.body.get("members").is_none(), "{}", group.body);
    create_user(&c, json!({"userPrincipalName": "dan@corp.test"})).await;

    // Groups follow the same lifecycle; retention purges what nobody restored.
    let r = c
        .call(
            Method::DELETE,
            &format!("/api/v1/groups/{gid}"),
            Some(&c.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = c
        .call(Method::GET, "/api/v1/deleted-groups", Some(&c.admin), None)
        .await;
    assert_eq!(r.body["groups"][0]["id"], gid.as_str());
    let directory = c.directory().await;
    assert_eq!(directory.purge_expired().await.unwrap(), 0);
    c.clock.advance(time::Duration::days(31));
    assert_eq!(directory.purge_expired().await.unwrap(), 1);
    let r = c
        .call(
            Method::POST,
            &format!("/api/v1/deleted-groups/{gid}/restore"),
            Some(&c.admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    c.stop().await;
}

async fn audit_records_who_did_what_without_secrets(backend: Backend) {
    let c = TestCloud::start(backend, "admin_audit").await;
    create_user(
        &c,
        json!({"userPrincipalName": "eva@corp.test", "password": "Audit-Secr3t!"}),
    )
    .await;
    c.sign_in("eva@corp.test", "Wrong-Secr3t!").await;
    let r = c
        .call(Method::GET, "/api/v1/audit?limit=50", Some(&c.admin), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let events = r.body["events"].as_array().unwrap();
    let find = |action: &str| {
        events
            .iter()
            .find(|e| e["action"] == action)
            .cloned()
            .unwrap_or_else(|| panic!("no {action} event in {events:?}"))
    };
    assert_eq!(find("user.create")["actor"], "token:test-Admin");
    assert_eq!(find("signin")["outcome"], "failure");
    let text = r.body.to_string();
    assert!(!text.contains("Secr3t"), "a password reached the audit log");
    let r = c
        .call(
            Method::GET,
            "/api/v1/audit?action=signin",
            Some(&c.admin),
            None,
        )
        .await;
    assert!(r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["action"] == "signin"));
    let r = c
        .call(Method::GET, "/api/v1/audit?limit=abc", Some(&c.admin), None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    c.stop().await;
}

on_both_backends!(
    cloud_users_sign_in_and_change_passwords,
    lockout_and_synced_password_verifiers,
    licenses_have_seats,
    soft_delete_restore_purge,
    audit_records_who_did_what_without_secrets,
);
