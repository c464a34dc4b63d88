//! Connector-space objects: what the engine knows of an AD object, and its stored form.

use std::collections::BTreeMap;

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
}
