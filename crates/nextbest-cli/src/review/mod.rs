//! `nextbest review CANDIDATE --baseline LIVE --customers FILE [--log LOG]
//! -o report.html`: the evidence a team lead reads before approving a
//! revision, as one self-contained HTML file (inline CSS and SVG, no
//! script, no network). Its SHA-256 is what approvals sign.
//!
//! Every figure comes from engines built for the review alone (one per
//! version and channel, with empty interaction history and volume
//! counters), so a review never reads or consumes live state: each customer
//! of the population is decided on every channel, by both versions, at the
//! same decision time.

pub mod html;
pub mod rules_diff;
pub mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nextbest::diff::DiffReport;
use nextbest::persona::{load_personas, run_persona};
use nextbest::simulate::{load_customers, Customer};
use nextbest::tools::evaluate::{evaluate, EvaluateOptions, Evaluation};
use nextbest::{Context, Decision, DecisionRequest, Engine, RuleSet, RuleSource, Stage, Timestamp};
use serde::Serialize;

use crate::error::CliError;
use crate::governance::sha256_hex;
use crate::impact::{self, ImpactReport};

/// What `review` is asked.
pub struct ReviewOptions {
    /// The candidate rule directory.
    pub candidate: PathBuf,
    /// The live (baseline) rule directory.
    pub baseline: PathBuf,
    /// The population (JSON Lines).
    pub customers: PathBuf,
    /// Decision logs for the off-policy estimate and impact, oldest first.
    pub logs: Vec<PathBuf>,
    /// The decision time of the simulations.
    pub now: Timestamp,
    /// Example customers per channel.
    pub examples: usize,
    /// The relative lift impact sizes the experiment for.
    pub mde: f64,
}

/// One rule version under review.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// Its directory.
    pub dir: String,
    /// Its rule set's name.
    pub name: String,
    /// Its content hash.
    pub hash: String,
}

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    /// The candidate.
    pub candidate: Side,
    /// The baseline.
    pub baseline: Side,
    /// The population file.
    pub customers_file: String,
    /// Customers in it.
    pub customers: usize,
    /// The decision time (RFC 3339).
    pub now: String,
    /// When the report was made.
    pub generated_at: String,
    /// The rule changes.
    pub changes: rules_diff::RulesDiff,
    /// The candidate's personas, run on both versions.
    pub personas: Vec<PersonaRow>,
    /// Per channel.
    pub channels: Vec<ChannelReview>,
    /// With a log: the off-policy estimates of both versions.
    pub off_policy: Option<OffPolicy>,
    /// With a log: impact per arm.
    pub impact: Option<ImpactReport>,
}

/// A persona's result on both versions.
#[derive(Debug, Clone, Serialize)]
pub struct PersonaRow {
    /// The persona file's name.
    pub file: String,
    /// What it is.
    pub description: Option<String>,
    /// On the baseline.
    pub baseline: PersonaOutcome,
    /// On the candidate.
    pub candidate: PersonaOutcome,
}

/// A persona's result on one version.
#[derive(Debug, Clone, Serialize)]
pub struct PersonaOutcome {
    /// Whether every expectation held.
    pub passed: bool,
    /// The chosen actions.
    pub actions: Vec<String>,
    /// What failed.
    pub failures: Vec<String>,
}

/// One channel, both versions.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelReview {
    /// The channel.
    pub channel: String,
    /// The baseline's decisions (none if it has no such channel).
    pub before: Option<ChannelRun>,
    /// The candidate's.
    pub after: Option<ChannelRun>,
    /// Customers the candidate leaves without an action that the baseline
    /// served, and the reverse.
    pub lost: ValueLost,
    /// The core's diff of the two versions' decisions (counts and the
    /// actions whose wins moved).
    pub diff: Option<DiffReport>,
    /// Customers whose decision changes, those whose first action changes
    /// first, with every dropped and added action explained.
    pub examples: Vec<ChangedDecision>,
}

/// One customer whose decision changes.
#[derive(Debug, Clone, Serialize)]
pub struct ChangedDecision {
    /// The customer.
    pub customer_id: String,
    /// Chosen by the baseline.
    pub before: Vec<String>,
    /// Chosen by the candidate.
    pub after: Vec<String>,
    /// Why each dropped action went and each new one came.
    pub why: String,
}

/// One version's decisions on one channel.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelRun {
    /// Customers decided.
    pub decisions: usize,
    /// Customers whose context this version refused, with examples.
    pub errors: usize,
    /// Up to three messages.
    pub error_examples: Vec<String>,
    /// Candidates (actions offered on the channel, per customer).
    pub candidates: usize,
    /// Removed per stage, funnel order.
    pub removed: Vec<(String, usize)>,
    /// Passed every policy.
    pub ranked: usize,
    /// Chosen.
    pub chosen: usize,
    /// Times each action was chosen.
    pub mix: BTreeMap<String, usize>,
    /// Customers with no action.
    pub no_action: usize,
    /// Those customers by where their last candidate was removed.
    pub blocked: Vec<Blocked>,
    /// Σ propensity × value of the chosen actions.
    pub expected_value: f64,
}

/// Customers left without an action at one stage, by one policy.
#[derive(Debug, Clone, Serialize)]
pub struct Blocked {
    /// The stage that removed their last candidate.
    pub stage: String,
    /// The policy (condition, contact policy, ...).
    pub policy: String,
    /// How many customers.
    pub customers: usize,
    /// The expected value (P × V) the baseline had chosen for them (in
    /// [`ValueLost`]; 0 in a [`ChannelRun`]).
    pub value: f64,
}

/// What the change costs and gains in customers served.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValueLost {
    /// Customers served by the baseline and left with nothing by the
    /// candidate.
    pub newly_without: usize,
    /// The expected value the baseline had chosen for them.
    pub value_lost: f64,
    /// Them by the candidate's blocking stage and policy, largest first.
    pub by_policy: Vec<Blocked>,
    /// Customers with nothing before who get an action now.
    pub newly_served: usize,
    /// The expected value the candidate chooses for them.
    pub value_gained: f64,
    /// Example customers newly without an action.
    pub examples: Vec<String>,
}

/// The off-policy estimates of both versions from the same log.
#[derive(Debug, Clone, Serialize)]
pub struct OffPolicy {
    /// The log files.
    pub logs: Vec<String>,
    /// The candidate's.
    pub candidate: Evaluation,
    /// The baseline's (its own acceptance rate, re-estimated the same way).
    pub baseline: Evaluation,
}

/// Run the review and write the report; print its SHA-256.
pub fn run(opts: &ReviewOptions, out: &Path) -> Result<ExitCode, CliError> {
    let review = collect(opts)?;
    let page = html::render(&review);
    std::fs::write(out, page.as_bytes()).map_err(|e| CliError::io(out, e))?;
    let changed: usize = review
        .channels
        .iter()
        .filter_map(|c| c.diff.as_ref())
        .map(|d| d.changed)
        .sum();
    let decisions: usize = review
        .channels
        .iter()
        .filter_map(|c| c.diff.as_ref())
        .map(|d| d.customers)
        .sum();
    println!(
        "review of {} ({}) against {} ({}): {} rule change(s), {} of {} decisions change across {} channel(s)",
        review.candidate.dir,
        &review.candidate.hash[..12],
        review.baseline.dir,
        &review.baseline.hash[..12],
        review.changes.entities.len() + review.changes.scripts.len(),
        changed,
        decisions,
        review.channels.len()
    );
    let failing = review
        .personas
        .iter()
        .filter(|p| !p.candidate.passed)
        .count();
    println!(
        "personas: {} of {} pass on the candidate",
        review.personas.len() - failing,
        review.personas.len()
    );
    println!("wrote {} ({} bytes)", out.display(), page.len());
    println!("sha256 {}", sha256_hex(page.as_bytes()));
    Ok(ExitCode::SUCCESS)
}

/// Gather every figure of the report.
pub fn collect(opts: &ReviewOptions) -> Result<Review, CliError> {
    let side = |dir: &Path| -> Result<(Side, RuleSource), CliError> {
        let src = RuleSource::from_dir(dir)?;
        let rs = RuleSet::compile(&src).map_err(|e| located(dir, e))?;
        let side = Side {
            dir: dir.display().to_string(),
            name: rs.name().to_string(),
            hash: rs.hash().to_string(),
        };
        Ok((side, src))
    };
    let (candidate, csrc) = side(&opts.candidate)?;
    let (baseline, bsrc) = side(&opts.baseline)?;
    let customers = load_customers(&opts.customers)?;
    let mut channels = Vec::new();
    for ch in channel_names(&opts.baseline, &opts.candidate)? {
        channels.push(review_channel(opts, &ch, &customers)?);
    }
    let (off_policy, impact) = match opts.logs.is_empty() {
        true => (None, None),
        false => (
            Some(off_policy(opts)?),
            Some(impact::impact(&opts.logs, opts.mde)?),
        ),
    };
    Ok(Review {
        candidate,
        baseline,
        customers_file: opts.customers.display().to_string(),
        customers: customers.len(),
        now: format_time(opts.now),
        generated_at: crate::governance::now_rfc3339(),
        changes: rules_diff::diff(&bsrc, &csrc),
        personas: personas(opts)?,
        channels,
        off_policy,
        impact,
    })
}

fn located(dir: &Path, e: nextbest::Error) -> CliError {
    match e.rule_errors() {
        Some(errs) => CliError::refused(format!(
            "{} does not load: {}",
            dir.display(),
            errs.iter()
                .map(|r| format!(
                    "{}:{}:{}: {}",
                    dir.join(&r.location.file).display(),
                    r.location.line,
                    r.location.column,
                    r.message
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        None => CliError::Core(e),
    }
}

fn format_time(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.unix_seconds())
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.unix_seconds().to_string())
}

/// The baseline's channels in declared order, then the candidate's new ones.
fn channel_names(baseline: &Path, candidate: &Path) -> Result<Vec<String>, CliError> {
    let (b, c) = (RuleSet::from_dir(baseline)?, RuleSet::from_dir(candidate)?);
    let mut names: Vec<String> = b.channel_names().map(str::to_string).collect();
    for n in c.channel_names() {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    Ok(names)
}

/// An engine for the review alone: nothing it decides touches live state.
fn fresh_engine(dir: &Path, channel: &str) -> Result<Option<Engine>, CliError> {
    let engine = Engine::from_dir(dir)?;
    let has = engine
        .current()
        .rules()
        .channel_names()
        .any(|c| c == channel);
    Ok(has.then_some(engine))
}

fn review_channel(
    opts: &ReviewOptions,
    channel: &str,
    customers: &[Customer],
) -> Result<ChannelReview, CliError> {
    let (eb, ea) = (
        fresh_engine(&opts.baseline, channel)?,
        fresh_engine(&opts.candidate, channel)?,
    );
    let (mut before, mut after) = (
        eb.as_ref().map(|_| ChannelRun::default()),
        ea.as_ref().map(|_| ChannelRun::default()),
    );
    let mut tallies = (BTreeMap::new(), BTreeMap::new());
    let mut lost = ValueLost::default();
    let mut lost_by: BTreeMap<(String, String), (usize, f64)> = BTreeMap::new();
    let mut examples = (Vec::new(), Vec::new());
    for c in customers {
        let db = eb
            .as_ref()
            .zip(before.as_mut())
            .and_then(|(e, run)| decide_into(e, run, &mut tallies.0, c, channel, opts.now));
        let da = ea
            .as_ref()
            .zip(after.as_mut())
            .and_then(|(e, run)| decide_into(e, run, &mut tallies.1, c, channel, opts.now));
        if let (Some(b), Some(a)) = (&db, &da) {
            collect_example(&mut examples, opts.examples, &c.customer_id, b, a);
            match (b.actions().len(), a.actions().len()) {
                (n, 0) if n > 0 => {
                    lost.newly_without += 1;
                    let v = expected_value(b);
                    lost.value_lost += v;
                    let slot = lost_by.entry(blocked_by(a)).or_default();
                    slot.0 += 1;
                    slot.1 += v;
                    if lost.examples.len() < opts.examples {
                        lost.examples.push(c.customer_id.clone());
                    }
                }
                (0, n) if n > 0 => {
                    lost.newly_served += 1;
                    lost.value_gained += expected_value(a);
                }
                _ => {}
            }
        }
    }
    lost.by_policy = sorted_blocked(lost_by);
    for (run, tally) in [(before.as_mut(), tallies.0), (after.as_mut(), tallies.1)] {
        if let Some(run) = run {
            run.blocked = sorted_blocked(tally);
        }
    }
    let diff = match (
        before.is_some() && after.is_some(),
        fresh_engine(&opts.baseline, channel)?,
        fresh_engine(&opts.candidate, channel)?,
    ) {
        (true, Some(b), Some(a)) => Some(nextbest::diff::diff(
            &b,
            &a,
            customers,
            channel,
            opts.now,
            opts.examples,
        )?),
        _ => None,
    };
    let examples = examples
        .0
        .into_iter()
        .chain(examples.1)
        .take(opts.examples)
        .collect();
    Ok(ChannelReview {
        channel: channel.to_string(),
        before,
        after,
        lost,
        diff,
        examples,
    })
}

/// Keep up to `max` changed decisions whose first action changes (`.0`) and
/// up to `max` others (`.1`).
fn collect_example(
    out: &mut (Vec<ChangedDecision>, Vec<ChangedDecision>),
    max: usize,
    customer: &str,
    b: &Decision,
    a: &Decision,
) {
    let (lb, la) = (b.action_ids(), a.action_ids());
    if lb == la {
        return;
    }
    let list = if lb.first() != la.first() {
        &mut out.0
    } else {
        &mut out.1
    };
    if list.len() < max {
        list.push(ChangedDecision {
            customer_id: customer.to_string(),
            before: lb.iter().map(|x| x.to_string()).collect(),
            after: la.iter().map(|x| x.to_string()).collect(),
            why: why_changed(b, a),
        });
    }
}

/// Why the candidate's decision differs: where each dropped action went,
/// where each new one came from.
fn why_changed(b: &Decision, a: &Decision) -> String {
    let (lb, la) = (b.action_ids(), a.action_ids());
    let mut parts = Vec::new();
    for x in lb.iter().filter(|x| !la.contains(x)) {
        parts.push(format!("`{x}` {}", whereabouts(a, x, "now")));
    }
    for x in la.iter().filter(|x| !lb.contains(x)) {
        parts.push(format!(
            "`{x}` comes in (before it {})",
            whereabouts(b, x, "was")
        ));
    }
    if parts.is_empty() {
        parts.push("the same actions in another order (their priorities changed)".into());
    }
    parts.join("; ")
}

/// Where action `x` stands in decision `d`: removed by which policy, or
/// ranked below the limit.
fn whereabouts(d: &Decision, x: &str, tense: &str) -> String {
    if let Some(f) = d.filtered().find(|f| f.action() == x) {
        let why = match (f.condition(), f.reason()) {
            (Some(c), Some(r)) => format!(" by {} `{c}` ({r})", f.level().as_str()),
            (Some(c), None) => format!(" by {} `{c}`", f.level().as_str()),
            (None, Some(r)) => format!(" ({r})"),
            (None, None) => String::new(),
        };
        return format!(
            "{tense} removed at {}{why}",
            f.stage().as_str().replace('_', " ")
        );
    }
    if let Some(r) = d.ranked().find(|r| r.action() == x) {
        return format!(
            "{tense} ranked {} with priority {:.4}, below the limit",
            r.rank(),
            r.priority()
        );
    }
    format!("{tense} not offered on this channel")
}

/// Decide for one customer, explained, and count it into `run`.
fn decide_into(
    engine: &Engine,
    run: &mut ChannelRun,
    blocked: &mut BTreeMap<(String, String), (usize, f64)>,
    c: &Customer,
    channel: &str,
    now: Timestamp,
) -> Option<Decision> {
    let decided = Context::from_json(&engine.schema(), &c.context).and_then(|ctx| {
        engine.decide(
            &DecisionRequest::new(&c.customer_id, channel, ctx)
                .explain(true)
                .at(now),
        )
    });
    let d = match decided {
        Ok(d) => d,
        Err(e) => {
            run.errors += 1;
            if run.error_examples.len() < 3 {
                run.error_examples.push(format!("{}: {e}", c.customer_id));
            }
            return None;
        }
    };
    run.decisions += 1;
    run.candidates += d.filtered().len() + d.ranked().len();
    if run.removed.is_empty() {
        run.removed = Stage::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
    }
    for f in d.filtered() {
        if let Some(slot) = run
            .removed
            .iter_mut()
            .find(|(s, _)| s == f.stage().as_str())
        {
            slot.1 += 1;
        }
    }
    run.ranked += d.ranked().len();
    run.chosen += d.actions().len();
    for a in d.actions() {
        *run.mix.entry(a.action().to_string()).or_default() += 1;
    }
    run.expected_value += expected_value(&d);
    if d.actions().len() == 0 {
        run.no_action += 1;
        blocked.entry(blocked_by(&d)).or_default().0 += 1;
    }
    Some(d)
}

fn expected_value(d: &Decision) -> f64 {
    d.actions().map(|a| a.propensity() * a.value()).sum()
}

/// Where a customer with nothing lost their last candidate: the furthest
/// stage any candidate reached, and the policy that removed it there.
fn blocked_by(d: &Decision) -> (String, String) {
    if d.ranked().len() > 0 {
        return (
            "arbitration".into(),
            "passed every policy; the strategy's select chose none".into(),
        );
    }
    let rank = |s: Stage| Stage::ALL.iter().position(|x| *x == s).unwrap_or(0);
    let Some(f) = d.filtered().max_by_key(|f| rank(f.stage())) else {
        return (
            "offer".into(),
            "no action is offered on this channel".into(),
        );
    };
    let policy = match (f.condition(), f.reason()) {
        (Some(c), Some(r)) => format!("{} `{c}` ({r})", f.level().as_str()),
        (Some(c), None) => format!("{} `{c}`", f.level().as_str()),
        (None, Some(r)) => r,
        (None, None) => f.stage().as_str().replace('_', " "),
    };
    (f.stage().as_str().to_string(), policy)
}

fn sorted_blocked(map: BTreeMap<(String, String), (usize, f64)>) -> Vec<Blocked> {
    let mut v: Vec<Blocked> = map
        .into_iter()
        .map(|((stage, policy), (customers, value))| Blocked {
            stage,
            policy,
            customers,
            value,
        })
        .collect();
    v.sort_by(|a, b| b.customers.cmp(&a.customers).then(a.stage.cmp(&b.stage)));
    v
}

/// The candidate's personas, on both versions (engines of their own).
fn personas(opts: &ReviewOptions) -> Result<Vec<PersonaRow>, CliError> {
    let list = load_personas(&opts.candidate)?;
    let (eb, ea) = (
        Engine::from_dir(&opts.baseline)?,
        Engine::from_dir(&opts.candidate)?,
    );
    let run = |e: &Engine, p| match run_persona(e, p) {
        Ok(r) => PersonaOutcome {
            passed: r.passed(),
            actions: r.actions.clone(),
            failures: r.failures,
        },
        Err(err) => PersonaOutcome {
            passed: false,
            actions: Vec::new(),
            failures: vec![err.to_string()],
        },
    };
    Ok(list
        .iter()
        .map(|p| PersonaRow {
            file: p
                .file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            description: p.description.clone(),
            baseline: run(&eb, p),
            candidate: run(&ea, p),
        })
        .collect())
}

fn off_policy(opts: &ReviewOptions) -> Result<OffPolicy, CliError> {
    let eval = |dir: &Path| {
        evaluate(
            &opts.logs,
            &Engine::from_dir(dir)?,
            &EvaluateOptions::default(),
        )
    };
    Ok(OffPolicy {
        logs: opts.logs.iter().map(|p| p.display().to_string()).collect(),
        candidate: eval(&opts.candidate)?,
        baseline: eval(&opts.baseline)?,
    })
}
