//! When the decision log cannot take a record (issue 28, item 5): on a full
//! disk (`/dev/full` fails every write with ENOSPC, as a full disk does)
//! or a stalled one (a FIFO nobody reads), `on_error = "fail"` refuses the
//! decision and gives back what it took from engine state, `"degrade"`
//! decides on and says the log is failing, and `block` waits at most
//! `block_timeout_ms`.

use std::io::Read;
use std::path::Path;
use std::sync::mpsc;

use nextbest::audit::{LogConfig, OnError};
use nextbest::{Context, DecisionRequest, Engine, EngineConfig, RuleSet, RuleSource, Timestamp};

/// Monday 2026-11-23 10:00 UTC.
const MONDAY: i64 = 1_795_428_000;

/// One action on `web`, capped at 2 a day, and a contact limit of one
/// action a week per customer on `web`.
fn capped_and_limited() -> RuleSet {
    let main = r#"
name = "caps"
[schema]
age = "int"
[channels]
web = { direction = "inbound", limit = 1, contact_limit = { max = 1, within = "7d" } }
[issues.growth]
[groups.cards]
issue = "growth"
[[volume_constraints]]
name = "cards_daily"
action = "CARD"
max = 2
period = "day"
"#;
    let actions = r#"
[[actions]]
id = "CARD"
group = "cards"
channels = ["web"]
value = 20.0
starting_propensity = 0.1
treatment = "t"
"#;
    RuleSet::compile(
        &RuleSource::new()
            .file("ruleset.toml", main)
            .file("actions/a.toml", actions),
    )
    .unwrap()
}

/// An engine on [`capped_and_limited`] recording impressions itself,
/// logging with `log` (or not at all).
fn engine(log: Option<LogConfig>) -> Engine {
    let mut config = EngineConfig::default();
    config.record_impressions = true;
    config.decision_log = log;
    Engine::try_with_config(capped_and_limited(), config).unwrap()
}

fn request(e: &Engine, customer: &str) -> DecisionRequest {
    let ctx = Context::builder(&e.schema())
        .set("age", 40)
        .build()
        .unwrap();
    DecisionRequest::new(customer, "web", ctx).at(Timestamp(MONDAY))
}

fn gets_card(e: &Engine, customer: &str) -> bool {
    e.decide(&request(e, customer))
        .unwrap()
        .action_ids()
        .contains(&"CARD")
}

/// The engine's saved state: the header without its `saved` time (outcome
/// counts and volume counters), then every customer's events, leaving out
/// customers without any (a history entry without events limits nothing).
fn state_of(e: &Engine, dir: &Path, name: &str) -> Vec<serde_json::Value> {
    let path = dir.join(name);
    e.save_state(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| {
            l.get("events")
                .is_none_or(|e| !e.as_array().unwrap().is_empty())
                && l["kind"] != "end"
        })
        .collect();
    lines[0].as_object_mut().unwrap().remove("saved");
    lines
}

/// An engine whose log has met ENOSPC (a flush failed on `/dev/full`).
fn failing_engine(on_error: OnError) -> Engine {
    let mut log = LogConfig::new("/dev/full");
    log.on_error = on_error;
    let e = engine(Some(log));
    assert!(!e.stats().log.unwrap().failing);
    let err = e.flush().unwrap_err();
    assert!(err.to_string().contains("/dev/full"), "{err}");
    assert!(e.stats().log.unwrap().failing);
    e
}

/// A decision whose record the log refuses is an error, and it leaves the
/// cap's units and the customers' contact limits as they were: as if it
/// had never been made (before, the units and impressions it took stayed
/// taken, so a failing log used up caps and contact limits for nothing).
#[test]
fn a_refused_decision_gives_back_its_cap_units_and_impressions() {
    let dir = tempfile::tempdir().unwrap();
    let e = failing_engine(OnError::Fail);
    let before = state_of(&e, dir.path(), "before.state");
    for c in ["a", "b", "c", "a"] {
        let err = e.decide(&request(&e, c)).unwrap_err();
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }
    // A refused outcome changes nothing either.
    let outcome = r#"{"customer_id":"a","action":"CARD","channel":"web","outcome":"accepted"}"#;
    assert!(e.record_outcome_json(outcome).is_err());
    assert_eq!(state_of(&e, dir.path(), "after.state"), before);
    let log = e.stats().log.unwrap();
    assert_eq!((log.refused, log.queued, log.written), (5, 0, 0), "{log:?}");
    assert_eq!(e.stats().decision_errors, 4);

    // The state, carried over to an engine that logs nowhere, still has
    // the whole cap and every customer's contact limit.
    let path = dir.path().join("after.state");
    let fresh = engine(None);
    fresh.load_state(&path).unwrap();
    assert!(gets_card(&fresh, "a"));
    assert!(gets_card(&fresh, "b"));
    assert!(!gets_card(&fresh, "c"), "the cap of 2 a day is reached");
    assert!(!gets_card(&fresh, "a"), "a's contact limit is reached");
}

/// `degrade` decides on while the log fails, and says so: nothing reached
/// the file, the records wait to be retried, the log is `failing`.
#[test]
fn degrade_decides_on_and_says_the_log_is_failing() {
    let e = failing_engine(OnError::Degrade);
    assert!(gets_card(&e, "a"));
    assert!(gets_card(&e, "b"));
    let err = e.flush().unwrap_err();
    assert!(err.to_string().contains("/dev/full"), "{err}");
    let log = e.stats().log.unwrap();
    assert!(log.failing, "{log:?}");
    assert_eq!((log.queued, log.written, log.synced), (2, 0, 0), "{log:?}");
    assert_eq!(log.refused, 0, "{log:?}");
    assert!(log.errors >= 2, "{log:?}");
}

/// A stalled disk: the log writes to a FIFO that nobody reads, so its
/// writer blocks once the pipe is full and the queue fills behind it.
/// A decision then waits `block_timeout_ms` for room, at most, and is
/// refused (`on_error = "fail"`); once the disk moves again, decisions
/// are logged again.
#[test]
fn a_stalled_disk_holds_a_decision_for_block_timeout_ms_then_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stalled");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // The reader opens the FIFO (which waits for the log to open it),
    // then reads nothing until told to, then everything until the log
    // closes it.
    let (go, wait) = mpsc::channel::<()>();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut pipe = std::fs::File::open(&fifo).unwrap();
            wait.recv().unwrap();
            let mut sink = Vec::new();
            pipe.read_to_end(&mut sink).unwrap();
            sink.len()
        })
    };
    let mut log = LogConfig::new(&fifo);
    log.queue_capacity = 8;
    log.block_timeout_ms = 50;
    // No periodic sync (an fsync of a FIFO fails): the writer hands
    // records to the FIFO every 256 KiB of them.
    log.sync_interval_ms = 3_600_000;
    let e = engine(Some(log));
    let mut made = 0;
    let err = loop {
        match e.decide(&request(&e, &format!("c{made}"))) {
            Ok(_) => made += 1,
            Err(err) => break err,
        }
        assert!(made < 100_000, "the log never stalled");
    };
    assert!(err.to_string().contains("block_timeout_ms = 50"), "{err}");
    let log = e.stats().log.unwrap();
    assert!(log.block_timeouts >= 1 && log.refused >= 1, "{log:?}");
    assert!(!log.failing, "{log:?}");
    // The disk moves again.
    go.send(()).unwrap();
    let mut tries = 0;
    while e.decide(&request(&e, "after")).is_err() {
        tries += 1;
        assert!(tries < 1000, "the log never took records again");
    }
    drop(e);
    assert!(reader.join().unwrap() > 64 * 1024);
}
