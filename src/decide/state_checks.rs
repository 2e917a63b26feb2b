//! Stage 3, the checks that read engine state rather than the context:
//! contact policies (the customer's interaction history), the channel's
//! contact limit, and volume constraints (caps per period across all
//! customers). They run before scoring and give the actions they block,
//! each with its stage and policy; scoring skips those.
//!
//! A decision that commits ([`Mode::commits`](super::Mode)) then takes what
//! it returns out of that state ([`commit`]): a unit of every volume
//! constraint of each chosen action (an action refused by a constraint
//! that filled meanwhile gives its place to the next survivor), and, when
//! the engine records impressions, the impressions of the chosen actions,
//! recorded only if the channel's contact limit still allows them, in one
//! atomic step per customer. Both are exact under any interleaving of
//! threads and clocks; [`release`] gives them back if the decision is not
//! returned after all. The volume-constraint part, in memory or in a
//! shared store, is in [`super::volumes`].

use std::sync::Arc;

use super::decision::Decision;
use super::request::ReplayState;
use super::scoring::Candidates;
use super::scratch::StateBuffers;
use super::version::Bound;
use super::volumes;
use crate::base::util::Striped;
use crate::base::{Blocked, Error, OutcomeKind, Removed, Stage};
use crate::ruleset::{Channel, RuleSet};
use crate::state::contact;
use crate::state::fleet::OnUnavailable;
use crate::state::history::{ContactLimitCheck, Event, HistoryStore, Memo, Recent};
use crate::state::volumes::{StateReads, VolumeStore};

/// The engine state a decision reads and changes.
#[derive(Clone, Copy)]
pub(crate) struct State<'a> {
    pub history: &'a dyn HistoryStore,
    /// The shared volume store; `None`: the version's in-memory counters.
    pub volumes: Option<&'a dyn VolumeStore>,
    /// Both reads in one round trip, when the history and the volume
    /// counters are one shared store's.
    pub reads: Option<&'a dyn StateReads>,
    /// Record an impression of each action a committing decision returns.
    pub record_impressions: bool,
    /// Keep what the decision derived from the customer's history with it
    /// (pointless when impressions are recorded: they drop it at once).
    pub keep_memo: bool,
    /// What to do when a shared store fails.
    pub on_unavailable: OnUnavailable,
    /// Where failures of the shared stores are counted.
    pub store_errors: &'a Striped,
    /// Where a committing decision leaves its customer's predictor bins
    /// for the contextual model to learn its outcomes from.
    pub responses: Option<&'a crate::state::responses::Responses>,
}

impl State<'_> {
    /// A failed store call: counted, then the error (`closed`) or `Ok`
    /// (`open`: go on without what the call would have given).
    pub(crate) fn failed(&self, e: Error) -> Result<(), Error> {
        self.store_errors.add(1);
        match self.on_unavailable {
            OnUnavailable::Closed => Err(e),
            OnUnavailable::Open => Ok(()),
        }
    }
}

/// Whose state the checks read and change: a customer on a channel of a
/// version (its rules and its bound state), at `now`.
#[derive(Clone, Copy)]
pub(crate) struct Subject<'a, 's> {
    pub rs: &'a RuleSet,
    pub channel: u32,
    pub bound: &'a Bound,
    pub state: &'a State<'s>,
    pub customer: &'a str,
    pub now: i64,
}

/// The actions on the subject's channel that engine state removes now,
/// ascending, into `out`: from the log when replaying, else from the
/// engine's state.
pub(crate) fn blocked(
    subject: Subject<'_, '_>,
    replay: Option<&ReplayState>,
    buffers: &mut StateBuffers,
    out: &mut Vec<Blocked>,
) -> Result<(), Error> {
    let Subject {
        rs,
        channel,
        bound,
        state,
        customer,
        now,
    } = subject;
    let ch = &rs.channels[channel as usize];
    buffers.volumes_down = false;
    buffers.history_down = false;
    let needs_history = !(rs.contact_policies.is_empty() && ch.contact_limit.is_none());
    if !needs_history && rs.volumes.is_empty() {
        return Ok(());
    }
    if let Some(r) = replay {
        // A block whose action or policy this version does not have (an
        // `evaluate` candidate's) is dropped.
        for (action, stage, policy) in &r.blocked {
            if let (Some(ai), Some(pi)) =
                (rs.action_index(action), rs.blocker_index(*stage, policy))
            {
                out.push(Blocked {
                    action: ai,
                    stage: *stage,
                    policy: pi,
                });
            }
        }
        out.sort_by_key(|b| b.action);
        return Ok(());
    }
    // The history and the caps in one round trip, when one shared store
    // keeps both.
    let mut volumes_read: volumes::Prefetched = None;
    let mut history_read = None;
    if let (Some(reads), Some(_), true, false) = (
        state.reads,
        state.volumes,
        needs_history,
        rs.volumes.is_empty(),
    ) {
        let (indices, periods) = volumes::periods(rs, ch, now);
        if !periods.is_empty() {
            let since = now.saturating_sub(rs.history_horizon);
            buffers.events.clear();
            let mut used = Vec::with_capacity(periods.len());
            match reads.recent_and_used(customer, since, &mut buffers.events, &periods, &mut used) {
                Ok(()) => {
                    volumes_read = Some(Ok((indices, used)));
                    history_read = Some(Ok(()));
                }
                Err(e) => {
                    volumes_read = Some(Err(()));
                    history_read = Some(Err(e));
                }
            }
        }
    }
    let (limited, memo) = match history(subject, buffers, history_read)? {
        Some(h) => h,
        None => {
            // The history could not be read (`closed`): every action a
            // contact policy or the channel's contact limit could remove
            // is removed, for want of state; the others go on.
            unavailable_history(rs, ch, &mut buffers.marked);
            if ch.contact_limit.is_some() {
                out.extend(ch.actions.iter().map(|&ai| Blocked {
                    action: ai,
                    stage: Stage::ChannelLimit,
                    policy: channel | Blocked::UNAVAILABLE,
                }));
                return Ok(());
            }
            (false, None)
        }
    };
    // Each suppressed action (of any channel) and the first policy that
    // suppresses it, ascending.
    let marked: &[(u32, u32)] = memo
        .as_deref()
        .map_or(&buffers.marked[..], |m| &m.suppressed);
    if limited {
        out.extend(ch.actions.iter().map(|&ai| Blocked {
            action: ai,
            stage: Stage::ChannelLimit,
            policy: channel,
        }));
        return Ok(());
    }
    if rs.volumes.is_empty() {
        // Only the suppressed actions: no pass over the channel's actions.
        out.extend(
            marked
                .iter()
                .filter(|&&(ai, _)| rs.actions[ai as usize].treatments[channel as usize].is_some())
                .map(|&(ai, policy)| Blocked {
                    action: ai,
                    stage: Stage::ContactPolicy,
                    policy,
                }),
        );
        return Ok(());
    }
    let StateBuffers {
        marked: from_history,
        volume_counts: counts,
        volumes_down: down,
        ..
    } = buffers;
    let marked: &[(u32, u32)] = memo.as_deref().map_or(from_history, |m| &m.suppressed);
    let read = volumes::read(rs, ch, state, now, counts, down, volumes_read);
    let mut next = 0;
    for &ai in ch.actions.iter() {
        while next < marked.len() && marked[next].0 < ai {
            next += 1;
        }
        let block = if next < marked.len() && marked[next].0 == ai {
            Some((Stage::ContactPolicy, marked[next].1))
        } else {
            volumes::block(rs, ch, bound, read, counts, ai, now)?
                .map(|vi| (Stage::VolumeConstraint, vi))
        };
        if let Some((stage, policy)) = block {
            out.push(Blocked {
                action: ai,
                stage,
                policy,
            });
        }
    }
    Ok(())
}

/// When the history could not be read: each action of the channel in the
/// scope of a contact policy (of the policy's group, or of any group) and
/// the first such policy, flagged [`Blocked::UNAVAILABLE`], ascending.
fn unavailable_history(rs: &RuleSet, ch: &Channel, marked: &mut Vec<(u32, u32)>) {
    marked.clear();
    for &ai in ch.actions.iter() {
        let group = rs.groups[rs.actions[ai as usize].group as usize].key;
        let policy = rs
            .contact_policies
            .iter()
            .position(|p| p.group.is_none_or(|g| g == group));
        if let Some(pi) = policy {
            marked.push((ai, pi as u32 | Blocked::UNAVAILABLE));
        }
    }
}

/// What the history said: whether the channel's contact limit is reached,
/// and an earlier decision's memo if it still holds.
type Heard = (bool, Option<Arc<Memo>>);

/// What the customer's history says on the subject's channel now:
/// whether its contact limit is reached, and the memo of an earlier
/// decision if it still holds (else the suppressed actions are in
/// `buffers.marked`); `None` when the store failed and `on_unavailable`
/// is `closed` (with `open`: an empty history). `read` is the outcome of
/// a read already made into `buffers.events`, if any.
fn history(
    subject: Subject<'_, '_>,
    buffers: &mut StateBuffers,
    read: Option<Result<(), Error>>,
) -> Result<Option<Heard>, Error> {
    let Subject {
        rs,
        channel,
        state,
        customer,
        now,
        ..
    } = subject;
    let ch = &rs.channels[channel as usize];
    let StateBuffers {
        events,
        contact: scratch,
        suppressions: sup,
        by_action,
        by_group,
        marked,
        history_down,
        ..
    } = buffers;
    sup.clear();
    marked.clear();
    if rs.contact_policies.is_empty() && ch.contact_limit.is_none() {
        events.clear();
        return Ok(Some((false, None)));
    }
    let since = now.saturating_sub(rs.history_horizon);
    let history = state.history;
    let recent = match read {
        Some(r) => r.map(|()| Recent::Events { stamp: None }),
        None => {
            events.clear();
            history.recent_or_memo(customer, since, rs.memo_tag, now, events)
        }
    };
    let recent = match recent {
        Ok(r) => r,
        Err(e) => {
            // Not called again by this decision (its impressions are not
            // recorded).
            *history_down = true;
            events.clear();
            return match state.failed(e) {
                Ok(()) => Ok(Some((false, None))),
                Err(_) => Ok(None),
            };
        }
    };
    Ok(Some(match recent {
        // What an earlier decision derived still holds: no event has
        // been recorded since and none has entered or left a window.
        Recent::Memo(m) => (m.limited & (1 << channel) != 0, Some(m)),
        Recent::Events { stamp } => {
            let limited = ch
                .contact_limit
                .is_some_and(|l| contact::contacts(events, ch.key, l.within, now) >= l.max);
            if !events.is_empty() {
                contact::suppressions(&rs.contact_policies, events, now, scratch, sup);
            }
            if !sup.is_empty() {
                contact::mark(
                    sup,
                    &rs.action_by_key,
                    &rs.group_by_key,
                    by_action,
                    by_group,
                );
                for (ai, a) in (0u32..).zip(&rs.actions) {
                    let policy = by_action[ai as usize].min(by_group[a.group as usize]);
                    if policy != u32::MAX {
                        marked.push((ai, policy));
                    }
                }
            }
            // The memo's channel mask has 64 bits.
            if let Some(stamp) = stamp.filter(|_| state.keep_memo && rs.channels.len() <= 64) {
                history.keep_memo(customer, stamp, Arc::new(memo_of(rs, events, now, marked)));
            }
            (limited, None)
        }
    }))
}

/// What `events` cause at `now`, for decisions until it can next change
/// (`suppressed`: each suppressed action and its policy, as found).
fn memo_of(rs: &RuleSet, events: &[Event], now: i64, suppressed: &[(u32, u32)]) -> Memo {
    let mut limited = 0u64;
    for (i, c) in rs.channels.iter().enumerate() {
        if let Some(l) = c.contact_limit {
            if contact::contacts(events, c.key, l.within, now) >= l.max {
                limited |= 1 << i;
            }
        }
    }
    Memo {
        tag: rs.memo_tag,
        from: now,
        until: contact::stable_until(
            &rs.contact_policies,
            &rs.contact_limits,
            rs.history_horizon,
            events,
            now,
        ),
        limited,
        suppressed: suppressed.into(),
    }
}

/// Take the chosen actions out of engine state, in order: a unit of every
/// volume constraint of each (an action refused by any constraint, because
/// another decision took the last unit, is removed and the best remaining
/// survivor takes its place), then, when the engine records impressions,
/// their impressions within the channel's contact limit (if the limit was
/// reached meanwhile, nothing is returned on the channel). `blocked` and,
/// with `record_removed`, `out.removed` get what this blocked. `down`:
/// whether the shared volume store failed in this decision (set by
/// [`blocked`]). Returns whether a chosen action was decided without a
/// cap (the shared store unavailable, `open`).
pub(crate) fn commit(
    subject: Subject<'_, '_>,
    out: &mut Candidates,
    blocked: &mut Vec<Blocked>,
    record_removed: bool,
    selection_probability: &mut Option<f64>,
    down: &mut bool,
    history_down: bool,
) -> Result<bool, Error> {
    let Subject {
        rs,
        channel,
        bound,
        state,
        customer,
        now,
    } = subject;
    let first = out.chosen.first().map(|c| c.action);
    let unmetered = commit_chosen(
        rs,
        channel,
        bound,
        state,
        customer,
        now,
        out,
        blocked,
        record_removed,
        down,
        history_down,
    )?;
    // A first action replaced by the commit was not chosen with the
    // probability computed: log none rather than a wrong one.
    if out.chosen.first().map(|c| c.action) != first
        && selection_probability.is_some_and(|p| p < 1.0)
    {
        *selection_probability = None;
    }
    Ok(unmetered)
}

/// Take what the chosen actions use out of engine state (see
/// [`commit`]).
#[allow(clippy::too_many_arguments)]
fn commit_chosen(
    rs: &RuleSet,
    channel: u32,
    bound: &Bound,
    state: &State<'_>,
    customer: &str,
    now: i64,
    out: &mut Candidates,
    blocked: &mut Vec<Blocked>,
    record_removed: bool,
    down: &mut bool,
    history_down: bool,
) -> Result<bool, Error> {
    let ch = &rs.channels[channel as usize];
    let unmetered = if rs.volumes.is_empty() {
        Vec::new()
    } else {
        volumes::take(
            rs,
            ch,
            bound,
            state,
            down,
            now,
            out,
            blocked,
            record_removed,
        )?
    };
    if !state.record_impressions || out.chosen.is_empty() || history_down {
        return Ok(!unmetered.is_empty());
    }
    let events = impressions(rs, channel, now, &out.chosen);
    let recorded = match ch.contact_limit {
        Some(l) => state.history.record_within_limit(
            customer,
            ContactLimitCheck {
                channel: ch.key,
                within: l.within,
                max: l.max,
                now,
            },
            &events,
        ),
        None => events
            .iter()
            .try_for_each(|e| state.history.record(customer, *e))
            .map(|()| true),
    };
    let recorded = match recorded {
        Ok(r) => r,
        Err(e) => {
            // Closed: nothing is returned, so the volume units go back.
            // Open: the decision stands, its impressions unrecorded.
            if let Err(e) = state.failed(e) {
                volumes::give_back(rs, ch, bound, state, down, now, &out.chosen, &unmetered);
                return Err(e);
            }
            true
        }
    };
    if !recorded {
        // Another decision for the customer reached the limit first:
        // give back what this one took, and return nothing on the channel.
        volumes::give_back(rs, ch, bound, state, down, now, &out.chosen, &unmetered);
        for c in out.chosen.drain(..) {
            let block = Blocked {
                action: c.action,
                stage: Stage::ChannelLimit,
                policy: channel,
            };
            blocked.push(block);
            if record_removed {
                out.removed.push(Removed::by_state(block));
            }
        }
    }
    Ok(!unmetered.is_empty())
}

/// Give back what [`commit`] took for `decision`, made for `customer`
/// and not returned after all (its record could not be logged): the
/// volume units of its chosen actions and, when the engine records
/// impressions, their impressions. Caps and contact limits are then as if
/// the decision had never been made.
pub(crate) fn release(decision: &Decision, state: &State<'_>, customer: &str) {
    let rs = decision.version.rules_for(decision.arm);
    let (channel, now, chosen) = (decision.channel, decision.timestamp.0, &decision.chosen);
    volumes::release(decision, state);
    if state.record_impressions && !chosen.is_empty() {
        // The decision is refused either way: a store that fails here
        // keeps the impressions (counted), which errs on contacting less.
        if let Err(e) = state
            .history
            .unrecord(customer, &impressions(rs, channel, now, chosen))
        {
            let _ = state.failed(e);
        }
    }
}

/// The impression events of `chosen` on `channel` at `now`.
fn impressions(rs: &RuleSet, channel: u32, now: i64, chosen: &[crate::base::Scored]) -> Vec<Event> {
    let ch = &rs.channels[channel as usize];
    chosen
        .iter()
        .map(|c| {
            let a = &rs.actions[c.action as usize];
            Event {
                at: now,
                action: a.key,
                group: rs.groups[a.group as usize].key,
                channel: ch.key,
                kind: OutcomeKind::Impression,
            }
        })
        .collect()
}
