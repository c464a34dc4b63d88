//! Minimal PATCH computation: what to send so the target's attributes become the desired ones,
//! touching only attributes the sync manages. Pure.

use serde_json::{json, Map, Value};

/// One operation of a SCIM PATCH request (RFC 7644 §3.5.2).
#[derive(Debug, Clone, PartialEq)]
pub enum PatchOp {
    Add { path: String, value: Value },
    Replace { path: String, value: Value },
    Remove { path: String },
}

impl PatchOp {
    pub fn to_json(&self) -> Value {
        match self {
            PatchOp::Add { path, value } => json!({"op": "add", "path": path, "value": value}),
            PatchOp::Replace { path, value } => {
                json!({"op": "replace", "path": path, "value": value})
            }
            PatchOp::Remove { path } => json!({"op": "remove", "path": path}),
        }
    }
}

/// Attributes whose values are long lists of `{"value": id}` references: changed member by member
/// so a one-member change to a 50,000-member group sends one operation, not the whole list.
const REFERENCE_LISTS: [&str; 1] = ["members"];

/// The operations that turn `current` into `desired` for the `managed` top-level attributes
/// (extension schemas are managed by their URN and compared attribute by attribute).
/// Attribute names compare case-insensitively, as SCIM requires.
pub fn minimal_patch(current: &Value, desired: &Value, managed: &[&str]) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    for name in managed {
        let cur = lookup(current, name);
        let want = lookup(desired, name).filter(|v| !is_empty(v));
        if name.starts_with("urn:") {
            diff_object(name, ':', cur, want, &mut ops);
        } else if REFERENCE_LISTS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            diff_reference_list(name, cur, want, &mut ops);
        } else if matches!(want, Some(Value::Object(_))) || matches!(cur, Some(Value::Object(_))) {
            diff_object(name, '.', cur, want, &mut ops);
        } else {
            diff_value(name.to_string(), cur, want, &mut ops);
        }
    }
    ops
}

fn lookup<'a>(resource: &'a Value, name: &str) -> Option<&'a Value> {
    resource
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
        _ => false,
    }
}

fn diff_value(path: String, cur: Option<&Value>, want: Option<&Value>, ops: &mut Vec<PatchOp>) {
    match (cur.filter(|v| !is_empty(v)), want) {
        (None, None) => {}
        (Some(_), None) => ops.push(PatchOp::Remove { path }),
        (Some(c), Some(w)) if c == w => {}
        (_, Some(w)) => ops.push(PatchOp::Replace {
            path,
            value: w.clone(),
        }),
    }
}

/// A complex attribute (`name`) or an extension (`urn:...:User`): compared member by member.
fn diff_object(
    prefix: &str,
    separator: char,
    cur: Option<&Value>,
    want: Option<&Value>,
    ops: &mut Vec<PatchOp>,
) {
    let empty = Map::new();
    let cur = cur.and_then(Value::as_object).unwrap_or(&empty);
    let want = want.and_then(Value::as_object).unwrap_or(&empty);
    let mut keys: Vec<&String> = cur.keys().chain(want.keys()).collect();
    keys.sort_by_key(|k| k.to_ascii_lowercase());
    keys.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    for key in keys {
        let c = cur
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v);
        let w = want
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v);
        diff_value(
            format!("{prefix}{separator}{key}"),
            c,
            w.filter(|v| !is_empty(v)),
            ops,
        );
    }
}

fn reference_ids(v: Option<&Value>) -> Vec<&str> {
    let mut ids: Vec<&str> = v
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("value").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn diff_reference_list(
    name: &str,
    cur: Option<&Value>,
    want: Option<&Value>,
    ops: &mut Vec<PatchOp>,
) {
    let (cur, want) = (reference_ids(cur), reference_ids(want));
    let added: Vec<Value> = want
        .iter()
        .filter(|id| cur.binary_search(id).is_err())
        .map(|id| json!({"value": id}))
        .collect();
    for id in cur.iter().filter(|id| want.binary_search(id).is_err()) {
        ops.push(PatchOp::Remove {
            path: format!("{name}[value eq {}]", Value::from(*id)),
        });
    }
    if !added.is_empty() {
        ops.push(PatchOp::Add {
            path: name.to_string(),
            value: Value::Array(added),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYNC: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";

    #[test]
    fn unchanged_resources_need_no_operations() {
        let user = json!({"userName": "jack@lab", "name": {"givenName": "Jack"}, "active": true});
        assert!(minimal_patch(&user, &user, &["userName", "name", "active"]).is_empty());
    }

    #[test]
    fn changes_only_what_differs_and_only_managed_attributes() {
        let current = json!({
            "userName": "jack@lab", "displayName": "Jack", "title": "Support",
            "name": {"givenName": "Jack", "familyName": "Smith"},
            "nickName": "cloud-owned",
            SYNC: {"immutableId": "abc", "onPremisesDistinguishedName": "CN=Jack,OU=Staff"}
        });
        let desired = json!({
            "USERNAME": "jack@lab", "displayName": "Jack Smith",
            "name": {"givenName": "Jack", "familyName": "Smith-Jones"},
            SYNC: {"immutableId": "abc", "onPremisesDistinguishedName": "CN=Jack,OU=Sales"}
        });
        let ops = minimal_patch(
            &current,
            &desired,
            &["userName", "displayName", "title", "name", SYNC],
        );
        assert_eq!(
            ops,
            vec![
                PatchOp::Replace {
                    path: "displayName".into(),
                    value: json!("Jack Smith")
                },
                PatchOp::Remove {
                    path: "title".into()
                },
                PatchOp::Replace {
                    path: "name.familyName".into(),
                    value: json!("Smith-Jones")
                },
                PatchOp::Replace {
                    path: format!("{SYNC}:onPremisesDistinguishedName"),
                    value: json!("CN=Jack,OU=Sales")
                },
            ]
        );
    }

    #[test]
    fn members_change_one_by_one() {
        let current = json!({"members": [{"value": "a"}, {"value": "b"}, {"value": "c"}]});
        let desired = json!({"members": [{"value": "c"}, {"value": "d"}, {"value": "a"}]});
        let ops = minimal_patch(&current, &desired, &["members"]);
        assert_eq!(
            ops,
            vec![
                PatchOp::Remove {
                    path: r#"members[value eq "b"]"#.into()
                },
                PatchOp::Add {
                    path: "members".into(),
                    value: json!([{"value": "d"}])
                },
            ]
        );
    }

    #[test]
    fn empty_desired_values_remove_and_empty_current_values_are_absent() {
        let current = json!({"title": "", "department": "Sales"});
        let desired = json!({"title": null, "department": ""});
        let ops = minimal_patch(&current, &desired, &["title", "department"]);
        assert_eq!(
            ops,
            vec![PatchOp::Remove {
                path: "department".into()
            }]
        );
    }

    #[test]
    fn multi_valued_non_reference_attributes_are_replaced_whole() {
        let current = json!({"emails": [{"type": "work", "value": "a@x", "primary": true}]});
        let desired = json!({"emails": [{"type": "work", "value": "b@x", "primary": true}]});
        let ops = minimal_patch(&current, &desired, &["emails"]);
        assert_eq!(
            ops,
            vec![PatchOp::Replace {
                path: "emails".into(),
                value: desired["emails"].clone()
            }]
        );
        assert_eq!(
            ops[0].to_json(),
            json!({"op": "replace", "path": "emails", "value": desired["emails"]})
        );
    }
}
