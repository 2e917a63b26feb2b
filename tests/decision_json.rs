//! `Decision::to_json` writes the response by hand. This file specifies
//! the documented shape (README, docs/DECISIONS.md) independently: a
//! reference built from the public accessors alone, through serde_json,
//! key by key in the documented order, must equal it byte for byte.

use nextbest::{Context, DecisionRequest, Engine, RuleSet, RuleSource, Timestamp};
use serde_json::{json, Value};

/// A JSON object written in the order given (serde_json's `Value` would
/// sort the keys), so the comparison below checks the order too.
fn obj(members: &[(&str, Value)]) -> Value {
    let text = members
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| format!("{}:{}", json!(k), text(v)))
        .collect::<Vec<_>>()
        .join(",");
    Value::String(format!("{{{text}}}"))
}

/// The reference text: `obj`'s strings are spliced in raw.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) if s.starts_with('{') => s.clone(),
        Value::Array(items) => {
            format!("[{}]", items.iter().map(text).collect::<Vec<_>>().join(","))
        }
        other => other.to_string(),
    }
}

fn ranked(list: impl Iterator<Item = nextbest::RankedAction<'static>>) -> Value {
    Value::Array(
        list.map(|a| {
            obj(&[
                ("rank", json!(a.rank())),
                ("action", json!(a.action())),
                ("group", json!(a.group())),
                ("issue", json!(a.issue())),
                ("treatment", json!(a.treatment())),
                ("priority", json!(a.priority())),
                ("propensity", json!(a.propensity())),
                ("context_weight", json!(a.context_weight())),
                ("value", json!(a.value())),
                ("lever", json!(a.lever())),
            ])
        })
        .collect(),
    )
}

fn reference(d: &'static nextbest::Decision) -> String {
    let filtered: Vec<Value> = d
        .filtered()
        .map(|f| {
            obj(&[
                ("action", json!(f.action())),
                ("stage", json!(f.stage().as_str())),
                ("level", json!(f.level().as_str())),
                ("condition", json!(f.condition())),
                ("reason", json!(f.reason())),
            ])
        })
        .collect();
    let ranked_all = if d.ranked().len() == 0 {
        Value::Null
    } else {
        ranked(d.ranked())
    };
    let diagnostics = if d.diagnostics().is_empty() {
        Value::Null
    } else {
        json!(d
            .diagnostics()
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>())
    };
    let warnings = if d.warnings().is_empty() {
        Value::Null
    } else {
        json!(d
            .warnings()
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>())
    };
    text(&obj(&[
        ("decision_id", json!(d.id().to_string())),
        ("timestamp", json!(d.timestamp().to_string())),
        (
            "ruleset",
            obj(&[
                ("name", json!(d.ruleset().name())),
                ("version", json!(d.version())),
                ("hash", json!(d.ruleset().hash())),
            ]),
        ),
        ("channel", json!(d.channel())),
        ("experiment", json!(d.experiment())),
        ("arm", json!(d.arm().as_str())),
        ("seed", json!(d.seed())),
        ("actions", ranked(d.actions())),
        ("selection_probability", json!(d.selection_probability())),
        (
            "model",
            match d.model() {
                Some(m) => obj(&[
                    ("id", json!(format!("{:016x}", m.id))),
                    ("snapshot", json!(format!("{:016x}", m.snapshot))),
                ]),
                None => Value::Null,
            },
        ),
        ("filtered", Value::Array(filtered)),
        ("ranked", ranked_all),
        ("diagnostics", diagnostics),
        ("warnings", warnings),
        ("elapsed_ns", json!(d.elapsed_ns())),
    ]))
}

fn check(d: nextbest::Decision) {
    // Leaked so the accessors' borrows can be 'static in the helpers; a
    // few hundred small decisions per test run.
    let d: &'static nextbest::Decision = Box::leak(Box::new(d));
    assert_eq!(d.to_json(), reference(d));
    // And serde's view of it is the same document.
    let via_serde: Value = serde_json::to_value(d).unwrap();
    assert_eq!(
        via_serde,
        serde_json::from_str::<Value>(&d.to_json()).unwrap()
    );
}

#[test]
fn both_rule_sets_every_channel_with_and_without_explanations() {
    for dir in ["rules/retail_bank", "rules/telco_care"] {
        let engine = Engine::from_dir(dir).unwrap();
        let channels: Vec<String> = engine
            .current()
            .rules()
            .channel_names()
            .map(str::to_string)
            .collect();
        let customers = std::fs::read_to_string(format!("{dir}/customers.jsonl")).unwrap();
        let mut checked = 0;
        for (i, line) in customers.lines().take(150).enumerate() {
            let c: serde_json::Value = serde_json::from_str(line).unwrap();
            let channel = &channels[i % channels.len()];
            for explain in [false, true] {
                let req = serde_json::json!({
                    "customer_id": c["customer_id"],
                    "channel": channel,
                    "context": c["context"],
                    "explain": explain,
                    "now": "2026-11-23T10:00:00Z",
                });
                let req = DecisionRequest::from_json(&engine.schema(), &req.to_string()).unwrap();
                check(engine.decide(&req).unwrap());
                checked += 1;
            }
        }
        assert_eq!(checked, 300, "{dir}");
    }
}

#[test]
fn strings_that_need_escaping_diagnostics_and_experiments() {
    let main = r#"
name = "esc"
[schema]
age = "int"
note = "string"
[channels]
web = { direction = "inbound", limit = 3 }
[issues.growth]
[groups.cards]
issue = "growth"
[strategy]
script = "strategies/s.rhai"
[experiment]
name = "exp \u00e9\t1"
salt = "s"
challenger = "challenger"
challenger_share = 0.0
control_share = 0.0
"#;
    let actions = r#"
[[actions]]
id = "CARD"
group = "cards"
channels = ["web"]
value = 20.0
starting_propensity = 0.1
treatment = "Say \"hello\"\n\u0001 caf\u00e9 \u2028"

[[actions]]
id = "GONE"
group = "cards"
channels = ["web"]
value = 20.0
starting_propensity = 0.1
eligibility = "age > 18 && note == \"a \\\"b\\\"\""
treatment = "t"

[[actions]]
id = "EXCLUDED"
group = "cards"
channels = ["web"]
value = 20.0
starting_propensity = 0.1
treatment = "t"
"#;
    let script = r#"
fn adjust(customer, candidate) {
    if candidate.id == "EXCLUDED" { candidate.exclude("why: \"quoted\"\n"); }
    candidate
}
fn select(customer, ranked) {
    throw "select failed: \"on purpose\"";
}
"#;
    let challenger = RuleSource::new()
        .file(
            "ruleset.toml",
            main.split("[strategy]")
                .next()
                .unwrap()
                .replace("esc", "challenger"),
        )
        .file("actions/a.toml", actions);
    let src = RuleSource::new()
        .file("ruleset.toml", main)
        .file("actions/a.toml", actions)
        .file("strategies/s.rhai", script)
        .challenger(challenger);
    let rules = RuleSet::compile(&src).unwrap();
    let engine = Engine::new(rules);
    for (age, explain) in [(30, true), (30, false), (10, true)] {
        let ctx = Context::builder(&engine.schema())
            .set("age", age)
            .build()
            .unwrap();
        let d = engine
            .decide(
                &DecisionRequest::new("C\"1", "web", ctx)
                    .explain(explain)
                    .at(Timestamp(1_800_000_000)),
            )
            .unwrap();
        assert!(!d.diagnostics().is_empty());
        assert!(d.to_json().contains(r#"Say \"hello\"\n\u0001"#));
        check(d);
    }
    // Warnings: unknown context attributes, one of them with characters
    // that need escaping.
    let json = r#"{"customer_id": "C2", "channel": "web", "now": 1800000000,
        "context": {"age": 30, "agee": 1, "n\"o\ttè": "x"}}"#;
    let d = engine
        .decide(&DecisionRequest::from_json(&engine.schema(), json).unwrap())
        .unwrap();
    assert_eq!(d.warnings().len(), 2);
    check(d);
}
