//! Predictive models: scores that data scientists build outside the
//! engine (a churn model, a credit scorecard), declared by a rule set as
//! attributes of its schema and computed once per decision.
//!
//! A model is a declarative file, `models/NAME.toml`: an intercept, one
//! term per input attribute (a coefficient or bins for a number, points
//! per value for a string, a bool or a string set) and a link
//! (`logistic` or `identity`). It is compiled when the rule set loads
//! ([`crate::ruleset::RuleSet`] refuses a model whose inputs are not
//! schema attributes of a type the term fits, each error at
//! file:line:col) into the form here, which a decision evaluates without
//! a lookup by name or an allocation: inputs are slots, string values are
//! the schema's interned symbols, and points per string are a table
//! indexed by symbol.
//!
//! What a decision does with a model (`decide`): it evaluates every
//! model on the bound context before the strategy's `derive` hook and
//! the engagement policies, and puts the score into the model's
//! attribute, so conditions, value expressions and every strategy hook
//! read it like any other attribute.
//!
//! Guarantees:
//! - the score is `link(intercept + Σ term)`, the terms added in the order
//!   the file lists its inputs, so equal inputs give equal bits;
//! - an input the context lacks (not given, no schema default) adds its
//!   `missing` points if the file declares them; otherwise the score is
//!   missing, as is a score that is not a finite number: the attribute is
//!   then missing and conditions that need it are not met;
//! - a model's version is the SHA-256 of its file, logged with every
//!   decision of the rule set (and part of the rule set's own hash).

use std::sync::Arc;

use crate::base::Sym;
use crate::context::{Context, Slot};

/// How the linear score becomes the model's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// `1 / (1 + e^-z)`: a probability.
    Logistic,
    /// `z` itself.
    Identity,
}

impl Link {
    pub(crate) fn parse(s: &str) -> Option<Link> {
        match s {
            "logistic" => Some(Link::Logistic),
            "identity" => Some(Link::Identity),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn apply(self, z: f64) -> f64 {
        match self {
            Link::Logistic => 1.0 / (1.0 + (-z).exp()),
            Link::Identity => z,
        }
    }
}

/// What one input adds to the linear score, by the kind of its attribute.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Term {
    /// A number times its coefficient (int or float attributes).
    Linear(f64),
    /// A number's bin: the points of the first bin whose `below` the value
    /// is under, else the last bin's (`points` has one more entry than
    /// `below`, which ascends).
    Bins {
        below: Box<[f64]>,
        points: Box<[f64]>,
    },
    /// A string's points, indexed by its symbol; symbols past the table's
    /// end (and 0, a string no rule mentions) get `other`.
    Symbols { points: Box<[f64]>, other: f64 },
    /// A bool's points.
    Bool { yes: f64, no: f64 },
    /// A string set: the sum of the points of the listed values it holds.
    Members(Box<[(Sym, f64)]>),
}

/// One input of a model: the attribute's slot, its term, and the points it
/// adds when the attribute is missing (`None`: the score is missing).
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub slot: u16,
    pub term: Term,
    pub missing: Option<f64>,
}

/// A compiled predictive model.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    /// The attribute the score goes into (its name is the model's name in
    /// the decision log).
    pub name: Arc<str>,
    pub slot: u16,
    /// SHA-256 of the file (hex): the model's version.
    pub hash: Box<str>,
    pub intercept: f64,
    pub link: Link,
    pub inputs: Box<[Input]>,
}

impl Model {
    /// The model's score for `ctx`, or `None` when an input without
    /// `missing` points is missing or the score is not a finite number.
    #[inline]
    pub(crate) fn score(&self, ctx: &Context) -> Option<f64> {
        let mut z = self.intercept;
        for input in self.inputs.iter() {
            z += match input.term.points(ctx, input.slot) {
                Some(p) => p,
                None => input.missing?,
            };
        }
        Some(self.link.apply(z)).filter(|s| s.is_finite())
    }

    /// Put the score for `ctx` into the model's attribute of `ctx`, or make
    /// the attribute missing when there is none.
    #[inline]
    pub(crate) fn score_into(&self, ctx: &mut Context) {
        match self.score(ctx) {
            Some(s) => ctx.put_float(self.slot, s),
            None => ctx.unset(self.slot),
        }
    }
}

impl Term {
    /// The points of the value in `slot`, `None` when it is missing (or a
    /// float that is not a number, which no bin or coefficient can place).
    #[inline]
    fn points(&self, ctx: &Context, slot: u16) -> Option<f64> {
        let raw = ctx.raw(slot).0;
        match (self, raw) {
            (Term::Linear(c), _) => number(raw).map(|x| c * x),
            (Term::Bins { below, points }, _) => {
                let x = number(raw)?;
                let i = below.iter().position(|&b| x < b).unwrap_or(below.len());
                points.get(i).copied()
            }
            (Term::Symbols { points, other }, &Slot::Str(sym, _)) => {
                Some(points.get(sym as usize).copied().unwrap_or(*other))
            }
            (Term::Bool { yes, no }, &Slot::Bool(b)) => Some(if b { *yes } else { *no }),
            (Term::Members(members), Slot::Set(..)) => {
                let mut sum = 0.0;
                for &(sym, p) in members.iter() {
                    if ctx.set_has_sym(slot, sym) == Some(true) {
                        sum += p;
                    }
                }
                Some(sum)
            }
            _ => None,
        }
    }
}

/// An int or float slot as a float (`None`: missing, or not a number).
#[inline]
fn number(slot: &Slot) -> Option<f64> {
    match *slot {
        Slot::Int(v) => Some(v as f64),
        Slot::Float(v) if !v.is_nan() => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_link_is_a_probability_and_identity_is_the_score() {
        assert_eq!(Link::Logistic.apply(0.0), 0.5);
        assert!((Link::Logistic.apply(2.0) - 0.880_797_077_977_882_3).abs() < 1e-15);
        assert_eq!(Link::Logistic.apply(f64::INFINITY), 1.0);
        assert_eq!(Link::Logistic.apply(f64::NEG_INFINITY), 0.0);
        assert_eq!(Link::Identity.apply(-3.25), -3.25);
    }
}
