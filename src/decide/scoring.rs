//! Stage 4, scoring: for every action that passed the engagement policies
//! and is not blocked by engine state, `priority = P × C × V × L`, offered
//! to the top N as it is scored (one pass over the passing set).
//!
//! - P, the propensity: the starting propensity, or with `[learning]` the
//!   posterior from the outcome counts (its mean or a seeded draw);
//! - C, the context weight: `1 + Σ(matching boosts)/100` over the context
//!   weights that target the action, its group or its issue;
//! - V, the value: a number or a value expression (one that fails or is
//!   not finite removes the candidate at stage `value`);
//! - L, the lever: `1 + (issue + group + action lever)/100`, folded when
//!   the rule set loads.

use std::sync::Arc;

use super::decision::PolicyRemovals;
use super::engagement::Engaged;
use super::request::ReplayState;
use super::scratch::Lists;
use super::selection::{sort_all, TopN};
use crate::base::{Blocked, ControlMode, Level, Removed, Scored, Stage};
use crate::ruleset::learning::{Learning, Mode as LearnMode, Rng};
use crate::ruleset::policy::Memo;
use crate::ruleset::{Action, Channel, RuleSet, ValueFn};
use crate::state::learning::Counts;

/// What a decision records besides the chosen actions.
#[derive(Clone, Copy)]
pub(crate) struct Record {
    /// Every removed candidate: the engagement policies' removals as the
    /// bits that decide them ([`PolicyRemovals`]), the later stages' with
    /// their stage and reason.
    pub removed: bool,
    /// Why failed conjuncts could not be evaluated (re-evaluates them).
    pub errors: bool,
    /// Which survivors the decision keeps.
    pub survivors: Survivors,
}

/// Which survivors a decision keeps besides its top N.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Survivors {
    /// The top N only (`chosen`).
    TopN,
    /// Every survivor in `ranked`, sorted; `chosen` is left to the caller.
    Sorted,
    /// Every survivor in `ranked`, unsorted, and the top N in `chosen`:
    /// the decision log's writer sorts them off the decision path, an
    /// explanation's reader on its first call to `ranked()`.
    Unsorted,
}

/// The candidates of a decision as scoring leaves them, and what later
/// stages add.
pub(crate) struct Candidates {
    pub chosen: Vec<Scored>,
    pub ranked: Vec<Scored>,
    /// The engagement policies' removals, when recorded.
    pub policy: PolicyRemovals,
    /// The later stages' removals (engine state, value, strategy).
    pub removed: Vec<Removed>,
    /// The strategy's reasons, indexed by `removed`.
    pub notes: Vec<Arc<str>>,
}

/// How a decision's propensities are learned.
pub(crate) struct Learn<'a> {
    pub learning: &'a Learning,
    pub evidence: Evidence<'a>,
    pub thompson: bool,
    /// The contextual model's evidence, when `[learning]` has one.
    pub contextual: Option<ModelEvidence<'a>>,
}

/// Where a decision's contextual evidence comes from.
pub(crate) enum ModelEvidence<'a> {
    /// The version's snapshot and this customer's bins.
    Live {
        model: &'a crate::ruleset::learning::Contextual,
        snapshot: &'a crate::state::learning::Snapshot,
        bins: &'a [u32],
    },
    /// The logged (likelihood ratio, positives) per action index.
    Replayed(
        &'a crate::ruleset::learning::Contextual,
        &'a [Option<(f64, u32)>],
    ),
}

/// Where a decision's learning evidence comes from.
pub(crate) enum Evidence<'a> {
    /// The engine's counts: (counts, channels, channel).
    Live(&'a [Option<Arc<Counts>>], usize, usize),
    /// The logged evidence per action index.
    Replayed(&'a [Option<(u32, u32)>]),
}

impl Learn<'_> {
    /// P for action `ai` with starting propensity `p0`, recording the
    /// evidence used in `used`.
    fn propensity(
        &self,
        ai: u32,
        p0: f64,
        rng: Option<&mut Rng>,
        used: &mut Vec<(u32, u32, u32)>,
        used_model: &mut Vec<(f64, u32)>,
    ) -> f64 {
        let (s, f) = match &self.evidence {
            Evidence::Live(counts, nch, ci) => counts[ai as usize * nch + ci]
                .as_ref()
                .map_or((0, 0), |c| self.learning.evidence(c.get())),
            Evidence::Replayed(v) => v[ai as usize].unwrap_or((0, 0)),
        };
        used.push((ai, s, f));
        if let Some(m) = &self.contextual {
            let (model, z, positives) = match m {
                ModelEvidence::Live {
                    model,
                    snapshot,
                    bins,
                } => {
                    let Evidence::Live(_, nch, ci) = &self.evidence else {
                        unreachable!("live model evidence comes with live counts")
                    };
                    let row = ai as usize * nch + ci;
                    let nb = model.bins as usize;
                    let ratios = &snapshot.ratios[row * nb..(row + 1) * nb];
                    let z = likelihood(ratios, bins);
                    (*model, z, snapshot.positives[row])
                }
                ModelEvidence::Replayed(model, v) => {
                    let (z, positives) = v[ai as usize].unwrap_or((1.0, 0));
                    (*model, z, positives)
                }
            };
            used_model.push((z, positives));
            let p_beta = self.learning.mean(p0, (s, f));
            let p = Learning::contextual_mean(p_beta, z, model.weight(positives));
            return match rng {
                Some(r) if self.thompson => self.learning.contextual_draw(p, (s, f), r),
                _ => p,
            };
        }
        match rng {
            Some(r) if self.thompson => self.learning.draw(p0, (s, f), r),
            _ => self.learning.mean(p0, (s, f)),
        }
    }
}

/// The product of the customer's bins' likelihood ratios, in four
/// independent products: one running product is a chain of dependent
/// multiplications (20 predictors × 100 actions of them cost 6 µs a
/// decision when the product lived on the stack of the decision's frame).
#[inline(never)]
fn likelihood(ratios: &[f32], bins: &[u32]) -> f64 {
    let mut acc = [1f64; 4];
    let mut chunks = bins.chunks_exact(4);
    for c in chunks.by_ref() {
        for (a, &b) in acc.iter_mut().zip(c) {
            *a *= f64::from(ratios[b as usize]);
        }
    }
    let mut p = (acc[0] * acc[1]) * (acc[2] * acc[3]);
    for &b in chunks.remainder() {
        p *= f64::from(ratios[b as usize]);
    }
    // Finite, so that the log (and a replay) has it.
    if p.is_nan() {
        1.0
    } else {
        p.clamp(1e-300, 1e300)
    }
}

/// The logged evidence of a replayed decision, per action index of `rs`.
pub(crate) fn replayed_evidence(rs: &RuleSet, r: &ReplayState) -> Vec<Option<(u32, u32)>> {
    let mut v = vec![None; rs.actions.len()];
    for (action, s, f) in &r.evidence {
        if let Some(ai) = rs.action_index(action) {
            v[ai as usize] = Some((*s, *f));
        }
    }
    v
}

/// The logged contextual evidence of a replayed decision, per action
/// index of `rs`.
pub(crate) fn replayed_model_evidence(rs: &RuleSet, r: &ReplayState) -> Vec<Option<(f64, u32)>> {
    let mut v = vec![None; rs.actions.len()];
    for (action, z, positives) in &r.model_evidence {
        if let Some(ai) = rs.action_index(action) {
            v[ai as usize] = Some((*z, *positives));
        }
    }
    v
}

/// A decision's learning: the model, its draws, and the evidence used
/// (the Beta model's, and the contextual model's).
pub(crate) type LearnState<'a, 'b> = (
    &'a Learn<'b>,
    Option<&'a mut Rng>,
    &'a mut Vec<(u32, u32, u32)>,
    &'a mut Vec<(f64, u32)>,
);

/// Score every action of `ch` that passed (`engaged`) and is not in
/// `blocked` (ascending by action), offering each to the top `limit`.
/// `record.survivors` says what `ranked` and `chosen` hold. Without
/// `STATEFUL` nothing is blocked and nothing learned; without `RECORD`,
/// `record` must ask for nothing.
#[allow(clippy::too_many_arguments)]
pub(crate) fn score<const STATEFUL: bool, const RECORD: bool>(
    rs: &RuleSet,
    ch: &Channel,
    engaged: &Engaged<'_>,
    limit: usize,
    record: Record,
    blocked: &[Blocked],
    mut learn: Option<LearnState<'_, '_>>,
    lists: &mut Lists,
    keys: &mut Vec<u64>,
) -> Candidates {
    debug_assert!(
        RECORD || !(record.removed || record.errors || record.survivors != Survivors::TopN)
    );
    let record = Record {
        removed: RECORD && record.removed,
        errors: RECORD && record.errors,
        survivors: if RECORD {
            record.survivors
        } else {
            Survivors::TopN
        },
    };
    let memo = &engaged.memo;
    let mut chosen = TopN::new(
        limit,
        if record.survivors == Survivors::Sorted {
            0
        } else {
            limit.min(ch.actions.len())
        },
    );
    // Sized for the channel's actions up front when they are recorded (no
    // regrowth while deciding).
    let mut ranked = if record.survivors == Survivors::TopN {
        Vec::new()
    } else {
        lists.scored(ch.actions.len())
    };
    let mut removed = if record.removed {
        lists.removed()
    } else {
        Vec::new()
    };
    debug_assert!(ch.actions.windows(2).all(|w| w[0] < w[1]));
    debug_assert!(blocked.windows(2).all(|w| w[0].action <= w[1].action));
    let mut next_block = 0;
    let actions: &[Action] = &rs.actions;
    for (wi, &word) in engaged.passing.iter().enumerate() {
        let mut rest = word;
        while rest != 0 {
            let pos = wi * 64 + rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let ai = ch.actions[pos];
            let action = &actions[ai as usize];
            // Blocks are sorted by action, as the channel's actions are (they
            // ascend): a cursor finds each in constant time.
            if STATEFUL && next_block < blocked.len() {
                while next_block < blocked.len() && blocked[next_block].action < ai {
                    next_block += 1;
                }
                if let Some(i) = (next_block < blocked.len() && blocked[next_block].action == ai)
                    .then_some(next_block)
                {
                    if record.removed {
                        removed.push(Removed::by_state(blocked[i]));
                    }
                    continue;
                }
            }
            let Some(value) = value(action, memo) else {
                if record.removed {
                    let error = match &action.value {
                        ValueFn::Expr(ir, ..) if record.errors => ir.eval(memo.env()).err(),
                        _ => None,
                    };
                    removed.push(Removed::by_condition(
                        ai,
                        Stage::Value,
                        Level::Action,
                        None,
                        error,
                    ));
                }
                continue;
            };
            let propensity = match &mut learn {
                Some((l, rng, used, used_model)) if STATEFUL => l.propensity(
                    ai,
                    action.starting_propensity,
                    rng.as_deref_mut(),
                    used,
                    used_model,
                ),
                _ => starting_propensity(action),
            };
            let context_weight = context_weight(rs, action, memo);
            let scored = Scored {
                action: ai,
                propensity,
                context_weight,
                value,
                lever: action.lever,
                priority: propensity * context_weight * value * action.lever,
            };
            if record.survivors != Survivors::TopN {
                ranked.push(scored);
            }
            if record.survivors != Survivors::Sorted {
                chosen.offer(scored);
            }
        }
    }
    if record.survivors == Survivors::Sorted {
        sort_all(&mut ranked, lists, keys);
    }
    Candidates {
        chosen: chosen.into_vec(),
        ranked,
        policy: PolicyRemovals::default(),
        removed,
        notes: Vec::new(),
    }
}

/// P for an action without learning: its starting propensity.
#[inline]
fn starting_propensity(action: &Action) -> f64 {
    action.starting_propensity
}

/// C for an action: 1 + the boosts of its matching context weights / 100.
#[inline]
fn context_weight(rs: &RuleSet, action: &Action, memo: &Memo<'_>) -> f64 {
    let mut boost = 0.0;
    let mut matched = false;
    for &w in action.weights.iter() {
        let w = &rs.weights[w as usize];
        if memo.covers(&w.need) {
            boost += w.boost;
            matched = true;
        }
    }
    if !matched {
        // What the formula gives with no boost, without its division.
        return 1.0;
    }
    // Each boost is at least -100, but several can match: C stops at 0
    // (an action can be irrelevant now, not less than irrelevant).
    (1.0 + boost / 100.0).max(0.0)
}

/// V for an action, or `None` if its expression fails or is not finite.
#[inline]
fn value(action: &Action, memo: &Memo<'_>) -> Option<f64> {
    match &action.value {
        ValueFn::Const(v) => Some(*v),
        ValueFn::Expr(_, _, Some(affine)) => affine.eval(memo.env().ctx).filter(|v| v.is_finite()),
        ValueFn::Expr(ir, _, None) => match ir.eval(memo.env()) {
            Ok(v) if v.is_finite() => Some(v),
            _ => None,
        },
    }
}

/// What the decision log wants a decision to keep besides its chosen
/// actions, whatever the request's `explain`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Keep {
    /// Every removed candidate and the stage that removed it.
    pub removed: bool,
    /// Every ranked candidate with its scores.
    pub ranked: bool,
}

impl Record {
    /// What a decision records, for `explain` and what the log keeps.
    /// Every survivor is sorted when the strategy ranks, the random control
    /// group, volume constraints (a refused action's place goes to the
    /// next) or epsilon-greedy exploration need them all.
    pub(crate) fn plan(
        rs: &RuleSet,
        strategy_ranks: bool,
        control: Option<ControlMode>,
        explain: bool,
        keep: Keep,
    ) -> Record {
        let learning = rs.learning.as_ref();
        let sorted_here = strategy_ranks
            || control == Some(ControlMode::RandomEligible)
            || !rs.volumes.is_empty()
            || learning.is_some_and(|l| l.mode == LearnMode::EpsilonGreedy);
        Record {
            removed: explain || keep.removed,
            errors: explain,
            survivors: match (sorted_here, keep.ranked || explain) {
                (true, _) => Survivors::Sorted,
                (false, true) => Survivors::Unsorted,
                (false, false) => Survivors::TopN,
            },
        }
    }
}

/// [`score`] in the form the decision needs: without engine state or
/// recording, the loop has neither in it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn score_all(
    rs: &RuleSet,
    ch: &Channel,
    engaged: &Engaged<'_>,
    limit: usize,
    record: Record,
    blocked: &[Blocked],
    learn: Option<LearnState<'_, '_>>,
    lists: &mut Lists,
    keys: &mut Vec<u64>,
) -> Candidates {
    let plain = !record.removed && record.survivors == Survivors::TopN;
    match (blocked.is_empty() && learn.is_none(), plain) {
        (true, true) => {
            score::<false, false>(rs, ch, engaged, limit, record, blocked, None, lists, keys)
        }
        (true, false) => {
            score::<false, true>(rs, ch, engaged, limit, record, blocked, None, lists, keys)
        }
        (false, _) => {
            score::<true, true>(rs, ch, engaged, limit, record, blocked, learn, lists, keys)
        }
    }
}

/// The seed of learning's draws, when its mode draws: the replayed
/// decision's, the request's, or one made from the decision id (the log
/// keeps it either way).
pub(crate) fn seed_of_draws(
    learning: Option<&Learning>,
    replay: Option<&ReplayState>,
    requested: Option<u64>,
    id: crate::base::DecisionId,
) -> Option<u64> {
    learning.filter(|l| l.mode.draws()).map(|_| {
        replay
            .and_then(|r| r.seed)
            .or(requested)
            .unwrap_or_else(|| xxhash_rust::xxh3::xxh3_64(&id.0.to_le_bytes()))
    })
}

impl Candidates {
    /// Forget the ranked survivors unless `ranked`, and the removed
    /// candidates unless `removed` (a decision without `explain` keeps
    /// only what the log wants).
    pub(crate) fn forget(&mut self, ranked: bool, removed: bool) {
        if !ranked {
            self.ranked.clear();
        }
        if !removed {
            self.removed.clear();
            self.notes.clear();
            self.policy = PolicyRemovals::default();
        }
    }
}

impl<'a> Learn<'a> {
    /// Learning's view of the evidence: the replayed decision's when
    /// there is one, else the engine's counts for `channel`.
    /// With a contextual model, `model` is its live snapshot and this
    /// customer's bins, or the replayed decision's logged evidence.
    pub(crate) fn of(
        learning: &'a Learning,
        replayed: Option<&'a [Option<(u32, u32)>]>,
        bound: &'a crate::decide::version::Bound,
        rs: &RuleSet,
        channel: u32,
        contextual: Option<ModelEvidence<'a>>,
    ) -> Learn<'a> {
        Learn {
            learning,
            evidence: match replayed {
                Some(v) => Evidence::Replayed(v),
                None => Evidence::Live(&bound.counts, rs.channels.len(), channel as usize),
            },
            thompson: learning.mode == LearnMode::Thompson,
            contextual,
        }
    }
}
