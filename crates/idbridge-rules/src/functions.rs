//! The function library: signatures for the checker and implementations for evaluation.
//!
//! Every implementation pulls its arguments lazily through [`Args`], so `IIF`, `Coalesce`,
//! `Switch`, `And` and `Or` only evaluate the branches they need.

use base64::Engine as _;
use idbridge_core::{ObjectGuid, Sid};
use time::OffsetDateTime;

use crate::compile::Node;
use crate::value::{AttributeSource, Ty, Type, Value};

/// What an argument position accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pt {
    Is(Ty),
    /// A string or a reference (a DN reads as text).
    Text,
    /// Bytes, or text taken as UTF-8.
    Binary,
    Scalar,
    /// Generic: all `T` arguments of one call must agree; the result has that type.
    T,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Param {
    pub pt: Pt,
    /// Whether a multi-valued argument is accepted here.
    pub multi: bool,
}

const fn one(pt: Pt) -> Param {
    Param { pt, multi: false }
}
const fn many(pt: Pt) -> Param {
    Param { pt, multi: true }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Ret {
    Is(Type),
    /// The unified `T`, multi-valued when any `T` argument is.
    T,
    /// The unified `T`, single-valued.
    TOne,
}

pub(crate) type Eval = fn(&Args<'_>) -> Result<Vec<Value>, String>;

#[derive(Debug)]
pub(crate) struct Func {
    pub name: &'static str,
    /// Usage shown in arity errors.
    pub usage: &'static str,
    pub params: &'static [Param],
    /// Repeating group after `params` (empty: fixed arity).
    pub rest: &'static [Param],
    /// Minimum number of repeating groups.
    pub rest_min: usize,
    pub ret: Ret,
    pub eval: Eval,
}

/// Lazy access to a call's arguments during evaluation.
pub(crate) struct Args<'a> {
    pub nodes: &'a [Node],
    pub src: &'a dyn AttributeSource,
}

fn mismatch(want: &str, got: &Value) -> String {
    format!("expected {want}, got a value of type {}", got.ty())
}

impl Args<'_> {
    fn len(&self) -> usize {
        self.nodes.len()
    }
    fn all(&self, i: usize) -> Result<Vec<Value>, String> {
        self.nodes
            .get(i)
            .map_or(Ok(Vec::new()), |n| n.eval(self.src))
    }
    fn one(&self, i: usize) -> Result<Option<Value>, String> {
        self.nodes.get(i).map_or(Ok(None), |n| n.first(self.src))
    }
    fn text(&self, i: usize) -> Result<Option<String>, String> {
        match self.one(i)? {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(Value::Ref(dn)) => Ok(Some(dn.to_string())),
            Some(v) => Err(mismatch("string", &v)),
        }
    }
    fn int(&self, i: usize) -> Result<Option<i64>, String> {
        match self.one(i)? {
            None => Ok(None),
            Some(Value::Int(n)) => Ok(Some(n)),
            Some(v) => Err(mismatch("int", &v)),
        }
    }
    /// Conditions: absent counts as false.
    fn truth(&self, i: usize) -> Result<bool, String> {
        match self.one(i)? {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(v) => Err(mismatch("bool", &v)),
        }
    }
    fn bytes(&self, i: usize) -> Result<Option<Vec<u8>>, String> {
        match self.one(i)? {
            None => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(b)),
            Some(Value::Str(s)) => Ok(Some(s.into_bytes())),
            Some(Value::Ref(dn)) => Ok(Some(dn.to_string().into_bytes())),
            Some(v) => Err(mismatch("bytes", &v)),
        }
    }
    fn datetime(&self, i: usize) -> Result<Option<OffsetDateTime>, String> {
        match self.one(i)? {
            None => Ok(None),
            Some(Value::DateTime(t)) => Ok(Some(t)),
            Some(v) => Err(mismatch("datetime", &v)),
        }
    }
}

fn opt(v: Option<Value>) -> Vec<Value> {
    v.into_iter().collect()
}
fn text_out(v: Option<String>) -> Vec<Value> {
    opt(v.map(Value::Str))
}
fn bool_out(b: bool) -> Vec<Value> {
    vec![Value::Bool(b)]
}

/// "Has a value": at least one value that is not the empty string.
fn present(values: &[Value]) -> bool {
    values
        .iter()
        .any(|v| !matches!(v, Value::Str(s) if s.is_empty()))
}

/// Applies `f` to the (text, int) argument pair, propagating absence.
fn text_int(a: &Args<'_>, f: fn(&str, usize) -> String) -> Result<Vec<Value>, String> {
    let (Some(s), Some(n)) = (a.text(0)?, a.int(1)?) else {
        return Ok(Vec::new());
    };
    Ok(text_out(Some(f(&s, usize::try_from(n).unwrap_or(0)))))
}

fn map_text(a: &Args<'_>, f: fn(&str) -> String) -> Result<Vec<Value>, String> {
    Ok(text_out(a.text(0)?.map(|s| f(&s))))
}

fn bit_op(a: &Args<'_>, f: fn(i64, i64) -> i64) -> Result<Vec<Value>, String> {
    Ok(match (a.int(0)?, a.int(1)?) {
        (Some(x), Some(y)) => vec![Value::Int(f(x, y))],
        _ => Vec::new(),
    })
}

/// Strings and references compare case-insensitively, as AD compares them.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x.to_lowercase() == y.to_lowercase(),
        _ => a == b,
    }
}

fn logic(a: &Args<'_>, stop_on: bool) -> Result<Vec<Value>, String> {
    for i in 0..a.len() {
        if a.truth(i)? == stop_on {
            return Ok(bool_out(stop_on));
        }
    }
    Ok(bool_out(!stop_on))
}

/// Windows FILETIME epoch (1601-01-01) in 100 ns ticks before the Unix epoch.
const FILETIME_UNIX_OFFSET: i128 = 116_444_736_000_000_000;

fn date_from_num(ft: i64) -> Result<Vec<Value>, String> {
    // 0 and i64::MAX mean "never" in accountExpires / pwdLastSet.
    if ft == 0 || ft == i64::MAX {
        return Ok(Vec::new());
    }
    let nanos = (i128::from(ft) - FILETIME_UNIX_OFFSET) * 100;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map(|t| vec![Value::DateTime(t)])
        .map_err(|_| format!("DateFromNum: {ft} is not a representable FILETIME"))
}

fn num_from_date(t: OffsetDateTime) -> Result<Vec<Value>, String> {
    let ticks = t.unix_timestamp_nanos() / 100 + FILETIME_UNIX_OFFSET;
    i64::try_from(ticks)
        .map(|n| vec![Value::Int(n)])
        .map_err(|_| format!("NumFromDate: {t} does not fit a FILETIME"))
}

const TEXT: Type = Type::one(Ty::Str);
const INT: Type = Type::one(Ty::Int);
const BOOL: Type = Type::one(Ty::Bool);

use Pt::{Binary, Is, Scalar, Text, T};

/// The function table; names match case-insensitively.
pub(crate) static FUNCS: &[Func] = &[
    Func {
        name: "And",
        usage: "And(condition, condition, ...)",
        params: &[one(Is(Ty::Bool))],
        rest: &[one(Is(Ty::Bool))],
        rest_min: 1,
        ret: Ret::Is(BOOL),
        eval: |a| logic(a, false),
    },
    Func {
        name: "Append",
        usage: "Append(value, suffix)",
        params: &[one(Text), one(Text)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| {
            let suffix = a.text(1)?.unwrap_or_default();
            Ok(text_out(a.text(0)?.map(|s| s + &suffix)))
        },
    },
    Func {
        name: "BitAnd",
        usage: "BitAnd(value, mask)",
        params: &[one(Is(Ty::Int)), one(Is(Ty::Int))],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(INT),
        eval: |a| bit_op(a, |x, y| x & y),
    },
    Func {
        name: "BitOr",
        usage: "BitOr(value, mask)",
        params: &[one(Is(Ty::Int)), one(Is(Ty::Int))],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(INT),
        eval: |a| bit_op(a, |x, y| x | y),
    },
    Func {
        name: "CNum",
        usage: "CNum(text)",
        params: &[one(Text)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(INT),
        eval: |a| {
            let Some(s) = a.text(0)? else {
                return Ok(Vec::new());
            };
            s.trim()
                .parse()
                .map(|n| vec![Value::Int(n)])
                .map_err(|_| format!("CNum: {s:?} is not an integer"))
        },
    },
    Func {
        name: "Coalesce",
        usage: "Coalesce(value, value, ...)",
        params: &[many(T)],
        rest: &[many(T)],
        rest_min: 1,
        ret: Ret::T,
        eval: |a| {
            for i in 0..a.len() {
                let v = a.all(i)?;
                if present(&v) {
                    return Ok(v);
                }
            }
            Ok(Vec::new())
        },
    },
    Func {
        name: "Contains",
        usage: "Contains(values, text)",
        params: &[many(Text), one(Text)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(BOOL),
        eval: |a| {
            let Some(needle) = a.text(1)? else {
                return Ok(bool_out(false));
            };
            let needle = needle.to_lowercase();
            let hay = a.all(0)?;
            Ok(bool_out(
                hay.iter()
                    .any(|v| v.to_string().to_lowercase().contains(&needle)),
            ))
        },
    },
    Func {
        name: "ConvertFromBase64",
        usage: "ConvertFromBase64(text)",
        params: &[one(Text)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(Type::one(Ty::Bytes)),
        eval: |a| {
            let Some(s) = a.text(0)? else {
                return Ok(Vec::new());
            };
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map(|b| vec![Value::Bytes(b)])
                .map_err(|e| format!("ConvertFromBase64: {e}"))
        },
    },
    Func {
        name: "ConvertToBase64",
        usage: "ConvertToBase64(bytes or text)",
        params: &[one(Binary)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| {
            Ok(text_out(a.bytes(0)?.map(|b| {
                base64::engine::general_purpose::STANDARD.encode(b)
            })))
        },
    },
    Func {
        name: "Count",
        usage: "Count(values)",
        params: &[many(Scalar)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(INT),
        eval: |a| {
            let n = a.all(0)?.len();
            Ok(vec![Value::Int(i64::try_from(n).unwrap_or(i64::MAX))])
        },
    },
    Func {
        name: "CStr",
        usage: "CStr(value)",
        params: &[one(Scalar)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| Ok(text_out(a.one(0)?.map(|v| v.to_string()))),
    },
    Func {
        name: "DateFromNum",
        usage: "DateFromNum(filetime)",
        params: &[one(Is(Ty::Int))],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(Type::one(Ty::DateTime)),
        eval: |a| a.int(0)?.map_or(Ok(Vec::new()), date_from_num),
    },
    Func {
        name: "Eq",
        usage: "Eq(value, value)",
        params: &[one(T), one(T)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(BOOL),
        eval: |a| {
            Ok(bool_out(match (a.one(0)?, a.one(1)?) {
                (None, None) => true,
                (Some(x), Some(y)) => same(&x, &y),
                _ => false,
            }))
        },
    },
    Func {
        name: "Guid",
        usage: "Guid(bytes)",
        params: &[one(Is(Ty::Bytes))],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| {
            let Some(b) = a.bytes(0)? else {
                return Ok(Vec::new());
            };
            ObjectGuid::from_bytes(&b)
                .map(|g| text_out(Some(g.to_string())))
                .map_err(|e| format!("Guid: {e}"))
        },
    },
    Func {
        name: "IIF",
        usage: "IIF(condition, then, else)",
        params: &[one(Is(Ty::Bool)), many(T), many(T)],
        rest: &[],
        rest_min: 0,
        ret: Ret::T,
        eval: |a| a.all(if a.truth(0)? { 1 } else { 2 }),
    },
    Func {
        name: "IsNullOrEmpty",
        usage: "IsNullOrEmpty(values)",
        params: &[many(Scalar)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(BOOL),
        eval: |a| Ok(bool_out(!present(&a.all(0)?))),
    },
    Func {
        name: "IsPresent",
        usage: "IsPresent(values)",
        params: &[many(Scalar)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(BOOL),
        eval: |a| Ok(bool_out(present(&a.all(0)?))),
    },
    Func {
        name: "Item",
        usage: "Item(values, position)",
        params: &[many(T), one(Is(Ty::Int))],
        rest: &[],
        rest_min: 0,
        ret: Ret::TOne,
        eval: |a| {
            let n = a.int(1)?.and_then(|n| usize::try_from(n).ok());
            let Some(n) = n.and_then(|n| n.checked_sub(1)) else {
                return Ok(Vec::new());
            };
            Ok(opt(a.all(0)?.into_iter().nth(n)))
        },
    },
    Func {
        name: "Join",
        usage: "Join(separator, values, ...)",
        params: &[one(Text)],
        rest: &[many(Scalar)],
        rest_min: 1,
        ret: Ret::Is(TEXT),
        eval: |a| {
            let sep = a.text(0)?.unwrap_or_default();
            let mut parts = Vec::new();
            for i in 1..a.len() {
                parts.extend(a.all(i)?.iter().map(ToString::to_string));
            }
            parts.retain(|p| !p.is_empty());
            Ok(if parts.is_empty() {
                Vec::new()
            } else {
                text_out(Some(parts.join(&sep)))
            })
        },
    },
    Func {
        name: "Left",
        usage: "Left(text, count)",
        params: &[one(Text), one(Is(Ty::Int))],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| text_int(a, |s, n| s.chars().take(n).collect()),
    },
    Func {
        name: "Mid",
        usage: "Mid(text, start, count)",
        params: &[one(Text), one(Is(Ty::Int)), one(Is(Ty::Int))],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| {
            let (Some(s), Some(start), Some(len)) = (a.text(0)?, a.int(1)?, a.int(2)?) else {
                return Ok(Vec::new());
            };
            let skip = usize::try_from(start.saturating_sub(1)).unwrap_or(0);
            let take = usize::try_from(len).unwrap_or(0);
            Ok(text_out(Some(s.chars().skip(skip).take(take).collect())))
        },
    },
    Func {
        name: "Not",
        usage: "Not(condition)",
        params: &[one(Is(Ty::Bool))],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(BOOL),
        eval: |a| Ok(bool_out(!a.truth(0)?)),
    },
    Func {
        name: "NumFromDate",
        usage: "NumFromDate(datetime)",
        params: &[one(Is(Ty::DateTime))],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(INT),
        eval: |a| a.datetime(0)?.map_or(Ok(Vec::new()), num_from_date),
    },
    Func {
        name: "Or",
        usage: "Or(condition, condition, ...)",
        params: &[one(Is(Ty::Bool))],
        rest: &[one(Is(Ty::Bool))],
        rest_min: 1,
        ret: Ret::Is(BOOL),
        eval: |a| logic(a, true),
    },
    Func {
        name: "Replace",
        usage: "Replace(text, find, replacement)",
        params: &[one(Text), one(Text), one(Text)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| {
            let Some(s) = a.text(0)? else {
                return Ok(Vec::new());
            };
            let find = a.text(1)?.unwrap_or_default();
            let with = a.text(2)?.unwrap_or_default();
            Ok(text_out(Some(if find.is_empty() {
                s
            } else {
                s.replace(&find, &with)
            })))
        },
    },
    Func {
        name: "Right",
        usage: "Right(text, count)",
        params: &[one(Text), one(Is(Ty::Int))],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| {
            text_int(a, |s, n| {
                let len = s.chars().count();
                s.chars().skip(len.saturating_sub(n)).collect()
            })
        },
    },
    Func {
        name: "Split",
        usage: "Split(text, separator)",
        params: &[one(Text), one(Text)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(Type::many(Ty::Str)),
        eval: |a| {
            let Some(s) = a.text(0)? else {
                return Ok(Vec::new());
            };
            let sep = a.text(1)?.unwrap_or_default();
            if sep.is_empty() {
                return Ok(text_out(Some(s)));
            }
            Ok(s.split(sep.as_str())
                .filter(|p| !p.is_empty())
                .map(|p| Value::Str(p.to_string()))
                .collect())
        },
    },
    Func {
        name: "StringFromSid",
        usage: "StringFromSid(bytes)",
        params: &[one(Is(Ty::Bytes))],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| {
            let Some(b) = a.bytes(0)? else {
                return Ok(Vec::new());
            };
            Sid::from_bytes(&b)
                .map(|s| text_out(Some(s.to_string())))
                .map_err(|e| format!("StringFromSid: {e}"))
        },
    },
    Func {
        name: "Switch",
        usage: "Switch(key, default, case1, value1, case2, value2, ...)",
        params: &[one(Text), one(T)],
        rest: &[one(Text), one(T)],
        rest_min: 1,
        ret: Ret::TOne,
        eval: |a| {
            if let Some(key) = a.text(0)? {
                for case in (2..a.len()).step_by(2) {
                    if a.text(case)?.as_deref() == Some(key.as_str()) {
                        return a.all(case + 1);
                    }
                }
            }
            a.all(1)
        },
    },
    Func {
        name: "ToLower",
        usage: "ToLower(text)",
        params: &[one(Text)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| map_text(a, str::to_lowercase),
    },
    Func {
        name: "ToUpper",
        usage: "ToUpper(text)",
        params: &[one(Text)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| map_text(a, str::to_uppercase),
    },
    Func {
        name: "Trim",
        usage: "Trim(text)",
        params: &[one(Text)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| map_text(a, |s| s.trim().to_string()),
    },
    Func {
        name: "Word",
        usage: "Word(text, number, delimiters)",
        params: &[one(Text), one(Is(Ty::Int)), one(Text)],
        rest: &[],
        rest_min: 0,
        ret: Ret::Is(TEXT),
        eval: |a| {
            let (Some(s), Some(n)) = (a.text(0)?, a.int(1)?) else {
                return Ok(Vec::new());
            };
            let index = usize::try_from(n)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .ok_or_else(|| format!("Word: word number must be 1 or more, got {n}"))?;
            let delims = a.text(2)?.unwrap_or_else(|| " ".to_string());
            Ok(text_out(
                s.split(|c| delims.contains(c))
                    .filter(|w| !w.is_empty())
                    .nth(index)
                    .map(str::to_string),
            ))
        },
    },
];

/// Finds a function by case-insensitive name.
pub(crate) fn lookup(name: &str) -> Option<&'static Func> {
    FUNCS.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

impl Func {
    /// The parameter at argument position `i`, if the arity allows one.
    fn param(&self, i: usize) -> Option<Param> {
        if let Some(p) = self.params.get(i) {
            return Some(*p);
        }
        let group = self.rest.len();
        let j = i.checked_sub(self.params.len())?;
        self.rest.get(j.checked_rem(group)?).copied()
    }

    fn arity_ok(&self, n: usize) -> bool {
        let fixed = self.params.len();
        match n.checked_sub(fixed + self.rest_min * self.rest.len()) {
            None => false,
            Some(extra) if self.rest.is_empty() => extra == 0,
            Some(extra) => extra % self.rest.len() == 0,
        }
    }

    /// Checks argument types; on failure returns the offending argument index (or `None`
    /// for an arity error) and a message.
    pub(crate) fn check(&self, args: &[Type]) -> Result<Type, (Option<usize>, String)> {
        if !self.arity_ok(args.len()) {
            return Err((
                None,
                format!(
                    "{} expects {}, got {} argument{}",
                    self.name,
                    self.usage,
                    args.len(),
                    if args.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        let mut generic: Option<Ty> = None;
        let mut generic_multi = false;
        for (i, (arg, param)) in args
            .iter()
            .zip((0..).map_while(|i| self.param(i)))
            .enumerate()
        {
            let at = |msg: String| {
                (
                    Some(i),
                    format!("argument {} of {}: {msg}", i + 1, self.name),
                )
            };
            if arg.multi && !param.multi {
                return Err(at(format!(
                    "expected a single value, got {arg}; pick one with Item(...) or Join(...)"
                )));
            }
            let ok = match param.pt {
                _ if arg.ty == Ty::Any => true,
                Pt::Is(t) => arg.ty == t,
                Pt::Text => matches!(arg.ty, Ty::Str | Ty::Ref),
                Pt::Binary => matches!(arg.ty, Ty::Bytes | Ty::Str | Ty::Ref),
                Pt::Scalar => true,
                Pt::T => {
                    generic_multi |= arg.multi;
                    match generic {
                        Some(t) if t != arg.ty => {
                            return Err(at(format!(
                                "expected {t} like the other values, got {}",
                                arg.ty
                            )))
                        }
                        _ => generic = Some(arg.ty),
                    }
                    true
                }
            };
            if !ok {
                let want = match param.pt {
                    Pt::Is(t) => t.to_string(),
                    Pt::Binary => "bytes or string".to_string(),
                    _ => "string".to_string(),
                };
                return Err(at(format!("expected {want}, got {arg}")));
            }
        }
        let t = generic.unwrap_or(Ty::Any);
        Ok(match self.ret {
            Ret::Is(ty) => ty,
            Ret::T => Type {
                ty: t,
                multi: generic_multi,
            },
            Ret::TOne => Type::one(t),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use idbridge_core::{AttrName, Dn};

    use super::*;
    use crate::{catalog, compile, syntax};

    fn jack() -> HashMap<AttrName, Vec<Value>> {
        let s = |x: &str| Value::Str(x.to_string());
        HashMap::from([
            (AttrName::from("givenName"), vec![s("Jack")]),
            (AttrName::from("sn"), vec![s("Smith")]),
            (AttrName::from("displayName"), vec![s("  Jack Smith  ")]),
            (AttrName::from("title"), vec![s("")]),
            (AttrName::from("userAccountControl"), vec![s("514")]),
            (
                AttrName::from("proxyAddresses"),
                vec![s("SMTP:jack@lab.test"), s("smtp:js@lab.test")],
            ),
            (
                AttrName::from("manager"),
                vec![s("CN=Boss,OU=Staff,DC=lab")],
            ),
            (
                AttrName::from("objectGUID"),
                vec![Value::Bytes((1..=16).collect())],
            ),
            (AttrName::from("pwdLastSet"), vec![s("133500000000000000")]),
            (
                AttrName::from("accountExpires"),
                vec![s("9223372036854775807")],
            ),
            (AttrName::from("whenCreated"), vec![s("20240117212000.0Z")]),
            (AttrName::from("employeeID"), vec![s("not a number")]),
            (AttrName::from("objectSid"), vec![Value::Bytes(sid_bytes())]),
        ])
    }

    fn sid_bytes() -> Vec<u8> {
        let mut b = vec![1, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21u32, 1, 2, 3, 1104] {
            b.extend(sub.to_le_bytes());
        }
        b
    }

    /// Compiles `expr` against the AD catalog and evaluates it on Jack.
    fn run(expr: &str) -> Result<Vec<Value>, String> {
        let ast = syntax::parse(expr).map_err(|e| e.message)?;
        let mut errors = Vec::new();
        let compiled = compile::compile(&ast, catalog::AD, &mut errors);
        let (node, _) = compiled.ok_or_else(|| format!("{errors:?}"))?;
        node.eval(&jack())
    }

    fn s(x: &str) -> Vec<Value> {
        vec![Value::Str(x.to_string())]
    }
    fn i(x: i64) -> Vec<Value> {
        vec![Value::Int(x)]
    }
    fn b(x: bool) -> Vec<Value> {
        vec![Value::Bool(x)]
    }
    fn none() -> Vec<Value> {
        Vec::new()
    }

    #[test]
    fn join() {
        assert_eq!(run(r#"Join(" ", [givenName], [sn])"#), Ok(s("Jack Smith")));
        assert_eq!(
            run(r#"Join(";", [proxyAddresses])"#),
            Ok(s("SMTP:jack@lab.test;smtp:js@lab.test"))
        );
        assert_eq!(
            run(r#"Join("-", [givenName], [initials], 7)"#),
            Ok(s("Jack-7"))
        );
        assert_eq!(run(r#"Join(" ", [initials], [title])"#), Ok(none()));
    }

    #[test]
    fn iif_is_lazy() {
        assert_eq!(run(r#"IIF(IsPresent([sn]), "yes", "no")"#), Ok(s("yes")));
        assert_eq!(run(r#"IIF(null, "yes", "no")"#), Ok(s("no")));
        assert_eq!(run(r#"IIF(true, "ok", Word("a", 0, " "))"#), Ok(s("ok")));
        assert_eq!(
            run(r#"IIF(false, "ok", Word("a", 0, " "))"#),
            Err("Word: word number must be 1 or more, got 0".to_string())
        );
        assert_eq!(
            run(r#"IIF(true, "ok", CStr(CNum([employeeID])))"#),
            Ok(s("ok"))
        );
    }

    #[test]
    fn left_right_mid_clamp() {
        assert_eq!(run(r#"Left([givenName], 2)"#), Ok(s("Ja")));
        assert_eq!(run(r#"Left([givenName], 99)"#), Ok(s("Jack")));
        assert_eq!(run(r#"Left([givenName], -1)"#), Ok(s("")));
        assert_eq!(run(r#"Left([initials], 1)"#), Ok(none()));
        assert_eq!(run(r#"Right([givenName], 3)"#), Ok(s("ack")));
        assert_eq!(run(r#"Right("Jürgen", 99)"#), Ok(s("Jürgen")));
        assert_eq!(run(r#"Mid("Jürgen", 2, 3)"#), Ok(s("ürg")));
        assert_eq!(run(r#"Mid("abc", 0, 2)"#), Ok(s("ab")));
        assert_eq!(run(r#"Mid("abc", 9, 2)"#), Ok(s("")));
        assert_eq!(run(r#"Mid("abc", 2, -5)"#), Ok(s("")));
    }

    #[test]
    fn text_functions() {
        assert_eq!(run("Trim([displayName])"), Ok(s("Jack Smith")));
        assert_eq!(run("ToLower([givenName])"), Ok(s("jack")));
        assert_eq!(run("ToUpper([sn])"), Ok(s("SMITH")));
        assert_eq!(run(r#"Replace([sn], "mith", "MYTH")"#), Ok(s("SMYTH")));
        assert_eq!(run(r#"Replace([sn], "", "x")"#), Ok(s("Smith")));
        assert_eq!(
            run(r#"Append([givenName], "@lab.test")"#),
            Ok(s("Jack@lab.test"))
        );
        assert_eq!(run(r#"Append([initials], "x")"#), Ok(none()));
        assert_eq!(run("CStr([manager])"), Ok(s("CN=Boss,OU=Staff,DC=lab")));
    }

    #[test]
    fn coalesce_skips_empty_strings() {
        assert_eq!(
            run(r#"Coalesce([title], [initials], [sn])"#),
            Ok(s("Smith"))
        );
        assert_eq!(run(r#"Coalesce([title], [initials])"#), Ok(none()));
        assert_eq!(
            run(r#"Count(Coalesce([proxyAddresses], Split("a,b,c", ",")))"#),
            Ok(i(2))
        );
    }

    #[test]
    fn presence() {
        assert_eq!(run("IsPresent([sn])"), Ok(b(true)));
        assert_eq!(run("IsPresent([title])"), Ok(b(false)));
        assert_eq!(run("IsNullOrEmpty([title])"), Ok(b(true)));
        assert_eq!(run("IsNullOrEmpty([initials])"), Ok(b(true)));
        assert_eq!(run("IsNullOrEmpty([proxyAddresses])"), Ok(b(false)));
    }

    #[test]
    fn split_count_item() {
        assert_eq!(
            run(r#"Split("a,,b", ",")"#),
            Ok(vec![Value::Str("a".into()), Value::Str("b".into())])
        );
        assert_eq!(run(r#"Split("a,b", "")"#), Ok(s("a,b")));
        assert_eq!(run("Count([proxyAddresses])"), Ok(i(2)));
        assert_eq!(run("Count([initials])"), Ok(i(0)));
        assert_eq!(run("Item([proxyAddresses], 2)"), Ok(s("smtp:js@lab.test")));
        assert_eq!(run("Item([proxyAddresses], 3)"), Ok(none()));
        assert_eq!(run("Item([proxyAddresses], 0)"), Ok(none()));
    }

    #[test]
    fn switch() {
        let e = r#"Switch([givenName], "other", "Jill", "J1", "Jack", "J2")"#;
        assert_eq!(run(e), Ok(s("J2")));
        assert_eq!(
            run(r#"Switch([sn], "other", "Jack", "J2")"#),
            Ok(s("other"))
        );
        assert_eq!(run(r#"Switch([initials], 0, "x", 1)"#), Ok(i(0)));
    }

    #[test]
    fn word() {
        assert_eq!(run(r#"Word("The quick,fox", 2, " ,")"#), Ok(s("quick")));
        assert_eq!(run(r#"Word("a  b", 2, " ")"#), Ok(s("b")));
        assert_eq!(run(r#"Word("a b", 5, " ")"#), Ok(none()));
        assert_eq!(
            run(r#"Word("a b", 0, " ")"#),
            Err("Word: word number must be 1 or more, got 0".to_string())
        );
    }

    #[test]
    fn bits_and_numbers() {
        assert_eq!(run("BitAnd([userAccountControl], 2)"), Ok(i(2)));
        assert_eq!(run("BitOr(512, 2)"), Ok(i(514)));
        assert_eq!(run("BitAnd([adminCount], 2)"), Ok(none()));
        assert_eq!(run(r#"CNum(" 42 ")"#), Ok(i(42)));
        assert_eq!(
            run("CNum([employeeID])"),
            Err("CNum: \"not a number\" is not an integer".to_string())
        );
        assert_eq!(run("CStr(BitAnd(7, 3))"), Ok(s("3")));
    }

    #[test]
    fn runtime_type_errors_are_values() {
        let src: HashMap<AttrName, Vec<Value>> = HashMap::from([(
            AttrName::from("userAccountControl"),
            vec![Value::Str("x".into())],
        )]);
        let ast = syntax::parse("BitAnd([userAccountControl], 2)").unwrap();
        let (node, _) = compile::compile(&ast, catalog::AD, &mut Vec::new()).unwrap();
        assert_eq!(
            node.eval(&src),
            Err("attribute userAccountControl: expected int, got \"x\"".to_string())
        );
        let args = [Node::Lit(s("x")), Node::Lit(i(1))];
        let bit_and = lookup("bitand").unwrap();
        assert_eq!(
            (bit_and.eval)(&Args {
                nodes: &args,
                src: &src
            }),
            Err("expected int, got a value of type string".to_string())
        );
    }

    #[test]
    fn base64_guid_sid() {
        assert_eq!(
            run("ConvertToBase64([objectGUID])"),
            Ok(s("AQIDBAUGBwgJCgsMDQ4PEA=="))
        );
        assert_eq!(run(r#"ConvertToBase64("Jack")"#), Ok(s("SmFjaw==")));
        assert_eq!(
            run(r#"Guid(ConvertFromBase64("AQIDBAUGBwgJCgsMDQ4PEA=="))"#),
            Ok(s("04030201-0605-0807-090a-0b0c0d0e0f10"))
        );
        assert_eq!(
            run("Guid([objectGUID])"),
            Ok(s("04030201-0605-0807-090a-0b0c0d0e0f10"))
        );
        assert!(
            run(r#"ConvertFromBase64("***")"#).is_err_and(|e| e.starts_with("ConvertFromBase64: "))
        );
        assert!(run(r#"Guid(ConvertFromBase64("AQID"))"#).is_err_and(|e| e.starts_with("Guid: ")));
        assert_eq!(
            run("StringFromSid([objectSid])"),
            Ok(s("S-1-5-21-1-2-3-1104"))
        );
        assert!(run(r#"StringFromSid(ConvertFromBase64("AQID"))"#)
            .is_err_and(|e| e.starts_with("StringFromSid: ")));
        assert_eq!(
            run("CStr([objectGUID])"),
            Ok(s("0102030405060708090a0b0c0d0e0f10"))
        );
    }

    #[test]
    fn dates() {
        assert_eq!(
            run("CStr(DateFromNum([pwdLastSet]))"),
            Ok(s("2024-01-17T21:20:00Z"))
        );
        assert_eq!(run("DateFromNum([accountExpires])"), Ok(none()));
        assert_eq!(run("DateFromNum(0)"), Ok(none()));
        assert_eq!(
            run("NumFromDate([whenCreated])"),
            Ok(i(133_500_000_000_000_000))
        );
        assert_eq!(
            run("Eq(DateFromNum([pwdLastSet]), [whenCreated])"),
            Ok(b(true))
        );
        assert!(
            run("DateFromNum(-9223372036854775807)").is_err_and(|e| e.starts_with("DateFromNum: "))
        );
    }

    #[test]
    fn logic_and_comparison() {
        assert_eq!(run(r#"Eq([givenName], "JACK")"#), Ok(b(true)));
        assert_eq!(run(r#"Eq([initials], null)"#), Ok(b(true)));
        assert_eq!(run(r#"Eq([sn], null)"#), Ok(b(false)));
        assert_eq!(run(r#"Eq([manager], [manager])"#), Ok(b(true)));
        assert_eq!(run("Not(Eq(1, 2))"), Ok(b(true)));
        assert_eq!(run("Not(null)"), Ok(b(true)));
        assert_eq!(run("And(true, IsPresent([sn]), Eq(1, 1))"), Ok(b(true)));
        assert_eq!(run("And(false, Eq(CNum([employeeID]), 1))"), Ok(b(false)));
        assert_eq!(run("Or(false, null)"), Ok(b(false)));
        assert_eq!(run("Or(true, Eq(CNum([employeeID]), 1))"), Ok(b(true)));
        assert_eq!(run(r#"Contains([proxyAddresses], "JS@LAB")"#), Ok(b(true)));
        assert_eq!(run(r#"Contains([proxyAddresses], "nobody")"#), Ok(b(false)));
        assert_eq!(run(r#"Contains([proxyAddresses], null)"#), Ok(b(false)));
    }

    #[test]
    fn manager_reads_as_reference() {
        let dn = Dn::parse("cn=boss,ou=staff,dc=LAB").unwrap();
        assert_eq!(run("[manager]"), Ok(vec![Value::Ref(dn)]));
    }

    #[test]
    fn every_function_is_tested_and_named_uniquely() {
        let mut names: Vec<_> = FUNCS.iter().map(|f| f.name.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FUNCS.len());
        let source = include_str!("functions.rs");
        let tests = source.split("mod tests").nth(1).unwrap();
        for f in FUNCS {
            assert!(
                tests.contains(&format!("{}(", f.name)),
                "{} untested",
                f.name
            );
        }
    }
}
