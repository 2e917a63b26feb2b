//! Rule versions wider than one bitset word, in both directions: channels
//! of 63 to 600 actions (the passing bitset's word boundaries) and up to 800
//! distinct conjuncts (one to thirteen memo words: the table by conjunct up
//! to 512, each action's mask past it). Each action's policy is a threshold whose meaning is
//! known here, so what a decision chooses, ranks and removes is checked
//! against a direct computation.

use nextbest::{DecisionRequest, Engine, RuleSet, RuleSource, Timestamp};

/// A rule set of `n` actions on one channel. Action `i` needs `age >= i`;
/// every third also needs `income >= 10 * i` when `extra` (a second family
/// of distinct conjuncts). Propensities rise with `i`, so the best
/// survivors are the highest `i` that pass.
fn rules(n: usize, extra: bool) -> RuleSet {
    compile(n, "wide", "", |i| {
        if extra && i % 3 == 0 {
            format!("age >= {i} && income >= {}.0", 10 * i)
        } else {
            format!("age >= {i}")
        }
    })
}

/// A rule set `name` of `n` actions on the channel `web` (schema `age`,
/// `income`), `more` appended to its ruleset.toml: action `i` is `a{i:04}`
/// with propensity `(i + 1) / 1000` and eligibility `cond(i)`.
fn compile(n: usize, name: &str, more: &str, cond: impl Fn(usize) -> String) -> RuleSet {
    use std::fmt::Write;
    let main = format!(
        "name = \"{name}\"\ndefault_limit = 3\n[schema]\nage = \"int\"\nincome = \"float\"\n\
         [channels]\nweb = {{ direction = \"inbound\" }}\n[issues.all]\n[groups.all]\nissue = \"all\"\n{more}"
    );
    let mut actions = String::new();
    for i in 0..n {
        let _ = writeln!(
            actions,
            "[[actions]]\nid = \"a{i:04}\"\ngroup = \"all\"\nchannels = [\"web\"]\nvalue = 1\n\
             starting_propensity = {:?}\ntreatment = \"T\"\neligibility = '{}'\n",
            (i + 1) as f64 / 1000.0,
            cond(i)
        );
    }
    let src = RuleSource::new()
        .file("ruleset.toml", main)
        .file("actions/all.toml", actions);
    RuleSet::compile(&src).unwrap_or_else(|e| panic!("{name}, n = {n}: {e}"))
}

fn passes(i: usize, age: i64, income: f64, extra: bool) -> bool {
    (i as i64) <= age && !(extra && i % 3 == 0 && income < (10 * i) as f64)
}

#[test]
fn decisions_on_wide_rule_sets_match_their_meaning() {
    for (n, extra) in [
        (63, false),
        (64, false),
        (65, false),
        (128, false),
        (129, true),
        (200, true),
        (256, false),
        (300, true),
        (600, true),
    ] {
        let rs = rules(n, extra);
        let conjuncts = rs.condition_count();
        if n == 600 {
            assert!(
                conjuncts > 512,
                "{conjuncts} conjuncts: the table by conjunct would hold them"
            );
        }
        let engine = Engine::new(rs);
        for age in [
            -1, 0, 1, 37, 63, 64, 65, 127, 128, 200, 255, 299, 300, 599, 600, 1000,
        ] {
            for income in [0.0, 650.0, 5000.0] {
                let ctx = nextbest::Context::builder(&engine.schema())
                    .set("age", age)
                    .set("income", income)
                    .build()
                    .expect("context");
                let want: Vec<usize> = (0..n).filter(|&i| passes(i, age, income, extra)).collect();
                let case = format!("n = {n} ({conjuncts} conjuncts), age {age}, income {income}");
                for explain in [false, true] {
                    let d = engine
                        .decide(
                            &DecisionRequest::new("C1", "web", ctx.clone())
                                .explain(explain)
                                .at(Timestamp(1_790_000_000)),
                        )
                        .expect("decide");
                    let chosen: Vec<String> = d.actions().map(|a| a.action().to_string()).collect();
                    let best: Vec<String> = want
                        .iter()
                        .rev()
                        .take(3)
                        .map(|i| format!("a{i:04}"))
                        .collect();
                    assert_eq!(chosen, best, "{case}, explain {explain}");
                    if explain {
                        let mut ranked: Vec<String> =
                            d.ranked().map(|r| r.action().to_string()).collect();
                        ranked.sort();
                        let all: Vec<String> = want.iter().map(|i| format!("a{i:04}")).collect();
                        assert_eq!(ranked, all, "ranked: {case}");
                        assert_eq!(d.filtered().len(), n - want.len(), "filtered: {case}");
                    }
                }
            }
        }
    }
}

/// Context weights whose conditions span two memo words: a conjunct the
/// actions share (`age >= 5`, an early id) with one only the weight has
/// (`income >= 70.0`, compiled after 100 thresholds, so in the second
/// word), and two whose boosts together take C below 0 (clamped to 0)
/// unless the first also holds. Every
/// ranked action's C is checked against the formula.
#[test]
fn context_weights_spanning_memo_words_match_the_formula() {
    let n = 100;
    let weights =
        "[[context_weights]]\nwhen = 'age >= 5 && income >= 70.0'\ngroup = \"all\"\nboost = 50\n\
                [[context_weights]]\nwhen = 'age >= 90'\ngroup = \"all\"\nboost = -80\n\
                [[context_weights]]\nwhen = 'age >= 95'\ngroup = \"all\"\nboost = -60\n";
    let rs = compile(n, "weights", weights, |i| format!("age >= {i}"));
    assert!(rs.condition_count() > 64, "{}", rs.condition_count());
    let engine = Engine::new(rs);
    for age in [0, 4, 5, 6, 63, 64, 89, 90, 94, 95, 99] {
        for income in [0.0, 69.9, 70.0, 500.0] {
            let ctx = nextbest::Context::builder(&engine.schema())
                .set("age", age)
                .set("income", income)
                .build()
                .expect("context");
            let d = engine
                .decide(
                    &DecisionRequest::new("C1", "web", ctx)
                        .explain(true)
                        .at(Timestamp(1_790_000_000)),
                )
                .expect("decide");
            let mut boost = 0.0;
            if age >= 5 && income >= 70.0 {
                boost += 50.0;
            }
            if age >= 90 {
                boost -= 80.0;
            }
            if age >= 95 {
                boost -= 60.0;
            }
            let want = f64::max(1.0 + boost / 100.0, 0.0);
            assert_eq!(d.ranked().len(), (age + 1) as usize, "age {age}");
            for r in d.ranked() {
                assert_eq!(
                    r.context_weight().to_bits(),
                    want.to_bits(),
                    "age {age}, income {income}, {}",
                    r.action()
                );
            }
        }
    }
}
