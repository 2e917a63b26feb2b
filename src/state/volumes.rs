//! Where volume-constraint counters live: the [`VolumeStore`] contract,
//! whose calls can fail, and [`MemoryVolumes`], the engine's own counters
//! (one in-memory counter per constraint name, never failing).
//!
//! A volume constraint counts units per static period, keyed by the
//! period: a decision takes from the period its own `now` falls in. Every
//! store gives the same answers as the in-memory counter: a take is one
//! atomic check-and-increment (never more than `max` in a period, however
//! decisions race, in one process or many), a period less than
//! [`KEPT_PERIODS`] periods before the newest one counted is counted
//! exactly while one further back may be [`Take::TooOld`] (in memory,
//! once its slot holds a newer period; in Redis, always), and a unit
//! given back never takes a count below zero.
//!
//! The decision path does not call [`MemoryVolumes`] through the trait: a
//! rule version resolves its constraints' counters once when it is
//! published (`decide/version.rs`), so checking a cap in memory stays one
//! atomic load. The trait is what a shared store (Redis,
//! `state/redis/volumes.rs`) implements, and what [`MemoryVolumes`] also
//! answers, so the two can be tested against each other.

use std::sync::Arc;

use dashmap::DashMap;

pub use super::counters::Take;
use super::counters::{Counter, PERIODS};
use crate::base::{key, Error};

/// One period of one volume constraint: what a unit is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumePeriod<'a> {
    /// The constraint's name: unique in its rule set, and the counter's
    /// identity, so versions that keep a constraint's name share its count.
    pub constraint: &'a str,
    /// Which period: whole periods since the Unix epoch (weeks since
    /// Monday 1970-01-05).
    pub number: u32,
    /// When the period ends, epoch seconds.
    pub ends: i64,
    /// The period's length, seconds.
    pub length: i64,
}

/// How many periods a counter keeps: a take or a read for a period this
/// many periods (or more) before the newest one counted is
/// [`Take::TooOld`] (or `None`).
pub const KEPT_PERIODS: u32 = PERIODS as u32;

/// Where volume-constraint counters live. Implementations must be safe to
/// call from many threads at once, and a store shared by several engines
/// must make [`VolumeStore::take`] atomic across all of them.
///
/// Every call returns a `Result`: a shared store can be unreachable or
/// late, and says so with [`Error::StoreUnavailable`]. The engine then
/// follows its `on_unavailable` policy (see docs/FLEET.md). A failed call
/// must change nothing a retry would double; a take whose reply was lost
/// may have counted, which errs on giving less.
pub trait VolumeStore: Send + Sync + std::fmt::Debug {
    /// The units taken in each of `periods`, in order, into `out` (cleared
    /// first), in one call (one round trip for a shared store): `None`
    /// for a period the store no longer counts ([`Take::TooOld`]).
    fn used(&self, periods: &[VolumePeriod<'_>], out: &mut Vec<Option<u32>>) -> Result<(), Error>;

    /// Take one unit of `period` if fewer than `max` are taken, as one
    /// atomic step.
    fn take(&self, period: VolumePeriod<'_>, max: u32) -> Result<Take, Error>;

    /// Give back a unit taken from `period` by a decision that was not
    /// returned after all. A count never goes below zero.
    fn give_back(&self, period: VolumePeriod<'_>) -> Result<(), Error>;

    /// For each action in order, take one unit of every period of its
    /// list (period, cap) if all have room, else none: into `out`, one
    /// [`TakeEach`] per action, stopping after the first
    /// [`TakeEach::TooOld`]. A shared store does it in one round trip and
    /// one atomic step (Redis: one script).
    ///
    /// The default takes one unit at a time with [`VolumeStore::take`],
    /// giving back an action's units when one of its periods refuses.
    fn take_each(
        &self,
        actions: &[&[(VolumePeriod<'_>, u32)]],
        out: &mut Vec<TakeEach>,
    ) -> Result<(), Error> {
        out.clear();
        for list in actions {
            let mut verdict = TakeEach::Taken;
            for (j, (p, max)) in list.iter().enumerate() {
                match self.take(*p, *max)? {
                    Take::Taken => continue,
                    Take::Full => verdict = TakeEach::Full(j),
                    Take::TooOld => verdict = TakeEach::TooOld(j),
                }
                for (p, _) in &list[..j] {
                    self.give_back(*p)?;
                }
                break;
            }
            out.push(verdict);
            if matches!(verdict, TakeEach::TooOld(_)) {
                break;
            }
        }
        Ok(())
    }
}

/// What one action's units came to in [`VolumeStore::take_each`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeEach {
    /// A unit of each of its periods is taken.
    Taken,
    /// None taken: the period at this index of its list is full.
    Full(usize),
    /// None taken: the period at this index is no longer counted.
    TooOld(usize),
}

/// A shared store that answers both reads a decision makes before
/// scoring (the customer's history and the volume counts of the caps its
/// channel can meet) in one round trip.
pub trait StateReads: Send + Sync + std::fmt::Debug {
    /// [`HistoryStore::recent`](crate::state::history::HistoryStore::recent)
    /// into `events` and [`VolumeStore::used`] into `used`, together: both
    /// answered, or an error and neither.
    fn recent_and_used(
        &self,
        customer: &str,
        since: i64,
        events: &mut Vec<crate::state::history::Event>,
        periods: &[VolumePeriod<'_>],
        used: &mut Vec<Option<u32>>,
    ) -> Result<(), Error>;
}

/// The engine's own volume counters: one counter per constraint name
/// (by its [`key`]), kept for the life of the engine, saved and loaded
/// with [`crate::Engine::save_state`].
#[derive(Debug, Default)]
pub struct MemoryVolumes {
    map: DashMap<u64, Arc<Counter>>,
}

impl MemoryVolumes {
    /// The counter of the constraint named `name` (made when new): what a
    /// rule version binds at publish.
    pub(crate) fn counter(&self, name: &str) -> Arc<Counter> {
        self.map.entry(key(name)).or_default().clone()
    }

    /// Every counted period, for saving: (constraint key, `(period << 32)
    /// | count`), sorted.
    pub(crate) fn save(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .map
            .iter()
            .flat_map(|e| {
                let key = *e.key();
                e.value().words().into_iter().map(move |w| (key, w))
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Replace the counts with those of `saved` (as
    /// [`MemoryVolumes::save`] gives them): constraints it does not have
    /// start again from zero.
    pub(crate) fn load(&self, saved: Vec<(u64, u64)>) {
        let mut by_key: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for (k, word) in saved {
            by_key.entry(k).or_default().push(word);
        }
        // Counters the file does not have start again from zero (in place:
        // versions hold them), so a load replaces, never adds.
        for c in self.map.iter() {
            if !by_key.contains_key(c.key()) {
                c.value().replace_words(&[]);
            }
        }
        for (k, words) in by_key {
            match self.map.get(&k) {
                Some(c) => c.replace_words(&words),
                None => {
                    self.map.insert(k, Arc::new(Counter::from_words(&words)));
                }
            }
        }
    }
}

impl VolumeStore for MemoryVolumes {
    fn used(&self, periods: &[VolumePeriod<'_>], out: &mut Vec<Option<u32>>) -> Result<(), Error> {
        out.clear();
        out.extend(
            periods
                .iter()
                .map(|p| self.counter(p.constraint).used(p.number)),
        );
        Ok(())
    }

    fn take(&self, period: VolumePeriod<'_>, max: u32) -> Result<Take, Error> {
        Ok(self.counter(period.constraint).try_take(period.number, max))
    }

    fn give_back(&self, period: VolumePeriod<'_>) -> Result<(), Error> {
        self.counter(period.constraint).give_back(period.number);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(constraint: &str, number: u32) -> VolumePeriod<'_> {
        VolumePeriod {
            constraint,
            number,
            ends: (i64::from(number) + 1) * 86_400,
            length: 86_400,
        }
    }

    #[test]
    fn memory_volumes_count_per_constraint_name_and_period() {
        let v = MemoryVolumes::default();
        assert_eq!(v.take(day("a", 10), 1).unwrap(), Take::Taken);
        assert_eq!(v.take(day("a", 10), 1).unwrap(), Take::Full);
        assert_eq!(v.take(day("b", 10), 1).unwrap(), Take::Taken);
        assert_eq!(v.take(day("a", 9), 1).unwrap(), Take::Taken);
        assert_eq!(
            v.take(day("a", 10 - KEPT_PERIODS), 1).unwrap(),
            Take::TooOld
        );
        let mut out = vec![Some(99)];
        v.used(&[day("a", 10), day("a", 11), day("a", 2)], &mut out)
            .unwrap();
        assert_eq!(out, [Some(1), Some(0), None]);
        v.give_back(day("a", 10)).unwrap();
        v.give_back(day("a", 10)).unwrap();
        v.used(&[day("a", 10)], &mut out).unwrap();
        assert_eq!(out, [Some(0)], "never below zero");
        // The bound counter is the same one.
        assert_eq!(v.counter("b").used(10), Some(1));
    }
}
