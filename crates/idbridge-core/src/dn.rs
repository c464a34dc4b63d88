use std::fmt;
use std::hash::{Hash, Hasher};

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
    pub pairs: Vec<(AttrName, String)>,
}

impl Rdn {
    /// The value of the first pair: `Jack` for `CN=Jack`.
    pub fn value(&self) -> &str {
        self.pairs.first().map(|(_, v)| v.as_str()).unwrap_or("")
    }

    fn normalized(&self) -> String {
        let mut parts: Vec<String> = self
            .pairs
            .iter()
            .map(|(t, v)| format!("{}={}", t.folded(), escape_value(&v.to_lowercase())))
            .collect();
        parts.sort();
        parts.join("+")
    }
}

impl fmt::Display for Rdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (t, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            write!(f, "{t}={}", escape_value(v))?;
        }
        Ok(())
    }
}

/// A distinguished name (RFC 4514). Equality and hashing follow AD: attribute types and values
/// compare case-insensitively, and escaping differences do not matter.
#[derive(Clone)]
pub struct Dn {
    rdns: Vec<Rdn>,
    normalized: String,
}

impl Dn {
    pub fn parse(s: &str) -> Result<Self, DnError> {
        let rdns = parse_rdns(s)?;
        Ok(Self::from_rdns(rdns))
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
        let normalized = rdns
            .iter()
            .map(Rdn::normalized)
            .collect::<Vec<_>>()
            .join(",");
        Self { rdns, normalized }
    }

    pub fn root() -> Self {
        Self::from_rdns(Vec::new())
    }

    pub fn rdns(&self) -> &[Rdn] {
        &self.rdns
    }

    pub fn rdn(&self) -> Option<&Rdn> {
        self.rdns.first()
    }

    pub fn parent(&self) -> Option<Dn> {
        if self.rdns.is_empty() {
            return None;
        }
        Some(Self::from_rdns(
            self.rdns.get(1..).unwrap_or_default().to_vec(),
        ))
    }

    /// A new DN one level below this one.
    pub fn child(&self, attr: &str, value: &str) -> Dn {
        let mut rdns = Vec::with_capacity(self.rdns.len() + 1);
        rdns.push(Rdn {
            pairs: vec![(AttrName::from(attr), value.to_string())],
        });
        rdns.extend(self.rdns.iter().cloned());
        Self::from_rdns(rdns)
    }

    /// True when `self` equals `ancestor` or lies beneath it.
    pub fn is_within(&self, ancestor: &Dn) -> bool {
        let n = ancestor.rdns.len();
        if self.rdns.len() < n {
            return false;
        }
        let tail = self.rdns.get(self.rdns.len() - n..).unwrap_or_default();
        tail.iter()
            .zip(&ancestor.rdns)
            .all(|(a, b)| a.normalized() == b.normalized())
    }

    /// The comparison key: lower-cased types and values, canonical escaping.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

impl PartialEq for Dn {
    fn eq(&self, other: &Self) -> bool {
        self.normalized == other.normalized
    }
}
impl Eq for Dn {}
impl Hash for Dn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.normalized.hash(state);
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{rdn}")?;
        }
        Ok(())
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

fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
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
    out
}

fn parse_rdns(s: &str) -> Result<Vec<Rdn>, DnError> {
    let bytes = s.as_bytes();
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut rdns = Vec::new();
    let mut pairs = Vec::new();
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
                // value, with escapes
        let mut raw: Vec<u8> = Vec::new();
        let mut trailing_unescaped_spaces = 0usize;
        while let Some(&b) = bytes.get(i) {
            match b {
                b',' | b'+' | b';' => break,
                b'\\' => {
                    let next = bytes.get(i + 1).copied().ok_or(DnError::BadEscape(i))?;
                    if next.is_ascii_hexdigit() {
                        let hex = s.get(i + 1..i + 3).ok_or(DnError::BadEscape(i))?;
                        let byte =
                            u8::from_str_radix(hex, 16).map_err(|_| DnError::BadEscape(i))?;
                        raw.push(byte);
                        i += 3;
                    } else {
                        raw.push(next);
                        i += 2;
                    }
                    trailing_unescaped_spaces = 0;
                }
                b' ' => {
                    raw.push(b);
                    trailing_unescaped_spaces += 1;
                    i += 1;
                }
                _ => {
                    raw.push(b);
                    trailing_unescaped_spaces = 0;
                    i += 1;
                }
            }
        }
        raw.truncate(raw.len() - trailing_unescaped_spaces);
        let leading = raw.iter().take_while(|b| **b == b' ').count();
        let value =
            String::from_utf8(raw.split_off(leading)).map_err(|_| DnError::NotUtf8(start))?;
        pairs.push((AttrName::from(attr), value));
        match bytes.get(i) {
            Some(b'+') => {
                i += 1;
            }
            Some(b',') | Some(b';') => {
                rdns.push(Rdn {
                    pairs: std::mem::take(&mut pairs),
                });
                i += 1;
                while bytes.get(i) == Some(&b' ') {
                    i += 1;
                }
                if i >= bytes.len() {
                    return Err(DnError::EmptyRdn(i));
                }
            }
            _ => {
                rdns.push(Rdn { pairs });
                return Ok(rdns);
            }
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
        fn never_panics(s in "\\PC{0,40}") {
            let _ = Dn::parse(&s);
            let _ = Dn::parse_extended(&s);
        }
    }
}
