//! `Decision::to_json` writes the response by hand; it must be byte for
//! byte what serde_json makes of the `Serialize` implementation, which is
//! the documented shape.

use nextbest::{Context, DecisionRequest, Engine, RuleSet, RuleSource, Timestamp};

fn check(d: &nextbest::Decision) {
    let reference = serde_json::to_string(d).unwrap();
    assert_eq!(d.to_json(), reference);
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
                check(&engine.decide(&req).unwrap());
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
        check(&d);
        assert!(d.to_json().contains(r#"Say \"hello\"\n\u0001"#));
    }
}
