//! Stage 2, the engagement policies: eligibility, applicability and
//! suitability, at group and action level, for every action the channel
//! offers.
//!
//! Every distinct condition part of the version is evaluated once, up
//! front, into a bitset (the memo, see [`Memo`]); an action passes when the
//! bitset covers what its checks need. The result is the set of actions
//! that passed, a bit each in the channel's order: scoring walks it. Which
//! check removed an action that did not pass follows from the same two
//! bitsets, so an explained or logged decision keeps them
//! ([`PolicyRemovals`]) rather than an entry per removed action.

use super::decision::PolicyRemovals;
use crate::expr::Env;
use crate::ruleset::policy::Memo;
use crate::ruleset::{Channel, RuleSet};

/// The engagement policies' results for one decision: the memo of every
/// condition part, and which of the channel's actions passed.
pub(crate) struct Engaged<'a> {
    pub memo: Memo<'a>,
    pub passing: &'a [u64],
}

/// Evaluate the engagement policies of every action on `ch`, in `words`
/// (the caller's, resized here).
pub(crate) fn evaluate<'a>(
    rs: &'a RuleSet,
    ch: &Channel,
    env: Env<'a>,
    words: &'a mut Vec<u64>,
) -> Engaged<'a> {
    let memo_words = Memo::words(rs.conds.len());
    words.clear();
    words.resize(memo_words + ch.needs.words(), 0);
    let (memo_bits, passing) = words.split_at_mut(memo_words);
    let memo = Memo::new(memo_bits, &rs.conds, &rs.tests, env);
    ch.needs.passing(&memo, passing);
    Engaged { memo, passing }
}

/// The policies' removals, as the bits that decide them (`bits`: an empty
/// buffer to keep them in); with `errors`, why each failed condition part
/// that could not be evaluated could not (rare; the log's writer works
/// that out itself, off the hot path).
pub(crate) fn removals(
    engaged: &Engaged<'_>,
    ch: &Channel,
    errors: bool,
    bits: Vec<u64>,
) -> PolicyRemovals {
    let memo = &engaged.memo;
    let errors = if errors {
        ch.checks
            .failed(memo.bits())
            .filter_map(|c| memo.error(c).map(|e| (c, e)))
            .collect()
    } else {
        Vec::new()
    };
    PolicyRemovals::of(bits, memo.bits(), engaged.passing, errors)
}
