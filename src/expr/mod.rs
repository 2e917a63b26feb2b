//! The condition language: a subset of rhai expression syntax, parsed,
//! type-checked against the schema and compiled into a typed tree.
//!
//! Stages are separate types: text → [`parser::Ast`] (syntax, spans) →
//! [`ir::BoolIr`] / [`ir::FloatIr`] (types checked, names resolved to slots,
//! strings interned). Evaluation is a `match` over the typed tree with no
//! allocation and no name lookup.
//!
//! A condition's top-level `&&` chain is split into *conjuncts*. Each
//! conjunct is compiled once per rule set however many actions use it, and
//! evaluated at most once per decision; an explanation names the conjunct
//! that failed (`income >= 30000.0`), not the whole condition.

mod compile;
pub(crate) mod ir;
mod lexer;
pub(crate) mod parser;

use std::fmt;

use crate::base::Location;

pub(crate) use compile::{Scope, CHANNEL};
pub(crate) use ir::{Affine, BoolIr, Env, EvalError, Fallible, FloatIr, Reads};
pub(crate) use lexer::Span;
use parser::{Ast, AstKind, BinOp};

/// A syntax or type error inside one condition, with its byte span in the
/// condition text (the loader turns it into file:line:col).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParseError {
    pub span: Span,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(span: Span, message: impl Into<String>) -> ParseError {
        ParseError {
            span,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A compiled conjunct of a rule set, shared by every policy that uses it:
/// its tree, its text and where the text is.
#[derive(Debug)]
pub(crate) struct Cond {
    pub ir: BoolIr,
    pub text: Box<str>,
    pub location: Location,
}

/// One conjunct of a condition, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Conjunct {
    /// The conjunct's source text, for explanations.
    pub text: String,
    /// Where it sits in the condition text.
    pub span: Span,
    /// Equal for conjuncts that mean the same thing, for sharing.
    pub key: String,
    pub ir: BoolIr,
}

/// Parse and compile a condition into its conjuncts.
pub(crate) fn compile_condition(
    src: &str,
    scope: &mut Scope<'_>,
) -> Result<Vec<Conjunct>, ParseError> {
    let ast = parser::parse(src)?;
    let mut parts = Vec::new();
    split_and(&ast, &mut parts);
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let ir = compile::compile_bool(part, scope)?;
        out.push(Conjunct {
            text: src[part.span.start..part.span.end].to_string(),
            span: part.span,
            key: part.canonical(),
            ir,
        });
    }
    Ok(out)
}

/// Parse and compile a numeric expression (a value expression).
pub(crate) fn compile_number(src: &str, scope: &mut Scope<'_>) -> Result<FloatIr, ParseError> {
    let ast = parser::parse(src)?;
    compile::compile_number(&ast, scope)
}

fn split_and<'a>(ast: &'a Ast, out: &mut Vec<&'a Ast>) {
    match &ast.kind {
        AstKind::Binary(BinOp::And, l, r) => {
            split_and(l, out);
            split_and(r, out);
        }
        _ => out.push(ast),
    }
}

#[cfg(test)]
mod tests;
