//! A logged decision allocates no more on the deciding thread than an
//! unlogged one: the buffers of records the writer is done with are reused
//! (see `engine::spare`). Allocations a record keeps until the writer is
//! done with it, hundreds of decisions later, miss malloc's per-thread
//! cache; before the reuse they cost a logged retail_bank decision a fifth
//! of its time on the deciding thread.
//!
//! Allocations are counted, not timed: the count repeats exactly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use nextbest::audit::{CallbackSink, LogDetail, LogOptions};
use nextbest::simulate::load_customers;
use nextbest::{Context, DecisionRequest, Engine, EngineConfig, RuleSet, Timestamp};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Count this thread's allocations (the deciding thread's only).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    // `try_with`: allocations during thread teardown are not counted.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING_ALLOCATOR: Counting = Counting;

/// The first 200 customers of `dir`'s population, spread over its channels.
fn requests(engine: &Engine, dir: &str) -> Vec<DecisionRequest> {
    let schema = engine.schema();
    let rules = engine.current();
    let channels: Vec<&str> = rules.rules().channel_names().collect();
    let now = Timestamp::parse("2026-11-23T10:00:00Z").unwrap();
    load_customers(format!("{dir}/customers.jsonl"))
        .unwrap()
        .into_iter()
        .take(200)
        .enumerate()
        .map(|(i, c)| {
            let context = Context::from_json(&schema, &c.context).unwrap();
            DecisionRequest::new(c.customer_id, channels[i % channels.len()], context).at(now)
        })
        .collect()
}

/// Allocations per decision on this thread: the fewest of `rounds` passes
/// over `reqs`, after one pass to warm up. Each pass ends with a flush, so
/// the records the writer is done with are back before the next pass. (The
/// fewest: a writer left idle for 32 ms frees the records it holds, which
/// a pass descheduled that long on a loaded machine would then allocate.)
fn allocations_per_decision(engine: &Engine, reqs: &[DecisionRequest], rounds: usize) -> f64 {
    let pass = || {
        for r in reqs {
            std::hint::black_box(engine.decide(r).unwrap());
        }
        engine.flush().unwrap();
    };
    pass();
    let fewest = (0..rounds)
        .map(|_| {
            COUNTING.set(true);
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            pass();
            let n = ALLOCATIONS.load(Ordering::Relaxed) - before;
            COUNTING.set(false);
            n
        })
        .min()
        .unwrap_or(0);
    fewest as f64 / reqs.len() as f64
}

#[test]
fn a_logged_decision_allocates_no_more_than_an_unlogged_one() {
    for dir in ["rules/retail_bank", "rules/telco_care"] {
        let rules = || RuleSet::from_dir(dir).unwrap();
        let plain = Engine::new(rules());
        let reqs = requests(&plain, dir);
        let unlogged = allocations_per_decision(&plain, &reqs, 5);
        for detail in [LogDetail::All, LogDetail::Ranked, LogDetail::Chosen] {
            let logged = Engine::with_sink(
                rules(),
                EngineConfig::default(),
                Box::new(CallbackSink(|r: &str| {
                    std::hint::black_box(r);
                })),
                LogOptions {
                    detail,
                    ..LogOptions::default()
                },
            )
            .unwrap();
            let with_log = allocations_per_decision(&logged, &reqs, 5);
            eprintln!("{dir}, candidates {detail:?}: {with_log:.2} allocations a logged decision, {unlogged:.2} unlogged");
            // The flush's own allocations (a channel per call) are spread
            // over the pass; a little slack covers them.
            assert!(
                with_log <= unlogged + 0.1,
                "{dir}, candidates {detail:?}: {with_log:.2} allocations a logged decision \
                 against {unlogged:.2} unlogged"
            );
        }
    }
}
