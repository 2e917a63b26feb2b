//! The path of one decision, on the one version its caller loaded.
//!
//! [`decide`] reads top-down and names each stage; each stage is a module:
//! 1. **who and where**: the arm ([`version`]), channel, limit, context;
//! 2. **predictive models**, then **strategy, `derive`** ([`strategy`]):
//!    derived attributes;
//! 3. **state checks** ([`state_checks`]): what contact policies, the
//!    channel's contact limit and volume constraints block;
//! 4. **engagement** ([`engagement`]): eligibility, applicability and
//!    suitability, then **scoring** ([`scoring`]): `P × C × V × L`;
//! 5. **strategy, `adjust` and `select`** ([`strategy`]);
//! 6. **selection** ([`selection`]): the top N, exploration, the control
//!    group; a committing decision then takes what it returns out of
//!    engine state ([`state_checks::commit`]).
//!
//! How a decision treats engine state, the wall clock and the log is its
//! request's [`Mode`]; every buffer it reuses is in the caller's
//! [`Scratch`].

pub(crate) mod decision;
mod engagement;
mod json;
pub(crate) mod request;
mod scoring;
pub(crate) mod scratch;
pub(crate) mod selection;
mod state_checks;
mod strategy;
pub(crate) mod version;
mod volumes;

pub use request::{Mode, ReplayState};
pub(crate) use scoring::Keep;
pub use scratch::Scratch;
pub(crate) use state_checks::{release, State};

use crate::base::{Arm, ControlMode, Error, Timestamp};
use crate::context::Context;
use crate::expr::Env;
use crate::ruleset::strategy::HookEnv;
use decision::Decision;
use request::DecisionRequest;
use scoring::{Learn, Record, Survivors};
use state_checks::Subject;
use version::{assign_arm, check_limit, control_mode, since, VersionRef};

/// Decide `request` on `version` (loaded once by the caller), reading and,
/// if the request's mode commits, changing `state`; `keep`: what the
/// decision log wants kept.
pub(crate) fn decide(
    version: VersionRef,
    request: &DecisionRequest,
    state: &State<'_>,
    keep: Option<Keep>,
    scratch: &mut Scratch,
) -> Result<Decision, Error> {
    let started = version::clock();
    // 1. Who and where.
    let arm = assign_arm(&version.rules, &request.customer_id);
    let rs = version.rules_for(arm);
    let channel = rs.channel(&request.channel)?;
    let ch = &rs.channels[channel as usize];
    let limit = check_limit(request.limit.or(ch.limit).unwrap_or(rs.default_limit))?;
    let now = request.now.unwrap_or_else(Timestamp::now);
    let replay = request.mode.replaying();
    let bound_ctx = request.context.bound_to(&rs.schema);
    let mut ctx: &Context = &bound_ctx;
    let id = scratch.next_id();
    let bound = version.bound_for(arm);
    let control = (arm == Arm::Control).then(|| control_mode(&version.rules));
    let mut diagnostics = Vec::new();
    let Scratch {
        words,
        keys,
        lists,
        state: buffers,
        context,
        hooks,
        bins,
        ..
    } = scratch;

    // 2. Predictive models, then the strategy's `derive` hook: both write
    // into a copy of the context (in an earlier decision's buffers).
    let mut hooks = rs
        .strategy
        .as_ref()
        .map(|s| (s, s.begin(now.0, request.mode.wall_clock(), hooks)));
    let derives = hooks.as_ref().is_some_and(|(s, _)| s.has_derive);
    let derived = (derives || !rs.models.is_empty()).then(|| {
        let mut with = match context.take() {
            Some(mut c) => {
                c.clone_from(ctx);
                c
            }
            None => ctx.clone(),
        };
        for m in rs.models.iter() {
            m.score_into(&mut with);
        }
        if let Some((s, run)) = hooks.as_mut().filter(|_| derives) {
            strategy::derive(rs, s, run, &mut with, now, replay, &mut diagnostics);
        }
        with
    });
    if let Some(d) = &derived {
        ctx = d;
    }

    // 3. State checks: contact policies, the channel's contact limit,
    // volume constraints.
    let mut blocked = Vec::new();
    let customer = &request.customer_id;
    let subject = Subject {
        rs,
        channel,
        bound,
        state,
        customer,
        now: now.0,
    };
    state_checks::blocked(subject, replay, buffers, &mut blocked)?;

    // 4. Engagement policies, then scoring. Learning draws with a seed the
    // log keeps, from the engine's evidence or, replaying, the logged one.
    let learning = rs.learning.as_ref();
    let seed_of_draws = scoring::seed_of_draws(learning, replay, request.seed, id);
    let mut rng = seed_of_draws.map(crate::ruleset::learning::rng);
    let replayed = replay
        .filter(|_| learning.is_some())
        .map(|r| scoring::replayed_evidence(rs, r));
    let mut evidence = match learning {
        Some(_) => lists.evidence(ch.actions.len()),
        None => Vec::new(),
    };
    // The contextual model: this customer's bins, once for every action,
    // and the snapshot they are read in (or, replaying, what was logged).
    let contextual = learning.and_then(|l| l.contextual.as_deref());
    let snapshot = contextual
        .and(bound.models.as_ref())
        .filter(|_| replay.is_none())
        .map(|m| m.snapshot.load_full());
    let replayed_model = replay
        .filter(|_| contextual.is_some())
        .map(|r| scoring::replayed_model_evidence(rs, r));
    let mut model_evidence = Vec::new();
    let model_evidence_of = match (contextual, &snapshot, &replayed_model) {
        (Some(model), Some(snapshot), _) => {
            model.bins_of(ctx, bins);
            model_evidence.reserve(ch.actions.len());
            Some(scoring::ModelEvidence::Live {
                model,
                snapshot,
                bins,
            })
        }
        (Some(model), None, Some(v)) => {
            model_evidence.reserve(ch.actions.len());
            Some(scoring::ModelEvidence::Replayed(model, v))
        }
        _ => None,
    };
    let learn = learning.map(|l| {
        Learn::of(
            l,
            replayed.as_deref(),
            bound,
            rs,
            channel,
            model_evidence_of,
        )
    });
    let keep = keep.unwrap_or_default();
    let strategy_ranks = hooks
        .as_ref()
        .is_some_and(|h| h.0.has_adjust || h.0.has_select);
    let record = Record::plan(rs, strategy_ranks, control, request.explain, keep);
    let mut words_in_use = std::mem::take(words);
    let env = Env {
        ctx,
        now: now.0,
        channel: (ch.sym, &ch.name),
    };
    let mut out = {
        let engaged = engagement::evaluate(rs, ch, env, &mut words_in_use);
        let learn_state = learn
            .as_ref()
            .map(|l| (l, rng.as_mut(), &mut evidence, &mut model_evidence));
        let mut out = scoring::score_all(
            rs,
            ch,
            &engaged,
            limit,
            record,
            &blocked,
            learn_state,
            lists,
            keys,
        );
        if record.removed {
            out.policy = engagement::removals(&engaged, ch, record.errors, lists.words());
        }
        out
    };
    scratch::put_words(words, words_in_use);

    // 5. The strategy's `adjust` and `select` hooks.
    if let Some((s, run)) = hooks.as_mut() {
        let env = HookEnv {
            rules: rs,
            ctx,
            now: now.0,
        };
        strategy::rank(
            &env,
            s,
            run,
            replay,
            limit,
            &mut out,
            &mut diagnostics,
            lists,
            keys,
        );
    }
    drop(hooks);

    // 6. Selection: the top N, exploration, the control group; then what
    // a committing decision takes out of engine state.
    if record.survivors == Survivors::Sorted {
        selection::fill(&mut out, limit, lists);
    }
    let mut selection_probability = selection::exploration(rs, rng.as_mut(), limit, &mut out);
    let mut seed = None;
    if let Some(mode) = control {
        let s = selection::control_seed(&version.rules, customer, now);
        selection_probability = selection::control(mode, s, &mut out);
        seed = (mode == ControlMode::RandomEligible).then_some(s);
    }
    let mut volumes_unmetered = false;
    if request.mode.commits() {
        let (taken, probability) = (&mut blocked, &mut selection_probability);
        let history_down = buffers.history_down;
        let down = &mut buffers.volumes_down;
        volumes_unmetered = state_checks::commit(
            subject,
            &mut out,
            taken,
            record.removed,
            probability,
            down,
            history_down,
        )?;
    }
    if let Some(c) = derived {
        scratch::keep_context(context, c);
    }

    // The explanation, if asked for or kept for the log.
    if !request.explain {
        out.forget(keep.ranked, keep.removed);
    }
    let ranked_unsorted = record.survivors == Survivors::Unsorted && out.ranked.len() > 1;
    let recorded = (ranked_unsorted || out.policy.recorded()).then(|| lists.recorded(out.policy));
    let model_use = contextual.map(|m| crate::decide::decision::ModelUse {
        id: m.id,
        snapshot: match (&snapshot, replay) {
            (Some(s), _) => s.version,
            (None, Some(r)) => r.model_snapshot.unwrap_or(0),
            (None, None) => 0,
        },
    });
    // What the outcomes of a served decision will teach the model.
    if let (Some(m), Some(_), Some(responses)) = (contextual, &snapshot, state.responses) {
        if request.mode.commits() && !out.chosen.is_empty() {
            responses.remember(id.0, m.id, bins);
        }
    }
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
        model: model_use,
        model_evidence,
        selection_probability,
        volumes_unmetered,
        // Shared with the request (nothing to copy for a clean one).
        warnings: request.warnings.clone(),
    })
}
