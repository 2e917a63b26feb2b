//! Fixed decision workloads for the instruction-count gate (`.ci/icount`).
//!
//! Each workload builds its engine and requests from fixed seeds, decides
//! once for every customer to warm up (thread-locals, scratch buffers,
//! lazily built tables), then calls [`measured`] to decide `DECISIONS`
//! more times. `.ci/icount` runs one workload per process under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=*measured*`,
//! so only instructions executed inside `measured` on the deciding thread
//! are counted (not setup, not the decision log's writer thread), and
//! divides by the number of decisions this program prints. The `writer/*`
//! workloads count the decision log's writer instead: the instructions
//! inside `write_record` (formatting and masking one record), divided by
//! the records written.
//!
//! Instruction counts are exact and repeatable where wall-clock time on a
//! shared machine is not: the same binary on the same inputs executes the
//! same instructions. Two things would break that and are pinned here:
//! rhai's hash seed (random per process by default; fixed before any rhai
//! engine exists) and the strategy's wall-clock budget (set far above what
//! the hooks need, so it never drops a hook).
//!
//! ```text
//! icount --list           the workloads, one per line
//! icount WORKLOAD         run one (under callgrind, from .ci/icount)
//! icount --test           every workload once, natively (cargo bench -- --test)
//! ```

/// The C ABI (the `nextbest-capi` crate builds it as a static and a shared
/// library only, so its source is compiled into this binary to be called
/// from Rust).
#[path = "../crates/nextbest-capi/src/lib.rs"]
#[allow(dead_code, unused_imports)]
mod capi;

use nextbest::audit::{CallbackSink, LogDetail, LogOptions};
use nextbest::{DecisionRequest, Engine, EngineConfig, RuleSet, RuleSource};
use std::hint::black_box;

#[allow(dead_code, unused_imports)]
mod support;
use support::{population, Catalog, PlainCustomer};

const CATALOG_SEED: u64 = 2026;
const CUSTOMER_SEED: u64 = 1123;
const CUSTOMERS: usize = 256;
/// Decisions counted per workload: every customer twice.
const DECISIONS: usize = 2 * CUSTOMERS;

/// What one workload does per decision.
#[derive(Clone, Copy)]
enum Kind {
    /// `Engine::decide` on a typed request, explain off.
    Decide,
    /// The same with explain on.
    Explain,
    /// With explain on, and every entry of the explanation read
    /// (`support::read_explanation`).
    ExplainRead,
    /// With the scripted strategy (derive, adjust, select).
    Strategy,
    /// With a logistic model of 20 inputs (`support::MODEL`) that no rule
    /// reads, without (`false`) or with (`true`) the scripted strategy:
    /// against `decide/N` and `strategy/N`, what a model costs.
    Model(bool),
    /// With a decision log (callback sink; the writer thread is not counted).
    Log,
    /// With a decision log to a file (the writer thread is not counted);
    /// `true`: shipped to Kafka from inside the engine (librdkafka's mock
    /// cluster in this process; the shipper's threads are not counted):
    /// what shipping adds on the deciding thread.
    LogFile(bool),
    /// The decision log's writer: `.ci/icount` counts the instructions in
    /// the writer thread's record formatting (`write_record`, masking
    /// included) instead of the deciding thread's, per record, at a
    /// candidate detail. On the catalog (`Some(name)`: on a shipped rule
    /// set, its strategy included).
    Writer(Option<&'static str>, LogDetail),
    /// `decide_json` on a JSON line, then the decision serialised to JSON.
    Json,
    /// `nb_decide` through the C ABI, then `nb_buf_free`.
    Ffi,
    /// With three contact policies, each customer having this many
    /// outcomes in their interaction history.
    History(usize),
    /// A shipped rule set (`rules/NAME`, with its strategy) on the first
    /// customers of its population.
    Shipped(&'static str),
    /// The same without its strategy (as `decide/rules_no_strategy/NAME`
    /// in the criterion bench): the hooks' cost is the difference.
    ShippedNoStrategy(&'static str),
    /// The hand-written floor (`support::floor_decide`) on the same catalog
    /// and customers as `decide/N`: the reference for "ours / floor".
    Floor,
}

const WORKLOADS: &[(&str, Kind, usize)] = &[
    ("decide/10", Kind::Decide, 10),
    ("decide/100", Kind::Decide, 100),
    ("decide/1000", Kind::Decide, 1000),
    ("decide/10000", Kind::Decide, 10_000),
    ("floor/100", Kind::Floor, 100),
    ("history/0", Kind::History(0), 100),
    ("history/50", Kind::History(50), 100),
    ("explain/100", Kind::Explain, 100),
    ("explain/1000", Kind::Explain, 1000),
    ("explain_read/100", Kind::ExplainRead, 100),
    ("explain_read/1000", Kind::ExplainRead, 1000),
    ("strategy/100", Kind::Strategy, 100),
    ("model/100", Kind::Model(false), 100),
    ("strategy_model/100", Kind::Model(true), 100),
    ("log/100", Kind::Log, 100),
    ("log_file/100", Kind::LogFile(false), 100),
    #[cfg(feature = "kafka")]
    ("log_ship/100", Kind::LogFile(true), 100),
    ("writer/100", Kind::Writer(None, LogDetail::All), 100),
    (
        "writer/retail_bank",
        Kind::Writer(Some("retail_bank"), LogDetail::All),
        0,
    ),
    (
        "writer/retail_bank/stages",
        Kind::Writer(Some("retail_bank"), LogDetail::Stages),
        0,
    ),
    ("json/100", Kind::Json, 100),
    ("ffi/100", Kind::Ffi, 100),
    ("rules/retail_bank", Kind::Shipped("retail_bank"), 0),
    ("rules/telco_care", Kind::Shipped("telco_care"), 0),
    (
        "rules_no_strategy/retail_bank",
        Kind::ShippedNoStrategy("retail_bank"),
        0,
    ),
    (
        "rules_no_strategy/telco_care",
        Kind::ShippedNoStrategy("telco_care"),
        0,
    ),
];

fn main() {
    // Before anything creates a rhai engine (the catalog's strategy does).
    rhai::config::hashing::set_hashing_seed(Some([1, 2, 3, 4]))
        .expect("rhai's hashing seed is set before any rhai engine exists");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let selected: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _, _) in WORKLOADS {
            println!("{name}");
        }
        return;
    }
    if args.iter().any(|a| a == "--test") || selected.is_empty() {
        // `cargo bench` (without a workload) and `cargo bench -- --test`:
        // prove every workload runs; counting is .ci/icount's job.
        for &(name, kind, n) in WORKLOADS {
            let decided = run(kind, n, CUSTOMERS / 8);
            println!("{name}: ok ({decided} decisions; counts: .ci/icount)");
        }
        return;
    }
    for name in selected {
        let Some(&(_, kind, n)) = WORKLOADS.iter().find(|w| w.0 == name) else {
            eprintln!("unknown workload `{name}` (icount --list shows them)");
            std::process::exit(2);
        };
        let decided = run(kind, n, DECISIONS);
        println!("{name} decisions={decided}");
    }
}

/// The counted region. `.ci/icount` toggles callgrind's collection on entry
/// and exit of this function, so it must never be inlined.
#[inline(never)]
fn measured(decisions: usize, decide_one: &mut dyn FnMut(usize)) {
    for i in 0..decisions {
        decide_one(i);
    }
}

/// Set up a workload, warm it up, and run `decisions` decisions inside
/// [`measured`]. Returns how many decisions were counted.
fn run(kind: Kind, actions: usize, decisions: usize) -> usize {
    if let Kind::Writer(shipped, detail) = kind {
        return writer_loop(shipped, detail, actions, decisions);
    }
    if let Kind::ShippedNoStrategy(name) = kind {
        let dir = shipped_dir(name);
        let (engine, mut reqs) =
            support::shipped_with(&dir, |main| support::without_strategy(&main))
                .unwrap_or_else(|e| panic!("rules/{name}: {e}"));
        reqs.truncate(CUSTOMERS);
        return decide_loop(&engine, &reqs, decisions);
    }
    if let Kind::Shipped(name) = kind {
        let dir = shipped_dir(name);
        let (engine, mut reqs) = support::shipped_with(&dir, generous_budget)
            .unwrap_or_else(|e| panic!("rules/{name}: {e}"));
        let current = engine.current();
        for (hook, why) in current.rules().strategy_hooks() {
            assert!(
                why.is_none(),
                "rules/{name}: {hook} is not lowered: {why:?}"
            );
        }
        reqs.truncate(CUSTOMERS);
        let n = decide_loop(&engine, &reqs, decisions);
        // The shipped strategies run lowered, every call: a change that
        // hands calls back to rhai shows here, not only as a slower count.
        let fallbacks = engine.current().rules().strategy_fallbacks();
        assert_eq!(fallbacks, 0, "rules/{name}: hook calls handed back to rhai");
        return n;
    }
    let catalog = Catalog::generate(actions, CATALOG_SEED);
    let customers = population(CUSTOMERS, CUSTOMER_SEED);
    match kind {
        Kind::Decide | Kind::Explain => {
            let engine = catalog.engine();
            let reqs = requests(&engine, &catalog, &customers, matches!(kind, Kind::Explain));
            decide_loop(&engine, &reqs, decisions)
        }
        Kind::ExplainRead => {
            let engine = catalog.engine();
            let reqs = requests(&engine, &catalog, &customers, true);
            decide_loop_reading(&engine, &reqs, decisions, support::read_explanation)
        }
        Kind::History(events) => {
            let engine = history_engine(&catalog, &customers, events);
            let reqs = requests(&engine, &catalog, &customers, false);
            decide_loop(&engine, &reqs, decisions)
        }
        Kind::Strategy => {
            let rules = RuleSet::compile(&catalog.to_source_with_strategy())
                .unwrap_or_else(|e| panic!("the scripted catalog does not compile:\n{e}"));
            let engine = Engine::new(rules);
            let reqs = requests(&engine, &catalog, &customers, false);
            let d = engine.decide(&reqs[0]).expect("decide");
            assert!(
                d.diagnostics().is_empty(),
                "the strategy failed: {:?}",
                d.diagnostics()
            );
            decide_loop(&engine, &reqs, decisions)
        }
        Kind::Model(scripted) => {
            let source = if scripted {
                catalog.to_source_with_strategy()
            } else {
                catalog.to_source()
            };
            let rules = RuleSet::compile(&support::with_model(source))
                .unwrap_or_else(|e| panic!("the catalog with a model does not compile:\n{e}"));
            assert_eq!(rules.model_versions().count(), 1);
            let engine = Engine::new(rules);
            let reqs = requests(&engine, &catalog, &customers, false);
            decide_loop(&engine, &reqs, decisions)
        }
        Kind::Log => {
            let rules = RuleSet::compile(&catalog.to_source()).expect("the catalog compiles");
            let engine = discarding_log(rules, LogDetail::default());
            let reqs = requests(&engine, &catalog, &customers, false);
            let n = decide_loop(&engine, &reqs, decisions);
            engine.flush().expect("flush");
            n
        }
        Kind::LogFile(ship) => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let mut log = nextbest::audit::LogConfig::new(dir.path().join("d.jsonl"));
            if ship {
                let mut to = nextbest::audit::ShipOptions::new("127.0.0.1:9", "decisions");
                to.properties
                    .insert("test.mock.num.brokers".into(), "3".into());
                log.ship = Some(to);
            }
            let mut config = EngineConfig::default();
            config.decision_log = Some(log);
            let rules = RuleSet::compile(&catalog.to_source()).expect("the catalog compiles");
            let engine = Engine::try_with_config(rules, config).expect("the log opens");
            let reqs = requests(&engine, &catalog, &customers, false);
            let n = decide_loop(&engine, &reqs, decisions);
            engine.flush().expect("flush");
            n
        }
        Kind::Json => {
            let engine = catalog.engine();
            let lines: Vec<String> = customers.iter().map(|c| c.request_json(&catalog)).collect();
            let mut once = |i: usize| {
                let d = engine
                    .decide_json(black_box(&lines[i % lines.len()]))
                    .expect("decide_json");
                black_box(d.to_json());
            };
            (0..lines.len()).for_each(&mut once);
            measured(decisions, &mut once);
            decisions
        }
        Kind::Ffi => ffi_loop(&catalog, &customers, decisions),
        Kind::Floor => {
            let mut once = |i: usize| {
                let c = &customers[i % customers.len()];
                black_box(support::floor_decide(black_box(&catalog), black_box(c)));
            };
            (0..customers.len()).for_each(&mut once);
            measured(decisions, &mut once);
            decisions
        }
        Kind::Shipped(_) | Kind::ShippedNoStrategy(_) | Kind::Writer(..) => {
            unreachable!("handled above")
        }
    }
}

/// The writer workloads: decisions logged at `detail` to a sink that
/// discards them. Every record the writer formats is counted (the toggle
/// is on `write_record`, warm-up included, so first-use tables are spread
/// over all of them): returns how many it wrote.
fn writer_loop(
    shipped: Option<&str>,
    detail: LogDetail,
    actions: usize,
    decisions: usize,
) -> usize {
    let (rules, reqs) = match shipped {
        Some(name) => {
            let dir = shipped_dir(name);
            let (engine, mut reqs) = support::shipped_with(&dir, generous_budget)
                .unwrap_or_else(|e| panic!("rules/{name}: {e}"));
            drop(engine);
            reqs.truncate(CUSTOMERS);
            let source = RuleSource::from_dir(&dir).expect("the rule set loads");
            let main = generous_budget(support::main_file(&source));
            let rules = RuleSet::compile(&source.file("ruleset.toml", main)).expect("compiles");
            (rules, reqs)
        }
        None => {
            let catalog = Catalog::generate(actions, CATALOG_SEED);
            let customers = population(CUSTOMERS, CUSTOMER_SEED);
            let engine = catalog.engine();
            let reqs = requests(&engine, &catalog, &customers, false);
            let rules = RuleSet::compile(&catalog.to_source()).expect("the catalog compiles");
            (rules, reqs)
        }
    };
    let engine = discarding_log(rules, detail);
    let n = decide_loop(&engine, &reqs, decisions);
    engine.flush().expect("flush");
    let written = engine.stats().log.map_or(0, |s| s.written) as usize;
    assert_eq!(written, n + reqs.len(), "every decision was logged");
    written
}

/// An engine deciding on `rules` whose decision log (default options but
/// for `detail`) hands every record to a callback that discards it.
fn discarding_log(rules: RuleSet, detail: LogDetail) -> Engine {
    Engine::with_sink(
        rules,
        EngineConfig::default(),
        Box::new(CallbackSink(|record: &str| {
            black_box(record);
        })),
        LogOptions {
            detail,
            ..LogOptions::default()
        },
    )
    .expect("the log starts")
}

/// A shipped rule set's `ruleset.toml` with the strategy's wall-clock
/// budget raised far above what the hooks need (under callgrind they run
/// tens of times slower), so that it never drops a hook and the counts
/// repeat.
fn generous_budget(main: String) -> String {
    main.lines()
        .map(|l| {
            if l.trim_start().starts_with("time_budget_us") {
                "time_budget_us = 10000000"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `rules/NAME` in this crate.
fn shipped_dir(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rules")
        .join(name)
}

fn requests(
    engine: &Engine,
    catalog: &Catalog,
    customers: &[PlainCustomer],
    explain: bool,
) -> Vec<DecisionRequest> {
    let schema = engine.schema();
    customers
        .iter()
        .map(|c| c.request(catalog, &schema, explain))
        .collect()
}

/// Contact policies appended to the catalog's ruleset.toml.
const POLICIES: &str = r#"
[[contact_policies]]
name = "ignored_three_times"
outcomes = ["no_response"]
count = 3
within = "7d"
suppress_for = "14d"

[[contact_policies]]
name = "rejected_group_twice"
outcomes = ["rejected"]
count = 2
within = "30d"
suppress_for = "30d"
per = "group"

[[contact_policies]]
name = "seen_five_times"
outcomes = ["impression", "clicked"]
count = 5
within = "14d"
"#;

/// The catalog with [`POLICIES`], and `events` outcomes per customer over
/// the 30 days before `NOW` (actions, kinds and times from a fixed seed).
fn history_engine(catalog: &Catalog, customers: &[PlainCustomer], events: usize) -> Engine {
    use nextbest::{Outcome, OutcomeKind, Timestamp};
    let mut src = RuleSource::new();
    for (path, text) in catalog.to_source().files() {
        if path.ends_with("ruleset.toml") {
            src = src.file(path, format!("{text}\n{POLICIES}"));
        } else {
            src = src.file(path, text);
        }
    }
    let engine = Engine::new(
        RuleSet::compile(&src).unwrap_or_else(|e| panic!("the catalog with policies:\n{e}")),
    );
    let kinds = [
        OutcomeKind::Impression,
        OutcomeKind::NoResponse,
        OutcomeKind::Clicked,
        OutcomeKind::Impression,
        OutcomeKind::Rejected,
        OutcomeKind::Accepted,
    ];
    let now = support::now().unix_seconds();
    let mut rng = support::SplitMix64::new(CUSTOMER_SEED ^ 0x4849_5354);
    for c in customers {
        let channel = catalog.channels[c.channel].name;
        for _ in 0..events {
            // An action offered on the customer's channel.
            let a = loop {
                let a = &catalog.actions[rng.below(catalog.actions.len() as u64) as usize];
                if a.channels & (1 << c.channel) != 0 {
                    break a;
                }
            };
            engine
                .record_outcome(&Outcome {
                    decision_id: None,
                    customer_id: c.id.clone(),
                    action: a.id.clone(),
                    channel: channel.to_string(),
                    kind: kinds[rng.below(kinds.len() as u64) as usize],
                    timestamp: Some(Timestamp(now - rng.below(30 * 86_400) as i64)),
                })
                .expect("outcome");
        }
    }
    engine
}

fn decide_loop(engine: &Engine, reqs: &[DecisionRequest], decisions: usize) -> usize {
    decide_loop_reading(engine, reqs, decisions, |_| 0)
}

/// [`decide_loop`], with `read` run on each decision (counted too).
fn decide_loop_reading(
    engine: &Engine,
    reqs: &[DecisionRequest],
    decisions: usize,
    read: impl Fn(&nextbest::Decision) -> usize,
) -> usize {
    let mut once = |i: usize| {
        let d = engine
            .decide(black_box(&reqs[i % reqs.len()]))
            .expect("decide");
        black_box(read(&d));
        black_box(d);
    };
    (0..reqs.len()).for_each(&mut once);
    measured(decisions, &mut once);
    decisions
}

/// The C ABI round trip: the catalog written to a temporary rule
/// directory, opened with `nb_engine_open`, JSON requests through
/// `nb_decide`.
fn ffi_loop(catalog: &Catalog, customers: &[PlainCustomer], decisions: usize) -> usize {
    use capi::{nb_buf_free, nb_decide, nb_engine_free, nb_engine_open, NbBuf, NbEngine};
    let dir = tempfile::tempdir().expect("tempdir");
    write_source(&catalog.to_source(), dir.path());
    let config = serde_json::json!({ "rules_dir": dir.path() }).to_string();
    let lines: Vec<String> = customers.iter().map(|c| c.request_json(catalog)).collect();
    let mut engine: *mut NbEngine = std::ptr::null_mut();
    let mut err = NbBuf::EMPTY;
    // SAFETY: valid pointers and lengths; `engine` is freed below, once.
    let status = unsafe { nb_engine_open(config.as_ptr(), config.len(), &mut engine, &mut err) };
    assert_eq!(status as i32, 0, "nb_engine_open failed");
    let mut once = |i: usize| {
        let line = &lines[i % lines.len()];
        let mut out = NbBuf::EMPTY;
        // SAFETY: a live handle, a valid request buffer, fresh out buffer.
        let status = unsafe {
            nb_decide(
                engine,
                line.as_ptr(),
                line.len(),
                &mut out,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(status as i32, 0, "nb_decide failed");
        black_box(&out);
        // SAFETY: `out` came from nb_decide and is freed once.
        unsafe { nb_buf_free(&mut out) };
    };
    (0..lines.len()).for_each(&mut once);
    measured(decisions, &mut once);
    // SAFETY: no call is in flight; freed once.
    unsafe { nb_engine_free(engine) };
    decisions
}

fn write_source(src: &RuleSource, dir: &std::path::Path) {
    for (path, text) in src.files() {
        let to = dir.join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("creating the rule directory");
        }
        std::fs::write(&to, text).expect("writing a rule file");
    }
}
