//! Fleet mode against a real Redis (docs/FLEET.md): several processes
//! share one customer's contact limit, an outcome recorded by one engine
//! is seen by another's contact policies, and a store that is down makes
//! decisions fail as configured, counted, without a hang or a panic.
//!
//! The server's URL comes from `NEXTBEST_TEST_REDIS_URL` (`.ci/run` starts
//! one). Without it these tests skip with a note, except under CI (`CI`
//! set), where a missing server is a failure.
#![cfg(feature = "redis")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use nextbest::state::fleet::{OnUnavailable, StateConfig};
use nextbest::state::history::{HistoryConfig, HistoryStore};
use nextbest::state::redis::RedisHistory;
use nextbest::{Context, DecisionRequest, Engine, Error, Outcome, OutcomeKind, Stage, Timestamp};

#[path = "support/redis.rs"]
mod support;
use support::*;

const T0: i64 = 1_795_392_000; // 2026-11-23T00:00:00Z
const CUSTOMERS: usize = 50;
const PROCESSES: usize = 4;
const THREADS: usize = 2;

/// A rule set whose email channel allows one contact a week, and whose
/// policy suppresses an action a customer rejected in the last 30 days.
fn write_rules(dir: &Path) {
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(
        dir.join("ruleset.toml"),
        r#"
name = "fleet"
default_limit = 1
[schema]
age = "int"
[channels]
email = { direction = "outbound", limit = 1, contact_limit = { max = 1, within = "7d" } }
web = { direction = "inbound", limit = 1 }
[issues.growth]
[groups.cards]
issue = "growth"

[[contact_policies]]
name = "rejected_lately"
outcomes = ["rejected"]
count = 1
within = "30d"
"#,
    )
    .unwrap();
    let mut actions = String::new();
    for (id, value) in [("CARD_A", 30.0), ("CARD_B", 20.0), ("CARD_C", 10.0)] {
        actions.push_str(&format!(
            "[[actions]]\nid = \"{id}\"\ngroup = \"cards\"\nchannels = [\"email\", \"web\"]\nvalue = {value}\nstarting_propensity = 0.1\ntreatment = \"{id}\"\n\n"
        ));
    }
    std::fs::write(dir.join("actions/cards.toml"), actions).unwrap();
}

/// An engine opened from the engine configuration JSON (the C ABI's).
fn engine(rules: &Path, url: &str, prefix: &str, record_impressions: bool) -> Engine {
    let config = serde_json::json!({
        "rules_dir": rules,
        "record_impressions": record_impressions,
        "state": {"url": url, "key_prefix": prefix, "timeout_ms": 500, "on_unavailable": "closed"},
    });
    Engine::from_config_json(&config.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn request(engine: &Engine, customer: &str, channel: &str) -> DecisionRequest {
    let ctx = Context::builder(&engine.schema())
        .set("age", 40)
        .build()
        .unwrap();
    let mut r = DecisionRequest::new(customer, channel, ctx);
    r.now = Some(Timestamp(T0));
    r
}

/// Not a test of its own: the body of each child process of
/// `a_contact_limit_holds_across_processes`, which runs this binary again
/// with `NB_FLEET_CHILD` set. Prints `GOT customer action` per offer.
#[test]
fn fleet_child_process() {
    let Ok(spec) = std::env::var("NB_FLEET_CHILD") else {
        return;
    };
    let mut parts = spec.splitn(4, '|');
    let (Some(url), Some(prefix), Some(rules), Some(go)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("NB_FLEET_CHILD: url|prefix|rules|go-file");
    };
    let e = Arc::new(engine(Path::new(rules), url, prefix, true));
    // Start together, so the processes race for the same customers.
    while !Path::new(go).exists() {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..CUSTOMERS {
                    let c = format!("c{}", (i + t * 7) % CUSTOMERS);
                    let d = e.decide(&request(&e, &c, "email")).expect("decide");
                    for a in d.action_ids() {
                        got.push(format!("GOT {c} {a}"));
                    }
                }
                got
            })
        })
        .collect();
    for t in threads {
        for line in t.join().unwrap() {
            println!("{line}");
        }
    }
}

#[test]
fn a_contact_limit_holds_across_processes() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_rules(&rules);
    let go = dir.path().join("go");
    let prefix = unique_prefix("limit");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "fleet_child_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(
                    "NB_FLEET_CHILD",
                    format!("{url}|{prefix}|{}|{}", rules.display(), go.display()),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, "").unwrap();
    let mut offers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a child process failed");
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            // The harness prints `test fleet_child_process ... ` before
            // the first line, on the same line.
            if let Some(rest) = line.find("GOT ").map(|i| &line[i + 4..]) {
                let (c, a) = rest.split_once(' ').unwrap();
                offers.entry(c.to_string()).or_default().push(a.to_string());
            }
        }
    }
    // Every customer got the action exactly once across the fleet.
    assert_eq!(offers.len(), CUSTOMERS, "{offers:?}");
    for (c, got) in &offers {
        assert_eq!(got, &["CARD_A"], "customer {c}");
    }
    // And the store holds exactly that one impression per customer.
    let store = RedisHistory::connect(&StateConfig {
        key_prefix: prefix.clone(),
        timeout_ms: 2_000,
        ..StateConfig::new(url.clone())
    })
    .unwrap();
    for i in 0..CUSTOMERS {
        let mut events = Vec::new();
        store.recent(&format!("c{i}"), 0, &mut events).unwrap();
        assert_eq!(events.len(), 1, "c{i}: {events:?}");
        assert_eq!(events[0].kind, OutcomeKind::Impression);
    }
}

#[test]
fn an_outcome_recorded_by_one_engine_suppresses_the_action_in_another() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path());
    let prefix = unique_prefix("outcome");
    let a = engine(dir.path(), &url, &prefix, false);
    let b = engine(dir.path(), &url, &prefix, false);
    for c in ["x", "y"] {
        let d = b.decide(&request(&b, c, "web")).unwrap();
        assert_eq!(d.action_ids(), ["CARD_A"], "{c} before any outcome");
    }
    let mut o = outcome("x", OutcomeKind::Rejected);
    o.timestamp = Some(Timestamp(T0 - 3_600));
    a.record_outcome(&o).unwrap();
    let d = b.decide(&request(&b, "x", "web")).unwrap();
    assert_eq!(d.action_ids(), ["CARD_B"], "x rejected CARD_A on engine a");
    let d = b.decide(&request(&b, "y", "web")).unwrap();
    assert_eq!(d.action_ids(), ["CARD_A"], "y did not");
    assert_eq!(a.stats().store_errors + b.stats().store_errors, 0);
}

fn outcome(customer: &str, kind: OutcomeKind) -> Outcome {
    Outcome {
        decision_id: None,
        customer_id: customer.into(),
        action: "CARD_A".into(),
        channel: "web".into(),
        kind,
        timestamp: None,
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The actions a decision removed for want of state, with their stage.
fn unavailable(d: &nextbest::Decision) -> Vec<(String, Stage)> {
    d.filtered()
        .filter(|f| f.reason().as_deref() == Some("state unavailable"))
        .map(|f| (f.action().to_string(), f.stage()))
        .collect()
}

#[test]
fn a_store_that_is_down_removes_what_needs_it_closed_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path());
    let config = StateConfig::new(format!("redis://127.0.0.1:{}/0", closed_port()));
    // Connecting eagerly names the store.
    let e = RedisHistory::connect(&config).unwrap_err();
    assert!(
        matches!(&e, Error::StoreUnavailable { operation: "connect", store, .. } if store.contains("127.0.0.1")),
        "{e}"
    );
    let store = Arc::new(RedisHistory::lazy(&config, HistoryConfig::default()).unwrap());
    let engine = Engine::from_dir(dir.path())
        .unwrap()
        .with_history_store(store.clone());
    // Closed: on email (a contact limit) every action is removed at the
    // channel-limit stage; on web, every action a contact policy covers
    // (here all) at the contact-policy stage. The decisions stand.
    let all = |stage| {
        ["CARD_A", "CARD_B", "CARD_C"]
            .map(|a| (a.to_string(), stage))
            .to_vec()
    };
    for (i, (channel, stage)) in [
        ("email", Stage::ChannelLimit),
        ("web", Stage::ContactPolicy),
        ("email", Stage::ChannelLimit),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = request(&engine, "x", channel);
        r.explain = true;
        let d = engine
            .decide(&r)
            .unwrap_or_else(|e| panic!("decision {i}: {e}"));
        assert!(d.action_ids().is_empty(), "decision {i}");
        assert_eq!(unavailable(&d), all(stage), "decision {i}");
    }
    let o = outcome("x", OutcomeKind::Accepted);
    assert!(matches!(
        engine.record_outcome(&o),
        Err(Error::StoreUnavailable {
            operation: "record_outcome",
            ..
        })
    ));
    let s = engine.stats();
    assert_eq!((s.store_errors, s.decision_errors, s.outcomes), (4, 0, 0));

    // Open: the decision goes on without the history, counted.
    let open = Engine::from_dir(dir.path())
        .unwrap()
        .with_history_store(store)
        .with_on_unavailable(OnUnavailable::Open);
    let d = open.decide(&request(&open, "x", "email")).unwrap();
    assert_eq!(d.action_ids(), ["CARD_A"]);
    let s = open.stats();
    assert_eq!((s.store_errors, s.decision_errors), (1, 0));
}

/// An outcome delivered to two instances of the fleet (a retried request
/// landing on another desktop) counts once: the second sees it recorded.
#[test]
fn an_outcome_delivered_to_two_engines_counts_once() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path());
    let prefix = unique_prefix("dedup");
    let a = engine(dir.path(), &url, &prefix, false);
    let b = engine(dir.path(), &url, &prefix, false);
    let d = a.decide(&request(&a, "x", "web")).unwrap();
    let mut o = outcome("x", OutcomeKind::Rejected);
    o.decision_id = Some(d.id());
    a.record_outcome(&o).unwrap();
    b.record_outcome(&o).unwrap();
    b.record_outcome(&o).unwrap();
    assert_eq!((a.stats().outcomes, a.stats().duplicate_outcomes), (1, 0));
    assert_eq!((b.stats().outcomes, b.stats().duplicate_outcomes), (0, 2));
    // Another outcome of the same decision is not a duplicate.
    o.kind = OutcomeKind::Clicked;
    b.record_outcome(&o).unwrap();
    assert_eq!(b.stats().outcomes, 1);
    assert_eq!(a.stats().store_errors + b.stats().store_errors, 0);
}

/// With the history unreadable and `closed`, only the actions a contact
/// policy covers are removed: an action of another group is still offered.
#[test]
fn a_store_that_is_down_removes_only_the_actions_a_policy_covers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("actions")).unwrap();
    std::fs::write(
        dir.path().join("ruleset.toml"),
        r#"
name = "scoped"
default_limit = 1
[schema]
age = "int"
[channels]
web = { direction = "inbound", limit = 1 }
[issues.growth]
[groups.cards]
issue = "growth"
[groups.info]
issue = "growth"

[[contact_policies]]
name = "cards_rejected"
outcomes = ["rejected"]
count = 1
within = "30d"
group = "cards"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("actions/a.toml"),
        "[[actions]]\nid = \"CARD_A\"\ngroup = \"cards\"\nchannels = [\"web\"]\nvalue = 30\nstarting_propensity = 0.1\ntreatment = \"A\"\n\n\
         [[actions]]\nid = \"INFO\"\ngroup = \"info\"\nchannels = [\"web\"]\nvalue = 5\nstarting_propensity = 0.1\ntreatment = \"I\"\n",
    )
    .unwrap();
    let config = StateConfig::new(format!("redis://127.0.0.1:{}/0", closed_port()));
    let store = Arc::new(RedisHistory::lazy(&config, HistoryConfig::default()).unwrap());
    let engine = Engine::from_dir(dir.path())
        .unwrap()
        .with_history_store(store);
    let mut r = request(&engine, "x", "web");
    r.explain = true;
    let d = engine.decide(&r).unwrap();
    assert_eq!(d.action_ids(), ["INFO"]);
    assert_eq!(
        unavailable(&d),
        [("CARD_A".to_string(), Stage::ContactPolicy)]
    );
    let json: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
    assert_eq!(
        json["filtered"][0],
        serde_json::json!({"action": "CARD_A", "stage": "contact_policy", "level": "action", "reason": "state unavailable"})
    );
    assert_eq!(engine.stats().store_errors, 1);
}

/// Engines given the store piece by piece (no exchange) still tell two
/// deliveries apart: the same outcome from two engines counts once, and
/// two equal outcomes without a decision id in the same second are both
/// kept.
#[test]
fn engines_given_the_store_directly_keep_outcomes_apart() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path());
    let config = StateConfig {
        key_prefix: unique_prefix("direct"),
        timeout_ms: 2_000,
        ..StateConfig::new(url)
    };
    let store = Arc::new(RedisHistory::connect(&config).unwrap());
    let a = Engine::from_dir(dir.path())
        .unwrap()
        .with_history_store(store.clone());
    let b = Engine::from_dir(dir.path())
        .unwrap()
        .with_history_store(store.clone());
    let d = a.decide(&request(&a, "x", "web")).unwrap();
    let mut o = outcome("x", OutcomeKind::Clicked);
    o.timestamp = Some(Timestamp(T0));
    o.decision_id = Some(d.id());
    a.record_outcome(&o).unwrap();
    b.record_outcome(&o).unwrap();
    assert_eq!((a.stats().outcomes, b.stats().duplicate_outcomes), (1, 1));
    o.decision_id = None;
    a.record_outcome(&o).unwrap();
    b.record_outcome(&o).unwrap();
    let mut events = Vec::new();
    store.recent("x", 0, &mut events).unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
}
