//! The path of one decision, on one already-loaded version.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::{assign_arm, check_limit, control_mode, since, Version};
use crate::arbitration;
use crate::context::{Context, Timestamp};
use crate::decision::{Arm, Decision, DecisionId, DecisionRequest, Removed, Scored};
use crate::error::Error;
use crate::expr::Env;
use crate::policy::{first_failure, Memo};
use crate::ruleset::{ControlMode, Level, RuleSet, Stage, ValueFn};

/// Decide on one version (loaded once by the caller).
///
/// With `log_all`, every candidate is recorded (removed and ranked) for the
/// decision log, whatever the request's `explain`.
pub(crate) fn decide_on(version: Arc<Version>, request: &DecisionRequest, log_all: bool) -> Result<Decision, Error> {
    let started = Instant::now();
    let arm = assign_arm(&version.rules, &request.customer_id);
    let rs = version.rules_for(arm);
    let channel = rs.channel(&request.channel)?;
    let ch = &rs.channels[channel as usize];
    let limit = check_limit(request.limit.or(ch.limit).unwrap_or(rs.default_limit))?;
    let rebound;
    let ctx: &Context = if request.context.schema.fingerprint == rs.schema.fingerprint {
        &request.context
    } else {
        rebound = request.context.rebind(&rs.schema);
        &rebound
    };
    let now = request.now.unwrap_or_else(Timestamp::now);
    let control = (arm == Arm::Control).then(|| control_mode(&version.rules));
    // The random-eligible control group draws from every survivor.
    let collect_all = request.explain || log_all || control == Some(ControlMode::RandomEligible);
    let record = Record {
        removed: request.explain || log_all,
        errors: request.explain,
        all: collect_all,
    };
    let mut out = evaluate(rs, channel, ctx, now, limit, record);
    let mut seed = None;
    match control {
        Some(ControlMode::NoAction) => out.chosen.clear(),
        Some(ControlMode::RandomEligible) => {
            let s = control_seed(&version.rules, &request.customer_id, now);
            out.chosen.clear();
            if !out.ranked.is_empty() {
                let pick = out.ranked[(s % out.ranked.len() as u64) as usize];
                out.chosen.push(pick);
            }
            if !request.explain && !log_all {
                out.ranked.clear();
            }
            seed = Some(s);
        }
        None => {}
    }
    Ok(Decision {
        id: next_decision_id(),
        timestamp: now,
        arm,
        seed,
        channel,
        chosen: out.chosen,
        ranked: out.ranked,
        removed: out.removed,
        elapsed_ns: since(started),
        version,
    })
}

/// The control group's draw: a function of the customer and the decision
/// time only, so a replay with the logged inputs draws the same action.
fn control_seed(rules: &RuleSet, customer_id: &str, now: Timestamp) -> u64 {
    let seed = rules.experiment.as_ref().map_or(0, |e| e.seed) ^ 0x9e37_79b9_7f4a_7c15;
    let mut buf = Vec::with_capacity(customer_id.len() + 8);
    buf.extend_from_slice(customer_id.as_bytes());
    buf.extend_from_slice(&now.0.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64_with_seed(&buf, seed)
}

/// What a decision records besides the chosen actions.
#[derive(Clone, Copy)]
struct Record {
    /// Every removed candidate with its stage and condition.
    removed: bool,
    /// Why a failed condition could not be evaluated (re-evaluates it).
    errors: bool,
    /// Every surviving candidate, sorted (not just the top N).
    all: bool,
}

struct Outcome {
    chosen: Vec<Scored>,
    ranked: Vec<Scored>,
    removed: Vec<Removed>,
}

/// Engagement policies, then arbitration, for every action offered on
/// `channel`.
fn evaluate(
    rs: &RuleSet,
    channel: u32,
    ctx: &Context,
    now: Timestamp,
    limit: usize,
    record: Record,
) -> Outcome {
    let ch = &rs.channels[channel as usize];
    let env = Env { ctx, now: now.0 };
    let mut results = take_scratch(rs.conds.len());
    let mut memo = Memo::new(&mut results, &rs.conds, env);
    let mut chosen = Vec::with_capacity(limit.min(ch.actions.len()));
    let mut ranked = Vec::new();
    let mut removed = Vec::new();
    for &ai in ch.actions.iter() {
        let action = &rs.actions[ai as usize];
        if let Some(check) = first_failure(&action.checks, &mut memo) {
            if record.removed {
                removed.push(Removed {
                    action: ai,
                    stage: check.stage,
                    level: check.level,
                    cond: Some(check.cond),
                    // The log's writer works the reason out off the hot path.
                    error: if record.errors { memo.error(check.cond) } else { None },
                });
            }
            continue;
        }
        let Some(value) = arbitration::value(action, &memo) else {
            if record.removed {
                removed.push(Removed {
                    action: ai,
                    stage: Stage::Value,
                    level: Level::Action,
                    cond: None,
                    error: match &action.value {
                        ValueFn::Expr(ir, _) if record.errors => ir.eval(memo.env()).err(),
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
        if record.all {
            ranked.push(scored);
        } else {
            arbitration::offer_top(&mut chosen, limit, scored);
        }
    }
    put_scratch(results);
    if record.all {
        arbitration::sort_all(&mut ranked);
        chosen.extend(ranked.iter().take(limit).copied());
    }
    Outcome {
        chosen,
        ranked,
        removed,
    }
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
pub(crate) fn next_decision_id() -> DecisionId {
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
