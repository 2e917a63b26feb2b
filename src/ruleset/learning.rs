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
