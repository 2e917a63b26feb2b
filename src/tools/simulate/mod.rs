//! Simulation: run a rule version over a population before publishing it.
//!
//! Two passes over the customers: a timed pass that decides as production
//! does (no explanations) for throughput and latency, and an explained pass
//! that counts, for each stage of the funnel, how many candidates it
//! removed, which actions win, and which customers are left with nothing.
//!
//! Each line of a population is decided on the channel [`ChannelRule`]
//! gives it (the tool's `--channel` if given, else the line's own), and
//! the report splits its totals per channel.

pub mod learn;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::base::Error;
use crate::base::Timestamp;
use crate::decide::request::{DecisionRequest, RequestJson};
use crate::engine::Engine;

/// One customer of a population file (`customers.jsonl`).
#[derive(Debug, Clone, Deserialize)]
pub struct Customer {
    /// The customer's id.
    pub customer_id: String,
    /// The context, as JSON.
    #[serde(default)]
    pub context: serde_json::Map<String, serde_json::Value>,
    /// The channel this customer is decided on, unless the tool is given
    /// one (see [`ChannelRule`]).
    #[serde(default)]
    pub channel: Option<String>,
}

/// Which channel each line of a population is decided on: one rule for
/// `simulate`, `diff`, `review` and the learning demo, so that they agree
/// on the same population.
///
/// A channel given to the tool (`--channel`) wins, for every line; without
/// one, each line is decided on its own `channel`, and a line without one
/// on the rule set's first inbound channel.
///
/// ```
/// # fn main() -> Result<(), nextbest::Error> {
/// use nextbest::simulate::{ChannelRule, Customer};
/// let rules = nextbest::RuleSet::from_dir("tests/fixtures/mini")?;
/// let line: Customer = serde_json::from_str(
///     r#"{"customer_id": "M1", "channel": "email", "context": {}}"#).unwrap();
/// assert_eq!(ChannelRule::new(None, &rules)?.channel_of(&line), "email");
/// assert_eq!(ChannelRule::new(Some("call_center"), &rules)?.channel_of(&line), "call_center");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ChannelRule {
    forced: Option<String>,
    default: String,
}

impl ChannelRule {
    /// The rule for a tool given `forced` (or not) over `rules`; a forced
    /// channel `rules` does not have is an error.
    pub fn new(
        forced: Option<&str>,
        rules: &crate::ruleset::RuleSet,
    ) -> Result<ChannelRule, Error> {
        if let Some(c) = forced {
            rules.channel(c)?;
        }
        Ok(ChannelRule {
            forced: forced.map(str::to_string),
            default: rules.default_channel().to_string(),
        })
    }

    /// The channel `customer` is decided on.
    pub fn channel_of<'a>(&'a self, customer: &'a Customer) -> &'a str {
        self.forced
            .as_deref()
            .or(customer.channel.as_deref())
            .unwrap_or(&self.default)
    }

    /// The channel given to the tool, which every line is decided on.
    pub fn forced(&self) -> Option<&str> {
        self.forced.as_deref()
    }

    /// The channel of lines that name none (when no channel is forced).
    pub fn default_channel(&self) -> &str {
        &self.default
    }

    /// The rule in words, for a report's header.
    pub fn describe(&self) -> String {
        match &self.forced {
            Some(c) => format!("{c} (given: every line decided on it)"),
            None => format!("each line's own (lines without one: {})", self.default),
        }
    }
}

/// Read a JSON Lines population file. Errors name the line.
pub fn load_customers(path: impl AsRef<Path>) -> Result<Vec<Customer>, Error> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let c: Customer = serde_json::from_str(line)
            .map_err(|e| Error::InvalidRequest(format!("{}:{}: {e}", path.display(), i + 1)))?;
        out.push(c);
    }
    Ok(out)
}

/// What a simulation measured.
#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    /// The rule set's name.
    pub ruleset: String,
    /// The rule set's content hash.
    pub hash: String,
    /// The channel the tool was given, which every line was decided on;
    /// `None`: each line was decided on its own (see [`ChannelRule`]).
    pub channel: Option<String>,
    /// The channel of lines that name none, when no channel was given.
    pub default_channel: String,
    /// Per channel decided on, in the rule set's order (channels it does
    /// not have last): the totals below, split.
    pub channels: Vec<ChannelTally>,
    /// Customers simulated.
    pub customers: usize,
    /// Decisions made in the timed pass.
    pub decisions: usize,
    /// Requests that failed (bad context, unknown channel...), with the
    /// first few messages.
    pub errors: usize,
    /// Up to five error messages.
    pub error_examples: Vec<String>,
    /// Context attributes the population names but the schema does not
    /// declare (decided without them): each warning, with the number of
    /// lines it was given for.
    pub ignored_attributes: BTreeMap<String, usize>,
    /// Decisions per second in the timed pass (one thread).
    pub decisions_per_sec: f64,
    /// Latency percentiles of `Engine::decide`, nanoseconds.
    pub latency_ns: Latency,
    /// Per action: how often it was chosen at all, and ranked first.
    pub wins: BTreeMap<String, Wins>,
    /// Candidates removed per stage (a candidate is one action offered to
    /// one customer).
    pub funnel: Funnel,
    /// Customers who got no action, and up to ten of their ids.
    pub no_action: usize,
    /// Example customers who got no action.
    pub no_action_examples: Vec<String>,
}

/// One channel's share of a simulation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelTally {
    /// The channel.
    pub channel: String,
    /// Population lines decided on it.
    pub customers: usize,
    /// Of those, requests that failed.
    pub errors: usize,
    /// Actions chosen, over its decisions.
    pub chosen: usize,
    /// The most actions one of its decisions returned (the channel's
    /// limit, or `--limit`, caps it).
    pub most_chosen: usize,
    /// Its customers who got no action.
    pub no_action: usize,
}

/// Latency percentiles in nanoseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest.
    pub max: u64,
}

/// How often an action won.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Wins {
    /// Decisions where it was among the chosen.
    pub chosen: usize,
    /// Decisions where it ranked first.
    pub first: usize,
}

/// The decision funnel: candidates in, removed per stage, ranked, chosen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Funnel {
    /// Candidates considered (actions offered on the channel, per customer).
    pub candidates: usize,
    /// Removed per stage name, in funnel order.
    pub removed: BTreeMap<String, usize>,
    /// Candidates that passed every policy.
    pub ranked: usize,
    /// Candidates chosen (within the limit).
    pub chosen: usize,
}

/// Options of a simulation.
#[derive(Debug, Clone, Default)]
pub struct SimulateOptions {
    /// The channel every line is decided on; default: each line's own
    /// (see [`ChannelRule`]).
    pub channel: Option<String>,
    /// Limit override.
    pub limit: Option<usize>,
    /// Decision time; default: the persona default instant, so runs are
    /// reproducible.
    pub now: Option<Timestamp>,
}

/// Simulate `engine`'s live version over `customers`. The timed pass goes
/// through [`Engine::decide`] (and so the engine's decision log, if it has
/// one); the explained pass that counts the funnel is not logged. `progress` is called
/// with the number of decisions done so far (both passes count).
pub fn simulate(
    engine: &Engine,
    customers: &[Customer],
    opts: &SimulateOptions,
    mut progress: impl FnMut(usize),
) -> Result<SimulationReport, Error> {
    let version = engine.current();
    let rs = version.rules();
    let rule = ChannelRule::new(opts.channel.as_deref(), rs)?;
    let now = match opts.now {
        Some(t) => t,
        None => {
            Timestamp::parse(crate::tools::persona::DEFAULT_NOW).map_err(Error::InvalidRequest)?
        }
    };
    let (names, tally_of) = population_channels(&rule, rs, customers);
    let mut channels: Vec<ChannelTally> = names
        .iter()
        .map(|n| ChannelTally {
            channel: n.to_string(),
            ..ChannelTally::default()
        })
        .collect();
    for &t in &tally_of {
        channels[t].customers += 1;
    }
    let mut report = SimulationReport {
        ruleset: rs.name().to_string(),
        hash: rs.hash().to_string(),
        channel: rule.forced().map(str::to_string),
        default_channel: rule.default_channel().to_string(),
        channels,
        customers: customers.len(),
        decisions: 0,
        errors: 0,
        error_examples: Vec::new(),
        ignored_attributes: BTreeMap::new(),
        decisions_per_sec: 0.0,
        latency_ns: Latency::default(),
        wins: rs
            .action_ids()
            .map(|a| (a.to_string(), Wins::default()))
            .collect(),
        funnel: Funnel::default(),
        no_action: 0,
        no_action_examples: Vec::new(),
    };
    for st in crate::ruleset::Stage::ALL {
        report.funnel.removed.insert(st.as_str().to_string(), 0);
    }

    // Bind every request up front: the timed pass measures decide only.
    // `tallies[i]` is request i's channel in `report.channels`.
    let mut requests = Vec::with_capacity(customers.len());
    let mut tallies = Vec::with_capacity(customers.len());
    for (c, &t) in customers.iter().zip(&tally_of) {
        let raw = RequestJson {
            customer_id: c.customer_id.clone(),
            channel: rule.channel_of(c).to_string(),
            context: c.context.clone(),
            limit: opts.limit.map(|l| l as u64),
            explain: false,
            now: None,
        };
        match raw.bind(rs.schema()) {
            Ok(mut r) => {
                for w in r.warnings() {
                    *report.ignored_attributes.entry(w.to_string()).or_default() += 1;
                }
                r.now = Some(now);
                // Without the hooks' wall-clock budget: a report depends on
                // its inputs, not on how loaded the machine is.
                r.mode = crate::decide::Mode::Simulate;
                requests.push(r);
                tallies.push(t);
            }
            Err(e) => {
                report.channels[t].errors += 1;
                record_error(&mut report, &c.customer_id, &e);
            }
        }
    }

    let mut latencies = Vec::with_capacity(requests.len());
    let started = Instant::now();
    for (i, r) in requests.iter().enumerate() {
        let t = Instant::now();
        let d = engine.decide(r);
        latencies.push(t.elapsed().as_nanos() as u64);
        if let Err(e) = d {
            report.channels[tallies[i]].errors += 1;
            record_error(&mut report, &r.customer_id, &e);
        }
        if i % 256 == 0 {
            progress(i);
        }
    }
    let total = started.elapsed();
    report.decisions = requests.len();
    report.decisions_per_sec = if total.as_secs_f64() > 0.0 {
        requests.len() as f64 / total.as_secs_f64()
    } else {
        0.0
    };
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    report.latency_ns = Latency {
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        max: latencies.last().copied().unwrap_or(0),
    };

    for (i, r) in requests.iter().enumerate() {
        let explained = DecisionRequest {
            explain: true,
            ..r.clone()
        };
        let explained = explained.mode(crate::decide::Mode::Preview);
        let Ok(d) = engine.decide(&explained) else {
            continue;
        };
        let f = &mut report.funnel;
        // Counts only: the ranked list need not be sorted to count it.
        f.candidates += d.filtered().len() + d.ranked.len();
        for x in d.filtered() {
            *f.removed.entry(x.stage().as_str().to_string()).or_default() += 1;
        }
        f.ranked += d.ranked.len();
        f.chosen += d.actions().len();
        let tally = &mut report.channels[tallies[i]];
        tally.chosen += d.actions().len();
        tally.most_chosen = tally.most_chosen.max(d.actions().len());
        tally.no_action += usize::from(d.actions().len() == 0);
        for a in d.actions() {
            let w = report.wins.entry(a.action().to_string()).or_default();
            w.chosen += 1;
            if a.rank() == 1 {
                w.first += 1;
            }
        }
        if d.actions().len() == 0 {
            report.no_action += 1;
            if report.no_action_examples.len() < 10 {
                report.no_action_examples.push(r.customer_id.clone());
            }
        }
        if i % 256 == 0 {
            progress(requests.len() + i);
        }
    }
    Ok(report)
}

/// The channels a population is decided on, in the rule set's order
/// (channels it does not have after, in order of appearance), and each
/// customer's index into them.
pub(crate) fn population_channels<'a>(
    rule: &'a ChannelRule,
    rs: &crate::ruleset::RuleSet,
    customers: &'a [Customer],
) -> (Vec<&'a str>, Vec<usize>) {
    let mut names: Vec<&str> = Vec::new();
    for c in customers {
        let ch = rule.channel_of(c);
        if !names.contains(&ch) {
            names.push(ch);
        }
    }
    let declared: Vec<&str> = rs.channel_names().collect();
    names.sort_by_key(|n| declared.iter().position(|d| d == n).unwrap_or(usize::MAX));
    let index = customers
        .iter()
        .map(|c| {
            let ch = rule.channel_of(c);
            names.iter().position(|n| *n == ch).unwrap_or(0)
        })
        .collect();
    (names, index)
}

fn record_error(report: &mut SimulationReport, customer: &str, e: &Error) {
    report.errors += 1;
    if report.error_examples.len() < 5 {
        report.error_examples.push(format!("{customer}: {e}"));
    }
}
