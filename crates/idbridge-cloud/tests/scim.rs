//! SCIM 2.0 over real HTTPS, on SQLite and PostgreSQL.
// Scenario functions run under macro-generated #[test]s, which clippy does not see as tests.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{Backend, TestCloud};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SYNC: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const CONTACT: &str = "urn:idbridge:params:scim:schemas:core:2.0:Contact";
const SYNC_CONTACT: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:Contact";

fn user(name: &str) -> Value {
    json!({"schemas": [USER], "userName": name})
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH], "Operations": ops})
}

/// The path of a resource's `meta.location` (an absolute URL), to call it.
fn scim_path(location: &str) -> String {
    let path = location.split("/scim/v2").nth(1).unwrap();
    format!("/scim/v2{path}")
}

fn ids(list: &Value) -> Vec<String> {
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn user_lifecycle(backend: Backend) {
    let c = TestCloud::start(backend, "scim_lifecycle").await;
    let t = Some(c.admin.as_str());
    let created = c
        .call(
            Method::POST,
            "/scim/v2/Users",
            t,
            Some(json!({
                "schemas": [USER, ENTERPRISE],
                "userName": "bjensen@example.com",
                "name": {"givenName": "Barbara", "familyName": "Jensen"},
                "displayName": "Babs Jensen",
                "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                           {"value": "babs@home.example", "type": "home"}],
                ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations"},
                "password": "Secr3t-pw!"
            })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let location = created.headers["location"].to_str().unwrap();
    assert_eq!(location, format!("{}/scim/v2/Users/{id}", c.base));
    assert!(
        created.body.get("password").is_none(),
        "passwords are never returned"
    );
    assert_eq!(created.body["meta"]["resourceType"], "User");
    assert_eq!(created.body[SYNC]["source"], "cloud");
    let etag = created.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(created.body["meta"]["version"], etag.as_str());

    // Case-insensitive attribute names and userName uniqueness.
    let again = c
        .call(
            Method::POST,
            "/scim/v2/Users",
            t,
            Some(json!({"schemas": [USER], "USERNAME": "BJensen@Example.com"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["scimType"], "uniqueness");
    assert_eq!(again.body["status"], "409");
    assert!(again.body["detail"].as_str().unwrap().contains(&id));

    let got = c
        .call(Method::GET, &format!("/scim/v2/Users/{id}"), t, None)
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["name"]["givenName"], "Barbara");
    let not_modified = c
        .call_with(
            Method::GET,
            &format!("/scim/v2/Users/{id}"),
            t,
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);

    // PATCH through a value filter answers 200 with the resource.
    let patched = c
        .call(
            Method::PATCH,
            &format!("/scim/v2/Users/{id}"),
            t,
            Some(patch(json!([
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "barbara@example.com"},
                {"op": "add", "path": "title", "value": "Tour Guide"},
                {"op": "remove", "path": "emails[type eq \"home\"]"},
                {"op": "replace", "path": format!("{ENTERPRISE}:department"), "value": "Sales"}
            ]))),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(
        patched.body["emails"],
        json!([{"value": "barbara@example.com", "type": "work", "primary": true}])
    );
    assert_eq!(patched.body["title"], "Tour Guide");
    assert_eq!(patched.body[ENTERPRISE]["department"], "Sales");
    assert_ne!(patched.headers["etag"].to_str().unwrap(), etag);

    // A stale If-Match is refused and changes nothing.
    let stale = c
        .call_with(
            Method::PUT,
            &format!("/scim/v2/Users/{id}"),
            t,
            Some(user("bjensen@example.com")),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let still = c
        .call(Method::GET, &format!("/scim/v2/Users/{id}"), t, None)
        .await;
    assert_eq!(still.body["title"], "Tour Guide");

    // PUT replaces everything that is writable.
    let current = still.headers["etag"].to_str().unwrap().to_owned();
    let put = c
        .call_with(
            Method::PUT,
            &format!("/scim/v2/Users/{id}"),
            t,
            Some(json!({"schemas": [USER], "userName": "bjensen@example.com", "displayName": "B. Jensen"})),
            &[("if-match", &current)],
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert!(put.body.get("title").is_none());
    assert_eq!(put.body["id"], id.as_str());

    let deleted = c
        .call(Method::DELETE, &format!("/scim/v2/Users/{id}"), t, None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = c
        .call(Method::GET, &format!("/scim/v2/Users/{id}"), t, None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(
        gone.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    c.stop().await;
}

async fn filters_sorting_paging_projection(backend: Backend) {
    let c = TestCloud::start(backend, "scim_filters").await;
    let a = c.admin.as_str();
    for (name, title, active, email_type) in [
        ("anna@x.test", "Engineer", true, "work"),
        ("bob@x.test", "Manager", false, "home"),
        ("carl@y.test", "Engineer", true, "work"),
        ("dora@y.test", "Director", true, "home"),
        ("émile@x.test", "Engineer", false, "work"),
    ] {
        c.scim_user(
            a,
            json!({"schemas": [USER], "userName": name, "title": title, "active": active,
                   "emails": [{"value": name, "type": email_type}]}),
        )
        .await;
        c.clock.advance(time::Duration::seconds(10));
    }
    let list = |q: &str| {
        let q = q.to_owned();
        let c = &c;
        async move {
            c.call(Method::GET, &format!("/scim/v2/Users?{q}"), Some(a), None)
                .await
        }
    };
    let enc = |f: &str| -> String {
        f.replace(' ', "%20")
            .replace('"', "%22")
            .replace('[', "%5B")
            .replace(']', "%5D")
    };

    let r = list(&format!("filter={}", enc("userName eq \"CARL@y.test\""))).await;
    assert_eq!(ids(&r.body), ["carl@y.test"], "{}", r.body);
    // An `or` of equalities on one indexed attribute (the sync agent's batched matches),
    // compared as the attribute says: userName and e-mail in any case.
    let r = list(&format!(
        "filter={}&sortBy=userName",
        enc(r#"userName eq "CARL@y.test" or userName eq "anna@x.test" or userName eq "no@x.test""#)
    ))
    .await;
    assert_eq!(ids(&r.body), ["anna@x.test", "carl@y.test"], "{}", r.body);
    let work = |v: &str| format!(r#"emails[type eq "work" and value eq "{v}"]"#);
    let r = list(&format!(
        "filter={}&sortBy=userName",
        enc(&[
            work("ANNA@x.test"),
            work("bob@x.test"),
            work("émile@x.test")
        ]
        .join(" or "))
    ))
    .await;
    assert_eq!(ids(&r.body), ["anna@x.test", "émile@x.test"], "{}", r.body);
    let r = list(&format!(
        "filter={}&sortBy=userName",
        enc("title eq \"Engineer\" and (active eq true or userName sw \"é\")")
    ))
    .await;
    assert_eq!(ids(&r.body), ["anna@x.test", "carl@y.test", "émile@x.test"]);
    let r = list(&format!(
        "filter={}&sortBy=userName",
        enc("not (userName ew \"x.test\")")
    ))
    .await;
    assert_eq!(ids(&r.body), ["carl@y.test", "dora@y.test"]);
    let r = list(&format!(
        "filter={}&sortBy=userName&sortOrder=descending",
        enc("emails[type eq \"home\"]")
    ))
    .await;
    assert_eq!(ids(&r.body), ["dora@y.test", "bob@x.test"]);
    let r = list(&format!(
        "filter={}",
        enc("title pr and userName co \"ar\"")
    ))
    .await;
    assert_eq!(ids(&r.body), ["carl@y.test"]);
    let third = list(&format!("filter={}", enc("userName eq \"carl@y.test\""))).await;
    let modified = third.body["Resources"][0]["meta"]["lastModified"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = list(&format!(
        "filter={}&sortBy=meta.lastModified",
        enc(&format!("meta.lastModified gt \"{modified}\""))
    ))
    .await;
    assert_eq!(ids(&r.body), ["dora@y.test", "émile@x.test"], "{}", r.body);

    // Paging: totalResults counts all matches, the page is startIndex..+count.
    let r = list("sortBy=userName&startIndex=2&count=2").await;
    assert_eq!(r.body["totalResults"], 5);
    assert_eq!(r.body["startIndex"], 2);
    assert_eq!(r.body["itemsPerPage"], 2);
    assert_eq!(ids(&r.body), ["bob@x.test", "carl@y.test"]);

    // Projection.
    let r = list("attributes=userName,emails.value&count=1&sortBy=userName").await;
    let first = &r.body["Resources"][0];
    assert!(first.get("title").is_none() && first.get("id").is_some());
    assert_eq!(first["emails"], json!([{"value": "anna@x.test"}]));
    let r = list("excludedAttributes=emails,title&count=1&sortBy=userName").await;
    assert!(r.body["Resources"][0].get("emails").is_none());
    assert_eq!(r.body["Resources"][0]["userName"], "anna@x.test");

    // POST /.search, per type and at the root.
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                        "filter": "title eq \"Engineer\"", "sortBy": "userName", "count": 2});
    let r = c
        .call(
            Method::POST,
            "/scim/v2/Users/.search",
            Some(a),
            Some(search.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["totalResults"], 3);
    assert_eq!(ids(&r.body), ["anna@x.test", "carl@y.test"]);
    let r = c
        .call(Method::POST, "/scim/v2/.search", Some(a), Some(search))
        .await;
    assert_eq!(r.body["totalResults"], 3);

    // A bad filter names the position.
    let r = list(&format!("filter={}", enc("userName eq"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["scimType"], "invalidFilter");
    assert!(
        r.body["detail"].as_str().unwrap().contains("position"),
        "{}",
        r.body
    );
    c.stop().await;
}

async fn groups_and_bulk(backend: Backend) {
    let c = TestCloud::start(backend, "scim_groups").await;
    let a = Some(c.admin.as_str());
    let u1 = c.scim_user(&c.admin, user("g1@x.test")).await;
    let u2 = c.scim_user(&c.admin, user("g2@x.test")).await;
    let g = c
        .call(
            Method::POST,
            "/scim/v2/Groups",
            a,
            Some(json!({"schemas": [GROUP], "displayName": "Staff", "members": [{"value": u1}]})),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
    let gid = g.body["id"].as_str().unwrap().to_owned();
    let r = c
        .call(
            Method::PATCH,
            &format!("/scim/v2/Groups/{gid}"),
            a,
            Some(patch(json!([
                {"op": "add", "path": "members", "value": [{"value": u2}, {"value": u1}]},
                {"op": "remove", "path": format!("members[value eq \"{u1}\"]")}
            ]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let members: Vec<&str> = r.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, [u2.as_str()]);
    let r = c
        .call(
            Method::GET,
            "/scim/v2/Groups?filter=displayName%20eq%20%22staff%22",
            a,
            None,
        )
        .await;
    assert_eq!(r.body["totalResults"], 1);

    // Bulk: a group references a user created earlier in the same request.
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 1,
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "u", "data": user("bulk@x.test")},
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"schemas": [GROUP], "displayName": "Bulk", "members": [{"value": "bulkId:u"}]}},
            {"method": "PATCH", "path": format!("/Users/{u2}"),
             "data": patch(json!([{"op": "replace", "path": "title", "value": "Lead"}]))},
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": user("bulk@x.test")},
            {"method": "DELETE", "path": format!("/Users/{u1}")}
        ]
    });
    let r = c.call(Method::POST, "/scim/v2/Bulk", a, Some(bulk)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ops = r.body["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    // failOnErrors = 1: the duplicate fails and processing stops before the DELETE.
    assert_eq!(statuses, ["201", "201", "200", "409"]);
    assert_eq!(ops[3]["response"]["scimType"], "uniqueness");
    // The audit log holds what the request did, and nothing of the failed duplicate.
    let audit = c
        .call(Method::GET, "/api/v1/audit?action=user.create", a, None)
        .await;
    let creates = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"] == "bulk@x.test")
        .count();
    assert_eq!(creates, 1, "{}", audit.body);
    let bulk_user = ops[0]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let group = c
        .call(
            Method::GET,
            &scim_path(ops[1]["location"].as_str().unwrap()),
            a,
            None,
        )
        .await;
    assert_eq!(group.body["members"][0]["value"], bulk_user.as_str());
    assert_eq!(
        c.call(Method::GET, &format!("/scim/v2/Users/{u1}"), a, None)
            .await
            .status,
        StatusCode::OK
    );
    c.stop().await;
}

/// Without `failOnErrors` every operation runs, in order, and succeeds or fails alone: a
/// userName taken by a stored user or by an earlier create of the same request, a document
/// without one, a `bulkId` whose create failed.
async fn bulk_operations_fail_alone(backend: Backend) {
    let c = TestCloud::start(backend, "scim_bulk_alone").await;
    let a = Some(c.admin.as_str());
    let held = c.scim_user(&c.admin, user("held@x.test")).await;
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": user("a@x.test")},
            {"method": "POST", "path": "/Users", "bulkId": "twin", "data": user("A@X.test")},
            {"method": "POST", "path": "/Users", "bulkId": "held", "data": user("held@x.test")},
            {"method": "POST", "path": "/Users", "bulkId": "nameless",
             "data": {"schemas": [USER], "title": "no name"}},
            {"method": "POST", "path": "/Groups", "bulkId": "g",
             "data": {"schemas": [GROUP], "displayName": "Team", "members": [{"value": "bulkId:a"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": user("b@x.test")},
            {"method": "POST", "path": "/Groups", "bulkId": "twins",
             "data": {"schemas": [GROUP], "displayName": "Twins", "members": [{"value": "bulkId:twin"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "c",
             "data": {"schemas": [USER], "userName": "c@x.test", "password": "Secr3t-pw!"}}
        ]
    });
    let r = c.call(Method::POST, "/scim/v2/Bulk", a, Some(bulk)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ops = r.body["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["201", "409", "409", "400", "201", "201", "409", "201"],
        "{}",
        r.body
    );
    assert_eq!(ops[1]["response"]["scimType"], "uniqueness");
    let taken = ops[2]["response"]["detail"].as_str().unwrap();
    assert!(taken.contains(&held), "names the holder: {taken}");
    assert_eq!(
        ops[6]["response"]["detail"], "bulkId \"twin\" cannot be resolved",
        "{}",
        r.body
    );
    let mut created = Vec::new();
    for op in [&ops[0], &ops[4], &ops[5], &ops[7]] {
        let location = op["location"].as_str().unwrap();
        assert!(location.starts_with(&c.base), "{location}");
        let got = c.call(Method::GET, &scim_path(location), a, None).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        assert_eq!(op["version"], got.body["meta"]["version"], "{}", got.body);
        created.push(got.body);
    }
    assert_eq!(created[0]["userName"], "a@x.test");
    assert_eq!(created[1]["members"][0]["value"], created[0]["id"]);
    assert_eq!(created[2]["userName"], "b@x.test");
    assert_eq!(
        c.sign_in("c@x.test", "Secr3t-pw!").await.status,
        StatusCode::OK
    );
    // One audit entry per resource created, none for the failures.
    let audit = c
        .call(Method::GET, "/api/v1/audit?action=user.create", a, None)
        .await;
    let mut names: Vec<&str> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["a@x.test", "b@x.test", "c@x.test", "held@x.test"]);
    c.stop().await;
}

/// Consecutive creates are written together, several statements' worth at once: each still
/// succeeds or fails alone, whether its userName is taken in the same statement, in an earlier
/// one of the request, or by a stored user.
async fn bulk_creates_written_together_fail_alone(backend: Backend) {
    let c = TestCloud::start(backend, "scim_bulk_many").await;
    let a = Some(c.admin.as_str());
    c.scim_user(&c.admin, user("u119@x.test")).await;
    let mut operations: Vec<Value> = (0..120)
        .map(|i| {
            json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"),
                        "data": user(&format!("u{i}@x.test"))})
        })
        .collect();
    // Taken within its statement's rows, across statements, and by the stored user.
    operations[10]["data"] = user("U3@x.test");
    operations[100]["data"] = user("u4@X.test");
    let bulk = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": operations,
    });
    let r = c.call(Method::POST, "/scim/v2/Bulk", a, Some(bulk)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ops = r.body["Operations"].as_array().unwrap();
    let failed: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i]["status"] != "201")
        .collect();
    assert_eq!(failed, [10, 100, 119], "{}", r.body);
    for &i in &failed {
        assert_eq!(ops[i]["status"], "409", "{}", ops[i]);
        assert_eq!(ops[i]["bulkId"], format!("b{i}"), "{}", ops[i]);
    }
    let listed = c.call(Method::GET, "/scim/v2/Users?count=1", a, None).await;
    assert_eq!(listed.body["totalResults"], 118, "{}", listed.body);
    let got = c
        .call(
            Method::GET,
            &scim_path(ops[99]["location"].as_str().unwrap()),
            a,
            None,
        )
        .await;
    assert_eq!(got.body["userName"], "u99@x.test", "{}", got.body);
    c.stop().await;
}

async fn bad_input_and_access(backend: Backend) {
    let c = TestCloud::start_with(
        backend,
        "scim_bad",
        "[limits]\nmax_results = 3\nmax_body_bytes = 65536\n",
    )
    .await;
    let a = c.admin.as_str();
    let r = c
        .raw(
            Method::POST,
            "/scim/v2/Users",
            a,
            b"{\"schemas\": [".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidSyntax"))
    );
    assert!(
        r.body["detail"].as_str().unwrap().contains("line 1"),
        "{}",
        r.body
    );
    let r = c
        .raw(Method::POST, "/scim/v2/Users", a, vec![0xff, 0xfe, 0x00])
        .await;
    assert_eq!(r.body["scimType"], "invalidSyntax");
    let r = c
        .call(
            Method::POST,
            "/scim/v2/Users",
            Some(a),
            Some(json!({"schemas": [USER], "userName": "x@x", "active": "maybe"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidValue"))
    );
    assert!(r.body["detail"].as_str().unwrap().contains("active"));
    let r = c
        .call(
            Method::POST,
            "/scim/v2/Users",
            Some(a),
            Some(json!({"schemas": [USER], "userName": "x@x", "shoeSize": 9})),
        )
        .await;
    assert!(
        r.body["detail"].as_str().unwrap().contains("shoeSize"),
        "{}",
        r.body
    );
    let huge = json!({"schemas": [USER], "userName": "big@x", "displayName": "x".repeat(70_000)});
    let r = c
        .call(Method::POST, "/scim/v2/Users", Some(a), Some(huge))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    let id = c.scim_user(a, user("ok@x.test")).await;
    let r = c
        .call(
            Method::PATCH,
            &format!("/scim/v2/Users/{id}"),
            Some(a),
            Some(patch(
                json!([{"op": "replace", "path": "emails[type eq", "value": "x"}]),
            )),
        )
        .await;
    assert_eq!(r.body["scimType"], "invalidPath", "{}", r.body);
    let r = c
        .call(
            Method::PATCH,
            &format!("/scim/v2/Users/{id}"),
            Some(a),
            Some(patch(json!([{"op": "remove", "path": "userName"}]))),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        c.call(Method::GET, &format!("/scim/v2/Users/{id}"), Some(a), None)
            .await
            .body["userName"],
        "ok@x.test"
    );
    for n in 0..3 {
        c.scim_user(a, user(&format!("many{n}@x.test"))).await;
    }
    let r = c.call(Method::GET, "/scim/v2/Users", Some(a), None).await;
    assert_eq!(r.body["scimType"], "tooMany", "{}", r.body);
    assert_eq!(
        c.call(Method::GET, "/scim/v2/Users?count=3", Some(a), None)
            .await
            .status,
        StatusCode::OK
    );

    // Authentication and scopes.
    assert_eq!(
        c.call(Method::GET, "/scim/v2/Users", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.call(Method::GET, "/scim/v2/Users", Some("idb_wrong"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.call(Method::GET, "/scim/v2/Users?count=1", Some(&c.read), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = c
        .call(
            Method::POST,
            "/scim/v2/Users",
            Some(&c.read),
            Some(user("r@x")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.call(Method::GET, "/api/v1/users", Some(&c.sync), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Discovery.
    let spc = c
        .call(Method::GET, "/scim/v2/ServiceProviderConfig", None, None)
        .await;
    assert_eq!(spc.body["bulk"]["maxOperations"], 1000);
    assert_eq!(spc.body["filter"]["maxResults"], 3);
    let types = c
        .call(Method::GET, "/scim/v2/ResourceTypes", None, None)
        .await;
    assert_eq!(types.body["totalResults"], 3);
    let schema = c
        .call(Method::GET, &format!("/scim/v2/Schemas/{SYNC}"), None, None)
        .await;
    assert_eq!(schema.status, StatusCode::OK);
    c.stop().await;
}

async fn on_premises_objects_belong_to_the_sync_agent(backend: Backend) {
    let c = TestCloud::start(backend, "scim_sync").await;
    let synced = json!({"schemas": [USER, SYNC], "userName": "jack@lab.test", "displayName": "Jack",
        SYNC: {"source": "on_premises", "immutableId": "AAECAwQFBgcICQoLDA0ODw==",
               "onPremisesDistinguishedName": "CN=Jack,OU=Staff,DC=lab", "onPremisesSamAccountName": "jack"}});
    let id = c.scim_user(&c.sync, synced).await;
    let got = c
        .call(
            Method::GET,
            &format!("/scim/v2/Users/{id}"),
            Some(&c.admin),
            None,
        )
        .await;
    assert_eq!(got.body[SYNC]["source"], "on_premises");
    assert!(got.body[SYNC]["lastSyncedAt"].is_string());
    let edit = patch(json!([{"op": "replace", "path": "displayName", "value": "Jacky"}]));
    let r = c
        .call(
            Method::PATCH,
            &format!("/scim/v2/Users/{id}"),
            Some(&c.admin),
            Some(edit.clone()),
        )
        .await;
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("mutability"))
    );
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("CN=Jack,OU=Staff,DC=lab"));
    let r = c
        .call(
            Method::DELETE,
            &format!("/scim/v2/Users/{id}"),
            Some(&c.admin),
            None,
        )
        .await;
    assert_eq!(r.body["scimType"], "mutability");
    let r = c
        .call(
            Method::PATCH,
            &format!("/scim/v2/Users/{id}"),
            Some(&c.sync),
            Some(edit),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["displayName"], "Jacky");
    assert_eq!(r.body[SYNC]["immutableId"], "AAECAwQFBgcICQoLDA0ODw==");
    // The agent's batched hard match: an `or` of anchors, compared exactly.
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": format!("{SYNC}:immutableId eq \"AAECAwQFBgcICQoLDA0ODw==\" or \
                           {SYNC}:immutableId eq \"aaecawqfbgcicqolda0odw==\" or \
                           {SYNC}:immutableId eq \"bm9ib2R5\""),
        "count": 6});
    let r = c
        .call(
            Method::POST,
            "/scim/v2/Users/.search",
            Some(&c.sync),
            Some(search),
        )
        .await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);
    assert_eq!(r.body["Resources"][0]["id"], id.as_str());
    // Only the agent may claim an object for on-premises.
    let claim = json!({"schemas": [USER, SYNC], "userName": "eve@lab.test", SYNC: {"source": "on_premises"}});
    let r = c
        .call(Method::POST, "/scim/v2/Users", Some(&c.admin), Some(claim))
        .await;
    assert_eq!(r.body["scimType"], "mutability", "{}", r.body);
    c.stop().await;
}

async fn contacts(backend: Backend) {
    let c = TestCloud::start(backend, "scim_contacts").await;
    let a = Some(c.admin.as_str());
    let types = c
        .call(Method::GET, "/scim/v2/ResourceTypes/Contact", a, None)
        .await;
    assert_eq!(types.body["endpoint"], "/Contacts", "{}", types.body);
    let anchor = "BwcHBwcHBwcHBwcHBwcHBw==";
    let synced = c
        .call(
            Method::POST,
            "/scim/v2/Contacts",
            Some(&c.sync),
            Some(json!({
                "schemas": [CONTACT, SYNC_CONTACT],
                "displayName": "Lab Contact",
                "emails": [{"type": "work", "value": "contact@example.invalid"}],
                "companyName": "Example Ltd",
                SYNC_CONTACT: {"source": "on_premises", "immutableId": anchor,
                               "onPremisesDistinguishedName": "CN=Lab Contact,OU=Staff,DC=lab"}
            })),
        )
        .await;
    assert_eq!(synced.status, StatusCode::CREATED, "{}", synced.body);
    assert_eq!(synced.body["meta"]["resourceType"], "Contact");
    let id = synced.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        synced.headers["location"].to_str().unwrap(),
        format!("{}/scim/v2/Contacts/{id}", c.base)
    );
    // The agent's hard match: by anchor, through the index.
    let found = c
        .call(
            Method::GET,
            &format!("/scim/v2/Contacts?filter={SYNC_CONTACT}:immutableId%20eq%20%22{anchor}%22"),
            a,
            None,
        )
        .await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    assert_eq!(found.body["Resources"][0]["id"], id.as_str());
    // Contacts are not users: no userName, no password, and no sign-in.
    let r = c
        .call(
            Method::POST,
            "/scim/v2/Contacts",
            a,
            Some(json!({"schemas": [CONTACT], "displayName": "x", "password": "Secr3t-pw!"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("password"));
    let r = c
        .call(
            Method::POST,
            "/scim/v2/Contacts",
            a,
            Some(json!({"schemas": [CONTACT]})),
        )
        .await;
    assert!(
        r.body["detail"].as_str().unwrap().contains("displayName"),
        "{}",
        r.body
    );
    let users = c.call(Method::GET, "/scim/v2/Users", a, None).await;
    assert_eq!(
        users.body["totalResults"], 0,
        "contacts are not listed as users"
    );
    // Mastered on premises: the admin cannot edit it; a group may hold it as a member.
    let edit = patch(json!([{"op": "replace", "path": "title", "value": "CEO"}]));
    let r = c
        .call(
            Method::PATCH,
            &format!("/scim/v2/Contacts/{id}"),
            a,
            Some(edit),
        )
        .await;
    assert_eq!(r.body["scimType"], "mutability", "{}", r.body);
    let g = c
        .call(
            Method::POST,
            "/scim/v2/Groups",
            a,
            Some(json!({"schemas": [GROUP], "displayName": "Partners",
                        "members": [{"value": id, "type": "Contact"}]})),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
    // Deleted by the agent: soft-deleted, listed among deleted contacts, restorable.
    let r = c
        .call(
            Method::DELETE,
            &format!("/scim/v2/Contacts/{id}"),
            Some(&c.sync),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let deleted = c
        .call(Method::GET, "/api/v1/deleted-contacts", a, None)
        .await;
    assert_eq!(
        deleted.body["contacts"][0]["id"],
        id.as_str(),
        "{}",
        deleted.body
    );
    let gone = c
        .call(Method::GET, &format!("/scim/v2/Contacts/{id}"), a, None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let restored = c
        .call(
            Method::POST,
            &format!("/api/v1/deleted-contacts/{id}/restore"),
            a,
            None,
        )
        .await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.body);
    assert_eq!(restored.body["displayName"], "Lab Contact");
    c.stop().await;
}

on_both_backends!(
    user_lifecycle,
    filters_sorting_paging_projection,
    groups_and_bulk,
    bulk_operations_fail_alone,
    bulk_creates_written_together_fail_alone,
    bad_input_and_access,
    on_premises_objects_belong_to_the_sync_agent,
    contacts,
);
