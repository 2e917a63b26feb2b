//! Off-policy evaluation (`nextbest evaluate`), checked against the truth:
//! a log made by an exploring policy over simulated customers with known
//! acceptance rates must estimate what a candidate version would have
//! achieved, within its confidence interval.

use std::path::Path;

use nextbest::simulate::learn::{simulate_learning, LearnOptions, Policy, Truth};
use nextbest::simulate::Customer;
use nextbest::tools::evaluate::{evaluate, EvaluateOptions};
use nextbest::{Engine, OutcomeKind, RuleSet};

const ACTIONS: &str = r#"
[[actions]]
id = "CARD_A"
group = "cards"
channels = ["web"]
value = 10.0
starting_propensity = P_CARD_A
treatment = "A"

[[actions]]
id = "CARD_B"
group = "cards"
channels = ["web"]
value = 10.0
starting_propensity = P_CARD_B
treatment = "B"

[[actions]]
id = "LOAN_A"
group = "loans"
channels = ["web"]
value = 10.0
starting_propensity = P_LOAN_A
treatment = "L"
"#;

/// A rule directory whose starting propensities rank the actions as given.
fn rule_dir(root: &Path, name: &str, p: [f64; 3], learning: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(
        dir.join("ruleset.toml"),
        format!(
            "name = \"{name}\"\ndefault_limit = 1\n[schema]\nage = \"int\"\n[channels]\nweb = {{ direction = \"inbound\", limit = 1 }}\n[issues.growth]\n[groups.cards]\nissue = \"growth\"\n[groups.loans]\nissue = \"growth\"\n{learning}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("actions/a.toml"),
        ACTIONS
            .replace("P_CARD_A", &p[0].to_string())
            .replace("P_CARD_B", &p[1].to_string())
            .replace("P_LOAN_A", &p[2].to_string()),
    )
    .unwrap();
    dir
}

/// Log `rounds` × 1000 decisions of an epsilon-greedy policy (epsilon 0.5)
/// whose customers accept CARD_A at 5%, CARD_B at 10%, LOAN_A at 30%.
fn logged(root: &Path, rounds: usize) -> Vec<std::path::PathBuf> {
    let logging = rule_dir(
        root,
        "logging",
        [0.2, 0.1, 0.05],
        "[learning]\nmode = \"epsilon_greedy\"\nepsilon = 0.5\nprior_strength = 100000\n",
    );
    let truth_file = root.join("truth.toml");
    std::fs::write(
        &truth_file,
        "[actions.CARD_A]\ndefault = 0.05\n[actions.CARD_B]\ndefault = 0.10\n[actions.LOAN_A]\ndefault = 0.30\n",
    )
    .unwrap();
    let truth = Truth::load(&truth_file, &RuleSet::from_dir(&logging).unwrap()).unwrap();
    let customers: Vec<Customer> = (0..1000)
        .map(|i| {
            serde_json::from_str(&format!(
                r#"{{"customer_id": "C{i}", "context": {{"age": 40}}}}"#
            ))
            .unwrap()
        })
        .collect();
    let log = root.join("decisions.jsonl");
    let opts = LearnOptions {
        rounds,
        policies: vec![Policy::EpsilonGreedy],
        log: Some(log.clone()),
        ..LearnOptions::default()
    };
    simulate_learning(&logging, &customers, &truth, &opts, |_| {}).unwrap();
    vec![log]
}

#[test]
fn ips_and_snips_estimate_a_candidates_true_rate_within_their_intervals() {
    let root = tempfile::tempdir().unwrap();
    let logs = logged(root.path(), 4);
    // Candidates that always put one action first (no learning): their true
    // acceptance rate is that action's.
    for (name, p, truth) in [
        ("loan_first", [0.01, 0.02, 0.5], 0.30),
        ("card_b_first", [0.01, 0.5, 0.02], 0.10),
        ("card_a_first", [0.5, 0.01, 0.02], 0.05),
    ] {
        let dir = rule_dir(root.path(), name, p, "");
        let ev = evaluate(
            &logs,
            &Engine::from_dir(&dir).unwrap(),
            &EvaluateOptions::default(),
        )
        .unwrap();
        assert_eq!(ev.used, 4000, "{name}");
        assert_eq!(ev.deterministic, 0);
        assert!(ev.errors.is_empty(), "{:?}", ev.errors);
        for (what, e) in [("ips", ev.ips.unwrap()), ("snips", ev.snips.unwrap())] {
            assert!(
                e.low <= truth && truth <= e.high,
                "{name} {what}: {:.4} [{:.4}, {:.4}] should contain {truth}",
                e.value,
                e.low,
                e.high
            );
            assert!(e.high - e.low < 0.1, "{name} {what}: interval too wide");
        }
        // The logged policy mostly shows CARD_A (5%): its own rate is low.
        let logged = ev.logged.unwrap().value;
        assert!(logged < 0.15, "{logged}");
    }
}

#[test]
fn the_logging_policy_evaluated_on_its_own_log_estimates_its_own_rate() {
    let root = tempfile::tempdir().unwrap();
    let logs = logged(root.path(), 4);
    let ev = evaluate(
        &logs,
        &Engine::from_dir(root.path().join("logging")).unwrap(),
        &EvaluateOptions::default(),
    )
    .unwrap();
    let logged = ev.logged.unwrap();
    for (what, e) in [("ips", ev.ips.unwrap()), ("snips", ev.snips.unwrap())] {
        assert!(
            e.low <= logged.value && logged.value <= e.high,
            "{what}: {:.4} [{:.4}, {:.4}] should contain the logged rate {:.4}",
            e.value,
            e.low,
            e.high,
            logged.value
        );
    }
}

#[test]
fn success_kinds_and_a_candidate_without_support() {
    let root = tempfile::tempdir().unwrap();
    let logs = logged(root.path(), 1);
    let dir = rule_dir(root.path(), "loan_first", [0.01, 0.02, 0.5], "");
    let engine = Engine::from_dir(&dir).unwrap();
    // Counting impressions as success: nothing was logged as one.
    let ev = evaluate(
        &logs,
        &engine,
        &EvaluateOptions {
            success: vec![OutcomeKind::Impression],
        },
    )
    .unwrap();
    assert_eq!(ev.successes, 0);
    assert_eq!(ev.snips.unwrap().value, 0.0);

    // A log with no selection probabilities and no seeds (a deterministic
    // policy) that never chose the candidate's action: no support, and a
    // warning.
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    let strip = |keep_seed: bool| -> String {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["actions"][0] != "LOAN_A")
            .map(|mut v| {
                let m = v.as_object_mut().unwrap();
                m.remove("selection_probability");
                if !keep_seed && m.contains_key("seed") {
                    m.insert("seed".into(), serde_json::Value::Null);
                }
                format!("{v}\n")
            })
            .collect()
    };
    let path = root.path().join("deterministic.jsonl");
    std::fs::write(&path, strip(false)).unwrap();
    let ev = evaluate(&[path], &engine, &EvaluateOptions::default()).unwrap();
    assert_eq!(ev.deterministic, ev.used);
    assert_eq!(ev.unsupported, ev.used);
    assert!(ev.snips.is_none());
    assert!(
        ev.warnings
            .iter()
            .any(|w| w.contains("made with certainty")),
        "{:?}",
        ev.warnings
    );

    // With the seeds kept, they are random choices whose probability is
    // missing (as Thompson sampling logs them): left out, and said so.
    let path = root.path().join("unknown.jsonl");
    std::fs::write(&path, strip(true)).unwrap();
    let ev = evaluate(&[path], &engine, &EvaluateOptions::default()).unwrap();
    assert_eq!(ev.used, 0);
    assert!(ev.unknown_probability > 0);
    assert!(
        ev.warnings.iter().any(|w| w.contains("left out")),
        "{:?}",
        ev.warnings
    );
    let path = root.path().join("deterministic.jsonl");
    let ev = evaluate(&[path], &engine, &EvaluateOptions::default()).unwrap();
    assert!(
        ev.warnings.iter().any(|w| w.contains("no support")),
        "{:?}",
        ev.warnings
    );
    assert!(
        ev.warnings.iter().any(|w| w.contains("deterministic")),
        "{:?}",
        ev.warnings
    );
}
