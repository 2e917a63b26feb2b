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
use crate::state::volumes::{Take, TakeEach, VolumePeriod, VolumeStore};

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
/// together with the history, see [`crate::state::volumes::StateReads`]):
/// the constraints' indices (as [`periods`] gives them) and their counts.
pub(crate) type Prefetched = Option<Result<(Vec<usize>, Vec<Option<u32>>), ()>>;

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
    let (indices, got, asked) = match prefetched {
        Some(Ok((indices, got))) => {
            let asked = indices.len();
            (indices, Ok(got), asked)
        }
        // Counted where it failed.
        Some(Err(())) => {
            *down = true;
            return match state.on_unavailable {
                OnUnavailable::Closed => Read::Closed,
                OnUnavailable::Open => Read::Open,
            };
        }
        None => {
            let (indices, periods) = periods(rs, ch, now);
            if indices.is_empty() {
                return Read::Shared;
            }
            let mut got = Vec::with_capacity(periods.len());
            let got = store.used(&periods, &mut got).map(|()| got);
            (indices, got, periods.len())
        }
    };
    match got {
        Ok(got) if got.len() == asked => {
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
                asked
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

/// Take one unit of the in-memory counter of constraint `vi` in the
/// period of `now`.
fn take_one(rs: &RuleSet, bound: &Bound, vi: u32, now: i64) -> Take {
    let v = &rs.volumes[vi as usize];
    bound.counters[vi as usize].try_take(v.period.window(now), v.max)
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
    if let Counters::Shared(store) = counters {
        let d = Decided { rs, ch, state, now };
        return take_shared(d, store, down, out, blocked, record_removed);
    }
    // The engine's own counters: one unit at a time, each an atomic step.
    let mut i = 0;
    let mut taken: Vec<u32> = Vec::new();
    while i < out.chosen.len() {
        let ai = out.chosen[i].action;
        taken.clear();
        let mut refused = None;
        for vi in constraints(rs, ch, ai) {
            match take_one(rs, bound, vi, now) {
                Take::Taken => taken.push(vi),
                Take::Full => {
                    refused = Some(vi);
                    break;
                }
                Take::TooOld => {
                    for &t in &taken {
                        give_back_one(rs, counters, state, down, t, now);
                    }
                    let before = &out.chosen[..i];
                    give_back_all(rs, ch, counters, state, down, now, before, &[]);
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
        out.chosen.remove(i);
        refuse(out, blocked, record_removed, ai, policy);
    }
    // In memory, every unit is counted.
    Ok(Vec::new())
}

/// Action `ai`, taken out of the chosen, is removed at the volume-constraint
/// stage by `policy` (a constraint, flagged when the store was
/// unavailable), and the best remaining survivor takes its place.
fn refuse(
    out: &mut Candidates,
    blocked: &mut Vec<Blocked>,
    record_removed: bool,
    ai: u32,
    policy: u32,
) {
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

/// The decision whose units a shared store takes.
#[derive(Clone, Copy)]
struct Decided<'a, 's> {
    rs: &'a RuleSet,
    ch: &'a Channel,
    state: &'a State<'s>,
    now: i64,
}

/// What one action's units came to, from a shared store.
enum Verdict {
    Taken,
    /// Decided without its caps (`open`, the store unavailable).
    Unmetered,
    /// Removed by the constraint (its index, flagged when the store was
    /// unavailable).
    Refused(u32),
    TooOld(u32),
}

/// [`take`] from a shared store: every chosen action's units in one call
/// ([`VolumeStore::take_each`]); then, for the survivors that replace the
/// actions a cap refused, one more call, and so on (only when caps are
/// reached). After a failed call, the store is not called again.
fn take_shared(
    d: Decided<'_, '_>,
    store: &dyn VolumeStore,
    down: &mut bool,
    out: &mut Candidates,
    blocked: &mut Vec<Blocked>,
    record_removed: bool,
) -> Result<Vec<(u32, u32)>, Error> {
    let Decided { rs, ch, state, now } = d;
    let mut unmetered: Vec<(u32, u32)> = Vec::new();
    let mut start = 0;
    let mut results = Vec::new();
    while start < out.chosen.len() {
        let pending: Vec<(u32, Vec<u32>)> = out.chosen[start..]
            .iter()
            .map(|c| (c.action, constraints(rs, ch, c.action).collect()))
            .collect();
        let verdicts = shared_verdicts(d, store, down, &pending, &mut results);
        let mut refused = Vec::new();
        for ((ai, vis), verdict) in pending.iter().zip(verdicts) {
            match verdict {
                Verdict::Taken => {}
                Verdict::Unmetered => unmetered.extend(vis.iter().map(|&vi| (*ai, vi))),
                Verdict::Refused(policy) => refused.push((*ai, policy)),
                Verdict::TooOld(vi) => {
                    // Give back what this decision took: the actions
                    // before this one (the store stopped at it).
                    let at = out.chosen.iter().position(|c| c.action == *ai).unwrap_or(0);
                    let counters = Counters::Shared(store);
                    let before = &out.chosen[..at];
                    give_back_all(rs, ch, counters, state, down, now, before, &unmetered);
                    return Err(too_old(rs, vi, now));
                }
            }
        }
        out.chosen
            .retain(|c| !refused.iter().any(|&(a, _)| a == c.action));
        start = out.chosen.len();
        for (ai, policy) in refused {
            refuse(out, blocked, record_removed, ai, policy);
        }
    }
    Ok(unmetered)
}

/// The verdict on each of `pending` (an action and its constraints), from
/// one call to the store (none when it failed in this decision).
fn shared_verdicts(
    d: Decided<'_, '_>,
    store: &dyn VolumeStore,
    down: &mut bool,
    pending: &[(u32, Vec<u32>)],
    results: &mut Vec<TakeEach>,
) -> Vec<Verdict> {
    let Decided { rs, state, now, .. } = d;
    let lists: Vec<Vec<(VolumePeriod<'_>, u32)>> = pending
        .iter()
        .map(|(_, vis)| {
            vis.iter()
                .map(|&vi| {
                    let v = &rs.volumes[vi as usize];
                    (period(v, now), v.max)
                })
                .collect()
        })
        .collect();
    // Only the actions with caps go to the store.
    let asked: Vec<&[(VolumePeriod<'_>, u32)]> = lists
        .iter()
        .filter(|l| !l.is_empty())
        .map(Vec::as_slice)
        .collect();
    let failed = if asked.is_empty() || *down {
        // Nothing to ask, or failed once in this decision: not called
        // again.
        None
    } else {
        match store.take_each(&asked, results) {
            Ok(()) => None,
            Err(e) => {
                *down = true;
                Some(
                    state
                        .failed(e)
                        .map_or(OnUnavailable::Closed, |()| OnUnavailable::Open),
                )
            }
        }
    };
    let policy = failed.or(down.then_some(state.on_unavailable));
    let mut answers = results.iter();
    pending
        .iter()
        .map(|(_, vis)| {
            if vis.is_empty() {
                return Verdict::Taken;
            }
            if let Some(policy) = policy {
                return match policy {
                    OnUnavailable::Closed => Verdict::Refused(vis[0] | Blocked::UNAVAILABLE),
                    OnUnavailable::Open => Verdict::Unmetered,
                };
            }
            match answers.next() {
                Some(TakeEach::Taken) => Verdict::Taken,
                Some(TakeEach::Full(j)) => Verdict::Refused(vis[*j]),
                Some(TakeEach::TooOld(j)) => Verdict::TooOld(vis[*j]),
                // After a too-old period the store stopped: the decision
                // fails at that one, so these are never looked at.
                None => Verdict::Taken,
            }
        })
        .collect()
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
