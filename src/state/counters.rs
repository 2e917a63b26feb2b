//! Volume-constraint counters: units given per constraint and period, across
//! all customers.
//!
//! A counter keeps the count of each of the last [`PERIODS`] periods, keyed
//! by the period: a decision counts against the period its own `now` falls
//! in, whatever other decisions' clocks say, so a back-dated request can
//! neither reset today's count nor borrow from it. Period `w` lives in slot
//! `w % PERIODS`, packed with its count in one word, so taking a unit is
//! one compare-and-swap and two threads at a period boundary can never
//! count one period twice. A slot's period only moves forward, so a count
//! is never wrong: a period whose slot holds an older one was never
//! counted (it starts at zero), and one whose slot holds a newer one has
//! left the counter: that is [`Take::TooOld`], which the decision turns
//! into an error naming the constraint (its cap can no longer be checked
//! exactly for that time).

use std::sync::atomic::{AtomicU64, Ordering};

/// Periods a counter keeps (the current one and the seven before it).
pub(crate) const PERIODS: usize = 8;

/// The outcome of asking a volume counter for a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The unit is taken.
    Taken,
    /// The period's cap is reached.
    Full,
    /// The period's slot holds a newer period: its count is gone.
    TooOld,
}

/// A volume constraint's counter: for each kept period, the period and the
/// units taken in it.
#[derive(Debug, Default)]
pub(crate) struct Counter([AtomicU64; PERIODS]);

fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

fn pack(window: u32, n: u32) -> u64 {
    (u64::from(window) << 32) | u64::from(n)
}

impl Counter {
    fn slot(&self, window: u32) -> &AtomicU64 {
        &self.0[window as usize % PERIODS]
    }

    /// Units taken in `window`; `None` if the counter has moved past it.
    pub(crate) fn used(&self, window: u32) -> Option<u32> {
        match unpack(self.slot(window).load(Ordering::Acquire)) {
            (w, n) if w == window => Some(n),
            // A word never written is period 0 with no units.
            (w, _) if w < window => Some(0),
            _ => None,
        }
    }

    /// Take one unit in `window` if fewer than `max` are taken.
    pub(crate) fn try_take(&self, window: u32, max: u32) -> Take {
        let slot = self.slot(window);
        let mut cur = slot.load(Ordering::Acquire);
        loop {
            let n = match unpack(cur) {
                (w, n) if w == window => n,
                // The slot holds an older period: this one starts at zero.
                (w, _) if w < window => 0,
                _ => return Take::TooOld,
            };
            if n >= max {
                return Take::Full;
            }
            match slot.compare_exchange_weak(
                cur,
                pack(window, n + 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Take::Taken,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Give back a unit taken in `window` (another constraint of the same
    /// action refused, or the decision was not returned).
    pub(crate) fn give_back(&self, window: u32) {
        let _ = self
            .slot(window)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                match unpack(cur) {
                    (w, n) if w == window && n > 0 => Some(cur - 1),
                    _ => None,
                }
            });
    }

    /// The kept periods and their counts, for saving state: `(window << 32)
    /// | count` per period that has units, oldest first.
    pub(crate) fn words(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .0
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .filter(|&w| unpack(w).1 > 0)
            .collect();
        v.sort_unstable();
        v
    }

    /// Set the counts of the periods in `words` (as [`Counter::words`]
    /// gives them; a newer period in the same slot wins).
    pub(crate) fn set_words(&self, words: &[u64]) {
        for &w in words {
            let slot = self.slot(unpack(w).0);
            let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (unpack(cur).0 <= unpack(w).0).then_some(w)
            });
        }
    }

    /// Forget every period's count, then set those of `words`.
    pub(crate) fn replace_words(&self, words: &[u64]) {
        for slot in &self.0 {
            slot.store(0, Ordering::Release);
        }
        self.set_words(words);
    }

    /// A counter with the counts of `words`.
    pub(crate) fn from_words(words: &[u64]) -> Counter {
        let c = Counter::default();
        c.set_words(words);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_gives_exactly_max_per_window() {
        let c = Counter::default();
        assert_eq!(c.try_take(7, 2), Take::Taken);
        assert_eq!(c.try_take(7, 2), Take::Taken);
        assert_eq!(c.try_take(7, 2), Take::Full);
        assert_eq!(c.used(7), Some(2));
        c.give_back(7);
        assert_eq!(c.used(7), Some(1));
        assert_eq!(c.try_take(8, 2), Take::Taken, "a new window starts at zero");
        assert_eq!(c.used(8), Some(1));
        assert_eq!(c.used(7), Some(1), "and the earlier one keeps its count");
    }

    #[test]
    fn a_back_dated_period_counts_against_itself_not_the_current_one() {
        let c = Counter::default();
        for _ in 0..3 {
            assert_eq!(c.try_take(100, 3), Take::Taken);
        }
        // The day before: its own count, and today's is untouched.
        assert_eq!(c.try_take(99, 3), Take::Taken);
        assert_eq!(c.try_take(100, 3), Take::Full);
        assert_eq!(c.used(99), Some(1));
        // Further back than the counter keeps: refused, nothing counted.
        assert_eq!(c.try_take(100 - PERIODS as u32, 3), Take::TooOld);
        assert_eq!(c.used(100 - PERIODS as u32), None);
        assert_eq!(c.used(100), Some(3));
    }

    #[test]
    fn words_round_trip_through_save_and_load() {
        let c = Counter::default();
        assert_eq!(c.try_take(5, 9), Take::Taken);
        assert_eq!(c.try_take(6, 9), Take::Taken);
        assert_eq!(c.try_take(6, 9), Take::Taken);
        let d = Counter::from_words(&c.words());
        assert_eq!(d.used(5), Some(1));
        assert_eq!(d.used(6), Some(2));
        assert_eq!(d.words(), c.words());
    }
}
