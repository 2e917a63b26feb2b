#![allow(clippy::neg_cmp_op_on_partial_ord, clippy::type_complexity)]
//! Property tests of arbitration on random rule sets.
//!
//! Each case builds a random rule set from strings (issues, groups, 1..40
//! actions over 1..3 files, levers, values, group- and action-level
//! policies, context weights), a random customer, channel and limit, and
//! checks the decision against the invariants of arbitration and against a
//! reference model that recomputes every candidate's fate and score.

use std::collections::BTreeSet;

use nextbest::{
    Context, Decision, DecisionRequest, Engine, Level, RuleSet, RuleSource, Stage, Timestamp,
};
use proptest::prelude::*;
use proptest::sample::select;

// ---------------------------------------------------------------------------
// The customer, and the catalogs of conditions and values with their meaning
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Cust {
    age: Option<i64>,
    income: Option<f64>,
    vip: Option<bool>,
    segment: Option<&'static str>,
}

/// A condition: its text, and what it means (None: cannot be evaluated,
/// which is "not met").
type CondFn = fn(&Cust) -> Option<bool>;

const CONDS: &[(&str, CondFn)] = &[
    ("age >= 18", |c| Some(c.age? >= 18)),
    ("age < 65", |c| Some(c.age? < 65)),
    ("income > 30000.0", |c| Some(c.income? > 30000.0)),
    ("vip", |c| c.vip),
    ("!vip", |c| Some(!c.vip?)),
    (r#"segment == "gold""#, |c| Some(c.segment? == "gold")),
    (r#"segment != "gold""#, |c| Some(c.segment? != "gold")),
    (r#"segment in ["gold", "mass"]"#, |c| {
        Some(matches!(c.segment?, "gold" | "mass"))
    }),
    ("age * 9223372036854775807 > 1", |c| {
        Some(c.age?.checked_mul(i64::MAX)? > 1)
    }),
    ("income >= 1000.0 && age > 30", |c| {
        if !(c.income? >= 1000.0) {
            return Some(false);
        }
        Some(c.age? > 30)
    }),
    ("vip || age > 60", |c| {
        if c.vip? {
            return Some(true);
        }
        Some(c.age? > 60)
    }),
];

/// Conditions past `CONDS`: `age >= K` for K in 0..THRESHOLDS. Many
/// distinct conjuncts, so that a rule set can have more than 64 (the memo
/// and each action's needs then span several words).
const THRESHOLDS: usize = 90;

/// The text of condition `c`.
fn cond_text(c: usize) -> String {
    match CONDS.get(c) {
        Some((text, _)) => text.to_string(),
        None => format!("age >= {}", c - CONDS.len()),
    }
}

/// A value: a number, or an expression and what it evaluates to (None: it
/// fails or is not finite, which removes the candidate).
#[derive(Debug, Clone, Copy)]
enum Val {
    Num(f64),
    Expr(&'static str, fn(&Cust) -> Option<f64>),
}

const EXPRS: &[(&str, fn(&Cust) -> Option<f64>)] = &[
    ("income * 0.001", |c| Some(c.income? * 0.001)),
    ("age + 1", |c| c.age?.checked_add(1).map(|v| v as f64)),
    ("10.0 / age", |c| Some(10.0 / c.age? as f64)),
    ("100 / age", |c| {
        100i64.checked_div(c.age?).map(|v| v as f64)
    }),
    ("max(income, 500) * 0.01", |c| {
        let i = c.income?;
        Some(if i >= 500.0 { i } else { 500.0 } * 0.01)
    }),
];

impl Val {
    fn toml(&self) -> String {
        match self {
            Val::Num(v) => format!("{v:?}"),
            Val::Expr(t, _) => format!("'{t}'"),
        }
    }

    fn eval(&self, c: &Cust) -> Option<f64> {
        match self {
            Val::Num(v) => Some(*v),
            Val::Expr(_, f) => f(c).filter(|v| v.is_finite()),
        }
    }
}

// ---------------------------------------------------------------------------
// Random rule sets
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct IssueM {
    lever: i32,
}

#[derive(Debug, Clone)]
struct GroupM {
    issue: usize,
    lever: i32,
    /// Condition per stage (eligibility, applicability, suitability).
    checks: [Option<usize>; 3],
}

#[derive(Debug, Clone)]
struct ActionM {
    id: String,
    group: usize,
    web: bool,
    email: bool,
    value: Val,
    propensity: f64,
    lever: i32,
    checks: [Option<usize>; 3],
    file: usize,
}

#[derive(Debug, Clone)]
enum Target {
    Issue(usize),
    Group(usize),
    Action(usize),
}

#[derive(Debug, Clone)]
struct WeightM {
    when: usize,
    target: Target,
    boost: i32,
}

#[derive(Debug, Clone)]
struct RulesM {
    default_limit: Option<usize>,
    web_limit: Option<usize>,
    issues: Vec<IssueM>,
    groups: Vec<GroupM>,
    actions: Vec<ActionM>,
    weights: Vec<WeightM>,
}

const STAGES: [&str; 3] = ["eligibility", "applicability", "suitability"];

impl RulesM {
    fn source(&self) -> RuleSource {
        use std::fmt::Write;
        let mut rs = String::from("name = \"props\"\n");
        if let Some(l) = self.default_limit {
            let _ = writeln!(rs, "default_limit = {l}");
        }
        rs.push_str(
            "[schema]\nage = \"int\"\nincome = \"float\"\nvip = \"bool\"\nsegment = \"string\"\n",
        );
        rs.push_str("[channels]\n");
        match self.web_limit {
            Some(l) => {
                let _ = writeln!(rs, "web = {{ direction = \"inbound\", limit = {l} }}");
            }
            None => rs.push_str("web = { direction = \"inbound\" }\n"),
        }
        rs.push_str("email = { direction = \"outbound\" }\n");
        for (i, is) in self.issues.iter().enumerate() {
            let _ = writeln!(rs, "[issues.i{i}]\nlever = {}", is.lever);
        }
        for (g, gm) in self.groups.iter().enumerate() {
            let _ = writeln!(
                rs,
                "[groups.g{g}]\nissue = \"i{}\"\nlever = {}",
                gm.issue, gm.lever
            );
            for (k, c) in gm.checks.iter().enumerate() {
                if let Some(c) = c {
                    let _ = writeln!(rs, "{} = '{}'", STAGES[k], cond_text(*c));
                }
            }
        }
        for w in &self.weights {
            let target = match &w.target {
                Target::Issue(i) => format!("issue = \"i{i}\""),
                Target::Group(g) => format!("group = \"g{g}\""),
                Target::Action(a) => format!("action = \"{}\"", self.actions[*a].id),
            };
            let _ = writeln!(
                rs,
                "[[context_weights]]\nwhen = '{}'\n{target}\nboost = {}",
                cond_text(w.when),
                w.boost
            );
        }
        let mut files = vec![String::new(); 3];
        for a in &self.actions {
            let f = &mut files[a.file];
            let mut channels = Vec::new();
            if a.web {
                channels.push("\"web\"");
            }
            if a.email {
                channels.push("\"email\"");
            }
            let _ = writeln!(
                f,
                "[[actions]]\nid = \"{}\"\ngroup = \"g{}\"\nchannels = [{}]\nvalue = {}\nstarting_propensity = {:?}\nlever = {}\ntreatment = \"T-{}\"",
                a.id,
                a.group,
                channels.join(", "),
                a.value.toml(),
                a.propensity,
                a.lever,
                a.id
            );
            for (k, c) in a.checks.iter().enumerate() {
                if let Some(c) = c {
                    let _ = writeln!(f, "{} = '{}'", STAGES[k], cond_text(*c));
                }
            }
            f.push('\n');
        }
        let mut src = RuleSource::new().file("ruleset.toml", rs);
        for (i, f) in files.into_iter().enumerate() {
            if !f.is_empty() {
                src = src.file(format!("actions/f{i}.toml"), f);
            }
        }
        src
    }
}

fn cond_choice() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        6 => Just(None),
        3 => (0..CONDS.len()).prop_map(Some),
        3 => (CONDS.len()..CONDS.len() + THRESHOLDS).prop_map(Some),
    ]
}

fn checks() -> impl Strategy<Value = [Option<usize>; 3]> {
    [cond_choice(), cond_choice(), cond_choice()]
}

fn value() -> impl Strategy<Value = Val> {
    prop_oneof![
        3 => select(vec![0.0, 1.0, 2.0, 5.0, 10.0, 35.5]).prop_map(Val::Num),
        2 => select(EXPRS.to_vec()).prop_map(|(t, f)| Val::Expr(t, f)),
    ]
}

fn rules() -> impl Strategy<Value = RulesM> {
    // Mostly small rule sets; some with more actions than one bitset word.
    let na = prop_oneof![4 => 1usize..=40, 1 => 65usize..=150];
    (1usize..=3, 1usize..=4, na).prop_flat_map(|(ni, ng, na)| {
        let issues = proptest::collection::vec(
            select(vec![-30, 0, 10, 50]).prop_map(|lever| IssueM { lever }),
            ni,
        );
        let groups = proptest::collection::vec(
            (0..ni, select(vec![-30, 0, 25]), checks()).prop_map(|(issue, lever, checks)| GroupM {
                issue,
                lever,
                checks,
            }),
            ng,
        );
        let ids = proptest::collection::btree_set("[A-Za-z][A-Za-z0-9_-]{0,5}", na)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>())
            .prop_shuffle();
        let action = (
            0..ng,
            prop_oneof![Just((true, false)), Just((false, true)), Just((true, true))],
            value(),
            select(vec![0.1, 0.2, 0.5, 1.0, 0.05]),
            select(vec![-40, 0, 5, 100]),
            checks(),
            0usize..3,
        );
        let actions = (ids, proptest::collection::vec(action, na)).prop_map(|(ids, specs)| {
            ids.into_iter()
                .zip(specs)
                .map(
                    |(id, (group, (web, email), value, propensity, lever, checks, file))| ActionM {
                        id,
                        group,
                        web,
                        email,
                        value,
                        propensity,
                        lever,
                        checks,
                        file,
                    },
                )
                .collect::<Vec<_>>()
        });
        let target = prop_oneof![
            (0..ni).prop_map(Target::Issue),
            (0..ng).prop_map(Target::Group),
            (0..na).prop_map(Target::Action),
        ];
        let weights = proptest::collection::vec(
            (0..CONDS.len(), target, select(vec![-100, -50, 0, 25, 100])).prop_map(
                |(when, target, boost)| WeightM {
                    when,
                    target,
                    boost,
                },
            ),
            0..=4,
        );
        (
            proptest::option::of(1usize..=6),
            proptest::option::of(1usize..=6),
            issues,
            groups,
            actions,
            weights,
        )
            .prop_map(
                |(default_limit, web_limit, issues, groups, actions, weights)| RulesM {
                    default_limit,
                    web_limit,
                    issues,
                    groups,
                    actions,
                    weights,
                },
            )
    })
}

fn customer() -> impl Strategy<Value = Cust> {
    (
        proptest::option::weighted(
            0.9,
            select(vec![-1i64, 0, 17, 18, 40, 64, 65, 70, i64::MAX, i64::MIN]),
        ),
        proptest::option::weighted(0.9, select(vec![0.0, 500.0, 999.5, 30000.5, 1e6])),
        proptest::option::weighted(0.9, any::<bool>()),
        proptest::option::weighted(0.9, select(vec!["gold", "mass", "other"])),
    )
        .prop_map(|(age, income, vip, segment)| Cust {
            age,
            income,
            vip,
            segment,
        })
}

// ---------------------------------------------------------------------------
// The reference model of a decision
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Scored {
    id: String,
    propensity: f64,
    context_weight: f64,
    value: f64,
    lever: f64,
    priority: f64,
}

#[derive(Debug, Default)]
struct Expected {
    /// Every survivor, in arbitration order.
    ranked: Vec<Scored>,
    /// Removed: id → (stage, level).
    removed: Vec<(String, Stage, Level)>,
    /// For each of `removed` removed by a condition: whether the condition
    /// could not be evaluated (a missing attribute, an overflow), which the
    /// explanation gives as the reason.
    errored: Vec<Option<bool>>,
}

/// Whether condition `c` cannot be evaluated for `cust`.
fn errs(c: usize, cust: &Cust) -> bool {
    match CONDS.get(c) {
        Some((_, f)) => f(cust).is_none(),
        None => cust.age.is_none(),
    }
}

fn met(c: usize, cust: &Cust) -> bool {
    match CONDS.get(c) {
        Some((_, f)) => f(cust) == Some(true),
        None => cust.age.is_some_and(|a| a >= (c - CONDS.len()) as i64),
    }
}

fn expected(m: &RulesM, cust: &Cust, web: bool) -> Expected {
    let stages = [Stage::Eligibility, Stage::Applicability, Stage::Suitability];
    let mut out = Expected::default();
    // The explanation lists the engagement policies' removals first, then
    // the value stage's, each in action order.
    let mut value_removed = Vec::new();
    let mut actions: Vec<(usize, &ActionM)> = m.actions.iter().enumerate().collect();
    actions.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    'actions: for (ai, a) in actions {
        if !(if web { a.web } else { a.email }) {
            continue;
        }
        let g = &m.groups[a.group];
        for (k, stage) in stages.into_iter().enumerate() {
            for (check, level) in [(g.checks[k], Level::Group), (a.checks[k], Level::Action)] {
                if let Some(c) = check {
                    if !met(c, cust) {
                        out.removed.push((a.id.clone(), stage, level));
                        out.errored.push(Some(errs(c, cust)));
                        continue 'actions;
                    }
                }
            }
        }
        let Some(value) = a.value.eval(cust) else {
            value_removed.push((a.id.clone(), Stage::Value, Level::Action));
            continue;
        };
        let mut boost = 0.0;
        for w in &m.weights {
            let hit = match w.target {
                Target::Issue(i) => g.issue == i,
                Target::Group(gi) => a.group == gi,
                Target::Action(x) => x == ai,
            };
            if hit && met(w.when, cust) {
                boost += f64::from(w.boost);
            }
        }
        let context_weight = (1.0 + boost / 100.0).max(0.0);
        let total = f64::from(a.lever) + f64::from(g.lever) + f64::from(m.issues[g.issue].lever);
        let lever = 1.0 + total / 100.0;
        let propensity = a.propensity;
        out.ranked.push(Scored {
            id: a.id.clone(),
            propensity,
            context_weight,
            value,
            lever,
            priority: propensity * context_weight * value * lever,
        });
    }
    // Priority descending, then id ascending; zeros of either sign tie (see
    // `zero_priorities_of_either_sign_tie_by_id`).
    assert!(out.ranked.iter().all(|s| s.priority.is_finite()));
    out.ranked.sort_by(|x, y| {
        y.priority
            .partial_cmp(&x.priority)
            .expect("finite priorities")
            .then_with(|| x.id.cmp(&y.id))
    });
    // Whether a value that is not a finite number failed to evaluate or
    // evaluated to NaN or an infinity, the model does not say.
    out.errored.extend(value_removed.iter().map(|_| None));
    out.removed.extend(value_removed);
    out
}

fn chosen(d: &Decision) -> Vec<Scored> {
    d.actions()
        .map(|r| Scored {
            id: r.action().to_string(),
            propensity: r.propensity(),
            context_weight: r.context_weight(),
            value: r.value(),
            lever: r.lever(),
            priority: r.priority(),
        })
        .collect()
}

fn ranked(d: &Decision) -> Vec<Scored> {
    d.ranked()
        .map(|r| Scored {
            id: r.action().to_string(),
            propensity: r.propensity(),
            context_weight: r.context_weight(),
            value: r.value(),
            lever: r.lever(),
            priority: r.priority(),
        })
        .collect()
}

fn context(e: &Engine, c: &Cust) -> Context {
    let mut b = Context::builder(&e.schema());
    if let Some(v) = c.age {
        b = b.set("age", v);
    }
    if let Some(v) = c.income {
        b = b.set("income", v);
    }
    if let Some(v) = c.vip {
        b = b.set("vip", v);
    }
    if let Some(v) = c.segment {
        b = b.set("segment", v);
    }
    b.build().unwrap()
}

/// The arbitration order: strictly before, by priority then id (-0.0 and
/// 0.0 tie).
fn in_order(a: &Scored, b: &Scored) -> bool {
    match a.priority.partial_cmp(&b.priority) {
        Some(std::cmp::Ordering::Greater) => true,
        Some(std::cmp::Ordering::Less) => false,
        _ => a.id < b.id,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitration_invariants_hold_on_random_rule_sets(
        m in rules(),
        cust in customer(),
        web in any::<bool>(),
        limit in proptest::option::of(1usize..=12),
    ) {
        let src = m.source();
        let rules = match RuleSet::compile(&src) {
            Ok(r) => r,
            Err(e) => panic!("generated rule set does not compile: {e}\n{src:#?}"),
        };
        let engine = Engine::new(rules);
        let channel = if web { "web" } else { "email" };
        let now = Timestamp(1_795_000_000);
        let req = |explain: bool| {
            let mut r = DecisionRequest::new("C1", channel, context(&engine, &cust)).explain(explain).at(now);
            if let Some(l) = limit {
                r = r.limit(l);
            }
            r
        };
        let effective = limit
            .or(if web { m.web_limit } else { None })
            .or(m.default_limit)
            .unwrap_or(3);

        let plain = engine.decide(&req(false)).unwrap();
        let plain2 = engine.decide(&req(false)).unwrap();
        let explained = engine.decide(&req(true)).unwrap();
        let explained2 = engine.decide(&req(true)).unwrap();
        let got = chosen(&plain);

        // At most `limit`, in a total, deterministic order.
        prop_assert!(got.len() <= effective, "{} chosen, limit {}", got.len(), effective);
        for w in got.windows(2) {
            prop_assert!(in_order(&w[0], &w[1]), "out of order: {:?} then {:?}", w[0], w[1]);
        }
        // Deterministic, and the same with or without an explanation.
        prop_assert_eq!(&got, &chosen(&plain2));
        prop_assert_eq!(&got, &chosen(&explained));
        prop_assert_eq!(&chosen(&explained), &chosen(&explained2));
        prop_assert_eq!(ranked(&explained), ranked(&explained2));
        // Without explain there is no explanation.
        prop_assert_eq!(plain.ranked().len(), 0);
        prop_assert_eq!(plain.filtered().len(), 0);

        // P × C × V × L, exactly as documented.
        for s in got.iter().chain(ranked(&explained).iter()) {
            prop_assert_eq!(s.priority, s.propensity * s.context_weight * s.value * s.lever, "{:?}", s);
        }
        // Treatments are the channel's.
        for r in plain.actions() {
            prop_assert_eq!(r.treatment(), format!("T-{}", r.action()));
        }

        // Filtered actions are never chosen; chosen = the first `limit`
        // ranked; every offered action is filtered or ranked, never both.
        let filtered: BTreeSet<String> = explained.filtered().map(|f| f.action().to_string()).collect();
        let rank = ranked(&explained);
        for s in &got {
            prop_assert!(!filtered.contains(&s.id), "{} chosen and filtered", s.id);
        }
        prop_assert_eq!(&got[..], &rank[..rank.len().min(effective)]);
        for w in rank.windows(2) {
            prop_assert!(in_order(&w[0], &w[1]), "ranked out of order: {:?} then {:?}", w[0], w[1]);
        }
        let ranked_ids: BTreeSet<String> = rank.iter().map(|s| s.id.clone()).collect();
        prop_assert_eq!(ranked_ids.len(), rank.len(), "an action ranked twice");
        prop_assert_eq!(filtered.len(), explained.filtered().len(), "an action filtered twice");
        let offered: BTreeSet<String> = m
            .actions
            .iter()
            .filter(|a| if web { a.web } else { a.email })
            .map(|a| a.id.clone())
            .collect();
        prop_assert!(filtered.is_disjoint(&ranked_ids));
        let all: BTreeSet<String> = filtered.union(&ranked_ids).cloned().collect();
        prop_assert_eq!(&all, &offered);

        // And the reference model agrees on everything.
        let want = expected(&m, &cust, web);
        prop_assert_eq!(&rank, &want.ranked, "ranked differs from the model");
        let removed: Vec<(String, Stage, Level)> = explained
            .filtered()
            .map(|f| (f.action().to_string(), f.stage(), f.level()))
            .collect();
        prop_assert_eq!(&removed, &want.removed, "filtered differs from the model");
        for ((f, want), (id, ..)) in explained.filtered().zip(&want.errored).zip(&want.removed) {
            if let Some(errored) = *want {
                prop_assert_eq!(
                    f.reason().is_some(),
                    errored,
                    "{}: reason {:?} for condition {:?}",
                    id,
                    f.reason(),
                    f.condition()
                );
            }
        }
        prop_assert_eq!(&got[..], &want.ranked[..want.ranked.len().min(effective)]);
    }
}

/// The generator reaches the interesting cases: several chosen, ties in
/// priority, more survivors than the limit, removals at every stage and
/// level, and context weights that match.
#[test]
fn generator_covers_ties_limits_and_every_stage() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strat = (rules(), customer(), any::<bool>());
    let (mut several, mut ties, mut beyond, mut boosted, mut wide) = (0, 0, 0, 0, 0);
    let mut stages = BTreeSet::new();
    for _ in 0..300 {
        let (m, cust, web) = strat.new_tree(&mut runner).unwrap().current();
        let want = expected(&m, &cust, web);
        let limit = (if web { m.web_limit } else { None })
            .or(m.default_limit)
            .unwrap_or(3);
        several += usize::from(want.ranked.len() >= 2);
        ties += usize::from(
            want.ranked
                .windows(2)
                .any(|w| w[0].priority == w[1].priority),
        );
        beyond += usize::from(want.ranked.len() > limit);
        boosted += usize::from(want.ranked.iter().any(|s| s.context_weight != 1.0));
        let conds: BTreeSet<usize> = m
            .groups
            .iter()
            .flat_map(|g| g.checks.iter().flatten())
            .chain(m.actions.iter().flat_map(|a| a.checks.iter().flatten()))
            .copied()
            .collect();
        wide += usize::from(m.actions.len() > 64 && conds.len() > 64);
        for (_, stage, level) in &want.removed {
            stages.insert(format!("{stage}/{}", level.as_str()));
        }
    }
    assert!(
        several > 100 && ties > 30 && beyond > 50 && boosted > 30 && wide > 5,
        "{several} {ties} {beyond} {boosted} {wide}"
    );
    assert_eq!(stages.len(), 7, "{stages:?}");
}

/// Equal priorities rank by action id. Zero priorities of either sign are
/// equal (`-0.0 == 0.0`, and both print as a zero priority), so they too
/// rank by id (it once ordered them with `f64::total_cmp`, which put -0.0
/// after 0.0 whatever the ids).
#[test]
fn zero_priorities_of_either_sign_tie_by_id() {
    let rs = r#"
name = "zero"
[schema]
x = "int"
[channels]
web = { direction = "inbound", limit = 2 }
[issues.i]
[groups.g]
issue = "i"
[[context_weights]]
when = "x == 1"
action = "A"
boost = -100
"#;
    let actions = r#"
[[actions]]
id = "A"
group = "g"
channels = ["web"]
value = -1.0
starting_propensity = 0.5
treatment = "t"

[[actions]]
id = "B"
group = "g"
channels = ["web"]
value = 0.0
starting_propensity = 0.5
treatment = "t"
"#;
    let src = RuleSource::new()
        .file("ruleset.toml", rs)
        .file("actions/a.toml", actions);
    let engine = Engine::new(RuleSet::compile(&src).unwrap());
    let ctx = Context::builder(&engine.schema())
        .set("x", 1)
        .build()
        .unwrap();
    let d = engine
        .decide(&DecisionRequest::new("C1", "web", ctx))
        .unwrap();
    let p: Vec<f64> = d.actions().map(|a| a.priority()).collect();
    // A: 0.5 * 0 * -1 * 1 = -0.0; B: 0.5 * 1 * 0 * 1 = 0.0. Equal: A first.
    assert!(p.iter().all(|&x| x == 0.0), "{p:?}");
    assert_eq!(d.action_ids(), vec!["A", "B"]);
}
