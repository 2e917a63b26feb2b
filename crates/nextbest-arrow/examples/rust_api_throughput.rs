//! The engine's own throughput through the Rust API, the yardstick of the
//! batch benchmark (`crates/nextbest-py/bench/decide_batch.py` runs both):
//! `threads` threads decide a population's customers round-robin until
//! `rows` decisions are made, with `Engine::decide`, two ways:
//!
//! - `prebound`: every customer's request is parsed and its context bound
//!   once, before timing; the timed loop only decides (the engine alone);
//! - `per_request`: the customers' attributes are parsed into typed
//!   `Value`s before timing; each decision builds its context with
//!   `Context::builder(..).set(name, value)` and then decides, as a Rust
//!   program holding its customers' records calls the engine.
//!
//! ```sh
//! cargo run --release -p nextbest-arrow --example rust_api_throughput -- \
//!     rules/retail_bank rules/retail_bank/customers.jsonl call_center 1000000 2
//! ```
//! Prints one JSON line per way: way, rows, threads, seconds,
//! decisions_per_s, actions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use nextbest::{AttrType, Context, DecisionRequest, Engine, Timestamp, Value};

const NOW: &str = "2026-11-23T10:00:00Z";

/// One customer: id and typed attributes.
type Record = (String, Vec<(String, Value)>);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, customers, channel, rows, threads] = &args[..] else {
        return Err("usage: rust_api_throughput DIR CUSTOMERS.jsonl CHANNEL ROWS THREADS".into());
    };
    let rows: usize = rows.parse()?;
    let threads: usize = threads.parse()?;
    let engine = Engine::from_dir(dir)?;
    let schema = engine.schema();
    let now = Timestamp::parse(NOW)?;
    let mut requests = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    for line in std::fs::read_to_string(customers)?.lines() {
        let mut c: serde_json::Value = serde_json::from_str(line)?;
        c["channel"] = channel.as_str().into();
        c["now"] = NOW.into();
        requests.push(DecisionRequest::from_json(&schema, &c.to_string())?);
        let mut values = Vec::new();
        for attr in schema.attributes() {
            if let Some(v) = typed(attr.ty(), &c["context"][attr.name()])? {
                values.push((attr.name().to_string(), v));
            }
        }
        let id = c["customer_id"].as_str().ok_or("a customer id")?;
        records.push((id.to_string(), values));
    }
    let prebound = run(rows, threads, |i| {
        let d = engine.decide(&requests[i % requests.len()])?;
        let actions = d.actions().len();
        Ok(actions)
    });
    report("prebound", rows, threads, prebound?);
    let per_request = run(rows, threads, |i| {
        let (id, values) = &records[i % records.len()];
        let mut b = Context::builder(&schema);
        for (name, v) in values {
            b = b.set(name, v.clone());
        }
        let request = DecisionRequest::new(id.as_str(), channel.as_str(), b.build()?).at(now);
        let d = engine.decide(&request)?;
        let actions = d.actions().len();
        Ok(actions)
    });
    report("per_request", rows, threads, per_request?);
    Ok(())
}

/// A JSON context value as the attribute's typed value (`None`: missing).
fn typed(ty: AttrType, v: &serde_json::Value) -> Result<Option<Value>, Box<dyn std::error::Error>> {
    if v.is_null() {
        return Ok(None);
    }
    let bad = || format!("{v} is not a {}", ty.name());
    Ok(Some(match ty {
        AttrType::Int => Value::Int(v.as_i64().ok_or_else(bad)?),
        AttrType::Float => Value::Float(v.as_f64().ok_or_else(bad)?),
        AttrType::Bool => Value::Bool(v.as_bool().ok_or_else(bad)?),
        AttrType::String => Value::String(v.as_str().ok_or_else(bad)?.to_string()),
        AttrType::StringSet => Value::StringSet(
            v.as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|s| s.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        ),
        AttrType::Timestamp => Value::Timestamp(Timestamp::parse(v.as_str().ok_or_else(bad)?)?),
        _ => return Err(bad().into()),
    }))
}

/// Make `rows` decisions, the `i`th by `decide(i)` (which returns the
/// actions chosen), on `threads` threads; returns the seconds and the
/// actions chosen.
fn run<F>(rows: usize, threads: usize, decide: F) -> Result<(f64, usize), nextbest::Error>
where
    F: Fn(usize) -> Result<usize, nextbest::Error> + Sync,
{
    let next = AtomicUsize::new(0);
    let actions = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<(), nextbest::Error> {
                    let mut mine = 0;
                    // Claim 256 rows at a time, as the batch path claims chunks.
                    loop {
                        let from = next.fetch_add(256, Ordering::Relaxed);
                        if from >= rows {
                            break;
                        }
                        for i in from..(from + 256).min(rows) {
                            mine += decide(i)?;
                        }
                    }
                    actions.fetch_add(mine, Ordering::Relaxed);
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })?;
    Ok((started.elapsed().as_secs_f64(), actions.into_inner()))
}

fn report(way: &str, rows: usize, threads: usize, (secs, actions): (f64, usize)) {
    println!(
        "{}",
        serde_json::json!({
            "way": way, "rows": rows, "threads": threads, "seconds": secs,
            "decisions_per_s": rows as f64 / secs, "actions": actions,
        })
    );
}
