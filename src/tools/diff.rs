//! What a rule change would do: decide for a population on two rule
//! versions and compare. This is what a team lead reads before approving.
//!
//! Each line is decided on the channel [`ChannelRule`] gives it, the same
//! rule `simulate` follows, and the report splits its counts per channel.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::base::Error;
use crate::base::Timestamp;
use crate::decide::decision::Decision;
use crate::decide::request::{DecisionRequest, RequestJson};
use crate::engine::Engine;
use crate::tools::simulate::{population_channels, ChannelRule, Customer};

/// The difference between two versions' decisions over a population.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// Name and hash of the version decided first (the live one).
    pub before: String,
    /// Name and hash of the candidate version.
    pub after: String,
    /// The channel the tool was given, which every line was decided on;
    /// `None`: each line was decided on its own (see [`ChannelRule`]).
    pub channel: Option<String>,
    /// The channel of lines that name none (the live version's first
    /// inbound channel), when no channel was given.
    pub default_channel: String,
    /// Per channel decided on, in the live version's order (other channels
    /// last): the counts below, split.
    pub channels: Vec<ChannelDiff>,
    /// Customers compared (both versions decided).
    pub customers: usize,
    /// Customers whose chosen list changed (any action or order).
    pub changed: usize,
    /// `changed / customers`.
    pub changed_share: f64,
    /// Customers whose first action changed.
    pub top_changed: usize,
    /// Requests one of the versions rejected (e.g. a context attribute the
    /// new schema types differently), with examples.
    pub errors: usize,
    /// Up to five error messages.
    pub error_examples: Vec<String>,
    /// Per action, wins (chosen) before and after, largest change first.
    pub actions: Vec<ActionShift>,
    /// A few customers whose decision changed, with both lists and why the
    /// old first action lost.
    pub examples: Vec<Example>,
}

/// One channel's share of a diff.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelDiff {
    /// The channel.
    pub channel: String,
    /// Customers compared on it (both versions decided).
    pub customers: usize,
    /// Of those, customers whose chosen list changed.
    pub changed: usize,
    /// Of those, customers whose first action changed.
    pub top_changed: usize,
    /// Population lines on it that one of the versions rejected.
    pub errors: usize,
}

/// How an action's wins moved.
#[derive(Debug, Clone, Serialize)]
pub struct ActionShift {
    /// Action id.
    pub action: String,
    /// Times chosen before.
    pub before: usize,
    /// Times chosen after.
    pub after: usize,
    /// `after - before`.
    pub delta: i64,
}

/// One customer whose decision changed.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// The customer.
    pub customer_id: String,
    /// Chosen before.
    pub before: Vec<String>,
    /// Chosen after.
    pub after: Vec<String>,
    /// Why the old first action is not first any more.
    pub why: String,
}

/// Decide every customer on `before` and `after` (on the same channel, at
/// the same decision time) and compare. `channel`, if given, is the channel
/// of every line (both versions must have it); without it each line is
/// decided on its own, as [`ChannelRule`] says.
pub fn diff(
    before: &Engine,
    after: &Engine,
    customers: &[Customer],
    channel: Option<&str>,
    now: Timestamp,
    max_examples: usize,
) -> Result<DiffReport, Error> {
    let (vb, va) = (before.current(), after.current());
    let rule = ChannelRule::new(channel, vb.rules())?;
    if let Some(c) = channel {
        va.rules().channel(c)?;
    }
    let mut report = DiffReport {
        before: format!("{} ({})", vb.rules().name(), &vb.rules().hash()[..12]),
        after: format!("{} ({})", va.rules().name(), &va.rules().hash()[..12]),
        channel: rule.forced().map(str::to_string),
        default_channel: rule.default_channel().to_string(),
        channels: Vec::new(),
        customers: 0,
        changed: 0,
        changed_share: 0.0,
        top_changed: 0,
        errors: 0,
        error_examples: Vec::new(),
        actions: Vec::new(),
        examples: Vec::new(),
    };
    let mut wins: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (names, tally_of) = population_channels(&rule, vb.rules(), customers);
    report.channels = names
        .iter()
        .map(|n| ChannelDiff {
            channel: n.to_string(),
            ..ChannelDiff::default()
        })
        .collect();
    for (c, &tally) in customers.iter().zip(&tally_of) {
        let channel = rule.channel_of(c);
        let bind = |e: &Engine| -> Result<DecisionRequest, Error> {
            let raw = RequestJson {
                customer_id: c.customer_id.clone(),
                channel: channel.to_string(),
                context: c.context.clone(),
                limit: None,
                explain: true,
                now: None,
            };
            let mut r = raw.bind(&e.schema())?;
            r.now = Some(now);
            Ok(r)
        };
        let decided = bind(before)
            .and_then(|r| before.decide(&r))
            .and_then(|b| Ok((b, after.decide(&bind(after)?)?)));
        let (b, a) = match decided {
            Ok(x) => x,
            Err(e) => {
                report.channels[tally].errors += 1;
                report.errors += 1;
                if report.error_examples.len() < 5 {
                    report
                        .error_examples
                        .push(format!("{}: {e}", c.customer_id));
                }
                continue;
            }
        };
        report.customers += 1;
        report.channels[tally].customers += 1;
        let (lb, la) = (ids(&b), ids(&a));
        for x in &lb {
            wins.entry(x.clone()).or_default().0 += 1;
        }
        for x in &la {
            wins.entry(x.clone()).or_default().1 += 1;
        }
        if lb != la {
            report.changed += 1;
            report.channels[tally].changed += 1;
            if lb.first() != la.first() {
                report.top_changed += 1;
                report.channels[tally].top_changed += 1;
            }
            if report.examples.len() < max_examples {
                report.examples.push(Example {
                    customer_id: c.customer_id.clone(),
                    why: why(&lb, &a),
                    before: lb,
                    after: la,
                });
            }
        }
    }
    report.changed_share = if report.customers > 0 {
        report.changed as f64 / report.customers as f64
    } else {
        0.0
    };
    report.actions = wins
        .into_iter()
        .map(|(action, (b, a))| ActionShift {
            action,
            before: b,
            after: a,
            delta: a as i64 - b as i64,
        })
        .filter(|s| s.delta != 0)
        .collect();
    report.actions.sort_by(|x, y| {
        y.delta
            .abs()
            .cmp(&x.delta.abs())
            .then(x.action.cmp(&y.action))
    });
    Ok(report)
}

fn ids(d: &Decision) -> Vec<String> {
    d.action_ids().into_iter().map(str::to_string).collect()
}

/// Why the old first action is not first in the new decision.
fn why(before: &[String], after: &Decision) -> String {
    let Some(old) = before.first() else {
        return "nothing was chosen before".into();
    };
    if after.action_ids().first().copied() == Some(old.as_str()) {
        return format!("`{old}` is still first; lower ranks changed");
    }
    if let Some(f) = after.filtered().find(|f| f.action() == old) {
        let reason = f.reason().map(|r| format!(" ({r})")).unwrap_or_default();
        return format!(
            "`{old}` is now removed at {} by `{}`{reason}",
            f.stage(),
            f.condition().unwrap_or("")
        );
    }
    if let Some(r) = after.ranked().find(|r| r.action() == old) {
        let top = after.actions().next();
        return match top {
            Some(t) => format!(
                "`{old}` now ranks {} with priority {:.4}; `{}` leads with {:.4}",
                r.rank(),
                r.priority(),
                t.action(),
                t.priority()
            ),
            None => format!("`{old}` ranks {}", r.rank()),
        };
    }
    format!("`{old}` is no longer offered on this channel")
}
