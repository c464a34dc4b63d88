//! Type checking and compilation of parsed expressions into evaluation trees.

use std::ops::Range;

use idbridge_core::AttrName;

use crate::catalog::{self, AttrDef, Syntax};
use crate::functions::{self, Args, Func, FUNCS};
use crate::syntax::Ast;
use crate::value::{AttributeSource, Ty, Type, Value};

/// A checked expression. Evaluation walks this tree; no text is parsed per object.
#[derive(Debug)]
pub(crate) enum Node {
    Lit(Vec<Value>),
    Attr(AttrName, Syntax),
    Call(&'static Func, Vec<Node>),
}

impl Node {
    pub(crate) fn eval(&self, src: &dyn AttributeSource) -> Result<Vec<Value>, String> {
        match self {
            Node::Lit(v) => Ok(v.clone()),
            Node::Attr(name, syntax) => src
                .get(name)
                .unwrap_or_default()
                .iter()
                .map(|v| coerce(name, *syntax, v))
                .collect(),
            Node::Call(func, args) => (func.eval)(&Args { nodes: args, src }),
        }
    }

    /// The first value of [`Self::eval`], without collecting the list: what a single-valued
    /// argument reads. Fails where `eval` fails.
    pub(crate) fn first(&self, src: &dyn AttributeSource) -> Result<Option<Value>, String> {
        match self {
            Node::Lit(v) => Ok(v.first().cloned()),
            Node::Attr(name, syntax) => {
                let mut first = None;
                for v in src.get(name).unwrap_or_default() {
                    first.get_or_insert(coerce(name, *syntax, v)?);
                }
                Ok(first)
            }
            Node::Call(..) => Ok(self.eval(src)?.into_iter().next()),
        }
    }
}

fn coerce(name: &AttrName, syntax: Syntax, v: &Value) -> Result<Value, String> {
    syntax
        .coerce(v)
        .map_err(|e| format!("attribute {name}: {e}"))
}

/// A compile error at a byte span of the expression.
pub(crate) type CompileError = (Range<usize>, String);

/// Checks `ast` against `catalog` (the attributes visible to the expression), collecting
/// every error found; returns the tree and its type when there is none.
pub(crate) fn compile(
    ast: &Ast,
    catalog: &'static [AttrDef],
    errors: &mut Vec<CompileError>,
) -> Option<(Node, Type)> {
    match ast {
        Ast::Str(s, _) => Some((Node::Lit(vec![Value::Str(s.clone())]), Type::one(Ty::Str))),
        Ast::Int(i, _) => Some((Node::Lit(vec![Value::Int(*i)]), Type::one(Ty::Int))),
        Ast::Bool(b, _) => Some((Node::Lit(vec![Value::Bool(*b)]), Type::one(Ty::Bool))),
        Ast::Null(_) => Some((Node::Lit(Vec::new()), Type::one(Ty::Any))),
        Ast::Attr(name, span) => match catalog::lookup(catalog, name) {
            Some(def) => Some((
                Node::Attr(AttrName::from_static(def.name), def.syntax),
                def.ty(),
            )),
            None => {
                let hint = catalog::suggest(catalog.iter().map(|d| d.name), name)
                    .map(|s| format!(" (did you mean [{s}]?)"))
                    .unwrap_or_default();
                errors.push((span.clone(), format!("unknown attribute [{name}]{hint}")));
                None
            }
        },
        Ast::Call { name, span, args } => {
            let func = functions::lookup(name);
            if func.is_none() {
                let hint = catalog::suggest(FUNCS.iter().map(|f| f.name), name)
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                errors.push((span.clone(), format!("unknown function \"{name}\"{hint}")));
            }
            let compiled: Vec<_> = args.iter().map(|a| compile(a, catalog, errors)).collect();
            let func = func?;
            let (nodes, types): (Vec<Node>, Vec<Type>) = compiled
                .into_iter()
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .unzip();
            match func.check(&types) {
                Ok(ty) => Some((Node::Call(func, nodes), ty)),
                Err((index, message)) => {
                    let at = index
                        .and_then(|i| args.get(i))
                        .map_or(span.clone(), Ast::span);
                    errors.push((at, message));
                    None
                }
            }
        }
    }
}

/// Whether a value of type `from` may flow into an attribute of type `to`.
pub(crate) fn assignable(from: Type, to: Type) -> bool {
    (from.ty == to.ty || from.ty == Ty::Any) && (!from.multi || to.multi)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::catalog::AD;
    use crate::syntax;

    fn leaf() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(AD).prop_map(|d| format!("[{}]", d.name)),
            any::<i64>().prop_map(|i| i.to_string()),
            "[a-zA-Z0-9 ,;=@.-]{0,8}".prop_map(|s| format!("{s:?}")),
            Just("true".to_string()),
            Just("null".to_string()),
        ]
    }

    fn expr() -> impl Strategy<Value = String> {
        leaf().prop_recursive(4, 32, 4, |inner| {
            // Right arity, random argument types: many calls type-check, many don't.
            (
                proptest::sample::select(FUNCS.iter().map(|f| f.name).collect::<Vec<_>>()),
                proptest::collection::vec(inner, 6),
            )
                .prop_map(|(name, mut args)| {
                    let arity = lookup_arity(name);
                    args.truncate(arity);
                    format!("{name}({})", args.join(", "))
                })
        })
    }

    fn lookup_arity(name: &str) -> usize {
        functions::lookup(name).map_or(0, |f| f.params.len() + f.rest.len() * f.rest_min)
    }

    /// An AD object whose every catalog attribute holds values of its syntax.
    fn object() -> impl Strategy<Value = HashMap<AttrName, Vec<Value>>> {
        (
            any::<i64>(),
            "[ -~]{0,12}",
            proptest::collection::vec(any::<u8>(), 0..30),
            any::<bool>(),
        )
            .prop_map(|(i, s, b, flag)| {
                AD.iter()
                    .map(|d| {
                        let v = match d.syntax {
                            Syntax::Int | Syntax::FileTime => Value::Int(i),
                            Syntax::Bool => Value::Bool(flag),
                            Syntax::Binary => Value::Bytes(b.clone()),
                            Syntax::DnRef => Value::Str(format!("CN={},DC=lab", s.len())),
                            Syntax::Time => Value::Str("20240117212000.0Z".to_string()),
                            Syntax::String => Value::Str(s.clone()),
                        };
                        let n = if d.multi { 2 } else { 1 };
                        (AttrName::from(d.name), vec![v; n])
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn valid_expressions_evaluate_without_panicking(code in expr(), obj in object()) {
            let ast = syntax::parse(&code).unwrap();
            let mut errors = Vec::new();
            if let Some((node, ty)) = compile(&ast, AD, &mut errors) {
                prop_assert!(errors.is_empty());
                if let Ok(values) = node.eval(&obj) {
                    prop_assert!(ty.multi || values.len() <= 1, "{code}: {ty} gave {values:?}");
                    for v in &values {
                        prop_assert!(ty.ty == Ty::Any || v.ty() == ty.ty, "{code}: {ty} gave {v:?}");
                    }
                }
            } else {
                prop_assert!(!errors.is_empty());
            }
        }

        #[test]
        fn first_is_the_first_value_or_the_same_error(
            code in expr(),
            mut obj in object(),
            extra in any::<bool>(),
        ) {
            if extra {
                // A second value, not of every attribute's syntax: errors must not change.
                for values in obj.values_mut() {
                    values.push(Value::Str("x".to_string()));
                }
            }
            let ast = syntax::parse(&code).unwrap();
            if let Some((node, _)) = compile(&ast, AD, &mut Vec::new()) {
                let all = node.eval(&obj).map(|v| v.into_iter().next());
                prop_assert_eq!(node.first(&obj), all, "{}", code);
            }
        }
    }
}
