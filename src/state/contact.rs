//! Contact policies, channel limits and volume constraints: the stages that
//! read engine state (the customer's interaction history, global counters)
//! rather than the context.
//!
//! Semantics (documented in docs/RULES.md):
//! - A window `within = W` ending at time `t` holds the events with
//!   `t - W < at <= t` (an event exactly `W` old has left it).
//! - A contact policy *triggers* at the time of an event that brings the
//!   count of matching events in the window ending there to `count`. With
//!   `suppress_for = D` the action (or group) is suppressed while
//!   `now < trigger + D`, for the latest trigger. Without it, suppression
//!   lasts while the window ending now still holds `count` events.
//! - A channel limit counts impressions on that channel, of any action, in
//!   the window ending now; at `max` the channel offers nothing more.
//! - A volume constraint counts actions given (chosen by a live decision)
//!   per static period (UTC hours, days, or weeks starting Monday 00:00
//!   UTC) across all customers; at `max` it removes the action until the
//!   next period. Counting is exact under concurrency: a decision takes a
//!   unit with a compare-and-swap before it returns the action.

use crate::base::outcome::kind_bit;
use crate::base::OutcomeKind;
use crate::ruleset::contact::ContactPolicy;
use crate::state::history::Event;

/// An action or group suppressed by a contact policy for one decision.
/// The field order is the sort order [`suppressions`] leaves them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Suppression {
    pub per_group: bool,
    /// The action's or group's key.
    pub key: u64,
    pub policy: u32,
}

/// Find every suppression the customer's `events` (time-ordered) cause at
/// `now`, into `out`, in policy order. `scratch` is reused across calls.
pub(crate) fn suppressions(
    policies: &[ContactPolicy],
    events: &[Event],
    now: i64,
    scratch: &mut Scratch,
    out: &mut Vec<Suppression>,
) {
    let Scratch { pairs, table, one } = scratch;
    for (pi, p) in policies.iter().enumerate() {
        pairs.clear();
        for e in events {
            if e.at > now
                || p.kinds & kind_bit(e.kind) == 0
                || p.channel.is_some_and(|c| c != e.channel)
                || p.group.is_some_and(|g| g != e.group)
            {
                continue;
            }
            let key = if p.per_group { e.group } else { e.action };
            if p.count == 1 {
                // One event is a trigger on its own: no grouping needed
                // (what `suppressed` computes for a count of 1).
                let on = match p.suppress_for {
                    None => e.at > now - p.within,
                    Some(d) => now < e.at.saturating_add(d),
                };
                if on {
                    out.push(Suppression {
                        key,
                        per_group: p.per_group,
                        policy: pi as u32,
                    });
                }
                continue;
            }
            pairs.push((key, e.at));
        }
        let n = p.count as usize;
        if pairs.len() < n {
            continue;
        }
        // Count events per key in a small open-addressing table (keys are
        // hashes already); only keys with at least `count` events can
        // trigger, and usually there are none or few, so this beats
        // sorting every pair by key.
        let cap = (pairs.len() * 2).next_power_of_two();
        table.clear();
        table.resize(cap, (0, 0));
        for &(k, _) in pairs.iter() {
            let mut i = k as usize & (cap - 1);
            loop {
                let slot = &mut table[i];
                if slot.1 == 0 {
                    *slot = (k, 1);
                    break;
                }
                if slot.0 == k {
                    slot.1 += 1;
                    break;
                }
                i = (i + 1) & (cap - 1);
            }
        }
        for &(key, count) in table.iter() {
            if (count as usize) < n {
                continue;
            }
            // The key's events, still in time order.
            one.clear();
            one.extend(pairs.iter().filter(|&&(k, _)| k == key));
            if suppressed(p, one, now) {
                out.push(Suppression {
                    key,
                    per_group: p.per_group,
                    policy: pi as u32,
                });
            }
        }
    }
}

/// Buffers [`suppressions`] reuses across decisions.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// (key, time) of the events one policy counts.
    pairs: Vec<(u64, i64)>,
    /// Events per key: (key, count); count 0 is an empty slot.
    table: Vec<(u64, u32)>,
    /// One key's events.
    one: Vec<(u64, i64)>,
}

/// Whether one key's events (time-ordered, none after `now`) suppress it.
fn suppressed(p: &ContactPolicy, events: &[(u64, i64)], now: i64) -> bool {
    let n = p.count as usize;
    if events.len() < n {
        return false;
    }
    match p.suppress_for {
        None => {
            let inside = events.len() - events.partition_point(|&(_, at)| at <= now - p.within);
            inside >= n
        }
        Some(d) => {
            // The latest trigger: the latest event whose window holds n.
            let mut j = 0;
            let mut until = i64::MIN;
            for i in 0..events.len() {
                let t = events[i].1;
                while events[j].1 <= t - p.within {
                    j += 1;
                }
                if i + 1 - j >= n {
                    until = until.max(t.saturating_add(d));
                }
            }
            now < until
        }
    }
}

/// Per action and per group (by index), the first policy in declaration
/// order that suppresses it (`u32::MAX`: none): one pass over the
/// suppressions, so checking an action costs two array reads however many
/// suppressions there are.
pub(crate) fn mark(
    sup: &[Suppression],
    action_by_key: &rustc_hash::FxHashMap<u64, u32>,
    group_by_key: &rustc_hash::FxHashMap<u64, u32>,
    actions: &mut Vec<u32>,
    groups: &mut Vec<u32>,
) {
    actions.clear();
    actions.resize(action_by_key.len(), u32::MAX);
    groups.clear();
    groups.resize(group_by_key.len(), u32::MAX);
    for s in sup {
        let (by_key, marks) = if s.per_group {
            (group_by_key, &mut *groups)
        } else {
            (action_by_key, &mut *actions)
        };
        if let Some(&i) = by_key.get(&s.key) {
            let m = &mut marks[i as usize];
            *m = (*m).min(s.policy);
        }
    }
}

/// The first suppression that removes an action, if any, by a scan (the
/// reference [`mark`] is tested against).
#[cfg(test)]
fn suppressing(sup: &[Suppression], action: u64, group: u64) -> Option<u32> {
    sup.iter()
        .filter(|s| s.key == if s.per_group { group } else { action })
        .map(|s| s.policy)
        .min()
}

/// Impressions on the channel with key `channel` in the window ending
/// `now`.
pub(crate) fn contacts(events: &[Event], channel: u32, within: i64, now: i64) -> u32 {
    events
        .iter()
        .filter(|e| {
            e.kind == OutcomeKind::Impression
                && e.channel == channel
                && e.at > now - within
                && e.at <= now
        })
        .count() as u32
}

/// The first time after `now` at which anything `events` cause can change:
/// a contact policy's suppression (`policies`), a channel's limit (`limits`:
/// each limited channel's key and window), or which events a decision reads
/// (those at most `horizon` old). Suppressions and limits are constant
/// between two such times, so what a decision derived at `now` holds for
/// every decision before it (see [`crate::state::history::Memo`]).
///
/// The candidates: an event not yet happened (after `now`) happens; an
/// event leaves a window (`at + within`), the horizon (`at + horizon + 1`)
/// or a suppression it may have triggered ends (`at + suppress_for`).
/// Counted only for the events each policy or limit counts.
pub(crate) fn stable_until(
    policies: &[ContactPolicy],
    limits: &[(u32, i64)],
    horizon: i64,
    events: &[Event],
    now: i64,
) -> i64 {
    let mut until = i64::MAX;
    let mut at_or_after = |t: i64| {
        if t > now && t < until {
            until = t;
        }
    };
    for e in events {
        if e.at > now {
            at_or_after(e.at);
            continue;
        }
        at_or_after(e.at.saturating_add(horizon).saturating_add(1));
        for p in policies {
            if p.kinds & kind_bit(e.kind) == 0
                || p.channel.is_some_and(|c| c != e.channel)
                || p.group.is_some_and(|g| g != e.group)
            {
                continue;
            }
            at_or_after(e.at.saturating_add(p.within));
            if let Some(d) = p.suppress_for {
                at_or_after(e.at.saturating_add(d));
            }
        }
        if e.kind == OutcomeKind::Impression {
            for &(channel, within) in limits {
                if e.channel == channel {
                    at_or_after(e.at.saturating_add(within));
                }
            }
        }
    }
    until
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::contact::ContactPolicy;

    proptest::proptest! {
        /// `suppressions` (with its fast path for a count of 1) agrees with
        /// a naive reading of the rule: a key is suppressed when some
        /// event of it, with `count` events of it inside the window ending
        /// there, is at most `suppress_for` ago (or, without a duration,
        /// when the window ending now holds `count`).
        #[test]
        fn suppressions_match_a_naive_evaluator(
            raw in proptest::collection::vec((0u64..4, 0i64..40, 0usize..5), 0..30),
            count in 1u32..4,
            within in 1i64..15,
            suppress_for in proptest::option::of(1i64..20),
            per_group in proptest::bool::ANY,
            kinds in 1u8..32,
        ) {
            let now = 40;
            let mut events: Vec<Event> = raw
                .iter()
                .map(|&(key, at, kind)| Event {
                    at,
                    action: key,
                    group: key % 2 + 10,
                    channel: 1,
                    kind: OutcomeKind::ALL[kind],
                })
                .collect();
            events.sort_by_key(|e| e.at);
            let p = ContactPolicy {
                name: "p".into(),
                kinds,
                count,
                within,
                suppress_for,
                per_group,
                channel: None,
                group: None,
            };
            let (mut scratch, mut out) = (Scratch::default(), Vec::new());
            suppressions(std::slice::from_ref(&p), &events, now, &mut scratch, &mut out);
            let got: std::collections::BTreeSet<u64> = out.iter().map(|s| s.key).collect();

            let key = |e: &Event| if per_group { e.group } else { e.action };
            let counted: Vec<&Event> =
                events.iter().filter(|e| kinds & kind_bit(e.kind) != 0).collect();
            let in_window = |k: u64, end: i64| {
                counted.iter().filter(|e| key(e) == k && e.at > end - within && e.at <= end).count()
            };
            let want: std::collections::BTreeSet<u64> = counted
                .iter()
                .map(|e| key(e))
                .filter(|&k| match suppress_for {
                    None => in_window(k, now) >= count as usize,
                    Some(d) => counted.iter().any(|t| {
                        key(t) == k && in_window(k, t.at) >= count as usize && now < t.at + d
                    }),
                })
                .collect();
            proptest::prop_assert_eq!(got, want);
        }

        /// Marking finds what a scan of every suppression finds: the
        /// lowest policy suppressing the action or its group.
        #[test]
        fn mark_matches_a_scan(
            raw in proptest::collection::vec((proptest::bool::ANY, 0u64..6, 0u32..5), 0..20),
        ) {
            let sup: Vec<Suppression> = raw
                .iter()
                .map(|&(per_group, key, policy)| Suppression { per_group, key, policy })
                .collect();
            // Keys 100 + i name action i and group i; 0..6 are other keys.
            let by_key = |n: u64| (0..n).map(|i| (i + 100, i as u32)).collect();
            let (actions_by_key, groups_by_key) = (by_key(6), by_key(3));
            let sup: Vec<Suppression> = sup
                .into_iter()
                .map(|s| Suppression { key: s.key + 100, ..s })
                .collect();
            let (mut pa, mut pg) = (Vec::new(), Vec::new());
            mark(&sup, &actions_by_key, &groups_by_key, &mut pa, &mut pg);
            for a in 0..6u64 {
                for g in 0..3u64 {
                    let got = pa[a as usize].min(pg[g as usize]);
                    let got = (got != u32::MAX).then_some(got);
                    proptest::prop_assert_eq!(got, suppressing(&sup, a + 100, g + 100));
                }
            }
        }
    }
}
