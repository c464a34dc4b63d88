//! ETags (RFC 7644 §3.14) as weak validators derived from a resource version counter.

/// The ETag of resource version `version`: `W/"<version>"`.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// Whether an `If-Match` header admits a resource whose ETag is `current_etag`: `*`, or a
/// list of entity tags one of which matches by weak comparison (RFC 9110 §8.8.3.2) — SCIM
/// versions are weak. A malformed header matches nothing.
pub fn if_match_satisfied(if_match_header: &str, current_etag: &str) -> bool {
    list_matches(if_match_header, current_etag)
}

/// Whether an `If-None-Match` header lets the request proceed (`*` or a matching tag stops it).
pub fn if_none_match_satisfied(if_none_match_header: &str, current_etag: &str) -> bool {
    !list_matches(if_none_match_header, current_etag)
}

fn list_matches(header: &str, current: &str) -> bool {
    if header.trim() == "*" {
        return true;
    }
    let Some(current) = opaque_tag(current.trim()).map(|(tag, _)| tag) else {
        return false;
    };
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            return false;
        }
        let Some((tag, tail)) = opaque_tag(rest) else {
            return false;
        };
        if tag == current {
            return true;
        }
        rest = tail;
    }
}

/// Splits `[W/]"tag"` off the front of `s`: the tag without quotes, and what follows.
fn opaque_tag(s: &str) -> Option<(&str, &str)> {
    let s = s.strip_prefix("W/").unwrap_or(s);
    let s = s.strip_prefix('"')?;
    let end = s.find('"')?;
    Some((s.get(..end)?, s.get(end + 1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_weak_and_quoted() {
        assert_eq!(etag(7), "W/\"7\"");
    }

    #[test]
    fn if_match_handles_star_lists_and_weakness() {
        let current = etag(3);
        assert!(if_match_satisfied("*", &current));
        assert!(if_match_satisfied("W/\"3\"", &current));
        assert!(if_match_satisfied("\"3\"", &current));
        assert!(if_match_satisfied("W/\"1\", W/\"3\"", &current));
        assert!(!if_match_satisfied("W/\"4\"", &current));
        assert!(!if_match_satisfied("W/\"30\"", &current));
        assert!(!if_match_satisfied("garbage", &current));
        assert!(!if_match_satisfied("", &current));
        assert!(!if_match_satisfied("W/\"3", &current));
        assert!(if_none_match_satisfied("W/\"2\"", &current));
        assert!(!if_none_match_satisfied("*", &current));
    }
}
