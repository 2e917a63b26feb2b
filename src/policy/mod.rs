//! Engagement policies: eligibility, applicability and suitability, at
//! group and action level.
//!
//! Each action carries its checks in evaluation order (eligibility group
//! then action, applicability group then action, suitability group then
//! action), so finding the stage that removes it is one pass that stops at
//! the first failure. Conjuncts are shared across actions and memoised per
//! decision: a group's eligibility is evaluated once however many actions
//! the group has.

use crate::expr::{Env, EvalError};
use crate::ruleset::{Check, Cond};

/// Per-decision memo of conjunct results: 0 = not yet evaluated,
/// 1 = met, 2 = not met (false or error).
pub(crate) struct Memo<'a> {
    results: &'a mut [u8],
    conds: &'a [Cond],
    env: Env<'a>,
}

impl<'a> Memo<'a> {
    pub(crate) fn new(results: &'a mut [u8], conds: &'a [Cond], env: Env<'a>) -> Memo<'a> {
        Memo {
            results,
            conds,
            env,
        }
    }

    /// Whether conjunct `id` is met, evaluating it at most once.
    #[inline]
    pub(crate) fn met(&mut self, id: u32) -> bool {
        let i = id as usize;
        match self.results[i] {
            1 => true,
            2 => false,
            _ => {
                let ok = matches!(self.conds[i].ir.eval(self.env), Ok(true));
                self.results[i] = if ok { 1 } else { 2 };
                ok
            }
        }
    }

    /// The evaluation error behind a failed conjunct, for explanations
    /// (re-evaluates; only called when explaining).
    pub(crate) fn error(&self, id: u32) -> Option<EvalError> {
        self.conds[id as usize].ir.eval(self.env).err()
    }

    pub(crate) fn env(&self) -> Env<'a> {
        self.env
    }
}

/// The first engagement-policy check that `checks` fails, if any.
#[inline]
pub(crate) fn first_failure<'c>(checks: &'c [Check], memo: &mut Memo<'_>) -> Option<&'c Check> {
    checks.iter().find(|c| !memo.met(c.cond))
}
