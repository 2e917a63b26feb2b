//! One rule for the channel of a population line, in `simulate`, `diff`
//! and `review` alike: `--channel` wins for every line; without it each
//! line is decided on its own `channel`. The tools agree on the same
//! population, and their reports split per channel.

mod common;

use std::collections::BTreeMap;

use common::{ok, retail_bank_v2, s};
use serde_json::Value;

const BANK: &str = "rules/retail_bank";
const BANK_CUSTOMERS: &str = "rules/retail_bank/customers.jsonl";

fn json(args: &[&str]) -> Value {
    let r = ok(args);
    serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{}", r.out))
}

/// Lines per channel in a population file (lines without one are not
/// counted).
fn population_channels(file: &str) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(common::root().join(file)).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(c) = v["channel"].as_str() {
            *out.entry(c.to_string()).or_default() += 1;
        }
    }
    out
}

/// `args`, and `--channel C` if given.
fn with_channel<'a>(mut args: Vec<&'a str>, channel: Option<&'a str>) -> Vec<&'a str> {
    if let Some(c) = channel {
        args.extend(["--channel", c]);
    }
    args
}

/// `channels` of a simulate or diff report, as channel → field.
fn per_channel(report: &Value, field: &str) -> BTreeMap<String, u64> {
    report["channels"]
        .as_array()
        .expect("a per-channel breakdown")
        .iter()
        .map(|c| {
            (
                c["channel"].as_str().unwrap().to_string(),
                c[field].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The README's `simulate rules/telco_care --channel email`: every line is
/// decided on email, whose limit is one action.
#[test]
fn simulate_with_a_channel_decides_every_line_on_it_within_its_limit() {
    let r = json(&[
        "simulate",
        "rules/telco_care",
        "--channel",
        "email",
        "--json",
    ]);
    assert_eq!(r["channel"], "email");
    assert_eq!(r["customers"], 1500);
    assert_eq!(
        per_channel(&r, "customers"),
        BTreeMap::from([("email".to_string(), 1500)])
    );
    assert_eq!(r["channels"][0]["most_chosen"], 1, "email's limit is 1");
    let chosen = r["funnel"]["chosen"].as_u64().unwrap();
    assert!(
        chosen <= r["decisions"].as_u64().unwrap(),
        "{chosen} actions chosen in {} email decisions",
        r["decisions"]
    );
    let (wins, first): (u64, u64) = r["wins"]
        .as_object()
        .unwrap()
        .values()
        .map(|w| (w["chosen"].as_u64().unwrap(), w["first"].as_u64().unwrap()))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert_eq!(wins, first, "with one action per decision, chosen = first");
}

#[test]
fn simulate_without_a_channel_decides_each_line_on_its_own_and_splits_per_channel() {
    let r = json(&["simulate", "rules/telco_care", "--json"]);
    assert_eq!(r["channel"], Value::Null);
    assert_eq!(
        per_channel(&r, "customers"),
        population_channels("rules/telco_care/customers.jsonl")
    );
    let most = per_channel(&r, "most_chosen");
    for (channel, limit) in [("call_center", 3), ("app", 2), ("sms", 1), ("email", 1)] {
        assert!(most[channel] <= limit, "{channel}: {most:?}");
    }
    let chosen: u64 = per_channel(&r, "chosen").values().sum();
    assert_eq!(chosen, r["funnel"]["chosen"].as_u64().unwrap());

    let text = ok(&["simulate", "rules/telco_care"]).out;
    assert!(
        text.contains("channel     each line's own (lines without one: call_center)"),
        "{text}"
    );
    assert!(text.contains("per channel"), "{text}");
}

/// What `diff` says an action won before and after equals what `simulate`
/// says of each version, channel by channel, with and without `--channel`.
#[test]
fn simulate_and_diff_agree_on_the_same_population() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = retail_bank_v2(dir.path());
    for channel in [None, Some("call_center")] {
        let before = json(&with_channel(vec!["simulate", BANK, "--json"], channel));
        let after = json(&with_channel(vec!["simulate", s(&v2), "--json"], channel));
        let d = json(&with_channel(
            vec![
                "diff",
                BANK,
                s(&v2),
                "--customers",
                BANK_CUSTOMERS,
                "--json",
            ],
            channel,
        ));
        assert_eq!(d["channel"], before["channel"]);
        assert_eq!(
            per_channel(&d, "customers"),
            per_channel(&before, "customers"),
            "channel {channel:?}"
        );
        let shifts = d["actions"].as_array().unwrap();
        assert!(!shifts.is_empty(), "the change must move some action");
        for x in shifts {
            let action = x["action"].as_str().unwrap();
            assert_eq!(
                (x["before"].clone(), x["after"].clone()),
                (
                    before["wins"][action]["chosen"].clone(),
                    after["wins"][action]["chosen"].clone()
                ),
                "{action}, channel {channel:?}"
            );
        }
    }
}

/// `review` decides each line where `diff` does: the decisions it counts
/// and the ones that change are `diff`'s, with and without `--channel`.
#[test]
fn review_and_diff_agree_on_the_same_population() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = retail_bank_v2(dir.path());
    let report = dir.path().join("report.html");
    for channel in [None, Some("web")] {
        let review = with_channel(
            vec![
                "review",
                s(&v2),
                "--baseline",
                BANK,
                "--customers",
                BANK_CUSTOMERS,
                "-o",
                s(&report),
            ],
            channel,
        );
        let diff = with_channel(
            vec![
                "diff",
                BANK,
                s(&v2),
                "--customers",
                BANK_CUSTOMERS,
                "--json",
            ],
            channel,
        );
        let d = json(&diff);
        let out = ok(&review).out;
        let expected = format!(
            "{} of {} decisions change across {} channel(s)",
            d["changed"],
            d["customers"],
            d["channels"].as_array().unwrap().len()
        );
        assert!(out.contains(&expected), "{expected}\n{out}");
        let page = std::fs::read_to_string(&report).unwrap();
        match channel {
            Some(c) => assert!(page.contains(&format!("decided on <code>{c}</code>"))),
            None => assert!(page.contains("decided on each line's own channel (call_center 717,")),
        }
    }
}

#[test]
fn the_help_says_the_flag_wins_over_the_line() {
    for command in ["simulate", "diff", "review"] {
        let help = ok(&[command, "--help"]).out;
        assert!(
            help.contains("it wins over the lines' own `channel`"),
            "{command}: {help}"
        );
    }
}
