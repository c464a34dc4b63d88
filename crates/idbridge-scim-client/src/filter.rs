//! Filters the client builds (RFC 7644 §3.4.2.2).

/// A SCIM filter comparing `path` with a string value. A value path with a sub-attribute
/// (`emails[type eq "work"].value`) becomes `emails[type eq "work" and value eq "..."]`, the
/// form RFC 7644's grammar allows.
pub fn eq_filter(path: &str, value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    match path.split_once('[').zip(path.rsplit_once("].")) {
        Some(((attr, _), (head, sub))) => {
            let inner = head.get(attr.len() + 1..).unwrap_or_default();
            format!("{attr}[{inner} and {sub} eq \"{escaped}\"]")
        }
        None => format!("{path} eq \"{escaped}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::eq_filter;

    #[test]
    fn filters_follow_the_scim_grammar() {
        assert_eq!(eq_filter("userName", "a\"b\\c"), r#"userName eq "a\"b\\c""#);
        assert_eq!(
            eq_filter(r#"emails[type eq "work"].value"#, "x@y"),
            r#"emails[type eq "work" and value eq "x@y"]"#
        );
    }
}
