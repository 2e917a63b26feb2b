//! The [`Engine`]: the handle services hold and share between threads.
//!
//! The live rule version sits behind an `ArcSwap`. A decision loads it
//! exactly once and uses that version from start to end, so a publish
//! never changes a decision in flight. Readers never take a lock.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::arbitration;
use crate::context::{Context, Timestamp};
use crate::decision::{Arm, Decision, DecisionId, DecisionRequest, RequestJson, Removed, Scored, MAX_LIMIT};
use crate::error::Error;
use crate::expr::Env;
use crate::policy::{first_failure, Memo};
use crate::ruleset::{RuleSet, Schema, Stage};

/// A published rule version: a compiled rule set and its number.
#[derive(Debug)]
pub struct Version {
    pub(crate) number: u64,
    pub(crate) rules: RuleSet,
}

impl Version {
    /// The version number (1 for the first published, then increasing).
    pub fn number(&self) -> u64 {
        self.number
    }
    /// The compiled rule set.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }
}

/// The decision engine. `Send + Sync`; share it in an `Arc`.
///
/// ```
/// use nextbest::{Engine, Context, DecisionRequest};
/// let engine = Engine::from_dir("rules/retail_bank")?;
/// let ctx = Context::builder(&engine.schema())
///     .set("age", 35)
///     .set("income", 48_000.0)
///     .build()?;
/// let decision = engine.decide(&DecisionRequest::new("C42", "call_center", ctx))?;
/// assert!(decision.actions().len() <= 3);
/// # Ok::<(), nextbest::Error>(())
/// ```
pub struct Engine {
    current: ArcSwap<Version>,
    next_version: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.current.load();
        f.debug_struct("Engine")
            .field("ruleset", &v.rules.name())
            .field("version", &v.number)
            .finish()
    }
}

impl Engine {
    /// An engine serving `rules` as version 1.
    pub fn new(rules: RuleSet) -> Engine {
        Engine {
            current: ArcSwap::from_pointee(Version { number: 1, rules }),
            next_version: AtomicU64::new(2),
        }
    }

    /// Load, validate and compile a rule directory and serve it.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Engine, Error> {
        Ok(Engine::new(RuleSet::from_dir(dir)?))
    }

    /// Publish a new compiled version atomically; decisions in flight
    /// finish on the version they started with. Returns its number.
    pub fn publish(&self, rules: RuleSet) -> u64 {
        let number = self.next_version.fetch_add(1, Ordering::Relaxed);
        let old = self.current.swap(Arc::new(Version { number, rules }));
        // The old version is freed when its last in-flight decision drops
        // it; here it is only released by this thread, off the decide path.
        drop(old);
        number
    }

    /// The live version.
    pub fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// The live version's context schema, to build contexts with
    /// [`Context::builder`].
    pub fn schema(&self) -> Arc<Schema> {
        self.current.load().rules.schema.clone()
    }

    /// Decide: the next best actions for the request's customer and channel.
    pub fn decide(&self, request: &DecisionRequest) -> Result<Decision, Error> {
        let version = self.current.load_full();
        decide_on(version, request)
    }

    /// Decide from a JSON request (the shape in the README), binding its
    /// context to the live version's schema.
    pub fn decide_json(&self, json: &str) -> Result<Decision, Error> {
        let raw: RequestJson =
            serde_json::from_str(json).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let version = self.current.load_full();
        let request = raw.bind(&version.rules.schema)?;
        decide_on(version, &request)
    }
}

/// Decide on one version (the version is loaded once by the caller).
pub(crate) fn decide_on(version: Arc<Version>, request: &DecisionRequest) -> Result<Decision, Error> {
    let started = Instant::now();
    let rs = &version.rules;
    let channel = rs.channel(&request.channel)?;
    let ch = &rs.channels[channel as usize];
    let limit = request.limit.or(ch.limit).unwrap_or(rs.default_limit);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::InvalidRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    let rebound;
    let ctx: &Context = if request.context.schema.fingerprint == rs.schema.fingerprint {
        &request.context
    } else {
        rebound = request.context.rebind(&rs.schema);
        &rebound
    };
    let now = request.now.unwrap_or_else(Timestamp::now);
    let env = Env { ctx, now: now.0 };

    let mut results = take_scratch(rs.conds.len());
    let mut memo = Memo::new(&mut results, &rs.conds, env);
    let mut chosen = Vec::with_capacity(limit.min(ch.actions.len()));
    let mut ranked = Vec::new();
    let mut removed = Vec::new();
    for &ai in ch.actions.iter() {
        let action = &rs.actions[ai as usize];
        if let Some(check) = first_failure(&action.checks, &mut memo) {
            if request.explain {
                removed.push(Removed {
                    action: ai,
                    stage: check.stage,
                    level: check.level,
                    cond: Some(check.cond),
                    error: memo.error(check.cond),
                });
            }
            continue;
        }
        let Some(value) = arbitration::value(action, &memo) else {
            if request.explain {
                removed.push(Removed {
                    action: ai,
                    stage: Stage::Value,
                    level: crate::ruleset::Level::Action,
                    cond: None,
                    error: match &action.value {
                        crate::ruleset::ValueFn::Expr(ir, _) => ir.eval(memo.env()).err(),
                        _ => None,
                    },
                });
            }
            continue;
        };
        let propensity = arbitration::propensity(action);
        let context_weight = arbitration::context_weight(rs, action, &mut memo);
        let scored = Scored {
            action: ai,
            propensity,
            context_weight,
            value,
            lever: action.lever,
            priority: propensity * context_weight * value * action.lever,
        };
        if request.explain {
            ranked.push(scored);
        } else {
            arbitration::offer_top(&mut chosen, limit, scored);
        }
    }
    put_scratch(results);
    if request.explain {
        arbitration::sort_all(&mut ranked);
        chosen.extend(ranked.iter().take(limit).copied());
    }
    let elapsed_ns = started.elapsed().as_nanos() as u64;
    Ok(Decision {
        version,
        id: next_decision_id(),
        timestamp: now,
        arm: Arm::Champion,
        channel,
        chosen,
        ranked,
        removed,
        elapsed_ns,
    })
}

thread_local! {
    /// Conjunct memo reused across decisions on this thread, so a decision
    /// does not allocate it.
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// This thread's block of decision ids: (next, end).
    static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn take_scratch(n: usize) -> Vec<u8> {
    let mut v = SCRATCH.with(Cell::take);
    v.clear();
    v.resize(n, 0);
    v
}

fn put_scratch(v: Vec<u8>) {
    SCRATCH.with(|s| s.set(v));
}

/// Decision ids: a random per-process prefix and a counter. Threads take
/// blocks of 4096 counter values so they never contend on one atomic.
fn next_decision_id() -> DecisionId {
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
    let n = IDS.with(|ids| {
        let (mut next, mut end) = ids.get();
        if next == end {
            next = BLOCKS.fetch_add(1, Ordering::Relaxed) * BLOCK;
            end = next + BLOCK;
        }
        ids.set((next + 1, end));
        next
    });
    DecisionId(((prefix as u128) << 64) | n as u128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
        assert_send_sync::<Decision>();
    }

    #[test]
    fn decision_ids_are_unique_across_threads() {
        let ids: Vec<Vec<DecisionId>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..10_000).map(|_| next_decision_id()).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<DecisionId> = ids.into_iter().flatten().collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
