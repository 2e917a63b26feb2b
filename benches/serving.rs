//! Serving under load: latency while versions are published, and the cost
//! of the decision log. Criterion does not report tail percentiles, so
//! this harness times each decision itself and reports p50 and p99.
//!
//! - hot swap: decide latency p50/p99 on the 100-action catalog with no
//!   publishing and while another thread publishes a new version every
//!   millisecond, in alternating rounds of one run; their ratio.
//! - decision log: decisions/s with the JSON Lines file sink and with a
//!   sink that discards the records (the log's cost without the disk)
//!   against no log, on 1 and 2 threads, for each candidate detail; the
//!   bytes written; the same with the file compressed by zstd, and with
//!   the file in tmpfs (`/dev/shm`, where there is one: the file sink's
//!   cost without the disk's bandwidth); and the writer's sustained
//!   records/s. On the 100-action catalog, and on the
//!   shipped rule sets (strategies included) with their populations.
//!
//! `cargo bench --bench serving`; `-- --test` runs a short smoke version.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nextbest::audit::{CallbackSink, LogConfig, LogDetail, LogOptions};
use nextbest::{DecisionRequest, Engine, EngineConfig, RuleSet, RuleSource};

#[allow(dead_code)]
mod support;
use support::{population, Catalog};

struct Scale {
    rounds: usize,
    per_round: usize,
    throughput_decisions: usize,
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let scale = if smoke {
        Scale {
            rounds: 2,
            per_round: 2_000,
            throughput_decisions: 5_000,
        }
    } else {
        Scale {
            rounds: 10,
            per_round: 50_000,
            throughput_decisions: 400_000,
        }
    };
    let catalog = Catalog::generate(100, 7);
    hot_swap(&catalog, &scale);
    let dir = tempfile::tempdir().expect("tempdir");
    let source = catalog.to_source();
    let compile = || RuleSet::compile(&source).expect("catalog compiles");
    let reqs = Arc::new(requests(&catalog.engine(), &catalog));
    logging(
        "100-action catalog",
        &compile,
        &reqs,
        scale.throughput_decisions,
        dir.path(),
    );
    // The shipped rule sets, strategies included, on their populations.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    for name in ["retail_bank", "telco_care"] {
        let rules_dir = root.join(name);
        match support::shipped(&rules_dir) {
            Ok((_, shipped)) => {
                let source = RuleSource::from_dir(&rules_dir).expect("loads");
                let compile = || RuleSet::compile(&source).expect("compiles");
                // Slower decisions: fewer of them take as long.
                let n = scale.throughput_decisions / 4;
                logging(name, &compile, &Arc::new(shipped), n, dir.path());
            }
            Err(why) => eprintln!("decision log ({name}): skipped ({why})"),
        }
    }
    writer_burst(&catalog, &reqs, &scale, dir.path());
}

fn requests(engine: &Engine, catalog: &Catalog) -> Vec<DecisionRequest> {
    let schema = engine.schema();
    population(256, 11)
        .iter()
        .map(|c| c.request(catalog, &schema, false))
        .collect()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn timed(engine: &Engine, reqs: &[DecisionRequest], n: usize, out: &mut Vec<u64>) {
    for i in 0..n {
        let r = &reqs[i % reqs.len()];
        let t = Instant::now();
        let d = engine.decide(r).expect("decide");
        std::hint::black_box(&d);
        drop(d);
        out.push(t.elapsed().as_nanos() as u64);
    }
}

fn hot_swap(catalog: &Catalog, scale: &Scale) {
    let engine = Arc::new(catalog.engine());
    let reqs = requests(&engine, catalog);
    // Versions to publish: the same catalog recompiled, so each publish is
    // a real new version (new number) of realistic size.
    let source = catalog.to_source();
    let (mut quiet, mut busy) = (Vec::new(), Vec::new());
    let mut published = 0u64;
    for _ in 0..scale.rounds {
        timed(&engine, &reqs, scale.per_round, &mut quiet);
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = {
            let (engine, stop, source) = (engine.clone(), stop.clone(), source.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let rules = RuleSet::compile(&source).expect("catalog compiles");
                    engine.publish(rules);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                n
            })
        };
        timed(&engine, &reqs, scale.per_round, &mut busy);
        stop.store(true, Ordering::Relaxed);
        published += publisher.join().expect("publisher");
    }
    quiet.sort_unstable();
    busy.sort_unstable();
    let (q50, q99) = (percentile(&quiet, 0.5), percentile(&quiet, 0.99));
    let (b50, b99) = (percentile(&busy, 0.5), percentile(&busy, 0.99));
    println!(
        "hot swap (100-action catalog, {} decisions per side, {published} versions published)",
        quiet.len()
    );
    println!("  no publishing        p50 {q50:>7} ns   p99 {q99:>7} ns");
    println!("  publishing every ms  p50 {b50:>7} ns   p99 {b99:>7} ns");
    println!(
        "  ratio                p50 {:>7.3}      p99 {:>7.3}",
        b50 as f64 / q50 as f64,
        b99 as f64 / q99 as f64
    );
}

fn throughput(
    engine: &Arc<Engine>,
    reqs: &Arc<Vec<DecisionRequest>>,
    threads: usize,
    total: usize,
) -> f64 {
    let per = total / threads;
    let started = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (engine, reqs) = (engine.clone(), reqs.clone());
            std::thread::spawn(move || {
                for i in 0..per {
                    let d = engine
                        .decide(&reqs[(i + t * 17) % reqs.len()])
                        .expect("decide");
                    std::hint::black_box(&d);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("thread");
    }
    engine.flush().expect("flush");
    (per * threads) as f64 / started.elapsed().as_secs_f64()
}

/// The decision log's cost on one workload: `rules` compiles a fresh copy
/// of its rule set for each engine, `reqs` are its requests.
fn logging(
    name: &str,
    rules: &dyn Fn() -> RuleSet,
    reqs: &Arc<Vec<DecisionRequest>>,
    decisions: usize,
    dir: &std::path::Path,
) {
    let plain = Arc::new(Engine::new(rules()));
    println!("decision log ({name}, block policy): decisions/s and cost against no log");
    for detail in [
        LogDetail::Stages,
        LogDetail::All,
        LogDetail::Ranked,
        LogDetail::Chosen,
    ] {
        // The JSON Lines file, and the same compressed with zstd (the
        // `.zst` name turns it on; level 1, the default).
        let file_engine = |path: &std::path::Path| {
            let mut lc = LogConfig::for_file(path);
            lc.candidates = detail;
            let mut config = EngineConfig::default();
            config.decision_log = Some(lc);
            Arc::new(Engine::try_with_config(rules(), config).expect("log opens"))
        };
        let path = dir.join(format!("{name}-{detail:?}.jsonl"));
        let zname = format!("{name}-{detail:?}.jsonl.zst");
        let file = file_engine(&path);
        let zstd = file_engine(&dir.join(&zname));
        // The same file in memory (tmpfs), where there is one: the file
        // sink's whole cost (formatting, writing, rotating, syncing) without
        // the disk's bandwidth. Removed after each detail: it is RAM.
        let ram_dir = tempfile::tempdir_in("/dev/shm").ok();
        let ram = ram_dir
            .as_ref()
            .map(|d| file_engine(&d.path().join(format!("{name}-{detail:?}.jsonl"))));
        // The same records handed to a sink that discards them: what the
        // log costs without the disk.
        let discard = Arc::new(
            Engine::with_sink(
                rules(),
                EngineConfig::default(),
                Box::new(CallbackSink(|r: &str| {
                    std::hint::black_box(r);
                })),
                LogOptions {
                    detail,
                    ..LogOptions::default()
                },
            )
            .expect("log starts"),
        );
        for threads in [1, 2] {
            // Alternate to spread machine noise over all four.
            let (mut off, mut cpu, mut on, mut z, mut m) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for _ in 0..2 {
                off += throughput(&plain, reqs, threads, decisions / 2);
                cpu += throughput(&discard, reqs, threads, decisions / 2);
                on += throughput(&file, reqs, threads, decisions / 2);
                z += throughput(&zstd, reqs, threads, decisions / 2);
                if let Some(ram) = &ram {
                    m += throughput(ram, reqs, threads, decisions / 2);
                }
            }
            let (off, cpu, on, z, m) = (off / 2.0, cpu / 2.0, on / 2.0, z / 2.0, m / 2.0);
            let in_memory = if ram.is_some() {
                format!(
                    "   file in tmpfs {m:>9.0} (cost {:>5.1}%)",
                    100.0 * (1.0 - m / off)
                )
            } else {
                String::new()
            };
            // Older files are rotated away: measure the live one.
            let text = std::fs::read(&path).expect("read the log");
            let lines = text.iter().filter(|&&b| b == b'\n').count();
            let per_record = text.len() as f64 / lines.max(1) as f64;
            let zbytes = log_bytes(dir, &zname) as f64;
            let zrecords = zstd.stats().log.map_or(0, |s| s.written) as f64;
            println!(
                "  candidates={:<7} {threads} thread(s): no log {off:>9.0}   discarding sink {cpu:>9.0} (cost {:>5.1}%)   file {on:>9.0} (cost {:>5.1}%, {per_record:.0} bytes a record, {:.0} MB/s)   zstd file {z:>9.0} (cost {:>5.1}%, {:.0} bytes a record){in_memory}",
                format!("{detail:?}").to_lowercase(),
                100.0 * (1.0 - cpu / off),
                100.0 * (1.0 - on / off),
                on * per_record / 1e6,
                100.0 * (1.0 - z / off),
                zbytes / zrecords.max(1.0),
            );
        }
    }
}

/// The writer alone: a burst into a large queue, timed to the fsync.
fn writer_burst(catalog: &Catalog, reqs: &[DecisionRequest], scale: &Scale, dir: &std::path::Path) {
    let mut config = EngineConfig::default();
    let mut lc = LogConfig::new(dir.join("burst.jsonl"));
    lc.queue_capacity = scale.throughput_decisions;
    config.decision_log = Some(lc);
    let burst = Engine::try_with_config(
        RuleSet::compile(&catalog.to_source()).expect("compiles"),
        config,
    )
    .expect("log opens");
    let started = Instant::now();
    for i in 0..scale.throughput_decisions / 4 {
        std::hint::black_box(burst.decide(&reqs[i % reqs.len()]).expect("decide"));
    }
    burst.flush().expect("flush");
    let secs = started.elapsed().as_secs_f64();
    let written = burst.stats().log.map_or(0, |s| s.written);
    let bytes = log_bytes(dir, "burst.jsonl");
    println!(
        "  writer: {written} records ({} bytes each on average) decided, written and fsynced in {secs:.3} s = {:.0} records/s",
        bytes / written.max(1),
        written as f64 / secs
    );
}

/// The bytes of a log file and of the files it rotated into.
fn log_bytes(dir: &std::path::Path, name: &str) -> u64 {
    std::fs::read_dir(dir)
        .expect("read the log directory")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(name))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
