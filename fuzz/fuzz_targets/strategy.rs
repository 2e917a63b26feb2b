//! An arbitrary strategy script in a small rule set: the load fails with a
//! location, or every decision returns (a failing hook is a diagnostic)
//! within the sandbox's limits; and the hooks lowered to the engine's own
//! operations decide exactly as rhai's interpreter does (`lower = false`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextbest::{Context, Decision, DecisionRequest, Engine, RuleSet, RuleSource, Timestamp};

const RULESET: &str = r#"name = "fuzz"
[schema]
age = "int"
income = "float"
segment = { type = "string", values = ["mass", "gold"] }
products = { type = "string_set", default = [] }
churn = { type = "float", derived = true }
[channels]
web = { direction = "inbound", limit = 2 }
[issues.growth]
[groups.cards]
issue = "growth"
[groups.loans]
issue = "growth"
[strategy]
script = "strategies/s.rhai"
[strategy.limits]
max_operations = 20000
time_budget_us = 20000
"#;

const ACTIONS: &str = r#"[[actions]]
id = "A"
group = "cards"
channels = ["web"]
value = 10.0
starting_propensity = 0.5
treatment = "a"

[[actions]]
id = "B"
group = "loans"
channels = ["web"]
value = "income * 0.001"
starting_propensity = 0.2
treatment = "b"

[[actions]]
id = "C"
group = "loans"
channels = ["web"]
value = 3.0
starting_propensity = 0.9
eligibility = "churn < 0.5"
treatment = "c"
"#;

fn rules(script: &str, lower: bool) -> Option<RuleSet> {
    let main = if lower {
        RULESET.to_string()
    } else {
        RULESET.replace("[strategy]\n", "[strategy]\nlower = false\n")
    };
    let src = RuleSource::new()
        .file("ruleset.toml", main)
        .file("actions/a.toml", ACTIONS)
        .file("strategies/s.rhai", script);
    RuleSet::compile(&src).ok()
}

fn decide(rs: RuleSet) -> Decision {
    let engine = Engine::new(rs);
    let ctx = Context::builder(&engine.schema())
        .set("age", 40)
        .set("income", 50_000.0)
        .set("segment", "gold")
        .set("products", ["X"])
        .build()
        .unwrap();
    let req = DecisionRequest::new("F1", "web", ctx)
        .explain(true)
        .at(Timestamp(1_795_428_000));
    let d = engine
        .decide(&req)
        .expect("a strategy never fails a decision");
    assert!(d.actions().len() <= 2);
    let _ = d.to_json();
    d
}

/// Everything a decision says, with floats by their bits.
fn summary(d: &Decision) -> String {
    let chosen: Vec<String> = d
        .actions()
        .map(|a| format!("{} {:?} {:?}", a.action(), a.value(), a.priority()))
        .collect();
    let ranked: Vec<String> = d
        .ranked()
        .map(|a| format!("{} {:?}", a.action(), a.priority()))
        .collect();
    let filtered: Vec<String> = d
        .filtered()
        .map(|f| format!("{} {:?} {:?}", f.action(), f.stage(), f.reason()))
        .collect();
    let diagnostics: Vec<String> = d.diagnostics().iter().map(|x| x.to_string()).collect();
    format!("{chosen:?}\n{ranked:?}\n{filtered:?}\n{diagnostics:?}")
}

fuzz_target!(|data: &[u8]| {
    let Ok(script) = std::str::from_utf8(data) else {
        return;
    };
    let Some(lowered) = rules(script, true) else {
        assert!(rules(script, false).is_none(), "lowering changed whether {script:?} loads");
        return;
    };
    let interpreted = rules(script, false).expect("loads without lowering too");
    let (a, b) = (decide(lowered), decide(interpreted));
    // A wall-clock time-out depends on the machine, not on the script.
    if a.diagnostics().iter().chain(b.diagnostics()).any(|d| d.timed_out()) {
        return;
    }
    assert_eq!(summary(&a), summary(&b), "lowered and interpreted differ on {script:?}");
});
