//! Learning state: outcome counts per (action, channel), the evidence the
//! posteriors of [`crate::ruleset::learning`] are computed from.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::base::outcome::KINDS;
use crate::base::OutcomeKind;

/// The outcome counts of one action on one channel.
#[derive(Debug)]
pub(crate) struct Counts {
    pub action: Box<str>,
    pub channel: Box<str>,
    kinds: [AtomicU32; KINDS],
}

impl Counts {
    fn new(action: &str, channel: &str) -> Counts {
        Counts {
            action: action.into(),
            channel: channel.into(),
            kinds: Default::default(),
        }
    }

    pub(crate) fn add(&self, kind: OutcomeKind, n: u32) {
        let _ = self.kinds[kind as usize].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
            Some(c.saturating_add(n))
        });
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
            for k in &e.value().kinds {
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
