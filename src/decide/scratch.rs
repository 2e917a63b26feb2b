//! The memory a decision reuses, owned by whoever decides.
//!
//! As in regex-automata's `Cache`, every buffer a decision reuses from the
//! last one lives in one [`Scratch`] that the caller passes in; nothing of
//! it hides in a thread-local, and nothing in it changes what a decision
//! means: a fresh scratch decides exactly as a used one. [`Pool`] is the
//! convenience `Engine::decide` takes its scratch from.
//!
//! Why keep buffers at all: a logged decision's lists live until the log's
//! writer has written them, by which time the deciding thread has made
//! hundreds of other decisions. Freed only then, and allocated afresh
//! meanwhile, they miss malloc's per-thread cache and go through its shared
//! bins: on a logged retail_bank decision that was a fifth of the deciding
//! thread's time (perf), against a few percent without a log. The engine
//! hands a record the writer is done with back to the scratch
//! ([`Scratch::recycle`]), and the next decision takes its lists, emptied,
//! instead of allocating. Without a log nothing is recycled and the lists
//! are simply allocated (the ones a decision replaces on the way, such as
//! the survivors before sorting, are kept too).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crossbeam_utils::atomic::AtomicCell;
use crossbeam_utils::CachePadded;

use super::decision::{Decision, PolicyRemovals, Recorded};
use crate::base::util::{stripe, STRIPES};
use crate::base::{DecisionId, Removed, Scored};
use crate::context::Context;
use crate::ruleset::strategy::HookScratch;
use crate::state::contact;
use crate::state::history::Event;

/// Candidate lists kept: a logged decision carries up to three (chosen,
/// ranked, and ranked sorted for a reader); deciding replaces one or two on
/// the way.
const KEEP_SCORED: usize = 4;
/// A list larger than this many elements is freed, not kept: a scratch
/// that once decided over a huge channel does not hold its memory forever.
const KEEP_MAX: usize = 4096;
/// Words kept (512 KiB): a conjunct bitset of 4 million parts, or the sort
/// keys of 65,536 candidates.
const WORDS_MAX: usize = 1 << 16;
/// A context that one customer's long values grew past this many bytes is
/// not kept for the next decision.
const CONTEXT_MAX: usize = 1 << 16;

/// Every buffer one decision reuses from the last, and the block of
/// decision ids it draws from. Create one with `Scratch::default()`, pass
/// it to each decision, never share it between two decisions at once.
#[derive(Default)]
pub struct Scratch {
    /// The conjunct memo and the passing set, while scoring.
    pub(crate) words: Vec<u64>,
    /// Sort keys, while sorting.
    pub(crate) keys: Vec<u64>,
    /// Lists that end up in a decision.
    pub(crate) lists: Lists,
    /// What the engine-state checks read the customer's history into.
    pub(crate) state: StateBuffers,
    /// The copy of the context that `derive`'s attributes go into.
    pub(crate) context: Option<Context>,
    /// The strategy hooks' buffers and interpreter.
    pub(crate) hooks: HookScratch,
    /// This scratch's block of decision ids: (next, end).
    ids: (u64, u64),
    /// The customer's bins of the contextual model.
    pub(crate) bins: Vec<u32>,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("words", &self.words.capacity())
            .field("keys", &self.keys.capacity())
            .field("lists", &self.lists.scored.len())
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

/// The buffers of the engine-state checks: the customer's events, the
/// contact policies' own scratch, the suppressions found, their marks by
/// action and by group, the suppressed actions, and what a shared volume
/// store said.
#[derive(Default)]
pub(crate) struct StateBuffers {
    pub events: Vec<Event>,
    pub contact: contact::Scratch,
    pub suppressions: Vec<contact::Suppression>,
    pub by_action: Vec<u32>,
    pub by_group: Vec<u32>,
    pub marked: Vec<(u32, u32)>,
    /// Per volume constraint, the units taken in the decision's period as
    /// a shared store read them (`None`: too old).
    pub volume_counts: Vec<Option<u32>>,
    /// Whether the shared volume store failed in this decision (it is
    /// then not called again by it).
    pub volumes_down: bool,
    /// Whether the history store failed in this decision (it is then not
    /// called again by it: the decision's impressions are not recorded).
    pub history_down: bool,
}

/// Lists that end up in a decision, kept from recycled decisions.
#[derive(Default)]
pub(crate) struct Lists {
    scored: Vec<Vec<Scored>>,
    removed: Vec<Removed>,
    words: Vec<u64>,
    evidence: Vec<(u32, u32, u32)>,
    recorded: Option<Box<Recorded>>,
}

impl Lists {
    /// An empty candidate list with room for `capacity`.
    pub(crate) fn scored(&mut self, capacity: usize) -> Vec<Scored> {
        let mut v = self.scored.pop().unwrap_or_default();
        // Exact: doubling would make a 3,000-action channel's lists too
        // large to keep.
        v.reserve_exact(capacity);
        v
    }

    /// Keep a candidate list for a later [`Lists::scored`].
    pub(crate) fn keep_scored(&mut self, mut v: Vec<Scored>) {
        if v.capacity() == 0 || v.capacity() > KEEP_MAX || self.scored.len() >= KEEP_SCORED {
            return;
        }
        v.clear();
        self.scored.push(v);
    }

    /// An empty list of removed candidates.
    pub(crate) fn removed(&mut self) -> Vec<Removed> {
        std::mem::take(&mut self.removed)
    }

    /// An empty list of words.
    pub(crate) fn words(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.words)
    }

    /// An empty evidence list with room for `capacity`.
    pub(crate) fn evidence(&mut self, capacity: usize) -> Vec<(u32, u32, u32)> {
        let mut v = std::mem::take(&mut self.evidence);
        v.reserve_exact(capacity);
        v
    }

    /// A boxed record of the engagement policies' removals.
    pub(crate) fn recorded(&mut self, policy: PolicyRemovals) -> Box<Recorded> {
        match self.recorded.take() {
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
}

/// Keep `v` in `slot` if the slot has less room (both emptied).
fn keep<T>(slot: &mut Vec<T>, mut v: Vec<T>) {
    if v.capacity() > slot.capacity() && v.capacity() <= KEEP_MAX {
        v.clear();
        *slot = v;
    }
}

impl Scratch {
    /// A new, empty scratch (what `Scratch::default()` gives).
    pub fn new() -> Scratch {
        Scratch::default()
    }

    /// Keep a finished decision's lists for the next decisions (the
    /// engine does this with the records its log's writer is done with).
    pub(crate) fn recycle(&mut self, d: Decision) {
        let Decision {
            chosen,
            ranked,
            removed,
            evidence,
            recorded,
            ..
        } = d;
        let lists = &mut self.lists;
        lists.keep_scored(chosen);
        lists.keep_scored(ranked);
        if let Some(mut r) = recorded {
            if let Some(sorted) = r.sorted.take() {
                lists.keep_scored(sorted);
            }
            let bits = r.policy.take_bits();
            r.policy = PolicyRemovals::default();
            keep(&mut lists.words, bits);
            lists.recorded.get_or_insert(r);
        }
        keep(&mut lists.removed, removed);
        keep(&mut lists.evidence, evidence);
    }

    /// The next decision id: a random per-process prefix and a counter.
    /// A scratch takes the counter in blocks of 4096 values, so deciding
    /// threads never contend on one atomic.
    pub(crate) fn next_id(&mut self) -> DecisionId {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static BLOCKS: AtomicU64 = AtomicU64::new(0);
        const BLOCK: u64 = 4096;
        let prefix = *PREFIX.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            );
            h.write_u32(std::process::id());
            h.finish()
        });
        let (mut next, mut end) = self.ids;
        if next == end {
            next = BLOCKS.fetch_add(1, Ordering::Relaxed) * BLOCK;
            end = next + BLOCK;
        }
        self.ids = (next + 1, end);
        DecisionId(((prefix as u128) << 64) | next as u128)
    }
}

/// Give words back to `slot` (unless a huge channel grew them).
pub(crate) fn put_words(slot: &mut Vec<u64>, w: Vec<u64>) {
    if w.capacity() <= WORDS_MAX {
        *slot = w;
    }
}

/// Keep a context copy's buffers in `slot`, emptied so that no customer's
/// values outlive the decision (not those one customer's long values grew).
pub(crate) fn keep_context(slot: &mut Option<Context>, mut c: Context) {
    if c.heap_bytes() <= CONTEXT_MAX {
        c.clear();
        *slot = Some(c);
    }
}

/// Scratches for whoever decides through the engine: one slot per stripe
/// of threads, so a thread mostly gets back the scratch it used last and
/// two threads deciding at once rarely touch the same slot. Taking and
/// putting back are one atomic swap each (no lock); a thread that finds
/// its slot empty makes a new scratch, and a scratch put back into a full
/// slot replaces the one there (its buffers are freed).
pub(crate) struct Pool {
    stripes: Box<[CachePadded<Slot>]>,
}

/// A stripe's slot: empty, or the scratch its threads used last.
type Slot = AtomicCell<Option<Box<Scratch>>>;

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            stripes: (0..STRIPES)
                .map(|_| CachePadded::new(AtomicCell::new(None)))
                .collect(),
        }
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// A scratch, back in the pool when the guard drops.
    pub(crate) fn get(&self) -> Pooled<'_> {
        let stripe = stripe();
        let scratch = self.stripes[stripe].take().unwrap_or_default();
        Pooled {
            pool: self,
            stripe,
            scratch: Some(scratch),
        }
    }
}

/// A scratch taken from a [`Pool`].
pub(crate) struct Pooled<'p> {
    pool: &'p Pool,
    stripe: usize,
    scratch: Option<Box<Scratch>>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        match &self.scratch {
            Some(s) => s,
            None => unreachable!("taken only on drop"),
        }
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Scratch {
        match &mut self.scratch {
            Some(s) => s,
            None => unreachable!("taken only on drop"),
        }
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.scratch.take() {
            // Another thread of the stripe may have put one back meanwhile:
            // the one replaced is dropped.
            drop(self.pool.stripes[self.stripe].swap(Some(s)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_lists_come_back_empty_with_their_room() {
        let mut lists = Lists::default();
        let mut v = lists.scored(0);
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
        lists.keep_scored(v);
        let again = lists.scored(10);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), cap);
        // Too large to keep: freed, and the next taker allocates.
        lists.keep_scored(Vec::with_capacity(KEEP_MAX + 1));
        assert!(lists.scored(0).capacity() <= KEEP_MAX);
    }

    #[test]
    fn decision_ids_are_unique_across_scratches_and_threads() {
        let ids: Vec<Vec<DecisionId>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut scratch = Scratch::default();
                        (0..10_000).map(|_| scratch.next_id()).collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<DecisionId> = ids.into_iter().flatten().collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn a_pool_hands_back_the_scratch_a_thread_returned() {
        let pool = Pool::default();
        let first = {
            let mut s = pool.get();
            s.words.reserve(1000);
            s.words.as_ptr() as usize
        };
        let s = pool.get();
        assert_eq!(s.words.as_ptr() as usize, first);
    }
}
