//! What a contextual model learns an outcome from: the predictor bins of
//! the decision that offered the action, kept by decision id for the
//! engine's most recent decisions.
//!
//! An outcome names its decision (`decision_id`); the engine looks up the
//! bins its customer was in when the decision was made (not when the
//! outcome arrives: the customer may have changed since, and the model
//! must learn what the decision saw). Decisions are kept in a bounded
//! memory, oldest forgotten first: an outcome whose decision is not there
//! (too old, made by another instance, before a restart, or not named)
//! teaches the per-action counts only, and is counted
//! (`outcomes_without_context` in the engine's stats).

use std::collections::VecDeque;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

/// Shards, so that deciding threads seldom meet on one lock.
const SHARDS: usize = 16;

/// The bins of recent decisions, by decision id.
#[derive(Debug)]
pub(crate) struct Responses {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

#[derive(Debug, Default)]
struct Shard {
    map: FxHashMap<u128, (u64, Box<[u32]>)>,
    order: VecDeque<u128>,
}

impl Responses {
    /// A memory of at most about `capacity` decisions.
    pub(crate) fn new(capacity: usize) -> Responses {
        Responses {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, id: u128) -> &Mutex<Shard> {
        // Decision ids are sequential per engine: the low bits spread them.
        &self.shards[(id as usize) % SHARDS]
    }

    /// Remember decision `id`'s bins of model `model`.
    pub(crate) fn remember(&self, id: u128, model: u64, bins: &[u32]) {
        let mut s = self.shard(id).lock();
        if s.map.insert(id, (model, bins.into())).is_none() {
            s.order.push_back(id);
        }
        while s.order.len() > self.per_shard {
            if let Some(old) = s.order.pop_front() {
                s.map.remove(&old);
            }
        }
    }

    /// The bins of decision `id` under model `model`, if remembered (kept:
    /// one decision can have several outcomes).
    pub(crate) fn recall(&self, id: u128, model: u64) -> Option<Box<[u32]>> {
        let s = self.shard(id).lock();
        s.map
            .get(&id)
            .filter(|(m, _)| *m == model)
            .map(|(_, b)| b.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_decisions_are_forgotten_first() {
        let r = Responses::new(32);
        for id in 0..64u128 {
            r.remember(id, 7, &[id as u32]);
        }
        assert_eq!(r.recall(0, 7), None);
        assert_eq!(r.recall(31, 7), None);
        assert_eq!(r.recall(63, 7).as_deref(), Some(&[63][..]));
        assert_eq!(r.recall(32, 7).as_deref(), Some(&[32][..]));
        // Another model's bins are not this one's.
        assert_eq!(r.recall(63, 8), None);
    }
}
