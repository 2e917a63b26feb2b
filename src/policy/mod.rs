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

use crate::expr::ir::Tests;
use crate::expr::{Env, EvalError};
use crate::ruleset::{Action, Check, Cond};

/// Per-decision results of every conjunct: bit `i` of word `i / 64` is set
/// when conjunct `i` is met (false and evaluation errors are "not met").
pub(crate) struct Memo<'a> {
    met: &'a [u64],
    conds: &'a [Cond],
    tests: &'a Tests,
    env: Env<'a>,
}

impl<'a> Memo<'a> {
    /// Evaluate every conjunct of `conds` for `env` into `words` (at least
    /// [`Memo::words`] long).
    /// `tests` are `conds` in their flat form (the rule version's).
    pub(crate) fn new(
        words: &'a mut [u64],
        conds: &'a [Cond],
        tests: &'a Tests,
        env: Env<'a>,
    ) -> Memo<'a> {
        debug_assert_eq!(conds.len(), tests.len());
        tests.memo(&env, conds, words);
        Memo {
            met: words,
            conds,
            tests,
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
        self.tests.get(id).error(&self.env, self.conds)
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
        Need::of_conds(checks.iter().map(|c| c.cond))
    }

    /// What needs every conjunct of `conds`.
    pub(crate) fn of_conds(conds: impl IntoIterator<Item = u32>) -> Need {
        let mut words: Vec<(u32, u64)> = Vec::new();
        for c in conds {
            let (w, bit) = (c / 64, 1u64 << (c % 64));
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

/// What the actions offered on a channel need, side by side in the
/// channel's order: the first (word, mask) of each action's [`Need`], and
/// the position and whole need of the few actions whose checks span more
/// words. A
/// decision's first pass reads these, not the actions, and decides every
/// action without a branch: whether an action passes is as good as random
/// to the processor, and a mispredicted branch per action costs more than
/// the test.
#[derive(Debug, Default)]
pub(crate) struct Needs {
    first: Box<[(u32, u64)]>,
    more: Box<[(u32, Need)]>,
}

impl Needs {
    /// The needs of `offered` (indices into `actions`).
    pub(crate) fn of(actions: &[Action], offered: &[u32]) -> Needs {
        let need = |ai: u32| &actions[ai as usize].need;
        Needs {
            first: offered.iter().map(|&ai| need(ai).first).collect(),
            more: (0u32..)
                .zip(offered)
                .filter(|&(_, &ai)| !need(ai).rest.is_empty())
                .map(|(pos, &ai)| (pos, need(ai).clone()))
                .collect(),
        }
    }

    /// Words of the bitset [`Needs::passing`] writes.
    pub(crate) fn words(&self) -> usize {
        self.first.len().div_ceil(64)
    }

    /// Set bit `i` of `out` (at least [`Needs::words`] long) when the
    /// `i`-th offered action passes its engagement policies, and clear it
    /// otherwise.
    pub(crate) fn passing(&self, memo: &Memo<'_>, out: &mut [u64]) {
        // With one memo word (up to 64 conjuncts: most rule versions),
        // every need is in that word; with up to four (256 conjuncts), the
        // words are copied into an array that a masked index cannot leave.
        // Either way, no bounds check per action.
        const SMALL: usize = 4;
        let mut small = [0u64; SMALL];
        let n = memo.met.len();
        if n <= SMALL {
            small[..n].copy_from_slice(memo.met);
        }
        for (chunk, word) in self.first.chunks(64).zip(out.iter_mut()) {
            let mut bits = 0u64;
            if n == 1 {
                for (i, &(_, m)) in chunk.iter().enumerate() {
                    bits |= u64::from(small[0] & m == m) << i;
                }
            } else if n <= SMALL {
                for (i, &(w, m)) in chunk.iter().enumerate() {
                    // `w` is below `n`, so `w % SMALL == w`.
                    bits |= u64::from(small[w as usize % SMALL] & m == m) << i;
                }
            } else {
                for (i, &(w, m)) in chunk.iter().enumerate() {
                    bits |= u64::from(memo.met[w as usize] & m == m) << i;
                }
            }
            *word = bits;
        }
        for (pos, need) in self.more.iter() {
            let pos = *pos as usize;
            if !memo.covers(need) {
                out[pos / 64] &= !(1 << (pos % 64));
            }
        }
    }
}

/// The first engagement-policy check that `checks` fails, if any.
#[inline]
pub(crate) fn first_failure<'c>(checks: &'c [Check], memo: &Memo<'_>) -> Option<&'c Check> {
    checks.iter().find(|c| !memo.met(c.cond))
}
