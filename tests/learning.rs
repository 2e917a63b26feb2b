//! Outcomes, interaction history, contact policies, channel limits, volume
//! constraints and adaptive propensity: their semantics, with an injected
//! clock (request `now` and outcome `timestamp`), no sleeping.

use std::sync::Arc;

use nextbest::{
    Context, DecisionRequest, Engine, EngineConfig, Outcome, OutcomeKind, RuleSet, RuleSource,
    Timestamp,
};

const DAY: i64 = 86_400;
const T0: i64 = 1_795_392_000; // 2026-11-23T00:00:00Z, a Monday

const ACTIONS: &str = r#"
[[actions]]
id = "CARD_A"
group = "cards"
channels = ["web", "email"]
value = 10.0
starting_propensity = 0.10
treatment = "A"

[[actions]]
id = "CARD_B"
group = "cards"
channels = ["web", "email"]
value = 10.0
starting_propensity = 0.09
treatment = "B"

[[actions]]
id = "LOAN_A"
group = "loans"
channels = ["web", "email"]
value = 10.0
starting_propensity = 0.05
treatment = "L"
"#;

fn rules(extra: &str) -> RuleSet {
    let main = format!(
        r#"
name = "state"
default_limit = 3
[schema]
age = "int"
[channels]
web = {{ direction = "inbound", limit = 3 }}
email = {{ direction = "outbound", limit = 3, contact_limit = {{ max = 2, within = "7d" }} }}
[issues.growth]
[groups.cards]
issue = "growth"
[groups.loans]
issue = "growth"
{extra}
"#
    );
    RuleSet::compile(
        &RuleSource::new()
            .file("ruleset.toml", main)
            .file("actions/a.toml", ACTIONS),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn request(engine: &Engine, customer: &str, channel: &str, at: i64) -> DecisionRequest {
    let ctx = Context::builder(&engine.schema())
        .set("age", 40)
        .build()
        .unwrap();
    let mut r = DecisionRequest::new(customer, channel, ctx);
    r.now = Some(Timestamp(at));
    r.explain = true;
    r
}

fn outcome(customer: &str, action: &str, channel: &str, kind: OutcomeKind, at: i64) -> Outcome {
    Outcome {
        decision_id: None,
        customer_id: customer.into(),
        action: action.into(),
        channel: channel.into(),
        kind,
        timestamp: Some(Timestamp(at)),
    }
}

fn actions(engine: &Engine, customer: &str, channel: &str, at: i64) -> Vec<String> {
    let d = engine
        .decide(&request(engine, customer, channel, at))
        .unwrap();
    d.action_ids().iter().map(|a| a.to_string()).collect()
}

/// The stage and note that removed `action`, from the explained JSON.
fn removed_by(
    engine: &Engine,
    customer: &str,
    channel: &str,
    at: i64,
    action: &str,
) -> Option<(String, String)> {
    let d = engine
        .decide(&request(engine, customer, channel, at))
        .unwrap();
    let j = serde_json::to_value(&d).unwrap();
    j["filtered"]
        .as_array()?
        .iter()
        .find(|r| r["action"] == action)
        .map(|r| {
            (
                r["stage"].as_str().unwrap_or_default().to_string(),
                r["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

const PER_ACTION: &str = r#"
[[contact_policies]]
name = "ignored_3_in_7d"
outcomes = ["no_response"]
count = 3
within = "7d"
suppress_for = "14d"
"#;

#[test]
fn a_contact_policy_suppresses_the_action_from_the_third_event_in_the_window_for_its_duration() {
    let e = Engine::new(rules(PER_ACTION));
    for d in [0, 3, 6] {
        e.record_outcome(&outcome(
            "c",
            "CARD_A",
            "web",
            OutcomeKind::NoResponse,
            T0 + d * DAY,
        ))
        .unwrap();
    }
    // Just before the third event: two in the window, not suppressed.
    assert!(actions(&e, "c", "web", T0 + 6 * DAY - 1).contains(&"CARD_A".to_string()));
    // From the third event, for 14 days.
    let at = T0 + 6 * DAY;
    assert!(!actions(&e, "c", "web", at).contains(&"CARD_A".to_string()));
    let (stage, note) = removed_by(&e, "c", "web", at, "CARD_A").expect("explained");
    assert_eq!(stage, "contact_policy");
    assert!(note.contains("ignored_3_in_7d"), "{note}");
    assert!(!actions(&e, "c", "web", at + 14 * DAY - 1).contains(&"CARD_A".to_string()));
    // Suppression ends exactly D after the trigger.
    assert!(actions(&e, "c", "web", at + 14 * DAY).contains(&"CARD_A".to_string()));
    // Per action: the other card is unaffected; other customers too.
    assert!(actions(&e, "c", "web", at).contains(&"CARD_B".to_string()));
    assert!(actions(&e, "d", "web", at).contains(&"CARD_A".to_string()));
}

#[test]
fn the_window_excludes_an_event_exactly_its_length_old() {
    let e = Engine::new(rules(PER_ACTION));
    // Events at 0, 7d, 7d+1: the first is exactly 7 days before the
    // second, so it has left the window ending at 7d; with the third,
    // the window ending at 7d+1 holds only two.
    for t in [T0, T0 + 7 * DAY, T0 + 7 * DAY + 1] {
        e.record_outcome(&outcome("c", "CARD_A", "web", OutcomeKind::NoResponse, t))
            .unwrap();
    }
    assert!(actions(&e, "c", "web", T0 + 7 * DAY + 1).contains(&"CARD_A".to_string()));
    // With the first one second later, the window ending at the third
    // holds all three.
    let e = Engine::new(rules(PER_ACTION));
    for t in [T0 + 2, T0 + 7 * DAY, T0 + 7 * DAY + 1] {
        e.record_outcome(&outcome("c", "CARD_A", "web", OutcomeKind::NoResponse, t))
            .unwrap();
    }
    assert!(!actions(&e, "c", "web", T0 + 7 * DAY + 1).contains(&"CARD_A".to_string()));
}

#[test]
fn a_group_policy_on_one_channel_suppresses_the_whole_group_there_and_only_there() {
    let e = Engine::new(rules(
        r#"
[[contact_policies]]
name = "rejected_twice"
outcomes = ["rejected"]
count = 2
within = "30d"
suppress_for = "30d"
per = "group"
channel = "email"
"#,
    ));
    // Rejections on web do not count.
    for d in [0, 1] {
        e.record_outcome(&outcome(
            "c",
            "CARD_A",
            "web",
            OutcomeKind::Rejected,
            T0 + d * DAY,
        ))
        .unwrap();
    }
    assert!(actions(&e, "c", "email", T0 + 2 * DAY).contains(&"CARD_B".to_string()));
    // Two on email, of different cards: the group is suppressed, on every
    // channel's decision (the policy counts email events), loans are not.
    e.record_outcome(&outcome(
        "c",
        "CARD_A",
        "email",
        OutcomeKind::Rejected,
        T0 + 2 * DAY,
    ))
    .unwrap();
    e.record_outcome(&outcome(
        "c",
        "CARD_B",
        "email",
        OutcomeKind::Rejected,
        T0 + 3 * DAY,
    ))
    .unwrap();
    let got = actions(&e, "c", "web", T0 + 4 * DAY);
    assert_eq!(got, ["LOAN_A"]);
    assert_eq!(actions(&e, "c", "web", T0 + 33 * DAY).len(), 3);
}

#[test]
fn a_policy_without_a_duration_suppresses_while_the_window_holds_the_count() {
    let e = Engine::new(rules(
        r#"
[[contact_policies]]
name = "two_clicks_a_day"
outcomes = ["clicked", "impression"]
count = 2
within = "1d"
"#,
    ));
    e.record_outcome(&outcome("c", "LOAN_A", "web", OutcomeKind::Impression, T0))
        .unwrap();
    e.record_outcome(&outcome(
        "c",
        "LOAN_A",
        "web",
        OutcomeKind::Clicked,
        T0 + 10,
    ))
    .unwrap();
    assert!(!actions(&e, "c", "web", T0 + 10).contains(&"LOAN_A".to_string()));
    assert!(!actions(&e, "c", "web", T0 + DAY - 1).contains(&"LOAN_A".to_string()));
    assert!(actions(&e, "c", "web", T0 + DAY).contains(&"LOAN_A".to_string()));
}

#[test]
fn the_channel_limit_counts_impressions_on_that_channel_over_its_window() {
    let e = Engine::new(rules(""));
    e.record_outcome(&outcome(
        "c",
        "CARD_A",
        "email",
        OutcomeKind::Impression,
        T0,
    ))
    .unwrap();
    e.record_outcome(&outcome("c", "LOAN_A", "web", OutcomeKind::Impression, T0))
        .unwrap();
    assert_eq!(actions(&e, "c", "email", T0 + 1).len(), 3);
    e.record_outcome(&outcome(
        "c",
        "LOAN_A",
        "email",
        OutcomeKind::Impression,
        T0 + DAY,
    ))
    .unwrap();
    assert!(actions(&e, "c", "email", T0 + DAY).is_empty());
    let (stage, note) = removed_by(&e, "c", "email", T0 + DAY, "CARD_B").unwrap();
    assert_eq!((stage.as_str(), note.as_str()), ("channel_limit", "email"));
    // Web has no limit; and 7 days after the first impression, one is left.
    assert_eq!(actions(&e, "c", "web", T0 + DAY).len(), 3);
    assert_eq!(actions(&e, "c", "email", T0 + 7 * DAY).len(), 3);
}

#[test]
fn record_impressions_puts_returned_actions_in_the_history() {
    let mut config = EngineConfig::default();
    config.record_impressions = true;
    let e = Engine::try_with_config(rules(""), config).unwrap();
    assert_eq!(actions(&e, "c", "email", T0).len(), 3);
    // Three impressions on email: the limit of 2 a week is reached.
    assert!(actions(&e, "c", "email", T0 + 1).is_empty());
}

#[test]
fn a_volume_constraint_gives_exactly_its_cap_across_threads_then_resets_next_period() {
    let e = Arc::new(Engine::new(rules(
        r#"
[[volume_constraints]]
name = "card_a_daily"
action = "CARD_A"
max = 500
period = "day"
"#,
    )));
    let given: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let e = Arc::clone(&e);
                s.spawn(move || {
                    (0..400)
                        .filter(|i| {
                            actions(&e, &format!("c{t}-{i}"), "web", T0 + 100)
                                .contains(&"CARD_A".to_string())
                        })
                        .count()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(given, 500);
    let (stage, note) = removed_by(&e, "x", "web", T0 + 200, "CARD_A").unwrap();
    assert_eq!(
        (stage.as_str(), note.as_str()),
        ("volume_constraint", "card_a_daily")
    );
    // The others still fill the slots; the next day starts again.
    assert_eq!(actions(&e, "x", "web", T0 + 200), ["CARD_B", "LOAN_A"]);
    assert!(actions(&e, "x", "web", T0 + DAY).contains(&"CARD_A".to_string()));
}

#[test]
fn learning_moves_propensity_toward_the_observed_rate() {
    let e = Engine::new(rules(
        "[learning]\nmode = \"posterior_mean\"\nprior_strength = 10\n",
    ));
    // CARD_A starts ahead (0.10 vs 0.05); LOAN_A is accepted far more often.
    for i in 0..200 {
        let kind = if i % 2 == 0 {
            OutcomeKind::Accepted
        } else {
            OutcomeKind::Rejected
        };
        e.record_outcome(&outcome(&format!("u{i}"), "LOAN_A", "web", kind, T0))
            .unwrap();
        e.record_outcome(&outcome(
            &format!("u{i}"),
            "CARD_A",
            "web",
            OutcomeKind::Rejected,
            T0,
        ))
        .unwrap();
    }
    let d = e.decide(&request(&e, "z", "web", T0)).unwrap();
    assert_eq!(d.action_ids()[0], "LOAN_A");
    let p = d.actions().next().unwrap().propensity();
    assert!((p - (100.0 + 0.5) / 210.0).abs() < 1e-12, "{p}");
    assert_eq!(d.selection_probability(), Some(1.0));
    // Outcomes on email do not teach web.
    let d = e.decide(&request(&e, "z", "email", T0)).unwrap();
    assert_eq!(d.action_ids()[0], "CARD_A");
}

#[test]
fn thompson_sampling_converges_on_the_best_action_with_seeded_simulated_customers() {
    use rand::{Rng, SeedableRng};
    let e = Engine::new(rules("[learning]\nmode = \"thompson\"\n"));
    let truth = |a: &str| match a {
        "CARD_A" => 0.02,
        "CARD_B" => 0.05,
        _ => 0.20,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut best_late = 0;
    for i in 0..3000 {
        let mut r = request(&e, &format!("u{i}"), "web", T0 + i);
        r.limit = Some(1);
        r.explain = false;
        let d = e.decide(&r).unwrap();
        let a = d.action_ids()[0].to_string();
        let kind = if rng.random::<f64>() < truth(&a) {
            OutcomeKind::Accepted
        } else {
            OutcomeKind::Rejected
        };
        e.record_outcome(&outcome(&format!("u{i}"), &a, "web", kind, T0 + i))
            .unwrap();
        if i >= 2000 && a == "LOAN_A" {
            best_late += 1;
        }
    }
    // The best action (0.20) is chosen in most of the last 1000 decisions.
    assert!(
        best_late > 800,
        "LOAN_A chosen {best_late} of the last 1000"
    );
}

#[test]
fn epsilon_greedy_logs_exact_selection_probabilities() {
    let e = Engine::new(rules(
        "[learning]\nmode = \"epsilon_greedy\"\nepsilon = 0.3\n",
    ));
    let mut explored = 0;
    for i in 0..2000 {
        let d = e.decide(&request(&e, &format!("u{i}"), "web", T0)).unwrap();
        let first = d.action_ids()[0].to_string();
        let p = d.selection_probability().unwrap();
        if first == "CARD_A" {
            assert!((p - (0.7 + 0.1)).abs() < 1e-12, "{p}");
        } else {
            explored += 1;
            assert!((p - 0.1).abs() < 1e-12, "{p}");
        }
    }
    // Two of three survivors are explored with probability 0.3 * 2/3 = 0.2.
    assert!((300..500).contains(&explored), "{explored}");
}

#[test]
fn epsilon_greedy_explores_after_a_strategy_re_ranks() {
    // The strategy's adjust hook makes LOAN_A the greedy first; exploration
    // must still happen after it, with the logged probability exact.
    let main = r#"
name = "state"
default_limit = 3
[schema]
age = "int"
[channels]
web = { direction = "inbound", limit = 3 }
email = { direction = "outbound", limit = 3 }
[issues.growth]
[groups.cards]
issue = "growth"
[groups.loans]
issue = "growth"
[strategy]
script = "strategies/s.rhai"
[learning]
mode = "epsilon_greedy"
epsilon = 0.3
"#;
    let script = r#"
fn adjust(customer, candidate) {
    if candidate.id == "LOAN_A" { candidate.value = candidate.value * 100.0; }
    candidate
}
"#;
    let rs = RuleSet::compile(
        &RuleSource::new()
            .file("ruleset.toml", main)
            .file("actions/a.toml", ACTIONS)
            .file("strategies/s.rhai", script),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let e = Engine::new(rs);
    let mut explored = 0;
    for i in 0..2000 {
        let d = e.decide(&request(&e, &format!("u{i}"), "web", T0)).unwrap();
        let first = d.action_ids()[0].to_string();
        let p = d.selection_probability().unwrap();
        if first == "LOAN_A" {
            assert!((p - (0.7 + 0.1)).abs() < 1e-12, "{p}");
        } else {
            explored += 1;
            assert!((p - 0.1).abs() < 1e-12, "{p}");
        }
        assert_eq!(d.action_ids().len(), 3);
    }
    assert!((300..500).contains(&explored), "{explored}");
}

#[test]
fn state_survives_a_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.jsonl");
    let e = Engine::new(rules(&format!("{PER_ACTION}\n[learning]\n")));
    for d in [0, 1, 2] {
        e.record_outcome(&outcome(
            "c",
            "CARD_A",
            "web",
            OutcomeKind::NoResponse,
            T0 + d * DAY,
        ))
        .unwrap();
    }
    e.record_outcome(&outcome("k", "LOAN_A", "web", OutcomeKind::Accepted, T0))
        .unwrap();
    e.save_state(&path).unwrap();
    let before =
        serde_json::to_value(e.decide(&request(&e, "c", "web", T0 + 3 * DAY)).unwrap()).unwrap();

    let fresh = Engine::new(rules(&format!("{PER_ACTION}\n[learning]\n")));
    fresh.load_state(&path).unwrap();
    let after = serde_json::to_value(
        fresh
            .decide(&request(&fresh, "c", "web", T0 + 3 * DAY))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(before["actions"], after["actions"]);
    assert_eq!(before["filtered"], after["filtered"]);
    assert_eq!(before["ranked"], after["ranked"]);
    assert!(!actions(&fresh, "c", "web", T0 + 3 * DAY).contains(&"CARD_A".to_string()));

    // A damaged file is an error, and changes nothing.
    std::fs::write(&path, "{\"v\":1,\"kind\":\"nextbest-state\"").unwrap();
    let err = fresh.load_state(&path).unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn rule_errors_in_state_policies_are_located() {
    let src = RuleSource::new()
        .file(
            "ruleset.toml",
            r#"name = "x"
[schema]
age = "int"
[channels]
web = { direction = "inbound", contact_limit = { max = 0, within = "7" } }
[issues.growth]
[groups.cards]
issue = "growth"
[[contact_policies]]
name = "p"
outcomes = ["accepted", "bought"]
count = 2
within = "7d"
per = "customer"
channel = "webb"
[[volume_constraints]]
name = "v"
group = "cardz"
max = 10
period = "month"
[learning]
mode = "greedy"
"#,
        )
        .file("actions/a.toml", ACTIONS.replace("\"email\"", "\"web\""));
    let err = RuleSet::compile(&src).unwrap_err().to_string();
    for needle in [
        "ruleset.toml:5:",
        "contact limit `max`",
        "`7` is not a duration",
        "unknown outcome `bought`",
        "`per = \"customer\"`",
        "unknown channel `webb` (did you mean `web`?)",
        "unknown group `cardz` (did you mean `cards`?)",
        "period `month`",
        "learning mode `greedy`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

/// Decisions that read engine state (history, volume counters, learned
/// counts, Thompson draws) replay exactly from the log, which records what
/// the state contributed and the seed of the draws; a wrong seed is caught.
#[test]
fn decisions_on_engine_state_replay_exactly_from_the_logged_seed_and_state() {
    replays_exactly("\"thompson\"");
}

/// The same with epsilon-greedy, whose explorations put a survivor ahead of
/// the arbitration order: the log keeps that order.
#[test]
fn epsilon_greedy_decisions_replay_exactly() {
    replays_exactly("\"epsilon_greedy\"\nepsilon = 0.3");
}

fn replays_exactly(mode: &str) {
    use nextbest::audit::LogConfig;
    use nextbest::tools::replay::{replay, VersionSources};
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(rules_dir.join("actions")).unwrap();
    let extra = format!(
        "{PER_ACTION}\n[[volume_constraints]]\nname = \"loan_cap\"\naction = \"LOAN_A\"\nmax = 10\nperiod = \"day\"\n[learning]\nmode = {mode}\n"
    );
    let src = rules(&extra);
    for (path, text) in src.source().files() {
        std::fs::write(rules_dir.join(path), text).unwrap();
    }
    let log = dir.path().join("log.jsonl");
    let mut config = EngineConfig::default();
    config.decision_log = Some(LogConfig::new(&log));
    let e = Engine::try_with_config(RuleSet::from_dir(&rules_dir).unwrap(), config).unwrap();
    for i in 0..300i64 {
        let customer = format!("u{}", i % 50);
        let mut r = request(&e, &customer, "web", T0 + i * 3600);
        r.explain = false;
        let d = e.decide(&r).unwrap();
        let first = d.action_ids()[0].to_string();
        let kind = if i % 3 == 0 {
            OutcomeKind::Accepted
        } else {
            OutcomeKind::NoResponse
        };
        e.record_outcome(&outcome(&customer, &first, "web", kind, T0 + i * 3600))
            .unwrap();
    }
    e.flush().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decisions: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["kind"] == "decision").collect();
    assert_eq!(decisions.len(), 300);
    assert!(decisions
        .iter()
        .any(|r| r["blocked"].to_string().contains("contact_policy")));
    assert!(decisions
        .iter()
        .any(|r| r["blocked"].to_string().contains("loan_cap")));
    assert!(decisions
        .iter()
        .all(|r| r["seed"].is_u64() && r["evidence"].is_array()));
    let sources = VersionSources {
        rules_dir: Some(rules_dir.clone()),
        archive_dir: None,
    };
    let report = replay(std::slice::from_ref(&log), &sources).unwrap();
    assert!(
        report.ok(),
        "{:?}",
        report.mismatches.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(report.matched, 300);

    // Change every seed: the Thompson draws differ, and replay says so.
    let tampered = dir.path().join("tampered.jsonl");
    let lines: Vec<String> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(s) = r["seed"].as_u64() {
                r["seed"] = serde_json::json!(s ^ 1);
            }
            r.to_string()
        })
        .collect();
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    let report = replay(std::slice::from_ref(&tampered), &sources).unwrap();
    assert!(!report.mismatches.is_empty(), "a wrong seed went unnoticed");
}

#[test]
fn a_history_that_keeps_nothing_is_a_configuration_error() {
    let mut config = EngineConfig::default();
    config.history.max_events = 0;
    let err = Engine::try_with_config(rules(""), config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("history.max_events"), "{err}");
    let json = r#"{"rules_dir": "tests/fixtures/mini", "history": {"retention_secs": 0}}"#;
    let err = Engine::from_config_json(json).unwrap_err().to_string();
    assert!(err.contains("history.retention_secs"), "{err}");
}

/// A store that persists itself (as a shared database would): it does not
/// save to files.
#[derive(Debug, Default)]
struct External(parking_lot::Mutex<Vec<(String, nextbest::state::history::Event)>>);

impl nextbest::state::history::HistoryStore for External {
    fn record(
        &self,
        customer: &str,
        event: nextbest::state::history::Event,
    ) -> Result<(), nextbest::Error> {
        self.0.lock().push((customer.to_string(), event));
        Ok(())
    }
    fn recent(
        &self,
        customer: &str,
        since: i64,
        out: &mut Vec<nextbest::state::history::Event>,
    ) -> Result<(), nextbest::Error> {
        out.extend(
            self.0
                .lock()
                .iter()
                .filter(|(c, e)| c == customer && e.at >= since)
                .map(|(_, e)| *e),
        );
        Ok(())
    }
}

#[test]
fn state_with_a_store_that_persists_itself_saves_learning_and_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.jsonl");
    let rules_text = format!("{PER_ACTION}\n[learning]\n");
    let e = Engine::new(rules(&rules_text)).with_history_store(Arc::new(External::default()));
    for _ in 0..40 {
        e.record_outcome(&outcome("k", "LOAN_A", "web", OutcomeKind::Accepted, T0))
            .unwrap();
    }
    e.save_state(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"external\":true"), "{text}");

    let fresh = Engine::new(rules(&rules_text)).with_history_store(Arc::new(External::default()));
    fresh.load_state(&path).unwrap();
    // The learned counts came back: LOAN_A, accepted 40 times, ranks first.
    assert_eq!(actions(&fresh, "new", "web", T0 + DAY)[0], "LOAN_A");
    assert_ne!(
        actions(&Engine::new(rules(&rules_text)), "new", "web", T0 + DAY)[0],
        "LOAN_A"
    );
    // The file loads into an engine with the in-memory store too.
    Engine::new(rules(&rules_text)).load_state(&path).unwrap();
}

/// An outcome delivered twice (a retry, a replayed queue) that names its
/// decision counts once: in the learning counts, the history and the
/// stats. A different outcome of the same decision still counts, and so
/// does every outcome that names no decision (nothing tells them apart).
#[test]
fn an_outcome_delivered_twice_for_the_same_decision_is_counted_once() {
    let e = Engine::new(rules(
        "[learning]\nmode = \"posterior_mean\"\nprior_strength = 10\n",
    ));
    let d = e.decide(&request(&e, "u1", "web", T0)).unwrap();
    let with_id = |kind| Outcome {
        decision_id: Some(d.id()),
        ..outcome("u1", "LOAN_A", "web", kind, T0 + 60)
    };
    for _ in 0..3 {
        e.record_outcome(&with_id(OutcomeKind::Accepted)).unwrap();
    }
    e.record_outcome(&with_id(OutcomeKind::Clicked)).unwrap();
    // The JSON form, as a desktop retries it.
    let json = format!(
        r#"{{"decision_id": "{}", "customer_id": "u1", "action": "LOAN_A", "channel": "web", "outcome": "accepted"}}"#,
        d.id()
    );
    e.record_outcome_json(&json).unwrap();
    let stats = e.stats();
    assert_eq!(stats.outcomes, 2, "accepted once, clicked once");
    assert_eq!(stats.duplicate_outcomes, 3);
    // The posterior saw one acceptance: (1 + 10 * 0.05) / (1 + 10).
    let p = e
        .decide(&request(&e, "z", "web", T0 + 120))
        .unwrap()
        .actions()
        .find(|a| a.action() == "LOAN_A")
        .unwrap()
        .propensity();
    assert!((p - (1.0 + 10.0 * 0.05) / 11.0).abs() < 1e-12, "{p}");
    // Without a decision id, each is counted.
    for _ in 0..2 {
        e.record_outcome(&outcome("u2", "LOAN_A", "web", OutcomeKind::Accepted, T0))
            .unwrap();
    }
    assert_eq!(e.stats().outcomes, 4);
    assert_eq!(e.stats().duplicate_outcomes, 3);
}
