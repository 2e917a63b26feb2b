//! `nextbest ship` as an operating-system process, killed with SIGKILL at
//! random points while the engine writes and rotates the log, and started
//! again on the same position file: against librdkafka's mock cluster,
//! owned by this test process (a real TCP listener on loopback), read by
//! a real consumer. After every kill the position covers only records the
//! topic has; in the end the topic has every record at least once, each
//! customer's first arrivals in log order.

#![cfg(feature = "kafka")]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nextbest::audit::LogConfig;
use nextbest::{Engine, EngineConfig, RuleSet};
use nextbest_ship::rdkafka::mocking::MockCluster;
use nextbest_ship::testing::{check_delivery, read_topic};
use rand::{Rng, SeedableRng};

const KILLS: usize = 6;

fn engine(log: &Path) -> Engine {
    let mut lc = LogConfig::new(log);
    // Rotations while the shipper reads.
    lc.max_bytes = 256 * 1024;
    lc.keep_files = 1000;
    let mut config = EngineConfig::default();
    config.decision_log = Some(lc);
    Engine::try_with_config(
        RuleSet::from_dir(common::root().join("rules/retail_bank")).unwrap(),
        config,
    )
    .unwrap()
}

/// Decide `n` requests from `from` on, flushing every 50.
fn decide(engine: &Engine, customers: &[String], from: usize, n: usize) {
    for i in from..from + n {
        engine
            .decide_json(&customers[i % customers.len().min(400)])
            .unwrap();
        if i % 50 == 49 {
            engine.flush().unwrap();
        }
    }
    engine.flush().unwrap();
}

/// The log's records, oldest first.
fn log_records(log: &Path) -> Vec<Vec<u8>> {
    let files = nextbest_ship::spool::list(log).unwrap();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f.path).unwrap();
        out.extend(
            bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    out
}

fn ship(log: &Path, brokers: &str, position: &Path, follow: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nextbest"));
    c.arg("ship")
        .arg(log)
        .args(["--kafka", brokers, "--topic", "decisions", "--position"])
        .arg(position)
        .stdin(Stdio::null());
    if follow {
        c.arg("--follow");
    }
    c
}

#[test]
fn a_shipper_killed_at_random_points_resumes_and_loses_nothing() {
    let seed: u64 = std::env::var("NEXTBEST_SHIP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("seed {seed} (NEXTBEST_SHIP_SEED={seed} repeats this run)");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let cluster = MockCluster::new(3).unwrap();
    // 16 partitions: the mock cluster keeps 5 MiB of each.
    cluster.create_topic("decisions", 16, 3).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let position = dir.path().join("position.json");
    let customers: Vec<String> =
        std::fs::read_to_string(common::root().join("rules/retail_bank/customers.jsonl"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
    let engine = engine(&log);
    let mut written = 0;
    let mut shipped_before = 0;
    let mut killed_mid_run = 0;
    let mut with_position = 0;
    for round in 0..KILLS {
        let stderr = PathBuf::from(format!("{}/ship-{round}.err", dir.path().display()));
        let mut child = ship(&log, &brokers, &position, true)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let burst = rng.random_range(300..1500);
        // Short rounds kill before the first stored position (the next
        // run starts from the last one); long ones after it (the position
        // is stored every second).
        let kill_after = Duration::from_millis(if round % 2 == 0 {
            rng.random_range(100..1000)
        } else {
            rng.random_range(1500..3000)
        });
        std::thread::scope(|s| {
            s.spawn(|| decide(&engine, &customers, written, burst));
            std::thread::sleep(kill_after);
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        });
        written += burst;

        // The position covers only acknowledged records: every record
        // before it (in log order) is in the topic now.
        let records = log_records(&log);
        let Some(p) = nextbest_ship::position::load(&position).unwrap() else {
            eprintln!("round {round}: killed after {kill_after:?}, before its first commit");
            continue;
        };
        with_position += 1;
        assert!(p.shipped >= shipped_before, "the position never goes back");
        assert!(p.shipped as usize <= records.len());
        if (p.shipped as usize) < records.len() {
            killed_mid_run += 1;
        }
        shipped_before = p.shipped;
        let prefix = &records[..p.shipped as usize];
        let consumed = read_topic(&brokers, "decisions", Duration::from_secs(30)).unwrap();
        let have: HashSet<&[u8]> = consumed.iter().map(|m| m.value.as_slice()).collect();
        let missing = prefix
            .iter()
            .filter(|r| !have.contains(r.as_slice()))
            .count();
        assert_eq!(
            missing, 0,
            "round {round}: the position ({} records) is past {missing} records the topic does not have",
            p.shipped
        );
        eprintln!(
            "round {round}: killed after {kill_after:?}; position after {} of {} records ({} in the topic)",
            p.shipped,
            records.len(),
            consumed.len()
        );
    }
    drop(engine);
    assert!(
        with_position >= 2,
        "runs stored positions that later runs resumed from"
    );
    eprintln!("{killed_mid_run} of {KILLS} kills left records unshipped behind the position");

    // A last run without --follow ships the rest and stops.
    let started = Instant::now();
    let out = ship(&log, &brokers, &position, false).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("shipped "), "{stdout}");
    assert!(stdout.contains("position: "), "{stdout}");
    eprintln!("last run ({:?}): {stdout}", started.elapsed());

    let records = log_records(&log);
    let p = nextbest_ship::position::load(&position).unwrap().unwrap();
    assert_eq!(p.shipped as usize, records.len());
    let consumed = read_topic(&brokers, "decisions", Duration::from_secs(60)).unwrap();
    let d = check_delivery(&records, &consumed);
    assert_eq!(d.missing_total, 0, "missing: {:?}", d.missing);
    assert_eq!(d.unknown, 0, "values are the records' bytes");
    assert_eq!(d.wrong_keys, 0);
    assert!(d.out_of_order.is_empty(), "{:?}", d.out_of_order);
    eprintln!(
        "{} records, {} messages: {} duplicates (at least once)",
        records.len(),
        consumed.len(),
        d.duplicates
    );
}

#[test]
fn an_unreachable_broker_makes_ship_exit_1_with_the_reason() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.broker_down(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let engine = engine(&log);
    decide(
        &engine,
        &[r#"{"customer_id":"C1","channel":"web","context":{"age":40}}"#.to_string()],
        0,
        10,
    );
    drop(engine);
    let started = Instant::now();
    let out = ship(&log, &brokers, &dir.path().join("p.json"), false)
        .args(["--timeout", "3", "--delivery-timeout", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        stderr.contains("error: ship: gave up: no acknowledgement from"),
        "{stderr}"
    );
    assert!(stderr.contains("10 records waited"), "{stderr}");
}

#[test]
fn ship_names_a_missing_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = ship(
        &dir.path().join("nope.jsonl"),
        "127.0.0.1:1",
        &dir.path().join("p"),
        false,
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("nope.jsonl: no such log"), "{stderr}");
}

#[test]
fn sigterm_stops_a_following_shipper_with_its_position_stored() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("decisions", 16, 3).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let position = dir.path().join("position.json");
    let customers: Vec<String> =
        std::fs::read_to_string(common::root().join("rules/retail_bank/customers.jsonl"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
    let engine = engine(&log);
    decide(&engine, &customers, 0, 200);
    let child = ship(&log, &brokers, &position, true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log grows while the shipper follows it; SIGTERM once it has
    // stored a position (so its handler is long installed).
    let stopped = std::thread::scope(|s| {
        let writer = s.spawn(|| decide(&engine, &customers, 200, 1500));
        let start = Instant::now();
        while !position.exists() {
            assert!(start.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
            0
        );
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    });
    let stdout = String::from_utf8_lossy(&stopped.stdout);
    assert!(
        stopped.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let p = nextbest_ship::position::load(&position).unwrap().unwrap();
    // The summary is printed, and its count is what the position says.
    assert!(
        stdout.starts_with(&format!("shipped {} records", p.shipped)),
        "{stdout} vs {p:?}"
    );
    let records = log_records(&log);
    let consumed = read_topic(&brokers, "decisions", Duration::from_secs(30)).unwrap();
    let have: HashSet<&[u8]> = consumed.iter().map(|m| m.value.as_slice()).collect();
    let prefix = &records[..p.shipped as usize];
    assert!(prefix.iter().all(|r| have.contains(r.as_slice())));
    // The next run ships the rest.
    drop(engine);
    let out = ship(&log, &brokers, &position, false).output().unwrap();
    assert!(out.status.success());
    let records = log_records(&log);
    let consumed = read_topic(&brokers, "decisions", Duration::from_secs(30)).unwrap();
    let d = check_delivery(&records, &consumed);
    assert_eq!((d.missing_total, d.unknown), (0, 0));
}

/// `simulate --log L --ship-kafka B --ship-topic T`: the engine ships its
/// own log as it writes it, and the command ends once every record is
/// acknowledged.
#[test]
fn simulate_ships_its_log_from_inside_the_engine() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("decisions", 8, 3).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .arg("simulate")
        .arg(common::root().join("rules/retail_bank"))
        .arg("--log")
        .arg(&log)
        .args(["--ship-kafka", &brokers, "--ship-topic", "decisions"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let records = log_records(&log);
    assert!(records.len() >= 300, "{} records", records.len());
    let consumed = read_topic(&brokers, "decisions", Duration::from_secs(30)).unwrap();
    let d = check_delivery(&records, &consumed);
    assert_eq!(d.missing_total, 0, "{d:?}");
    assert!(d.out_of_order.is_empty(), "{d:?}");
    // Its position file is where `nextbest ship` would look for it.
    assert!(dir.path().join(".d.jsonl.ship-position").exists());

    // --ship-kafka needs --log and --ship-topic.
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .arg("simulate")
        .arg(common::root().join("rules/retail_bank"))
        .args(["--ship-kafka", &brokers])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--log") && stderr.contains("--ship-topic"),
        "{stderr}"
    );
}
