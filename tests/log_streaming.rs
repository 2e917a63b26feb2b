//! Log readers stream, and take the files of a rotated log in order
//! (issue 28, items 7 and 8): `replay` and `evaluate` hold a record at a
//! time, so their memory does not grow with the log (they used to hold
//! every record, about 8 times the file); a directory or a pattern of
//! rotated files reads oldest first, and every reader says how many
//! records and files it read.
//!
//! Memory is measured by a counting allocator (the peak of live heap
//! bytes), not by time: the same run gives the same count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use nextbest::audit::reader::LogReader;
use nextbest::audit::LogConfig;
use nextbest::tools::evaluate::{evaluate, EvaluateOptions};
use nextbest::tools::replay::{replay, VersionSources};
use nextbest::{Engine, EngineConfig, RuleSet};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING_ALLOCATOR: Counting = Counting;

/// One test at a time: another test's allocations would count in the peak.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The most heap `f` holds at once beyond what was live when it started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(start))
}

const RULES: &str = "tests/fixtures/mini";

/// Log `n` decisions (customers `C0`, `C1`, ... in order) to `log`,
/// rotating every `max_bytes`.
fn write_log(log: &Path, n: usize, max_bytes: u64) {
    let mut lc = LogConfig::new(log);
    lc.max_bytes = max_bytes;
    lc.keep_files = 100;
    let mut config = EngineConfig::default();
    config.decision_log = Some(lc);
    let engine = Engine::try_with_config(RuleSet::from_dir(RULES).unwrap(), config).unwrap();
    for i in 0..n {
        engine
            .decide_json(&format!(
                r#"{{"customer_id":"C{i}","channel":"call_center","context":{{"age":{},"income":1.5}},"now":"2026-11-23T10:00:00Z"}}"#,
                18 + i % 60
            ))
            .unwrap();
    }
    engine.flush().unwrap();
}

fn sources() -> VersionSources {
    VersionSources {
        rules_dir: Some(RULES.into()),
        archive_dir: None,
    }
}

/// Replay and evaluate of a log 16 times larger hold no more memory: at
/// most a record, a read buffer and the engines at a time.
#[test]
fn replay_and_evaluate_hold_the_same_memory_whatever_the_size_of_the_log() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.jsonl");
    write_log(&small, 500, 1 << 30);
    // The same records 16 times over, as one file.
    let text = std::fs::read(&small).unwrap();
    let large = dir.path().join("large.jsonl");
    std::fs::write(&large, text.repeat(16)).unwrap();
    let large_bytes = 16 * text.len();

    let candidate = Engine::from_dir(RULES).unwrap();
    let opts = EvaluateOptions::default();
    let mut peaks = Vec::new();
    for log in [&small, &large] {
        let (r, replayed) = peak_during(|| replay(std::slice::from_ref(log), &sources()).unwrap());
        assert!(r.ok(), "{r:?}");
        let (ev, evaluated) =
            peak_during(|| evaluate(std::slice::from_ref(log), &candidate, &opts).unwrap());
        assert_eq!(ev.records, r.records);
        peaks.push((r.records, replayed, evaluated));
    }
    let (small_records, small_replay, small_evaluate) = peaks[0];
    let (large_records, large_replay, large_evaluate) = peaks[1];
    assert_eq!(large_records, 16 * small_records);
    // Holding the records would take several times the file; streaming
    // them takes the same as for the small log, give or take buffers.
    eprintln!("peak heap bytes (replay, evaluate): {small_records} records {small_replay}, {small_evaluate}; {large_records} records ({large_bytes} bytes) {large_replay}, {large_evaluate}");
    for (what, small, large) in [
        ("replay", small_replay, large_replay),
        ("evaluate", small_evaluate, large_evaluate),
    ] {
        assert!(
            large < small + small / 2 && large < large_bytes / 2,
            "{what}: peak {large} bytes over a {large_bytes}-byte log, {small} over a 16 times smaller one"
        );
    }
}

/// `PATH.N`, ..., `PATH.1`, `PATH`: the files of a rotated log, oldest
/// first.
fn rotated_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let n = p
                .extension()
                .and_then(|e| e.to_str())
                .and_then(|e| e.parse().ok())
                .unwrap_or(0);
            (n, p)
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    files.into_iter().map(|f| f.1).collect()
}

/// A directory, a pattern, or the files named in any order: the records
/// of every rotated file, oldest first, and the counts say so (`evaluate`
/// on rotated files named by hand used to skip one without a word).
#[test]
fn a_rotated_log_reads_whole_and_in_order_from_a_directory_or_a_pattern() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let n = 300;
    write_log(&logs.join("d.jsonl"), n, 16 * 1024);
    let files = rotated_files(&logs);
    assert!(
        files.len() >= 4,
        "the log must rotate a few times: {files:?}"
    );
    let mut backwards = files.clone();
    backwards.reverse();
    let inputs: [(&str, Vec<PathBuf>); 3] = [
        ("directory", vec![logs.clone()]),
        ("pattern", vec![logs.join("d.jsonl*")]),
        ("files newest first", backwards),
    ];
    for (what, input) in inputs {
        let mut reader = LogReader::open(&input).unwrap();
        assert_eq!(reader.files(), &files[..], "{what}");
        let customers: Vec<String> = reader
            .by_ref()
            .map(|l| {
                l.unwrap().record["customer_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let expected: Vec<String> = (0..n).map(|i| format!("C{i}")).collect();
        assert_eq!(customers, expected, "{what}");
        assert_eq!(reader.records(), n, "{what}");

        let r = replay(&input, &sources()).unwrap();
        assert!(r.ok(), "{what}: {r:?}");
        assert_eq!((r.records, r.matched, &r.files), (n, n, &files), "{what}");
        let candidate = Engine::from_dir(RULES).unwrap();
        let ev = evaluate(&input, &candidate, &EvaluateOptions::default()).unwrap();
        assert_eq!(
            (ev.records, ev.decisions, &ev.files),
            (n, n, &files),
            "{what}"
        );
    }
    // A pattern that matches nothing is an error, not an empty log.
    let err = LogReader::open(&[logs.join("x.jsonl*")]).err().unwrap();
    assert!(err.to_string().contains("no file matches"), "{err}");
}
