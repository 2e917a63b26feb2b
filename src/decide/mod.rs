//! The path of one decision, on one already-loaded version.

pub(crate) mod arbitration;
pub(crate) mod decision;
pub(crate) mod spare;
pub(crate) mod version;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::base::{
    Arm, AttrType, Blocked, ControlMode, DecisionId, Error, Level, Removed, Scored, Stage,
    Timestamp, Value,
};
use crate::context::Context;
use crate::expr::Env;
use crate::ruleset::learning::Mode as LearnMode;
use crate::ruleset::policy::Memo;
use crate::ruleset::strategy::{Diagnostic, HookEnv, HookRun, Pick, Strategy};
use crate::ruleset::{Channel, RuleSet, ValueFn};
use crate::state::contact::{self, Suppression};
use crate::state::history::{Event, HistoryStore, Memo as HistoryMemo, Recent};
use decision::{Decision, DecisionRequest, PolicyRemovals};
use version::{assign_arm, check_limit, control_mode, since, Bound};

/// What the decision log wants a decision to keep besides its chosen
/// actions, whatever the request's `explain`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Logged {
    /// Every removed candidate and the stage that removed it.
    pub removed: bool,
    /// Every ranked candidate with its scores.
    pub ranked: bool,
}

/// Engine state a live decision reads (and, with `take`, changes: volume
/// counters). Replays read the logged state instead.
pub(crate) struct Live<'a> {
    pub history: &'a dyn HistoryStore,
    /// Take volume-constraint units for the returned actions.
    pub take: bool,
    /// Stop strategy hooks at the wall-clock budget (off for simulations,
    /// which must decide the same way however loaded the machine is; the
    /// operations budget still applies).
    pub wall_clock: bool,
    /// Keep what the decision derived from the customer's history with it
    /// ([`HistoryMemo`]). Off when the decision records impressions, which
    /// would drop the memo at once.
    pub keep_memo: bool,
}

/// Decide on one version (loaded once by the caller).
///
/// With a log detail, the candidates the decision log wants are recorded
/// whatever the request's `explain`.
pub(crate) fn decide_on(
    version: crate::decide::version::VersionRef,
    request: &DecisionRequest,
    log: Option<Logged>,
    replay: Option<&Replaying>,
    live: Option<Live<'_>>,
) -> Result<Decision, Error> {
    let log_removed = log.is_some_and(|l| l.removed);
    let log_ranked = log.is_some_and(|l| l.ranked);
    let started = crate::decide::version::clock();
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
    let id = next_decision_id();
    let bound = version.bound_for(arm);

    // Engine state: contact policies, channel limits, volume constraints.
    let mut blocked = Vec::new();
    if !rs.contact_policies.is_empty() || ch.contact_limit.is_some() || !rs.volumes.is_empty() {
        match (replay, &live) {
            (Some(r), _) => {
                // A block whose action or policy this version does not
                // have (an `evaluate` candidate's) is dropped.
                for (action, stage, policy) in &r.blocked {
                    if let (Some(ai), Some(pi)) =
                        (rs.action_index(action), rs.blocker_index(*stage, policy))
                    {
                        blocked.push(Blocked {
                            action: ai,
                            stage: *stage,
                            policy: pi,
                        });
                    }
                }
                blocked.sort_by_key(|b| b.action);
            }
            (None, Some(l)) => state_blocks(
                rs,
                channel,
                ch,
                bound,
                l,
                &request.customer_id,
                now.0,
                &mut blocked,
            ),
            (None, None) => {}
        }
    }
    // Learning: the seed of this decision's draws, logged.
    let learning = rs.learning.as_ref();
    let seed_of_draws = learning.filter(|l| l.mode.draws()).map(|_| {
        replay
            .and_then(|r| r.seed)
            .or(request.seed)
            .unwrap_or_else(|| xxhash_rust::xxh3::xxh3_64(&id.0.to_le_bytes()))
    });
    let mut rng = seed_of_draws.map(crate::ruleset::learning::rng);
    let replayed_evidence: Option<Vec<Option<(u32, u32)>>> = match (learning, replay) {
        (Some(_), Some(r)) => {
            let mut v = vec![None; rs.actions.len()];
            for (action, s, f) in &r.evidence {
                if let Some(ai) = rs.action_index(action) {
                    v[ai as usize] = Some((*s, *f));
                }
            }
            Some(v)
        }
        _ => None,
    };
    // Learning records the evidence of each action it scores.
    let mut evidence = if learning.is_some() {
        spare::evidence(ch.actions.len())
    } else {
        Vec::new()
    };

    // The strategy's derive hook runs before the policies, which may read
    // what it derives.
    let wall_clock = replay.is_none() && live.as_ref().is_none_or(|l| l.wall_clock);
    let mut hooks = rs
        .strategy
        .as_ref()
        .map(|s| (s, s.begin(now.0, wall_clock)));
    let timed_out = |hook| replay.is_some_and(|r| r.timed_out.contains(&hook));
    let derived;
    if let Some((s, run)) = hooks.as_mut().filter(|h| h.0.has_derive) {
        let result = if timed_out("derive") {
            Err(run.replayed_timeout("derive"))
        } else {
            run.derive(&HookEnv {
                rules: rs,
                ctx,
                now: now.0,
            })
        };
        match result {
            Ok(map) => {
                let mut with = SpareContext::copy_of(ctx);
                apply_derived(&mut with, map, s, &mut diagnostics);
                derived = with;
                ctx = &derived;
                run.context_changed();
            }
            Err(d) => diagnostics.push(d),
        }
    }
    let strategy_ranks = hooks
        .as_ref()
        .is_some_and(|h| h.0.has_adjust || h.0.has_select);
    // The random-eligible control group and the strategy's adjust and
    // select hooks work on every survivor, not just the top N.
    let sorted_here = strategy_ranks
        || control == Some(ControlMode::RandomEligible)
        // Volume constraints may refuse a chosen action: the next
        // survivor takes its place.
        || !rs.volumes.is_empty()
        || learning.is_some_and(|l| l.mode == LearnMode::EpsilonGreedy);
    let record = Record {
        removed: request.explain || log_removed,
        errors: request.explain,
        survivors: if sorted_here {
            Survivors::Sorted
        } else if log_ranked || request.explain {
            Survivors::Unsorted
        } else {
            Survivors::TopN
        },
    };
    let learn = learning.map(|l| Learn {
        learning: l,
        evidence: match &replayed_evidence {
            Some(v) => Evidence::Replayed(v),
            None => Evidence::Live(&bound.counts, rs.channels.len(), channel as usize),
        },
        thompson: l.mode == LearnMode::Thompson,
    });
    let state = learn.as_ref().map(|l| (l, rng.as_mut(), &mut evidence));
    // Rule sets without engine state get the loop without its checks.
    // The plain decision (no state, nothing recorded) gets a loop with
    // neither engine-state checks nor recording in it.
    let plain = !record.removed && record.survivors == Survivors::TopN;
    let mut out = match (blocked.is_empty() && state.is_none(), plain) {
        (true, true) => {
            evaluate::<false, false>(rs, channel, ctx, now, limit, record, &blocked, None)
        }
        (true, false) => {
            evaluate::<false, true>(rs, channel, ctx, now, limit, record, &blocked, None)
        }
        (false, _) => evaluate::<true, true>(rs, channel, ctx, now, limit, record, &blocked, state),
    };
    if let Some((s, run)) = hooks.as_mut() {
        let env = HookEnv {
            rules: rs,
            ctx,
            now: now.0,
        };
        if s.has_adjust && timed_out("adjust") {
            diagnostics.push(run.replayed_timeout("adjust"));
        } else if s.has_adjust {
            adjust(&env, run, &mut out, &mut diagnostics);
        }
        if s.has_select {
            let result = if timed_out("select") {
                Err(run.replayed_timeout("select"))
            } else {
                run.select(&env, &out.ranked)
            };
            match result {
                Ok(picks) => {
                    out.chosen = selected(rs, &out.ranked, &picks, limit, s, &mut diagnostics)
                }
                Err(d) => diagnostics.push(d),
            }
        }
    }
    drop(hooks);
    if record.survivors == Survivors::Sorted && out.chosen.is_empty() {
        if out.chosen.capacity() == 0 {
            out.chosen = spare::scored(limit.min(out.ranked.len()));
        }
        out.chosen.extend(out.ranked.iter().take(limit).copied());
    }
    // Epsilon-greedy explores after the strategy has adjusted and selected,
    // so the logged probability describes the action actually put first:
    // with probability epsilon, a survivor drawn uniformly goes first.
    let mut selection_probability = None;
    if let (Some(l), Some(r)) = (learning, rng.as_mut()) {
        if l.mode == LearnMode::EpsilonGreedy && !out.ranked.is_empty() && !out.chosen.is_empty() {
            use rand_distr::Distribution;
            // With a select hook, explore only among what it selected: its
            // rules (one lending offer, collections first...) hold for
            // exploration too.
            let pool = if rs.strategy.as_ref().is_some_and(|s| s.has_select) {
                &out.chosen
            } else {
                &out.ranked
            };
            let n = pool.len();
            let u: f64 = rand_distr::StandardUniform.sample(r);
            let greedy = out.chosen[0].action;
            let first = if u < l.epsilon {
                let i = rand_distr::Uniform::new(0, n).map_or(0, |d| d.sample(r));
                pool[i].action
            } else {
                greedy
            };
            let explore = l.epsilon / n as f64;
            selection_probability = Some(if first == greedy {
                1.0 - l.epsilon + explore
            } else {
                explore
            });
            if first != greedy {
                if let Some(i) = out.ranked.iter().position(|c| c.action == first) {
                    let pick = out.ranked[i];
                    out.ranked[..=i].rotate_right(1);
                    out.chosen.retain(|c| c.action != first);
                    out.chosen.insert(0, pick);
                    out.chosen.truncate(limit);
                }
            }
        }
    }
    if learning.is_some_and(|l| l.mode == LearnMode::Mean) && !out.chosen.is_empty() {
        selection_probability = Some(1.0);
    }
    let mut seed = None;
    match control {
        Some(ControlMode::NoAction) => {
            out.chosen.clear();
            selection_probability = None;
        }
        Some(ControlMode::RandomEligible) => {
            let s = control_seed(&version.rules, &request.customer_id, now);
            out.chosen.clear();
            selection_probability = None;
            if !out.ranked.is_empty() {
                let pick = out.ranked[(s % out.ranked.len() as u64) as usize];
                out.chosen.push(pick);
                // Uniform over the survivors, given the customer's arm.
                selection_probability = Some(1.0 / out.ranked.len() as f64);
            }
            seed = Some(s);
        }
        None => {}
    }
    if live.as_ref().is_some_and(|l| l.take) && !rs.volumes.is_empty() {
        let first = out.chosen.first().map(|c| c.action);
        take_volumes(rs, ch, bound, now.0, &mut out, &mut blocked, record.removed);
        // A constraint that refused a randomly chosen first action leaves
        // a first action whose probability is not the one computed: log
        // none rather than a wrong one (a certain choice stays certain).
        if out.chosen.first().map(|c| c.action) != first
            && selection_probability.is_some_and(|p| p < 1.0)
        {
            selection_probability = None;
        }
    }
    if !request.explain {
        if !log_ranked {
            out.ranked.clear();
        }
        if !log_removed {
            out.removed.clear();
            out.notes.clear();
            out.policy = PolicyRemovals::default();
        }
    }
    let ranked_unsorted = record.survivors == Survivors::Unsorted && out.ranked.len() > 1;
    let recorded = (ranked_unsorted || out.policy.recorded()).then(|| spare::recorded(out.policy));
    Ok(Decision {
        id,
        timestamp: now,
        arm,
        seed: seed_of_draws.or(seed),
        channel,
        chosen: out.chosen,
        ranked_unsorted,
        ranked: out.ranked,
        recorded,
        removed: out.removed,
        notes: out.notes,
        diagnostics,
        elapsed_ns: since(started),
        version,
        blocked,
        evidence,
        selection_probability,
    })
}

/// The customer's events, the policies' scratch, the suppressions found,
/// their marks by action and group index, and the suppressed actions.
type StateScratch = (
    Vec<Event>,
    contact::Scratch,
    Vec<Suppression>,
    Vec<u32>,
    Vec<u32>,
    Vec<(u32, u32)>,
);

/// A decision's learning: the model, its draws, and the evidence used.
type LearnState<'a, 'b> = (
    &'a Learn<'b>,
    Option<&'a mut crate::ruleset::learning::Rng>,
    &'a mut Vec<(u32, u32, u32)>,
);

thread_local! {
    /// The customer's events and the policy scratch, reused across
    /// decisions on this thread.
    static EVENTS: RefCell<StateScratch> =
        const {
            RefCell::new((
                Vec::new(),
                contact::Scratch::EMPTY,
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            ))
        };
}

/// The actions on `ch` that engine state removes now, ascending.
#[allow(clippy::too_many_arguments)]
fn state_blocks(
    rs: &RuleSet,
    channel: u32,
    ch: &Channel,
    bound: &Bound,
    live: &Live<'_>,
    customer: &str,
    now: i64,
    out: &mut Vec<Blocked>,
) {
    EVENTS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffers) => state_blocks_in(
            &mut buffers,
            rs,
            channel,
            ch,
            bound,
            live,
            customer,
            now,
            out,
        ),
        // Re-entered (a history store that decides?): fresh buffers.
        Err(_) => state_blocks_in(
            &mut StateScratch::default(),
            rs,
            channel,
            ch,
            bound,
            live,
            customer,
            now,
            out,
        ),
    })
}

#[allow(clippy::too_many_arguments)]
fn state_blocks_in(
    (events, scratch, sup, by_action, by_group, marked): &mut StateScratch,
    rs: &RuleSet,
    channel: u32,
    ch: &Channel,
    bound: &Bound,
    live: &Live<'_>,
    customer: &str,
    now: i64,
    out: &mut Vec<Blocked>,
) {
    events.clear();
    sup.clear();
    marked.clear();
    let mut limited = false;
    let mut memo = None;
    if !rs.contact_policies.is_empty() || ch.contact_limit.is_some() {
        let since = now.saturating_sub(rs.history_horizon);
        let history = live.history;
        match history.recent_or_memo(customer, since, rs.memo_tag, now, events) {
            // What an earlier decision derived still holds: no event has
            // been recorded since and none has entered or left a window.
            Recent::Memo(m) => {
                limited = m.limited & (1 << channel) != 0;
                memo = Some(m);
            }
            Recent::Events { stamp } => {
                if let Some(l) = ch.contact_limit {
                    limited = contact::contacts(events, ch.key, l.within, now) >= l.max;
                }
                if !events.is_empty() {
                    contact::suppressions(&rs.contact_policies, events, now, scratch, sup);
                }
                if !sup.is_empty() {
                    contact::mark(
                        sup,
                        &rs.action_by_key,
                        &rs.group_by_key,
                        by_action,
                        by_group,
                    );
                    for (ai, a) in (0u32..).zip(&rs.actions) {
                        let policy = by_action[ai as usize].min(by_group[a.group as usize]);
                        if policy != u32::MAX {
                            marked.push((ai, policy));
                        }
                    }
                }
                // The memo's channel mask has 64 bits.
                if let Some(stamp) = stamp.filter(|_| live.keep_memo && rs.channels.len() <= 64) {
                    history.keep_memo(customer, stamp, Arc::new(memo_of(rs, events, now, marked)));
                }
            }
        }
    }
    // Each suppressed action (of any channel) and the first policy that
    // suppresses it, ascending.
    let marked: &[(u32, u32)] = memo.as_deref().map_or(&marked[..], |m| &m.suppressed);
    if limited {
        out.extend(ch.actions.iter().map(|&ai| Blocked {
            action: ai,
            stage: Stage::ChannelLimit,
            policy: channel,
        }));
    } else if rs.volumes.is_empty() {
        // Only the suppressed actions: no pass over the channel's actions.
        out.extend(
            marked
                .iter()
                .filter(|&&(ai, _)| rs.actions[ai as usize].treatments[channel as usize].is_some())
                .map(|&(ai, policy)| Blocked {
                    action: ai,
                    stage: Stage::ContactPolicy,
                    policy,
                }),
        );
    } else {
        let mut next = 0;
        for &ai in ch.actions.iter() {
            while next < marked.len() && marked[next].0 < ai {
                next += 1;
            }
            let block = if next < marked.len() && marked[next].0 == ai {
                Some((Stage::ContactPolicy, marked[next].1))
            } else {
                let a = &rs.actions[ai as usize];
                a.volumes
                    .iter()
                    .chain(ch.volumes.iter())
                    .find(|&&vi| {
                        let v = &rs.volumes[vi as usize];
                        bound.counters[vi as usize].used(v.period.window(now)) >= v.max
                    })
                    .map(|&vi| (Stage::VolumeConstraint, vi))
            };
            if let Some((stage, policy)) = block {
                out.push(Blocked {
                    action: ai,
                    stage,
                    policy,
                });
            }
        }
    }
}

/// What `events` cause at `now`, for decisions until it can next change
/// (`suppressed`: each suppressed action and its policy, as found).
fn memo_of(rs: &RuleSet, events: &[Event], now: i64, suppressed: &[(u32, u32)]) -> HistoryMemo {
    let mut limited = 0u64;
    for (i, c) in rs.channels.iter().enumerate() {
        if let Some(l) = c.contact_limit {
            if contact::contacts(events, c.key, l.within, now) >= l.max {
                limited |= 1 << i;
            }
        }
    }
    HistoryMemo {
        tag: rs.memo_tag,
        from: now,
        until: contact::stable_until(
            &rs.contact_policies,
            &rs.contact_limits,
            rs.history_horizon,
            events,
            now,
        ),
        limited,
        suppressed: suppressed.into(),
    }
}

/// Take a unit of every volume constraint of each chosen action, in order.
/// An action refused by any constraint (another thread took the last unit)
/// is removed and the best remaining survivor takes its place.
fn take_volumes(
    rs: &RuleSet,
    ch: &Channel,
    bound: &Bound,
    now: i64,
    out: &mut Outcome,
    blocked: &mut Vec<Blocked>,
    record_removed: bool,
) {
    let mut i = 0;
    let mut taken: Vec<(u32, u32)> = Vec::new();
    while i < out.chosen.len() {
        let ai = out.chosen[i].action;
        let a = &rs.actions[ai as usize];
        taken.clear();
        let mut refused = None;
        for &vi in a.volumes.iter().chain(ch.volumes.iter()) {
            let v = &rs.volumes[vi as usize];
            let w = v.period.window(now);
            if bound.counters[vi as usize].try_take(w, v.max) {
                taken.push((vi, w));
            } else {
                refused = Some(vi);
                break;
            }
        }
        let Some(vi) = refused else {
            i += 1;
            continue;
        };
        for &(t, w) in &taken {
            bound.counters[t as usize].give_back(w);
        }
        out.chosen.remove(i);
        let block = Blocked {
            action: ai,
            stage: Stage::VolumeConstraint,
            policy: vi,
        };
        blocked.push(block);
        if record_removed {
            out.removed.push(Removed::by_state(block));
        }
        out.ranked.retain(|c| c.action != ai);
        let next = out.ranked.iter().find(|c| {
            !out.chosen.iter().any(|x| x.action == c.action)
                && !blocked.iter().any(|b| b.action == c.action)
        });
        if let Some(next) = next.copied() {
            out.chosen.push(next);
        }
    }
}

/// How a decision's propensities are learned.
struct Learn<'a> {
    learning: &'a crate::ruleset::learning::Learning,
    evidence: Evidence<'a>,
    thompson: bool,
}

enum Evidence<'a> {
    /// The engine's counts: (counts, channels, channel).
    Live(
        &'a [Option<Arc<crate::state::learning::Counts>>],
        usize,
        usize,
    ),
    /// The logged evidence per action index.
    Replayed(&'a [Option<(u32, u32)>]),
}

impl Learn<'_> {
    fn propensity(
        &self,
        ai: u32,
        p0: f64,
        rng: Option<&mut crate::ruleset::learning::Rng>,
        used: &mut Vec<(u32, u32, u32)>,
    ) -> f64 {
        let (s, f) = match &self.evidence {
            Evidence::Live(counts, nch, ci) => counts[ai as usize * nch + ci]
                .as_ref()
                .map_or((0, 0), |c| self.learning.evidence(c.get())),
            Evidence::Replayed(v) => v[ai as usize].unwrap_or((0, 0)),
        };
        used.push((ai, s, f));
        match rng {
            Some(r) if self.thompson => self.learning.draw(p0, (s, f), r),
            _ => self.learning.mean(p0, (s, f)),
        }
    }
}

/// What a replay must reproduce that the inputs do not determine.
#[derive(Debug, Default)]
pub(crate) struct Replaying {
    /// The hooks the wall-clock budget stopped when the decision was made:
    /// the replay skips them (and runs the others without a wall clock).
    pub timed_out: Vec<&'static str>,
    /// Actions engine state removed: (action, stage, policy).
    pub blocked: Vec<(String, Stage, String)>,
    /// Learning evidence: (action, successes, failures).
    pub evidence: Vec<(String, u32, u32)>,
    /// The seed of the decision's draws.
    pub seed: Option<u64>,
}

thread_local! {
    /// The context a finished decision on this thread copied to add its
    /// derived attributes: the next decision copies into its buffers.
    static SPARE_CONTEXT: std::cell::Cell<Option<Context>> = const { std::cell::Cell::new(None) };
}

/// A copy of a context in buffers reused from an earlier decision on this
/// thread, given back when dropped.
struct SpareContext(Option<Context>);

impl SpareContext {
    fn copy_of(ctx: &Context) -> SpareContext {
        SpareContext(Some(match SPARE_CONTEXT.with(std::cell::Cell::take) {
            Some(mut c) => {
                c.clone_from(ctx);
                c
            }
            None => ctx.clone(),
        }))
    }
}

impl std::ops::Deref for SpareContext {
    type Target = Context;
    fn deref(&self) -> &Context {
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl std::ops::DerefMut for SpareContext {
    fn deref_mut(&mut self) -> &mut Context {
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl Drop for SpareContext {
    fn drop(&mut self) {
        // Emptied, so that no customer's values outlive the decision (the
        // buffers stay, and the schema until the next copy replaces it);
        // not the buffers of a context one customer's long values grew.
        if let Some(mut c) = self.0.take().filter(|c| c.heap_bytes() <= 1 << 16) {
            c.clear();
            SPARE_CONTEXT.with(|s| s.set(Some(c)));
        }
    }
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

/// Run `adjust` on every survivor. If any call fails, the hook's effect is
/// dropped for the whole decision and a diagnostic says why.
fn adjust(
    env: &HookEnv<'_>,
    run: &mut HookRun<'_>,
    out: &mut Outcome,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut kept = spare::scored(out.ranked.len());
    let mut excluded = Vec::new();
    let mut notes = Vec::new();
    // Survivors come sorted: those whose scores the hook left alone stay in
    // order (removing some keeps the rest in order); the rescored ones are
    // sorted apart and merged in.
    let mut rescored = spare::scored(0);
    let result = run.adjust_each(env, &out.ranked, |c, a| match a.excluded {
        Some(reason) => {
            excluded.push(Removed {
                action: c.action,
                cond: None,
                note: (out.notes.len() + notes.len()) as u32,
                stage: Stage::Strategy,
                level: Level::Action,
                error: None,
            });
            notes.push(reason);
        }
        None if a.scores.map(f64::to_bits)
            == [c.propensity, c.context_weight, c.value, c.lever].map(f64::to_bits) =>
        {
            kept.push(*c)
        }
        None => {
            let [propensity, context_weight, value, lever] = a.scores;
            rescored.push(Scored {
                action: c.action,
                propensity,
                context_weight,
                value,
                lever,
                priority: propensity * context_weight * value * lever,
            })
        }
    });
    if let Err(d) = result {
        diagnostics.push(d);
        spare::keep_scored(kept);
        spare::keep_scored(rescored);
        return;
    }
    if !rescored.is_empty() {
        arbitration::sort_all(&mut rescored);
        arbitration::merge(&mut kept, &rescored);
    }
    spare::keep_scored(rescored);
    spare::keep_scored(std::mem::replace(&mut out.ranked, kept));
    out.removed.extend(excluded);
    out.notes.extend(notes);
}

/// The final list from `select`'s ids: known survivors only, each once, in
/// the script's order, cut to the limit. Ids that are not survivors are
/// diagnostics.
fn selected(
    rs: &RuleSet,
    ranked: &[Scored],
    picks: &[Pick],
    limit: usize,
    s: &Strategy,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Scored> {
    let mut out: Vec<Scored> = spare::scored(limit.min(picks.len()));
    for pick in picks {
        let found = match pick {
            Pick::Action(a) => ranked.iter().find(|c| c.action == *a),
            Pick::Id(id) => ranked
                .iter()
                .find(|c| *rs.actions[c.action as usize].id == **id),
        };
        match found {
            Some(c) if !out.iter().any(|o| o.action == c.action) => out.push(*c),
            Some(_) => {}
            None => {
                let id = match pick {
                    Pick::Action(a) => &*rs.actions[*a as usize].id,
                    Pick::Id(id) => id,
                };
                diagnostics.push(Diagnostic {
                    hook: "select",
                    script: s.script.clone(),
                    line: None,
                    message: format!("`{id}` is not one of the ranked candidates; ignored"),
                })
            }
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
    /// Every removed candidate: the engagement policies' removals as the
    /// bits that decide them ([`PolicyRemovals`]), the later stages' with
    /// their stage and reason.
    removed: bool,
    /// Why failed conjuncts could not be evaluated (re-evaluates them).
    errors: bool,
    /// Which survivors the decision keeps.
    survivors: Survivors,
}

/// Which survivors a decision keeps besides its top N.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Survivors {
    /// The top N only (`chosen`).
    TopN,
    /// Every survivor in `ranked`, sorted; `chosen` is left to the caller.
    Sorted,
    /// Every survivor in `ranked`, unsorted, and the top N in `chosen`:
    /// the decision log's writer sorts them off the decision path, an
    /// explanation's reader on its first call to `ranked()`.
    Unsorted,
}

struct Outcome {
    chosen: Vec<Scored>,
    ranked: Vec<Scored>,
    /// The engagement policies' removals, when recorded.
    policy: PolicyRemovals,
    /// The later stages' removals (engine state, value, strategy).
    removed: Vec<Removed>,
    /// The strategy's reasons, indexed by `removed`.
    notes: Vec<Arc<str>>,
}

/// Engagement policies, then scoring, for every action offered on
/// `channel`. `record.survivors` says what `ranked` and `chosen` hold.
/// Without `RECORD`, `record` must ask for nothing.
#[allow(clippy::too_many_arguments)]
fn evaluate<const STATEFUL: bool, const RECORD: bool>(
    rs: &RuleSet,
    channel: u32,
    ctx: &Context,
    now: Timestamp,
    limit: usize,
    record: Record,
    blocked: &[Blocked],
    mut learn: Option<LearnState<'_, '_>>,
) -> Outcome {
    debug_assert!(
        RECORD || !(record.removed || record.errors || record.survivors != Survivors::TopN)
    );
    let record = Record {
        removed: RECORD && record.removed,
        errors: RECORD && record.errors,
        survivors: if RECORD {
            record.survivors
        } else {
            Survivors::TopN
        },
    };
    let ch = &rs.channels[channel as usize];
    let env = Env {
        ctx,
        now: now.0,
        channel: (ch.sym, &ch.name),
    };
    let memo_words = Memo::words(rs.conds.len());
    // One scratch buffer: the memo's bits and which actions pass.
    let mut results = spare::scratch();
    results.resize(memo_words + ch.needs.words(), 0);
    let (memo_bits, passing) = results.split_at_mut(memo_words);
    let memo = Memo::new(memo_bits, &rs.conds, &rs.tests, env);
    ch.needs.passing(&memo, passing);
    // The engagement policies' removals, as the bits that decide them
    // (their readers find each one's failed check), and why the failed
    // conjuncts could not be evaluated, if they could not (rare; the
    // log's writer works that out itself, off the hot path).
    let policy = if record.removed {
        let errors = if record.errors {
            ch.checks
                .failed(memo.bits())
                .filter_map(|c| memo.error(c).map(|e| (c, e)))
                .collect()
        } else {
            Vec::new()
        };
        PolicyRemovals::of(memo.bits(), passing, errors)
    } else {
        PolicyRemovals::default()
    };
    let mut chosen = arbitration::TopN::new(
        limit,
        if record.survivors == Survivors::Sorted {
            0
        } else {
            limit.min(ch.actions.len())
        },
    );
    // Sized for the channel's actions up front when they are recorded (no
    // regrowth while deciding).
    let n = ch.actions.len();
    let mut ranked = if record.survivors == Survivors::TopN {
        Vec::new()
    } else {
        spare::scored(n)
    };
    let mut removed = if record.removed {
        spare::removed()
    } else {
        Vec::new()
    };
    debug_assert!(ch.actions.windows(2).all(|w| w[0] < w[1]));
    debug_assert!(blocked.windows(2).all(|w| w[0].action <= w[1].action));
    let mut next_block = 0;
    let actions: &[crate::ruleset::Action] = &rs.actions;
    for (wi, &word) in passing.iter().enumerate() {
        let mut rest = word;
        while rest != 0 {
            let pos = wi * 64 + rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let ai = ch.actions[pos];
            let action = &actions[ai as usize];
            // Blocks are sorted by action, as the channel's actions are (they
            // ascend): a cursor finds each in constant time.
            if STATEFUL && next_block < blocked.len() {
                while next_block < blocked.len() && blocked[next_block].action < ai {
                    next_block += 1;
                }
                if let Some(i) = (next_block < blocked.len() && blocked[next_block].action == ai)
                    .then_some(next_block)
                {
                    if record.removed {
                        removed.push(Removed::by_state(blocked[i]));
                    }
                    continue;
                }
            }
            let Some(value) = arbitration::value(action, &memo) else {
                if record.removed {
                    let error = match &action.value {
                        ValueFn::Expr(ir, ..) if record.errors => ir.eval(memo.env()).err(),
                        _ => None,
                    };
                    removed.push(Removed::by_condition(
                        ai,
                        Stage::Value,
                        Level::Action,
                        None,
                        error,
                    ));
                }
                continue;
            };
            let propensity = match &mut learn {
                Some((l, rng, used)) if STATEFUL => {
                    l.propensity(ai, action.starting_propensity, rng.as_deref_mut(), used)
                }
                _ => arbitration::propensity(action),
            };
            let context_weight = arbitration::context_weight(rs, action, &memo);
            let scored = Scored {
                action: ai,
                propensity,
                context_weight,
                value,
                lever: action.lever,
                priority: propensity * context_weight * value * action.lever,
            };
            if record.survivors != Survivors::TopN {
                ranked.push(scored);
            }
            if record.survivors != Survivors::Sorted {
                chosen.offer(scored);
            }
        }
    }
    spare::put_scratch(results);
    if record.survivors == Survivors::Sorted {
        arbitration::sort_all(&mut ranked);
    }
    Outcome {
        chosen: chosen.into_vec(),
        ranked,
        policy,
        removed,
        notes: Vec::new(),
    }
}

thread_local! {
    /// This thread's block of decision ids: (next, end).
    static IDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
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
