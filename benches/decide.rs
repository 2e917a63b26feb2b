//! Decision latency benchmarks.
//!
//! - `decide/catalog/{10,100,1000,10000}`: typed contexts built outside the
//!   timing loop, explain off, on a generated catalog (benches/support).
//! - `decide/catalog_explain/{100,1000}`: the same with explain on.
//! - `decide/retail_bank`, `decide/telco_care`: the shipped rule sets with
//!   their customer populations, when they exist.
//! - `floor/{100,1000}`: a hand-written Rust decision over plain structs.
//! - `rhai_naive/{100,1000}`: rhai evaluating the same condition strings.
//! - `decide_json/100`: JSON request in, JSON decision out.
//!
//! Before timing, the engine, the floor and the rhai engine are checked to
//! choose the same actions for every generated customer. Customers are
//! taken round-robin so branch predictors cannot learn one customer.
//!
//! `cargo bench --bench decide -- --noplot`; CI runs `-- --test` (each
//! bench once).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nextbest::{DecisionRequest, Engine};

mod support;
use support::{
    check_floor, check_rhai, floor_decide, population, Catalog, PlainCustomer, RhaiNaive,
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
    g.bench_function(id, |b| {
        let mut i = 0usize;
        b.iter(|| {
            let r = &requests[i % requests.len()];
            i = i.wrapping_add(1);
            black_box(engine.decide(black_box(r)).expect("decide"))
        })
    });
}

fn decide(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    for n in [10, 100, 1000, 10_000] {
        let f = fixture(n);
        bench_requests(
            &mut g,
            BenchmarkId::new("catalog", n),
            &f.engine,
            &f.requests,
        );
    }
    for n in [100, 1000] {
        let f = fixture(n);
        bench_requests(
            &mut g,
            BenchmarkId::new("catalog_explain", n),
            &f.engine,
            &f.explained,
        );
    }
    for name in ["retail_bank", "telco_care"] {
        match shipped(name) {
            Ok((engine, requests)) => {
                bench_requests(
                    &mut g,
                    BenchmarkId::from_parameter(name),
                    &engine,
                    &requests,
                );
            }
            Err(why) => eprintln!("decide/{name}: skipped ({why})"),
        }
    }
    g.finish();
}

/// A shipped rule set and its population as requests on its first inbound
/// channel (call_center when it has one), or why it cannot be benchmarked.
fn shipped(name: &str) -> Result<(Engine, Vec<DecisionRequest>), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("rules")
        .join(name);
    if !dir.join("ruleset.toml").is_file() {
        return Err(format!("{}/ruleset.toml does not exist", dir.display()));
    }
    let customers = dir.join("customers.jsonl");
    let text =
        std::fs::read_to_string(&customers).map_err(|e| format!("{}: {e}", customers.display()))?;
    let engine = Engine::from_dir(&dir).map_err(|e| format!("does not load: {e}"))?;
    let channels: Vec<String> = engine
        .current()
        .rules()
        .channel_names()
        .map(str::to_string)
        .collect();
    let channel = channels
        .iter()
        .find(|c| c.as_str() == "call_center")
        .or(channels.first())
        .ok_or("no channels")?
        .clone();
    let schema = engine.schema();
    let mut requests = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("customers.jsonl:{}: {e}", i + 1))?;
        let obj = v
            .as_object_mut()
            .ok_or(format!("customers.jsonl:{}: not an object", i + 1))?;
        obj.entry("channel")
            .or_insert_with(|| channel.clone().into());
        obj.insert("now".into(), support::NOW.into());
        let line = v.to_string();
        let req = DecisionRequest::from_json(&schema, &line)
            .map_err(|e| format!("customers.jsonl:{}: {e}", i + 1))?;
        engine
            .decide(&req)
            .map_err(|e| format!("customers.jsonl:{}: {e}", i + 1))?;
        requests.push(req);
    }
    if requests.is_empty() {
        return Err("customers.jsonl is empty".into());
    }
    eprintln!(
        "decide/{name}: {} actions, {} customers, channel {channel}",
        engine.current().rules().action_ids().count(),
        requests.len()
    );
    Ok((engine, requests))
}

fn floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    for n in [100, 1000] {
        let f = fixture(n);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut i = 0usize;
            b.iter(|| {
                let cust = &f.customers[i % f.customers.len()];
                i = i.wrapping_add(1);
                let limit = f.catalog.channels[cust.channel].limit;
                black_box(floor_decide(
                    black_box(&f.catalog),
                    black_box(cust),
                    cust.channel,
                    limit,
                ))
            })
        });
    }
    g.finish();
}

fn rhai_naive(c: &mut Criterion) {
    let mut g = c.benchmark_group("rhai_naive");
    for n in [100, 1000] {
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

fn config() -> Criterion {
    Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = decide, floor, rhai_naive, decide_json
}
criterion_main!(benches);
