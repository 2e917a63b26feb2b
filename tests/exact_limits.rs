//! Exact caps and contact limits (issue "State you can trust", items 1 and
//! 2): a volume cap holds per period whatever the requests' clocks say and
//! however threads interleave; a channel contact limit holds when many
//! decisions for one customer race.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use nextbest::{Context, DecisionRequest, Engine, EngineConfig, RuleSet, RuleSource, Timestamp};
use proptest::prelude::*;

const DAY: i64 = 86_400;
/// Monday 2026-11-23 10:00 UTC.
const MONDAY: i64 = 1_795_428_000;

fn rules(extra: &str, channel: &str) -> RuleSet {
    let main = format!(
        r#"
name = "caps"
[schema]
age = "int"
[channels]
{channel}
[issues.growth]
[groups.cards]
issue = "growth"
{extra}
"#
    );
    let actions = r#"
[[actions]]
id = "CARD"
group = "cards"
channels = ["web"]
value = 20.0
starting_propensity = 0.1
treatment = "t"
"#;
    RuleSet::compile(
        &RuleSource::new()
            .file("ruleset.toml", main)
            .file("actions/a.toml", actions),
    )
    .unwrap()
}

fn capped(max: u32) -> Engine {
    Engine::new(rules(
        &format!(
            "[[volume_constraints]]\nname = \"cards_daily\"\naction = \"CARD\"\nmax = {max}\nperiod = \"day\"\n"
        ),
        "web = { direction = \"inbound\", limit = 1 }",
    ))
}

fn request(e: &Engine, customer: &str, at: i64) -> DecisionRequest {
    let ctx = Context::builder(&e.schema())
        .set("age", 40)
        .build()
        .unwrap();
    DecisionRequest::new(customer, "web", ctx).at(Timestamp(at))
}

fn gets_card(e: &Engine, customer: &str, at: i64) -> bool {
    e.decide(&request(e, customer, at))
        .unwrap()
        .action_ids()
        .contains(&"CARD")
}

#[test]
fn a_back_dated_request_does_not_reset_the_daily_cap() {
    let e = capped(3);
    let today = MONDAY;
    for i in 0..3 {
        assert!(gets_card(&e, &format!("a{i}"), today + i));
    }
    // The day before: counted against the day before.
    assert!(gets_card(&e, "late", today - DAY));
    // Three more the same day: the cap of 3 is already reached.
    for i in 0..3 {
        assert!(
            !gets_card(&e, &format!("b{i}"), today + 100 + i),
            "a 4th+ card the same day after a back-dated request"
        );
    }
    // The next day starts at zero.
    assert!(gets_card(&e, "tomorrow", today + DAY));
}

#[test]
fn a_request_older_than_the_counter_keeps_is_refused_with_the_constraint_named() {
    let e = capped(3);
    assert!(gets_card(&e, "a", MONDAY));
    // Eight days back is the same slot as today, which now holds today.
    let err = e
        .decide(&request(&e, "old", MONDAY - 8 * DAY))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cards_daily"), "{err}");
    // Nothing was counted by the refused request; today is intact.
    assert!(gets_card(&e, "b", MONDAY));
    assert!(gets_card(&e, "c", MONDAY));
    assert!(!gets_card(&e, "d", MONDAY));
}

/// The clock of request `(day, customer)`: within 3 seconds of the
/// midnight that ends `day`, so the last seconds of one day and the first
/// of the next interleave across threads.
fn at_of(day: i64, customer: u32) -> i64 {
    let midnight = MONDAY - 10 * 3600 + (day + 1) * DAY;
    midnight + (customer as i64 % 7) - 3
}

/// The UTC day `at` falls in, counted from Monday.
fn day_of(at: i64) -> i64 {
    (at - (MONDAY - 10 * 3600)).div_euclid(DAY)
}

/// Requests `(day, customer)` decided on `threads` threads at once; the
/// cards given per day.
fn given_per_day(e: &Arc<Engine>, ops: &[(i64, u32)], threads: usize) -> BTreeMap<i64, u32> {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let e = e.clone();
            let barrier = barrier.clone();
            let mine: Vec<(i64, u32)> = ops.iter().copied().skip(t).step_by(threads).collect();
            std::thread::spawn(move || {
                barrier.wait();
                let mut given = BTreeMap::new();
                for (day, customer) in mine {
                    let at = at_of(day, customer);
                    let day_of = day_of(at);
                    if gets_card(&e, &format!("c{customer}"), at) {
                        *given.entry(day_of).or_insert(0u32) += 1;
                    }
                }
                given
            })
        })
        .collect();
    let mut total = BTreeMap::new();
    for h in handles {
        for (d, n) in h.join().unwrap() {
            *total.entry(d).or_insert(0) += n;
        }
    }
    total
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Whatever the order of requests' clocks across threads (within the
    /// periods a counter keeps), each day gives exactly min(max, asked):
    /// what a sequential model of the cap gives.
    #[test]
    fn concurrent_decisions_give_what_a_sequential_cap_gives(
        max in 1u32..6,
        days in prop::collection::vec(0i64..6, 1..80),
        threads in 2usize..5,
    ) {
        let ops: Vec<(i64, u32)> = days.iter().copied().zip(0u32..).collect();
        let e = Arc::new(capped(max));
        let got = given_per_day(&e, &ops, threads);
        // The sequential model: a per-day count capped at max.
        let mut want: BTreeMap<i64, u32> = BTreeMap::new();
        for &(day, customer) in &ops {
            let n = want.entry(day_of(at_of(day, customer))).or_insert(0);
            if *n < max {
                *n += 1;
            }
        }
        want.retain(|_, n| *n > 0);
        prop_assert_eq!(got, want);
    }
}

fn limited() -> Engine {
    let mut config = EngineConfig::default();
    config.record_impressions = true;
    Engine::try_with_config(
        rules(
            "",
            "web = { direction = \"inbound\", limit = 1, contact_limit = { max = 1, within = \"7d\" } }",
        ),
        config,
    )
    .unwrap()
}

#[test]
fn a_contact_limit_of_one_holds_when_eight_decisions_race() {
    let e = Arc::new(limited());
    for trial in 0..200 {
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let e = e.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let req = request(&e, &format!("same-{trial}"), MONDAY);
                    barrier.wait();
                    !e.decide(&req).unwrap().action_ids().is_empty()
                })
            })
            .collect();
        let returned = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&x| x)
            .count();
        assert_eq!(
            returned, 1,
            "trial {trial}: the action was returned {returned} times"
        );
    }
}

#[test]
fn the_contact_limit_refusal_says_so_when_explained() {
    let e = limited();
    assert!(!e
        .decide(&request(&e, "x", MONDAY))
        .unwrap()
        .action_ids()
        .is_empty());
    let d = e
        .decide(&request(&e, "x", MONDAY + 60).explain(true))
        .unwrap();
    assert!(d.action_ids().is_empty());
    let f = d
        .filtered()
        .next()
        .expect("the refused action is explained");
    assert_eq!(f.action(), "CARD");
    assert_eq!(f.stage(), nextbest::Stage::ChannelLimit);
}
