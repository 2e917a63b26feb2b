//! # nextbest-arrow
//!
//! Decide for a whole table at once: the Python package's
//! `Engine.decide_batch` and the CLI's `nextbest decide --batch` both run
//! [`decide_batches`].
//!
//! What it guarantees:
//! - **No per-row lookups.** Each input column is matched to its schema
//!   slot once per table; each chunk's columns are cast once to one
//!   canonical Arrow type per attribute type; a row is then bound by
//!   reading arrays at its index (through
//!   [`ContextBuilder::set_slot`](nextbest::ContextBuilder::set_slot)).
//! - **All cores, bounded memory.** Input batches are cut into chunks of
//!   [`BatchOptions::chunk_rows`] rows, decided by
//!   [`BatchOptions::threads`] workers; at most two chunks per worker are
//!   in flight (queued, being decided, or decided and waiting for their
//!   turn), so the working memory is a few chunks, whatever the table's
//!   size. The input is read one batch at a time.
//! - **Input order.** Output batches reach the sink in input order: one
//!   per chunk, one row per chosen action ([`output_schema`]), customers
//!   in input order, actions by rank.
//! - **The same decisions.** Each row is decided by [`Engine::decide`]
//!   exactly as a JSON request with the same context, channel, limit and
//!   time would be (`tests/batch.rs` checks it against
//!   `Engine::decide_json`; the Python tests against `nextbest decide`).
//! - **Errors stop the run.** The first row that cannot be bound or
//!   decided stops it with an error naming the row, the customer and the
//!   attribute; a panic in a worker is caught and returned as an error.
//!
//! Columns the schema does not declare are ignored, and nulls are missing
//! attributes, as unknown keys and `null` are in a JSON context.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver};
use std::sync::Mutex;

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::ArrowError;
use nextbest::{DecisionRequest, Engine, Timestamp};

mod bind;
mod out;

use bind::Binder;
pub use out::output_schema;

/// What to decide, and how to split the work.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// The channel every row is decided for.
    pub channel: String,
    /// The column holding customer ids (strings or integers).
    pub customer_id: String,
    /// Actions per customer (default: the channel's limit, then the rule
    /// set's `default_limit`).
    pub limit: Option<usize>,
    /// The decision time (default: the time each row is decided).
    pub now: Option<Timestamp>,
    /// Rows per chunk (the unit of work and of output).
    pub chunk_rows: usize,
    /// Deciding threads (default: every core).
    pub threads: usize,
}

impl BatchOptions {
    /// Options for `channel`, with the customer ids in column
    /// `customer_id`, chunks of 4,096 rows and a thread per core.
    pub fn new(channel: impl Into<String>) -> BatchOptions {
        BatchOptions {
            channel: channel.into(),
            customer_id: "customer_id".into(),
            limit: None,
            now: None,
            chunk_rows: 4096,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Why a batch run stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum BatchError {
    /// The engine refused the run before any row was decided (an unknown
    /// channel, a limit out of range).
    Engine(nextbest::Error),
    /// An input column is missing, has a type its attribute cannot take,
    /// or could not be converted.
    Column {
        /// The column's name.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// A row could not be bound or decided.
    Row {
        /// 0-based row number in the input.
        row: usize,
        /// The row's customer id, if it has one.
        customer_id: Option<String>,
        /// The engine's error.
        error: nextbest::Error,
    },
    /// Reading the input failed.
    Input(ArrowError),
    /// Handing an output batch on failed.
    Output(String),
    /// A worker panicked (a bug): its message.
    Panic(String),
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Engine(e) => write!(f, "{e}"),
            BatchError::Column { column, message } => write!(f, "column `{column}`: {message}"),
            BatchError::Row {
                row,
                customer_id: Some(c),
                error,
            } => write!(f, "row {row} (customer {c}): {error}"),
            BatchError::Row { row, error, .. } => write!(f, "row {row}: {error}"),
            BatchError::Input(e) => write!(f, "reading the input: {e}"),
            BatchError::Output(m) => write!(f, "writing the output: {m}"),
            BatchError::Panic(m) => write!(f, "internal error (a panic, caught): {m}"),
        }
    }
}

impl std::error::Error for BatchError {}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Rows decided.
    pub rows: usize,
    /// Output rows (chosen actions).
    pub actions: usize,
    /// Rows that got no action.
    pub without_action: usize,
}

/// One chunk's work.
struct Job {
    seq: usize,
    /// The chunk's first row in the input.
    first_row: usize,
    batch: RecordBatch,
}

/// One chunk's result.
struct Done {
    seq: usize,
    result: Result<(RecordBatch, BatchSummary), BatchError>,
}

/// Decide every row of `input` for `opts.channel` on `engine`, in chunks
/// on `opts.threads` threads, and hand the output to `sink` in input
/// order, one record batch of [`output_schema`] per chunk.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{ArrayRef, Int64Array, RecordBatch, RecordBatchIterator, StringArray};
/// use nextbest_arrow::{decide_batches, BatchOptions};
///
/// let engine = nextbest::Engine::from_dir("../../tests/fixtures/mini")?;
/// let table = RecordBatch::try_from_iter([
///     ("customer_id", Arc::new(StringArray::from(vec!["C1", "C2"])) as ArrayRef),
///     ("age", Arc::new(Int64Array::from(vec![35, 17])) as ArrayRef),
/// ])?;
/// let schema = table.schema();
/// let input = RecordBatchIterator::new([Ok(table)], schema);
/// let mut rows = 0;
/// let summary = decide_batches(&engine, input, &BatchOptions::new("call_center"), |b| {
///     rows += b.num_rows();
///     Ok(())
/// })?;
/// assert_eq!((summary.rows, summary.actions), (2, rows));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decide_batches<R, S>(
    engine: &Engine,
    input: R,
    opts: &BatchOptions,
    mut sink: S,
) -> Result<BatchSummary, BatchError>
where
    R: RecordBatchReader,
    S: FnMut(RecordBatch) -> Result<(), BatchError>,
{
    check(engine, opts)?;
    let binder = Binder::new(engine.schema(), &input.schema(), &opts.customer_id)?;
    let threads = opts.threads.max(1);
    let chunk_rows = opts.chunk_rows.max(1);
    let in_flight_max = 2 * threads;
    let (job_tx, job_rx) = sync_channel::<Job>(threads);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = channel::<Done>();
    let stop = AtomicBool::new(false);

    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (job_rx, done_tx, binder, stop) = (&job_rx, done_tx.clone(), &binder, &stop);
            scope.spawn(move || worker(engine, binder, opts, job_rx, done_tx, stop));
        }
        drop(done_tx);
        let mut order = Reorder::default();
        let mut seq = 0;
        let mut row = 0;
        let result = (|| {
            for batch in input {
                let batch = batch.map_err(BatchError::Input)?;
                let mut offset = 0;
                while offset < batch.num_rows() {
                    let len = chunk_rows.min(batch.num_rows() - offset);
                    while seq - order.emitted >= in_flight_max {
                        order.receive(&done_rx, &mut sink)?;
                    }
                    let job = Job {
                        seq,
                        first_row: row,
                        batch: batch.slice(offset, len),
                    };
                    if job_tx.send(job).is_err() {
                        break; // every worker has gone: receive says why
                    }
                    seq += 1;
                    row += len;
                    offset += len;
                }
            }
            Ok(())
        })();
        drop(job_tx);
        let result = result.and_then(|()| {
            while order.emitted < seq {
                order.receive(&done_rx, &mut sink)?;
            }
            Ok(order.summary)
        });
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        result
    })
}

/// Refuse what would fail on every row, before deciding any.
fn check(engine: &Engine, opts: &BatchOptions) -> Result<(), BatchError> {
    let live = engine.current();
    if !live.rules().channel_names().any(|c| c == opts.channel) {
        let known: Vec<&str> = live.rules().channel_names().collect();
        return Err(BatchError::Engine(nextbest::Error::UnknownChannel {
            channel: opts.channel.clone(),
            known: known.join(", "),
        }));
    }
    if let Some(n) = opts.limit {
        if n == 0 || n > nextbest::MAX_LIMIT {
            return Err(BatchError::Engine(nextbest::Error::InvalidRequest(
                format!(
                    "limit must be between 1 and {}, got {n}",
                    nextbest::MAX_LIMIT
                ),
            )));
        }
    }
    Ok(())
}

/// Decided chunks waiting for their turn, and what has been emitted.
#[derive(Default)]
struct Reorder {
    waiting: BTreeMap<usize, RecordBatch>,
    emitted: usize,
    summary: BatchSummary,
}

impl Reorder {
    /// Wait for one chunk; emit every chunk whose turn has come.
    fn receive<S>(&mut self, done: &Receiver<Done>, sink: &mut S) -> Result<(), BatchError>
    where
        S: FnMut(RecordBatch) -> Result<(), BatchError>,
    {
        let Ok(d) = done.recv() else {
            return Err(BatchError::Panic(
                "the deciding threads stopped before finishing".into(),
            ));
        };
        let (batch, s) = d.result?;
        self.summary.rows += s.rows;
        self.summary.actions += s.actions;
        self.summary.without_action += s.without_action;
        self.waiting.insert(d.seq, batch);
        while let Some(batch) = self.waiting.remove(&self.emitted) {
            self.emitted += 1;
            sink(batch)?;
        }
        Ok(())
    }
}

fn worker(
    engine: &Engine,
    binder: &Binder,
    opts: &BatchOptions,
    jobs: &Mutex<Receiver<Job>>,
    done: std::sync::mpsc::Sender<Done>,
    stop: &AtomicBool,
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return; // no more work
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let result = catch_unwind(AssertUnwindSafe(|| {
            decide_chunk(engine, binder, opts, &job)
        }))
        .unwrap_or_else(|p| Err(BatchError::Panic(panic_message(&*p))));
        if done
            .send(Done {
                seq: job.seq,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

/// The message of a caught panic.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

fn decide_chunk(
    engine: &Engine,
    binder: &Binder,
    opts: &BatchOptions,
    job: &Job,
) -> Result<(RecordBatch, BatchSummary), BatchError> {
    let chunk = binder.chunk(&job.batch)?;
    let mut out = out::Output::with_capacity(chunk.len() * opts.limit.unwrap_or(3));
    let mut summary = BatchSummary::default();
    let mut items = Vec::new();
    for i in 0..chunk.len() {
        let row = job.first_row + i;
        let fail = |customer: Option<&str>, error| BatchError::Row {
            row,
            customer_id: customer.map(str::to_string),
            error,
        };
        let Some(customer) = chunk.customer(i) else {
            return Err(fail(
                None,
                nextbest::Error::InvalidRequest(format!(
                    "the customer id (column `{}`) is null",
                    opts.customer_id
                )),
            ));
        };
        let context = chunk
            .context(i, &mut items)
            .map_err(|e| fail(Some(customer), e))?;
        let mut request = DecisionRequest::new(customer, opts.channel.as_str(), context);
        request.limit = opts.limit;
        request.now = opts.now;
        let d = engine
            .decide(&request)
            .map_err(|e| fail(Some(customer), e))?;
        summary.rows += 1;
        summary.actions += d.actions().len();
        if d.actions().len() == 0 {
            summary.without_action += 1;
        }
        out.push(customer, &d);
    }
    let batch = out
        .finish()
        .map_err(|e| BatchError::Output(e.to_string()))?;
    Ok((batch, summary))
}
