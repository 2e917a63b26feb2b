//! Volume-constraint counters: units given per constraint and period, across
//! all customers.

use std::sync::atomic::{AtomicU64, Ordering};

/// A volume constraint's counter: the window and the count in it, packed
/// in one word so that taking a unit is one compare-and-swap.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    fn unpack(v: u64) -> (u32, u32) {
        ((v >> 32) as u32, v as u32)
    }

    /// Units taken in `window`.
    pub(crate) fn used(&self, window: u32) -> u32 {
        match Counter::unpack(self.0.load(Ordering::Acquire)) {
            (w, n) if w == window => n,
            _ => 0,
        }
    }

    /// Take one unit in `window` if fewer than `max` are taken.
    pub(crate) fn try_take(&self, window: u32, max: u32) -> bool {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let (w, n) = Counter::unpack(cur);
            let n = if w == window { n } else { 0 };
            if n >= max {
                return false;
            }
            let next = (u64::from(window) << 32) | u64::from(n + 1);
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Give back a unit taken in `window` (when another constraint of the
    /// same action refused).
    pub(crate) fn give_back(&self, window: u32) {
        let _ = self.0.fetch_update(
            Ordering::AcqRel,
            Ordering::Acquire,
            |cur| match Counter::unpack(cur) {
                (w, n) if w == window && n > 0 => Some(cur - 1),
                _ => None,
            },
        );
    }

    /// The raw word (for saving state).
    pub(crate) fn raw(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    pub(crate) fn set_raw(&self, v: u64) {
        self.0.store(v, Ordering::Release);
    }

    pub(crate) fn from_raw(v: u64) -> Counter {
        Counter(AtomicU64::new(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_gives_exactly_max_per_window_and_resets() {
        let c = Counter::default();
        assert!(c.try_take(7, 2));
        assert!(c.try_take(7, 2));
        assert!(!c.try_take(7, 2));
        assert_eq!(c.used(7), 2);
        c.give_back(7);
        assert_eq!(c.used(7), 1);
        assert!(c.try_take(8, 2), "a new window starts at zero");
        assert_eq!(c.used(8), 1);
        assert_eq!(c.used(7), 0);
    }
}
