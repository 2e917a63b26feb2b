//! Ships a nextbest decision log off the machine: the log's local files
//! are the spool, and the shipper forwards their records to Kafka, at
//! least once, resuming after a restart from a durably stored position.
//!
//! What it guarantees, and what a consumer must do (deduplicate by
//! `decision_id`), is in docs/SHIPPING.md. In short:
//! - every whole record of the log's files (`PATH.N`, ..., `PATH.1`,
//!   `PATH`, oldest first; plain or zstd) is produced to the topic with
//!   an idempotent producer and `acks=all`: key = the record's
//!   `customer_id` (one customer's records stay in one partition, in
//!   order), value = the record's bytes unchanged, headers `v`, `kind`,
//!   `decision_id` and `ruleset_hash` (when the record has them);
//! - the position (file identity and byte offset) is stored (temporary
//!   file, fsync, rename) only past records the broker acknowledged,
//!   with every record before them, so a crash at any point loses
//!   nothing; records acknowledged after the last store are sent again;
//! - a broker that does not answer is waited for with a deadline and a
//!   report line, never silently.
//!
//! The spool and the position ([`spool`], [`position`]) build without
//! librdkafka; the producer ([`Shipper`]) needs the `kafka` feature (on
//! by default), which builds librdkafka from its bundled sources.
//!
//! ```no_run
//! # #[cfg(feature = "kafka")] {
//! use nextbest_ship::{ShipConfig, Shipper};
//! let config = ShipConfig::new("logs/decisions.jsonl", "kafka1:9092", "nextbest.decisions");
//! let summary = Shipper::new(config)?.run(&std::sync::atomic::AtomicBool::new(false))?;
//! println!("{} records shipped", summary.stats.shipped);
//! # }
//! # Ok::<(), nextbest_ship::ShipError>(())
//! ```

pub mod position;
pub mod record;
pub mod spool;

#[cfg(feature = "kafka")]
mod shipper;
#[cfg(feature = "kafka")]
pub mod testing;

#[cfg(feature = "kafka")]
pub use shipper::{Progress, ShipConfig, ShipStats, ShipSummary, Shipper};

/// rdkafka, as the shipper uses it (for tests against its mock cluster).
#[cfg(feature = "kafka")]
pub use rdkafka;

use std::path::{Path, PathBuf};

/// What can stop a shipper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShipError {
    /// A file of the log, or the position file, could not be read or
    /// written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The position file cannot be used (damaged, or it points past the
    /// end of its file).
    #[error("position: {0}")]
    Position(String),
    /// The configuration (or the log named) is not usable.
    #[error("{0}")]
    Config(String),
    /// The Kafka client could not be made.
    #[error("kafka: {0}")]
    Kafka(String),
    /// No acknowledgement came for the whole stall timeout while records
    /// waited: the broker is unreachable or refuses them.
    #[error(
        "gave up: no acknowledgement from {brokers} for {waited_s} s while {waiting} records waited (last broker error: {last_error}); {shipped} records shipped this run, position stored in {} (the records after it are sent again by the next run)",
        position_file.display()
    )]
    Stalled {
        /// Seconds waited.
        waited_s: u64,
        /// Records sent and not acknowledged.
        waiting: usize,
        /// Records acknowledged this run.
        shipped: u64,
        /// The bootstrap servers.
        brokers: String,
        /// The last error librdkafka reported.
        last_error: String,
        /// Where the position is.
        position_file: PathBuf,
    },
}

impl ShipError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> ShipError {
        ShipError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
