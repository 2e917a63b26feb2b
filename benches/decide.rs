//! Decision latency and throughput benchmarks.
//!
//! - `decide/catalog/{10,100,1000,10000}`: typed contexts built outside the
//!   timing loop, explain off, on a generated catalog (benches/support).
//! - `decide/catalog_explain/{10,100,1000,10000}`: the same with explain on;
//!   `decide/catalog_explain_read/...`: and every entry of the explanation
//!   read (why each action was removed, the ranked list in order).
//! - `decide/strategy/100`: with a scripted strategy (derive, adjust, select),
//!   its hooks lowered; `decide/strategy_rhai/100`: the same hooks run by
//!   rhai's interpreter (`[strategy] lower = false`).
//! - `decide/log_file/100`: with the JSON Lines decision log (default
//!   settings, rotated so the disk does not fill; block when full);
//!   `decide/log_ship/100` (the `kafka` feature): the same log shipped to
//!   Kafka from inside the engine, to librdkafka's mock cluster in this
//!   process (the deciding thread's cost of shipping).
//! - `decide/rules/NAME`: every rule set under `rules/` that has a
//!   `customers.jsonl`, with its population (skipped when there is none);
//!   for a rule set with a strategy, also `decide/rules_rhai/NAME` (its
//!   hooks interpreted) and `decide/rules_no_strategy/NAME` (without it).
//! - `floor/{10,..,10000}`: a hand-written Rust decision over plain structs.
//! - `rhai_naive/{10,100,1000}`: rhai evaluating the same condition strings.
//! - `decide_json/100`: JSON request in, JSON decision out (Rust API).
//! - `nb_decide/100`: the same through the C ABI (`nb_decide`, `nb_buf_free`).
//! - `throughput/threads/{1,2}`: decisions/s with 1 and 2 threads deciding
//!   on one shared engine (100 actions).
//!
//! Before timing, the engine, the floor and the rhai engine are checked to
//! choose the same actions for every generated customer. Customers are
//! taken round-robin so branch predictors cannot learn one customer.
//! At the end, the ratios of medians measured in this run are printed:
//! ours / floor, rhai / ours, the cost per additional action, and the
//! 2-thread / 1-thread throughput.
//!
//! `cargo bench --bench decide -- --noplot`; CI runs `-- --test` (each
//! bench once).

/// The C ABI (the `nextbest-capi` crate builds it as a static and a shared
/// library only, so its source is compiled into this binary to be called
/// from Rust).
#[path = "../crates/nextbest-capi/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod capi;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput};
use nextbest::audit::LogConfig;
use nextbest::{DecisionRequest, Engine, EngineConfig, RuleSet, RuleSource};

mod support;
use support::{
    check_floor, check_rhai, floor_decide, median, population, read_explanation, Catalog,
    PlainCustomer, RhaiNaive,
};

const CATALOG_SEED: u64 = 2026;
const CUSTOMER_SEED: u64 = 1123;
const CUSTOMERS: usize = 256;

/// A compiled catalog, its customers and their prebuilt requests, checked
/// against the floor.
struct Fixture {
    catalog: Catalog,
    engine: Engine,
    customers: Vec<PlainCustomer>,
    requests: Vec<DecisionRequest>,
    explained: Vec<DecisionRequest>,
}

/// Fixtures are built once per size and shared by every group.
fn fixture(n: usize) -> &'static Fixture {
    static FIXTURES: OnceLock<Mutex<BTreeMap<usize, &'static Fixture>>> = OnceLock::new();
    let mut map = FIXTURES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(n).or_insert_with(|| {
        let catalog = Catalog::generate(n, CATALOG_SEED);
        let engine = catalog.engine();
        let customers = population(CUSTOMERS, CUSTOMER_SEED);
        let st = check_floor(&catalog, &engine, &customers);
        eprintln!(
            "catalog {n}: {} groups, {} context weights, {:.2} conjuncts/action, {} distinct conjuncts \
             (engine: {}); per decision: {:.1} actions on the channel, {:.1} pass the policies, \
             {:.2} chosen, {} of {} customers get nothing; engine == floor for all {} customers",
            catalog.groups.len(),
            catalog.weights.len(),
            catalog.conjuncts_per_action(),
            catalog.distinct_conjuncts(),
            engine.current().rules().condition_count(),
            st.mean_offered,
            st.mean_eligible,
            st.mean_chosen,
            st.empty,
            st.decisions,
            st.decisions,
        );
        let schema = engine.schema();
        let requests = customers.iter().map(|c| c.request(&catalog, &schema, false)).collect();
        let explained = customers.iter().map(|c| c.request(&catalog, &schema, true)).collect();
        Box::leak(Box::new(Fixture {
            catalog,
            engine,
            customers,
            requests,
            explained,
        }))
    })
}

/// Time `engine.decide` over `requests`, round-robin.
fn bench_requests(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    engine: &Engine,
    requests: &[DecisionRequest],
) {
    bench_requests_reading(g, id, engine, requests, |_| 0);
}

/// [`bench_requests`], with `read` run on each decision (timed too).
fn bench_requests_reading(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    engine: &Engine,
    requests: &[DecisionRequest],
    read: impl Fn(&nextbest::Decision) -> usize,
) {
    g.bench_function(id, |b| {
        let mut i = 0usize;
        b.iter(|| {
            let r = &requests[i % requests.len()];
            i = i.wrapping_add(1);
            let d = engine.decide(black_box(r)).expect("decide");
            black_box(read(&d));
            d
        })
    });
}

const SIZES: [usize; 4] = [10, 100, 1000, 10_000];

fn decide(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    for n in SIZES {
        let f = fixture(n);
        bench_requests(
            &mut g,
            BenchmarkId::new("catalog", n),
            &f.engine,
            &f.requests,
        );
    }
    for n in SIZES {
        let f = fixture(n);
        bench_requests(
            &mut g,
            BenchmarkId::new("catalog_explain", n),
            &f.engine,
            &f.explained,
        );
    }
    // An explanation's whole cost: decide, then read every entry as an
    // application showing it would (the decision works out why each
    // removed action failed, and sorts the ranked list, as they are read).
    for n in SIZES {
        let f = fixture(n);
        bench_requests_reading(
            &mut g,
            BenchmarkId::new("catalog_explain_read", n),
            &f.engine,
            &f.explained,
            read_explanation,
        );
    }
    {
        let f = fixture(100);
        let rules = RuleSet::compile(&f.catalog.to_source_with_strategy())
            .unwrap_or_else(|e| panic!("the scripted catalog does not compile:\n{e}"));
        let engine = Engine::new(rules);
        let schema = engine.schema();
        let requests: Vec<DecisionRequest> = f
            .customers
            .iter()
            .map(|c| c.request(&f.catalog, &schema, false))
            .collect();
        for r in &requests {
            let d = engine.decide(r).expect("decide");
            assert!(d.diagnostics().is_empty(), "{:?}", d.diagnostics());
        }
        bench_requests(
            &mut g,
            BenchmarkId::new("strategy", 100),
            &engine,
            &requests,
        );
        // The same hooks run by rhai's interpreter (`lower = false`).
        let interpreted = Engine::new(
            RuleSet::compile(&interpreted(f.catalog.to_source_with_strategy()))
                .expect("compiles without lowering"),
        );
        bench_requests(
            &mut g,
            BenchmarkId::new("strategy_rhai", 100),
            &interpreted,
            &requests,
        );
    }
    // The log, and (with the `kafka` feature) the log shipped to Kafka from
    // inside the engine: librdkafka's mock cluster in this process.
    let shipped: &[bool] = if cfg!(feature = "kafka") {
        &[false, true]
    } else {
        &[false]
    };
    for &ship in shipped {
        let f = fixture(100);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = LogConfig::new(dir.path().join("decisions.jsonl"));
        // Rotate early and keep one old file: a long run must not fill the disk.
        log.max_bytes = 32 << 20;
        log.keep_files = 1;
        if ship {
            let mut to = nextbest::audit::ShipOptions::new("127.0.0.1:9", "decisions");
            to.properties
                .insert("test.mock.num.brokers".into(), "3".into());
            log.ship = Some(to);
        }
        let mut config = EngineConfig::default();
        config.decision_log = Some(log);
        let engine = Engine::try_with_config(
            RuleSet::compile(&f.catalog.to_source()).expect("compiles"),
            config,
        )
        .expect("the log opens");
        let name = if ship { "log_ship" } else { "log_file" };
        bench_requests(&mut g, BenchmarkId::new(name, 100), &engine, &f.requests);
        engine.flush().expect("flush");
    }
    for (name, dir) in rule_dirs() {
        match support::shipped(&dir) {
            Ok((engine, requests)) => {
                bench_requests(&mut g, BenchmarkId::new("rules", &name), &engine, &requests);
                let Some(source) = RuleSource::from_dir(&dir)
                    .ok()
                    .filter(|s| support::main_file(s).contains("[strategy]"))
                else {
                    continue;
                };
                // Its strategy run by rhai's interpreter, and no strategy
                // at all (the derived attributes then stay missing, so the
                // decisions differ: this is the cost of the hooks).
                for (variant, source) in [
                    ("rules_rhai", interpreted(source.clone())),
                    ("rules_no_strategy", without_strategy(source)),
                ] {
                    let engine = Engine::new(RuleSet::compile(&source).expect("variant compiles"));
                    bench_requests(&mut g, BenchmarkId::new(variant, &name), &engine, &requests);
                }
            }
            Err(why) => eprintln!("decide/rules/{name}: skipped ({why})"),
        }
    }
    g.finish();
}

/// `source` with its strategy run by rhai's interpreter (`lower = false`).
fn interpreted(source: RuleSource) -> RuleSource {
    let main = support::main_file(&source).replace("[strategy]\n", "[strategy]\nlower = false\n");
    source.file("ruleset.toml", main)
}

/// `source` without its strategy ([`support::without_strategy`]).
fn without_strategy(source: RuleSource) -> RuleSource {
    let main = support::without_strategy(&support::main_file(&source));
    source.file("ruleset.toml", main)
}

/// Every `rules/*/` directory with a `customers.jsonl` population.
fn rule_dirs() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let Ok(entries) = std::fs::read_dir(&root) else {
        eprintln!("decide/rules: skipped ({} does not exist)", root.display());
        return Vec::new();
    };
    let mut dirs: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("ruleset.toml").is_file())
        .filter(|p| {
            let has = p.join("customers.jsonl").is_file();
            if !has {
                eprintln!("decide/rules: skipped {} (no customers.jsonl)", p.display());
            }
            has
        })
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, p)
        })
        .collect();
    dirs.sort();
    dirs
}

fn floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    for n in SIZES {
        let f = fixture(n);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut i = 0usize;
            b.iter(|| {
                let cust = &f.customers[i % f.customers.len()];
                i = i.wrapping_add(1);
                black_box(floor_decide(black_box(&f.catalog), black_box(cust)))
            })
        });
    }
    g.finish();
}

fn rhai_naive(c: &mut Criterion) {
    let mut g = c.benchmark_group("rhai_naive");
    for n in [10, 100, 1000] {
        let f = fixture(n);
        let naive = RhaiNaive::new(&f.catalog);
        let mut scopes: Vec<rhai::Scope<'static>> =
            f.customers.iter().map(PlainCustomer::scope).collect();
        check_rhai(&f.catalog, &naive, &f.customers, &mut scopes);
        eprintln!(
            "rhai_naive/{n}: rhai == floor for all {} customers",
            f.customers.len()
        );
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut i = 0usize;
            b.iter(|| {
                let k = i % f.customers.len();
                i = i.wrapping_add(1);
                let cust = &f.customers[k];
                let limit = f.catalog.channels[cust.channel].limit;
                black_box(naive.decide(&f.catalog, &mut scopes[k], cust.channel, limit))
            })
        });
    }
    g.finish();
}

fn decide_json(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide_json");
    let n = 100;
    let f = fixture(n);
    let lines: Vec<String> = f
        .customers
        .iter()
        .map(|c| c.request_json(&f.catalog))
        .collect();
    for (line, req) in lines.iter().zip(&f.requests) {
        let a = f
            .engine
            .decide_json(line)
            .expect("decide_json")
            .action_ids()
            .join(",");
        let b = f.engine.decide(req).expect("decide").action_ids().join(",");
        assert_eq!(
            a, b,
            "the JSON path decides differently from the typed path"
        );
    }
    g.bench_function(BenchmarkId::from_parameter(n), |b| {
        let mut i = 0usize;
        b.iter(|| {
            let line = &lines[i % lines.len()];
            i = i.wrapping_add(1);
            let d = f.engine.decide_json(black_box(line)).expect("decide_json");
            black_box(d.to_json())
        })
    });
    g.finish();
}

/// `nb_decide` on the same JSON lines as `decide_json`: the C ABI's own
/// cost is the difference.
fn nb_decide(c: &mut Criterion) {
    use capi as ffi;
    use capi::{NbBuf, NbEngine};
    let f = fixture(100);
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in f.catalog.to_source().files() {
        let to = dir.path().join(path);
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&to, text).expect("write");
    }
    let config = serde_json::json!({ "rules_dir": dir.path() }).to_string();
    let lines: Vec<String> = f
        .customers
        .iter()
        .map(|c| c.request_json(&f.catalog))
        .collect();
    let mut engine: *mut NbEngine = std::ptr::null_mut();
    // SAFETY: valid buffers; the handle is freed below, once, when no call
    // is in flight.
    let status = unsafe {
        ffi::nb_engine_open(
            config.as_ptr(),
            config.len(),
            &mut engine,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(status as i32, 0, "nb_engine_open");
    let mut g = c.benchmark_group("nb_decide");
    g.bench_function(BenchmarkId::from_parameter(100), |b| {
        let mut i = 0usize;
        b.iter(|| {
            let line = &lines[i % lines.len()];
            i = i.wrapping_add(1);
            let mut out = NbBuf::EMPTY;
            // SAFETY: a live handle and valid buffers; `out` is freed once.
            unsafe {
                let status = ffi::nb_decide(
                    engine,
                    black_box(line.as_ptr()),
                    line.len(),
                    &mut out,
                    std::ptr::null_mut(),
                );
                assert_eq!(status as i32, 0);
                black_box(&out);
                ffi::nb_buf_free(&mut out);
            }
        })
    });
    g.finish();
    // SAFETY: no call is in flight.
    unsafe { ffi::nb_engine_free(engine) };
}

/// Decisions/s with 1 and 2 threads on one shared engine: each sample
/// splits its decisions between the threads and times the whole batch.
fn throughput(c: &mut Criterion) {
    let f = fixture(100);
    let mut g = c.benchmark_group("throughput");
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter_custom(|iters| {
                let per = (iters as usize).div_ceil(threads);
                let started = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        s.spawn(move || {
                            for i in 0..per {
                                let r = &f.requests[(i + t * 101) % f.requests.len()];
                                black_box(f.engine.decide(r).expect("decide"));
                            }
                        });
                    }
                });
                // Per decision, so that criterion's element throughput is
                // decisions/s of the whole process.
                started
                    .elapsed()
                    .mul_f64(iters as f64 / (per * threads) as f64)
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

fn main() {
    let started = SystemTime::now();
    let mut c = config();
    decide(&mut c);
    floor(&mut c);
    rhai_naive(&mut c);
    decide_json(&mut c);
    nb_decide(&mut c);
    throughput(&mut c);
    c.final_summary();
    summary(started);
}

/// On-CPU nanoseconds of the calling thread (Linux: the first field of
/// /proc/thread-self/schedstat), if known.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Wall-clock scaling depends on what else the machine runs; scaling per
/// CPU-second does not. Decisions per on-CPU second of each thread, 2
/// threads against 1: 1.0 means the threads do not slow each other down
/// (no shared cache lines written per decision, no allocator contention).
fn cpu_scaling() -> String {
    let f = fixture(100);
    let per_thread = 400_000;
    let rate = |threads: usize| -> Option<f64> {
        let cpu: Vec<Option<u64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let start = thread_cpu_ns()?;
                        for i in 0..per_thread {
                            let r = &f.requests[(i + t * 101) % f.requests.len()];
                            black_box(f.engine.decide(r).expect("decide"));
                        }
                        Some(thread_cpu_ns()? - start)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let total: u64 = cpu.into_iter().sum::<Option<u64>>()?;
        Some((per_thread * threads) as f64 / (total as f64 / 1e9))
    };
    match (rate(1), rate(2)) {
        (Some(one), Some(two)) => format!(
            "per on-CPU second: 1 thread {one:.0} decisions, 2 threads {two:.0} decisions: efficiency {:.2} (2 threads on 2 free cores: {:.2}x)",
            two / one,
            2.0 * two / one
        ),
        _ => "per on-CPU second: unknown (no /proc/thread-self/schedstat)".into(),
    }
}

/// Ratios of the medians measured in this run (nothing with `--test`).
fn summary(since: SystemTime) {
    let m = |id: &str| median(id, since);
    let mut lines = Vec::new();
    for n in SIZES {
        let ours = m(&format!("decide/catalog/{n}"));
        if let (Some(o), Some(fl)) = (ours, m(&format!("floor/{n}"))) {
            lines.push(format!(
                "{n:>6} actions: ours {o:>10.0} ns  floor {fl:>10.0} ns  ours/floor {:>5.2}",
                o / fl
            ));
        }
        if let (Some(o), Some(r)) = (ours, m(&format!("rhai_naive/{n}"))) {
            lines.push(format!(
                "{n:>6} actions: rhai {r:>10.0} ns  ours  {o:>10.0} ns  rhai/ours  {:>5.1}",
                r / o
            ));
        }
    }
    for n in SIZES {
        if let (Some(o), Some(e), Some(r)) = (
            m(&format!("decide/catalog/{n}")),
            m(&format!("decide/catalog_explain/{n}")),
            m(&format!("decide/catalog_explain_read/{n}")),
        ) {
            lines.push(format!(
                "{n:>6} actions: explain {e:>10.0} ns ({:.2}x plain), explain and read it all {r:>10.0} ns ({:.2}x)",
                e / o,
                r / o
            ));
        }
    }
    if let (Some(a), Some(b)) = (m("decide/catalog/1000"), m("decide/catalog/10000")) {
        lines.push(format!(
            "cost per additional action (1,000 -> 10,000 actions): {:.1} ns",
            (b - a) / 9000.0
        ));
    }
    if let (Some(c), Some(s), Some(r)) = (
        m("decide/catalog/100"),
        m("decide/strategy/100"),
        m("decide/strategy_rhai/100"),
    ) {
        lines.push(format!(
            "strategy, 100 actions: hooks add {:.2} us lowered, {:.2} us in rhai's interpreter ({:.1}x)",
            (s - c) / 1e3,
            (r - c) / 1e3,
            (r - c) / (s - c)
        ));
    }
    for (name, _) in rule_dirs() {
        if let (Some(w), Some(r), Some(n)) = (
            m(&format!("decide/rules/{name}")),
            m(&format!("decide/rules_rhai/{name}")),
            m(&format!("decide/rules_no_strategy/{name}")),
        ) {
            lines.push(format!(
                "rules/{name}: its strategy adds {:.2} us lowered, {:.2} us in rhai's interpreter",
                (w - n) / 1e3,
                (r - n) / 1e3
            ));
        }
    }
    if let (Some(j), Some(n)) = (m("decide_json/100"), m("nb_decide/100")) {
        lines.push(format!(
            "decide_json {j:.0} ns, nb_decide {n:.0} ns: the C ABI adds {:.0} ns",
            n - j
        ));
    }
    if let (Some(one), Some(two)) = (m("throughput/threads/1"), m("throughput/threads/2")) {
        lines.push(format!(
            "throughput: 1 thread {:.0} decisions/s, 2 threads {:.0} decisions/s: {:.2}x",
            1e9 / one,
            1e9 / two,
            one / two
        ));
    }
    if lines.iter().any(|l| l.starts_with("throughput")) {
        lines.push(cpu_scaling());
    }
    if !lines.is_empty() {
        println!("\nratios of medians measured in this run:");
        for l in lines {
            println!("  {l}");
        }
    }
}
