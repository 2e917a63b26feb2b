//! Interaction history: what contact policies cost a decision, and how
//! fast outcomes are recorded.
//!
//! - `decide_history/{0,50}`: `Engine::decide` (explain off) on the
//!   100-action catalog with the three contact policies of the icount
//!   workloads `history/0` and `history/50`, every customer having 0 or 50
//!   outcomes over the 30 days before the decision (same seeds, same
//!   actions, kinds and times as `benches/icount.rs`). Decisions at the
//!   same time with no outcome in between: the second and later decisions
//!   for a customer read the memo the first one kept.
//! - `decide_history/50_no_memo`: the same with a store that keeps no memos,
//!   so every decision reads the 50 events and derives the suppressions:
//!   what the first decision after an outcome costs (less keeping the memo).
//! - `record_outcome/at_cap/{256,16}`: `Engine::record_outcome` (no
//!   decision log) for 256 customers whose histories are already full
//!   (`max_events` 256, the default, or 16), so each outcome is appended
//!   and the oldest event evicted: the steady state of a long-running
//!   engine, and what eviction costs with a long history (the events
//!   after the evicted one move down).
//!
//! Outcomes carry no timestamp (the engine reads the clock, as for live
//! outcomes), so each is the newest of its customer's events.
//!
//! `cargo bench --bench history -- --warm-up-time 1 --measurement-time 3`;
//! `-- --test` runs each once.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use nextbest::state::history::{Event, HistoryConfig, HistoryStore, MemoryHistory};
use nextbest::{
    DecisionRequest, Engine, EngineConfig, Outcome, OutcomeKind, RuleSet, RuleSource, Timestamp,
};

#[allow(dead_code)]
mod support;
use support::{population, Catalog, PlainCustomer};

// The icount history workloads' seeds and sizes.
const CATALOG_SEED: u64 = 2026;
const CUSTOMER_SEED: u64 = 1123;
const CUSTOMERS: usize = 256;
const ACTIONS: usize = 100;

/// Contact policies appended to the catalog's ruleset.toml (as in
/// benches/icount.rs).
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

const KINDS: [OutcomeKind; 6] = [
    OutcomeKind::Impression,
    OutcomeKind::NoResponse,
    OutcomeKind::Clicked,
    OutcomeKind::Impression,
    OutcomeKind::Rejected,
    OutcomeKind::Accepted,
];

/// The catalog with [`POLICIES`].
fn rules(catalog: &Catalog) -> RuleSet {
    let mut src = RuleSource::new();
    for (path, text) in catalog.to_source().files() {
        if path.ends_with("ruleset.toml") {
            src = src.file(path, format!("{text}\n{POLICIES}"));
        } else {
            src = src.file(path, text);
        }
    }
    RuleSet::compile(&src).unwrap_or_else(|e| panic!("the catalog with policies:\n{e}"))
}

/// `n` outcomes per customer, each an action offered on the customer's
/// channel, with a kind from [`KINDS`]; timed over the 30 days before the
/// benchmarks' `NOW` when `timed`, else untimed (the engine's clock).
/// The same draws, in the same order, as benches/icount.rs.
fn outcomes(catalog: &Catalog, customers: &[PlainCustomer], n: usize, timed: bool) -> Vec<Outcome> {
    let now = support::now().unix_seconds();
    let mut rng = support::SplitMix64::new(CUSTOMER_SEED ^ 0x4849_5354);
    let mut out = Vec::with_capacity(customers.len() * n);
    for c in customers {
        let channel = catalog.channels[c.channel].name;
        for _ in 0..n {
            let a = loop {
                let a = &catalog.actions[rng.below(catalog.actions.len() as u64) as usize];
                if a.channels & (1 << c.channel) != 0 {
                    break a;
                }
            };
            let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
            let at = now - rng.below(30 * 86_400) as i64;
            out.push(Outcome {
                decision_id: None,
                customer_id: c.id.clone(),
                action: a.id.clone(),
                channel: channel.to_string(),
                kind,
                timestamp: timed.then_some(Timestamp(at)),
            });
        }
    }
    out
}

/// The in-memory store without its memos (the trait's default
/// `recent_or_memo`).
#[derive(Debug, Default)]
struct NoMemo(MemoryHistory);

impl HistoryStore for NoMemo {
    fn record(&self, customer: &str, event: Event) -> Result<(), nextbest::Error> {
        self.0.record(customer, event)
    }
    fn recent(
        &self,
        customer: &str,
        since: i64,
        out: &mut Vec<Event>,
    ) -> Result<(), nextbest::Error> {
        self.0.recent(customer, since, out)
    }
}

fn decide_history(c: &mut Criterion) {
    let catalog = Catalog::generate(ACTIONS, CATALOG_SEED);
    let customers = population(CUSTOMERS, CUSTOMER_SEED);
    let mut g = c.benchmark_group("decide_history");
    for (name, events, memos) in [
        ("0", 0usize, true),
        ("50", 50, true),
        ("50_no_memo", 50, false),
    ] {
        let mut engine = Engine::new(rules(&catalog));
        if !memos {
            engine = engine.with_history_store(Arc::new(NoMemo::default()));
        }
        for o in outcomes(&catalog, &customers, events, true) {
            engine.record_outcome(&o).expect("outcome");
        }
        let schema = engine.schema();
        let reqs: Vec<DecisionRequest> = customers
            .iter()
            .map(|c| c.request(&catalog, &schema, false))
            .collect();
        // Warm up thread-locals and scratch buffers, and check that the
        // history is there and the policies read it.
        let mut suppressed = 0usize;
        for c in &customers {
            let d = engine
                .decide(&c.request(&catalog, &schema, true))
                .expect("decide");
            suppressed += d.to_json().matches("\"contact_policy\"").count();
        }
        for r in &reqs {
            black_box(engine.decide(r).expect("decide"));
        }
        if events == 0 {
            assert_eq!(suppressed, 0, "no history, nothing suppressed");
        } else {
            assert!(
                suppressed > 0,
                "the policies suppress actions with {events} events"
            );
        }
        let mut i = 0usize;
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                black_box(engine.decide(black_box(&reqs[i])).expect("decide"))
            })
        });
    }
    g.finish();
}

fn record_outcome(c: &mut Criterion) {
    let catalog = Catalog::generate(ACTIONS, CATALOG_SEED);
    let customers = population(CUSTOMERS, CUSTOMER_SEED);
    // Outcomes to cycle through (untimed: the engine's clock).
    let live = outcomes(&catalog, &customers, 16, false);
    let mut g = c.benchmark_group("record_outcome");
    g.throughput(Throughput::Elements(1));
    for max_events in [HistoryConfig::default().max_events, 16] {
        let mut config = EngineConfig::default();
        assert!(config.decision_log.is_none());
        config.history.max_events = max_events;
        let engine = Engine::try_with_config(rules(&catalog), config).expect("engine");
        // Fill every customer's history to the cap.
        for o in live.iter().cycle().take(live.len() * (max_events / 16 + 2)) {
            engine.record_outcome(o).expect("outcome");
        }
        let mut held = Vec::new();
        engine
            .history_store()
            .recent(&customers[0].id, 0, &mut held)
            .expect("in memory");
        assert_eq!(held.len(), max_events, "the history is at its cap");
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("at_cap", max_events), |b| {
            b.iter(|| {
                i = (i + 1) % live.len();
                engine.record_outcome(black_box(&live[i])).expect("outcome")
            })
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    decide_history(&mut c);
    record_outcome(&mut c);
    c.final_summary();
}
