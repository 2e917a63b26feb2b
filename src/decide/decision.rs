//! What comes out of a decision: the chosen actions with their scores and,
//! when asked for, every candidate with the stage that removed it or how it
//! scored.

use std::sync::Arc;

pub use crate::base::{Arm, DecisionId};
pub(crate) use crate::base::{Blocked, Removed, Scored};
use crate::base::{EvalError, Level, Stage, Timestamp};
use crate::ruleset::RuleSet;

/// The answer to a [`DecisionRequest`](crate::DecisionRequest).
#[derive(Debug, Clone)]
pub struct Decision {
    pub(crate) version: crate::decide::version::VersionRef,
    pub(crate) id: DecisionId,
    pub(crate) timestamp: Timestamp,
    pub(crate) arm: Arm,
    /// The random seed of a draw (the random-eligible control group).
    pub(crate) seed: Option<u64>,
    pub(crate) channel: u32,
    pub(crate) chosen: Vec<Scored>,
    pub(crate) ranked: Vec<Scored>,
    pub(crate) removed: Vec<Removed>,
    /// The strategy's reasons for the exclusions in `removed`.
    pub(crate) notes: Vec<Arc<str>>,
    pub(crate) diagnostics: Vec<crate::ruleset::strategy::Diagnostic>,
    pub(crate) elapsed_ns: u64,
    /// Actions removed by engine state.
    pub(crate) blocked: Vec<Blocked>,
    /// The learning evidence used, per survivor: (action, successes,
    /// failures); empty without `[learning]`.
    pub(crate) evidence: Vec<(u32, u32, u32)>,
    /// The contextual model and snapshot used, if any.
    pub(crate) model: Option<ModelUse>,
    /// The contextual evidence used, per survivor in `evidence`'s order:
    /// (the customer's likelihood ratio `exp(z)`, the model's positives).
    pub(crate) model_evidence: Vec<(f64, u32)>,
    /// The probability that the first action was chosen first, when the
    /// learning mode makes it exact (posterior mean: 1; epsilon-greedy).
    pub(crate) selection_probability: Option<f64>,
    /// `ranked` holds every survivor out of arbitration order (a decision
    /// explained or logged with nothing in it that needs them in order):
    /// its readers, the log's writer included, get them sorted
    /// ([`Decision::ranked_in_order`]). Any other order of `ranked` is
    /// deliberate (an epsilon-greedy exploration puts the explored action
    /// first) and is kept.
    pub(crate) ranked_unsorted: bool,
    /// A chosen action was decided without a volume cap (the shared store
    /// unavailable, `on_unavailable = "open"`): not all its units were
    /// taken, so none is given back if the decision is refused.
    pub(crate) volumes_unmetered: bool,
    /// What an explained or logged decision records besides its lists
    /// (boxed: a plain decision carries and drops one pointer for it).
    pub(crate) recorded: Option<Box<Recorded>>,
    /// The request's warnings (`None` for a clean request: one word that
    /// a decision copies, and an `Arc` it shares with its request).
    pub(crate) warnings: Option<Arc<[crate::context::RequestWarning]>>,
}

/// The contextual adaptive model a decision used (see docs/DECISIONS.md,
/// "Contextual models"): its id (a hash of its predictors and bins) and
/// the snapshot of it the decision read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelUse {
    /// A hash of the model's predictors and their bins.
    pub id: u64,
    /// A hash of the counts the snapshot was taken from.
    pub snapshot: u64,
}

/// See [`Decision::recorded`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorded {
    /// `ranked` in arbitration order, once a reader has asked for it (when
    /// the decision left it unsorted).
    pub(crate) sorted: std::sync::OnceLock<Vec<Scored>>,
    /// The actions the engagement policies removed.
    pub(crate) policy: PolicyRemovals,
}

/// The engagement policies' removals of a decision that records them, kept
/// as what decides them: which conjuncts held (the memo's bits) and which
/// of the channel's actions passed, a bit each. Every action that did not
/// pass was removed by the first of its checks that failed, which
/// [`Removals`] works out for whoever reads the explanation: a decision
/// that removes 800 of 1,000 actions keeps 20-odd words, not 800 entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyRemovals {
    /// The memo's words, then the passing set's (empty: not recorded).
    bits: Vec<u64>,
    memo_words: usize,
    /// The failed conjuncts that could not be evaluated, and why, ascending
    /// by conjunct (only when explaining; the log's writer works reasons
    /// out itself).
    errors: Vec<(u32, EvalError)>,
}

impl PolicyRemovals {
    /// Whether the decision recorded its policies' removals.
    pub(crate) fn recorded(&self) -> bool {
        !self.bits.is_empty()
    }

    /// Its words, emptied (kept by a [`Scratch`](super::Scratch)).
    pub(crate) fn take_bits(&mut self) -> Vec<u64> {
        let mut bits = std::mem::take(&mut self.bits);
        bits.clear();
        bits
    }

    /// The removals that the memo bits `memo` and the passing set
    /// `passing` decide, in `bits` (an empty buffer to reuse); `errors`:
    /// why failed conjuncts could not be evaluated.
    pub(crate) fn of(
        mut bits: Vec<u64>,
        memo: &[u64],
        passing: &[u64],
        errors: Vec<(u32, EvalError)>,
    ) -> Self {
        debug_assert!(errors.windows(2).all(|w| w[0].0 < w[1].0));
        bits.clear();
        bits.reserve_exact(memo.len() + passing.len());
        bits.extend_from_slice(memo);
        bits.extend_from_slice(passing);
        PolicyRemovals {
            bits,
            memo_words: memo.len(),
            errors,
        }
    }
}

/// Every removed candidate of a decision: the engagement policies'
/// removals in the channel's order (each with the first check that
/// failed, found as they are read), then the later stages' (engine state,
/// value, strategy) as the decision recorded them.
pub(crate) struct Removals<'a> {
    checks: &'a crate::ruleset::policy::Checks,
    actions: &'a [u32],
    memo: &'a [u64],
    passing: &'a [u64],
    errors: &'a [(u32, EvalError)],
    /// The channel's action count (bits past it in the last word are not
    /// actions).
    n: usize,
    /// The word of `passing` being read, and its removed actions not yet
    /// returned.
    word: usize,
    rest: u64,
    /// Policy removals not yet returned.
    left: usize,
    recorded: std::slice::Iter<'a, Removed>,
}

impl<'a> Removals<'a> {
    /// The removed actions of word `w` of the passing set.
    fn removed_in(&self, w: usize) -> u64 {
        let valid = if (w + 1) * 64 <= self.n {
            !0
        } else {
            (1u64 << (self.n % 64)) - 1
        };
        !self.passing[w] & valid
    }
}

impl Iterator for Removals<'_> {
    type Item = Removed;

    // Inlined into the reader's loop, the entry stays in registers.
    #[inline]
    fn next(&mut self) -> Option<Removed> {
        while self.left > 0 {
            if self.rest == 0 {
                self.word += 1;
                self.rest = self.removed_in(self.word);
                continue;
            }
            let pos = self.word * 64 + self.rest.trailing_zeros() as usize;
            self.rest &= self.rest - 1;
            self.left -= 1;
            // An action that did not pass has a check that failed: its
            // need is its checks' conjuncts.
            let Some(check) = self.checks.first_failure(pos, self.memo) else {
                debug_assert!(false, "an action that did not pass failed no check");
                continue;
            };
            // Ascending by conjunct, as `Checks::failed` finds them.
            let error = self
                .errors
                .binary_search_by_key(&check.cond, |&(c, _)| c)
                .ok()
                .map(|i| self.errors[i].1);
            return Some(Removed::by_condition(
                self.actions[pos],
                check.stage,
                check.level,
                Some(check.cond),
                error,
            ));
        }
        self.recorded.next().copied()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.left + self.recorded.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Removals<'_> {}

impl Decision {
    /// The ranked survivors in arbitration order: sorted on the first
    /// call if the decision left them unsorted.
    pub(crate) fn ranked_in_order(&self) -> &[Scored] {
        match &self.recorded {
            Some(r) if self.ranked_unsorted => r
                .sorted
                .get_or_init(|| super::selection::sorted(&self.ranked)),
            _ => {
                debug_assert!(!self.ranked_unsorted, "unsorted with nowhere to sort to");
                &self.ranked
            }
        }
    }

    /// Every removed candidate, engagement policies' first.
    pub(crate) fn removals(&self) -> Removals<'_> {
        let rs = self.ruleset();
        let ch = &rs.channels[self.channel as usize];
        static NONE: PolicyRemovals = PolicyRemovals {
            bits: Vec::new(),
            memo_words: 0,
            errors: Vec::new(),
        };
        let p = self.recorded.as_ref().map_or(&NONE, |r| &r.policy);
        let (memo, passing) = p.bits.split_at(p.memo_words.min(p.bits.len()));
        let n = if passing.is_empty() {
            0
        } else {
            ch.actions.len()
        };
        let mut it = Removals {
            checks: &ch.checks,
            actions: &ch.actions,
            memo,
            passing,
            errors: &p.errors,
            n,
            word: 0,
            rest: 0,
            left: 0,
            recorded: self.removed.iter(),
        };
        if n > 0 {
            it.rest = it.removed_in(0);
            it.left = (0..passing.len())
                .map(|w| it.removed_in(w).count_ones() as usize)
                .sum();
        }
        it
    }

    /// The decision's unique id.
    pub fn id(&self) -> DecisionId {
        self.id
    }

    /// The decision time.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The rule version number that decided.
    pub fn version(&self) -> u64 {
        self.version.number
    }

    /// The rule set that decided (the challenger's for the challenger arm).
    pub fn ruleset(&self) -> &RuleSet {
        self.version.rules_for(self.arm)
    }

    /// The seed of the random draw, if the decision made one.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The experiment arm.
    pub fn arm(&self) -> Arm {
        self.arm
    }

    /// The name of the experiment the customer was assigned an arm of, if
    /// the version runs one.
    pub fn experiment(&self) -> Option<&str> {
        self.version
            .rules
            .experiment
            .as_ref()
            .map(|e| e.name.as_str())
    }

    /// Nanoseconds spent deciding.
    pub fn elapsed_ns(&self) -> u64 {
        self.elapsed_ns
    }

    /// The channel decided for.
    pub fn channel(&self) -> &str {
        &self.ruleset().channels[self.channel as usize].name
    }

    /// The chosen actions, best first.
    pub fn actions(&self) -> impl ExactSizeIterator<Item = RankedAction<'_>> {
        self.chosen
            .iter()
            .enumerate()
            .map(move |(i, s)| RankedAction {
                decision: self,
                rank: i + 1,
                scored: *s,
            })
    }

    /// The chosen action ids, best first.
    pub fn action_ids(&self) -> Vec<&str> {
        self.chosen
            .iter()
            .map(|s| &*self.ruleset().actions[s.action as usize].id)
            .collect()
    }

    /// With `explain`: every candidate that survived the policies, best
    /// first, including those beyond the limit. Empty otherwise.
    ///
    /// The decision keeps the survivors as it scored them and picks its
    /// top N without sorting them all; the first call sorts them (once).
    pub fn ranked(&self) -> impl ExactSizeIterator<Item = RankedAction<'_>> {
        self.ranked_in_order()
            .iter()
            .enumerate()
            .map(move |(i, s)| RankedAction {
                decision: self,
                rank: i + 1,
                scored: *s,
            })
    }

    /// With `explain`: every candidate removed, with the stage and
    /// condition that removed it. Empty otherwise.
    ///
    /// The engagement policies' removals come first, in the channel's
    /// action order, then the later stages' (contact policies and limits,
    /// volume constraints, value, strategy) in the order they removed
    /// them. The decision keeps the policies' removals as the results of
    /// the conditions and which actions passed (a few words, however many
    /// actions were removed); the first failed check of each is found as
    /// it is read.
    pub fn filtered(&self) -> impl ExactSizeIterator<Item = FilteredAction<'_>> {
        self.removals().map(move |removed| FilteredAction {
            decision: self,
            removed,
        })
    }

    /// The contextual adaptive model the decision used, if its rule set
    /// has one.
    pub fn model(&self) -> Option<ModelUse> {
        self.model
    }

    /// The same decision without its explanation lists.
    pub(crate) fn without_candidates(&self) -> Decision {
        Decision {
            version: self.version.clone(),
            id: self.id,
            timestamp: self.timestamp,
            arm: self.arm,
            seed: self.seed,
            channel: self.channel,
            chosen: self.chosen.clone(),
            ranked: Vec::new(),
            removed: Vec::new(),
            recorded: None,
            notes: Vec::new(),
            diagnostics: self.diagnostics.clone(),
            elapsed_ns: self.elapsed_ns,
            blocked: self.blocked.clone(),
            evidence: self.evidence.clone(),
            model: self.model,
            model_evidence: self.model_evidence.clone(),
            selection_probability: self.selection_probability,
            ranked_unsorted: false,
            volumes_unmetered: self.volumes_unmetered,
            warnings: self.warnings.clone(),
        }
    }

    /// The probability that this decision's first action was the one put
    /// first, when the learning mode makes it exact: 1 for the posterior
    /// mean, `(1 - ε) + ε/n` or `ε/n` for epsilon-greedy over `n`
    /// survivors; `None` for Thompson sampling and without `[learning]`.
    pub fn selection_probability(&self) -> Option<f64> {
        self.selection_probability
    }

    /// What the request held that this decision did not use (context
    /// attributes the schema does not declare, with the closest declared
    /// name): `"warnings"` in the JSON response when there are any.
    pub fn warnings(&self) -> &[crate::context::RequestWarning] {
        self.warnings.as_deref().unwrap_or(&[])
    }

    /// Problems in the strategy's hooks during this decision (the decision
    /// was made without the hook that failed).
    pub fn diagnostics(&self) -> &[crate::ruleset::strategy::Diagnostic] {
        &self.diagnostics
    }
}

/// A ranked action with its score.
#[derive(Debug, Clone, Copy)]
pub struct RankedAction<'a> {
    decision: &'a Decision,
    rank: usize,
    scored: Scored,
}

impl<'a> RankedAction<'a> {
    fn rules(&self) -> &'a RuleSet {
        self.decision.ruleset()
    }
    /// 1 for the best.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// The action id.
    pub fn action(&self) -> &'a str {
        &self.rules().actions[self.scored.action as usize].id
    }
    /// The action's display name, if the rules give one.
    pub fn name(&self) -> Option<&'a str> {
        self.rules().actions[self.scored.action as usize]
            .name
            .as_deref()
    }
    /// The action's group.
    pub fn group(&self) -> &'a str {
        let rs = self.rules();
        &rs.groups[rs.actions[self.scored.action as usize].group as usize].name
    }
    /// The action's issue.
    pub fn issue(&self) -> &'a str {
        let rs = self.rules();
        &rs.issues[rs.actions[self.scored.action as usize].issue as usize].name
    }
    /// The treatment for the decision's channel.
    pub fn treatment(&self) -> &'a str {
        let rs = self.rules();
        rs.actions[self.scored.action as usize].treatments[self.decision.channel as usize]
            .as_deref()
            .unwrap_or("")
    }
    /// P x C x V x L.
    pub fn priority(&self) -> f64 {
        self.scored.priority
    }
    /// P: the propensity used.
    pub fn propensity(&self) -> f64 {
        self.scored.propensity
    }
    /// C: the context weight.
    pub fn context_weight(&self) -> f64 {
        self.scored.context_weight
    }
    /// V: the value.
    pub fn value(&self) -> f64 {
        self.scored.value
    }
    /// L: the business lever.
    pub fn lever(&self) -> f64 {
        self.scored.lever
    }
}

/// A candidate removed before ranking, and why.
#[derive(Debug, Clone, Copy)]
pub struct FilteredAction<'a> {
    decision: &'a Decision,
    removed: Removed,
}

impl<'a> FilteredAction<'a> {
    fn rules(&self) -> &'a RuleSet {
        self.decision.ruleset()
    }
    /// The action id.
    pub fn action(&self) -> &'a str {
        &self.rules().actions[self.removed.action as usize].id
    }
    /// The stage that removed it.
    pub fn stage(&self) -> Stage {
        self.removed.stage
    }
    /// Whether the failing policy is the group's or the action's.
    pub fn level(&self) -> Level {
        self.removed.level
    }
    /// The condition that was not met (for engagement policies), or the
    /// value expression (for the value stage).
    pub fn condition(&self) -> Option<&'a str> {
        let rs = self.rules();
        match self.removed.cond {
            Some(c) => Some(&rs.conds[c as usize].text),
            None => match &rs.actions[self.removed.action as usize].value {
                crate::ruleset::ValueFn::Expr(_, text, _) if self.removed.stage == Stage::Value => {
                    Some(text)
                }
                _ => None,
            },
        }
    }
    /// Where the failed condition is written in the rule files.
    pub fn condition_location(&self) -> Option<&'a crate::base::Location> {
        self.removed
            .cond
            .map(|c| &self.rules().conds[c as usize].location)
    }
    /// Why the condition could not be evaluated, if it could not
    /// (`missing attribute income`, `integer overflow`, ...). `None` means it
    /// evaluated to false.
    pub fn reason(&self) -> Option<String> {
        let rs = self.rules();
        if let Some(n) = rs.removal_note(&self.removed, &self.decision.notes) {
            return Some(n.to_string());
        }
        self.removed.error.map(|e| match e {
            EvalError::Missing(slot) => format!(
                "missing attribute `{}`",
                rs.schema.attrs[slot as usize].name
            ),
            EvalError::Overflow => "integer overflow".into(),
            EvalError::DivisionByZero => "division by zero".into(),
        })
    }
    /// The missing attribute that made the condition fail, if that is why.
    pub fn missing_attribute(&self) -> Option<&'a str> {
        match self.removed.error {
            Some(EvalError::Missing(slot)) => Some(&self.rules().schema.attrs[slot as usize].name),
            _ => None,
        }
    }
}
