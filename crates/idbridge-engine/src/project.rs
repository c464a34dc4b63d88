//! Projection: one AD object through scope, inbound rules (-> metaverse) and outbound rules
//! (-> the cloud object it should be), and the rendering of that cloud object as SCIM JSON.

use std::collections::{BTreeSet, HashSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use idbridge_core::{AttrName, Dn};
use idbridge_rules::{Direction, RuleSet, Value, CLOUD};
use serde_json::{json, Map};

use crate::object::{AdObject, Attributes};
use crate::scope::{LdapFilter, OuScope};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SYNC_USER_SCHEMA: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User";
const SYNC_GROUP_SCHEMA: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:Group";
const CONTACT_SCHEMA: &str = "urn:idbridge:params:scim:schemas:core:2.0:Contact";
const SYNC_CONTACT_SCHEMA: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:Contact";

/// The SCIM resource type a metaverse object exports to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloudKind {
    User,
    Group,
    /// An idbridge extension resource type: RFC 7643 defines none for contacts.
    Contact,
}

impl CloudKind {
    pub fn name(self) -> &'static str {
        match self {
            CloudKind::User => "User",
            CloudKind::Group => "Group",
            CloudKind::Contact => "Contact",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [CloudKind::User, CloudKind::Group, CloudKind::Contact]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// The sync extension's schema URN for this kind.
    pub fn sync_schema(self) -> &'static str {
        match self {
            CloudKind::User => SYNC_USER_SCHEMA,
            CloudKind::Group => SYNC_GROUP_SCHEMA,
            CloudKind::Contact => SYNC_CONTACT_SCHEMA,
        }
    }

    fn core_schema(self) -> &'static str {
        match self {
            CloudKind::User => USER_SCHEMA,
            CloudKind::Group => GROUP_SCHEMA,
            CloudKind::Contact => CONTACT_SCHEMA,
        }
    }
}

/// The SCIM schemas the export target understands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScimDialect {
    /// The idbridge cloud: the sync extension carries `source`, the anchor (`immutableId`) and
    /// the on-premises attributes.
    #[default]
    Idbridge,
    /// Any RFC 7643 server: core and enterprise schemas only; the anchor travels as
    /// `externalId` (the attribute RFC 7643 gives the provisioning client for its own id).
    Core,
}

impl ScimDialect {
    /// Where the anchor of a `kind` object lives in this dialect (a SCIM attribute path).
    pub fn anchor_path(self, kind: CloudKind) -> String {
        match self {
            ScimDialect::Idbridge => format!("{}:immutableId", kind.sync_schema()),
            ScimDialect::Core => "externalId".to_owned(),
        }
    }

    /// The anchor attribute's name, for messages.
    pub fn anchor_name(self) -> &'static str {
        match self {
            ScimDialect::Idbridge => "immutableId",
            ScimDialect::Core => "externalId",
        }
    }

    /// The anchor a cloud resource holds, if any.
    pub fn anchor_of(self, kind: CloudKind, resource: &serde_json::Value) -> Option<String> {
        let holder = match self {
            ScimDialect::Idbridge => resource.get(kind.sync_schema())?.get("immutableId"),
            ScimDialect::Core => resource.get("externalId"),
        };
        holder?.as_str().map(str::to_owned)
    }

    /// Whether servers of this dialect have a resource type for `kind`.
    pub fn offers(self, kind: CloudKind) -> bool {
        self == ScimDialect::Idbridge || kind != CloudKind::Contact
    }

    /// Whether a cloud attribute path exists in this dialect.
    fn carries(self, kind: CloudKind, path: &str) -> bool {
        self == ScimDialect::Idbridge || !path.starts_with(kind.sync_schema())
    }
}

/// Which AD objects are synced: OU include/exclude lists, an optional LDAP filter, an
/// optional pilot group (only its direct members are synced), and the resource types the
/// export target has.
#[derive(Clone, Debug, Default)]
pub struct SyncScope {
    pub ous: OuScope,
    pub filter: Option<LdapFilter>,
    pub pilot_group: Option<Dn>,
    pub dialect: ScimDialect,
}

/// Why an object is not (or no longer) synced, in words for `sync preview` and the run log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutOfScope {
    Deleted,
    OutsideOus,
    FilteredOut,
    NotInPilotGroup,
    NoRule,
    /// The rules make a resource type the export target does not have.
    NotOffered(CloudKind),
}

impl std::fmt::Display for OutOfScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutOfScope::Deleted => "deleted in AD",
            OutOfScope::OutsideOus => "outside the synced OUs",
            OutOfScope::FilteredOut => "excluded by the scope filter",
            OutOfScope::NotInPilotGroup => "not a member of the pilot group",
            OutOfScope::NoRule => "no sync rule applies",
            OutOfScope::NotOffered(kind) => {
                return write!(
                    f,
                    "the export target has no {} resource type (sync.scim_dialect = \"core\")",
                    kind.name()
                )
            }
        })
    }
}

/// What the rules make of an in-scope object.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// The metaverse object type the inbound rules chose (`person`, `group`, ...).
    pub mv_type: String,
    pub kind: CloudKind,
    /// The source anchor (base64), the cloud object's `immutableId`.
    pub anchor: String,
    pub metaverse: Attributes,
    /// The cloud attributes by SCIM path.
    pub cloud: Attributes,
    /// Rules that fired, inbound then outbound.
    pub fired: Vec<String>,
    /// Join conditions in order (hard match first): cloud attribute path and the value to match.
    pub join: Vec<(AttrName, String)>,
}

impl Projection {
    /// The join conditions in `dialect`: the anchor at its place there, conditions on
    /// attributes the dialect lacks dropped.
    pub fn join_in(&self, dialect: ScimDialect) -> Vec<(String, String)> {
        let anchor = ScimDialect::Idbridge.anchor_path(self.kind);
        self.join
            .iter()
            .filter_map(|(path, value)| {
                let path = path.as_str();
                if path.eq_ignore_ascii_case(&anchor) {
                    Some((dialect.anchor_path(self.kind), value.clone()))
                } else {
                    dialect
                        .carries(self.kind, path)
                        .then(|| (path.to_owned(), value.clone()))
                }
            })
            .collect()
    }

    /// The AD objects the cloud object refers to (manager, members).
    pub fn references(&self) -> impl Iterator<Item = &Dn> {
        self.cloud.values().flatten().filter_map(|v| match v {
            Value::Ref(dn) => Some(dn),
            _ => None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Disposition {
    OutOfScope(OutOfScope),
    InScope(Box<Projection>),
}

const SOURCE_ANCHOR: AttrName = AttrName::from_static("sourceAnchor");

/// Runs `object` through scope and rules. `pilot_members` holds the normalized DNs of the pilot
/// group's members when a pilot group is configured. An error names the rule and attribute.
pub fn project(
    rules: &RuleSet,
    scope: &SyncScope,
    object: &AdObject,
    pilot_members: Option<&HashSet<String>>,
) -> Result<Disposition, String> {
    let out = |why| Ok(Disposition::OutOfScope(why));
    if object.deleted {
        return out(OutOfScope::Deleted);
    }
    if !scope.ous.contains(&object.dn) {
        return out(OutOfScope::OutsideOus);
    }
    if scope.filter.as_ref().is_some_and(|f| !f.matches(object)) {
        return out(OutOfScope::FilteredOut);
    }
    if scope.pilot_group.is_some()
        && !pilot_members.is_some_and(|m| m.contains(object.dn.normalized()))
    {
        return out(OutOfScope::NotInPilotGroup);
    }
    let inbound = rules
        .values(Direction::Inbound, &object.class, object)
        .map_err(|e| e.to_string())?;
    let Some(mv_type) = inbound.to else {
        return out(OutOfScope::NoRule);
    };
    let metaverse = inbound.attributes;
    let cloud = rules
        .values(Direction::Outbound, &mv_type, &metaverse)
        .map_err(|e| e.to_string())?;
    let Some(kind) = cloud.to.as_deref().and_then(CloudKind::parse) else {
        return out(OutOfScope::NoRule);
    };
    if !scope.dialect.offers(kind) {
        return out(OutOfScope::NotOffered(kind));
    }
    let anchor = match metaverse.get(&SOURCE_ANCHOR).and_then(|v| v.first()) {
        Some(Value::Str(s)) if !s.is_empty() => s.clone(),
        _ => return Err("the object has no source anchor (sourceAnchor is empty)".into()),
    };
    let join = rules
        .rules_for(Direction::Outbound, &mv_type)
        .flat_map(|r| r.join())
        .filter_map(|c| {
            let value = metaverse.get(&c.metaverse)?.first()?;
            Some((c.cloud.clone(), value.to_string()))
        })
        .collect();
    let mut fired = inbound.fired;
    fired.extend(cloud.fired);
    Ok(Disposition::InScope(Box::new(Projection {
        mv_type,
        kind,
        anchor,
        metaverse,
        cloud: cloud.attributes,
        fired,
        join,
    })))
}

/// A cloud object rendered as SCIM JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// References whose target had no cloud object yet stand in it as placeholders (see
    /// [`resolve_references`]); a document is never sent with them.
    pub doc: serde_json::Value,
    /// References whose target has no cloud object yet.
    pub unresolved: Vec<Dn>,
}

/// Key of the placeholder object `{"idbridge:unresolvedReference": "<normalized DN>"}` that
/// stands where a reference's `{"value": "<cloud id>"}` goes until its target is exported.
pub const UNRESOLVED_REFERENCE: &str = "idbridge:unresolvedReference";

fn placeholder_dn(value: &serde_json::Value) -> Option<&str> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    map.get(UNRESOLVED_REFERENCE)?.as_str()
}

/// The normalized DNs of the placeholders in `doc`.
pub fn unresolved_references(doc: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_placeholders(doc, &mut found);
    found
}

fn collect_placeholders(value: &serde_json::Value, found: &mut Vec<String>) {
    if let Some(dn) = placeholder_dn(value) {
        found.push(dn.to_owned());
        return;
    }
    match value {
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_placeholders(v, found)),
        serde_json::Value::Array(items) => {
            items.iter().for_each(|v| collect_placeholders(v, found))
        }
        _ => {}
    }
}

/// Replaces each placeholder in `doc` whose DN `resolve` maps to a cloud id by the reference
/// `{"value": id}`; the others stay, or with `drop_unresolved` are removed (the attribute, or
/// the element of a multi-valued one). Returns how many placeholders are left.
pub fn resolve_references(
    doc: &mut serde_json::Value,
    resolve: &dyn Fn(&str) -> Option<String>,
    drop_unresolved: bool,
) -> usize {
    // What a placeholder becomes: `Some(reference)`, or `None` to remove it.
    let replace = |value: &serde_json::Value| -> Option<Option<serde_json::Value>> {
        let dn = placeholder_dn(value)?;
        match resolve(dn) {
            Some(id) => Some(Some(json!({ "value": id }))),
            None if drop_unresolved => Some(None),
            None => None,
        }
    };
    let mut left = 0;
    match doc {
        serde_json::Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let Some(value) = map.get_mut(&key) else {
                    continue;
                };
                match replace(value) {
                    Some(Some(reference)) => *value = reference,
                    Some(None) => {
                        map.remove(&key);
                    }
                    None if placeholder_dn(value).is_some() => left += 1,
                    None => left += resolve_references(value, resolve, drop_unresolved),
                }
            }
        }
        serde_json::Value::Array(items) => {
            let mut kept = Vec::with_capacity(items.len());
            for mut item in std::mem::take(items) {
                match replace(&item) {
                    Some(Some(reference)) => kept.push(reference),
                    Some(None) => {}
                    None if placeholder_dn(&item).is_some() => {
                        left += 1;
                        kept.push(item);
                    }
                    None => {
                        left += resolve_references(&mut item, resolve, drop_unresolved);
                        kept.push(item);
                    }
                }
            }
            *items = kept;
        }
        _ => {}
    }
    left
}

/// Renders `projection` as the SCIM resource the cloud should hold. `resolve` maps a referenced
/// AD object's DN to its cloud id.
pub fn render(
    projection: &Projection,
    dialect: ScimDialect,
    resolve: &dyn Fn(&Dn) -> Option<String>,
) -> Rendered {
    let kind = projection.kind;
    let mut doc = Map::new();
    let mut unresolved = Vec::new();
    let mut rendered = |v: &Value| match v {
        Value::Ref(dn) => match resolve(dn) {
            Some(id) => json!({ "value": id }),
            None => {
                unresolved.push(dn.clone());
                json!({ UNRESOLVED_REFERENCE: dn.normalized() })
            }
        },
        other => to_json(other),
    };
    for (target, values) in &projection.cloud {
        let path = target.as_str();
        if !dialect.carries(kind, path) {
            continue;
        }
        let multi = CLOUD
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(path))
            .is_some_and(|d| d.multi);
        // A single-valued target has at most one value: the rules are type-checked.
        let value = match values.as_slice() {
            [] => continue,
            values if multi => serde_json::Value::Array(values.iter().map(&mut rendered).collect()),
            [first, ..] => rendered(first),
        };
        set_path(&mut doc, path, value);
    }
    let mut schemas = vec![kind.core_schema()];
    if doc.contains_key(ENTERPRISE_SCHEMA) {
        schemas.push(ENTERPRISE_SCHEMA);
    }
    match dialect {
        ScimDialect::Idbridge => {
            let sync = child(&mut doc, kind.sync_schema(), json!({}));
            if let Some(ext) = sync.and_then(serde_json::Value::as_object_mut) {
                ext.insert("source".into(), json!("on_premises"));
                ext.insert("immutableId".into(), json!(projection.anchor));
            }
            schemas.push(kind.sync_schema());
        }
        ScimDialect::Core => {
            doc.insert("externalId".into(), json!(projection.anchor));
        }
    }
    doc.insert("schemas".into(), json!(schemas));
    Rendered {
        doc: serde_json::Value::Object(doc),
        unresolved,
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Str(s) => json!(s),
        Value::Int(i) => json!(i),
        Value::Bool(b) => json!(b),
        Value::Bytes(b) => json!(B64.encode(b)),
        Value::Ref(dn) => json!(dn.to_string()),
        Value::DateTime(_) => json!(v.to_string()),
    }
}

/// Sets a SCIM attribute path of the forms the cloud catalog uses: `a`, `a.b`,
/// `a[type eq "x"].b`, each optionally prefixed by an extension URN (`urn:...:a`).
fn set_path(doc: &mut Map<String, serde_json::Value>, path: &str, value: serde_json::Value) {
    let (container, rest) = match path.strip_prefix("urn:") {
        Some(_) => match path.rsplit_once(':') {
            Some((urn, rest)) => match child(doc, urn, json!({})).and_then(|e| e.as_object_mut()) {
                Some(ext) => (ext, rest),
                None => return,
            },
            None => return,
        },
        None => (doc, path),
    };
    if let Some((attr, filter_and_sub)) = rest.split_once('[') {
        // `emails[type eq "work"].value`: the element of that type, created when missing.
        let Some((filter, sub)) = filter_and_sub.split_once("].") else {
            return;
        };
        let type_value = filter
            .split_once(" eq ")
            .map(|(_, v)| v.trim().trim_matches('"'))
            .unwrap_or_default();
        let Some(list) = child(container, attr, json!([])).and_then(|l| l.as_array_mut()) else {
            return;
        };
        if let Some(element) = list
            .iter_mut()
            .find(|e| e.get("type").and_then(|t| t.as_str()) == Some(type_value))
        {
            if let Some(element) = element.as_object_mut() {
                element.insert(sub.into(), value);
            }
        } else {
            let mut element = Map::new();
            element.insert("type".into(), json!(type_value));
            element.insert(sub.into(), value);
            if list.is_empty() {
                element.insert("primary".into(), json!(true));
            }
            list.push(serde_json::Value::Object(element));
        }
    } else if let Some((attr, sub)) = rest.split_once('.') {
        if let Some(parent) = child(container, attr, json!({})).and_then(|p| p.as_object_mut()) {
            parent.insert(sub.into(), value);
        }
    } else {
        container.insert(rest.into(), value);
    }
}

/// The value at `key`, `empty` put there first when there is none; unlike `Map::entry`, it
/// allocates the key only then.
fn child<'m>(
    map: &'m mut Map<String, serde_json::Value>,
    key: &str,
    empty: serde_json::Value,
) -> Option<&'m mut serde_json::Value> {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), empty);
    }
    map.get_mut(key)
}

/// Normalized DNs of a group's direct members (for the pilot-group scope).
pub fn member_set(group: &AdObject) -> HashSet<String> {
    group
        .attrs
        .get(&AttrName::from("member"))
        .into_iter()
        .flatten()
        .filter_map(|v| match v {
            Value::Str(s) => Dn::parse(s).ok().map(|d| d.normalized().to_owned()),
            Value::Ref(d) => Some(d.normalized().to_owned()),
            _ => None,
        })
        .collect()
}

/// Top-level attribute names of a rendered document that the sync manages (for PATCH).
pub fn managed_attributes(docs: &[&serde_json::Value]) -> Vec<String> {
    let names: BTreeSet<&str> = docs
        .iter()
        .filter_map(|doc| doc.as_object())
        .flat_map(|map| map.keys())
        .map(String::as_str)
        .filter(|key| !matches!(*key, "schemas" | "id" | "meta"))
        .collect();
    names.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use idbridge_core::ObjectGuid;

    fn jack(dn: &str) -> AdObject {
        let s = |v: &str| vec![Value::Str(v.into())];
        AdObject {
            guid: ObjectGuid::from_bytes(&[1; 16]).unwrap(),
            dn: Dn::parse(dn).unwrap(),
            class: "user".into(),
            attrs: [
                ("userPrincipalName", s("jack@lab.test")),
                ("givenName", s("Jack")),
                ("sn", s("Smith")),
                ("mail", s("jack@lab.test")),
                ("userAccountControl", s("512")),
                ("manager", s("CN=Boss,OU=Staff,DC=lab")),
                ("objectGUID", vec![Value::Bytes(vec![1; 16])]),
                ("distinguishedName", s(dn)),
            ]
            .into_iter()
            .map(|(k, v)| (AttrName::from(k), v))
            .collect(),
            deleted: false,
        }
    }

    fn staff_scope() -> SyncScope {
        SyncScope {
            ous: OuScope {
                include: vec![Dn::parse("OU=Staff,DC=lab").unwrap()],
                exclude: vec![],
            },
            ..SyncScope::default()
        }
    }

    fn projected(object: &AdObject) -> Projection {
        let rules = RuleSet::default_rules().unwrap();
        match project(&rules, &staff_scope(), object, None).unwrap() {
            Disposition::InScope(p) => *p,
            other => panic!("expected in scope, got {other:?}"),
        }
    }

    #[test]
    fn user_renders_as_scim_with_anchor_and_join_conditions() {
        let p = projected(&jack("CN=Jack,OU=Staff,DC=lab"));
        assert_eq!(p.kind, CloudKind::User);
        assert_eq!(p.anchor, B64.encode([1u8; 16]));
        assert_eq!(
            p.join.first().map(|j| j.1.as_str()),
            Some(p.anchor.as_str())
        );
        assert_eq!(p.join.get(1).map(|j| j.1.as_str()), Some("jack@lab.test"));
        let r = render(&p, ScimDialect::Idbridge, &|dn: &Dn| {
            (dn.normalized() == Dn::parse("CN=Boss,OU=Staff,DC=lab").unwrap().normalized())
                .then(|| "boss-id".to_string())
        });
        assert!(r.unresolved.is_empty());
        let d = &r.doc;
        assert_eq!(d["userName"], "jack@lab.test");
        assert_eq!(d["displayName"], "Jack Smith");
        assert_eq!(d["name"]["givenName"], "Jack");
        assert_eq!(d["active"], true);
        assert_eq!(d["emails"][0]["type"], "work");
        assert_eq!(d["emails"][0]["value"], "jack@lab.test");
        assert_eq!(d[ENTERPRISE_SCHEMA]["manager"]["value"], "boss-id");
        assert_eq!(d[SYNC_USER_SCHEMA]["source"], "on_premises");
        assert_eq!(
            d[SYNC_USER_SCHEMA]["onPremisesDistinguishedName"],
            "CN=Jack,OU=Staff,DC=lab"
        );
        assert_eq!(
            d["schemas"],
            json!([USER_SCHEMA, ENTERPRISE_SCHEMA, SYNC_USER_SCHEMA])
        );
    }

    fn contact(mail: Option<&str>) -> AdObject {
        let s = |v: &str| vec![Value::Str(v.into())];
        let dn = "CN=Lab Contact,OU=Staff,DC=lab";
        let mut attrs: Attributes = [
            ("cn", s("Lab Contact")),
            ("company", s("Example Ltd")),
            ("objectGUID", vec![Value::Bytes(vec![7; 16])]),
            ("distinguishedName", s(dn)),
        ]
        .into_iter()
        .map(|(k, v)| (AttrName::from(k), v))
        .collect();
        if let Some(mail) = mail {
            attrs.insert(AttrName::from("mail"), s(mail));
        }
        AdObject {
            guid: ObjectGuid::from_bytes(&[7; 16]).unwrap(),
            dn: Dn::parse(dn).unwrap(),
            class: "contact".into(),
            attrs,
            deleted: false,
        }
    }

    #[test]
    fn a_contact_with_mail_renders_as_a_cloud_contact() {
        let p = projected(&contact(Some("c@example.invalid")));
        assert_eq!(p.kind, CloudKind::Contact);
        assert_eq!(p.anchor, B64.encode([7u8; 16]));
        let r = render(&p, ScimDialect::Idbridge, &|_: &Dn| None);
        let d = &r.doc;
        assert_eq!(d["schemas"], json!([CONTACT_SCHEMA, SYNC_CONTACT_SCHEMA]));
        assert_eq!(d["displayName"], "Lab Contact");
        assert_eq!(d["companyName"], "Example Ltd");
        assert_eq!(d["emails"][0]["value"], "c@example.invalid");
        assert_eq!(d[SYNC_CONTACT_SCHEMA]["immutableId"], p.anchor.as_str());
        assert_eq!(d[SYNC_CONTACT_SCHEMA]["source"], "on_premises");
    }

    #[test]
    fn contacts_without_mail_or_without_a_target_type_are_out_of_scope() {
        let rules = RuleSet::default_rules().unwrap();
        let no_mail = project(&rules, &staff_scope(), &contact(None), None).unwrap();
        assert_eq!(no_mail, Disposition::OutOfScope(OutOfScope::NoRule));
        let core = SyncScope {
            dialect: ScimDialect::Core,
            ..staff_scope()
        };
        let to_core = project(&rules, &core, &contact(Some("c@x.invalid")), None).unwrap();
        let Disposition::OutOfScope(why) = to_core else {
            panic!("expected out of scope, got {to_core:?}");
        };
        assert_eq!(why, OutOfScope::NotOffered(CloudKind::Contact));
        assert!(
            why.to_string().contains("no Contact resource type"),
            "{why}"
        );
    }

    #[test]
    fn the_core_dialect_carries_the_anchor_as_external_id_and_nothing_of_ours() {
        let p = projected(&jack("CN=Jack,OU=Staff,DC=lab"));
        let r = render(&p, ScimDialect::Core, &|_: &Dn| Some("boss-id".into()));
        assert_eq!(r.doc["externalId"], p.anchor.as_str());
        assert!(r.doc.get(SYNC_USER_SCHEMA).is_none(), "{}", r.doc);
        assert_eq!(r.doc["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
        let join = p.join_in(ScimDialect::Core);
        assert_eq!(
            join.first(),
            Some(&("externalId".to_owned(), p.anchor.clone()))
        );
        assert_eq!(join.get(1).map(|j| j.0.as_str()), Some("userName"));
        assert_eq!(
            ScimDialect::Core.anchor_of(CloudKind::User, &r.doc),
            Some(p.anchor.clone())
        );
    }

    #[test]
    fn unresolved_references_are_placeholders_until_resolved() {
        let p = projected(&jack("CN=Jack,OU=Staff,DC=lab"));
        let r = render(&p, ScimDialect::Idbridge, &|_: &Dn| None);
        let boss = Dn::parse("CN=Boss,OU=Staff,DC=lab").unwrap();
        assert_eq!(r.unresolved, std::slice::from_ref(&boss));
        assert_eq!(unresolved_references(&r.doc), [boss.normalized()]);

        let mut later = r.doc.clone();
        assert_eq!(resolve_references(&mut later, &|_| None, false), 1);
        assert_eq!(later, r.doc, "kept while the target is not exported");
        let found = |dn: &str| (dn == boss.normalized()).then(|| "cloud-boss".to_owned());
        assert_eq!(resolve_references(&mut later, &found, false), 0);
        assert_eq!(
            later[ENTERPRISE_SCHEMA]["manager"],
            json!({"value": "cloud-boss"})
        );

        let mut sent = r.doc.clone();
        assert_eq!(resolve_references(&mut sent, &|_| None, true), 0);
        assert!(sent[ENTERPRISE_SCHEMA].get("manager").is_none());
        assert!(unresolved_references(&sent).is_empty());
    }

    #[test]
    fn unresolved_members_are_dropped_one_by_one() {
        let placeholder = |dn: &str| json!({ UNRESOLVED_REFERENCE: dn });
        let mut doc =
            json!({"members": [{"value": "a"}, placeholder("cn=b"), placeholder("cn=c")]});
        let known = |dn: &str| (dn == "cn=b").then(|| "id-b".to_owned());
        assert_eq!(resolve_references(&mut doc, &known, true), 0);
        assert_eq!(doc, json!({"members": [{"value": "a"}, {"value": "id-b"}]}));
        // An object that merely has the key among others is data, not a placeholder.
        let mut data = json!({"x": {UNRESOLVED_REFERENCE: "cn=d", "value": "v"}});
        assert_eq!(resolve_references(&mut data, &|_| None, true), 0);
        assert_eq!(data["x"]["value"], "v");
    }

    #[test]
    fn scope_reasons() {
        let rules = RuleSet::default_rules().unwrap();
        let scope = staff_scope();
        let outside = jack("CN=Jack,OU=Other,DC=lab");
        assert_eq!(
            project(&rules, &scope, &outside, None).unwrap(),
            Disposition::OutOfScope(OutOfScope::OutsideOus)
        );
        let mut deleted = jack("CN=Jack,OU=Staff,DC=lab");
        deleted.deleted = true;
        assert_eq!(
            project(&rules, &scope, &deleted, None).unwrap(),
            Disposition::OutOfScope(OutOfScope::Deleted)
        );
        let filtered = SyncScope {
            filter: Some(LdapFilter::parse("(department=Sales)").unwrap()),
            ..staff_scope()
        };
        assert_eq!(
            project(&rules, &filtered, &jack("CN=Jack,OU=Staff,DC=lab"), None).unwrap(),
            Disposition::OutOfScope(OutOfScope::FilteredOut)
        );
        let pilot = SyncScope {
            pilot_group: Some(Dn::parse("CN=Pilot,DC=lab").unwrap()),
            ..staff_scope()
        };
        let members: HashSet<String> = [Dn::parse("CN=Jack,OU=Staff,DC=lab")
            .unwrap()
            .normalized()
            .to_owned()]
        .into();
        assert!(matches!(
            project(
                &rules,
                &pilot,
                &jack("CN=Jack,OU=Staff,DC=lab"),
                Some(&members)
            )
            .unwrap(),
            Disposition::InScope(_)
        ));
        assert_eq!(
            project(&rules, &pilot, &jack("CN=Jack,OU=Staff,DC=lab"), None).unwrap(),
            Disposition::OutOfScope(OutOfScope::NotInPilotGroup)
        );
    }

    #[test]
    fn an_object_without_anchor_is_not_exported() {
        let rules = RuleSet::default_rules().unwrap();
        let mut o = jack("CN=Jack,OU=Staff,DC=lab");
        o.attrs.remove(&AttrName::from("objectGUID"));
        // Without an anchor the outbound rule's scope excludes it: not an export, not a crash.
        assert_eq!(
            project(&rules, &staff_scope(), &o, None).unwrap(),
            Disposition::OutOfScope(OutOfScope::NoRule)
        );
    }

    fn group() -> AdObject {
        let s = |v: &str| Value::Str(v.into());
        let dn = "CN=Team,OU=Staff,DC=lab";
        AdObject {
            guid: ObjectGuid::from_bytes(&[9; 16]).unwrap(),
            dn: Dn::parse(dn).unwrap(),
            class: "group".into(),
            attrs: [
                ("cn", vec![s("Team")]),
                ("description", vec![s("The team")]),
                ("sAMAccountName", vec![s("team")]),
                (
                    "member",
                    vec![s("CN=Boss,OU=Staff,DC=lab"), s("CN=Jack,OU=Staff,DC=lab")],
                ),
                ("objectGUID", vec![Value::Bytes(vec![9; 16])]),
                ("distinguishedName", vec![s(dn)]),
            ]
            .into_iter()
            .map(|(k, v)| (AttrName::from(k), v))
            .collect(),
            deleted: false,
        }
    }

    #[test]
    fn rendered_documents_are_stable() {
        // Pinned: what the cloud is sent must not change with how it is computed.
        let boss = |dn: &Dn| (dn.rdn()?.value() == "Boss").then(|| "boss-id".to_string());
        let mut rich = jack("CN=Jack,OU=Staff,DC=lab");
        for (name, values) in [
            ("telephoneNumber", vec!["+49 30 1"]),
            ("mobile", vec!["+49 170 1"]),
            ("department", vec!["Sales"]),
            ("employeeID", vec!["E1"]),
            ("company", vec!["Lab"]),
            ("title", vec!["Boss of nothing"]),
            ("sAMAccountName", vec!["jack"]),
            (
                "proxyAddresses",
                vec!["SMTP:jack@lab.test", "smtp:j@lab.test"],
            ),
        ] {
            let values = values.into_iter().map(|v| Value::Str(v.into())).collect();
            rich.attrs.insert(AttrName::from(name), values);
        }
        let cases = [
            (projected(&rich), ScimDialect::Idbridge),
            (
                projected(&jack("CN=Jack,OU=Staff,DC=lab")),
                ScimDialect::Core,
            ),
            (
                projected(&contact(Some("c@example.invalid"))),
                ScimDialect::Idbridge,
            ),
            (projected(&group()), ScimDialect::Idbridge),
            (projected(&group()), ScimDialect::Core),
        ];
        let expected = [
            (
                r#"{"active":true,"displayName":"Jack Smith","emails":[{"primary":true,"type":"work","value":"jack@lab.test"}],"name":{"familyName":"Smith","givenName":"Jack"},"phoneNumbers":[{"primary":true,"type":"mobile","value":"+49 170 1"},{"type":"work","value":"+49 30 1"}],"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User","urn:idbridge:params:scim:schemas:extension:sync:2.0:User"],"title":"Boss of nothing","urn:idbridge:params:scim:schemas:extension:sync:2.0:User":{"immutableId":"AQEBAQEBAQEBAQEBAQEBAQ==","onPremisesDistinguishedName":"CN=Jack,OU=Staff,DC=lab","onPremisesSamAccountName":"jack","proxyAddresses":["SMTP:jack@lab.test","smtp:j@lab.test"],"source":"on_premises"},"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Sales","employeeNumber":"E1","manager":{"value":"boss-id"},"organization":"Lab"},"userName":"jack@lab.test"}"#,
                false,
            ),
            (
                r#"{"active":true,"displayName":"Jack Smith","emails":[{"primary":true,"type":"work","value":"jack@lab.test"}],"externalId":"AQEBAQEBAQEBAQEBAQEBAQ==","name":{"familyName":"Smith","givenName":"Jack"},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"manager":{"value":"boss-id"}},"userName":"jack@lab.test"}"#,
                false,
            ),
            (
                r#"{"companyName":"Example Ltd","displayName":"Lab Contact","emails":[{"primary":true,"type":"work","value":"c@example.invalid"}],"schemas":["urn:idbridge:params:scim:schemas:core:2.0:Contact","urn:idbridge:params:scim:schemas:extension:sync:2.0:Contact"],"urn:idbridge:params:scim:schemas:extension:sync:2.0:Contact":{"immutableId":"BwcHBwcHBwcHBwcHBwcHBw==","onPremisesDistinguishedName":"CN=Lab Contact,OU=Staff,DC=lab","source":"on_premises"}}"#,
                false,
            ),
            (
                r#"{"displayName":"Team","members":[{"value":"boss-id"},{"idbridge:unresolvedReference":"cn=jack,ou=staff,dc=lab"}],"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","urn:idbridge:params:scim:schemas:extension:sync:2.0:Group"],"urn:idbridge:params:scim:schemas:extension:sync:2.0:Group":{"description":"The team","immutableId":"CQkJCQkJCQkJCQkJCQkJCQ==","onPremisesDistinguishedName":"CN=Team,OU=Staff,DC=lab","onPremisesSamAccountName":"team","source":"on_premises"}}"#,
                true,
            ),
            (
                r#"{"displayName":"Team","externalId":"CQkJCQkJCQkJCQkJCQkJCQ==","members":[{"value":"boss-id"},{"idbridge:unresolvedReference":"cn=jack,ou=staff,dc=lab"}],"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"]}"#,
                true,
            ),
        ];
        for ((p, dialect), (doc, unresolved)) in cases.iter().zip(expected) {
            let r = render(p, *dialect, &boss);
            assert_eq!(r.doc.to_string(), doc);
            assert_eq!(!r.unresolved.is_empty(), unresolved, "{doc}");
        }
    }
}
