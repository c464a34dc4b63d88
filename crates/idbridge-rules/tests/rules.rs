//! Loading, error reporting, precedence and the default rules, through the public API.

use std::collections::{BTreeMap, HashMap};

use idbridge_core::{AttrName, Dn};
use idbridge_rules::{Direction, EvalError, FlowResult, RuleSet, Value};
use proptest::prelude::*;

type Object = HashMap<AttrName, Vec<Value>>;

fn obj(attrs: &[(&str, &str)]) -> Object {
    let mut o = Object::new();
    for (k, v) in attrs {
        o.entry(AttrName::from(*k))
            .or_default()
            .push(Value::Str((*v).to_string()));
    }
    o
}

fn errors(text: &str) -> Vec<String> {
    match RuleSet::load("rules.toml", text) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

fn get<'a>(r: &'a FlowResult, attr: &str) -> &'a [Value] {
    r.attributes
        .get(&AttrName::from(attr))
        .map_or(&[], |f| f.values.as_slice())
}

fn s(x: &str) -> Vec<Value> {
    vec![Value::Str(x.to_string())]
}

const HEADER: &str = "version = 1\n[[inbound]]\nname = \"r\"\nprecedence = 1\nfrom = \"user\"\nto = \"person\"\n[inbound.flows]\n";

#[test]
fn expression_errors_name_line_and_column() {
    let text = format!(
        "{HEADER}{}",
        r#"displayName = 'Joinn(" ", [givenName])'
givenName = '[givnName]'
sn = 'Left([sn], "3")'
mail = 'Left([mail])'
accountEnabled = '[userAccountControl]'
title = '[proxyAddresses]'
titel = '[title]'
company = "Join(\"-\", [companyy])"
department = 'Join(" ", [department]'
"#
    );
    assert_eq!(
        errors(&text),
        [
            r#"rules.toml:8:16: unknown function "Joinn" (did you mean "Join"?)"#,
            "rules.toml:9:14: unknown attribute [givnName] (did you mean [givenName]?)",
            "rules.toml:10:18: argument 2 of Left: expected int, got string",
            "rules.toml:11:9: Left expects Left(text, count), got 1 argument",
            "rules.toml:12:19: flow to accountEnabled needs bool, but the expression is int",
            "rules.toml:13:10: flow to title needs string, but the expression is multi-valued string",
            r#"rules.toml:14:1: unknown target attribute "titel" (did you mean "title"?)"#,
            "rules.toml:15:24: unknown attribute [companyy] (did you mean [company]?)",
            "rules.toml:16:37: expected ',' or ')'",
        ]
    );
}

#[test]
fn multi_line_and_escaped_expressions_are_positioned() {
    let text = format!(
        "{HEADER}{}",
        r#"displayName = '''
Join(" ",
  [givenName], [snn])'''
sn = "Replace(\"\u00e9\", [sn], [foo])"
"#
    );
    assert_eq!(
        errors(&text),
        [
            "rules.toml:10:16: unknown attribute [snn] (did you mean [sn]?)",
            "rules.toml:11:33: unknown attribute [foo]",
        ]
    );
}

#[test]
fn rule_level_errors() {
    let text = r#"version = 2
[[inbound]]
name = "a"
precedence = 1
from = "user"
to = "persn"
scope = '[userAccountControl]'

[[inbound]]
name = "b"
precedence = 1
from = "user"
to = "group"
"#;
    assert_eq!(
        errors(text),
        [
            "rules.toml:1:11: unsupported version 2, expected 1",
            r#"rules.toml:6:6: unknown object type "persn", expected one of: person, group, contact"#,
            "rules.toml:7:10: scope condition needs bool, but the expression is int",
            r#"rules.toml:11:14: precedence 1 is already used by inbound rule "a""#,
        ]
    );
}

#[test]
fn toml_errors_carry_positions() {
    let e = errors("version = 1\n[[inbound]\n");
    assert_eq!(e.len(), 1);
    assert_eq!(
        e,
        ["rules.toml:2:10: invalid table header: expected `.`, `]]`"]
    );
    let e = errors(HEADER);
    assert!(e.is_empty(), "{e:?}");
    let e = errors("version = 1\n[[inbound]]\nnmae = \"x\"\n");
    assert!(
        e[0].starts_with("rules.toml:3:1: unknown field `nmae`"),
        "{e:?}"
    );
    let e = errors("");
    assert!(
        e[0].starts_with("rules.toml:1:1: missing field `version`"),
        "{e:?}"
    );
}

const PRECEDENCE: &str = r#"version = 1
[[inbound]]
name = "Base"
precedence = 100
from = "user"
to = "person"
[inbound.flows]
title = '[title]'
displayName = '[displayName]'

[[inbound]]
name = "Sales override"
precedence = 50
from = "USER"
to = "person"
scope = 'Eq([department], "Sales")'
[inbound.flows]
title = 'Append([title], " (Sales)")'
"#;

#[test]
fn lower_precedence_number_wins_for_in_scope_rules() {
    let rules = RuleSet::load("p.toml", PRECEDENCE).unwrap();
    let names: Vec<_> = rules
        .rules_for(Direction::Inbound, "user")
        .map(|r| (r.name(), r.precedence()))
        .collect();
    assert_eq!(names, [("Sales override", 50), ("Base", 100)]);

    let sales = obj(&[
        ("department", "Sales"),
        ("title", "Rep"),
        ("displayName", "J"),
    ]);
    let r = rules.evaluate_inbound("user", &sales).unwrap();
    assert_eq!(r.fired, ["Sales override", "Base"]);
    assert_eq!(r.to.as_deref(), Some("person"));
    assert_eq!(get(&r, "title"), s("Rep (Sales)"));
    assert_eq!(
        r.attributes[&AttrName::from("title")].rule,
        "Sales override"
    );
    assert_eq!(r.attributes[&AttrName::from("displayname")].rule, "Base");

    let other = obj(&[("department", "IT"), ("title", "Admin")]);
    let r = rules.evaluate_inbound("user", &other).unwrap();
    assert_eq!(r.fired, ["Base"]);
    assert_eq!(get(&r, "title"), s("Admin"));
    assert_eq!(get(&r, "displayName"), Vec::<Value>::new());

    let r = rules.evaluate_inbound("group", &other).unwrap();
    assert_eq!(r, FlowResult::default());
}

#[test]
fn evaluation_errors_name_rule_and_target() {
    let text = format!("{HEADER}employeeId = 'CStr(CNum([employeeID]))'\n");
    let rules = RuleSet::load("e.toml", &text).unwrap();
    let err = rules
        .evaluate_inbound("user", &obj(&[("employeeID", "E-1")]))
        .unwrap_err();
    assert_eq!(
        err,
        EvalError {
            rule: "r".into(),
            target: Some("employeeId".into()),
            message: "CNum: \"E-1\" is not an integer".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "rule \"r\", flow to employeeId: CNum: \"E-1\" is not an integer"
    );
}

#[test]
fn join_conditions_are_checked_and_ordered() {
    let rules = RuleSet::default_rules().unwrap();
    let user = rules
        .rules_for(Direction::Outbound, "person")
        .next()
        .unwrap();
    let join: Vec<_> = user
        .join()
        .iter()
        .map(|j| (j.metaverse.as_str(), j.cloud.as_str()))
        .collect();
    assert_eq!(
        join,
        [
            (
                "sourceAnchor",
                "urn:idbridge:params:scim:schemas:extension:sync:2.0:User:immutableId"
            ),
            ("userPrincipalName", "userName"),
            ("mail", r#"emails[type eq "work"].value"#),
        ]
    );

    let text = r#"version = 1
[[inbound]]
name = "in"
precedence = 1
from = "user"
to = "person"
join = [{ metaverse = "sourceAnchor", cloud = "userName" }]

[[outbound]]
name = "out"
precedence = 1
from = "person"
to = "User"
join = [
  { metaverse = "accountEnabled", cloud = "userName" },
  { metaverse = "mial", cloud = "usrName" },
]
"#;
    assert_eq!(
        errors(text),
        [
            "rules.toml:7:23: join conditions belong to outbound rules (they match cloud objects)",
            "rules.toml:15:43: cannot join accountEnabled (bool) to userName (string)",
            r#"rules.toml:16:17: unknown metaverse attribute "mial" (did you mean "mail"?)"#,
            r#"rules.toml:16:33: unknown cloud attribute "usrName" (did you mean "userName"?)"#,
        ]
    );
}

fn jack(uac: &str) -> Object {
    let mut o = obj(&[
        ("givenName", "Jack"),
        ("sn", "Smith"),
        ("userPrincipalName", "jack@lab.test"),
        ("mail", "jack.smith@lab.test"),
        ("proxyAddresses", "SMTP:jack.smith@lab.test"),
        ("proxyAddresses", "smtp:jack@lab.test"),
        ("department", "Engineering"),
        ("title", "Engineer"),
        ("company", "Lab"),
        ("telephoneNumber", "+1 555 0100"),
        ("mobile", "+1 555 0101"),
        ("employeeID", "E1001"),
        ("manager", "CN=Jill Boss,OU=Staff,DC=lab,DC=test"),
        ("userAccountControl", uac),
        ("distinguishedName", "CN=Jack Smith,OU=Staff,DC=lab,DC=test"),
        ("sAMAccountName", "jsmith"),
    ]);
    o.insert(
        AttrName::from("objectGUID"),
        vec![Value::Bytes((1..=16).collect())],
    );
    o
}

fn as_source(r: &FlowResult) -> BTreeMap<AttrName, Vec<Value>> {
    r.attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.values.clone()))
        .collect()
}

#[test]
fn default_rules_flow_a_user_to_the_cloud() {
    let rules = RuleSet::default_rules().unwrap();
    let r = rules.evaluate_inbound("user", &jack("512")).unwrap();
    assert_eq!(r.fired, ["In from AD - User"]);
    assert_eq!(r.to.as_deref(), Some("person"));
    assert_eq!(get(&r, "displayName"), s("Jack Smith"));
    assert_eq!(get(&r, "givenName"), s("Jack"));
    assert_eq!(get(&r, "accountEnabled"), [Value::Bool(true)]);
    assert_eq!(get(&r, "sourceAnchor"), s("AQIDBAUGBwgJCgsMDQ4PEA=="));
    assert_eq!(get(&r, "employeeId"), s("E1001"));
    assert_eq!(get(&r, "onPremisesSamAccountName"), s("jsmith"));
    assert_eq!(get(&r, "onPremisesSecurityIdentifier"), Vec::<Value>::new());
    assert_eq!(
        get(&r, "onPremisesDistinguishedName"),
        s("CN=Jack Smith,OU=Staff,DC=lab,DC=test")
    );
    assert_eq!(get(&r, "proxyAddresses").len(), 2);
    let boss = Dn::parse("CN=Jill Boss,OU=Staff,DC=lab,DC=test").unwrap();
    assert_eq!(get(&r, "manager"), [Value::Ref(boss.clone())]);

    let disabled = rules.evaluate_inbound("user", &jack("514")).unwrap();
    assert_eq!(get(&disabled, "accountEnabled"), [Value::Bool(false)]);

    let out = rules.evaluate_outbound("person", &as_source(&r)).unwrap();
    assert_eq!(out.fired, ["Out to cloud - User"]);
    assert_eq!(out.to.as_deref(), Some("User"));
    assert_eq!(get(&out, "userName"), s("jack@lab.test"));
    assert_eq!(get(&out, "name.givenName"), s("Jack"));
    assert_eq!(get(&out, "name.familyName"), s("Smith"));
    assert_eq!(
        get(&out, r#"emails[type eq "work"].value"#),
        s("jack.smith@lab.test")
    );
    assert_eq!(
        get(&out, r#"phoneNumbers[type eq "mobile"].value"#),
        s("+1 555 0101")
    );
    assert_eq!(get(&out, "active"), [Value::Bool(true)]);
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:";
    assert_eq!(get(&out, &format!("{ent}department")), s("Engineering"));
    assert_eq!(get(&out, &format!("{ent}employeeNumber")), s("E1001"));
    assert_eq!(get(&out, &format!("{ent}manager")), [Value::Ref(boss)]);
    let sync = "urn:idbridge:params:scim:schemas:extension:sync:2.0:User:";
    assert_eq!(
        get(&out, &format!("{sync}immutableId")),
        s("AQIDBAUGBwgJCgsMDQ4PEA==")
    );
}

#[test]
fn consistency_guid_wins_and_critical_objects_are_out_of_scope() {
    let rules = RuleSet::default_rules().unwrap();
    let mut o = jack("512");
    o.insert(
        AttrName::from("ms-ds-consistencyguid"),
        vec![Value::Bytes(vec![0xff; 16])],
    );
    let r = rules.evaluate_inbound("user", &o).unwrap();
    assert_eq!(get(&r, "sourceAnchor"), s("/////////////////////w=="));

    o.insert(
        AttrName::from("isCriticalSystemObject"),
        vec![Value::Str("TRUE".into())],
    );
    let r = rules.evaluate_inbound("user", &o).unwrap();
    assert_eq!(r, FlowResult::default());

    let no_anchor = obj(&[("userPrincipalName", "x@lab.test")]);
    let r = rules.evaluate_outbound("person", &no_anchor).unwrap();
    assert_eq!(r.to, None);
}

#[test]
fn default_rules_flow_a_group_with_member_references() {
    let rules = RuleSet::default_rules().unwrap();
    let mut g = obj(&[
        ("cn", "Engineers"),
        ("description", "All engineers"),
        ("mail", "eng@lab.test"),
        ("member", "CN=Jack Smith,OU=Staff,DC=lab,DC=test"),
        ("member", "CN=Jill Boss,OU=Staff,DC=lab,DC=test"),
    ]);
    g.insert(
        AttrName::from("objectGUID"),
        vec![Value::Bytes(vec![0; 16])],
    );
    let r = rules.evaluate_inbound("group", &g).unwrap();
    assert_eq!(r.to.as_deref(), Some("group"));
    assert_eq!(get(&r, "displayName"), s("Engineers"));
    let members = [
        Value::Ref(Dn::parse("CN=Jack Smith,OU=Staff,DC=lab,DC=test").unwrap()),
        Value::Ref(Dn::parse("CN=Jill Boss,OU=Staff,DC=lab,DC=test").unwrap()),
    ];
    assert_eq!(get(&r, "member"), members);

    let out = rules.evaluate_outbound("group", &as_source(&r)).unwrap();
    assert_eq!(out.to.as_deref(), Some("Group"));
    assert_eq!(get(&out, "displayName"), s("Engineers"));
    assert_eq!(get(&out, "members"), members);
    let sync = "urn:idbridge:params:scim:schemas:extension:sync:2.0:Group:";
    assert_eq!(get(&out, &format!("{sync}mail")), s("eng@lab.test"));
    assert_eq!(get(&out, &format!("{sync}description")), s("All engineers"));
    assert_eq!(
        get(&out, &format!("{sync}immutableId")),
        s("AAAAAAAAAAAAAAAAAAAAAA==")
    );
}

#[test]
fn bad_reference_data_is_an_eval_error() {
    let rules = RuleSet::default_rules().unwrap();
    let mut o = jack("512");
    o.insert(
        AttrName::from("manager"),
        vec![Value::Str("not a dn".into())],
    );
    let err = rules.evaluate_inbound("user", &o).unwrap_err();
    assert_eq!(err.rule, "In from AD - User");
    assert_eq!(err.target.as_deref(), Some("manager"));
}

/// Every example in the function table of docs/rules.md must type-check as an inbound or
/// an outbound expression, so the reference cannot drift from the implementation.
#[test]
fn documented_examples_type_check() {
    let docs = include_str!("../../../docs/rules.md");
    let examples: Vec<&str> = docs
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.rsplit(" | ").next()?.split('`').nth(1))
        .filter(|code| code.contains('('))
        .collect();
    assert!(examples.len() >= 30, "{examples:?}");
    for code in examples {
        let ok = [("inbound", "user", "person"), ("outbound", "person", "User")]
            .iter()
            .any(|(dir, from, to)| {
                let text = format!(
                    "version = 1\n[[{dir}]]\nname = \"r\"\nprecedence = 1\nfrom = \"{from}\"\nto = \"{to}\"\nscope = 'IsPresent({code})'\n"
                );
                RuleSet::load("doc.toml", &text).is_ok()
            });
        assert!(ok, "documented example does not compile: {code}");
    }
}

proptest! {
    #[test]
    fn loader_never_panics(text in "\\PC{0,300}") {
        let _ = RuleSet::load("fuzz.toml", &text);
    }

    #[test]
    fn loader_never_panics_on_mangled_expressions(expr in "[\\[\\]()\",a-zA-Z0-9 \\\\-]{0,80}") {
        let text = format!("{HEADER}displayName = '{}'\n", expr.replace('\'', ""));
        if let Err(errs) = RuleSet::load("fuzz.toml", &text) {
            for e in errs {
                prop_assert!(e.line >= 1 && e.column >= 1);
            }
        }
    }
}
