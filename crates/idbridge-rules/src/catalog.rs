//! Attribute catalogs of the three object spaces. They drive load-time type checking and,
//! for AD, the coercion of LDAP's string values into typed values.

use idbridge_core::Dn;
use time::format_description::well_known::Iso8601;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::value::{Ty, Type, Value};

/// LDAP attribute syntax, reduced to what the rules need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    String,
    Int,
    Bool,
    Binary,
    DnRef,
    /// Generalized time (`20240131120000.0Z`).
    Time,
    /// A large integer holding a Windows FILETIME (`pwdLastSet`); use `DateFromNum`.
    FileTime,
}

impl Syntax {
    pub fn ty(self) -> Ty {
        match self {
            Syntax::String => Ty::Str,
            Syntax::Int | Syntax::FileTime => Ty::Int,
            Syntax::Bool => Ty::Bool,
            Syntax::Binary => Ty::Bytes,
            Syntax::DnRef => Ty::Ref,
            Syntax::Time => Ty::DateTime,
        }
    }

    /// Converts a value as delivered by a connector (LDAP hands out strings) into this
    /// syntax's typed value. Typed values of the right type pass through unchanged.
    pub(crate) fn coerce(self, v: &Value) -> Result<Value, String> {
        if v.ty() == self.ty() {
            return Ok(v.clone());
        }
        let Value::Str(s) = v else {
            return Err(format!(
                "expected {}, got a value of type {}",
                self.ty(),
                v.ty()
            ));
        };
        let bad = || format!("expected {}, got {s:?}", self.ty());
        match self {
            Syntax::String => Ok(Value::Str(s.clone())),
            Syntax::Int | Syntax::FileTime => s.trim().parse().map(Value::Int).map_err(|_| bad()),
            Syntax::Bool => match s.to_ascii_uppercase().as_str() {
                "TRUE" => Ok(Value::Bool(true)),
                "FALSE" => Ok(Value::Bool(false)),
                _ => Err(bad()),
            },
            Syntax::Binary => Err(bad()),
            Syntax::DnRef => Dn::parse(s)
                .map(Value::Ref)
                .map_err(|e| format!("{}: {e}", bad())),
            Syntax::Time => parse_generalized_time(s)
                .map(Value::DateTime)
                .ok_or_else(bad),
        }
    }
}

/// Parses LDAP generalized time as AD writes it: `YYYYMMDDHHMMSS[.f]Z`.
fn parse_generalized_time(s: &str) -> Option<OffsetDateTime> {
    let digits = s.get(..14)?;
    let rest = s.get(14..)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_ok = rest == "Z"
        || rest
            .strip_prefix('.')
            .and_then(|r| r.strip_suffix('Z'))
            .is_some_and(|f| f.bytes().all(|b| b.is_ascii_digit()));
    if !frac_ok {
        return None;
    }
    let iso = format!(
        "{}-{}-{}T{}:{}:{}",
        digits.get(0..4)?,
        digits.get(4..6)?,
        digits.get(6..8)?,
        digits.get(8..10)?,
        digits.get(10..12)?,
        digits.get(12..14)?
    );
    PrimitiveDateTime::parse(&iso, &Iso8601::DEFAULT)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// One attribute of a catalog.
#[derive(Clone, Copy, Debug)]
pub struct AttrDef {
    pub name: &'static str,
    pub syntax: Syntax,
    pub multi: bool,
}

impl AttrDef {
    pub fn ty(&self) -> Type {
        Type {
            ty: self.syntax.ty(),
            multi: self.multi,
        }
    }
}

const fn one(name: &'static str, syntax: Syntax) -> AttrDef {
    AttrDef {
        name,
        syntax,
        multi: false,
    }
}
const fn many(name: &'static str, syntax: Syntax) -> AttrDef {
    AttrDef {
        name,
        syntax,
        multi: true,
    }
}

use Syntax::{Binary, Bool, DnRef, FileTime, Int, String as Text, Time};

/// Active Directory attributes (LDAP display names) usable in inbound rules.
pub const AD: &[AttrDef] = &[
    one("accountExpires", FileTime),
    one("adminCount", Int),
    one("c", Text),
    one("cn", Text),
    one("co", Text),
    one("company", Text),
    one("department", Text),
    one("description", Text),
    one("displayName", Text),
    one("distinguishedName", DnRef),
    one("employeeID", Text),
    one("employeeNumber", Text),
    one("employeeType", Text),
    one("extensionAttribute1", Text),
    one("extensionAttribute10", Text),
    one("extensionAttribute11", Text),
    one("extensionAttribute12", Text),
    one("extensionAttribute13", Text),
    one("extensionAttribute14", Text),
    one("extensionAttribute15", Text),
    one("extensionAttribute2", Text),
    one("extensionAttribute3", Text),
    one("extensionAttribute4", Text),
    one("extensionAttribute5", Text),
    one("extensionAttribute6", Text),
    one("extensionAttribute7", Text),
    one("extensionAttribute8", Text),
    one("extensionAttribute9", Text),
    one("facsimileTelephoneNumber", Text),
    one("givenName", Text),
    one("groupType", Int),
    one("homePhone", Text),
    one("info", Text),
    one("initials", Text),
    one("ipPhone", Text),
    one("isCriticalSystemObject", Bool),
    one("l", Text),
    one("lastLogonTimestamp", FileTime),
    one("mail", Text),
    one("mailNickname", Text),
    one("manager", DnRef),
    many("member", DnRef),
    many("memberOf", DnRef),
    one("mobile", Text),
    one("mS-DS-ConsistencyGuid", Binary),
    one("msExchHideFromAddressLists", Bool),
    one("name", Text),
    many("objectClass", Text),
    one("objectGUID", Binary),
    one("objectSid", Binary),
    many("otherMobile", Text),
    many("otherTelephone", Text),
    one("pager", Text),
    one("physicalDeliveryOfficeName", Text),
    one("postalCode", Text),
    many("proxyAddresses", Text),
    one("pwdLastSet", FileTime),
    one("sAMAccountName", Text),
    one("sn", Text),
    one("st", Text),
    one("streetAddress", Text),
    one("targetAddress", Text),
    one("telephoneNumber", Text),
    one("thumbnailPhoto", Binary),
    one("title", Text),
    one("userAccountControl", Int),
    many("userCertificate", Binary),
    one("userPrincipalName", Text),
    one("whenChanged", Time),
    one("whenCreated", Time),
    one("wWWHomePage", Text),
];

/// Metaverse attributes: targets of inbound rules, sources of outbound rules.
pub const METAVERSE: &[AttrDef] = &[
    one("accountEnabled", Bool),
    one("city", Text),
    one("company", Text),
    one("country", Text),
    one("department", Text),
    one("description", Text),
    one("displayName", Text),
    one("employeeId", Text),
    one("givenName", Text),
    one("mail", Text),
    one("mailNickname", Text),
    one("manager", DnRef),
    many("member", DnRef),
    one("mobile", Text),
    one("onPremisesDistinguishedName", Text),
    one("onPremisesSamAccountName", Text),
    one("onPremisesSecurityIdentifier", Text),
    one("physicalDeliveryOfficeName", Text),
    one("postalCode", Text),
    many("proxyAddresses", Text),
    one("sn", Text),
    one("sourceAnchor", Text),
    one("state", Text),
    one("streetAddress", Text),
    one("telephoneNumber", Text),
    one("title", Text),
    one("userPrincipalName", Text),
];

/// Cloud (SCIM) attribute paths: targets of outbound rules.
pub const CLOUD: &[AttrDef] = &[
    one("active", Bool),
    one("companyName", Text),
    one("department", Text),
    one("displayName", Text),
    one("emails[type eq \"work\"].value", Text),
    one("externalId", Text),
    many("members", DnRef),
    one("name.familyName", Text),
    one("name.givenName", Text),
    one("phoneNumbers[type eq \"mobile\"].value", Text),
    one("phoneNumbers[type eq \"work\"].value", Text),
    one("title", Text),
    one(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:Contact:immutableId",
        Text,
    ),
    one(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:Contact:onPremisesDistinguishedName",
        Text,
    ),
    many(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:Contact:proxyAddresses",
        Text,
    ),
    one(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:Group:description",
        Text,
    ),
    one(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:Group:immutableId",
        Text,
    ),
    one(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:Group:mail",
        Text,
    ),
    one(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:Group:onPremisesDistinguishedName",
        Text,
    ),
    one(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:Group:onPremisesSamAccountName",
        Text,
    ),
    one(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:User:immutableId",
        Text,
    ),
    one(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:User:onPremisesDistinguishedName",
        Text,
    ),
    one(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:User:onPremisesSamAccountName",
        Text,
    ),
    many(
        "urn:idbridge:params:scim:schemas:extension:sync:2.0:User:proxyAddresses",
        Text,
    ),
    one(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        Text,
    ),
    one(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        Text,
    ),
    one(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        DnRef,
    ),
    one(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization",
        Text,
    ),
    one("userName", Text),
];

/// Case-insensitive lookup (LDAP and SCIM attribute names are case-insensitive).
pub(crate) fn lookup(catalog: &'static [AttrDef], name: &str) -> Option<&'static AttrDef> {
    catalog.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

/// The closest known name, for "did you mean" hints. Long names get no hint, which keeps
/// the quadratic distance computation cheap on hostile input.
pub(crate) fn suggest<'a>(
    candidates: impl IntoIterator<Item = &'a str>,
    name: &str,
) -> Option<&'a str> {
    if name.len() > 128 {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    let limit = name.chars().count().div_ceil(3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.last().copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use idbridge_core::AttrName;

    use super::*;

    #[test]
    fn coerces_ldap_strings() {
        let s = |x: &str| Value::Str(x.to_string());
        assert_eq!(Syntax::Int.coerce(&s(" 512")), Ok(Value::Int(512)));
        assert_eq!(Syntax::Bool.coerce(&s("TRUE")), Ok(Value::Bool(true)));
        assert_eq!(
            Syntax::Int.coerce(&s("x")),
            Err("expected int, got \"x\"".to_string())
        );
        assert_eq!(
            Syntax::Binary.coerce(&Value::Int(1)),
            Err("expected bytes, got a value of type int".to_string())
        );
        let Ok(Value::DateTime(t)) = Syntax::Time.coerce(&s("20240131120506.0Z")) else {
            panic!("not a datetime");
        };
        assert_eq!(t.unix_timestamp(), 1_706_702_706);
        assert!(Syntax::Time.coerce(&s("2024013112050x.0Z")).is_err());
        assert!(matches!(
            Syntax::DnRef.coerce(&s("CN=Boss,DC=lab")),
            Ok(Value::Ref(_))
        ));
    }

    #[test]
    fn suggests_close_names() {
        let names = AD.iter().map(|d| d.name);
        assert_eq!(suggest(names.clone(), "givnName"), Some("givenName"));
        assert_eq!(suggest(names, "zzzzzz"), None);
        assert!(lookup(AD, "USERACCOUNTCONTROL").is_some());
    }

    #[test]
    fn catalogs_are_sorted_as_names_order() {
        // Evaluation collects its outcome in catalog order: sorted, it builds the map in one pass.
        for catalog in [AD, METAVERSE, CLOUD] {
            for pair in catalog.windows(2) {
                let [a, b] = pair else { continue };
                assert!(
                    AttrName::from_static(a.name) < AttrName::from_static(b.name),
                    "{} before {}",
                    a.name,
                    b.name
                );
            }
        }
    }
}
