//! Engagement policies: eligibility, applicability and suitability, at
//! group and action level.
//!
//! Each action carries its checks in evaluation order (eligibility group
//! then action, applicability group then action, suitability group then
//! action), so finding the stage that removes it is one pass that stops at
//! the first failure.
//!
//! Conjuncts are shared across actions and evaluated once per decision, all
//! of them, up front, into a bitset ([`Memo`]). A rule version has tens to a
//! few hundred distinct conjuncts however many actions it has (thresholds
//! repeat), and evaluating each once, in a tight loop, costs less than
//! asking "evaluated yet?" at every check of every action. Each action then
//! passes its policies when the bitset covers its [`Need`]: usually one
//! word and one mask, one AND and one compare. This is exact: conjuncts
//! are pure (no side effects), and one that fails to evaluate is "not met"
//! either way; which check removed an action is still found in order, from
//! the bitset, when an explanation asks for it.

pub(crate) mod contact;

use crate::expr::{Env, EvalError};
use crate::ruleset::{Check, Cond};

/// Per-decision results of every conjunct: bit `i` of word `i / 64` is set
/// when conjunct `i` is met (false and evaluation errors are "not met").
pub(crate) struct Memo<'a> {
    met: &'a [u64],
    conds: &'a [Cond],
    env: Env<'a>,
}

impl<'a> Memo<'a> {
    /// Evaluate every conjunct of `conds` for `env` into `words` (at least
    /// [`Memo::words`] long).
    pub(crate) fn new(words: &'a mut [u64], conds: &'a [Cond], env: Env<'a>) -> Memo<'a> {
        for (chunk, word) in conds.chunks(64).zip(words.iter_mut()) {
            let mut bits = 0u64;
            for (i, c) in chunk.iter().enumerate() {
                bits |= u64::from(c.ir.met(env)) << i;
            }
            *word = bits;
        }
        Memo {
            met: words,
            conds,
            env,
        }
    }

    /// Words the bitset of `n` conjuncts needs (at least one, which an
    /// action without checks reads).
    pub(crate) fn words(n: usize) -> usize {
        n.div_ceil(64).max(1)
    }

    /// Whether conjunct `id` is met.
    #[inline]
    pub(crate) fn met(&self, id: u32) -> bool {
        let i = id as usize;
        self.met[i / 64] & (1 << (i % 64)) != 0
    }

    /// Whether every conjunct in `need` is met.
    #[inline]
    pub(crate) fn covers(&self, need: &Need) -> bool {
        let (w, m) = need.first;
        self.met[w as usize] & m == m
            && need
                .rest
                .iter()
                .all(|&(w, m)| self.met[w as usize] & m == m)
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

/// The conjuncts an action's checks need, as (word, mask) pairs of the
/// [`Memo`] bitset: the first inline (most rule sets have fewer than 64
/// distinct conjuncts, so it is usually the only one), the rest boxed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Need {
    first: (u32, u64),
    rest: Box<[(u32, u64)]>,
}

impl Need {
    /// What `checks` need (built when the rule set compiles).
    pub(crate) fn of(checks: &[Check]) -> Need {
        let mut words: Vec<(u32, u64)> = Vec::new();
        for c in checks {
            let (w, bit) = (c.cond / 64, 1u64 << (c.cond % 64));
            match words.iter_mut().find(|(x, _)| *x == w) {
                Some((_, m)) => *m |= bit,
                None => words.push((w, bit)),
            }
        }
        words.sort_unstable();
        let mut it = words.into_iter();
        Need {
            first: it.next().unwrap_or((0, 0)),
            rest: it.collect(),
        }
    }
}

/// The first engagement-policy check that `checks` fails, if any.
#[inline]
pub(crate) fn first_failure<'c>(checks: &'c [Check], memo: &Memo<'_>) -> Option<&'c Check> {
    checks.iter().find(|c| !memo.met(c.cond))
}
