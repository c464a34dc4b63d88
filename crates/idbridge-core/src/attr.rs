use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};

/// An LDAP/SCIM attribute name. Comparison and hashing ignore ASCII case, as both protocols do;
/// the spelling it was created with is kept for display. Names from the catalogs are borrowed,
/// so the rule engine copies them into every object's attribute map without allocating.
#[derive(Clone)]
pub struct AttrName {
    name: Cow<'static, str>,
    /// The first eight folded bytes, big-endian, zero-padded: most comparisons of two names
    /// (every step of a lookup in an object's attribute map) are decided by this alone.
    prefix: u64,
}

impl AttrName {
    pub fn new(name: impl Into<String>) -> Self {
        let name: String = name.into();
        Self {
            prefix: folded_prefix(&name),
            name: Cow::Owned(name),
        }
    }

    /// A name spelled by the program itself (a catalog entry, a constant).
    pub const fn from_static(name: &'static str) -> Self {
        Self {
            prefix: folded_prefix(name),
            name: Cow::Borrowed(name),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }
}

const fn folded_prefix(name: &str) -> u64 {
    let mut prefix = 0u64;
    let mut rest = name.as_bytes();
    let mut n = 0;
    while n < 8 {
        prefix <<= 8;
        if let [first, tail @ ..] = rest {
            prefix |= first.to_ascii_lowercase() as u64;
            rest = tail;
        }
        n += 1;
    }
    prefix
}

impl serde::Serialize for AttrName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}
impl<'de> serde::Deserialize<'de> for AttrName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

impl PartialEq for AttrName {
    fn eq(&self, other: &Self) -> bool {
        self.prefix == other.prefix && self.name.eq_ignore_ascii_case(&other.name)
    }
}
impl Eq for AttrName {}

impl PartialEq<str> for AttrName {
    fn eq(&self, other: &str) -> bool {
        self.name.eq_ignore_ascii_case(other)
    }
}

impl Hash for AttrName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Folded in fixed-size chunks: equal names feed the hasher identical calls, without
        // one call per byte or an allocation.
        let mut folded = [0u8; 32];
        for chunk in self.name.as_bytes().chunks(folded.len()) {
            for (f, b) in folded.iter_mut().zip(chunk) {
                *f = b.to_ascii_lowercase();
            }
            state.write(folded.get(..chunk.len()).unwrap_or_default());
        }
        state.write_u8(0xff);
    }
}

impl PartialOrd for AttrName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for AttrName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Lexicographic over the folded bytes: the prefixes order names that differ in their
        // first eight bytes (padding sorts a shorter name first). Otherwise compare it all:
        // SCIM paths share long prefixes (`urn:ietf:params:scim:...`), so skip what is equal
        // as spelled eight bytes at a time, and fold only bytes that differ.
        if self.prefix != other.prefix {
            return self.prefix.cmp(&other.prefix);
        }
        let (a, b) = (self.name.as_bytes(), other.name.as_bytes());
        let mut i = 0;
        while let (Some(x), Some(y)) = (a.get(i..i + 8), b.get(i..i + 8)) {
            if x != y {
                break;
            }
            i += 8;
        }
        let (a, b) = (
            a.get(i..).unwrap_or_default(),
            b.get(i..).unwrap_or_default(),
        );
        for (x, y) in a.iter().zip(b) {
            if x != y {
                let (x, y) = (x.to_ascii_lowercase(), y.to_ascii_lowercase());
                if x != y {
                    return x.cmp(&y);
                }
            }
        }
        a.len().cmp(&b.len())
    }
}

impl fmt::Debug for AttrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.name, f)
    }
}
impl fmt::Display for AttrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
impl From<&str> for AttrName {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn case_insensitive_identity() {
        let mut set = HashSet::new();
        set.insert(AttrName::from("displayName"));
        assert!(set.contains(&AttrName::from("DISPLAYNAME")));
        assert_eq!(
            AttrName::from("sAMAccountName").to_string(),
            "sAMAccountName"
        );
        let (a, b) = (AttrName::from("a"), AttrName::from("B"));
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Less);
    }

    proptest::proptest! {
        #[test]
        fn order_and_hash_follow_the_folded_name(
            prefix in "[a-zA-Z:.]{0,10}",
            a in "[a-cA-C\\[\\]_é\\x00]{0,12}",
            b in "[a-cA-C\\[\\]_é\\x00]{0,12}",
        ) {
            let (x, y) = (format!("{prefix}{a}"), format!("{prefix}{b}"));
            let folded = x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase());
            let (x, y) = (AttrName::new(x), AttrName::new(y));
            proptest::prop_assert_eq!(x.cmp(&y), folded);
            proptest::prop_assert_eq!(x == y, folded.is_eq());
            let upper = AttrName::new(x.as_str().to_ascii_uppercase());
            let state = std::collections::hash_map::RandomState::new();
            proptest::prop_assert_eq!(state.hash_one(&x), state.hash_one(&upper));
        }
    }
}
