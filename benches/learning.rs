//! What a contextual adaptive model costs a decision.
//!
//! - `learning/beta/100`: 100 actions on one channel, 20 context
//!   attributes, `[learning]` with one Beta posterior per action;
//! - `learning/contextual/100`: the same with `model = "contextual"` over
//!   all 20 attributes as predictors (10 numeric with 4 edges, 5 closed
//!   strings, 5 bools), every model mature (trained first on 20,000
//!   outcomes, so every predictor's ratios are read).
//!
//! The difference of the two medians is the contextual model's cost per
//! decision: the customer's 20 bins once, then 20 ratios per action. The
//! bench prints it at the end.
//!
//! `cargo bench --bench learning -- --noplot`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use nextbest::{
    Context, DecisionRequest, Engine, Outcome, OutcomeKind, RuleSet, RuleSource, Timestamp,
};
use rand::{Rng, SeedableRng};

#[allow(dead_code)] // the median helpers only
mod support;

const ACTIONS: usize = 100;
const CUSTOMERS: usize = 256;
const STRINGS: [&str; 4] = ["a", "b", "c", "d"];

fn rules(contextual: bool) -> RuleSet {
    let mut main = String::from("name = \"learning_bench\"\ndefault_limit = 3\n[schema]\n");
    for i in 0..10 {
        main.push_str(&format!("n{i} = \"int\"\n"));
    }
    for i in 0..5 {
        main.push_str(&format!(
            "s{i} = {{ type = \"string\", values = [\"a\", \"b\", \"c\", \"d\"] }}\n"
        ));
    }
    for i in 0..5 {
        main.push_str(&format!("b{i} = {{ type = \"bool\", default = false }}\n"));
    }
    main.push_str(
        "[channels]\nweb = { direction = \"inbound\", limit = 3 }\n[issues.growth]\n[groups.all]\nissue = \"growth\"\n[learning]\nmode = \"posterior_mean\"\n",
    );
    if contextual {
        let names: Vec<String> = (0..10)
            .map(|i| format!("\"n{i}\""))
            .chain((0..5).map(|i| format!("\"s{i}\"")))
            .chain((0..5).map(|i| format!("\"b{i}\"")))
            .collect();
        main.push_str(&format!(
            "model = \"contextual\"\npredictors = [{}]\nmature_positives = 1\nsnapshot_every = 1000000\n[learning.bins]\n",
            names.join(", ")
        ));
        for i in 0..10 {
            main.push_str(&format!("n{i} = [20, 40, 60, 80]\n"));
        }
    }
    let mut actions = String::new();
    for a in 0..ACTIONS {
        actions.push_str(&format!(
            "[[actions]]\nid = \"A{a}\"\ngroup = \"all\"\nchannels = [\"web\"]\nvalue = {}\nstarting_propensity = {}\ntreatment = \"T\"\n\n",
            1.0 + (a % 7) as f64,
            0.01 + (a % 13) as f64 / 100.0
        ));
    }
    RuleSet::compile(
        &RuleSource::new()
            .file("ruleset.toml", main)
            .file("actions/a.toml", actions),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn context(engine: &Engine, rng: &mut rand_chacha::ChaCha8Rng) -> Context {
    let mut b = Context::builder(&engine.schema());
    for i in 0..10 {
        b = b.set(&format!("n{i}"), rng.random_range(0..100i64));
    }
    for i in 0..5 {
        b = b.set(&format!("s{i}"), STRINGS[rng.random_range(0..4usize)]);
    }
    for i in 0..5 {
        b = b.set(&format!("b{i}"), rng.random_bool(0.5));
    }
    b.build().unwrap()
}

/// An engine, trained on 20,000 outcomes whose acceptance depends on the
/// context, and its requests.
fn fixture(contextual: bool) -> (Engine, Vec<DecisionRequest>) {
    let engine = Engine::new(rules(contextual));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for i in 0..20_000i64 {
        let ctx = context(&engine, &mut rng);
        let accept = matches!(ctx.get("s0"), Some(nextbest::Value::String(s)) if s == "a");
        let mut r = DecisionRequest::new(format!("t{i}"), "web", ctx);
        r.now = Some(Timestamp(1_795_392_000 + i));
        let d = engine.decide(&r).unwrap();
        for a in d.action_ids() {
            engine
                .record_outcome(&Outcome {
                    decision_id: Some(d.id()),
                    customer_id: format!("t{i}"),
                    action: a.to_string(),
                    channel: "web".into(),
                    kind: if accept && rng.random_bool(0.5) {
                        OutcomeKind::Accepted
                    } else {
                        OutcomeKind::Rejected
                    },
                    timestamp: Some(Timestamp(1_795_392_000 + i)),
                })
                .unwrap();
        }
    }
    engine.snapshot_models();
    let requests = (0..CUSTOMERS)
        .map(|i| {
            let mut r = DecisionRequest::new(format!("c{i}"), "web", context(&engine, &mut rng));
            r.now = Some(Timestamp(1_795_500_000));
            r
        })
        .collect();
    (engine, requests)
}

fn learning(c: &mut Criterion) {
    let mut g = c.benchmark_group("learning");
    for (name, contextual) in [("beta", false), ("contextual", true)] {
        let (engine, requests) = fixture(contextual);
        g.bench_function(BenchmarkId::new(name, ACTIONS), |b| {
            let mut i = 0usize;
            b.iter(|| {
                let r = &requests[i % requests.len()];
                i = i.wrapping_add(1);
                engine.decide(black_box(r)).expect("decide")
            })
        });
    }
    g.finish();
}

fn main() {
    let started = std::time::SystemTime::now();
    let mut c = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    learning(&mut c);
    c.final_summary();
    if let (Some(b), Some(x)) = (
        support::median(&format!("learning/beta/{ACTIONS}"), started),
        support::median(&format!("learning/contextual/{ACTIONS}"), started),
    ) {
        println!(
            "contextual model cost per decision ({ACTIONS} actions, 20 predictors): {:.0} ns (beta {:.0} ns, contextual {:.0} ns, medians of this run)",
            x - b,
            b,
            x
        );
    }
}
