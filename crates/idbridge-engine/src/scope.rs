//! Which directory objects are in sync scope: OU include/exclude lists, an optional pilot group,
//! and an optional LDAP filter (RFC 4515, with AD's bitwise matching rules).

use idbridge_core::{AttrName, Dn};

/// `LDAP_MATCHING_RULE_BIT_AND`: true when all bits of the assertion are set.
const BIT_AND: &str = "1.2.840.113556.1.4.803";
/// `LDAP_MATCHING_RULE_BIT_OR`: true when any bit of the assertion is set.
const BIT_OR: &str = "1.2.840.113556.1.4.804";
/// Filters deeper than this are refused when parsed, so evaluation cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

/// An object's attribute values as the directory returned them (text attributes as UTF-8 bytes).
pub trait AttributeValues {
    fn values(&self, name: &AttrName) -> Vec<&[u8]>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LDAP filter at position {position}: {message}")]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

/// A parsed LDAP search filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LdapFilter {
    And(Vec<LdapFilter>),
    Or(Vec<LdapFilter>),
    Not(Box<LdapFilter>),
    Equal(AttrName, Vec<u8>),
    Present(AttrName),
    Substring {
        attr: AttrName,
        initial: Option<Vec<u8>>,
        any: Vec<Vec<u8>>,
        last: Option<Vec<u8>>,
    },
    GreaterOrEqual(AttrName, Vec<u8>),
    LessOrEqual(AttrName, Vec<u8>),
    BitAnd(AttrName, u64),
    BitOr(AttrName, u64),
}

impl LdapFilter {
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let mut parser = Parser {
            s: text.as_bytes(),
            pos: 0,
        };
        let filter = parser.filter(0)?;
        if parser.pos != text.len() {
            return Err(parser.error("unexpected text after the filter"));
        }
        Ok(filter)
    }

    pub fn matches(&self, object: &impl AttributeValues) -> bool {
        match self {
            Self::And(all) => all.iter().all(|f| f.matches(object)),
            Self::Or(any) => any.iter().any(|f| f.matches(object)),
            Self::Not(f) => !f.matches(object),
            Self::Present(attr) => !object.values(attr).is_empty(),
            Self::Equal(attr, want) => object
                .values(attr)
                .iter()
                .any(|v| v.eq_ignore_ascii_case(want)),
            Self::Substring {
                attr,
                initial,
                any,
                last,
            } => object
                .values(attr)
                .iter()
                .any(|v| substring_match(&v.to_ascii_lowercase(), initial, any, last)),
            Self::GreaterOrEqual(attr, bound) => object
                .values(attr)
                .iter()
                .any(|v| compare(v, bound).is_ge()),
            Self::LessOrEqual(attr, bound) => object
                .values(attr)
                .iter()
                .any(|v| compare(v, bound).is_le()),
            Self::BitAnd(attr, mask) => object
                .values(attr)
                .iter()
                .filter_map(|v| as_bits(v))
                .any(|n| n & mask == *mask),
            Self::BitOr(attr, mask) => object
                .values(attr)
                .iter()
                .filter_map(|v| as_bits(v))
                .any(|n| n & mask != 0),
        }
    }
}

/// Integers compare numerically (AD's INTEGER syntax), everything else case-insensitively.
fn compare(value: &[u8], bound: &[u8]) -> std::cmp::Ordering {
    match (as_integer(value), as_integer(bound)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => value.to_ascii_lowercase().cmp(&bound.to_ascii_lowercase()),
    }
}

fn as_integer(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// AD stores flags as signed 32-bit integers; bit tests work on their two's-complement bits.
fn as_bits(v: &[u8]) -> Option<u64> {
    let n = as_integer(v)?;
    Some(if n < 0 { u64::from(n as u32) } else { n as u64 })
}

fn substring_match(
    value: &[u8],
    initial: &Option<Vec<u8>>,
    any: &[Vec<u8>],
    last: &Option<Vec<u8>>,
) -> bool {
    let mut rest = value;
    if let Some(prefix) = initial {
        match rest.strip_prefix(prefix.as_slice()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    for part in any {
        match find(rest, part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    last.as_ref().is_none_or(|suffix| rest.ends_with(suffix))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> FilterError {
        FilterError {
            position: self.pos,
            message: message.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), FilterError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", byte as char)))
        }
    }

    fn filter(&mut self, depth: usize) -> Result<LdapFilter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.error("filter nested too deeply"));
        }
        self.expect(b'(')?;
        let filter = match self.peek() {
            Some(b'&') => {
                self.pos += 1;
                LdapFilter::And(self.list(depth)?)
            }
            Some(b'|') => {
                self.pos += 1;
                LdapFilter::Or(self.list(depth)?)
            }
            Some(b'!') => {
                self.pos += 1;
                LdapFilter::Not(Box::new(self.filter(depth + 1)?))
            }
            _ => self.item()?,
        };
        self.expect(b')')?;
        Ok(filter)
    }

    fn list(&mut self, depth: usize) -> Result<Vec<LdapFilter>, FilterError> {
        let mut items = Vec::new();
        while self.peek() == Some(b'(') {
            items.push(self.filter(depth + 1)?);
        }
        if items.is_empty() {
            return Err(self.error("expected at least one '(' filter in the list"));
        }
        Ok(items)
    }

    fn item(&mut self) -> Result<LdapFilter, FilterError> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b';')
        {
            self.pos += 1;
        }
        let attr = std::str::from_utf8(self.s.get(start..self.pos).unwrap_or_default())
            .map_err(|_| self.error("attribute name is not ASCII"))?;
        if attr.is_empty() {
            return Err(self.error("expected an attribute name"));
        }
        let attr = AttrName::from(attr);
        if self.peek() == Some(b':') {
            return self.extensible(attr);
        }
        let op = match (self.peek(), self.s.get(self.pos + 1).copied()) {
            (Some(b'='), _) => {
                self.pos += 1;
                b'='
            }
            (Some(c @ (b'>' | b'<' | b'~')), Some(b'=')) => {
                self.pos += 2;
                c
            }
            _ => return Err(self.error("expected '=', '>=', '<=' or '~='")),
        };
        let (parts, stars) = self.value_parts()?;
        match op {
            b'=' if stars == 1 && parts.iter().all(Vec::is_empty) => Ok(LdapFilter::Present(attr)),
            b'=' if stars > 0 => Ok(substring(attr, parts)),
            b'=' | b'~' => Ok(LdapFilter::Equal(attr, parts.concat())),
            _ if stars > 0 => Err(self.error("'*' is not allowed in an ordering match")),
            b'>' => Ok(LdapFilter::GreaterOrEqual(attr, parts.concat())),
            _ => Ok(LdapFilter::LessOrEqual(attr, parts.concat())),
        }
    }

    /// `attr:1.2.840.113556.1.4.803:=2`, the only extensible matches AD admins write in scoping.
    fn extensible(&mut self, attr: AttrName) -> Result<LdapFilter, FilterError> {
        self.expect(b':')?;
        let start = self.pos;
        while matches!(self.peek(), Some(c) if c.is_ascii_digit() || c == b'.') {
            self.pos += 1;
        }
        let rule =
            std::str::from_utf8(self.s.get(start..self.pos).unwrap_or_default()).unwrap_or("");
        let rule_pos = start;
        self.expect(b':')?;
        self.expect(b'=')?;
        let (parts, stars) = self.value_parts()?;
        let value = String::from_utf8(parts.concat()).unwrap_or_default();
        let mask: u64 = match (stars, value.trim().parse()) {
            (0, Ok(mask)) => mask,
            _ => return Err(self.error("a bitwise match needs a non-negative integer")),
        };
        match rule {
            BIT_AND => Ok(LdapFilter::BitAnd(attr, mask)),
            BIT_OR => Ok(LdapFilter::BitOr(attr, mask)),
            _ => Err(FilterError {
                position: rule_pos,
                message: format!(
                    "unsupported matching rule {rule:?} (supported: {BIT_AND}, {BIT_OR})"
                ),
            }),
        }
    }

    /// The assertion value up to ')', split at unescaped '*', with `\XX` escapes decoded.
    fn value_parts(&mut self) -> Result<(Vec<Vec<u8>>, usize), FilterError> {
        let mut parts = vec![Vec::new()];
        let mut stars = 0;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated filter: expected ')'")),
                Some(b')') => return Ok((parts, stars)),
                Some(b'(') => return Err(self.error("'(' must be escaped as \\28 in a value")),
                Some(b'*') => {
                    stars += 1;
                    parts.push(Vec::new());
                    self.pos += 1;
                }
                Some(b'\\') => {
                    let hex = self
                        .s
                        .get(self.pos + 1..self.pos + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| self.error("'\\' must be followed by two hex digits"))?;
                    if let Some(last) = parts.last_mut() {
                        last.push(hex);
                    }
                    self.pos += 3;
                }
                Some(c) => {
                    if let Some(last) = parts.last_mut() {
                        last.push(c);
                    }
                    self.pos += 1;
                }
            }
        }
    }
}

fn substring(attr: AttrName, mut parts: Vec<Vec<u8>>) -> LdapFilter {
    let lower = |v: Vec<u8>| v.to_ascii_lowercase();
    let last = parts.pop().filter(|p| !p.is_empty()).map(lower);
    let mut parts = parts.into_iter();
    let initial = parts.next().filter(|p| !p.is_empty()).map(lower);
    let any = parts.filter(|p| !p.is_empty()).map(lower).collect();
    LdapFilter::Substring {
        attr,
        initial,
        any,
        last,
    }
}

/// OU include/exclude lists: an object is in scope when it lies under an included container (or
/// the list is empty) and under no excluded one.
#[derive(Debug, Clone, Default)]
pub struct OuScope {
    pub include: Vec<Dn>,
    pub exclude: Vec<Dn>,
}

impl OuScope {
    pub fn contains(&self, dn: &Dn) -> bool {
        (self.include.is_empty() || self.include.iter().any(|ou| dn.is_within(ou)))
            && !self.exclude.iter().any(|ou| dn.is_within(ou))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    struct Obj(HashMap<AttrName, Vec<Vec<u8>>>);

    impl AttributeValues for Obj {
        fn values(&self, name: &AttrName) -> Vec<&[u8]> {
            self.0
                .get(name)
                .map(|v| v.iter().map(Vec::as_slice).collect())
                .unwrap_or_default()
        }
    }

    fn jack() -> Obj {
        let mut m = HashMap::new();
        for (k, v) in [
            ("objectClass", vec!["top", "person", "user"]),
            ("sAMAccountName", vec!["jack"]),
            ("department", vec!["Support"]),
            ("userAccountControl", vec!["514"]),
            ("displayName", vec!["Jack (Contractor) Smith"]),
            ("employeeID", vec!["E1003"]),
        ] {
            m.insert(
                AttrName::from(k),
                v.into_iter().map(|s| s.as_bytes().to_vec()).collect(),
            );
        }
        Obj(m)
    }

    fn eval(filter: &str) -> bool {
        LdapFilter::parse(filter).unwrap().matches(&jack())
    }

    #[test]
    fn evaluates_the_filters_admins_write() {
        assert!(eval("(objectClass=user)"));
        assert!(eval("(OBJECTCLASS=USER)"));
        assert!(eval("(&(objectClass=user)(department=support))"));
        assert!(!eval("(&(objectClass=user)(department=Sales))"));
        assert!(eval("(|(department=Sales)(department=Support))"));
        assert!(!eval("(mail=*)"));
        assert!(eval("(sAMAccountName=j*)"));
        assert!(eval("(displayName=*\\28contractor\\29*)"));
        assert!(eval("(displayName=Jack*Contractor*Smith)"));
        assert!(!eval("(displayName=Jack*Smith*Contractor)"));
        assert!(eval("(userAccountControl>=512)"));
        assert!(!eval("(userAccountControl<=100)"));
        // 514 = NORMAL_ACCOUNT | ACCOUNTDISABLE
        assert!(eval("(userAccountControl:1.2.840.113556.1.4.803:=2)"));
        assert!(!eval("(!(userAccountControl:1.2.840.113556.1.4.803:=2))"));
        assert!(eval("(userAccountControl:1.2.840.113556.1.4.804:=3)"));
        assert!(!eval("(userAccountControl:1.2.840.113556.1.4.803:=3)"));
    }

    #[test]
    fn errors_name_the_position() {
        let err = LdapFilter::parse("(&(objectClass=user)(department=Sales)").unwrap_err();
        assert_eq!(err.position, 38);
        assert_eq!(
            LdapFilter::parse("(uac:1.2.3:=2)").unwrap_err().to_string(),
            "invalid LDAP filter at position 5: unsupported matching rule \"1.2.3\" \
             (supported: 1.2.840.113556.1.4.803, 1.2.840.113556.1.4.804)"
        );
        assert_eq!(LdapFilter::parse("(cn=a\\zz)").unwrap_err().position, 5);
        assert_eq!(LdapFilter::parse("(&)").unwrap_err().position, 2);
        assert_eq!(LdapFilter::parse("(cn=a)x").unwrap_err().position, 6);
        assert_eq!(LdapFilter::parse("(cn>=a*)").unwrap_err().position, 7);
        let deep = format!("{}(cn=a){}", "(!".repeat(40), ")".repeat(40));
        assert!(LdapFilter::parse(&deep)
            .unwrap_err()
            .message
            .contains("deeply"));
    }

    #[test]
    fn ou_scope_includes_and_excludes() {
        let scope = OuScope {
            include: vec![Dn::parse("OU=Staff,DC=lab").unwrap()],
            exclude: vec![Dn::parse("OU=Interns,OU=Staff,DC=lab").unwrap()],
        };
        assert!(scope.contains(&Dn::parse("CN=Jack,OU=Staff,DC=lab").unwrap()));
        assert!(!scope.contains(&Dn::parse("CN=Tim,OU=Interns,OU=Staff,DC=lab").unwrap()));
        assert!(!scope.contains(&Dn::parse("CN=Carl,OU=Contractors,DC=lab").unwrap()));
        assert!(OuScope::default().contains(&Dn::parse("CN=Carl,OU=Contractors,DC=lab").unwrap()));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "[()&|!=*<>~:\\\\a-z0-9.]{0,60}") {
            if let Ok(f) = LdapFilter::parse(&s) {
                let _ = f.matches(&jack());
            }
        }
    }
}
