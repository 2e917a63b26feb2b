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

use crate::expr::ir::Tests;
use crate::expr::Cond;
use crate::expr::{Env, EvalError};
use crate::ruleset::{Action, Check};

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

    /// The memo's bits: conjunct `i` is bit `i % 64` of word `i / 64`.
    pub(crate) fn bits(&self) -> &[u64] {
        self.met
    }

    /// Whether every conjunct in `need` is met.
    #[inline]
    pub(crate) fn covers(&self, need: &Need) -> bool {
        covers(self.met, need)
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

/// Whether the memo bits `met` hold every conjunct in `need`.
#[inline]
fn covers(met: &[u64], need: &Need) -> bool {
    let (w, m) = need.first;
    met[w as usize] & m == m && need.rest.iter().all(|&(w, m)| met[w as usize] & m == m)
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

/// What the actions offered on a channel need, in the channel's order, in
/// one of two forms: by conjunct ([`ByCond`]) for channels of up to 512
/// conjuncts, by action ([`ByAction`]) for larger ones. A decision's first
/// pass reads these, not the actions, and decides every action without a
/// branch: whether an action passes is as good as random to the processor,
/// and a mispredicted branch per action costs more than the test.
#[derive(Debug, Default)]
pub(crate) struct Needs {
    /// How many actions.
    len: usize,
    form: Form,
}

#[derive(Debug)]
enum Form {
    ByAction(ByAction),
    ByCond(ByCond),
}

impl Default for Form {
    fn default() -> Form {
        Form::ByAction(ByAction::default())
    }
}

/// Each action's need side by side: the first (word, mask) of each
/// action's [`Need`], and the position and whole need of the few actions
/// whose checks span more words.
#[derive(Debug, Default)]
struct ByAction {
    first: Box<[(u32, u64)]>,
    more: Box<[(u32, Need)]>,
}

/// The needs of a channel's actions turned on their side: for each
/// conjunct, the actions that need it. An action passes unless a conjunct
/// it needs is unmet, so the passing set is every action, less the needers
/// of each unmet conjunct: a few word operations per unmet conjunct, not a
/// test per action. Built only while the table stays small (it has a bit
/// per conjunct and action).
#[derive(Debug)]
struct ByCond {
    /// Words of the passing set: the channel's actions, 64 to a word.
    words: usize,
    /// Row `c` (`needers[c * stride..][..stride]`, where the stride is
    /// `all.len()`, `words` rounded up to 1, 2, 4 or more): the positions
    /// of the actions that need conjunct `c`.
    needers: Box<[u64]>,
    /// By memo word: the conjuncts some action here needs.
    needed: Box<[u64]>,
    /// Every action (and zeros to the stride): `out` starts from this.
    all: Box<[u64]>,
}

impl ByCond {
    /// The largest table built, in bytes, and the most conjuncts (in memo
    /// words) it covers. A decision reads one row per unmet conjunct, a
    /// 64th of a word per action, against a word or two per action for
    /// [`ByAction`]: with up to 512 conjuncts the rows never cost more,
    /// and usually far less.
    const MAX_BYTES: usize = 1 << 20;
    const MAX_MEMO_WORDS: usize = 8;

    fn of(needs: &[&Need]) -> Option<ByCond> {
        let words = needs.len().div_ceil(64);
        let stride = if words == 3 { 4 } else { words };
        fn need_words(need: &Need) -> impl Iterator<Item = (u32, u64)> + '_ {
            std::iter::once(need.first).chain(need.rest.iter().copied())
        }
        let memo_words = needs
            .iter()
            .flat_map(|need| need_words(need))
            .map(|(w, _)| w as usize + 1)
            .max()
            .unwrap_or(1);
        if memo_words > Self::MAX_MEMO_WORDS || memo_words * 64 * stride * 8 > Self::MAX_BYTES {
            return None;
        }
        let mut needers = vec![0u64; memo_words * 64 * stride];
        let mut needed = vec![0u64; memo_words];
        for (pos, need) in needs.iter().enumerate() {
            for (w, mut m) in need_words(need) {
                needed[w as usize] |= m;
                while m != 0 {
                    let c = w as usize * 64 + m.trailing_zeros() as usize;
                    m &= m - 1;
                    needers[c * stride + pos / 64] |= 1 << (pos % 64);
                }
            }
        }
        let mut all = vec![!0u64; words];
        all.resize(stride, 0);
        if needs.len() % 64 != 0 {
            all[words - 1] = (1 << (needs.len() % 64)) - 1;
        }
        Some(ByCond {
            words,
            needers: needers.into(),
            needed: needed.into(),
            all: all.into(),
        })
    }

    fn passing(&self, met: &[u64], out: &mut [u64]) {
        // Up to 256 actions (most channels), in a fixed-size array the
        // compiler keeps in registers; more, in a loop per row.
        match self.words {
            1 => self.passing_n::<1>(met, out),
            2 => self.passing_n::<2>(met, out),
            3 | 4 => self.passing_n::<4>(met, out),
            _ => {
                let out = &mut out[..self.words];
                out.copy_from_slice(&self.all);
                self.each_unmet(met, |row| {
                    for (o, r) in out.iter_mut().zip(row) {
                        *o &= !r;
                    }
                });
            }
        }
    }

    /// [`ByCond::passing`] for `words <= N` (rows are `N` words apart).
    #[inline(always)]
    fn passing_n<const N: usize>(&self, met: &[u64], out: &mut [u64]) {
        let mut acc = [0u64; N];
        acc.copy_from_slice(&self.all[..N]);
        self.each_unmet(met, |row| {
            let row: &[u64; N] = row.try_into().expect("rows are N words");
            for i in 0..N {
                acc[i] &= !row[i];
            }
        });
        out[..self.words].copy_from_slice(&acc[..self.words]);
    }

    /// `f` of the row of each conjunct that some action needs and the memo
    /// says is unmet.
    #[inline(always)]
    fn each_unmet(&self, met: &[u64], mut f: impl FnMut(&[u64])) {
        // A memo word missing here would read as all met.
        debug_assert!(met.len() >= self.needed.len());
        let stride = self.all.len();
        for (w, (&met, &needed)) in met.iter().zip(self.needed.iter()).enumerate() {
            let mut unmet = !met & needed;
            while unmet != 0 {
                let c = w * 64 + unmet.trailing_zeros() as usize;
                unmet &= unmet - 1;
                f(&self.needers[c * stride..][..stride]);
            }
        }
    }
}

impl Needs {
    /// The needs of `offered` (indices into `actions`).
    pub(crate) fn of(actions: &[Action], offered: &[u32]) -> Needs {
        let needs: Vec<&Need> = offered
            .iter()
            .map(|&ai| &actions[ai as usize].need)
            .collect();
        Needs {
            len: needs.len(),
            form: match ByCond::of(&needs) {
                Some(by_cond) => Form::ByCond(by_cond),
                None => Form::ByAction(ByAction::of(&needs)),
            },
        }
    }

    /// Words of the bitset [`Needs::passing`] writes.
    pub(crate) fn words(&self) -> usize {
        self.len.div_ceil(64)
    }

    /// Set bit `i` of `out` (at least [`Needs::words`] long) when the
    /// `i`-th offered action passes its engagement policies, and clear it
    /// otherwise.
    pub(crate) fn passing(&self, memo: &Memo<'_>, out: &mut [u64]) {
        match &self.form {
            Form::ByAction(by_action) => by_action.passing(memo.met, out),
            Form::ByCond(by_cond) => by_cond.passing(memo.met, out),
        }
    }
}

impl ByAction {
    /// `needs` (by position), tested action by action.
    fn of(needs: &[&Need]) -> ByAction {
        ByAction {
            first: needs.iter().map(|need| need.first).collect(),
            more: (0u32..)
                .zip(needs)
                .filter(|(_, need)| !need.rest.is_empty())
                .map(|(pos, need)| (pos, (*need).clone()))
                .collect(),
        }
    }

    /// [`Needs::passing`] for the memo bits `met`.
    fn passing(&self, met: &[u64], out: &mut [u64]) {
        // With one memo word (up to 64 conjuncts), every need is in that
        // word; with up to four (256 conjuncts), the words are copied into
        // an array that a masked index cannot leave.
        // Either way, no bounds check per action.
        const SMALL: usize = 4;
        let mut small = [0u64; SMALL];
        let n = met.len();
        if n <= SMALL {
            small[..n].copy_from_slice(met);
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
                    bits |= u64::from(met[w as usize] & m == m) << i;
                }
            }
            *word = bits;
        }
        for (pos, need) in self.more.iter() {
            let pos = *pos as usize;
            if !covers(met, need) {
                out[pos / 64] &= !(1 << (pos % 64));
            }
        }
    }
}

/// Whether conjunct `id` is met, in the [`Memo`]'s bits `met`.
#[inline]
fn met(met: &[u64], id: u32) -> bool {
    let i = id as usize;
    met[i / 64] & (1 << (i % 64)) != 0
}

/// The first engagement-policy check that `checks` fails (in the memo
/// bits `met`), if any.
#[inline]
fn first_failure<'c>(checks: &'c [Check], bits: &[u64]) -> Option<&'c Check> {
    checks.iter().find(|c| !met(bits, c.cond))
}

/// The checks of the actions offered on a channel, in the channel's order,
/// for explanations, which look up why each removed action failed.
///
/// The first [`Checks::ROW`] checks of each action sit in a fixed-size row,
/// so finding the first that failed is a few loads and a count of trailing
/// zeros, with no branch on which one it was: a search that stops at the
/// first unmet conjunct stops somewhere different for each action, and the
/// processor mispredicts where. The rows are read in one array as the
/// channel is walked, not behind each action's own pointer.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    /// By position: the first `ROW` checks (a shorter action's row repeats
    /// its last check; see [`Checks::first_failure`]).
    rows: Box<[[Check; Checks::ROW]]>,
    /// Every check, by position.
    all: Box<[Check]>,
    /// Where the checks of the action at each position start in `all`
    /// (and, last, where they all end).
    at: Box<[u32]>,
    /// By memo word: the conjuncts some action here checks.
    needed: Box<[u64]>,
}

impl Checks {
    const ROW: usize = 4;

    /// The checks of `offered` (indices into `actions`).
    pub(crate) fn of(actions: &[Action], offered: &[u32]) -> Checks {
        Checks::of_lists(offered.iter().map(|&ai| &actions[ai as usize].checks[..]))
    }

    /// The table of these lists of checks, by position.
    fn of_lists<'c>(lists: impl ExactSizeIterator<Item = &'c [Check]>) -> Checks {
        let mut all = Vec::new();
        let mut at = Vec::with_capacity(lists.len() + 1);
        let mut rows = Vec::with_capacity(lists.len());
        let none = Check {
            cond: 0,
            stage: crate::ruleset::Stage::Eligibility,
            level: crate::ruleset::Level::Action,
        };
        for checks in lists {
            at.push(all.len() as u32);
            all.extend_from_slice(checks);
            let last = checks.last().copied().unwrap_or(none);
            rows.push(std::array::from_fn(|k| {
                checks.get(k).copied().unwrap_or(last)
            }));
        }
        at.push(all.len() as u32);
        let mut needed = vec![
            0u64;
            all.iter()
                .map(|c| c.cond as usize / 64 + 1)
                .max()
                .unwrap_or(0)
        ];
        for c in &all {
            needed[c.cond as usize / 64] |= 1 << (c.cond % 64);
        }
        Checks {
            rows: rows.into(),
            all: all.into(),
            at: at.into(),
            needed: needed.into(),
        }
    }

    /// Each conjunct that some action here checks and the memo bits `met`
    /// say failed.
    pub(crate) fn failed<'s>(&'s self, met: &'s [u64]) -> impl Iterator<Item = u32> + 's {
        met.iter()
            .zip(self.needed.iter())
            .enumerate()
            .flat_map(|(w, (&met, &needed))| {
                let mut rest = !met & needed;
                std::iter::from_fn(move || {
                    (rest != 0).then(|| {
                        let c = (w * 64 + rest.trailing_zeros() as usize) as u32;
                        rest &= rest - 1;
                        c
                    })
                })
            })
    }

    /// The first check that the action at position `pos` fails (in the
    /// [`Memo`]'s bits `bits`), if any.
    #[inline]
    pub(crate) fn first_failure(&self, pos: usize, bits: &[u64]) -> Option<&Check> {
        let row = &self.rows[pos];
        let (start, end) = (self.at[pos] as usize, self.at[pos + 1] as usize);
        let mut unmet = 0u32;
        for (k, c) in row.iter().enumerate() {
            unmet |= u32::from(!met(bits, c.cond)) << k;
        }
        // Bits past the action's last check: copies of it (which cannot
        // come first: the check itself does), or nothing for an action
        // without checks.
        if end == start {
            unmet = 0;
        }
        match row.get(unmet.trailing_zeros() as usize) {
            Some(check) => Some(check),
            None => self
                .all
                .get(start + Checks::ROW..end)
                .and_then(|rest| first_failure(rest, bits)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Random needs (up to five conjuncts each, of `words` memo words) of
    /// up to 300 actions, and memo bits that are mostly met.
    fn case() -> impl Strategy<Value = (Vec<Vec<u32>>, Vec<u64>)> {
        (1usize..=9).prop_flat_map(|words| {
            let conj = 0..(words * 64) as u32;
            (
                proptest::collection::vec(proptest::collection::vec(conj, 0..5), 0..300),
                proptest::collection::vec(any::<(u64, u64)>().prop_map(|(a, b)| a | b), words),
            )
        })
    }

    proptest! {
        /// The first failed check found through the rows is the first
        /// that a search of the action's checks in order finds: for
        /// actions of no checks, of fewer checks than a row holds, of
        /// more, and with conjuncts repeated.
        #[test]
        fn first_failure_by_rows_is_the_first_in_order(
            actions in proptest::collection::vec(
                proptest::collection::vec((0u32..130, 0usize..3), 0..9),
                1..40,
            ),
            met in proptest::collection::vec(any::<(u64, u64)>().prop_map(|(a, b)| a | b), 3),
        ) {
            use crate::ruleset::{Level, Stage};
            let stages = [Stage::Eligibility, Stage::Applicability, Stage::Suitability];
            let checks: Vec<Vec<Check>> = actions
                .iter()
                .map(|cs| {
                    cs.iter()
                        .map(|&(cond, k)| Check {
                            cond,
                            stage: stages[k],
                            level: if k == 1 { Level::Group } else { Level::Action },
                        })
                        .collect()
                })
                .collect();
            let table = Checks::of_lists(checks.iter().map(|c| &c[..]));
            for (pos, cs) in checks.iter().enumerate() {
                let want = cs.iter().find(|c| met[c.cond as usize / 64] & (1 << (c.cond % 64)) == 0);
                let got = table.first_failure(pos, &met);
                prop_assert_eq!(
                    got.map(|c| (c.cond, c.stage, c.level)),
                    want.map(|c| (c.cond, c.stage, c.level)),
                    "action {} of checks {:?}", pos, cs
                );
            }
        }

        /// The table by conjunct passes exactly the actions whose every
        /// conjunct is met, as testing each action does: for every channel
        /// size, both sides of each 64-action word, and needs spanning
        /// several memo words (past the table's limit too).
        #[test]
        fn needs_by_conjunct_pass_the_same_actions_as_by_action((conds, met) in case()) {
            let needs: Vec<Need> = conds.iter().map(|c| Need::of_conds(c.iter().copied())).collect();
            let refs: Vec<&Need> = needs.iter().collect();
            let words = needs.len().div_ceil(64);
            let mut want = vec![0u64; words];
            for (pos, c) in conds.iter().enumerate() {
                if c.iter().all(|&id| met[id as usize / 64] & (1 << (id % 64)) != 0) {
                    want[pos / 64] |= 1 << (pos % 64);
                }
            }
            let by_action = ByAction::of(&refs);
            let mut out = vec![!0u64; words];
            by_action.passing(&met, &mut out);
            prop_assert_eq!(&out, &want);
            let by_cond = ByCond::of(&refs);
            let max_word = conds.iter().flatten().map(|&id| id as usize / 64 + 1).max().unwrap_or(1);
            prop_assert_eq!(by_cond.is_some(), max_word <= ByCond::MAX_MEMO_WORDS);
            if let Some(by_cond) = by_cond {
                let mut out = vec![!0u64; words];
                by_cond.passing(&met, &mut out);
                prop_assert_eq!(&out, &want);
            }
        }
    }
}
