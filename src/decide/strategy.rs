//! The strategy's hooks in a decision: `derive` before the engagement
//! policies, `adjust` and `select` after scoring.
//!
//! A hook that fails affects only what it touched, and fails closed unless
//! the rule set says `[strategy] on_error = "open"` (see
//! [`OnError`](crate::ruleset::strategy::OnError)):
//! - a failing `derive` leaves every derived attribute missing, so the
//!   conditions that need them are not met (their defaults do not apply);
//!   an attribute it returns with the wrong type is missing too;
//! - a failing `adjust` call removes its candidate at stage `strategy`,
//!   with the error as the reason, and the other candidates keep what the
//!   hook did to them, exclusions included; when the time budget runs out,
//!   every candidate is removed (the strategy could not be applied);
//! - a failing `select` leaves the top N.
//!
//! Each failure is also a diagnostic of the decision (one per distinct
//! error).

use std::sync::Arc;

use super::request::ReplayState;
use super::scoring::Candidates;
use super::scratch::Lists;
use super::selection::{merge, sort_all};
use crate::base::{AttrType, Level, Removed, Scored, Stage, Timestamp, Value};
use crate::context::Context;
use crate::ruleset::strategy::{Diagnostic, HookEnv, HookRun, Pick, Strategy, BUDGET_EXCEEDED};
use crate::ruleset::RuleSet;

/// Push `d` unless the decision already has a diagnostic with the same
/// text (a failure that every candidate hits is reported once).
fn diagnose(diagnostics: &mut Vec<Diagnostic>, d: Diagnostic) {
    if !diagnostics.contains(&d) {
        diagnostics.push(d);
    }
}

/// Run `derive` and put its attributes into `with`, a copy of the bound
/// context (with the predictive models' scores). When the hook fails
/// open, `with` stays that copy.
pub(crate) fn derive(
    rs: &RuleSet,
    s: &Strategy,
    run: &mut HookRun<'_>,
    with: &mut Context,
    now: Timestamp,
    replay: Option<&ReplayState>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let result = if replay.is_some_and(|r| r.timed_out("derive")) {
        Err(run.replayed_timeout("derive"))
    } else {
        run.derive(&HookEnv {
            rules: rs,
            ctx: with,
            now: now.0,
        })
    };
    match result {
        Ok(map) => apply_derived(with, map, s, diagnostics),
        Err(d) => {
            diagnose(diagnostics, d);
            if !s.on_error.derive_open {
                for slot in 0..with.schema.attrs.len() as u16 {
                    if with.schema.attrs[slot as usize].derived {
                        with.unset(slot);
                    }
                }
            }
        }
    }
    run.context_changed();
}

/// Put `derive`'s map into the context; unknown or mistyped keys are
/// diagnostics (the rest still apply), and a mistyped derived attribute is
/// missing unless the hook fails open.
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
        let result = match value_of(ty, v) {
            Some(value) => ctx.put(slot, value),
            None => Err(format!("expected {}", ty.name())),
        };
        if let Err(m) = result {
            if !s.on_error.derive_open {
                ctx.unset(slot);
            }
            diagnostics.push(bad(format!("derived attribute `{k}`: {m}")));
        }
    }
}

/// A rhai value as a context value of type `ty`, if it is one.
fn value_of(ty: AttrType, v: rhai::Dynamic) -> Option<Value> {
    match (ty, v) {
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
    }
}

/// Run `adjust` on every survivor (`out.ranked`, sorted), keeping them
/// sorted. See the module's documentation for what failures do.
#[allow(clippy::too_many_arguments)]
pub(crate) fn adjust(
    env: &HookEnv<'_>,
    s: &Strategy,
    run: &mut HookRun<'_>,
    replay: Option<&ReplayState>,
    out: &mut Candidates,
    diagnostics: &mut Vec<Diagnostic>,
    lists: &mut Lists,
    keys: &mut Vec<u64>,
) {
    if replay.is_some_and(|r| r.timed_out("adjust")) {
        diagnose(diagnostics, run.replayed_timeout("adjust"));
        if !s.on_error.adjust_open {
            remove_all(out, BUDGET_EXCEEDED);
        }
        return;
    }
    let mut kept = lists.scored(out.ranked.len());
    let mut rescored = lists.scored(0);
    let mut excluded: Vec<(u32, Arc<str>)> = Vec::new();
    let result = run.adjust_each(env, &out.ranked, |c, a| match a {
        Ok(a) => match a.excluded {
            Some(reason) => excluded.push((c.action, reason)),
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
        },
        Err(d) if s.on_error.adjust_open => {
            diagnose(diagnostics, d);
            kept.push(*c);
        }
        Err(d) => {
            excluded.push((c.action, Arc::from(d.to_string())));
            diagnose(diagnostics, d);
        }
    });
    if let Err(timed_out) = result {
        diagnose(diagnostics, timed_out);
        lists.keep_scored(kept);
        lists.keep_scored(rescored);
        if !s.on_error.adjust_open {
            remove_all(out, BUDGET_EXCEEDED);
        }
        return;
    }
    if !rescored.is_empty() {
        sort_all(&mut rescored, lists, keys);
        merge(&mut kept, &rescored);
    }
    lists.keep_scored(rescored);
    lists.keep_scored(std::mem::replace(&mut out.ranked, kept));
    for (action, reason) in excluded {
        exclude(out, action, reason);
    }
}

/// Remove candidate `action` at stage `strategy` with `reason`.
fn exclude(out: &mut Candidates, action: u32, reason: Arc<str>) {
    out.removed.push(Removed {
        action,
        cond: None,
        note: out.notes.len() as u32,
        stage: Stage::Strategy,
        level: Level::Action,
        error: None,
    });
    out.notes.push(reason);
}

/// Remove every survivor at stage `strategy` with `reason`.
fn remove_all(out: &mut Candidates, reason: &str) {
    let reason: Arc<str> = Arc::from(reason);
    let survivors = std::mem::take(&mut out.ranked);
    for c in &survivors {
        exclude(out, c.action, reason.clone());
    }
    out.ranked = survivors;
    out.ranked.clear();
}

/// Run `select` and put its list in `out.chosen`; if it fails, the top N
/// are chosen later (`chosen` stays empty).
#[allow(clippy::too_many_arguments)]
pub(crate) fn select(
    env: &HookEnv<'_>,
    rs: &RuleSet,
    s: &Strategy,
    run: &mut HookRun<'_>,
    replay: Option<&ReplayState>,
    limit: usize,
    out: &mut Candidates,
    diagnostics: &mut Vec<Diagnostic>,
    lists: &mut Lists,
) {
    let result = if replay.is_some_and(|r| r.timed_out("select")) {
        Err(run.replayed_timeout("select"))
    } else {
        run.select(env, &out.ranked)
    };
    match result {
        Ok(picks) => {
            let chosen = selected(rs, &out.ranked, &picks, limit, s, diagnostics, lists);
            lists.keep_scored(std::mem::replace(&mut out.chosen, chosen));
        }
        Err(d) => diagnose(diagnostics, d),
    }
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
    lists: &mut Lists,
) -> Vec<Scored> {
    let mut out: Vec<Scored> = lists.scored(limit.min(picks.len()));
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

/// Run `adjust` (when the script has it) then `select` on the scored
/// survivors.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rank(
    env: &HookEnv<'_>,
    s: &Strategy,
    run: &mut HookRun<'_>,
    replay: Option<&ReplayState>,
    limit: usize,
    out: &mut Candidates,
    diagnostics: &mut Vec<Diagnostic>,
    lists: &mut Lists,
    keys: &mut Vec<u64>,
) {
    if s.has_adjust {
        adjust(env, s, run, replay, out, diagnostics, lists, keys);
    }
    if s.has_select {
        select(
            env,
            env.rules,
            s,
            run,
            replay,
            limit,
            out,
            diagnostics,
            lists,
        );
    }
}
