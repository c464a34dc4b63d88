//! Connector-space objects: what the engine knows of an AD object, and its stored form.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use idbridge_core::{AttrName, Dn, ObjectGuid};
use idbridge_rules::{AttributeSource, Value};
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

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
    pub fn encode_attrs(&self) -> StoredAttributes<'_> {
        encode_values(&self.attrs)
    }
}

/// Attributes in their stored form: a JSON object of attribute names to lists of values, each
/// value tagged with its type (`{"s": text}`, `{"b": base64}`, `{"i": n}`, `{"t": bool}`,
/// `{"r": DN}`, `{"d": RFC 3339}`). Serialize it, or format it for the JSON text.
#[derive(Clone, Debug)]
pub struct StoredAttributes<'a>(pub Cow<'a, Attributes>);

/// The stored form of `attrs`, written straight from them (no JSON tree in between: the import
/// encodes every object it reads).
pub fn encode_values(attrs: &Attributes) -> StoredAttributes<'_> {
    StoredAttributes(Cow::Borrowed(attrs))
}

struct StoredValue<'a>(&'a Value);

impl Serialize for StoredValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        match self.0 {
            Value::Str(text) => map.serialize_entry("s", text)?,
            Value::Bytes(b) => map.serialize_entry("b", &B64.encode(b))?,
            Value::Int(i) => map.serialize_entry("i", i)?,
            Value::Bool(b) => map.serialize_entry("t", b)?,
            Value::Ref(dn) => map.serialize_entry("r", &dn.to_string())?,
            Value::DateTime(_) => map.serialize_entry("d", &self.0.to_string())?,
        }
        map.end()
    }
}

/// A list of values, serialized without collecting it first.
struct StoredList<'a>(&'a [Value]);

impl Serialize for StoredList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(StoredValue))
    }
}

impl Serialize for StoredAttributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.0
                .iter()
                .map(|(name, values)| (name.as_str(), StoredList(values))),
        )
    }
}

/// The JSON text, as the store keeps it.
impl fmt::Display for StoredAttributes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// Reads attributes back from the JSON text of [`encode_values`]'s form, without building a
/// JSON tree first: synchronization decodes every object it projects.
pub fn decode_values(stored: &str) -> Result<Attributes, String> {
    let mut de = serde_json::Deserializer::from_str(stored);
    de.deserialize_map(AttributesVisitor)
        .and_then(|attrs| de.end().map(|()| attrs))
        .map_err(|e| e.to_string())
}

struct AttributesVisitor;

impl<'de> Visitor<'de> for AttributesVisitor {
    type Value = Attributes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("attributes as a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Attributes, A::Error> {
        // Collected first: the map is built in one go from the (stored sorted) names.
        let mut attrs = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(name) = map.next_key::<String>()? {
            let values = map.next_value_seed(ValuesSeed(&name))?;
            attrs.push((AttrName::new(name), values));
        }
        Ok(attrs.into_iter().collect())
    }
}

/// The list of values of the attribute named `0` (for errors).
struct ValuesSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_> {
    type Value = Vec<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: a list of values", self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(1));
        while let Some(value) = seq.next_element_seed(ValueSeed(self.0))? {
            values.push(value);
        }
        Ok(values)
    }
}

/// A stored value's type tag.
enum Tag {
    Str,
    Bytes,
    Int,
    Bool,
    Ref,
    DateTime,
}

/// Reads a [`Tag`] of the attribute named `0` without allocating.
struct TagSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for TagSeed<'_> {
    type Value = Tag;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Tag, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for TagSeed<'_> {
    type Value = Tag;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: a type tag", self.0)
    }

    fn visit_str<E: serde::de::Error>(self, tag: &str) -> Result<Tag, E> {
        Ok(match tag {
            "s" => Tag::Str,
            "b" => Tag::Bytes,
            "i" => Tag::Int,
            "t" => Tag::Bool,
            "r" => Tag::Ref,
            "d" => Tag::DateTime,
            _ => return Err(E::custom(format!("{}: unknown value form {tag:?}", self.0))),
        })
    }
}

/// One tagged value of the attribute named `0`.
struct ValueSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: a value tagged with its type", self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let name = self.0;
        let bad = |why: &dyn fmt::Display| A::Error::custom(format!("{name}: {why}"));
        let Some(tag) = map.next_key_seed(TagSeed(name))? else {
            return Err(bad(&"a value without its type tag"));
        };
        let mut text = || map.next_value::<String>();
        let value = match tag {
            Tag::Str => Value::Str(text()?),
            Tag::Bytes => Value::Bytes(
                B64.decode(text()?)
                    .map_err(|e| bad(&format_args!("bad base64 value: {e}")))?,
            ),
            Tag::Ref => Value::Ref(Dn::parse(&text()?).map_err(|e| bad(&e))?),
            Tag::DateTime => Value::DateTime(
                time::OffsetDateTime::parse(
                    &text()?,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|e| bad(&e))?,
            ),
            Tag::Int => Value::Int(map.next_value()?),
            Tag::Bool => Value::Bool(map.next_value()?),
        };
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(bad(&"a value has exactly one type tag"));
        }
        Ok(value)
    }
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
        let text = o.encode_attrs().to_string();
        assert_eq!(
            text,
            r#"{"displayName":[{"s":"Jäck 𝄞"}],"objectGUID":[{"b":"AP8K"}]}"#
        );
        assert_eq!(decode_values(&text).unwrap(), o.attrs);
        let when = time::macros::datetime!(2024-01-31 12:05:06 UTC);
        let typed: Attributes = [
            ("a", Value::Int(-3)),
            ("b", Value::Bool(true)),
            ("c", Value::Ref(Dn::parse("CN=Boss,DC=lab").unwrap())),
            ("d", Value::DateTime(when)),
        ]
        .into_iter()
        .map(|(k, v)| (AttrName::from(k), vec![v]))
        .collect();
        let text = encode_values(&typed).to_string();
        assert_eq!(
            text,
            r#"{"a":[{"i":-3}],"b":[{"t":true}],"c":[{"r":"CN=Boss,DC=lab"}],"d":[{"d":"2024-01-31T12:05:06Z"}]}"#
        );
        assert_eq!(decode_values(&text).unwrap(), typed);
        // The JSON tree's serializer writes the same form.
        let tree = serde_json::to_value(encode_values(&typed)).unwrap();
        assert_eq!(decode_values(&tree.to_string()).unwrap(), typed);
        for bad in [
            r#"{"x": [{"q": 1}]}"#,
            r#"{"x": [{"b": "!!"}]}"#,
            r#"{"x": [7]}"#,
            r#"{"x": [{}]}"#,
            r#"{"x": [{"s": "a", "t": true}]}"#,
            r#"{"x": {"s": "a"}}"#,
            r#"{"x": [{"s": "a"}]} trailing"#,
            r#"[]"#,
        ] {
            let err = decode_values(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(decode_values(r#"{"x": [{"q": 1}]}"#)
            .unwrap_err()
            .starts_with("x: unknown value form"));
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
