//! Hot swap: atomic publish, failed loads, rollback, history, watching,
//! and experiment arms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nextbest::{Arm, Context, DecisionRequest, Engine, EngineConfig, RuleSet, RuleSource};

fn ruleset_toml(name: &str, experiment: &str) -> String {
    format!(
        r#"
name = "{name}"
[schema]
age = "int"
[channels]
web = {{ direction = "inbound", limit = 1 }}
[issues.growth]
[groups.offers]
issue = "growth"
{experiment}
"#
    )
}

/// Version `k`: action `TOP_k` has the highest value, so every decision
/// shows which version made it.
fn version(k: u64) -> RuleSet {
    let actions = format!(
        r#"
[[actions]]
id = "TOP_{k}"
group = "offers"
channels = ["web"]
value = 100.0
starting_propensity = 0.5
treatment = "top"

[[actions]]
id = "OTHER"
group = "offers"
channels = ["web"]
value = 1.0
starting_propensity = 0.5
treatment = "other"
"#
    );
    let src = RuleSource::new()
        .file("ruleset.toml", ruleset_toml(&format!("v{k}"), ""))
        .file("actions/a.toml", actions);
    RuleSet::compile(&src).expect("version compiles")
}

fn request(engine: &Engine, customer: &str) -> DecisionRequest {
    let ctx = Context::builder(&engine.schema())
        .set("age", 40)
        .build()
        .unwrap();
    DecisionRequest::new(customer, "web", ctx)
}

#[test]
fn decisions_never_mix_versions_while_a_publisher_swaps_every_millisecond() {
    let engine = Arc::new(Engine::new(version(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let decided = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|t| {
            let engine = engine.clone();
            let stop = stop.clone();
            let decided = decided.clone();
            std::thread::spawn(move || {
                let req = request(&engine, &format!("C{t}"));
                let (mut n, mut last, mut mismatches, mut errors) = (0u64, 0u64, 0u64, 0u64);
                let mut backwards = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match engine.decide(&req) {
                        Ok(d) => {
                            let name = d.ruleset().name().to_string();
                            let k: u64 = name[1..].parse().unwrap();
                            if d.action_ids() != vec![format!("TOP_{k}")] {
                                mismatches += 1;
                            }
                            if d.version() < last {
                                backwards += 1;
                            }
                            last = d.version();
                            n += 1;
                            decided.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => errors += 1,
                    }
                }
                (n, mismatches, errors, backwards, last)
            })
        })
        .collect();
    // Counted, not timed: at least 200 swaps a millisecond apart, with
    // decisions in between (a loaded machine takes longer, never fails);
    // the minute is only a guard against a hang.
    let started = Instant::now();
    let mut published = 0;
    while (published < 200 || decided.load(Ordering::Relaxed) < 2_000)
        && started.elapsed() < Duration::from_secs(60)
    {
        published += 1;
        engine.publish(version(published));
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for r in readers {
        let (n, mismatches, errors, backwards, last) = r.join().unwrap();
        assert_eq!(errors, 0, "decisions failed during swaps");
        assert_eq!(
            mismatches, 0,
            "a decision's actions belong to another version than it reports"
        );
        assert_eq!(backwards, 0, "a thread saw versions go backwards");
        assert!(last > 1, "the reader saw new versions");
        total += n;
    }
    assert!(published > 100, "published {published} versions");
    assert!(total > 1000, "made {total} decisions");
    assert_eq!(engine.current().number(), published + 1);
}

#[test]
fn a_failed_load_keeps_the_live_version_serving_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ruleset.toml"), ruleset_toml("broken", "")).unwrap();
    std::fs::create_dir(dir.path().join("actions")).unwrap();
    std::fs::write(
        dir.path().join("actions/a.toml"),
        "[[actions]]\nid = \"X\"\ngroup = \"nope\"\nchannels = [\"web\"]\nvalue = 1.0\nstarting_propensity = 0.5\ntreatment = \"t\"\n",
    )
    .unwrap();
    let engine = Engine::new(version(1));
    let err = engine.reload(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("actions/a.toml:3:9: unknown group `nope`"),
        "{err}"
    );
    assert_eq!(engine.current().number(), 1);
    let d = engine.decide(&request(&engine, "C1")).unwrap();
    assert_eq!(d.action_ids(), vec!["TOP_1"]);
    let stats = engine.stats();
    assert_eq!(stats.loads_failed, 1);
    assert_eq!(stats.loads_succeeded, 1);
    assert!(stats.last_load_error.unwrap().contains("unknown group"));
    let missing = engine
        .reload(dir.path().join("does-not-exist"))
        .unwrap_err();
    assert!(missing.to_string().contains("ruleset.toml"), "{missing}");
    assert_eq!(engine.stats().loads_failed, 2);
}

#[test]
fn rollback_serves_the_previous_version_at_once_and_stops_at_the_oldest() {
    let engine = Engine::new(version(1));
    assert_eq!(engine.publish(version(2)), 2);
    assert_eq!(engine.publish(version(3)), 3);
    assert_eq!(engine.rollback().unwrap(), 2);
    assert_eq!(
        engine.decide(&request(&engine, "C")).unwrap().action_ids(),
        vec!["TOP_2"]
    );
    assert_eq!(engine.rollback().unwrap(), 1);
    assert_eq!(
        engine.decide(&request(&engine, "C")).unwrap().action_ids(),
        vec!["TOP_1"]
    );
    let err = engine.rollback().unwrap_err();
    assert!(err.to_string().contains("no previous version"), "{err}");
    // Publishing after a rollback continues the numbering.
    assert_eq!(engine.publish(version(4)), 4);
}

#[test]
fn a_version_published_under_a_given_number_serves_under_it() {
    // As a fleet follower does: the fleet's numbers, not the engine's.
    let engine = Engine::new(version(1));
    assert_eq!(engine.publish_numbered(version(2), 17), 17);
    let d = engine.decide(&request(&engine, "C")).unwrap();
    assert_eq!(d.action_ids(), vec!["TOP_2"]);
    assert!(d.to_json().contains(r#""version":17"#), "{}", d.to_json());
    // Rolled back in the fleet to 12, a version this engine never had.
    assert_eq!(engine.publish_numbered(version(1), 12), 12);
    let kept: Vec<u64> = engine.versions().iter().map(|v| v.version).collect();
    assert_eq!(kept, vec![1, 17, 12]);
    // The same number again replaces the kept one.
    assert_eq!(engine.publish_numbered(version(3), 17), 17);
    let kept: Vec<u64> = engine.versions().iter().map(|v| v.version).collect();
    assert_eq!(kept, vec![1, 12, 17]);
    // The engine's own numbers continue above every number it served.
    assert_eq!(engine.publish(version(4)), 18);
    assert_eq!(engine.rollback().unwrap(), 17);
    assert_eq!(
        engine.decide(&request(&engine, "C")).unwrap().action_ids(),
        vec!["TOP_3"]
    );
}

#[test]
fn the_engine_keeps_the_last_k_versions() {
    let mut config = EngineConfig::default();
    config.keep_versions = 3;
    let engine = Engine::try_with_config(version(1), config).unwrap();
    for k in 2..=6 {
        engine.publish(version(k));
    }
    let kept: Vec<u64> = engine.versions().iter().map(|v| v.version).collect();
    assert_eq!(kept, vec![4, 5, 6]);
    assert_eq!(engine.rollback().unwrap(), 5);
    assert_eq!(engine.rollback().unwrap(), 4);
    assert!(engine.rollback().is_err());
    let stats = engine.stats();
    assert_eq!(stats.current.version, 4);
    assert_eq!(stats.loads_succeeded, 6);
}

#[test]
fn a_decision_keeps_its_version_alive_after_it_is_replaced() {
    let mut config = EngineConfig::default();
    config.keep_versions = 1;
    let engine = Engine::try_with_config(version(1), config).unwrap();
    let d = engine.decide(&request(&engine, "C")).unwrap();
    for k in 2..10 {
        engine.publish(version(k));
    }
    // The old version left the history, but the decision still reads it.
    assert_eq!(d.ruleset().name(), "v1");
    assert_eq!(d.action_ids(), vec!["TOP_1"]);
    drop(d);
    let _ = engine.stats(); // sweeps the graveyard
}

fn write_dir(dir: &std::path::Path, k: u64, broken: bool) {
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(dir.join("ruleset.toml"), ruleset_toml(&format!("v{k}"), "")).unwrap();
    let group = if broken { "missing" } else { "offers" };
    std::fs::write(
        dir.join("actions/a.toml"),
        format!("[[actions]]\nid = \"TOP_{k}\"\ngroup = \"{group}\"\nchannels = [\"web\"]\nvalue = 1.0\nstarting_propensity = 0.5\ntreatment = \"t\"\n"),
    )
    .unwrap();
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn a_watched_directory_is_reloaded_when_it_changes_and_a_broken_change_is_not_published() {
    let dir = tempfile::tempdir().unwrap();
    write_dir(dir.path(), 1, false);
    let engine = Arc::new(Engine::from_dir(dir.path()).unwrap());
    let watcher = engine.watch(dir.path(), Duration::from_millis(10));
    write_dir(dir.path(), 2, false);
    assert!(
        wait_for(|| engine.current().rules().name() == "v2"),
        "change was not loaded"
    );
    assert_eq!(engine.current().number(), 2);
    write_dir(dir.path(), 3, true);
    assert!(
        wait_for(|| engine.stats().loads_failed == 1),
        "broken change was not reported"
    );
    assert_eq!(engine.current().rules().name(), "v2");
    drop(watcher);
}

fn experiment_engine(control: &str) -> Engine {
    let exp = format!(
        "[experiment]\nname = \"gold-v2\"\nsalt = \"2026-11\"\nchallenger = \"challenger\"\nchallenger_share = 0.2\ncontrol_share = 0.1\ncontrol = \"{control}\"\n"
    );
    let actions = |top: &str| {
        format!(
            "[[actions]]\nid = \"{top}\"\ngroup = \"offers\"\nchannels = [\"web\"]\nvalue = 10.0\nstarting_propensity = 0.5\ntreatment = \"t\"\n\n[[actions]]\nid = \"LOW\"\ngroup = \"offers\"\nchannels = [\"web\"]\nvalue = 1.0\nstarting_propensity = 0.5\ntreatment = \"t\"\n"
        )
    };
    let challenger = RuleSource::new()
        .file("ruleset.toml", ruleset_toml("challenger", ""))
        .file("actions/a.toml", actions("NEW"));
    let src = RuleSource::new()
        .file("ruleset.toml", ruleset_toml("champion", &exp))
        .file("actions/a.toml", actions("OLD"))
        .challenger(challenger);
    Engine::new(RuleSet::compile(&src).expect("experiment compiles"))
}

#[test]
fn arms_split_traffic_as_configured_and_each_arm_decides_by_its_own_rules() {
    let engine = experiment_engine("no_action");
    let n = 20_000;
    let mut counts: HashMap<&'static str, u32> = HashMap::new();
    for i in 0..n {
        let d = engine
            .decide(&request(&engine, &format!("CUST-{i}")))
            .unwrap();
        let key = match d.arm() {
            Arm::Champion => {
                assert_eq!(d.action_ids(), vec!["OLD"]);
                "champion"
            }
            Arm::Challenger => {
                assert_eq!(d.action_ids(), vec!["NEW"]);
                assert_eq!(d.ruleset().name(), "challenger");
                "challenger"
            }
            _ => {
                assert!(d.action_ids().is_empty(), "control gets no action");
                "control"
            }
        };
        *counts.entry(key).or_default() += 1;
    }
    // Within 5 standard deviations of the configured shares.
    for (arm, p) in [("champion", 0.7), ("challenger", 0.2), ("control", 0.1)] {
        let expected = n as f64 * p;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        let got = counts[arm] as f64;
        assert!(
            (got - expected).abs() < 5.0 * sd,
            "{arm}: {got} vs {expected}"
        );
    }
    let stats = engine.stats();
    assert_eq!(stats.decisions.champion as u32, counts["champion"]);
    assert_eq!(stats.decisions.challenger as u32, counts["challenger"]);
    assert_eq!(stats.decisions.control as u32, counts["control"]);
}

#[test]
fn arm_assignment_is_stable_across_engines_and_matches_the_documented_hash() {
    let a = experiment_engine("no_action");
    let b = experiment_engine("no_action");
    for i in 0..2000 {
        let id = format!("C{i}");
        let da = a.decide(&request(&a, &id)).unwrap();
        let db = b.decide(&request(&b, &id)).unwrap();
        assert_eq!(da.arm(), db.arm(), "{id}");
    }
    // Golden values: xxh3-64(customer id, seed = xxh3-64("gold-v2\0salt")).
    // If these change, every customer's arm changes: do not change them.
    let golden: Vec<(&str, &str)> = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"]
        .iter()
        .map(|id| (*id, a.decide(&request(&a, id)).unwrap().arm().as_str()))
        .collect();
    assert_eq!(golden, GOLDEN_ARMS);
}

const GOLDEN_ARMS: [(&str, &str); 8] = [
    ("C1", "champion"),
    ("C2", "champion"),
    ("C3", "champion"),
    ("C4", "champion"),
    ("C5", "challenger"),
    ("C6", "champion"),
    ("C7", "champion"),
    ("C8", "control"),
];

#[test]
fn arms_follow_the_documented_formula() {
    // u = top 53 bits of xxh3-64(customer id, seed) / 2^53, with
    // seed = xxh3-64("name\0salt"); control below 0.1, challenger below 0.3.
    let engine = experiment_engine("no_action");
    let seed = xxhash_rust::xxh3::xxh3_64(b"gold-v2\x002026-11");
    for i in 0..1000 {
        let id = format!("K{i}");
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), seed);
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        let want = if u < 0.1 {
            Arm::Control
        } else if u < 0.3 {
            Arm::Challenger
        } else {
            Arm::Champion
        };
        assert_eq!(
            engine.decide(&request(&engine, &id)).unwrap().arm(),
            want,
            "{id}"
        );
    }
}

#[test]
fn the_random_eligible_control_group_gets_one_eligible_action_reproducibly() {
    let engine = experiment_engine("random_eligible");
    let mut seen = 0;
    for i in 0..500 {
        let id = format!("CUST-{i}");
        let req = request(&engine, &id).at(nextbest::Timestamp(1_800_000_000));
        let d = engine.decide(&req).unwrap();
        if d.arm() != Arm::Control {
            continue;
        }
        seen += 1;
        assert_eq!(d.action_ids().len(), 1);
        assert!(d.seed().is_some());
        let again = engine.decide(&req).unwrap();
        assert_eq!(again.action_ids(), d.action_ids());
        assert_eq!(again.seed(), d.seed());
    }
    assert!(seen > 20);
}

#[test]
fn every_thread_decides_on_the_new_version_once_publish_or_rollback_returns() {
    // Each thread decides from its own lane of the engine: many threads,
    // so that every lane is used.
    let engine = Arc::new(Engine::new(version(1)));
    assert_eq!(engine.publish(version(2)), 2);
    let versions = |engine: &Arc<Engine>| -> Vec<u64> {
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    let d = engine.decide(&request(&engine, &format!("C{i}"))).unwrap();
                    d.version()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };
    assert_eq!(versions(&engine), vec![2; 24]);
    assert_eq!(engine.rollback().unwrap(), 1);
    assert_eq!(versions(&engine), vec![1; 24]);
    assert_eq!(engine.publish(version(3)), 3);
    assert_eq!(versions(&engine), vec![3; 24]);
}
