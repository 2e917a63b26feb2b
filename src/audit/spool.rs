#![cfg_attr(not(feature = "kafka"), allow(dead_code))]

//! The decision log's files as a spool: a shipper inside the engine
//! forwards them to Kafka (with the `kafka` feature, through the
//! `nextbest-ship` crate), and the log keeps every file the shipper still
//! needs and bounds what waits to be shipped.
//!
//! Three parties share one [`Spool`]:
//! - the **shipper's thread** tells it, every 0.1 s, what is left to ship
//!   (the oldest file a restart needs, the bytes after the last
//!   acknowledged record) and its counts;
//! - the **log's writer** asks it, when it rotates, which files it may
//!   delete: never one the shipper needs (unless `on_full = "drop"`);
//! - **deciding threads** read one flag per logged record: whether the
//!   spool is full (`max_spool_bytes`), and then do what `on_full` says.
//!
//! What is guaranteed, and what a consumer must deduplicate, is in
//! docs/SHIPPING.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::base::util::{Padded, Striped};

/// Shipping the decision log to Kafka from inside the engine (the `ship`
/// object of `decision_log`). Needs the `kafka` feature.
///
/// ```json
/// "decision_log": {"path": "logs/decisions.jsonl",
///   "ship": {"kafka": "kafka1:9092,kafka2:9092", "topic": "nextbest.decisions"}}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ShipOptions {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    pub kafka: String,
    /// The topic of decision records (and of outcomes, unless
    /// `outcomes_topic` is set).
    pub topic: String,
    /// A topic of its own for outcome records.
    #[serde(default)]
    pub outcomes_topic: Option<String>,
    /// The position file (default: `.NAME.ship-position` beside the log).
    #[serde(default)]
    pub position: Option<PathBuf>,
    /// The most bytes of log files waiting to be shipped (default 1 GiB);
    /// past it, `on_full` applies.
    #[serde(default = "default_max_spool")]
    pub max_spool_bytes: u64,
    /// `block` (default), `drop` or `fail`: see [`OnFull`].
    #[serde(default)]
    pub on_full: OnFull,
    /// `block`: how long a decision waits for the spool to have room
    /// (default 1000 ms).
    #[serde(default = "default_block_ms")]
    pub block_timeout_ms: u64,
    /// A record the broker has not acknowledged after this long fails and
    /// is sent again, with every record after it (default 30,000 ms).
    #[serde(default = "default_delivery_ms")]
    pub delivery_timeout_ms: u64,
    /// Closing the engine ships what the log holds, waiting at most this
    /// long for the broker's acknowledgements (default 5000 ms); what is
    /// left goes at the next start, from the position file.
    #[serde(default = "default_shutdown_ms")]
    pub shutdown_timeout_ms: u64,
    /// More librdkafka producer properties (`security.protocol`,
    /// `sasl.mechanism`, `compression.type`, ...). The ones delivery rests
    /// on (`enable.idempotence`, `acks`, ...) are the shipper's own.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_max_spool() -> u64 {
    1 << 30
}
fn default_block_ms() -> u64 {
    1000
}
fn default_delivery_ms() -> u64 {
    30_000
}
fn default_shutdown_ms() -> u64 {
    5000
}

impl ShipOptions {
    /// Ship to `topic` on `kafka` (bootstrap servers), with the defaults.
    pub fn new(kafka: &str, topic: &str) -> ShipOptions {
        ShipOptions {
            kafka: kafka.into(),
            topic: topic.into(),
            outcomes_topic: None,
            position: None,
            max_spool_bytes: default_max_spool(),
            on_full: OnFull::Block,
            block_timeout_ms: default_block_ms(),
            delivery_timeout_ms: default_delivery_ms(),
            shutdown_timeout_ms: default_shutdown_ms(),
            properties: BTreeMap::new(),
        }
    }
}

/// What a decision (or outcome) does when the spool is full: more than
/// `max_spool_bytes` of log files wait to be shipped (the broker is
/// unreachable, or slower than the engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Wait for room, at most `block_timeout_ms`; then the log's
    /// `on_error` applies (`fail`: the call returns an error; `degrade`:
    /// the record is dropped and counted). The default.
    #[default]
    Block,
    /// Log nothing more until there is room: the record is dropped and
    /// counted, the decision returned. Retention then deletes by its own
    /// rules, shipped or not (a file deleted unshipped is counted by the
    /// shipper as `files_gone`).
    Drop,
    /// The call returns an error at once: no decision is acted on that
    /// cannot be shipped.
    Fail,
}

/// The shipper's counters and the spool's state, in
/// [`crate::audit::LogStats::ship`].
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpoolStats {
    /// Bytes of log files after the last record the broker acknowledged.
    pub unshipped_bytes: u64,
    /// `max_spool_bytes`.
    pub max_bytes: u64,
    /// Whether the spool is full now (`on_full` applies to new records).
    pub full: bool,
    /// Records the broker acknowledged since the engine opened.
    pub shipped: u64,
    /// Records sent again after a delivery failure.
    pub resent: u64,
    /// Records the producer gave up on (each then sent again).
    pub delivery_errors: u64,
    /// Connection errors librdkafka reported (a broker down, ...).
    pub broker_errors: u64,
    /// Damaged lines or frames skipped, never shipped.
    pub corrupt: u64,
    /// Files deleted before they were shipped (`on_full = "drop"`, or
    /// removed by hand).
    pub files_gone: u64,
    /// Records not logged because the spool was full (`drop`, or `block`
    /// with `on_error = "degrade"`).
    pub dropped: u64,
    /// Calls refused because the spool was full (`fail`, or `block` with
    /// `on_error = "fail"`).
    pub refused: u64,
    /// Waits for room in the spool that reached `block_timeout_ms`.
    pub block_timeouts: u64,
    /// Times the shipper stopped on an error (the position file could not
    /// be written, the log's directory could not be read, ...) and was
    /// started again.
    pub shipper_errors: u64,
}

/// What the shipper said last (under one lock: read by `stats`).
#[derive(Default)]
struct Said {
    stats: SpoolStats,
    /// The oldest file a restart of the shipper would read (device,
    /// inode); `None` until the shipper first said.
    oldest_needed: Option<(u64, u64)>,
    /// The counts of the shipper runs before the current one.
    before: SpoolStats,
}

/// The state shared by the shipper's thread, the log's writer and the
/// deciding threads (see the module documentation).
pub(crate) struct Spool {
    pub(crate) on_full: OnFull,
    max_bytes: u64,
    pub(crate) block_timeout: Duration,
    /// Read by every logged record: changes only when the spool fills or
    /// empties, so the line stays in every core's cache.
    full: Padded<AtomicBool>,
    said: Mutex<Said>,
    /// Deciding threads waiting for room (`block`) wait here.
    room: Condvar,
    room_lock: Mutex<()>,
    dropped: Striped,
    refused: Striped,
    block_timeouts: Striped,
}

impl Spool {
    pub(crate) fn new(options: &ShipOptions) -> Spool {
        Spool {
            on_full: options.on_full,
            max_bytes: options.max_spool_bytes,
            block_timeout: Duration::from_millis(options.block_timeout_ms),
            full: Padded(AtomicBool::new(false)),
            said: Mutex::new(Said::default()),
            room: Condvar::new(),
            room_lock: Mutex::new(()),
            dropped: Striped::default(),
            refused: Striped::default(),
            block_timeouts: Striped::default(),
        }
    }

    /// Whether more than `max_spool_bytes` wait to be shipped.
    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.full.0.load(Ordering::Relaxed)
    }

    /// The shipper's news: what is left (`oldest_needed`, `unshipped`)
    /// and its counts in this run.
    pub(crate) fn said(&self, oldest_needed: Option<(u64, u64)>, run: SpoolStats) {
        let full = run.unshipped_bytes > self.max_bytes;
        {
            let mut s = self.said.lock();
            s.oldest_needed = oldest_needed;
            let b = s.before;
            let t = &mut s.stats;
            t.unshipped_bytes = run.unshipped_bytes;
            t.full = full;
            t.shipped = b.shipped + run.shipped;
            t.resent = b.resent + run.resent;
            t.delivery_errors = b.delivery_errors + run.delivery_errors;
            t.broker_errors = b.broker_errors + run.broker_errors;
            t.corrupt = b.corrupt + run.corrupt;
            t.files_gone = b.files_gone + run.files_gone;
        }
        self.set_full(full);
    }

    /// The shipper stopped on an error: its run's counts so far stay
    /// counted, and, until it says otherwise, every byte of the log's
    /// files (`total_bytes`) counts as waiting.
    pub(crate) fn stopped(&self, total_bytes: u64) {
        let full = total_bytes > self.max_bytes;
        {
            let mut s = self.said.lock();
            s.stats.shipper_errors += 1;
            s.stats.unshipped_bytes = total_bytes;
            s.stats.full = full;
            s.before = s.stats;
        }
        self.set_full(full);
    }

    fn set_full(&self, full: bool) {
        if self.full.0.swap(full, Ordering::Relaxed) && !full {
            let _g = self.room_lock.lock();
            self.room.notify_all();
        }
    }

    /// The oldest file the shipper needs (device, inode), or `None` when
    /// it has not said yet (then every file is needed).
    pub(crate) fn oldest_needed(&self) -> Option<(u64, u64)> {
        self.said.lock().oldest_needed
    }

    /// `block`: wait for room, at most `block_timeout`; whether there is.
    #[cold]
    pub(crate) fn wait_for_room(&self) -> bool {
        let deadline = Instant::now() + self.block_timeout;
        let mut g = self.room_lock.lock();
        while self.is_full() {
            let now = Instant::now();
            if now >= deadline {
                self.block_timeouts.add(1);
                return false;
            }
            // Sliced: a wake-up that crossed going to sleep costs at most
            // a slice.
            self.room
                .wait_for(&mut g, (deadline - now).min(Duration::from_millis(10)));
        }
        true
    }

    pub(crate) fn count_dropped(&self) {
        self.dropped.add(1);
    }

    pub(crate) fn count_refused(&self) {
        self.refused.add(1);
    }

    pub(crate) fn stats(&self) -> SpoolStats {
        let mut s = self.said.lock().stats;
        s.max_bytes = self.max_bytes;
        s.dropped = self.dropped.sum();
        s.refused = self.refused.sum();
        s.block_timeouts = self.block_timeouts.sum();
        s
    }

    /// Why a record was refused, for its error.
    pub(crate) fn refusal(&self) -> String {
        let s = self.stats();
        format!(
            "the shipping spool is full: {} bytes of the log wait to be shipped, more than max_spool_bytes = {} (is the Kafka broker reachable? {} broker errors, {} delivery errors so far): the record could not be logged, so the call is refused (on_full = \"{}\")",
            s.unshipped_bytes,
            s.max_bytes,
            s.broker_errors,
            s.delivery_errors,
            match self.on_full {
                OnFull::Block => "block",
                OnFull::Drop => "drop",
                OnFull::Fail => "fail",
            }
        )
    }
}

#[cfg(feature = "kafka")]
pub(crate) use shipping::Shipping;

/// The shipper's thread (the `kafka` feature).
#[cfg(feature = "kafka")]
mod shipping {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use nextbest_ship::{Progress, ShipConfig, Shipper};

    use super::{ShipOptions, Spool, SpoolStats};
    use crate::base::Error;

    /// A running shipper: stopped (after shipping what the log holds,
    /// within `shutdown_timeout_ms`) when dropped, after the log's writer.
    pub(crate) struct Shipping {
        finish: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Shipping {
        /// Start shipping the log at `log` with `options`, telling `spool`
        /// what is left. A configuration the shipper refuses (a property
        /// that is its own, an empty topic, a damaged position file) is an
        /// error here; what fails later is reported, counted and retried.
        pub(crate) fn start(
            options: &ShipOptions,
            log: &Path,
            spool: Arc<Spool>,
        ) -> Result<Shipping, Error> {
            let mut config = ShipConfig::new(log, &options.kafka, &options.topic);
            config.outcomes_topic = options.outcomes_topic.clone();
            config.position = options.position.clone();
            config.follow = true;
            config.delivery_timeout = Duration::from_millis(options.delivery_timeout_ms.max(1));
            config.stall_timeout = Duration::from_millis(options.shutdown_timeout_ms);
            config.kafka = options
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let make = {
                let spool = spool.clone();
                move || {
                    let spool = spool.clone();
                    Shipper::new(config.clone()).map(|s| {
                        s.with_progress(move |p: &Progress| {
                            spool.said(p.oldest_needed, run_stats(p))
                        })
                    })
                }
            };
            let first =
                make().map_err(|e| Error::InvalidConfig(format!("decision_log.ship: {e}")))?;
            let finish = Arc::new(AtomicBool::new(false));
            let f = finish.clone();
            let log = log.to_path_buf();
            let thread = std::thread::Builder::new()
                .name("nextbest-ship".into())
                .spawn(move || supervise(first, make, f, &log, &spool))
                .map_err(|e| Error::io("<decision log shipper thread>", e))?;
            Ok(Shipping {
                finish,
                thread: Some(thread),
            })
        }
    }

    fn run_stats(p: &Progress) -> SpoolStats {
        let s = &p.stats;
        SpoolStats {
            unshipped_bytes: p.unshipped_bytes,
            shipped: s.shipped,
            resent: s.resent,
            delivery_errors: s.delivery_errors,
            broker_errors: s.broker_errors,
            corrupt: s.corrupt,
            files_gone: s.files_gone,
            ..SpoolStats::default()
        }
    }

    /// Run the shipper until finished; a run that stops on an error is
    /// reported, counted, and started again after a back-off (0.1 s
    /// doubling to 5 s).
    fn supervise(
        first: Shipper,
        make: impl Fn() -> Result<Shipper, nextbest_ship::ShipError>,
        finish: Arc<AtomicBool>,
        log: &Path,
        spool: &Spool,
    ) {
        // `finish` ships what the log holds, then stops: there is no
        // stopping without reading.
        let never = AtomicBool::new(false);
        let mut next = Some(first);
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = next.take().map_or_else(&make, Ok).and_then(|s| {
                let mut shipper = s.with_finish(finish.clone());
                shipper.run(&never).map(|_| ())
            });
            let Err(e) = result else { return };
            eprintln!("nextbest ship: {e}");
            let total = nextbest_ship::spool::list(log).map_or(0, |files| {
                files
                    .iter()
                    .map(|f| std::fs::metadata(&f.path).map_or(0, |m| m.len()))
                    .sum()
            });
            spool.stopped(total);
            if finish.load(Ordering::Relaxed) {
                return;
            }
            let until = std::time::Instant::now() + backoff;
            while std::time::Instant::now() < until && !finish.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    impl Drop for Shipping {
        fn drop(&mut self) {
            self.finish.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}
