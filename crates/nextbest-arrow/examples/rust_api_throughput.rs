//! The engine's own throughput through the Rust API, the yardstick of the
//! batch benchmark (`crates/nextbest-py/bench/decide_batch.py` runs both):
//! a population's requests are parsed and bound once, before timing; then
//! `threads` threads decide them round-robin until `rows` decisions are
//! made, with `Engine::decide`.
//!
//! ```sh
//! cargo run --release -p nextbest-arrow --example rust_api_throughput -- \
//!     rules/retail_bank rules/retail_bank/customers.jsonl call_center 1000000 2
//! ```
//! Prints one JSON line: rows, threads, seconds, decisions_per_s, actions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use nextbest::{DecisionRequest, Engine};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, customers, channel, rows, threads] = &args[..] else {
        return Err("usage: rust_api_throughput DIR CUSTOMERS.jsonl CHANNEL ROWS THREADS".into());
    };
    let rows: usize = rows.parse()?;
    let threads: usize = threads.parse()?;
    let engine = Engine::from_dir(dir)?;
    let schema = engine.schema();
    let mut requests = Vec::new();
    for line in std::fs::read_to_string(customers)?.lines() {
        let mut c: serde_json::Value = serde_json::from_str(line)?;
        c["channel"] = channel.as_str().into();
        c["now"] = "2026-11-23T10:00:00Z".into();
        requests.push(DecisionRequest::from_json(&schema, &c.to_string())?);
    }
    let next = AtomicUsize::new(0);
    let actions = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut mine = 0;
                // Claim 256 rows at a time, as the batch path claims chunks.
                loop {
                    let from = next.fetch_add(256, Ordering::Relaxed);
                    if from >= rows {
                        break;
                    }
                    for i in from..(from + 256).min(rows) {
                        let d = engine
                            .decide(&requests[i % requests.len()])
                            .expect("decides");
                        mine += d.actions().len();
                    }
                }
                actions.fetch_add(mine, Ordering::Relaxed);
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "rows": rows, "threads": threads, "seconds": secs,
            "decisions_per_s": rows as f64 / secs, "actions": actions.load(Ordering::Relaxed),
        })
    );
    Ok(())
}
