//! PATCH (RFC 7644 §3.5.2): parsing requests and applying them atomically to a resource.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::error::{ScimError, ScimType};
use crate::filter::Filter;
use crate::path::PatchPath;
use crate::schema::{AttrType, AttributeDef, Mutability, ResourceKind, PATCH_OP};
use crate::validate::{
    check_single, check_value, is_primary, revalidate, split_attributes, ReadOnly,
};
use crate::value::{comparable_def, elements, fold_case, get_ci, is_unassigned, take_ci, Resolved};

/// A parsed PATCH request body.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchRequest {
    pub operations: Vec<PatchOperation>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchOpKind {
    Add,
    Replace,
    Remove,
}

impl PatchOpKind {
    /// Operation names are case-insensitive: some clients send `"Add"`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Add, Self::Replace, Self::Remove]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Replace => "replace",
            Self::Remove => "remove",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PatchOperation {
    pub op: PatchOpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

impl PatchRequest {
    /// Parses a PATCH body: `schemas` must include the PatchOp URN and `Operations` must be a
    /// non-empty array; `add`/`replace` need a `value`. Errors are 400 `invalidSyntax`,
    /// `invalidPath` (with position) or `invalidValue`.
    pub fn parse(body: &Value) -> Result<Self, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("the PATCH body must be a JSON object"))?;
        let declares_patch = get_ci(obj, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter()
                    .filter_map(Value::as_str)
                    .any(|u| u.eq_ignore_ascii_case(PATCH_OP))
            });
        if !declares_patch {
            return Err(ScimError::invalid_syntax(format!(
                "\"schemas\" must include {PATCH_OP:?}"
            )));
        }
        let ops = get_ci(obj, "Operations")
            .and_then(Value::as_array)
            .filter(|ops| !ops.is_empty())
            .ok_or_else(|| ScimError::invalid_syntax("\"Operations\" must be a non-empty array"))?;
        let operations = ops
            .iter()
            .enumerate()
            .map(|(i, op)| parse_operation(i, op))
            .collect::<Result<_, _>>()?;
        Ok(Self { operations })
    }
}

fn parse_operation(index: usize, op: &Value) -> Result<PatchOperation, ScimError> {
    let obj = op.as_object().ok_or_else(|| {
        ScimError::invalid_syntax(format!("operation {index} must be a JSON object"))
    })?;
    let kind = get_ci(obj, "op")
        .and_then(Value::as_str)
        .and_then(PatchOpKind::parse)
        .ok_or_else(|| {
            ScimError::invalid_syntax(format!(
                "operation {index}: \"op\" must be \"add\", \"replace\" or \"remove\""
            ))
        })?;
    let path = match get_ci(obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(PatchPath::parse(p)?),
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "operation {index}: \"path\" must be a string"
            )))
        }
    };
    let value = get_ci(obj, "value").filter(|v| !v.is_null()).cloned();
    if kind != PatchOpKind::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!(
            "operation {index}: {} needs a \"value\"",
            kind.as_str()
        )));
    }
    Ok(PatchOperation {
        op: kind,
        path,
        value,
    })
}

/// Applies all operations to a copy of `resource` and returns the result, re-validated; the
/// caller stores it only on `Ok`, which makes the request atomic as RFC 7644 requires.
pub fn apply_patch(
    kind: ResourceKind,
    resource: &Value,
    patch: &PatchRequest,
) -> Result<Value, ScimError> {
    let mut doc = resource
        .as_object()
        .cloned()
        .ok_or_else(|| ScimError::internal("the stored resource is not a JSON object"))?;
    for op in &patch.operations {
        apply_operation(kind, &mut doc, op)?;
    }
    // RFC 7644 §3.5.2.2: removing a required attribute is a mutability error.
    revalidate(kind, &doc, ScimType::Mutability)
}

/// The target of one operation: an attribute, maybe a sub-attribute, maybe a value filter.
struct Target<'a> {
    attr: Resolved,
    filter: Option<&'a Filter>,
}

impl Target<'_> {
    fn name(&self) -> String {
        let mut name = self.attr.top_level_name();
        if let Some(filter) = self.filter {
            name.push_str(&format!("[{filter}]"));
        }
        if let Some(sub) = self.attr.sub {
            name.push('.');
            name.push_str(sub.name);
        }
        name
    }
}

fn apply_operation(
    kind: ResourceKind,
    doc: &mut Map<String, Value>,
    op: &PatchOperation,
) -> Result<(), ScimError> {
    let Some(path) = &op.path else {
        if op.op == PatchOpKind::Remove {
            return Err(ScimError::no_target("a remove operation needs a path"));
        }
        let attrs = op
            .value
            .as_ref()
            .and_then(Value::as_object)
            .ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "without a path, the value of {} must be a JSON object of attributes",
                    op.op.as_str()
                ))
            })?;
        for (attr, value) in split_attributes(kind, attrs)? {
            let target = Target { attr, filter: None };
            check_writable(&target)?;
            apply_to(doc, op.op, &target, Some(&value))?;
        }
        return Ok(());
    };
    let target = resolve_target(kind, path)?;
    check_writable(&target)?;
    apply_to(doc, op.op, &target, op.value.as_ref())
}

fn resolve_target(kind: ResourceKind, path: &PatchPath) -> Result<Target<'_>, ScimError> {
    let mut attr = path
        .attr
        .without_sub()
        .resolve(kind)
        .ok_or_else(|| ScimError::invalid_path(format!("unknown attribute in path {path}")))?;
    if let Some(sub) = path.target_sub_attr() {
        attr.sub = Some(attr.def.sub_attribute(sub).ok_or_else(|| {
            ScimError::invalid_path(format!(
                "{} has no sub-attribute {sub:?}",
                attr.top_level_name()
            ))
        })?);
    }
    let filter = path.value_filter.as_ref();
    if filter.is_some() && !(attr.def.multi_valued && attr.def.type_ == AttrType::Complex) {
        return Err(ScimError::invalid_path(format!(
            "a value filter needs a multi-valued complex attribute, not {}",
            attr.top_level_name()
        )));
    }
    Ok(Target { attr, filter })
}

/// readOnly attributes cannot be patched (RFC 7644 §3.5.2: 400 `mutability`).
fn check_writable(target: &Target<'_>) -> Result<(), ScimError> {
    let read_only = std::iter::once(target.attr.def)
        .chain(target.attr.sub)
        .any(|d| d.mutability == Mutability::ReadOnly);
    if read_only {
        return Err(ScimError::mutability(format!(
            "{} is readOnly",
            target.name()
        )));
    }
    Ok(())
}

/// An immutable attribute may be set once; afterwards it may not change (RFC 7643 §7).
fn check_immutable(
    def: &AttributeDef,
    old: Option<&Value>,
    new: Option<&Value>,
    name: &str,
) -> Result<(), ScimError> {
    let assigned = old.is_some_and(|o| !is_unassigned(o));
    if def.mutability == Mutability::Immutable && assigned && old != new {
        return Err(ScimError::mutability(format!("{name} is immutable")));
    }
    Ok(())
}

fn apply_to(
    doc: &mut Map<String, Value>,
    op: PatchOpKind,
    target: &Target<'_>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let container = match target.attr.extension {
        None => doc,
        Some(ext) => {
            let existing = match take_ci(doc, ext.id) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            doc.entry(ext.id.to_owned())
                .or_insert(Value::Object(existing))
                .as_object_mut()
                .ok_or_else(|| ScimError::internal("extension is not an object"))?
        }
    };
    let def = target.attr.def;
    let current = take_ci(container, def.name);
    let value_for = |op: PatchOpKind| {
        value.ok_or_else(|| ScimError::invalid_value(format!("{} needs a \"value\"", op.as_str())))
    };
    let updated = match (op, target.filter, target.attr.sub) {
        (PatchOpKind::Remove, None, None) => remove_whole(def, current, value, &target.name())?,
        (_, None, None) => set_whole(op, def, current, value_for(op)?, &target.name())?,
        (_, None, Some(sub)) => {
            let new = match op {
                PatchOpKind::Remove => None,
                _ => Some(check_value(
                    sub,
                    value_for(op)?,
                    ReadOnly::Drop,
                    &target.name(),
                )?),
            };
            set_sub_everywhere(def, sub, current, new, target)?
        }
        (_, Some(filter), sub) => {
            let value = match op {
                PatchOpKind::Remove => None,
                _ => Some(value_for(op)?),
            };
            patch_filtered(op, def, filter, sub, current, value, target)?
        }
    };
    if let Some(v) = updated.filter(|v| !is_unassigned(v)) {
        container.insert(def.name.to_owned(), v);
    }
    Ok(())
}

/// `remove` of a whole attribute. With a `value` on a multi-valued attribute, only the listed
/// values go (matched on their `value` sub-attribute): how Azure AD removes group members.
/// Linear in the number of values, so large groups stay cheap.
fn remove_whole(
    def: &'static AttributeDef,
    current: Option<Value>,
    value: Option<&Value>,
    name: &str,
) -> Result<Option<Value>, ScimError> {
    if let (true, Some(listed)) = (def.multi_valued, value) {
        let listed = elements(listed);
        let keys: HashSet<String> = listed.iter().filter_map(|l| value_key(def, l)).collect();
        let unkeyed: Vec<&Value> = listed
            .iter()
            .filter(|l| value_key(def, l).is_none())
            .collect();
        let remaining = into_elements(current)
            .into_iter()
            .filter(|e| match value_key(def, e) {
                Some(k) => !keys.contains(&k),
                None => !unkeyed.contains(&e),
            })
            .collect();
        return Ok(Some(Value::Array(remaining)));
    }
    check_immutable(def, current.as_ref(), None, name)?;
    Ok(None)
}

/// `add`/`replace` of a whole attribute: multi-valued `add` appends new values (a value equal,
/// by its `value`, to an existing one is merged into it instead, so members are never
/// duplicated), `replace` replaces them all; complex values merge sub-attributes; simple
/// values are overwritten.
fn set_whole(
    op: PatchOpKind,
    def: &'static AttributeDef,
    current: Option<Value>,
    value: &Value,
    name: &str,
) -> Result<Option<Value>, ScimError> {
    let new = check_value(def, value, ReadOnly::Drop, name)?;
    if def.multi_valued {
        let mut items = match op {
            PatchOpKind::Add => into_elements(current),
            _ => Vec::new(),
        };
        let before = primary_flags(&items);
        let mut index: HashMap<String, usize> = items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((value_key(def, v)?, i)))
            .collect();
        for item in into_elements(Some(new)) {
            match value_key(def, &item) {
                Some(key) => match index.get(&key) {
                    Some(&i) => {
                        if let Some(slot) = items.get_mut(i) {
                            merge_element(def, slot, item, name)?;
                        }
                    }
                    None => {
                        index.insert(key, items.len());
                        items.push(item);
                    }
                },
                // Values without a `value` are rare and small: a linear scan is fine.
                None if items.contains(&item) => {}
                None => items.push(item),
            }
        }
        enforce_single_primary(&mut items, &before, name)?;
        return Ok(Some(Value::Array(items)));
    }
    if def.type_ == AttrType::Complex {
        let mut item = current.unwrap_or_else(|| Value::Object(Map::new()));
        merge_element(def, &mut item, new, name)?;
        return Ok(Some(item));
    }
    check_immutable(def, current.as_ref(), Some(&new), name)?;
    Ok(Some(new))
}

/// A sub-attribute path without filter (`name.givenName`, `emails.type`): applies to the
/// complex value, or to every value of a multi-valued one (creating one if there is none).
fn set_sub_everywhere(
    def: &'static AttributeDef,
    sub: &'static AttributeDef,
    current: Option<Value>,
    new: Option<Value>,
    target: &Target<'_>,
) -> Result<Option<Value>, ScimError> {
    let name = target.name();
    if !def.multi_valued {
        let mut item = current.unwrap_or_else(|| Value::Object(Map::new()));
        set_sub(&mut item, sub, new, &name)?;
        return Ok(Some(item));
    }
    let mut items = into_elements(current);
    let before = primary_flags(&items);
    if items.is_empty() && new.is_some() {
        items.push(Value::Object(Map::new()));
    }
    for item in &mut items {
        set_sub(item, sub, new.clone(), &name)?;
    }
    enforce_single_primary(&mut items, &before, &name)?;
    Ok(Some(Value::Array(items)))
}

/// A value-filtered path (`emails[type eq "work"]`, `members[value eq "x"].display`).
/// `remove`/`replace` matching nothing is 400 `noTarget` (RFC 7644 §3.5.2.2-3); `add` matching
/// nothing creates the value the filter's `eq` terms describe.
fn patch_filtered(
    op: PatchOpKind,
    def: &'static AttributeDef,
    filter: &Filter,
    sub: Option<&'static AttributeDef>,
    current: Option<Value>,
    value: Option<&Value>,
    target: &Target<'_>,
) -> Result<Option<Value>, ScimError> {
    let name = target.name();
    let mut items = into_elements(current);
    let before = primary_flags(&items);
    let mut matched: Vec<bool> = items
        .iter()
        .map(|e| filter.matches_element(def, e))
        .collect();
    if !matched.contains(&true) {
        let assignments = match op {
            PatchOpKind::Add => filter.equality_assignments(),
            _ => None,
        };
        let Some(assignments) = assignments else {
            return Err(ScimError::no_target(format!("no value matches {name}")));
        };
        let seed: Map<String, Value> = assignments
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        items.push(check_single(
            def,
            &Value::Object(seed),
            ReadOnly::Drop,
            &name,
        )?);
        matched.push(true);
    }
    let selected = items
        .iter_mut()
        .zip(&matched)
        .filter(|(_, m)| **m)
        .map(|(e, _)| e);
    match (op, sub, value) {
        (PatchOpKind::Remove, None, _) => {
            let kept = items
                .into_iter()
                .zip(&matched)
                .filter(|(_, m)| !**m)
                .map(|(e, _)| e);
            return Ok(Some(Value::Array(kept.collect())));
        }
        (PatchOpKind::Remove, Some(sub), _) => {
            for item in selected {
                set_sub(item, sub, None, &name)?;
            }
        }
        (_, Some(sub), Some(value)) => {
            let new = check_value(sub, value, ReadOnly::Drop, &name)?;
            for item in selected {
                set_sub(item, sub, Some(new.clone()), &name)?;
            }
        }
        (_, None, Some(value)) => {
            let new = check_single(def, value, ReadOnly::Drop, &name)?;
            for item in selected {
                if op == PatchOpKind::Replace {
                    replace_element(def, item, new.clone(), &name)?;
                } else {
                    merge_element(def, item, new.clone(), &name)?;
                }
            }
        }
        (_, _, None) => {
            return Err(ScimError::invalid_value(format!(
                "{} needs a \"value\"",
                op.as_str()
            )))
        }
    }
    enforce_single_primary(&mut items, &before, &name)?;
    Ok(Some(Value::Array(items)))
}

/// Sets (or with `None` removes) one sub-attribute of a complex value.
fn set_sub(
    item: &mut Value,
    sub: &'static AttributeDef,
    new: Option<Value>,
    name: &str,
) -> Result<(), ScimError> {
    if !item.is_object() {
        *item = Value::Object(Map::new());
    }
    let Some(obj) = item.as_object_mut() else {
        return Ok(());
    };
    let old = take_ci(obj, sub.name);
    check_immutable(sub, old.as_ref(), new.as_ref(), name)?;
    match new.or(if sub.mutability == Mutability::ReadOnly {
        old
    } else {
        None
    }) {
        Some(v) if !is_unassigned(&v) => {
            obj.insert(sub.name.to_owned(), v);
        }
        _ => {}
    }
    Ok(())
}

/// Merges the sub-attributes of `new` (canonical) into a complex value.
fn merge_element(
    def: &'static AttributeDef,
    item: &mut Value,
    new: Value,
    name: &str,
) -> Result<(), ScimError> {
    let Value::Object(new) = new else {
        return Err(ScimError::invalid_value(format!(
            "{name} must be a JSON object"
        )));
    };
    for (key, v) in new {
        if let Some(sub) = def.sub_attribute(&key) {
            set_sub(item, sub, Some(v), name)?;
        }
    }
    Ok(())
}

/// Replaces a complex value by `new`, keeping readOnly sub-attributes the server maintains.
fn replace_element(
    def: &'static AttributeDef,
    item: &mut Value,
    new: Value,
    name: &str,
) -> Result<(), ScimError> {
    for sub in def.sub_attributes {
        let v = new.as_object().and_then(|o| o.get(sub.name)).cloned();
        set_sub(item, sub, v, name)?;
    }
    Ok(())
}

fn into_elements(current: Option<Value>) -> Vec<Value> {
    match current {
        Some(Value::Array(a)) => a,
        Some(v) if !v.is_null() => vec![v],
        _ => Vec::new(),
    }
}

/// The identity of one value of a multi-valued attribute: its `value` sub-attribute (or the
/// value itself for simple attributes), case-folded unless caseExact. `None` if it has none.
fn value_key(def: &'static AttributeDef, v: &Value) -> Option<String> {
    let leaf = if def.type_ == AttrType::Complex {
        v.get("value")?
    } else {
        v
    };
    match leaf {
        Value::String(s) => Some(fold_case(Some(comparable_def(def)), s)),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn primary_flags(items: &[Value]) -> Vec<bool> {
    items.iter().map(is_primary).collect()
}

/// RFC 7644 §3.5.2: when a value becomes primary, every other value stops being primary.
/// Two values becoming primary in one operation is ambiguous: 400 `invalidValue`.
fn enforce_single_primary(
    items: &mut [Value],
    before: &[bool],
    name: &str,
) -> Result<(), ScimError> {
    let newly: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(i, v)| is_primary(v) && !before.get(*i).copied().unwrap_or(false))
        .map(|(i, _)| i)
        .collect();
    match newly.as_slice() {
        [] => Ok(()),
        [keep] => {
            for (i, item) in items.iter_mut().enumerate() {
                if i != *keep && is_primary(item) {
                    if let Some(obj) = item.as_object_mut() {
                        obj.insert("primary".to_owned(), Value::Bool(false));
                    }
                }
            }
            Ok(())
        }
        _ => Err(ScimError::invalid_value(format!(
            "more than one value of {name} would be primary"
        ))),
    }
}

/// The top-level attributes a patch touches, canonical (`userName`, `urn:...:User:immutableId`);
/// names that resolve to no schema are reported as written.
pub fn touched_attributes(patch: &PatchRequest) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |name: String| {
        if !out.contains(&name) {
            out.push(name);
        }
    };
    for op in &patch.operations {
        match (&op.path, op.value.as_ref().and_then(Value::as_object)) {
            (Some(path), _) => {
                let attr = path.attr.without_sub();
                push(
                    ResourceKind::ALL
                        .iter()
                        .find_map(|k| attr.resolve(*k))
                        .map_or_else(|| attr.to_string(), |r| r.top_level_name()),
                );
            }
            (None, Some(attrs)) => {
                for (key, value) in attrs {
                    if key.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    let names = ResourceKind::ALL.iter().find_map(|k| {
                        split_attributes(*k, &Map::from_iter([(key.clone(), value.clone())])).ok()
                    });
                    match names {
                        Some(resolved) => {
                            resolved.iter().for_each(|(r, _)| push(r.top_level_name()))
                        }
                        None => push(key.clone()),
                    }
                }
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
