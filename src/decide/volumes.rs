//! The volume-constraint part of the state checks ([`super::state_checks`]):
//! reading each cap before scoring, taking a unit of each for the chosen
//! actions, and giving units back.
//!
//! The counters are the version's own in memory (resolved at publish, one
//! atomic per check) unless the engine has a shared [`VolumeStore`]
//! (Redis): then a decision reads every cap its channel can hit in one
//! call, takes each unit with one atomic call, and a store that fails is
//! counted and met with the engine's `on_unavailable`:
//! - `closed`: an action with a cap is removed at the volume-constraint
//!   stage, with the reason "state unavailable" (the log names the
//!   constraint), and the best remaining survivor takes its place; the
//!   other actions still decide.
//! - `open`: the action is decided without its cap; its unit is not
//!   counted.
//!
//! After its first failed call a decision calls the store no more: each
//! decision waits for at most one failed call (its deadline), however
//! many caps it meets.

use super::decision::Decision;
use super::scoring::Candidates;
use super::state_checks::State;
use super::version::Bound;
use crate::base::{Blocked, Error, Removed, Scored, Stage};
use crate::ruleset::contact::VolumeConstraint;
use crate::ruleset::{Channel, RuleSet};
use crate::state::fleet::OnUnavailable;
use crate::state::volumes::{Take, VolumePeriod, VolumeStore};

/// Where a decision counts volume units.
#[derive(Clone, Copy)]
enum Counters<'a> {
    /// The version's in-memory counters.
    Memory(&'a Bound),
    /// The engine's shared store.
    Shared(&'a dyn VolumeStore),
}

fn counters<'a>(state: &State<'a>, bound: &'a Bound) -> Counters<'a> {
    match state.volumes {
        Some(store) => Counters::Shared(store),
        None => Counters::Memory(bound),
    }
}

/// The period of `v` that `now` falls in.
fn period(v: &VolumeConstraint, now: i64) -> VolumePeriod<'_> {
    let number = v.period.window(now);
    VolumePeriod {
        constraint: &v.name,
        number,
        ends: v.period.end(number),
        length: v.period.seconds(),
    }
}

/// The volume constraints that count action `ai` on `ch`: its own (and its
/// group's), then the channel's.
fn constraints<'r>(rs: &'r RuleSet, ch: &'r Channel, ai: u32) -> impl Iterator<Item = u32> + 'r {
    rs.actions[ai as usize]
        .volumes
        .iter()
        .chain(ch.volumes.iter())
        .copied()
}

/// What [`read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// Check the version's in-memory counters as needed.
    Memory,
    /// The shared store's counts are in the buffer [`read`] filled.
    Shared,
    /// The shared store failed: block every capped action (`closed`).
    Closed,
    /// The shared store failed: decide without the caps (`open`).
    Open,
}

/// The caps `ch`'s actions can hit, for a shared store: each
/// constraint's index and its period of `now`.
pub(crate) fn periods<'r>(
    rs: &'r RuleSet,
    ch: &Channel,
    now: i64,
) -> (Vec<usize>, Vec<VolumePeriod<'r>>) {
    let mut wanted = vec![false; rs.volumes.len()];
    for &ai in ch.actions.iter() {
        for vi in constraints(rs, ch, ai) {
            wanted[vi as usize] = true;
        }
    }
    let indices: Vec<usize> = (0..wanted.len()).filter(|&i| wanted[i]).collect();
    let periods = indices
        .iter()
        .map(|&i| period(&rs.volumes[i], now))
        .collect();
    (indices, periods)
}

/// What a decision read of the caps gave (`Some` when it was read
/// together with the history, see [`crate::state::volumes::StateReads`]).
pub(crate) type Prefetched = Option<Result<Vec<Option<u32>>, ()>>;

/// Read the caps `ch`'s actions can hit: nothing to do for in-memory
/// counters; from a shared store, every constraint's count in the period
/// of `now`, in one call (or as `prefetched`), into `counts` (by
/// constraint index; `None`: too old). A failed read is counted and sets
/// `down`.
pub(crate) fn read(
    rs: &RuleSet,
    ch: &Channel,
    state: &State<'_>,
    now: i64,
    counts: &mut Vec<Option<u32>>,
    down: &mut bool,
    prefetched: Prefetched,
) -> Read {
    let Some(store) = state.volumes else {
        return Read::Memory;
    };
    counts.clear();
    counts.resize(rs.volumes.len(), Some(0));
    let (indices, periods) = periods(rs, ch, now);
    if indices.is_empty() {
        return Read::Shared;
    }
    let got = match prefetched {
        Some(Ok(got)) => Ok(got),
        // Counted where it failed.
        Some(Err(())) => {
            *down = true;
            return match state.on_unavailable {
                OnUnavailable::Closed => Read::Closed,
                OnUnavailable::Open => Read::Open,
            };
        }
        None => {
            let mut got = Vec::with_capacity(periods.len());
            store.used(&periods, &mut got).map(|()| got)
        }
    };
    match got {
        Ok(got) if got.len() == periods.len() => {
            for (&i, n) in indices.iter().zip(got) {
                counts[i] = n;
            }
            Read::Shared
        }
        Ok(got) => unavailable(
            state,
            down,
            Error::State(format!(
                "the volume store answered {} counts for {} periods",
                got.len(),
                periods.len()
            )),
        ),
        Err(e) => unavailable(state, down, e),
    }
}

/// A failed store call: counted, and what the decision does now.
fn unavailable(state: &State<'_>, down: &mut bool, e: Error) -> Read {
    *down = true;
    match state.failed(e) {
        Err(_) => Read::Closed,
        Ok(()) => Read::Open,
    }
}

/// The first volume constraint of action `ai` on `ch` whose cap is reached
/// in the period of `now` (with [`Blocked::UNAVAILABLE`] when the shared
/// store could not say and `on_unavailable` is `closed`).
pub(crate) fn block(
    rs: &RuleSet,
    ch: &Channel,
    bound: &Bound,
    read: Read,
    counts: &[Option<u32>],
    ai: u32,
    now: i64,
) -> Result<Option<u32>, Error> {
    for vi in constraints(rs, ch, ai) {
        let v = &rs.volumes[vi as usize];
        let used = match read {
            Read::Memory => bound.counters[vi as usize].used(v.period.window(now)),
            Read::Shared => counts[vi as usize],
            Read::Closed => return Ok(Some(vi | Blocked::UNAVAILABLE)),
            Read::Open => return Ok(None),
        };
        match used {
            Some(n) if n < v.max => {}
            Some(_) => return Ok(Some(vi)),
            None => return Err(too_old(rs, vi, now)),
        }
    }
    Ok(None)
}

/// The error of a decision whose period a volume constraint no longer
/// counts.
fn too_old(rs: &RuleSet, vi: u32, now: i64) -> Error {
    let v = &rs.volumes[vi as usize];
    Error::InvalidRequest(format!(
        "now ({}) is more than {} {}s before the newest period volume constraint `{}` has counted: \
         its cap can no longer be checked exactly for that time",
        crate::base::Timestamp(now),
        crate::state::volumes::KEPT_PERIODS - 1,
        v.period.name(),
        v.name
    ))
}

/// What taking one unit gave.
enum Took {
    Taken,
    /// Refused by the constraint (its index, flagged when the store was
    /// unavailable).
    Refused(u32),
    /// Decided without the cap (`open`, the store unavailable).
    Unmetered,
    TooOld,
}

/// Take one unit of constraint `vi` in the period of `now`.
fn take_one(
    rs: &RuleSet,
    counters: Counters<'_>,
    state: &State<'_>,
    down: &mut bool,
    vi: u32,
    now: i64,
) -> Took {
    let v = &rs.volumes[vi as usize];
    let took = match counters {
        Counters::Memory(bound) => {
            bound.counters[vi as usize].try_take(v.period.window(now), v.max)
        }
        Counters::Shared(store) => {
            let result = if *down {
                // Failed once in this decision: not called again.
                Err(None)
            } else {
                store.take(period(v, now), v.max).map_err(Some)
            };
            match result {
                Ok(t) => t,
                Err(e) => {
                    let policy = match e {
                        Some(e) => {
                            *down = true;
                            state
                                .failed(e)
                                .map_or(OnUnavailable::Closed, |()| OnUnavailable::Open)
                        }
                        None => state.on_unavailable,
                    };
                    return match policy {
                        OnUnavailable::Closed => Took::Refused(vi | Blocked::UNAVAILABLE),
                        OnUnavailable::Open => Took::Unmetered,
                    };
                }
            }
        }
    };
    match took {
        Take::Taken => Took::Taken,
        Take::Full => Took::Refused(vi),
        Take::TooOld => Took::TooOld,
    }
}

/// Give back one unit of constraint `vi` in the period of `now`. A shared
/// store that fails keeps the unit (counted): the cap errs on giving
/// less. After a failure in this decision the store is not called again
/// (each unit it keeps is counted).
fn give_back_one(
    rs: &RuleSet,
    counters: Counters<'_>,
    state: &State<'_>,
    down: &mut bool,
    vi: u32,
    now: i64,
) {
    let v = &rs.volumes[vi as usize];
    match counters {
        Counters::Memory(bound) => bound.counters[vi as usize].give_back(v.period.window(now)),
        Counters::Shared(_) if *down => state.store_errors.add(1),
        Counters::Shared(store) => {
            if let Err(e) = store.give_back(period(v, now)) {
                *down = true;
                let _ = state.failed(e);
            }
        }
    }
}

/// Take a unit of every volume constraint of each chosen action, in order:
/// an action refused by any (its cap reached meanwhile, or the shared store
/// unavailable and `closed`) gives back what it took, is removed, and the
/// best remaining survivor takes its place. Returns the (action,
/// constraint) pairs of the chosen actions decided without their cap
/// (`open`, the store unavailable): units not taken, never to be given
/// back.
#[allow(clippy::too_many_arguments)]
pub(crate) fn take(
    rs: &RuleSet,
    ch: &Channel,
    bound: &Bound,
    state: &State<'_>,
    down: &mut bool,
    now: i64,
    out: &mut Candidates,
    blocked: &mut Vec<Blocked>,
    record_removed: bool,
) -> Result<Vec<(u32, u32)>, Error> {
    let counters = counters(state, bound);
    let mut i = 0;
    let mut taken: Vec<u32> = Vec::new();
    let mut unmetered: Vec<(u32, u32)> = Vec::new();
    while i < out.chosen.len() {
        let ai = out.chosen[i].action;
        taken.clear();
        let mut refused = None;
        for vi in constraints(rs, ch, ai) {
            match take_one(rs, counters, state, down, vi, now) {
                Took::Taken => taken.push(vi),
                Took::Unmetered => unmetered.push((ai, vi)),
                Took::Refused(policy) => {
                    refused = Some(policy);
                    break;
                }
                Took::TooOld => {
                    for &t in &taken {
                        give_back_one(rs, counters, state, down, t, now);
                    }
                    let before = &out.chosen[..i];
                    give_back_all(rs, ch, counters, state, down, now, before, &unmetered);
                    return Err(too_old(rs, vi, now));
                }
            }
        }
        let Some(policy) = refused else {
            i += 1;
            continue;
        };
        for &t in &taken {
            give_back_one(rs, counters, state, down, t, now);
        }
        unmetered.retain(|&(a, _)| a != ai);
        out.chosen.remove(i);
        let block = Blocked {
            action: ai,
            stage: Stage::VolumeConstraint,
            policy,
        };
        blocked.push(block);
        if record_removed {
            out.removed.push(Removed::by_state(block));
        }
        out.ranked.retain(|c| c.action != ai);
        let next = out.ranked.iter().find(|c| {
            !out.chosen.iter().any(|x| x.action == c.action)
                && !blocked.iter().any(|b| b.action == c.action)
        });
        if let Some(next) = next.copied() {
            out.chosen.push(next);
        }
    }
    Ok(unmetered)
}

/// Give back the units of every volume constraint of `chosen` but those
/// in `unmetered` (never taken).
#[allow(clippy::too_many_arguments)]
fn give_back_all(
    rs: &RuleSet,
    ch: &Channel,
    counters: Counters<'_>,
    state: &State<'_>,
    down: &mut bool,
    now: i64,
    chosen: &[Scored],
    unmetered: &[(u32, u32)],
) {
    for c in chosen {
        for vi in constraints(rs, ch, c.action) {
            if !unmetered.contains(&(c.action, vi)) {
                give_back_one(rs, counters, state, down, vi, now);
            }
        }
    }
}

/// Give back what [`take`] took for `chosen` (but the `unmetered` units
/// it did not take): a decision refused in
/// [`super::state_checks::commit`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn give_back(
    rs: &RuleSet,
    ch: &Channel,
    bound: &Bound,
    state: &State<'_>,
    down: &mut bool,
    now: i64,
    chosen: &[Scored],
    unmetered: &[(u32, u32)],
) {
    let counters = counters(state, bound);
    give_back_all(rs, ch, counters, state, down, now, chosen, unmetered);
}

/// Give back the volume units of `decision`, not returned after all. A
/// decision that took some of its units without the shared store (`open`)
/// keeps all of them: which were not taken is not kept with it, and
/// giving back one never taken would lift the cap (the store's failure
/// was counted).
pub(crate) fn release(decision: &Decision, state: &State<'_>) {
    if decision.volumes_unmetered {
        return;
    }
    let (rs, bound) = (
        decision.version.rules_for(decision.arm),
        decision.version.bound_for(decision.arm),
    );
    let ch = &rs.channels[decision.channel as usize];
    let mut down = false;
    let now = decision.timestamp.0;
    give_back(rs, ch, bound, state, &mut down, now, &decision.chosen, &[]);
}
