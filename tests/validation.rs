//! One test per kind of rule-set validation error: each asserts the exact
//! `file:line:col: message`, and that nothing else is reported.

use nextbest::{Error, RuleSet, RuleSource};

const RULESET: &str = r#"name = "t"
[schema]
age = "int"
income = "float"
segment = { type = "string", values = ["mass", "gold"] }
products = "string_set"
[channels]
web = { direction = "inbound", limit = 2 }
email = { direction = "outbound" }
[issues.growth]
[groups.cards]
issue = "growth"
"#;

const ACTION: &str = r#"[[actions]]
id = "A"
group = "cards"
channels = ["web"]
value = 1.0
starting_propensity = 0.5
treatment = "t"
"#;

fn source(ruleset: &str, action: &str) -> RuleSource {
    RuleSource::new()
        .file("ruleset.toml", ruleset)
        .file("actions/x.toml", action)
}

const OTHER: &str = r#"[[actions]]
id = "B"
group = "cards"
channels = ["web"]
value = 2.0
starting_propensity = 0.5
treatment = "t"
"#;

/// `source`, plus a second, valid action file: a rule set that has actions
/// even when `actions/x.toml` does not parse.
fn source2(ruleset: &str, action: &str) -> RuleSource {
    source(ruleset, action).file("actions/y.toml", OTHER)
}

/// Every error, as `file:line:col: message`.
#[track_caller]
fn errors(src: &RuleSource) -> Vec<String> {
    match RuleSet::compile(src) {
        Ok(_) => panic!("the rule set compiled"),
        Err(e) => {
            let list: Vec<String> = e
                .rule_errors()
                .unwrap_or_else(|| panic!("not a rule error: {e}"))
                .iter()
                .map(ToString::to_string)
                .collect();
            // Display lists the same errors.
            let shown = e.to_string();
            for l in &list {
                assert!(shown.contains(l.as_str()), "{shown}");
            }
            list
        }
    }
}

/// `file:line:col` of the `nth` (0-based) occurrence of `needle` in `text`.
#[track_caller]
fn at_nth(file: &str, text: &str, needle: &str, nth: usize) -> String {
    let off = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("`{needle}` not in the text"))
        .0;
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    format!("{file}:{line}:{col}")
}

#[track_caller]
fn at(file: &str, text: &str, needle: &str) -> String {
    at_nth(file, text, needle, 0)
}

#[track_caller]
fn one_error(src: &RuleSource, want: String) {
    assert_eq!(errors(src), vec![want]);
}

#[test]
fn the_baseline_compiles() {
    let rs = RuleSet::compile(&source(RULESET, ACTION)).unwrap();
    assert_eq!(rs.action_ids().collect::<Vec<_>>(), vec!["A"]);
}

#[test]
fn malformed_toml_in_ruleset() {
    let text = RULESET.replace("[groups.cards]", "[groups.cards");
    let errs = errors(&source(&text, ACTION));
    assert_eq!(errs.len(), 1, "{errs:?}");
    // Line 11 is the broken header.
    assert!(errs[0].starts_with("ruleset.toml:11:"), "{errs:?}");
    assert!(
        errs[0].contains("invalid table header") || errs[0].contains("expected"),
        "{errs:?}"
    );
}

#[test]
fn malformed_toml_in_an_action_file() {
    let text = ACTION.replace("value = 1.0", "value = 1.0.0");
    let errs = errors(&source2(RULESET, &text));
    assert_eq!(
        errs,
        vec!["actions/x.toml:5:12: invalid float, expected nothing".to_string()]
    );
}

/// When the only action file does not parse, the one real error should be
/// reported alone; a second error claims the rule set has no actions and
/// tells the author to add `[[actions]]`, which they have.
#[test]
fn a_broken_action_file_is_not_also_reported_as_no_actions() {
    let text = ACTION.replace("value = 1.0", "value = 1.0.0");
    let errs = errors(&source(RULESET, &text));
    assert_eq!(
        errs,
        vec!["actions/x.toml:5:12: invalid float, expected nothing".to_string()]
    );
}

#[test]
fn unknown_key_in_ruleset() {
    let text = RULESET.replace("name = \"t\"", "name = \"t\"\ndefualt_limit = 3");
    let errs = errors(&source(&text, ACTION));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "ruleset.toml:2:1: unknown field `defualt_limit` (did you mean `default_limit`?), expected one of"
        ),
        "{errs:?}"
    );
}

/// An unknown key used to stop the file's deserialization, so it was the
/// only error reported however many others the rule set had.
#[test]
fn an_unknown_key_does_not_hide_the_other_errors() {
    let ruleset = RULESET
        .replace("name = \"t\"", "name = \"t\"\ndefualt_limit = 3")
        .replace("limit = 2 }", "limt = 2 }")
        .replace("issue = \"growth\"", "issue = \"grwth\"");
    let action = ACTION
        .replace("group = \"cards\"", "group = \"cardz\"")
        .replace(
            "treatment = \"t\"",
            "treatment = \"t\"\neligibilty = \"age > 1\"",
        )
        .replace("value = 1.0", "value = 1.0\nsuitability = \"agee > 1\"");
    let errs = errors(&source2(&ruleset, &action));
    let f = |file: &str, text: &str, needle: &str, rest: &str| {
        format!("{}: {rest}", at(file, text, needle))
    };
    let want = [
        f("actions/x.toml", &action, "\"cardz\"", "unknown group `cardz` (did you mean `cards`?); declare it under [groups] in ruleset.toml"),
        f("actions/x.toml", &action, "agee", "unknown attribute `agee` (did you mean `age`?); declare it under [schema]"),
        f("actions/x.toml", &action, "eligibilty", "unknown field `eligibilty` (did you mean `eligibility`?), expected one of"),
        f("ruleset.toml", &ruleset, "defualt_limit", "unknown field `defualt_limit` (did you mean `default_limit`?), expected one of"),
        f("ruleset.toml", &ruleset, "limt", "unknown field `limt` (did you mean `limit`?), expected one of"),
        f("ruleset.toml", &ruleset, "\"grwth\"", "unknown issue `grwth` (did you mean `growth`?); declare it under [issues]"),
    ];
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    for (got, want) in errs.iter().zip(&want) {
        assert!(got.starts_with(want.as_str()), "{got}\nwanted {want}");
    }
}

/// `segment == "privat"` on an attribute whose values are declared could
/// never hold, and used to load without a word.
#[test]
fn a_comparison_with_a_value_outside_the_declared_values_is_an_error() {
    for cond in [
        "segment == \"privat\"",
        "\"privat\" != segment",
        "segment in [\"mass\", \"privat\"]",
    ] {
        let text = ACTION.replace("treatment", &format!("eligibility = '{cond}'\ntreatment"));
        let ruleset = RULESET.replace("[\"mass\", \"gold\"]", "[\"mass\", \"gold\", \"private\"]");
        one_error(
            &source(&ruleset, &text),
            format!(
                "{}: `privat` is not one of the values of `segment` (`mass`, `gold`, `private`) (did you mean `private`?); fix the value or add it to the attribute's `values`",
                at("actions/x.toml", &text, "\"privat\"")
            ),
        );
    }
    // A string_set with declared values, and a value that is declared.
    let ruleset = RULESET.replace(
        "products = \"string_set\"",
        "products = { type = \"string_set\", values = [\"ISA\", \"CARD\"] }",
    );
    let text = ACTION.replace(
        "treatment",
        "eligibility = '\"ISAA\" in products'\ntreatment",
    );
    one_error(
        &source(&ruleset, &text),
        format!(
            "{}: `ISAA` is not one of the values of `products` (`ISA`, `CARD`) (did you mean `ISA`?); fix the value or add it to the attribute's `values`",
            at("actions/x.toml", &text, "\"ISAA\"")
        ),
    );
    let text = ACTION.replace(
        "treatment",
        "eligibility = ['segment != \"gold\"', '\"ISA\" in products']\ntreatment",
    );
    assert!(RuleSet::compile(&source(&ruleset, &text)).is_ok());
}

#[test]
fn unknown_key_in_an_action() {
    let text = ACTION.replace(
        "treatment = \"t\"",
        "treatment = \"t\"\neligibilty = \"age > 1\"",
    );
    let errs = errors(&source2(RULESET, &text));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(
            "actions/x.toml:8:1: unknown field `eligibilty` (did you mean `eligibility`?), expected one of"
        ),
        "{errs:?}"
    );
    assert!(errs[0].contains("`eligibility`"), "{errs:?}");
}

#[test]
fn unknown_key_in_a_channel_and_a_group() {
    let text = RULESET.replace("limit = 2 }", "limt = 2 }");
    let errs = errors(&source(&text, ACTION));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("ruleset.toml:8:32: unknown field `limt`"),
        "{errs:?}"
    );
    let text = RULESET.replace("issue = \"growth\"", "issue = \"growth\"\nlevr = 3");
    let errs = errors(&source(&text, ACTION));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("ruleset.toml:13:1: unknown field `levr`"),
        "{errs:?}"
    );
}

#[test]
fn unknown_attribute_in_a_condition() {
    let text = ACTION.replace("treatment", "eligibility = \"agee >= 18\"\ntreatment");
    one_error(
        &source(RULESET, &text),
        format!(
            "{}: unknown attribute `agee` (did you mean `age`?); declare it under [schema]",
            at("actions/x.toml", &text, "agee")
        ),
    );
    // Hand-checked: line 7, `eligibility = "` is 15 characters.
    assert_eq!(at("actions/x.toml", &text, "agee"), "actions/x.toml:7:16");
}

#[test]
fn type_mismatch_in_a_condition() {
    let text = ACTION.replace(
        "treatment",
        "suitability = 'age >= 18 && age == \"x\"'\ntreatment",
    );
    one_error(
        &source(RULESET, &text),
        format!(
            "{}: `==` cannot compare an int with a string",
            at_nth("actions/x.toml", &text, "age", 1)
        ),
    );
}

#[test]
fn condition_errors_in_groups_and_arrays_of_conditions() {
    let rs = RULESET.replace(
        "issue = \"growth\"",
        "issue = \"growth\"\napplicability = [\"age > 1\", \"incme > 2.0\"]",
    );
    one_error(
        &source(&rs, ACTION),
        format!(
            "{}: unknown attribute `incme` (did you mean `income`?); declare it under [schema]",
            at("ruleset.toml", &rs, "incme")
        ),
    );
}

#[test]
fn unknown_group() {
    let text = ACTION.replace("group = \"cards\"", "group = \"cardz\"");
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:3:9: unknown group `cardz` (did you mean `cards`?); declare it under [groups] in ruleset.toml"
            .into(),
    );
}

#[test]
fn unknown_issue() {
    let text = RULESET.replace("issue = \"growth\"", "issue = \"growht\"");
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:12:9: unknown issue `growht` (did you mean `growth`?); declare it under [issues]".into(),
    );
}

#[test]
fn unknown_channel_in_an_action() {
    let text = ACTION.replace("[\"web\"]", "[\"web\", \"webb\"]");
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:4:20: unknown channel `webb` (did you mean `web`?); declare it under [channels]".into(),
    );
    // A transposition is two edits: too far for a suggestion on a short name.
    let text = ACTION.replace("[\"web\"]", "[\"wbe\"]");
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:4:13: unknown channel `wbe` (did you mean `web`?); declare it under [channels]".into(),
    );
}

#[test]
fn missing_treatment_for_a_channel() {
    let text = ACTION
        .replace("[\"web\"]", "[\"web\", \"email\"]")
        .replace("treatment = \"t\"", "treatments = { web = \"w\" }");
    one_error(
        &source(RULESET, &text),
        format!(
            "{}: no treatment for channel `email`: add it to `treatments` or set a default `treatment`",
            at("actions/x.toml", &text, "\"email\"")
        ),
    );
}

#[test]
fn treatment_for_an_unlisted_channel() {
    let text = ACTION.replace(
        "treatment = \"t\"",
        "treatments = { web = \"w\", email = \"e\" }",
    );
    one_error(
        &source(RULESET, &text),
        format!(
            "{}: treatment for channel `email`, which is not in this action's `channels`",
            at("actions/x.toml", &text, "email")
        ),
    );
}

#[test]
fn an_action_without_channels() {
    let text = ACTION.replace("[\"web\"]", "[]");
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:4:12: an action needs at least one channel".into(),
    );
}

#[test]
fn duplicate_action_id_across_two_files_names_the_first_definition() {
    let src = RuleSource::new()
        .file("ruleset.toml", RULESET)
        .file("actions/a.toml", ACTION)
        .file("actions/b.toml", format!("\n\n{ACTION}"));
    one_error(
        &src,
        "actions/b.toml:4:6: duplicate action id `A` (first defined at actions/a.toml:2:6)".into(),
    );
}

#[test]
fn duplicate_action_id_in_one_file() {
    let text = format!("{ACTION}\n{ACTION}");
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:10:6: duplicate action id `A` (first defined at actions/x.toml:2:6)".into(),
    );
}

#[test]
fn starting_propensity_out_of_range() {
    for (v, shown) in [
        ("0.0", "0"),
        ("1.5", "1.5"),
        ("-0.1", "-0.1"),
        ("nan", "NaN"),
    ] {
        let text = ACTION.replace(
            "starting_propensity = 0.5",
            &format!("starting_propensity = {v}"),
        );
        one_error(
            &source(RULESET, &text),
            format!("actions/x.toml:6:23: starting_propensity must be in (0, 1], got {shown}"),
        );
    }
    // 1 is allowed.
    let text = ACTION.replace("starting_propensity = 0.5", "starting_propensity = 1.0");
    RuleSet::compile(&source(RULESET, &text)).unwrap();
}

#[test]
fn non_finite_and_invalid_values() {
    for (v, shown) in [("inf", "inf"), ("-inf", "-inf"), ("nan", "NaN")] {
        let text = ACTION.replace("value = 1.0", &format!("value = {v}"));
        one_error(
            &source(RULESET, &text),
            format!("actions/x.toml:5:9: value must be a finite number, got {shown}"),
        );
    }
    let text = ACTION.replace("value = 1.0", "value = true");
    let errs = errors(&source2(RULESET, &text));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("actions/x.toml:5:9: invalid type: boolean `true`, expected a number or a value expression string"),
        "{errs:?}"
    );
}

#[test]
fn bad_value_expression() {
    let text = ACTION.replace("value = 1.0", "value = \"income * 0.01 + segment\"");
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:5:10: in value expression: `+` needs numbers on both sides, but has a float and a string".into(),
    );
    let text = ACTION.replace("value = 1.0", "value = \"age > 1\"");
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:5:10: in value expression: a value expression must be a number, but this is a bool".into(),
    );
    let text = ACTION.replace("value = 1.0", "value = \"1 + incme\"");
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:5:14: in value expression: unknown attribute `incme` (did you mean `income`?); declare it under [schema]"
            .into(),
    );
}

#[test]
fn bad_schema_type_name() {
    let text = RULESET.replace("age = \"int\"", "age = \"integer\"");
    // `age` is then not declared, so conditions using it would fail too;
    // the baseline action uses none.
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:3:7: unknown type `integer`; use int, float, bool, string, string_set or timestamp".into(),
    );
    let text = RULESET.replace("age = \"int\"", "age = 3");
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:3:7: an attribute is a type name (\"int\") or a table with `type = \"...\"`"
            .into(),
    );
}

#[test]
fn unknown_key_in_a_schema_attribute() {
    let text = RULESET.replace("age = \"int\"", "age = { type = \"int\", defualt = 0 }");
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:3:7: unknown key `defualt` in attribute `age`; expected type, values, sensitive, default, derived, model or description"
            .into(),
    );
}

#[test]
fn closed_string_default_not_in_values() {
    let text = RULESET.replace(
        "values = [\"mass\", \"gold\"] }",
        "values = [\"mass\", \"gold\"], default = \"platinum\" }",
    );
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:5:11: default is not one of the allowed values".into(),
    );
}

#[test]
fn default_of_the_wrong_type() {
    let text = RULESET.replace("age = \"int\"", "age = { type = \"int\", default = \"x\" }");
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:3:7: bad default: expected an integer, got \"x\"".into(),
    );
}

#[test]
fn bad_direction() {
    let text = RULESET.replace("direction = \"inbound\"", "direction = \"in\"");
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:8:21: direction `in` is neither `inbound` nor `outbound`".into(),
    );
}

#[test]
fn limits_out_of_range() {
    let text = RULESET.replace("limit = 2", "limit = 0");
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:8:40: channel limit must be between 1 and 1000".into(),
    );
    let text = RULESET.replace("limit = 2", "limit = 1001");
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:8:40: channel limit must be between 1 and 1000".into(),
    );
    let text = RULESET.replace("name = \"t\"", "name = \"t\"\ndefault_limit = 0");
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:2:17: default_limit must be between 1 and 1000".into(),
    );
}

#[test]
fn empty_rule_set_has_no_actions() {
    let src = RuleSource::new().file("ruleset.toml", RULESET);
    one_error(
        &src,
        "ruleset.toml:1:1: the rule set has no actions: add [[actions]] to actions/*.toml".into(),
    );
    // An actions file with no [[actions]] is the same.
    let src = source(RULESET, "# nothing yet\n");
    one_error(
        &src,
        "ruleset.toml:1:1: the rule set has no actions: add [[actions]] to actions/*.toml".into(),
    );
}

#[test]
fn no_ruleset_toml() {
    let src = RuleSource::new().file("actions/x.toml", ACTION);
    one_error(
        &src,
        "ruleset.toml:1:1: the rule directory has no ruleset.toml".into(),
    );
}

#[test]
fn no_channels() {
    let text = RULESET
        .replace("web = { direction = \"inbound\", limit = 2 }\n", "")
        .replace("email = { direction = \"outbound\" }\n", "");
    let errs = errors(&source(&text, ACTION));
    assert_eq!(
        errs,
        vec![
            "actions/x.toml:4:13: unknown channel `web`; declare it under [channels]".to_string(),
            "ruleset.toml:1:1: no channels: declare at least one under [channels]".to_string(),
        ]
    );
}

#[test]
fn no_schema() {
    let text = RULESET
        .replace("[schema]\n", "")
        .replace("age = \"int\"\nincome = \"float\"\n", "")
        .replace("segment = { type = \"string\", values = [\"mass\", \"gold\"] }\nproducts = \"string_set\"\n", "");
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:1:1: no [schema]: declare the context attributes conditions may use".into(),
    );
}

const WEIGHT: &str = "\n[[context_weights]]\nwhen = \"age > 60\"\nboost = 50\n";

#[test]
fn context_weight_with_no_target() {
    let text = format!("{RULESET}{WEIGHT}");
    one_error(
        &source(&text, ACTION),
        format!(
            "{}: a context weight needs exactly one target: issue = \"...\", group = \"...\" or action = \"...\"",
            at("ruleset.toml", &text, "50")
        ),
    );
}

#[test]
fn context_weight_with_two_targets() {
    let text = format!("{RULESET}{WEIGHT}group = \"cards\"\naction = \"A\"\n");
    one_error(
        &source(&text, ACTION),
        format!(
            "{}: a context weight needs exactly one target: issue = \"...\", group = \"...\" or action = \"...\"",
            at("ruleset.toml", &text, "50")
        ),
    );
}

#[test]
fn context_weight_with_unknown_targets() {
    for (kind, name) in [("group", "cardz"), ("issue", "nope"), ("action", "B")] {
        let text = format!("{RULESET}{WEIGHT}{kind} = \"{name}\"\n");
        one_error(
            &source(&text, ACTION),
            format!(
                "{}: unknown {kind} `{name}`",
                at("ruleset.toml", &text, &format!("\"{name}\""))
            ),
        );
    }
}

#[test]
fn context_weight_condition_errors_are_located() {
    let text = format!(
        "{RULESET}{}group = \"cards\"\n",
        WEIGHT.replace("age > 60", "age > \\\"60\\\"")
    );
    one_error(
        &source(&text, ACTION),
        format!(
            "{}: `>` cannot compare an int with a string",
            at("ruleset.toml", &text, "age > ")
        ),
    );
}

#[test]
fn boost_below_minus_100() {
    let text = format!(
        "{RULESET}{}group = \"cards\"\n",
        WEIGHT.replace("boost = 50", "boost = -100.5")
    );
    one_error(
        &source(&text, ACTION),
        format!(
            "{}: boost must be a finite percentage of at least -100",
            at("ruleset.toml", &text, "-100.5")
        ),
    );
    // -100 itself is allowed (the weight zeroes the action).
    let text = format!(
        "{RULESET}{}group = \"cards\"\n",
        WEIGHT.replace("boost = 50", "boost = -100")
    );
    RuleSet::compile(&source(&text, ACTION)).unwrap();
    let text = format!(
        "{RULESET}{}group = \"cards\"\n",
        WEIGHT.replace("boost = 50", "boost = inf")
    );
    one_error(
        &source(&text, ACTION),
        format!(
            "{}: boost must be a finite percentage of at least -100",
            at("ruleset.toml", &text, "inf")
        ),
    );
}

#[test]
fn levers_summing_below_minus_100() {
    let rs = RULESET
        .replace("[issues.growth]", "[issues.growth]\nlever = -60")
        .replace("issue = \"growth\"", "issue = \"growth\"\nlever = -30");
    let text = ACTION.replace("treatment", "lever = -11\ntreatment");
    one_error(
        &source(&rs, &text),
        "actions/x.toml:2:6: issue, group and action levers sum to -101%, which would make L negative (the sum must be at least -100)"
            .into(),
    );
    // Exactly -100 is allowed (L = 0).
    let text = ACTION.replace("treatment", "lever = -10\ntreatment");
    RuleSet::compile(&source(&rs, &text)).unwrap();
}

#[test]
fn non_finite_lever() {
    let text = ACTION.replace("treatment", "lever = nan\ntreatment");
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:7:9: lever must be a finite percentage".into(),
    );
    let text = ACTION.replace("treatment", "lever = 1e7\ntreatment");
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:7:9: lever must be a finite percentage".into(),
    );
}

#[test]
fn invalid_attribute_names() {
    for bad in ["1abc", "in", "a-b", "true"] {
        let text = RULESET.replace("products = ", &format!("\"{bad}\" = \"int\"\nproducts = "));
        one_error(
            &source(&text, ACTION),
            format!(
                "ruleset.toml:6:1: attribute `{bad}` is not a valid name: letters, digits and `_`, not starting with a digit"
            ),
        );
    }
}

#[test]
fn invalid_names_of_the_rule_set_channels_groups_and_actions() {
    let text = RULESET.replace("name = \"t\"", "name = \"a b\"");
    one_error(
        &source(&text, ACTION),
        "ruleset.toml:1:8: name must be letters, digits, `_` or `-` (at most 128)".into(),
    );
    let text = ACTION.replace("id = \"A\"", "id = \"A.1\"");
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:2:6: action ids are letters, digits, `_` or `-` (at most 128)".into(),
    );
}

#[test]
fn three_errors_are_all_reported_sorted_by_location() {
    let rs = RULESET.replace("direction = \"outbound\"", "direction = \"out\"");
    let text = ACTION
        .replace("starting_propensity = 0.5", "starting_propensity = 2.0")
        .replace("group = \"cards\"", "group = \"cardz\"");
    let errs = errors(&source(&rs, &text));
    assert_eq!(
        errs,
        vec![
            "actions/x.toml:3:9: unknown group `cardz` (did you mean `cards`?); declare it under [groups] in ruleset.toml"
                .to_string(),
            "actions/x.toml:6:23: starting_propensity must be in (0, 1], got 2".to_string(),
            "ruleset.toml:9:23: direction `out` is neither `inbound` nor `outbound`".to_string(),
        ]
    );
    // The rule error list in the `Error`'s Display, in the same order.
    let shown = RuleSet::compile(&source(&rs, &text))
        .unwrap_err()
        .to_string();
    assert!(
        shown.starts_with("rule set has 3 errors:\n  actions/x.toml:3:9:"),
        "{shown}"
    );
    let (a, b, c) = (
        shown.find("3:9:").unwrap(),
        shown.find("6:23:").unwrap(),
        shown.find("9:23:").unwrap(),
    );
    assert!(a < b && b < c, "{shown}");
}

#[test]
fn errors_in_two_files_are_reported_together() {
    let rs = RULESET.replace("issue = \"growth\"", "issue = \"growht\"");
    let text = ACTION.replace("treatment", "eligibility = \"agee > 1\"\ntreatment");
    let errs = errors(&source(&rs, &text));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("actions/x.toml:7:16: unknown attribute `agee`"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("ruleset.toml:12:9: unknown issue `growht`"),
        "{errs:?}"
    );
}

#[test]
fn condition_in_a_basic_string_with_escapes_reports_the_right_column() {
    let text = ACTION.replace(
        "treatment",
        "suitability = \"segment == \\\"gold\\\" && agee > 1\"\ntreatment",
    );
    assert!(text.contains(r#"suitability = "segment == \"gold\" && agee > 1""#));
    // `suitability = "` is 15 characters, then `segment == \"gold\" && ` is
    // 23 raw characters (21 decoded): `agee` starts at column 39.
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:7:39: unknown attribute `agee` (did you mean `age`?); declare it under [schema]".into(),
    );
}

#[test]
fn condition_in_a_multiline_string_reports_the_right_line() {
    let text = ACTION.replace(
        "treatment",
        "eligibility = \"\"\"\nage > 1 &&\n  incme > 2.0\"\"\"\ntreatment",
    );
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:9:3: unknown attribute `incme` (did you mean `income`?); declare it under [schema]".into(),
    );
}

#[test]
fn condition_with_a_unicode_escape_reports_the_right_column() {
    // `\u00e9` is 6 raw characters and one decoded character (2 bytes).
    let text = ACTION.replace(
        "treatment",
        "suitability = \"!(\\\"\\u00e9\\\" in products) && agee > 1\"\ntreatment",
    );
    let errs = errors(&source(RULESET, &text));
    assert_eq!(
        errs,
        vec![format!(
            "{}: unknown attribute `agee` (did you mean `age`?); declare it under [schema]",
            at("actions/x.toml", &text, "agee")
        )]
    );
}

#[test]
fn rule_errors_are_an_error_rules() {
    let text = ACTION.replace("group = \"cards\"", "group = \"cardz\"");
    let e = RuleSet::compile(&source(RULESET, &text)).unwrap_err();
    assert!(matches!(e, Error::Rules(_)));
    let first = &e.rule_errors().unwrap()[0];
    assert_eq!(
        first.location.file,
        std::path::PathBuf::from("actions/x.toml")
    );
    assert_eq!((first.location.line, first.location.column), (3, 9));
}

/// A line-ending backslash in a multi-line basic string trims the newline
/// and the indentation that follows; the location of an error after it must
/// still point at the offending name on the next line.
#[test]
fn condition_after_a_line_ending_backslash_reports_the_right_line() {
    let text = ACTION.replace(
        "treatment",
        "eligibility = \"\"\"age > 1 && \\\n    agee > 2\"\"\"\ntreatment",
    );
    assert!(text.contains("eligibility = \"\"\"age > 1 && \\\n    agee > 2\"\"\""));
    one_error(
        &source(RULESET, &text),
        "actions/x.toml:8:5: unknown attribute `agee` (did you mean `age`?); declare it under [schema]".into(),
    );
}

#[test]
fn channel_compared_with_an_undeclared_channel() {
    let action = ACTION.replace(
        "treatment = \"t\"",
        "treatment = \"t\"\neligibility = 'channel == \"emial\"'",
    );
    one_error(
        &source(RULESET, &action),
        format!(
            "{}: `emial` is not a declared channel; declare it under [channels]",
            at("actions/x.toml", &action, "channel ==")
        ),
    );
    let action = ACTION.replace(
        "treatment = \"t\"",
        "treatment = \"t\"\neligibility = 'channel in [\"web\", \"fax\"]'",
    );
    one_error(
        &source(RULESET, &action),
        format!(
            "{}: `fax` is not a declared channel; declare it under [channels]",
            at("actions/x.toml", &action, "\"fax\"")
        ),
    );
}

#[test]
fn channel_is_a_reserved_attribute_name() {
    let text = RULESET.replace("age = \"int\"", "age = \"int\"\nchannel = \"string\"");
    one_error(
        &source(&text, ACTION),
        format!(
            "{}: `channel` is a built-in name (the request's channel); choose another attribute name",
            at("ruleset.toml", &text, "channel = ")
        ),
    );
}
