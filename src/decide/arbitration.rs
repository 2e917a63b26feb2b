//! Arbitration: rank the surviving candidates by
//! `priority = P × C × V × L` and keep the top N.
//!
//! - P, the propensity, comes from [`propensity`] (the starting propensity
//!   until the learning models supply one);
//! - C, the context weight, is `1 + Σ(matching boosts)/100` over the context
//!   weights that target the action, its group or its issue;
//! - V is the action's value (a number or a value expression; a value that
//!   fails to evaluate or is not finite removes the candidate);
//! - L, the lever, `1 + (issue + group + action lever)/100`, is folded into
//!   one number when the rule set loads.
//!
//! The order is total: priority descending, then action id ascending.

use crate::decide::decision::Scored;
use crate::ruleset::policy::Memo;
use crate::ruleset::{Action, RuleSet, ValueFn};

/// P for an action. The seam where learned propensities plug in.
#[inline]
pub(crate) fn propensity(action: &Action) -> f64 {
    action.starting_propensity
}

/// C for an action: 1 + the boosts of its matching context weights / 100.
#[inline]
pub(crate) fn context_weight(rs: &RuleSet, action: &Action, memo: &Memo<'_>) -> f64 {
    let mut boost = 0.0;
    let mut matched = false;
    for &w in action.weights.iter() {
        let w = &rs.weights[w as usize];
        if memo.covers(&w.need) {
            boost += w.boost;
            matched = true;
        }
    }
    if !matched {
        // What the formula gives with no boost, without its division.
        return 1.0;
    }
    // Each boost is at least -100, but several can match: C stops at 0
    // (an action can be irrelevant now, not less than irrelevant).
    (1.0 + boost / 100.0).max(0.0)
}

/// V for an action, or `None` if its expression fails or is not finite.
#[inline]
pub(crate) fn value(action: &Action, memo: &Memo<'_>) -> Option<f64> {
    match &action.value {
        ValueFn::Const(v) => Some(*v),
        ValueFn::Expr(_, _, Some(affine)) => affine.eval(memo.env().ctx).filter(|v| v.is_finite()),
        ValueFn::Expr(ir, _, None) => match ir.eval(memo.env()) {
            Ok(v) if v.is_finite() => Some(v),
            _ => None,
        },
    }
}

/// The best `limit` candidates in arbitration order, of candidates offered
/// in ascending action order (a channel's actions ascend), without sorting
/// them all. A candidate that ties the last one kept has the higher action
/// index, so it ranks after it: once the list is full, a candidate is
/// turned away on its priority alone, by one integer compare, inline. Most
/// candidates of a large catalog are.
pub(crate) struct TopN {
    top: Vec<Scored>,
    limit: usize,
    /// [`descending`] of the last kept priority, once the list is full.
    bar: u64,
    /// The last action offered (checks the ascending order).
    #[cfg(debug_assertions)]
    last: Option<u32>,
}

impl TopN {
    pub(crate) fn new(limit: usize, capacity: usize) -> TopN {
        TopN {
            top: Vec::with_capacity(capacity),
            limit,
            bar: u64::MAX,
            #[cfg(debug_assertions)]
            last: None,
        }
    }

    #[inline]
    pub(crate) fn offer(&mut self, s: Scored) {
        #[cfg(debug_assertions)]
        {
            debug_assert!(self.last < Some(s.action), "offered out of order");
            self.last = Some(s.action);
        }
        let key = descending(s.priority);
        if key >= self.bar && self.top.len() == self.limit {
            return;
        }
        self.insert(
            key,
            s.action,
            [s.propensity, s.context_weight, s.value, s.lever, s.priority],
        );
    }

    /// Insert the candidate (whose priority has order key `key`) in its
    /// place; when the list is full, it ranks before the last candidate
    /// (`offer` has checked), which leaves. It comes in scalars, in
    /// registers: a candidate passed whole would be passed by reference,
    /// so the decision loop would build every candidate on the stack, and
    /// copying one from there (into an explanation's list) reads it back
    /// before its stores have landed, a stall per survivor.
    #[inline(never)]
    fn insert(&mut self, key: u64, action: u32, [p, c, v, l, priority]: [f64; 5]) {
        let s = Scored {
            action,
            propensity: p,
            context_weight: c,
            value: v,
            lever: l,
            priority,
        };
        let top = &mut self.top;
        let len = top.len();
        // Where `s` goes: past the candidates kept that rank before it.
        // The candidates kept have lower action indices, so `s` passes
        // exactly those of lower priority.
        let full = len == self.limit;
        let mut i = if full {
            // With a limit of 0 there is nothing to keep.
            if len == 0 {
                return;
            }
            // The last one leaves: `s` takes its place, and moves up.
            len - 1
        } else {
            top.push(s);
            len
        };
        while i > 0 && key < descending(top[i - 1].priority) {
            top[i] = top[i - 1];
            i -= 1;
        }
        top[i] = s;
        if top.len() == self.limit {
            self.bar = descending(top[top.len() - 1].priority);
        }
    }

    /// The candidates kept, best first.
    pub(crate) fn into_vec(self) -> Vec<Scored> {
        self.top
    }
}

/// Sort all candidates into arbitration order (into a spare buffer of
/// this thread's, which then keeps the unsorted one).
pub(crate) fn sort_all(all: &mut Vec<Scored>) {
    use crate::decide::spare;
    let mut out = spare::scored(all.len());
    let mut keys = spare::scratch();
    sort_into(all, &mut out, &mut keys);
    spare::put_scratch(keys);
    spare::keep_scored(std::mem::replace(all, out));
}

/// All candidates in arbitration order.
pub(crate) fn sorted(all: &[Scored]) -> Vec<Scored> {
    let mut out = Vec::with_capacity(all.len());
    sort_into(all, &mut out, &mut Vec::with_capacity(all.len()));
    out
}

/// [`sorted`] into `out` (cleared first), with `keys` for scratch: a
/// caller that sorts again and again reuses both.
pub(crate) fn sort_into(all: &[Scored], out: &mut Vec<Scored>, keys: &mut Vec<u64>) {
    out.clear();
    // The order of `Scored::ranks_before` as integers: the priority's
    // total-order bits, inverted (descending). Sorting 8-byte integers and
    // moving each candidate once beats comparing floats and swapping
    // 48-byte candidates. The key keeps the top 48 bits of the priority
    // and the candidate's position in the low 16; candidates whose
    // priorities share those 48 bits (equal, or within 2^-36 of each
    // other) are then put in their exact order, by the whole priority and
    // the action. A candidate appears once, so that order is total and an
    // unstable sort has one possible result.
    const POS: u64 = 0xffff;
    if all.len() > POS as usize + 1 {
        out.extend_from_slice(all);
        out.sort_unstable_by_key(|s| (descending(s.priority), s.action));
        return;
    }
    keys.clear();
    keys.extend(
        (0u64..)
            .zip(all.iter())
            .map(|(i, s)| (descending(s.priority) & !POS) | i),
    );
    keys.sort_unstable();
    let mut i = 0;
    while i < keys.len() {
        let high = keys[i] & !POS;
        let mut j = i + 1;
        while j < keys.len() && keys[j] & !POS == high {
            j += 1;
        }
        if j - i > 1 {
            keys[i..j].sort_unstable_by_key(|&k| {
                let s = &all[(k & POS) as usize];
                (descending(s.priority), s.action)
            });
        }
        i = j;
    }
    out.extend(keys.iter().map(|&k| all[(k & POS) as usize]));
}

/// Merge `more` into `sorted`, both in arbitration order, keeping that
/// order: for a few candidates rescored among many, cheaper than sorting
/// them all again.
pub(crate) fn merge(sorted: &mut Vec<Scored>, more: &[Scored]) {
    let (mut i, mut j) = (sorted.len(), more.len());
    sorted.extend_from_slice(more);
    // From the back, each place takes the later of the two candidates left.
    for k in (0..sorted.len()).rev() {
        if j == 0 {
            break;
        }
        if i > 0 && more[j - 1].ranks_before(&sorted[i - 1]) {
            sorted[k] = sorted[i - 1];
            i -= 1;
        } else {
            sorted[k] = more[j - 1];
            j -= 1;
        }
    }
}

/// A priority's place in arbitration order as an integer: `f64::total_cmp`
/// order inverted, with -0.0 and 0.0 equal.
#[inline]
fn descending(priority: f64) -> u64 {
    let bits = (priority + 0.0).to_bits() as i64;
    // `f64::total_cmp`'s order as a signed integer, then unsigned.
    let ordered = (bits ^ (((bits >> 63) as u64) >> 1) as i64) as u64 ^ (1 << 63);
    !ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(action: u32, priority: f64) -> Scored {
        Scored {
            action,
            propensity: 1.0,
            context_weight: 1.0,
            value: priority,
            lever: 1.0,
            priority,
        }
    }

    #[test]
    fn sort_all_orders_like_ranks_before_with_ties_and_signed_zeros() {
        let mut all = vec![
            s(5, 0.0),
            s(2, -0.0),
            s(9, 3.5),
            s(1, 3.5),
            s(7, -1.0),
            s(3, 0.0),
            s(8, 1e-300),
            s(4, 3.5),
        ];
        sort_all(&mut all);
        for w in all.windows(2) {
            assert!(w[0].ranks_before(&w[1]), "{:?} before {:?}", w[0], w[1]);
        }
        let got: Vec<u32> = all.iter().map(|c| c.action).collect();
        assert_eq!(got, vec![1, 4, 9, 8, 2, 3, 5, 7]);
    }

    proptest::proptest! {
        /// The integer keys order candidates exactly as the float
        /// comparison does: negatives, zeros of both signs, infinities,
        /// subnormals and NaN (which `total_cmp` orders too).
        #[test]
        fn sort_all_equals_sorting_by_the_comparison(
            raw in proptest::collection::vec(
                (0u32..2000, proptest::prop_oneof![
                    proptest::num::f64::ANY,
                    0.0f64..1000.0,
                    0.0f64..1000.0,
                    proptest::sample::select(vec![0.0, -0.0, 1.0, -1.0, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE / 4.0]),
                    // Priorities that differ below the sort key's 48 bits.
                    proptest::strategy::Strategy::prop_map(0u32..8, |k| 1.0 + f64::from(k) * f64::EPSILON),
                    proptest::strategy::Strategy::prop_map(0u32..8, |k| -3.0 - f64::from(k) * f64::EPSILON),
                ]),
                0..400,
            )
        ) {
            // One candidate per action, as in a decision.
            let mut seen = std::collections::HashSet::new();
            let mut all: Vec<Scored> = raw
                .into_iter()
                .filter(|(a, _)| seen.insert(*a))
                .map(|(a, p)| s(a, p))
                .collect();
            let mut reference = all.clone();
            reference.sort_unstable_by(|a, b| {
                (b.priority + 0.0)
                    .total_cmp(&(a.priority + 0.0))
                    .then(a.action.cmp(&b.action))
            });
            sort_all(&mut all);
            let order = |v: &[Scored]| v.iter().map(|c| (c.action, c.priority.to_bits())).collect::<Vec<_>>();
            proptest::prop_assert_eq!(order(&all), order(&reference));
        }

        /// Merging a sorted list into another gives the order of sorting
        /// them together (how adjust puts rescored candidates back).
        #[test]
        fn merge_equals_sorting_the_two_together(
            raw in proptest::collection::vec(
                (0u32..500, proptest::prop_oneof![
                    0.0f64..10.0,
                    proptest::sample::select(vec![0.0, -0.0, 1.0, 2.0, f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, 5e-324]),
                ], proptest::bool::ANY),
                0..120,
            )
        ) {
            let mut seen = std::collections::HashSet::new();
            let (mut sorted, mut more): (Vec<Scored>, Vec<Scored>) = (Vec::new(), Vec::new());
            for (a, p, second) in raw {
                if seen.insert(a) {
                    if second { more.push(s(a, p)) } else { sorted.push(s(a, p)) }
                }
            }
            let mut reference: Vec<Scored> = sorted.iter().chain(&more).copied().collect();
            sort_all(&mut reference);
            sort_all(&mut sorted);
            sort_all(&mut more);
            merge(&mut sorted, &more);
            let order = |v: &[Scored]| v.iter().map(|c| c.action).collect::<Vec<_>>();
            proptest::prop_assert_eq!(order(&sorted), order(&reference));
        }
    }

    #[test]
    fn top_n_keeps_the_best_in_order_and_breaks_ties_by_action_index() {
        let mut top = TopN::new(3, 3);
        for c in [
            s(0, 0.5),
            s(1, 5.0),
            s(2, 1.0),
            s(3, 1.0),
            s(4, 5.0),
            s(5, 1.0),
        ] {
            top.offer(c);
        }
        let got: Vec<u32> = top.into_vec().iter().map(|c| c.action).collect();
        assert_eq!(got, vec![1, 4, 2]);
    }

    proptest::proptest! {
        /// The top N of candidates offered in action order is the first N
        /// of all of them sorted, for any limit: ties (many priorities are
        /// drawn from a few values), zeros of both signs, infinities and
        /// NaNs of both signs included.
        #[test]
        fn top_n_is_the_head_of_the_sorted_candidates(
            priorities in proptest::collection::vec(proptest::prop_oneof![
                proptest::sample::select(vec![
                    0.0, -0.0, 1.0, 2.0, 0.5, -1.0, f64::INFINITY, f64::NEG_INFINITY,
                    f64::NAN, -f64::NAN, f64::MIN_POSITIVE, 1e300,
                    // The NaN whose order key is u64::MAX, the empty bar's.
                    f64::from_bits(u64::MAX),
                ]),
                proptest::strategy::Strategy::prop_map(proptest::num::u64::ANY, f64::from_bits),
            ], 0..120),
            limit in 0usize..70,
            gaps in proptest::collection::vec(0u32..4, 120),
        ) {
            // Ascending action indices with gaps, as a channel's are.
            let mut action = 0;
            let all: Vec<Scored> = priorities
                .iter()
                .zip(&gaps)
                .map(|(&p, &gap)| {
                    action += gap + 1;
                    s(action, p)
                })
                .collect();
            let mut top = TopN::new(limit, limit);
            for c in &all {
                top.offer(*c);
            }
            let mut sorted = all.clone();
            sort_all(&mut sorted);
            let order = |v: &[Scored]| v.iter().map(|c| c.action).collect::<Vec<_>>();
            proptest::prop_assert_eq!(
                order(&top.into_vec()),
                order(&sorted[..limit.min(sorted.len())])
            );
        }
    }
}
