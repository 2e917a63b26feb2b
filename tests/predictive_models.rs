//! Predictive models (`models/*.toml`): validated at load with
//! file:line:col, scored as a plain reference computation says, read by
//! conditions and values, versioned by their file's hash in every log
//! record, and replayed exactly.
//!
//! The fixture is `tests/fixtures/churn`: a logistic churn model over
//! every kind of input (coefficients, bins, points for a closed and an
//! open string, a bool and a string set, with and without `missing`),
//! whose score is action SCORE's value and gates action RETAIN.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nextbest::audit::{LogConfig, LogOptions, MemorySink};
use nextbest::tools::replay::{replay, VersionSources};
use nextbest::{Context, DecisionRequest, Engine, EngineConfig, RuleSet, RuleSource, Stage};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use sha2::{Digest, Sha256};

const FIXTURE: &str = "tests/fixtures/churn";

/// One customer; `None`: the request leaves the attribute out.
#[derive(Debug, Clone)]
struct Customer {
    tenure_months: Option<i64>,
    monthly_bill: Option<f64>,
    contract: Option<&'static str>,
    region: Option<&'static str>,
    has_tv: Option<bool>,
    products: Vec<&'static str>,
    complaints: Option<i64>,
}

/// models/churn.toml, computed by hand: the terms added in the file's
/// order (so the bits are the engine's), `None` when an input without
/// `missing` points is missing.
fn reference(c: &Customer) -> Option<f64> {
    let mut z = -1.25;
    z += -0.035 * c.tenure_months? as f64;
    z += match c.monthly_bill {
        Some(bill) => 0.0125 * bill,
        None => 0.4,
    };
    z += match c.contract? {
        "monthly" => 0.9,
        "annual" => -0.3,
        _ => -1.1,
    };
    z += match c.region? {
        "north" => 0.2,
        "south" => -0.15,
        _ => 0.05,
    };
    z += if c.has_tv? { -0.25 } else { 0.1 };
    let mut products = 0.0;
    if c.products.contains(&"BROADBAND") {
        products += -0.2;
    }
    if c.products.contains(&"MOBILE") {
        products += 0.15;
    }
    z += products;
    z += match c.complaints {
        Some(n) if n < 1 => 0.0,
        Some(n) if n < 3 => 0.6,
        Some(_) => 1.4,
        None => 0.0,
    };
    Some(1.0 / (1.0 + (-z).exp()))
}

fn context(engine: &Engine, c: &Customer) -> Context {
    let mut b = Context::builder(&engine.schema());
    if let Some(v) = c.tenure_months {
        b = b.set("tenure_months", v);
    }
    if let Some(v) = c.monthly_bill {
        b = b.set("monthly_bill", v);
    }
    if let Some(v) = c.contract {
        b = b.set("contract", v);
    }
    if let Some(v) = c.region {
        b = b.set("region", v);
    }
    if let Some(v) = c.has_tv {
        b = b.set("has_tv", v);
    }
    if let Some(v) = c.complaints {
        b = b.set("complaints", v);
    }
    let products: Vec<String> = c.products.iter().map(|p| p.to_string()).collect();
    b.set("products", products).build().unwrap()
}

fn customers() -> impl Strategy<Value = Customer> {
    (
        proptest::option::weighted(0.9, 0i64..240),
        proptest::option::weighted(0.8, 0.0f64..400.0),
        proptest::option::weighted(
            0.9,
            proptest::sample::select(vec!["monthly", "annual", "two_year"]),
        ),
        proptest::option::weighted(
            0.9,
            proptest::sample::select(vec!["north", "south", "east", "a region no rule names"]),
        ),
        proptest::option::weighted(0.9, any::<bool>()),
        proptest::sample::subsequence(vec!["BROADBAND", "MOBILE", "TV"], 0..=3),
        proptest::option::weighted(0.8, 0i64..8),
    )
        .prop_map(
            |(tenure_months, monthly_bill, contract, region, has_tv, products, complaints)| {
                Customer {
                    tenure_months,
                    monthly_bill,
                    contract,
                    region,
                    has_tv,
                    products,
                    complaints,
                }
            },
        )
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn logging_engine(rules: RuleSet) -> (Engine, MemorySink) {
    let sink = MemorySink::new();
    let engine = Engine::with_sink(
        rules,
        EngineConfig::default(),
        Box::new(sink.clone()),
        LogOptions::default(),
    )
    .unwrap();
    (engine, sink)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The decision reads the model's score (SCORE's value is the score,
    /// bit for bit; RETAIN needs `churn >= 0.5`), and the log record
    /// names the model with its version and the same score. A missing
    /// score leaves both actions out and is logged as null.
    #[test]
    fn the_score_is_the_reference_computation(c in customers()) {
        thread_local! {
            static LOGGED: (Engine, MemorySink) =
                logging_engine(RuleSet::from_dir(FIXTURE).unwrap());
        }
        LOGGED.with(|(engine, sink)| {
            let expected = reference(&c);
            let request = DecisionRequest::new("C1", "web", context(engine, &c)).explain(true);
            let d = engine.decide(&request).unwrap();
            let score = d.actions().find(|a| a.action() == "SCORE").map(|a| a.value());
            prop_assert_eq!(score.map(f64::to_bits), expected.map(f64::to_bits), "{:?}", c);
            let retained = d.actions().any(|a| a.action() == "RETAIN");
            prop_assert_eq!(retained, expected.is_some_and(|s| s >= 0.5));
            if expected.is_none() {
                let stage = |id: &str| d.filtered().find(|f| f.action() == id).map(|f| f.stage());
                prop_assert_eq!(stage("SCORE"), Some(Stage::Value));
                prop_assert_eq!(stage("RETAIN"), Some(Stage::Eligibility));
            }

            engine.flush().unwrap();
            let records = sink.records();
            let record: serde_json::Value =
                serde_json::from_str(records.last().unwrap()).unwrap();
            let model = &record["models"][0];
            prop_assert_eq!(model["name"].as_str(), Some("churn"));
            prop_assert_eq!(model["score"].as_f64(), expected);
            prop_assert!(model["score"].is_null() == expected.is_none());
            Ok(())
        })?;
    }
}

#[test]
fn the_models_version_is_its_files_hash_and_changes_with_it() {
    let text = std::fs::read_to_string(format!("{FIXTURE}/models/churn.toml")).unwrap();
    let source = RuleSource::from_dir(FIXTURE).unwrap();
    let rules = RuleSet::compile(&source).unwrap();
    let versions: Vec<(String, String)> = rules
        .model_versions()
        .map(|(n, h)| (n.to_string(), h.to_string()))
        .collect();
    assert_eq!(
        versions,
        [("churn".to_string(), sha256_hex(text.as_bytes()))]
    );

    // One coefficient changed: a new model version and a new rule version.
    let changed_text = text.replace("coefficient = -0.035", "coefficient = -0.036");
    assert_ne!(changed_text, text);
    let changed =
        RuleSet::compile(&source.clone().file("models/churn.toml", &*changed_text)).unwrap();
    let changed_hash = changed.model_versions().next().unwrap().1.to_string();
    assert_eq!(changed_hash, sha256_hex(changed_text.as_bytes()));
    assert_ne!(changed_hash, versions[0].1);
    assert_ne!(changed.hash(), rules.hash());

    // Every decision record names the version that scored it, and the
    // score that version gave.
    let c = Customer {
        tenure_months: Some(10),
        monthly_bill: Some(80.0),
        contract: Some("monthly"),
        region: Some("north"),
        has_tv: Some(false),
        products: vec![],
        complaints: Some(2),
    };
    let mut logged = Vec::new();
    for rules in [rules, changed] {
        let (engine, sink) = logging_engine(rules);
        engine
            .decide(&DecisionRequest::new("C1", "web", context(&engine, &c)))
            .unwrap();
        engine.flush().unwrap();
        let record: serde_json::Value = serde_json::from_str(&sink.records()[0]).unwrap();
        logged.push(record["models"].clone());
    }
    assert_eq!(
        logged[0],
        serde_json::json!([{"name": "churn", "hash": versions[0].1, "score": reference(&c)}])
    );
    assert_eq!(logged[1][0]["hash"], serde_json::json!(changed_hash));
    let (before, after) = (
        logged[0][0]["score"].as_f64(),
        logged[1][0]["score"].as_f64(),
    );
    assert!(after.is_some() && after != before, "{before:?} {after:?}");
}

#[test]
fn a_rule_set_without_models_logs_no_models_field() {
    let (engine, sink) = logging_engine(RuleSet::from_dir("tests/fixtures/mini").unwrap());
    engine
        .decide_json(r#"{"customer_id":"C1","channel":"call_center","context":{"age":40}}"#)
        .unwrap();
    engine.flush().unwrap();
    let record: serde_json::Value = serde_json::from_str(&sink.records()[0]).unwrap();
    assert!(record.get("models").is_none(), "{record}");
}

/// A copy of the fixture in a temporary directory (replay wants a rule
/// directory whose hash matches the log's).
fn fixture_copy(dir: &Path) -> PathBuf {
    let rules = dir.join("rules");
    for (rel, text) in RuleSource::from_dir(FIXTURE).unwrap().files() {
        let path = rules.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    rules
}

#[test]
fn replay_of_decisions_scored_by_a_model_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = fixture_copy(dir.path());
    let log = dir.path().join("decisions.jsonl");
    let mut config = EngineConfig::default();
    config.decision_log = Some(LogConfig::new(&log));
    let engine = Engine::try_with_config(RuleSet::from_dir(&rules_dir).unwrap(), config).unwrap();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut scored = 0;
    for i in 0..200 {
        let c = customers().new_tree(&mut runner).unwrap().current();
        scored += usize::from(reference(&c).is_some());
        let request = DecisionRequest::new(format!("C{i}"), "web", context(&engine, &c));
        engine.decide(&request).unwrap();
    }
    engine.flush().unwrap();
    drop(engine);
    assert!(scored > 50 && scored < 200, "{scored} of 200 scored");

    let sources = VersionSources {
        rules_dir: Some(rules_dir.clone()),
        archive_dir: None,
    };
    let report = replay(std::slice::from_ref(&log), &sources).unwrap();
    assert!(
        report.ok(),
        "{:?}",
        &report.mismatches[..report.mismatches.len().min(3)]
    );
    assert_eq!(report.matched, 200);

    // A logged score that the model does not give is a mismatch, and so is
    // a logged model version that is not the rule version's.
    let text = std::fs::read_to_string(&log).unwrap();
    for (what, tamper) in [
        (
            "score",
            &(|m: &mut serde_json::Value| m["score"] = 0.123.into()) as &dyn Fn(&mut _),
        ),
        ("hash", &|m: &mut serde_json::Value| {
            m["hash"] = "0".repeat(64).into()
        }),
    ] {
        let tampered = dir.path().join(format!("tampered-{what}.jsonl"));
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let mut r: serde_json::Value = serde_json::from_str(l).unwrap();
                tamper(&mut r["models"][0]);
                r.to_string()
            })
            .collect();
        std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
        let report = replay(std::slice::from_ref(&tampered), &sources).unwrap();
        assert_eq!(
            report.mismatches.len(),
            200,
            "a wrong {what} went unnoticed"
        );
        assert!(
            report.mismatches[0].contains("model"),
            "{}",
            report.mismatches[0]
        );
    }
}

/// The fixture with `models/churn.toml` and `ruleset.toml` edited.
fn edited(model: impl Fn(&str) -> String, ruleset: impl Fn(&str) -> String) -> RuleSource {
    let src = RuleSource::from_dir(FIXTURE).unwrap();
    let files: BTreeMap<PathBuf, String> = src
        .files()
        .map(|(p, t)| (p.to_path_buf(), t.to_string()))
        .collect();
    let model_text = model(&files[Path::new("models/churn.toml")]);
    let ruleset_text = ruleset(&files[Path::new("ruleset.toml")]);
    src.file("models/churn.toml", model_text)
        .file("ruleset.toml", ruleset_text)
}

/// Every error of `src`, as `file:line:col: message`.
#[track_caller]
fn errors(src: &RuleSource) -> Vec<String> {
    match RuleSet::compile(src) {
        Ok(_) => panic!("the rule set compiled"),
        Err(e) => e
            .rule_errors()
            .unwrap_or_else(|| panic!("not a rule error: {e}"))
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

/// A change to a file's text.
type Edit = dyn Fn(&str) -> String;

fn same(s: &str) -> String {
    s.to_string()
}

#[test]
fn an_input_of_the_wrong_type_is_rejected_at_its_line_and_column() {
    // `region` is a string: points, not a coefficient.
    let src = edited(
        |m| {
            m.replace(
                "points = { north = 0.2, south = -0.15 }\nother = 0.05",
                "coefficient = 0.2",
            )
        },
        same,
    );
    assert_eq!(
        errors(&src),
        ["models/churn.toml:15:9: input `region` is of type string: it takes `points`, not `coefficient`"]
    );
    // `complaints` is an int: a coefficient or bins, not points.
    let src = edited(
        |m| {
            m.replace("[inputs.has_tv]", "[inputs.complaints_x]\n[inputs.has_tv]")
                .replace(
                    "[inputs.complaints]\nbins = [",
                    "[inputs.complaints]\npoints = { one = 1.0 }\nbinz = [",
                )
        },
        same,
    );
    let errs = errors(&src);
    assert!(
        errs.contains(&"models/churn.toml:19:9: input `complaints_x` is not a schema attribute (did you mean `complaints`?)".to_string()),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("models/churn.toml:28:1: unknown field `binz`")),
        "{errs:?}"
    );
    assert!(
        errs.contains(&"models/churn.toml:26:9: input `complaints` is of type int: it takes `coefficient` or `bins`, not `points`".to_string()),
        "{errs:?}"
    );
}

#[test]
fn model_files_are_checked_against_the_schema() {
    let cases: [(&Edit, &Edit, &str); 9] = [
        (
            &|m| m.replace("annual = -0.3", "anual = -0.3"),
            &same,
            "models/churn.toml:13:27: `anual` is not one of `contract`'s values (`monthly`, `annual`, `two_year`) (did you mean `annual`?)",
        ),
        (
            &|m| m.replace("{ below = 3, points", "{ below = 0.5, points"),
            &same,
            "models/churn.toml:28:13: bins go from low to high: each `below` must be above the one before",
        ),
        (
            &|m| m.replace("{ points = 1.4 }", "{ below = 9, points = 1.4 }"),
            &same,
            "models/churn.toml:29:13: the last bin takes every value from the one before up: it has no `below`",
        ),
        (
            &|m| m.replace("link = \"logistic\"", "link = \"probit\""),
            &same,
            "models/churn.toml:2:8: link `probit` is not `logistic` or `identity`",
        ),
        (
            &|m| m.replace("intercept = -1.25", "intercept = nan"),
            &same,
            "models/churn.toml:3:13: intercept must be a finite number",
        ),
        (
            &|m| m.replace("{ true = -0.25,", "{ yes = -0.25,"),
            &same,
            "models/churn.toml:20:12: a bool input's points are for `true` and `false`, not `yes`",
        ),
        (
            &same,
            &|r| r.replace(r#"churn = { type = "float","#, r#"churn = { type = "int","#),
            "ruleset.toml:11:9: attribute `churn` is a model's score: its type is float, not int",
        ),
        (
            &same,
            &|r| r.replace("models/churn.toml", "models/chrun.toml"),
            "ruleset.toml:11:9: model file `models/chrun.toml` not found: model files live in models/*.toml",
        ),
        (
            &same,
            &|r| r.replace("models/churn.toml", "actions/keep.toml"),
            "ruleset.toml:11:9: model file `actions/keep.toml` not found: model files live in models/*.toml",
        ),
    ];
    for (model, ruleset, expected) in cases {
        let errs = errors(&edited(model, ruleset));
        assert!(
            errs.iter().any(|e| e == expected),
            "expected {expected}\ngot {errs:?}"
        );
    }
}

#[test]
fn a_models_inputs_are_attributes_the_request_gives() {
    let src = edited(
        |m| {
            m.replace(
                "[inputs.has_tv]",
                "[inputs.churn]\ncoefficient = 1.0\n[inputs.has_tv]",
            )
        },
        same,
    );
    assert_eq!(
        errors(&src),
        ["models/churn.toml:19:9: input `churn` is computed by a model: a model's inputs are attributes the request gives"]
    );
    // A model file that no attribute names is a mistake, not a no-op.
    let src = RuleSource::from_dir(FIXTURE).unwrap().file(
        "models/unused.toml",
        "link = \"identity\"\nintercept = 0.0\n",
    );
    assert_eq!(
        errors(&src),
        ["models/unused.toml:1:1: model file `models/unused.toml` is not the `model` of any schema attribute"]
    );
}

#[test]
fn a_float_that_is_not_a_number_counts_as_missing() {
    let engine = Engine::from_dir(FIXTURE).unwrap();
    let c = Customer {
        tenure_months: Some(30),
        monthly_bill: None,
        contract: Some("annual"),
        region: Some("south"),
        has_tv: Some(true),
        products: vec!["MOBILE"],
        complaints: Some(4),
    };
    let ctx = Context::builder(&engine.schema())
        .set("tenure_months", 30)
        .set("monthly_bill", f64::NAN)
        .set("contract", "annual")
        .set("region", "south")
        .set("has_tv", true)
        .set("products", ["MOBILE"])
        .set("complaints", 4)
        .build()
        .unwrap();
    let d = engine
        .decide(&DecisionRequest::new("C1", "web", ctx).explain(true))
        .unwrap();
    let score = d
        .actions()
        .find(|a| a.action() == "SCORE")
        .map(|a| a.value());
    // The bill's `missing` points, as for a bill left out.
    assert_eq!(score, reference(&c));
    assert!(score.is_some());
}
