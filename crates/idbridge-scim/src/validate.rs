//! Validation and canonicalisation of resource bodies against the schemas.

use serde_json::{Map, Value};

use crate::error::{ScimError, ScimType};
use crate::path::AttrPath;
use crate::schema::{AttrType, AttributeDef, Mutability, ResourceKind};
use crate::value::{get_ci, is_unassigned, parse_date, schema_for_urn, take_ci, Resolved};

/// What happens to readOnly attributes found in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadOnly {
    /// Client input: RFC 7643 §7 says such values SHALL be ignored.
    Drop,
    /// A stored resource: they were written by the server and stay.
    Keep,
}

/// Validates a client-supplied resource body (POST/PUT) and returns its canonical form:
/// canonical attribute names (case-insensitive in), extension attributes nested under their
/// schema URN, readOnly attributes (`id`, `meta`, `groups`, ...) dropped, nulls dropped, and
/// `schemas` listing the core schema plus the extensions actually used.
///
/// Errors: 400 `invalidSyntax` for unknown attributes or schemas (naming them), 400
/// `invalidValue` for wrongly typed values or a missing required attribute.
pub fn validate_resource(kind: ResourceKind, body: &Value) -> Result<Value, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the resource must be a JSON object"))?;
    check_declared_schemas(kind, obj)?;
    normalize(kind, obj, ReadOnly::Drop, ScimType::InvalidValue)
}

/// Removes the cleartext `password` (writeOnly, returned=never) from a validated or patched
/// User, so that the server hashes it and never stores or echoes it.
pub fn take_password(resource: &mut Value) -> Option<String> {
    match resource
        .as_object_mut()
        .and_then(|o| take_ci(o, "password"))
    {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Re-checks a resource after server-side changes (PATCH), keeping readOnly attributes; a
/// missing required attribute is reported with `missing_required`.
pub(crate) fn revalidate(
    kind: ResourceKind,
    obj: &Map<String, Value>,
    missing_required: ScimType,
) -> Result<Value, ScimError> {
    normalize(kind, obj, ReadOnly::Keep, missing_required)
}

/// RFC 7643 §3: `schemas` is required, must name the core schema, and only known schemas.
fn check_declared_schemas(kind: ResourceKind, obj: &Map<String, Value>) -> Result<(), ScimError> {
    let core = kind.core_schema().id;
    let schemas = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("\"schemas\" must be an array of schema URNs"))?;
    let mut has_core = false;
    for schema in schemas {
        let urn = schema
            .as_str()
            .ok_or_else(|| ScimError::invalid_syntax("\"schemas\" must contain only strings"))?;
        if schema_for_urn(kind, urn).is_none() {
            return Err(ScimError::invalid_syntax(format!(
                "unknown schema {urn:?} for a {}",
                kind.name()
            )));
        }
        has_core |= urn.eq_ignore_ascii_case(core);
    }
    if has_core {
        Ok(())
    } else {
        Err(ScimError::invalid_syntax(format!(
            "\"schemas\" must include {core:?}"
        )))
    }
}

/// Splits a resource-shaped object into its attributes, resolved against `kind`: top-level
/// core attributes, extension objects keyed by URN, and URN-prefixed extension attributes.
/// `schemas` is skipped. Unknown names are 400 `invalidSyntax`.
pub(crate) fn split_attributes(
    kind: ResourceKind,
    obj: &Map<String, Value>,
) -> Result<Vec<(Resolved, Value)>, ScimError> {
    let mut out = Vec::new();
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = kind.extension(key) {
            match value {
                Value::Null => {}
                Value::Object(inner) => {
                    for (name, v) in inner {
                        let def = ext.attribute(name).ok_or_else(|| {
                            ScimError::invalid_syntax(format!(
                                "unknown attribute \"{}:{name}\"",
                                ext.id
                            ))
                        })?;
                        let resolved = Resolved {
                            extension: Some(ext),
                            def,
                            sub: None,
                        };
                        out.push((resolved, v.clone()));
                    }
                }
                _ => {
                    return Err(ScimError::invalid_syntax(format!(
                        "the extension {key:?} must be a JSON object"
                    )))
                }
            }
            continue;
        }
        let resolved = AttrPath::parse(key)
            .ok()
            .filter(|p| p.sub_attr.is_none())
            .and_then(|p| p.resolve(kind))
            .ok_or_else(|| ScimError::invalid_syntax(format!("unknown attribute {key:?}")))?;
        out.push((resolved, value.clone()));
    }
    Ok(out)
}

fn normalize(
    kind: ResourceKind,
    obj: &Map<String, Value>,
    read_only: ReadOnly,
    missing_required: ScimType,
) -> Result<Value, ScimError> {
    let mut core = Map::new();
    let mut extensions: Vec<Map<String, Value>> =
        kind.extensions().iter().map(|_| Map::new()).collect();
    for (resolved, value) in split_attributes(kind, obj)? {
        if is_unassigned(&value)
            || (read_only == ReadOnly::Drop && resolved.def.mutability == Mutability::ReadOnly)
        {
            continue;
        }
        let target = match resolved.extension {
            None => &mut core,
            Some(ext) => kind
                .extensions()
                .iter()
                .zip(extensions.iter_mut())
                .find(|(s, _)| std::ptr::eq(**s, ext))
                .map(|(_, m)| m)
                .ok_or_else(|| ScimError::internal("extension schema not registered"))?,
        };
        let name = resolved.top_level_name();
        if target.contains_key(resolved.def.name) {
            return Err(ScimError::invalid_syntax(format!(
                "attribute {name:?} is given more than once"
            )));
        }
        let checked = check_value(resolved.def, &value, read_only, &name)?;
        if !is_unassigned(&checked) {
            target.insert(resolved.def.name.to_owned(), checked);
        }
    }
    for def in kind.core_schema().attributes.iter().filter(|d| d.required) {
        if !core.contains_key(def.name) {
            return Err(ScimError::bad_request(
                missing_required,
                format!("the required attribute {:?} is missing", def.name),
            ));
        }
    }
    let mut schemas = vec![Value::String(kind.core_schema().id.to_owned())];
    for (schema, attrs) in kind.extensions().iter().zip(extensions) {
        if !attrs.is_empty() {
            schemas.push(Value::String(schema.id.to_owned()));
            core.insert(schema.id.to_owned(), Value::Object(attrs));
        }
    }
    core.insert("schemas".to_owned(), Value::Array(schemas));
    Ok(Value::Object(core))
}

/// Checks `value` against `def` and returns it canonicalised (sub-attribute names, closed
/// canonical values; a lone value of a multi-valued attribute becomes a one-element array).
/// `name` is the attribute's display name for errors.
pub(crate) fn check_value(
    def: &'static AttributeDef,
    value: &Value,
    read_only: ReadOnly,
    name: &str,
) -> Result<Value, ScimError> {
    if !def.multi_valued {
        if value.is_array() {
            return Err(ScimError::invalid_value(format!(
                "{name} is single-valued, not an array"
            )));
        }
        return check_single(def, value, read_only, name);
    }
    let items = match value {
        Value::Array(a) => a.as_slice(),
        other => std::slice::from_ref(other),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items.iter().filter(|v| !v.is_null()) {
        out.push(check_single(def, item, read_only, name)?);
    }
    if out.iter().filter(|v| is_primary(v)).count() > 1 {
        return Err(ScimError::invalid_value(format!(
            "more than one value of {name} is primary"
        )));
    }
    Ok(Value::Array(out))
}

pub(crate) fn is_primary(v: &Value) -> bool {
    v.get("primary") == Some(&Value::Bool(true))
}

/// Checks one value (one element, for multi-valued attributes) of `def`.
pub(crate) fn check_single(
    def: &'static AttributeDef,
    value: &Value,
    read_only: ReadOnly,
    name: &str,
) -> Result<Value, ScimError> {
    let wrong_type = |expected: &str| {
        ScimError::invalid_value(format!("{name} must be {expected}, not {value}"))
    };
    match def.type_ {
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            let s = value.as_str().ok_or_else(|| wrong_type("a string"))?;
            if !def.closed {
                return Ok(value.clone());
            }
            def.canonical_values
                .iter()
                .find(|c| c.eq_ignore_ascii_case(s))
                .map(|c| Value::String((*c).to_owned()))
                .ok_or_else(|| {
                    ScimError::invalid_value(format!(
                        "{name} must be one of {:?}, not {s:?}",
                        def.canonical_values
                    ))
                })
        }
        AttrType::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            // Azure AD sends `"active": "False"` in PATCH requests; the meaning is unambiguous.
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            _ => Err(wrong_type("a boolean")),
        },
        AttrType::Integer if value.is_i64() || value.is_u64() => Ok(value.clone()),
        AttrType::Integer => Err(wrong_type("an integer")),
        AttrType::Decimal if value.is_number() => Ok(value.clone()),
        AttrType::Decimal => Err(wrong_type("a number")),
        AttrType::DateTime => match value.as_str().and_then(parse_date) {
            Some(_) => Ok(value.clone()),
            None => Err(wrong_type("an RFC 3339 dateTime")),
        },
        AttrType::Complex => {
            let obj = value
                .as_object()
                .ok_or_else(|| wrong_type("a JSON object"))?;
            let mut out = Map::new();
            for (key, v) in obj {
                let sub_name = format!("{name}.{key}");
                let sub = def.sub_attribute(key).ok_or_else(|| {
                    ScimError::invalid_syntax(format!("unknown attribute {sub_name:?}"))
                })?;
                if v.is_null()
                    || (read_only == ReadOnly::Drop && sub.mutability == Mutability::ReadOnly)
                {
                    continue;
                }
                if out.contains_key(sub.name) {
                    return Err(ScimError::invalid_syntax(format!(
                        "attribute {sub_name:?} is given more than once"
                    )));
                }
                out.insert(
                    sub.name.to_owned(),
                    check_value(sub, v, read_only, &sub_name)?,
                );
            }
            Ok(Value::Object(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::{
        CONTACT_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, SYNC_CONTACT_SCHEMA,
        SYNC_USER_SCHEMA, USER_SCHEMA,
    };

    fn err(kind: ResourceKind, body: Value) -> ScimError {
        validate_resource(kind, &body).unwrap_err()
    }

    #[test]
    fn canonicalises_names_and_nests_extension_attributes() {
        let body = json!({
            "SCHEMAS": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "USERNAME": "bjensen",
            "Name": {"GIVENNAME": "Barbara"},
            "emails": [{"VALUE": "b@x", "Type": "work", "Primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "701984",
            "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER": {"Department": "Tours"},
            "urn:idbridge:params:scim:schemas:extension:sync:2.0:User": {"source": "CLOUD", "lastSyncedAt": "2024-01-01T00:00:00Z"},
            "nickName": null
        });
        let v = validate_resource(ResourceKind::User, &body).unwrap();
        assert_eq!(
            v,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA, SYNC_USER_SCHEMA],
                "userName": "bjensen",
                "name": {"givenName": "Barbara"},
                "emails": [{"value": "b@x", "type": "work", "primary": true}],
                ENTERPRISE_USER_SCHEMA: {"employeeNumber": "701984", "department": "Tours"},
                SYNC_USER_SCHEMA: {"source": "cloud", "lastSyncedAt": "2024-01-01T00:00:00Z"}
            })
        );
    }

    #[test]
    fn drops_read_only_attributes() {
        let body = json!({
            "schemas": [USER_SCHEMA],
            "id": "client-chosen",
            "meta": {"created": "2020-01-01T00:00:00Z"},
            "userName": "u",
            "groups": [{"value": "g"}],
            SYNC_USER_SCHEMA: {"licenses": ["E5"]}
        });
        let v = validate_resource(ResourceKind::User, &body).unwrap();
        assert_eq!(v, json!({"schemas": [USER_SCHEMA], "userName": "u"}));
        let g = validate_resource(
            ResourceKind::Group,
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "G", "members": [{"value": "u1", "display": "ignored"}]}),
        )
        .unwrap();
        assert_eq!(g["members"], json!([{"value": "u1"}]));
    }

    #[test]
    fn rejects_unknown_attributes_and_schemas_by_name() {
        let e = err(
            ResourceKind::User,
            json!({"schemas": [USER_SCHEMA], "userName": "u", "shoeSize": 42}),
        );
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
        assert!(e.detail.contains("shoeSize"), "{}", e.detail);
        let e = err(
            ResourceKind::User,
            json!({"schemas": [USER_SCHEMA], "userName": "u", "name": {"nick": "x"}}),
        );
        assert!(e.detail.contains("name.nick"), "{}", e.detail);
        let e = err(
            ResourceKind::User,
            json!({"schemas": [USER_SCHEMA, "urn:x:y"], "userName": "u"}),
        );
        assert!(e.detail.contains("urn:x:y"), "{}", e.detail);
        let e = err(
            ResourceKind::User,
            json!({"schemas": [USER_SCHEMA], "userName": "u", "urn:x:y:attr": 1}),
        );
        assert!(e.detail.contains("urn:x:y:attr"), "{}", e.detail);
        let e = err(
            ResourceKind::Group,
            json!({"schemas": [USER_SCHEMA], "displayName": "g"}),
        );
        assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
        let e = err(ResourceKind::User, json!({"userName": "u"}));
        assert!(e.detail.contains("schemas"), "{}", e.detail);
        let e = err(
            ResourceKind::User,
            json!({"schemas": [USER_SCHEMA], "userName": "u", "USERNAME": "v"}),
        );
        assert!(e.detail.contains("more than once"), "{}", e.detail);
        assert_eq!(
            err(ResourceKind::User, json!([1])).scim_type,
            Some(ScimType::InvalidSyntax)
        );
    }

    #[test]
    fn checks_required_attributes_and_types() {
        let e = err(
            ResourceKind::User,
            json!({"schemas": [USER_SCHEMA], "displayName": "x"}),
        );
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(e.detail.contains("userName"), "{}", e.detail);
        let e = err(ResourceKind::Group, json!({"schemas": [GROUP_SCHEMA]}));
        assert!(e.detail.contains("displayName"), "{}", e.detail);
        let wrong = [
            json!({"active": "yes"}),
            json!({"userName": ["a"]}),
            json!({"emails": [{"value": 5}]}),
            json!({"name": "Barbara"}),
            json!({SYNC_USER_SCHEMA: {"lastSyncedAt": "last tuesday"}}),
            json!({SYNC_USER_SCHEMA: {"source": "ldap"}}),
            json!({SYNC_USER_SCHEMA: "cloud"}),
            json!({"emails": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]}),
        ];
        for extra in wrong {
            let mut body = json!({"schemas": [USER_SCHEMA], "userName": "u"});
            for (k, v) in extra.as_object().unwrap() {
                body.as_object_mut().unwrap().insert(k.clone(), v.clone());
            }
            let e = validate_resource(ResourceKind::User, &body)
                .err()
                .unwrap_or_else(|| panic!("{extra} was accepted"));
            assert!(
                matches!(
                    e.scim_type,
                    Some(ScimType::InvalidValue | ScimType::InvalidSyntax)
                ),
                "{extra}: {e}"
            );
        }
    }

    #[test]
    fn single_value_of_multi_valued_attribute_becomes_a_list() {
        let v = validate_resource(
            ResourceKind::User,
            &json!({"schemas": [USER_SCHEMA], "userName": "u", "emails": {"value": "a@b"}}),
        )
        .unwrap();
        assert_eq!(v["emails"], json!([{"value": "a@b"}]));
    }

    #[test]
    fn contacts_need_a_display_name_and_take_no_user_attributes() {
        let e = err(
            ResourceKind::Contact,
            json!({"schemas": [CONTACT_SCHEMA], "emails": [{"value": "a@b"}]}),
        );
        assert!(e.detail.contains("displayName"), "{}", e.detail);
        let e = err(
            ResourceKind::Contact,
            json!({"schemas": [CONTACT_SCHEMA], "displayName": "c", "password": "x"}),
        );
        assert!(e.detail.contains("password"), "{}", e.detail);
        let v = validate_resource(
            ResourceKind::Contact,
            &json!({
                "schemas": [CONTACT_SCHEMA, SYNC_CONTACT_SCHEMA],
                "displayName": "Lab Contact",
                "emails": [{"type": "work", "value": "c@example.invalid"}],
                "companyName": "Example",
                SYNC_CONTACT_SCHEMA: {"source": "on_premises", "immutableId": "AAAA"},
            }),
        )
        .unwrap();
        assert_eq!(v["companyName"], "Example");
        assert_eq!(v[SYNC_CONTACT_SCHEMA]["immutableId"], "AAAA");
    }
}
