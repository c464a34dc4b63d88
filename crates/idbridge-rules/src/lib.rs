//! Declarative sync rules: which attributes flow from AD to the metaverse (inbound) and
//! from the metaverse to the cloud (outbound), with precedence and scope conditions,
//! written in a TOML file with a small expression language (`Join(" ", [givenName], [sn])`).
//!
//! Invariant: pure. The caller passes file text; [`RuleSet::load`] parses, type-checks
//! against the attribute catalogs and compiles every expression once. Evaluation walks the
//! compiled trees and never parses; bad data yields an [`EvalError`], never a panic.
//!
//! The language reference for administrators is `docs/rules.md`.
//!
//! ```
//! use std::collections::HashMap;
//! use idbridge_core::AttrName;
//! use idbridge_rules::{RuleSet, Value};
//!
//! let rules = RuleSet::default_rules().map_err(|e| format!("{e:?}"))?;
//! let jack: HashMap<AttrName, Vec<Value>> = HashMap::from([
//!     (AttrName::from("givenName"), vec![Value::Str("Jack".into())]),
//!     (AttrName::from("sn"), vec![Value::Str("Smith".into())]),
//!     (AttrName::from("userAccountControl"), vec![Value::Str("514".into())]),
//! ]);
//! let result = rules.evaluate_inbound("user", &jack)?;
//! assert_eq!(result.fired, ["In from AD - User"]);
//! let name = &result.attributes[&AttrName::from("displayName")];
//! assert_eq!(name.values, [Value::Str("Jack Smith".into())]);
//! assert_eq!(name.rule, "In from AD - User");
//! let enabled = &result.attributes[&AttrName::from("accountEnabled")];
//! assert_eq!(enabled.values, [Value::Bool(false)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod catalog;
mod compile;
mod error;
mod functions;
mod ruleset;
mod syntax;
mod value;

pub use catalog::{AttrDef, Syntax, AD, CLOUD, METAVERSE};
pub use error::{EvalError, RuleError};
pub use ruleset::{
    Direction, FlowResult, FlowedValue, JoinCondition, Rule, RuleSet, DEFAULT_RULES, MAX_FILE_LEN,
};
pub use syntax::{MAX_DEPTH, MAX_EXPR_LEN};
pub use value::{AttributeSource, Ty, Type, Value};
