//! The decision log: one record per decision and per outcome, JSON Lines,
//! masked, durable on `flush`, replayable.
//!
//! A decision hands its record to a bounded queue and returns; a writer
//! thread serialises, masks and writes it. When the queue is full the
//! default policy is to block the deciding thread (nothing is lost); the
//! `drop` policy never blocks and counts what it dropped. `flush` returns
//! once every record handed over before it is written and fsynced. Dropping
//! the engine drains the queue and syncs.
//!
//! The record format is versioned (`"v": 1`) and documented in the README.

pub mod reader;
mod record;
mod sink;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use sink::{CallbackSink, FileFormat, FileSink, MemorySink, Sink};

use crate::base::util::{Padded, Striped};
use crate::base::Error;
use crate::base::Outcome;
use crate::base::Timestamp;
use crate::context::Context;
use crate::decide::decision::Decision;
pub(crate) use record::{DecisionItem, Item, OutcomeItem};

/// What to do when the log's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: no record is ever lost (the default).
    #[default]
    Block,
    /// Drop the record and count it: deciding never waits for the disk.
    Drop,
}

/// How much of each decision's candidate list a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogDetail {
    /// Every candidate: ranked ones in `candidates` with P, C, V, L and
    /// priority; removed ones in `removed`, by the stage that removed them
    /// (the default). The conditions behind each stage are in the version
    /// the record names, and `nextbest replay` shows them.
    #[default]
    Stages,
    /// Every candidate in `candidates`: removed ones with their stage,
    /// level, condition and reason, ranked ones with P, C, V, L and
    /// priority. The most readable and about twice the bytes of `stages`.
    All,
    /// Ranked candidates only; removed ones are recovered exactly by
    /// `nextbest replay`. Much smaller records on large catalogs.
    Ranked,
    /// Only the chosen actions with their scores.
    Chosen,
}

impl LogDetail {
    /// What a decision keeps for a record of this detail.
    pub(crate) fn keep(self) -> crate::decide::Keep {
        crate::decide::Keep {
            removed: matches!(self, LogDetail::All | LogDetail::Stages),
            ranked: matches!(self, LogDetail::All | LogDetail::Stages | LogDetail::Ranked),
        }
    }
}

/// Whether the log file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Plain JSON Lines (the default).
    #[default]
    None,
    /// zstd frames of JSON Lines (read with `zstdcat`): about a twelfth of
    /// the bytes on the shipped rule sets, for some of the writer's CPU.
    Zstd,
}

/// Decision log settings (the `decision_log` object of the engine
/// configuration).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LogConfig {
    /// The JSON Lines file.
    pub path: PathBuf,
    /// Rotate when the file passes this size (default 64 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files to keep (default 10).
    #[serde(default = "default_keep_files")]
    pub keep_files: usize,
    /// Records the queue holds (default 65,536).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// `block` (default) or `drop`.
    #[serde(default)]
    pub when_full: WhenFull,
    /// fsync at most this often while records arrive (default 1000 ms);
    /// `flush` always syncs.
    #[serde(default = "default_sync_ms")]
    pub sync_interval_ms: u64,
    /// Key for masking sensitive attributes by keyed hash (HMAC-SHA-256),
    /// so equal values stay joinable. Without a key they are replaced by
    /// `"***"`.
    #[serde(default)]
    pub mask_key: Option<String>,
    /// Directory where every published rule version's files are archived
    /// under its hash, so `nextbest replay` can find it.
    #[serde(default)]
    pub archive_dir: Option<PathBuf>,
    /// `stages` (default), `all`, `ranked` or `chosen`.
    #[serde(default)]
    pub candidates: LogDetail,
    /// `none` (default) or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// The zstd level (default 1): higher packs tighter and costs more of
    /// the writer's time; negative levels are faster still.
    #[serde(default = "default_level")]
    pub compression_level: i32,
}

fn default_max_bytes() -> u64 {
    64 << 20
}
fn default_keep_files() -> usize {
    10
}
fn default_queue() -> usize {
    65_536
}
fn default_sync_ms() -> u64 {
    1000
}
fn default_level() -> i32 {
    1
}

impl LogConfig {
    /// A configuration with the defaults, writing to `path`.
    pub fn new(path: impl Into<PathBuf>) -> LogConfig {
        LogConfig {
            path: path.into(),
            max_bytes: default_max_bytes(),
            keep_files: default_keep_files(),
            queue_capacity: default_queue(),
            when_full: WhenFull::Block,
            sync_interval_ms: default_sync_ms(),
            mask_key: None,
            archive_dir: None,
            candidates: LogDetail::Stages,
            compression: Compression::None,
            compression_level: default_level(),
        }
    }

    /// [`LogConfig::new`], compressed with zstd when `path` ends in `.zst`
    /// (what the command line's `--log` does).
    pub fn for_file(path: impl Into<PathBuf>) -> LogConfig {
        let mut config = LogConfig::new(path);
        if config.path.extension().is_some_and(|e| e == "zst") {
            config.compression = Compression::Zstd;
        }
        config
    }

    /// How the file sink stores records.
    pub fn file_format(&self) -> FileFormat {
        match self.compression {
            Compression::None => FileFormat::Plain,
            Compression::Zstd => FileFormat::Zstd(self.compression_level),
        }
    }

    pub(crate) fn options(&self) -> LogOptions {
        LogOptions {
            queue_capacity: self.queue_capacity,
            when_full: self.when_full,
            sync_interval: Duration::from_millis(self.sync_interval_ms),
            masking: match &self.mask_key {
                Some(k) => Masking::KeyedHash(k.as_bytes().to_vec()),
                None => Masking::Fixed,
            },
            detail: self.candidates,
        }
    }
}

/// How sensitive attributes are masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Masking {
    /// Replaced by `"***"`.
    Fixed,
    /// Replaced by `"hmac:"` and the first 16 bytes (hex) of
    /// HMAC-SHA-256(key, value): equal values give equal masks.
    KeyedHash(Vec<u8>),
}

/// Queue and masking settings of a log, whatever its sink.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Records the queue holds.
    pub queue_capacity: usize,
    /// Block or drop when full.
    pub when_full: WhenFull,
    /// fsync at most this often while records arrive.
    pub sync_interval: Duration,
    /// How sensitive attributes are masked.
    pub masking: Masking,
    /// How much of the candidate list records carry.
    pub detail: LogDetail,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogConfig::new("").options()
    }
}

/// Log counters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LogStats {
    /// Records handed to the writer.
    pub queued: u64,
    /// Records written to the sink.
    pub written: u64,
    /// Records dropped because the queue was full (`drop` policy only).
    pub dropped: u64,
    /// Sink write or sync errors.
    pub errors: u64,
}

/// The log's counters. Deciding threads add to their own stripes and the
/// writer to its own line: a count shared between them would move a cache
/// line between their cores on every record.
#[derive(Default)]
struct Counters {
    queued: Striped,
    dropped: Striped,
    errors: Striped,
    /// Written by the writer thread only.
    written: Padded<AtomicU64>,
    /// Spent records the deciding threads are asked to free, set by the
    /// writer when it found them full (approximate: racing updates only
    /// make a drain a little shorter or longer).
    drain: Padded<AtomicU64>,
}

/// A running decision log: the queue's sending end and the writer thread.
pub(crate) struct DecisionLog {
    pub(crate) detail: LogDetail,
    tx: Option<SyncSender<Item>>,
    when_full: WhenFull,
    counters: Arc<Counters>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Records the writer has finished with, handed back so that deciding
    /// threads free them. Their memory was allocated by a deciding thread;
    /// freed on the writer's thread, every free takes that thread's malloc
    /// arena lock while it is allocating the next decision, and the
    /// contention (futex calls on both sides) cost more than the decision.
    spent: Arc<parking_lot::Mutex<Receiver<Item>>>,
}

/// Spent records the writer may hold for the deciding threads to reuse or
/// free; past this it frees them itself, and asks the deciding threads to
/// free `SPENT_DRAIN` more (see `Counters::drain`).
const SPENT_CAPACITY: usize = 1024;

/// Spent records a decision looks at for one to reuse, freeing outcome
/// records on the way. Each logged decision takes back one decision
/// record and hands over one, so the spent records hold steady while
/// decisions are logged; they grow when a decision finds none back yet
/// (it then allocates a new record) or another thread holds them.
const SPENT_LOOKS: usize = 2;

/// Spent records the deciding threads free, a few per decision, after
/// the writer found the spent records full: back to half full.
const SPENT_DRAIN: u64 = (SPENT_CAPACITY / 2) as u64;

/// Spent records a decision frees while draining.
const DRAIN_PER_DECISION: u64 = 4;

impl DecisionLog {
    pub(crate) fn start(sink: Box<dyn Sink>, options: LogOptions) -> Result<DecisionLog, Error> {
        let (tx, rx) = sync_channel(options.queue_capacity.max(1));
        let (spent_tx, spent) = sync_channel(SPENT_CAPACITY);
        let spent = Arc::new(parking_lot::Mutex::new(spent));
        let idle_free = spent.clone();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let when_full = options.when_full;
        let detail = options.detail;
        let writer = std::thread::Builder::new()
            .name("nextbest-log".into())
            .spawn(move || write_loop(rx, (spent_tx, idle_free), sink, options, &c))
            .map_err(|e| Error::io("<decision log writer thread>", e))?;
        Ok(DecisionLog {
            detail,
            tx: Some(tx),
            when_full,
            counters,
            writer: Some(writer),
            spent,
        })
    }

    /// Take back a decision record the writer is done with, to be reused
    /// (see `spent`), freeing the outcome records before it.
    fn free_spent(&self) -> Option<Box<DecisionItem>> {
        // Another deciding thread is at it: leave them to it.
        let spent = self.spent.try_lock()?;
        // Read-only while nothing needs draining: no cache line moves.
        let drain = self.counters.drain.0.load(Ordering::Relaxed);
        if drain > 0 {
            let left = drain.saturating_sub(DRAIN_PER_DECISION);
            self.counters.drain.0.store(left, Ordering::Relaxed);
            for _ in 0..DRAIN_PER_DECISION {
                if spent.try_recv().is_err() {
                    self.counters.drain.0.store(0, Ordering::Relaxed);
                    break;
                }
            }
        }
        for _ in 0..SPENT_LOOKS {
            match spent.try_recv() {
                Ok(Item::Decision(d)) => return Some(d),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        None
    }

    /// Log a decision: its record holds the decision (moved) and copies of
    /// the request's customer and context, in the buffers of a record the
    /// writer is done with when there is one (allocating only to grow them).
    /// Returns that record's old decision, whose buffers the caller may
    /// keep for its next decisions (see [`crate::decide::Scratch`]).
    pub(crate) fn log_decision(
        &self,
        decision: Decision,
        customer_id: &str,
        context: &Context,
        limit: Option<usize>,
    ) -> Option<Decision> {
        self.tx.as_ref()?;
        let mut spent = None;
        let item = match self.free_spent() {
            Some(mut item) => {
                spent = Some(std::mem::replace(&mut item.decision, decision));
                item.customer_id.clear();
                item.customer_id.push_str(customer_id);
                item.context.clone_from(context);
                item.limit = limit;
                item.detail = self.detail;
                item
            }
            None => Box::new(DecisionItem {
                decision,
                customer_id: customer_id.to_string(),
                context: context.clone(),
                limit,
                detail: self.detail,
            }),
        };
        self.send(Item::Decision(item));
        spent
    }

    /// Log an engine event as its own record (`v`, `kind` and its fields).
    pub(crate) fn log_note(&self, record: serde_json::Value) {
        self.log(Item::Note(Box::new(record)));
    }

    pub(crate) fn log(&self, item: Item) {
        if self.tx.is_none() {
            return;
        }
        self.free_spent();
        self.send(item);
    }

    fn send(&self, item: Item) {
        let Some(tx) = &self.tx else { return };
        match self.when_full {
            WhenFull::Block => {
                if tx.send(item).is_ok() {
                    self.counters.queued.add(1);
                } else {
                    self.counters.errors.add(1);
                }
            }
            WhenFull::Drop => match tx.try_send(item) {
                Ok(()) => {
                    self.counters.queued.add(1);
                }
                Err(TrySendError::Full(_)) => {
                    self.counters.dropped.add(1);
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.counters.errors.add(1);
                }
            },
        }
    }

    /// Returns once everything logged before the call is written and synced.
    pub(crate) fn flush(&self) -> Result<(), Error> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let (done_tx, done_rx) = sync_channel(1);
        tx.send(Item::Flush(done_tx)).map_err(|_| {
            Error::io(
                "<decision log>",
                std::io::Error::other("the log writer has stopped"),
            )
        })?;
        self.wake();
        match done_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::io("<decision log>", e)),
            Err(_) => Err(Error::io(
                "<decision log>",
                std::io::Error::other("the log writer has stopped"),
            )),
        }
    }

    /// Wake the writer if it is sleeping between polls.
    fn wake(&self) {
        if let Some(w) = &self.writer {
            w.thread().unpark();
        }
    }

    pub(crate) fn stats(&self) -> LogStats {
        LogStats {
            queued: self.counters.queued.sum(),
            written: self.counters.written.0.load(Ordering::Relaxed),
            dropped: self.counters.dropped.sum(),
            errors: self.counters.errors.sum(),
        }
    }
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        // Closing the queue lets the writer drain it, sync and stop.
        self.tx.take();
        self.wake();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// How long the writer sleeps when it finds the queue empty while records
/// are arriving. Sleeping rather than blocking on the queue means a
/// deciding thread never pays for waking the writer (a futex call, several
/// times the cost of a decision) while the log is busy; the price is that a
/// record reaches the sink up to this much later, well inside the sync
/// interval. `flush` and closing the log wake the writer at once.
const POLL: Duration = Duration::from_micros(500);

/// Empty polls in a row after which the writer blocks on the queue instead:
/// an idle engine costs nothing, and the first record after a pause pays
/// one wake-up.
const IDLE_POLLS: u32 = 64;

fn write_loop(
    rx: Receiver<Item>,
    (spent, idle_free): (SyncSender<Item>, Arc<parking_lot::Mutex<Receiver<Item>>>),
    mut sink: Box<dyn Sink>,
    options: LogOptions,
    counters: &Counters,
) {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let mut line: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut dirty = false;
    // When the next periodic sync is due (`sync_interval_ms` is at most
    // u64::MAX ms, about 5.8e8 years: an instant that far ahead fits).
    let interval = options.sync_interval;
    let mut next_sync = Instant::now() + interval;
    let mut empty_polls = 0u32;
    let mut written = 0u64;
    let sync = |sink: &mut Box<dyn Sink>, dirty: &mut bool| -> std::io::Result<()> {
        *dirty = false;
        sink.sync()
    };
    loop {
        let item = match rx.try_recv() {
            Ok(item) => {
                empty_polls = 0;
                Some(item)
            }
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) if empty_polls < IDLE_POLLS => {
                empty_polls += 1;
                std::thread::park_timeout(POLL);
                None
            }
            Err(TryRecvError::Empty) => {
                // Idle: free what no decision will come to free (it holds
                // contexts and, through its decision, a rule version).
                if let Some(rx) = idle_free.try_lock() {
                    while rx.try_recv().is_ok() {}
                }
                let r = if dirty {
                    // At least a poll: with a sync still running, a zero
                    // interval would otherwise spin until it ends.
                    let wait = next_sync
                        .saturating_duration_since(Instant::now())
                        .max(POLL);
                    rx.recv_timeout(wait)
                } else {
                    rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                };
                match r {
                    Ok(item) => {
                        empty_polls = 0;
                        Some(item)
                    }
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        match item {
            Some(Item::Flush(done)) => {
                let r = sync(&mut sink, &mut dirty);
                if r.is_err() {
                    counters.errors.add(1);
                }
                next_sync = Instant::now() + interval;
                let _ = done.send(r);
            }
            Some(item) => {
                // Survivors that nothing in the decision needed sorted are
                // sorted as the record is written (into the writer's own
                // buffers): here, off the hot path.
                let text = record::write_record(&item, &options.masking, &mut line);
                match sink.write_bytes(text) {
                    Ok(()) => {
                        written += 1;
                        counters.written.0.store(written, Ordering::Relaxed);
                        dirty = true;
                    }
                    Err(_) => {
                        counters.errors.add(1);
                    }
                }
                // Reused or freed by a deciding thread; freed here when the
                // spent records are full (decisions stopped, or piled up).
                if spent.try_send(item).is_err() {
                    counters.drain.0.store(SPENT_DRAIN, Ordering::Relaxed);
                }
            }
            None => {}
        }
        if dirty && Instant::now() >= next_sync {
            // In the background where the sink can (a file): an fsync of a
            // second's records would stop the writer for all of it.
            match sink.sync_soon() {
                Ok(true) => {
                    dirty = false;
                    next_sync = Instant::now() + interval;
                }
                // An earlier sync (one started after 8 MiB, say) is still
                // running: asked again a poll later, not an interval later.
                Ok(false) => next_sync = Instant::now() + POLL,
                // Asked again an interval later.
                Err(_) => {
                    counters.errors.add(1);
                    next_sync = Instant::now() + interval;
                }
            }
        }
    }
    if sync(&mut sink, &mut dirty).is_err() {
        counters.errors.add(1);
    }
}

/// Build the log item for an outcome.
pub(crate) fn outcome_item(outcome: &Outcome, at: Timestamp) -> Item {
    Item::Outcome(Box::new(OutcomeItem {
        outcome: outcome.clone(),
        at,
    }))
}
