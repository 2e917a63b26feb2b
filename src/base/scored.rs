//! Candidates as a decision scores and removes them: plain data, indices
//! into the rule version that decided, no text and no destructor.

use super::error::EvalError;
use super::stage::{Level, Stage};

/// A scored candidate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub action: u32,
    pub propensity: f64,
    pub context_weight: f64,
    pub value: f64,
    pub lever: f64,
    pub priority: f64,
}

impl Scored {
    /// The arbitration order: priority descending, then action id
    /// ascending. Total and deterministic.
    #[inline]
    pub(crate) fn ranks_before(&self, other: &Scored) -> bool {
        // `+ 0.0` turns -0.0 into 0.0 (they tie, and the id decides) while
        // keeping a total order.
        match (self.priority + 0.0).total_cmp(&(other.priority + 0.0)) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.action < other.action,
        }
    }
}

/// Why a candidate was removed: plain data (24 bytes, no destructor). A
/// decision keeps these for the stages after the engagement policies (few
/// candidates); the policies' removals are kept as [`PolicyRemovals`] and
/// decoded into these as they are read. Text lives elsewhere: names in the
/// rule set, the strategy's reasons in [`Decision`]'s `notes`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Removed {
    pub action: u32,
    /// The conjunct that failed (engagement policies).
    pub cond: Option<u32>,
    /// What `stage` names it by: for `strategy`, the index of the
    /// reason in the decision's `notes`; for engine state, the index of
    /// the policy, channel or volume constraint (as [`Blocked::policy`]);
    /// otherwise [`Removed::NO_NOTE`].
    pub note: u32,
    pub stage: Stage,
    pub level: Level,
    pub error: Option<EvalError>,
}

impl Removed {
    /// `note` when there is none.
    pub(crate) const NO_NOTE: u32 = u32::MAX;

    /// A removal by an engagement policy's conjunct or the value stage.
    pub(crate) fn by_condition(
        action: u32,
        stage: Stage,
        level: Level,
        cond: Option<u32>,
        error: Option<EvalError>,
    ) -> Removed {
        Removed {
            action,
            cond,
            note: Removed::NO_NOTE,
            stage,
            level,
            error,
        }
    }

    /// A removal by engine state: `b`'s policy, channel or constraint.
    pub(crate) fn by_state(b: Blocked) -> Removed {
        Removed {
            action: b.action,
            cond: None,
            note: b.policy,
            stage: b.stage,
            level: Level::Action,
            error: None,
        }
    }
}

/// An action removed by engine state (contact policy, channel limit or
/// volume constraint) rather than by the context: logged with every
/// decision, because a replay cannot recompute it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocked {
    pub action: u32,
    pub stage: Stage,
    /// The index of the contact policy, channel (for its contact limit) or
    /// volume constraint that blocked it, by `stage`: an index, not a
    /// name, so a decision that blocks most of a catalog copies no strings
    /// and touches no reference counts.
    pub policy: u32,
}

impl Blocked {
    /// Set in [`Blocked::policy`] when the action is removed because the
    /// shared state store could not answer for the policy (`on_unavailable
    /// = "closed"`), not because the policy says so: the other bits still
    /// index the policy, so the log names it and a replay blocks the same
    /// action.
    pub(crate) const UNAVAILABLE: u32 = 1 << 31;

    /// The index of the policy, channel or constraint, without the
    /// [`Blocked::UNAVAILABLE`] flag.
    pub(crate) fn index(&self) -> usize {
        (self.policy & !Blocked::UNAVAILABLE) as usize
    }
}
