//! The history memo (what a decision derived from a customer's events, kept
//! with them until it can change) is invisible: decisions with it equal
//! decisions re-derived from every event, whatever the order of outcomes
//! and decision times.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nextbest::state::history::{Event, HistoryStore, Memo, MemoryHistory, Recent};
use nextbest::{
    Context, DecisionRequest, Engine, Outcome, OutcomeKind, RuleSet, RuleSource, Timestamp,
};
use proptest::prelude::*;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
const T0: i64 = 1_795_392_000; // 2026-11-23T00:00:00Z

const ACTIONS: [&str; 4] = ["CARD_A", "CARD_B", "LOAN_A", "SAVE_A"];
const CHANNELS: [&str; 2] = ["web", "email"];
const KINDS: [OutcomeKind; 5] = [
    OutcomeKind::Impression,
    OutcomeKind::Clicked,
    OutcomeKind::Accepted,
    OutcomeKind::Rejected,
    OutcomeKind::NoResponse,
];

fn rules(volumes: bool) -> RuleSet {
    let mut main = r#"
name = "memo"
default_limit = 4
[schema]
age = "int"
[channels]
web = { direction = "inbound", limit = 4 }
email = { direction = "outbound", limit = 4, contact_limit = { max = 3, within = "5d" } }
[issues.growth]
[groups.cards]
issue = "growth"
[groups.loans]
issue = "growth"
[groups.savings]
issue = "growth"

[[contact_policies]]
name = "ignored_3_in_7d"
outcomes = ["no_response"]
count = 3
within = "7d"
suppress_for = "14d"

[[contact_policies]]
name = "rejected_group_twice_on_email"
outcomes = ["rejected"]
count = 2
within = "10d"
per = "group"
channel = "email"

[[contact_policies]]
name = "accepted_rest"
outcomes = ["accepted"]
count = 1
within = "1d"
suppress_for = "3d"

[[contact_policies]]
name = "seen_a_lot"
outcomes = ["impression", "clicked"]
count = 4
within = "2d"
"#
    .to_string();
    if volumes {
        // Decisions take units, so both engines' counters move together
        // only if their decisions agree.
        main.push_str(
            "\n[[volume_constraints]]\nname = \"few_savings\"\naction = \"SAVE_A\"\nmax = 3\nperiod = \"day\"\n\n[[volume_constraints]]\nname = \"email_cap\"\nchannel = \"email\"\nmax = 20\nperiod = \"week\"\n",
        );
    }
    let mut actions = String::new();
    for (id, group) in [
        ("CARD_A", "cards"),
        ("CARD_B", "cards"),
        ("LOAN_A", "loans"),
        ("SAVE_A", "savings"),
    ] {
        actions.push_str(&format!(
            "[[actions]]\nid = \"{id}\"\ngroup = \"{group}\"\nchannels = [\"web\", \"email\"]\nvalue = 10.0\nstarting_propensity = 0.1\ntreatment = \"{id}\"\n\n"
        ));
    }
    RuleSet::compile(
        &RuleSource::new()
            .file("ruleset.toml", main)
            .file("actions/a.toml", actions),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The in-memory store without memos: the default `recent_or_memo`.
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

/// The in-memory store, counting the decisions its memos answered.
#[derive(Debug, Default)]
struct Counting(MemoryHistory, AtomicUsize);

impl HistoryStore for Counting {
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
    fn recent_or_memo(
        &self,
        customer: &str,
        since: i64,
        tag: u64,
        now: i64,
        out: &mut Vec<Event>,
    ) -> Result<Recent, nextbest::Error> {
        let r = self.0.recent_or_memo(customer, since, tag, now, out)?;
        if matches!(r, Recent::Memo(_)) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
        Ok(r)
    }
    fn keep_memo(&self, customer: &str, stamp: u64, memo: Arc<Memo>) {
        self.0.keep_memo(customer, stamp, memo)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Record {
        customer: usize,
        action: usize,
        channel: usize,
        kind: usize,
        at: i64,
    },
    Decide {
        customer: usize,
        channel: usize,
        at: i64,
    },
}

fn op(clock: impl Strategy<Value = i64> + Clone) -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 0..4usize, 0..2usize, 0..5usize, clock.clone()).prop_map(
            |(customer, action, channel, kind, at)| Op::Record {
                customer,
                action,
                channel,
                kind,
                at,
            }
        ),
        (0..2usize, 0..2usize, clock).prop_map(|(customer, channel, at)| Op::Decide {
            customer,
            channel,
            at,
        }),
    ]
}

/// What a decision shows of engine state: the chosen actions and every
/// removed action with its stage and reason, or the error (a request more
/// than eight periods older than a volume counter's newest is refused, the
/// same way with or without memos).
fn decide(engine: &Engine, customer: usize, channel: usize, at: i64) -> String {
    let ctx = Context::builder(&engine.schema())
        .set("age", 40)
        .build()
        .unwrap();
    let mut r = DecisionRequest::new(format!("c{customer}"), CHANNELS[channel], ctx);
    r.now = Some(Timestamp(at));
    r.explain = true;
    let d = match engine.decide(&r) {
        Ok(d) => d,
        Err(e) => return format!("error: {e}"),
    };
    let j = serde_json::to_value(&d).unwrap();
    format!("{:?} {}", d.action_ids(), j["filtered"])
}

fn run(ops: &[Op], volumes: bool) -> Result<(), TestCaseError> {
    let store = Arc::new(MemoryHistory::default());
    let memo = Engine::new(rules(volumes)).with_history_store(store.clone());
    let plain = Engine::new(rules(volumes)).with_history_store(Arc::new(NoMemo::default()));
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Record {
                customer,
                action,
                channel,
                kind,
                at,
            } => {
                let o = Outcome {
                    decision_id: None,
                    customer_id: format!("c{customer}"),
                    action: ACTIONS[action].into(),
                    channel: CHANNELS[channel].into(),
                    kind: KINDS[kind],
                    timestamp: Some(Timestamp(at)),
                };
                memo.record_outcome(&o).unwrap();
                plain.record_outcome(&o).unwrap();
            }
            Op::Decide {
                customer,
                channel,
                at,
            } => {
                let (a, b) = (
                    decide(&memo, customer, channel, at),
                    decide(&plain, customer, channel, at),
                );
                prop_assert_eq!(a, b, "op {}: {:?}", i, op);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Times in whole hours over three weeks, in any order: the clock goes
    /// backwards, outcomes arrive late.
    #[test]
    fn memos_change_no_decision_with_times_in_any_order(
        ops in proptest::collection::vec(op((0..21 * 24i64).prop_map(|h| T0 + h * HOUR)), 1..120),
        volumes: bool,
    ) {
        run(&ops, volumes)?;
    }

    /// Times that move forward in small steps, as a live clock does, with
    /// decisions landing exactly on window edges: memos are reused.
    #[test]
    fn memos_change_no_decision_with_a_forward_clock(
        steps in proptest::collection::vec((op(Just(0i64)), 0..(DAY / HOUR)), 1..150),
        volumes: bool,
    ) {
        let mut t = T0;
        let ops: Vec<Op> = steps
            .into_iter()
            .map(|(op, dt)| {
                t += dt * HOUR;
                match op {
                    Op::Record { customer, action, channel, kind, .. } =>
                        Op::Record { customer, action, channel, kind, at: t },
                    Op::Decide { customer, channel, .. } => Op::Decide { customer, channel, at: t },
                }
            })
            .collect();
        run(&ops, volumes)?;
    }
}

#[test]
fn a_memo_answers_until_an_outcome_or_a_window_edge() {
    let store = Arc::new(Counting::default());
    let e = Engine::new(rules(false)).with_history_store(store.clone());
    let hits = || store.1.load(Ordering::Relaxed);
    let rec = |kind, at| {
        e.record_outcome(&Outcome {
            decision_id: None,
            customer_id: "c0".into(),
            action: "CARD_A".into(),
            channel: "web".into(),
            kind,
            timestamp: Some(Timestamp(at)),
        })
        .unwrap();
    };
    rec(OutcomeKind::Accepted, T0);
    assert!(decide(&e, 0, 0, T0 + HOUR).contains("accepted_rest"));
    assert_eq!(hits(), 0, "the first decision derives the memo");
    assert!(decide(&e, 0, 1, T0 + 2 * HOUR).contains("accepted_rest"));
    assert_eq!(hits(), 1, "the next one reads it, on any channel");
    // The suppression ends at T0 + 3d: the memo does not reach past it.
    assert!(!decide(&e, 0, 0, T0 + 3 * DAY).contains("accepted_rest"));
    assert_eq!(hits(), 1);
    assert!(!decide(&e, 0, 0, T0 + 3 * DAY + 1).contains("accepted_rest"));
    assert_eq!(hits(), 2);
    // An outcome drops it.
    rec(OutcomeKind::Accepted, T0 + 3 * DAY);
    assert!(decide(&e, 0, 0, T0 + 3 * DAY + 2).contains("accepted_rest"));
    assert_eq!(hits(), 2);
    // A customer without history gets no memo (and no entry).
    decide(&e, 1, 0, T0);
    decide(&e, 1, 0, T0);
    assert_eq!(hits(), 2);
    assert_eq!(store.0.customers(), 1);
}
