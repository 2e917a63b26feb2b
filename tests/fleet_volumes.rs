//! Volume constraints in fleet mode against a real Redis (docs/FLEET.md):
//! several processes share one cap per period, a back-dated request counts
//! against its own period, a refused decision gives its units back, the
//! Redis counters answer as the in-memory ones do, and a server that stops
//! or dies makes decisions follow `on_unavailable` within the deadline,
//! counted, without a panic.
//!
//! The server's URL comes from `NEXTBEST_TEST_REDIS_URL` (`.ci/run` starts
//! one). Without it these tests skip with a note, except under CI (`CI`
//! set), where a missing server is a failure. The failure test starts a
//! `redis-server` of its own on a free loopback port (so it can stop and
//! kill it by its pid) and needs the binary on the PATH.
#![cfg(feature = "redis")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nextbest::state::fleet::StateConfig;
use nextbest::state::redis::RedisVolumes;
use nextbest::state::volumes::{MemoryVolumes, Take, VolumePeriod, VolumeStore, KEPT_PERIODS};
use nextbest::{Context, DecisionRequest, Engine, Stage, Timestamp};
use rand::{Rng, SeedableRng};

#[path = "support/redis.rs"]
mod support;
use support::*;

const DAY: i64 = 86_400;
const T0: i64 = 1_795_428_000; // Monday 2026-11-23T10:00:00Z
const PROCESSES: usize = 4;
const THREADS: usize = 4;
/// Decisions per thread: demand far above the cap on both days.
const DEMAND: usize = 40;
const CAP: u32 = 25;

/// A rule set whose best action, GOLD, is capped at `cap` a day (and by
/// `more` other daily caps too large to bind); PLAIN, worth less, has no
/// cap.
fn write_rules_with(dir: &Path, cap: u32, more: usize) {
    let mut more_caps = String::new();
    for i in 0..more {
        more_caps.push_str(&format!(
            "[[volume_constraints]]\nname = \"gold_daily_{i}\"\naction = \"GOLD\"\nmax = 1000000\nperiod = \"day\"\n"
        ));
    }
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(
        dir.join("ruleset.toml"),
        format!(
            r#"
name = "fleet_caps"
default_limit = 1
[schema]
age = "int"
[channels]
web = {{ direction = "inbound", limit = 1 }}
[issues.growth]
[groups.cards]
issue = "growth"

[[volume_constraints]]
name = "gold_daily"
action = "GOLD"
max = {cap}
period = "day"
{more_caps}"#
        ),
    )
    .unwrap();
    let mut actions = String::new();
    for (id, value) in [("GOLD", 30.0), ("PLAIN", 10.0)] {
        actions.push_str(&format!(
            "[[actions]]\nid = \"{id}\"\ngroup = \"cards\"\nchannels = [\"web\"]\nvalue = {value}\nstarting_propensity = 0.1\ntreatment = \"{id}\"\n\n"
        ));
    }
    std::fs::write(dir.join("actions/cards.toml"), actions).unwrap();
}

fn write_rules(dir: &Path, cap: u32) {
    write_rules_with(dir, cap, 0);
}

/// An engine opened from the engine configuration JSON (the C ABI's).
fn engine(rules: &Path, state: serde_json::Value) -> Engine {
    let config = serde_json::json!({ "rules_dir": rules, "state": state });
    Engine::from_config_json(&config.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn request(engine: &Engine, customer: &str, at: i64) -> DecisionRequest {
    let ctx = Context::builder(&engine.schema())
        .set("age", 40)
        .build()
        .unwrap();
    DecisionRequest::new(customer, "web", ctx).at(Timestamp(at))
}

/// The period `gold_daily` counts a decision at `at` in.
fn day_of(prefix_free: &str, at: i64) -> VolumePeriod<'_> {
    let number = at.div_euclid(DAY) as u32;
    VolumePeriod {
        constraint: prefix_free,
        number,
        ends: (i64::from(number) + 1) * DAY,
        length: DAY,
    }
}

/// The store of `url` with `prefix`, with a deadline (2 s) that a busy
/// test machine meets: the tests using it check answers, not deadlines.
fn volumes(url: &str, prefix: &str) -> RedisVolumes {
    RedisVolumes::connect(&StateConfig {
        key_prefix: prefix.into(),
        timeout_ms: 2_000,
        ..StateConfig::new(url)
    })
    .unwrap()
}

/// Not a test of its own: the body of each child process of
/// `a_volume_cap_holds_across_processes_per_period`, which runs this
/// binary again with `NB_VOLUME_CHILD` set. Prints `GOT day action` per
/// offer (day 0: today, -1: the day before).
#[test]
fn volume_child_process() {
    let Ok(spec) = std::env::var("NB_VOLUME_CHILD") else {
        return;
    };
    let mut parts = spec.splitn(5, '|');
    let (Some(url), Some(prefix), Some(rules), Some(go), Some(me)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        panic!("NB_VOLUME_CHILD: url|prefix|rules|go-file|process");
    };
    let state = serde_json::json!({"url": url, "key_prefix": prefix, "timeout_ms": 2000});
    let e = Arc::new(engine(Path::new(rules), state));
    // Start together, so the processes race for the same units.
    while !Path::new(go).exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let e = e.clone();
            let me = me.to_string();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..DEMAND {
                    // A third of the requests are back-dated a day,
                    // interleaved with today's.
                    let day = if (i + t) % 3 == 0 { -1 } else { 0 };
                    let c = format!("p{me}t{t}c{i}");
                    let d = e.decide(&request(&e, &c, T0 + day * DAY)).expect("decide");
                    for a in d.action_ids() {
                        got.push(format!("GOT {day} {a}"));
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
    let s = e.stats();
    assert_eq!((s.store_errors, s.decision_errors), (0, 0));
}

#[test]
fn a_volume_cap_holds_across_processes_per_period() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_rules(&rules, CAP);
    let go = dir.path().join("go");
    let prefix = unique_prefix("caps");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "volume_child_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(
                    "NB_VOLUME_CHILD",
                    format!("{url}|{prefix}|{}|{}|{p}", rules.display(), go.display()),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, "").unwrap();
    // (day, action) -> offers, over the whole fleet.
    let mut offers: BTreeMap<(i64, String), u32> = BTreeMap::new();
    let mut decided = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a child process failed");
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            // The harness prints `test volume_child_process ... ` before
            // the first line, on the same line.
            if let Some(rest) = line.find("GOT ").map(|i| &line[i + 4..]) {
                let (day, a) = rest.split_once(' ').unwrap();
                *offers
                    .entry((day.parse().unwrap(), a.to_string()))
                    .or_default() += 1;
                decided += 1;
            }
        }
    }
    assert_eq!(
        decided,
        PROCESSES * THREADS * DEMAND,
        "every request got an offer"
    );
    let store = volumes(&url, &prefix);
    for day in [-1, 0] {
        let gold = offers.get(&(day, "GOLD".to_string())).copied().unwrap_or(0);
        let plain = offers
            .get(&(day, "PLAIN".to_string()))
            .copied()
            .unwrap_or(0);
        // Demand on each day is far above the cap.
        assert!(gold + plain > 4 * CAP, "day {day}: {gold} + {plain}");
        assert!(gold <= CAP, "day {day}: {gold} GOLD offers, cap {CAP}");
        assert!(
            gold * 10 >= CAP * 9,
            "day {day}: {gold} GOLD offers, under 90% of the cap {CAP}"
        );
        // The store counted exactly what was offered: no unit lost, none
        // taken for a decision that did not return it.
        let mut used = Vec::new();
        store
            .used(&[day_of("gold_daily", T0 + day * DAY)], &mut used)
            .unwrap();
        assert_eq!(used, [Some(gold)], "day {day}");
    }

    // Once full, an engine of the fleet explains why GOLD is not offered.
    let e = engine(
        &rules,
        serde_json::json!({"url": url, "key_prefix": prefix}),
    );
    let d = e.decide(&request(&e, "late", T0).explain(true)).unwrap();
    assert_eq!(d.action_ids(), ["PLAIN"]);
    let f = d.filtered().find(|f| f.action() == "GOLD").unwrap();
    assert_eq!(f.stage(), Stage::VolumeConstraint);
    assert_eq!(f.reason().as_deref(), Some("gold_daily"));
}

/// The Redis counters give the answers the in-memory ones give, for a
/// long random run of takes, give-backs and reads over the periods both
/// keep (the last [`KEPT_PERIODS`]).
#[test]
fn redis_volumes_answer_as_the_in_memory_counters_do() {
    let Some(url) = redis_url() else { return };
    let redis = volumes(&url, &unique_prefix("contract"));
    let memory = MemoryVolumes::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(29);
    let base = (T0 / DAY) as u32;
    for step in 0..3_000 {
        let name = ["a", "b", "c"][rng.random_range(0..3)];
        let number = base + rng.random_range(0..KEPT_PERIODS);
        let p = VolumePeriod {
            number,
            ..day_of(name, i64::from(number) * DAY)
        };
        match rng.random_range(0..13) {
            10..=12 => {
                // Several actions at once, each with distinct constraints:
                // the store's one script against the default (one unit at
                // a time, given back when an action is refused).
                let actions: Vec<Vec<(VolumePeriod<'_>, u32)>> = (0..rng.random_range(1..4))
                    .map(|_| {
                        let mut names = vec!["a", "b", "c"];
                        let n = rng.random_range(1..4);
                        (0..n)
                            .map(|_| {
                                let name = names.remove(rng.random_range(0..names.len()));
                                let number = base + rng.random_range(0..KEPT_PERIODS);
                                let p = VolumePeriod {
                                    number,
                                    ..day_of(name, i64::from(number) * DAY)
                                };
                                (p, rng.random_range(1..6))
                            })
                            .collect()
                    })
                    .collect();
                let lists: Vec<&[(VolumePeriod<'_>, u32)]> =
                    actions.iter().map(Vec::as_slice).collect();
                let (mut r, mut m) = (Vec::new(), Vec::new());
                redis.take_each(&lists, &mut r).unwrap();
                memory.take_each(&lists, &mut m).unwrap();
                assert_eq!(r, m, "step {step}: take_each {actions:?}");
            }
            0..=5 => {
                let max = rng.random_range(1..6);
                assert_eq!(
                    redis.take(p, max).unwrap(),
                    memory.take(p, max).unwrap(),
                    "step {step}: take {p:?} max {max}"
                );
            }
            6..=7 => {
                redis.give_back(p).unwrap();
                memory.give_back(p).unwrap();
            }
            _ => {
                let (mut r, mut m) = (Vec::new(), Vec::new());
                redis.used(&[p], &mut r).unwrap();
                memory.used(&[p], &mut m).unwrap();
                assert_eq!(r, m, "step {step}: used {p:?}");
            }
        }
    }
}

/// A back-dated take counts against its own period; one more than
/// [`KEPT_PERIODS`]` - 1` periods before the newest counted is refused,
/// counting nothing.
#[test]
fn redis_volumes_count_a_back_dated_period_apart_and_refuse_one_too_old() {
    let Some(url) = redis_url() else { return };
    let store = volumes(&url, &unique_prefix("old"));
    let today = day_of("c", T0);
    let back = |days: u32| VolumePeriod {
        number: today.number - days,
        ends: today.ends - i64::from(days) * DAY,
        ..today
    };
    assert_eq!(store.take(today, 2).unwrap(), Take::Taken);
    assert_eq!(store.take(today, 2).unwrap(), Take::Taken);
    assert_eq!(store.take(today, 2).unwrap(), Take::Full);
    assert_eq!(store.take(back(1), 2).unwrap(), Take::Taken);
    let oldest = KEPT_PERIODS - 1;
    assert_eq!(store.take(back(oldest), 2).unwrap(), Take::Taken);
    assert_eq!(store.take(back(KEPT_PERIODS), 2).unwrap(), Take::TooOld);
    let mut used = Vec::new();
    let periods = [today, back(1), back(oldest), back(KEPT_PERIODS)];
    store.used(&periods, &mut used).unwrap();
    assert_eq!(used, [Some(2), Some(1), Some(1), None]);
    // Given back: one unit, never below zero.
    for _ in 0..3 {
        store.give_back(back(1)).unwrap();
    }
    store.used(&[back(1)], &mut used).unwrap();
    assert_eq!(used, [Some(0)]);
}

/// A decision whose record the log refuses takes nothing from the shared
/// cap: the units it took go back to Redis.
#[test]
fn a_refused_decision_gives_its_units_back_to_the_shared_store() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path(), 3);
    let prefix = unique_prefix("release");
    let config = serde_json::json!({
        "rules_dir": dir.path(),
        "decision_log": {"path": "/dev/full", "on_error": "fail"},
        "state": {"url": url, "key_prefix": prefix, "timeout_ms": 2000},
    });
    let e = Engine::from_config_json(&config.to_string()).unwrap();
    // Another engine of the fleet, logging nowhere, takes one unit.
    let other = engine(
        dir.path(),
        serde_json::json!({"url": url, "key_prefix": prefix}),
    );
    assert_eq!(
        other
            .decide(&request(&other, "x", T0))
            .unwrap()
            .action_ids(),
        ["GOLD"]
    );
    // The log's first flush meets ENOSPC: from then on it refuses records.
    assert!(e.flush().is_err());
    for c in ["a", "b", "c", "d"] {
        assert!(e.decide(&request(&e, c, T0)).is_err(), "{c}");
    }
    let mut used = Vec::new();
    volumes(&url, &prefix)
        .used(&[day_of("gold_daily", T0)], &mut used)
        .unwrap();
    assert_eq!(
        used,
        [Some(1)],
        "every unit the refused decisions took was given back"
    );
    assert_eq!(e.stats().store_errors, 0);
}

/// One decision and how long it took.
fn timed(e: &Engine, customer: &str) -> (Duration, nextbest::Decision) {
    let t = Instant::now();
    let d = e
        .decide(&request(e, customer, T0).explain(true))
        .unwrap_or_else(|err| panic!("{customer}: {err}"));
    (t.elapsed(), d)
}

const TIMEOUT_MS: u64 = 100;

/// The longest a decision may take while the store fails: one failed
/// call (its write and its read each within the deadline), with room for
/// a loaded machine. A hang would be unbounded; a call per cap, or a
/// pipeline read reply by reply, would take a deadline per cap (GOLD has
/// four here).
fn within_deadline(took: Duration) -> bool {
    took < Duration::from_millis(2 * TIMEOUT_MS + 200)
}

/// GOLD was removed at the volume-constraint stage for want of the store.
fn removed_for_want_of_state(d: &nextbest::Decision) -> bool {
    d.filtered().any(|f| {
        f.action() == "GOLD"
            && f.stage() == Stage::VolumeConstraint
            && f.reason().as_deref() == Some("state unavailable")
    })
}

#[test]
fn a_store_that_stops_or_dies_is_met_with_on_unavailable_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = own_server(dir.path()) else {
        return;
    };
    let rules = dir.path().join("rules");
    write_rules_with(&rules, 1_000_000, 3);
    let state = |policy: &str| serde_json::json!({"url": server.url(), "timeout_ms": TIMEOUT_MS, "on_unavailable": policy});
    let closed = Arc::new(engine(&rules, state("closed")));
    let open = Arc::new(engine(&rules, state("open")));
    for e in [&closed, &open] {
        assert_eq!(timed(e, "before").1.action_ids(), ["GOLD"]);
    }

    // Stopped (SIGSTOP): the kernel still accepts connections, the server
    // answers nothing. Each decision waits for its deadline, once, and
    // follows its policy.
    server.signal("-STOP");
    for i in 0..3 {
        let (took, d) = timed(&closed, &format!("stopped{i}"));
        assert!(within_deadline(took), "closed, stopped: {took:?}");
        assert_eq!(d.action_ids(), ["PLAIN"]);
        assert!(removed_for_want_of_state(&d));
        let json: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
        assert_eq!(
            json["filtered"][0],
            serde_json::json!({"action": "GOLD", "stage": "volume_constraint",
                               "level": "action", "reason": "state unavailable"})
        );
        let (took, d) = timed(&open, &format!("stopped{i}"));
        assert!(within_deadline(took), "open, stopped: {took:?}");
        assert_eq!(d.action_ids(), ["GOLD"], "open: decided without the cap");
    }
    assert_eq!(closed.stats().store_errors, 3);
    assert_eq!(open.stats().store_errors, 3);
    assert_eq!(
        closed.stats().decision_errors,
        0,
        "closed removes, not fails"
    );

    // Continued: the next decisions use the store again.
    server.signal("-CONT");
    for e in [&closed, &open] {
        let (_, d) = timed(e, "continued");
        assert_eq!(d.action_ids(), ["GOLD"]);
        assert!(!removed_for_want_of_state(&d));
    }
    assert_eq!(closed.stats().store_errors, 3);

    // Killed while threads decide.
    let stop = Arc::new(AtomicBool::new(false));
    let dead = Arc::new(AtomicBool::new(false));
    let deciders: Vec<_> = [&closed, &open]
        .into_iter()
        .flat_map(|e| (0..2).map(move |t| (e.clone(), t)))
        .map(|(e, t)| {
            let (stop, dead) = (stop.clone(), dead.clone());
            std::thread::spawn(move || {
                let mut after = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    // Decisions that start once the server is gone.
                    let after_death = dead.load(Ordering::Acquire);
                    let (took, d) = timed(&e, &format!("t{t}c{i}"));
                    if after_death {
                        after.push((took, d));
                    }
                }
                after
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    server.kill();
    dead.store(true, Ordering::Release);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    let mut after_death = [0usize; 2];
    for (i, h) in deciders.into_iter().enumerate() {
        let is_closed = i < 2;
        for (took, d) in h.join().expect("no decider panicked") {
            assert!(within_deadline(took), "killed: {took:?}");
            if is_closed {
                assert_eq!(d.action_ids(), ["PLAIN"]);
                assert!(removed_for_want_of_state(&d));
            } else {
                assert_eq!(d.action_ids(), ["GOLD"]);
            }
            after_death[usize::from(!is_closed)] += 1;
        }
    }
    assert!(after_death[0] > 0 && after_death[1] > 0, "{after_death:?}");
    let (c, o) = (closed.stats(), open.stats());
    assert!(
        c.store_errors >= 3 + after_death[0] as u64,
        "{}",
        c.store_errors
    );
    assert!(
        o.store_errors >= 3 + after_death[1] as u64,
        "{}",
        o.store_errors
    );
    assert_eq!(c.decision_errors + o.decision_errors, 0);

    // Restarted on the same port: the engines connect again by themselves,
    // once the pause between tries (at most a second while the store
    // fails) has passed; until then each decision follows its policy at
    // once, without waiting for a deadline.
    assert!(server.launch(), "redis-server restarts");
    for e in [&closed, &open] {
        let started = Instant::now();
        let served = (0..).find(|i| {
            let before = e.stats().store_errors;
            let (took, d) = timed(e, &format!("restarted{i}"));
            assert!(within_deadline(took), "restarted: {took:?}");
            let used = e.stats().store_errors == before && d.action_ids() == ["GOLD"];
            if !used {
                std::thread::sleep(Duration::from_millis(20));
            }
            used || started.elapsed() > Duration::from_secs(10)
        });
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no decision used the restarted store within 3 s (decision {served:?})"
        );
    }
    let mut used = Vec::new();
    RedisVolumes::connect(&StateConfig {
        timeout_ms: 2_000,
        ..StateConfig::new(server.url())
    })
    .unwrap()
    .used(&[day_of("gold_daily", T0)], &mut used)
    .unwrap();
    assert_eq!(
        used,
        [Some(2)],
        "each engine took its unit from the new server"
    );
}

/// A fleet engine's saved state leaves the volume counts where they live
/// (Redis keeps them), and a file holding in-memory counts is refused by
/// it, changing nothing, rather than dropped.
#[test]
fn saved_state_leaves_shared_volume_counts_in_the_store() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_rules(&rules, 1);
    let prefix = unique_prefix("saved");
    let fleet = engine(
        &rules,
        serde_json::json!({"url": url, "key_prefix": prefix}),
    );
    assert_eq!(
        fleet
            .decide(&request(&fleet, "a", T0))
            .unwrap()
            .action_ids(),
        ["GOLD"]
    );
    let saved = dir.path().join("fleet.state");
    fleet.save_state(&saved).unwrap();
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&saved)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["volumes"], serde_json::json!([]));
    assert_eq!(header["external_volumes"], true);
    // Loading it back changes no count: the cap is still used up.
    fleet.load_state(&saved).unwrap();
    assert_eq!(
        fleet
            .decide(&request(&fleet, "b", T0))
            .unwrap()
            .action_ids(),
        ["PLAIN"]
    );

    // An engine on its own counts in memory and saves its counts.
    let alone = Engine::from_dir(&rules).unwrap();
    assert_eq!(
        alone
            .decide(&request(&alone, "a", T0))
            .unwrap()
            .action_ids(),
        ["GOLD"]
    );
    let own = dir.path().join("alone.state");
    alone.save_state(&own).unwrap();
    let err = fleet.load_state(&own).unwrap_err().to_string();
    assert!(
        err.contains("volume counters") && err.contains("shared"),
        "{err}"
    );
    let mut used = Vec::new();
    volumes(&url, &prefix)
        .used(&[day_of("gold_daily", T0)], &mut used)
        .unwrap();
    assert_eq!(used, [Some(1)]);
}

/// The reads a decision makes before scoring (the customer's history for
/// the contact policies, and every cap its channel can meet) are one round
/// trip to the store; a committing decision then takes the units of every
/// cap of the actions it returns in one more, and records its impression.
#[test]
fn a_decision_reads_history_and_caps_in_one_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = own_server(dir.path()) else {
        return;
    };
    let rules = dir.path().join("rules");
    write_rules_with(&rules, 1_000_000, 2);
    let mut text = std::fs::read_to_string(rules.join("ruleset.toml")).unwrap();
    text.push_str(
        "\n[[contact_policies]]\nname = \"rejected_lately\"\noutcomes = [\"rejected\"]\ncount = 1\nwithin = \"30d\"\n",
    );
    std::fs::write(rules.join("ruleset.toml"), text).unwrap();
    let config = serde_json::json!({
        "rules_dir": rules,
        "record_impressions": true,
        "state": {"url": server.url(), "timeout_ms": 500, "exchange_ms": 600_000},
    });
    let e = Engine::from_config_json(&config.to_string()).unwrap();
    e.record_outcome(&nextbest::Outcome {
        decision_id: None,
        customer_id: "c0".into(),
        action: "GOLD".into(),
        channel: "web".into(),
        kind: nextbest::OutcomeKind::Rejected,
        timestamp: Some(Timestamp(T0 - DAY)),
    })
    .unwrap();
    let preview = |c: &str| {
        let mut r = request(&e, c, T0);
        r.mode = nextbest::Mode::Preview;
        r.explain = true;
        e.decide(&r).unwrap()
    };
    let calls = || e.stats().fleet.unwrap().store_calls;
    let before = calls();
    for i in 0..20 {
        // c0 rejected GOLD yesterday: the history read with the caps says so.
        let want = if i == 0 { ["PLAIN"] } else { ["GOLD"] };
        assert_eq!(preview(&format!("c{i}")).action_ids(), want, "c{i}");
    }
    assert_eq!(calls() - before, 20, "one round trip per decision's reads");
    let before = calls();
    assert_eq!(
        e.decide(&request(&e, "live", T0)).unwrap().action_ids(),
        ["GOLD"]
    );
    assert_eq!(
        calls() - before,
        1 + 1 + 1,
        "the reads, GOLD's three caps taken together, the impression"
    );
    assert_eq!(e.stats().store_errors, 0);

    // Stopped: the reads are one command, so a decision waits for one
    // deadline (500 ms), not one per reply, and removes for want of state.
    server.signal("-STOP");
    let started = Instant::now();
    let d = preview("c1");
    let took = started.elapsed();
    server.signal("-CONT");
    assert!(took < Duration::from_millis(900), "{took:?}");
    assert!(d.action_ids().is_empty());
    assert!(d
        .filtered()
        .all(|f| f.reason().as_deref() == Some("state unavailable")));
}
