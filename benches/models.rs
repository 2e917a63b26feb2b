//! What a predictive model adds to a decision.
//!
//! - `models/none/100`: the generated 100-action catalog (benches/support),
//!   typed contexts, explain off;
//! - `models/logistic20/100`: the same catalog with a logistic model of 20
//!   inputs (7 int and 5 float attributes with coefficients or bins, 4
//!   bools and 4 closed strings with points), scored on every decision
//!   into an attribute no rule reads (so both choose the same actions,
//!   checked before timing): the model's whole cost, the copy of the
//!   context it writes into included;
//! - `models/strategy/100` and `models/strategy_logistic20/100`: the same
//!   pair with the catalog's scripted strategy, whose `derive` copies the
//!   context anyway: the model's evaluation alone.
//!
//! At the end the differences of the medians are printed. The budget
//! (issue 33): at most 100 ns per decision for 20 inputs.
//!
//! `cargo bench --bench models -- --noplot`; `-- --test` runs each once.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion};
use nextbest::{DecisionRequest, Engine, RuleSet, RuleSource};

// Shared with the other benches: most of it is not used here.
#[allow(dead_code)]
mod support;
use support::{median, population, with_model, Catalog, PlainCustomer};

const CATALOG_SEED: u64 = 2026;
const CUSTOMER_SEED: u64 = 1123;
const CUSTOMERS: usize = 256;
const ACTIONS: usize = 100;

fn engine(source: &RuleSource) -> Engine {
    match RuleSet::compile(source) {
        Ok(rules) => Engine::new(rules),
        Err(e) => panic!("the benchmark rule set does not compile:\n{e}"),
    }
}

fn requests(catalog: &Catalog, customers: &[PlainCustomer], e: &Engine) -> Vec<DecisionRequest> {
    let schema = e.schema();
    customers
        .iter()
        .map(|c| c.request(catalog, &schema, false))
        .collect()
}

/// Both engines choose the same actions for every customer (the model's
/// score is read by no rule), and the model scores every one.
fn check_same(a: (&Engine, &[DecisionRequest]), b: (&Engine, &[DecisionRequest])) {
    for (ra, rb) in a.1.iter().zip(b.1) {
        let (da, db) = (
            a.0.decide(ra).expect("decide"),
            b.0.decide(rb).expect("decide"),
        );
        assert_eq!(da.action_ids(), db.action_ids(), "{}", ra.customer_id);
    }
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::generate(ACTIONS, CATALOG_SEED);
    let customers = population(CUSTOMERS, CUSTOMER_SEED);
    let mut g = c.benchmark_group("models");
    let pairs = [
        ("none", "logistic20", catalog.to_source()),
        (
            "strategy",
            "strategy_logistic20",
            catalog.to_source_with_strategy(),
        ),
    ];
    for (plain_id, model_id, source) in pairs {
        let plain = engine(&source);
        let modelled = engine(&with_model(source));
        assert!(modelled.current().rules().model_versions().count() == 1);
        let plain_requests = requests(&catalog, &customers, &plain);
        let model_requests = requests(&catalog, &customers, &modelled);
        check_same((&plain, &plain_requests), (&modelled, &model_requests));
        for (id, e, reqs) in [
            (plain_id, &plain, &plain_requests),
            (model_id, &modelled, &model_requests),
        ] {
            g.bench_function(BenchmarkId::new(id, ACTIONS), |b| {
                let mut i = 0usize;
                b.iter(|| {
                    let r = &reqs[i % reqs.len()];
                    i = i.wrapping_add(1);
                    e.decide(black_box(r)).expect("decide")
                })
            });
        }
    }
    g.finish();
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    let m = |id: &str| median(&format!("models/{id}/{ACTIONS}"), started);
    for (without, with) in [("none", "logistic20"), ("strategy", "strategy_logistic20")] {
        if let (Some(a), Some(b)) = (m(without), m(with)) {
            println!(
                "{with}: {b:.0} ns, {without}: {a:.0} ns: the model adds {:.0} ns per decision",
                b - a
            );
        }
    }
}
