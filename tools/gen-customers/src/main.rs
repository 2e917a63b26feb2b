//! Deterministic synthetic customer populations for the rule sets under
//! `rules/`: `gen-customers retail_bank > rules/retail_bank/customers.jsonl`.
//!
//! The same name always gives the same bytes (ChaCha8 with a fixed seed per
//! rule set; floats rounded to cents), so CI can check that the committed
//! files come from this program. Attributes are correlated the way a bank's
//! or an operator's book is: income by segment and employment, credit score
//! by income, arrears by credit score, the channel by age, the reason for
//! the call by the customer's situation.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal};
use serde_json::{json, Map, Value};

/// 2026-11-23T10:00:00Z, the rule sets' persona and simulation time.
const NOW: i64 = 1_795_428_000;
const DAY: i64 = 86_400;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gen-customers <retail_bank|telco_care> [--n COUNT] [--seed SEED]";
    let Some(name) = args.first() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (mut n, mut seed, generate): (usize, u64, fn(&mut ChaCha8Rng, usize) -> Value) =
        match name.as_str() {
            "retail_bank" => (2000, 20_261_123, retail_bank),
            "telco_care" => (1500, 20_261_124, telco_care),
            other => {
                eprintln!("unknown rule set `{other}`; {usage}");
                std::process::exit(2);
            }
        };
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--n", Some(v)) => n = v as usize,
            ("--seed", Some(v)) => seed = v,
            _ => {
                eprintln!("bad argument `{flag}`; {usage}");
                std::process::exit(2);
            }
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = String::new();
    for i in 1..=n {
        out.push_str(&generate(&mut rng, i).to_string());
        out.push('\n');
    }
    print!("{out}");
}

/// One of `items`, by weight.
fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|i| i.1).sum();
    let mut x = rng.random::<f64>() * total;
    for &(item, w) in items {
        if x < w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    rng.random::<f64>() < p.clamp(0.0, 1.0)
}

fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    LogNormal::new(median.ln(), sigma).unwrap().sample(rng)
}

fn normal(rng: &mut ChaCha8Rng, mean: f64, sd: f64) -> f64 {
    Normal::new(mean, sd).unwrap().sample(rng)
}

fn exp_days(rng: &mut ChaCha8Rng, mean_days: f64) -> f64 {
    Exp::new(1.0 / mean_days).unwrap().sample(rng)
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Epoch seconds as RFC 3339 UTC (days to civil date: H. Hinnant's algorithm).
fn rfc3339(t: i64) -> String {
    let (days, secs) = (t.div_euclid(DAY), t.rem_euclid(DAY));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A time `mean_days` ago on average (exponential), to the second.
fn days_ago(rng: &mut ChaCha8Rng, mean_days: f64) -> String {
    let ago = (exp_days(rng, mean_days) * DAY as f64) as i64 + rng.random_range(0..DAY);
    rfc3339(NOW - ago)
}

fn record(id: String, channel: &str, context: Map<String, Value>) -> Value {
    json!({ "customer_id": id, "channel": channel, "context": context })
}

fn retail_bank(rng: &mut ChaCha8Rng, i: usize) -> Value {
    let student = chance(rng, 0.05);
    let segment = if student {
        "mass"
    } else {
        pick(
            rng,
            &[
                ("mass", 0.60),
                ("affluent", 0.25),
                ("premier", 0.12),
                ("private", 0.03),
            ],
        )
    };
    let age: i64 = if student {
        rng.random_range(18..=27)
    } else {
        normal(rng, 47.0, 16.0).clamp(18.0, 92.0) as i64
    };
    let employment = if student {
        "student"
    } else if age >= 67 {
        "retired"
    } else {
        pick(
            rng,
            &[
                ("employed", 0.78),
                ("self_employed", 0.14),
                ("unemployed", 0.08),
            ],
        )
    };
    let base = match segment {
        "mass" => 27_000.0,
        "affluent" => 58_000.0,
        "premier" => 105_000.0,
        _ => 240_000.0,
    };
    let income = match employment {
        "student" => lognormal(rng, 7_000.0, 0.5),
        "unemployed" => lognormal(rng, 9_000.0, 0.4),
        "retired" => lognormal(rng, base * 0.6, 0.35),
        _ => lognormal(rng, base, 0.35),
    };
    let monthly_income = income / 12.0;
    let tenure_months = rng.random_range(0..=((age - 16).clamp(1, 45) * 12));
    let homeowner = chance(
        rng,
        0.05 + (age - 25).max(0) as f64 * 0.015 + income / 100_000.0 * 0.2,
    );
    let dependents: i64 = if (28..60).contains(&age) {
        pick(rng, &[(0, 0.45), (1, 0.25), (2, 0.2), (3, 0.1)])
    } else {
        0
    };
    let digital_active = chance(rng, 0.95 - (age - 25).max(0) as f64 * 0.012);
    let mut credit_score = normal(rng, 660.0 + 25.0 * (income / 30_000.0).ln(), 60.0);
    let arrears_risk = 0.03
        + if credit_score < 580.0 { 0.15 } else { 0.0 }
        + if employment == "unemployed" {
            0.15
        } else {
            0.0
        };
    let arrears_days: i64 = if chance(rng, arrears_risk) {
        (1.0 + exp_days(rng, 35.0)).min(180.0) as i64
    } else {
        0
    };
    credit_score -= arrears_days as f64 / 2.0;
    let credit_score = credit_score.clamp(300.0, 850.0) as i64;
    let bankrupt = (arrears_days > 90 && chance(rng, 0.2)) || chance(rng, 0.002);
    let arrears_spend = if arrears_days > 0 { 1.15 } else { 1.0 };
    let monthly_spend = monthly_income * rng.random_range(0.35..0.95) * arrears_spend;
    let monthly_debt = if chance(rng, 0.55) {
        monthly_income * rng.random_range(0.03..0.45)
    } else {
        0.0
    };
    let balance = if arrears_days > 0 {
        -rng.random_range(0.0..1500.0)
    } else {
        lognormal(rng, (monthly_income * 0.8).max(50.0), 0.8)
    };
    let (no_savings, savings_factor) = match segment {
        "mass" => (0.3, 0.15),
        "affluent" => (0.1, 0.4),
        "premier" => (0.05, 0.8),
        _ => (0.02, 1.5),
    };
    let savings = if chance(rng, no_savings) {
        0.0
    } else {
        lognormal(rng, income * savings_factor, 0.9)
    };
    let travels_abroad = chance(
        rng,
        match segment {
            "mass" => 0.18,
            "affluent" => 0.35,
            _ => 0.55,
        },
    );

    let mut products = vec!["CURRENT"];
    let premium = segment != "mass";
    for (product, p) in [
        ("CARD_CLASSIC", if premium { 0.2 } else { 0.35 }),
        ("CARD_GOLD", if premium { 0.35 } else { 0.05 }),
        (
            "CARD_PLATINUM",
            if segment == "private" { 0.5 } else { 0.02 },
        ),
        ("CARD_CASHBACK", 0.08),
        ("SAV_EASY_ACCESS", if savings > 0.0 { 0.5 } else { 0.05 }),
        ("SAV_FIXED_1Y", if savings > 10_000.0 { 0.25 } else { 0.0 }),
        ("ISA", if savings > 5_000.0 { 0.3 } else { 0.03 }),
        ("INVESTMENTS", if premium { 0.3 } else { 0.03 }),
        ("MORTGAGE", if homeowner { 0.55 } else { 0.0 }),
        ("LOAN_PERSONAL", if monthly_debt > 0.0 { 0.3 } else { 0.02 }),
        ("LOAN_CAR", if monthly_debt > 0.0 { 0.15 } else { 0.0 }),
        ("INS_HOME", if homeowner { 0.3 } else { 0.0 }),
        ("INS_TRAVEL", if travels_abroad { 0.25 } else { 0.0 }),
        ("INS_LIFE", if dependents > 0 { 0.3 } else { 0.05 }),
        ("PAPERLESS", if digital_active { 0.5 } else { 0.05 }),
        ("FRAUD_ALERTS", if digital_active { 0.35 } else { 0.1 }),
        ("ROUNDUP", if digital_active { 0.1 } else { 0.0 }),
    ] {
        if chance(rng, p) {
            products.push(product);
        }
    }

    let nps: i64 = pick(
        rng,
        &[
            (0, 0.02),
            (2, 0.03),
            (4, 0.05),
            (5, 0.06),
            (6, 0.09),
            (7, 0.2),
            (8, 0.25),
            (9, 0.18),
            (10, 0.12),
        ],
    );
    let complaints_90d: i64 = pick(rng, &[(0, 0.85), (1, 0.1), (2, 0.03), (3, 0.02)]);
    let channel = if age >= 70 {
        pick(
            rng,
            &[
                ("call_center", 0.55),
                ("branch", 0.25),
                ("web", 0.05),
                ("email", 0.1),
                ("sms", 0.05),
            ],
        )
    } else {
        pick(
            rng,
            &[
                ("call_center", 0.35),
                ("mobile_app", 0.3),
                ("web", 0.12),
                ("branch", 0.05),
                ("email", 0.12),
                ("sms", 0.06),
            ],
        )
    };
    let call_reason = match channel {
        "call_center" | "branch" => {
            if arrears_days > 0 && chance(rng, 0.5) {
                "payment_issue"
            } else if complaints_90d > 0 && chance(rng, 0.4) {
                "complaint"
            } else if nps <= 5 && chance(rng, 0.3) {
                "cancellation"
            } else {
                pick(
                    rng,
                    &[
                        ("balance", 0.22),
                        ("card_lost", 0.07),
                        ("fraud", 0.04),
                        ("complaint", 0.05),
                        ("cancellation", 0.04),
                        ("mortgage", 0.06),
                        ("loan", 0.06),
                        ("payment_issue", 0.04),
                        ("address_change", 0.05),
                        ("travel", 0.05),
                        ("general", 0.32),
                    ],
                )
            }
        }
        _ => "none",
    };

    let mut c = Map::new();
    c.insert("age".into(), json!(age));
    c.insert("income".into(), json!(cents(income)));
    c.insert("employment".into(), json!(employment));
    c.insert("segment".into(), json!(segment));
    c.insert("tenure_months".into(), json!(tenure_months));
    c.insert("credit_score".into(), json!(credit_score));
    c.insert("products".into(), json!(products));
    c.insert("balance".into(), json!(cents(balance)));
    c.insert("savings".into(), json!(cents(savings)));
    c.insert("monthly_spend".into(), json!(cents(monthly_spend)));
    c.insert("monthly_debt".into(), json!(cents(monthly_debt)));
    c.insert("arrears_days".into(), json!(arrears_days));
    c.insert("bankrupt".into(), json!(bankrupt));
    c.insert("dependents".into(), json!(dependents));
    c.insert("homeowner".into(), json!(homeowner));
    c.insert("digital_active".into(), json!(digital_active));
    c.insert("marketing_consent".into(), json!(chance(rng, 0.55)));
    c.insert("travels_abroad".into(), json!(travels_abroad));
    c.insert("nps".into(), json!(nps));
    c.insert("complaints_90d".into(), json!(complaints_90d));
    c.insert("call_reason".into(), json!(call_reason));
    c.insert("last_contact".into(), json!(days_ago(rng, 120.0)));
    c.insert("email".into(), json!(format!("customer{i:06}@example.com")));
    c.insert(
        "phone".into(),
        json!(format!("+31 6 {:08}", rng.random_range(0..100_000_000))),
    );
    c.insert(
        "postcode".into(),
        json!(format!(
            "{} {}{}",
            rng.random_range(1000..10_000),
            char::from(rng.random_range(b'A'..=b'Z')),
            char::from(rng.random_range(b'A'..=b'Z'))
        )),
    );
    record(format!("RB{i:06}"), channel, c)
}

fn telco_care(rng: &mut ChaCha8Rng, i: usize) -> Value {
    let age: i64 = normal(rng, 42.0, 15.0).clamp(16.0, 90.0) as i64;
    let plan = if age < 25 {
        pick(
            rng,
            &[("prepaid", 0.45), ("basic", 0.35), ("unlimited", 0.2)],
        )
    } else {
        pick(
            rng,
            &[
                ("prepaid", 0.15),
                ("basic", 0.3),
                ("unlimited", 0.25),
                ("family", 0.22),
                ("business", 0.08),
            ],
        )
    };
    let lines: i64 = match plan {
        "family" => rng.random_range(2..=5),
        "business" => rng.random_range(1..=20),
        _ => 1,
    };
    let tenure_months = rng.random_range(0..=((age - 15).clamp(1, 25) * 12));
    let (bill_median, allowance) = match plan {
        "prepaid" => (15.0, 5.0),
        "basic" => (25.0, 10.0),
        "unlimited" => (45.0, 0.0),
        "family" => (30.0 * lines as f64, 25.0 * lines as f64),
        _ => (28.0 * lines as f64, 0.0),
    };
    let avg_bill_3m = lognormal(rng, bill_median, 0.25);
    let data_used_gb = if allowance > 0.0 {
        allowance * rng.random_range(0.2..1.6)
    } else {
        lognormal(rng, 30.0, 0.7)
    };
    let roaming_days_90d: i64 = if chance(rng, 0.2) {
        rng.random_range(1..=30)
    } else {
        0
    };
    // Overage and roaming are what shock a bill.
    let overage = if allowance > 0.0 && data_used_gb > allowance {
        (data_used_gb - allowance) * 4.0
    } else {
        0.0
    };
    let roaming = if roaming_days_90d > 0 && chance(rng, 0.5) {
        roaming_days_90d as f64 * rng.random_range(1.0..6.0)
    } else {
        0.0
    };
    let monthly_bill = avg_bill_3m * rng.random_range(0.9..1.1) + overage + roaming;
    let contract = plan != "prepaid";
    let contract_end = contract.then(|| {
        let days = rng.random_range(-120..=720);
        rfc3339(NOW + days * DAY + rng.random_range(0..DAY))
    });
    let device_age_months: i64 = rng.random_range(0..=60);
    let device_financed = contract && device_age_months < 24 && chance(rng, 0.6);
    let outage_area = chance(rng, 0.06);
    let dropped_calls_30d: i64 = if outage_area {
        rng.random_range(3..=25)
    } else {
        pick(
            rng,
            &[(0, 0.7), (1, 0.15), (2, 0.08), (5, 0.05), (10, 0.02)],
        )
    };
    let payment_late_days: i64 = if chance(rng, if plan == "prepaid" { 0.0 } else { 0.06 }) {
        (1.0 + exp_days(rng, 25.0)).min(120.0) as i64
    } else {
        0
    };
    let has_broadband = age >= 22 && chance(rng, 0.3);
    let has_tv = has_broadband && chance(rng, 0.4);
    let mut nps = normal(rng, 7.5, 2.0);
    if dropped_calls_30d >= 5 {
        nps -= 3.0;
    }
    if monthly_bill > avg_bill_3m * 1.3 {
        nps -= 2.0;
    }
    let nps = nps.clamp(0.0, 10.0) as i64;
    let competitor_offer = chance(rng, if nps <= 5 { 0.35 } else { 0.05 });
    let region = pick(
        rng,
        &[
            ("capital", 0.3),
            ("north", 0.2),
            ("south", 0.2),
            ("east", 0.15),
            ("west", 0.15),
        ],
    );
    let channel = if age >= 65 {
        pick(
            rng,
            &[
                ("call_center", 0.6),
                ("retail_store", 0.25),
                ("sms", 0.1),
                ("email", 0.05),
            ],
        )
    } else {
        pick(
            rng,
            &[
                ("call_center", 0.35),
                ("app", 0.3),
                ("web", 0.1),
                ("retail_store", 0.08),
                ("sms", 0.1),
                ("email", 0.07),
            ],
        )
    };
    let bill_shock = monthly_bill > avg_bill_3m * 1.25;
    let call_reason = match channel {
        "call_center" | "retail_store" => {
            if bill_shock && chance(rng, 0.6) {
                "billing"
            } else if dropped_calls_30d >= 5 && chance(rng, 0.6) {
                "technical"
            } else if payment_late_days > 0 && chance(rng, 0.5) {
                "payment"
            } else if (competitor_offer || nps <= 4) && chance(rng, 0.5) {
                "cancellation"
            } else {
                pick(
                    rng,
                    &[
                        ("billing", 0.2),
                        ("technical", 0.15),
                        ("cancellation", 0.06),
                        ("upgrade", 0.14),
                        ("roaming", 0.06),
                        ("moving", 0.05),
                        ("payment", 0.04),
                        ("general", 0.3),
                    ],
                )
            }
        }
        _ => "none",
    };

    let mut c = Map::new();
    c.insert("age".into(), json!(age));
    c.insert("tenure_months".into(), json!(tenure_months));
    c.insert("plan".into(), json!(plan));
    c.insert("lines".into(), json!(lines));
    c.insert("monthly_bill".into(), json!(cents(monthly_bill)));
    c.insert("avg_bill_3m".into(), json!(cents(avg_bill_3m)));
    c.insert("data_used_gb".into(), json!(cents(data_used_gb)));
    c.insert("data_allowance_gb".into(), json!(allowance));
    if let Some(end) = contract_end {
        c.insert("contract_end".into(), json!(end));
    }
    c.insert("device_age_months".into(), json!(device_age_months));
    c.insert("device_financed".into(), json!(device_financed));
    c.insert("call_reason".into(), json!(call_reason));
    c.insert("dropped_calls_30d".into(), json!(dropped_calls_30d));
    c.insert("outage_area".into(), json!(outage_area));
    c.insert("payment_late_days".into(), json!(payment_late_days));
    c.insert("has_broadband".into(), json!(has_broadband));
    c.insert("has_tv".into(), json!(has_tv));
    c.insert("roaming_days_90d".into(), json!(roaming_days_90d));
    c.insert("nps".into(), json!(nps));
    c.insert("competitor_offer".into(), json!(competitor_offer));
    c.insert("marketing_consent".into(), json!(chance(rng, 0.5)));
    c.insert("region".into(), json!(region));
    c.insert(
        "msisdn".into(),
        json!(format!("+31 6 {:08}", rng.random_range(0..100_000_000))),
    );
    c.insert(
        "email".into(),
        json!(format!("subscriber{i:06}@example.net")),
    );
    record(format!("TC{i:06}"), channel, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(NOW), "2026-11-23T10:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
