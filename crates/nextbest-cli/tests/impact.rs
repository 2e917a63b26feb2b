//! `nextbest impact`: figures checked against a simulation whose true
//! acceptance rates per arm are known.

mod common;

use std::collections::BTreeMap;

use common::{experiment_logs, ok, s};

#[test]
fn impact_recovers_a_known_lift_over_control_within_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    // Control accepts 10% of its first actions, the champion 15% (true lift
    // +50%), the challenger 12% (+20%).
    let rates = BTreeMap::from([("control", 0.10), ("champion", 0.15), ("challenger", 0.12)]);
    let (logs, truth) = experiment_logs(dir.path(), 5, &rates);
    let mut args = vec!["impact", "--json"];
    args.extend(logs.iter().map(|p| s(p)));
    let r: serde_json::Value = serde_json::from_str(&ok(&args).out).expect("json");

    assert_eq!(r["experiments"][0], "gold-floor");
    assert_eq!(
        r["unjoined_outcomes"], 0,
        "every outcome joins, half of them without a decision id"
    );
    let arm = |name: &str| {
        r["arms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["arm"] == name)
            .unwrap()
            .clone()
    };
    for name in ["champion", "challenger", "control"] {
        let a = arm(name);
        assert_eq!(
            a["decisions"].as_f64().unwrap(),
            truth.arms[name].0,
            "{name}"
        );
        let est = &a["acceptance_rate"];
        let (low, high) = (est["low"].as_f64().unwrap(), est["high"].as_f64().unwrap());
        assert!(
            low <= truth.rate(name) && truth.rate(name) <= high,
            "{name}: {est} vs true {}",
            truth.rate(name)
        );
    }
    let lift = |test: &str, metric: &str| {
        r["lifts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["test"] == test && l["control"] == "control" && l["metric"] == metric)
            .unwrap()["lift"]
            .clone()
    };
    for (test, metric, true_lift) in [
        (
            "champion",
            "acceptance_rate",
            truth.rate("champion") / truth.rate("control") - 1.0,
        ),
        (
            "challenger",
            "acceptance_rate",
            truth.rate("challenger") / truth.rate("control") - 1.0,
        ),
        (
            "champion",
            "value_per_decision",
            truth.value("champion") / truth.value("control") - 1.0,
        ),
    ] {
        let l = lift(test, metric);
        let (low, high) = (l["low"].as_f64().unwrap(), l["high"].as_f64().unwrap());
        assert!(
            low <= true_lift && true_lift <= high,
            "{test} {metric}: {l} vs true lift {true_lift}"
        );
    }
    // About 2,000 control and 5,000 champion decisions: a +50% lift is
    // clearly detected (about 4 standard errors).
    let champion = lift("champion", "acceptance_rate");
    assert!(champion["low"].as_f64().unwrap() > 0.0, "{champion}");
    let n = &r["lifts"][0]["sample_size"];
    assert!(
        n["control"].as_u64().unwrap() > 0
            && n["test"].as_u64().unwrap() > n["control"].as_u64().unwrap(),
        "{n}"
    );
}

#[test]
fn impact_says_why_lift_is_undefined_without_a_control_group() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    ok(&["simulate", "tests/fixtures/mini", "--log", s(&log)]);
    let out = ok(&["impact", s(&log)]).out;
    assert!(out.contains("champion"), "{out}");
    assert!(out.contains("no decision is in a control arm"), "{out}");
}
