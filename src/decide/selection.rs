//! Stage 5, selection: the top N of the scored candidates in arbitration
//! order (priority descending, then action id ascending: total and
//! deterministic), kept in one pass or by sorting every survivor when
//! later steps need them all.

use super::scoring::Candidates;
use super::scratch::Lists;
use crate::base::{ControlMode, Scored, Timestamp};
use crate::ruleset::learning::{Mode as LearnMode, Rng};
use crate::ruleset::RuleSet;

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

/// Sort all candidates into arbitration order (into a list kept in
/// `lists`, which then keeps the unsorted one), with `keys` for scratch.
pub(crate) fn sort_all(all: &mut Vec<Scored>, lists: &mut Lists, keys: &mut Vec<u64>) {
    let mut out = lists.scored(all.len());
    sort_into(all, &mut out, keys);
    lists.keep_scored(std::mem::replace(all, out));
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

/// With every survivor sorted and nothing chosen yet (no `select`, or it
/// failed): the first `limit`.
pub(crate) fn fill(out: &mut Candidates, limit: usize, lists: &mut Lists) {
    if out.chosen.is_empty() {
        if out.chosen.capacity() == 0 {
            out.chosen = lists.scored(limit.min(out.ranked.len()));
        }
        out.chosen.extend(out.ranked.iter().take(limit).copied());
    }
}

/// Epsilon-greedy exploration, after the strategy has adjusted and
/// selected, so that the logged probability describes the action actually
/// put first: with probability epsilon, a survivor drawn uniformly goes
/// first (with a `select` hook, one of what it selected: its rules, such as
/// one lending offer, hold for exploration too). Returns the probability
/// that the first action was put first.
pub(crate) fn explore(
    epsilon: f64,
    rng: &mut Rng,
    among_chosen: bool,
    limit: usize,
    out: &mut Candidates,
) -> Option<f64> {
    use rand_distr::Distribution;
    if out.ranked.is_empty() || out.chosen.is_empty() {
        return None;
    }
    let pool = if among_chosen {
        &out.chosen
    } else {
        &out.ranked
    };
    let n = pool.len();
    let u: f64 = rand_distr::StandardUniform.sample(rng);
    let greedy = out.chosen[0].action;
    let first = if u < epsilon {
        let i = rand_distr::Uniform::new(0, n).map_or(0, |d| d.sample(rng));
        pool[i].action
    } else {
        greedy
    };
    let explore = epsilon / n as f64;
    if first != greedy {
        if let Some(i) = out.ranked.iter().position(|c| c.action == first) {
            let pick = out.ranked[i];
            out.ranked[..=i].rotate_right(1);
            out.chosen.retain(|c| c.action != first);
            out.chosen.insert(0, pick);
            out.chosen.truncate(limit);
        }
        return Some(explore);
    }
    Some(1.0 - epsilon + explore)
}

/// The control group's choice: nothing (`no_action`), or one survivor
/// drawn with the `seed` (`random_eligible`, uniform over the survivors
/// given the customer's arm). Returns the selection probability.
pub(crate) fn control(mode: ControlMode, seed: u64, out: &mut Candidates) -> Option<f64> {
    out.chosen.clear();
    match mode {
        ControlMode::NoAction => None,
        ControlMode::RandomEligible => {
            if out.ranked.is_empty() {
                return None;
            }
            let pick = out.ranked[(seed % out.ranked.len() as u64) as usize];
            out.chosen.push(pick);
            Some(1.0 / out.ranked.len() as f64)
        }
    }
}

/// The control group's draw: a function of the customer and the decision
/// time only, so a replay with the logged inputs draws the same action.
pub(crate) fn control_seed(rules: &RuleSet, customer_id: &str, now: Timestamp) -> u64 {
    let seed = rules.experiment.as_ref().map_or(0, |e| e.seed) ^ 0x9e37_79b9_7f4a_7c15;
    let mut buf = Vec::with_capacity(customer_id.len() + 8);
    buf.extend_from_slice(customer_id.as_bytes());
    buf.extend_from_slice(&now.0.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64_with_seed(&buf, seed)
}

/// Epsilon-greedy exploration, and the probability the first action was
/// chosen with (1 under posterior-mean learning; `None` when it is not
/// known).
pub(crate) fn exploration(
    rs: &RuleSet,
    rng: Option<&mut Rng>,
    limit: usize,
    out: &mut Candidates,
) -> Option<f64> {
    match (rs.learning.as_ref(), rng) {
        (Some(l), Some(r)) if l.mode == LearnMode::EpsilonGreedy => {
            let among_chosen = rs.strategy.as_ref().is_some_and(|s| s.has_select);
            explore(l.epsilon, r, among_chosen, limit, out)
        }
        (Some(l), _) if l.mode == LearnMode::Mean && !out.chosen.is_empty() => Some(1.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sort with fresh buffers.
    fn sort_all(all: &mut Vec<Scored>) {
        super::sort_all(all, &mut Lists::default(), &mut Vec::new());
    }

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
