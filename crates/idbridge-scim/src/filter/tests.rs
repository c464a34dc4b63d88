use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::error::ScimType;
use crate::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, SYNC_USER_SCHEMA, USER_SCHEMA};

fn parse(s: &str) -> Filter {
    Filter::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn cmp(attr: &str, op: CompareOp, value: CompValue) -> Filter {
    Filter::Compare {
        path: AttrPath::parse(attr).unwrap(),
        op,
        value,
    }
}

fn s(v: &str) -> CompValue {
    CompValue::String(v.to_owned())
}

fn error(s: &str) -> String {
    let e = Filter::parse(s).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
    e.detail
}

fn user() -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA, SYNC_USER_SCHEMA],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "bjensen@example.com",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "title": "Tour Guide",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "meta": {
            "resourceType": "User",
            "created": "2024-01-23T04:56:22Z",
            "lastModified": "2024-05-13T04:42:34+02:00"
        },
        ENTERPRISE_USER_SCHEMA: {"department": "Tours", "manager": {"value": "26118915"}},
        SYNC_USER_SCHEMA: {"immutableId": "AbC=", "source": "on_premises", "lastSyncedAt": "2024-06-01T00:00:00Z"}
    })
}

#[test]
fn parses_every_operator_and_literal() {
    for op in CompareOp::ALL {
        let f = parse(&format!("title {} \"x\"", op.as_str().to_uppercase()));
        assert_eq!(f, cmp("title", op, s("x")));
    }
    assert_eq!(
        parse("active eq true"),
        cmp("active", CompareOp::Eq, CompValue::Bool(true))
    );
    assert_eq!(
        parse("active eq FALSE"),
        cmp("active", CompareOp::Eq, CompValue::Bool(false))
    );
    assert_eq!(
        parse("title eq null"),
        cmp("title", CompareOp::Eq, CompValue::Null)
    );
    assert_eq!(
        parse("x gt -1.5e3"),
        cmp(
            "x",
            CompareOp::Gt,
            CompValue::Number(Number::from_f64(-1500.0).unwrap())
        )
    );
    assert_eq!(
        parse("title PR"),
        Filter::Present(AttrPath::simple("title"))
    );
    assert_eq!(
        parse(r#"userName eq "a\"b\\c\u00e9""#),
        cmp("userName", CompareOp::Eq, s("a\"b\\cé"))
    );
}

#[test]
fn and_binds_tighter_than_or() {
    let a = cmp("a", CompareOp::Eq, s("1"));
    let b = cmp("b", CompareOp::Eq, s("2"));
    let c = cmp("c", CompareOp::Eq, s("3"));
    assert_eq!(
        parse(r#"a eq "1" or b eq "2" and c eq "3""#),
        Filter::Or(vec![a.clone(), Filter::And(vec![b.clone(), c.clone()])])
    );
    assert_eq!(
        parse(r#"a eq "1" AND b eq "2" Or c eq "3""#),
        Filter::Or(vec![Filter::And(vec![a.clone(), b.clone()]), c.clone()])
    );
    assert_eq!(
        parse(r#"(a eq "1" or b eq "2") and c eq "3""#),
        Filter::And(vec![Filter::Or(vec![a.clone(), b.clone()]), c.clone()])
    );
    assert_eq!(
        parse(r#"a eq "1" and b eq "2" and c eq "3""#),
        Filter::And(vec![a.clone(), b.clone(), c.clone()])
    );
    assert_eq!(
        parse(r#"not (a eq "1") and not(b eq "2")"#),
        Filter::And(vec![Filter::Not(Box::new(a)), Filter::Not(Box::new(b))])
    );
}

#[test]
fn value_paths_parse_and_match_within_one_value() {
    let f = parse(r#"emails[type eq "work" and value co "@example.com"]"#);
    assert!(
        matches!(&f, Filter::ValuePath { path, filter } if path.attr == "emails" && matches!(**filter, Filter::And(_)))
    );
    assert!(f.matches(&user()));
    // Both conditions hold, but on different values: no match.
    assert!(!parse(r#"emails[type eq "home" and value co "@example.com"]"#).matches(&user()));
    assert!(parse(r#"emails[not (type eq "work")]"#).matches(&user()));
    assert!(parse(r#"userName sw "b" and emails[primary eq true]"#).matches(&user()));
}

#[test]
fn evaluation_is_case_insensitive_unless_case_exact() {
    let u = user();
    assert!(parse(r#"USERNAME eq "BJensen@Example.com""#).matches(&u));
    assert!(parse(r#"name.givenName sw "bar""#).matches(&u));
    assert!(parse(r#"title ew "GUIDE""#).matches(&u));
    assert!(parse(r#"title co "r g""#).matches(&u));
    // id and immutableId are caseExact.
    assert!(!parse(r#"id eq "2819C223-7F76-453A-919D-413861904646""#).matches(&u));
    assert!(parse(&format!(r#"{SYNC_USER_SCHEMA}:immutableId eq "AbC=""#)).matches(&u));
    assert!(!parse(&format!(r#"{SYNC_USER_SCHEMA}:immutableId eq "abc=""#)).matches(&u));
}

#[test]
fn multi_valued_complex_attributes_compare_their_values() {
    let u = user();
    assert!(parse(r#"emails eq "babs@jensen.org""#).matches(&u));
    assert!(parse(r#"emails.type eq "home""#).matches(&u));
    assert!(!parse(r#"emails.type eq "other""#).matches(&u));
    assert!(parse(r#"emails.value ne "nobody@x""#).matches(&u));
    assert!(parse(&format!(
        r#"{ENTERPRISE_USER_SCHEMA}:manager eq "26118915""#
    ))
    .matches(&u));
    assert!(parse(&format!(
        r#"{ENTERPRISE_USER_SCHEMA}:department eq "tours""#
    ))
    .matches(&u));
}

#[test]
fn presence_null_and_negation() {
    let u = user();
    assert!(parse("title pr").matches(&u));
    assert!(parse("emails pr").matches(&u));
    assert!(!parse("nickName pr").matches(&u));
    assert!(parse("nickName eq null").matches(&u));
    assert!(!parse("title eq null").matches(&u));
    assert!(parse("title ne null").matches(&u));
    assert!(parse(r#"nickName ne "x""#).matches(&u));
    assert!(parse(r#"not (nickName pr)"#).matches(&u));
    assert!(!parse(r#"unknownAttribute eq "x""#).matches(&u));
}

#[test]
fn date_times_compare_as_instants() {
    let u = user();
    assert!(parse(r#"meta.created gt "2024-01-01T00:00:00Z""#).matches(&u));
    assert!(parse(r#"meta.created eq "2024-01-23T05:56:22+01:00""#).matches(&u));
    assert!(parse(r#"meta.lastModified lt "2024-05-13T03:00:00Z""#).matches(&u));
    assert!(!parse(r#"meta.lastModified ge "2024-05-13T03:00:00Z""#).matches(&u));
    assert!(parse(&format!(
        r#"{SYNC_USER_SCHEMA}:lastSyncedAt le "2024-06-01T00:00:00.000Z""#
    ))
    .matches(&u));
    // Not a date: no match rather than an error.
    assert!(!parse(r#"meta.created gt "yesterday""#).matches(&u));
}

#[test]
fn booleans_and_numbers() {
    let u = user();
    assert!(parse("active eq true").matches(&u));
    assert!(!parse("active eq false").matches(&u));
    assert!(!parse("active gt false").matches(&u));
    assert!(!parse("active eq \"true\"").matches(&u));
    let n = json!({"schemas": [USER_SCHEMA], "x": 5});
    assert!(
        !parse("x eq 5").matches(&n),
        "unknown attributes never match"
    );
}

#[test]
fn group_filters_use_group_schema() {
    let g = json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": "Tour Guides",
        "members": [{"value": "u1", "type": "User"}, {"value": "u2"}]
    });
    assert!(parse(r#"members eq "u2""#).matches(&g));
    assert!(parse(r#"members[value eq "u1" and type eq "user"]"#).matches(&g));
    assert!(
        !parse(r#"members eq "U2""#).matches(&g),
        "member ids are caseExact"
    );
    assert!(parse(r#"displayName sw "tour""#).matches(&g));
}

#[test]
fn errors_name_position_expectation_and_token() {
    assert_eq!(
        error(r#"userName eqq "bjensen""#),
        r#"invalid filter at position 9: expected a comparison operator, found "eqq""#
    );
    assert!(error("").contains("position 0: expected an attribute path"));
    assert!(error(r#"userName eq"#).contains("position 11: expected a comparison value"));
    assert!(error(r#"userName eq bjensen"#).contains("position 12"));
    assert!(error(r#"(userName pr"#).contains(r#"position 12: expected ")""#));
    assert!(error(r#"userName pr title pr"#).contains(r#"position 12: expected "and", "or""#));
    assert!(error(r#"userName eq "unterminated"#).contains("position 12: unterminated string"));
    assert!(error(r#"emails[type eq "work""#).contains(r#"expected "]""#));
    assert!(error(r#"emails[value[type pr]]"#).contains("nested"));
    assert!(error(r#"emails[name.x pr]"#).contains("sub-attribute name"));
    assert!(error(r#"user!Name pr"#).contains("position 4"));
    assert!(error(r#"x eq 01"#).contains("invalid number"));
    assert!(error(r#"x eq "\q""#).contains("invalid string literal"));
    assert!(error(r#"and"#).contains("comparison operator"));
}

#[test]
fn nesting_and_length_are_capped() {
    let deep = format!(
        "{}a pr{}",
        "(".repeat(MAX_FILTER_DEPTH),
        ")".repeat(MAX_FILTER_DEPTH)
    );
    assert!(error(&deep).contains("nested deeper than 64"));
    let ok = format!(
        "{}a pr{}",
        "(".repeat(MAX_FILTER_DEPTH - 1),
        ")".repeat(MAX_FILTER_DEPTH - 1)
    );
    assert!(Filter::parse(&ok).is_ok());
    let nots = "not (".repeat(1000);
    assert!(error(&nots).contains("nested"));
    let long = "a pr or ".repeat(2000);
    assert!(error(&long).contains("longer than"));
    // Long flat chains are fine: they do not deepen the tree.
    let chain = vec!["a pr"; 800].join(" and ");
    assert!(matches!(parse(&chain), Filter::And(terms) if terms.len() == 800));
}

#[test]
fn indexable_equalities() {
    assert_eq!(
        parse(r#"userName eq "Bob""#).as_indexable_eq(),
        Some(("userName".to_owned(), "Bob".to_owned()))
    );
    assert_eq!(
        parse(r#"EXTERNALID eq "e1""#).as_indexable_eq(),
        Some(("externalId".to_owned(), "e1".to_owned()))
    );
    assert_eq!(
        parse(&format!(
            r#"{}:IMMUTABLEID eq "x""#,
            SYNC_USER_SCHEMA.to_uppercase()
        ))
        .as_indexable_eq(),
        Some((format!("{SYNC_USER_SCHEMA}:immutableId"), "x".to_owned()))
    );
    assert_eq!(
        parse(r#"displayName eq "G""#)
            .as_indexable_eq()
            .map(|(a, _)| a),
        Some("displayName".to_owned())
    );
    assert_eq!(parse(r#"emails eq "x""#).as_indexable_eq(), None);
    assert_eq!(parse(r#"userName sw "x""#).as_indexable_eq(), None);
    assert_eq!(
        parse(r#"userName eq "x" and id pr"#).as_indexable_eq(),
        None
    );
    assert_eq!(parse("active eq true").as_indexable_eq(), None);
}

#[test]
fn indexable_equalities_joined_by_or() {
    assert_eq!(
        parse(r#"userName eq "a" or USERNAME eq "B" or userName eq "c""#).as_indexable_eq_any(),
        Some((
            "userName".to_owned(),
            vec!["a".into(), "B".into(), "c".into()]
        ))
    );
    assert_eq!(
        parse(r#"externalId eq "e1""#).as_indexable_eq_any(),
        Some(("externalId".to_owned(), vec!["e1".into()]))
    );
    for text in [
        r#"userName eq "a" or externalId eq "b""#,
        r#"userName eq "a" or userName sw "b""#,
        r#"userName eq "a" or (userName eq "b" and id pr)"#,
        r#"userName eq "a" and userName eq "b""#,
    ] {
        assert_eq!(parse(text).as_indexable_eq_any(), None, "{text}");
    }
}

#[test]
fn validate_for_rejects_ordering_on_booleans() {
    assert!(parse("active gt true")
        .validate_for(ResourceKind::User)
        .is_err());
    assert!(parse(r#"emails[primary sw "t"]"#)
        .validate_for(ResourceKind::User)
        .is_err());
    assert!(parse("active eq true")
        .validate_for(ResourceKind::User)
        .is_ok());
    assert!(parse(r#"userName gt "a""#)
        .validate_for(ResourceKind::User)
        .is_ok());
}

#[test]
fn display_is_canonical() {
    assert_eq!(
        parse(r#"(A EQ "1" OR b Pr) AND NOT(c lt 2.5)"#).to_string(),
        r#"(A eq "1" or b pr) and not (c lt 2.5)"#
    );
    assert_eq!(
        parse(r#"emails[type eq "work"] or x eq null"#).to_string(),
        r#"emails[type eq "work"] or x eq null"#
    );
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    prop_oneof![
        Just(AttrPath::simple("userName")),
        Just(AttrPath::simple("and")),
        Just(AttrPath::simple("not")),
        Just(AttrPath::parse("emails.value").unwrap()),
        Just(AttrPath::parse("meta.lastModified").unwrap()),
        Just(AttrPath::parse(&format!("{SYNC_USER_SCHEMA}:immutableId")).unwrap()),
        "[a-zA-Z][a-zA-Z0-9_-]{0,8}".prop_map(AttrPath::simple),
    ]
}

fn comp_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        any::<i64>().prop_map(|n| CompValue::Number(n.into())),
        // Short decimals: exactly representable through serde_json's float parsing.
        (any::<i32>(), 1..6i32)
            .prop_filter_map("finite", |(m, k)| Number::from_f64(
                f64::from(m) / 10f64.powi(k)
            ))
            .prop_map(CompValue::Number),
        any::<String>().prop_map(CompValue::String),
    ]
}

fn compare_op() -> impl Strategy<Value = CompareOp> {
    proptest::sample::select(CompareOp::ALL.to_vec())
}

/// Filters over plain attribute names: what may appear inside `[...]`.
fn element_filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        "[a-z]{1,6}".prop_map(|a| Filter::Present(AttrPath::simple(a))),
        ("[a-z]{1,6}", compare_op(), comp_value()).prop_map(|(a, op, value)| Filter::Compare {
            path: AttrPath::simple(a),
            op,
            value
        }),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
            proptest::collection::vec(inner, 2..4).prop_map(Filter::Or),
        ]
    })
}

fn filter() -> impl Strategy<Value = Filter> {
    let leaf =
        prop_oneof![
            attr_path().prop_map(Filter::Present),
            (attr_path(), compare_op(), comp_value())
                .prop_map(|(path, op, value)| Filter::Compare { path, op, value }),
            ("[a-z]{1,6}", element_filter()).prop_map(|(a, f)| Filter::ValuePath {
                path: AttrPath::simple(a),
                filter: Box::new(f)
            }),
        ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
            proptest::collection::vec(inner, 2..4).prop_map(Filter::Or),
        ]
    })
}

proptest! {
    #[test]
    fn display_round_trips(f in filter()) {
        let text = f.to_string();
        prop_assert_eq!(Filter::parse(&text), Ok(f), "{}", text);
    }

    #[test]
    fn parser_never_panics(s in any::<String>()) {
        let _ = Filter::parse(&s);
        let _ = PatchPath::parse(&s);
        let _ = AttrPath::parse(&s);
    }

    #[test]
    fn parser_never_panics_on_filter_like_input(
        s in r#"[a-z.:\[\]() "\\0-9-]{0,60}|(not |and |or |eq |pr |\(|\)|\[|\]|"x" |1 |userName |emails)*"#
    ) {
        if let Ok(f) = Filter::parse(&s) {
            let _ = f.matches(&user());
            prop_assert_eq!(Filter::parse(&f.to_string()), Ok(f));
        }
        let _ = PatchPath::parse(&s);
    }

    #[test]
    fn evaluation_never_panics(f in filter()) {
        let _ = f.matches(&user());
        let _ = f.matches(&json!({"schemas": [GROUP_SCHEMA], "members": [{"value": "x"}]}));
        let _ = f.matches(&json!(null));
    }
}

#[test]
fn the_work_email_soft_match_is_recognised_in_either_order() {
    for text in [
        r#"emails[type eq "work" and value eq "a@b.test"]"#,
        r#"emails[value eq "a@b.test" and type eq "work"]"#,
    ] {
        let filter = Filter::parse(text).unwrap();
        assert_eq!(
            filter.as_work_email_eq().as_deref(),
            Some("a@b.test"),
            "{text}"
        );
    }
    for text in [
        r#"emails[type eq "home" and value eq "a@b.test"]"#,
        r#"emails[value eq "a@b.test"]"#,
        r#"userName eq "a@b.test""#,
    ] {
        assert_eq!(
            Filter::parse(text).unwrap().as_work_email_eq(),
            None,
            "{text}"
        );
    }
}

#[test]
fn work_email_soft_matches_joined_by_or() {
    let text =
        r#"emails[type eq "work" and value eq "a@b"] or emails[value eq "C@d" and type eq "work"]"#;
    assert_eq!(
        parse(text).as_work_email_eq_any(),
        Some(vec!["a@b".to_owned(), "C@d".to_owned()])
    );
    let mixed = r#"emails[type eq "work" and value eq "a@b"] or userName eq "a@b""#;
    assert_eq!(parse(mixed).as_work_email_eq_any(), None);
}
