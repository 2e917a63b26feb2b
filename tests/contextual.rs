//! Contextual adaptive models (`[learning] model = "contextual"`): the
//! engine's propensities against a plain reference implementation of the
//! estimator (docs/DECISIONS.md, "Contextual models": naive Bayes with
//! shrunk bins and G-tested predictors) over random outcome streams; outcomes learned
//! from the bins their decision saw; replay exact; state files; load
//! errors with their location.

use std::path::Path;

use nextbest::audit::LogConfig;
use nextbest::tools::replay::{replay, VersionSources};
use nextbest::{
    Context, DecisionRequest, Engine, EngineConfig, Outcome, OutcomeKind, RuleSet, RuleSource,
    Timestamp,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

const FIXTURE: &str = "tests/fixtures/contextual";
const T0: i64 = 1_795_392_000;

/// A customer as the tests draw them (`None`: the attribute is missing).
#[derive(Debug, Clone)]
struct Customer {
    segment: Option<&'static str>,
    age: Option<i64>,
    income: f64,
    city: Option<&'static str>,
    vip: bool,
    products: Vec<&'static str>,
}

fn customer() -> impl Strategy<Value = Customer> {
    (
        prop::option::of(prop::sample::select(vec!["mass", "affluent", "private"])),
        prop::option::of(18i64..80),
        0.0f64..100_000.0,
        prop::option::of(prop::sample::select(vec!["paris", "lyon", "nice"])),
        any::<bool>(),
        prop::sample::subsequence(vec!["CARD", "LOAN", "SAVINGS"], 0..=3),
    )
        .prop_map(|(segment, age, income, city, vip, products)| Customer {
            segment,
            age,
            income,
            city,
            vip,
            products,
        })
}

fn context(engine: &Engine, c: &Customer) -> Context {
    let mut b = Context::builder(&engine.schema())
        .set("income", c.income)
        .set("vip", c.vip)
        .set(
            "products",
            c.products.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        );
    if let Some(s) = c.segment {
        b = b.set("segment", s);
    }
    if let Some(a) = c.age {
        b = b.set("age", a);
    }
    if let Some(city) = c.city {
        b = b.set("city", city);
    }
    b.build().unwrap()
}

fn request(engine: &Engine, id: &str, c: &Customer, at: i64) -> DecisionRequest {
    let mut r = DecisionRequest::new(id, "web", context(engine, c));
    r.now = Some(Timestamp(at));
    r.explain = true;
    r
}

/// The reference: the fixture's predictors binned by hand, counted per
/// action, and the formula of docs/DECISIONS.md in f64.
#[derive(Default)]
struct Reference {
    /// (action, success) of every outcome counted by the Beta model.
    beta: Vec<(String, bool)>,
    /// (action, bins, success) of every outcome with a known decision.
    contextual: Vec<(String, Vec<usize>, bool)>,
}

/// Bin counts of the fixture's predictors, in declaration order.
const BINS: [usize; 7] = [5, 4, 4, 4, 3, 3, 3];

fn numeric(edges: &[f64], v: Option<f64>) -> usize {
    match v {
        None => edges.len() + 1,
        Some(v) => edges.iter().filter(|e| **e <= v).count(),
    }
}

fn bins(c: &Customer) -> Vec<usize> {
    let member = |p: &str| usize::from(c.products.contains(&p));
    vec![
        match c.segment {
            Some("mass") => 0,
            Some("affluent") => 1,
            Some("private") => 2,
            Some(_) => 3,
            None => 4,
        },
        numeric(&[30.0, 50.0], c.age.map(|a| a as f64)),
        numeric(&[20000.5, 60000.0], Some(c.income)),
        match c.city {
            Some("paris") => 0,
            Some("lyon") => 1,
            Some(_) => 2,
            None => 3,
        },
        usize::from(c.vip),
        member("CARD"),
        member("LOAN"),
    ]
}

impl Reference {
    fn propensity(&self, action: &str, p0: f64, c: &Customer) -> f64 {
        let (k, m, mature) = (10.0, 10.0, 5.0);
        let s = self
            .beta
            .iter()
            .filter(|(a, ok)| a == action && *ok)
            .count() as f64;
        let f = self
            .beta
            .iter()
            .filter(|(a, ok)| a == action && !*ok)
            .count() as f64;
        let p_beta = if s + f == 0.0 {
            p0
        } else {
            (s + p0 * k) / (s + f + k)
        };
        let mine: Vec<_> = self
            .contextual
            .iter()
            .filter(|(a, _, _)| a == action)
            .collect();
        let big_s = mine.iter().filter(|x| x.2).count() as f64;
        let big_f = mine.len() as f64 - big_s;
        let w = (big_s / mature).min(1.0);
        if w == 0.0 {
            return p_beta;
        }
        let q = (big_s + 0.5) / (big_s + big_f + 1.0);
        let x = bins(c);
        let mut z = 0.0;
        for (p, &nbins) in BINS.iter().enumerate() {
            let count = |bin: usize, ok: bool| {
                mine.iter().filter(|m| m.2 == ok && m.1[p] == bin).count() as f64
            };
            // Active: the G-test of bin against outcome at 5%.
            let (mut g, mut used) = (0.0, 0);
            for bin in 0..nbins {
                let (sb, fb) = (count(bin, true), count(bin, false));
                if sb + fb == 0.0 {
                    continue;
                }
                used += 1;
                let n = big_s + big_f;
                for (o, e) in [(sb, (sb + fb) * big_s / n), (fb, (sb + fb) * big_f / n)] {
                    if o > 0.0 {
                        g += o * (o / e).ln();
                    }
                }
            }
            if big_s == 0.0 || big_f == 0.0 || used < 2 {
                continue;
            }
            let df = (used - 1) as f64;
            let cc = 2.0 / (9.0 * df);
            let critical = df * (1.0 - cc + 1.644_853_626_951_472_2 * cc.sqrt()).powi(3);
            if 2.0 * g <= critical {
                continue;
            }
            let (sb, fb) = (count(x[p], true), count(x[p], false));
            z += ((sb + m * q) / (fb + m * (1.0 - q))).ln() - (q / (1.0 - q)).ln();
        }
        let pb = p_beta.clamp(1e-9, 1.0 - 1e-9);
        let nb = 1.0 / (1.0 + (-((pb / (1.0 - pb)).ln() + z)).exp());
        (1.0 - w) * p_beta + w * nb
    }
}

fn p0(action: &str) -> f64 {
    match action {
        "CARD_GOLD" => 0.10,
        "CARD_CASHBACK" => 0.12,
        _ => 0.04,
    }
}

/// One step of an outcome stream: decide for a customer, then report an
/// outcome of one of the actions offered.
#[derive(Debug, Clone)]
struct Step {
    customer: Customer,
    pick: usize,
    kind: OutcomeKind,
    /// Whether the outcome names its decision.
    named: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        customer(),
        0usize..3,
        prop::sample::select(vec![
            OutcomeKind::Accepted,
            OutcomeKind::Rejected,
            OutcomeKind::NoResponse,
            OutcomeKind::Clicked,
        ]),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(customer, pick, kind, named)| Step {
            customer,
            pick,
            kind,
            named,
        })
}

/// Run `steps` on `engine`, mirroring them in a reference.
fn run(engine: &Engine, steps: &[Step]) -> Reference {
    let mut r = Reference::default();
    for (i, s) in steps.iter().enumerate() {
        let at = T0 + i as i64 * 60;
        let d = engine
            .decide(&request(engine, &format!("c{i}"), &s.customer, at))
            .unwrap();
        let ids = d.action_ids();
        let Some(action) = ids.get(s.pick % ids.len().max(1)) else {
            continue;
        };
        engine
            .record_outcome(&Outcome {
                decision_id: s.named.then(|| d.id()),
                customer_id: format!("c{i}"),
                action: action.to_string(),
                channel: "web".into(),
                kind: s.kind,
                timestamp: Some(Timestamp(at + 10)),
            })
            .unwrap();
        let success = match s.kind {
            OutcomeKind::Accepted => Some(true),
            OutcomeKind::Rejected | OutcomeKind::NoResponse => Some(false),
            _ => None,
        };
        if let Some(ok) = success {
            r.beta.push((action.to_string(), ok));
            if s.named {
                r.contextual
                    .push((action.to_string(), bins(&s.customer), ok));
            }
        }
    }
    r
}

fn fixture_engine() -> Engine {
    Engine::new(RuleSet::from_dir(FIXTURE).unwrap())
}

/// Every ranked action's propensity for `c`, by action.
fn propensities(engine: &Engine, c: &Customer) -> Vec<(String, f64)> {
    let d = engine
        .decide(&request(engine, "probe", c, T0 + 10_000_000))
        .unwrap();
    d.ranked()
        .map(|a| (a.action().to_string(), a.propensity()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The engine's propensity for any customer equals the reference
    /// estimator's over the same outcomes (f32 log ratios: to 1e-5).
    #[test]
    fn propensities_equal_the_reference_estimator(
        steps in prop::collection::vec(step(), 1..120),
        probes in prop::collection::vec(customer(), 1..6),
    ) {
        let engine = fixture_engine();
        let reference = run(&engine, &steps);
        for c in &probes {
            let got = propensities(&engine, c);
            prop_assert!(!got.is_empty());
            for (action, p) in got {
                let want = reference.propensity(&action, p0(&action), c);
                prop_assert!((p - want).abs() < 1e-5, "{action} for {c:?}: engine {p}, reference {want}");
            }
        }
    }
}

#[test]
fn customers_in_different_bins_get_different_propensities_once_the_model_has_evidence() {
    let engine = fixture_engine();
    let affluent = Customer {
        segment: Some("affluent"),
        age: Some(40),
        income: 80_000.0,
        city: Some("paris"),
        vip: true,
        products: vec!["CARD"],
    };
    let mass = Customer {
        segment: Some("mass"),
        age: Some(22),
        income: 15_000.0,
        city: Some("nice"),
        vip: false,
        products: vec![],
    };
    let before = propensities(&engine, &affluent);
    assert_eq!(before, propensities(&engine, &mass), "no evidence yet");
    // Affluent customers accept the gold card, mass customers do not.
    let mut steps = Vec::new();
    for i in 0..40 {
        for (c, kind) in [
            (&affluent, OutcomeKind::Accepted),
            (&mass, OutcomeKind::Rejected),
        ] {
            steps.push(Step {
                customer: c.clone(),
                pick: 0,
                kind: if i % 4 == 3 {
                    OutcomeKind::NoResponse
                } else {
                    kind
                },
                named: true,
            });
        }
    }
    run(&engine, &steps);
    let p = |c: &Customer, a: &str| {
        propensities(&engine, c)
            .into_iter()
            .find(|(x, _)| x == a)
            .map(|x| x.1)
            .unwrap()
    };
    let first = before[0].0.clone();
    assert!(
        p(&affluent, &first) > 0.5 && p(&mass, &first) < 0.05,
        "{first}: affluent {}, mass {}",
        p(&affluent, &first),
        p(&mass, &first)
    );
    assert_eq!(engine.stats().outcomes_without_context, 0);
}

#[test]
fn an_outcome_whose_decision_is_unknown_teaches_the_action_counts_only_and_is_counted() {
    let mut config = EngineConfig::default();
    config.response_memory = 16;
    let engine = Engine::try_with_config(RuleSet::from_dir(FIXTURE).unwrap(), config).unwrap();
    let c = Customer {
        segment: Some("mass"),
        age: Some(40),
        income: 1.0,
        city: None,
        vip: false,
        products: vec![],
    };
    let first = engine.decide(&request(&engine, "c0", &c, T0)).unwrap();
    // 100 later decisions push the first out of a memory of 16.
    for i in 1..=100 {
        engine
            .decide(&request(&engine, &format!("c{i}"), &c, T0 + i))
            .unwrap();
    }
    let action = first.action_ids()[0].to_string();
    let outcome = |id| Outcome {
        decision_id: id,
        customer_id: "c0".into(),
        action: action.clone(),
        channel: "web".into(),
        kind: OutcomeKind::Accepted,
        timestamp: Some(Timestamp(T0 + 200)),
    };
    engine.record_outcome(&outcome(Some(first.id()))).unwrap();
    engine.record_outcome(&outcome(None)).unwrap();
    let s = engine.stats();
    assert_eq!(s.outcomes, 2);
    assert_eq!(s.outcomes_without_context, 2);
    // The Beta counts learned both: the propensity is the Beta mean.
    let p = propensities(&engine, &c)
        .into_iter()
        .find(|(a, _)| *a == action)
        .unwrap()
        .1;
    let k = 10.0;
    let want = (2.0 + p0(&action) * k) / (2.0 + k);
    assert!((p - want).abs() < 1e-12, "{p} vs {want}");
}

#[test]
fn decisions_made_with_a_learned_model_replay_exactly_and_name_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let mut config = EngineConfig::default();
    config.decision_log = Some(LogConfig::new(&log));
    let engine = Engine::try_with_config(RuleSet::from_dir(FIXTURE).unwrap(), config).unwrap();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let steps: Vec<Step> = (0..150)
        .map(|_| step().new_tree(&mut runner).unwrap().current())
        .collect();
    run(&engine, &steps);
    engine.flush().unwrap();
    drop(engine);
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decisions: Vec<_> = records.iter().filter(|r| r["kind"] == "decision").collect();
    assert_eq!(decisions.len(), 150);
    let snapshots: std::collections::BTreeSet<&str> = decisions
        .iter()
        .map(|r| r["model"]["snapshot"].as_str().unwrap())
        .collect();
    assert!(
        snapshots.len() > 50,
        "a snapshot per outcome: {}",
        snapshots.len()
    );
    let last = decisions.last().unwrap();
    assert_eq!(last["model"]["id"].as_str().unwrap().len(), 16);
    assert!(last["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e.as_array().unwrap().len() == 5));
    let report = replay(
        &[log],
        &VersionSources {
            rules_dir: Some(FIXTURE.into()),
            archive_dir: None,
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.mismatches.first());
    assert_eq!(report.matched, 150);
}

#[test]
fn a_state_file_keeps_the_contextual_counts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.nbs");
    let a = fixture_engine();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let steps: Vec<Step> = (0..200)
        .map(|_| step().new_tree(&mut runner).unwrap().current())
        .collect();
    run(&a, &steps);
    a.save_state(&file).unwrap();
    let b = fixture_engine();
    b.load_state(&file).unwrap();
    for s in steps.iter().take(10) {
        assert_eq!(propensities(&a, &s.customer), propensities(&b, &s.customer));
    }
}

fn compile(learning: &str) -> Result<RuleSet, String> {
    let main = format!(
        r#"name = "bad"
[schema]
age = "int"
city = "string"
seen = "timestamp"
[channels]
web = {{ direction = "inbound" }}
[issues.growth]
[groups.cards]
issue = "growth"
[learning]
{learning}
"#
    );
    let actions = r#"[[actions]]
id = "A"
group = "cards"
channels = ["web"]
value = 1.0
starting_propensity = 0.1
treatment = "T"
"#;
    RuleSet::compile(
        &RuleSource::new()
            .file("ruleset.toml", main)
            .file("actions/a.toml", actions),
    )
    .map_err(|e| e.to_string())
}

#[test]
fn a_bad_model_is_refused_at_load_with_its_location() {
    let cases = [
        (
            "model = \"contextual\"\npredictors = [\"age\"]",
            "ruleset.toml:13:15: numeric predictor `age` needs its bin edges",
        ),
        (
            "model = \"contextual\"\npredictors = [\"age\"]\nbins = { age = [50, 30] }",
            "ruleset.toml:14:16: numeric predictor `age` needs its bin edges",
        ),
        (
            "model = \"contextual\"\npredictors = [\"agee\"]",
            "ruleset.toml:13:15: predictor `agee` is not an attribute of the schema",
        ),
        (
            "model = \"contextual\"\npredictors = [\"seen\"]",
            "ruleset.toml:13:15: timestamp `seen` cannot be a predictor",
        ),
        (
            "model = \"contextual\"\npredictors = [\"city\"]",
            "ruleset.toml:13:15: string predictor `city` has no declared values",
        ),
        (
            "model = \"contextual\"",
            "ruleset.toml:12:9: a contextual model needs `predictors",
        ),
        (
            "model = \"bayes\"",
            "ruleset.toml:12:9: learning model `bayes` is not",
        ),
        (
            "predictors = [\"age\"]",
            "ruleset.toml:12:14: `predictors` need `model = \"contextual\"`",
        ),
    ];
    for (learning, want) in cases {
        let err = compile(learning).expect_err(learning);
        assert!(err.contains(want), "{learning}:\n{err}\nwanted: {want}");
    }
    compile("model = \"contextual\"\npredictors = [\"age\", \"city\"]\nbins = { age = [30], city = [\"paris\"] }")
        .unwrap();
}

#[test]
fn the_fixture_validates_and_its_model_is_reported_in_the_decision() {
    assert!(Path::new(FIXTURE).join("ruleset.toml").exists());
    let engine = fixture_engine();
    let c = Customer {
        segment: None,
        age: None,
        income: 0.0,
        city: None,
        vip: false,
        products: vec![],
    };
    let d = engine.decide(&request(&engine, "c", &c, T0)).unwrap();
    let j = serde_json::to_value(&d).unwrap();
    assert_eq!(j["model"]["id"].as_str().map(str::len), Some(16), "{j}");
}

/// Copy the fixture to `dir`, with `extra` appended to its ruleset.toml.
fn copy_fixture(dir: &Path, extra: &str) {
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    let main = std::fs::read_to_string(Path::new(FIXTURE).join("ruleset.toml")).unwrap();
    // Before the `[learning]` tables, after the top-level keys.
    let main = main.replacen("[learning]", &format!("{extra}\n\n[learning]"), 1);
    std::fs::write(dir.join("ruleset.toml"), main).unwrap();
    std::fs::copy(
        Path::new(FIXTURE).join("actions/actions.toml"),
        dir.join("actions/actions.toml"),
    )
    .unwrap();
}

#[test]
fn a_challenger_with_the_champions_model_learns_each_outcome_once() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(&dir.path().join("challenger"), "");
    copy_fixture(
        &dir.path().join("champion"),
        "[experiment]\nname = \"ctx\"\nsalt = \"s\"\ncontrol = \"no_action\"\nchallenger = \"../challenger\"\nchallenger_share = 0.5\ncontrol_share = 0.0",
    );
    let both = Engine::new(RuleSet::from_dir(dir.path().join("champion")).unwrap());
    let alone = fixture_engine();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let steps: Vec<Step> = (0..150)
        .map(|_| {
            let mut s = step().new_tree(&mut runner).unwrap().current();
            s.named = true;
            s
        })
        .collect();
    run(&both, &steps);
    run(&alone, &steps);
    assert!(both.stats().decisions.challenger > 20);
    for s in steps.iter().take(10) {
        assert_eq!(
            propensities(&both, &s.customer),
            propensities(&alone, &s.customer)
        );
    }
}

#[test]
fn bin_values_with_a_slash_or_twice_are_refused() {
    for bins in [
        "city = [\"a/b\"]",
        "city = [\"paris\", \"paris\"]",
        "city = [\"\"]",
    ] {
        let err = compile(&format!(
            "model = \"contextual\"\npredictors = [\"city\"]\n[learning.bins]\n{bins}"
        ))
        .expect_err(bins);
        assert!(err.contains("each once, none empty or with a `/`"), "{err}");
    }
}
