//! The decision log survives SIGKILL (issue 28, item 4): a child process
//! decides in a loop, flushing after every batch and printing the ids of
//! the decisions each flush made durable; the test kills it with SIGKILL
//! at a random moment, reads the file, starts the next child on the same
//! file (which repairs what the kill tore), and kills that one too. After
//! every kill, every acknowledged record is in the file and parses, no
//! line is corrupt, and the log replays exactly; the next open cuts off
//! exactly the torn tail the kill left.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nextbest::audit::reader::LogReader;
use nextbest::audit::{Compression, LogConfig};
use nextbest::tools::replay::{replay, VersionSources};
use nextbest::{Engine, EngineConfig, RuleSet};

const RULES: &str = "tests/fixtures/mini";
const KILLS_PER_FORMAT: usize = 8;

fn config(log: &Path, zstd: bool) -> EngineConfig {
    let mut lc = LogConfig::new(log);
    // Background syncs every few milliseconds, besides the flushes: a kill
    // lands in the middle of syncs of both kinds.
    lc.sync_interval_ms = 3;
    if zstd {
        lc.compression = Compression::Zstd;
    }
    let mut config = EngineConfig::default();
    config.decision_log = Some(lc);
    config
}

/// The child (run by the test below with `--ignored`): decide in batches
/// of 1 to 64 forever; after each batch, flush and print `synced N ID...`:
/// the log's `synced` count and the ids of the batch, all durable now.
#[test]
#[ignore = "the child process of the SIGKILL loop test, not a test by itself"]
fn sigkill_child() {
    let (Some(log), zstd) = (
        std::env::var_os("NEXTBEST_SIGKILL_LOG"),
        std::env::var_os("NEXTBEST_SIGKILL_ZSTD").is_some(),
    ) else {
        panic!("run by a_sigkill_loop_loses_no_synced_record: NEXTBEST_SIGKILL_LOG is not set");
    };
    let engine = Engine::try_with_config(
        RuleSet::from_dir(RULES).unwrap(),
        config(Path::new(&log), zstd),
    )
    .unwrap();
    let repaired = engine.stats().log.unwrap().repaired_bytes;
    println!("\nrepaired {repaired}");
    let mut n = 0u64;
    let mut batch = 1u64;
    loop {
        let mut ids = Vec::new();
        for _ in 0..batch {
            let d = engine
                .decide_json(&format!(
                    r#"{{"customer_id":"C{n}","channel":"call_center","context":{{"age":{},"income":1.5}}}}"#,
                    18 + n % 60
                ))
                .unwrap();
            ids.push(d.id().to_string());
            n += 1;
        }
        engine.flush().unwrap();
        let synced = engine.stats().log.unwrap().synced;
        println!("synced {synced} {}", ids.join(" "));
        batch = batch * 7 % 64 + 1;
    }
}

/// What one child told the test before it was killed.
#[derive(Default)]
struct Told {
    repaired: Option<u64>,
    /// The child's `synced` count after its last flush.
    synced: u64,
    acknowledged: Vec<String>,
    flushes: usize,
}

/// A child deciding on `log`, killed with SIGKILL once it has flushed
/// `flushes` times and then run `extra` more.
fn run_and_kill(log: &Path, zstd: bool, flushes: usize, extra: Duration) -> Told {
    let mut child = Command::new(std::env::current_exe().unwrap());
    if zstd {
        child.env("NEXTBEST_SIGKILL_ZSTD", "1");
    }
    let mut child = child
        .args([
            "--exact",
            "sigkill_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NEXTBEST_SIGKILL_LOG", log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let told = Arc::new(Mutex::new(Told::default()));
    let stdout = child.stdout.take().unwrap();
    // Read on another thread until the kill closes the pipe, so the child
    // never waits on a full pipe while the test sleeps.
    let reader = {
        let told = told.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut t = told.lock().unwrap();
                // The test harness may print its own words first.
                let mut words = line
                    .split_whitespace()
                    .skip_while(|w| !matches!(*w, "repaired" | "synced"));
                match words.next() {
                    Some("repaired") => t.repaired = words.next().and_then(|w| w.parse().ok()),
                    Some("synced") => {
                        t.synced = words.next().and_then(|w| w.parse().ok()).unwrap();
                        t.acknowledged.extend(words.map(str::to_string));
                        t.flushes += 1;
                    }
                    _ => {}
                }
            }
        })
    };
    while told.lock().unwrap().flushes < flushes {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child stopped by itself: {status}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(extra);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    reader.join().unwrap();
    Arc::try_unwrap(told).ok().unwrap().into_inner().unwrap()
}

/// The decision ids in `log`, with what reading found; asserts no line is
/// corrupt and at most the last one is partial.
fn read_ids(log: &Path, what: &str) -> (HashSet<String>, usize) {
    let mut reader = LogReader::open(&[log.to_path_buf()]).unwrap();
    let mut ids = HashSet::new();
    for line in reader.by_ref() {
        let line = line.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(line.record["kind"], "decision", "{what}");
        ids.insert(line.record["decision_id"].as_str().unwrap().to_string());
    }
    let problems = reader.problems();
    assert!(problems.corrupt_lines.is_empty(), "{what}: {problems:?}");
    assert!(
        problems.partial_last_lines.len() <= 1,
        "{what}: {problems:?}"
    );
    (ids, problems.partial_last_lines.len())
}

/// Append the start of a record (plain) or of a frame (zstd) to `log`:
/// what a write cut short leaves.
fn tear(log: &Path, zstd: bool, random: &mut impl FnMut(u64) -> u64) {
    let record = r#"{"v":1,"kind":"decision","decision_id":"0123456789abcdef0123456789abcdef","customer_id":"C0"}"#;
    let whole = if zstd {
        zstd::bulk::compress(format!("{record}\n").as_bytes(), 1).unwrap()
    } else {
        record.as_bytes().to_vec()
    };
    let cut = 1 + random(whole.len() as u64 - 1) as usize;
    let mut file = std::fs::OpenOptions::new().append(true).open(log).unwrap();
    std::io::Write::write_all(&mut file, &whole[..cut]).unwrap();
}

fn sigkill_loop(zstd: bool) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir
        .path()
        .join(if zstd { "d.jsonl.zst" } else { "d.jsonl" });
    let mut acknowledged: Vec<String> = Vec::new();
    let mut seed = if zstd {
        0x9e37_79b9_7f4a_7c15u64
    } else {
        0x2545_f491_4f6c_dd1d
    };
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut torn_before = 0;
    for kill in 0..KILLS_PER_FORMAT {
        let what = format!("{} kill {kill}", if zstd { "zstd" } else { "plain" });
        let flushes = 1 + random(6) as usize;
        let extra = Duration::from_micros(random(20_000));
        let told = run_and_kill(&log, zstd, flushes, extra);
        // What the previous kill tore was cut off when this child opened
        // the file, and nothing else.
        let repaired = told.repaired.expect("the child reports its repair");
        assert_eq!(
            repaired > 0,
            torn_before > 0,
            "{what}: repaired {repaired} bytes"
        );
        // The `synced` count covers at least what the child acknowledged.
        assert!(
            told.synced as usize >= told.acknowledged.len(),
            "{what}: synced {} < {} acknowledged",
            told.synced,
            told.acknowledged.len()
        );
        acknowledged.extend(told.acknowledged);
        let (ids, torn) = read_ids(&log, &what);
        let missing = acknowledged.iter().filter(|id| !ids.contains(*id)).count();
        assert_eq!(missing, 0, "{what}: acknowledged records are missing");
        let r = replay(
            std::slice::from_ref(&log),
            &VersionSources {
                rules_dir: Some(RULES.into()),
                archive_dir: None,
            },
        )
        .unwrap();
        assert!(r.ok(), "{what}: {r:?}");
        assert_eq!(r.matched, ids.len(), "{what}");
        torn_before = torn;
        // A kill rarely cuts a write to a regular file short (the kernel
        // finishes most writes first); a power cut does. Every other time
        // the kill tore nothing, the tail of a record (or frame) that never
        // finished is added, as a short write leaves it.
        if torn == 0 && kill % 2 == 0 {
            tear(&log, zstd, &mut random);
            let (_, torn) = read_ids(&log, &what);
            assert_eq!(torn, 1, "{what}: the tear reads as a partial last line");
            torn_before = torn;
        }
    }
    // Opened once more: the last kill's tear is cut off, and the file
    // reads whole.
    let engine =
        Engine::try_with_config(RuleSet::from_dir(RULES).unwrap(), config(&log, zstd)).unwrap();
    let repaired = engine.stats().log.unwrap().repaired_bytes;
    assert_eq!(repaired > 0, torn_before > 0, "repaired {repaired} bytes");
    drop(engine);
    let (ids, torn) = read_ids(&log, "after the last reopening");
    assert_eq!(torn, 0);
    assert!(acknowledged.iter().all(|id| ids.contains(id)));
}

#[test]
fn a_sigkill_loop_loses_no_synced_record_in_a_plain_log() {
    sigkill_loop(false);
}

#[test]
fn a_sigkill_loop_loses_no_synced_record_in_a_zstd_log() {
    sigkill_loop(true);
}
