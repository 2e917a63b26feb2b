//! The engine shipping its own decision log (`decision_log.ship`) to
//! librdkafka's mock cluster (the real Kafka protocol, served in this
//! process on loopback ports, to the real client): every record arrives,
//! rotated files are kept until shipped, a full spool does what
//! `on_full` says, and closing the engine ships what it logged.

use std::path::Path;
use std::time::{Duration, Instant};

use nextbest::audit::{LogConfig, OnFull, ShipOptions, SpoolStats};
use nextbest::Engine;
use nextbest_ship::testing::{check_delivery, read_topic};

mod support;
use support::{cluster, decide, engine_with, log_records, CUSTOMERS};

/// A log at `log` rotating every `max_bytes`, keeping `keep_files`,
/// shipped to `topic` on `brokers` with `on_full` past `max_spool`.
fn shipped_log(
    log: &Path,
    brokers: &str,
    keep_files: usize,
    on_full: OnFull,
    max_spool: u64,
) -> LogConfig {
    let mut lc = LogConfig::new(log);
    lc.max_bytes = 64 * 1024;
    lc.keep_files = keep_files;
    let mut ship = ShipOptions::new(brokers, "decisions");
    ship.on_full = on_full;
    ship.max_spool_bytes = max_spool;
    ship.block_timeout_ms = 50;
    ship.shutdown_timeout_ms = 10_000;
    lc.ship = Some(ship);
    lc
}

fn ship_stats(engine: &Engine) -> SpoolStats {
    engine
        .stats()
        .log
        .and_then(|l| l.ship)
        .expect("the log is shipped")
}

/// Wait (at most 60 s) until `done` holds for the shipper's counters.
fn wait_for(engine: &Engine, what: &str, done: impl Fn(&SpoolStats) -> bool) -> SpoolStats {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = ship_stats(engine);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "waited 60 s for {what}: {s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn files(log: &Path) -> usize {
    nextbest_ship::spool::list(log).unwrap().len()
}

#[test]
fn an_engine_ships_what_it_logs_and_closing_it_ships_the_rest() {
    let cluster = cluster(&["decisions"]);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let engine = engine_with(shipped_log(&log, &brokers, 1000, OnFull::Block, 1 << 30)).unwrap();
    decide(&engine, 0, 1500);
    // Shipped while the engine runs, not only when it closes.
    wait_for(&engine, "the first records shipped", |s| s.shipped > 0);
    decide(&engine, 1500, 1500);
    drop(engine);
    let records = log_records(&log);
    assert!(files(&log) >= 3, "the log rotated");
    let consumed = read_topic(&brokers, "decisions", Duration::from_secs(30)).unwrap();
    let d = check_delivery(&records, &consumed);
    assert_eq!(d.missing_total, 0, "every record arrived: {d:?}");
    assert!(d.out_of_order.is_empty(), "in order per customer: {d:?}");
    assert_eq!(
        d.unknown + d.wrong_keys,
        0,
        "bytes and keys unchanged: {d:?}"
    );
    // Every record once: nothing failed, so nothing was sent twice.
    assert_eq!(consumed.len(), records.len());
    let first = &consumed[0];
    assert!(first.header("decision_id").is_some() && first.header("v") == Some("1"));
}

/// The brokers are down: rotated files past `keep_files` stay (the
/// shipper needs them) and the spool's bytes are counted; back up, every
/// record arrives and the next rotation deletes what is shipped.
#[test]
fn rotated_files_are_kept_until_shipped() {
    let cluster = cluster(&["decisions"]);
    let brokers = cluster.bootstrap_servers();
    for b in 1..=3 {
        cluster.broker_down(b).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let engine = engine_with(shipped_log(&log, &brokers, 1, OnFull::Block, 1 << 30)).unwrap();
    decide(&engine, 0, 1500);
    let held = files(&log);
    assert!(
        held > 2,
        "{held} files: more than keep_files = 1 and the current one"
    );
    let s = wait_for(&engine, "the spool counted", |s| s.unshipped_bytes > 0);
    assert_eq!(s.shipped, 0);
    let records = log_records(&log);
    for b in 1..=3 {
        cluster.broker_up(b).unwrap();
    }
    let n = records.len() as u64;
    wait_for(&engine, "everything shipped", |s| s.shipped >= n);
    // The shipper stores its position at most every second: once it has,
    // the next rotation (30 decisions, about 80 KB) deletes what is
    // shipped, down to keep_files.
    std::thread::sleep(Duration::from_millis(1500));
    decide(&engine, 1500, 30);
    let left = files(&log);
    assert!(
        left <= 3,
        "shipped files deleted down to keep_files: {left} files left of {held}"
    );
    drop(engine);
    let consumed = read_topic(&brokers, "decisions", Duration::from_secs(30)).unwrap();
    let d = check_delivery(&records, &consumed);
    assert_eq!(
        d.missing_total, 0,
        "nothing lost while the brokers were down: {d:?}"
    );
    assert!(d.out_of_order.is_empty(), "{d:?}");
}

/// One request of the rule set's population, by index.
fn request(i: usize) -> String {
    std::fs::read_to_string(CUSTOMERS)
        .unwrap()
        .lines()
        .nth(i % 300)
        .unwrap()
        .to_string()
}

/// Decide `n` times, or until 20 decisions failed; returns the errors and
/// how many decisions were returned.
fn fill(engine: &Engine, n: usize) -> (Vec<String>, usize) {
    let mut errors = Vec::new();
    let mut ok = 0;
    for i in 0..n {
        match engine.decide_json(&request(i)) {
            Ok(_) => ok += 1,
            Err(e) => errors.push(e.to_string()),
        }
        if errors.len() == 20 {
            break;
        }
        if i % 100 == 99 {
            // The shipper tells the spool's size every 0.1 s.
            std::thread::sleep(Duration::from_millis(150));
        }
    }
    (errors, ok)
}

#[test]
fn a_full_spool_refuses_drops_or_blocks_as_configured() {
    let cluster = cluster(&["decisions"]);
    let brokers = cluster.bootstrap_servers();
    for b in 1..=3 {
        cluster.broker_down(b).unwrap();
    }
    for on_full in [OnFull::Fail, OnFull::Drop, OnFull::Block] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("d.jsonl");
        let engine = engine_with(shipped_log(&log, &brokers, 1000, on_full, 256 * 1024)).unwrap();
        let (errors, ok) = fill(&engine, 5000);
        engine.flush().unwrap();
        let s = ship_stats(&engine);
        let logged = log_records(&log)
            .iter()
            .filter(|r| String::from_utf8_lossy(r).contains(r#""kind":"decision","#))
            .count();
        eprintln!("{on_full:?}: {ok} returned, {} errors, {s:?}", errors.len());
        assert!(s.full, "{on_full:?}: the spool is full: {s:?}");
        match on_full {
            OnFull::Fail | OnFull::Block => {
                assert!(!errors.is_empty(), "{on_full:?}: decisions refused");
                assert!(
                    errors[0].contains("spool is full")
                        && errors[0].contains("max_spool_bytes = 262144"),
                    "{}",
                    errors[0]
                );
                assert_eq!(s.refused, errors.len() as u64);
                // Every decision returned has its record in the log.
                assert_eq!(logged, ok);
            }
            OnFull::Drop => {
                assert!(errors.is_empty(), "{errors:?}");
                assert!(s.dropped > 0, "{s:?}");
                assert_eq!(logged as u64 + s.dropped, ok as u64);
            }
        }
        if on_full == OnFull::Block {
            assert_eq!(
                s.block_timeouts, s.refused,
                "each refusal waited block_timeout_ms"
            );
        }
        // The log holds what the spool allows, plus what was written
        // before the shipper (measuring every 0.1 s) said it was full: here
        // at most a few batches of 100 decisions (about 300 KB each).
        let bytes: u64 = nextbest_ship::spool::list(&log)
            .unwrap()
            .iter()
            .map(|f| std::fs::metadata(&f.path).unwrap().len())
            .sum();
        assert!(bytes < 256 * 1024 + 3 * 300_000, "{bytes} bytes spooled");
        // Closing with the brokers down: bounded by shutdown_timeout_ms.
        let closing = Instant::now();
        drop(engine);
        assert!(closing.elapsed() < Duration::from_secs(30));
    }
    // Back up: a blocked engine decides again once the spool drains.
    for b in 1..=3 {
        cluster.broker_up(b).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let mut lc = shipped_log(&log, &brokers, 1000, OnFull::Block, 2 << 20);
    lc.ship.as_mut().unwrap().block_timeout_ms = 1000;
    let engine = engine_with(lc).unwrap();
    let (errors, ok) = fill(&engine, 3000);
    assert!(
        errors.is_empty(),
        "with the brokers up the spool drains: {errors:?}"
    );
    assert_eq!(ok, 3000);
}

/// The configuration C callers (`nb_engine_open`) and services pass: the
/// `ship` object of `decision_log`, checked like every other key.
#[test]
fn the_json_configuration_turns_shipping_on_and_names_a_wrong_key() {
    let cluster = cluster(&["decisions"]);
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let config = serde_json::json!({
        "rules_dir": support::RULES,
        "decision_log": {"path": log, "ship": {"kafka": brokers, "topic": "decisions"}}
    });
    let engine = Engine::from_config_json(&config.to_string()).unwrap();
    for i in 0..50 {
        engine.decide_json(&request(i)).unwrap();
    }
    drop(engine);
    let consumed = read_topic(&brokers, "decisions", Duration::from_secs(30)).unwrap();
    assert_eq!(consumed.len(), log_records(&log).len());

    let wrong = serde_json::json!({
        "rules_dir": support::RULES,
        "decision_log": {"path": log, "ship": {"kafka": brokers, "topic": "decisions", "on_ful": "drop"}}
    });
    let err = Engine::from_config_json(&wrong.to_string())
        .unwrap_err()
        .to_string();
    assert!(err.contains("on_ful") && err.contains("on_full"), "{err}");
}
