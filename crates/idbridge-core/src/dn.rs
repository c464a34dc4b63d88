use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use crate::{AttrName, ObjectGuid, Sid};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnError {
    #[error("empty RDN at byte {0} of the DN")]
    EmptyRdn(usize),
    #[error("RDN component without '=' at byte {0} of the DN")]
    MissingEquals(usize),
    #[error("bad escape sequence at byte {0} of the DN")]
    BadEscape(usize),
    #[error("escaped bytes at byte {0} of the DN are not UTF-8")]
    NotUtf8(usize),
    #[error("malformed extended DN component: {0}")]
    BadExtended(String),
}

/// A relative distinguished name: one or more `type=value` pairs (multi-valued RDNs are rare in AD).
#[derive(Debug, Clone)]
pub struct Rdn {
    /// The first pair, and the others of a multi-valued RDN: apart, so that the common RDN
    /// needs no list.
    first: (AttrName, String),
    more: Vec<(AttrName, String)>,
}

impl Rdn {
    fn new(attr: AttrName, value: String) -> Self {
        Self {
            first: (attr, value),
            more: Vec::new(),
        }
    }

    fn parsed(first: &Pair<'_>, more: &[Pair<'_>]) -> Self {
        let owned = |(t, v): &Pair<'_>| (AttrName::from(*t), v.clone().into_owned());
        Self {
            first: owned(first),
            more: more.iter().map(owned).collect(),
        }
    }

    /// The value of the first pair: `Jack` for `CN=Jack`.
    pub fn value(&self) -> &str {
        &self.first.1
    }

    /// The `type=value` pairs.
    pub fn pairs(&self) -> impl Iterator<Item = &(AttrName, String)> {
        std::iter::once(&self.first).chain(&self.more)
    }

    fn borrowed(&self) -> (Pair<'_>, Vec<Pair<'_>>) {
        fn borrow((t, v): &(AttrName, String)) -> Pair<'_> {
            (t.as_str(), Cow::Borrowed(v.as_str()))
        }
        (borrow(&self.first), self.more.iter().map(borrow).collect())
    }
}

impl fmt::Display for Rdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        let (first, more) = self.borrowed();
        push_display(&mut text, &first, &more);
        f.write_str(&text)
    }
}

/// One `type=value` pair as parsed: the type as written, the value unescaped.
type Pair<'s> = (&'s str, Cow<'s, str>);

/// Appends an RDN in display form: pairs in their order, values escaped as RFC 4514 wants.
fn push_display(out: &mut String, first: &Pair<'_>, more: &[Pair<'_>]) {
    for (i, (t, v)) in std::iter::once(first).chain(more).enumerate() {
        if i > 0 {
            out.push('+');
        }
        out.push_str(t);
        out.push('=');
        push_escaped(out, v);
    }
}

/// Appends an RDN's comparison key: pairs with folded types and lower-cased, canonically
/// escaped values, sorted and joined by `+`.
fn push_normalized(out: &mut String, first: &Pair<'_>, more: &[Pair<'_>]) {
    if more.is_empty() {
        return push_pair(out, first.0, &first.1);
    }
    let mut parts: Vec<String> = std::iter::once(first)
        .chain(more)
        .map(|(t, v)| {
            let mut part = String::new();
            push_pair(&mut part, t, v);
            part
        })
        .collect();
    parts.sort();
    out.push_str(&parts.join("+"));
}

/// Appends one normalized `type=value` pair.
fn push_pair(out: &mut String, attr: &str, value: &str) {
    let start = out.len();
    out.push_str(attr);
    out.push('=');
    // The common case is lower-cased in place with its type, without an intermediate string.
    let plain_ascii = value.is_ascii() && plain(value);
    if plain_ascii {
        out.push_str(value);
    }
    if let Some(pushed) = out.get_mut(start..) {
        pushed.make_ascii_lowercase();
    }
    if !plain_ascii {
        push_escaped(out, &value.to_lowercase());
    }
}

/// A distinguished name (RFC 4514). Equality and hashing follow AD: attribute types and values
/// compare case-insensitively, and escaping differences do not matter.
///
/// Parsing keeps the display form and the comparison key, the two things sync asks of the DNs
/// it reads for every object; the RDNs are parsed again from the display form when asked for.
/// Cloning is cheap: the parsed form is shared, as a rule's reference values are copied from
/// the connector space to the metaverse to the cloud object.
#[derive(Clone)]
pub struct Dn(Arc<DnParts>);

struct DnParts {
    /// The RDNs, values escaped canonically.
    text: String,
    normalized: String,
    /// How many RDNs.
    len: usize,
    rdns: OnceLock<Vec<Rdn>>,
}

impl Dn {
    pub fn parse(s: &str) -> Result<Self, DnError> {
        let mut text = String::with_capacity(s.len());
        let mut normalized = String::with_capacity(s.len());
        let mut len = 0;
        parse_rdns(s, |first, more| {
            if len > 0 {
                text.push(',');
                normalized.push(',');
            }
            push_display(&mut text, first, more);
            push_normalized(&mut normalized, first, more);
            len += 1;
        })?;
        Ok(Self(Arc::new(DnParts {
            text,
            normalized,
            len,
            rdns: OnceLock::new(),
        })))
    }

    /// Parses AD's extended form `<GUID=..>;<SID=..>;CN=..` (DirSync and `LDAP_SERVER_EXTENDED_DN`).
    /// A plain DN is accepted too.
    pub fn parse_extended(s: &str) -> Result<(Self, Option<ObjectGuid>, Option<Sid>), DnError> {
        let mut rest = s;
        let (mut guid, mut sid) = (None, None);
        while let Some(stripped) = rest.strip_prefix('<') {
            let end = stripped
                .find('>')
                .ok_or_else(|| DnError::BadExtended(s.to_string()))?;
            let (component, after) = stripped.split_at(end);
            let after = after.get(1..).unwrap_or("");
            rest = after.strip_prefix(';').unwrap_or(after);
            if let Some(v) = component.strip_prefix("GUID=") {
                guid = Some(
                    ObjectGuid::parse_any(v).map_err(|e| DnError::BadExtended(e.to_string()))?,
                );
            } else if let Some(v) = component.strip_prefix("SID=") {
                sid = Some(Sid::parse_any(v).map_err(|e| DnError::BadExtended(e.to_string()))?);
            }
        }
        Ok((Self::parse(rest)?, guid, sid))
    }

    fn from_rdns(rdns: Vec<Rdn>) -> Self {
        let (mut text, mut normalized) = (String::new(), String::new());
        for (i, rdn) in rdns.iter().enumerate() {
            if i > 0 {
                text.push(',');
                normalized.push(',');
            }
            let (first, more) = rdn.borrowed();
            push_display(&mut text, &first, &more);
            push_normalized(&mut normalized, &first, &more);
        }
        Self(Arc::new(DnParts {
            text,
            normalized,
            len: rdns.len(),
            rdns: OnceLock::from(rdns),
        }))
    }

    pub fn root() -> Self {
        Self::from_rdns(Vec::new())
    }

    pub fn rdns(&self) -> &[Rdn] {
        self.0.rdns.get_or_init(|| {
            let mut rdns = Vec::with_capacity(self.0.len);
            // Cannot fail: the display form of a parsed DN parses back to the same RDNs
            // (values never start with a space, the one thing parsing drops).
            let parsed = parse_rdns(&self.0.text, |first, more| {
                rdns.push(Rdn::parsed(first, more));
            });
            parsed.map_or_else(|_| Vec::new(), |()| rdns)
        })
    }

    pub fn rdn(&self) -> Option<&Rdn> {
        self.rdns().first()
    }

    pub fn parent(&self) -> Option<Dn> {
        let rdns = self.rdns();
        if rdns.is_empty() {
            return None;
        }
        Some(Self::from_rdns(rdns.get(1..).unwrap_or_default().to_vec()))
    }

    /// A new DN one level below this one.
    pub fn child(&self, attr: &str, value: &str) -> Dn {
        let mut rdns = Vec::with_capacity(self.0.len + 1);
        rdns.push(Rdn::new(AttrName::from(attr), value.to_string()));
        rdns.extend(self.rdns().iter().cloned());
        Self::from_rdns(rdns)
    }

    /// True when `self` equals `ancestor` or lies beneath it.
    pub fn is_within(&self, ancestor: &Dn) -> bool {
        let Some(skip) = self.0.len.checked_sub(ancestor.0.len) else {
            return false;
        };
        // The normalized form joins the RDNs' keys with `,` and escapes every `,` inside a
        // key, so the last n RDNs are what follows the skip-th unescaped comma.
        let tail = match skip {
            0 => self.0.normalized.as_str(),
            _ => {
                let bytes = self.0.normalized.as_bytes();
                let (mut i, mut commas) = (0, 0);
                while let Some(&b) = bytes.get(i) {
                    match b {
                        b'\\' => i += 1,
                        b',' => {
                            commas += 1;
                            if commas == skip {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                self.0.normalized.get(i + 1..).unwrap_or("")
            }
        };
        tail == ancestor.0.normalized
    }

    /// The comparison key: lower-cased types and values, canonical escaping.
    pub fn normalized(&self) -> &str {
        &self.0.normalized
    }
}

impl PartialEq for Dn {
    fn eq(&self, other: &Self) -> bool {
        self.0.normalized == other.0.normalized
    }
}
impl Eq for Dn {}
impl Hash for Dn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.normalized.hash(state);
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}
impl fmt::Debug for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dn({self})")
    }
}

impl std::str::FromStr for Dn {
    type Err = DnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Dn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> serde::Deserialize<'de> for Dn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dn::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Whether `v` needs no escaping (the common case).
fn plain(v: &str) -> bool {
    let bytes = v.as_bytes();
    !matches!(bytes.first(), Some(b' ' | b'#'))
        && bytes.last() != Some(&b' ')
        && !bytes.iter().any(|b| {
            matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' | b'=')
                || b.is_ascii_control()
        })
}

/// Appends `v` escaped as RFC 4514 wants it.
fn push_escaped(out: &mut String, v: &str) {
    if plain(v) {
        out.push_str(v);
        return;
    }
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        if c.is_ascii_control() {
            // AD's tombstone names hold a line feed (`CN=Jack\0ADEL:...`): keep DNs one line.
            out.push_str(&format!("\\{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
}

/// Parses the value starting at `*i` up to the next `,`, `+` or `;`, leaving `*i` there.
/// Unescaped trailing and then leading spaces are dropped; `start` is the RDN's offset.
fn parse_value<'s>(s: &'s str, i: &mut usize, start: usize) -> Result<Cow<'s, str>, DnError> {
    let bytes = s.as_bytes();
    let from = *i;
    let end = bytes
        .get(from..)
        .unwrap_or_default()
        .iter()
        .position(|b| matches!(b, b',' | b'+' | b';' | b'\\'))
        .map_or(bytes.len(), |n| from + n);
    if bytes.get(end) != Some(&b'\\') {
        // No escapes, the common case: the text itself.
        *i = end;
        let value = s.get(from..end).unwrap_or("");
        return Ok(Cow::Borrowed(
            value.trim_end_matches(' ').trim_start_matches(' '),
        ));
    }
    let mut raw: Vec<u8> = Vec::with_capacity(end - from + 8);
    let mut trailing_unescaped_spaces = 0usize;
    while let Some(&b) = bytes.get(*i) {
        match b {
            b',' | b'+' | b';' => break,
            b'\\' => {
                let at = *i;
                let next = bytes.get(at + 1).copied().ok_or(DnError::BadEscape(at))?;
                if next.is_ascii_hexdigit() {
                    let hex = s.get(at + 1..at + 3).ok_or(DnError::BadEscape(at))?;
                    let byte = u8::from_str_radix(hex, 16).map_err(|_| DnError::BadEscape(at))?;
                    raw.push(byte);
                    *i += 3;
                } else {
                    raw.push(next);
                    *i += 2;
                }
                trailing_unescaped_spaces = 0;
            }
            b' ' => {
                raw.push(b);
                trailing_unescaped_spaces += 1;
                *i += 1;
            }
            _ => {
                raw.push(b);
                trailing_unescaped_spaces = 0;
                *i += 1;
            }
        }
    }
    raw.truncate(raw.len() - trailing_unescaped_spaces);
    let leading = raw.iter().take_while(|b| **b == b' ').count();
    raw.drain(..leading);
    String::from_utf8(raw)
        .map(Cow::Owned)
        .map_err(|_| DnError::NotUtf8(start))
}

/// Parses `s`, handing each RDN's first pair and further pairs to `rdn`, in order.
fn parse_rdns<'s>(s: &'s str, mut rdn: impl FnMut(&Pair<'s>, &[Pair<'s>])) -> Result<(), DnError> {
    let bytes = s.as_bytes();
    if s.trim().is_empty() {
        return Ok(());
    }
    let mut first: Option<Pair<'s>> = None;
    let mut more = Vec::new();
    let mut i = 0;
    loop {
        // attribute type
        let start = i;
        while i < bytes.len() && bytes.get(i) != Some(&b'=') {
            if matches!(bytes.get(i), Some(b',') | Some(b'+')) {
                return Err(DnError::MissingEquals(start));
            }
            i += 1;
        }
        if i >= bytes.len() {
            return Err(DnError::MissingEquals(start));
        }
        let attr = s.get(start..i).unwrap_or("").trim();
        if attr.is_empty() {
            return Err(DnError::EmptyRdn(start));
        }
        i += 1; // '='
        let value = parse_value(s, &mut i, start)?;
        match &first {
            Some(_) => more.push((attr, value)),
            None => first = Some((attr, value)),
        }
        if bytes.get(i) == Some(&b'+') {
            i += 1;
            continue;
        }
        if let Some(first) = first.take() {
            rdn(&first, &more);
        }
        more.clear();
        match bytes.get(i) {
            Some(b',') | Some(b';') => {
                i += 1;
                while bytes.get(i) == Some(&b' ') {
                    i += 1;
                }
                if i >= bytes.len() {
                    return Err(DnError::EmptyRdn(i));
                }
            }
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compares_case_insensitively() {
        let a = Dn::parse("CN=Jack Smith,OU=Staff,DC=lab,DC=idbridge,DC=test").unwrap();
        let b = Dn::parse("cn=jack smith, ou=STAFF,dc=LAB,dc=idbridge,dc=test").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rdn().unwrap().value(), "Jack Smith");
        assert_eq!(
            a.parent().unwrap().to_string(),
            "OU=Staff,DC=lab,DC=idbridge,DC=test"
        );
    }

    #[test]
    fn escapes_round_trip() {
        let dn = Dn::parse(r"CN=Smith\, Jack\2B,OU=Staff,DC=lab").unwrap();
        assert_eq!(dn.rdn().unwrap().value(), "Smith, Jack+");
        assert_eq!(dn.to_string(), r"CN=Smith\, Jack\+,OU=Staff,DC=lab");
        assert_eq!(Dn::parse(&dn.to_string()).unwrap(), dn);
        let tombstone = Dn::parse(r"CN=Jack\0ADEL:0102,CN=Deleted Objects,DC=lab").unwrap();
        assert_eq!(
            tombstone.to_string(),
            r"CN=Jack\0ADEL:0102,CN=Deleted Objects,DC=lab"
        );
        assert_eq!(Dn::parse(&tombstone.to_string()).unwrap(), tombstone);
    }

    #[test]
    fn within() {
        let base = Dn::parse("OU=Staff,DC=lab").unwrap();
        assert!(Dn::parse("CN=x,OU=staff,DC=LAB").unwrap().is_within(&base));
        assert!(!Dn::parse("CN=x,OU=Other,DC=lab").unwrap().is_within(&base));
        assert!(base.is_within(&base));
    }

    #[test]
    fn normalized_form_is_stable() {
        // Pinned from the first implementation: stored keys and link indexes depend on it.
        for (dn, normalized) in [
            (
                r"CN=Jack Smith,OU=Staff,DC=lab",
                r"cn=jack smith,ou=staff,dc=lab",
            ),
            (
                "cn=ÄRGER Σ ΟΔΟΣ,OU=Ünits,DC=lab",
                "cn=ärger σ οδος,ou=ünits,dc=lab",
            ),
            (r"CN=b+SN=a,OU=x\,y,DC=lab", r"cn=b+sn=a,ou=x\,y,dc=lab"),
            (
                r"CN=\#hash\ ,OU=a\\b\+c,DC=lab",
                r"cn=\#hash\ ,ou=a\\b\+c,dc=lab",
            ),
            (
                r"CN=Jack\0ADEL:0102,CN=Deleted Objects,DC=lab",
                r"cn=jack\0Adel:0102,cn=deleted objects,dc=lab",
            ),
            (r"UID=Z+cn=Y+Cn=x,dc=LAB", r"cn=x+cn=y+uid=z,dc=lab"),
            ("CN=İstanbul,DC=x", "cn=i\u{307}stanbul,dc=x"),
        ] {
            let parsed = Dn::parse(dn).unwrap();
            assert_eq!(parsed.normalized(), normalized, "{dn}");
            assert_eq!(parsed.to_string(), dn);
        }
    }

    #[test]
    fn values_drop_unescaped_outer_spaces() {
        // Pinned from the first implementation, escaped or not.
        for (dn, value, normalized) in [
            ("CN=  Jack  ,OU=x", "Jack", "cn=jack,ou=x"),
            (r"CN=\ Jack\ ,DC=x", "Jack ", r"cn=jack\ ,dc=x"),
            (r"CN=\20Jack\20 ,DC=x", "Jack ", r"cn=jack\ ,dc=x"),
            ("CN=   ,DC=x", "", "cn=,dc=x"),
            (" CN = a ; OU = b ", "a", "cn=a,ou=b"),
            (r"CN=\4a\C3\A4ck,DC=x", "Jäck", "cn=jäck,dc=x"),
        ] {
            let parsed = Dn::parse(dn).unwrap();
            assert_eq!(parsed.rdn().unwrap().value(), value, "{dn}");
            assert_eq!(parsed.normalized(), normalized, "{dn}");
        }
    }

    #[test]
    fn extended_form() {
        let (dn, guid, sid) = Dn::parse_extended(
            "<GUID=b6a6e7c8-2a5b-4c5e-9a0b-1f2e3d4c5b6a>;<SID=S-1-5-21-1-2-3-1104>;CN=Jack,OU=Staff,DC=lab",
        )
        .unwrap();
        assert_eq!(dn.to_string(), "CN=Jack,OU=Staff,DC=lab");
        assert_eq!(
            guid.unwrap().to_string(),
            "b6a6e7c8-2a5b-4c5e-9a0b-1f2e3d4c5b6a"
        );
        assert_eq!(sid.unwrap().to_string(), "S-1-5-21-1-2-3-1104");
    }

    #[test]
    fn errors_name_position() {
        assert_eq!(
            Dn::parse("CN=a,,DC=b").unwrap_err(),
            DnError::MissingEquals(5)
        );
        assert!(matches!(Dn::parse("CN=a\\"), Err(DnError::BadEscape(4))));
        assert!(matches!(Dn::parse("CN=\\ff\\fe"), Err(DnError::NotUtf8(_))));
    }

    proptest! {
        #[test]
        fn display_parses_back(values in proptest::collection::vec("[ -~é日]{1,12}", 1..5)) {
            let mut dn = Dn::root();
            for v in values.iter().rev() {
                let v = v.trim();
                prop_assume!(!v.is_empty());
                dn = dn.child("CN", v);
            }
            let again = Dn::parse(&dn.to_string()).unwrap();
            prop_assert_eq!(again, dn);
        }

        #[test]
        fn within_compares_the_last_rdns(
            dn in proptest::collection::vec("[aA,+\\\\é]{1,3}", 0..5),
            ancestor in proptest::collection::vec("[aA,+\\\\é]{1,3}", 0..3),
        ) {
            let build = |values: &[String]| {
                values.iter().rev().fold(Dn::root(), |dn, v| dn.child("CN", v))
            };
            let (dn, ancestor) = (build(&dn), build(&ancestor));
            // Reference: RDN by RDN from the end, each compared as a DN of its own.
            let one = |rdn: &Rdn| Dn::from_rdns(vec![rdn.clone()]);
            let expected = dn.rdns().len() >= ancestor.rdns().len()
                && dn
                    .rdns()
                    .iter()
                    .rev()
                    .zip(ancestor.rdns().iter().rev())
                    .all(|(a, b)| one(a) == one(b));
            prop_assert_eq!(dn.is_within(&ancestor), expected);
            prop_assert!(dn.is_within(&dn));
        }

        #[test]
        fn rdns_parse_back_from_the_display_form(
            rdns in proptest::collection::vec(
                (
                    "(CN|ou| dc )",
                    r#"([ a#é="<>]|\\[ ,+;#\\]|\\0A|\\41){0,5}"#,
                    proptest::bool::ANY,
                ),
                1..4,
            ),
        ) {
            let text: String = rdns
                .iter()
                .enumerate()
                .map(|(i, (t, v, multi))| {
                    let sep = if i == 0 { "" } else if *multi { "+" } else { "," };
                    format!("{sep}{t}={v}")
                })
                .collect();
            if let Ok(dn) = Dn::parse(&text) {
                let mut direct = Vec::new();
                parse_rdns(&text, |first, more| direct.push(Rdn::parsed(first, more))).unwrap();
                prop_assert_eq!(format!("{:?}", dn.rdns()), format!("{direct:?}"));
                prop_assert_eq!(Dn::parse(&dn.to_string()).unwrap(), dn);
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = Dn::parse(&s);
            let _ = Dn::parse_extended(&s);
        }
    }
}
