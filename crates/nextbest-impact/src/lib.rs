//! # nextbest-impact
//!
//! Impact against control, shared by `nextbest impact LOG` and the Python
//! package's `nextbest.impact`, so both give the same figures: per
//! experiment arm (champion, challenger, control), the decisions of a
//! decision log, the outcomes joined to them, the acceptance rate and value
//! per decision with 95% intervals, the lift of each test arm over control,
//! and the sample size needed to detect a given lift.
//!
//! Outcomes join their decision by `decision_id` when the outcome carries
//! one; otherwise by customer, action and channel, to the latest decision
//! at or before the outcome that offered that action. A decision counts as
//! accepted when any of its actions was accepted (else rejected, else
//! no response, else without outcome); its value is the sum of the logged
//! values of its accepted actions. A log in which no outcome joins a
//! decision measures nothing: its rates and lifts are left out (`null`),
//! with a warning, rather than reported as 0.

pub mod stats;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use nextbest::audit::reader::{read_log, LogLine, ReadProblems};
use serde::Serialize;
use stats::{Estimate, Moments, SampleSize};

/// The arms, in report order.
pub const ARMS: [&str; 3] = ["champion", "challenger", "control"];

/// What `impact` found in a log.
#[derive(Debug, Clone, Serialize)]
pub struct ImpactReport {
    /// Records read.
    pub records: usize,
    /// Experiments named by the decisions (empty: none ran one).
    pub experiments: Vec<String>,
    /// Per arm, in the order champion, challenger, control (arms without
    /// decisions left out).
    pub arms: Vec<ArmImpact>,
    /// Each test arm against control (and the challenger against the
    /// champion), for both metrics.
    pub lifts: Vec<Lift>,
    /// The relative lift the sample sizes are for.
    pub mde: f64,
    /// Outcomes joined to a decision of the log; without any, no rate is
    /// estimated.
    pub joined_outcomes: usize,
    /// Outcomes that found no decision.
    pub unjoined_outcomes: usize,
    /// Accepted outcomes whose action has no logged value (counted as 0).
    pub accepted_without_value: usize,
    /// Damaged lines.
    pub read: ReadProblems,
    /// What to be careful about.
    pub warnings: Vec<String>,
}

/// One arm's decisions and outcomes.
#[derive(Debug, Clone, Serialize)]
pub struct ArmImpact {
    /// `champion`, `challenger` or `control`.
    pub arm: String,
    /// Decisions logged in this arm.
    pub decisions: u64,
    /// Decisions that chose at least one action.
    pub offered: u64,
    /// Decisions by their outcome: accepted, rejected, no_response, none.
    pub outcomes: BTreeMap<String, u64>,
    /// Decisions with an accepted action, per decision; `None` when no
    /// outcome in the log joined a decision.
    pub acceptance_rate: Option<Estimate>,
    /// Value of the accepted actions, per decision; `None` likewise.
    pub value_per_decision: Option<Estimate>,
    #[serde(skip)]
    value: Moments,
}

/// The lift of one arm over another on one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Lift {
    /// The test arm.
    pub test: String,
    /// The arm it is compared with.
    pub control: String,
    /// `acceptance_rate` or `value_per_decision`.
    pub metric: String,
    /// `(test − control) / control` with its delta-method interval; `None`
    /// when the control's value is zero.
    pub lift: Option<Estimate>,
    /// Decisions needed to detect a lift of `mde` at the current split.
    pub sample_size: Option<SampleSize>,
}

/// One decision's facts for the report.
struct Logged {
    arm: String,
    offered: bool,
    /// value by action, for the chosen actions
    values: Vec<(String, Option<f64>)>,
    accepted: Vec<String>,
    rejected: bool,
    no_response: bool,
}

/// Read `paths` (oldest first) and measure each arm; `mde` is the
/// relative lift to size the experiment for.
pub fn impact(paths: &[PathBuf], mde: f64) -> Result<ImpactReport, nextbest::Error> {
    let (lines, read) = read_log(paths)?;
    let mut report = ImpactReport {
        records: lines.len(),
        experiments: Vec::new(),
        arms: Vec::new(),
        lifts: Vec::new(),
        mde,
        joined_outcomes: 0,
        unjoined_outcomes: 0,
        accepted_without_value: 0,
        read,
        warnings: Vec::new(),
    };
    let mut decisions = collect_decisions(&lines, &mut report.experiments);
    (report.joined_outcomes, report.unjoined_outcomes) = join_outcomes(&lines, &mut decisions);
    report.arms = measure_arms(&decisions.list, &mut report.accepted_without_value);
    if report.joined_outcomes == 0 {
        for a in &mut report.arms {
            (a.acceptance_rate, a.value_per_decision) = (None, None);
        }
    } else {
        report.lifts = lifts(&report.arms, mde);
    }
    report.warnings = warnings(&report);
    Ok(report)
}

/// The decisions of a log, and indexes to join outcomes to them.
struct Decisions {
    list: Vec<Logged>,
    by_id: HashMap<String, usize>,
    /// (customer, channel, action) → (seconds since the epoch, index).
    by_key: HashMap<(String, String, String), Vec<(i64, usize)>>,
}

fn collect_decisions(lines: &[LogLine], experiments: &mut Vec<String>) -> Decisions {
    let mut d = Decisions {
        list: Vec::new(),
        by_id: HashMap::new(),
        by_key: HashMap::new(),
    };
    for l in lines.iter().filter(|l| l.record["kind"] == "decision") {
        let r = &l.record;
        let i = d.list.len();
        if let Some(e) = r["experiment"].as_str() {
            if !experiments.iter().any(|x| x == e) {
                experiments.push(e.to_string());
            }
        }
        let chosen: Vec<String> = r["actions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let value_of = |action: &str| {
            r["candidates"]
                .as_array()?
                .iter()
                .find(|c| c["action"] == action)?["value"]
                .as_f64()
        };
        let values = chosen.iter().map(|a| (a.clone(), value_of(a))).collect();
        if let Some(id) = r["decision_id"].as_str() {
            d.by_id.insert(id.to_string(), i);
        }
        let (customer, channel) = (str_of(r, "customer_id"), str_of(r, "channel"));
        let ts = seconds(r);
        for a in &chosen {
            d.by_key
                .entry((customer.clone(), channel.clone(), a.clone()))
                .or_default()
                .push((ts, i));
        }
        d.list.push(Logged {
            arm: r["arm"].as_str().unwrap_or("champion").to_string(),
            offered: !chosen.is_empty(),
            values,
            accepted: Vec::new(),
            rejected: false,
            no_response: false,
        });
    }
    d
}

/// The record's timestamp in seconds; a record without a readable one
/// sorts last, so it joins no outcome by customer.
fn seconds(r: &serde_json::Value) -> i64 {
    r["timestamp"]
        .as_str()
        .and_then(|t| nextbest::Timestamp::parse(t).ok())
        .map_or(i64::MAX, |t| t.unix_seconds())
}

fn str_of(r: &serde_json::Value, key: &str) -> String {
    r[key].as_str().unwrap_or_default().to_string()
}

/// Join each outcome to its decision; (joined, unjoined).
fn join_outcomes(lines: &[LogLine], d: &mut Decisions) -> (usize, usize) {
    let (mut joined, mut unjoined) = (0, 0);
    for l in lines.iter().filter(|l| l.record["kind"] == "outcome") {
        let r = &l.record;
        let action = str_of(r, "action");
        let target = match r["decision_id"].as_str() {
            Some(id) => d.by_id.get(id).copied(),
            None => {
                let key = (
                    str_of(r, "customer_id"),
                    str_of(r, "channel"),
                    action.clone(),
                );
                latest_before(d.by_key.get(&key), seconds(r))
            }
        };
        let Some(i) = target else {
            unjoined += 1;
            continue;
        };
        joined += 1;
        let logged = &mut d.list[i];
        match r["outcome"].as_str() {
            Some("accepted") if !logged.accepted.contains(&action) => logged.accepted.push(action),
            Some("rejected") => logged.rejected = true,
            Some("no_response") => logged.no_response = true,
            _ => {}
        }
    }
    (joined, unjoined)
}

/// The latest decision at or before `ts` (the last in log order among
/// decisions of the same second).
fn latest_before(candidates: Option<&Vec<(i64, usize)>>, ts: i64) -> Option<usize> {
    let before = candidates?.iter().filter(|(t, _)| *t <= ts);
    before.max_by_key(|(t, i)| (*t, *i)).map(|(_, i)| *i)
}

fn measure_arms(list: &[Logged], without_value: &mut usize) -> Vec<ArmImpact> {
    let mut out = Vec::new();
    for arm in ARMS {
        let mut a = ArmImpact {
            arm: arm.to_string(),
            decisions: 0,
            offered: 0,
            outcomes: ["accepted", "rejected", "no_response", "none"]
                .iter()
                .map(|k| (k.to_string(), 0))
                .collect(),
            acceptance_rate: None,
            value_per_decision: None,
            value: Moments::default(),
        };
        let mut accepted = 0;
        for d in list.iter().filter(|d| d.arm == arm) {
            a.decisions += 1;
            a.offered += u64::from(d.offered);
            let kind = if !d.accepted.is_empty() {
                "accepted"
            } else if d.rejected {
                "rejected"
            } else if d.no_response {
                "no_response"
            } else {
                "none"
            };
            *a.outcomes.entry(kind.to_string()).or_default() += 1;
            accepted += u64::from(!d.accepted.is_empty());
            a.value.add(accepted_value(d, without_value));
        }
        if a.decisions == 0 {
            continue;
        }
        a.acceptance_rate = stats::proportion(accepted, a.decisions);
        a.value_per_decision = a.value.estimate();
        out.push(a);
    }
    out
}

fn accepted_value(d: &Logged, without_value: &mut usize) -> f64 {
    let mut v = 0.0;
    for a in &d.accepted {
        match d.values.iter().find(|(x, _)| x == a).and_then(|(_, v)| *v) {
            Some(x) => v += x,
            None => *without_value += 1,
        }
    }
    v
}

fn lifts(arms: &[ArmImpact], mde: f64) -> Vec<Lift> {
    let find = |name: &str| arms.iter().find(|a| a.arm == name);
    let pairs = [
        ("champion", "control"),
        ("challenger", "control"),
        ("challenger", "champion"),
    ];
    let mut out = Vec::new();
    for (t, c) in pairs {
        let (Some(t), Some(c)) = (find(t), find(c)) else {
            continue;
        };
        let ratio = t.decisions as f64 / c.decisions as f64;
        let lift = |t: Option<Estimate>, c: Option<Estimate>| {
            t.zip(c).and_then(|(t, c)| stats::lift(&t, &c))
        };
        let rate_c = c.acceptance_rate.map_or(0.0, |e| e.value);
        out.push(Lift {
            test: t.arm.clone(),
            control: c.arm.clone(),
            metric: "acceptance_rate".into(),
            lift: lift(t.acceptance_rate, c.acceptance_rate),
            sample_size: stats::sample_size_rate(rate_c, mde, ratio),
        });
        out.push(Lift {
            test: t.arm.clone(),
            control: c.arm.clone(),
            metric: "value_per_decision".into(),
            lift: lift(t.value_per_decision, c.value_per_decision),
            sample_size: stats::sample_size(
                c.value.mean(),
                c.value.variance(),
                t.value.variance(),
                mde,
                ratio,
            ),
        });
    }
    out
}

fn warnings(r: &ImpactReport) -> Vec<String> {
    let mut w = Vec::new();
    let arm = |name: &str| r.arms.iter().find(|a| a.arm == name);
    match arm("control") {
        None => w.push(
            "no decision is in a control arm: lift needs an experiment with a control group \
             (`control_share` in `[experiment]`)"
                .into(),
        ),
        Some(c) if c.offered == 0 => w.push(format!(
            "the control arm's {} decisions chose no action (control = \"no_action\"): its \
             acceptance is 0 by construction, so lift over it is undefined; use control = \
             \"random_eligible\" to measure lift",
            c.decisions
        )),
        Some(_) => {}
    }
    if !r.arms.is_empty() && r.joined_outcomes == 0 {
        w.insert(
            0,
            format!(
                "no outcome in the log joined any of its {} decisions ({} outcome records): \
                 nothing was measured, so no acceptance rate, value or lift is given; record \
                 outcomes (with the decision_id they answer) into the log",
                r.arms.iter().map(|a| a.decisions).sum::<u64>(),
                r.unjoined_outcomes
            ),
        );
    }
    if r.unjoined_outcomes > 0 {
        w.push(format!(
            "{} outcomes found no decision in the log (a decision in an older file?)",
            r.unjoined_outcomes
        ));
    }
    for l in r.lifts.iter().filter(|l| l.metric == "acceptance_rate") {
        if let (Some(s), Some(c)) = (&l.sample_size, arm(&l.control)) {
            if c.decisions < s.control {
                w.push(format!(
                    "{} vs {}: {} {} decisions; detecting a {:.0}% lift needs about {} \
                     (and {} {})",
                    l.test,
                    l.control,
                    c.decisions,
                    l.control,
                    100.0 * s.lift,
                    s.control,
                    s.test,
                    l.test
                ));
            }
        }
    }
    w
}

/// What a rate's place in a table says when the log measured nothing.
pub const NO_OUTCOMES: &str = "no outcomes: not measured";
