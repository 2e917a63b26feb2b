//! Fail-closed strategies (issue "State you can trust", item 3): a hook
//! that fails affects only what it touched. On the shipped retail_bank
//! rules, hostile versions of its strategy never bring back an action the
//! real strategy excludes, for any customer of its population, and the
//! personas that protect exclusions still pass.

use std::collections::HashSet;

use nextbest::persona::{load_personas, run_persona};
use nextbest::{DecisionRequest, Engine, RuleSet, RuleSource, Stage};

const DIR: &str = "rules/retail_bank";

/// retail_bank with its strategy script rewritten by `edit`. The time
/// budget is raised so that the operations budget, which counts the same
/// in a debug build on a busy machine, is what stops a loop (a spent time
/// budget removes every candidate left: `time_budget_removes_the_rest`).
fn with_script(edit: impl Fn(&str) -> String) -> Engine {
    let src = RuleSource::from_dir(DIR).unwrap();
    let mut out = RuleSource::new();
    for (path, text) in src.files() {
        let text = if path.ends_with("strategies/retail.rhai") {
            let edited = edit(text);
            assert_ne!(edited, text, "the edit changed nothing");
            edited
        } else if path.ends_with("ruleset.toml") {
            let raised = text.replace("time_budget_us = 1000\n", "time_budget_us = 10000000\n");
            assert_ne!(raised, text);
            raised
        } else {
            text.to_string()
        };
        out = out.file(path, text);
    }
    Engine::new(RuleSet::compile(&out).unwrap())
}

/// `adjust` loops for one savings action: the operations budget stops it
/// for that candidate only.
fn adjust_loops_for_one_action() -> Engine {
    with_script(|s| {
        s.replace(
            "fn adjust(customer, candidate) {\n",
            "fn adjust(customer, candidate) {\n    if candidate.id == \"SAV_EASY_ACCESS\" { loop { } }\n",
        )
    })
}

/// `derive` throws: churn_risk and affordability are missing.
fn derive_throws() -> Engine {
    with_script(|s| {
        s.replace(
            "fn derive(customer) {\n",
            "fn derive(customer) {\n    throw \"derive is broken\";\n",
        )
    })
}

/// `adjust` throws for every candidate after excluding nothing.
fn adjust_throws_for_lending() -> Engine {
    with_script(|s| {
        s.replace(
            "    if lending {\n",
            "    if lending && customer.age > 0 { throw \"lending adjust broken\"; }\n    if lending {\n",
        )
    })
}

/// The population's requests, on their own channels.
fn requests(engine: &Engine, n: usize) -> Vec<DecisionRequest> {
    std::fs::read_to_string(format!("{DIR}/customers.jsonl"))
        .unwrap()
        .lines()
        .take(n)
        .map(|line| {
            let mut r = DecisionRequest::from_json(&engine.schema(), line).unwrap();
            r.explain = true;
            r.now = Some(nextbest::Timestamp(1_795_000_000));
            r
        })
        .collect()
}

/// For every customer: nothing the real strategy excludes is chosen under
/// `hostile`, and the hostile decision says why each lost action went.
fn no_exclusion_is_lost(hostile: &Engine, must_fail: bool) {
    let real = Engine::from_dir(DIR).unwrap();
    let mut excluded_somewhere = 0;
    let mut failures = 0;
    for req in requests(&real, 400) {
        let d = real.decide(&req).unwrap();
        let excluded: HashSet<&str> = d
            .filtered()
            .filter(|f| f.stage() == Stage::Strategy)
            .map(|f| f.action())
            .collect();
        excluded_somewhere += excluded.len();
        let h = hostile.decide(&req).unwrap();
        failures += h.diagnostics().len();
        for a in h.action_ids() {
            assert!(
                !excluded.contains(a),
                "{}: `{a}` is excluded by the strategy but was chosen when a hook failed ({:?})",
                req.customer_id,
                h.diagnostics()
            );
        }
    }
    assert!(
        excluded_somewhere > 0,
        "the population exercises exclusions"
    );
    assert_eq!(failures > 0, must_fail, "hostile hooks failed: {failures}");
}

#[test]
fn a_looping_adjust_for_one_action_keeps_every_other_exclusion() {
    let e = adjust_loops_for_one_action();
    no_exclusion_is_lost(&e, true);
    // The looping candidate itself is removed at stage strategy, with the
    // budget error as its reason.
    let req = requests(&e, 400)
        .into_iter()
        .find(|r| {
            Engine::from_dir(DIR)
                .unwrap()
                .decide(r)
                .unwrap()
                .ranked()
                .any(|a| a.action() == "SAV_EASY_ACCESS")
        })
        .expect("a customer for whom SAV_EASY_ACCESS is a candidate");
    let d = e.decide(&req).unwrap();
    let f = d
        .filtered()
        .find(|f| f.action() == "SAV_EASY_ACCESS")
        .unwrap();
    assert_eq!(f.stage(), Stage::Strategy);
    assert!(
        f.reason()
            .unwrap()
            .to_lowercase()
            .contains("too many operations"),
        "{:?}",
        f.reason()
    );
}

#[test]
fn the_not_affordable_persona_never_gets_the_remortgage_when_hooks_fail() {
    let personas = load_personas(DIR).unwrap();
    let persona = personas
        .iter()
        .find(|p| p.file.ends_with("mortgage_not_affordable.toml"))
        .unwrap();
    for (name, e) in [
        ("adjust loops", adjust_loops_for_one_action()),
        ("derive throws", derive_throws()),
        ("adjust throws", adjust_throws_for_lending()),
    ] {
        let r = run_persona(&e, persona).unwrap();
        assert!(
            !r.actions.iter().any(|a| a == "MORTGAGE_REMORTGAGE"),
            "{name}: {:?}",
            r.actions
        );
    }
    // The looping script passes every persona the real one passes
    // (none of them expects SAV_EASY_ACCESS to be chosen).
    let e = adjust_loops_for_one_action();
    for p in &personas {
        let r = run_persona(&e, p).unwrap();
        assert!(r.passed(), "{}: {:?}", p.file.display(), r.failures);
    }
}

#[test]
fn a_failing_derive_leaves_derived_attributes_missing_not_defaulted() {
    let e = derive_throws();
    no_exclusion_is_lost(&e, true);
    let req = requests(&e, 1).pop().unwrap();
    let d = e.decide(&req).unwrap();
    // Conditions on churn_risk are not met: they name it as missing.
    assert!(
        d.filtered()
            .any(|f| f.missing_attribute() == Some("churn_risk")),
        "{}",
        d.to_json()
    );
}

/// The lending actions (groups `loans` and `mortgages`), from
/// actions/lending.toml.
fn lending() -> HashSet<String> {
    let text = std::fs::read_to_string(format!("{DIR}/actions/lending.toml")).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    doc["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| matches!(a["group"].as_str(), Some("loans" | "mortgages")))
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_failing_adjust_removes_only_the_candidates_it_failed_for() {
    let e = adjust_throws_for_lending();
    no_exclusion_is_lost(&e, true);
    let lending = lending();
    assert!(lending.contains("MORTGAGE_REMORTGAGE"));
    let real = Engine::from_dir(DIR).unwrap();
    let mut removed = 0;
    for req in requests(&e, 200) {
        let d = e.decide(&req).unwrap();
        for f in d.filtered().filter(|f| f.stage() == Stage::Strategy) {
            if f.reason()
                .unwrap_or_default()
                .contains("lending adjust broken")
            {
                assert!(lending.contains(f.action()), "{}", f.action());
                removed += 1;
            }
        }
        // Nothing but lending was lost: the rest is the real decision's
        // non-lending survivors, in their order.
        let want: Vec<String> = real
            .decide(&req)
            .unwrap()
            .ranked()
            .map(|a| a.action().to_string())
            .filter(|a| !lending.contains(a))
            .collect();
        let got: Vec<String> = d.ranked().map(|a| a.action().to_string()).collect();
        assert_eq!(got, want, "{}", req.customer_id);
    }
    assert!(removed > 0);
}

#[test]
fn fail_open_is_a_rule_set_choice() {
    // [strategy] on_error = "open": a failing adjust keeps its candidate
    // as scored (the behaviour before fail-closed).
    let e = with_script(|s| {
        s.replace(
            "fn adjust(customer, candidate) {\n",
            "fn adjust(customer, candidate) {\n    if candidate.id == \"SAV_EASY_ACCESS\" { loop { } }\n",
        )
    });
    let open = {
        let src = RuleSource::from_dir(DIR).unwrap();
        let mut out = RuleSource::new();
        for (path, text) in src.files() {
            let text = if path.ends_with("strategies/retail.rhai") {
                text.replace(
                    "fn adjust(customer, candidate) {\n",
                    "fn adjust(customer, candidate) {\n    if candidate.id == \"SAV_EASY_ACCESS\" { loop { } }\n",
                )
            } else if path.ends_with("ruleset.toml") {
                text.replace(
                    "script = \"strategies/retail.rhai\"\n",
                    "script = \"strategies/retail.rhai\"\non_error = { adjust = \"open\" }\n",
                )
            } else {
                text.to_string()
            };
            out = out.file(path, text);
        }
        Engine::new(RuleSet::compile(&out).unwrap())
    };
    let mut kept = 0;
    for req in requests(&e, 200) {
        let closed = e.decide(&req).unwrap();
        let opened = open.decide(&req).unwrap();
        assert!(!closed.action_ids().contains(&"SAV_EASY_ACCESS"));
        if opened.action_ids().contains(&"SAV_EASY_ACCESS") {
            kept += 1;
        }
    }
    assert!(kept > 0, "fail-open kept the failing candidate somewhere");
}

#[test]
fn a_spent_time_budget_removes_every_candidate_left() {
    // The shipped 1 ms budget and a loop the operations budget does not
    // stop: the strategy could not be applied, so nothing it might have
    // excluded is offered.
    let src = RuleSource::from_dir(DIR).unwrap();
    let mut out = RuleSource::new();
    for (path, text) in src.files() {
        let text = if path.ends_with("strategies/retail.rhai") {
            text.replace(
                "fn adjust(customer, candidate) {\n",
                "fn adjust(customer, candidate) {\n    let i = 0;\n    while i < 1000000000 { i += 1; }\n",
            )
        } else if path.ends_with("ruleset.toml") {
            text.replace("max_operations = 20000\n", "max_operations = 4000000000\n")
        } else {
            text.to_string()
        };
        out = out.file(path, text);
    }
    let e = Engine::new(RuleSet::compile(&out).unwrap());
    for req in requests(&e, 3) {
        let d = e.decide(&req).unwrap();
        assert!(d.action_ids().is_empty(), "{:?}", d.action_ids());
        assert!(d
            .diagnostics()
            .iter()
            .any(|x| x.message.contains("time budget exceeded")));
        assert!(d.filtered().any(|f| f.stage() == Stage::Strategy
            && f.reason().unwrap_or_default().contains("time budget")));
    }
}
