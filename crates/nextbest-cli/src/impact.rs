//! `nextbest impact LOG`: the report of [`nextbest_impact`] (shared with
//! the Python package), printed for a terminal.

pub use nextbest_impact::*;

/// Print the report for a terminal.
pub fn print(r: &ImpactReport) {
    if !r.experiments.is_empty() {
        println!("experiment(s): {}", r.experiments.join(", "));
    }
    println!(
        "{:<11} {:>9} {:>8} {:>9} {:>9} {:>11} {:>10}  {:<26} {:<26}",
        "arm",
        "decisions",
        "offered",
        "accepted",
        "rejected",
        "no_response",
        "no outcome",
        "acceptance rate (95%)",
        "value/decision (95%)"
    );
    for a in &r.arms {
        let o = |k: &str| a.outcomes.get(k).copied().unwrap_or(0);
        println!(
            "{:<11} {:>9} {:>8} {:>9} {:>9} {:>11} {:>10}  {:<26} {:<26}",
            a.arm,
            a.decisions,
            a.offered,
            o("accepted"),
            o("rejected"),
            o("no_response"),
            o("none"),
            a.acceptance_rate.map_or(NO_OUTCOMES.into(), |e| format!(
                "{:.4} [{:.4}, {:.4}]",
                e.value, e.low, e.high
            )),
            a.value_per_decision.map_or(NO_OUTCOMES.into(), |e| format!(
                "{:.3} [{:.3}, {:.3}]",
                e.value, e.low, e.high
            )),
        );
    }
    if !r.lifts.is_empty() {
        println!();
        println!("lift = (test - control) / control, delta-method 95% interval; sample size for a {:.0}% lift", 100.0 * r.mde);
    }
    for l in &r.lifts {
        let lift = match &l.lift {
            Some(e) => format!(
                "{:+.1}% [{:+.1}%, {:+.1}%] (se {:.1}%)",
                100.0 * e.value,
                100.0 * e.low,
                100.0 * e.high,
                100.0 * e.std_error
            ),
            None => format!("undefined ({} is 0)", l.control),
        };
        let n = match &l.sample_size {
            Some(s) => format!("needs {} {} + {} {}", s.control, l.control, s.test, l.test),
            None => "-".into(),
        };
        println!(
            "  {:<10} vs {:<8} {:<18} {lift:<40} {n}",
            l.test, l.control, l.metric
        );
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    if r.unjoined_outcomes > 0 || r.accepted_without_value > 0 {
        println!(
            "{} outcomes unjoined; {} accepted actions without a logged value",
            r.unjoined_outcomes, r.accepted_without_value
        );
    }
    for p in r
        .read
        .partial_last_lines
        .iter()
        .chain(&r.read.corrupt_lines)
    {
        println!("damaged line: {p}");
    }
}
