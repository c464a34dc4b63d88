//! Attribute paths (RFC 7644 §3.10) and PATCH paths (RFC 7644 §3.5.2).

use std::fmt;

use crate::error::{ScimError, ScimType};
use crate::filter::Filter;
use crate::schema::{
    ResourceKind, CONTACT_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, SYNC_CONTACT_SCHEMA,
    SYNC_GROUP_SCHEMA, SYNC_USER_SCHEMA, USER_SCHEMA,
};
use crate::value::{schema_for_urn, Resolved, SchemaRef};

/// URNs recognised as a path prefix even though they contain `.` and `:` themselves.
const KNOWN_URNS: [&str; 7] = [
    USER_SCHEMA,
    GROUP_SCHEMA,
    CONTACT_SCHEMA,
    ENTERPRISE_USER_SCHEMA,
    SYNC_USER_SCHEMA,
    SYNC_GROUP_SCHEMA,
    SYNC_CONTACT_SCHEMA,
];

/// Which grammar a syntax error belongs to: decides the `scimType` and the wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Syntax {
    Filter,
    Path,
}

impl Syntax {
    /// `invalid filter at position 14: expected ..., found "eqq"`.
    pub fn error(self, position: usize, message: impl fmt::Display) -> ScimError {
        let (scim_type, what) = match self {
            Syntax::Filter => (ScimType::InvalidFilter, "filter"),
            Syntax::Path => (ScimType::InvalidPath, "path"),
        };
        ScimError::bad_request(
            scim_type,
            format!("invalid {what} at position {position}: {message}"),
        )
    }
}

/// `[schema URN ":"] attribute ["." sub-attribute]`. Names keep the client's case; they are
/// compared case-insensitively when resolved against a schema.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AttrPath {
    pub schema: Option<String>,
    pub attr: String,
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A path without schema or sub-attribute.
    pub fn simple(attr: impl Into<String>) -> Self {
        Self {
            schema: None,
            attr: attr.into(),
            sub_attr: None,
        }
    }

    pub fn parse(s: &str) -> Result<Self, ScimError> {
        Self::parse_at(s, 0, Syntax::Path)
    }

    /// Parses `s`, which starts at character `offset` of a larger input, for error positions.
    pub(crate) fn parse_at(s: &str, offset: usize, syntax: Syntax) -> Result<Self, ScimError> {
        let (schema, rest, rest_offset) = split_urn(s, offset, syntax)?;
        let (attr, sub_attr) = match rest.split_once('.') {
            Some((attr, sub)) => (attr, Some(sub)),
            None => (rest, None),
        };
        check_name(attr, rest_offset, syntax, false)?;
        if let Some(sub) = sub_attr {
            check_name(sub, rest_offset + attr.chars().count() + 1, syntax, true)?;
        }
        Ok(Self {
            schema,
            attr: attr.to_owned(),
            sub_attr: sub_attr.map(str::to_owned),
        })
    }

    /// Resolves against `kind`'s schemas. Unqualified names are looked up in the core schema
    /// first, then in the extensions, because many clients omit the extension URN.
    pub(crate) fn resolve(&self, kind: ResourceKind) -> Option<Resolved> {
        let mut resolved = match &self.schema {
            Some(urn) => schema_for_urn(kind, urn)?.attribute(kind, &self.attr)?,
            None => SchemaRef::Core.attribute(kind, &self.attr).or_else(|| {
                kind.extensions()
                    .iter()
                    .find_map(|s| SchemaRef::Extension(s).attribute(kind, &self.attr))
            })?,
        };
        if let Some(sub) = &self.sub_attr {
            resolved.sub = Some(resolved.def.sub_attribute(sub)?);
        }
        Some(resolved)
    }

    /// This path without its sub-attribute.
    pub(crate) fn without_sub(&self) -> AttrPath {
        AttrPath {
            sub_attr: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{schema}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Splits off a leading schema URN: a known one by prefix, an unknown one at its last `:`.
fn split_urn(
    s: &str,
    offset: usize,
    syntax: Syntax,
) -> Result<(Option<String>, &str, usize), ScimError> {
    let is_urn = s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"));
    if !is_urn {
        return Ok((None, s, offset));
    }
    let known = KNOWN_URNS.iter().find_map(|urn| {
        let prefix = s.get(..urn.len())?;
        let rest = s.get(urn.len()..)?;
        (prefix.eq_ignore_ascii_case(urn) && (rest.is_empty() || rest.starts_with(':')))
            .then_some((*urn, rest))
    });
    let (urn, rest) = match known {
        Some((urn, rest)) => (urn.to_owned(), rest.strip_prefix(':').unwrap_or(rest)),
        None => match s.rsplit_once(':') {
            Some((urn, rest)) => (urn.to_owned(), rest),
            None => (s.to_owned(), ""),
        },
    };
    let rest_offset = offset + s.chars().count() - rest.chars().count();
    if rest.is_empty() {
        return Err(syntax.error(
            rest_offset,
            format!("expected an attribute name after the schema URN {urn:?}"),
        ));
    }
    Ok((Some(urn), rest, rest_offset))
}

/// RFC 7644 ATTRNAME: `ALPHA *(ALPHA / DIGIT / "-" / "_")`; sub-attributes may also be `$ref`.
pub(crate) fn check_name(
    name: &str,
    offset: usize,
    syntax: Syntax,
    is_sub: bool,
) -> Result<(), ScimError> {
    if is_sub && name == "$ref" {
        return Ok(());
    }
    let mut chars = name.chars().enumerate();
    match chars.next() {
        None => return Err(syntax.error(offset, "expected an attribute name")),
        Some((_, c)) if c.is_ascii_alphabetic() => {}
        Some((i, c)) => {
            return Err(syntax.error(
                offset + i,
                format!("an attribute name must start with a letter, found {c:?}"),
            ))
        }
    }
    match chars.find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        Some((i, c)) => Err(syntax.error(
            offset + i,
            format!("unexpected character {c:?} in attribute name"),
        )),
        None => Ok(()),
    }
}

/// Parses `attributes` / `excludedAttributes`: a comma-separated list of attribute paths.
/// A bare extension URN stands for all of that extension's attributes.
pub fn parse_attribute_list(s: &str) -> Result<Vec<AttrPath>, ScimError> {
    let mut paths = Vec::new();
    let mut offset = 0;
    for item in s.split(',') {
        let trimmed = item.trim_start();
        let start = offset + item.chars().count() - trimmed.chars().count();
        let trimmed = trimmed.trim_end();
        if let Some(ext) = ResourceKind::ALL.iter().find_map(|k| k.extension(trimmed)) {
            paths.extend(ext.attributes.iter().map(|a| AttrPath {
                schema: Some(ext.id.to_owned()),
                attr: a.name.to_owned(),
                sub_attr: None,
            }));
        } else if !trimmed.is_empty() {
            paths.push(AttrPath::parse_at(trimmed, start, Syntax::Path)?);
        }
        offset += item.chars().count() + 1;
    }
    Ok(paths)
}

/// A PATCH `path`: `attrPath [ "[" valFilter "]" ] [ "." subAttr ]`, e.g. `members[value eq "x"].display`.
///
/// Without a value filter any sub-attribute is in `attr.sub_attr` and `sub_attr` is `None`; with
/// a filter, `attr` has no sub-attribute and the one after `]` is in `sub_attr`.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub value_filter: Option<Filter>,
    pub sub_attr: Option<String>,
}

impl PatchPath {
    pub fn parse(s: &str) -> Result<Self, ScimError> {
        crate::filter::parse_patch_path(s)
    }

    /// The sub-attribute this path targets, wherever the syntax put it.
    pub(crate) fn target_sub_attr(&self) -> Option<&str> {
        self.sub_attr.as_deref().or(self.attr.sub_attr.as_deref())
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.value_filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_simple_sub_and_extension_paths() {
        assert_eq!(
            AttrPath::parse("userName").unwrap(),
            AttrPath::simple("userName")
        );
        let p = AttrPath::parse("emails.value").unwrap();
        assert_eq!(
            (p.attr.as_str(), p.sub_attr.as_deref()),
            ("emails", Some("value"))
        );
        let p = AttrPath::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        )
        .unwrap();
        assert_eq!(p.schema.as_deref(), Some(ENTERPRISE_USER_SCHEMA));
        assert_eq!(p.attr, "manager");
        assert_eq!(p.sub_attr.as_deref(), Some("value"));
    }

    #[test]
    fn known_urns_are_matched_case_insensitively_and_canonicalised() {
        let p =
            AttrPath::parse("URN:IDBRIDGE:params:scim:schemas:extension:sync:2.0:user:immutableId")
                .unwrap();
        assert_eq!(p.schema.as_deref(), Some(SYNC_USER_SCHEMA));
        assert_eq!(p.attr, "immutableId");
        let resolved = p.resolve(ResourceKind::User).unwrap();
        assert_eq!(
            resolved.top_level_name(),
            format!("{SYNC_USER_SCHEMA}:immutableId")
        );
    }

    #[test]
    fn unknown_urn_splits_at_last_colon() {
        let p = AttrPath::parse("urn:example:ext:1.0:Thing:color").unwrap();
        assert_eq!(p.schema.as_deref(), Some("urn:example:ext:1.0:Thing"));
        assert_eq!(p.attr, "color");
        assert!(p.resolve(ResourceKind::User).is_none());
    }

    #[test]
    fn errors_name_the_position() {
        let e = AttrPath::parse("emails.va!ue").unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
        assert!(e.detail.contains("position 9"), "{}", e.detail);
        let e = AttrPath::parse("1abc").unwrap_err();
        assert!(e.detail.contains("position 0"), "{}", e.detail);
        let e = AttrPath::parse("a.b.c").unwrap_err();
        assert!(e.detail.contains("position 3"), "{}", e.detail);
        let e = AttrPath::parse(ENTERPRISE_USER_SCHEMA).unwrap_err();
        assert!(e.detail.contains("after the schema URN"), "{}", e.detail);
        assert!(AttrPath::parse("").is_err());
        assert!(AttrPath::parse("members.$ref").is_ok());
    }

    #[test]
    fn attribute_lists_skip_blanks_and_report_offsets() {
        let l = parse_attribute_list("userName, emails.value ,,").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            l.get(1).map(ToString::to_string).as_deref(),
            Some("emails.value")
        );
        let ext = parse_attribute_list(ENTERPRISE_USER_SCHEMA).unwrap();
        assert_eq!(ext.len(), 6);
        assert!(ext
            .iter()
            .all(|p| p.schema.as_deref() == Some(ENTERPRISE_USER_SCHEMA)));
        let e = parse_attribute_list("userName, bad!").unwrap_err();
        assert!(e.detail.contains("position 13"), "{}", e.detail);
        assert!(parse_attribute_list("").unwrap().is_empty());
    }

    #[test]
    fn unqualified_extension_attributes_resolve() {
        let r = AttrPath::simple("department")
            .resolve(ResourceKind::User)
            .unwrap();
        assert_eq!(
            r.top_level_name(),
            format!("{ENTERPRISE_USER_SCHEMA}:department")
        );
        assert!(AttrPath::simple("members")
            .resolve(ResourceKind::User)
            .is_none());
    }
}
