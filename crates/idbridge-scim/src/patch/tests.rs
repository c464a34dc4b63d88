use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, SYNC_USER_SCHEMA, USER_SCHEMA};

fn request(ops: Value) -> PatchRequest {
    PatchRequest::parse(&json!({"schemas": [PATCH_OP], "Operations": ops}))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn patch_user(ops: Value) -> Result<Value, ScimError> {
    apply_patch(ResourceKind::User, &user(), &request(ops))
}

fn patched_user(ops: Value) -> Value {
    patch_user(ops).unwrap_or_else(|e| panic!("{e}"))
}

fn error_type(result: Result<Value, ScimError>) -> Option<ScimType> {
    result.unwrap_err().scim_type
}

fn user() -> Value {
    json!({
        "schemas": [USER_SCHEMA, SYNC_USER_SCHEMA],
        "id": "u1",
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "b@work.example", "type": "work", "primary": true},
            {"value": "b@home.example", "type": "home"}
        ],
        "groups": [{"value": "g1", "display": "Staff"}],
        "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z"},
        SYNC_USER_SCHEMA: {"immutableId": "anchor", "licenses": ["E3"]}
    })
}

fn group() -> Value {
    json!({
        "schemas": [GROUP_SCHEMA],
        "id": "g1",
        "displayName": "Staff",
        "members": [{"value": "u1", "type": "User"}, {"value": "u2", "type": "User"}]
    })
}

#[test]
fn parse_requires_schema_operations_and_values() {
    let bad = |body: Value| PatchRequest::parse(&body).unwrap_err();
    assert_eq!(
        bad(json!({"Operations": [{"op": "remove", "path": "title"}]})).scim_type,
        Some(ScimType::InvalidSyntax)
    );
    assert_eq!(
        bad(json!({"schemas": [PATCH_OP], "Operations": []})).scim_type,
        Some(ScimType::InvalidSyntax)
    );
    assert_eq!(
        bad(json!({"schemas": [PATCH_OP], "Operations": [{"op": "move", "path": "a"}]})).scim_type,
        Some(ScimType::InvalidSyntax)
    );
    assert_eq!(
        bad(json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title"}]}))
            .scim_type,
        Some(ScimType::InvalidValue)
    );
    let e = bad(
        json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "emails[type eqq \"x\"]"}]}),
    );
    assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
    assert!(e.detail.contains("position 12"), "{}", e.detail);
    let ok = request(
        json!([{"op": "Add", "path": "title", "value": "x"}, {"OP": "REMOVE", "Path": "nickName"}]),
    );
    assert_eq!(ok.operations.len(), 2);
    assert_eq!(ok.operations.first().map(|o| o.op), Some(PatchOpKind::Add));
}

#[test]
fn add_and_replace_simple_attributes() {
    let u = patched_user(json!([
        {"op": "add", "path": "title", "value": "Guide"},
        {"op": "replace", "path": "USERNAME", "value": "barbara"},
        {"op": "replace", "path": "name.givenName", "value": "Babs"},
        {"op": "add", "path": "active", "value": false}
    ]));
    assert_eq!(u["title"], "Guide");
    assert_eq!(u["userName"], "barbara");
    assert_eq!(
        u["name"],
        json!({"givenName": "Babs", "familyName": "Jensen"})
    );
    assert_eq!(u["active"], false);
    // Server-maintained attributes survive a patch.
    assert_eq!(u["id"], "u1");
    assert_eq!(u["groups"], user()["groups"]);
    assert_eq!(u[SYNC_USER_SCHEMA]["licenses"], json!(["E3"]));
}

#[test]
fn add_without_path_merges_attributes_and_extensions() {
    let u = patched_user(json!([{"op": "add", "value": {
        "nickName": "Babs",
        "name": {"middleName": "J"},
        "emails": [{"value": "b@new.example", "type": "other"}],
        ENTERPRISE_USER_SCHEMA: {"department": "Tours"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter": "42"
    }}]));
    assert_eq!(u["nickName"], "Babs");
    assert_eq!(u["name"]["middleName"], "J");
    assert_eq!(u["name"]["givenName"], "Barbara");
    assert_eq!(u["emails"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        u[ENTERPRISE_USER_SCHEMA],
        json!({"department": "Tours", "costCenter": "42"})
    );
    assert!(u["schemas"]
        .as_array()
        .unwrap()
        .contains(&json!(ENTERPRISE_USER_SCHEMA)));
}

#[test]
fn replace_without_path_replaces_multi_valued_attributes() {
    let u = patched_user(json!([{"op": "replace", "value": {
        "emails": [{"value": "only@example", "type": "work"}],
        "displayName": "Barbara J"
    }}]));
    assert_eq!(
        u["emails"],
        json!([{"value": "only@example", "type": "work"}])
    );
    assert_eq!(u["displayName"], "Barbara J");
}

#[test]
fn add_to_multi_valued_appends_and_dedupes() {
    let g = apply_patch(
        ResourceKind::Group,
        &group(),
        &request(json!([{"op": "add", "path": "members", "value": [
            {"value": "u2", "type": "User"}, {"value": "u3"}, {"value": "u3"}
        ]}])),
    )
    .unwrap();
    assert_eq!(
        g["members"],
        json!([{"value": "u1", "type": "User"}, {"value": "u2", "type": "User"}, {"value": "u3"}])
    );
    // A single object is accepted as a one-value list.
    let g = apply_patch(
        ResourceKind::Group,
        &group(),
        &request(json!([{"op": "add", "path": "members", "value": {"value": "u9"}}])),
    )
    .unwrap();
    assert_eq!(g["members"].as_array().map(Vec::len), Some(3));
}

#[test]
fn remove_by_value_filter_and_by_listed_values() {
    let by_filter = apply_patch(
        ResourceKind::Group,
        &group(),
        &request(json!([{"op": "remove", "path": "members[value eq \"u1\"]"}])),
    )
    .unwrap();
    assert_eq!(
        by_filter["members"],
        json!([{"value": "u2", "type": "User"}])
    );
    let listed = apply_patch(
        ResourceKind::Group,
        &group(),
        &request(json!([{"op": "Remove", "path": "members", "value": [{"value": "u2"}]}])),
    )
    .unwrap();
    assert_eq!(listed["members"], json!([{"value": "u1", "type": "User"}]));
    let all = apply_patch(
        ResourceKind::Group,
        &group(),
        &request(json!([{"op": "remove", "path": "members"}])),
    )
    .unwrap();
    assert!(all.get("members").is_none());
}

#[test]
fn remove_and_replace_matching_nothing_is_no_target() {
    assert_eq!(
        error_type(patch_user(
            json!([{"op": "remove", "path": "emails[type eq \"other\"]"}])
        )),
        Some(ScimType::NoTarget)
    );
    assert_eq!(
        error_type(patch_user(
            json!([{"op": "replace", "path": "emails[type eq \"other\"].value", "value": "x@y"}])
        )),
        Some(ScimType::NoTarget)
    );
    assert_eq!(
        error_type(patch_user(json!([{"op": "remove"}]))),
        Some(ScimType::NoTarget)
    );
}

#[test]
fn filtered_replace_and_add_of_sub_attributes() {
    let u = patched_user(json!([
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@work.example"}
    ]));
    assert_eq!(u["emails"][0]["value"], "new@work.example");
    assert_eq!(u["emails"][1]["value"], "b@home.example");
    // Azure AD style: add through a filter that matches nothing creates the value.
    let u = patched_user(json!([
        {"op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"}
    ]));
    assert_eq!(
        u["phoneNumbers"],
        json!([{"type": "mobile", "value": "+1 555"}])
    );
    let u = patched_user(json!([
        {"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "h@x", "type": "home", "display": "Home"}}
    ]));
    assert_eq!(
        u["emails"][1],
        json!({"value": "h@x", "type": "home", "display": "Home"})
    );
}

#[test]
fn setting_primary_clears_the_other_primary() {
    let u = patched_user(
        json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
    );
    assert_eq!(u["emails"][0]["primary"], false);
    assert_eq!(u["emails"][1]["primary"], true);
    let u = patched_user(
        json!([{"op": "add", "path": "emails", "value": {"value": "n@x", "primary": true}}]),
    );
    assert_eq!(u["emails"][0]["primary"], false);
    assert_eq!(u["emails"][2]["primary"], true);
    assert_eq!(
        error_type(patch_user(
            json!([{"op": "add", "path": "emails", "value": [
                {"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}
            ]}])
        )),
        Some(ScimType::InvalidValue)
    );
}

#[test]
fn read_only_and_immutable_attributes_are_protected() {
    for path in [
        "id",
        "meta.created",
        "groups",
        "meta",
        &format!("{SYNC_USER_SCHEMA}:licenses"),
    ] {
        assert_eq!(
            error_type(patch_user(
                json!([{"op": "replace", "path": path, "value": "x"}])
            )),
            Some(ScimType::Mutability),
            "{path}"
        );
    }
    assert_eq!(
        error_type(patch_user(json!([{"op": "add", "value": {"id": "other"}}]))),
        Some(ScimType::Mutability)
    );
    let g = apply_patch(
        ResourceKind::Group,
        &group(),
        &request(
            json!([{"op": "replace", "path": "members[value eq \"u1\"].value", "value": "u7"}]),
        ),
    );
    assert_eq!(error_type(g), Some(ScimType::Mutability));
    // Removing a required attribute is a mutability error too (RFC 7644 §3.5.2.2).
    assert_eq!(
        error_type(patch_user(json!([{"op": "remove", "path": "userName"}]))),
        Some(ScimType::Mutability)
    );
}

#[test]
fn paths_and_values_are_checked() {
    assert_eq!(
        error_type(patch_user(
            json!([{"op": "add", "path": "favoriteColor", "value": "x"}])
        )),
        Some(ScimType::InvalidPath)
    );
    assert_eq!(
        error_type(patch_user(
            json!([{"op": "add", "path": "name.nonsense", "value": "x"}])
        )),
        Some(ScimType::InvalidPath)
    );
    assert_eq!(
        error_type(patch_user(
            json!([{"op": "add", "path": "title[value eq \"x\"]", "value": "x"}])
        )),
        Some(ScimType::InvalidPath)
    );
    assert_eq!(
        error_type(patch_user(
            json!([{"op": "replace", "path": "active", "value": "yes"}])
        )),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        error_type(patch_user(
            json!([{"op": "replace", "path": format!("{SYNC_USER_SCHEMA}:source"), "value": "elsewhere"}])
        )),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        error_type(patch_user(json!([{"op": "add", "value": {"bogus": 1}}]))),
        Some(ScimType::InvalidSyntax)
    );
}

#[test]
fn extension_paths_create_and_remove_the_extension() {
    let path = format!("{ENTERPRISE_USER_SCHEMA}:manager.value");
    let u = patched_user(json!([{"op": "add", "path": path, "value": "m1"}]));
    assert_eq!(u[ENTERPRISE_USER_SCHEMA]["manager"], json!({"value": "m1"}));
    assert!(u["schemas"]
        .as_array()
        .unwrap()
        .contains(&json!(ENTERPRISE_USER_SCHEMA)));
    let removed = apply_patch(
        ResourceKind::User,
        &u,
        &request(json!([{"op": "remove", "path": format!("{ENTERPRISE_USER_SCHEMA}:manager")}])),
    )
    .unwrap();
    assert!(removed.get(ENTERPRISE_USER_SCHEMA).is_none());
    assert!(!removed["schemas"]
        .as_array()
        .unwrap()
        .contains(&json!(ENTERPRISE_USER_SCHEMA)));
    let u = patched_user(
        json!([{"op": "replace", "path": format!("{SYNC_USER_SCHEMA}:source"), "value": "On_Premises"}]),
    );
    assert_eq!(u[SYNC_USER_SCHEMA]["source"], "on_premises");
}

#[test]
fn patch_is_atomic() {
    let original = user();
    let result = apply_patch(
        ResourceKind::User,
        &original,
        &request(json!([
            {"op": "replace", "path": "title", "value": "ok"},
            {"op": "replace", "path": "id", "value": "no"}
        ])),
    );
    assert!(result.is_err());
    assert_eq!(original, user());
}

#[test]
fn remove_of_absent_attribute_is_a_no_op() {
    assert_eq!(
        patched_user(json!([{"op": "remove", "path": "nickName"}])),
        patched_user(json!([{"op": "remove", "path": "title"}]))
    );
}

#[test]
fn touched_attributes_are_canonical_top_level_names() {
    let p = request(json!([
        {"op": "replace", "path": "NAME.givenName", "value": "x"},
        {"op": "remove", "path": "emails[type eq \"work\"].value"},
        {"op": "add", "path": format!("{SYNC_USER_SCHEMA}:onPremisesDistinguishedName"), "value": "CN=x"},
        {"op": "add", "value": {"title": "t", ENTERPRISE_USER_SCHEMA: {"department": "d"}, "members": []}},
        {"op": "add", "path": "unknownThing", "value": 1}
    ]));
    let mut touched = touched_attributes(&p);
    touched.sort();
    let mut expected = vec![
        "name".to_owned(),
        "emails".to_owned(),
        format!("{SYNC_USER_SCHEMA}:onPremisesDistinguishedName"),
        format!("{ENTERPRISE_USER_SCHEMA}:department"),
        "members".to_owned(),
        "title".to_owned(),
        "unknownThing".to_owned(),
    ];
    expected.sort();
    assert_eq!(touched, expected);
}

proptest! {
    #[test]
    fn parse_and_apply_never_panic(op in "(add|replace|remove|Add)", path in ".{0,40}", value in prop_oneof![
        Just(json!(null)), Just(json!("x")), Just(json!(true)), Just(json!([{"value": "v", "primary": true}])),
        Just(json!({"value": "v"})), Just(json!({"emails": "x"})), any::<i64>().prop_map(|n| json!(n)),
    ]) {
        let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": op, "path": path, "value": value}]});
        if let Ok(p) = PatchRequest::parse(&body) {
            let _ = apply_patch(ResourceKind::User, &user(), &p);
            let _ = apply_patch(ResourceKind::Group, &group(), &p);
            let _ = touched_attributes(&p);
        }
    }

    #[test]
    fn realistic_paths_never_panic(
        attr in "(emails|members|name|userName|phoneNumbers|urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager)",
        filter in "(\\[value eq \"u1\"\\]|\\[type eq \"work\"\\]|\\[primary eq true\\]|)",
        sub in "(\\.value|\\.primary|\\.type|\\.givenName|)",
        op in "(add|replace|remove)",
        value in prop_oneof![Just(json!("x")), Just(json!(true)), Just(json!({"value": "v", "primary": true})), Just(json!([]))],
    ) {
        let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": op, "path": format!("{attr}{filter}{sub}"), "value": value}]});
        if let Ok(p) = PatchRequest::parse(&body) {
            if let Ok(u) = apply_patch(ResourceKind::User, &user(), &p) {
                // Whatever succeeds is a valid stored resource.
                prop_assert!(crate::validate::revalidate(ResourceKind::User, u.as_object().unwrap(), ScimType::Mutability).is_ok());
            }
            let _ = apply_patch(ResourceKind::Group, &group(), &p);
        }
    }
}

#[test]
fn adding_an_existing_value_merges_instead_of_duplicating() {
    let u = patched_user(
        json!([{"op": "add", "path": "emails", "value": [{"value": "B@WORK.example", "display": "Work"}]}]),
    );
    assert_eq!(u["emails"].as_array().map(Vec::len), Some(2));
    assert_eq!(u["emails"][0]["display"], "Work");
    let g = apply_patch(
        ResourceKind::Group,
        &group(),
        &request(json!([{"op": "add", "path": "members", "value": [{"value": "u1"}]}])),
    )
    .unwrap();
    assert_eq!(g["members"], group()["members"]);
    // Member ids are caseExact: "U1" is another member.
    let g = apply_patch(
        ResourceKind::Group,
        &group(),
        &request(json!([{"op": "add", "path": "members", "value": [{"value": "U1"}]}])),
    )
    .unwrap();
    assert_eq!(g["members"].as_array().map(Vec::len), Some(3));
}

#[test]
fn large_member_lists_patch_in_linear_time() {
    let members: Vec<Value> = (0..50_000)
        .map(|i| json!({"value": format!("m{i}")}))
        .collect();
    let big =
        json!({"schemas": [GROUP_SCHEMA], "id": "g", "displayName": "All", "members": members});
    let adds: Vec<Value> = (25_000..75_000)
        .map(|i| json!({"value": format!("m{i}")}))
        .collect();
    let removes: Vec<Value> = (0..10_000)
        .map(|i| json!({"value": format!("m{i}")}))
        .collect();
    let g = apply_patch(
        ResourceKind::Group,
        &big,
        &request(json!([
            {"op": "add", "path": "members", "value": adds},
            {"op": "remove", "path": "members", "value": removes}
        ])),
    )
    .unwrap();
    assert_eq!(g["members"].as_array().map(Vec::len), Some(65_000));
}

#[test]
fn azure_style_string_booleans_are_accepted() {
    let u = patched_user(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    assert_eq!(u["active"], false);
}

#[test]
fn password_can_be_taken_out_of_a_patched_user() {
    let mut u = patched_user(json!([{"op": "replace", "path": "password", "value": "s3cret"}]));
    assert_eq!(
        crate::validate::take_password(&mut u).as_deref(),
        Some("s3cret")
    );
    assert!(u.get("password").is_none());
}
