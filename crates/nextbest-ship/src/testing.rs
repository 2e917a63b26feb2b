//! Helpers for testing a shipper against librdkafka's mock cluster
//! (`rdkafka::mocking::MockCluster`: the real protocol, served in
//! process on a loopback port, to the real client): read a topic whole
//! with a real consumer, and check what arrived.
//!
//! No Kafka broker is needed, or used, by the tests of this project.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// One message as a consumer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
}

impl Consumed {
    /// The value of header `key`.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every message of `topic` on `brokers`: each of its partitions read
/// from its start to its high watermark as it was when the call began
/// (so every message acknowledged before the call is in the result),
/// within `timeout`. In partition order, then offset order.
pub fn read_topic(brokers: &str, topic: &str, timeout: Duration) -> Result<Vec<Consumed>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "nextbest-ship-test")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    let mut assignment = TopicPartitionList::new();
    // The offset each partition must be read up to.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .map_err(|e| format!("watermarks of {topic}/{}: {e}", p.id()))?;
            if low > 0 {
                // librdkafka's mock cluster keeps 5 MiB per partition and
                // drops the oldest messages past that.
                return Err(format!(
                    "{topic}/{}: messages before offset {low} were dropped by the broker's retention (the mock cluster keeps 5 MiB per partition): use more partitions or fewer records",
                    p.id()
                ));
            }
            ends.insert(p.id(), high);
            assignment
                .add_partition_offset(topic, p.id(), Offset::Beginning)
                .map_err(|e| e.to_string())?;
        }
    }
    if ends.is_empty() {
        return Err(format!("{topic}: no partitions"));
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut out = Vec::new();
    while ends
        .iter()
        .any(|(p, end)| next.get(p).copied().unwrap_or(0) < *end)
    {
        if start.elapsed() > timeout {
            return Err(format!(
                "{topic}: not read to its end within {timeout:?}: read {next:?}, ends {ends:?}"
            ));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                next.insert(m.partition(), m.offset() + 1);
                out.push(Consumed {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
            Some(Err(e)) => return Err(format!("consuming {topic}: {e}")),
            None => {}
        }
    }
    out.sort_by_key(|m| (m.partition, m.offset));
    Ok(out)
}

/// What a topic holds measured against the records that should be in it.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Records that never arrived.
    pub missing_total: usize,
    /// The first ten of them (their lines, cut).
    pub missing: Vec<String>,
    /// Messages that are no record of the log (bytes changed, or foreign).
    pub unknown: usize,
    /// Messages beyond the first of each record: what at-least-once allows.
    pub duplicates: usize,
    /// Customers whose records arrived out of the log's order (first
    /// arrivals, per partition), with the first pair out of order.
    pub out_of_order: Vec<String>,
    /// Messages whose key is not the record's customer.
    pub wrong_keys: usize,
}

/// Check `consumed` against `records` (the log's lines, in log order):
/// every record at least once with its bytes unchanged, keyed by its
/// customer, and each customer's records first arriving in log order.
pub fn check_delivery(records: &[Vec<u8>], consumed: &[Consumed]) -> Delivery {
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        index.entry(r.as_slice()).or_insert(i);
    }
    let mut seen = vec![false; records.len()];
    let mut d = Delivery::default();
    // Per customer, the log index of the last record seen first.
    let mut last_of: HashMap<Vec<u8>, usize> = HashMap::new();
    for m in consumed {
        let Some(&i) = index.get(m.value.as_slice()) else {
            d.unknown += 1;
            continue;
        };
        let customer = serde_json::from_slice::<serde_json::Value>(&records[i])
            .ok()
            .and_then(|v| v["customer_id"].as_str().map(|s| s.as_bytes().to_vec()));
        if m.key != customer {
            d.wrong_keys += 1;
        }
        if seen[i] {
            d.duplicates += 1;
            continue;
        }
        seen[i] = true;
        if let Some(c) = customer {
            if let Some(&prev) = last_of.get(&c) {
                if prev > i && d.out_of_order.len() < 10 {
                    d.out_of_order.push(format!(
                        "{}: record {i} arrived after record {prev}",
                        String::from_utf8_lossy(&c)
                    ));
                }
            }
            let e = last_of.entry(c).or_insert(i);
            *e = (*e).max(i);
        }
    }
    for (i, s) in seen.iter().enumerate() {
        if !s && d.missing.len() < 10 {
            d.missing.push(
                String::from_utf8_lossy(&records[i])
                    .chars()
                    .take(200)
                    .collect(),
            );
        }
    }
    d.missing_total = seen.iter().filter(|s| !**s).count();
    d
}
