//! Lowered strategy hooks decide exactly as rhai's interpreter does.
//!
//! A rule set's hooks are lowered to the engine's own operations unless
//! `[strategy] lower = false`; these tests run the same script both ways
//! and require the same decision, bit for bit: chosen and ranked actions
//! with their scores, removed actions with their reasons, and diagnostics
//! (the same errors, from the same lines). Random scripts come from a
//! grammar of the subset that lowers, with operands of every type mixed,
//! so that the paths where a lowered hook hands a call back to rhai
//! (overflow, type errors, division by zero, sizes) are exercised too.

use std::path::Path;

use nextbest::{Context, Decision, DecisionRequest, Engine, RuleSet, RuleSource, Timestamp};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

/// Everything a decision says, with floats by their bits.
fn summary(d: &Decision) -> String {
    let chosen: Vec<String> = d
        .actions()
        .map(|a| {
            format!(
                "{} {:?} {:?} {:?} {:?} {:?}",
                a.action(),
                a.propensity(),
                a.context_weight(),
                a.value(),
                a.lever(),
                a.priority()
            )
        })
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
    format!("chosen {chosen:#?}\nranked {ranked:#?}\nfiltered {filtered:#?}\ndiagnostics {diagnostics:#?}")
}

/// The rule set of `dir`, with `[strategy] lower = false` added when
/// `interpret`, and a wall-clock budget no hook reaches on a loaded machine
/// (a hook that runs out of time is not a difference between the two
/// paths; the budget itself is tested in tests/strategies.rs).
fn loaded(dir: &Path, interpret: bool) -> RuleSet {
    let src = RuleSource::from_dir(dir).unwrap();
    let main = src
        .files()
        .find(|(p, _)| p == &Path::new("ruleset.toml"))
        .map(|(_, t)| t.to_string())
        .unwrap();
    assert!(
        main.contains("[strategy]\n"),
        "{} has no strategy",
        dir.display()
    );
    let main = if interpret {
        main.replace("[strategy]\n", "[strategy]\nlower = false\n")
    } else {
        main
    };
    let main = main.replace("time_budget_us = 1000", "time_budget_us = 10000000");
    RuleSet::compile(&src.file("ruleset.toml", main)).unwrap()
}

/// Explained JSON requests for the first `n` customers of `dir`'s
/// population, taking `rules`' channels in turn.
fn requests(dir: &Path, rules: &RuleSet, n: usize) -> Vec<String> {
    let channels: Vec<String> = rules.channel_names().map(str::to_string).collect();
    std::fs::read_to_string(dir.join("customers.jsonl"))
        .unwrap()
        .lines()
        .take(n)
        .enumerate()
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            serde_json::json!({
                "customer_id": v["customer_id"],
                "channel": channels[i % channels.len()],
                "context": v["context"],
                "explain": true,
                "now": "2026-06-01T12:00:00Z",
            })
            .to_string()
        })
        .collect()
}

/// Whether a hook of `d` ran past its wall-clock budget (rhai's
/// interpreter may in a debug build on a busy machine: a time-out depends
/// on the machine, not on the decision).
fn timed_out(d: &Decision) -> bool {
    d.diagnostics().iter().any(|g| g.timed_out())
}

fn lowered_and_interpreted_agree_on(dir: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let lowered = loaded(&dir, false);
    let hooks = lowered.strategy_hooks();
    assert_eq!(hooks.len(), 3);
    for (hook, why) in &hooks {
        assert!(why.is_none(), "{hook} is not lowered: {why:?}");
    }
    let interpreted = loaded(&dir, true);
    for (hook, why) in interpreted.strategy_hooks() {
        assert!(why.is_some(), "{hook} is lowered despite lower = false");
    }
    let requests = requests(&dir, &lowered, 400);
    let (a, b) = (Engine::new(lowered), Engine::new(interpreted));
    let mut decisions = 0;
    for request in &requests {
        let (x, y) = (
            a.decide_json(request).unwrap(),
            b.decide_json(request).unwrap(),
        );
        if timed_out(&x) || timed_out(&y) {
            continue;
        }
        assert_eq!(summary(&x), summary(&y), "{request}");
        decisions += 1;
    }
    assert!(
        decisions >= 300,
        "only {decisions} of 400 decisions compared"
    );
}

#[test]
fn retail_bank_decides_the_same_lowered_and_interpreted() {
    lowered_and_interpreted_agree_on("rules/retail_bank");
}

#[test]
fn telco_care_decides_the_same_lowered_and_interpreted() {
    lowered_and_interpreted_agree_on("rules/telco_care");
}

// ---------------------------------------------------------------------------
// Random scripts

const RULESET: &str = r#"
name = "lowering"
[schema]
age = "int"
income = "float"
vip = "bool"
tier = { type = "string" }
tags = "string_set"
since = "timestamp"
score = { type = "float", derived = true }
[channels]
web = { direction = "inbound", limit = 4 }
[issues.growth]
[issues.retention]
[groups.loans]
issue = "growth"
[groups.cards]
issue = "growth"
[groups.keep]
issue = "retention"
[strategy]
script = "strategies/s.rhai"
[strategy.limits]
time_budget_us = 10000000
max_array_size = 12
max_map_size = 6
max_string_size = 64
"#;

const ACTIONS: &str = r#"
[[actions]]
id = "LOAN_A"
group = "loans"
channels = ["web"]
value = 50.0
starting_propensity = 0.10
treatment = "a"

[[actions]]
id = "LOAN_B"
group = "loans"
channels = ["web"]
value = 40.0
starting_propensity = 0.12
treatment = "b"

[[actions]]
id = "CARD_GOLD"
group = "cards"
channels = ["web"]
value = 20.0
starting_propensity = 0.30
treatment = "c"

[[actions]]
id = "CARD_BASIC"
group = "cards"
channels = ["web"]
value = 8.0
starting_propensity = 0.35
treatment = "d"

[[actions]]
id = "RETAIN"
group = "keep"
channels = ["web"]
value = 10.0
starting_propensity = 0.20
treatment = "r"

[[actions]]
id = "RETAIN_VIP"
group = "keep"
channels = ["web"]
value = 25.0
starting_propensity = 0.05
eligibility = "score >= 0.2"
treatment = "v"
"#;

/// A number (`c` names the candidate in scope).
fn num(c: &'static str) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        prop::sample::select(vec![
            "0", "1", "2", "3", "12", "-4", "0.0", "0.5", "1.5", "-2.25"
        ])
        .prop_map(String::from),
        prop::sample::select(vec![
            "customer.age",
            "customer.income",
            "x",
            "y",
            "len(customer.tags)",
            "customer.tags.len()",
            "days_since(customer.since)",
        ])
        .prop_map(String::from),
        prop::sample::select(vec![
            "value",
            "propensity",
            "context_weight",
            "lever",
            "priority"
        ])
        .prop_map(move |p| if c.is_empty() {
            "y".into()
        } else {
            format!("{c}.{p}")
        }),
    ];
    leaf.prop_recursive(3, 16, 2, |inner| {
        prop_oneof![
            4 => (inner.clone(), prop::sample::select(vec!["+", "-", "*", "/"]), inner.clone())
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            1 => (inner.clone(), prop::sample::select(vec!["%", "**"]), inner.clone())
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            1 => inner.clone().prop_map(|a| format!("(-{a})")),
            1 => inner.clone().prop_map(|a| format!("abs({a})")),
            2 => (prop::sample::select(vec!["min", "max"]), inner.clone(), inner.clone())
                .prop_map(|(f, a, b)| format!("{f}({a}, {b})")),
            1 => (inner.clone(), inner).prop_map(|(a, b)| format!("([{a}, {b}][1] ?? 0)")),
        ]
    })
    .boxed()
}

/// A string.
fn text(c: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"loans\"",
            "\"gold\"",
            "\"keep\"",
            "\"RETAIN\"",
            "\"\""
        ])
        .prop_map(String::from),
        Just("customer.tier".to_string()),
        prop::sample::select(vec!["id", "group", "issue"]).prop_map(move |p| if c.is_empty() {
            "customer.tier".into()
        } else {
            format!("{c}.{p}")
        }),
    ]
    .boxed()
}

/// A truth value.
fn truth(c: &'static str) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        prop::sample::select(vec!["true", "false", "customer.vip"]).prop_map(String::from),
        Just(if c.is_empty() {
            "customer.vip".into()
        } else {
            format!("{c}.excluded")
        }),
        (
            num(c),
            prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]),
            num(c)
        )
            .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
        (
            text(c),
            prop::sample::select(vec!["==", "!=", "<"]),
            text(c)
        )
            .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
        text(c).prop_map(|a| format!("({a} in customer.tags)")),
        text(c).prop_map(|a| format!("({a} in [\"gold\", \"loans\", \"cards\"])")),
        text(c).prop_map(|a| format!("({a} in \"loans and cards\")")),
    ];
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} && {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} || {b})")),
            inner.prop_map(|a| format!("(!{a})")),
        ]
    })
    .boxed()
}

/// Any value: mostly well typed, sometimes not (rhai raises an error,
/// which the lowered hook must hand back so that rhai reports it).
fn expr(c: &'static str) -> BoxedStrategy<String> {
    let wild = prop::sample::select(vec![
        "9223372036854775807",
        "()",
        "customer.tags",
        "customer.score",
        "customer[\"age\"]",
        "#{k: 1}.k",
        "[1, 2]",
        "\"a\"",
    ])
    .prop_map(String::from);
    prop_oneof![
        6 => num(c),
        2 => truth(c),
        2 => text(c),
        1 => wild.clone(),
        1 => (wild, prop::sample::select(vec!["+", "*", "==", "<", "&&"]), num(c))
            .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
    ]
    .boxed()
}

/// A statement of `adjust`.
fn adjust_stmt() -> impl Strategy<Value = String> {
    let simple = prop_oneof![
        expr("candidate").prop_map(|e| format!("let x = {e};")),
        num("candidate").prop_map(|e| format!("y = {e};")),
        (
            prop::sample::select(vec!["+=", "-=", "*=", "/="]),
            num("candidate")
        )
            .prop_map(|(op, e)| format!("y {op} {e};")),
        (
            prop::sample::select(vec!["value", "context_weight", "propensity", "lever"]),
            prop::sample::select(vec!["=", "*=", "+=", "-="]),
            expr("candidate")
        )
            .prop_map(|(p, op, e)| format!("candidate.{p} {op} {e};")),
        Just("candidate.exclude(\"not now\");".to_string()),
        Just("return candidate;".to_string()),
        Just("return;".to_string()),
    ];
    simple.prop_recursive(2, 12, 3, |inner| {
        (
            prop_oneof![4 => truth("candidate"), 1 => expr("candidate")],
            prop::collection::vec(inner.clone(), 0..3),
            prop::collection::vec(inner, 0..2),
        )
            .prop_map(|(c, a, b)| {
                format!("if {c} {{ {} }} else {{ {} }}", a.join(" "), b.join(" "))
            })
    })
}

fn adjust_script() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(adjust_stmt(), 0..6),
        prop::sample::select(vec!["candidate", "", "()", "5"]),
    )
        .prop_map(|(stmts, last)| {
            format!(
                "fn adjust(customer, candidate) {{\n  let x = 0; let y = 1.0;\n  {}\n  {last}\n}}\n",
                stmts.join("\n  ")
            )
        })
}

fn select_script() -> impl Strategy<Value = String> {
    (
        prop_oneof![4 => truth("c"), 1 => expr("c")],
        prop_oneof![4 => truth("c"), 1 => expr("c")],
        1i64..3,
        prop::sample::select(vec![
            "out",
            "out + [\"CARD_BASIC\"]",
            "[\"NOPE\"] + out",
            "ranked",
            "fixes + out",
            "5",
        ]),
        // Writes that take the map past its 6 entries (ids and groups as
        // keys) or its 64 bytes of strings, or neither.
        prop::sample::select(vec![
            "",
            "seen[c.id] = 1;",
            "seen[c.id] = c.group;",
            "seen[c.id] = c.id;",
            "seen.last = c.id;",
        ]),
    )
        .prop_map(|(skip, stop, k, result, write)| {
            format!(
                "fn select(customer, ranked) {{
  let out = []; let fixes = []; let seen = #{{}}; let x = 0; let y = 1.0;
  for (c, i) in ranked {{
    if c.group == \"keep\" {{ fixes.push(c); continue; }}
    if {skip} {{ continue; }}
    if i > 4 && ({stop}) {{ break; }}
    {write}
    let n = seen[c.group] ?? 0;
    if n >= {k} {{ continue; }}
    seen[c.group] = n + 1;
    out.push(c);
    x += 1;
  }}
  for j in out {{ y *= 1.5; }}
  {result}
}}
"
            )
        })
}

fn derive_script() -> impl Strategy<Value = String> {
    (
        prop_oneof![4 => num(""), 1 => expr("")],
        prop::sample::select(vec!["score", "score", "age", "nope"]),
    )
        .prop_map(|(e, k)| {
        format!(
            "fn derive(customer) {{\n  let x = customer.age; let y = customer.income;\n  let out = #{{ score: 0.25 }};\n  if customer.vip {{ out.{k} = {e}; }}\n  out\n}}\n"
        )
    })
}

fn rules(script: &str, lower: bool) -> Result<RuleSet, nextbest::Error> {
    rules_with(script, lower, "", "")
}

/// [`rules`] with `limits` added to the strategy's limits and `extra`
/// appended to the main file.
fn rules_with(
    script: &str,
    lower: bool,
    limits: &str,
    extra: &str,
) -> Result<RuleSet, nextbest::Error> {
    let mut main = RULESET.replace(
        "[strategy.limits]\n",
        &format!("[strategy.limits]\n{limits}"),
    );
    if !lower {
        main = main.replace("[strategy]\n", "[strategy]\nlower = false\n");
    }
    main.push_str(extra);
    RuleSet::compile(
        &RuleSource::new()
            .file("ruleset.toml", main)
            .file("actions/a.toml", ACTIONS)
            .file("strategies/s.rhai", script),
    )
}

fn customer() -> impl Strategy<Value = (i64, f64, bool, &'static str, Vec<&'static str>, i64)> {
    (
        prop_oneof![8 => 0i64..100, 1 => Just(i64::MAX), 1 => Just(i64::MIN + 1)],
        prop_oneof![8 => 0.0f64..200_000.0, 1 => Just(0.0), 1 => Just(-1.5)],
        any::<bool>(),
        prop::sample::select(vec!["gold", "silver", "a"]),
        prop::collection::vec(prop::sample::select(vec!["gold", "loans", "x"]), 0..4),
        1_700_000_000i64..1_800_000_000,
    )
}

/// Whether the lowered hooks handed any call of the decision to rhai.
fn check(
    script: &str,
    c: &(i64, f64, bool, &'static str, Vec<&'static str>, i64),
) -> Result<bool, TestCaseError> {
    // rhai's parser rejects some generated scripts (a literal number as a
    // condition, say): both paths reject them alike.
    let (lowered, interpreted) = match (rules(script, true), rules(script, false)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(a), Err(b)) => {
            prop_assert_eq!(a.to_string(), b.to_string());
            return Err(TestCaseError::reject("rhai does not parse it"));
        }
        (a, b) => panic!("{script}\n{a:?}\n{b:?}"),
    };
    for (hook, why) in lowered.strategy_hooks() {
        prop_assert!(why.is_none(), "{} not lowered: {:?}\n{}", hook, why, script);
    }
    let (a, b) = (Engine::new(lowered), Engine::new(interpreted));
    let (age, income, vip, tier, tags, since) = c;
    let ctx = Context::builder(&a.schema())
        .set("age", *age)
        .set("income", *income)
        .set("vip", *vip)
        .set("tier", *tier)
        .set(
            "tags",
            tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        )
        .set("since", Timestamp(*since))
        .build()
        .unwrap();
    let request = DecisionRequest::new("C1", "web", ctx)
        .explain(true)
        .at(Timestamp(1_800_000_000));
    let (x, y) = (a.decide(&request).unwrap(), b.decide(&request).unwrap());
    prop_assert_eq!(summary(&x), summary(&y), "{}", script);
    Ok(a.current().rules().strategy_fallbacks() > 0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_adjust_hooks_decide_as_rhai_does(script in adjust_script(), c in customer()) {
        check(&format!("{script}\nfn derive(customer) {{ #{{ score: 0.5 }} }}"), &c)?;
    }

    #[test]
    fn random_select_hooks_decide_as_rhai_does(script in select_script(), c in customer()) {
        check(&format!("{script}\nfn derive(customer) {{ #{{ score: 0.5 }} }}"), &c)?;
    }

    #[test]
    fn random_derive_hooks_decide_as_rhai_does(script in derive_script(), c in customer()) {
        check(&script, &c)?;
    }
}

/// The random scripts are not all handed back to rhai (the lowered path
/// decides most of them on its own), nor all decided without it (the
/// hand-back paths are exercised).
#[test]
fn random_scripts_exercise_both_paths() {
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let (mut own, mut handed) = (0, 0);
    let both = (adjust_script(), select_script(), customer());
    for _ in 0..200 {
        let (adjust, select, c) = both.new_tree(&mut runner).unwrap().current();
        let script = format!("{adjust}\n{select}\nfn derive(customer) {{ #{{ score: 0.5 }} }}");
        match check(&script, &c) {
            Ok(true) => handed += 1,
            Ok(false) => own += 1,
            Err(TestCaseError::Reject(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("{own} decided lowered, {handed} handed back to rhai");
    assert!(
        own >= 20 && handed >= 20,
        "{own} decided lowered, {handed} handed back"
    );
}

/// Both paths decide alike on `script` (lowered or not).
fn agree(script: &str) {
    agree_with_tags(script, vec!["gold".to_string()]);
}

/// [`agree`] for a customer with these tags.
fn agree_with_tags(script: &str, tags: Vec<String>) {
    let (a, b) = (
        Engine::new(rules(script, true).unwrap()),
        Engine::new(rules(script, false).unwrap()),
    );
    let ctx = Context::builder(&a.schema())
        .set("age", 40)
        .set("income", 50_000.0)
        .set("vip", true)
        .set("tier", "gold")
        .set("tags", tags.clone())
        .set("since", Timestamp(1_700_000_000))
        .build()
        .unwrap();
    let request = DecisionRequest::new("C1", "web", ctx)
        .explain(true)
        .at(Timestamp(1_800_000_000));
    let (x, y) = (a.decide(&request).unwrap(), b.decide(&request).unwrap());
    assert_eq!(summary(&x), summary(&y), "{script} {tags:?}");
}

const DERIVE: &str = "fn derive(customer) { #{ score: 0.5 } }";

/// An `adjust` made of `if`s on what the candidate is (folded per action)
/// with branches that often do nothing: the calls that change nothing for
/// an action are skipped, and the decisions must not show it.
fn guarded_adjust() -> impl Strategy<Value = String> {
    let branch = prop::sample::select(vec![
        "",
        "",
        "candidate.value *= 2.0;",
        "candidate.exclude(\"not for this group\");",
        "return candidate;",
        "return;",
        "return 5;",
        "candidate",
        "7",
    ]);
    let guard = prop::sample::select(vec![
        "candidate.group == \"loans\"",
        "candidate.group != \"cards\"",
        "candidate.id == \"RETAIN\" || candidate.issue == \"growth\"",
        "lending",
        "!lending",
        "candidate.issue == \"growth\" && customer.vip",
        // Skipping must not skip an evaluation that fails.
        "candidate.group == \"loans\" || customer.age / 0 > 1",
        "customer.age / 0 > 1 && candidate.group == \"keep\"",
    ]);
    let stmt = (guard, branch.clone(), branch)
        .prop_map(|(g, a, b)| format!("if {g} {{ {a} }} else {{ {b} }}"));
    let nested = (stmt.clone(), stmt.clone())
        .prop_map(|(a, b)| format!("if candidate.group == \"keep\" {{ {a} }} else {{ {b} }}"));
    (
        prop::collection::vec(prop_oneof![3 => stmt, 1 => nested], 1..4),
        prop::sample::select(vec!["candidate", "", "()", "5", "return candidate;"]),
    )
        .prop_map(|(stmts, last)| {
            format!(
                "fn adjust(customer, candidate) {{\n  let lending = candidate.group == \"loans\" || candidate.id == \"CARD_GOLD\";\n  {}\n  {last}\n}}\n{DERIVE}",
                stmts.join("\n  ")
            )
        })
}

/// Decisions of `script` lowered and interpreted, with `extra` appended
/// to the rule set's main file and `limits` to its strategy limits, on a
/// plain customer.
fn both_ways(script: &str, extra: &str, limits: &str) -> (Decision, Decision) {
    let decide = |lower: bool| {
        let engine = Engine::new(rules_with(script, lower, limits, extra).unwrap());
        let ctx = Context::builder(&engine.schema())
            .set("age", 40)
            .set("vip", true)
            .build()
            .unwrap();
        let request = DecisionRequest::new("C1", "web", ctx)
            .explain(true)
            .at(Timestamp(1_800_000_000));
        engine.decide(&request).unwrap()
    };
    (decide(true), decide(false))
}

/// Whether `d` carries a diagnostic of `adjust` that mentions `what`.
fn adjust_failed(d: &Decision, what: &str) -> bool {
    d.diagnostics()
        .iter()
        .map(|g| g.to_string())
        .any(|g| g.contains("adjust") && g.contains(what))
}

/// Context weights may add up to an infinite C. rhai's `adjust` returns
/// such a candidate and the check of its scores fails the hook; the call
/// that changes nothing must not be skipped then.
#[test]
fn a_skippable_call_with_invalid_scores_still_fails() {
    let script = "fn adjust(customer, candidate) {
  if candidate.group == \"nowhere\" { candidate.value *= 2.0; }
  candidate
}
fn derive(customer) { #{ score: 0.5 } }";
    let weights = "
[[context_weights]]
when = 'vip'
group = \"loans\"
boost = 1e308

[[context_weights]]
when = 'age > 18'
group = \"loans\"
boost = 1e308
";
    let (lowered, rhai) = both_ways(script, weights, "");
    assert_eq!(summary(&lowered), summary(&rhai));
    assert!(
        adjust_failed(&rhai, "invalid score"),
        "{:?}",
        rhai.diagnostics()
    );
}

/// A call that does nothing but still runs past rhai's operations budget
/// fails in rhai; skipping it must not hide that. (Each folded condition
/// fits in the lowered run's share of the budget, so its table is built;
/// the dozen of them do not.)
#[test]
fn a_skippable_call_over_the_operations_budget_still_fails() {
    let guards = "if candidate.group == \"nowhere\" { candidate.value *= 2.0; }\n".repeat(12);
    let script = format!(
        "fn adjust(customer, candidate) {{\n{guards}candidate\n}}\nfn derive(customer) {{ #{{ score: 0.5 }} }}"
    );
    let (lowered, rhai) = both_ways(&script, "", "max_operations = 40\n");
    assert_eq!(summary(&lowered), summary(&rhai));
    assert!(
        adjust_failed(&rhai, "operations"),
        "{:?}",
        rhai.diagnostics()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn skipped_adjust_calls_decide_as_rhai_does(script in guarded_adjust()) {
        agree(&script);
    }
}

/// rhai right-binds what follows an index: `a[i].m()` is `(a[i]).m()`,
/// and `a[ix][0]` with an array `ix` is an error.
#[test]
fn index_chains_decide_as_rhai_does() {
    for body in [
        "let caps = [3, 10]; let i = 1; candidate.value = caps[i].min(5); candidate",
        "let w = [-0.5, 2.0]; candidate.value = w[0].abs(); candidate",
        "let a = [10, 20, 30]; let ix = [2]; candidate.value = a[ix][0]; candidate",
        "let a = [[1, 2]]; a[0][1] = 9; candidate",
        "let m = #{ k: 2 }; candidate.value = m?.k ?? 1; candidate",
    ] {
        agree(&format!(
            "fn adjust(customer, candidate) {{ {body} }}\n{DERIVE}"
        ));
    }
}

/// Folded expressions count the operations they stand for: a hook that
/// runs past rhai's operations budget fails in both paths.
#[test]
fn folded_expressions_count_their_operations() {
    let zeros = ["0"; 10].join(", ");
    let groups: Vec<String> = (1..=8)
        .map(|k| format!("candidate.group == \"g{k}\""))
        .collect();
    let script = format!(
        "fn adjust(customer, candidate) {{
  let xs = [{zeros}]; let n = 0;
  for a in xs {{ for b in xs {{ for c in xs {{
    if {g} {{ n += 1; }}
    if {g} {{ n += 2; }}
    if {g} {{ n += 3; }}
    if {g} {{ n += 4; }}
  }} }} }}
  candidate
}}
{DERIVE}",
        g = groups.join(" || ")
    );
    agree(&script);
    let d = Engine::new(rules(&script, true).unwrap());
    let ctx = Context::builder(&d.schema()).build().unwrap();
    let x = d
        .decide(&DecisionRequest::new("C1", "web", ctx).at(Timestamp(1_800_000_000)))
        .unwrap();
    assert!(
        x.diagnostics()
            .iter()
            .any(|g| g.to_string().contains("operations")),
        "{:?}",
        x.diagnostics()
    );
}

/// `len()` of a set attribute counts it without building its array: at,
/// under and over the array and string limits, it decides as rhai does.
#[test]
fn set_lengths_at_the_limits_decide_as_rhai_does() {
    // The test rule set allows 12 items and 64 bytes of strings.
    let cases: Vec<Vec<String>> = vec![
        (0..13).map(|i| format!("t{i}")).collect(),
        (0..12).map(|i| format!("t{i}")).collect(),
        vec!["a".repeat(40), "b".repeat(30)],
        vec!["a".repeat(65)],
        vec!["a".repeat(64)],
        vec![],
    ];
    for body in [
        "let n = len(customer.tags); if n > 2 { candidate.value *= 2.0; } candidate",
        "if customer.tags.len() > 2 { candidate.value *= 2.0; } candidate",
        "let n = len(customer.tier); if n > 2 { candidate.value *= 2.0; } candidate",
        "let t = customer.tags; t.push(\"zzzzzzzzzzzzzzzzzzzz\"); candidate",
        "let n = len(customer.tags); let t = []; t.push(candidate.id); t.push(candidate.id); t.push(candidate.id); candidate",
    ] {
        let script = format!("fn adjust(customer, candidate) {{ {body} }}\n{DERIVE}");
        for (hook, why) in rules(&script, true).unwrap().strategy_hooks() {
            assert!(why.is_none(), "{hook} not lowered: {why:?}");
        }
        for tags in &cases {
            agree_with_tags(&script, tags.clone());
        }
    }
}

/// Runs reuse buffers (and the context copy derive writes into) from the
/// previous run on their thread: two rule sets with different schemas
/// deciding in turn on one thread decide as each does on a fresh thread.
#[test]
fn rule_sets_deciding_in_turn_on_one_thread_decide_as_on_fresh_threads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs = ["rules/retail_bank", "rules/telco_care"].map(|d| root.join(d));
    let engines = dirs
        .clone()
        .map(|d| Engine::new(RuleSet::from_dir(d).unwrap()));
    let requests: Vec<Vec<String>> = dirs
        .iter()
        .zip(&engines)
        .map(|(d, e)| requests(d, e.current().rules(), 150))
        .collect();
    // In turn, on this thread.
    let mut in_turn = [Vec::new(), Vec::new()];
    for (a, b) in requests[0].iter().zip(&requests[1]) {
        in_turn[0].push(engines[0].decide_json(a).unwrap());
        in_turn[1].push(engines[1].decide_json(b).unwrap());
    }
    // Each on a thread of its own.
    for (k, engine) in engines.iter().enumerate() {
        for (i, request) in requests[k].iter().enumerate() {
            let alone = std::thread::scope(|s| {
                s.spawn(|| engine.decide_json(request).unwrap())
                    .join()
                    .unwrap()
            });
            if timed_out(&alone) || timed_out(&in_turn[k][i]) {
                continue;
            }
            assert_eq!(
                summary(&in_turn[k][i]),
                summary(&alone),
                "{} customer {i}",
                dirs[k].display()
            );
        }
    }
}
