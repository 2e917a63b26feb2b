//! The closed-loop learning demo (`nextbest simulate DIR --learn`): it is
//! reproducible from its seed, learning beats static starting propensities
//! when they are wrong, and truth-file errors are located.

use std::path::Path;

use nextbest::simulate::learn::{simulate_learning, LearnOptions, Policy, Truth};
use nextbest::simulate::load_customers;
use nextbest::RuleSet;

const DIR: &str = "rules/retail_bank";

fn customers(n: usize) -> Vec<nextbest::simulate::Customer> {
    let mut c = load_customers(Path::new(DIR).join("customers.jsonl")).unwrap();
    c.truncate(n);
    c
}

fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let p = dir.path().join("truth.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_does_not() {
    let rules = RuleSet::from_dir(DIR).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let truth = Truth::load(write(&dir, "scale = 2.0\n"), &rules).unwrap();
    let cs = customers(150);
    let opts = LearnOptions {
        rounds: 4,
        policies: vec![Policy::Thompson, Policy::EpsilonGreedy],
        ..LearnOptions::default()
    };
    let a = simulate_learning(Path::new(DIR), &cs, &truth, &opts, |_| {}).unwrap();
    let b = simulate_learning(Path::new(DIR), &cs, &truth, &opts, |_| {}).unwrap();
    let json = |r| serde_json::to_string(r).unwrap();
    assert_eq!(json(&a), json(&b));
    let c = simulate_learning(
        Path::new(DIR),
        &cs,
        &truth,
        &LearnOptions {
            seed: 2,
            ..opts.clone()
        },
        |_| {},
    )
    .unwrap();
    assert_ne!(json(&a), json(&c));
    // Every decision is counted once per policy, and regret never falls.
    for p in &a.policies {
        assert_eq!(
            p.decisions,
            p.rounds.iter().map(|r| r.decisions).sum::<usize>()
        );
        assert!(p.decisions > 0);
        let mut last = 0.0;
        for r in &p.rounds {
            assert!(r.cumulative_regret >= last - 1e-9, "{}", p.policy);
            assert!(r.best <= r.decisions && r.accepted <= r.decisions);
            last = r.cumulative_regret;
        }
    }
}

#[test]
fn with_one_badly_underrated_action_learning_has_less_regret_than_static() {
    // Travel insurance sells ten times better than its starting propensity
    // says; everything else is as the rule authors guessed.
    let rules = RuleSet::from_dir(DIR).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let truth = Truth::load(write(&dir, "[actions.INS_TRAVEL]\nscale = 10.0\n"), &rules).unwrap();
    let opts = LearnOptions {
        rounds: 8,
        policies: vec![Policy::Static, Policy::PosteriorMean],
        ..LearnOptions::default()
    };
    let r = simulate_learning(Path::new(DIR), &customers(400), &truth, &opts, |_| {}).unwrap();
    let (stat, mean) = (&r.policies[0], &r.policies[1]);
    assert!(stat.regret > 0.0);
    assert!(
        mean.regret < 0.8 * stat.regret,
        "posterior mean {} vs static {}",
        mean.regret,
        stat.regret
    );
    // ...and sells more: the customers who would buy travel insurance get
    // it offered (and then, having bought it, are not offered it again).
    assert!(
        mean.accepted > stat.accepted,
        "{} vs {}",
        mean.accepted,
        stat.accepted
    );
}

#[test]
fn truth_file_errors_name_the_file_line_and_column() {
    let rules = RuleSet::from_dir(DIR).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = |text: &str| {
        Truth::load(write(&dir, text), &rules)
            .unwrap_err()
            .to_string()
    };

    let e = err("segment = \"segment\"\n\n[actions.NO_SUCH]\ndefault = 0.1\n");
    assert!(
        e.contains("truth.toml:3:10") && e.contains("unknown action `NO_SUCH`"),
        "{e}"
    );

    let e = err("segment = \"segment\"\n[actions.INS_TRAVEL]\naffluent = 1.5\n");
    assert!(e.contains("truth.toml:3:12") && e.contains("[0, 1]"), "{e}");

    let e = err("[actions.INS_TRAVEL]\naffluent = 0.5\n");
    assert!(
        e.contains("truth.toml:2:1") && e.contains("names no `segment"),
        "{e}"
    );

    let e = err("segment = \"segment\"\n[actions.INS_TRAVEL]\nafluent = 0.1\n");
    assert!(
        e.contains("truth.toml:3:1") && e.contains("`afluent` is not a value"),
        "{e}"
    );

    let e = err("scale = -1.0\n");
    assert!(
        e.contains("truth.toml:1:9") && e.contains("at least 0"),
        "{e}"
    );

    let e = err("segment = \"shoe_size\"\n");
    assert!(e.contains("segment `shoe_size`"), "{e}");

    let e = err("scale = \n");
    assert!(e.contains("truth.toml:1:"), "{e}");

    let e = err("sclae = 1.0\n");
    assert!(e.contains("truth.toml:1:1") && e.contains("sclae"), "{e}");
}

#[test]
fn the_shipped_truth_file_loads() {
    let rules = RuleSet::from_dir(DIR).unwrap();
    let t = Truth::load(Path::new(DIR).join("truth.toml"), &rules).unwrap();
    assert_eq!(t.segment(), Some("segment"));
    // Listed per segment; a segment not listed falls back to `default`.
    assert_eq!(t.rate("CARD_PLATINUM", 0.03, "premier"), 0.09);
    assert_eq!(t.rate("CARD_PLATINUM", 0.03, "mass"), 0.004);
    // Scaled from the starting propensity; unlisted actions keep it.
    assert!((t.rate("INS_TRAVEL", 0.02, "mass") - 0.06).abs() < 1e-12);
    assert_eq!(t.rate("CARD_GOLD", 0.03, "mass"), 0.03);
}
