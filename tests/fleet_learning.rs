//! Fleet learning and buffered outcomes against a real Redis
//! (docs/FLEET.md): outcomes recorded by several processes are summed in
//! the store, none lost and none doubled, and every process's
//! propensities reflect all of them; outcomes recorded while the store is
//! stopped or dead are buffered, bounded, and delivered when it returns.
//!
//! The server's URL comes from `NEXTBEST_TEST_REDIS_URL` (`.ci/run` starts
//! one); the fault test starts a server of its own. Without them these
//! tests skip with a note, except under CI (`CI` set), where a missing
//! server is a failure.
#![cfg(feature = "redis")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nextbest::state::fleet::StateConfig;
use nextbest::state::history::{Event, HistoryStore, Recorded};
use nextbest::state::learning::LearningStore;
use nextbest::state::redis::RedisHistory;
use nextbest::{Context, DecisionRequest, Engine, Error, Outcome, OutcomeKind, Timestamp};

#[path = "support/redis.rs"]
mod support;
use support::*;

const T0: i64 = 1_795_392_000; // 2026-11-23T00:00:00Z
const PROCESSES: u64 = 4;
const THREADS: u64 = 3;

fn write_rules(dir: &Path) {
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(
        dir.join("ruleset.toml"),
        r#"
name = "fleet_learning"
default_limit = 2
[schema]
age = "int"
[channels]
web = { direction = "inbound", limit = 2 }
[issues.growth]
[groups.cards]
issue = "growth"
[learning]
mode = "posterior_mean"
prior_strength = 10
"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("actions/cards.toml"),
        r#"
[[actions]]
id = "CARD_A"
group = "cards"
channels = ["web"]
value = 10.0
starting_propensity = 0.1
treatment = "A"

[[actions]]
id = "CARD_B"
group = "cards"
channels = ["web"]
value = 10.0
starting_propensity = 0.1
treatment = "B"
"#,
    )
    .unwrap();
}

fn state(url: &str, prefix: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut s = serde_json::json!({"url": url, "key_prefix": prefix, "timeout_ms": 2000, "exchange_ms": 100});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    s
}

fn engine(rules: &Path, state: serde_json::Value) -> Engine {
    let config =
        serde_json::json!({"rules_dir": rules, "record_impressions": false, "state": state});
    Engine::from_config_json(&config.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn outcome(customer: &str, action: &str, kind: OutcomeKind) -> Outcome {
    Outcome {
        decision_id: None,
        customer_id: customer.into(),
        action: action.into(),
        channel: "web".into(),
        kind,
        timestamp: Some(Timestamp(T0)),
    }
}

/// What process `p`'s thread `t` records: (action, kind, how many).
fn share(p: u64, t: u64) -> [(&'static str, OutcomeKind, u64); 3] {
    [
        ("CARD_A", OutcomeKind::Accepted, 3 + p + t),
        ("CARD_A", OutcomeKind::Rejected, 10 + 2 * p + t),
        ("CARD_B", OutcomeKind::Accepted, p + 1),
    ]
}

/// The propensity of each action for one decision, as `action=P` pairs.
fn propensities(e: &Engine) -> String {
    let ctx = Context::builder(&e.schema())
        .set("age", 40)
        .build()
        .unwrap();
    let mut r = DecisionRequest::new("z", "web", ctx);
    r.now = Some(Timestamp(T0 + 60));
    let d = e.decide(&r).unwrap();
    let mut out: Vec<String> = d
        .actions()
        .map(|a| format!("{}={:.9}", a.action(), a.propensity()))
        .collect();
    out.sort();
    out.join(",")
}

/// Not a test of its own: the body of each child process of
/// `learning_counts_from_every_process_are_summed_once_and_reach_every_process`.
#[test]
fn learning_child_process() {
    let Ok(spec) = std::env::var("NB_LEARN_CHILD") else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [url, prefix, rules, dir, p] = parts[..] else {
        panic!("NB_LEARN_CHILD: url|prefix|rules|dir|process");
    };
    let p: u64 = p.parse().unwrap();
    let e = Arc::new(engine(
        Path::new(rules),
        state(url, prefix, serde_json::json!({})),
    ));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for (action, kind, n) in share(p, t) {
                    for i in 0..n {
                        let c = format!("p{p}t{t}i{i}");
                        e.record_outcome(&outcome(&c, action, kind)).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    e.flush().unwrap();
    let dir = Path::new(dir);
    std::fs::write(dir.join(format!("done-{p}")), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (0..PROCESSES).any(|q| !dir.join(format!("done-{q}")).exists()) {
        assert!(
            Instant::now() < deadline,
            "the other processes did not finish"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Every process has sent its counts: one more exchange brings the
    // fleet's totals here.
    e.flush().unwrap();
    println!("PROPENSITY {}", propensities(&e));
}

#[test]
fn learning_counts_from_every_process_are_summed_once_and_reach_every_process() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_rules(&rules);
    let prefix = unique_prefix("learn");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "learning_child_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(
                    "NB_LEARN_CHILD",
                    format!(
                        "{url}|{prefix}|{}|{}|{p}",
                        rules.display(),
                        dir.path().display()
                    ),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut seen = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a child process failed");
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.find("PROPENSITY ").map(|i| l[i + 11..].to_string()))
            .expect("the child printed its propensities");
        seen.push(line);
    }

    // The store holds the sum of what was recorded: none lost, none doubled.
    let mut expected = std::collections::BTreeMap::new();
    for p in 0..PROCESSES {
        for t in 0..THREADS {
            for (action, kind, n) in share(p, t) {
                *expected
                    .entry(format!("{action}/web/{}", kind.as_str()))
                    .or_insert(0u64) += n;
            }
        }
    }
    let store = RedisHistory::connect(&StateConfig {
        key_prefix: prefix.clone(),
        timeout_ms: 2_000,
        ..StateConfig::new(url.clone())
    })
    .unwrap();
    let totals: std::collections::BTreeMap<String, u64> = store
        .learning()
        .unwrap()
        .exchange(u64::MAX, &[])
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(totals, expected);

    // Every process's propensities are those of one engine that recorded
    // every outcome itself.
    let reference = Engine::from_dir(&rules).unwrap();
    for (field, n) in &expected {
        let mut parts = field.split('/');
        let (action, kind) = (parts.next().unwrap(), parts.nth(1).unwrap());
        for _ in 0..*n {
            reference
                .record_outcome(&outcome("r", action, OutcomeKind::parse(kind).unwrap()))
                .unwrap();
        }
    }
    let want = propensities(&reference);
    assert!(want.contains("CARD_A=0.") && !want.contains("CARD_A=0.100000000"));
    for (p, got) in seen.iter().enumerate() {
        assert_eq!(got, &want, "process {p}");
    }
    // A new engine starts from the fleet's counts.
    let late = engine(&rules, state(&url, &prefix, serde_json::json!({})));
    assert_eq!(propensities(&late), want);
}

/// A retried outcome (the reply of the first try was lost) is recorded
/// once and not taken for a duplicate; another delivery of the same
/// outcome is one.
#[test]
fn an_outcome_delivery_retried_after_a_lost_reply_is_recorded_once() {
    let Some(url) = redis_url() else { return };
    let store = RedisHistory::connect(&StateConfig {
        key_prefix: unique_prefix("retry"),
        timeout_ms: 2_000,
        ..StateConfig::new(url)
    })
    .unwrap();
    let e = Event {
        at: T0,
        action: nextbest::state::history::key("CARD_A"),
        group: 1,
        channel: nextbest::state::history::channel_key("web"),
        kind: OutcomeKind::Accepted,
    };
    for once in [Some(42), None] {
        let c = format!("c{once:?}");
        assert_eq!(store.record_outcome(&c, once, e, 7).unwrap(), Recorded::New);
        assert_eq!(store.record_outcome(&c, once, e, 7).unwrap(), Recorded::New);
        let mut events = Vec::new();
        store.recent(&c, 0, &mut events).unwrap();
        assert_eq!(events, [e], "{once:?}");
    }
    assert_eq!(
        store.record_outcome("cSome(42)", Some(42), e, 8).unwrap(),
        Recorded::Duplicate
    );
}

#[test]
fn outcomes_recorded_while_the_store_is_down_wait_and_arrive_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = own_server(dir.path()) else {
        return;
    };
    let rules = dir.path().join("rules");
    write_rules(&rules);
    let prefix = unique_prefix("buffer");
    // The exchange thread waits a minute: this test delivers by `flush`.
    let e = engine(
        &rules,
        state(
            &server.url(),
            &prefix,
            serde_json::json!({"timeout_ms": 100, "exchange_ms": 60_000, "outcome_buffer": 4}),
        ),
    );
    let ctx = Context::builder(&e.schema())
        .set("age", 40)
        .build()
        .unwrap();
    let mut r = DecisionRequest::new("x", "web", ctx);
    r.now = Some(Timestamp(T0));
    let decision = e.decide(&r).unwrap().id();

    // Stopped: outcomes are accepted, within the deadline, and wait.
    server.signal("-STOP");
    let mut answered = outcome("x", "CARD_A", OutcomeKind::Accepted);
    answered.decision_id = Some(decision);
    let recorded = [
        answered.clone(),
        answered.clone(), // the same outcome again: a duplicate
        outcome("x", "CARD_B", OutcomeKind::Rejected),
        outcome("y", "CARD_A", OutcomeKind::Accepted),
    ];
    for o in &recorded {
        let started = Instant::now();
        e.record_outcome(o).unwrap();
        assert!(started.elapsed() < Duration::from_millis(1_000));
    }
    let s = e.stats();
    let f = s.fleet.clone().unwrap();
    assert_eq!(
        (f.outcomes_waiting, f.outcomes_buffered, s.outcomes),
        (4, 4, 0)
    );
    // Full: one more is refused, counted.
    let refused = e.record_outcome(&outcome("z", "CARD_A", OutcomeKind::Accepted));
    assert!(
        matches!(refused, Err(Error::StoreUnavailable { .. })),
        "{refused:?}"
    );
    assert_eq!(e.stats().fleet.unwrap().outcomes_dropped, 1);
    assert!(e.flush().is_err(), "the store is still stopped");

    // Continued: the next round delivers them, the duplicate once.
    server.signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(5);
    while e.flush().is_err() {
        assert!(Instant::now() < deadline, "{:?}", e.stats().fleet);
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = e.stats();
    let f = s.fleet.clone().unwrap();
    assert_eq!(
        (
            f.outcomes_waiting,
            f.outcomes_delivered,
            s.outcomes,
            s.duplicate_outcomes
        ),
        (0, 3, 3, 1)
    );
    let store = RedisHistory::connect(&StateConfig {
        key_prefix: prefix.clone(),
        timeout_ms: 2_000,
        ..StateConfig::new(server.url())
    })
    .unwrap();
    let kinds = |c: &str| {
        let mut events = Vec::new();
        store.recent(c, 0, &mut events).unwrap();
        events.iter().map(|e| e.kind).collect::<Vec<_>>()
    };
    assert_eq!(kinds("x"), [OutcomeKind::Accepted, OutcomeKind::Rejected]);
    assert_eq!(kinds("y"), [OutcomeKind::Accepted]);
    let totals = store.learning().unwrap().exchange(u64::MAX, &[]).unwrap();
    let accepted_a = totals
        .iter()
        .find(|(f, _)| f == "CARD_A/web/accepted")
        .map(|(_, n)| *n);
    assert_eq!(accepted_a, Some(2));

    // Killed: outcomes wait for a new server and arrive there.
    server.kill();
    e.record_outcome(&outcome("w", "CARD_B", OutcomeKind::Clicked))
        .unwrap();
    assert_eq!(e.stats().fleet.unwrap().outcomes_waiting, 1);
    assert!(server.launch(), "redis-server restarts");
    let deadline = Instant::now() + Duration::from_secs(5);
    while e.flush().is_err() {
        assert!(Instant::now() < deadline, "{:?}", e.stats().fleet);
        std::thread::sleep(Duration::from_millis(50));
    }
    let store = RedisHistory::connect(&StateConfig {
        key_prefix: prefix,
        timeout_ms: 2_000,
        ..StateConfig::new(server.url())
    })
    .unwrap();
    let mut events = Vec::new();
    store.recent("w", 0, &mut events).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(e.stats().outcomes, 4);
}

/// The propensities of every ranked action for a customer of the
/// contextual fixture, as `action=P` pairs.
fn contextual_propensities(e: &Engine, segment: &str, age: i64, vip: bool) -> String {
    let ctx = Context::builder(&e.schema())
        .set("segment", segment)
        .set("age", age)
        .set("vip", vip)
        .build()
        .unwrap();
    let mut r = DecisionRequest::new("probe", "web", ctx);
    r.now = Some(Timestamp(T0 + 100_000));
    r.explain = true;
    let d = e.decide(&r).unwrap();
    let mut out: Vec<String> = d
        .ranked()
        .map(|a| format!("{}={:.12}", a.action(), a.propensity()))
        .collect();
    out.sort();
    out.join(",")
}

#[test]
fn contextual_counts_split_across_two_engines_merge_into_what_one_engine_learns() {
    let Some(url) = redis_url() else { return };
    let rules = Path::new("tests/fixtures/contextual");
    let prefix = unique_prefix("ctx");
    let fleet = [
        engine(rules, state(&url, &prefix, serde_json::json!({}))),
        engine(rules, state(&url, &prefix, serde_json::json!({}))),
    ];
    let alone = Engine::from_dir(rules).unwrap();
    let segments = ["mass", "affluent", "private"];
    let actions = ["CARD_GOLD", "CARD_CASHBACK", "LOAN_CAR"];
    let kinds = [
        OutcomeKind::Accepted,
        OutcomeKind::Rejected,
        OutcomeKind::NoResponse,
    ];
    for i in 0..240usize {
        let (segment, age, vip) = (segments[i % 3], 20 + (i as i64 * 7) % 50, i % 5 == 0);
        // Affluent and private customers accept the gold card more.
        let action = actions[(i / 3) % 3];
        let kind = if segment != "mass" && action == "CARD_GOLD" && i % 2 == 0 {
            OutcomeKind::Accepted
        } else {
            kinds[(i * 7) % 3]
        };
        for e in [&fleet[i % 2], &alone] {
            let ctx = Context::builder(&e.schema())
                .set("segment", segment)
                .set("age", age)
                .set("vip", vip)
                .build()
                .unwrap();
            let mut r = DecisionRequest::new(format!("c{i}"), "web", ctx);
            r.now = Some(Timestamp(T0 + i as i64));
            let d = e.decide(&r).unwrap();
            assert!(d.action_ids().contains(&action));
            e.record_outcome(&Outcome {
                decision_id: Some(d.id()),
                ..outcome(&format!("c{i}"), action, kind)
            })
            .unwrap();
        }
    }
    // Each engine sends what it learned and takes the fleet's totals; the
    // first goes again to take the second's.
    for e in [&fleet[0], &fleet[1], &fleet[0]] {
        e.flush().unwrap();
    }
    for e in &fleet {
        assert_eq!(e.stats().outcomes_without_context, 0);
    }
    let mut differs = 0;
    for (segment, age, vip) in [
        ("mass", 22, false),
        ("affluent", 45, true),
        ("private", 61, false),
    ] {
        let want = contextual_propensities(&alone, segment, age, vip);
        for e in &fleet {
            assert_eq!(
                contextual_propensities(e, segment, age, vip),
                want,
                "{segment}"
            );
        }
        if want != contextual_propensities(&alone, "mass", 22, false) {
            differs += 1;
        }
    }
    // The model learned something: customers in other bins differ.
    assert!(differs > 0);
}
