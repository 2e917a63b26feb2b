//! What the Kafka shipper's tests share: real decision logs written by
//! the engine on rules/retail_bank, read back as bytes, and a mock
//! cluster.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use nextbest::audit::{Compression, LogConfig};
use nextbest::{Engine, EngineConfig, RuleSet};
use nextbest_ship::rdkafka::mocking::MockCluster;

pub const RULES: &str = "../../rules/retail_bank";
pub const CUSTOMERS: &str = "../../rules/retail_bank/customers.jsonl";

/// An engine logging to `log`, rotating every `max_bytes`.
pub fn engine(log: &Path, max_bytes: u64, zstd: bool) -> Engine {
    let mut lc = LogConfig::new(log);
    lc.max_bytes = max_bytes;
    lc.keep_files = 1000;
    if zstd {
        lc.compression = Compression::Zstd;
    }
    let mut config = EngineConfig::default();
    config.decision_log = Some(lc);
    Engine::try_with_config(RuleSet::from_dir(RULES).unwrap(), config).unwrap()
}

/// Decide for `n` requests (customers of the rule set, many customers
/// more than once), recording an outcome for every third, then flush.
pub fn decide(engine: &Engine, from: usize, n: usize) {
    let customers: Vec<String> = std::fs::read_to_string(CUSTOMERS)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    for i in from..from + n {
        // 300 customers, so each has several records to keep in order.
        let request = &customers[i % 300];
        let d = engine.decide_json(request).unwrap();
        if i % 3 == 0 {
            if let Some(action) = d.action_ids().first() {
                let customer: serde_json::Value = serde_json::from_str(request).unwrap();
                let outcome = serde_json::json!({
                    "decision_id": d.id().to_string(),
                    "customer_id": customer["customer_id"],
                    "action": action,
                    "channel": d.channel(),
                    "outcome": "accepted",
                });
                engine.record_outcome_json(&outcome.to_string()).unwrap();
            }
        }
    }
    engine.flush().unwrap();
}

/// The log's records, oldest first, as bytes (zstd decompressed).
pub fn log_records(log: &Path) -> Vec<Vec<u8>> {
    let files = nextbest::audit::reader::log_files(&[PathBuf::from(format!("{}*", log.display()))])
        .unwrap();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let text = if bytes.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
            zstd::decode_all(&bytes[..]).unwrap()
        } else {
            bytes
        };
        out.extend(
            text.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    out
}

pub fn cluster(
    topics: &[&str],
) -> MockCluster<'static, nextbest_ship::rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(3).unwrap();
    for t in topics {
        // 16 partitions: the mock cluster keeps 5 MiB of each.
        cluster.create_topic(t, 16, 3).unwrap();
    }
    cluster
}

/// An engine on rules/retail_bank with the decision log `lc`.
pub fn engine_with(lc: LogConfig) -> Result<Engine, nextbest::Error> {
    let mut config = EngineConfig::default();
    config.decision_log = Some(lc);
    Engine::try_with_config(RuleSet::from_dir(RULES).unwrap(), config)
}
