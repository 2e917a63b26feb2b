//! The engine's side of a fleet's shared store, off the decision path: a
//! thread that, every interval and once more when the engine stops,
//! delivers the outcomes buffered while the store was down and exchanges
//! the learning counts (adds this engine's new counts to the fleet's and
//! reads the fleet's totals back). See docs/FLEET.md.
//!
//! Guarantees:
//! - An outcome the store could not take is kept (up to the buffer's
//!   capacity; one more is refused to its caller and counted as dropped)
//!   and delivered, in arrival order, when the store answers again: under
//!   the same delivery id, so a delivery whose reply was lost is not
//!   recorded twice, and a duplicate is still told apart.
//! - Learning deltas are sent as batches with ids: a batch that failed is
//!   sent again, the same, until the store answers; new counts wait for
//!   the next batch. So no count is lost or added twice.
//! - A round waits at most one store deadline per call, and calls stop
//!   at the first failure of a round; rounds never overlap.

// Without a shared store (the `redis` feature) nothing starts an exchange.
#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use super::history::{Event, HistoryStore, Recorded};
use super::learning::{Counts, Learned, LearningStore};
use crate::base::Error;

/// An outcome waiting for the store.
pub(crate) struct Buffered {
    pub customer: String,
    pub once: Option<u64>,
    pub event: Event,
    pub delivery: u64,
    pub counts: Arc<Counts>,
}

/// What the fleet exchange did, in [`EngineStats`](crate::EngineStats).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetStats {
    /// Outcomes waiting for the store now.
    pub outcomes_waiting: u64,
    /// Outcomes buffered because the store could not take them.
    pub outcomes_buffered: u64,
    /// Buffered outcomes delivered since.
    pub outcomes_delivered: u64,
    /// Outcomes refused because the buffer was full (each returned an
    /// error to its caller).
    pub outcomes_dropped: u64,
    /// Learning exchanges that reached the store.
    pub learning_exchanges: u64,
    /// Learning exchanges that failed (their batch is sent again).
    pub learning_errors: u64,
    /// Store calls of the exchange that failed.
    pub store_errors: u64,
    /// Calls (round trips) to the shared store, from decisions, outcomes
    /// and the exchange: a decision's reads are one.
    pub store_calls: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// A learning batch: its id and its deltas (field, amount).
type Batch = (u64, Vec<(String, u64)>);

struct Shared {
    history: Arc<dyn HistoryStore>,
    learning: Option<Arc<dyn LearningStore>>,
    learned: Arc<Learned>,
    calls: Option<Arc<AtomicU64>>,
    capacity: usize,
    buffer: Mutex<VecDeque<Buffered>>,
    /// The learning batch sent and not yet answered.
    inflight: Mutex<Option<Batch>>,
    /// Rounds never overlap (the thread's and [`Exchange::round`]'s).
    round: Mutex<()>,
    ids: AtomicU64,
    buffered: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    dropped: AtomicU64,
    exchanges: AtomicU64,
    learning_errors: AtomicU64,
    store_errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The exchange thread and its state; dropping it runs a last round and
/// stops the thread.
pub(crate) struct Exchange {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").finish_non_exhaustive()
    }
}

impl Exchange {
    /// Start exchanging with `history` (buffered outcomes) and `learning`
    /// (if shared) every `interval`, with room for `capacity` outcomes.
    pub(crate) fn start(
        history: Arc<dyn HistoryStore>,
        learning: Option<Arc<dyn LearningStore>>,
        learned: Arc<Learned>,
        calls: Option<Arc<AtomicU64>>,
        interval: Duration,
        capacity: usize,
    ) -> Exchange {
        let seed = xxhash_rust::xxh3::xxh3_64(
            format!(
                "exchange:{}:{:?}:{:p}",
                std::process::id(),
                std::time::SystemTime::now(),
                &learned
            )
            .as_bytes(),
        );
        let shared = Arc::new(Shared {
            history,
            learning,
            learned,
            calls,
            capacity,
            buffer: Mutex::new(VecDeque::new()),
            inflight: Mutex::new(None),
            round: Mutex::new(()),
            ids: AtomicU64::new(seed),
            buffered: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            exchanges: AtomicU64::new(0),
            learning_errors: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let handle = std::thread::Builder::new()
            .name("nextbest-exchange".into())
            .spawn(move || {
                let mut stop = s.stop.lock();
                while !*stop {
                    s.wake.wait_for(&mut stop, interval);
                    if *stop {
                        break;
                    }
                    drop(stop);
                    let _ = s.round();
                    stop = s.stop.lock();
                }
            })
            .ok();
        Exchange { shared, handle }
    }

    /// Whether one more outcome can wait; if not, it is counted as
    /// dropped (its caller gets the store's error).
    pub(crate) fn has_room(&self) -> bool {
        let room = self.shared.buffer.lock().len() < self.shared.capacity;
        if !room {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("nextbest_outcomes_dropped_total").increment(1);
        }
        room
    }

    /// Keep `outcome` until the store takes it; false (counted as
    /// dropped) when the buffer is full.
    pub(crate) fn buffer(&self, outcome: Buffered) -> bool {
        let mut b = self.shared.buffer.lock();
        if b.len() >= self.shared.capacity {
            drop(b);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("nextbest_outcomes_dropped_total").increment(1);
            return false;
        }
        b.push_back(outcome);
        self.shared.buffered.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("nextbest_outcomes_buffered_total").increment(1);
        true
    }

    /// Run a round now: deliver what is buffered, exchange the learning
    /// counts. An error if the store failed in it (what failed waits for
    /// the next round).
    pub(crate) fn round(&self) -> Result<(), Error> {
        self.shared.round()
    }

    /// Buffered outcomes found to be duplicates when delivered.
    pub(crate) fn duplicates(&self) -> u64 {
        self.shared.duplicates.load(Ordering::Relaxed)
    }

    /// Buffered outcomes delivered.
    pub(crate) fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> FleetStats {
        let s = &self.shared;
        FleetStats {
            outcomes_waiting: s.buffer.lock().len() as u64,
            outcomes_buffered: s.buffered.load(Ordering::Relaxed),
            outcomes_delivered: s.delivered.load(Ordering::Relaxed),
            outcomes_dropped: s.dropped.load(Ordering::Relaxed),
            learning_exchanges: s.exchanges.load(Ordering::Relaxed),
            learning_errors: s.learning_errors.load(Ordering::Relaxed),
            store_errors: s.store_errors.load(Ordering::Relaxed),
            store_calls: s.calls.as_ref().map_or(0, |c| c.load(Ordering::Relaxed)),
            last_error: s.last_error.lock().clone(),
        }
    }
}

impl Shared {
    fn failed(&self, e: &Error) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(e.to_string());
    }

    fn round(&self) -> Result<(), Error> {
        let _one = self.round.lock();
        let delivered = self.deliver();
        let exchanged = self.exchange();
        delivered.and(exchanged)
    }

    /// Deliver buffered outcomes, oldest first, until one fails.
    fn deliver(&self) -> Result<(), Error> {
        loop {
            let Some(next) = self.buffer.lock().pop_front() else {
                return Ok(());
            };
            let r =
                self.history
                    .record_outcome(&next.customer, next.once, next.event, next.delivery);
            match r {
                Ok(Recorded::New) => {
                    next.counts.add(next.event.kind, 1);
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Recorded::Duplicate) => {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.failed(&e);
                    self.buffer.lock().push_front(next);
                    return Err(e);
                }
            }
        }
    }

    /// Send this engine's new learning counts (after the batch that failed
    /// last time, if any, sent again the same) and take the fleet's totals.
    fn exchange(&self) -> Result<(), Error> {
        let Some(store) = &self.learning else {
            return Ok(());
        };
        let mut inflight = self.inflight.lock();
        loop {
            let retry = inflight.is_some();
            let (batch, deltas) = match inflight.take() {
                Some(b) => b,
                None => (
                    self.ids.fetch_add(1, Ordering::Relaxed),
                    self.learned.take_pending(),
                ),
            };
            match store.exchange(batch, &deltas) {
                Ok(totals) => {
                    self.learned.set_totals(&totals);
                    self.exchanges.fetch_add(1, Ordering::Relaxed);
                    if !retry {
                        return Ok(());
                    }
                    // The old batch is in: now what was recorded since.
                }
                Err(e) => {
                    // The batch's amounts are in the engine's counts (added
                    // when recorded); only the store lacks them. The same
                    // batch goes again next round.
                    if !deltas.is_empty() {
                        *inflight = Some((batch, deltas));
                    }
                    self.learning_errors.fetch_add(1, Ordering::Relaxed);
                    self.failed(&e);
                    return Err(e);
                }
            }
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        *self.shared.stop.lock() = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        // The last round: what was recorded since the thread's last one.
        let _ = self.shared.round();
    }
}
