//! Object sync end to end: the lab's Samba DC (read as the least-privilege service account, full
//! import then DirSync deltas) -> the engine (SQLite and PostgreSQL stores) -> a real cloud
//! directory over HTTPS, checked through the cloud's SCIM API.
// Scenario code under #[tokio::test]; failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::ad::Ad;
use common::TestCloud;
use idbridge_agent::sync::{Profile, ProgressSink, RunReport, SyncContext};
use idbridge_core::SystemClock;
use idbridge_testkit::{Lab, TestDatabase};
use ldap3::Mod;
use serde_json::{json, Value};

const SYNC_EXT: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SYNC_CONTACT: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:Contact";

async fn cycle(sync: &SyncContext) -> RunReport {
    let report = sync.run(Profile::Cycle).await.unwrap();
    assert_ne!(report.status, "failed", "{report:?}");
    report
}

fn sync_ext(user: &Value) -> &Value {
    &user[SYNC_EXT]
}

async fn scenario(store_url: Option<String>) {
    let (lab, mut test_ou, cloud) = common::lab_ou_and_cloud("sync").await;
    let mut ad = Ad::new(&lab, &mut test_ou);
    let inside = ad.add_ou("In").await;
    let outside = ad.add_ou("Out").await;
    let suffix = &idbridge_testkit::unique_suffix()[..6];
    let name = |n: &str| format!("{n}{suffix}");
    let bob = ad
        .add_user(&inside, &name("bob"), &[("title", "Boss")])
        .await;
    let ann = ad
        .add_user(
            &inside,
            &name("ann"),
            &[("manager", &bob), ("department", "Sales")],
        )
        .await;
    ad.add_user(&outside, &name("carl"), &[]).await;
    let group = ad.add_group(&inside, &name("team"), &[&ann, &bob]).await;

    let database = match &store_url {
        Some(url) => format!("database_url = \"{url}\"\n"),
        None => String::new(),
    };
    let sync_table =
        |extra: &str| format!("[sync]\ninclude_ous = [\"{inside}\"]\n{database}{extra}");
    let config = cloud.agent_config(&lab, &sync_table(""));
    let sync = SyncContext::open(&config, Arc::new(SystemClock))
        .await
        .unwrap();

    // First cycle: full import (no cookie yet), sync, export; the group's members resolve in
    // the same run even though the users are created in it.
    let first = cycle(&sync).await;
    assert_eq!(
        first.counts.adds,
        3,
        "{first:?} {:?}",
        sync.errors().await.unwrap()
    );
    assert_eq!(
        first.counts.errors,
        0,
        "{first:?} {:?}",
        sync.errors().await.unwrap()
    );
    assert!(
        idbridge_agent::phs::full_request_path(&config.storage.data_dir).exists(),
        "new joins ask password hash sync for a full pass"
    );
    let ann_cloud = cloud.user_by_name(&ad.upn(&name("ann"))).await.unwrap();
    let bob_cloud = cloud.user_by_name(&ad.upn(&name("bob"))).await.unwrap();
    assert!(
        cloud.user_by_name(&ad.upn(&name("carl"))).await.is_none(),
        "out of scope"
    );
    assert_eq!(sync_ext(&ann_cloud)["source"], "on_premises");
    assert_eq!(
        sync_ext(&ann_cloud)["onPremisesDistinguishedName"],
        ann.as_str()
    );
    assert_eq!(ann_cloud["active"], true);
    assert_eq!(ann_cloud[ENTERPRISE]["department"], "Sales");
    assert_eq!(ann_cloud[ENTERPRISE]["manager"]["value"], bob_cloud["id"]);
    let groups = cloud
        .scim_get(&format!(
            "/Groups?filter=displayName%20eq%20%22{}%22",
            name("team")
        ))
        .await;
    let team = &groups["Resources"][0];
    let members: HashSet<&str> = team["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        members,
        HashSet::from([
            ann_cloud["id"].as_str().unwrap(),
            bob_cloud["id"].as_str().unwrap()
        ])
    );

    // Nothing changed: a cycle exports nothing.
    let idle = cycle(&sync).await;
    assert_eq!(
        (idle.counts.adds, idle.counts.updates, idle.counts.deletes),
        (0, 0, 0)
    );

    // Modify, rename, disable: DirSync deltas.
    ad.replace(&ann, "title", "Account Manager").await;
    ad.replace(&ann, "userAccountControl", "514").await;
    ad.modify(&ann, vec![Mod::Delete("department", HashSet::new())])
        .await;
    let bob = ad
        .move_to(&bob, &format!("CN={}", name("robert")), &inside)
        .await;
    let changed = cycle(&sync).await;
    assert_eq!(changed.counts.renames, 1, "{changed:?}");
    let ann_now = cloud
        .scim_get(&format!("/Users/{}", ann_cloud["id"].as_str().unwrap()))
        .await;
    assert_eq!(ann_now["title"], "Account Manager");
    assert_eq!(ann_now["active"], false);
    assert!(
        ann_now[ENTERPRISE].get("department").is_none(),
        "a cleared attribute is cleared in the cloud: {ann_now}"
    );
    let bob_now = cloud
        .scim_get(&format!("/Users/{}", bob_cloud["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        sync_ext(&bob_now)["onPremisesDistinguishedName"],
        bob.as_str()
    );

    // Membership change.
    ad.modify(
        &group,
        vec![Mod::Delete("member", HashSet::from([ann.as_str()]))],
    )
    .await;
    cycle(&sync).await;
    let team_now = cloud
        .scim_get(&format!("/Groups/{}", team["id"].as_str().unwrap()))
        .await;
    let members: Vec<&str> = team_now["members"]
        .as_array()
        .map(|m| m.iter().map(|m| m["value"].as_str().unwrap()).collect())
        .unwrap_or_default();
    assert_eq!(members, [bob_cloud["id"].as_str().unwrap()]);

    // Nested groups: a group whose member is a group.
    ad.add_group(&inside, &name("all"), &[&group]).await;
    cycle(&sync).await;
    let outer = cloud
        .scim_get(&format!(
            "/Groups?filter=displayName%20eq%20%22{}%22",
            name("all")
        ))
        .await;
    assert_eq!(
        outer["Resources"][0]["members"][0]["value"], team["id"],
        "{outer}"
    );

    // Soft match: a cloud-only user with the same UPN is taken over, not duplicated.
    let dave_upn = ad.upn(&name("dave"));
    let created = cloud
        .http
        .post(format!("{}/api/v1/users", cloud.url))
        .bearer_auth(cloud.admin_token.expose())
        .json(&json!({"userPrincipalName": dave_upn, "displayName": "Dave (cloud)"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let dave_id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ad.add_user(&inside, &name("dave"), &[]).await;
    let soft = cycle(&sync).await;
    assert_eq!(soft.counts.errors, 0, "{:?}", sync.errors().await.unwrap());
    let dave = cloud.user_by_name(&dave_upn).await.unwrap();
    assert_eq!(dave["id"], dave_id.as_str(), "joined, not duplicated");
    assert_eq!(sync_ext(&dave)["source"], "on_premises");

    // Conflict: a cloud user joined to another anchor holds the UPN; the object is reported
    // and the run goes on.
    let eve_upn = ad.upn(&name("eve"));
    let taken = cloud
        .http
        .post(format!("{}/scim/v2/Users", cloud.url))
        .bearer_auth(cloud.sync_token.expose())
        .json(
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", SYNC_EXT],
                      "userName": eve_upn, SYNC_EXT: {"immutableId": "c29tZW9uZSBlbHNl"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 201);
    // Soft match never takes over a cloud administrator.
    let hal_upn = ad.upn(&name("hal"));
    let admin = cloud
        .http
        .post(format!("{}/scim/v2/Users", cloud.url))
        .bearer_auth(cloud.admin_token.expose())
        .json(
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                      "userName": hal_upn, "roles": [{"value": "Global Administrator"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 201);
    let hal = ad.add_user(&inside, &name("hal"), &[]).await;
    let eve = ad.add_user(&inside, &name("eve"), &[]).await;
    ad.add_user(&inside, &name("fay"), &[]).await;
    let conflicted = cycle(&sync).await;
    assert_eq!(conflicted.counts.errors, 2, "{conflicted:?}");
    assert!(
        cloud.user_by_name(&ad.upn(&name("fay"))).await.is_some(),
        "the run went on"
    );
    let errors = sync.errors().await.unwrap();
    let eve_error = errors.iter().find(|e| e.dn == eve).unwrap();
    assert!(
        eve_error.message.contains("already joined"),
        "{eve_error:?}"
    );
    let hal_error = errors.iter().find(|e| e.dn == hal).unwrap();
    assert!(hal_error.message.contains("admin role"), "{hal_error:?}");
    assert!(cloud.user_by_name(&hal_upn).await.unwrap()[SYNC_EXT]["immutableId"].is_null());

    // Leaving scope (move out) and deletion deprovision (soft delete in the cloud).
    let bob_id = bob_cloud["id"].as_str().unwrap().to_owned();
    ad.move_to(&bob, &format!("CN={}", name("robert")), &outside)
        .await;
    let ann_guid = ad.guid_of(&ann).await;
    ad.delete(&ann).await;
    let gone = cycle(&sync).await;
    let still = cloud.scim_get(&format!("/Users/{bob_id}")).await;
    assert_eq!(gone.counts.deletes, 2, "{gone:?} bob: {still}");
    for id in [&bob_id, ann_cloud["id"].as_str().unwrap()] {
        let r = cloud
            .http
            .get(format!("{}/scim/v2/Users/{id}", cloud.url))
            .bearer_auth(cloud.admin_token.expose())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{id} should be deleted");
    }

    // Restoring the deleted user in AD (tombstone reanimation, same objectGUID) restores the
    // soft-deleted cloud user instead of creating another.
    let ann_upn = ad.upn(&name("ann"));
    ad.restore(
        &lab,
        &ann_guid,
        &ann,
        &[("userPrincipalName", &ann_upn), ("givenName", "Ann")],
    )
    .await;
    let restored = cycle(&sync).await;
    assert_eq!(
        restored.counts.adds,
        1,
        "{restored:?} {:?}",
        sync.errors().await.unwrap()
    );
    let ann_back = cloud.user_by_name(&ann_upn).await.unwrap();
    assert_eq!(ann_back["id"], ann_cloud["id"], "restored, not recreated");
    assert_eq!(ann_back["name"]["givenName"], "Ann");

    // Deletion threshold: more deletions than allowed hold the export until allowed.
    let strict = SyncContext::open(
        &cloud.agent_config(&lab, &sync_table("deletion_threshold = 1\n")),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let dave_dn = format!("CN={},{inside}", name("dave"));
    let fay_dn = format!("CN={},{inside}", name("fay"));
    ad.delete(&dave_dn).await;
    ad.delete(&fay_dn).await;
    let held = strict.run(Profile::Cycle).await.unwrap();
    assert_eq!(held.status, "held", "{held:?}");
    assert!(
        held.message.contains("deletion threshold"),
        "{}",
        held.message
    );
    assert!(
        cloud.user_by_name(&dave_upn).await.is_some(),
        "nothing deleted while held"
    );
    strict.allow_deletes(2).await.unwrap();
    let released = strict.run(Profile::Export).await.unwrap();
    assert_eq!(released.counts.deletes, 2, "{released:?}");
    assert!(cloud.user_by_name(&dave_upn).await.is_none());

    // Staging mode: import and sync, never export; preview shows what would go.
    let staging = SyncContext::open(
        &cloud.agent_config(&lab, &sync_table("staging = true\n")),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let gil = ad.add_user(&inside, &name("gil"), &[]).await;
    let staged = staging.run(Profile::Cycle).await.unwrap();
    assert_eq!(staged.status, "held", "{staged:?}");
    assert!(cloud.user_by_name(&ad.upn(&name("gil"))).await.is_none());
    let pending = staging.pending().await.unwrap();
    assert!(pending.iter().any(|p| p.dn == gil), "{pending:?}");
    let preview = staging.preview_object(&gil).await.unwrap();
    assert_eq!(preview.scope, "in scope");
    assert!(preview.rules_fired.iter().any(|r| r == "In from AD - User"));
    assert_eq!(
        preview.cloud.as_ref().unwrap()["userName"],
        ad.upn(&name("gil")).as_str()
    );

    // An export interrupted after the server created the object but before we recorded it:
    // the retry finds the object by its anchor instead of creating a duplicate.
    let anchor = pending.iter().find(|p| p.dn == gil).unwrap().anchor.clone();
    let lost = cloud
        .http
        .post(format!("{}/scim/v2/Users", cloud.url))
        .bearer_auth(cloud.sync_token.expose())
        .json(&pending.iter().find(|p| p.dn == gil).unwrap().doc)
        .send()
        .await
        .unwrap();
    assert_eq!(lost.status(), 201);
    let retried = sync.run(Profile::Export).await.unwrap();
    assert_eq!(
        retried.counts.errors, 2,
        "only eve's and hal's conflicts remain: {retried:?}"
    );
    let found = cloud
        .scim_get(&format!(
            "/Users?filter={SYNC_EXT}:immutableId%20eq%20%22{}%22",
            anchor
                .replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D")
        ))
        .await;
    assert_eq!(found["totalResults"], 1, "{found}");

    // History lists every run with its counts.
    let history = sync.history(50).await.unwrap();
    assert!(history
        .iter()
        .any(|r| r.profile == "cycle" && r.counts.adds == 3));
    assert!(history.iter().any(|r| r.status == "held"));

    drop(ad);
    test_ou.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_changes_reach_the_cloud_sqlite() {
    scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_changes_reach_the_cloud_postgres() {
    TestDatabase::run("agent_sync", async |url| scenario(Some(url)).await)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_reach_the_cloud_as_contacts() {
    let (lab, mut test_ou, cloud) = common::lab_ou_and_cloud("contacts").await;
    let mut ad = Ad::new(&lab, &mut test_ou);
    let ou = ad.ou.dn.clone();
    let suffix = &idbridge_testkit::unique_suffix()[..6];
    let partner = ad
        .add_contact(
            &ou,
            &format!("Pat Partner {suffix}"),
            &[
                ("givenName", "Pat"),
                ("sn", "Partner"),
                ("mail", &format!("pat.{suffix}@partner.example")),
                ("company", "Partner Ltd"),
                (
                    "proxyAddresses",
                    &format!("SMTP:pat.{suffix}@partner.example"),
                ),
            ],
        )
        .await;
    let no_mail = ad
        .add_contact(&ou, &format!("No Mail {suffix}"), &[("company", "X")])
        .await;
    let user = ad.add_user(&ou, &format!("cuser{suffix}"), &[]).await;
    ad.add_group(
        &ou,
        &format!("partners{suffix}"),
        &[&partner, &user, &no_mail],
    )
    .await;
    let config = cloud.agent_config(&lab, &format!("[sync]\ninclude_ous = [\"{ou}\"]\n"));
    let sync = SyncContext::open(&config, Arc::new(SystemClock))
        .await
        .unwrap();

    let first = cycle(&sync).await;
    let errors = sync.errors().await.unwrap();
    assert_eq!(
        (first.counts.adds, first.counts.errors),
        (3, 0),
        "{first:?} {errors:?}"
    );
    let contacts = cloud.scim_get("/Contacts").await;
    assert_eq!(
        contacts["totalResults"], 1,
        "the contact without mail stays home: {contacts}"
    );
    let pat = &contacts["Resources"][0];
    assert_eq!(
        pat["displayName"], "Pat Partner",
        "given name and surname, as for users"
    );
    assert_eq!(pat["name"]["familyName"], "Partner");
    assert_eq!(pat["companyName"], "Partner Ltd");
    assert_eq!(
        pat["emails"][0]["value"],
        format!("pat.{suffix}@partner.example")
    );
    assert_eq!(pat[SYNC_CONTACT]["source"], "on_premises");
    assert_eq!(
        pat[SYNC_CONTACT]["onPremisesDistinguishedName"],
        partner.as_str()
    );
    assert_eq!(
        pat[SYNC_CONTACT]["proxyAddresses"],
        json!([format!("SMTP:pat.{suffix}@partner.example")])
    );
    let pat_id = pat["id"].as_str().unwrap().to_owned();
    let user_id = cloud
        .user_by_name(&ad.upn(&format!("cuser{suffix}")))
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let groups = cloud.scim_get("/Groups").await;
    let members: HashSet<&str> = groups["Resources"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, HashSet::from([pat_id.as_str(), user_id.as_str()]));
    let why = sync.preview_object(&no_mail).await.unwrap();
    assert_eq!(why.scope, "no sync rule applies", "{why:?}");

    // A change and a rename flow as such; deleting the renamed contact takes it out of the
    // group too (AD rewrites and drops the group's link silently: DirSync reports no change
    // of the group, the agent follows the link itself).
    ad.replace(&partner, "title", "Account Lead").await;
    let partner = ad
        .move_to(&partner, &format!("CN=Pat Partner-Smith {suffix}"), &ou)
        .await;
    let changed = cycle(&sync).await;
    assert_eq!(
        (changed.counts.updates, changed.counts.renames),
        (1, 1),
        "{changed:?}"
    );
    let pat_now = cloud.scim_get(&format!("/Contacts/{pat_id}")).await;
    assert_eq!(pat_now["title"], "Account Lead");
    assert_eq!(
        pat_now[SYNC_CONTACT]["onPremisesDistinguishedName"],
        partner.as_str()
    );
    ad.delete(&partner).await;
    let gone = cycle(&sync).await;
    assert_eq!(gone.counts.deletes, 1, "{gone:?}");
    let r = cloud
        .http
        .get(format!("{}/scim/v2/Contacts/{pat_id}", cloud.url))
        .bearer_auth(cloud.admin_token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let group_now = cloud.scim_get("/Groups").await;
    let members: Vec<&str> = group_now["Resources"][0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, [user_id.as_str()], "{group_now}");
    drop(ad);
    test_ou.remove().await.unwrap();
}

#[tokio::test]
async fn rule_errors_name_file_line_and_column() {
    let lab = Lab::load().unwrap();
    let cloud = TestCloud::start("rules").await;
    let rules = cloud.dir.join("rules.toml");
    std::fs::create_dir_all(&cloud.dir).unwrap();
    std::fs::write(
        &rules,
        "version = 1\n[[inbound]]\nname = \"x\"\nprecedence = 1\nfrom = \"user\"\nto = \"person\"\n[inbound.flows]\ndisplayName = 'Lefft([cn], 2)'\n",
    )
    .unwrap();
    let config = cloud.agent_config(&lab, &format!("[sync]\nrules = \"{}\"\n", rules.display()));
    let Err(e) = SyncContext::open(&config, Arc::new(SystemClock)).await else {
        panic!("a bad rules file must not load");
    };
    let message = e.to_string();
    assert!(message.contains("rules.toml:8:"), "{message}");
    assert!(message.contains("Lefft"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchors_are_written_to_consistency_guid_when_asked() {
    // ms-DS-ConsistencyGuid's schemaIDGUID: the ACE lets the account write that one attribute.
    const WRITE_CONSISTENCY_GUID: &str = "(OA;CI;WP;23773dc2-b63a-11d2-90e1-00c04fd91ab1;;{sid})";
    let (lab, mut test_ou, cloud) = common::lab_ou_and_cloud("anchor").await;
    let ou = test_ou.dn.clone();
    let mut ad = Ad::new(&lab, &mut test_ou);
    let name = format!("cg{}", &idbridge_testkit::unique_suffix()[..6]);
    let dn = ad.add_user(&ou, &name, &[]).await;
    let config = cloud.agent_config(
        &lab,
        &format!("[sync]\ninclude_ous = [\"{ou}\"]\nwrite_consistency_guid = true\n"),
    );
    let sync = SyncContext::open(&config, Arc::new(SystemClock))
        .await
        .unwrap();

    // Without the right: exported all the same, the object says what is missing.
    let first = cycle(&sync).await;
    assert_eq!(
        (first.counts.adds, first.counts.errors),
        (1, 1),
        "{first:?}"
    );
    let errors = sync.errors().await.unwrap();
    assert!(
        errors[0]
            .message
            .contains("needs Write on mS-DS-ConsistencyGuid"),
        "{errors:?}"
    );

    // Granted: the next export retries and writes the objectGUID there.
    lab.grant_service_account(&ou, WRITE_CONSISTENCY_GUID)
        .unwrap();
    let second = cycle(&sync).await;
    assert_eq!(
        second.counts.errors,
        0,
        "{:?}",
        sync.errors().await.unwrap()
    );
    let (entries, _) = ad
        .ou
        .ldap()
        .search(
            &dn,
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["objectGUID", "mS-DS-ConsistencyGuid"],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    let entry = ldap3::SearchEntry::construct(entries.into_iter().next().unwrap());
    assert_eq!(
        entry.bin_attrs.get("mS-DS-ConsistencyGuid"),
        entry.bin_attrs.get("objectGUID"),
        "{entry:?}"
    );
    // The anchor did not change, so the cloud object is left alone.
    let third = cycle(&sync).await;
    assert_eq!(
        (third.counts.adds, third.counts.updates),
        (0, 0),
        "{third:?}"
    );

    drop(ad);
    test_ou.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_reports_the_account_to_hash_sync() {
    use idbridge_core::ObjectGuid;
    use std::sync::Mutex;
    let (lab, mut test_ou, cloud) = common::lab_ou_and_cloud("wake").await;
    let ou = test_ou.dn.clone();
    let mut ad = Ad::new(&lab, &mut test_ou);
    let dn = ad
        .add_user(
            &ou,
            &format!("pw{}", &idbridge_testkit::unique_suffix()[..6]),
            &[],
        )
        .await;
    let config = cloud.agent_config(&lab, &format!("[sync]\ninclude_ous = [\"{ou}\"]\n"));
    let mut sync = SyncContext::open(&config, Arc::new(SystemClock))
        .await
        .unwrap();
    let guid = ObjectGuid::from_bytes(&ad.guid_of(&dn).await).unwrap();
    let reported = Arc::new(Mutex::new(Vec::<ObjectGuid>::new()));
    let sink = reported.clone();
    sync.on_password_change(Arc::new(move |objects| {
        sink.lock().unwrap().extend_from_slice(objects);
    }));
    // The first cycle (a full import) is no delta; the report comes from the delta poll. Other
    // tests change passwords in the same domain meanwhile, which are reported too (rightly:
    // any joined user's password matters), so only the positive case is checked.
    cycle(&sync).await;
    // A reset as the admin: unicodePwd in quotes, UTF-16LE (ASCII only, so valid UTF-8 too).
    let password = String::from_utf8(common::ad::quoted_utf16("New-pass-2!")).unwrap();
    ad.replace(&dn, "unicodePwd", &password).await;
    cycle(&sync).await;
    let reported = reported.lock().unwrap().clone();
    assert!(
        reported.contains(&guid),
        "the password change reported the account: {reported:?}"
    );
    drop(ad);
    test_ou.remove().await.unwrap();
}

/// Samba answers a group whole unless asked for a range; the agent asks for members in ranges
/// (here of 3), so a group larger than one range page is read page by page, by the full import
/// and by the delta reads after a membership change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_larger_than_one_range_page_arrives_whole() {
    let (lab, mut test_ou, cloud) = common::lab_ou_and_cloud("ranges").await;
    let mut ad = Ad::new(&lab, &mut test_ou);
    let ou = ad.ou.dn.clone();
    let suffix = &idbridge_testkit::unique_suffix()[..6];
    let prefix = format!("rm{suffix}-");
    ad.add_bulk_users(&ou, &prefix, 9).await;
    let user = |i: usize| format!("CN={prefix}{i},{ou}");
    let first_seven: Vec<String> = (0..7).map(user).collect();
    let refs: Vec<&str> = first_seven.iter().map(String::as_str).collect();
    let group = ad.add_group(&ou, &format!("big{suffix}"), &refs).await;
    let config = cloud.agent_config(
        &lab,
        &format!("[sync]\ninclude_ous = [\"{ou}\"]\nmember_range_size = 3\n"),
    );
    let sync = SyncContext::open(&config, Arc::new(SystemClock))
        .await
        .unwrap();
    let cloud_members = || async {
        let groups = cloud.scim_get("/Groups").await;
        assert_eq!(groups["totalResults"], 1, "{groups}");
        let ids: HashSet<String> = groups["Resources"][0]["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids
    };
    let upns: Vec<String> = (0..9).map(|i| ad.upn(&format!("{prefix}{i}"))).collect();
    let cloud_id = |i: usize| {
        let upn = upns[i].clone();
        let cloud = &cloud;
        async move {
            cloud.user_by_name(&upn).await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };

    let first = cycle(&sync).await;
    assert_eq!(
        (first.counts.adds, first.counts.errors),
        (10, 0),
        "{first:?} {:?}",
        sync.errors().await.unwrap()
    );
    let mut expected = HashSet::new();
    for i in 0..7 {
        expected.insert(cloud_id(i).await);
    }
    assert_eq!(
        cloud_members().await,
        expected,
        "seven members over three ranges"
    );

    // Two more members, one fewer.
    ad.modify(
        &group,
        vec![
            Mod::Add(
                "member",
                HashSet::from([user(7).as_str(), user(8).as_str()]),
            ),
            Mod::Delete("member", HashSet::from([user(0).as_str()])),
        ],
    )
    .await;
    let changed = cycle(&sync).await;
    assert_eq!(changed.counts.updates, 1, "{changed:?}");
    expected.remove(&cloud_id(0).await);
    expected.insert(cloud_id(7).await);
    expected.insert(cloud_id(8).await);
    assert_eq!(
        cloud_members().await,
        expected,
        "eight members over three ranges"
    );

    // The first delta was a DirSync pass (whole values); the next reads the group by USN, ranged.
    ad.modify(
        &group,
        vec![Mod::Delete("member", HashSet::from([user(1).as_str()]))],
    )
    .await;
    let changed = cycle(&sync).await;
    assert_eq!(changed.counts.updates, 1, "{changed:?}");
    expected.remove(&cloud_id(1).await);
    assert_eq!(cloud_members().await, expected, "seven members again");
}

/// New users whose managers are new too, in a chain deeper than the export ever waited in
/// waves (32): each goes out once, with its manager, as soon as the manager is in the cloud;
/// none is sent without it and patched later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_chain_of_new_managers_goes_out_in_one_write_each() {
    const CHAIN: usize = 40;
    let (lab, mut test_ou, cloud) = common::lab_ou_and_cloud("chain").await;
    let mut ad = Ad::new(&lab, &mut test_ou);
    let ou = ad.ou.dn.clone();
    let suffix = &idbridge_testkit::unique_suffix()[..6];
    let name = |i: usize| format!("ch{suffix}{i}");
    let config = cloud.agent_config(&lab, &format!("[sync]\ninclude_ous = [\"{ou}\"]\n"));
    let sync = SyncContext::open(&config, Arc::new(SystemClock))
        .await
        .unwrap();
    // The full import first, so the chain arrives as a delta (the cycle's own export).
    let root = ad.add_user(&ou, &name(0), &[]).await;
    assert_eq!(cycle(&sync).await.counts.adds, 1);
    let mut manager = root;
    for i in 1..=CHAIN {
        manager = ad.add_user(&ou, &name(i), &[("manager", &manager)]).await;
    }

    let run = cycle(&sync).await;
    assert_eq!(
        (run.counts.adds, run.counts.updates, run.counts.errors),
        (CHAIN as i64, 0, 0),
        "{run:?} {:?}",
        sync.errors().await.unwrap()
    );
    let mut manager_id = cloud.user_by_name(&ad.upn(&name(0))).await.unwrap()["id"].clone();
    for i in 1..=CHAIN {
        let user = cloud.user_by_name(&ad.upn(&name(i))).await.unwrap();
        assert_eq!(user[ENTERPRISE]["manager"]["value"], manager_id, "{user}");
        manager_id = user["id"].clone();
    }
    let again = cycle(&sync).await;
    assert_eq!(
        (again.counts.adds, again.counts.updates, again.counts.errors),
        (0, 0, 0),
        "{again:?}"
    );
}

/// Records how many objects the import steps of a run read (0: no full import ran).
#[derive(Default)]
struct ImportSteps(std::sync::Mutex<u64>);

impl ImportSteps {
    fn take(&self) -> u64 {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl ProgressSink for ImportSteps {
    fn step(&self, phase: &'static str, done: u64, _total: Option<u64>) {
        if phase == "import" {
            let mut read = self.0.lock().unwrap();
            *read = (*read).max(done);
        }
    }
}

/// A backlog of more DC changes than `sync.max_dirsync_changes` (a bulk load, a long stop) is
/// read as a full import, page by page, not as one DirSync answer held whole in memory; the
/// USN applied is stored, so a restarted agent does the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_changes_is_read_page_by_page() {
    let (lab, mut test_ou, cloud) = common::lab_ou_and_cloud("backlog").await;
    let mut ad = Ad::new(&lab, &mut test_ou);
    let ou = ad.ou.dn.clone();
    let suffix = &idbridge_testkit::unique_suffix()[..6];
    ad.add_bulk_users(&ou, &format!("bl{suffix}-a"), 2).await;
    let config = cloud.agent_config(
        &lab,
        &format!("[sync]\ninclude_ous = [\"{ou}\"]\nmax_dirsync_changes = 20\n"),
    );
    let steps = Arc::new(ImportSteps::default());
    let open = || async {
        let mut sync = SyncContext::open(&config, Arc::new(SystemClock))
            .await
            .unwrap();
        sync.set_progress(steps.clone());
        sync
    };
    let sync = open().await;
    assert_eq!(cycle(&sync).await.counts.adds, 2);
    assert!(steps.take() > 0, "the first cycle is a full import");

    // 30 new users are 30 DC changes or more: more than 20.
    ad.add_bulk_users(&ou, &format!("bl{suffix}-b"), 30).await;
    let burst = cycle(&sync).await;
    assert_eq!(burst.counts.adds, 30, "{burst:?}");
    let read = steps.take();
    assert!(
        read >= 32,
        "the backlog was read as a full import ({read} objects read)"
    );

    // After a restart the backlog is measured from the USN the store holds.
    drop(sync);
    ad.add_bulk_users(&ou, &format!("bl{suffix}-c"), 30).await;
    let sync = open().await;
    let burst = cycle(&sync).await;
    assert_eq!(burst.counts.adds, 30, "{burst:?}");
    let read = steps.take();
    assert!(read >= 62, "after a restart too ({read} objects read)");
    let users = cloud.scim_get("/Users").await;
    assert_eq!(users["totalResults"], 62, "none lost, none twice");
}
