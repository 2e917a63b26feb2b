//! Following the fleet's rule rollout against a real Redis (issue 29,
//! docs/FLEET.md): an engine serves the fleet's live version under the
//! fleet's number, in its decisions and its log; a version it cannot
//! compile (or that compiles to another hash) is refused and the last
//! good one keeps serving; a rollback to a version it keeps needs no
//! compile; a store that stops answering leaves the engine serving, the
//! failures counted, and the follower catching up once it answers again.
//! The multi-process test is crates/nextbest-cli/tests/fleet.rs.
//!
//! The server's URL comes from `NEXTBEST_TEST_REDIS_URL` (`.ci/run` starts
//! one). Without it these tests skip with a note, except under CI (`CI`
//! set), where a missing server is a failure.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use nextbest::state::fleet::StateConfig;
use nextbest::state::redis::FleetRollout;
use nextbest::{DecisionRequest, Engine, EngineConfig, RuleSet};

#[path = "support/redis.rs"]
mod support;
use support::*;

fn rules(dir: &str) -> RuleSet {
    RuleSet::from_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}"))
}

fn config(url: &str, prefix: &str) -> StateConfig {
    StateConfig {
        key_prefix: prefix.to_string(),
        timeout_ms: 500,
        follow: true,
        heartbeat_ms: 100,
        instance_id: Some("rust-1".into()),
        ..StateConfig::new(url)
    }
}

/// The version number a decision carries.
fn decided(engine: &Engine) -> u64 {
    let json = r#"{"customer_id":"C1","channel":"call_center","context":{"age":42,"income":50000.0,"segment":"gold","call_reason":"billing","last_contact":"2026-11-20T09:00:00Z"}}"#;
    let request = DecisionRequest::from_json(&engine.schema(), json).expect("request");
    let d = engine.decide(&request).expect("decision");
    let d: serde_json::Value = serde_json::from_str(&d.to_json()).expect("json");
    d["ruleset"]["version"].as_u64().expect("a version")
}

/// Wait (at most 5 s) until `what` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not within 5 s: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_following_engine_serves_the_fleets_versions_under_the_fleets_numbers() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("rollout_numbers");
    let store = FleetRollout::connect(&config(&url, &prefix)).expect("connect");
    let (a, b) = (
        rules("tests/fixtures/mini"),
        rules("tests/fixtures/mini_v2"),
    );
    assert_eq!(store.publish(&a, "alice").expect("publish"), 1);
    assert_eq!(store.publish(&b, "bob").expect("publish"), 2);

    // The engine starts from its own copy of b (its own version 1), with
    // a decision log.
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("decisions.jsonl");
    let mut engine_config = EngineConfig::default();
    engine_config.decision_log = Some(nextbest::audit::LogConfig::for_file(&log));
    let engine = Arc::new(
        Engine::try_with_config(rules("tests/fixtures/mini_v2"), engine_config).expect("engine"),
    );
    let follower = engine.follow_fleet(&config(&url, &prefix)).expect("follow");
    // Serving the fleet's version 2 when follow_fleet returns.
    assert_eq!(engine.current().number(), 2);
    assert_eq!(decided(&engine), 2);
    assert_eq!(follower.status().serving, Some(2));

    // A rollback to version 1, which the engine never served: compiled.
    assert_eq!(store.rollback(None, "carol").expect("rollback"), 1);
    eventually("version 1 serves", || decided(&engine) == 1);
    assert_eq!(engine.current().rules().hash(), a.hash());
    let loads = engine.stats().loads_succeeded;
    // Forward again to 2, which it keeps: served again without a compile.
    assert_eq!(store.rollback(Some(2), "carol").expect("rollback"), 2);
    eventually("version 2 serves", || decided(&engine) == 2);
    assert_eq!(engine.stats().loads_succeeded, loads);
    assert_eq!(follower.status().followed, 3);

    // The log's decision records carry the fleet's numbers, and the
    // follows are logged.
    engine.flush().expect("flush");
    let text = std::fs::read_to_string(&log).expect("the log");
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let versions: Vec<u64> = records
        .iter()
        .filter(|r| r["kind"] == "decision")
        .filter_map(|r| r["ruleset"]["version"].as_u64())
        .collect();
    assert!(
        versions.contains(&1) && versions.contains(&2),
        "{versions:?}"
    );
    assert!(versions.iter().all(|v| [1, 2].contains(v)), "{versions:?}");
    let follows = records
        .iter()
        .filter(|r| r["kind"] == "fleet" && r["event"] == "followed")
        .count();
    assert_eq!(follows, 3, "{text}");

    // The heartbeat lists it with the version it serves.
    eventually("the heartbeat says version 2", || {
        let listed = store.instances().expect("instances");
        listed.len() == 1 && listed[0].version == 2 && listed[0].hash == b.hash()
    });
    let me = &store.instances().expect("instances")[0];
    assert_eq!(me.id, "rust-1");
    assert_eq!(me.pid, std::process::id());
    assert!(me.decisions >= 3, "{me:?}");

    // Stopping removes it from the listing.
    drop(follower);
    assert!(store.instances().expect("instances").is_empty());
}

/// Store version `number` as a record the publisher never made: `files`
/// with `hash`, made live and announced.
fn plant(url: &str, prefix: &str, number: u64, files: serde_json::Value, hash: &str) {
    let record = serde_json::json!({
        "name": "mini", "hash": hash, "by": "mallory",
        "published": "2026-12-01T00:00:00Z", "files": files,
    });
    let client = redis::Client::open(url).expect("client");
    let mut con = client.get_connection().expect("connection");
    let key = |k: &str| format!("{prefix}{{fleet}}:{k}");
    redis::pipe()
        .cmd("HSET")
        .arg(key("versions"))
        .arg(number)
        .arg(record.to_string())
        .cmd("SET")
        .arg(key("live"))
        .arg(number)
        .cmd("SET")
        .arg(key("live_hash"))
        .arg(hash)
        .cmd("PUBLISH")
        .arg(key("notify"))
        .arg(number)
        .query::<()>(&mut con)
        .expect("plant a version");
}

#[test]
fn a_version_an_instance_cannot_serve_keeps_the_last_good() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("rollout_refused");
    let store = FleetRollout::connect(&config(&url, &prefix)).expect("connect");
    assert_eq!(
        store
            .publish(&rules("tests/fixtures/mini"), "alice")
            .expect("publish"),
        1
    );
    let engine = Arc::new(Engine::new(rules("tests/fixtures/mini")));
    let follower = engine.follow_fleet(&config(&url, &prefix)).expect("follow");
    assert_eq!(decided(&engine), 1);

    // A version whose rules do not compile here.
    let broken =
        serde_json::json!({"ruleset.toml": "name = \"mini\"\n[schema]\nage = \"integer\"\n"});
    plant(&url, &prefix, 7, broken, "0".repeat(64).as_str());
    eventually("the refusal", || follower.status().refused == 1);
    assert_eq!(decided(&engine), 1);
    let stats = engine.stats();
    assert_eq!(stats.loads_failed, 1);
    let why = stats.last_load_error.expect("the reason");
    assert!(
        why.contains("fleet version 7") && why.contains("ruleset.toml"),
        "{why}"
    );
    eventually("the heartbeat reports it", || {
        let listed = store.instances().expect("instances");
        listed.len() == 1
            && listed[0].version == 1
            && listed[0].refused == 1
            && listed[0].last_error.as_deref() == Some(why.as_str())
    });
    // Polling the same refused version counts it once.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(follower.status().refused, 1);
    assert_eq!(engine.stats().loads_failed, 1);

    // Rules that compile, but not to the hash stored with them.
    let files: serde_json::Map<String, serde_json::Value> = rules("tests/fixtures/mini_v2")
        .source()
        .files()
        .map(|(p, t)| (p.to_string_lossy().into_owned(), t.into()))
        .collect();
    plant(&url, &prefix, 8, files.into(), "beef");
    eventually("the second refusal", || follower.status().refused == 2);
    let why = follower.status().last_refusal.expect("the reason");
    assert!(why.contains("compile here to hash"), "{why}");
    assert_eq!(decided(&engine), 1);

    // The next real publish is served.
    assert_eq!(
        store
            .publish(&rules("tests/fixtures/mini_v2"), "alice")
            .expect("publish"),
        2
    );
    eventually("version 2 serves", || decided(&engine) == 2);
}

/// The mini rule set with a comment added: the same rules, another hash.
fn mini_again() -> RuleSet {
    let src = nextbest::RuleSource::from_dir("tests/fixtures/mini").expect("mini");
    let toml = src
        .files()
        .find(|(p, _)| p.as_os_str() == "ruleset.toml")
        .map(|(_, t)| format!("{t}\n# again\n"))
        .expect("ruleset.toml");
    RuleSet::compile(&src.file("ruleset.toml", toml)).expect("compiles")
}

#[test]
fn a_store_that_lost_its_data_and_reused_the_number_served_is_followed() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("rollout_reset");
    let store = FleetRollout::connect(&config(&url, &prefix)).expect("connect");
    store
        .publish(&rules("tests/fixtures/mini"), "alice")
        .expect("publish");
    store
        .publish(&rules("tests/fixtures/mini_v2"), "alice")
        .expect("publish");
    let engine = Arc::new(Engine::new(rules("tests/fixtures/mini")));
    let _follower = engine.follow_fleet(&config(&url, &prefix)).expect("follow");
    assert_eq!(engine.current().number(), 2);

    // The store forgets everything (a restart without persistence), and
    // its counter comes back at 1 (a version 1 published meanwhile, say):
    // the next publish is a version 2 of other content, the only change
    // the follower sees.
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut con = client.get_connection().expect("connection");
    let key = |k: &str| format!("{prefix}{{fleet}}:{k}");
    let keys: Vec<String> = ["live", "live_hash", "stack", "versions", "hashes", "log"]
        .iter()
        .map(|k| key(k))
        .collect();
    redis::pipe()
        .cmd("DEL")
        .arg(&keys)
        .cmd("SET")
        .arg(key("next"))
        .arg(1)
        .query::<()>(&mut con)
        .expect("forget");
    let again = mini_again();
    assert_eq!(store.publish(&again, "bob").expect("publish"), 2);
    eventually("the new version 2 serves", || {
        engine.current().rules().hash() == again.hash()
    });
    assert_eq!(engine.current().number(), 2);
}

#[test]
fn the_follower_stops_when_the_engine_is_dropped() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("rollout_drop");
    let store = FleetRollout::connect(&config(&url, &prefix)).expect("connect");
    store
        .publish(&rules("tests/fixtures/mini"), "alice")
        .expect("publish");
    let engine = Arc::new(Engine::new(rules("tests/fixtures/mini")));
    let follower = engine.follow_fleet(&config(&url, &prefix)).expect("follow");
    eventually("the instance is listed", || {
        store.instances().expect("instances").len() == 1
    });
    drop(engine);
    eventually("the instance leaves", || {
        store.instances().expect("instances").is_empty()
    });
    drop(follower);
}

#[test]
fn a_store_that_stops_answering_leaves_the_engine_serving() {
    // Needs redis-server on the PATH, like the shared server does.
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(server) = own_server(tmp.path()) else {
        return;
    };
    let url = server.url();
    let prefix = unique_prefix("rollout_down");
    let store = FleetRollout::connect(&config(&url, &prefix)).expect("connect");
    store
        .publish(&rules("tests/fixtures/mini"), "alice")
        .expect("publish");
    let engine = Arc::new(Engine::new(rules("tests/fixtures/mini")));
    let follower = engine.follow_fleet(&config(&url, &prefix)).expect("follow");
    assert_eq!(decided(&engine), 1);

    server.signal("-STOP");
    eventually("failures are counted", || {
        follower.status().store_errors >= 2
    });
    // Decisions do not wait for the store.
    let t = Instant::now();
    assert_eq!(decided(&engine), 1);
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    let errors = follower.status().store_errors;
    std::thread::sleep(Duration::from_millis(1000));
    // Retried with a backoff: a few more failures, not one per 100 ms slice.
    let more = follower.status().store_errors - errors;
    assert!((1..=12).contains(&more), "{more} failures in 1 s");

    server.signal("-CONT");
    store
        .publish(&rules("tests/fixtures/mini_v2"), "alice")
        .expect("publish");
    eventually("the follower catches up", || decided(&engine) == 2);

    // Killed: the notice connection breaks; the engine serves on. Back,
    // empty, with a new version 1 (the old one's content, kept here):
    // the follower reconnects and serves it.
    let before = follower.status().store_errors;
    server.kill();
    eventually("the broken connection is counted", || {
        follower.status().store_errors > before
    });
    assert_eq!(decided(&engine), 2);
    assert!(server.launch(), "redis-server restarts");
    let store = FleetRollout::connect(&config(&url, &prefix)).expect("connect");
    assert_eq!(
        store
            .publish(&rules("tests/fixtures/mini"), "alice")
            .expect("publish"),
        1
    );
    eventually("the follower follows the new store", || {
        decided(&engine) == 1
    });
    eventually("and is listed there", || {
        store.instances().expect("instances").len() == 1
    });

    // Stopping never hangs on a store that does not answer.
    server.signal("-STOP");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    drop(follower);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn an_engine_configured_to_follow_needs_no_rule_directory() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("rollout_config");
    let store = FleetRollout::connect(&config(&url, &prefix)).expect("connect");
    let config_json = serde_json::json!({
        "state": {"url": url, "key_prefix": prefix, "follow": true, "heartbeat_ms": 100},
    })
    .to_string();
    // Nothing published yet: refused, saying what to do.
    let err = Engine::from_config_json(&config_json).expect_err("nothing to follow");
    assert!(err.to_string().contains("nextbest publish"), "{err}");

    store
        .publish(&rules("tests/fixtures/mini"), "alice")
        .expect("publish");
    store
        .publish(&rules("tests/fixtures/mini_v2"), "alice")
        .expect("publish");
    let engine = Arc::new(Engine::from_config_json(&config_json).expect("open"));
    assert_eq!(
        engine.current().rules().hash(),
        rules("tests/fixtures/mini_v2").hash()
    );
    let options: nextbest::EngineOptions = serde_json::from_str(&config_json).expect("options");
    let state = options.state.expect("state");
    let _follower = engine.follow_fleet(&state).expect("follow");
    assert_eq!(decided(&engine), 2);
}
