//! The closed-loop learning demo: `nextbest simulate DIR --learn`.
//!
//! Simulated customers answer the engine's offers with hidden true
//! acceptance rates per action and segment, which the engine never sees.
//! Each policy (static starting propensities, and each learning mode) runs
//! on its own engine over the same customers, rounds and random responses
//! (common random numbers), so their differences are the policies' alone.
//!
//! Per decision the engine returns its ranked survivors (after every
//! engagement and contact policy); the customer answers the first action.
//! The *oracle* ranks the same survivors with the true rate in place of the
//! propensity, `expected value = true rate × C × V × L` (strictly, the
//! decision's priority with the propensity factor replaced, so strategy
//! adjustments count too). Per decision:
//!
//! - *best*: the engine's first action is the oracle's first (ties count);
//! - *regret*: the oracle's expected value minus the chosen action's.
//!
//! Cumulative regret that flattens means the policy has found the best
//! actions; a static policy's grows linearly for as long as its starting
//! propensities are wrong. Learning is per action and channel, not per
//! segment, so a gap that only segments explain remains for every policy.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Customer;
use crate::base::Error;
use crate::base::Timestamp;
use crate::base::{Outcome, OutcomeKind};
use crate::decide::request::RequestJson;
use crate::engine::Engine;
use crate::ruleset::learning::{Learning, Mode};
use crate::ruleset::RuleSet;

/// A policy the demo compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    /// No learning: rank by the starting propensities.
    Static,
    /// Learning, ranking by the Beta posterior mean.
    PosteriorMean,
    /// Learning, ranking by a seeded Thompson draw.
    Thompson,
    /// Learning, posterior mean with epsilon-greedy exploration.
    EpsilonGreedy,
    /// The rule set's contextual model, ranking by its mean.
    Contextual,
    /// The rule set's contextual model, ranking by a seeded draw.
    ContextualThompson,
}

impl Policy {
    /// Every policy, in report order.
    pub const ALL: [Policy; 6] = [
        Policy::Static,
        Policy::PosteriorMean,
        Policy::Thompson,
        Policy::EpsilonGreedy,
        Policy::Contextual,
        Policy::ContextualThompson,
    ];

    /// Whether the policy is the rule set's contextual model (run only on
    /// rule sets that declare one).
    pub fn contextual(self) -> bool {
        matches!(self, Policy::Contextual | Policy::ContextualThompson)
    }

    /// The policy's name (`static`, or the `[learning]` mode's name).
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Static => "static",
            Policy::PosteriorMean => "posterior_mean",
            Policy::Thompson => "thompson",
            Policy::EpsilonGreedy => "epsilon_greedy",
            Policy::Contextual => "contextual",
            Policy::ContextualThompson => "contextual_thompson",
        }
    }

    /// Parse a policy name.
    pub fn parse(s: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The hidden acceptance rates: a truth file, or a seeded perturbation of
/// the starting propensities.
///
/// The truth file (`DIR/truth.toml` by default) is TOML:
///
/// ```toml
/// segment = "segment"   # the context attribute whose value picks a rate
/// scale = 1.0           # unlisted actions: starting propensity × scale
///
/// [actions.CARD_PLATINUM]
/// default = 0.01        # any segment not listed
/// affluent = 0.08
/// premier = 0.12
///
/// [actions.INS_TRAVEL]
/// scale = 3.0           # starting propensity × 3, in every segment
/// ```
///
/// Without a file, every (action, segment) pair accepts at its starting
/// propensity times a factor drawn log-uniformly from [1/3, 3] with the
/// simulation's seed: starting propensities that are right only to within
/// a factor of three, as they are in practice.
#[derive(Debug, Clone)]
pub struct Truth {
    /// Where the rates came from, for the report.
    pub source: String,
    segment: Option<String>,
    scale: f64,
    actions: HashMap<String, ActionTruth>,
    perturb_seed: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct ActionTruth {
    default: Option<f64>,
    scale: Option<f64>,
    by_segment: HashMap<String, f64>,
}

impl ActionTruth {
    /// The rate of a segment key: the key itself, else (several
    /// attributes) the first key with `*` for some of its parts that
    /// matches, fewest `*` first.
    fn segment_rate(&self, segment: &str) -> Option<f64> {
        if let Some(r) = self.by_segment.get(segment) {
            return Some(*r);
        }
        let parts: Vec<&str> = segment.split('/').collect();
        if parts.len() < 2 {
            return None;
        }
        let n = parts.len();
        let mut masks: Vec<u32> = (1..(1u32 << n)).collect();
        masks.sort_by_key(|m| (m.count_ones(), *m));
        masks.into_iter().find_map(|m| {
            let key: Vec<&str> = parts
                .iter()
                .enumerate()
                .map(|(i, p)| if m & (1 << i) != 0 { "*" } else { p })
                .collect();
            self.by_segment.get(&key.join("/")).copied()
        })
    }
}

/// `segment = "attribute"` or `segment = ["a", "b"]` (rates keyed by
/// `"value_a/value_b"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum SegmentSrc {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TruthFile {
    #[serde(default)]
    segment: Option<SegmentSrc>,
    #[serde(default)]
    scale: Option<toml::Spanned<f64>>,
    #[serde(default)]
    actions: BTreeMap<toml::Spanned<String>, BTreeMap<toml::Spanned<String>, toml::Spanned<f64>>>,
}

impl Truth {
    /// Read a truth file and check it against `rules`: every action must
    /// exist, the segment must be a context attribute, every rate must be
    /// in [0, 1] and every scale at least 0. Errors say `file:line:col`.
    pub fn load(path: impl AsRef<Path>, rules: &RuleSet) -> Result<Truth, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let at = |offset: usize, message: String| {
            let (line, column) = crate::ruleset::source::line_col(&text, offset);
            Error::InvalidConfig(format!("{}:{line}:{column}: {message}", path.display()))
        };
        let raw: TruthFile = toml::from_str(&text).map_err(|e| {
            at(
                e.span().map_or(0, |s| s.start),
                e.message().trim().to_string(),
            )
        })?;
        // The segment attributes; a closed string one's values are the
        // only keys it takes.
        let segment_attrs: Vec<String> = match raw.segment {
            None => Vec::new(),
            Some(SegmentSrc::One(a)) => vec![a],
            Some(SegmentSrc::Many(v)) => v,
        };
        let mut closed: Vec<Option<&[String]>> = Vec::new();
        for seg in &segment_attrs {
            let schema = rules.schema();
            let Some(&slot) = schema.by_name.get(seg.as_str()) else {
                return Err(Error::InvalidConfig(format!(
                    "{}: segment `{seg}` is not an attribute of rule set `{}`",
                    path.display(),
                    rules.name()
                )));
            };
            closed.push(schema.attrs[slot as usize].values.as_deref());
        }
        let scale = match raw.scale {
            Some(s) if !(s.get_ref().is_finite() && *s.get_ref() >= 0.0) => {
                return Err(at(s.span().start, "scale must be at least 0".into()))
            }
            Some(s) => s.into_inner(),
            None => 1.0,
        };
        let mut actions = HashMap::new();
        for (name, rates) in raw.actions {
            if rules.action_index(name.get_ref()).is_none() {
                return Err(at(
                    name.span().start,
                    format!(
                        "unknown action `{}` (rule set `{}`)",
                        name.get_ref(),
                        rules.name()
                    ),
                ));
            }
            let mut t = ActionTruth::default();
            for (key, v) in rates {
                let x = *v.get_ref();
                let is_scale = key.get_ref() == "scale";
                if !x.is_finite() || x < 0.0 || (!is_scale && x > 1.0) {
                    let what = if is_scale {
                        "a scale must be at least 0"
                    } else {
                        "a rate must be in [0, 1]"
                    };
                    return Err(at(v.span().start, format!("{what}, got {x}")));
                }
                match key.get_ref().as_str() {
                    "scale" => t.scale = Some(x),
                    "default" => t.default = Some(x),
                    seg => {
                        if segment_attrs.is_empty() {
                            return Err(at(
                                key.span().start,
                                format!(
                                    "a rate for segment `{seg}`, but the file names no `segment = \"ATTRIBUTE\"` (use `default` or `scale` for every customer)"
                                ),
                            ));
                        }
                        let parts: Vec<&str> = seg.split('/').collect();
                        if parts.len() != segment_attrs.len() {
                            return Err(at(
                                key.span().start,
                                format!(
                                    "`{seg}` has {} part(s), but the segment is {} attribute(s) ({}): write `{}`",
                                    parts.len(),
                                    segment_attrs.len(),
                                    segment_attrs.join(", "),
                                    segment_attrs.iter().map(|a| a.to_uppercase()).collect::<Vec<_>>().join("/")
                                ),
                            ));
                        }
                        for (part, values) in parts.iter().zip(&closed) {
                            if *part == "*" && parts.len() > 1 {
                                continue;
                            }
                            if let Some(values) = values.filter(|v| !v.iter().any(|x| x == part)) {
                                return Err(at(
                                    key.span().start,
                                    format!(
                                        "`{part}` is not a value of the segment attribute ({}), `default` or `scale`",
                                        values.join(", ")
                                    ),
                                ));
                            }
                        }
                        t.by_segment.insert(seg.to_string(), x);
                    }
                }
            }
            actions.insert(name.into_inner(), t);
        }
        Ok(Truth {
            source: path.display().to_string(),
            segment: (!segment_attrs.is_empty()).then(|| segment_attrs.join("/")),
            scale,
            actions,
            perturb_seed: None,
        })
    }

    /// Rates perturbed from the starting propensities (see [`Truth`]).
    pub fn perturbed(seed: u64, segment: Option<String>) -> Truth {
        Truth {
            source: format!(
                "starting propensities × a factor in [1/3, 3] per action{}, seed {seed}",
                segment
                    .as_deref()
                    .map(|s| format!(" and `{s}`"))
                    .unwrap_or_default()
            ),
            segment,
            scale: 1.0,
            actions: HashMap::new(),
            perturb_seed: Some(seed),
        }
    }

    /// The segment attribute, if rates depend on one.
    pub fn segment(&self) -> Option<&str> {
        self.segment.as_deref()
    }

    /// The true acceptance rate of `action` (starting propensity `p0`) for
    /// a customer in `segment`.
    pub fn rate(&self, action: &str, p0: f64, segment: &str) -> f64 {
        if let Some(seed) = self.perturb_seed {
            let key = format!("{action}\0{segment}");
            let u = uniform(xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), seed));
            return (p0 * 3f64.powf(2.0 * u - 1.0)).clamp(0.0, 1.0);
        }
        let r = match self.actions.get(action) {
            Some(t) => match (t.segment_rate(segment), t.default, t.scale) {
                (Some(r), _, _) => r,
                (None, Some(r), _) => r,
                (None, None, Some(s)) => p0 * s,
                (None, None, None) => p0 * self.scale,
            },
            None => p0 * self.scale,
        };
        r.clamp(0.0, 1.0)
    }
}

/// Options of the closed-loop demo.
#[derive(Debug, Clone)]
pub struct LearnOptions {
    /// Rounds: every customer is decided for once per round.
    pub rounds: usize,
    /// Time between rounds, seconds (default a week: every customer comes
    /// back weekly, so contact-policy windows of days to months matter but
    /// do not exhaust the offers).
    pub interval_secs: i64,
    /// Seed of the customers' responses and of the policies' draws.
    pub seed: u64,
    /// The policies to compare.
    pub policies: Vec<Policy>,
    /// The channel every customer is decided on; default: each one's own
    /// (see [`super::ChannelRule`]).
    pub channel: Option<String>,
    /// The first round's time; default: the persona default instant.
    pub start: Option<Timestamp>,
    /// Of the customers who do not accept, the share who reject (the rest
    /// do not respond).
    pub reject_share: f64,
    /// Write the decision log (decisions and outcomes) here; one policy
    /// only. `nextbest evaluate` reads it.
    pub log: Option<PathBuf>,
}

impl Default for LearnOptions {
    fn default() -> LearnOptions {
        LearnOptions {
            rounds: 30,
            interval_secs: 7 * 86_400,
            seed: 1,
            policies: Policy::ALL.to_vec(),
            channel: None,
            start: None,
            reject_share: 0.5,
            log: None,
        }
    }
}

/// One round of one policy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundStats {
    /// 1-based.
    pub round: usize,
    /// Decisions that returned at least one action.
    pub decisions: usize,
    /// Offers accepted.
    pub accepted: usize,
    /// Decisions whose first action was the oracle's.
    pub best: usize,
    /// Sum of the chosen actions' expected values.
    pub expected_value: f64,
    /// Sum of the oracle's expected values.
    pub oracle_value: f64,
    /// Regret so far, all rounds.
    pub cumulative_regret: f64,
}

impl RoundStats {
    /// Share of decisions that chose the oracle's action.
    pub fn best_share(&self) -> f64 {
        ratio(self.best, self.decisions)
    }

    /// Share of offers accepted.
    pub fn acceptance(&self) -> f64 {
        ratio(self.accepted, self.decisions)
    }
}

/// One policy's run.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRun {
    /// The policy's name.
    pub policy: String,
    /// Per round.
    pub rounds: Vec<RoundStats>,
    /// Offers accepted, all rounds.
    pub accepted: usize,
    /// Decisions with an action, all rounds.
    pub decisions: usize,
    /// Regret, all rounds.
    pub regret: f64,
    /// Last round: how often each action was chosen first.
    pub last_round_chosen: BTreeMap<String, usize>,
    /// Last round: how often each action was the oracle's first.
    pub last_round_best: BTreeMap<String, usize>,
}

/// What the demo measured.
#[derive(Debug, Clone, Serialize)]
pub struct LearnReport {
    /// The rule set's name.
    pub ruleset: String,
    /// Where the true rates came from.
    pub truth: String,
    /// The segment attribute of the true rates, if any.
    pub segment: Option<String>,
    /// Customers.
    pub customers: usize,
    /// Rounds.
    pub rounds: usize,
    /// Seconds between rounds.
    pub interval_secs: i64,
    /// The seed.
    pub seed: u64,
    /// One run per policy, in the order asked.
    pub policies: Vec<PolicyRun>,
    /// Requests that could not be decided (bad context...), first few.
    pub errors: Vec<String>,
}

/// Run the closed loop for every policy in `opts` over the rule set in
/// `dir` (loaded afresh per policy, so each starts with no evidence).
/// `progress` is called with the decisions done so far, all policies.
pub fn simulate_learning(
    dir: &Path,
    customers: &[Customer],
    truth: &Truth,
    opts: &LearnOptions,
    mut progress: impl FnMut(usize),
) -> Result<LearnReport, Error> {
    if opts.rounds == 0 || opts.policies.is_empty() {
        return Err(Error::InvalidConfig(
            "simulate --learn needs at least one round and one policy".into(),
        ));
    }
    if !(0.0..=1.0).contains(&opts.reject_share) {
        return Err(Error::InvalidConfig(format!(
            "reject share {} is not in [0, 1]",
            opts.reject_share
        )));
    }
    if opts.log.is_some() && opts.policies.len() != 1 {
        return Err(Error::InvalidConfig(
            "simulate --learn --log writes one policy's decisions: name one with --policies".into(),
        ));
    }
    let start = match opts.start {
        Some(t) => t,
        None => {
            Timestamp::parse(crate::tools::persona::DEFAULT_NOW).map_err(Error::InvalidRequest)?
        }
    };
    let mut report = None::<LearnReport>;
    let mut done = 0usize;
    for &policy in &opts.policies {
        let mut rules = RuleSet::from_dir(dir)?;
        let base = rules.learning.clone().unwrap_or_default();
        if policy.contextual() && base.contextual.is_none() {
            // The default list runs what the rule set has.
            if opts.policies == Policy::ALL {
                continue;
            }
            return Err(Error::InvalidConfig(format!(
                "policy `{}` needs a contextual model: rule set `{}` has no `[learning] model = \"contextual\"` (docs/DECISIONS.md, \"Contextual models\")",
                policy.as_str(),
                rules.name()
            )));
        }
        // The non-contextual policies learn one Beta per action and channel.
        let beta = Learning {
            contextual: None,
            ..base.clone()
        };
        let learning = match policy {
            Policy::Static => None,
            Policy::PosteriorMean => Some(Learning {
                mode: Mode::Mean,
                ..beta
            }),
            Policy::Thompson => Some(Learning {
                mode: Mode::Thompson,
                ..beta
            }),
            Policy::Contextual => Some(Learning {
                mode: Mode::Mean,
                ..base
            }),
            Policy::ContextualThompson => Some(Learning {
                mode: Mode::Thompson,
                ..base
            }),
            Policy::EpsilonGreedy => Some(Learning {
                mode: Mode::EpsilonGreedy,
                epsilon: if beta.epsilon > 0.0 {
                    beta.epsilon
                } else {
                    0.1
                },
                ..beta
            }),
        };
        // Every arm runs the policy (a challenger keeps its own rules).
        if let Some(c) = rules
            .experiment
            .as_mut()
            .and_then(|e| e.challenger.as_mut())
        {
            // Its own model (its predictors are slots of its own schema),
            // or none for the Beta policies.
            let own = c.learning.as_ref().and_then(|l| l.contextual.clone());
            c.learning = learning.clone().map(|mut l| {
                l.contextual = if policy.contextual() { own } else { None };
                l
            });
        }
        rules.learning = learning;
        let channel_rule = super::ChannelRule::new(opts.channel.as_deref(), &rules)?;
        let report = report.get_or_insert_with(|| LearnReport {
            ruleset: rules.name().to_string(),
            truth: truth.source.clone(),
            segment: truth.segment.clone(),
            customers: customers.len(),
            rounds: opts.rounds,
            interval_secs: opts.interval_secs,
            seed: opts.seed,
            policies: Vec::new(),
            errors: Vec::new(),
        });

        // Bind once; each round only moves the time and the seed.
        let mut requests = Vec::with_capacity(customers.len());
        for c in customers {
            let raw = RequestJson {
                customer_id: c.customer_id.clone(),
                channel: channel_rule.channel_of(c).to_string(),
                context: c.context.clone(),
                limit: None,
                explain: true,
                now: None,
            };
            match raw.bind(rules.schema()) {
                Ok(r) => {
                    // The customer's segment key: each segment attribute's
                    // value, joined by `/` (missing: empty).
                    let segment = truth
                        .segment
                        .as_deref()
                        .map(|names| {
                            names
                                .split('/')
                                .map(|n| match c.context.get(n) {
                                    Some(serde_json::Value::String(s)) => s.clone(),
                                    Some(other) => other.to_string(),
                                    None => String::new(),
                                })
                                .collect::<Vec<_>>()
                                .join("/")
                        })
                        .unwrap_or_default();
                    requests.push((r, segment));
                }
                Err(e) => {
                    if report.errors.len() < 5 && policy == opts.policies[0] {
                        report.errors.push(format!("{}: {e}", c.customer_id));
                    }
                }
            }
        }
        let p0: HashMap<String, f64> = rules
            .actions
            .iter()
            .map(|a| (a.id.to_string(), a.starting_propensity))
            .collect();
        let engine = match &opts.log {
            Some(path) => {
                let config = crate::engine::EngineConfig {
                    decision_log: Some(crate::audit::LogConfig::for_file(path)),
                    ..crate::engine::EngineConfig::default()
                };
                Engine::try_with_config(rules, config)?
            }
            None => Engine::new(rules),
        };
        let mut run = PolicyRun {
            policy: policy.as_str().to_string(),
            rounds: Vec::with_capacity(opts.rounds),
            accepted: 0,
            decisions: 0,
            regret: 0.0,
            last_round_chosen: BTreeMap::new(),
            last_round_best: BTreeMap::new(),
        };
        let mut cumulative = 0.0;
        let mut rates: HashMap<(String, String), f64> = HashMap::new();
        for round in 1..=opts.rounds {
            let now = Timestamp(start.0 + (round as i64 - 1) * opts.interval_secs);
            let last = round == opts.rounds;
            let mut stats = RoundStats {
                round,
                ..RoundStats::default()
            };
            for (i, (req, segment)) in requests.iter().enumerate() {
                let key = [opts.seed, round as u64, i as u64];
                let draws = hash_words(&key, 0x5eed);
                let mut req = req.clone();
                req.now = Some(now);
                req.seed = Some(draws);
                req.mode = crate::decide::Mode::Simulate;
                let d = match engine.decide(&req) {
                    Ok(d) => d,
                    Err(e) => {
                        if report.errors.len() < 5 {
                            report.errors.push(format!("{}: {e}", req.customer_id));
                        }
                        continue;
                    }
                };
                done += 1;
                if done % 512 == 0 {
                    progress(done);
                }
                let Some(first) = d.actions().next() else {
                    continue;
                };
                let mut rate = |action: &str| -> f64 {
                    if let Some(r) = rates.get(&(action.to_string(), segment.clone())) {
                        return *r;
                    }
                    // The truth is the customers', whichever arm decided:
                    // scaled from the champion's starting propensity.
                    let p0 = p0.get(action).copied().unwrap_or(0.0);
                    let r = truth.rate(action, p0, segment);
                    rates.insert((action.to_string(), segment.clone()), r);
                    r
                };
                // The expected value of an offer: its priority with the true
                // rate in place of the propensity.
                let factor = |a: &crate::decide::decision::RankedAction<'_>| {
                    if a.propensity() > 0.0 {
                        a.priority() / a.propensity()
                    } else {
                        a.context_weight() * a.value() * a.lever()
                    }
                };
                let chosen_value = rate(first.action()) * factor(&first);
                let (best_action, best_value) = d
                    .ranked()
                    .map(|a| (a.action(), rate(a.action()) * factor(&a)))
                    .fold((first.action(), chosen_value), |b, x| {
                        if x.1 > b.1 {
                            x
                        } else {
                            b
                        }
                    });
                stats.decisions += 1;
                stats.expected_value += chosen_value;
                stats.oracle_value += best_value;
                if chosen_value >= best_value * (1.0 - 1e-12) {
                    stats.best += 1;
                }
                if last {
                    *run.last_round_chosen
                        .entry(first.action().to_string())
                        .or_default() += 1;
                    *run.last_round_best
                        .entry(best_action.to_string())
                        .or_default() += 1;
                }
                // The customer answers, with the same random numbers under
                // every policy.
                let u = uniform(hash_words(&key, 0xacce));
                let kind = if u < rate(first.action()) {
                    stats.accepted += 1;
                    OutcomeKind::Accepted
                } else if uniform(hash_words(&key, 0x2e1e)) < opts.reject_share {
                    OutcomeKind::Rejected
                } else {
                    OutcomeKind::NoResponse
                };
                engine.record_outcome(&Outcome {
                    decision_id: Some(d.id()),
                    customer_id: req.customer_id.clone(),
                    action: first.action().to_string(),
                    channel: d.channel().to_string(),
                    kind,
                    timestamp: Some(Timestamp(now.0 + 60)),
                })?;
            }
            cumulative += stats.oracle_value - stats.expected_value;
            stats.cumulative_regret = cumulative;
            run.accepted += stats.accepted;
            run.decisions += stats.decisions;
            run.rounds.push(stats);
        }
        run.regret = cumulative;
        report.policies.push(run);
        engine.flush()?;
    }
    report.ok_or_else(|| Error::InvalidConfig("no policy ran".into()))
}

/// Parse a round interval such as `1d`, `12h` or `30m` (as the rule
/// files' durations).
pub fn parse_interval(s: &str) -> Result<i64, Error> {
    crate::ruleset::contact::parse_duration(s)
        .map_err(|m| Error::InvalidConfig(format!("interval `{s}`: {m}")))
}

/// The truth file of a rule directory, if it has one.
pub fn default_truth_file(dir: &Path) -> Option<PathBuf> {
    let p = dir.join("truth.toml");
    p.is_file().then_some(p)
}

fn hash_words(words: &[u64; 3], salt: u64) -> u64 {
    let mut buf = [0u8; 24];
    for (chunk, w) in buf.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64_with_seed(&buf, salt)
}

/// A uniform number in [0, 1) from 64 random bits.
fn uniform(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perturbed_rates_stay_within_a_factor_of_three() {
        let t = Truth::perturbed(7, Some("segment".into()));
        for i in 0..1000 {
            let r = t.rate(&format!("A{i}"), 0.05, "mass");
            assert!((0.05 / 3.0 - 1e-12..=0.15 + 1e-12).contains(&r), "{r}");
        }
        // Seeded: the same pair gets the same rate; pairs differ.
        assert_eq!(t.rate("A", 0.05, "mass"), t.rate("A", 0.05, "mass"));
        assert_ne!(t.rate("A", 0.05, "mass"), t.rate("A", 0.05, "affluent"));
    }

    #[test]
    fn uniforms_are_in_the_unit_interval() {
        assert_eq!(uniform(0), 0.0);
        assert!(uniform(u64::MAX) < 1.0);
    }
}
