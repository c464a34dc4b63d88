//! Schema-aware access to and comparison of attribute values inside resource JSON.

use std::cmp::Ordering;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::schema::{AttrType, AttributeDef, ResourceKind, Schema};

/// An attribute path resolved against a resource kind's schemas: canonical names, known types.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Resolved {
    /// The extension schema holding the attribute; `None` for core and common attributes,
    /// which live at the top level of the resource.
    pub extension: Option<&'static Schema>,
    pub def: &'static AttributeDef,
    pub sub: Option<&'static AttributeDef>,
}

impl Resolved {
    /// The canonical top-level name: `userName`, or `urn:...:sync:2.0:User:immutableId`.
    pub fn top_level_name(&self) -> String {
        match self.extension {
            Some(ext) => format!("{}:{}", ext.id, self.def.name),
            None => self.def.name.to_owned(),
        }
    }

    /// The attribute's value in `resource`, if any.
    pub fn get<'a>(&self, resource: &'a Value) -> Option<&'a Value> {
        let obj = resource.as_object()?;
        let container = match self.extension {
            Some(ext) => get_ci(obj, ext.id)?.as_object()?,
            None => obj,
        };
        get_ci(container, self.def.name)
    }

    /// The leaf definition: the sub-attribute if one is named, else the attribute.
    pub fn leaf(&self) -> &'static AttributeDef {
        self.sub.unwrap_or(self.def)
    }
}

/// The value under `name`, matching exactly first, then case-insensitively (RFC 7643 §2.1).
pub(crate) fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Removes and returns the value under `name` (any case).
pub(crate) fn take_ci(obj: &mut Map<String, Value>, name: &str) -> Option<Value> {
    if let Some(v) = obj.remove(name) {
        return Some(v);
    }
    let key = obj.keys().find(|k| k.eq_ignore_ascii_case(name))?.clone();
    obj.remove(&key)
}

/// The values of a multi-valued attribute, or the single value itself.
pub(crate) fn elements(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a.as_slice(),
        other => std::slice::from_ref(other),
    }
}

/// RFC 7643 §2.5: null, an empty array and an empty complex value all mean "unassigned".
pub(crate) fn is_unassigned(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().all(is_unassigned),
        Value::Object(o) => o.values().all(is_unassigned),
        _ => false,
    }
}

/// The `pr` test (RFC 7644 §3.4.2.2): a non-empty value; an empty string counts as absent.
pub(crate) fn is_present(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.is_empty(),
        other => !is_unassigned(other),
    }
}

/// The definition of the attribute a value of `def` is compared as: complex attributes compare
/// through their `value` sub-attribute (RFC 7644 §3.4.2.2).
pub(crate) fn comparable_def(def: &'static AttributeDef) -> &'static AttributeDef {
    if def.type_ == AttrType::Complex {
        def.sub_attribute("value").unwrap_or(def)
    } else {
        def
    }
}

/// Orders two values of the attribute `def` (unknown attributes compare as case-insensitive
/// strings): dateTimes chronologically, strings case-insensitively unless `caseExact`,
/// numbers numerically, booleans false < true. `None` when the values are not comparable.
pub(crate) fn compare(def: Option<&AttributeDef>, a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            if def.is_some_and(|d| d.type_ == AttrType::DateTime) {
                let (x, y) = (parse_date(x)?, parse_date(y)?);
                Some(x.cmp(&y))
            } else if def.is_some_and(|d| d.case_exact) {
                Some(x.cmp(y))
            } else {
                Some(x.to_lowercase().cmp(&y.to_lowercase()))
            }
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Lowercases unless the attribute is caseExact, for substring operators.
pub(crate) fn fold_case(def: Option<&AttributeDef>, s: &str) -> String {
    if def.is_some_and(|d| d.case_exact) {
        s.to_owned()
    } else {
        s.to_lowercase()
    }
}

pub(crate) fn parse_date(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Finds `kind`'s extension schema or core schema by URN (case-insensitive); `None` = unknown.
pub(crate) fn schema_for_urn(kind: ResourceKind, urn: &str) -> Option<SchemaRef> {
    if kind.core_schema().id.eq_ignore_ascii_case(urn) {
        Some(SchemaRef::Core)
    } else {
        kind.extension(urn).map(SchemaRef::Extension)
    }
}

/// Which schema of a resource kind an attribute belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SchemaRef {
    Core,
    Extension(&'static Schema),
}

impl SchemaRef {
    pub fn attribute(self, kind: ResourceKind, name: &str) -> Option<Resolved> {
        let (extension, def) = match self {
            SchemaRef::Core => (None, kind.core_attribute(name)?),
            SchemaRef::Extension(s) => (Some(s), s.attribute(name)?),
        };
        Some(Resolved {
            extension,
            def,
            sub: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_compare_chronologically_across_offsets() {
        let def = ResourceKind::User
            .core_attribute("meta")
            .and_then(|m| m.sub_attribute("created"));
        assert_eq!(
            compare(
                def,
                &json!("2024-01-01T10:00:00+02:00"),
                &json!("2024-01-01T08:00:00Z")
            ),
            Some(Ordering::Equal)
        );
        assert_eq!(
            compare(def, &json!("yesterday"), &json!("2024-01-01T08:00:00Z")),
            None
        );
    }

    #[test]
    fn strings_fold_case_unless_case_exact() {
        let user_name = ResourceKind::User.core_attribute("userName");
        let id = ResourceKind::User.core_attribute("id");
        assert_eq!(
            compare(user_name, &json!("Bob"), &json!("bob")),
            Some(Ordering::Equal)
        );
        assert_ne!(
            compare(id, &json!("Bob"), &json!("bob")),
            Some(Ordering::Equal)
        );
    }

    #[test]
    fn unassigned_and_present() {
        assert!(is_unassigned(&json!([])));
        assert!(is_unassigned(&json!({"a": null})));
        assert!(!is_present(&json!("")));
        assert!(is_present(&json!(false)));
    }
}
