//! Turning LDAP search result entries into [`AdEntry`] values. Pure: no I/O.

use std::collections::BTreeMap;

use idbridge_core::{AttrName, Dn, ObjectGuid};
use idbridge_rules::{Syntax, Value, AD};
use ldap3::asn1::{StructureTag, PL};

/// One AD object as read. Text attributes are `Value::Str` exactly as LDAP sent them; binary
/// attributes (see [`is_binary_attr`]) are `Value::Bytes`; DN-valued attributes (see
/// [`is_dn_attr`]) are `Value::Str` of the plain DN (extended-DN prefixes stripped).
#[derive(Debug, Clone, PartialEq)]
pub struct AdEntry {
    pub guid: ObjectGuid,
    pub dn: Dn,
    /// Most specific structural class: "user", "computer", "group", "contact",
    /// "organizationalUnit" (else the last objectClass value; empty if the server sent none).
    pub class: String,
    pub attrs: BTreeMap<AttrName, Vec<Value>>,
    /// DirSync reported the object deleted (`isDeleted: TRUE`); attrs may be nearly empty.
    pub deleted: bool,
}

impl AdEntry {
    /// The values of `name` (empty when absent).
    pub fn values(&self, name: &str) -> &[Value] {
        self.attrs
            .get(&AttrName::from(name))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The first value of a text attribute.
    pub fn first_str(&self, name: &str) -> Option<&str> {
        self.values(name).iter().find_map(|v| match v {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        })
    }
}

/// An object that could not be read, with its DN (as text, maybe unparsed) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdEntryError {
    pub dn: String,
    pub message: String,
}

impl std::fmt::Display for AdEntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read {:?}: {}", self.dn, self.message)
    }
}

/// An entry as it came off the wire: DN text and attribute names with raw values, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RawEntry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl RawEntry {
    /// Parses a SearchResultEntry (`[APPLICATION 4] SEQUENCE { objectName, attributes }`)
    /// without the panics of `ldap3::SearchEntry::construct`.
    pub fn from_tag(tag: StructureTag) -> Result<Self, AdEntryError> {
        let err = |dn: &str, message: String| AdEntryError {
            dn: dn.to_string(),
            message,
        };
        let parts = tag
            .match_id(4)
            .and_then(StructureTag::expect_constructed)
            .ok_or_else(|| err("", "not a SearchResultEntry".into()))?;
        let mut parts = parts.into_iter();
        let dn_bytes = parts
            .next()
            .and_then(StructureTag::expect_primitive)
            .ok_or_else(|| err("", "SearchResultEntry without objectName".into()))?;
        let dn = match String::from_utf8(dn_bytes) {
            Ok(dn) => dn,
            Err(e) => {
                let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                return Err(err(&lossy, "the DN is not UTF-8".into()));
            }
        };
        let mut attrs = Vec::new();
        let list = parts
            .next()
            .and_then(StructureTag::expect_constructed)
            .unwrap_or_default();
        for partial in list {
            let mut pa = partial
                .expect_constructed()
                .ok_or_else(|| err(&dn, "malformed PartialAttribute".into()))?
                .into_iter();
            let name = pa
                .next()
                .and_then(StructureTag::expect_primitive)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| err(&dn, "malformed attribute description".into()))?;
            let values = match pa.next().map(|t| t.payload) {
                Some(PL::C(vals)) => vals
                    .into_iter()
                    .map(|v| match v.payload {
                        PL::P(b) => Ok(b),
                        PL::C(_) => Err(err(&dn, format!("constructed value of {name}"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(PL::P(_)) => return Err(err(&dn, format!("malformed values of {name}"))),
                None => Vec::new(),
            };
            attrs.push((name, values));
        }
        Ok(Self { dn, attrs })
    }

    /// The values of the attribute named exactly `name` (ASCII case-insensitive, no options).
    pub fn get(&self, name: &str) -> Option<&Vec<Vec<u8>>> {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Folds the follow-up read `chunk` (an entry read with `base;range=start-*`) into this entry:
    /// the values are appended to the ranged attribute, whose description takes the chunk's range.
    pub fn merge_range(&mut self, base: &str, start: u64, chunk: &RawEntry) -> Result<(), String> {
        let found = chunk.attrs.iter().find_map(|(n, v)| {
            parse_range(n)
                .filter(|r| r.base.eq_ignore_ascii_case(base))
                .map(|r| (n.clone(), r, v))
        });
        let slot = self
            .attrs
            .iter_mut()
            .find(|(n, _)| parse_range(n).is_some_and(|r| r.base.eq_ignore_ascii_case(base)))
            .ok_or_else(|| format!("no ranged attribute {base} to complete"))?;
        match found {
            Some((desc, range, values)) => {
                if range.start != start {
                    return Err(format!(
                        "asked for {base};range={start}-* and the DC answered {desc}"
                    ));
                }
                slot.0 = desc;
                slot.1.extend(values.iter().cloned());
            }
            // The values beyond `start` disappeared meanwhile: what we have is all there is.
            None => slot.0 = format!("{base};range={start}-*"),
        }
        Ok(())
    }

    /// The first ranged attribute description whose range is not final, if any:
    /// `(base name, next start)`.
    pub fn pending_range(&self) -> Option<(String, u64)> {
        self.attrs.iter().find_map(|(n, _)| match parse_range(n) {
            Some(r) => r
                .end
                .and_then(|end| Some((r.base.to_string(), end.checked_add(1)?))),
            None => None,
        })
    }
}

/// A parsed `name;range=low-high` attribute description (`high` is `None` for `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangedAttr<'a> {
    pub base: &'a str,
    pub start: u64,
    pub end: Option<u64>,
}

/// Parses `member;range=1500-2999` / `member;range=3000-*`. `None` if `desc` has no valid
/// range option. Other options (`;binary`, `;lang-en`) are kept in `base`... except that AD
/// never combines them with ranges, so only `name;range=` is recognized.
pub fn parse_range(desc: &str) -> Option<RangedAttr<'_>> {
    let (base, opts) = desc.split_once(';')?;
    let (key, spec) = opts.split_once('=')?;
    if !key.eq_ignore_ascii_case("range") || base.is_empty() {
        return None;
    }
    let (lo, hi) = spec.split_once('-')?;
    let start = lo.parse().ok()?;
    let end = if hi == "*" {
        None
    } else {
        let end: u64 = hi.parse().ok()?;
        if end < start {
            return None;
        }
        Some(end)
    };
    Some(RangedAttr { base, start, end })
}

/// The attribute name without any `;option` suffix.
pub fn base_attr_name(desc: &str) -> &str {
    desc.split_once(';').map_or(desc, |(b, _)| b)
}

/// Strips AD extended-DN components (`<GUID=..>;<SID=..>;`) from the front of `s`.
/// Text without the prefix is returned unchanged; an unterminated `<` is left as is.
pub fn strip_extended_dn(s: &str) -> &str {
    let mut rest = s;
    while let Some(inner) = rest.strip_prefix('<') {
        let Some(end) = inner.find('>') else {
            return rest;
        };
        let after = inner.get(end + 1..).unwrap_or("");
        rest = after.strip_prefix(';').unwrap_or(after);
    }
    rest
}

/// Attributes AD stores as octet strings, beyond those typed `Binary` in the rules catalog.
/// (`parentGUID` is the constructed attribute DirSync adds to every entry.)
const BINARY_ATTRS: &[&str] = &[
    "objectGUID",
    "objectSid",
    "parentGUID",
    "mS-DS-ConsistencyGuid",
    "thumbnailPhoto",
    "userCertificate",
    "sIDHistory",
    "jpegPhoto",
    "msExchMailboxGuid",
    "userSMIMECertificate",
    "cACertificate",
    "nTSecurityDescriptor",
    "tokenGroups",
    "replPropertyMetaData",
    "replUpToDateVector",
];

/// Attributes whose values are DNs and may come back in extended form.
const DN_ATTRS: &[&str] = &["member", "manager", "memberOf", "distinguishedName"];

fn catalog_syntax(name: &str) -> Option<Syntax> {
    AD.iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
        .map(|d| d.syntax)
}

/// True when `name` (no options) holds binary values.
pub fn is_binary_attr(name: &str) -> bool {
    BINARY_ATTRS.iter().any(|b| b.eq_ignore_ascii_case(name))
        || catalog_syntax(name) == Some(Syntax::Binary)
}

/// True when `name` (no options) holds DNs.
pub fn is_dn_attr(name: &str) -> bool {
    DN_ATTRS.iter().any(|b| b.eq_ignore_ascii_case(name))
        || catalog_syntax(name) == Some(Syntax::DnRef)
}

const STRUCTURAL: &[&str] = &["computer", "user", "group", "contact", "organizationalUnit"];

/// The most specific structural class among `classes` (see [`AdEntry::class`]).
pub fn object_class(classes: &[String]) -> String {
    STRUCTURAL
        .iter()
        .find(|c| classes.iter().any(|v| v.eq_ignore_ascii_case(c)))
        .map(|c| (*c).to_string())
        .or_else(|| classes.last().cloned())
        .unwrap_or_default()
}

/// Converts a raw entry. `DN`s may be extended (`<GUID=..>;<SID=..>;CN=..`).
pub(crate) fn convert(raw: RawEntry) -> Result<AdEntry, AdEntryError> {
    let fail = |message: String| AdEntryError {
        dn: strip_extended_dn(&raw.dn).to_string(),
        message,
    };
    let (dn, ext_guid, _) =
        Dn::parse_extended(&raw.dn).map_err(|e| fail(format!("unparseable DN: {e}")))?;

    let mut attrs: BTreeMap<AttrName, Vec<Value>> = BTreeMap::new();
    for (desc, values) in &raw.attrs {
        let name = base_attr_name(desc);
        let binary = is_binary_attr(name);
        let dn_valued = is_dn_attr(name);
        let slot = attrs.entry(AttrName::from(name)).or_default();
        for v in values {
            if binary {
                slot.push(Value::Bytes(v.clone()));
                continue;
            }
            let text = std::str::from_utf8(v).map_err(|_| {
                fail(format!(
                    "attribute {name} has a value that is not UTF-8 (hex {})",
                    hex::encode(v.get(..v.len().min(32)).unwrap_or_default())
                ))
            })?;
            let text = if dn_valued {
                strip_extended_dn(text)
            } else {
                text
            };
            slot.push(Value::Str(text.to_string()));
        }
    }

    let guid = match attrs
        .get(&AttrName::from("objectGUID"))
        .and_then(|v| v.first())
    {
        Some(Value::Bytes(b)) => {
            ObjectGuid::from_bytes(b).map_err(|e| fail(format!("bad objectGUID: {e}")))?
        }
        _ => ext_guid.ok_or_else(|| fail("the server returned no objectGUID".to_string()))?,
    };
    let classes: Vec<String> = attrs
        .get(&AttrName::from("objectClass"))
        .map(|vs| {
            vs.iter()
                .filter_map(|v| match v {
                    Value::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let deleted = attrs
        .get(&AttrName::from("isDeleted"))
        .and_then(|v| v.first())
        .is_some_and(|v| matches!(v, Value::Str(s) if s.eq_ignore_ascii_case("TRUE")));
    Ok(AdEntry {
        guid,
        dn,
        class: object_class(&classes),
        attrs,
        deleted,
    })
}

/// Samba's DirSync reports a deleted object the caller may not read as an entry with an empty
/// DN and only its objectGUID. Such an entry can only be a deletion: mark it so, with the DN of
/// the naming context's `CN=Deleted Objects` container (the tombstone's real DN is not known).
pub(crate) fn mark_unreadable_tombstone(entry: &mut AdEntry, nc: &Dn) {
    if entry.dn.rdns().is_empty() && !entry.deleted {
        entry.deleted = true;
        entry.dn = nc.child("CN", "Deleted Objects");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(dn: &str, attrs: &[(&str, &[&[u8]])]) -> RawEntry {
        RawEntry {
            dn: dn.to_string(),
            attrs: attrs
                .iter()
                .map(|(n, vs)| (n.to_string(), vs.iter().map(|v| v.to_vec()).collect()))
                .collect(),
        }
    }

    const GUID: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0xff];

    #[test]
    fn ranges_parse() {
        assert_eq!(
            parse_range("member;range=1500-2999"),
            Some(RangedAttr {
                base: "member",
                start: 1500,
                end: Some(2999)
            })
        );
        assert_eq!(
            parse_range("member;Range=3000-*"),
            Some(RangedAttr {
                base: "member",
                start: 3000,
                end: None
            })
        );
        for bad in [
            "member",
            "member;range=",
            "member;range=a-b",
            "member;range=10-5",
            ";range=0-1",
            "member;binary",
            "member;range=0-",
            "member;range=-1",
        ] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
        assert_eq!(base_attr_name("member;range=0-1499"), "member");
        assert_eq!(base_attr_name("mail"), "mail");
    }

    #[test]
    fn pending_range_points_at_next_chunk() {
        let r = raw(
            "CN=g",
            &[("member;range=0-1499", &[b"CN=a"]), ("cn", &[b"g"])],
        );
        assert_eq!(r.pending_range(), Some(("member".to_string(), 1500)));
        let r = raw("CN=g", &[("member;range=1500-*", &[b"CN=a"])]);
        assert_eq!(r.pending_range(), None);
    }

    #[test]
    fn merge_range_appends_and_advances() {
        let mut r = raw("CN=g", &[("member;range=0-1", &[b"a", b"b"])]);
        let chunk = raw("CN=g", &[("member;range=2-3", &[b"c", b"d"])]);
        r.merge_range("member", 2, &chunk).unwrap();
        assert_eq!(r.pending_range(), Some(("member".to_string(), 4)));
        let last = raw("CN=g", &[("member;range=4-*", &[b"e"])]);
        r.merge_range("member", 4, &last).unwrap();
        assert_eq!(r.pending_range(), None);
        assert_eq!(r.attrs.first().map(|(_, v)| v.len()), Some(5));
        // Wrong start and nothing to complete are errors; an empty answer ends the range.
        let mut r = raw("CN=g", &[("member;range=0-1", &[b"a"])]);
        assert!(r
            .merge_range("member", 2, &raw("CN=g", &[("member;range=7-*", &[b"x"])]))
            .is_err());
        assert!(r.merge_range("manager", 2, &chunk).is_err());
        r.merge_range("member", 2, &raw("CN=g", &[])).unwrap();
        assert_eq!(r.pending_range(), None);
    }

    #[test]
    fn extended_dn_prefixes_strip() {
        assert_eq!(
            strip_extended_dn("<GUID=b6a6e7c8-2a5b-4c5e-9a0b-1f2e3d4c5b6a>;<SID=S-1-5-21-1-2-3-1104>;CN=Jack,DC=lab"),
            "CN=Jack,DC=lab"
        );
        assert_eq!(strip_extended_dn("<GUID=00>;CN=x"), "CN=x");
        assert_eq!(strip_extended_dn("CN=x,DC=lab"), "CN=x,DC=lab");
        assert_eq!(strip_extended_dn("<GUID=oops"), "<GUID=oops");
        assert_eq!(strip_extended_dn(""), "");
    }

    #[test]
    fn converts_text_binary_and_dn_values() {
        let e = convert(raw(
            "<GUID=04030201-0605-0807-090a-0b0c0d0e0fff>;CN=Jack,OU=Staff,DC=lab",
            &[
                ("objectGUID", &[&GUID]),
                (
                    "objectClass",
                    &[b"top", b"person", b"organizationalPerson", b"user"],
                ),
                ("givenName", &["Jäck".as_bytes()]),
                ("thumbnailPhoto", &[&[0xff, 0xd8, 0x00]]),
                (
                    "memberOf",
                    &[b"<GUID=00>;<SID=S-1-5-32-544>;CN=Admins,DC=lab"],
                ),
                ("member;range=0-1", &[b"CN=a,DC=lab", b"CN=b,DC=lab"]),
            ],
        ))
        .unwrap();
        assert_eq!(e.guid.as_bytes(), &GUID);
        assert_eq!(e.dn.to_string(), "CN=Jack,OU=Staff,DC=lab");
        assert_eq!(e.class, "user");
        assert!(!e.deleted);
        assert_eq!(e.first_str("givenname"), Some("Jäck"));
        assert_eq!(
            e.values("thumbnailPhoto"),
            [Value::Bytes(vec![0xff, 0xd8, 0])]
        );
        assert_eq!(
            e.values("memberOf"),
            [Value::Str("CN=Admins,DC=lab".into())]
        );
        assert_eq!(e.values("member").len(), 2);
        assert_eq!(e.values("objectGUID"), [Value::Bytes(GUID.to_vec())]);
    }

    #[test]
    fn non_utf8_text_is_an_entry_error() {
        let err = convert(raw(
            "CN=Bad,DC=lab",
            &[("objectGUID", &[&GUID]), ("description", &[&[0xff, 0xfe]])],
        ))
        .unwrap_err();
        assert_eq!(err.dn, "CN=Bad,DC=lab");
        assert!(err.message.contains("description"), "{}", err.message);
    }

    #[test]
    fn missing_or_bad_guid_is_an_entry_error() {
        assert!(convert(raw("CN=x,DC=lab", &[])).is_err());
        assert!(convert(raw("CN=x,DC=lab", &[("objectGUID", &[b"short"])])).is_err());
        assert!(convert(raw("CN=x,,DC=lab", &[("objectGUID", &[&GUID])])).is_err());
        // The extended DN's GUID is enough when the attribute is absent.
        let e = convert(raw(
            "<GUID=04030201-0605-0807-090a-0b0c0d0e0fff>;CN=x,DC=lab",
            &[],
        ))
        .unwrap();
        assert_eq!(e.guid.as_bytes(), &GUID);
        assert_eq!(e.class, "");
    }

    #[test]
    fn tombstones_parse() {
        let e = convert(raw(
            r"<GUID=04030201-0605-0807-090a-0b0c0d0e0fff>;CN=Jack\0ADEL:04030201-0605-0807-090a-0b0c0d0e0fff,CN=Deleted Objects,DC=lab",
            &[("isDeleted", &[b"TRUE"]), ("objectGUID", &[&GUID])],
        ))
        .unwrap();
        assert!(e.deleted);
        assert_eq!(
            e.dn.parent().unwrap().to_string(),
            "CN=Deleted Objects,DC=lab"
        );
        assert!(e.dn.rdn().unwrap().value().starts_with("Jack\nDEL:"));
    }

    #[test]
    fn empty_dn_in_dirsync_is_a_deletion() {
        let nc = Dn::parse("DC=lab").unwrap();
        let mut e = convert(raw("", &[("objectGUID", &[&GUID])])).unwrap();
        mark_unreadable_tombstone(&mut e, &nc);
        assert!(e.deleted);
        assert_eq!(e.dn.to_string(), "CN=Deleted Objects,DC=lab");
        let mut live = convert(raw("CN=x,DC=lab", &[("objectGUID", &[&GUID])])).unwrap();
        mark_unreadable_tombstone(&mut live, &nc);
        assert!(!live.deleted);
    }

    #[test]
    fn class_choice() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            object_class(&v(&[
                "top",
                "person",
                "organizationalPerson",
                "user",
                "computer"
            ])),
            "computer"
        );
        assert_eq!(object_class(&v(&["top", "group"])), "group");
        assert_eq!(object_class(&v(&["top", "container"])), "container");
        assert_eq!(object_class(&[]), "");
    }

    #[test]
    fn raw_entry_from_tag() {
        use ldap3::asn1::TagClass;
        let p = |b: &[u8]| StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(b.to_vec()),
        };
        let c = |id: u64, class: TagClass, inner: Vec<StructureTag>| StructureTag {
            class,
            id,
            payload: PL::C(inner),
        };
        let tag = c(
            4,
            TagClass::Application,
            vec![
                p(b"CN=x"),
                c(
                    16,
                    TagClass::Universal,
                    vec![c(
                        16,
                        TagClass::Universal,
                        vec![p(b"mail"), c(17, TagClass::Universal, vec![p(b"a@b")])],
                    )],
                ),
            ],
        );
        let r = RawEntry::from_tag(tag).unwrap();
        assert_eq!(r.dn, "CN=x");
        assert_eq!(r.get("MAIL"), Some(&vec![b"a@b".to_vec()]));
        assert!(RawEntry::from_tag(p(b"x")).is_err());
        assert!(RawEntry::from_tag(c(4, TagClass::Application, vec![])).is_err());
    }
}
