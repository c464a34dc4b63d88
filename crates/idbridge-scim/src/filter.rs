//! SCIM filters (RFC 7644 §3.4.2.2): parsing with precise error positions, evaluation against
//! resource JSON, and the printing that round-trips through the parser.
//!
//! Grammar (keywords and attribute names case-insensitive; `and` binds tighter than `or`):
//!
//! ```text
//! filter    = or
//! or        = and *("or" and)
//! and       = unary *("and" unary)
//! unary     = "not" "(" filter ")" / "(" filter ")" / valuePath / attrExp
//! valuePath = attrPath "[" filter "]"         ; inner filter: plain sub-attribute names, no nesting
//! attrExp   = attrPath "pr" / attrPath compareOp compValue
//! compValue = "false" / "null" / "true" / number / string   ; JSON literals
//! ```

use std::fmt;

use serde_json::{Number, Value};

use crate::error::ScimError;
use crate::path::{check_name, AttrPath, PatchPath, Syntax};
use crate::schema::{AttrType, AttributeDef, ResourceKind};
use crate::value::{
    comparable_def, compare, elements, fold_case, get_ci, is_present, is_unassigned, Resolved,
};

mod key;
pub use key::EqKey;

/// Longest filter or PATCH path accepted, in characters: bounds parsing work and memory.
pub const MAX_FILTER_LEN: usize = 8192;
/// Deepest nesting of parentheses, `not` and value paths: bounds recursion in parse and evaluation.
pub const MAX_FILTER_DEPTH: usize = 64;

/// A parsed filter. `And`/`Or` are n-ary (at least two operands) so that long chains do not
/// deepen the tree: its depth is bounded by [`MAX_FILTER_DEPTH`] whatever the input.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Present(AttrPath),
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    Not(Box<Filter>),
    And(Vec<Filter>),
    Or(Vec<Filter>),
    /// `emails[type eq "work"]`: some value of the multi-valued attribute matches the inner
    /// filter, whose attribute names are sub-attributes of `path`.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// Comparison operators of RFC 7644 Table 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    const ALL: [CompareOp; 9] = [
        Self::Eq,
        Self::Ne,
        Self::Co,
        Self::Sw,
        Self::Ew,
        Self::Gt,
        Self::Ge,
        Self::Lt,
        Self::Le,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Co => "co",
            Self::Sw => "sw",
            Self::Ew => "ew",
            Self::Gt => "gt",
            Self::Ge => "ge",
            Self::Lt => "lt",
            Self::Le => "le",
        }
    }

    fn parse(word: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }

    /// Ordering and substring operators are undefined on booleans and binaries (RFC 7644 §3.4.2.2).
    fn needs_ordered_type(self) -> bool {
        !matches!(self, Self::Eq | Self::Ne)
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison value: a JSON literal.
#[derive(Clone, Debug, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
}

impl CompValue {
    pub fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(n) => Value::Number(n.clone()),
            Self::String(s) => Value::String(s.clone()),
        }
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => {
                let quoted = serde_json::to_string(s).map_err(|_| fmt::Error)?;
                f.write_str(&quoted)
            }
        }
    }
}

impl fmt::Display for Filter {
    /// Canonical text (lowercase keywords, minimal parentheses); `Filter::parse` reads it back
    /// to an equal filter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Present(path) => write!(f, "{path} pr"),
            Self::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Self::Not(inner) => write!(f, "not ({inner})"),
            Self::And(terms) => write_joined(f, terms, " and ", |t| {
                matches!(t, Self::And(_) | Self::Or(_))
            }),
            Self::Or(terms) => write_joined(f, terms, " or ", |t| matches!(t, Self::Or(_))),
            Self::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

fn write_joined(
    f: &mut fmt::Formatter<'_>,
    terms: &[Filter],
    separator: &str,
    needs_parens: fn(&Filter) -> bool,
) -> fmt::Result {
    for (i, term) in terms.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        if needs_parens(term) {
            write!(f, "({term})")?;
        } else {
            write!(f, "{term}")?;
        }
    }
    Ok(())
}

/// Where attribute names of a filter are looked up.
#[derive(Clone, Copy)]
enum Scope {
    Resource(ResourceKind),
    /// Inside `attr[...]`: names are sub-attributes of `attr`, the value is one element.
    Element(&'static AttributeDef),
}

impl Filter {
    /// Parses a filter; errors are 400 `invalidFilter` naming the 0-based character position.
    pub fn parse(s: &str) -> Result<Filter, ScimError> {
        let chars = checked_chars(s, Syntax::Filter)?;
        let mut parser = Parser::new(&chars, Syntax::Filter)?;
        let filter = parser.parse_or(false)?;
        parser.expect_end("\"and\", \"or\" or the end of the filter")?;
        Ok(filter)
    }

    /// Whether `resource` (canonical JSON, as stored) matches. The resource kind is taken from
    /// its `schemas` or `meta.resourceType` (User if neither says).
    pub fn matches(&self, resource: &Value) -> bool {
        let kind = ResourceKind::of_resource(resource).unwrap_or(ResourceKind::User);
        self.matches_kind(kind, resource)
    }

    /// Whether `resource`, a resource of `kind`, matches. Unknown attributes match nothing.
    pub fn matches_kind(&self, kind: ResourceKind, resource: &Value) -> bool {
        self.eval(Scope::Resource(kind), resource)
    }

    /// Rejects comparisons RFC 7644 §3.4.2.2 leaves undefined for `kind`'s schemas: ordering
    /// and substring operators on boolean or binary attributes (400 `invalidFilter`).
    pub fn validate_for(&self, kind: ResourceKind) -> Result<(), ScimError> {
        self.check(Scope::Resource(kind))
    }

    /// For `<single-valued string attribute> eq "<string>"`, or an `or` of such comparisons on
    /// one attribute, the canonical attribute name and the values, so the store can answer from
    /// an index. The values are as written: compare them case-insensitively unless the attribute
    /// is caseExact, or confirm hits with [`Filter::matches`].
    pub fn as_indexable_eq_any(&self) -> Option<(String, Vec<String>)> {
        let mut attr: Option<String> = None;
        let mut values = Vec::new();
        for term in self.or_terms() {
            let (name, value) = term.as_indexable_eq()?;
            if *attr.get_or_insert_with(|| name.clone()) != name {
                return None;
            }
            values.push(value);
        }
        Some((attr?, values))
    }

    fn as_indexable_eq(&self) -> Option<(String, String)> {
        let Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::String(value),
        } = self
        else {
            return None;
        };
        let resolved = ResourceKind::ALL.iter().find_map(|k| path.resolve(*k))?;
        let indexable = resolved.sub.is_none()
            && !resolved.def.multi_valued
            && matches!(resolved.def.type_, AttrType::String | AttrType::Reference);
        indexable.then(|| (resolved.top_level_name(), value.clone()))
    }

    /// For `emails[type eq "work" and value eq "<string>"]` (in either order), or an `or` of
    /// such filters, the values: the sync agent's soft match, which the store answers from an
    /// index.
    pub fn as_work_email_eq_any(&self) -> Option<Vec<String>> {
        self.or_terms()
            .iter()
            .map(Filter::as_work_email_eq)
            .collect()
    }

    fn as_work_email_eq(&self) -> Option<String> {
        let Filter::ValuePath { path, filter } = self else {
            return None;
        };
        if !path.attr.eq_ignore_ascii_case("emails") || path.sub_attr.is_some() {
            return None;
        }
        let Filter::And(terms) = filter.as_ref() else {
            return None;
        };
        let eq = |name: &str| {
            terms.iter().find_map(|t| match t {
                Filter::Compare {
                    path,
                    op: CompareOp::Eq,
                    value: CompValue::String(v),
                } if path.attr.eq_ignore_ascii_case(name) && path.sub_attr.is_none() => {
                    Some(v.clone())
                }
                _ => None,
            })
        };
        (terms.len() == 2 && eq("type").as_deref() == Some("work"))
            .then(|| eq("value"))
            .flatten()
    }

    /// The operands of a top-level `or`; the filter itself when it is not one.
    fn or_terms(&self) -> &[Filter] {
        match self {
            Filter::Or(terms) => terms,
            other => std::slice::from_ref(other),
        }
    }

    /// For a value filter made only of `sub eq value` terms joined by `and`, those pairs: what a
    /// PATCH `add` through a filter that matches nothing must create.
    pub(crate) fn equality_assignments(&self) -> Option<Vec<(&str, Value)>> {
        match self {
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } if path.schema.is_none() && path.sub_attr.is_none() && *value != CompValue::Null => {
                Some(vec![(path.attr.as_str(), value.to_json())])
            }
            Filter::And(terms) => {
                let mut all = Vec::new();
                for term in terms {
                    all.extend(term.equality_assignments()?);
                }
                Some(all)
            }
            _ => None,
        }
    }

    /// Evaluates against one value of the multi-valued attribute `def` (PATCH value filters).
    pub(crate) fn matches_element(&self, def: &'static AttributeDef, element: &Value) -> bool {
        self.eval(Scope::Element(def), element)
    }

    fn eval(&self, scope: Scope, target: &Value) -> bool {
        match self {
            Filter::And(terms) => terms.iter().all(|t| t.eval(scope, target)),
            Filter::Or(terms) => terms.iter().any(|t| t.eval(scope, target)),
            Filter::Not(inner) => !inner.eval(scope, target),
            Filter::Present(path) => {
                let (_, values) = lookup(scope, path, target, false);
                values.into_iter().any(is_present)
            }
            Filter::Compare { path, op, value } => {
                let (def, values) = lookup(scope, path, target, true);
                compare_any(def, &values, *op, value)
            }
            Filter::ValuePath { path, filter } => {
                let Scope::Resource(kind) = scope else {
                    return false;
                };
                let Some(resolved) = path.resolve(kind).filter(|r| r.sub.is_none()) else {
                    return false;
                };
                resolved.get(target).is_some_and(|v| {
                    elements(v)
                        .iter()
                        .any(|e| filter.eval(Scope::Element(resolved.def), e))
                })
            }
        }
    }

    fn check(&self, scope: Scope) -> Result<(), ScimError> {
        match self {
            Filter::And(terms) | Filter::Or(terms) => terms.iter().try_for_each(|t| t.check(scope)),
            Filter::Not(inner) => inner.check(scope),
            Filter::Present(_) => Ok(()),
            Filter::Compare { path, op, .. } => {
                let def = resolve_in(scope, path).map(|(def, _)| def);
                match def {
                    Some(d)
                        if op.needs_ordered_type()
                            && matches!(d.type_, AttrType::Boolean | AttrType::Binary) =>
                    {
                        Err(ScimError::invalid_filter(format!(
                            "operator {op} is not defined for the {:?} attribute {path}",
                            d.type_
                        )))
                    }
                    _ => Ok(()),
                }
            }
            Filter::ValuePath { path, filter } => match scope {
                Scope::Resource(kind) => match path.resolve(kind) {
                    Some(r) => filter.check(Scope::Element(r.def)),
                    None => Ok(()),
                },
                Scope::Element(_) => Ok(()),
            },
        }
    }
}

/// The definition `path` names in `scope` and, at resource scope, its resolution.
fn resolve_in(scope: Scope, path: &AttrPath) -> Option<(&'static AttributeDef, Option<Resolved>)> {
    match scope {
        Scope::Resource(kind) => path.resolve(kind).map(|r| (r.leaf(), Some(r))),
        Scope::Element(container) => container.sub_attribute(&path.attr).map(|d| (d, None)),
    }
}

/// The values `path` selects in `target`, flattened over multi-valued attributes, with the
/// definition they compare as. When `comparing`, complex values stand for their `value`.
fn lookup<'a>(
    scope: Scope,
    path: &AttrPath,
    target: &'a Value,
    comparing: bool,
) -> (Option<&'static AttributeDef>, Vec<&'a Value>) {
    let Some((leaf, resolved)) = resolve_in(scope, path) else {
        return (None, Vec::new());
    };
    let (top, sub) = match resolved {
        Some(r) => (r.get(target), r.sub),
        None => (target.as_object().and_then(|o| get_ci(o, leaf.name)), None),
    };
    let sub = match sub {
        Some(sub) => Some(sub),
        None if comparing && leaf.type_ == AttrType::Complex => Some(comparable_def(leaf)),
        None => None,
    };
    let mut out = Vec::new();
    for item in top.map(elements).unwrap_or_default() {
        match sub {
            Some(sub) => {
                if let Some(v) = item.as_object().and_then(|o| get_ci(o, sub.name)) {
                    out.extend(elements(v));
                }
            }
            None => out.push(item),
        }
    }
    (Some(sub.unwrap_or(leaf)), out)
}

/// Multi-valued attributes match when any value does; `ne` is the negation of `eq`, and
/// `eq null` holds exactly when the attribute is unassigned.
fn compare_any(
    def: Option<&AttributeDef>,
    values: &[&Value],
    op: CompareOp,
    value: &CompValue,
) -> bool {
    let expected = value.to_json();
    let any_equal = || match value {
        CompValue::Null => values.iter().all(|v| is_unassigned(v)),
        _ => values
            .iter()
            .any(|v| compare(def, v, &expected) == Some(std::cmp::Ordering::Equal)),
    };
    match op {
        CompareOp::Eq => any_equal(),
        CompareOp::Ne => !any_equal(),
        _ => values.iter().any(|v| compare_one(def, v, op, &expected)),
    }
}

fn compare_one(
    def: Option<&AttributeDef>,
    actual: &Value,
    op: CompareOp,
    expected: &Value,
) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    if def.is_some_and(|d| matches!(d.type_, AttrType::Boolean | AttrType::Binary)) {
        return false;
    }
    match op {
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
            let (Value::String(a), Value::String(e)) = (actual, expected) else {
                return false;
            };
            let (a, e) = (fold_case(def, a), fold_case(def, e));
            match op {
                CompareOp::Co => a.contains(&e),
                CompareOp::Sw => a.starts_with(&e),
                _ => a.ends_with(&e),
            }
        }
        _ => {
            let ord = compare(def, actual, expected);
            match op {
                CompareOp::Gt => ord == Some(Greater),
                CompareOp::Ge => matches!(ord, Some(Greater | Equal)),
                CompareOp::Lt => ord == Some(Less),
                CompareOp::Le => matches!(ord, Some(Less | Equal)),
                _ => false,
            }
        }
    }
}

/// Parses a PATCH path (see [`PatchPath`]); errors are 400 `invalidPath` with a position.
pub(crate) fn parse_patch_path(s: &str) -> Result<PatchPath, ScimError> {
    let chars = checked_chars(s, Syntax::Path)?;
    let mut parser = Parser::new(&chars, Syntax::Path)?;
    let (attr, attr_end) = match parser.peek().cloned() {
        Some(Token {
            tok: Tok::Word(w),
            start,
            end,
        }) => {
            parser.pos += 1;
            (AttrPath::parse_at(&w, start, Syntax::Path)?, end)
        }
        _ => return Err(parser.expected("an attribute path")),
    };
    let mut path = PatchPath {
        attr,
        value_filter: None,
        sub_attr: None,
    };
    if parser.peek_is(&Tok::LBracket, Some(attr_end)) {
        if path.attr.sub_attr.is_some() {
            return Err(parser.expected(
                "the end of the path (a value filter follows the attribute, not its sub-attribute)",
            ));
        }
        parser.pos += 1;
        path.value_filter = Some(parser.parse_or(true)?);
        let close_end = parser.expect(&Tok::RBracket, "\"]\"")?;
        if let Some(Token {
            tok: Tok::Word(w),
            start,
            ..
        }) = parser.peek().cloned()
        {
            if start == close_end {
                if let Some(sub) = w.strip_prefix('.') {
                    check_name(sub, start + 1, Syntax::Path, true)?;
                    path.sub_attr = Some(sub.to_owned());
                    parser.pos += 1;
                }
            }
        }
    }
    parser.expect_end("the end of the path")?;
    Ok(path)
}

fn checked_chars(s: &str, syntax: Syntax) -> Result<Vec<char>, ScimError> {
    if s.len() > MAX_FILTER_LEN * 4 || s.chars().count() > MAX_FILTER_LEN {
        return Err(syntax.error(
            MAX_FILTER_LEN,
            format!("longer than {MAX_FILTER_LEN} characters"),
        ));
    }
    Ok(s.chars().collect())
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Str(String),
    Num(Number),
    Word(String),
}

/// A token and its character span `[start, end)` in the input.
#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"')
}

fn lex(chars: &[char], syntax: Syntax) -> Result<Vec<Token>, ScimError> {
    let text = |from: usize, to: usize| -> String {
        chars.get(from..to).unwrap_or_default().iter().collect()
    };
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let start = i;
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            '"' => {
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return Err(syntax.error(start, "unterminated string")),
                        Some('\\') => j += 2,
                        Some('"') => break,
                        Some(_) => j += 1,
                    }
                }
                i = j;
                let literal = text(start, j + 1);
                let s = serde_json::from_str::<String>(&literal).map_err(|e| {
                    syntax.error(start, format!("invalid string literal {literal}: {e}"))
                })?;
                Tok::Str(s)
            }
            '-' | '0'..='9' => {
                let mut j = i;
                while chars
                    .get(j)
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
                {
                    j += 1;
                }
                i = j - 1;
                let literal = text(start, j);
                let n = serde_json::from_str::<Number>(&literal)
                    .map_err(|_| syntax.error(start, format!("invalid number {literal:?}")))?;
                Tok::Num(n)
            }
            _ => {
                let mut j = i;
                while chars.get(j).is_some_and(|c| !is_delimiter(*c)) {
                    j += 1;
                }
                i = j - 1;
                Tok::Word(text(start, j))
            }
        };
        i += 1;
        tokens.push(Token { tok, start, end: i });
    }
    Ok(tokens)
}

struct Parser<'a> {
    chars: &'a [char],
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    syntax: Syntax,
}

impl<'a> Parser<'a> {
    fn new(chars: &'a [char], syntax: Syntax) -> Result<Self, ScimError> {
        Ok(Self {
            chars,
            tokens: lex(chars, syntax)?,
            pos: 0,
            depth: 0,
            syntax,
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    /// Whether the next token is `tok`, starting exactly at `at` when given.
    fn peek_is(&self, tok: &Tok, at: Option<usize>) -> bool {
        self.peek()
            .is_some_and(|t| t.tok == *tok && at.is_none_or(|a| a == t.start))
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Word(w), .. }) if w.eq_ignore_ascii_case(keyword))
    }

    /// `expected <what>, found "<token>"` at the next token (or the end of input).
    fn expected(&self, what: &str) -> ScimError {
        match self.peek() {
            Some(t) => {
                let found: String = self
                    .chars
                    .get(t.start..t.end)
                    .unwrap_or_default()
                    .iter()
                    .collect();
                self.syntax
                    .error(t.start, format!("expected {what}, found {found:?}"))
            }
            None => self.syntax.error(
                self.chars.len(),
                format!("expected {what}, found the end of the input"),
            ),
        }
    }

    /// Consumes `tok` and returns the end of its span.
    fn expect(&mut self, tok: &Tok, what: &str) -> Result<usize, ScimError> {
        match self.peek() {
            Some(t) if t.tok == *tok => {
                let end = t.end;
                self.pos += 1;
                Ok(end)
            }
            _ => Err(self.expected(what)),
        }
    }

    fn expect_end(&self, what: &str) -> Result<(), ScimError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.expected(what)),
        }
    }

    fn parse_or(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let mut terms = vec![self.parse_and(in_brackets)?];
        while self.peek_keyword("or") {
            self.pos += 1;
            terms.push(self.parse_and(in_brackets)?);
        }
        Ok(join(terms, Filter::Or))
    }

    fn parse_and(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let mut terms = vec![self.parse_unary(in_brackets)?];
        while self.peek_keyword("and") {
            self.pos += 1;
            terms.push(self.parse_unary(in_brackets)?);
        }
        Ok(join(terms, Filter::And))
    }

    fn parse_unary(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        if self.depth >= MAX_FILTER_DEPTH {
            let at = self.peek().map_or(self.chars.len(), |t| t.start);
            return Err(self
                .syntax
                .error(at, format!("nested deeper than {MAX_FILTER_DEPTH} levels")));
        }
        self.depth += 1;
        let result = self.parse_primary(in_brackets);
        self.depth -= 1;
        result
    }

    fn parse_primary(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let starts_not = self.peek_keyword("not")
            && matches!(
                self.tokens.get(self.pos + 1),
                Some(Token {
                    tok: Tok::LParen,
                    ..
                })
            );
        if starts_not || self.peek_is(&Tok::LParen, None) {
            self.pos += if starts_not { 2 } else { 1 };
            let inner = self.parse_or(in_brackets)?;
            self.expect(&Tok::RParen, "\")\"")?;
            return Ok(if starts_not {
                Filter::Not(Box::new(inner))
            } else {
                inner
            });
        }
        let (word, start, end) = match self.peek() {
            Some(Token {
                tok: Tok::Word(w),
                start,
                end,
            }) => (w.clone(), *start, *end),
            _ => return Err(self.expected("an attribute path, \"(\" or \"not\"")),
        };
        let path = AttrPath::parse_at(&word, start, self.syntax)?;
        if in_brackets && (path.schema.is_some() || path.sub_attr.is_some()) {
            return Err(self
                .syntax
                .error(start, "expected a sub-attribute name inside \"[...]\""));
        }
        self.pos += 1;
        if self.peek_is(&Tok::LBracket, Some(end)) {
            if in_brackets {
                return Err(self.syntax.error(end, "value filters cannot be nested"));
            }
            if path.sub_attr.is_some() {
                return Err(self.syntax.error(
                    end,
                    "a value filter must follow the attribute, not its sub-attribute",
                ));
            }
            self.pos += 1;
            let inner = self.parse_or(true)?;
            self.expect(&Tok::RBracket, "\"]\"")?;
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(inner),
            });
        }
        let op = match self.peek() {
            Some(Token {
                tok: Tok::Word(w), ..
            }) if w.eq_ignore_ascii_case("pr") => None,
            Some(Token {
                tok: Tok::Word(w), ..
            }) => match CompareOp::parse(w) {
                Some(op) => Some(op),
                None => return Err(self.expected("a comparison operator")),
            },
            _ => return Err(self.expected("a comparison operator")),
        };
        self.pos += 1;
        let Some(op) = op else {
            return Ok(Filter::Present(path));
        };
        let value = match self.peek().map(|t| &t.tok) {
            Some(Tok::Str(s)) => CompValue::String(s.clone()),
            Some(Tok::Num(n)) => CompValue::Number(n.clone()),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => CompValue::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => CompValue::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => CompValue::Null,
            _ => {
                return Err(self.expected(
                    "a comparison value (a quoted string, a number, true, false or null)",
                ))
            }
        };
        self.pos += 1;
        Ok(Filter::Compare { path, op, value })
    }
}

/// One term stands for itself; several are joined by `make`.
fn join(mut terms: Vec<Filter>, make: fn(Vec<Filter>) -> Filter) -> Filter {
    if terms.len() == 1 {
        if let Some(only) = terms.pop() {
            return only;
        }
    }
    make(terms)
}

#[cfg(test)]
mod tests;
