use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

/// An LDAP/SCIM attribute name. Comparison and hashing ignore ASCII case, as both protocols do;
/// the spelling it was created with is kept for display.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct AttrName(String);

impl AttrName {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key used wherever names are stored for lookup.
    pub fn folded(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl PartialEq for AttrName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for AttrName {}

impl PartialEq<str> for AttrName {
    fn eq(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

impl Hash for AttrName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl PartialOrd for AttrName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for AttrName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let a = self.0.bytes().map(|b| b.to_ascii_lowercase());
        let b = other.0.bytes().map(|b| b.to_ascii_lowercase());
        a.cmp(b)
    }
}

impl fmt::Debug for AttrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}
impl fmt::Display for AttrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl From<&str> for AttrName {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}
impl Borrow<String> for AttrName {
    fn borrow(&self) -> &String {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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
}
