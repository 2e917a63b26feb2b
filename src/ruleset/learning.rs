//! Adaptive propensity: per action and channel, a Beta posterior from the
//! outcomes the engine is told about.
//!
//! The prior is centred on the action's starting propensity `p0` with the
//! weight of `prior_strength = k` pseudo-outcomes: Beta(p0·k, (1−p0)·k).
//! After `s` successes and `f` failures the posterior is
//! Beta(p0·k + s, (1−p0)·k + f), whose mean `(s + p0·k) / (s + f + k)` is
//! the starting propensity blended with the observed rate by evidence:
//! with no outcomes it is `p0`, and as outcomes accumulate it tends to
//! `s / (s + f)`.
//!
//! Which outcomes are successes and failures is set per rule set (default:
//! `accepted` succeeds; `rejected` and `no_response` fail; impressions and
//! clicks count for neither). The engine counts every outcome kind, so
//! changing that mapping in a new version loses nothing.

use rand_chacha::rand_core::SeedableRng;
use rand_distr::Distribution;

use crate::base::outcome::{kind_bit, KINDS};
use crate::base::OutcomeKind;

/// How the ranking uses the posterior.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The posterior mean (deterministic).
    Mean,
    /// A draw from the posterior, seeded per decision (the seed is logged).
    Thompson,
    /// The posterior mean, except that with probability `epsilon` the first
    /// slot goes to a survivor drawn uniformly; the selection probability
    /// of the first action is exact and logged.
    EpsilonGreedy,
}

impl Mode {
    pub(crate) fn parse(s: &str) -> Option<Mode> {
        match s {
            "posterior_mean" => Some(Mode::Mean),
            "thompson" => Some(Mode::Thompson),
            "epsilon_greedy" => Some(Mode::EpsilonGreedy),
            _ => None,
        }
    }

    pub(crate) fn draws(self) -> bool {
        self != Mode::Mean
    }
}

/// A rule set's `[learning]`, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Learning {
    pub mode: Mode,
    pub prior_strength: f64,
    pub epsilon: f64,
    /// Outcome kinds that count as success and as failure.
    pub success: u8,
    pub failure: u8,
    /// Outcomes (successes + failures) before an action's learned
    /// propensity replaces its starting propensity (the maturity ramp).
    pub min_evidence: u32,
    /// The contextual model (`model = "contextual"`), if any.
    pub contextual: Option<std::sync::Arc<Contextual>>,
}

impl Default for Learning {
    fn default() -> Learning {
        Learning {
            mode: Mode::Mean,
            prior_strength: 10.0,
            epsilon: 0.0,
            success: kind_bit(OutcomeKind::Accepted),
            failure: kind_bit(OutcomeKind::Rejected) | kind_bit(OutcomeKind::NoResponse),
            min_evidence: 0,
            contextual: None,
        }
    }
}

impl Learning {
    /// Successes and failures from per-kind counts.
    pub(crate) fn evidence(&self, counts: [u32; KINDS]) -> (u32, u32) {
        let mut s = 0u32;
        let mut f = 0u32;
        for (i, n) in counts.iter().enumerate() {
            if self.success & (1 << i) != 0 {
                s = s.saturating_add(*n);
            }
            if self.failure & (1 << i) != 0 {
                f = f.saturating_add(*n);
            }
        }
        (s, f)
    }

    fn prior(&self, p0: f64) -> (f64, f64) {
        let p0 = p0.clamp(1e-6, 1.0 - 1e-6);
        (p0 * self.prior_strength, (1.0 - p0) * self.prior_strength)
    }

    /// The posterior mean, or `p0` before `min_evidence` outcomes.
    pub(crate) fn mean(&self, p0: f64, (s, f): (u32, u32)) -> f64 {
        // No evidence: exactly the starting propensity.
        if s.saturating_add(f) < self.min_evidence || s.saturating_add(f) == 0 {
            return p0;
        }
        let (a, b) = self.prior(p0);
        (f64::from(s) + a) / (f64::from(s) + f64::from(f) + a + b)
    }

    /// A draw from the posterior (or `p0` before `min_evidence`).
    pub(crate) fn draw(&self, p0: f64, (s, f): (u32, u32), rng: &mut Rng) -> f64 {
        if s.saturating_add(f) < self.min_evidence {
            return p0;
        }
        let (a, b) = self.prior(p0);
        match rand_distr::Beta::new(f64::from(s) + a, f64::from(f) + b) {
            Ok(beta) => beta.sample(rng),
            Err(_) => self.mean(p0, (s, f)),
        }
    }
}

/// A contextual adaptive model: per action and channel, naive Bayes over
/// binned customer predictors (as the adaptive decision manager does).
///
/// Its state is, per action, channel, predictor and bin, the successes
/// and failures of the outcomes whose decision had the predictor in that
/// bin: sums, so engines merge them by adding (see
/// [`crate::state::learning`]). With `S`, `F` the action's contextual
/// successes and failures (as the predictor's own bins sum them), `q = (S + ½) / (S + F + 1)` its rate, `s_b`,
/// `f_b` those of the customer's bin `b` of predictor `p` and `m` the
/// smoothing (pseudo-outcomes per bin at the rate `q`):
///
/// ```text
/// r_pb  = ln((s_b + m·q) / (f_b + m·(1 − q))) − ln(q / (1 − q))
/// z     = Σ over active predictors p of r_pb
/// P_nb  = σ(logit(P_beta) + z)
/// w     = min(1, S / mature_positives)
/// P     = (1 − w)·P_beta + w·P_nb
/// ```
///
/// `r_pb` is naive Bayes's log-likelihood ratio of the bin, each bin's
/// odds shrunk towards the action's by `m` pseudo-outcomes (a bin with
/// little evidence moves nothing). A predictor is *active* (as in the
/// adaptive decision manager) while its bins tell successes from failures
/// (a G-test of independence at the 5% level); inactive ones add nothing,
/// so predictors that carry no signal add no noise. `P_beta` is the
/// action's Beta posterior mean (the non-contextual propensity, itself
/// blended with the starting propensity), so a new model starts where the
/// Beta model is and moves to the customer's own propensity as positive
/// evidence matures. Thompson sampling draws from Beta(P·n, (1 − P)·n)
/// with `n` the action's outcomes plus the prior strength: the
/// non-contextual posterior's spread around this customer's mean.
#[derive(Debug, Clone)]
pub(crate) struct Contextual {
    /// Predictors in declaration order; string sets expanded to one
    /// membership predictor per declared value.
    pub predictors: Vec<Predictor>,
    /// Bins of every predictor: predictor `p`'s bins are
    /// `offset..offset + len`.
    pub bins: u32,
    pub mature_positives: u32,
    pub smoothing: f64,
    /// Outcomes between two snapshots of the model.
    pub snapshot_every: u32,
    /// A hash of the predictors and their bins: the model's id.
    pub id: u64,
}

/// One predictor of a contextual model.
#[derive(Debug, Clone)]
pub(crate) struct Predictor {
    /// The attribute's name; `attribute:value` for a set's membership.
    pub name: Box<str>,
    pub slot: u16,
    pub kind: PredictorKind,
    /// Its first bin among the model's.
    pub offset: u32,
    /// Its bin count (the last bin is "missing").
    pub len: u32,
    /// A hash of its name, kind and bins: counts carry over to a new
    /// version whose predictor has the same spec.
    pub spec: u64,
}

/// How a predictor's value picks its bin.
#[derive(Debug, Clone)]
pub(crate) enum PredictorKind {
    /// `int` or `float`: bin `i` holds values in `[edges[i-1], edges[i])`.
    Numeric(Box<[f64]>),
    /// `string`: a bin per listed value (by symbol), then "other".
    Symbol(Box<[u32]>),
    /// `bool`: false, true.
    Bool,
    /// Membership of one value in a `string_set`: out, in.
    Member(crate::base::Sym),
}

impl Predictor {
    /// The bin of this predictor in `ctx`, within `0..len`.
    #[inline]
    pub(crate) fn bin(&self, ctx: &crate::context::Context) -> u32 {
        use crate::context::Slot;
        let missing = self.len - 1;
        match (&self.kind, &ctx.slots[self.slot as usize]) {
            (PredictorKind::Numeric(edges), Slot::Int(v)) => numeric_bin(edges, *v as f64, missing),
            (PredictorKind::Numeric(edges), Slot::Float(v)) => numeric_bin(edges, *v, missing),
            (PredictorKind::Symbol(syms), Slot::Str(sym, _)) => {
                match syms.iter().position(|s| s == sym) {
                    Some(i) => i as u32,
                    None => syms.len() as u32,
                }
            }
            (PredictorKind::Bool, Slot::Bool(b)) => u32::from(*b),
            (PredictorKind::Member(sym), _) => match ctx.set_has_sym(self.slot, *sym) {
                Some(b) => u32::from(b),
                None => missing,
            },
            _ => missing,
        }
    }
}

/// Whether a predictor's bins tell successes from failures: the G-test of
/// independence of bin and outcome, at the 5% level (the chi-squared
/// quantile by Wilson and Hilferty's approximation).
fn significant(s: &[u32], f: &[u32], big_s: f64, big_f: f64) -> bool {
    let n = big_s + big_f;
    if big_s == 0.0 || big_f == 0.0 {
        return false;
    }
    let mut g = 0.0;
    let mut used = 0u32;
    let term = |o: f64, e: f64| if o > 0.0 { o * (o / e).ln() } else { 0.0 };
    for (&sb, &fb) in s.iter().zip(f) {
        let nb = f64::from(sb) + f64::from(fb);
        if nb == 0.0 {
            continue;
        }
        used += 1;
        g += term(f64::from(sb), nb * big_s / n) + term(f64::from(fb), nb * big_f / n);
    }
    if used < 2 {
        return false;
    }
    let df = f64::from(used - 1);
    let c = 2.0 / (9.0 * df);
    let critical = df * (1.0 - c + 1.644_853_626_951_472_2 * c.sqrt()).powi(3);
    2.0 * g > critical
}

#[inline]
fn numeric_bin(edges: &[f64], v: f64, missing: u32) -> u32 {
    if v.is_nan() {
        return missing;
    }
    edges.partition_point(|e| *e <= v) as u32
}

impl Contextual {
    /// The bins of every predictor in `ctx` (model-wide indices), once per
    /// decision.
    pub(crate) fn bins_of(&self, ctx: &crate::context::Context, out: &mut Vec<u32>) {
        out.clear();
        out.extend(self.predictors.iter().map(|p| p.offset + p.bin(ctx)));
    }

    /// The likelihood ratio `exp(r_pb)` of every bin from one action's
    /// counts: `s[b]`, `f[b]` per model bin (see [`Contextual`]); a
    /// decision multiplies its customer's, so it needs no logarithm or
    /// exponential per action. Returns the action's contextual
    /// (successes, failures): those of its predictor with the most
    /// outcomes (all predictors have the same unless counts carried over
    /// from a version with other predictors).
    pub(crate) fn ratios(&self, s: &[u32], f: &[u32], out: &mut [f32]) -> (u32, u32) {
        let m = self.smoothing;
        // Each predictor's own sums: they differ when counts carried over
        // from a version whose predictors were not all the same.
        let mut most = (0u64, 0u64);
        for p in &self.predictors {
            let bins = p.offset as usize..(p.offset + p.len) as usize;
            let total_s: u64 = s[bins.clone()].iter().map(|&x| u64::from(x)).sum();
            let total_f: u64 = f[bins.clone()].iter().map(|&x| u64::from(x)).sum();
            if total_s + total_f > most.0 + most.1 {
                most = (total_s, total_f);
            }
            let (big_s, big_f) = (total_s as f64, total_f as f64);
            let q = (big_s + 0.5) / (big_s + big_f + 1.0);
            let base = (q / (1.0 - q)).ln();
            let active = significant(&s[bins.clone()], &f[bins.clone()], big_s, big_f);
            for i in bins {
                out[i] = if active {
                    (((f64::from(s[i]) + m * q) / (f64::from(f[i]) + m * (1.0 - q))).ln() - base)
                        .exp() as f32
                } else {
                    1.0
                };
            }
        }
        (
            u32::try_from(most.0).unwrap_or(u32::MAX),
            u32::try_from(most.1).unwrap_or(u32::MAX),
        )
    }

    /// The maturity weight of a model with `positives` contextual
    /// successes.
    #[inline]
    pub(crate) fn weight(&self, positives: u32) -> f64 {
        if self.mature_positives == 0 {
            return 1.0;
        }
        (f64::from(positives) / f64::from(self.mature_positives)).min(1.0)
    }
}

impl Learning {
    /// The contextual mean: `p_beta` moved by the customer's likelihood
    /// ratio `lr = exp(z)` with maturity `w` (see [`Contextual`]):
    /// `σ(logit(p) + z)` is `odds·lr / (1 + odds·lr)`.
    #[inline]
    pub(crate) fn contextual_mean(p_beta: f64, lr: f64, w: f64) -> f64 {
        if w <= 0.0 {
            return p_beta;
        }
        let p = p_beta.clamp(1e-9, 1.0 - 1e-9);
        let x = p / (1.0 - p) * lr;
        let nb = if x.is_finite() { x / (1.0 + x) } else { 1.0 };
        (1.0 - w) * p_beta + w * nb
    }

    /// A draw around the contextual mean `p` with the spread of the
    /// action's posterior (`n` outcomes).
    pub(crate) fn contextual_draw(&self, p: f64, (s, f): (u32, u32), rng: &mut Rng) -> f64 {
        if s.saturating_add(f) < self.min_evidence {
            return p;
        }
        let n = f64::from(s) + f64::from(f) + self.prior_strength;
        let p = p.clamp(1e-6, 1.0 - 1e-6);
        match rand_distr::Beta::new(p * n, (1.0 - p) * n) {
            Ok(beta) => beta.sample(rng),
            Err(_) => p,
        }
    }
}

/// The generator of a decision's draws: ChaCha8, seeded with the logged
/// seed (its output is specified, so a replay draws the same numbers).
pub(crate) type Rng = rand_chacha::ChaCha8Rng;

pub(crate) fn rng(seed: u64) -> Rng {
    Rng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_starts_at_the_starting_propensity_and_moves_with_evidence() {
        let l = Learning::default();
        assert!((l.mean(0.05, (0, 0)) - 0.05).abs() < 1e-12);
        // 10 pseudo-outcomes at 0.05, then 30 of 100 accepted.
        let m = l.mean(0.05, (30, 70));
        assert!((m - (30.0 + 0.5) / 110.0).abs() < 1e-12);
        assert!((l.mean(0.05, (30_000, 70_000)) - 0.3).abs() < 1e-3);
        let ramp = Learning {
            min_evidence: 50,
            ..Learning::default()
        };
        assert_eq!(ramp.mean(0.05, (30, 19)), 0.05);
        assert!(ramp.mean(0.05, (30, 20)) > 0.2);
    }

    #[test]
    fn draws_repeat_from_the_seed_and_stay_in_the_unit_interval() {
        let l = Learning::default();
        let a: Vec<f64> = {
            let mut r = rng(42);
            (0..100).map(|_| l.draw(0.1, (3, 40), &mut r)).collect()
        };
        let b: Vec<f64> = {
            let mut r = rng(42);
            (0..100).map(|_| l.draw(0.1, (3, 40), &mut r)).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|p| (0.0..=1.0).contains(p)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!((mean - l.mean(0.1, (3, 40))).abs() < 0.03, "{mean}");
    }

    #[test]
    fn evidence_follows_the_kind_mapping() {
        let l = Learning::default();
        // impression, clicked, accepted, rejected, no_response
        assert_eq!(l.evidence([9, 5, 2, 3, 4]), (2, 7));
    }
}
