//! Connector-space objects: what the engine knows of an AD object, and its stored form.

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use idbridge_core::{AttrName, Dn, ObjectGuid};
use idbridge_rules::{AttributeSource, Value};
use serde_json::{json, Map};

use crate::scope::AttributeValues;

/// Attribute values as a connector delivers them: text as `Str`, binary as `Bytes`.
pub type Attributes = BTreeMap<AttrName, Vec<Value>>;

/// One object of the AD connector space, keyed by its objectGUID (stable across renames and moves).
#[derive(Clone, Debug, PartialEq)]
pub struct AdObject {
    pub guid: ObjectGuid,
    pub dn: Dn,
    /// Most specific structural class (`user`, `group`, `contact`, `organizationalUnit`, ...).
    pub class: String,
    pub attrs: Attributes,
    pub deleted: bool,
}

/// Linked attributes (MS-ADTS 3.1.1.1.6) the rules read: AD itself removes a value when its
/// target is deleted and rewrites it when the target is renamed, and DirSync reports neither
/// as a change of the object holding the link.
pub const LINKED_ATTRIBUTES: &[&str] = &["member", "manager", "managedBy"];

fn link_target(value: &Value) -> Option<Dn> {
    match value {
        Value::Str(s) => Dn::parse(s).ok(),
        Value::Ref(dn) => Some(dn.clone()),
        _ => None,
    }
}

fn distinguished_name() -> AttrName {
    AttrName::from("distinguishedName")
}

impl AdObject {
    /// Applies a delta (DirSync sends only changed attributes): the delta's attributes replace
    /// the held ones, its DN and deletion state win, and the class is kept when the delta has none.
    pub fn merge(&mut self, delta: AdObject) {
        self.dn = delta.dn;
        self.deleted = delta.deleted;
        if !delta.class.is_empty() {
            self.class = delta.class;
        }
        self.attrs.extend(delta.attrs);
        self.attrs
            .insert(distinguished_name(), vec![Value::Str(self.dn.to_string())]);
    }

    /// The normalized DNs this object links to (see [`LINKED_ATTRIBUTES`]); none once deleted,
    /// as AD drops a deleted object's links.
    pub fn link_targets(&self) -> BTreeSet<String> {
        if self.deleted {
            return BTreeSet::new();
        }
        LINKED_ATTRIBUTES
            .iter()
            .filter_map(|name| self.attrs.get(&AttrName::from(*name)))
            .flatten()
            .filter_map(link_target)
            .map(|dn| dn.normalized().to_owned())
            .collect()
    }

    /// Does to this object's links what AD does, without reporting it to DirSync, when the
    /// target `old` is renamed or moved to `new` (`Some`) or deleted (`None`). Returns whether
    /// anything changed.
    pub fn retarget_links(&mut self, old: &Dn, new: Option<&Dn>) -> bool {
        let mut changed = false;
        for name in LINKED_ATTRIBUTES {
            let Some(values) = self.attrs.get_mut(&AttrName::from(*name)) else {
                continue;
            };
            let before = values.len();
            let targets_old =
                |v: &Value| link_target(v).is_some_and(|dn| dn.normalized() == old.normalized());
            match new {
                Some(new) => values.iter_mut().filter(|v| targets_old(v)).for_each(|v| {
                    *v = Value::Str(new.to_string());
                    changed = true;
                }),
                None => values.retain(|v| !targets_old(v)),
            }
            changed |= values.len() != before;
            if values.is_empty() {
                self.attrs.remove(&AttrName::from(*name));
            }
        }
        changed
    }

    /// The stored form of the attributes; see [`encode_values`].
    pub fn encode_attrs(&self) -> serde_json::Value {
        encode_values(&self.attrs)
    }
}

/// Attribute values as JSON for the store: each value tagged with its type, binary as base64.
pub fn encode_values(attrs: &Attributes) -> serde_json::Value {
    let mut map = Map::new();
    for (name, values) in attrs {
        let encoded = values
            .iter()
            .map(|v| match v {
                Value::Str(s) => json!({ "s": s }),
                Value::Bytes(b) => json!({ "b": B64.encode(b) }),
                Value::Int(i) => json!({ "i": i }),
                Value::Bool(b) => json!({ "t": b }),
                Value::Ref(dn) => json!({ "r": dn.to_string() }),
                Value::DateTime(_) => json!({ "d": v.to_string() }),
            })
            .collect();
        map.insert(name.to_string(), serde_json::Value::Array(encoded));
    }
    serde_json::Value::Object(map)
}

fn decode_value(name: &str, v: &serde_json::Value) -> Result<Value, String> {
    let bad = || format!("{name}: unknown value form {v}");
    let (tag, inner) = v
        .as_object()
        .and_then(|m| m.iter().next())
        .ok_or_else(bad)?;
    let text = || inner.as_str().ok_or_else(bad);
    Ok(match tag.as_str() {
        "s" => Value::Str(text()?.to_owned()),
        "b" => Value::Bytes(
            B64.decode(text()?)
                .map_err(|e| format!("{name}: bad base64 value: {e}"))?,
        ),
        "i" => Value::Int(inner.as_i64().ok_or_else(bad)?),
        "t" => Value::Bool(inner.as_bool().ok_or_else(bad)?),
        "r" => Value::Ref(Dn::parse(text()?).map_err(|e| format!("{name}: {e}"))?),
        "d" => Value::DateTime(
            time::OffsetDateTime::parse(text()?, &time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("{name}: {e}"))?,
        ),
        _ => return Err(bad()),
    })
}

/// Reads attributes back from [`encode_values`]'s form.
pub fn decode_values(stored: &serde_json::Value) -> Result<Attributes, String> {
    let map = stored
        .as_object()
        .ok_or("attributes are not a JSON object")?;
    let mut attrs = Attributes::new();
    for (name, values) in map {
        let list = values
            .as_array()
            .ok_or_else(|| format!("{name}: values are not a list"))?;
        let decoded = list
            .iter()
            .map(|v| decode_value(name, v))
            .collect::<Result<_, _>>()?;
        attrs.insert(AttrName::new(name.as_str()), decoded);
    }
    Ok(attrs)
}

impl AttributeSource for AdObject {
    fn get(&self, name: &AttrName) -> Option<&[Value]> {
        self.attrs.get(name).map(Vec::as_slice)
    }
}

impl AttributeValues for AdObject {
    fn values(&self, name: &AttrName) -> Vec<&[u8]> {
        self.attrs
            .get(name)
            .map(|vs| {
                vs.iter()
                    .filter_map(|v| match v {
                        Value::Str(s) => Some(s.as_bytes()),
                        Value::Bytes(b) => Some(b.as_slice()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(dn: &str, attrs: &[(&str, Value)]) -> AdObject {
        AdObject {
            guid: ObjectGuid::from_bytes(&[7; 16]).unwrap(),
            dn: Dn::parse(dn).unwrap(),
            class: "user".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (AttrName::from(*k), vec![v.clone()]))
                .collect(),
            deleted: false,
        }
    }

    #[test]
    fn stored_form_round_trips_text_and_binary() {
        let o = object(
            "CN=Jack,DC=lab",
            &[
                ("displayName", Value::Str("Jäck 𝄞".into())),
                ("objectGUID", Value::Bytes(vec![0, 255, 10])),
            ],
        );
        assert_eq!(decode_values(&o.encode_attrs()).unwrap(), o.attrs);
        let typed: Attributes = [
            ("a", Value::Int(-3)),
            ("b", Value::Bool(true)),
            ("c", Value::Ref(Dn::parse("CN=Boss,DC=lab").unwrap())),
        ]
        .into_iter()
        .map(|(k, v)| (AttrName::from(k), vec![v]))
        .collect();
        assert_eq!(decode_values(&encode_values(&typed)).unwrap(), typed);
        assert!(decode_values(&json!({"x": [{"q": 1}]})).is_err());
        assert!(decode_values(&json!({"x": [{"b": "!!"}]})).is_err());
        assert!(decode_values(&json!({"x": [7]})).is_err());
    }

    #[test]
    fn merge_keeps_unchanged_attributes_and_takes_new_dn() {
        let mut held = object(
            "CN=Jack,OU=Staff,DC=lab",
            &[
                ("givenName", Value::Str("Jack".into())),
                ("sn", Value::Str("Smith".into())),
            ],
        );
        let mut delta = object(
            "CN=Jack2,OU=Staff,DC=lab",
            &[("sn", Value::Str("Jones".into()))],
        );
        delta.class = String::new();
        held.merge(delta);
        assert_eq!(held.class, "user");
        assert_eq!(
            held.attrs[&AttrName::from("givenName")],
            [Value::Str("Jack".into())]
        );
        assert_eq!(
            held.attrs[&AttrName::from("sn")],
            [Value::Str("Jones".into())]
        );
        assert_eq!(
            held.attrs[&AttrName::from("distinguishedName")],
            [Value::Str("CN=Jack2,OU=Staff,DC=lab".into())]
        );
    }

    #[test]
    fn links_follow_renames_and_deletions_of_their_targets() {
        let s = |v: &str| Value::Str(v.into());
        let mut group = object(
            "CN=Team,OU=Staff,DC=lab",
            &[("member", s("CN=Ann,OU=Staff,DC=lab")), ("cn", s("Team"))],
        );
        group
            .attrs
            .get_mut(&AttrName::from("member"))
            .unwrap()
            .push(s("cn=bob,ou=staff,dc=lab"));
        assert_eq!(
            group.link_targets(),
            BTreeSet::from([
                Dn::parse("CN=Ann,OU=Staff,DC=lab")
                    .unwrap()
                    .normalized()
                    .to_owned(),
                Dn::parse("CN=Bob,OU=Staff,DC=lab")
                    .unwrap()
                    .normalized()
                    .to_owned(),
            ])
        );
        let bob = Dn::parse("CN=Bob,OU=Staff,DC=lab").unwrap();
        let robert = Dn::parse("CN=Robert,OU=Staff,DC=lab").unwrap();
        assert!(group.retarget_links(&bob, Some(&robert)));
        assert_eq!(
            group.attrs[&AttrName::from("member")],
            [s("CN=Ann,OU=Staff,DC=lab"), s("CN=Robert,OU=Staff,DC=lab")]
        );
        let ann = Dn::parse("CN=Ann,OU=Staff,DC=lab").unwrap();
        assert!(group.retarget_links(&ann, None));
        assert!(!group.retarget_links(&ann, None), "nothing left to change");
        assert!(group.retarget_links(&robert, None));
        assert!(!group.attrs.contains_key(&AttrName::from("member")));
        assert_eq!(group.attrs[&AttrName::from("cn")], [s("Team")]);
        group.deleted = true;
        assert!(group.link_targets().is_empty());
    }
}
