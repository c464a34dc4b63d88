//! Filters the client builds (RFC 7644 §3.4.2.2).

/// Most equality terms in one `or` filter.
pub const MAX_TERMS: usize = 100;
/// Longest `or` filter, in bytes: idbridge's cloud accepts 8,192 characters; half of that
/// leaves room for servers with tighter limits. (A single term longer than this goes alone.)
pub const MAX_FILTER_BYTES: usize = 4096;

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

/// The `or` filters asking for `values` at `path`, each with the values it asks for: at most
/// [`MAX_TERMS`] terms and [`MAX_FILTER_BYTES`] bytes each.
pub fn or_filters<'v>(path: &str, values: &[&'v str]) -> Vec<(String, Vec<&'v str>)> {
    const OR: &str = " or ";
    let mut filters = Vec::new();
    let mut filter = String::new();
    let mut batch = Vec::new();
    for &value in values {
        let term = eq_filter(path, value);
        let full =
            batch.len() >= MAX_TERMS || filter.len() + OR.len() + term.len() > MAX_FILTER_BYTES;
        if full && !batch.is_empty() {
            filters.push((std::mem::take(&mut filter), std::mem::take(&mut batch)));
        }
        if !filter.is_empty() {
            filter.push_str(OR);
        }
        filter.push_str(&term);
        batch.push(value);
    }
    if !batch.is_empty() {
        filters.push((filter, batch));
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCHOR: &str = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User:immutableId";
    const WORK_MAIL: &str = r#"emails[type eq "work"].value"#;

    #[test]
    fn the_length_cap_is_half_of_what_idbridges_cloud_accepts() {
        assert_eq!(MAX_FILTER_BYTES, idbridge_scim::MAX_FILTER_LEN / 2);
    }

    #[test]
    fn filters_follow_the_scim_grammar() {
        assert_eq!(eq_filter("userName", "a\"b\\c"), r#"userName eq "a\"b\\c""#);
        assert_eq!(
            eq_filter(r#"emails[type eq "work"].value"#, "x@y"),
            r#"emails[type eq "work" and value eq "x@y"]"#
        );
    }

    #[test]
    fn or_filters_join_terms_with_or() {
        assert_eq!(
            or_filters(WORK_MAIL, &["a@x", "b@x"]),
            [(
                r#"emails[type eq "work" and value eq "a@x"] or emails[type eq "work" and value eq "b@x"]"#
                    .to_owned(),
                vec!["a@x", "b@x"]
            )]
        );
    }

    #[test]
    fn or_filters_keep_to_the_term_and_length_caps() {
        let short: Vec<String> = (0..250).map(|i| format!("u{i}")).collect();
        let short: Vec<&str> = short.iter().map(String::as_str).collect();
        let batches = or_filters("userName", &short);
        let sizes: Vec<usize> = batches.iter().map(|(_, b)| b.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);

        // Anchors under the idbridge path: about 100 bytes a term, so the length cap decides.
        let anchors: Vec<String> = (0..100)
            .map(|i| format!("QUJDREVGR0hJSktMTU5PUA{i:02}"))
            .collect();
        let anchors: Vec<&str> = anchors.iter().map(String::as_str).collect();
        let batches = or_filters(ANCHOR, &anchors);
        assert!(batches.len() > 1);
        let mut all: Vec<&str> = Vec::new();
        for (filter, batch) in &batches {
            assert!(filter.len() <= MAX_FILTER_BYTES, "{}", filter.len());
            assert_eq!(filter.matches(" or ").count() + 1, batch.len());
            let parsed = idbridge_scim::Filter::parse(filter).unwrap();
            assert_eq!(
                parsed.as_indexable_eq_any().map(|(_, v)| v),
                Some(batch.iter().map(|v| (*v).to_owned()).collect())
            );
            all.extend(batch);
        }
        assert_eq!(all, anchors, "every value once, in order");

        // A term too long for the cap goes alone.
        let long = "x".repeat(MAX_FILTER_BYTES);
        let batches = or_filters("userName", &["a", &long, "b"]);
        let sizes: Vec<usize> = batches.iter().map(|(_, b)| b.len()).collect();
        assert_eq!(sizes, [1, 1, 1]);
    }
}
