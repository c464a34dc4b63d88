//! Which of several compared values a resource holds: how a client that searched with an `or`
//! of equalities tells the results apart.

use serde_json::Value;

use super::{lookup, Filter, Scope};
use crate::path::{AttrPath, PatchPath};
use crate::schema::{AttrType, AttributeDef, ResourceKind};
use crate::value::{comparable_def, elements, fold_case, Resolved};

/// Where `<path> eq "<value>"` looks in a resource of one kind and how it compares, for a client
/// that searched for several values at once (`p eq "a" or p eq "b"`) and must tell which of them
/// each returned resource holds. `path` is an attribute path, optionally through a value filter
/// as in a PATCH path (`emails[type eq "work"].value`).
#[derive(Clone, Debug)]
pub struct EqKey {
    kind: ResourceKind,
    attr: AttrPath,
    resolved: Resolved,
    /// For a path through a value filter: the filter the values must pass, and the
    /// sub-attribute read from those that do.
    select: Option<(Filter, AttrPath)>,
    /// The definition the values compare as (its caseExact).
    def: &'static AttributeDef,
}

impl EqKey {
    /// `None` unless `path` names a string or reference attribute of `kind`'s schemas: other
    /// types do not compare as (folded) text.
    pub fn new(kind: ResourceKind, path: &str) -> Option<Self> {
        let parsed = PatchPath::parse(path).ok()?;
        let resolved = parsed.attr.resolve(kind)?;
        let (select, def) = match parsed.value_filter {
            None => (None, comparable_def(resolved.leaf())),
            Some(filter) => {
                let sub = parsed.sub_attr.unwrap_or_else(|| "value".to_owned());
                let def = resolved.def.sub_attribute(&sub)?;
                (Some((filter, AttrPath::simple(sub))), def)
            }
        };
        matches!(def.type_, AttrType::String | AttrType::Reference).then_some(Self {
            kind,
            attr: parsed.attr,
            resolved,
            select,
            def,
        })
    }

    /// `value` as `eq` compares it: lower-cased unless the attribute is caseExact.
    pub fn fold(&self, value: &str) -> String {
        fold_case(Some(self.def), value)
    }

    /// The values `resource` holds at the path, folded: `<path> eq "<v>"` matches `resource`
    /// exactly when `fold(v)` is among them.
    pub fn values_in(&self, resource: &Value) -> Vec<String> {
        let found = match &self.select {
            None => lookup(Scope::Resource(self.kind), &self.attr, resource, true).1,
            Some((filter, sub)) => {
                let container = Scope::Element(self.resolved.def);
                self.resolved
                    .get(resource)
                    .map(elements)
                    .unwrap_or_default()
                    .iter()
                    .filter(|element| filter.eval(container, element))
                    .flat_map(|element| lookup(container, sub, element, true).1)
                    .collect()
            }
        };
        found
            .into_iter()
            .filter_map(Value::as_str)
            .map(|v| self.fold(v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::{SYNC_USER_SCHEMA, USER_SCHEMA};

    fn key(path: &str) -> EqKey {
        EqKey::new(ResourceKind::User, path).unwrap_or_else(|| panic!("{path}"))
    }

    /// What the key says must agree with the filter's own evaluation.
    fn agrees(path: &str, value: &str, resource: &Value) -> bool {
        let filter = Filter::parse(&match path.split_once('[') {
            Some((attr, rest)) => {
                let (inner, sub) = rest.split_once("].").unwrap_or((rest, "value"));
                format!("{attr}[{inner} and {sub} eq {value:?}]")
            }
            None => format!("{path} eq {value:?}"),
        })
        .unwrap_or_else(|e| panic!("{path}: {e}"));
        let by_key = key(path)
            .values_in(resource)
            .contains(&key(path).fold(value));
        by_key == filter.matches_kind(ResourceKind::User, resource)
    }

    #[test]
    fn values_are_read_and_folded_as_eq_compares_them() {
        let user = json!({
            "schemas": [USER_SCHEMA, SYNC_USER_SCHEMA],
            "userName": "Ann@Lab.Test",
            "externalId": "AbC=",
            "name": {"givenName": "Ann"},
            "emails": [
                {"type": "home", "value": "ann@home.test"},
                {"type": "work", "value": "Ann@Work.Test"},
            ],
            SYNC_USER_SCHEMA: {"immutableId": "QmFzZTY0", "proxyAddresses": ["SMTP:a@x", "smtp:b@x"]},
        });
        let anchor = format!("{SYNC_USER_SCHEMA}:immutableId");
        assert_eq!(key("userName").values_in(&user), ["ann@lab.test"]);
        assert_eq!(key("USERNAME").fold("Ann@LAB.test"), "ann@lab.test");
        assert_eq!(key("externalId").values_in(&user), ["AbC="]);
        assert_eq!(key("externalId").fold("abc="), "abc=");
        assert_eq!(key(&anchor).values_in(&user), ["QmFzZTY0"]);
        assert_eq!(
            key(r#"emails[type eq "work"].value"#).values_in(&user),
            ["ann@work.test"]
        );
        assert_eq!(key("name.givenName").values_in(&user), ["ann"]);
        let cases = [
            ("userName", "ANN@lab.test"),
            ("userName", "ann"),
            ("externalId", "AbC="),
            ("externalId", "abc="),
            (anchor.as_str(), "QmFzZTY0"),
            (anchor.as_str(), "qmfzzty0"),
            (r#"emails[type eq "work"].value"#, "ann@work.test"),
            (r#"emails[type eq "work"].value"#, "ann@home.test"),
            ("name.givenName", "ANN"),
            ("proxyAddresses", "smtp:B@X"),
        ];
        for (path, value) in cases {
            assert!(agrees(path, value, &user), "{path} eq {value:?}");
        }
        assert!(key("userName").values_in(&json!({"id": "x"})).is_empty());
    }

    #[test]
    fn only_text_attributes_have_a_key() {
        assert!(EqKey::new(ResourceKind::User, "active").is_none());
        assert!(EqKey::new(ResourceKind::User, "meta.created").is_none());
        assert!(EqKey::new(ResourceKind::User, "noSuchAttribute").is_none());
        assert!(EqKey::new(ResourceKind::User, "emails[type eq").is_none());
        assert!(EqKey::new(ResourceKind::Group, "displayName").is_some());
    }
}
