//! Buffers of logged decisions, kept by the deciding thread for its next
//! decisions.
//!
//! A logged decision's lists live until the log's writer has written them,
//! by which time the deciding thread has made hundreds of other decisions.
//! Freed only then, and allocated afresh meanwhile, they miss malloc's
//! per-thread cache and go through its shared bins: on a logged
//! retail_bank decision that was a fifth of the deciding thread's time
//! (perf), against a few percent without a log. A thread that takes back a
//! record the writer is done with puts its decision's buffers here
//! ([`recycle`]), and its next decision takes them, emptied, instead of
//! allocating. Without a log nothing is recycled and every taker simply
//! allocates (the buffers a decision replaces while deciding, such as the
//! survivors before sorting, are kept too). The thread's scratch words
//! (the conjunct bitset, sort keys) live here as well.

use std::cell::{Cell, RefCell};

use crate::decide::decision::{Decision, PolicyRemovals, Recorded, Removed, Scored};

/// Candidate lists kept per thread: a logged decision carries up to three
/// (chosen, ranked, and ranked sorted for a reader), deciding replaces
/// one or two on the way.
const KEEP_SCORED: usize = 4;
/// A buffer larger than this many elements is freed, not kept: a thread
/// that once decided over a huge channel does not hold its memory forever.
const KEEP_MAX: usize = 4096;
/// Scratch words kept (512 KiB): a conjunct bitset of 4 million parts, or
/// the sort keys of 65,536 candidates.
const SCRATCH_MAX: usize = 1 << 16;

struct Spare {
    scored: Vec<Vec<Scored>>,
    removed: Vec<Removed>,
    words: Vec<u64>,
    evidence: Vec<(u32, u32, u32)>,
    recorded: Option<Box<Recorded>>,
}

thread_local! {
    /// Words for scratch work within one step of a decision (the conjunct
    /// bitset, sort keys): taken and put back, never held across steps.
    static SCRATCH: Cell<Vec<u64>> = const { Cell::new(Vec::new()) };
    static SPARE: RefCell<Spare> = const {
        RefCell::new(Spare {
            scored: Vec::new(),
            removed: Vec::new(),
            words: Vec::new(),
            evidence: Vec::new(),
            recorded: None,
        })
    };
}

/// Run `f` on this thread's spare buffers; `None` while they are in use
/// or being torn down (the caller then allocates or frees as usual).
fn with<R>(f: impl FnOnce(&mut Spare) -> R) -> Option<R> {
    SPARE
        .try_with(|s| s.try_borrow_mut().ok().map(|mut s| f(&mut s)))
        .ok()
        .flatten()
}

/// This thread's scratch words, emptied (a new buffer while another
/// step holds them, or while the thread is torn down).
pub(crate) fn scratch() -> Vec<u64> {
    let mut v = SCRATCH.try_with(Cell::take).unwrap_or_default();
    v.clear();
    v
}

/// Put the scratch words back for the next [`scratch`].
pub(crate) fn put_scratch(v: Vec<u64>) {
    if v.capacity() <= SCRATCH_MAX {
        let _ = SCRATCH.try_with(|s| s.set(v));
    }
}

/// An empty candidate list with room for `capacity`.
pub(crate) fn scored(capacity: usize) -> Vec<Scored> {
    let mut v = with(|s| s.scored.pop()).flatten().unwrap_or_default();
    // Exact: doubling would make a 3,000-action channel's lists too large
    // to keep.
    v.reserve_exact(capacity);
    v
}

/// Keep a candidate list for a later [`scored`].
pub(crate) fn keep_scored(mut v: Vec<Scored>) {
    if v.capacity() == 0 || v.capacity() > KEEP_MAX {
        return;
    }
    v.clear();
    // Freed (empty) when there is no room.
    let _ = with(|s| (s.scored.len() < KEEP_SCORED).then(|| s.scored.push(v)));
}

/// An empty list of removed candidates.
pub(crate) fn removed() -> Vec<Removed> {
    with(|s| std::mem::take(&mut s.removed)).unwrap_or_default()
}

/// An empty list of words with room for `capacity`.
pub(crate) fn words(capacity: usize) -> Vec<u64> {
    let mut v = with(|s| std::mem::take(&mut s.words)).unwrap_or_default();
    v.reserve_exact(capacity);
    v
}

/// An empty evidence list with room for `capacity`.
pub(crate) fn evidence(capacity: usize) -> Vec<(u32, u32, u32)> {
    let mut v = with(|s| std::mem::take(&mut s.evidence)).unwrap_or_default();
    v.reserve_exact(capacity);
    v
}

/// A boxed record of the engagement policies' removals.
pub(crate) fn recorded(policy: PolicyRemovals) -> Box<Recorded> {
    match with(|s| s.recorded.take()).flatten() {
        Some(mut r) => {
            r.policy = policy;
            r
        }
        None => Box::new(Recorded {
            sorted: std::sync::OnceLock::new(),
            policy,
        }),
    }
}

/// Keep `v` in `slot` if the slot has less room (both emptied).
fn keep<T>(slot: &mut Vec<T>, mut v: Vec<T>) {
    if v.capacity() > slot.capacity() && v.capacity() <= KEEP_MAX {
        v.clear();
        *slot = v;
    }
}

/// Keep a decision's buffers for this thread's next decisions.
pub(crate) fn recycle(d: Decision) {
    let Decision {
        chosen,
        ranked,
        removed,
        evidence,
        recorded,
        ..
    } = d;
    keep_scored(chosen);
    keep_scored(ranked);
    let recorded = recorded.map(|mut r| {
        if let Some(sorted) = r.sorted.take() {
            keep_scored(sorted);
        }
        let bits = r.policy.take_bits();
        r.policy = PolicyRemovals::default();
        (r, bits)
    });
    // The lists' elements are dropped here, outside the borrow.
    let (mut removed, mut evidence) = (removed, evidence);
    removed.clear();
    evidence.clear();
    let _ = with(move |s| {
        keep(&mut s.removed, removed);
        keep(&mut s.evidence, evidence);
        if let Some((r, bits)) = recorded {
            keep(&mut s.words, bits);
            s.recorded.get_or_insert(r);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_buffers_come_back_empty_with_their_room() {
        let mut v = scored(0);
        v.push(Scored {
            action: 1,
            propensity: 0.5,
            context_weight: 1.0,
            value: 2.0,
            lever: 1.0,
            priority: 1.0,
        });
        v.reserve(100);
        let cap = v.capacity();
        keep_scored(v);
        let again = scored(10);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), cap);
        // Too large to keep: freed, and the next taker allocates.
        keep_scored(Vec::with_capacity(KEEP_MAX + 1));
        assert!(scored(0).capacity() <= KEEP_MAX);
    }
}
