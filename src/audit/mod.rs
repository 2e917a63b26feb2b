//! The decision log: one record per decision and per outcome, JSON Lines,
//! masked, durable on `flush`, replayable.
//!
//! A decision hands its record to a bounded queue and returns; a writer
//! thread serialises, masks and writes it. When the queue is full the
//! default policy is to block the deciding thread, for at most
//! `block_timeout_ms`; the `drop` policy never blocks and counts what it
//! dropped. When the sink fails (a full disk), `on_error = "fail"` (the
//! default) makes every decision return an error until the writer has
//! written and synced what it holds again; `"degrade"` decides on and
//! counts. `flush` returns once every record handed over before it is
//! written and fsynced, or with the error that stopped it. Dropping the
//! engine drains the queue and syncs.
//!
//! What each counter of [`LogStats`] means, and exactly what is
//! guaranteed, is in docs/DECISION_LOG.md ("When something fails"). The
//! record format is versioned (`"v": 1`): readers refuse other versions.

pub mod reader;
mod record;
mod sink;
mod spool;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use sink::{CallbackSink, FileFormat, FileSink, MemorySink, Sink, SinkProgress};
pub(crate) use spool::Spool;
pub use spool::{OnFull, ShipOptions, SpoolStats};

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
    /// Wait for room, at most `block_timeout_ms`; then the `on_error`
    /// policy applies (the default).
    #[default]
    Block,
    /// Drop the record and count it: deciding never waits for the disk.
    Drop,
}

/// What a decision does when its record cannot be logged: the log's sink
/// is failing (a write or sync error, until a sync succeeds again), or the
/// queue stayed full for `block_timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The decision returns an error (and its record is not logged): no
    /// decision is acted on without its record (the default, for audit).
    #[default]
    Fail,
    /// The decision is returned all the same; the log counts what it could
    /// not write (`lost`, `dropped`) and says it is `failing`.
    Degrade,
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
    /// Keep rotated files for at most this long as well (`30d`, `12h`;
    /// by the time of their last write, checked when the log rotates).
    /// Files the shipper has not shipped are kept whatever their age.
    #[serde(default)]
    pub keep_for: Option<String>,
    /// Records the queue holds (default 65,536).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// `block` (default) or `drop`.
    #[serde(default)]
    pub when_full: WhenFull,
    /// `block`: how long a decision waits for room in the queue (default
    /// 1000 ms); then `on_error` applies.
    #[serde(default = "default_block_timeout_ms")]
    pub block_timeout_ms: u64,
    /// `fail` (default) or `degrade`: see [`OnError`].
    #[serde(default)]
    pub on_error: OnError,
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
    /// Ship the log's records to Kafka from inside the engine, at least
    /// once (the `kafka` feature; docs/SHIPPING.md). Rotated files are
    /// then kept until shipped.
    #[serde(default)]
    pub ship: Option<ShipOptions>,
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
fn default_block_timeout_ms() -> u64 {
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
            block_timeout_ms: default_block_timeout_ms(),
            on_error: OnError::Fail,
            sync_interval_ms: default_sync_ms(),
            mask_key: None,
            archive_dir: None,
            candidates: LogDetail::Stages,
            compression: Compression::None,
            compression_level: default_level(),
            keep_for: None,
            ship: None,
        }
    }

    /// `keep_for` in seconds (an error naming it when it is no duration).
    pub(crate) fn keep_for(&self) -> Result<Option<Duration>, Error> {
        self.keep_for
            .as_deref()
            .map(|k| {
                crate::ruleset::contact::parse_duration(k)
                    .map(|s| Duration::from_secs(s as u64))
                    .map_err(|e| Error::InvalidConfig(format!("decision_log.keep_for: {e}")))
            })
            .transpose()
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
            block_timeout: Duration::from_millis(self.block_timeout_ms),
            on_error: self.on_error,
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
    /// How long `block` waits for room.
    pub block_timeout: Duration,
    /// Fail or degrade when a record cannot be logged.
    pub on_error: OnError,
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

/// Log counters (docs/DECISION_LOG.md, "When something fails", says
/// exactly what each means). `queued − written` is what waits in the queue
/// and the sink's buffer, plus what was given up; `written − synced` is
/// what waits for the next sync, plus what a failed sync may have lost.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LogStats {
    /// Records handed to the writer (accepted into the queue).
    pub queued: u64,
    /// Records that reached the sink: for a file, that the file has whole
    /// (the operating system holds them; not yet necessarily on disk).
    pub written: u64,
    /// Records among `written` that an fsync covered: on disk. (For
    /// sinks that do not count their own progress, every `written` record
    /// as of the last successful `flush`.)
    pub synced: u64,
    /// Records accepted into the queue that may not be in the file: given
    /// up unwritten (too many waited for a failing sink), or written but
    /// an fsync covering them failed.
    pub lost: u64,
    /// Records not accepted, whose decision or outcome was returned all
    /// the same: the queue was full (at once with `drop`; after
    /// `block_timeout_ms` with `block` and `on_error = "degrade"`), or the
    /// writer had stopped (`degrade`).
    pub dropped: u64,
    /// Records not accepted, whose decision or outcome returned an error
    /// instead (`on_error = "fail"`): the log was failing, or the queue
    /// stayed full for `block_timeout_ms`.
    pub refused: u64,
    /// Waits for room in the queue that reached `block_timeout_ms`.
    pub block_timeouts: u64,
    /// Sink write or sync errors (every failed attempt, retries too).
    pub errors: u64,
    /// Whether the sink is failing now: from a write or sync error until
    /// a sync succeeds again (retried every 100 ms).
    pub failing: bool,
    /// Bytes cut off the end of the file when the log opened it: a torn
    /// last line (or zstd frame) that a crash left.
    pub repaired_bytes: u64,
    /// The shipper's counters and the spool, when the log is shipped.
    pub ship: Option<SpoolStats>,
}

/// The log's counters. Deciding threads add to their own stripes and the
/// writer to its own lines: a count shared between them would move a cache
/// line between their cores on every record.
#[derive(Default)]
struct Counters {
    queued: Striped,
    dropped: Striped,
    refused: Striped,
    block_timeouts: Striped,
    errors: Striped,
    /// Written by the writer thread only.
    writer: Padded<WriterCounts>,
    /// Spent records the deciding threads are asked to free, set by the
    /// writer when it found them full (approximate: racing updates only
    /// make a drain a little shorter or longer).
    drain: Padded<AtomicU64>,
    /// Set by the writer while its sink fails; read by every logged
    /// decision (it changes only when the sink fails or recovers, so the
    /// line stays in every core's cache).
    failing: Padded<AtomicBool>,
    /// What failed, for the errors of refused decisions.
    failure: parking_lot::Mutex<String>,
    /// Deciding threads waiting for room in the queue (`block`).
    room: Room,
}

/// The writer's counts (see [`LogStats`]).
#[derive(Default)]
struct WriterCounts {
    written: AtomicU64,
    synced: AtomicU64,
    lost: AtomicU64,
    repaired_bytes: AtomicU64,
}

/// Where deciding threads wait for room in a full queue: the writer wakes
/// one each time it takes a record while any waits.
#[derive(Default)]
struct Room {
    waiting: Padded<AtomicUsize>,
    lock: parking_lot::Mutex<()>,
    freed: parking_lot::Condvar,
}

/// The longest a waiting deciding thread sleeps before it tries the queue
/// again, whether or not the writer woke it: a wake-up that crossed its
/// going to sleep costs at most this.
const ROOM_SLICE: Duration = Duration::from_millis(1);

/// How often the writer retries a failing sink (a sync of everything it
/// holds): decisions are refused until one succeeds.
const RETRY: Duration = Duration::from_millis(100);

/// Why a record was not accepted.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Failing,
    Timeout,
    Stopped,
    SpoolFull,
}

/// A running decision log: the queue's sending end and the writer thread.
pub(crate) struct DecisionLog {
    pub(crate) detail: LogDetail,
    tx: Option<SyncSender<Item>>,
    when_full: WhenFull,
    on_error: OnError,
    block_timeout: Duration,
    /// The sink's file, named in errors.
    path: PathBuf,
    counters: Arc<Counters>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Records the writer has finished with, handed back so that deciding
    /// threads free them. Their memory was allocated by a deciding thread;
    /// freed on the writer's thread, every free takes that thread's malloc
    /// arena lock while it is allocating the next decision, and the
    /// contention (futex calls on both sides) cost more than the decision.
    spent: Arc<parking_lot::Mutex<Receiver<Item>>>,
    /// The shipper's spool, when the log is shipped.
    spool: Option<Arc<Spool>>,
    /// The shipper's thread: stopped after the writer.
    #[cfg(feature = "kafka")]
    shipping: Option<spool::Shipping>,
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
        let path = sink
            .path()
            .map_or_else(|| PathBuf::from("<decision log>"), PathBuf::from);
        // What opening the sink repaired, visible from the start.
        if let Some(p) = sink.progress() {
            counters.writer.0.publish(&p);
        }
        let c = counters.clone();
        let when_full = options.when_full;
        let on_error = options.on_error;
        let block_timeout = options.block_timeout;
        let detail = options.detail;
        let writer = std::thread::Builder::new()
            .name("nextbest-log".into())
            .spawn(move || write_loop(rx, (spent_tx, idle_free), sink, options, &c))
            .map_err(|e| Error::io("<decision log writer thread>", e))?;
        Ok(DecisionLog {
            detail,
            tx: Some(tx),
            when_full,
            on_error,
            block_timeout,
            path,
            counters,
            writer: Some(writer),
            spent,
            spool: None,
            #[cfg(feature = "kafka")]
            shipping: None,
        })
    }

    /// Ship the log's files (`log`, the sink's path) with `options`: its
    /// records obey `spool`'s limit from now on.
    pub(crate) fn ship(
        &mut self,
        options: &ShipOptions,
        log: &std::path::Path,
        spool: Arc<Spool>,
    ) -> Result<(), Error> {
        #[cfg(feature = "kafka")]
        {
            self.shipping = Some(spool::Shipping::start(options, log, spool.clone())?);
            self.spool = Some(spool);
            Ok(())
        }
        #[cfg(not(feature = "kafka"))]
        {
            let _ = (options, log, spool);
            Err(Error::InvalidConfig(
                "decision_log.ship: this build of nextbest has no Kafka shipper: build it with the `kafka` feature (the command-line tool has it; `nextbest ship` ships a log from outside)".into(),
            ))
        }
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
    /// keep for its next decisions (see [`crate::decide::Scratch`]), or an
    /// error when the record cannot be logged and `on_error` is `fail`: the
    /// decision must then not be returned (and what it took from engine
    /// state is the caller's to give back).
    pub(crate) fn log_decision(
        &self,
        decision: Decision,
        customer_id: &str,
        context: &Context,
        limit: Option<usize>,
    ) -> Result<Option<Decision>, Error> {
        if self.tx.is_none() {
            return Ok(None);
        }
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
        self.send(Item::Decision(item))?;
        Ok(spent)
    }

    /// Log an engine event as its own record (`v`, `kind` and its fields),
    /// as [`DecisionLog::log`] does.
    pub(crate) fn log_note(&self, record: serde_json::Value) -> Result<(), Error> {
        self.log(Item::Note(Box::new(record)))
    }

    /// Log an outcome (as [`DecisionLog::log_decision`]).
    pub(crate) fn log(&self, item: Item) -> Result<(), Error> {
        if self.tx.is_none() {
            return Ok(());
        }
        self.free_spent();
        self.send(item)
    }

    #[inline]
    fn send(&self, item: Item) -> Result<(), Error> {
        let Some(tx) = &self.tx else { return Ok(()) };
        if self.on_error == OnError::Fail && self.counters.failing.0.load(Ordering::Relaxed) {
            return self.refuse(item, Refusal::Failing);
        }
        if let Some(spool) = &self.spool {
            if spool.is_full() {
                return self.spool_full(spool, tx, item);
            }
        }
        match tx.try_send(item) {
            Ok(()) => {
                self.counters.queued.add(1);
                Ok(())
            }
            Err(TrySendError::Full(item)) => match self.when_full {
                WhenFull::Block => self.send_waiting(tx, item),
                WhenFull::Drop => {
                    self.counters.dropped.add(1);
                    Ok(())
                }
            },
            Err(TrySendError::Disconnected(item)) => {
                self.counters.errors.add(1);
                self.refuse(item, Refusal::Stopped)
            }
        }
    }

    /// The shipping spool is full: what `on_full` says.
    #[cold]
    #[inline(never)]
    fn spool_full(&self, spool: &Spool, tx: &SyncSender<Item>, item: Item) -> Result<(), Error> {
        match spool.on_full {
            OnFull::Drop => {
                spool.count_dropped();
                Ok(())
            }
            OnFull::Fail => {
                spool.count_refused();
                Err(self.refusal_error(Refusal::SpoolFull))
            }
            OnFull::Block if spool.wait_for_room() => match tx.try_send(item) {
                Ok(()) => {
                    self.counters.queued.add(1);
                    Ok(())
                }
                Err(TrySendError::Full(item)) => self.send_waiting(tx, item),
                Err(TrySendError::Disconnected(item)) => self.refuse(item, Refusal::Stopped),
            },
            OnFull::Block => {
                drop(item);
                match self.on_error {
                    OnError::Fail => {
                        spool.count_refused();
                        Err(self.refusal_error(Refusal::SpoolFull))
                    }
                    OnError::Degrade => {
                        spool.count_dropped();
                        Ok(())
                    }
                }
            }
        }
    }

    /// `block` with a full queue: wait for room, at most `block_timeout`.
    #[cold]
    #[inline(never)]
    fn send_waiting(&self, tx: &SyncSender<Item>, mut item: Item) -> Result<(), Error> {
        let deadline = Instant::now() + self.block_timeout;
        let room = &self.counters.room;
        let mut guard = room.lock.lock();
        room.waiting.0.fetch_add(1, Ordering::SeqCst);
        let sent = loop {
            match tx.try_send(item) {
                Ok(()) => break Ok(()),
                Err(TrySendError::Full(back)) => item = back,
                Err(TrySendError::Disconnected(back)) => break Err((back, Refusal::Stopped)),
            }
            let now = Instant::now();
            if now >= deadline {
                break Err((item, Refusal::Timeout));
            }
            room.freed
                .wait_for(&mut guard, (deadline - now).min(ROOM_SLICE));
        };
        room.waiting.0.fetch_sub(1, Ordering::SeqCst);
        drop(guard);
        match sent {
            Ok(()) => {
                self.counters.queued.add(1);
                Ok(())
            }
            Err((item, Refusal::Timeout)) => {
                self.counters.block_timeouts.add(1);
                self.refuse(item, Refusal::Timeout)
            }
            Err((item, why)) => {
                self.counters.errors.add(1);
                self.refuse(item, why)
            }
        }
    }

    /// A record not accepted: refused with an error (`fail`), or counted
    /// and let go (`degrade`). Dropped here, on the deciding thread that
    /// allocated it.
    #[cold]
    #[inline(never)]
    fn refuse(&self, item: Item, why: Refusal) -> Result<(), Error> {
        drop(item);
        match self.on_error {
            OnError::Fail => {
                self.counters.refused.add(1);
                Err(self.refusal_error(why))
            }
            OnError::Degrade => {
                self.counters.dropped.add(1);
                Ok(())
            }
        }
    }

    fn refusal_error(&self, why: Refusal) -> Error {
        let (kind, what) = match why {
            Refusal::Failing => (
                std::io::ErrorKind::Other,
                format!(
                    "the decision log is failing ({}): the record could not be logged, so the call is refused (on_error = \"fail\"); calls are accepted again once the log has written and synced what it holds (retried every {} ms, and by flush)",
                    self.counters.failure.lock(),
                    RETRY.as_millis()
                ),
            ),
            Refusal::Timeout => (
                std::io::ErrorKind::TimedOut,
                format!(
                    "the decision log's queue stayed full for block_timeout_ms = {} (its writer is not keeping up: a slow or stalled disk?): the record could not be logged, so the call is refused (on_error = \"fail\")",
                    self.block_timeout.as_millis()
                ),
            ),
            Refusal::Stopped => (
                std::io::ErrorKind::BrokenPipe,
                "the decision log's writer has stopped: the record could not be logged".to_string(),
            ),
            Refusal::SpoolFull => (
                std::io::ErrorKind::StorageFull,
                self.spool
                    .as_ref()
                    .map_or_else(String::new, |s| s.refusal()),
            ),
        };
        Error::io(&self.path, std::io::Error::new(kind, what))
    }

    /// Returns once everything logged before the call is written and synced.
    pub(crate) fn flush(&self) -> Result<(), Error> {
        let Some(tx) = &self.tx else { return Ok(()) };
        let (done_tx, done_rx) = sync_channel(1);
        let stopped = || self.refusal_error(Refusal::Stopped);
        tx.send(Item::Flush(done_tx)).map_err(|_| stopped())?;
        self.wake();
        match done_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::io(&self.path, e)),
            Err(_) => Err(stopped()),
        }
    }

    /// Wake the writer if it is sleeping between polls.
    fn wake(&self) {
        if let Some(w) = &self.writer {
            w.thread().unpark();
        }
    }

    pub(crate) fn stats(&self) -> LogStats {
        let c = &self.counters;
        let w = &c.writer.0;
        LogStats {
            queued: c.queued.sum(),
            written: w.written.load(Ordering::Relaxed),
            synced: w.synced.load(Ordering::Relaxed),
            lost: w.lost.load(Ordering::Relaxed),
            dropped: c.dropped.sum(),
            refused: c.refused.sum(),
            block_timeouts: c.block_timeouts.sum(),
            errors: c.errors.sum(),
            failing: c.failing.0.load(Ordering::Relaxed),
            repaired_bytes: w.repaired_bytes.load(Ordering::Relaxed),
            ship: self.spool.as_ref().map(|s| s.stats()),
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
        // Then the shipper ships what the writer wrote, and stops.
        #[cfg(feature = "kafka")]
        self.shipping.take();
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
    sink: Box<dyn Sink>,
    options: LogOptions,
    counters: &Counters,
) {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
    let mut line: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut w = Writer::new(sink, counters);
    let mut dirty = false;
    // When the next periodic sync is due (`sync_interval_ms` is at most
    // u64::MAX ms, about 5.8e8 years: an instant that far ahead fits).
    let interval = options.sync_interval;
    let mut next_sync = Instant::now() + interval;
    let mut next_retry = Instant::now();
    let mut empty_polls = 0u32;
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
                let due = match (dirty && !w.failing, w.failing) {
                    (_, true) => Some(next_retry),
                    (true, false) => Some(next_sync),
                    (false, false) => None,
                };
                let r = match due {
                    // At least a poll: with a sync still running, a zero
                    // interval would otherwise spin until it ends.
                    Some(due) => {
                        rx.recv_timeout(due.saturating_duration_since(Instant::now()).max(POLL))
                    }
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
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
        if item.is_some() {
            counters.room.notify();
        }
        match item {
            Some(Item::Flush(done)) => {
                let r = w.sync().and_then(|()| w.lost_since_flush());
                dirty = false;
                next_sync = Instant::now() + interval;
                let _ = done.send(r);
            }
            Some(item) => {
                // Survivors that nothing in the decision needed sorted are
                // sorted as the record is written (into the writer's own
                // buffers): here, off the hot path.
                let text = record::write_record(&item, &options.masking, &mut line);
                w.write(text);
                dirty = true;
                // Reused or freed by a deciding thread; freed here when the
                // spent records are full (decisions stopped, or piled up).
                if spent.try_send(item).is_err() {
                    counters.drain.0.store(SPENT_DRAIN, Ordering::Relaxed);
                }
            }
            None => {}
        }
        if w.failing {
            // A failing sink is retried with a full sync: decisions are
            // refused (`fail`) until one succeeds.
            if Instant::now() >= next_retry {
                if w.sync().is_ok() {
                    dirty = false;
                    next_sync = Instant::now() + interval;
                }
                next_retry = Instant::now() + RETRY;
            }
        } else if dirty && Instant::now() >= next_sync {
            // In the background where the sink can (a file): an fsync of a
            // second's records would stop the writer for all of it.
            match w.sync_soon() {
                Ok(true) => {
                    dirty = false;
                    next_sync = Instant::now() + interval;
                }
                // An earlier sync (one started after 8 MiB, say) is still
                // running: asked again a poll later, not an interval later.
                Ok(false) => next_sync = Instant::now() + POLL,
                // Retried (a full sync) a retry interval later.
                Err(_) => next_retry = Instant::now() + RETRY,
            }
        }
    }
    let _ = w.sync();
}

impl Room {
    /// The writer took a record: wake a deciding thread waiting for room.
    #[inline]
    fn notify(&self) {
        if self.waiting.0.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock();
            self.freed.notify_one();
        }
    }
}

impl WriterCounts {
    fn publish(&self, p: &SinkProgress) {
        self.written.store(p.written, Ordering::Relaxed);
        self.synced.store(p.synced, Ordering::Relaxed);
        self.lost.store(p.lost, Ordering::Relaxed);
        self.repaired_bytes
            .store(p.repaired_bytes, Ordering::Relaxed);
    }
}

/// The writer's sink, its counts and whether it is failing.
struct Writer<'c> {
    sink: Box<dyn Sink>,
    counters: &'c Counters,
    /// Whether the sink counts its own progress ([`Sink::progress`]);
    /// otherwise the writer counts from the results of its calls.
    sink_counts: bool,
    progress: SinkProgress,
    failing: bool,
    /// `lost` as of the last flush, which reported any loss since.
    lost_at_flush: u64,
}

impl<'c> Writer<'c> {
    fn new(sink: Box<dyn Sink>, counters: &'c Counters) -> Writer<'c> {
        let progress = sink.progress();
        Writer {
            sink_counts: progress.is_some(),
            progress: progress.unwrap_or_default(),
            lost_at_flush: progress.map_or(0, |p| p.lost),
            sink,
            counters,
            failing: false,
        }
    }

    fn write(&mut self, record: &[u8]) {
        let r = self.sink.write_bytes(record);
        if !self.sink_counts {
            match r {
                Ok(()) => self.progress.written += 1,
                Err(_) => self.progress.lost += 1,
            }
        }
        if let Err(e) = r {
            self.failed(&e);
        }
        self.publish();
    }

    /// A full sync; a success ends a failure.
    fn sync(&mut self) -> std::io::Result<()> {
        let r = self.sink.sync();
        match &r {
            Ok(()) => {
                if !self.sink_counts {
                    self.progress.synced = self.progress.written;
                }
                self.recovered();
            }
            Err(e) => self.failed(e),
        }
        self.publish();
        r
    }

    fn sync_soon(&mut self) -> std::io::Result<bool> {
        let r = self.sink.sync_soon();
        if let Err(e) = &r {
            self.failed(e);
        }
        self.publish();
        r
    }

    fn publish(&mut self) {
        if self.sink_counts {
            if let Some(p) = self.sink.progress() {
                self.progress = p;
            }
        }
        self.counters.writer.0.publish(&self.progress);
    }

    fn failed(&mut self, e: &std::io::Error) {
        self.counters.errors.add(1);
        if !self.failing {
            self.failing = true;
            *self.counters.failure.lock() = e.to_string();
            self.counters.failing.0.store(true, Ordering::Relaxed);
        }
    }

    fn recovered(&mut self) {
        if self.failing {
            self.failing = false;
            self.counters.failing.0.store(false, Ordering::Relaxed);
        }
    }

    /// An error if records were lost since the last flush.
    fn lost_since_flush(&mut self) -> std::io::Result<()> {
        let lost = self.progress.lost;
        let since = lost - self.lost_at_flush.min(lost);
        self.lost_at_flush = lost;
        if since == 0 {
            return Ok(());
        }
        Err(std::io::Error::other(format!(
            "{since} decision-log record(s) were lost since the last flush (the sink refused them; stats: log.lost)"
        )))
    }
}

/// Build the log item for an outcome.
pub(crate) fn outcome_item(outcome: &Outcome, at: Timestamp) -> Item {
    Item::Outcome(Box::new(OutcomeItem {
        outcome: outcome.clone(),
        at,
    }))
}
