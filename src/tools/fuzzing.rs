//! Entry points for fuzz targets and differential tests. Not part of the
//! stable API.

use std::sync::Arc;

use crate::base::AttrType;
use crate::base::Value;
use crate::context::schema::{Attribute, Schema, Symbols};
use crate::context::Context;
use crate::expr::{self, Env, Scope};

/// The `rules/retail_bank` engine the JSON fuzz targets share, loaded once
/// per process.
pub fn retail_bank() -> &'static crate::engine::Engine {
    static E: std::sync::OnceLock<crate::engine::Engine> = std::sync::OnceLock::new();
    E.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/retail_bank");
        crate::engine::Engine::from_dir(dir).expect("rules/retail_bank loads")
    })
}

/// A schema of the attributes the fuzzers use, one per type:
/// `i0 i1` (int), `f0 f1` (float), `b0` (bool), `s0` (string),
/// `set0` (string_set), `t0` (timestamp).
pub fn attributes() -> Vec<(&'static str, AttrType)> {
    vec![
        ("b0", AttrType::Bool),
        ("f0", AttrType::Float),
        ("f1", AttrType::Float),
        ("i0", AttrType::Int),
        ("i1", AttrType::Int),
        ("s0", AttrType::String),
        ("set0", AttrType::StringSet),
        ("t0", AttrType::Timestamp),
    ]
}

/// The outcome of compiling and evaluating one condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CondResult {
    /// It did not compile (syntax or type error), with the message.
    Rejected(String),
    /// It compiled and evaluated to this (all conjuncts, in order, like `&&`).
    Value(bool),
    /// It compiled but evaluation failed (overflow, division by zero).
    EvalError,
}

/// Compile `text` against the fuzzing schema and evaluate it with
/// `values` (by attribute name) at decision time `now` (epoch seconds).
pub fn eval_condition(text: &str, values: &[(&str, Value)], now: i64) -> CondResult {
    let attrs: Vec<Attribute> = attributes()
        .into_iter()
        .map(|(n, ty)| Attribute {
            name: n.into(),
            ty,
            sensitive: false,
            values: None,
            default_value: None,
            derived: false,
            model: None,
        })
        .collect();
    let lookup = Schema::new(attrs.clone(), Symbols::new());
    let mut symbols = Symbols::new();
    let conjuncts = {
        let mut scope = Scope {
            attrs: &lookup,
            symbols: &mut symbols,
        };
        match expr::compile_condition(text, &mut scope) {
            Ok(c) => c,
            Err(e) => return CondResult::Rejected(e.message),
        }
    };
    let schema = Arc::new(Schema::new(attrs, symbols));
    let mut b = Context::builder(&schema);
    for (n, v) in values {
        b = b.set(n, v.clone());
    }
    let Ok(ctx) = b.build() else {
        return CondResult::Rejected("bad context".into());
    };
    let env = Env {
        ctx: &ctx,
        now,
        channel: (0, "web"),
    };
    for c in &conjuncts {
        match c.ir.eval(env) {
            Ok(true) => {}
            Ok(false) => return CondResult::Value(false),
            Err(_) => return CondResult::EvalError,
        }
    }
    CondResult::Value(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_condition_compiles_evaluates_and_reports() {
        let v = [("i0", Value::Int(5)), ("s0", Value::String("a".into()))];
        assert_eq!(
            eval_condition("i0 > 3 && s0 == \"a\"", &v, 0),
            CondResult::Value(true)
        );
        assert_eq!(eval_condition("i0 / 0 > 1", &v, 0), CondResult::EvalError);
        assert!(matches!(
            eval_condition("i0 >", &v, 0),
            CondResult::Rejected(_)
        ));
    }
}
