//! Learning state: outcome counts per (action, channel), the evidence the
//! adaptive propensities' posteriors are computed from; and, for a
//! fleet, the [`LearningStore`] the counts of every engine are summed in.
//!
//! Counts are commutative: an engine adds what it records to its own
//! counts at once and keeps the same amounts aside as *pending*; an
//! exchange with the shared store adds the pending amounts there (once,
//! whatever fails) and brings back the fleet's totals, which become the
//! engine's counts (plus what was recorded since). So no outcome is lost
//! or counted twice, and every engine converges on the same counts one
//! exchange after the last outcome.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::base::outcome::KINDS;
use crate::base::{Error, OutcomeKind};

/// The outcome counts of one action on one channel.
#[derive(Debug)]
pub(crate) struct Counts {
    pub action: Box<str>,
    pub channel: Box<str>,
    kinds: [AtomicU32; KINDS],
    /// Added here and not yet sent to the shared store.
    pending: [AtomicU32; KINDS],
}

impl Counts {
    fn new(action: &str, channel: &str) -> Counts {
        Counts {
            action: action.into(),
            channel: channel.into(),
            kinds: Default::default(),
            pending: Default::default(),
        }
    }

    pub(crate) fn add(&self, kind: OutcomeKind, n: u32) {
        let saturating = |c: u32| Some(c.saturating_add(n));
        let _ = self.pending[kind as usize].fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            saturating,
        );
        let _ = self.kinds[kind as usize].fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            saturating,
        );
    }

    pub(crate) fn get(&self) -> [u32; KINDS] {
        std::array::from_fn(|i| self.kinds[i].load(Ordering::Relaxed))
    }
}

/// The engine's learning state: outcome counts per (action, channel),
/// keyed by names so that they carry over from one rule version to the
/// next. Each version resolves its (action, channel) pairs once, when it is
/// published, so a decision reads counts without a map lookup.
#[derive(Debug, Default)]
pub(crate) struct Learned {
    map: DashMap<(u64, u64), Arc<Counts>, rustc_hash::FxBuildHasher>,
}

/// One (action, channel) in a saved state file.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone)]
pub(crate) struct SavedCounts {
    pub action: String,
    pub channel: String,
    /// Counts of impression, clicked, accepted, rejected, no_response.
    pub counts: [u32; KINDS],
}

impl Learned {
    /// The counts of `action` on `channel`, created empty if new.
    pub(crate) fn counts(&self, action: &str, channel: &str) -> Arc<Counts> {
        let k = (crate::base::key(action), crate::base::key(channel));
        if let Some(c) = self.map.get(&k) {
            return Arc::clone(&c);
        }
        Arc::clone(
            &self
                .map
                .entry(k)
                .or_insert_with(|| Arc::new(Counts::new(action, channel))),
        )
    }

    /// Take every pending amount (leaving zero), as shared-store deltas
    /// (`action/channel/kind`, amount).
    pub(crate) fn take_pending(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for e in self.map.iter() {
            for (kind, p) in OutcomeKind::ALL.iter().zip(&e.pending) {
                let n = p.swap(0, Ordering::Relaxed);
                if n > 0 {
                    out.push((field(&e.action, &e.channel, *kind), u64::from(n)));
                }
            }
        }
        out
    }

    /// Make the fleet's `totals` (as a [`LearningStore`] returns them) the
    /// engine's counts, plus what is pending here. Counts the totals do not
    /// name become what is pending. Fields that are not counts of this
    /// shape are skipped (other models may share the store).
    pub(crate) fn set_totals(&self, totals: &[(String, u64)]) {
        let mut seen = rustc_hash::FxHashSet::default();
        for (f, total) in totals {
            let Some((action, channel, kind)) = parse_field(f) else {
                continue;
            };
            let c = self.counts(action, channel);
            let k = kind as usize;
            let total = u32::try_from(*total).unwrap_or(u32::MAX);
            c.kinds[k].store(
                total.saturating_add(c.pending[k].load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            seen.insert((crate::base::key(action), crate::base::key(channel), k));
        }
        for e in self.map.iter() {
            let (a, ch) = *e.key();
            for k in 0..KINDS {
                if !seen.contains(&(a, ch, k)) {
                    e.kinds[k].store(e.pending[k].load(Ordering::Relaxed), Ordering::Relaxed);
                }
            }
        }
    }

    pub(crate) fn save(&self) -> Vec<SavedCounts> {
        let mut out: Vec<SavedCounts> = self
            .map
            .iter()
            .map(|e| SavedCounts {
                action: e.action.to_string(),
                channel: e.channel.to_string(),
                counts: e.get(),
            })
            .collect();
        out.sort_by(|a, b| (&a.action, &a.channel).cmp(&(&b.action, &b.channel)));
        out
    }

    /// Replace the live counts with saved ones: counts the file does not
    /// have become zero. The counts are set in place, so the versions
    /// that resolved them see the new values.
    pub(crate) fn load(&self, saved: &[SavedCounts]) {
        for e in self.map.iter() {
            for k in e.value().kinds.iter().chain(&e.value().pending) {
                k.store(0, Ordering::Relaxed);
            }
        }
        for s in saved {
            let c = self.counts(&s.action, &s.channel);
            for (k, n) in c.kinds.iter().zip(s.counts) {
                k.store(n, Ordering::Relaxed);
            }
        }
    }
}

/// The shared-store field of a count: `action/channel/kind` (action and
/// channel names cannot hold a `/`).
pub(crate) fn field(action: &str, channel: &str, kind: OutcomeKind) -> String {
    format!("{action}/{channel}/{}", kind.as_str())
}

fn parse_field(f: &str) -> Option<(&str, &str, OutcomeKind)> {
    let mut parts = f.split('/');
    let (a, c, k) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((a, c, OutcomeKind::parse(k)?))
}

/// Where the learning counts of a fleet of engines are summed (a shared
/// store such as Redis; see docs/FLEET.md).
///
/// Counts are named by field (`action/channel/kind` for the per-action
/// counts; other models may add fields of their own) and only ever added
/// to, so engines can add in any order and converge on the same totals.
pub trait LearningStore: Send + Sync + std::fmt::Debug {
    /// Add `deltas` (field, amount) to the shared counts, at most once per
    /// `batch` (an id unique to this engine's delivery: calling again with
    /// the same batch after a lost reply adds nothing twice), and return
    /// every shared count (field, total).
    fn exchange(&self, batch: u64, deltas: &[(String, u64)]) -> Result<Vec<(String, u64)>, Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_replace_counts_and_keep_what_is_pending() {
        let l = Learned::default();
        let c = l.counts("A", "web");
        c.add(OutcomeKind::Accepted, 2);
        let sent = l.take_pending();
        assert_eq!(sent, vec![("A/web/accepted".to_string(), 2)]);
        assert!(l.take_pending().is_empty());
        c.add(OutcomeKind::Accepted, 1);
        // The fleet has our 2 and 5 from elsewhere; our 1 is still pending.
        l.set_totals(&[
            ("A/web/accepted".into(), 7),
            ("B/web/impression".into(), 4),
            ("model/x/bin".into(), 9),
        ]);
        assert_eq!(c.get()[OutcomeKind::Accepted as usize], 8);
        assert_eq!(
            l.counts("B", "web").get()[OutcomeKind::Impression as usize],
            4
        );
        assert_eq!(l.take_pending(), vec![("A/web/accepted".to_string(), 1)]);
    }
}
