//! Rules files: loading (TOML, then checking and compiling every expression) and
//! evaluation by precedence.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use idbridge_core::AttrName;
use serde::Deserialize;
use toml::Spanned;

use crate::catalog::{self, AttrDef};
use crate::compile::{self, Node};
use crate::error::{EvalError, RuleError};
use crate::syntax;
use crate::value::{AttributeSource, Ty, Type, Value};

/// Largest rules file accepted, in bytes.
pub const MAX_FILE_LEN: usize = 1024 * 1024;

/// Metaverse object types.
const METAVERSE_TYPES: &[&str] = &["person", "group", "contact"];
/// Cloud (SCIM) resource types.
const CLOUD_TYPES: &[&str] = &["User", "Group", "Contact"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    version: Spanned<i64>,
    #[serde(default)]
    inbound: Vec<RuleDoc>,
    #[serde(default)]
    outbound: Vec<RuleDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    name: Spanned<String>,
    precedence: Spanned<u32>,
    from: Spanned<String>,
    to: Spanned<String>,
    scope: Option<Spanned<String>>,
    #[serde(default)]
    flows: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    join: Vec<JoinDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinDoc {
    metaverse: Spanned<String>,
    cloud: Spanned<String>,
}

/// How the engine matches a metaverse object to an existing cloud object: the first
/// condition is the hard match (anchor), later ones are soft matches tried in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinCondition {
    pub metaverse: AttrName,
    pub cloud: AttrName,
}

/// Which way a rule flows; fixes the attribute catalogs and object types it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// AD connector space -> metaverse.
    Inbound,
    /// Metaverse -> cloud connector space.
    Outbound,
}

impl Direction {
    fn word(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
    fn sources(self) -> &'static [AttrDef] {
        match self {
            Direction::Inbound => catalog::AD,
            Direction::Outbound => catalog::METAVERSE,
        }
    }
    fn targets(self) -> &'static [AttrDef] {
        match self {
            Direction::Inbound => catalog::METAVERSE,
            Direction::Outbound => catalog::CLOUD,
        }
    }
    /// Allowed `from` / `to` object types; `None` means any (AD object classes).
    fn object_types(self) -> (Option<&'static [&'static str]>, &'static [&'static str]) {
        match self {
            Direction::Inbound => (None, METAVERSE_TYPES),
            Direction::Outbound => (Some(METAVERSE_TYPES), CLOUD_TYPES),
        }
    }
}

#[derive(Debug)]
struct Flow {
    target: AttrName,
    /// The target's position in its direction's catalog: where evaluation keeps its value.
    slot: usize,
    expr: Node,
}

/// A compiled sync rule.
#[derive(Debug)]
pub struct Rule {
    name: String,
    precedence: u32,
    from: String,
    to: String,
    scope: Option<Node>,
    flows: Vec<Flow>,
    join: Vec<JoinCondition>,
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Lower wins when two in-scope rules flow the same target.
    pub fn precedence(&self) -> u32 {
        self.precedence
    }
    /// Source object type (AD object class, or metaverse type for outbound rules).
    pub fn from(&self) -> &str {
        &self.from
    }
    /// Target object type (metaverse type, or SCIM resource type for outbound rules).
    pub fn to(&self) -> &str {
        &self.to
    }
    /// Join conditions in the order the engine tries them (outbound rules only).
    pub fn join(&self) -> &[JoinCondition] {
        &self.join
    }
    /// Target attributes this rule flows.
    pub fn targets(&self) -> impl Iterator<Item = &AttrName> {
        self.flows.iter().map(|f| &f.target)
    }

    fn in_scope(&self, src: &dyn AttributeSource) -> Result<bool, EvalError> {
        let Some(scope) = &self.scope else {
            return Ok(true);
        };
        let v = scope.eval(src).map_err(|message| EvalError {
            rule: self.name.clone(),
            target: None,
            message,
        })?;
        Ok(matches!(v.first(), Some(Value::Bool(true))))
    }
}

/// One target attribute's outcome and the rule that produced it.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowedValue {
    /// Empty means "no value": the target is to be cleared.
    pub values: Vec<Value>,
    pub rule: String,
}

/// The result of applying a direction's rules to one object. Each target's outcome is a
/// [`FlowedValue`] naming its rule, or with [`RuleSet::values`] just the values.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowResult<V = FlowedValue> {
    /// Target object type, `None` when no rule was in scope (the object is not synced).
    pub to: Option<String>,
    /// In-scope rules, in precedence order (for `sync preview`).
    pub fired: Vec<String>,
    pub attributes: BTreeMap<AttrName, V>,
}

// Not derived: that would ask `V: Default`.
impl<V> Default for FlowResult<V> {
    fn default() -> Self {
        Self {
            to: None,
            fired: Vec::new(),
            attributes: BTreeMap::new(),
        }
    }
}

/// A loaded, checked and compiled rules file.
#[derive(Debug)]
pub struct RuleSet {
    inbound: Vec<Rule>,
    outbound: Vec<Rule>,
}

/// The rules shipped with idbridge.
pub const DEFAULT_RULES: &str = include_str!("../default-rules.toml");

impl RuleSet {
    /// Parses, checks and compiles a rules file. Every error found is returned, each
    /// positioned in `file_name`.
    pub fn load(file_name: &str, text: &str) -> Result<RuleSet, Vec<RuleError>> {
        let err = |offset: usize, msg: String| RuleError::at(file_name, text, offset, msg);
        if text.len() > MAX_FILE_LEN {
            return Err(vec![err(
                0,
                format!("rules file larger than {MAX_FILE_LEN} bytes"),
            )]);
        }
        let doc: FileDoc = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            // toml's messages span lines ("invalid table header\nexpected ..."); join them.
            let message: Vec<&str> = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            vec![err(at, message.join(": "))]
        })?;
        let mut errors = Vec::new();
        if *doc.version.get_ref() != 1 {
            errors.push(err(
                doc.version.span().start,
                format!("unsupported version {}, expected 1", doc.version.get_ref()),
            ));
        }
        let mut loader = Loader {
            file: file_name,
            text,
            errors,
        };
        let inbound = loader.rules(Direction::Inbound, doc.inbound);
        let outbound = loader.rules(Direction::Outbound, doc.outbound);
        if loader.errors.is_empty() {
            Ok(RuleSet { inbound, outbound })
        } else {
            loader.errors.sort_by_key(|e| (e.line, e.column));
            Err(loader.errors)
        }
    }

    /// The shipped default rules (see `default-rules.toml`).
    pub fn default_rules() -> Result<RuleSet, Vec<RuleError>> {
        Self::load("default-rules.toml", DEFAULT_RULES)
    }

    fn rules(&self, direction: Direction) -> &[Rule] {
        match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }

    /// Rules of `direction` whose `from` is `object_type` (case-insensitive), in
    /// precedence order. For AD, pass the object's most specific structural class
    /// (`user`, `group`, `contact`, `computer`).
    pub fn rules_for<'a>(
        &'a self,
        direction: Direction,
        object_type: &'a str,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules(direction)
            .iter()
            .filter(move |r| r.from.eq_ignore_ascii_case(object_type))
    }

    /// Applies the inbound rules for an AD object of class `object_class`.
    pub fn evaluate_inbound(
        &self,
        object_class: &str,
        source: &dyn AttributeSource,
    ) -> Result<FlowResult, EvalError> {
        self.evaluate(Direction::Inbound, object_class, source, |values, rule| {
            FlowedValue {
                values,
                rule: rule.name.clone(),
            }
        })
    }

    /// Applies the outbound rules for a metaverse object of type `metaverse_type`.
    pub fn evaluate_outbound(
        &self,
        metaverse_type: &str,
        source: &dyn AttributeSource,
    ) -> Result<FlowResult, EvalError> {
        self.evaluate(
            Direction::Outbound,
            metaverse_type,
            source,
            |values, rule| FlowedValue {
                values,
                rule: rule.name.clone(),
            },
        )
    }

    /// What [`Self::evaluate_inbound`] or [`Self::evaluate_outbound`] flow, without naming
    /// the rule of each value: what synchronization keeps, one string copy per value less.
    pub fn values(
        &self,
        direction: Direction,
        object_type: &str,
        source: &dyn AttributeSource,
    ) -> Result<FlowResult<Vec<Value>>, EvalError> {
        self.evaluate(direction, object_type, source, |values, _| values)
    }

    /// Every in-scope rule fires; for each target, the first (lowest precedence number)
    /// in-scope rule flowing it wins, even when its value is empty. Overridden flows are
    /// not evaluated. `outcome` makes a target's entry from its values and rule.
    fn evaluate<V>(
        &self,
        direction: Direction,
        object_type: &str,
        src: &dyn AttributeSource,
        outcome: impl Fn(Vec<Value>, &Rule) -> V,
    ) -> Result<FlowResult<V>, EvalError> {
        let catalog = direction.targets();
        // One slot per catalog attribute: precedence is decided without comparing names.
        let mut slots: Vec<Option<(&AttrName, V)>> = std::iter::repeat_with(|| None)
            .take(catalog.len())
            .collect();
        let (mut to, mut fired) = (None, Vec::new());
        for rule in self.rules_for(direction, object_type) {
            if !rule.in_scope(src)? {
                continue;
            }
            to = Some(rule.to.clone());
            fired.push(rule.name.clone());
            for flow in &rule.flows {
                let Some(slot @ None) = slots.get_mut(flow.slot) else {
                    continue;
                };
                let values = flow.expr.eval(src).map_err(|message| EvalError {
                    rule: rule.name.clone(),
                    target: Some(flow.target.to_string()),
                    message,
                })?;
                *slot = Some((&flow.target, outcome(values, rule)));
            }
        }
        let attributes = slots
            .into_iter()
            .flatten()
            .map(|(target, value)| (target.clone(), value))
            .collect();
        Ok(FlowResult {
            to,
            fired,
            attributes,
        })
    }
}

struct Loader<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<RuleError>,
}

impl Loader<'_> {
    fn error(&mut self, offset: usize, message: String) {
        self.errors
            .push(RuleError::at(self.file, self.text, offset, message));
    }

    fn rules(&mut self, direction: Direction, docs: Vec<RuleDoc>) -> Vec<Rule> {
        let mut names: HashSet<String> = HashSet::new();
        let mut precedences: HashMap<u32, String> = HashMap::new();
        let mut projections: HashMap<String, String> = HashMap::new();
        let mut rules = Vec::new();
        for doc in docs {
            let name = doc.name.get_ref().clone();
            let word = direction.word();
            if !names.insert(name.to_lowercase()) {
                self.error(
                    doc.name.span().start,
                    format!("duplicate {word} rule name {name:?}"),
                );
            }
            let precedence = *doc.precedence.get_ref();
            if let Some(other) = precedences.insert(precedence, name.clone()) {
                self.error(
                    doc.precedence.span().start,
                    format!("precedence {precedence} is already used by {word} rule {other:?}"),
                );
            }
            let (from_types, to_types) = direction.object_types();
            let from = self.object_type(&doc.from, from_types);
            let to = self.object_type(&doc.to, Some(to_types));
            if let (Some(from), Some(to)) = (&from, &to) {
                match projections.get(&from.to_lowercase()) {
                    Some(existing) if !existing.eq_ignore_ascii_case(to) => self.error(
                        doc.to.span().start,
                        format!("{word} rules for {from:?} already flow to {existing:?}"),
                    ),
                    _ => {
                        projections.insert(from.to_lowercase(), to.clone());
                    }
                }
            }
            let scope = doc
                .scope
                .as_ref()
                .and_then(|s| self.expr(direction, s, Type::one(Ty::Bool), "scope condition"));
            let flows = self.flows(direction, &doc.flows);
            let join = self.join(direction, &doc.join);
            if let (Some(from), Some(to)) = (from, to) {
                rules.push(Rule {
                    name,
                    precedence,
                    from,
                    to,
                    scope,
                    flows,
                    join,
                });
            }
        }
        rules.sort_by_key(|r| r.precedence);
        rules
    }

    /// Validates an object type, returning its canonical spelling.
    fn object_type(&mut self, value: &Spanned<String>, allowed: Option<&[&str]>) -> Option<String> {
        let v = value.get_ref();
        let Some(allowed) = allowed else {
            if v.trim().is_empty() {
                self.error(
                    value.span().start,
                    "object class must not be empty".to_string(),
                );
                return None;
            }
            return Some(v.clone());
        };
        if let Some(found) = allowed.iter().find(|a| a.eq_ignore_ascii_case(v)) {
            return Some((*found).to_string());
        }
        self.error(
            value.span().start,
            format!(
                "unknown object type {v:?}, expected one of: {}",
                allowed.join(", ")
            ),
        );
        None
    }

    fn flows(
        &mut self,
        direction: Direction,
        flows: &BTreeMap<Spanned<String>, Spanned<String>>,
    ) -> Vec<Flow> {
        let mut out: Vec<Flow> = Vec::new();
        for (key, expr) in flows {
            let catalog = direction.targets();
            let Some(def) = self.attribute(catalog, key, "target") else {
                continue;
            };
            let slot = catalog
                .iter()
                .position(|d| std::ptr::eq(d, def))
                .unwrap_or_default();
            let target = AttrName::from_static(def.name);
            if out.iter().any(|f| f.target == target) {
                self.error(
                    key.span().start,
                    format!("attribute {target} is flowed twice in this rule"),
                );
                continue;
            }
            let what = format!("flow to {}", def.name);
            if let Some(node) = self.expr(direction, expr, def.ty(), &what) {
                out.push(Flow {
                    target,
                    slot,
                    expr: node,
                });
            }
        }
        out
    }

    /// Validates join conditions: metaverse and cloud attributes of the same type.
    fn join(&mut self, direction: Direction, docs: &[JoinDoc]) -> Vec<JoinCondition> {
        let mut out = Vec::new();
        for doc in docs {
            if direction == Direction::Inbound {
                self.error(
                    doc.metaverse.span().start,
                    "join conditions belong to outbound rules (they match cloud objects)"
                        .to_string(),
                );
                continue;
            }
            let mv = self.attribute(catalog::METAVERSE, &doc.metaverse, "metaverse");
            let cloud = self.attribute(catalog::CLOUD, &doc.cloud, "cloud");
            let (Some(mv), Some(cloud)) = (mv, cloud) else {
                continue;
            };
            if mv.ty() != cloud.ty() {
                self.error(
                    doc.cloud.span().start,
                    format!(
                        "cannot join {} ({}) to {} ({})",
                        mv.name,
                        mv.ty(),
                        cloud.name,
                        cloud.ty()
                    ),
                );
                continue;
            }
            out.push(JoinCondition {
                metaverse: AttrName::from_static(mv.name),
                cloud: AttrName::from_static(cloud.name),
            });
        }
        out
    }

    /// Looks an attribute up in `catalog`, reporting unknown names with a hint.
    fn attribute(
        &mut self,
        catalog: &'static [AttrDef],
        name: &Spanned<String>,
        space: &str,
    ) -> Option<&'static AttrDef> {
        let found = catalog::lookup(catalog, name.get_ref());
        if found.is_none() {
            let hint = catalog::suggest(catalog.iter().map(|d| d.name), name.get_ref())
                .map(|s| format!(" (did you mean {s:?}?)"))
                .unwrap_or_default();
            self.error(
                name.span().start,
                format!("unknown {space} attribute {:?}{hint}", name.get_ref()),
            );
        }
        found
    }

    /// Parses, checks and compiles one expression, requiring a value assignable to `want`.
    fn expr(
        &mut self,
        direction: Direction,
        src: &Spanned<String>,
        want: Type,
        what: &str,
    ) -> Option<Node> {
        let code = src.get_ref();
        let span = src.span();
        let at = |offset: usize| expr_offset(self.text, &span, code, offset);
        let ast = match syntax::parse(code) {
            Ok(ast) => ast,
            Err(e) => {
                let offset = at(e.offset);
                self.error(offset, e.message);
                return None;
            }
        };
        let mut errors = Vec::new();
        let compiled = compile::compile(&ast, direction.sources(), &mut errors);
        for (range, message) in errors {
            let offset = at(range.start);
            self.error(offset, message);
        }
        let (node, ty) = compiled?;
        if !compile::assignable(ty, want) {
            let offset = at(0);
            self.error(
                offset,
                format!("{what} needs {want}, but the expression is {ty}"),
            );
            return None;
        }
        Some(node)
    }
}

/// Maps a byte offset in a TOML string's decoded value to a byte offset in the file.
/// Exact for literal strings and for basic strings (escapes are walked); multi-line
/// basic strings with line-continuation escapes may be off by the continuation.
fn expr_offset(text: &str, span: &Range<usize>, decoded: &str, offset: usize) -> usize {
    let raw = text.get(span.clone()).unwrap_or("");
    let (open, basic) = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        let nl = raw.get(3..).map_or(0, |r| {
            if r.starts_with("\r\n") {
                2
            } else {
                usize::from(r.starts_with('\n'))
            }
        });
        (3 + nl, raw.starts_with('"'))
    } else {
        (1, raw.starts_with('"'))
    };
    let body = raw.get(open..).unwrap_or("");
    if !basic || !body.contains('\\') {
        return span.start + open + offset.min(decoded.len());
    }
    // Walk escapes: each decoded char advances `dec` by its UTF-8 length and `enc` by its
    // encoded length.
    let (mut dec, mut enc) = (0usize, 0usize);
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if dec >= offset {
            return span.start + open + i;
        }
        let produced = if c == '\\' {
            match chars.next() {
                Some((_, 'u')) => escaped_char(body, i + 2, 4, &mut chars),
                Some((_, 'U')) => escaped_char(body, i + 2, 8, &mut chars),
                _ => 1,
            }
        } else {
            c.len_utf8()
        };
        dec += produced;
        enc = chars.peek().map_or(body.len(), |(j, _)| *j);
    }
    span.start + open + enc
}

/// Consumes a `\u`/`\U` escape's hex digits, returning the decoded char's UTF-8 length.
fn escaped_char(
    body: &str,
    start: usize,
    digits: usize,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> usize {
    for _ in 0..digits {
        chars.next();
    }
    body.get(start..start + digits)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .and_then(char::from_u32)
        .map_or(1, char::len_utf8)
}
