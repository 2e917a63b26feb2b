//! The statistics of impact analysis: means with normal 95% intervals, the
//! lift of a test arm over a control arm with its delta-method standard
//! error, and the sample size needed to detect a given lift.
//!
//! Everything here is a closed formula on counts and sums, so the unit
//! tests check it against values computed by hand (the arithmetic is in
//! each test's comments).

use serde::Serialize;

/// The normal quantile of a two-sided 95% interval (z at 0.975).
pub const Z95: f64 = 1.959_963_984_540_054;
/// The normal quantile for 80% power (z at 0.80).
pub const Z_POWER80: f64 = 0.841_621_233_572_914_3;

/// A point estimate with its standard error and 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// Its standard error.
    pub std_error: f64,
    /// Lower end of the normal 95% interval.
    pub low: f64,
    /// Upper end of the normal 95% interval.
    pub high: f64,
}

impl Estimate {
    /// An estimate with the normal 95% interval `value ± 1.96 · std_error`.
    pub fn normal(value: f64, std_error: f64) -> Estimate {
        Estimate {
            value,
            std_error,
            low: value - Z95 * std_error,
            high: value + Z95 * std_error,
        }
    }
}

/// Running count, sum and sum of squares of a per-decision quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Moments {
    /// Observations.
    pub n: u64,
    /// Their sum.
    pub sum: f64,
    /// The sum of their squares.
    pub sum_sq: f64,
}

impl Moments {
    /// Add one observation.
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }

    /// The mean (0 with no observations).
    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.n as f64
        }
    }

    /// The sample variance (divisor n − 1; 0 below two observations).
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.n as f64;
        ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0)
    }

    /// The mean with its standard error `√(s² / n)` and 95% interval;
    /// `None` without observations.
    pub fn estimate(&self) -> Option<Estimate> {
        (self.n > 0)
            .then(|| Estimate::normal(self.mean(), (self.variance() / self.n as f64).sqrt()))
    }
}

/// A proportion `successes / n` with the binomial standard error
/// `√(p (1 − p) / n)` and its normal 95% interval; `None` when `n = 0`.
pub fn proportion(successes: u64, n: u64) -> Option<Estimate> {
    if n == 0 {
        return None;
    }
    let p = successes as f64 / n as f64;
    Some(Estimate::normal(p, (p * (1.0 - p) / n as f64).sqrt()))
}

/// The relative lift `(test − control) / control` of two independent
/// estimates, with the delta-method standard error of the ratio
/// `test / control`:
/// `Var ≈ se_t² / c² + t² · se_c² / c⁴`. `None` when the control's
/// estimate is not positive (the lift is undefined).
pub fn lift(test: &Estimate, control: &Estimate) -> Option<Estimate> {
    let (t, c) = (test.value, control.value);
    if c <= 0.0 || !c.is_finite() || !t.is_finite() {
        return None;
    }
    let var = test.std_error.powi(2) / (c * c) + t * t * control.std_error.powi(2) / c.powi(4);
    Some(Estimate::normal(t / c - 1.0, var.sqrt()))
}

/// How many decisions an experiment needs to detect a relative lift.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SampleSize {
    /// The relative lift to detect (0.1 = 10%).
    pub lift: f64,
    /// Decisions needed in the control arm.
    pub control: u64,
    /// Decisions needed in the test arm (at the given test:control ratio).
    pub test: u64,
}

/// Decisions needed to detect a relative lift `lift` of a mean whose
/// control value is `control_mean`, with per-decision variances
/// `control_var` and `test_var`, a two-sided 5% test and 80% power, when
/// the test arm gets `ratio` decisions for every control decision:
/// `n_c = (z₀.₉₇₅ + z₀.₈)² (σ_c² + σ_t² / r) / (lift · μ_c)²`, `n_t = r n_c`,
/// both rounded up. `None` when the difference to detect is zero or an
/// input is not positive.
pub fn sample_size(
    control_mean: f64,
    control_var: f64,
    test_var: f64,
    lift: f64,
    ratio: f64,
) -> Option<SampleSize> {
    let delta = lift * control_mean;
    if delta == 0.0 || !delta.is_finite() || ratio <= 0.0 || !ratio.is_finite() {
        return None;
    }
    let z = Z95 + Z_POWER80;
    let n_c = z * z * (control_var + test_var / ratio) / (delta * delta);
    if !n_c.is_finite() || n_c <= 0.0 {
        return None;
    }
    Some(SampleSize {
        lift,
        control: n_c.ceil() as u64,
        test: (ratio * n_c).ceil() as u64,
    })
}

/// [`sample_size`] for an acceptance rate: the control rate `p_c`, the test
/// rate `p_c (1 + lift)`, binomial variances.
pub fn sample_size_rate(control_rate: f64, lift: f64, ratio: f64) -> Option<SampleSize> {
    let p_t = control_rate * (1.0 + lift);
    if !(0.0..=1.0).contains(&p_t) {
        return None;
    }
    sample_size(
        control_rate,
        control_rate * (1.0 - control_rate),
        p_t * (1.0 - p_t),
        lift,
        ratio,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn a_proportion_has_the_binomial_standard_error() {
        // p = 50/1000 = 0.05; se = √(0.05 · 0.95 / 1000) = √0.0000475 = 0.0068920...
        let e = proportion(50, 1000).unwrap();
        assert_eq!(e.value, 0.05);
        assert!(close(e.std_error, 0.006_892_024, 1e-9), "{e:?}");
        // 0.05 ± 1.959964 · 0.006892024 = [0.036492, 0.063508]
        assert!(
            close(e.low, 0.036_492, 1e-6) && close(e.high, 0.063_508, 1e-6),
            "{e:?}"
        );
        assert!(proportion(0, 0).is_none());
    }

    #[test]
    fn a_mean_uses_the_sample_variance() {
        // values 0, 10, 0, 20, 0: mean 6; s² = (36 + 16 + 36 + 196 + 36) / 4 = 80;
        // se = √(80 / 5) = 4.
        let mut m = Moments::default();
        for x in [0.0, 10.0, 0.0, 20.0, 0.0] {
            m.add(x);
        }
        let e = m.estimate().unwrap();
        assert_eq!(e.value, 6.0);
        assert!(close(m.variance(), 80.0, 1e-12));
        assert!(close(e.std_error, 4.0, 1e-12), "{e:?}");
        assert!(Moments::default().estimate().is_none());
    }

    #[test]
    fn lift_has_the_delta_method_standard_error() {
        // control 50/1000 = 0.05, test 80/1000 = 0.08: lift = 0.08/0.05 − 1 = 0.6.
        // se_t² = 0.08·0.92/1000 = 7.36e-5, se_c² = 0.05·0.95/1000 = 4.75e-5;
        // Var = 7.36e-5/0.0025 + 0.0064·4.75e-5/0.05⁴ = 0.02944 + 0.04864 = 0.07808;
        // se = √0.07808 = 0.279428.
        let (t, c) = (proportion(80, 1000).unwrap(), proportion(50, 1000).unwrap());
        let l = lift(&t, &c).unwrap();
        assert!(close(l.value, 0.6, 1e-12), "{l:?}");
        assert!(close(l.std_error, 0.279_428, 1e-6), "{l:?}");
        // 0.6 ± 1.959964 · 0.279428 = [0.052331, 1.147669]
        assert!(
            close(l.low, 0.052_331, 1e-6) && close(l.high, 1.147_669, 1e-6),
            "{l:?}"
        );
    }

    #[test]
    fn lift_over_a_control_of_zero_is_undefined() {
        let (t, c) = (proportion(8, 100).unwrap(), proportion(0, 100).unwrap());
        assert!(lift(&t, &c).is_none());
    }

    #[test]
    fn sample_size_for_a_rate_matches_the_textbook_formula() {
        // p_c = 0.10, lift 20% → p_t = 0.12, equal arms:
        // n = (1.959964 + 0.841621)² · (0.09 + 0.1056) / 0.02² = 7.848879 · 0.1956 / 0.0004
        //   = 3838.10 → 3839 per arm.
        let s = sample_size_rate(0.10, 0.20, 1.0).unwrap();
        assert_eq!((s.control, s.test), (3839, 3839));
        // Three test decisions per control decision:
        // n_c = 7.848879 · (0.09 + 0.1056 / 3) / 0.0004 = 2456.70 → 2457; n_t = 3 · 2456.70 → 7371.
        let s = sample_size_rate(0.10, 0.20, 3.0).unwrap();
        assert_eq!((s.control, s.test), (2457, 7371));
    }

    #[test]
    fn sample_size_is_undefined_for_a_zero_lift_or_rate() {
        assert!(sample_size_rate(0.10, 0.0, 1.0).is_none());
        assert!(sample_size_rate(0.0, 0.1, 1.0).is_none());
        assert!(sample_size(5.0, 10.0, 10.0, 0.1, 0.0).is_none());
    }
}
