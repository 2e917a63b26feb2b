//! The review report as one HTML page: inline CSS, inline SVG charts, no
//! script, nothing fetched. The candidate's and baseline's rule hashes are
//! in `<meta name="nextbest-candidate">` and `<meta name="nextbest-baseline">`
//! so `nextbest revision approve --report` can check the report reviews the
//! revision it signs.

use std::fmt::Write as _;

use nextbest::tools::evaluate::Evaluation;

use super::svg::{self, number};
use super::{ChannelReview, ChannelRun, OffPolicy, Review};
use crate::impact::ImpactReport;

const CSS: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1a202c;margin:0;background:#f7fafc}
main{max-width:1040px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:34px 0 8px;padding-bottom:4px;border-bottom:2px solid #e2e8f0}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#4a5568;margin:0}
table{border-collapse:collapse;margin:6px 0 10px;width:100%}th,td{border-bottom:1px solid #e2e8f0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#edf2f7;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f7fafc;border:1px solid #e2e8f0;padding:8px;overflow-x:auto}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}.card{flex:1 1 200px;border:1px solid #e2e8f0;border-radius:6px;padding:10px 12px}
.card b{display:block;font-size:22px}.card span{color:#4a5568}
.pass{color:#276749;font-weight:600}.fail{color:#c53030;font-weight:600}.cond{background:#fefcbf}
.add{color:#276749}.del{color:#c53030}.warn{background:#fffaf0;border-left:4px solid #dd6b20;padding:6px 10px;margin:6px 0}
svg{display:block;margin:8px 0;max-width:100%;height:auto}svg .ttl{font-weight:600;font-size:13px}svg .lbl{font-size:12px;fill:#2d3748}svg .val{font-size:11px;fill:#4a5568}
details{margin:4px 0 12px}summary{cursor:pointer;color:#2b6cb0}footer{margin-top:36px;color:#718096;font-size:12px}";

/// Escape text for HTML (and SVG) content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escape `text` and show its `backticked` spans as code.
fn code_spans(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(text).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// The `content` of `<meta name="NAME" content="...">` in a report.
pub fn read_meta(html: &str, name: &str) -> Option<String> {
    let start = format!("<meta name=\"{name}\" content=\"");
    let from = html.find(&start)? + start.len();
    let len = html[from..].find('"')?;
    Some(html[from..from + len].to_string())
}

/// The whole page.
pub fn render(r: &Review) -> String {
    let mut s = String::with_capacity(256 * 1024);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"nextbest-candidate\" content=\"{}\"><meta name=\"nextbest-baseline\" content=\"{}\">\
         <title>Review: {} ({}) against {}</title><style>{CSS}</style></head><body><main>",
        esc(&r.candidate.hash),
        esc(&r.baseline.hash),
        esc(&r.candidate.name),
        esc(&r.candidate.dir),
        esc(&r.baseline.dir)
    );
    let _ = write!(
        s,
        "<h1>Review of {} <code>{}</code></h1><p class=\"sub\">candidate <code>{}</code> rules {} · baseline <code>{}</code> rules {} · \
         {} customers of <code>{}</code> decided on {} at {} by engines built for this review (no live state read or changed)</p>",
        esc(&r.candidate.name),
        esc(&r.candidate.dir),
        esc(&r.candidate.dir),
        &r.candidate.hash[..12],
        esc(&r.baseline.dir),
        &r.baseline.hash[..12],
        r.customers,
        esc(&r.customers_file),
        channel_rule(r),
        esc(&r.now)
    );
    summary(&mut s, r);
    changes(&mut s, r);
    personas(&mut s, r);
    funnel(&mut s, r);
    mix(&mut s, r);
    value_finder(&mut s, r);
    changed_decisions(&mut s, r);
    off_policy(&mut s, r.off_policy.as_ref());
    impact(&mut s, r.impact.as_ref());
    let _ = write!(
        s,
        "<footer>Made by <code>nextbest review {} --baseline {} --customers {}{}</code> at {}. \
         Approvers sign this file's SHA-256 (the command prints it): <code>nextbest revision approve ID --report FILE</code>.</footer></main></body></html>",
        esc(&r.candidate.dir),
        esc(&r.baseline.dir),
        esc(&r.customers_file),
        r.channel
            .as_deref()
            .map(|c| format!(" --channel {}", esc(c)))
            .unwrap_or_default(),
        esc(&r.generated_at)
    );
    s.push('\n');
    s
}

/// Which channel the customers were decided on, in words.
fn channel_rule(r: &Review) -> String {
    let per_channel = r
        .channels
        .iter()
        .map(|c| format!("{} {}", esc(&c.channel), c.customers))
        .collect::<Vec<_>>()
        .join(", ");
    match &r.channel {
        Some(c) => format!(
            "<code>{}</code> (given with <code>--channel</code>: every line)",
            esc(c)
        ),
        None => format!(
            "each line's own channel ({per_channel}; lines without one: <code>{}</code>)",
            esc(&r.default_channel)
        ),
    }
}

fn pct(n: usize, of: usize) -> String {
    if of == 0 {
        "0.0%".into()
    } else {
        format!("{:.1}%", 100.0 * n as f64 / of as f64)
    }
}

fn summary(s: &mut String, r: &Review) {
    s.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">");
    for (big, what) in summary_cards(r) {
        let _ = write!(
            s,
            "<div class=\"card\"><b>{}</b><span>{}</span></div>",
            esc(&big),
            esc(&what)
        );
    }
    s.push_str("</div></section>");
}

/// The summary's figures: (the figure, what it is).
fn summary_cards(r: &Review) -> Vec<(String, String)> {
    let diffs = || r.channels.iter().filter_map(|c| c.diff.as_ref());
    let (changed, decided): (usize, usize) = (
        diffs().map(|d| d.changed).sum(),
        diffs().map(|d| d.customers).sum(),
    );
    let passed = |f: fn(&super::PersonaRow) -> bool| r.personas.iter().filter(|p| f(p)).count();
    let lost = |f: fn(&super::ValueLost) -> f64| r.channels.iter().map(|c| f(&c.lost)).sum::<f64>();
    let mut cards = vec![
        (
            (r.changes.entities.len() + r.changes.scripts.len()).to_string(),
            "rule changes".to_string(),
        ),
        (
            format!("{changed} of {decided} ({})", pct(changed, decided)),
            "decisions change (all channels)".into(),
        ),
        (
            format!("{} of {}", passed(|p| p.candidate.passed), r.personas.len()),
            format!(
                "persona tests pass on the candidate ({} on the baseline)",
                passed(|p| p.baseline.passed)
            ),
        ),
        (
            lost(|l| l.newly_without as f64).to_string(),
            format!(
                "customers newly without an action (expected value lost: {})",
                number(lost(|l| l.value_lost))
            ),
        ),
        (
            lost(|l| l.newly_served as f64).to_string(),
            format!(
                "customers newly served (expected value gained: {})",
                number(lost(|l| l.value_gained))
            ),
        ),
    ];
    if let Some((c, b)) = r
        .off_policy
        .as_ref()
        .and_then(|o| o.candidate.snips.zip(o.baseline.snips))
    {
        cards.push((
            format!("{:.2}% vs {:.2}%", 100.0 * c.value, 100.0 * b.value),
            "off-policy acceptance (SNIPS): candidate vs baseline".into(),
        ));
    }
    cards
}

fn changes(s: &mut String, r: &Review) {
    s.push_str("<section id=\"changes\"><h2>What changed</h2>");
    if r.changes.is_empty() {
        s.push_str(
            "<p>No rule changed (the candidate's rules equal the baseline's).</p></section>",
        );
        return;
    }
    s.push_str("<table><tr><th>kind</th><th>id</th><th>change</th><th>field</th><th>baseline</th><th>candidate</th></tr>");
    for e in &r.changes.entities {
        for (i, f) in e.fields.iter().enumerate() {
            let head = if i == 0 {
                format!(
                    "<td>{}</td><td><code>{}</code></td><td>{}</td>",
                    esc(&e.kind),
                    esc(&e.id),
                    e.change.as_str()
                )
            } else {
                "<td></td><td></td><td></td>".to_string()
            };
            let class = if f.condition { " class=\"cond\"" } else { "" };
            let _ = write!(
                s,
                "<tr>{head}<td{class}>{}</td><td{class}><code>{}</code></td><td{class}><code>{}</code></td></tr>",
                esc(&f.field),
                esc(f.before.as_deref().unwrap_or("—")),
                esc(f.after.as_deref().unwrap_or("—"))
            );
        }
    }
    s.push_str("</table><p class=\"sub\">Conditions (eligibility, applicability, suitability, context-weight <code>when</code>) are highlighted.</p>");
    for sc in &r.changes.scripts {
        let _ = write!(
            s,
            "<h3>{} <code>{}</code></h3><pre>",
            sc.change.as_str(),
            esc(&sc.file)
        );
        for line in sc.diff.lines() {
            let class = match line.chars().next() {
                Some('+') if !line.starts_with("+++") => "add",
                Some('-') if !line.starts_with("---") => "del",
                _ => "",
            };
            let _ = writeln!(s, "<span class=\"{class}\">{}</span>", esc(line));
        }
        s.push_str("</pre>");
    }
    s.push_str("</section>");
}

fn personas(s: &mut String, r: &Review) {
    s.push_str("<section id=\"personas\"><h2>Persona tests</h2>");
    if r.personas.is_empty() {
        s.push_str("<p class=\"warn\">The candidate has no personas (rule tests): nothing was checked.</p></section>");
        return;
    }
    s.push_str("<table><tr><th>persona</th><th>baseline</th><th>candidate</th><th>candidate's actions / failures</th></tr>");
    for p in &r.personas {
        let verdict = |ok: bool| {
            if ok {
                "<span class=\"pass\">pass</span>"
            } else {
                "<span class=\"fail\">FAIL</span>"
            }
        };
        let detail = if p.candidate.failures.is_empty() {
            esc(&p.candidate.actions.join(", "))
        } else {
            esc(&p.candidate.failures.join("; "))
        };
        let _ = write!(
            s,
            "<tr><td><code>{}</code><br><span class=\"sub\">{}</span></td><td>{}</td><td>{}</td><td>{detail}</td></tr>",
            esc(&p.file),
            esc(p.description.as_deref().unwrap_or("")),
            verdict(p.baseline.passed),
            verdict(p.candidate.passed)
        );
    }
    s.push_str("</table></section>");
}

fn runs(c: &ChannelReview) -> (Option<&ChannelRun>, Option<&ChannelRun>) {
    (c.before.as_ref(), c.after.as_ref())
}

fn funnel(s: &mut String, r: &Review) {
    s.push_str("<section id=\"funnel\"><h2>Funnel per stage</h2><p class=\"sub\">Candidates are the actions offered on the channel, per customer; each stage removes some (stages that removed nothing in either version are left out); the rest are ranked and the top ones chosen.</p>");
    for c in &r.channels {
        let (b, a) = runs(c);
        let stage_names: Vec<String> = b
            .or(a)
            .map(|x| x.removed.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let mut rows = vec![(
            "candidates".to_string(),
            b.map(|x| x.candidates as f64),
            a.map(|x| x.candidates as f64),
        )];
        for st in &stage_names {
            let removed = |x: &ChannelRun| {
                x.removed
                    .iter()
                    .find(|(n, _)| n == st)
                    .map_or(0.0, |(_, v)| *v as f64)
            };
            let (rb, ra) = (b.map(removed), a.map(removed));
            if rb.unwrap_or(0.0) + ra.unwrap_or(0.0) > 0.0 {
                rows.push((format!("− {}", st.replace('_', " ")), rb, ra));
            }
        }
        rows.push((
            "ranked".into(),
            b.map(|x| x.ranked as f64),
            a.map(|x| x.ranked as f64),
        ));
        rows.push((
            "chosen".into(),
            b.map(|x| x.chosen as f64),
            a.map(|x| x.chosen as f64),
        ));
        let _ = write!(s, "<h3>{}</h3>", esc(&c.channel));
        s.push_str(&svg::paired_bars(
            &format!("Funnel on {}", c.channel),
            &rows,
        ));
        errors(s, c);
    }
    s.push_str("</section>");
}

fn errors(s: &mut String, c: &ChannelReview) {
    for (who, run) in [("baseline", &c.before), ("candidate", &c.after)] {
        if let Some(run) = run.as_ref().filter(|r| r.errors > 0) {
            let _ = write!(
                s,
                "<p class=\"warn\">The {who} refused {} customers' context on {}, e.g. {}</p>",
                run.errors,
                esc(&c.channel),
                esc(&run.error_examples.join("; "))
            );
        }
    }
}

fn mix(s: &mut String, r: &Review) {
    s.push_str("<section id=\"mix\"><h2>Action mix per channel</h2><p class=\"sub\">How often each action is chosen, before and after.</p>");
    for c in &r.channels {
        let (b, a) = runs(c);
        let mut actions: Vec<&String> = b
            .iter()
            .chain(a.iter())
            .flat_map(|x| x.mix.keys())
            .collect();
        actions.sort();
        actions.dedup();
        let get =
            |x: Option<&ChannelRun>, k: &str| x.map(|x| x.mix.get(k).copied().unwrap_or(0) as f64);
        let mut rows: Vec<(String, Option<f64>, Option<f64>)> = actions
            .iter()
            .map(|k| ((*k).clone(), get(b, k), get(a, k)))
            .collect();
        rows.sort_by(|x, y| {
            let m =
                |r: &(String, Option<f64>, Option<f64>)| r.1.unwrap_or(0.0).max(r.2.unwrap_or(0.0));
            m(y).total_cmp(&m(x)).then(x.0.cmp(&y.0))
        });
        rows.push((
            "(no action)".into(),
            b.map(|x| x.no_action as f64),
            a.map(|x| x.no_action as f64),
        ));
        let _ = write!(s, "<h3>{}</h3>", esc(&c.channel));
        s.push_str(&svg::paired_bars(
            &format!("Actions chosen on {}", c.channel),
            &rows,
        ));
    }
    s.push_str("</section>");
}

fn value_finder(s: &mut String, r: &Review) {
    s.push_str("<section id=\"value-finder\"><h2>Customers left without an action</h2><p class=\"sub\">Per channel: customers each version leaves with nothing, where their last candidate was removed and by which policy; customers the candidate newly leaves without an action and the expected value (propensity × value) the baseline had chosen for them.</p>");
    s.push_str("<table><tr><th>channel</th><th class=\"n\">without, baseline</th><th class=\"n\">without, candidate</th><th class=\"n\">newly without</th><th class=\"n\">value lost</th><th class=\"n\">newly served</th><th class=\"n\">value gained</th></tr>");
    for c in &r.channels {
        let n = |x: &Option<ChannelRun>| {
            x.as_ref().map_or("—".into(), |x| {
                format!("{} ({})", x.no_action, pct(x.no_action, x.decisions))
            })
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&c.channel),
            n(&c.before),
            n(&c.after),
            c.lost.newly_without,
            number(c.lost.value_lost),
            c.lost.newly_served,
            number(c.lost.value_gained)
        );
    }
    s.push_str("</table>");
    for c in r.channels.iter().filter(|c| c.lost.newly_without > 0) {
        let _ = write!(
            s,
            "<h3>{}: newly without an action, by the candidate's blocking policy</h3>",
            esc(&c.channel)
        );
        s.push_str("<table><tr><th>stage</th><th>policy</th><th class=\"n\">customers</th><th class=\"n\">value lost</th></tr>");
        for b in &c.lost.by_policy {
            let _ = write!(
                s,
                "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&b.stage),
                esc(&b.policy),
                b.customers,
                number(b.value)
            );
        }
        let _ = write!(
            s,
            "</table><p class=\"sub\">e.g. {}</p>",
            esc(&c.lost.examples.join(", "))
        );
    }
    s.push_str("<details><summary>Every customer left without an action, per channel and version</summary>");
    for c in &r.channels {
        for (who, run) in [("baseline", &c.before), ("candidate", &c.after)] {
            let Some(run) = run.as_ref().filter(|x| x.no_action > 0) else {
                continue;
            };
            let _ = write!(s, "<h3>{} · {who}: {} customers</h3><table><tr><th>stage</th><th>policy</th><th class=\"n\">customers</th></tr>", esc(&c.channel), run.no_action);
            for b in run.blocked.iter().take(12) {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
                    esc(&b.stage),
                    esc(&b.policy),
                    b.customers
                );
            }
            s.push_str("</table>");
        }
    }
    s.push_str("</details></section>");
}

fn changed_decisions(s: &mut String, r: &Review) {
    s.push_str("<section id=\"changed-decisions\"><h2>Decisions that change</h2>");
    for c in &r.channels {
        let Some(d) = &c.diff else {
            let which = match (&c.before, &c.after) {
                (Some(_), None) => "Only the baseline has this channel",
                (None, Some(_)) => "Only the candidate has this channel",
                _ => "Neither version has this channel: every request on it fails",
            };
            let _ = write!(
                s,
                "<h3>{}</h3><p>{which} ({} customers of the population are decided on it).</p>",
                esc(&c.channel),
                c.customers
            );
            continue;
        };
        let _ = write!(
            s,
            "<h3>{}: {} of {} decisions change ({}); the first action changes for {}</h3>",
            esc(&c.channel),
            d.changed,
            d.customers,
            pct(d.changed, d.customers),
            d.top_changed
        );
        if d.changed == 0 {
            continue;
        }
        s.push_str("<table><tr><th>action</th><th class=\"n\">chosen, baseline</th><th class=\"n\">chosen, candidate</th><th class=\"n\">change</th></tr>");
        for a in d.actions.iter().take(10) {
            let _ = write!(s, "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:+}</td></tr>", esc(&a.action), a.before, a.after, a.delta);
        }
        s.push_str("</table><table><tr><th>customer</th><th>baseline</th><th>candidate</th><th>why</th></tr>");
        for e in &c.examples {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&e.customer_id),
                esc(&e.before.join(", ")),
                esc(&e.after.join(", ")),
                code_spans(&e.why)
            );
        }
        s.push_str("</table>");
    }
    s.push_str("</section>");
}

fn off_policy(s: &mut String, o: Option<&OffPolicy>) {
    s.push_str("<section id=\"off-policy\"><h2>Off-policy estimate</h2>");
    let Some(o) = o else {
        s.push_str("<p>No decision log was given (<code>--log decisions.jsonl</code>): no estimate from logged traffic.</p></section>");
        return;
    };
    let _ = write!(s, "<p class=\"sub\">From {}: how often the logged customers would have accepted each version's first action (inverse propensity scoring over the logged selection probabilities and outcomes).</p>", esc(&o.logs.join(", ")));
    s.push_str("<table><tr><th>version</th><th>estimator</th><th class=\"n\">acceptance rate</th><th class=\"n\">95% interval</th><th class=\"n\">used</th><th class=\"n\">matched</th><th class=\"n\">unsupported</th><th class=\"n\">effective sample</th></tr>");
    let mut chart = Vec::new();
    for (who, e) in [("baseline", &o.baseline), ("candidate", &o.candidate)] {
        for (name, est) in [("logged", e.logged), ("IPS", e.ips), ("SNIPS", e.snips)] {
            let Some(est) = est else { continue };
            let _ = write!(
                s,
                "<tr><td>{who}</td><td>{name}</td><td class=\"n\">{:.4}</td><td class=\"n\">[{:.4}, {:.4}]</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.0}</td></tr>",
                est.value, est.low, est.high, e.used, e.matched, e.unsupported, e.effective_sample_size
            );
            if name == "SNIPS" {
                chart.push((format!("{who} (SNIPS)"), est.value, est.low, est.high));
            }
        }
    }
    s.push_str("</table>");
    if !chart.is_empty() {
        s.push_str(&svg::intervals(
            "Estimated acceptance rate, 95% interval",
            &chart,
            None,
            false,
        ));
    }
    evaluation_warnings(s, "candidate", &o.candidate);
    evaluation_warnings(s, "baseline", &o.baseline);
    s.push_str("</section>");
}

fn evaluation_warnings(s: &mut String, who: &str, e: &Evaluation) {
    for w in &e.warnings {
        let _ = write!(s, "<p class=\"warn\">{who}: {}</p>", esc(w));
    }
}

fn impact(s: &mut String, r: Option<&ImpactReport>) {
    s.push_str("<section id=\"impact\"><h2>Impact against control</h2>");
    let Some(r) = r else {
        s.push_str("<p>No decision log was given: no measured impact.</p></section>");
        return;
    };
    s.push_str("<table><tr><th>arm</th><th class=\"n\">decisions</th><th class=\"n\">accepted</th><th class=\"n\">rejected</th><th class=\"n\">no response</th><th class=\"n\">acceptance rate [95%]</th><th class=\"n\">value / decision [95%]</th></tr>");
    for a in &r.arms {
        let o = |k: &str| a.outcomes.get(k).copied().unwrap_or(0);
        let ar = a
            .acceptance_rate
            .map_or(crate::impact::NO_OUTCOMES.into(), |e| {
                format!("{:.4} [{:.4}, {:.4}]", e.value, e.low, e.high)
            });
        let v = a
            .value_per_decision
            .map_or(crate::impact::NO_OUTCOMES.into(), |e| {
                format!("{:.3} [{:.3}, {:.3}]", e.value, e.low, e.high)
            });
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{ar}</td><td class=\"n\">{v}</td></tr>",
            a.arm, a.decisions, o("accepted"), o("rejected"), o("no_response")
        );
    }
    s.push_str("</table>");
    let mut chart = Vec::new();
    s.push_str("<table><tr><th>comparison</th><th>metric</th><th class=\"n\">lift [95%]</th><th class=\"n\">decisions needed</th></tr>");
    for l in &r.lifts {
        let lift = l.lift.map_or("undefined".into(), |e| {
            format!(
                "{:+.1}% [{:+.1}%, {:+.1}%]",
                100.0 * e.value,
                100.0 * e.low,
                100.0 * e.high
            )
        });
        let need = l.sample_size.map_or("—".into(), |n| {
            format!("{} {} + {} {}", n.control, l.control, n.test, l.test)
        });
        let _ = write!(s, "<tr><td>{} vs {}</td><td>{}</td><td class=\"n\">{lift}</td><td class=\"n\">{need}</td></tr>", l.test, l.control, l.metric.replace('_', " "));
        if let Some(e) = l.lift {
            chart.push((
                format!(
                    "{} vs {}, {}",
                    l.test,
                    l.control,
                    if l.metric == "acceptance_rate" {
                        "rate"
                    } else {
                        "value"
                    }
                ),
                e.value,
                e.low,
                e.high,
            ));
        }
    }
    let _ = write!(s, "</table><p class=\"sub\">Lift = (test − control) / control with a delta-method 95% interval; decisions needed to detect a {:.0}% lift with 80% power at 5% significance, at the current split.</p>", 100.0 * r.mde);
    if !chart.is_empty() {
        s.push_str(&svg::intervals(
            "Lift, 95% interval",
            &chart,
            Some(0.0),
            true,
        ));
    }
    for w in &r.warnings {
        let _ = write!(s, "<p class=\"warn\">{}</p>", esc(w));
    }
    s.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_values_are_read_back() {
        let page = "<head><meta name=\"nextbest-candidate\" content=\"abc123\"></head>";
        assert_eq!(
            read_meta(page, "nextbest-candidate").as_deref(),
            Some("abc123")
        );
        assert_eq!(read_meta(page, "nextbest-baseline"), None);
    }

    #[test]
    fn backticked_spans_become_code() {
        assert_eq!(
            code_spans("`A<B` is removed"),
            "<code>A&lt;B</code> is removed"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("a < b && \"c\""), "a &lt; b &amp;&amp; &quot;c&quot;");
    }
}
