//! Per-decision latency with the interaction history in Redis vs in
//! memory, on rules/retail_bank and its customers (one thread, history
//! read on every decision; no impressions recorded).
//!
//! ```text
//! redis-server --port 6390 --bind 127.0.0.1 --save '' --daemonize yes
//! cargo run --release --example fleet_latency -- redis://127.0.0.1:6390/0
//! ```

use std::sync::Arc;
use std::time::Instant;

use nextbest::state::fleet::StateConfig;
use nextbest::state::redis::RedisHistory;
use nextbest::Engine;

fn main() -> Result<(), nextbest::Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let lines: Vec<String> = std::fs::read_to_string("rules/retail_bank/customers.jsonl")
        .map_err(|e| nextbest::Error::Io {
            path: "rules/retail_bank/customers.jsonl".into(),
            source: e,
        })?
        .lines()
        .take(2_000)
        .map(str::to_string)
        .collect();
    let memory = Engine::from_dir("rules/retail_bank")?;
    let store = RedisHistory::connect(&StateConfig {
        key_prefix: "nb:bench:".into(),
        ..StateConfig::new(url)
    })?;
    let redis = Engine::from_dir("rules/retail_bank")?.with_history_store(Arc::new(store));
    for (name, engine) in [("memory", &memory), ("redis", &redis)] {
        // The contact policies and limits need the history: the outbound
        // channels read it on every decision.
        let requests: Vec<String> = lines
            .iter()
            .map(|l| l.replacen("\"mobile_app\"", "\"email\"", 1))
            .collect();
        for r in &requests[..200] {
            engine.decide_json(r)?;
        }
        let mut ns = Vec::with_capacity(requests.len() * 5);
        for _ in 0..5 {
            for r in &requests {
                let t = Instant::now();
                engine.decide_json(r)?;
                ns.push(t.elapsed().as_nanos() as u64);
            }
        }
        ns.sort_unstable();
        let q = |p: f64| ns[((ns.len() as f64 * p) as usize).min(ns.len() - 1)] as f64 / 1_000.0;
        let total: u64 = ns.iter().sum();
        println!(
            "{name:7} decisions {:6}  p50 {:7.1} µs  p99 {:7.1} µs  {:8.0} decisions/s (1 thread)",
            ns.len(),
            q(0.50),
            q(0.99),
            ns.len() as f64 / (total as f64 / 1e9)
        );
    }
    Ok(())
}
