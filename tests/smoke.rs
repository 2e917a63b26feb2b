use nextbest::{Context, DecisionRequest, Engine, RuleSet, RuleSource, Stage, Timestamp};

const RULESET: &str = r#"
name = "mini"
[schema]
age = "int"
income = "float"
segment = { type = "string", values = ["mass", "gold"] }
products = { type = "string_set", default = [] }
call_reason = "string"
last_contact = "timestamp"
[channels]
call_center = { direction = "inbound", limit = 2 }
email = { direction = "outbound", limit = 1 }
[issues.growth]
lever = 10
[issues.retention]
[groups.cards]
issue = "growth"
eligibility = "age >= 18"
[groups.keep]
issue = "retention"
[[context_weights]]
when = 'call_reason == "cancellation"'
group = "keep"
boost = 100
"#;

const ACTIONS: &str = r#"
[[actions]]
id = "CARD_GOLD"
group = "cards"
channels = ["call_center", "email"]
value = 35.0
starting_propensity = 0.05
applicability = '!("CARD_GOLD" in products)'
suitability = "income >= 30000.0 && segment == \"gold\""
treatment = "Gold card"

[[actions]]
id = "CARD_BASIC"
group = "cards"
channels = ["call_center"]
value = "income * 0.001"
starting_propensity = 0.1
treatments = { call_center = "Basic card" }

[[actions]]
id = "RETAIN"
group = "keep"
channels = ["call_center"]
value = 10.0
starting_propensity = 0.2
eligibility = "days_since(last_contact) > 30"
treatment = "Retention offer"
"#;

fn engine() -> Engine {
    let src = RuleSource::new()
        .file("ruleset.toml", RULESET)
        .file("actions/a.toml", ACTIONS);
    Engine::new(RuleSet::compile(&src).unwrap())
}

#[test]
fn ranks_by_priority_and_explains_filters() {
    let e = engine();
    let ctx = Context::builder(&e.schema())
        .set("age", 40)
        .set("income", 50_000.0)
        .set("segment", "mass")
        .set("call_reason", "cancellation")
        .set(
            "last_contact",
            Timestamp::parse("2026-09-01T00:00:00Z").unwrap(),
        )
        .build()
        .unwrap();
    let now = Timestamp::parse("2026-11-23T10:00:00Z").unwrap();
    let d = e
        .decide(
            &DecisionRequest::new("C1", "call_center", ctx)
                .explain(true)
                .at(now),
        )
        .unwrap();
    // RETAIN: 0.2 * 2.0 * 10 * 1 = 4.0; CARD_BASIC: 0.1 * 1 * 50 * 1.1 = 5.5
    assert_eq!(d.action_ids(), vec!["CARD_BASIC", "RETAIN"]);
    let top = d.actions().next().unwrap();
    assert!((top.priority() - 5.5).abs() < 1e-9);
    let f: Vec<_> = d.filtered().collect();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].action(), "CARD_GOLD");
    assert_eq!(f[0].stage(), Stage::Suitability);
    assert_eq!(f[0].condition(), Some("segment == \"gold\""));
    println!("{}", d.to_json());
}

#[test]
fn missing_attribute_fails_the_condition_and_is_named() {
    let e = engine();
    let ctx = Context::builder(&e.schema())
        .set("income", 50_000.0)
        .build()
        .unwrap();
    let d = e
        .decide(&DecisionRequest::new("C1", "call_center", ctx).explain(true))
        .unwrap();
    let f: Vec<_> = d
        .filtered()
        .map(|f| {
            (
                f.action().to_string(),
                f.missing_attribute().map(str::to_string),
            )
        })
        .collect();
    assert!(
        f.contains(&("CARD_GOLD".into(), Some("age".into()))),
        "{f:?}"
    );
}

#[test]
fn json_requests_bind_and_bad_types_are_reported() {
    let e = engine();
    let d = e
        .decide_json(r#"{"customer_id":"C1","channel":"call_center","context":{"age":42,"income":90000,"segment":"gold"}}"#)
        .unwrap();
    assert_eq!(d.action_ids(), vec!["CARD_BASIC", "CARD_GOLD"]);
    let err = e
        .decide_json(r#"{"customer_id":"C1","channel":"call_center","context":{"age":"old"}}"#)
        .unwrap_err();
    assert!(err.to_string().contains("age"), "{err}");
    let err = e
        .decide_json(r#"{"customer_id":"C1","channel":"fax","context":{}}"#)
        .unwrap_err();
    assert!(err.to_string().contains("unknown channel `fax`"), "{err}");
}

#[test]
fn validation_reports_every_error_with_its_location() {
    let bad_actions = r#"
[[actions]]
id = "A"
group = "cardz"
channels = ["call_center"]
value = 1.0
starting_propensity = 0.5
eligibility = "agee >= 18"
treatment = "x"
"#;
    let src = RuleSource::new()
        .file("ruleset.toml", RULESET)
        .file("actions/a.toml", bad_actions);
    let err = RuleSet::compile(&src).unwrap_err();
    let msg = err.to_string();
    println!("{msg}");
    assert!(
        msg.contains("actions/a.toml:4:9: unknown group `cardz` (did you mean `cards`?)"),
        "{msg}"
    );
    assert!(
        msg.contains("actions/a.toml:8:16: unknown attribute `agee` (did you mean `age`?)"),
        "{msg}"
    );
}

/// The built-in `channel` reads the request's channel: one group-level
/// policy can treat outbound channels differently from inbound ones, and
/// the memoised conjunct is per decision, so it never leaks across channels.
#[test]
fn conditions_read_the_request_channel() {
    let rules = RULESET.replace(
        "eligibility = \"age >= 18\"",
        "eligibility = [\"age >= 18\", 'channel != \"email\" || segment == \"gold\"']",
    );
    let src = RuleSource::new()
        .file("ruleset.toml", &rules)
        .file("actions/a.toml", ACTIONS);
    let e = Engine::new(RuleSet::compile(&src).unwrap());
    let decide = |channel: &str, segment: &str| {
        let ctx = Context::builder(&e.schema())
            .set("age", 40)
            .set("income", 50_000.0)
            .set("segment", segment)
            .set("call_reason", "billing")
            .set(
                "last_contact",
                Timestamp::parse("2026-11-20T00:00:00Z").unwrap(),
            )
            .build()
            .unwrap();
        let d = e
            .decide(&DecisionRequest::new("C1", channel, ctx).explain(true))
            .unwrap();
        let filtered: Vec<_> = d
            .filtered()
            .map(|f| (f.action().to_string(), f.condition().map(str::to_string)))
            .collect();
        let ids: Vec<String> = d.action_ids().into_iter().map(String::from).collect();
        (ids, filtered)
    };
    // Inbound: the channel conjunct holds for everyone.
    assert_eq!(decide("call_center", "mass").0, vec!["CARD_BASIC"]);
    // Outbound, not gold: the whole group is removed by that conjunct.
    let (ids, filtered) = decide("email", "mass");
    assert!(ids.is_empty(), "{ids:?}");
    assert_eq!(
        filtered,
        vec![(
            "CARD_GOLD".to_string(),
            Some("channel != \"email\" || segment == \"gold\"".to_string())
        )]
    );
    // Outbound, gold: allowed.
    assert_eq!(decide("email", "gold").0, vec!["CARD_GOLD"]);
}
