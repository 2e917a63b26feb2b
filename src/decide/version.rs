//! A published rule version as a decision holds it: the compiled rules, the
//! version number, and the engine state the rules read, resolved once at
//! publish (learning counts, volume counters). Also the small per-decision
//! helpers that depend only on the version: experiment arms, limits, the
//! decision clock.

use std::sync::Arc;

use crate::base::{Arm, ControlMode, Error, Timestamp};
use crate::decide::request::MAX_LIMIT;
use crate::ruleset::RuleSet;
use crate::state::learning::Learned;
use crate::state::volumes::MemoryVolumes;

/// A published rule version: a compiled rule set and its number.
#[derive(Debug)]
pub struct Version {
    pub(crate) number: u64,
    pub(crate) rules: RuleSet,
    pub(crate) published: Timestamp,
    /// The engine state the champion's rules read, resolved at publish.
    pub(crate) bound: Bound,
    /// The same for the challenger, if there is one.
    pub(crate) challenger_bound: Option<Bound>,
}

/// A decision's hold on its version: the version behind one more `Arc`,
/// one per lane of the engine (see [`Engine`]'s `lanes`). Taking and
/// releasing a hold writes that lane's reference count, not the version's,
/// so threads on different lanes share no cache line while deciding.
#[derive(Debug)]
pub(crate) struct Held(pub(crate) Arc<Version>);

impl std::ops::Deref for Held {
    type Target = Version;
    fn deref(&self) -> &Version {
        &self.0
    }
}

/// What a decision holds its version by.
pub(crate) type VersionRef = Arc<Held>;

/// A rule set's handles on engine state, resolved once when the version is
/// published so that a decision indexes arrays instead of looking up maps.
#[derive(Debug, Default)]
pub(crate) struct Bound {
    /// Outcome counts per (action, channel): index `action * channels +
    /// channel`; `None` where the action is not offered on the channel.
    pub counts: Box<[Option<Arc<crate::state::learning::Counts>>]>,
    /// One in-memory counter per volume constraint of the rule set (what
    /// decisions count with unless the engine has a shared volume store).
    pub counters: Box<[Arc<crate::state::counters::Counter>]>,
    /// The contextual model's counts and snapshot, when `[learning]` has
    /// one.
    pub models: Option<Arc<crate::state::learning::Models>>,
}

impl Version {
    pub(crate) fn new(
        number: u64,
        rules: RuleSet,
        learned: &Learned,
        counters: &MemoryVolumes,
    ) -> Version {
        let bound = bind(&rules, learned, counters);
        let challenger_bound = rules
            .experiment
            .as_ref()
            .and_then(|e| e.challenger.as_deref())
            .map(|c| bind(c, learned, counters));
        Version {
            number,
            rules,
            published: Timestamp::now(),
            bound,
            challenger_bound,
        }
    }

    /// The version number (1 for the first published, then increasing).
    pub fn number(&self) -> u64 {
        self.number
    }
    /// The compiled rule set (the champion, when there is an experiment).
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }
    /// When it was published.
    pub fn published(&self) -> Timestamp {
        self.published
    }
    /// The engine state bound to the rule set that decides for `arm`.
    pub(crate) fn bound_for(&self, arm: Arm) -> &Bound {
        match (arm, &self.challenger_bound) {
            (Arm::Challenger, Some(b)) => b,
            _ => &self.bound,
        }
    }

    /// The rule set that decides for `arm`.
    pub(crate) fn rules_for(&self, arm: Arm) -> &RuleSet {
        match (
            arm,
            self.rules
                .experiment
                .as_ref()
                .and_then(|e| e.challenger.as_deref()),
        ) {
            (Arm::Challenger, Some(c)) => c,
            _ => &self.rules,
        }
    }
}

/// Resolve a rule set's handles on the engine's learning counts and volume
/// counters (creating them when new).
fn bind(rs: &RuleSet, learned: &Learned, counters: &MemoryVolumes) -> Bound {
    let nch = rs.channels.len();
    let mut counts = vec![None; rs.actions.len() * nch];
    for (ci, ch) in rs.channels.iter().enumerate() {
        for &ai in ch.actions.iter() {
            counts[ai as usize * nch + ci] =
                Some(learned.counts(&rs.actions[ai as usize].id, &ch.name));
        }
    }
    let counters = rs
        .volumes
        .iter()
        .map(|v| counters.counter(&v.name))
        .collect();
    let models = rs
        .learning
        .as_ref()
        .and_then(|l| l.contextual.as_deref())
        .map(|model| {
            let np = model.predictors.len();
            let mut pc = vec![None; rs.actions.len() * nch * np];
            for (ci, ch) in rs.channels.iter().enumerate() {
                for &ai in ch.actions.iter() {
                    let row = ai as usize * nch + ci;
                    for (p, pred) in model.predictors.iter().enumerate() {
                        pc[row * np + p] = Some(learned.pred_counts(
                            &rs.actions[ai as usize].id,
                            &ch.name,
                            &pred.name,
                            pred.spec,
                            pred.len as usize,
                        ));
                    }
                }
            }
            learned.models(
                Arc::clone(
                    rs.learning
                        .as_ref()
                        .and_then(|l| l.contextual.as_ref())
                        .expect("a contextual model"),
                ),
                pc,
            )
        });
    Bound {
        counts: counts.into(),
        counters,
        models,
    }
}

/// Experiment arm for a customer: xxh3-64 of the customer id, seeded with
/// the experiment's seed; the top 53 bits as a fraction u in [0, 1):
/// control if u < control_share, challenger if u < control_share +
/// challenger_share, champion otherwise. The same customer gets the same
/// arm in every process, on every machine, after every restart.
pub(crate) fn assign_arm(rules: &RuleSet, customer_id: &str) -> Arm {
    let Some(e) = &rules.experiment else {
        return Arm::Champion;
    };
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(customer_id.as_bytes(), e.seed);
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    if u < e.control_share {
        Arm::Control
    } else if u < e.control_share + e.challenger_share && e.challenger.is_some() {
        Arm::Challenger
    } else {
        Arm::Champion
    }
}

/// The control group's behaviour for this version, if it has one.
pub(crate) fn control_mode(rules: &RuleSet) -> ControlMode {
    rules
        .experiment
        .as_ref()
        .map_or(ControlMode::NoAction, |e| e.control)
}

/// Limits a request may ask for.
pub(crate) fn check_limit(limit: usize) -> Result<usize, Error> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::InvalidRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    Ok(limit)
}

/// The clock that times decisions: the processor's time-stamp counter
/// scaled to nanoseconds where it is reliable, the operating system's
/// monotonic clock elsewhere. Cheaper than `std::time::Instant`'s two
/// reads per decision: `decide/catalog/100` went from 594 to 552 ns in an
/// A/B run (README, Benchmarks).
pub(crate) fn clock() -> quanta::Instant {
    quanta::Instant::now()
}

/// Elapsed nanoseconds since `t` (a [`clock`] reading).
pub(crate) fn since(t: quanta::Instant) -> u64 {
    clock().saturating_duration_since(t).as_nanos() as u64
}
