//! The shipper against librdkafka's mock cluster (the real Kafka protocol,
//! served in this process on loopback ports, to the real client; no
//! broker is installed or needed): real decision logs written by the
//! engine on rules/retail_bank, rotated, plain and zstd, read back by a
//! real consumer.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nextbest_ship::rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use nextbest_ship::testing::{check_delivery, read_topic};
use nextbest_ship::{ShipConfig, ShipError, Shipper};

mod support;
use support::{cluster, decide, engine, log_records};

fn config(log: &Path, brokers: &str, topic: &str) -> ShipConfig {
    let mut c = ShipConfig::new(log, brokers, topic);
    c.poll_interval = Duration::from_millis(20);
    c.stall_timeout = Duration::from_secs(60);
    c
}

/// Reports, kept for assertions.
fn reports() -> (Arc<Mutex<Vec<String>>>, impl FnMut(&str) + Send + 'static) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    (lines, move |line: &str| {
        eprintln!("ship: {line}");
        l.lock().unwrap().push(line.to_string())
    })
}

fn ship_all(log: &Path, brokers: &str) -> nextbest_ship::ShipSummary {
    let (_, report) = reports();
    Shipper::new(config(log, brokers, "decisions"))
        .unwrap()
        .with_reporter(report)
        .run(&AtomicBool::new(false))
        .unwrap()
}

fn every_record_once_in_order(zstd: bool) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir
        .path()
        .join(if zstd { "d.jsonl.zst" } else { "d.jsonl" });
    let engine = engine(&log, if zstd { 64 * 1024 } else { 1 << 20 }, zstd);
    decide(&engine, 0, 6000);
    drop(engine);
    let records = log_records(&log);
    let files = nextbest_ship::spool::list(&log).unwrap().len();
    assert!(files >= 4, "the log rotated: {files} files");
    let cluster = cluster(&["decisions"]);
    let brokers = cluster.bootstrap_servers();

    let started = Instant::now();
    let summary = ship_all(&log, &brokers);
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "shipped {} records ({} files, {}) in {secs:.2} s: {:.0} records/s",
        summary.stats.shipped,
        summary.stats.files,
        if zstd { "zstd" } else { "plain" },
        summary.stats.shipped as f64 / secs
    );
    assert_eq!(summary.stats.shipped, records.len() as u64);
    assert_eq!(summary.stats.files, files as u64);
    assert_eq!(summary.stats.corrupt, 0);

    let consumed = read_topic(&brokers, "decisions", Duration::from_secs(60)).unwrap();
    let d = check_delivery(&records, &consumed);
    assert_eq!(d.missing_total, 0, "missing: {:?}", d.missing);
    assert_eq!(d.unknown, 0, "every value is a record's bytes, unchanged");
    assert_eq!(d.duplicates, 0, "no fault, no duplicate");
    assert_eq!(d.wrong_keys, 0, "the key is the customer id");
    assert!(d.out_of_order.is_empty(), "{:?}", d.out_of_order);
    // Headers: format version, kind, decision id, rule version hash.
    for m in &consumed {
        let record: serde_json::Value = serde_json::from_slice(&m.value).unwrap();
        assert_eq!(m.header("v"), Some("1"));
        assert_eq!(m.header("kind"), record["kind"].as_str());
        assert_eq!(m.header("decision_id"), record["decision_id"].as_str());
        assert_eq!(m.header("ruleset_hash"), record["ruleset"]["hash"].as_str());
    }
    assert!(consumed.iter().any(|m| m.header("kind") == Some("outcome")));
    assert!(consumed.iter().any(|m| m.header("ruleset_hash").is_some()));

    // Caught up: a second run ships nothing again.
    let again = ship_all(&log, &brokers);
    assert_eq!(again.stats.shipped, 0);
    assert_eq!(again.position, summary.position);
}

#[test]
fn every_record_of_a_rotated_plain_log_arrives_once_in_order_per_customer() {
    every_record_once_in_order(false);
}

#[test]
fn every_record_of_a_rotated_zstd_log_arrives_once_in_order_per_customer() {
    every_record_once_in_order(true);
}

#[test]
fn outcomes_go_to_their_own_topic_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let engine = engine(&log, 1 << 20, false);
    decide(&engine, 0, 600);
    drop(engine);
    let records = log_records(&log);
    let outcomes: Vec<Vec<u8>> = records
        .iter()
        .filter(|r| serde_json::from_slice::<serde_json::Value>(r).unwrap()["kind"] == "outcome")
        .cloned()
        .collect();
    assert!(!outcomes.is_empty());
    let cluster = cluster(&["decisions", "outcomes"]);
    let brokers = cluster.bootstrap_servers();
    let mut c = config(&log, &brokers, "decisions");
    c.outcomes_topic = Some("outcomes".into());
    let summary = Shipper::new(c)
        .unwrap()
        .run(&AtomicBool::new(false))
        .unwrap();
    assert_eq!(summary.stats.shipped, records.len() as u64);
    let got = read_topic(&brokers, "outcomes", Duration::from_secs(30)).unwrap();
    let d = check_delivery(&outcomes, &got);
    assert_eq!((d.missing_total, d.unknown, d.duplicates), (0, 0, 0));
    let decisions = read_topic(&brokers, "decisions", Duration::from_secs(30)).unwrap();
    assert_eq!(decisions.len(), records.len() - outcomes.len());
    assert!(decisions
        .iter()
        .all(|m| m.header("kind") == Some("decision")));
}

#[test]
fn a_restart_resumes_at_the_position_across_rotations_without_repeating_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let cluster = cluster(&["decisions"]);
    let brokers = cluster.bootstrap_servers();
    let engine = engine(&log, 256 * 1024, false);
    decide(&engine, 0, 500);
    let first = ship_all(&log, &brokers);
    let n1 = log_records(&log).len() as u64;
    assert_eq!(first.stats.shipped, n1);
    // The log goes on and rotates several times while no shipper runs:
    // the file the position is in is now called d.jsonl.N.
    decide(&engine, 500, 1500);
    drop(engine);
    let records = log_records(&log);
    let second = ship_all(&log, &brokers);
    assert_eq!(second.stats.shipped, records.len() as u64 - n1);
    let consumed = read_topic(&brokers, "decisions", Duration::from_secs(30)).unwrap();
    let d = check_delivery(&records, &consumed);
    assert_eq!((d.missing_total, d.unknown, d.duplicates), (0, 0, 0));
    assert!(d.out_of_order.is_empty());
    let stored = nextbest_ship::position::load(&second.position_file)
        .unwrap()
        .unwrap();
    assert_eq!(stored.shipped, records.len() as u64);
}

#[test]
fn a_corrupt_line_is_reported_with_its_file_and_line_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let engine = engine(&log, 1 << 30, false);
    decide(&engine, 0, 50);
    drop(engine);
    // Damage line 11: not JSON any more (the line stays whole).
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[10] = "{\"v\":1,\"kind\":\"decision\" garbage".into();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let records = log_records(&log);
    let good: Vec<Vec<u8>> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 10)
        .map(|(_, r)| r.clone())
        .collect();
    let cluster = cluster(&["decisions"]);
    let brokers = cluster.bootstrap_servers();
    let (said, report) = reports();
    let summary = Shipper::new(config(&log, &brokers, "decisions"))
        .unwrap()
        .with_reporter(report)
        .run(&AtomicBool::new(false))
        .unwrap();
    assert_eq!(summary.stats.corrupt, 1);
    assert_eq!(summary.stats.shipped, good.len() as u64);
    let said = said.lock().unwrap().join("\n");
    assert!(
        said.contains(&format!("{}:11: not a decision-log record", log.display())),
        "{said}"
    );
    let consumed = read_topic(&brokers, "decisions", Duration::from_secs(30)).unwrap();
    let d = check_delivery(&good, &consumed);
    assert_eq!((d.missing_total, d.unknown, d.duplicates), (0, 0, 0));
}

#[test]
fn a_torn_last_line_is_not_shipped_until_it_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let engine = engine(&log, 1 << 30, false);
    decide(&engine, 0, 20);
    drop(engine);
    let whole = std::fs::read(&log).unwrap();
    let records = log_records(&log);
    // A record being written: half of it, no newline yet.
    let last = records.last().unwrap().clone();
    let mut torn = whole.clone();
    torn.extend_from_slice(&last[..last.len() / 2]);
    std::fs::write(&log, &torn).unwrap();
    let cluster = cluster(&["decisions"]);
    let brokers = cluster.bootstrap_servers();
    let first = ship_all(&log, &brokers);
    assert_eq!(first.stats.shipped, records.len() as u64);
    assert_eq!(
        first.position.as_ref().unwrap().place.offset,
        whole.len() as u64
    );
    // The writer finishes the line: the next run ships it, once.
    let mut done = torn;
    done.extend_from_slice(&last[last.len() / 2..]);
    done.push(b'\n');
    std::fs::write(&log, &done).unwrap();
    let second = ship_all(&log, &brokers);
    assert_eq!(second.stats.shipped, 1);
}

#[test]
fn unreachable_brokers_end_a_run_with_an_error_and_the_position_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let engine = engine(&log, 1 << 30, false);
    decide(&engine, 0, 100);
    drop(engine);
    let cluster = cluster(&["decisions"]);
    for b in 1..=3 {
        cluster.broker_down(b).unwrap();
    }
    let mut c = config(&log, &cluster.bootstrap_servers(), "decisions");
    c.stall_timeout = Duration::from_secs(4);
    c.delivery_timeout = Duration::from_secs(2);
    c.report_interval = Duration::from_secs(1);
    let (said, report) = reports();
    let started = Instant::now();
    let err = Shipper::new(c)
        .unwrap()
        .with_reporter(report)
        .run(&AtomicBool::new(false))
        .unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "gave up in {took:?}");
    let ShipError::Stalled {
        waiting, shipped, ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!((*waiting, *shipped), (log_records(&log).len(), 0));
    assert!(
        err.to_string().contains("gave up: no acknowledgement"),
        "{err}"
    );
    // It said what it was waiting for while it waited.
    let said = said.lock().unwrap().join("\n");
    assert!(said.contains("records unacknowledged for"), "{said}");
    // Nothing acknowledged, so no position.
    let position = nextbest_ship::position::default_path(&log).unwrap();
    assert!(!position.exists());
}

/// The brokers go down mid-run (all of them, longer than the delivery
/// timeout, so records fail and are sent again by a new producer), and
/// Produce requests fail with leader errors for a while after they come
/// back: every record arrives, first arrivals in order per customer.
#[test]
fn brokers_down_mid_run_and_back_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let engine = engine(&log, 256 * 1024, false);
    let cluster = cluster(&["decisions"]);
    let brokers = cluster.bootstrap_servers();
    let mut c = config(&log, &brokers, "decisions");
    c.follow = true;
    c.delivery_timeout = Duration::from_secs(2);
    c.report_interval = Duration::from_secs(1);
    let (said, report) = reports();
    let stop = Arc::new(AtomicBool::new(false));
    let mut shipper = Shipper::new(c).unwrap().with_reporter(report);
    let position_file = shipper.position_file().to_path_buf();
    let s = stop.clone();
    let said_by_thread = said.clone();
    let thread = std::thread::spawn(move || {
        let r = shipper.run(&s);
        if let Err(e) = &r {
            said_by_thread
                .lock()
                .unwrap()
                .push(format!("run failed: {e}"));
        }
        r
    });
    let shipped = || {
        nextbest_ship::position::load(&position_file)
            .unwrap()
            .map_or(0, |p| p.shipped)
    };
    let wait_for = |n: u64| {
        let start = Instant::now();
        while shipped() < n {
            assert!(
                !thread.is_finished(),
                "the shipper stopped: {:?}",
                said.lock().unwrap().last()
            );
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "shipped {} of {n}",
                shipped()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    decide(&engine, 0, 1000);
    wait_for(log_records(&log).len() as u64);
    for b in 1..=3 {
        cluster.broker_down(b).unwrap();
    }
    decide(&engine, 1000, 1000);
    std::thread::sleep(Duration::from_secs(4));
    for b in 1..=3 {
        cluster.broker_up(b).unwrap();
    }
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 20],
    );
    decide(&engine, 2000, 1000);
    std::thread::sleep(Duration::from_millis(500));
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    decide(&engine, 3000, 1000);
    drop(engine);
    let records = log_records(&log);
    wait_for(records.len() as u64);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let summary = thread.join().unwrap().unwrap();
    assert!(summary.stats.broker_errors > 0, "{:?}", summary.stats);
    assert!(
        summary.stats.restarts > 0,
        "records failed and went again: {:?}",
        summary.stats
    );
    let said = said.lock().unwrap().join("\n");
    assert!(said.contains("delivery failed"), "{said}");

    let consumed = read_topic(&brokers, "decisions", Duration::from_secs(60)).unwrap();
    let d = check_delivery(&records, &consumed);
    if d.missing_total > 0 {
        // Where the missing records should be: their customers' partitions.
        let mut partition_of = std::collections::HashMap::new();
        for m in &consumed {
            partition_of.insert(m.key.clone(), m.partition);
        }
        let have: std::collections::HashSet<&[u8]> =
            consumed.iter().map(|m| m.value.as_slice()).collect();
        for r in records
            .iter()
            .filter(|r| !have.contains(r.as_slice()))
            .take(20)
        {
            let v: serde_json::Value = serde_json::from_slice(r).unwrap();
            let key = v["customer_id"].as_str().map(|s| s.as_bytes().to_vec());
            eprintln!(
                "missing {} {} of {:?}: partition {:?}",
                v["kind"],
                v["decision_id"],
                v["customer_id"],
                partition_of.get(&key)
            );
        }
        let again = read_topic(&brokers, "decisions", Duration::from_secs(60)).unwrap();
        eprintln!(
            "read again: {} messages (first read {}), still missing {}",
            again.len(),
            consumed.len(),
            check_delivery(&records, &again).missing_total
        );
        eprintln!("{said}");
    }
    assert_eq!(d.missing_total, 0, "missing: {:?}", d.missing);
    assert_eq!(d.unknown, 0);
    assert_eq!(d.wrong_keys, 0);
    assert!(d.out_of_order.is_empty(), "{:?}", d.out_of_order);
    eprintln!("{} duplicates of {} records", d.duplicates, records.len());
}
