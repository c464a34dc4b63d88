//! Password writeback end to end: a real cloud directory (in process, HTTPS), the agent's
//! channel (registered with a one-time token, outbound WebSocket), and the lab's Samba DC,
//! checked by binding to AD as the user.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::time::Duration;

use common::ad::Ad;
use common::TestCloud;
use idbridge_agent::sync::{Profile, SyncContext};
use idbridge_agent::writeback;
use idbridge_core::{Secret, SystemClock};
use idbridge_testkit::Lab;
use reqwest::Method;
use serde_json::json;

/// A simple bind as `upn`: Ok, or the LDAP code and the DC's diagnostic text.
async fn bind(lab: &Lab, upn: &str, password: &str) -> Result<(), (u32, String)> {
    let (conn, mut ldap) =
        ldap3::LdapConnAsync::with_settings(lab.ldap_settings().unwrap(), &lab.ad.ldaps_url)
            .await
            .unwrap();
    ldap3::drive!(conn);
    let result = ldap.simple_bind(upn, password).await.unwrap();
    let _ = ldap.unbind().await;
    match result.rc {
        0 => Ok(()),
        rc => Err((rc, result.text)),
    }
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn online(cloud: &TestCloud) -> bool {
    let (_, status) = cloud
        .api(Method::GET, "/agents", cloud.admin_token.expose(), None)
        .await;
    status["online"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_password_operations_reach_active_directory() {
    let lab = Lab::load().unwrap();
    let mut test_ou = lab.test_ou("writeback").await.unwrap();
    let mut cloud = TestCloud::start("writeback").await;
    let ou = test_ou.dn.clone();
    let mut ad = Ad::new(&lab, &mut test_ou);
    let suffix = &idbridge_testkit::unique_suffix()[..6];
    let name = |n: &str| format!("{n}{suffix}");
    let pam = ad.add_user(&ou, &name("pam"), &[]).await;
    let pam_upn = ad.upn(&name("pam"));
    let admin = cloud.admin_token.expose().to_owned();
    // The user reaches the cloud through object sync; writeback needs the premium license.
    let config = cloud.agent_config(&lab, &format!("[sync]\ninclude_ous = [\"{ou}\"]\n"));
    let sync = SyncContext::open(&config, std::sync::Arc::new(SystemClock))
        .await
        .unwrap();
    sync.run(Profile::Cycle).await.unwrap();
    let pam_cloud = cloud.user_by_name(&pam_upn).await.unwrap();
    let pam_id = pam_cloud["id"].as_str().unwrap().to_owned();

    // Not licensed: refused before anything is sent.
    let (status, body) = cloud
        .api(
            Method::POST,
            &format!("/users/{pam_id}/password-reset"),
            &admin,
            Some(json!({"new_password": "Second-pass-2!"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("not_eligible")),
        "{body}"
    );
    let (status, _) = cloud
        .api(
            Method::POST,
            &format!("/users/{pam_id}/licenses"),
            &admin,
            Some(json!({"sku": "premium"})),
        )
        .await;
    assert!(status < 300);

    // No agent connected: 503, nothing changed.
    let (status, body) = cloud
        .api(
            Method::POST,
            &format!("/users/{pam_id}/password-reset"),
            &admin,
            Some(json!({"new_password": "Second-pass-2!"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("agent_offline")),
        "{body}"
    );
    bind(&lab, &pam_upn, "Sync-test-pw-1").await.unwrap();

    // Registration: a one-time token, the agent's own key pair; the token works once.
    let (status, registration) = cloud
        .api(
            Method::POST,
            "/agents/registrations",
            &admin,
            Some(json!({"name": "test-agent"})),
        )
        .await;
    assert_eq!(status, 201, "{registration}");
    let token = Secret::new(registration["token"].as_str().unwrap().to_owned());
    writeback::register(&config, &cloud.url, &token)
        .await
        .unwrap();
    let again = writeback::register(&config, &cloud.url, &token).await;
    assert!(
        again.unwrap_err().to_string().contains("401"),
        "a token is used once"
    );
    let key_file = config.storage.data_dir.join("agent-key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is the owner's only");
    }
    let channel = tokio::spawn(writeback::run_channel(config.clone()));
    wait_for("the agent online", async || online(&cloud).await).await;
    // A new key pair while connected: the next requests are sealed to it.
    writeback::rotate_key(&config).await.unwrap();

    // Admin reset with "must change at next logon": AD answers 773 to a bind.
    let (status, body) = cloud
        .api(
            Method::POST,
            &format!("/users/{pam_id}/password-reset"),
            &admin,
            Some(json!({"new_password": "Second-pass-2!", "require_change": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["written_back"], true);
    let (code, text) = bind(&lab, &pam_upn, "Second-pass-2!").await.unwrap_err();
    assert_eq!(code, 49);
    assert!(text.contains("data 773"), "{text}");
    // ... and the cloud asks for a change too.
    let (status, body) = cloud
        .api(
            Method::POST,
            "/signin",
            "",
            Some(json!({"username": pam_upn, "password": "Second-pass-2!"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("password_change_required"))
    );

    // Without: the bind works, so does cloud sign-in; a request id makes a retry harmless.
    let reset = json!({"new_password": "Third-pass-3!", "request_id": format!("r-{suffix}")});
    let (status, body) = cloud
        .api(
            Method::POST,
            &format!("/users/{pam_id}/password-reset"),
            &admin,
            Some(reset.clone()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    bind(&lab, &pam_upn, "Third-pass-3!").await.unwrap();
    let (status, _) = cloud
        .api(
            Method::POST,
            &format!("/users/{pam_id}/password-reset"),
            &admin,
            Some(reset),
        )
        .await;
    assert_eq!(status, 200, "the retry answers like the first");

    // A password the DC refuses: 422 with the DC's words, the old password still works.
    let (status, body) = cloud
        .api(
            Method::POST,
            &format!("/users/{pam_id}/password-reset"),
            &admin,
            Some(json!({"new_password": "Ab1!"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("policy_violation")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("password"),
        "{body}"
    );
    bind(&lab, &pam_upn, "Third-pass-3!").await.unwrap();

    // The user's own change: the DC checks the old password.
    let (_, session) = cloud
        .api(
            Method::POST,
            "/signin",
            "",
            Some(json!({"username": pam_upn, "password": "Third-pass-3!"})),
        )
        .await;
    let user_token = session["token"].as_str().unwrap().to_owned();
    let (status, body) = cloud
        .api(
            Method::POST,
            "/me/password",
            &user_token,
            Some(json!({"old_password": "Wrong-pass-9!", "new_password": "Fourth-pass-4!"})),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = cloud
        .api(
            Method::POST,
            "/me/password",
            &user_token,
            Some(json!({"old_password": "Third-pass-3!", "new_password": "Fourth-pass-4!"})),
        )
        .await;
    assert_eq!(
        (status, body["written_back"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    bind(&lab, &pam_upn, "Fourth-pass-4!").await.unwrap();

    // Self-service reset through the outbox, unlocking an account AD locked.
    let (_, session) = cloud
        .api(
            Method::POST,
            "/signin",
            "",
            Some(json!({"username": pam_upn, "password": "Fourth-pass-4!"})),
        )
        .await;
    let user_token = session["token"].as_str().unwrap().to_owned();
    let (status, _) = cloud
        .api(
            Method::POST,
            "/me/sspr",
            &user_token,
            Some(json!({"alternate_email": "pam@home.example"})),
        )
        .await;
    assert_eq!(status, 200);
    for _ in 0..6 {
        let _ = bind(&lab, &pam_upn, "Not-her-password-0").await;
    }
    let (code, text) = bind(&lab, &pam_upn, "Fourth-pass-4!").await.unwrap_err();
    assert!(code == 49 && text.contains("data 775"), "locked: {text}");
    let (status, _) = cloud
        .api(
            Method::POST,
            "/sspr/start",
            "",
            Some(json!({"username": pam_upn})),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = cloud
        .api(
            Method::POST,
            "/sspr/start",
            "",
            Some(json!({"username": "nobody@nowhere.test"})),
        )
        .await;
    assert_eq!(status, 202, "the same answer for users that do not exist");
    let outbox = cloud.dir.join("outbox");
    let mail = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .find(|m| m.contains("pam@home.example"))
        .unwrap();
    let code = mail
        .split_whitespace()
        .map(|w| w.trim_end_matches('.'))
        .find(|w| w.len() == 8 && w.chars().all(|c| c.is_ascii_digit()))
        .unwrap()
        .to_owned();
    let (status, body) = cloud
        .api(
            Method::POST,
            "/sspr/complete",
            "",
            Some(json!({"username": pam_upn, "code": "00000000", "new_password": "Fifth-pass-5!", "unlock": true})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_code"))
    );
    let (status, body) = cloud
        .api(
            Method::POST,
            "/sspr/complete",
            "",
            Some(json!({"username": pam_upn, "code": code, "new_password": "Fifth-pass-5!", "unlock": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    bind(&lab, &pam_upn, "Fifth-pass-5!").await.unwrap();

    // Pass-through sign-in: the DC decides.
    let (_, mut settings) = cloud
        .api(Method::GET, "/tenant/settings", &admin, None)
        .await;
    settings["signin_method"] = json!("pass_through");
    let (status, body) = cloud
        .api(Method::PUT, "/tenant/settings", &admin, Some(settings))
        .await;
    assert_eq!(status, 200, "{body}");
    let signin = |password: &str| json!({"username": pam_upn, "password": password});
    let (status, _) = cloud
        .api(Method::POST, "/signin", "", Some(signin("Fifth-pass-5!")))
        .await;
    assert_eq!(status, 200, "right password");
    let (status, body) = cloud
        .api(Method::POST, "/signin", "", Some(signin("Wrong-pass-9!")))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_credentials"))
    );
    ad.replace(&pam, "userAccountControl", "514").await;
    let (status, body) = cloud
        .api(Method::POST, "/signin", "", Some(signin("Fifth-pass-5!")))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("account_disabled")),
        "{body}"
    );
    ad.replace(&pam, "userAccountControl", "512").await;
    for _ in 0..6 {
        let _ = bind(&lab, &pam_upn, "Not-her-password-0").await;
    }
    let (status, body) = cloud
        .api(Method::POST, "/signin", "", Some(signin("Fifth-pass-5!")))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (423, Some("locked")),
        "{body}"
    );
    // The admin unlocks in AD through the agent.
    let (status, body) = cloud
        .api(
            Method::POST,
            &format!("/users/{pam_id}/unlock"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (status, body["written_back"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    bind(&lab, &pam_upn, "Fifth-pass-5!").await.unwrap();

    // The channel comes back after the cloud restarts.
    cloud.restart().await;
    wait_for("the agent back online", async || online(&cloud).await).await;
    let (status, body) = cloud
        .api(
            Method::POST,
            &format!("/users/{pam_id}/password-reset"),
            &admin,
            Some(json!({"new_password": "Sixth-pass-6!"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    bind(&lab, &pam_upn, "Sixth-pass-6!").await.unwrap();

    // Self-service reset with an authenticator app instead of a mailed code.
    let (_, session) = cloud
        .api(Method::POST, "/signin", "", Some(signin("Sixth-pass-6!")))
        .await;
    let user_token = session["token"].as_str().unwrap().to_owned();
    let (status, enrolled) = cloud.api(Method::POST, "/me/totp", &user_token, None).await;
    assert_eq!(status, 200, "{enrolled}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let totp =
        idbridge_cloud::directory::totp_code(enrolled["secret"].as_str().unwrap(), now).unwrap();
    let (status, body) = cloud
        .api(
            Method::POST,
            "/sspr/complete",
            "",
            Some(json!({"username": pam_upn, "code": totp, "new_password": "Totp-pass-8!"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    bind(&lab, &pam_upn, "Totp-pass-8!").await.unwrap();

    // A cloud-only user's reset stays in the cloud.
    let (status, created) = cloud
        .api(
            Method::POST,
            "/users",
            &admin,
            Some(json!({"userPrincipalName": format!("cloudonly{suffix}@cloud.example"), "displayName": "Cloud Only"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, body) = cloud
        .api(
            Method::POST,
            &format!("/users/{}/password-reset", created["id"].as_str().unwrap()),
            &admin,
            Some(json!({"new_password": "Cloud-only-pass-1!"})),
        )
        .await;
    assert_eq!(
        (status, body["written_back"].as_bool()),
        (200, Some(false)),
        "{body}"
    );

    // Every writeback is audited, without secrets.
    let (_, audit) = cloud
        .api(Method::GET, "/audit?limit=500", &admin, None)
        .await;
    let text = audit.to_string();
    assert!(text.contains("writeback.set_password"), "{text}");
    for secret in [
        "Second-pass-2!",
        "Third-pass-3!",
        "Fifth-pass-5!",
        code.as_str(),
    ] {
        assert!(!text.contains(secret), "the audit log holds a secret");
    }

    // Agent stopped: 503, and AD keeps the password it had.
    channel.abort();
    let _ = channel.await;
    wait_for("the agent offline", async || !online(&cloud).await).await;
    let (status, body) = cloud
        .api(
            Method::POST,
            &format!("/users/{pam_id}/password-reset"),
            &admin,
            Some(json!({"new_password": "Seventh-pass-7!"})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("agent_offline")),
        "{body}"
    );
    bind(&lab, &pam_upn, "Totp-pass-8!").await.unwrap();

    drop(ad);
    test_ou.remove().await.unwrap();
}
