//! The path of one decision, on one already-loaded version.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::{assign_arm, check_limit, control_mode, since, Version};
use crate::arbitration;
use crate::audit::LogDetail;
use crate::context::{Context, Timestamp, Value};
use crate::decision::{Arm, Decision, DecisionId, DecisionRequest, Removed, Scored};
use crate::error::Error;
use crate::expr::Env;
use crate::policy::{first_failure, Memo};
use crate::ruleset::{AttrType, ControlMode, Level, RuleSet, Stage, ValueFn};
use crate::script::{Candidate, Customer, Diagnostic, HookRun, Strategy};

/// Decide on one version (loaded once by the caller).
///
/// With a log detail, the candidates the decision log wants are recorded
/// whatever the request's `explain`.
pub(crate) fn decide_on(
    version: Arc<Version>,
    request: &DecisionRequest,
    log: Option<LogDetail>,
    replay: Option<&Replaying>,
) -> Result<Decision, Error> {
    let log_removed = log == Some(LogDetail::All);
    let log_ranked = matches!(log, Some(LogDetail::All | LogDetail::Ranked));
    let started = Instant::now();
    let arm = assign_arm(&version.rules, &request.customer_id);
    let rs = version.rules_for(arm);
    let channel = rs.channel(&request.channel)?;
    let ch = &rs.channels[channel as usize];
    let limit = check_limit(request.limit.or(ch.limit).unwrap_or(rs.default_limit))?;
    let rebound;
    let mut ctx: &Context = if request.context.schema.fingerprint == rs.schema.fingerprint {
        &request.context
    } else {
        rebound = request.context.rebind(&rs.schema);
        &rebound
    };
    let now = request.now.unwrap_or_else(Timestamp::now);
    let control = (arm == Arm::Control).then(|| control_mode(&version.rules));
    let mut diagnostics = Vec::new();

    // The strategy's derive hook runs before the policies, which may read
    // what it derives.
    let mut hooks = rs
        .strategy
        .as_ref()
        .map(|s| (s, s.begin(now.0, replay.is_none()), s.customer(ctx)));
    let timed_out = |hook| replay.is_some_and(|r| r.timed_out.contains(&hook));
    let derived;
    if let Some((s, run, customer)) = hooks.as_mut().filter(|h| h.0.has_derive) {
        let result = if timed_out("derive") {
            Err(run.replayed_timeout("derive"))
        } else {
            run.derive(customer)
        };
        match result {
            Ok(map) => {
                // The script has dropped its copies: this clones nothing.
                apply_derived(Arc::make_mut(&mut customer.0), map, s, &mut diagnostics);
                derived = Arc::clone(&customer.0);
                ctx = &derived;
            }
            Err(d) => diagnostics.push(d),
        }
    }
    let strategy_ranks = hooks
        .as_ref()
        .is_some_and(|h| h.0.has_adjust || h.0.has_select);
    let record = Record {
        removed: request.explain || log_removed,
        errors: request.explain,
        // The random-eligible control group and the strategy's adjust and
        // select hooks work on every survivor, not just the top N.
        all: request.explain
            || log_ranked
            || strategy_ranks
            || control == Some(ControlMode::RandomEligible),
    };
    let mut out = evaluate(rs, channel, ctx, now, limit, record);
    if let Some((s, run, customer)) = hooks.as_mut() {
        if s.has_adjust && timed_out("adjust") {
            diagnostics.push(run.replayed_timeout("adjust"));
        } else if s.has_adjust {
            adjust(s.names(rs), run, customer, &mut out, &mut diagnostics);
        }
        if s.has_select {
            let result = if timed_out("select") {
                Err(run.replayed_timeout("select"))
            } else {
                run.select(
                    customer,
                    out.ranked
                        .iter()
                        .map(|c| candidate(s.names(rs), c))
                        .collect(),
                )
            };
            match result {
                Ok(ids) => out.chosen = selected(rs, &out.ranked, &ids, limit, s, &mut diagnostics),
                Err(d) => diagnostics.push(d),
            }
        }
    }
    drop(hooks);
    if record.all && out.chosen.is_empty() {
        out.chosen.extend(out.ranked.iter().take(limit).copied());
    }
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
            seed = Some(s);
        }
        None => {}
    }
    if !request.explain {
        if !log_ranked {
            out.ranked.clear();
        }
        if !log_removed {
            out.removed.clear();
        }
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
        diagnostics,
        elapsed_ns: since(started),
        version,
    })
}

/// What a replay must reproduce that the inputs do not determine.
#[derive(Debug, Default)]
pub(crate) struct Replaying {
    /// The hooks the wall-clock budget stopped when the decision was made:
    /// the replay skips them (and runs the others without a wall clock).
    pub timed_out: Vec<&'static str>,
}

/// Put `derive`'s map into the context; unknown or mistyped keys are
/// diagnostics (the rest still apply).
fn apply_derived(
    ctx: &mut Context,
    map: rhai::Map,
    s: &Strategy,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let bad = |message: String| Diagnostic {
        hook: "derive",
        script: s.script.clone(),
        line: None,
        message,
    };
    for (k, v) in map {
        let Some(slot) = ctx
            .schema
            .slot(&k)
            .filter(|&sl| ctx.schema.attrs[sl as usize].derived)
        else {
            diagnostics.push(bad(format!(
                "`{k}` is not a derived attribute of the schema (declare it with `derived = true`)"
            )));
            continue;
        };
        let ty = ctx.schema.attrs[slot as usize].ty;
        let value = match (ty, v) {
            (AttrType::Int, v) if v.is_int() => v.as_int().ok().map(Value::Int),
            (AttrType::Float, v) if v.is_float() => v.as_float().ok().map(Value::Float),
            (AttrType::Float, v) if v.is_int() => v.as_int().ok().map(|i| Value::Float(i as f64)),
            (AttrType::Bool, v) if v.is_bool() => v.as_bool().ok().map(Value::Bool),
            (AttrType::String, v) if v.is_string() => v.into_string().ok().map(Value::String),
            (AttrType::Timestamp, v) if v.is_int() => {
                v.as_int().ok().map(|t| Value::Timestamp(Timestamp(t)))
            }
            (AttrType::StringSet, v) if v.is_array() => v
                .into_typed_array::<rhai::ImmutableString>()
                .ok()
                .map(|a| Value::StringSet(a.into_iter().map(|s| s.to_string()).collect())),
            _ => None,
        };
        let result = match value {
            Some(value) => ctx.put(slot, value),
            None => Err(format!("expected {}", ty.name())),
        };
        if let Err(m) = result {
            diagnostics.push(bad(format!("derived attribute `{k}`: {m}")));
        }
    }
}

fn candidate(names: &[[rhai::ImmutableString; 3]], c: &Scored) -> Candidate {
    let [id, group, issue] = &names[c.action as usize];
    Candidate {
        id: id.clone(),
        group: group.clone(),
        issue: issue.clone(),
        propensity: c.propensity,
        context_weight: c.context_weight,
        value: c.value,
        lever: c.lever,
        excluded: None,
    }
}

/// Run `adjust` on every survivor. If any call fails, the hook's effect is
/// dropped for the whole decision and a diagnostic says why.
fn adjust(
    names: &[[rhai::ImmutableString; 3]],
    run: &mut HookRun<'_>,
    customer: &Customer,
    out: &mut Outcome,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut kept = Vec::with_capacity(out.ranked.len());
    let mut excluded = Vec::new();
    for c in &out.ranked {
        match run.adjust(customer, candidate(names, c)) {
            Ok(a) => match a.excluded {
                Some(reason) => excluded.push(Removed {
                    action: c.action,
                    stage: Stage::Strategy,
                    level: Level::Action,
                    cond: None,
                    error: None,
                    note: Some(reason.as_str().into()),
                }),
                None => kept.push(Scored {
                    action: c.action,
                    propensity: a.propensity,
                    context_weight: a.context_weight,
                    value: a.value,
                    lever: a.lever,
                    priority: a.priority(),
                }),
            },
            Err(d) => {
                diagnostics.push(d);
                return;
            }
        }
    }
    arbitration::sort_all(&mut kept);
    out.ranked = kept;
    out.removed.extend(excluded);
}

/// The final list from `select`'s ids: known survivors only, each once, in
/// the script's order, cut to the limit. Ids that are not survivors are
/// diagnostics.
fn selected(
    rs: &RuleSet,
    ranked: &[Scored],
    ids: &[String],
    limit: usize,
    s: &Strategy,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Scored> {
    let mut out: Vec<Scored> = Vec::with_capacity(limit.min(ids.len()));
    for id in ids {
        match ranked
            .iter()
            .find(|c| *rs.actions[c.action as usize].id == **id)
        {
            Some(c) if !out.iter().any(|o| o.action == c.action) => out.push(*c),
            Some(_) => {}
            None => diagnostics.push(Diagnostic {
                hook: "select",
                script: s.script.clone(),
                line: None,
                message: format!("`{id}` is not one of the ranked candidates; ignored"),
            }),
        }
        if out.len() == limit {
            break;
        }
    }
    out
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

/// Engagement policies, then scoring, for every action offered on
/// `channel`. With `record.all`, `ranked` holds every survivor sorted and
/// `chosen` is left for the caller; otherwise `chosen` is the top N.
fn evaluate(
    rs: &RuleSet,
    channel: u32,
    ctx: &Context,
    now: Timestamp,
    limit: usize,
    record: Record,
) -> Outcome {
    let ch = &rs.channels[channel as usize];
    let env = Env {
        ctx,
        now: now.0,
        channel: (ch.sym, &ch.name),
    };
    let mut results = take_scratch(Memo::words(rs.conds.len()));
    let memo = Memo::new(&mut results, &rs.conds, env);
    let mut chosen = Vec::with_capacity(if record.all {
        0
    } else {
        limit.min(ch.actions.len())
    });
    // Sized for the channel's actions up front when they are recorded (no
    // regrowth while deciding).
    let n = ch.actions.len();
    let mut ranked = Vec::with_capacity(if record.all { n } else { 0 });
    let mut removed = Vec::with_capacity(if record.removed { n } else { 0 });
    for &ai in ch.actions.iter() {
        let action = &rs.actions[ai as usize];
        if !memo.covers(&action.need) {
            let check = record
                .removed
                .then(|| first_failure(&action.checks, &memo))
                .flatten();
            if let Some(check) = check {
                removed.push(Removed {
                    action: ai,
                    stage: check.stage,
                    level: check.level,
                    cond: Some(check.cond),
                    // The log's writer works the reason out off the hot path.
                    error: if record.errors {
                        memo.error(check.cond)
                    } else {
                        None
                    },
                    note: None,
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
                    note: None,
                });
            }
            continue;
        };
        let propensity = arbitration::propensity(action);
        let context_weight = arbitration::context_weight(rs, action, &memo);
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
    }
    Outcome {
        chosen,
        ranked,
        removed,
    }
}

thread_local! {
    /// Conjunct bitset reused across decisions on this thread, so a
    /// decision does not allocate it.
    static SCRATCH: Cell<Vec<u64>> = const { Cell::new(Vec::new()) };
    /// This thread's block of decision ids: (next, end).
    static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn take_scratch(n: usize) -> Vec<u64> {
    let mut v = SCRATCH.with(Cell::take);
    v.clear();
    v.resize(n, 0);
    v
}

fn put_scratch(v: Vec<u64>) {
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
