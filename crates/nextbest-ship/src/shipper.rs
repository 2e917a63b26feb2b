//! The Kafka shipper: reads the spool oldest first, produces every record
//! with an idempotent producer (`acks=all`), and commits its position
//! only past records the broker acknowledged.
//!
//! Invariants a reader of this file must keep:
//! - `pending` holds every record sent and not yet behind the committed
//!   prefix, in the order they were read; the position only ever moves to
//!   the place after a record all of whose predecessors are acknowledged.
//! - A delivery failure (or a fatal producer error) throws the producer
//!   away: everything after the acknowledged prefix is read and sent
//!   again by a new one. That is the one source of duplicates besides a
//!   restart (which resends what was acknowledged after the last commit).
//! - Every wait is bounded: without `follow`, no acknowledgement for
//!   `stall_timeout` while records wait ends the run with an error; with
//!   it, a line is reported every `report_interval` and librdkafka's
//!   `message.timeout.ms` (`delivery_timeout`) makes a stuck producer
//!   fail its records, which then go again.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig,
};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;

use crate::position::{self, Position};
use crate::record::RecordMeta;
use crate::spool::{self, FileId, FileReader, Item, Listed, Place};
use crate::ShipError;

/// What to ship where, and how long to wait for what.
#[derive(Debug, Clone)]
pub struct ShipConfig {
    /// The log: its file path (`decision_log.path`), or a directory that
    /// holds the files of one log.
    pub log: PathBuf,
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic of decision records (and of outcomes, unless
    /// `outcomes_topic` is set).
    pub topic: String,
    /// A topic of its own for outcome records.
    pub outcomes_topic: Option<String>,
    /// The position file (default: `.NAME.ship-position` beside the log).
    pub position: Option<PathBuf>,
    /// Keep shipping what the log appends (and the files it rotates to)
    /// until stopped, rather than stopping once caught up.
    pub follow: bool,
    /// How often a caught-up shipper looks for new records.
    pub poll_interval: Duration,
    /// The position is stored at most this often while shipping (and
    /// always at the end): a restart resends at most this much.
    pub commit_interval: Duration,
    /// Without `follow`: give up (an error) when records wait and none was
    /// acknowledged for this long.
    pub stall_timeout: Duration,
    /// librdkafka's `message.timeout.ms`: a record not acknowledged by
    /// then fails, and it and everything after it are sent again.
    pub delivery_timeout: Duration,
    /// While records wait without acknowledgement, a line is reported
    /// this often.
    pub report_interval: Duration,
    /// Records sent and not yet acknowledged, at most.
    pub max_in_flight: usize,
    /// More librdkafka producer properties (`security.protocol`,
    /// `compression.type`, ...), set after the shipper's own; the ones
    /// delivery depends on (`enable.idempotence`, `acks`) are refused.
    pub kafka: Vec<(String, String)>,
}

impl ShipConfig {
    /// Ship `log` to `topic` on `brokers`, with the defaults.
    pub fn new(log: impl Into<PathBuf>, brokers: &str, topic: &str) -> ShipConfig {
        ShipConfig {
            log: log.into(),
            brokers: brokers.into(),
            topic: topic.into(),
            outcomes_topic: None,
            position: None,
            follow: false,
            poll_interval: Duration::from_millis(200),
            commit_interval: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(30),
            report_interval: Duration::from_secs(10),
            max_in_flight: 100_000,
            kafka: Vec::new(),
        }
    }
}

/// What a shipper has done (this run), for the summary and for tests.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShipStats {
    /// Records the broker acknowledged.
    pub shipped: u64,
    /// Records handed to the producer, resends included.
    pub sent: u64,
    /// Records sent again after a delivery failure.
    pub resent: u64,
    /// Lines and frames skipped as damaged (each reported with its file
    /// and line or byte): never shipped.
    pub corrupt: u64,
    /// Files left with bytes after their last whole record once the log
    /// had moved past them (a crash mid-write): those bytes are no record
    /// and are not shipped.
    pub partial_tails: u64,
    /// Log files read from (the one resumed in included).
    pub files: u64,
    /// Delivery failures (records the producer gave up on).
    pub delivery_errors: u64,
    /// Errors librdkafka reported about the connection (a broker down,
    /// all brokers down, ...).
    pub broker_errors: u64,
    /// Producers thrown away after a failure and made anew.
    pub restarts: u64,
    /// Times the position was stored.
    pub commits: u64,
    /// The position file said a file that is gone: records after its
    /// place in that file may not have been shipped.
    pub files_gone: u64,
}

/// The end of a run: what was done and where it stopped.
#[derive(Debug, Clone, Serialize)]
pub struct ShipSummary {
    /// The counts.
    #[serde(flatten)]
    pub stats: ShipStats,
    /// The position stored last (none: nothing was ever shipped).
    pub position: Option<Position>,
    /// Where the position is stored.
    pub position_file: PathBuf,
    /// How long the run took.
    pub elapsed_ms: u64,
}

/// A log file that pending records came from, held open so that it can
/// be read again after a failure even if the log deleted it meanwhile.
struct Source {
    /// Known once the file's first record is whole.
    id: OnceLock<FileId>,
    name: PathBuf,
    file: std::fs::File,
}

/// One record (or skipped damage) read and not yet behind the position.
struct Pending {
    /// Acknowledged (damage: at once).
    done: bool,
    /// A record (not damage).
    record: bool,
    source: Arc<Source>,
    after: Place,
}

/// The producer's delivery reports and errors, gathered while polling.
#[derive(Default)]
struct Reports {
    /// (sequence number, the error if it failed)
    delivered: Mutex<Vec<(usize, Option<String>)>>,
    broker_errors: AtomicU64,
    fatal: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Reports {
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _message: &str) {
        // Errors arrive through `error`; librdkafka's log lines are not the
        // shipper's output.
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.broker_errors.fetch_add(1, Ordering::Relaxed);
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal)) {
            self.fatal.store(true, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(format!("{error}: {reason}"));
        }
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let error = match result {
            Err((e, _)) => Some(e.to_string()),
            // An acknowledgement without an offset is one librdkafka's
            // idempotent producer inferred for a retried batch from the
            // broker accepting a later one; a broker that does not check
            // sequences (librdkafka's own mock cluster, for one) accepts
            // the later batch without the earlier, and the inferred one
            // would be a loss. Not proof that the record is in the log:
            // it goes again.
            Ok(m) if m.offset() < 0 => Some(format!(
                "partition {}: acknowledged without an offset (inferred for a retried batch, not confirmed by the broker)",
                m.partition()
            )),
            Ok(_) => None,
        };
        if let Ok(mut d) = self.delivered.lock() {
            d.push((seq, error));
        }
    }
}

/// Producer properties the shipper's guarantees rest on: not settable
/// through [`ShipConfig::kafka`].
const FIXED: [&str; 7] = [
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "bootstrap.servers",
    "message.timeout.ms",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
];

/// Ships one log. See the module documentation for what it guarantees.
pub struct Shipper {
    config: ShipConfig,
    position_file: PathBuf,
    producer: BaseProducer<Reports>,
    /// The file being read.
    reader: Option<(Arc<Source>, FileReader)>,
    /// Where reading starts when there is no reader yet.
    resume: Option<Position>,
    /// Read and not yet behind the acknowledged prefix, in reading order.
    pending: VecDeque<Pending>,
    /// Sequence number of `pending[0]`.
    first_seq: usize,
    /// The acknowledged prefix's end, and what is stored.
    acked: Option<Position>,
    stored: Option<Position>,
    last_commit: Instant,
    /// Records acknowledged over the position file's life.
    shipped_total: u64,
    /// Broker errors of producers thrown away.
    broker_errors_before: u64,
    stats: ShipStats,
    /// A delivery failure to recover from.
    failed: Option<String>,
    /// Restarts since the last acknowledgement (for the back-off).
    restarts_in_a_row: u32,
    last_progress: Instant,
    last_report: Instant,
    report: Box<dyn FnMut(&str) + Send>,
    /// Told what is left to ship (see [`Shipper::with_progress`]).
    progress: Option<ProgressFn>,
    last_published: Option<Instant>,
    /// Set: ship what the log holds, then stop (see [`Shipper::with_finish`]).
    finish: Option<Arc<AtomicBool>>,
}

/// Told what is left to ship.
type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// How often a shipper with a progress callback tells it what is left.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// What is left to ship, for a log that keeps its files until they are
/// shipped ([`Shipper::with_progress`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Progress {
    /// The oldest file a restart would read from (device, inode): the
    /// stored position's file, or, before a position was stored (or when
    /// its file is gone), the oldest file of the log. Older files are
    /// shipped for good. `None`: the log has no file.
    pub oldest_needed: Option<(u64, u64)>,
    /// Bytes of the log's files after the last acknowledged record
    /// (compressed bytes for zstd files).
    pub unshipped_bytes: u64,
    /// The counts so far.
    pub stats: ShipStats,
}

impl Shipper {
    /// A shipper for `config`, resuming from its position file (if it
    /// exists). Reports (damage skipped, waits, retries) go to standard
    /// error, prefixed `nextbest ship:`; [`Shipper::with_reporter`] sends
    /// them elsewhere.
    pub fn new(config: ShipConfig) -> Result<Shipper, ShipError> {
        if config.topic.is_empty() || config.outcomes_topic.as_deref() == Some("") {
            return Err(ShipError::Config("a topic is empty".into()));
        }
        if let Some((k, _)) = config
            .kafka
            .iter()
            .find(|(k, _)| FIXED.contains(&k.as_str()))
        {
            return Err(ShipError::Config(format!(
                "the Kafka property `{k}` is the shipper's own (idempotent, acks=all, the brokers and delivery timeout given): leave it out"
            )));
        }
        let position_file = match &config.position {
            Some(p) => p.clone(),
            None => position::default_path(&config.log)?,
        };
        let resume = position::load(&position_file)?;
        let producer = make_producer(&config)?;
        let now = Instant::now();
        Ok(Shipper {
            shipped_total: resume.as_ref().map_or(0, |p| p.shipped),
            stored: resume.clone(),
            acked: resume.clone(),
            resume,
            config,
            position_file,
            producer,
            reader: None,
            pending: VecDeque::new(),
            first_seq: 0,
            last_commit: now,
            broker_errors_before: 0,
            stats: ShipStats::default(),
            failed: None,
            restarts_in_a_row: 0,
            last_progress: now,
            last_report: now,
            report: Box::new(|line| eprintln!("nextbest ship: {line}")),
            progress: None,
            last_published: None,
            finish: None,
        })
    }

    /// Send reports (one line each) to `report` instead of standard error.
    pub fn with_reporter(mut self, report: impl FnMut(&str) + Send + 'static) -> Shipper {
        self.report = Box::new(report);
        self
    }

    /// Tell `progress` what is left to ship: at the start, every 0.1 s
    /// while running and at the end (an engine shipping its own log keeps
    /// the files a restart needs, and bounds the spool, by it).
    pub fn with_progress(mut self, progress: impl FnMut(&Progress) + Send + 'static) -> Shipper {
        self.progress = Some(Box::new(progress));
        self
    }

    /// A following shipper stops once `finish` is set and it has shipped
    /// everything whole in the log (within `stall_timeout` of the last
    /// acknowledgement), where `stop` stops it without reading more.
    pub fn with_finish(mut self, finish: Arc<AtomicBool>) -> Shipper {
        self.finish = Some(finish);
        self
    }

    /// The counts so far.
    pub fn stats(&self) -> &ShipStats {
        &self.stats
    }

    /// The position file.
    pub fn position_file(&self) -> &Path {
        &self.position_file
    }

    /// Ship until caught up (every whole record of the log acknowledged
    /// and the position stored), or, with `follow`, until `stop` is set
    /// (then what was sent is waited for, within `stall_timeout`).
    ///
    /// Errors: the log cannot be read, the position cannot be stored, or
    /// no acknowledgement came for `stall_timeout` while records waited
    /// (without `follow`, or once stopping); the position then stays after
    /// the last record acknowledged with all before it.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<ShipSummary, ShipError> {
        let started = Instant::now();
        self.last_progress = started;
        if !self.config.follow && spool::list(&self.config.log)?.is_empty() {
            return Err(ShipError::Config(format!(
                "{}: no such log (neither the file nor rotated files of it)",
                self.config.log.display()
            )));
        }
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let finishing = stopping
                || self
                    .finish
                    .as_ref()
                    .is_some_and(|f| f.load(Ordering::Relaxed));
            let caught_up = stopping || self.read_and_send()?;
            self.serve(Duration::ZERO, finishing)?;
            self.publish(false)?;
            if self.failed.is_some() {
                self.restart(finishing)?;
                continue;
            }
            if caught_up && (finishing || !self.config.follow) {
                while !self.pending.is_empty() && self.failed.is_none() {
                    self.serve(Duration::from_millis(20), true)?;
                }
                if self.failed.is_some() {
                    self.restart(finishing)?;
                    continue;
                }
                break;
            }
            if caught_up {
                self.serve(self.config.poll_interval, false)?;
            } else if self.pending.len() >= self.config.max_in_flight {
                self.serve(Duration::from_millis(5), false)?;
            }
        }
        self.commit()?;
        self.publish(true)?;
        Ok(ShipSummary {
            stats: self.stats.clone(),
            position: self.stored.clone(),
            position_file: self.position_file.clone(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Read whole records and send them, until none is left or the
    /// in-flight limit is reached; `true` when caught up (nothing whole
    /// left to read in the newest file).
    fn read_and_send(&mut self) -> Result<bool, ShipError> {
        let mut listing = spool::list(&self.config.log)?;
        let mut races = 0;
        while self.reader.is_none() {
            match self.open_first(&listing)? {
                Open::Opened => {}
                Open::NoFile => return Ok(true),
                Open::Raced => {
                    races += 1;
                    if races > 100 {
                        return Ok(false);
                    }
                    listing = spool::list(&self.config.log)?;
                }
            }
        }
        let mut read = 0usize;
        loop {
            if self.pending.len() >= self.config.max_in_flight || self.failed.is_some() {
                return Ok(false);
            }
            read += 1;
            if read % 1024 == 0 {
                // Serve delivery reports during a long run of records.
                self.serve(Duration::ZERO, false)?;
                continue;
            }
            let Some((source, reader)) = &mut self.reader else {
                return Ok(true);
            };
            let source = source.clone();
            let seq = self.first_seq + self.pending.len();
            let sent = match reader.next_item()? {
                None => match self.next_file(&listing)? {
                    Open::Opened => continue,
                    Open::NoFile => return Ok(true),
                    Open::Raced => {
                        // Renamed since the listing (the log rotated
                        // again): look again.
                        listing = spool::list(&self.config.log)?;
                        continue;
                    }
                },
                Some(Item::Damage { what, after }) => Err((what, after)),
                Some(Item::Record { bytes, line, after }) => {
                    match send(&self.producer, &self.config, seq, bytes) {
                        Ok(()) => Ok(after),
                        Err(SendError::Corrupt(why)) => Err((
                            format!("{}:{line}: {why}, skipped", reader.path().display()),
                            after,
                        )),
                        Err(SendError::Kafka(e)) => {
                            // Read again from the acknowledged prefix by
                            // the restart.
                            self.failed = Some(e);
                            return Ok(false);
                        }
                    }
                }
            };
            if source.id.get().is_none() {
                // A record was read from the file, so its first one is
                // whole: the file has its identity now, before the record
                // can be acknowledged and the position moved after it.
                if let Some((_, reader)) = &mut self.reader {
                    if let Some(id) = reader.id()? {
                        let _ = source.id.set(id);
                    }
                }
            }
            match sent {
                Ok(after) => {
                    if self.pending.is_empty() && self.restarts_in_a_row == 0 {
                        // Idle until now: the wait for an acknowledgement
                        // starts here (after a failure it goes on).
                        self.last_progress = Instant::now();
                    }
                    self.stats.sent += 1;
                    self.pending.push_back(Pending {
                        done: false,
                        record: true,
                        source,
                        after,
                    });
                }
                Err((what, after)) => {
                    self.stats.corrupt += 1;
                    (self.report)(&what);
                    self.pending.push_back(Pending {
                        done: true,
                        record: false,
                        source,
                        after,
                    });
                }
            }
        }
    }

    /// Open the file reading starts in: the position's, or the oldest.
    fn open_first(&mut self, listing: &[Listed]) -> Result<Open, ShipError> {
        if let Some(resume) = self.resume.clone() {
            for listed in listing {
                if listed.dev != resume.file.dev || listed.ino != resume.file.ino {
                    continue;
                }
                let Some(mut probe) = open_if_same(listed, Place::default())? else {
                    return Ok(Open::Raced);
                };
                if probe.id()? == Some(resume.file) {
                    let file = probe.file()?;
                    let reader = FileReader::from_file(file, &listed.path, resume.place)?;
                    self.resume = None;
                    self.set_reader(reader)?;
                    return Ok(Open::Opened);
                }
            }
            self.resume = None;
            self.stats.files_gone += 1;
            (self.report)(&format!(
                "the position's file ({}, inode {}) is gone: records after byte {} of it are lost unless they had been shipped; shipping from the oldest file of the log",
                resume.name.display(),
                resume.file.ino,
                resume.place.offset
            ));
        }
        let Some(oldest) = listing.first() else {
            return Ok(Open::NoFile);
        };
        match open_if_same(oldest, Place::default())? {
            Some(reader) => {
                self.set_reader(reader)?;
                Ok(Open::Opened)
            }
            None => Ok(Open::Raced),
        }
    }

    fn set_reader(&mut self, mut reader: FileReader) -> Result<(), ShipError> {
        let id = OnceLock::new();
        if let Some(known) = reader.id()? {
            let _ = id.set(known);
        }
        let source = Arc::new(Source {
            id,
            name: reader.path().to_path_buf(),
            file: reader.file()?,
        });
        self.stats.files += 1;
        self.reader = Some((source, reader));
        Ok(())
    }

    /// The current file has nothing whole left: move to the next one if
    /// the log had moved past it when `listing` was taken (before the
    /// file was read to its end): it was no longer the newest file, or it
    /// was gone. [`Open::NoFile`] when it is the newest (caught up).
    fn next_file(&mut self, listing: &[Listed]) -> Result<Open, ShipError> {
        let Some((source, reader)) = &mut self.reader else {
            return Ok(Open::NoFile);
        };
        let next = match listing.iter().position(|l| reader.is(l)) {
            Some(i) if i + 1 == listing.len() => return Ok(Open::NoFile),
            Some(i) => &listing[i + 1],
            // Deleted by the log (rotation that keeps no files, or
            // retention): every listed file is newer.
            None => match listing.first() {
                Some(l) => l,
                None => return Ok(Open::NoFile),
            },
        };
        let tail = reader.tail_bytes()?;
        let name = source.name.clone();
        let Some(next) = open_if_same(next, Place::default())? else {
            return Ok(Open::Raced);
        };
        if tail > 0 {
            // Nothing more comes to a file the log has moved past.
            self.stats.partial_tails += 1;
            (self.report)(&format!(
                "{}: {tail} bytes after its last whole record, not shipped (a crash while writing?)",
                name.display()
            ));
        }
        self.set_reader(next)?;
        Ok(Open::Opened)
    }

    /// Poll the producer for up to `wait`, apply delivery reports, store
    /// the position when due, and watch for a stall (an error when
    /// `finishing` or not following).
    fn serve(&mut self, wait: Duration, finishing: bool) -> Result<(), ShipError> {
        self.producer.poll(wait);
        self.apply_reports(true);
        if self.last_commit.elapsed() >= self.config.commit_interval {
            self.commit()?;
        }
        self.watch(finishing || !self.config.follow)
    }

    /// Apply the delivery reports received; failures count (and make a
    /// restart) when `count_failures`.
    fn apply_reports(&mut self, count_failures: bool) {
        let context = self.producer.context().clone();
        let delivered = match context.delivered.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => Vec::new(),
        };
        for (seq, error) in delivered {
            let Some(p) = seq
                .checked_sub(self.first_seq)
                .and_then(|i| self.pending.get_mut(i))
            else {
                continue;
            };
            match error {
                None => p.done = true,
                Some(e) if count_failures => {
                    self.stats.delivery_errors += 1;
                    self.failed.get_or_insert(e);
                }
                Some(_) => {}
            }
        }
        self.stats.broker_errors =
            self.broker_errors_before + context.broker_errors.load(Ordering::Relaxed);
        if count_failures && self.failed.is_none() && context.fatal.load(Ordering::Relaxed) {
            self.failed = Some(
                self.last_error()
                    .unwrap_or_else(|| "fatal producer error".into()),
            );
        }
        self.advance();
    }

    /// Move the acknowledged prefix forward.
    fn advance(&mut self) {
        let mut moved = false;
        while let Some(p) = self.pending.front() {
            if !p.done {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.first_seq += 1;
            if p.record {
                self.stats.shipped += 1;
                self.shipped_total += 1;
                moved = true;
            }
            if let Some(id) = p.source.id.get() {
                self.acked = Some(Position::new(
                    *id,
                    p.source.name.clone(),
                    p.after,
                    self.shipped_total,
                ));
            }
        }
        if moved {
            self.last_progress = Instant::now();
            self.restarts_in_a_row = 0;
        }
    }

    fn last_error(&self) -> Option<String> {
        let context = self.producer.context();
        context.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Report a wait every `report_interval`; give up (when `deadline`)
    /// after `stall_timeout` without an acknowledgement.
    fn watch(&mut self, deadline: bool) -> Result<(), ShipError> {
        let waited = self.last_progress.elapsed();
        if self.pending.is_empty() {
            return Ok(());
        }
        let waiting = self.pending.iter().filter(|p| !p.done).count();
        if deadline && waited >= self.config.stall_timeout {
            self.commit()?;
            return Err(ShipError::Stalled {
                waited_s: waited.as_secs(),
                waiting,
                shipped: self.stats.shipped,
                brokers: self.config.brokers.clone(),
                last_error: self.last_error().unwrap_or_else(|| "none reported".into()),
                position_file: self.position_file.clone(),
            });
        }
        if waited >= self.config.report_interval
            && self.last_report.elapsed() >= self.config.report_interval
        {
            self.last_report = Instant::now();
            let line = format!(
                "waiting for {}: {waiting} records unacknowledged for {} s ({} shipped, {} broker errors, last: {})",
                self.config.brokers,
                waited.as_secs(),
                self.stats.shipped,
                self.stats.broker_errors,
                self.last_error().unwrap_or_else(|| "none".into())
            );
            (self.report)(&line);
        }
        Ok(())
    }

    /// Tell the progress callback what is left to ship: when `now`, or
    /// once `PROGRESS_INTERVAL` has passed since the last time.
    fn publish(&mut self, now: bool) -> Result<(), ShipError> {
        if self.progress.is_none()
            || !now
                && self
                    .last_published
                    .is_some_and(|t| t.elapsed() < PROGRESS_INTERVAL)
        {
            return Ok(());
        }
        self.last_published = Some(Instant::now());
        let listing = spool::list(&self.config.log)?;
        let at = |p: &Option<Position>| {
            let p = p.as_ref()?;
            let i = listing
                .iter()
                .position(|l| l.dev == p.file.dev && l.ino == p.file.ino)?;
            Some((i, p.place.offset))
        };
        let needed = at(&self.stored).map_or(0, |(i, _)| i);
        let (from, offset) = at(&self.acked).unwrap_or((needed, 0));
        let size = |l: &Listed| std::fs::metadata(&l.path).map_or(0, |m| m.len());
        let unshipped_bytes = listing
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(size)
            .sum::<u64>()
            .saturating_sub(offset);
        let progress = Progress {
            oldest_needed: listing.get(needed).map(|l| (l.dev, l.ino)),
            unshipped_bytes,
            stats: self.stats.clone(),
        };
        if let Some(f) = self.progress.as_mut() {
            f(&progress);
        }
        Ok(())
    }

    /// Store the acknowledged position if it moved.
    fn commit(&mut self) -> Result<(), ShipError> {
        self.last_commit = Instant::now();
        if self.acked == self.stored {
            return Ok(());
        }
        if let Some(p) = &self.acked {
            position::store(&self.position_file, p)?;
            self.stats.commits += 1;
            self.stored = Some(p.clone());
        }
        Ok(())
    }

    /// After a delivery failure: take the reports of everything sent,
    /// store the acknowledged prefix, make a new producer, and read again
    /// from the first record not acknowledged.
    fn restart(&mut self, finishing: bool) -> Result<(), ShipError> {
        let why = self.failed.take().unwrap_or_default();
        self.producer
            .purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(20));
        }
        self.producer.poll(Duration::ZERO);
        // What was acknowledged before the purge counts; the purged
        // records' failures do not.
        self.apply_reports(false);
        self.commit()?;
        let again = self.pending.iter().filter(|p| p.record && !p.done).count() as u64;
        let resent = self.pending.iter().filter(|p| p.record).count() as u64;
        self.stats.resent += resent;
        self.stats.restarts += 1;
        self.restarts_in_a_row += 1;
        (self.report)(&format!(
            "delivery failed ({why}): a new producer sends again from the first record not acknowledged ({resent} records, {again} of them unacknowledged)"
        ));
        self.broker_errors_before = self.stats.broker_errors;
        self.producer = make_producer(&self.config)?;
        // Reports of the old producer name numbers below this.
        self.first_seq += self.pending.len();
        let first = self.pending.front().map(|p| p.source.clone());
        self.pending.clear();
        let source = first.or_else(|| self.reader.as_ref().map(|(s, _)| s.clone()));
        if let Some(source) = source {
            // Within the file of the first record not acknowledged: at the
            // acknowledged place if that is in it, else from its start
            // (every record before it in the file was acknowledged).
            let place = match (&self.acked, source.id.get()) {
                (Some(p), Some(id)) if p.file == *id => p.place,
                _ => Place::default(),
            };
            let file = source
                .file
                .try_clone()
                .map_err(|e| ShipError::io(&source.name, e))?;
            let reader = FileReader::from_file(file, &source.name, place)?;
            self.reader = Some((source, reader));
        }
        // Back off: 100 ms, doubling while restarts bring nothing, to 5 s.
        let backoff =
            Duration::from_millis(100 << self.restarts_in_a_row.min(6)).min(Duration::from_secs(5));
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            self.serve(Duration::from_millis(20), finishing)?;
        }
        Ok(())
    }
}

/// Whether a file could be opened.
enum Open {
    /// It is the reader now.
    Opened,
    /// There is none (yet): the log has no file, or the current one is
    /// the newest.
    NoFile,
    /// The listed file was renamed or deleted since the listing: list
    /// again.
    Raced,
}

/// Open a listed file at `place`, if its path still names that file.
fn open_if_same(listed: &Listed, place: Place) -> Result<Option<FileReader>, ShipError> {
    let file = match std::fs::File::open(&listed.path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ShipError::io(&listed.path, e)),
    };
    let same = {
        use std::os::unix::fs::MetadataExt;
        let meta = file
            .metadata()
            .map_err(|e| ShipError::io(&listed.path, e))?;
        meta.dev() == listed.dev && meta.ino() == listed.ino
    };
    if !same {
        return Ok(None);
    }
    FileReader::from_file(file, &listed.path, place).map(Some)
}

enum SendError {
    /// Not a record: skipped.
    Corrupt(String),
    /// The producer refused it.
    Kafka(String),
}

/// Hand one record to the producer (waiting while its queue is full, at
/// most the delivery timeout: records leave it by then, delivered or
/// failed).
fn send(
    producer: &BaseProducer<Reports>,
    config: &ShipConfig,
    seq: usize,
    bytes: &[u8],
) -> Result<(), SendError> {
    let meta = RecordMeta::parse(bytes).map_err(SendError::Corrupt)?;
    let topic = match (&config.outcomes_topic, meta.is_outcome()) {
        (Some(t), true) => t.as_str(),
        _ => config.topic.as_str(),
    };
    let v = meta.v.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(4).insert(Header {
        key: "v",
        value: Some(v.as_str()),
    });
    for (key, value) in [
        ("kind", meta.kind.as_deref()),
        ("decision_id", meta.decision_id.as_deref()),
        (
            "ruleset_hash",
            meta.ruleset.as_ref().and_then(|r| r.hash.as_deref()),
        ),
    ] {
        if let Some(value) = value {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
    }
    let mut record = BaseRecord::<str, [u8], usize>::with_opaque_to(topic, seq)
        .payload(bytes)
        .headers(headers);
    if let Some(key) = meta.customer_id.as_deref() {
        record = record.key(key);
    }
    let give_up = Instant::now() + config.delivery_timeout + Duration::from_secs(5);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if Instant::now() < give_up =>
            {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(SendError::Kafka(e.to_string())),
        }
    }
}

fn make_producer(config: &ShipConfig) -> Result<BaseProducer<Reports>, ShipError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            config
                .delivery_timeout
                .as_millis()
                .clamp(1, i32::MAX as u128)
                .to_string(),
        )
        // One request in flight per broker: a partition's batches reach
        // the broker strictly in order, even on a broker that does not
        // check the idempotent producer's sequence numbers (one that does
        // would refuse a batch sent past a failed one; one that does not
        // would store it first, and the failed one after it).
        .set("max.in.flight.requests.per.connection", "1")
        .set("linger.ms", "5")
        .set(
            "queue.buffering.max.messages",
            (config.max_in_flight as u64 + 1)
                .min(10_000_000)
                .to_string(),
        )
        .set("client.id", "nextbest-ship");
    for (k, v) in &config.kafka {
        client.set(k, v);
    }
    client.create_with_context(Reports::default()).map_err(|e| {
        ShipError::Kafka(format!(
            "cannot make a producer for {}: {e}",
            config.brokers
        ))
    })
}
