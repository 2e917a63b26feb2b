//! `nextbest ship`: forward a decision log's files to Kafka, at least
//! once, from the position stored by the last run (docs/SHIPPING.md).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::error::CliError;

/// The arguments of `nextbest ship`.
#[derive(clap::Args)]
pub struct ShipArgs {
    /// The log: its file path (the engine's `decision_log.path`; its
    /// rotated files PATH.1, PATH.2, ... are shipped first), or a
    /// directory holding the files of one log.
    log: PathBuf,
    /// Kafka bootstrap servers, host:port[,host:port...].
    #[arg(long = "kafka", value_name = "BROKERS")]
    brokers: String,
    /// The topic of decision records (and of outcomes, unless
    /// --outcomes-topic is given).
    #[arg(long)]
    topic: String,
    /// A topic of its own for outcome records.
    #[arg(long)]
    outcomes_topic: Option<String>,
    /// The position file (default: .NAME.ship-position beside the log).
    #[arg(long, value_name = "FILE")]
    position: Option<PathBuf>,
    /// Keep shipping what the log appends, and the files it rotates to,
    /// until SIGINT or SIGTERM (then what was sent is waited for, at most
    /// --timeout, the position stored and the summary printed) or a kill
    /// (the position is stored every second).
    #[arg(long)]
    follow: bool,
    /// Give up (exit 1) when records wait and the broker acknowledged
    /// none for this many seconds (without --follow; with it, the wait is
    /// reported every 10 s and never ends by itself).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    timeout: u64,
    /// A record the broker has not acknowledged after this many seconds
    /// fails, and is sent again with every record after it.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    delivery_timeout: u64,
    /// More librdkafka producer properties, KEY=VALUE (repeatable), e.g.
    /// security.protocol=ssl.
    #[arg(short = 'X', long = "kafka-property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[cfg(not(feature = "kafka"))]
pub fn run(_args: ShipArgs) -> Result<ExitCode, CliError> {
    Err(CliError::refused(
        "this nextbest was built without Kafka: build it with the `kafka` feature (cargo install --path crates/nextbest-cli --features kafka)",
    ))
}

#[cfg(feature = "kafka")]
pub fn run(args: ShipArgs) -> Result<ExitCode, CliError> {
    use nextbest_ship::{ShipConfig, Shipper};
    use std::time::Duration;

    let mut config = ShipConfig::new(&args.log, &args.brokers, &args.topic);
    config.outcomes_topic = args.outcomes_topic;
    config.position = args.position;
    config.follow = args.follow;
    config.stall_timeout = Duration::from_secs(args.timeout.max(1));
    config.delivery_timeout = Duration::from_secs(args.delivery_timeout.max(1));
    for p in &args.properties {
        let Some((k, v)) = p.split_once('=') else {
            return Err(CliError::refused(format!(
                "-X {p}: a Kafka property is KEY=VALUE"
            )));
        };
        config
            .kafka
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut shipper = Shipper::new(config).map_err(CliError::from)?;
    if args.follow {
        stop_on_signals();
    }
    let summary = shipper.run(&STOP).map_err(CliError::from)?;
    let s = &summary.stats;
    if args.json {
        let json =
            serde_json::to_string_pretty(&summary).map_err(|e| CliError::refused(e.to_string()))?;
        println!("{json}");
    } else {
        let secs = (summary.elapsed_ms as f64 / 1000.0).max(0.001);
        println!(
            "shipped {} records from {} files to {} in {secs:.1} s ({:.0} records/s)",
            s.shipped,
            s.files,
            args.topic,
            s.shipped as f64 / secs
        );
        match &summary.position {
            Some(p) => println!(
                "position: {} byte {} (line {}), {} records shipped in all; stored in {}",
                p.name.display(),
                p.place.offset,
                p.place.line,
                p.shipped,
                summary.position_file.display()
            ),
            None => println!("position: nothing shipped yet"),
        }
        if s.resent + s.restarts + s.delivery_errors + s.broker_errors > 0 {
            println!(
                "delivery: {} failed and sent again ({} records resent, {} producer restarts), {} broker errors",
                s.delivery_errors, s.resent, s.restarts, s.broker_errors
            );
        }
    }
    if s.corrupt > 0 || s.partial_tails > 0 || s.files_gone > 0 {
        eprintln!(
            "error: {} damaged lines or frames skipped, {} files with a torn tail, {} position files gone (each reported above); the rest was shipped",
            s.corrupt, s.partial_tails, s.files_gone
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Set by SIGINT or SIGTERM: a following shipper stops reading, waits for
/// what it sent and stores its position.
#[cfg(feature = "kafka")]
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(feature = "kafka")]
extern "C" fn on_stop_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(feature = "kafka")]
fn stop_on_signals() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; `signal` itself has no other precondition.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}
