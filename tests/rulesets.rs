//! The example rule sets' strategies, as properties over their whole
//! populations: what each strategy promises holds for every customer on
//! every channel, and no hook ever fails on real data.

use nextbest::{Decision, Engine};

fn population(dir: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(format!("{dir}/customers.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every customer of `dir` on every channel, decided at the personas' time.
fn decide_all(dir: &str, mut check: impl FnMut(&serde_json::Value, &str, &Decision)) -> usize {
    let engine = Engine::from_dir(dir).unwrap();
    let channels: Vec<String> = engine
        .current()
        .rules()
        .channel_names()
        .map(str::to_string)
        .collect();
    let mut n = 0;
    for c in population(dir) {
        for ch in &channels {
            let req = serde_json::json!({"customer_id": c["customer_id"], "channel": ch,
                                         "context": c["context"], "now": "2026-11-23T10:00:00Z"});
            let d = engine.decide_json(&req.to_string()).unwrap();
            // Scripts never fail on real data (a time-out under a loaded
            // debug build is the machine's, not the script's).
            for diag in d.diagnostics() {
                assert!(diag.timed_out(), "{}: {diag}", c["customer_id"]);
            }
            check(&c["context"], ch, &d);
            n += 1;
        }
    }
    n
}

#[test]
fn retail_bank_keeps_one_lending_offer_and_consent_on_outbound_channels() {
    let mut sales_without_consent = 0;
    let n = decide_all("rules/retail_bank", |ctx, channel, d| {
        let timed_out = d.diagnostics().iter().any(|x| x.timed_out());
        let lending = d
            .actions()
            .filter(|a| {
                matches!(a.group(), "loans" | "mortgages") || a.action() == "CARD_BALANCE_TRANSFER"
            })
            .count();
        if !timed_out {
            assert!(lending <= 1, "{channel}: {:?}", d.action_ids());
        }
        if matches!(channel, "email" | "sms") && ctx["marketing_consent"] != true {
            sales_without_consent += d.actions().filter(|a| a.issue() == "growth").count();
        }
        if ctx["bankrupt"] == true {
            assert!(
                d.actions()
                    .all(|a| !matches!(a.group(), "cards" | "loans" | "mortgages")),
                "credit to a bankrupt customer: {:?}",
                d.action_ids()
            );
        }
    });
    assert_eq!(n, 2000 * 6);
    assert_eq!(sales_without_consent, 0);
}

#[test]
fn telco_care_fixes_first_and_offers_one_device() {
    let n = decide_all("rules/telco_care", |ctx, channel, d| {
        if d.diagnostics().iter().any(|x| x.timed_out()) {
            return;
        }
        let devices = d.actions().filter(|a| a.group() == "upgrades").count();
        assert!(devices <= 1, "{channel}: {:?}", d.action_ids());
        if ctx["outage_area"] == true {
            assert!(
                d.actions().all(|a| a.issue() != "growth"),
                "selling in an outage: {:?}",
                d.action_ids()
            );
        }
        // Service recovery comes first whenever it is chosen at all.
        let first_other = d
            .actions()
            .position(|a| a.group() != "service_recovery")
            .unwrap_or(usize::MAX);
        let last_fix = d
            .actions()
            .enumerate()
            .filter(|(_, a)| a.group() == "service_recovery")
            .map(|(i, _)| i)
            .last();
        if let Some(last_fix) = last_fix {
            assert!(last_fix < first_other, "{:?}", d.action_ids());
        }
    });
    assert_eq!(n, 1500 * 6);
}
