//! `nextbest decide DIR --batch customers.parquet -o decisions.parquet
//! --channel CH`: the Python package's `decide_batch` without Python.
//!
//! The Parquet file is read a chunk at a time, decided on every core by
//! `nextbest_arrow::decide_batches` and written as it comes, so memory
//! stays bounded by a few chunks whatever the file's size. Input columns
//! are named like the schema's attributes (others are ignored), one row
//! per customer; the output has one row per chosen action (customer_id,
//! rank, action, group, issue, treatment, priority, propensity,
//! context_weight, value, lever).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use nextbest::{Engine, Error, Timestamp};
use nextbest_arrow::{decide_batches, output_schema, BatchError, BatchOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

/// What `decide --batch` was asked.
pub struct BatchArgs {
    pub input: PathBuf,
    pub output: PathBuf,
    pub channel: String,
    pub customer_id: String,
    pub limit: Option<usize>,
    pub now: Option<String>,
    pub threads: Option<usize>,
    pub chunk_rows: usize,
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Decide for every row of the Parquet file and write the decisions.
pub fn run_batch(dir: &Path, args: BatchArgs) -> Result<ExitCode, Error> {
    let engine = Engine::from_dir(dir)?;
    let mut opts = BatchOptions::new(args.channel);
    opts.customer_id = args.customer_id;
    opts.limit = args.limit;
    opts.chunk_rows = args.chunk_rows.max(1);
    if let Some(t) = args.threads {
        opts.threads = t.max(1);
    }
    if let Some(now) = &args.now {
        opts.now = Some(Timestamp::parse(now).map_err(Error::InvalidConfig)?);
    }
    let file = File::open(&args.input).map_err(|e| io(&args.input, e))?;
    let input = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(opts.chunk_rows).build())
        .map_err(|e| io(&args.input, e))?;
    let out = File::create(&args.output).map_err(|e| io(&args.output, e))?;
    // Row groups of at most 64 chunks' rows: the writer holds a row group's
    // encoded pages until it closes, so its size bounds the output's memory.
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(64 * opts.chunk_rows))
        .build();
    let mut writer =
        ArrowWriter::try_new(out, output_schema(), Some(props)).map_err(|e| io(&args.output, e))?;
    let started = Instant::now();
    let result = decide_batches(&engine, input, &opts, |batch| {
        writer
            .write(&batch)
            .map_err(|e| BatchError::Output(e.to_string()))
    })
    .and_then(|s| {
        writer
            .close()
            .map(|_| s)
            .map_err(|e| BatchError::Output(e.to_string()))
    });
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&args.output);
            eprintln!("error: {}: {e}", args.input.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "decided {} customers on {} ({} actions, {} customers without one) in {:.2} s \
         ({:.0} decisions/s on {} threads); wrote {}",
        summary.rows,
        opts.channel,
        summary.actions,
        summary.without_action,
        secs,
        summary.rows as f64 / secs.max(1e-9),
        opts.threads,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
