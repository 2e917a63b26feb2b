//! Bad requests and hostile input: always a clear error or a decision that
//! explains itself, never a panic.

use nextbest::{
    Context, Decision, DecisionRequest, Engine, Error, RuleSet, RuleSource, Stage, Timestamp, Value,
};

const RULESET: &str = r#"
name = "bad_input"
[schema]
age = "int"
income = "float"
vip = "bool"
name = "string"
segment = { type = "string", values = ["mass", "gold"] }
products = "string_set"
last_contact = "timestamp"
arrears_days = { type = "int", default = 0 }
[channels]
web = { direction = "inbound", limit = 2 }
email = { direction = "outbound" }
[issues.any]
[groups.g]
issue = "any"
"#;

const ACTIONS: &str = r#"
[[actions]]
id = "OK"
group = "g"
channels = ["web", "email"]
value = 1.0
starting_propensity = 0.5
treatment = "t"

[[actions]]
id = "DIV_INT"
group = "g"
channels = ["web"]
value = "100 / (age - age)"
starting_propensity = 0.9
treatment = "t"

[[actions]]
id = "DIV_FLOAT"
group = "g"
channels = ["web"]
value = "income / 0.0"
starting_propensity = 0.9
treatment = "t"

[[actions]]
id = "NAN"
group = "g"
channels = ["web"]
value = "0.0 / 0.0"
starting_propensity = 0.9
treatment = "t"

[[actions]]
id = "HUGE"
group = "g"
channels = ["web"]
value = "income * 1e308"
starting_propensity = 0.9
treatment = "t"

[[actions]]
id = "OVERFLOW"
group = "g"
channels = ["web"]
value = 100.0
starting_propensity = 0.9
eligibility = "age * 9223372036854775807 > 1"
treatment = "t"

[[actions]]
id = "NEEDS_INCOME"
group = "g"
channels = ["web"]
value = 100.0
starting_propensity = 0.9
suitability = "age >= 18 && income > 1000.0"
treatment = "t"

[[actions]]
id = "NO_ARREARS"
group = "g"
channels = ["web"]
value = 50.0
starting_propensity = 0.9
applicability = "arrears_days == 0"
treatment = "t"
"#;

fn engine() -> Engine {
    let src = RuleSource::new()
        .file("ruleset.toml", RULESET)
        .file("actions/a.toml", ACTIONS);
    Engine::new(RuleSet::compile(&src).unwrap())
}

fn request(context: &str) -> String {
    format!(
        r#"{{"customer_id":"C1","channel":"web","context":{context},"explain":true,"limit":10}}"#
    )
}

#[track_caller]
fn invalid_request(e: &Engine, json: &str) -> String {
    match e.decide_json(json) {
        Err(Error::InvalidRequest(m)) => m,
        other => panic!("expected an invalid request for {json}, got {other:?}"),
    }
}

#[track_caller]
fn invalid_context(e: &Engine, context: &str) -> (String, String) {
    match e.decide_json(&request(context)) {
        Err(Error::InvalidContext { attribute, message }) => (attribute, message),
        other => panic!("expected an invalid context for {context}, got {other:?}"),
    }
}

fn filtered(d: &Decision) -> Vec<(String, Stage, Option<String>, Option<String>)> {
    d.filtered()
        .map(|f| {
            (
                f.action().to_string(),
                f.stage(),
                f.reason(),
                f.missing_attribute().map(str::to_string),
            )
        })
        .collect()
}

fn find<'a>(
    f: &'a [(String, Stage, Option<String>, Option<String>)],
    id: &str,
) -> &'a (String, Stage, Option<String>, Option<String>) {
    f.iter()
        .find(|x| x.0 == id)
        .unwrap_or_else(|| panic!("{id} is not filtered: {f:?}"))
}

// ---------------------------------------------------------------------------
// Malformed requests
// ---------------------------------------------------------------------------

#[test]
fn malformed_request_json() {
    let e = engine();
    for json in [
        "",
        "{",
        r#"{"customer_id":"C1","channel":"web","#,
        "[]",
        "\"web\"",
        "null",
        r#"{"customer_id":"C1","channel":"web"} trailing"#,
        "\u{0}",
    ] {
        let m = invalid_request(&e, json);
        assert!(!m.is_empty(), "{json}");
    }
    let m = invalid_request(&e, "{");
    assert!(m.contains("EOF"), "{m}");
    // The error counts as a decision error.
    assert!(e.stats().decision_errors >= 8);
}

#[test]
fn missing_customer_id_or_channel() {
    let e = engine();
    let m = invalid_request(&e, r#"{"channel":"web","context":{}}"#);
    assert!(m.contains("missing field `customer_id`"), "{m}");
    let m = invalid_request(&e, r#"{"customer_id":"C1","context":{}}"#);
    assert!(m.contains("missing field `channel`"), "{m}");
    let m = invalid_request(&e, r#"{"customer_id":null,"channel":"web"}"#);
    assert!(m.contains("invalid type: null"), "{m}");
    let m = invalid_request(&e, r#"{"customer_id":42,"channel":"web"}"#);
    assert!(m.contains("invalid type: integer `42`"), "{m}");
    // A missing context is an empty one.
    let d = e
        .decide_json(r#"{"customer_id":"C1","channel":"email"}"#)
        .unwrap();
    assert_eq!(d.action_ids(), vec!["OK"]);
}

#[test]
fn unknown_request_field() {
    let e = engine();
    let m = invalid_request(&e, r#"{"customer_id":"C1","channel":"web","limt":2}"#);
    assert!(m.contains("unknown field `limt`"), "{m}");
    let m = invalid_request(&e, r#"{"customer_id":"C1","channel":"web","contxt":{}}"#);
    assert!(m.contains("unknown field `contxt`"), "{m}");
}

#[test]
fn context_must_be_an_object() {
    let e = engine();
    let m = invalid_request(&e, r#"{"customer_id":"C1","channel":"web","context":[1]}"#);
    assert!(m.contains("invalid type: sequence"), "{m}");
}

// ---------------------------------------------------------------------------
// Attribute types
// ---------------------------------------------------------------------------

#[test]
fn wrong_attribute_types() {
    let e = engine();
    let cases = [
        (r#"{"age":"42"}"#, "age", r#"expected an integer, got "42""#),
        (r#"{"age":1.5}"#, "age", "expected an integer, got 1.5"),
        (r#"{"age":true}"#, "age", "expected an integer, got true"),
        (r#"{"age":[1]}"#, "age", "expected an integer, got an array"),
        (
            r#"{"income":"1000"}"#,
            "income",
            r#"expected a number, got "1000""#,
        ),
        (r#"{"vip":1}"#, "vip", "expected true or false, got 1"),
        (
            r#"{"vip":"true"}"#,
            "vip",
            r#"expected true or false, got "true""#,
        ),
        (
            r#"{"name":["a"]}"#,
            "name",
            "expected a string, got an array",
        ),
        (
            r#"{"name":{"a":1}}"#,
            "name",
            "expected a string, got an object",
        ),
        (r#"{"name":7}"#, "name", "expected a string, got 7"),
        (
            r#"{"products":["a",1]}"#,
            "products",
            "expected an array of strings, found element 1",
        ),
        (
            r#"{"products":["a",null]}"#,
            "products",
            "expected an array of strings, found element null",
        ),
        (
            r#"{"products":"a"}"#,
            "products",
            r#"expected an array of strings, got "a""#,
        ),
        (
            r#"{"last_contact":1.5}"#,
            "last_contact",
            "expected epoch seconds, got 1.5",
        ),
        (
            r#"{"last_contact":true}"#,
            "last_contact",
            "expected an RFC 3339 timestamp string or epoch seconds, got true",
        ),
        (
            r#"{"segment":"platinum"}"#,
            "segment",
            "`platinum` is not one of the allowed values `mass`, `gold`",
        ),
        (
            r#"{"segment":"Gold"}"#,
            "segment",
            "`Gold` is not one of the allowed values `mass`, `gold`",
        ),
        (
            r#"{"arrears_days":-0.5}"#,
            "arrears_days",
            "expected an integer, got -0.5",
        ),
    ];
    for (ctx, attr, msg) in cases {
        let (a, m) = invalid_context(&e, ctx);
        assert_eq!((a.as_str(), m.as_str()), (attr, msg), "{ctx}");
    }
    // The error's Display names the attribute.
    let err = e.decide_json(&request(r#"{"age":1.5}"#)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "context attribute `age`: expected an integer, got 1.5"
    );
}

#[test]
fn bad_timestamps() {
    let e = engine();
    for ts in [
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-11-23",
        "2026-11-23 10:00:00",
        "",
    ] {
        let (a, m) = invalid_context(&e, &format!(r#"{{"last_contact":"{ts}"}}"#));
        assert_eq!(a, "last_contact");
        assert!(m.contains("is not an RFC 3339 timestamp"), "{ts}: {m}");
    }
    // Epoch seconds and RFC 3339 with an offset are fine.
    e.decide_json(&request(r#"{"last_contact":1700000000}"#))
        .unwrap();
    e.decide_json(&request(r#"{"last_contact":-1}"#)).unwrap();
    e.decide_json(&request(r#"{"last_contact":"2026-11-23T10:00:00+02:00"}"#))
        .unwrap();
}

#[test]
fn integers_are_accepted_for_floats_and_null_means_missing() {
    let e = engine();
    let d = e
        .decide_json(&request(
            r#"{"age":40,"income":5000,"vip":null,"not_in_schema":{"x":[1,2]}}"#,
        ))
        .unwrap();
    assert!(
        d.action_ids().contains(&"NEEDS_INCOME"),
        "{:?}",
        d.action_ids()
    );
}

// ---------------------------------------------------------------------------
// Channel, limit, now
// ---------------------------------------------------------------------------

#[test]
fn unknown_channel() {
    let e = engine();
    let err = e
        .decide_json(r#"{"customer_id":"C1","channel":"fax"}"#)
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownChannel { channel, .. } if channel == "fax"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "unknown channel `fax`; this rule set has `web`, `email`"
    );
    let ctx = Context::builder(&e.schema()).build().unwrap();
    let err = e
        .decide(&DecisionRequest::new("C1", "Web", ctx))
        .unwrap_err();
    assert!(matches!(err, Error::UnknownChannel { .. }), "{err:?}");
}

#[test]
fn limits_out_of_range() {
    let e = engine();
    for (limit, shown) in [("0", "0"), ("100000", "100000"), ("1001", "1001")] {
        let m = invalid_request(
            &e,
            &format!(r#"{{"customer_id":"C1","channel":"web","limit":{limit}}}"#),
        );
        assert_eq!(m, format!("limit must be between 1 and 1000, got {shown}"));
    }
    for bad in ["-1", "1.5", "\"3\"", "18446744073709551616"] {
        let m = invalid_request(
            &e,
            &format!(r#"{{"customer_id":"C1","channel":"web","limit":{bad}}}"#),
        );
        assert!(m.contains("limit") || m.contains("invalid"), "{bad}: {m}");
    }
    let ctx = || Context::builder(&e.schema()).build().unwrap();
    for limit in [0, 100_000, usize::MAX] {
        let err = e
            .decide(&DecisionRequest::new("C1", "web", ctx()).limit(limit))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid request: limit must be between 1 and 1000, got {limit}")
        );
    }
    // 1000 is allowed.
    e.decide(&DecisionRequest::new("C1", "web", ctx()).limit(1000))
        .unwrap();
}

#[test]
fn malformed_now() {
    let e = engine();
    let now = |v: &str| format!(r#"{{"customer_id":"C1","channel":"web","now":{v}}}"#);
    let m = invalid_request(&e, &now("\"tomorrow\""));
    assert!(
        m.starts_with("now: `tomorrow` is not an RFC 3339 timestamp"),
        "{m}"
    );
    let m = invalid_request(&e, &now("1.5"));
    assert_eq!(m, "now: 1.5 is not whole epoch seconds");
    let m = invalid_request(&e, &now("true"));
    assert_eq!(
        m,
        "now must be an RFC 3339 string or epoch seconds, got true"
    );
    let m = invalid_request(&e, &now("[1]"));
    assert_eq!(
        m,
        "now must be an RFC 3339 string or epoch seconds, got [1]"
    );
    let m = invalid_request(&e, &now("99999999999999999999"));
    assert!(m.contains("is not whole epoch seconds"), "{m}");
    // Valid forms.
    e.decide_json(&now("\"2026-11-23T10:00:00Z\"")).unwrap();
    e.decide_json(&now("1795000000")).unwrap();
    e.decide_json(&now("null")).unwrap();
}

#[test]
fn extreme_now_and_timestamps_do_not_panic() {
    let e = engine();
    for (now, ts) in [
        (i64::MAX, i64::MIN),
        (i64::MIN, i64::MAX),
        (0, 0),
        (i64::MAX, i64::MAX),
    ] {
        let d = e
            .decide_json(&format!(
                r#"{{"customer_id":"C1","channel":"web","now":{now},"context":{{"last_contact":{ts}}},"explain":true}}"#
            ))
            .unwrap();
        // The timestamp of a decision at an instant `time` cannot format
        // still serialises.
        let _ = d.to_json();
        let _ = d.timestamp().to_string();
    }
}

// ---------------------------------------------------------------------------
// Huge and deep input
// ---------------------------------------------------------------------------

#[test]
fn huge_numbers() {
    let e = engine();
    // 1e400 is not a JSON number serde_json can hold: a request error.
    let m = invalid_request(&e, &request(r#"{"income":1e400}"#));
    assert!(m.contains("number out of range"), "{m}");
    let m = invalid_request(&e, &request(r#"{"income":-1e400}"#));
    assert!(m.contains("number out of range"), "{m}");
    // Ints beyond i64.
    let (a, m) = invalid_context(&e, r#"{"age":9223372036854775808}"#);
    assert_eq!(
        (a.as_str(), m.as_str()),
        ("age", "expected an integer, got 9223372036854775808")
    );
    let (a, m) = invalid_context(&e, r#"{"age":-9223372036854775809}"#);
    assert_eq!(a, "age");
    assert!(m.starts_with("expected an integer, got"), "{m}");
    let (_, m) = invalid_context(&e, r#"{"age":123456789012345678901234567890}"#);
    assert!(m.starts_with("expected an integer, got"), "{m}");
    // The extremes of i64 and f64 are fine.
    e.decide_json(&request(
        r#"{"age":9223372036854775807,"income":1.7976931348623157e308}"#,
    ))
    .unwrap();
    e.decide_json(&request(
        r#"{"age":-9223372036854775808,"income":-1.7976931348623157e308}"#,
    ))
    .unwrap();
    e.decide_json(&request(r#"{"income":5e-324}"#)).unwrap();
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let e = engine();
    for depth in [200, 10_000, 100_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        // As a schema attribute's value, as an unknown attribute's, and as
        // the request itself.
        for json in [
            request(&format!(r#"{{"products":{nested}}}"#)),
            request(&format!(r#"{{"whatever":{nested}}}"#)),
        ] {
            let m = invalid_request(&e, &json);
            assert!(m.contains("recursion limit exceeded"), "{depth}: {m}");
        }
        // A request that is itself a deep array is rejected at its first `[`.
        invalid_request(&e, &nested);
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let m = invalid_request(&e, &request(&format!(r#"{{"name":{objects}}}"#)));
        assert!(m.contains("recursion limit exceeded"), "{depth}: {m}");
    }
    // Shallow nesting of the wrong type is a type error.
    let (a, m) = invalid_context(&e, r#"{"products":[["a"]]}"#);
    assert_eq!(
        (a.as_str(), m.as_str()),
        (
            "products",
            r#"expected an array of strings, found element ["a"]"#
        )
    );
}

#[test]
fn long_strings_and_big_sets_are_fine() {
    let e = engine();
    let long = "x".repeat(1 << 20);
    let set: Vec<String> = (0..10_000).map(|i| format!("\"p{i}\"")).collect();
    let d = e
        .decide_json(&request(&format!(
            r#"{{"name":"{long}","products":[{}]}}"#,
            set.join(",")
        )))
        .unwrap();
    assert!(!d.action_ids().is_empty());
}

// ---------------------------------------------------------------------------
// Value expressions and conditions that fail at decision time
// ---------------------------------------------------------------------------

#[test]
fn value_expressions_that_fail_remove_the_action_at_stage_value() {
    let e = engine();
    let d = e
        .decide_json(&request(r#"{"age":40,"income":5000.0}"#))
        .unwrap();
    let f = filtered(&d);
    let chosen = d.action_ids();
    for id in ["DIV_INT", "DIV_FLOAT", "NAN", "HUGE"] {
        let (_, stage, ..) = find(&f, id);
        assert_eq!(*stage, Stage::Value, "{id}");
        assert!(!chosen.contains(&id), "{id} chosen: {chosen:?}");
        assert!(d.ranked().all(|r| r.action() != id), "{id} ranked");
    }
    // Integer division by zero is explained; inf and NaN are just not finite.
    assert_eq!(find(&f, "DIV_INT").2.as_deref(), Some("division by zero"));
    assert_eq!(find(&f, "DIV_FLOAT").2, None);
    assert_eq!(find(&f, "NAN").2, None);
    let div = d.filtered().find(|x| x.action() == "DIV_INT").unwrap();
    assert_eq!(div.condition(), Some("100 / (age - age)"));
    assert!(div.condition_location().is_none());
    // The ranking is still made of finite priorities.
    for r in d.ranked() {
        assert!(r.priority().is_finite(), "{}: {}", r.action(), r.priority());
    }
    // And the JSON renders.
    let json = d.to_json();
    assert!(
        json.contains(r#""action":"DIV_INT","stage":"value""#),
        "{json}"
    );
    assert!(json.contains(r#""reason":"division by zero""#), "{json}");
}

#[test]
fn value_expression_missing_attribute_is_removed_at_stage_value() {
    let e = engine();
    let d = e.decide_json(&request(r#"{"income":5000.0}"#)).unwrap();
    let f = filtered(&d);
    let (_, stage, reason, missing) = find(&f, "DIV_INT");
    assert_eq!(*stage, Stage::Value);
    assert_eq!(reason.as_deref(), Some("missing attribute `age`"));
    assert_eq!(missing.as_deref(), Some("age"));
}

#[test]
fn a_condition_that_overflows_filters_the_action() {
    let e = engine();
    let d = e
        .decide_json(&request(r#"{"age":40,"income":5000.0}"#))
        .unwrap();
    let f = filtered(&d);
    let (_, stage, reason, missing) = find(&f, "OVERFLOW");
    assert_eq!(*stage, Stage::Eligibility);
    assert_eq!(reason.as_deref(), Some("integer overflow"));
    assert_eq!(*missing, None);
    let o = d.filtered().find(|x| x.action() == "OVERFLOW").unwrap();
    assert_eq!(o.condition(), Some("age * 9223372036854775807 > 1"));
    assert_eq!(
        o.condition_location().unwrap().to_string(),
        "actions/a.toml:48:16"
    );
    // With age 1 it does not overflow, and the action survives.
    let d = e
        .decide_json(&request(r#"{"age":1,"income":5000.0}"#))
        .unwrap();
    assert!(d.ranked().any(|r| r.action() == "OVERFLOW"));
    // With age 0 it is false, not an error.
    let d = e
        .decide_json(&request(r#"{"age":0,"income":5000.0}"#))
        .unwrap();
    let f = filtered(&d);
    assert_eq!(find(&f, "OVERFLOW").2, None);
}

#[test]
fn missing_attributes_filter_and_are_named() {
    let e = engine();
    let d = e.decide_json(&request(r#"{"age":40}"#)).unwrap();
    let f = filtered(&d);
    let (_, stage, reason, missing) = find(&f, "NEEDS_INCOME");
    assert_eq!(*stage, Stage::Suitability);
    assert_eq!(missing.as_deref(), Some("income"));
    assert_eq!(reason.as_deref(), Some("missing attribute `income`"));
    let n = d.filtered().find(|x| x.action() == "NEEDS_INCOME").unwrap();
    assert_eq!(n.condition(), Some("income > 1000.0"));
    // Nothing at all: the first conjunct's attribute is the one named.
    let d = e.decide_json(&request("{}")).unwrap();
    let f = filtered(&d);
    assert_eq!(find(&f, "NEEDS_INCOME").3.as_deref(), Some("age"));
    assert_eq!(find(&f, "OVERFLOW").3.as_deref(), Some("age"));
    // And explained decisions through `decide` agree with `decide_json`.
    let ctx = Context::builder(&e.schema())
        .set("age", 40)
        .build()
        .unwrap();
    let d2 = e
        .decide(
            &DecisionRequest::new("C1", "web", ctx)
                .explain(true)
                .limit(10),
        )
        .unwrap();
    assert_eq!(
        d2.action_ids(),
        e.decide_json(&request(r#"{"age":40}"#))
            .unwrap()
            .action_ids()
    );
    let f2 = filtered(&d2);
    assert_eq!(find(&f2, "NEEDS_INCOME").3.as_deref(), Some("income"));
}

#[test]
fn schema_default_fills_a_missing_attribute() {
    let e = engine();
    let d = e.decide_json(&request(r#"{"age":40}"#)).unwrap();
    assert!(
        d.ranked().any(|r| r.action() == "NO_ARREARS"),
        "{:?}",
        filtered(&d)
    );
    let d = e
        .decide_json(&request(r#"{"age":40,"arrears_days":3}"#))
        .unwrap();
    let f = filtered(&d);
    let (_, stage, reason, _) = find(&f, "NO_ARREARS");
    assert_eq!((*stage, reason.clone()), (Stage::Applicability, None));
    // `null` is missing, so the default applies again.
    let d = e
        .decide_json(&request(r#"{"age":40,"arrears_days":null}"#))
        .unwrap();
    assert!(d.ranked().any(|r| r.action() == "NO_ARREARS"));
    // The same through the builder.
    let ctx = Context::builder(&e.schema()).build().unwrap();
    assert_eq!(ctx.get("arrears_days"), Some(Value::Int(0)));
    let d = e
        .decide(
            &DecisionRequest::new("C1", "web", ctx)
                .explain(true)
                .limit(10),
        )
        .unwrap();
    assert!(d.ranked().any(|r| r.action() == "NO_ARREARS"));
}

// ---------------------------------------------------------------------------
// The Rust API
// ---------------------------------------------------------------------------

#[test]
fn builder_rejects_wrong_types_and_unknown_attributes() {
    let e = engine();
    let s = e.schema();
    let err = Context::builder(&s).set("age", "x").build().unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"context attribute `age`: expected int, got string "x""#
    );
    let err = Context::builder(&s).set("age", 1.5).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "context attribute `age`: expected int, got float 1.5"
    );
    let err = Context::builder(&s).set("agee", 1).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "context attribute `agee`: the schema has no attribute `agee` (did you mean `age`?)"
    );
    let err = Context::builder(&s)
        .set("segment", "platinum")
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "context attribute `segment`: `platinum` is not one of the allowed values `mass`, `gold`"
    );
    let err = Context::builder(&s)
        .set("products", "a")
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"context attribute `products`: expected string_set, got string "a""#
    );
    // The first error wins.
    let err = Context::builder(&s)
        .set("age", "x")
        .set("vip", 3)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`age`"), "{err}");
}

#[test]
fn non_finite_floats_from_rust_do_not_panic() {
    let e = engine();
    for income in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
        let ctx = Context::builder(&e.schema())
            .set("age", 40)
            .set("income", income)
            .build()
            .unwrap();
        let d = e
            .decide(
                &DecisionRequest::new("C1", "web", ctx)
                    .explain(true)
                    .limit(10),
            )
            .unwrap();
        for r in d.actions() {
            assert!(
                r.priority().is_finite(),
                "{income}: {} {}",
                r.action(),
                r.priority()
            );
        }
        let _ = d.to_json();
    }
}

#[test]
fn decide_at_a_fixed_time_with_timestamps_far_away() {
    let e = engine();
    let ctx = Context::builder(&e.schema())
        .set("last_contact", Timestamp(i64::MIN))
        .set("age", 40)
        .build()
        .unwrap();
    let d = e
        .decide(
            &DecisionRequest::new("C1", "web", ctx)
                .explain(true)
                .at(Timestamp(i64::MAX)),
        )
        .unwrap();
    let _ = d.to_json();
}

/// Binding a string_set removes duplicates (`Context::put`). It used to scan
/// the items seen so far, which is quadratic: a 40,000-item set took ~1.8 s
/// of CPU in a release build, so a few MB of hostile JSON pinned a core for
/// minutes. A guard against that regression, not a speed target: 200,000
/// items must bind in well under 5 s even in a debug build (linear: ~0.1 s).
#[test]
fn big_string_sets_bind_in_linear_time() {
    let e = engine();
    let set: Vec<String> = (0..200_000).map(|i| format!("\"p{i}\"")).collect();
    let json = request(&format!(r#"{{"products":[{}]}}"#, set.join(",")));
    let t = std::time::Instant::now();
    e.decide_json(&json).unwrap();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_misspelt_context_attribute_is_reported_in_the_decision_never_passed_over_silently() {
    use nextbest::RequestWarning;
    let e = engine();
    // Decided without it (the eligibility that needs `age` cannot hold),
    // and named in the decision with the closest declared attribute.
    let d = e
        .decide_json(&request(
            r#"{"agee": 40, "income": 1.0, "zzz_unrelated": 1}"#,
        ))
        .unwrap();
    assert_eq!(
        d.warnings(),
        &[
            RequestWarning::UnknownAttribute {
                attribute: "agee".into(),
                suggestion: Some("age".into()),
            },
            RequestWarning::UnknownAttribute {
                attribute: "zzz_unrelated".into(),
                suggestion: None,
            },
        ]
    );
    let json: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
    assert_eq!(
        json["warnings"],
        serde_json::json!([
            "context attribute `agee` is not in the schema and was ignored (did you mean `age`?)",
            "context attribute `zzz_unrelated` is not in the schema and was ignored",
        ])
    );
    // The parsed request carries them too, through both JSON paths.
    let parsed = DecisionRequest::from_json(&e.schema(), &request(r#"{"agee": 40}"#)).unwrap();
    assert_eq!(parsed.warnings().len(), 1);
    // A clean request has none, and no "warnings" key.
    let clean = e.decide_json(&request(r#"{"age": 40}"#)).unwrap();
    assert!(clean.warnings().is_empty());
    assert!(!clean.to_json().contains("warnings"));
}

#[test]
fn a_strict_engine_refuses_a_request_with_an_undeclared_attribute() {
    let src = RuleSource::new()
        .file("ruleset.toml", RULESET)
        .file("actions/a.toml", ACTIONS);
    let mut config = nextbest::EngineConfig::default();
    config.strict_requests = true;
    let e = Engine::try_with_config(RuleSet::compile(&src).unwrap(), config).unwrap();
    let (attribute, message) = invalid_context(&e, r#"{"agee": 40}"#);
    assert_eq!(attribute, "agee");
    assert_eq!(message, "not in the schema (did you mean `age`?)");
    assert_eq!(e.stats().decision_errors, 1);
    // The same through the engine configuration the C ABI passes.
    let e = Engine::from_config_json(
        r#"{"rules_dir": "tests/fixtures/mini", "strict_requests": true}"#,
    )
    .unwrap();
    let r =
        e.decide_json(r#"{"customer_id": "C1", "channel": "call_center", "context": {"agee": 1}}"#);
    assert!(matches!(r, Err(Error::InvalidContext { .. })), "{r:?}");
    // Clean requests are served as before.
    e.decide_json(r#"{"customer_id": "C1", "channel": "call_center", "context": {}}"#)
        .unwrap();
}
