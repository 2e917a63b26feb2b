//! Scripted strategies: hooks, the sandbox, failures at load and at
//! decision time.

use nextbest::{Context, DecisionRequest, Engine, RuleSet, RuleSource, Stage, Timestamp};
use proptest::prelude::*;

const RULESET: &str = r#"
name = "strat"
[schema]
age = "int"
income = "float"
tenure_months = { type = "int", default = 0 }
churn_risk = { type = "float", derived = true }
[channels]
web = { direction = "inbound", limit = 3 }
[issues.growth]
[issues.retention]
[groups.lending]
issue = "growth"
[groups.cards]
issue = "growth"
[groups.keep]
issue = "retention"
"#;

const ACTIONS: &str = r#"
[[actions]]
id = "LOAN_A"
group = "lending"
channels = ["web"]
value = 50.0
starting_propensity = 0.10
treatment = "a"

[[actions]]
id = "LOAN_B"
group = "lending"
channels = ["web"]
value = 40.0
starting_propensity = 0.10
treatment = "b"

[[actions]]
id = "CARD"
group = "cards"
channels = ["web"]
value = 20.0
starting_propensity = 0.10
treatment = "c"

[[actions]]
id = "RETAIN"
group = "keep"
channels = ["web"]
value = 10.0
starting_propensity = 0.10
eligibility = "churn_risk >= 0.5"
treatment = "r"
"#;

fn ruleset(script: Option<&str>, limits: &str) -> Result<RuleSet, nextbest::Error> {
    let mut main = RULESET.to_string();
    let mut src = RuleSource::new().file("actions/a.toml", ACTIONS);
    if let Some(s) = script {
        main.push_str("[strategy]\nscript = \"strategies/s.rhai\"\n");
        main.push_str(limits);
        src = src.file("strategies/s.rhai", s);
    } else {
        main = main.replace(
            "churn_risk = { type = \"float\", derived = true }",
            "churn_risk = \"float\"",
        );
    }
    RuleSet::compile(&src.file("ruleset.toml", main))
}

fn decide(e: &Engine, age: i64, income: f64, tenure: i64) -> nextbest::Decision {
    let ctx = Context::builder(&e.schema())
        .set("age", age)
        .set("income", income)
        .set("tenure_months", tenure)
        .build()
        .unwrap();
    e.decide(
        &DecisionRequest::new("C1", "web", ctx)
            .explain(true)
            .at(Timestamp(1_800_000_000)),
    )
    .unwrap()
}

const REAL: &str = r#"
fn derive(customer) {
    let risk = if customer.tenure_months < 6 { 0.8 } else { 0.2 };
    #{ churn_risk: risk }
}
fn adjust(customer, candidate) {
    if candidate.group == "keep" {
        candidate.value = candidate.value * (1.0 + customer.tenure_months / 12.0);
    }
    if candidate.id == "CARD" && customer.income < 20000.0 {
        candidate.exclude("income too low for a card");
    }
    candidate
}
fn select(customer, ranked) {
    // At most one lending offer.
    let out = [];
    let lending = false;
    for c in ranked {
        if c.group == "lending" {
            if lending { continue; }
            lending = true;
        }
        out.push(c);
    }
    out
}
"#;

#[test]
fn hooks_derive_attributes_adjust_candidates_and_select_the_final_list() {
    let e = Engine::new(ruleset(Some(REAL), "").unwrap());
    // New customer: churn risk 0.8 makes RETAIN eligible; low income
    // excludes CARD; only one lending offer survives select.
    let d = decide(&e, 30, 15_000.0, 3);
    assert!(d.diagnostics().is_empty(), "{:?}", d.diagnostics());
    assert_eq!(d.action_ids(), vec!["LOAN_A", "RETAIN"]);
    let card = d.filtered().find(|f| f.action() == "CARD").unwrap();
    assert_eq!(card.stage(), Stage::Strategy);
    assert_eq!(card.reason().as_deref(), Some("income too low for a card"));
    // Long tenure: RETAIN is not eligible (derived risk 0.2).
    let d = decide(&e, 30, 50_000.0, 48);
    assert_eq!(d.action_ids(), vec!["LOAN_A", "CARD"]);
    assert_eq!(
        d.filtered()
            .find(|f| f.action() == "RETAIN")
            .unwrap()
            .stage(),
        Stage::Eligibility
    );
}

fn hostile(script: &str) -> (Engine, nextbest::Decision) {
    // churn_risk is derived, so every script needs a derive hook.
    let script = if script.contains("fn derive") {
        script.to_string()
    } else {
        format!("{script}\nfn derive(customer) {{ #{{ churn_risk: 0.1 }} }}")
    };
    let script = script.as_str();
    let limits = "[strategy.limits]\nmax_operations = 20000\ntime_budget_us = 50000\nmax_call_levels = 16\nmax_string_size = 1024\nmax_map_size = 64\n";
    let e = Engine::new(ruleset(Some(script), limits).unwrap());
    let d = decide(&e, 30, 50_000.0, 48);
    (e, d)
}

fn assert_contained(script: &str, hook: &str, needle: &str) {
    assert_contained_any(script, hook, &[needle]);
}

/// The script is stopped in `hook` with a diagnostic containing one of
/// `needles`, the failure is closed (it removes what it touched and
/// nothing else changes) and the engine goes on serving.
fn assert_contained_any(script: &str, hook: &str, needles: &[&str]) {
    let (e, d) = hostile(script);
    assert!(!d.diagnostics().is_empty(), "{script}");
    for diag in d.diagnostics() {
        assert_eq!(diag.hook, hook, "{script}: {diag}");
        let msg = diag.to_string();
        assert!(msg.contains("strategies/s.rhai"), "{msg}");
        assert!(
            needles.iter().any(|n| msg.to_lowercase().contains(n)),
            "{script}: expected one of {needles:?} in {msg}"
        );
    }
    // What the failure does to the decision (fail-closed):
    let without =
        Engine::new(ruleset(Some("fn derive(customer) { #{ churn_risk: 0.1 } }"), "").unwrap());
    let plain = decide(&without, 30, 50_000.0, 48);
    match hook {
        // Every candidate's `adjust` failed: each is removed at stage
        // `strategy` with the error as its reason.
        "adjust" => {
            assert!(d.action_ids().is_empty(), "{script}: {:?}", d.action_ids());
            for a in plain.ranked() {
                let f = d.filtered().find(|f| f.action() == a.action()).unwrap();
                assert_eq!(f.stage(), Stage::Strategy, "{script}");
                let reason = f.reason().unwrap().to_lowercase();
                assert!(needles.iter().any(|n| reason.contains(n)), "{reason}");
            }
        }
        // `derive` failed: churn_risk is missing, so RETAIN (which needs
        // it) is not eligible; the rest is the plain decision.
        "derive" => {
            assert_eq!(d.action_ids(), plain.action_ids(), "{script}");
            let retain = d.filtered().find(|f| f.action() == "RETAIN").unwrap();
            assert_eq!(retain.missing_attribute(), Some("churn_risk"), "{script}");
        }
        // `select` failed: the top N.
        _ => assert_eq!(d.action_ids(), plain.action_ids(), "{script}"),
    }
    // The engine keeps serving, and counts every diagnostic.
    let again = decide(&e, 40, 60_000.0, 48);
    assert_eq!(again.diagnostics().len(), d.diagnostics().len());
    assert_eq!(e.stats().script_errors, 2 * d.diagnostics().len() as u64);
}

#[test]
fn an_infinite_loop_is_stopped_by_the_operations_budget() {
    assert_contained(
        "fn derive(customer) { loop { } }",
        "derive",
        "too many operations",
    );
}

#[test]
fn deep_recursion_is_stopped_by_the_call_level_limit() {
    assert_contained(
        "fn f(x) { f(x + 1) }\nfn adjust(customer, candidate) { f(0); candidate }",
        "adjust",
        "stack overflow",
    );
}

#[test]
fn string_doubling_is_stopped() {
    assert_contained(
        "fn select(customer, ranked) { let s = \"xx\"; loop { s += s; } }",
        "select",
        "length of string",
    );
}

#[test]
fn a_huge_map_built_in_a_loop_is_stopped() {
    // rhai checks sizes late; the operations budget is the guard that
    // stops it first.
    assert_contained_any(
        "fn derive(customer) { let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; } }",
        "derive",
        &["too many operations", "time budget exceeded"],
    );
}

#[test]
fn a_wall_clock_budget_stops_slow_scripts() {
    let limits = "[strategy.limits]\nmax_operations = 1000000000\ntime_budget_us = 2000\n";
    let e = Engine::new(
        ruleset(
            Some("fn derive(customer) { let i = 0; loop { i += 1; } }"),
            limits,
        )
        .unwrap(),
    );
    let d = decide(&e, 30, 50_000.0, 48);
    assert_eq!(d.diagnostics().len(), 1);
    assert!(
        d.diagnostics()[0].message.contains("time budget exceeded"),
        "{}",
        d.diagnostics()[0]
    );
}

#[test]
fn a_hook_returning_the_wrong_type_is_reported() {
    assert_contained("fn derive(customer) { 5 }", "derive", "must return a map");
    assert_contained(
        "fn adjust(customer, candidate) { \"x\" }",
        "adjust",
        "must return the candidate",
    );
}

#[test]
fn arithmetic_overflow_in_a_script_is_reported() {
    assert_contained(
        "fn adjust(customer, candidate) { let x = 9223372036854775807 + customer.age; candidate }",
        "adjust",
        "overflow",
    );
}

#[test]
fn invalid_scores_from_adjust_are_rejected() {
    assert_contained(
        "fn adjust(customer, candidate) { candidate.propensity = 7.0; candidate }",
        "adjust",
        "propensity 7",
    );
}

#[test]
fn eval_is_not_available_and_is_a_load_error_with_its_location() {
    let err = ruleset(Some("fn derive(customer) {\n  eval(\"1\")\n}"), "").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("strategies/s.rhai:2:"), "{msg}");
}

#[test]
fn syntax_errors_and_bad_hooks_fail_the_load_with_locations() {
    let err = ruleset(Some("fn derive(customer) {\n  let x = ;\n}"), "")
        .unwrap_err()
        .to_string();
    assert!(err.contains("strategies/s.rhai:2:"), "{err}");
    let err = ruleset(Some("fn adjust(candidate) { candidate }"), "")
        .unwrap_err()
        .to_string();
    assert!(err.contains("hook `adjust` takes 2 parameter(s)"), "{err}");
    let err = ruleset(Some("fn helper(x) { x }"), "")
        .unwrap_err()
        .to_string();
    assert!(err.contains("defines no hook"), "{err}");
    let err = RuleSet::compile(
        &RuleSource::new()
            .file(
                "ruleset.toml",
                format!("{RULESET}[strategy]\nscript = \"strategies/missing.rhai\"\n"),
            )
            .file("actions/a.toml", ACTIONS),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("strategy script `strategies/missing.rhai` not found"),
        "{err}"
    );
}

#[test]
fn a_failed_load_keeps_the_previous_version_serving() {
    let e = Engine::new(ruleset(Some(REAL), "").unwrap());
    assert!(ruleset(Some("fn derive(customer) { loop {"), "").is_err());
    assert_eq!(e.current().number(), 1);
    assert!(decide(&e, 30, 15_000.0, 3).diagnostics().is_empty());
}

const NOOP: &str = r#"
fn derive(customer) { #{} }
fn adjust(customer, candidate) { candidate }
fn select(customer, ranked) { ranked }
"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn a_no_op_strategy_decides_exactly_as_no_strategy(age in 0i64..100, income in 0.0f64..200_000.0, tenure in 0i64..240) {
        let with = Engine::new(ruleset(Some(NOOP), "").unwrap());
        let without = Engine::new(ruleset(None, "").unwrap());
        let a = decide(&with, age, income, tenure);
        let b = decide(&without, age, income, tenure);
        prop_assert!(a.diagnostics().is_empty());
        prop_assert_eq!(a.action_ids(), b.action_ids());
        let pa: Vec<f64> = a.ranked().map(|r| r.priority()).collect();
        let pb: Vec<f64> = b.ranked().map(|r| r.priority()).collect();
        prop_assert_eq!(pa, pb);
    }
}
