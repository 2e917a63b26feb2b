//! Off-policy evaluation: how would a candidate rule version have done on
//! logged traffic? (`nextbest evaluate LOG --rules DIR`.)
//!
//! For every logged decision that put an action first, with the
//! probability `p` that the logging policy put it first (the log's
//! `selection_probability`; epsilon-greedy learning or the random control
//! group make it less than 1), the candidate re-decides the same request
//! with the same engine state (the logged blocks and learning evidence).
//! Its reward `r` is 1 when an outcome joined by `decision_id` says the
//! customer accepted the logged first action (the success kinds are
//! configurable), else 0. With the weight `w = 1[candidate's first = logged
//! first] / p`:
//!
//! - inverse propensity scoring: `IPS = Σ w·r / n`, unbiased when `p > 0`
//!   wherever the candidate can choose; standard error `sd(w·r) / √n`;
//! - self-normalised: `SNIPS = Σ w·r / Σ w`, slightly biased but with much
//!   less variance; standard error by the delta method,
//!   `√(Σ w²·(r − SNIPS)²) / Σ w`.
//!
//! A log in which no outcome answers a logged decision measures nothing:
//! its rates are left out (`None`), with a warning, never reported as 0.
//!
//! Intervals are normal at 95%. The effective sample size `(Σ w)² / Σ w²`
//! says how many logged decisions the estimate is really worth. A candidate
//! that draws (Thompson, epsilon-greedy) is evaluated with draws seeded
//! independently of the logging policy's, which keeps the estimate
//! unbiased.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde::Serialize;

use super::replay::logged_request;
use crate::audit::reader::{LogLine, LogReader, ReadProblems};
use crate::base::Error;
use crate::base::OutcomeKind;
use crate::engine::Engine;

/// The normal quantile of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// An estimate with its 95% confidence interval.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// Standard error.
    pub std_error: f64,
    /// Lower end of the 95% interval.
    pub low: f64,
    /// Upper end of the 95% interval.
    pub high: f64,
}

impl Estimate {
    fn new(value: f64, std_error: f64) -> Estimate {
        Estimate {
            value,
            std_error,
            low: value - Z95 * std_error,
            high: value + Z95 * std_error,
        }
    }
}

/// What `evaluate` found.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The candidate rule set's name.
    pub candidate: String,
    /// The candidate's content hash.
    pub candidate_hash: String,
    /// The outcome kinds that count as success.
    pub success: Vec<String>,
    /// The files read, in the order read (rotated files oldest first).
    pub files: Vec<PathBuf>,
    /// Records read (in each of the two passes).
    pub records: usize,
    /// Logged decisions.
    pub decisions: usize,
    /// Decisions used: an action was put first (and re-deciding worked).
    pub used: usize,
    /// Used decisions with a success outcome.
    pub successes: usize,
    /// Used decisions whose log has no selection probability: taken as
    /// deterministic (p = 1). Where the candidate disagrees with such a
    /// policy, the log says nothing about the candidate.
    pub deterministic: usize,
    /// Used decisions where the candidate put the logged action first.
    pub matched: usize,
    /// Logged decisions left out: a random choice whose probability the
    /// log does not hold (Thompson sampling; an exploring choice that a
    /// volume constraint replaced).
    pub unknown_probability: usize,
    /// Used decisions the logging policy made with certainty (probability
    /// one) where the candidate chooses otherwise: the log says nothing
    /// about the candidate's choice there (they weigh 0).
    pub unsupported: usize,
    /// Outcomes that answer a logged decision (joined by decision id).
    /// Without any, the log says nothing about acceptance: the three
    /// estimates are `None`.
    pub joined_outcomes: usize,
    /// The logging policy's own success rate (on-policy).
    pub logged: Option<Estimate>,
    /// Inverse propensity scoring.
    pub ips: Option<Estimate>,
    /// Self-normalised inverse propensity scoring.
    pub snips: Option<Estimate>,
    /// `(Σ w)² / Σ w²`.
    pub effective_sample_size: f64,
    /// The largest weight.
    pub max_weight: f64,
    /// Decisions the candidate could not re-decide, first few.
    pub errors: Vec<String>,
    /// Decisions logged with masked attributes the candidate reads (it
    /// decides them without those attributes).
    pub masked: usize,
    /// Outcomes that name no logged decision.
    pub unjoined_outcomes: usize,
    /// Damaged lines in the log.
    pub read: ReadProblems,
    /// What to be careful about.
    pub warnings: Vec<String>,
}

/// Options of [`evaluate`].
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    /// The outcome kinds that count as success (default: accepted).
    pub success: Vec<OutcomeKind>,
}

impl Default for EvaluateOptions {
    fn default() -> EvaluateOptions {
        EvaluateOptions {
            success: vec![OutcomeKind::Accepted],
        }
    }
}

/// Estimate the success rate `candidate` would have had on the decisions in
/// the log files `paths`: files, directories or patterns of rotated files,
/// put in order by [`crate::audit::reader::log_files`].
///
/// The log is read twice, a record at a time: first its outcomes (keeping
/// the decision ids and actions of the successes, and the ids outcomes
/// name), then its decisions. Memory grows with the outcomes, not with
/// the decisions or the size of the records.
pub fn evaluate(
    paths: &[PathBuf],
    candidate: &Engine,
    opts: &EvaluateOptions,
) -> Result<Evaluation, Error> {
    let files = crate::audit::reader::log_files(paths)?;
    let version = candidate.current();
    let rules = version.rules();
    let schema = candidate.schema();
    let mut ev = Evaluation {
        candidate: rules.name().to_string(),
        candidate_hash: rules.hash().to_string(),
        success: opts
            .success
            .iter()
            .map(|k| k.as_str().to_string())
            .collect(),
        files: files.clone(),
        records: 0,
        decisions: 0,
        used: 0,
        successes: 0,
        deterministic: 0,
        matched: 0,
        unknown_probability: 0,
        unsupported: 0,
        joined_outcomes: 0,
        logged: None,
        ips: None,
        snips: None,
        effective_sample_size: 0.0,
        max_weight: 0.0,
        errors: Vec::new(),
        masked: 0,
        unjoined_outcomes: 0,
        read: ReadProblems::default(),
        warnings: Vec::new(),
    };

    // First pass: the outcomes. Successes by (decision id, action), and
    // how many outcomes name each decision id (to count those that name
    // none in the log).
    let mut succeeded: HashSet<(String, String)> = HashSet::new();
    let mut outcome_ids: HashMap<String, usize> = HashMap::new();
    let mut reader = LogReader::of_files(files.clone());
    for l in reader.by_ref() {
        let l = l?;
        let r = &l.record;
        if r["kind"] != "outcome" {
            continue;
        }
        let (Some(id), Some(action), Some(kind)) = (
            r["decision_id"].as_str(),
            r["action"].as_str(),
            r["outcome"].as_str().and_then(OutcomeKind::parse),
        ) else {
            ev.unjoined_outcomes += 1;
            continue;
        };
        *outcome_ids.entry(id.to_string()).or_default() += 1;
        if opts.success.contains(&kind) {
            succeeded.insert((id.to_string(), action.to_string()));
        }
    }

    // Second pass: the decisions, each re-decided by the candidate.
    let mut samples = Samples::default();
    let mut masked_names: HashMap<String, bool> = HashMap::new();
    let mut reader = LogReader::of_files(files);
    for l in reader.by_ref() {
        let l = l?;
        if l.record["kind"] != "decision" {
            continue;
        }
        ev.decisions += 1;
        if let Some(id) = l.record["decision_id"].as_str() {
            // Joined: its outcomes are no longer unjoined.
            ev.joined_outcomes += outcome_ids.remove(id).unwrap_or(0);
        }
        let Some((weight, reward)) = weigh(
            &l,
            (candidate, rules, &schema),
            &succeeded,
            &mut masked_names,
            &mut ev,
        ) else {
            continue;
        };
        samples.add(weight, reward);
    }
    ev.records = reader.records();
    ev.read = reader.into_problems();
    ev.unjoined_outcomes += outcome_ids.values().sum::<usize>();
    if ev.joined_outcomes == 0 {
        ev.warnings.push(format!(
            "no outcome in the log answers any of its {} decisions ({} outcome records): \
             nothing was measured, so no rate is estimated; record outcomes (with the \
             decision_id they answer) into the log",
            ev.decisions, ev.unjoined_outcomes
        ));
    }
    estimate(&mut ev, &samples);
    Ok(ev)
}

/// One logged decision's weight (the probability that the candidate puts
/// the logged first action first, over the logging policy's) and reward,
/// or `None` if it cannot be used (counted in `ev`).
fn weigh(
    l: &LogLine,
    (candidate, rules, schema): (
        &Engine,
        &crate::ruleset::RuleSet,
        &std::sync::Arc<crate::context::schema::Schema>,
    ),
    succeeded: &HashSet<(String, String)>,
    masked_names: &mut HashMap<String, bool>,
    ev: &mut Evaluation,
) -> Option<(f64, f64)> {
    let r = &l.record;
    let id = r["decision_id"].as_str()?;
    let first = r["actions"].get(0).and_then(|a| a.as_str())?;
    let p = match r["selection_probability"].as_f64() {
        Some(p) if p > 0.0 && p <= 1.0 => p,
        Some(p) => {
            if ev.errors.len() < 5 {
                ev.errors.push(format!(
                    "{}:{}: selection_probability {p} is not in (0, 1]",
                    l.file.display(),
                    l.line
                ));
            }
            return None;
        }
        // A random choice whose probability was not logged (a Thompson
        // draw, or an exploring choice a volume constraint replaced): no
        // weight can be given, so it is left out and counted.
        None if !r["seed"].is_null() => {
            ev.unknown_probability += 1;
            return None;
        }
        None => {
            ev.deterministic += 1;
            1.0
        }
    };
    let (mut req, mut replaying, masked) = match logged_request(schema, r) {
        Ok(x) => x,
        Err(e) => {
            if ev.errors.len() < 5 {
                ev.errors
                    .push(format!("{}:{}: {e}", l.file.display(), l.line));
            }
            return None;
        }
    };
    // The candidate runs its own hooks in full and draws independently
    // of the logging policy.
    replaying.timed_out.clear();
    // Derived from the logged seed where there is one, so that the same
    // traffic evaluates the same way whatever its decision ids.
    replaying.seed = Some(match replaying.seed {
        Some(s) => xxhash_rust::xxh3::xxh3_64_with_seed(&s.to_le_bytes(), 0x0ff_9011c7),
        None => xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), 0x0ff_9011c7),
    });
    // Explained: the candidate's survivors give its exact probability in
    // a random-eligible control arm.
    req.explain = true;
    let d = match candidate
        .decide(&req.mode(crate::decide::Mode::Replay(std::sync::Arc::new(replaying))))
    {
        Ok(d) => d,
        Err(e) => {
            if ev.errors.len() < 5 {
                ev.errors
                    .push(format!("{}:{}: {e}", l.file.display(), l.line));
            }
            return None;
        }
    };
    if masked.iter().any(|m| {
        *masked_names
            .entry(m.clone())
            .or_insert_with(|| rules.reads_attribute(m))
    }) {
        ev.masked += 1;
    }
    let matched = d.actions().next().is_some_and(|a| a.action() == first);
    // The probability that the candidate puts the logged action first:
    // exact for its random-eligible control arm (it would draw again,
    // uniformly over its survivors), else its (independently seeded)
    // choice.
    let target = if d.arm() == crate::decide::decision::Arm::Control {
        match d.selection_probability() {
            Some(q) if d.ranked().any(|a| a.action() == first) => q,
            _ => 0.0,
        }
    } else if matched {
        1.0
    } else {
        0.0
    };
    if target == 0.0 && p >= 1.0 {
        ev.unsupported += 1;
    }
    let reward = if succeeded.contains(&(id.to_string(), first.to_string())) {
        1.0
    } else {
        0.0
    };
    ev.used += 1;
    ev.successes += usize::from(reward > 0.0);
    ev.matched += usize::from(matched);
    Some((target / p, reward))
}

/// Running sums of the used decisions' weights `w` and rewards `r`: what
/// the estimates need, whatever the number of decisions.
#[derive(Debug, Default)]
struct Samples {
    n: f64,
    sum_w: f64,
    sum_w2: f64,
    /// Σ w²·r and Σ w²·r², for SNIPS's standard error.
    sum_w2r: f64,
    sum_w2r2: f64,
    /// Mean and sum of squared deviations of `w·r` (Welford), for IPS.
    mean_wr: f64,
    m2_wr: f64,
    max_w: f64,
}

impl Samples {
    fn add(&mut self, w: f64, r: f64) {
        self.n += 1.0;
        self.sum_w += w;
        self.sum_w2 += w * w;
        self.sum_w2r += w * w * r;
        self.sum_w2r2 += w * w * r * r;
        let x = w * r;
        let delta = x - self.mean_wr;
        self.mean_wr += delta / self.n;
        self.m2_wr += delta * (x - self.mean_wr);
        self.max_w = self.max_w.max(w);
    }
}

/// The estimates and their warnings from the used decisions.
fn estimate(ev: &mut Evaluation, samples: &Samples) {
    if ev.unknown_probability > 0 {
        ev.warnings.push(format!(
            "{} random decisions were left out: their selection probability is not in the log \
             (Thompson sampling does not log one; use epsilon_greedy to evaluate from logs)",
            ev.unknown_probability
        ));
    }
    let n = samples.n;
    if n == 0.0 {
        ev.warnings.push(
            "no logged decision put an action first with a usable selection probability".into(),
        );
        return;
    }
    let mean_r = ev.successes as f64 / n;
    ev.logged = Some(Estimate::new(mean_r, (mean_r * (1.0 - mean_r) / n).sqrt()));
    let ips = samples.mean_wr;
    let var = samples.m2_wr / (n - 1.0).max(1.0);
    ev.ips = Some(Estimate::new(ips, (var / n).sqrt()));
    ev.max_weight = samples.max_w;
    if samples.sum_w > 0.0 {
        let snips = ips * n / samples.sum_w;
        // Σ w²·(r − SNIPS)², expanded.
        let squares =
            samples.sum_w2r2 - 2.0 * snips * samples.sum_w2r + snips * snips * samples.sum_w2;
        let se = squares.max(0.0).sqrt() / samples.sum_w;
        ev.snips = Some(Estimate::new(snips, se));
        ev.effective_sample_size = samples.sum_w * samples.sum_w / samples.sum_w2;
    } else {
        ev.warnings.push(
            "the candidate never put the logged action first: the log says nothing about it (no support)"
                .into(),
        );
    }
    if ev.unsupported > 0 {
        ev.warnings.push(format!(
            "{} of {} decisions were made with certainty by the logging policy and differently by \
             the candidate: the log cannot say how the candidate's choice would have done there \
             (IPS counts them as failures; SNIPS leaves them out)",
            ev.unsupported, ev.used
        ));
    }
    if ev.deterministic > 0 {
        ev.warnings.push(format!(
            "{} of {} decisions were logged without a selection probability (a deterministic policy): \
             they only inform the estimate where the candidate agrees with them; log with \
             epsilon_greedy learning to explore",
            ev.deterministic, ev.used
        ));
    }
    if ev.effective_sample_size > 0.0 && ev.effective_sample_size < 100.0 {
        ev.warnings.push(format!(
            "effective sample size {:.0}: the intervals are rough",
            ev.effective_sample_size
        ));
    }
    if ev.masked > 0 {
        ev.warnings.push(format!(
            "{} decisions were logged with masked attributes the candidate reads; it decided them without those attributes",
            ev.masked
        ));
    }
    if ev.joined_outcomes == 0 {
        // Every reward would be 0 for want of evidence, not by measurement.
        (ev.logged, ev.ips, ev.snips) = (None, None, None);
    }
}
