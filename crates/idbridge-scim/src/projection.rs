//! Attribute projection (RFC 7644 §3.4.2.5, §3.9): `attributes` / `excludedAttributes`
//! combined with each attribute's `returned` characteristic.

use serde_json::{Map, Value};

use crate::path::AttrPath;
use crate::schema::{AttributeDef, ResourceKind, Returned, Schema};
use crate::value::Resolved;

/// The representation of `resource` to return. `id` and `schemas` always appear, `password`
/// (returned=never) never does. A non-empty `attributes` selects attributes or sub-attributes
/// (`emails.value`); otherwise `excluded` removes them from the default set. Paths naming no
/// attribute are ignored.
pub fn project(
    kind: ResourceKind,
    resource: &Value,
    attributes: &[AttrPath],
    excluded: &[AttrPath],
) -> Value {
    let Some(obj) = resource.as_object() else {
        return resource.clone();
    };
    let resolve = |paths: &[AttrPath]| -> Vec<Resolved> {
        paths.iter().filter_map(|p| p.resolve(kind)).collect()
    };
    let selection = Selection {
        attributes: resolve(attributes),
        excluded: resolve(excluded),
        selecting: !attributes.is_empty(),
    };
    let mut out = Map::new();
    for (key, value) in obj {
        if key == "schemas" {
            out.insert(key.clone(), value.clone());
        } else if let Some(ext) = kind.extension(key) {
            let inner: Map<String, Value> = value
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| {
                    let def = ext.attribute(k)?;
                    Some((k.clone(), selection.project(Some(ext), def, v)?))
                })
                .collect();
            if !inner.is_empty() {
                out.insert(key.clone(), Value::Object(inner));
            }
        } else if let Some(def) = kind.core_attribute(key) {
            if let Some(v) = selection.project(None, def, value) {
                out.insert(key.clone(), v);
            }
        } else if !selection.selecting {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

struct Selection {
    attributes: Vec<Resolved>,
    excluded: Vec<Resolved>,
    /// Whether `attributes` was given at all (even if none of its paths resolved).
    selecting: bool,
}

impl Selection {
    fn project(
        &self,
        ext: Option<&'static Schema>,
        def: &'static AttributeDef,
        value: &Value,
    ) -> Option<Value> {
        let naming = |paths: &[Resolved]| -> Vec<Option<&'static str>> {
            paths
                .iter()
                .filter(|r| std::ptr::eq(r.def, def) && same_schema(r.extension, ext))
                .map(|r| r.sub.map(|s| s.name))
                .collect()
        };
        match def.returned {
            Returned::Never => None,
            Returned::Always => Some(value.clone()),
            _ if self.selecting => {
                let subs = naming(&self.attributes);
                if subs.is_empty() {
                    None
                } else if subs.contains(&None) {
                    Some(value.clone())
                } else {
                    Some(map_subs(value, |k| {
                        subs.iter().flatten().any(|s| s.eq_ignore_ascii_case(k))
                    }))
                }
            }
            Returned::Request => None,
            _ => {
                let subs = naming(&self.excluded);
                if subs.contains(&None) {
                    None
                } else {
                    Some(map_subs(value, |k| {
                        !subs.iter().flatten().any(|s| s.eq_ignore_ascii_case(k))
                    }))
                }
            }
        }
    }
}

fn same_schema(a: Option<&'static Schema>, b: Option<&'static Schema>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => std::ptr::eq(a, b),
        _ => false,
    }
}

/// Keeps the sub-attributes `keep` accepts, in a complex value or each of a multi-valued one.
fn map_subs(value: &Value, keep: impl Fn(&str) -> bool + Copy) -> Value {
    match value {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| map_subs(v, keep)).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::path::parse_attribute_list;
    use crate::schema::{ENTERPRISE_USER_SCHEMA, SYNC_USER_SCHEMA, USER_SCHEMA};

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA, SYNC_USER_SCHEMA],
            "id": "u1",
            "userName": "bjensen",
            "password": "hunter2",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "a@x", "type": "work"}, {"value": "b@x", "type": "home"}],
            "meta": {"resourceType": "User", "version": "W/\"1\""},
            ENTERPRISE_USER_SCHEMA: {"department": "Tours", "costCenter": "4"},
            SYNC_USER_SCHEMA: {"immutableId": "x"}
        })
    }

    fn project_with(attributes: &str, excluded: &str) -> Value {
        project(
            ResourceKind::User,
            &user(),
            &parse_attribute_list(attributes).unwrap(),
            &parse_attribute_list(excluded).unwrap(),
        )
    }

    #[test]
    fn default_projection_hides_only_never_returned_attributes() {
        let mut expected = user();
        expected.as_object_mut().unwrap().remove("password");
        assert_eq!(project_with("", ""), expected);
    }

    #[test]
    fn attributes_select_and_always_returned_attributes_stay() {
        assert_eq!(
            project_with("userName,emails.value,name.givenName,password", ""),
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA, SYNC_USER_SCHEMA],
                "id": "u1",
                "userName": "bjensen",
                "name": {"givenName": "Barbara"},
                "emails": [{"value": "a@x"}, {"value": "b@x"}]
            })
        );
        assert_eq!(
            project_with(&format!("{ENTERPRISE_USER_SCHEMA}:department,USERNAME"), ""),
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA, SYNC_USER_SCHEMA],
                "id": "u1",
                "userName": "bjensen",
                ENTERPRISE_USER_SCHEMA: {"department": "Tours"}
            })
        );
        assert_eq!(
            project_with("bogus", ""),
            json!({"schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA, SYNC_USER_SCHEMA], "id": "u1"})
        );
    }

    #[test]
    fn excluded_attributes_remove_but_cannot_hide_id() {
        let v = project_with(
            "",
            &format!("emails.type,meta,id,name,{SYNC_USER_SCHEMA}:immutableId"),
        );
        assert_eq!(v["id"], "u1");
        assert!(v.get("meta").is_none());
        assert!(v.get("name").is_none());
        assert!(v.get("password").is_none());
        assert!(v.get(SYNC_USER_SCHEMA).is_none());
        assert_eq!(v["emails"], json!([{"value": "a@x"}, {"value": "b@x"}]));
        assert_eq!(v[ENTERPRISE_USER_SCHEMA]["costCenter"], "4");
    }
}
