//! Rule sets: load a rule directory, validate it, compile it into an
//! immutable [`RuleSet`].
//!
//! Stages: [`RuleSource`] (files as text) → [`RuleSet`] (validated,
//! compiled, content-hashed). Everything a decision needs is computed here,
//! once: conditions are compiled and de-duplicated, each action's checks are
//! laid out in evaluation order, levers are folded into one `L`, context
//! weights are attached to the actions they boost, and each channel has the
//! list of actions it offers. A decision only indexes into these tables.

pub(crate) mod archive;
mod compile;
pub(crate) mod contact;
pub(crate) mod json;
pub(crate) mod learning;
pub(crate) mod model;
pub(crate) mod policy;
pub(crate) mod source;
pub(crate) mod strategy;

pub(crate) use compile::source_hash;

use std::path::Path;
use std::sync::Arc;

pub use crate::base::{AttrType, ControlMode, Direction, Level, Stage};
use crate::base::{Blocked, Error, Removed};
pub use crate::context::schema::{Attribute, Schema};
use crate::expr::{Affine, Cond, FloatIr};
pub use source::RuleSource;

/// One engagement-policy check of an action, in evaluation order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check {
    pub cond: u32,
    pub stage: Stage,
    pub level: Level,
}

#[derive(Debug)]
pub(crate) enum ValueFn {
    Const(f64),
    /// The expression, its text, and its affine form if it has one (the
    /// decision path evaluates that instead of the tree).
    Expr(FloatIr, Box<str>, Option<Affine>),
}

#[derive(Debug)]
pub(crate) struct Action {
    pub id: Arc<str>,
    /// [`crate::base::key`] of the id.
    pub key: u64,
    /// Volume constraints on the action or its group.
    pub volumes: Box<[u32]>,
    pub name: Option<String>,
    pub group: u32,
    pub issue: u32,
    pub value: ValueFn,
    pub starting_propensity: f64,
    /// L = 1 + (issue + group + action lever) / 100, folded at load.
    pub lever: f64,
    pub checks: Box<[Check]>,
    /// The conjuncts of `checks` as bitset masks (a decision's fast test).
    pub need: crate::ruleset::policy::Need,
    /// Context weights that boost this action (via issue, group or itself).
    pub weights: Box<[u32]>,
    /// Treatment per channel index (None: not offered there).
    pub treatments: Box<[Option<Arc<str>>]>,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub name: Arc<str>,
    pub key: u64,
    pub issue: u32,
}

#[derive(Debug)]
pub(crate) struct Issue {
    pub name: Arc<str>,
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub name: Arc<str>,
    pub direction: Direction,
    pub limit: Option<usize>,
    /// [`crate::base::channel_key`] of the name.
    pub key: u32,
    pub contact_limit: Option<crate::ruleset::contact::ContactLimit>,
    /// Volume constraints on the channel.
    pub volumes: Box<[u32]>,
    /// Indices of the actions offered on this channel, ascending (= by id).
    pub actions: Box<[u32]>,
    /// What each of `actions` needs, in the same order (a decision's first
    /// pass reads these, not the actions).
    pub needs: crate::ruleset::policy::Needs,
    /// The checks of each of `actions`, in the same order (explanations
    /// read these, not the actions).
    pub checks: crate::ruleset::policy::Checks,
    /// The channel name's symbol (for the built-in `channel`).
    pub sym: crate::base::Sym,
}

#[derive(Debug)]
pub(crate) struct ContextWeight {
    /// The conjuncts that must all hold, as the memo's words and masks.
    pub need: crate::ruleset::policy::Need,
    pub boost: f64,
}

/// A champion/challenger experiment declared in `[experiment]`.
#[derive(Debug)]
pub(crate) struct Experiment {
    pub name: String,
    /// xxh3-64 of `name \0 salt`: the seed of arm assignment.
    pub seed: u64,
    pub challenger: Option<Box<RuleSet>>,
    pub challenger_share: f64,
    pub control_share: f64,
    pub control: ControlMode,
}

/// A validated, compiled, immutable rule version. Cheap to share (`Arc`),
/// identified by its content hash.
#[derive(Debug)]
pub struct RuleSet {
    pub(crate) name: Arc<str>,
    pub(crate) description: Option<String>,
    pub(crate) hash: String,
    pub(crate) schema: Arc<Schema>,
    pub(crate) default_limit: usize,
    pub(crate) channels: Vec<Channel>,
    pub(crate) issues: Vec<Issue>,
    pub(crate) groups: Vec<Group>,
    /// Sorted by id, so index order is the tie-break order.
    pub(crate) actions: Vec<Action>,
    pub(crate) conds: Vec<Cond>,
    /// `conds` in the flat form the memo evaluates, by the same ids.
    pub(crate) tests: crate::expr::ir::Tests,
    pub(crate) weights: Vec<ContextWeight>,
    pub(crate) experiment: Option<Experiment>,
    pub(crate) strategy: Option<crate::ruleset::strategy::Strategy>,
    pub(crate) contact_policies: Vec<crate::ruleset::contact::ContactPolicy>,
    pub(crate) volumes: Vec<crate::ruleset::contact::VolumeConstraint>,
    pub(crate) learning: Option<crate::ruleset::learning::Learning>,
    /// The predictive models, in schema order of their attributes (each
    /// decision evaluates them in this order, before `derive`).
    pub(crate) models: Box<[crate::ruleset::model::Model]>,
    /// How far back contact policies and channel limits look (seconds).
    pub(crate) history_horizon: i64,
    /// Each channel with a contact limit: its key and window.
    pub(crate) contact_limits: Vec<(u32, i64)>,
    /// Tags what this version derives from a customer's history
    /// ([`crate::state::history::Memo`]): the xxh3 of the content hash.
    pub(crate) memo_tag: u64,
    /// Names and texts escaped as JSON, each table built on first use.
    pub(crate) json: Box<json::JsonCache>,
    /// Action and group indexes by key (the xxh3 of the name, as history
    /// events carry them).
    pub(crate) action_by_key: rustc_hash::FxHashMap<u64, u32>,
    pub(crate) group_by_key: rustc_hash::FxHashMap<u64, u32>,
    /// The files it was compiled from (for the version archive).
    pub(crate) source: RuleSource,
}

impl RuleSet {
    /// Load, validate and compile a rule directory.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<RuleSet, Error> {
        RuleSet::compile(&RuleSource::from_dir(dir)?)
    }

    /// Validate and compile a rule source. Every problem is reported at
    /// once, each with file:line:col.
    pub fn compile(source: &RuleSource) -> Result<RuleSet, Error> {
        compile::compile(source).map_err(Error::Rules)
    }

    /// The strategy's hooks and how each runs: `(hook, None)` when it is
    /// lowered to the engine's own operations, `(hook, Some(why))` when it
    /// runs in rhai's interpreter and why (the construct that kept it
    /// there). Empty without a strategy.
    pub fn strategy_hooks(&self) -> Vec<(&'static str, Option<&str>)> {
        self.strategy.as_ref().map_or_else(Vec::new, |s| {
            s.hooks_lowered()
                .into_iter()
                .filter_map(|(hook, defined, why)| defined.then_some((hook, why)))
                .collect()
        })
    }

    /// How many calls of lowered strategy hooks this version has handed
    /// back to rhai's interpreter (a call does when its script does
    /// something the lowered form leaves to rhai at run time: an error, an
    /// overflow, a value near a size limit). 0 without a strategy.
    pub fn strategy_fallbacks(&self) -> u64 {
        self.strategy.as_ref().map_or(0, |s| s.fallbacks())
    }

    /// The rule set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule set's description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// SHA-256 of the files that define decisions (hex): equal hashes mean
    /// equal decisions.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The files this version was compiled from.
    pub fn source(&self) -> &RuleSource {
        &self.source
    }

    /// The context schema.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Action ids, sorted.
    pub fn action_ids(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().map(|a| &*a.id)
    }

    /// Channel names, as declared.
    pub fn channel_names(&self) -> impl Iterator<Item = &str> {
        self.channels.iter().map(|c| &*c.name)
    }

    /// The channel simulations and diffs use by default: the first inbound
    /// channel, else the first channel.
    pub fn default_channel(&self) -> &str {
        self.channels
            .iter()
            .find(|c| c.direction == Direction::Inbound)
            .or(self.channels.first())
            .map_or("", |c| &c.name)
    }

    /// Whether any condition, value expression, context weight or
    /// predictive model of this version (or its challenger) reads
    /// attribute `name`.
    pub fn reads_attribute(&self, name: &str) -> bool {
        use crate::expr::Reads;
        let Some(slot) = self.schema.slot(name) else {
            return false;
        };
        let mut slots = Vec::new();
        for c in &self.conds {
            c.ir.reads(&mut slots);
        }
        for a in &self.actions {
            if let ValueFn::Expr(ir, ..) = &a.value {
                ir.reads(&mut slots);
            }
        }
        // A model reads every input (whether or not a condition reads its
        // score).
        slots.extend(
            self.models
                .iter()
                .flat_map(|m| m.inputs.iter().map(|i| i.slot)),
        );
        slots.contains(&slot)
            || self
                .experiment
                .as_ref()
                .and_then(|e| e.challenger.as_ref())
                .is_some_and(|c| c.reads_attribute(name))
    }

    /// The predictive models: each one's attribute (its name) and version
    /// (the SHA-256 of its file, hex), in the order decisions evaluate
    /// them. These are what every decision record lists under `models`.
    pub fn model_versions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.models.iter().map(|m| (&*m.name, &*m.hash))
    }

    /// Number of distinct compiled conditions (after sharing).
    pub fn condition_count(&self) -> usize {
        self.conds.len()
    }

    pub(crate) fn channel(&self, name: &str) -> Result<u32, Error> {
        self.channels
            .iter()
            .position(|c| &*c.name == name)
            .map(|i| i as u32)
            .ok_or_else(|| Error::UnknownChannel {
                channel: name.to_string(),
                known: crate::base::util::list(
                    &self.channels.iter().map(|c| &*c.name).collect::<Vec<_>>(),
                ),
            })
    }

    pub(crate) fn action_index(&self, id: &str) -> Option<u32> {
        self.actions
            .binary_search_by(|a| (*a.id).cmp(id))
            .ok()
            .map(|i| i as u32)
    }
}

/// The reason of a removal by a policy that the shared state store could
/// not answer for ([`Blocked::UNAVAILABLE`]).
pub(crate) const STATE_UNAVAILABLE: &str = "state unavailable";

/// The names behind a decision's removals: the policy, channel or volume
/// constraint that engine state blocked an action by, and the strategy's
/// reasons.
impl RuleSet {
    /// The strategy's reason or the blocking policy's name of `r`, if any.
    pub(crate) fn removal_note<'a>(
        &'a self,
        r: &Removed,
        notes: &'a [Arc<str>],
    ) -> Option<&'a str> {
        match r.stage {
            _ if r.note == Removed::NO_NOTE => None,
            Stage::Strategy => notes.get(r.note as usize).map(|n| &**n),
            Stage::ContactPolicy | Stage::ChannelLimit | Stage::VolumeConstraint
                if r.note & Blocked::UNAVAILABLE != 0 =>
            {
                Some(STATE_UNAVAILABLE)
            }
            Stage::ContactPolicy | Stage::ChannelLimit | Stage::VolumeConstraint => {
                Some(self.blocker_name(&Blocked {
                    action: r.action,
                    stage: r.stage,
                    policy: r.note,
                }))
            }
            _ => None,
        }
    }

    /// The name of the policy, channel or constraint that blocked `b`
    /// (or could not be checked, when the state store was unavailable).
    pub(crate) fn blocker_name(&self, b: &Blocked) -> &Arc<str> {
        let i = b.index();
        match b.stage {
            Stage::ChannelLimit => &self.channels[i].name,
            Stage::VolumeConstraint => &self.volumes[i].name,
            _ => &self.contact_policies[i].name,
        }
    }

    /// The index of the policy named `name` for `stage`, if this version
    /// has one.
    pub(crate) fn blocker_index(&self, stage: Stage, name: &str) -> Option<u32> {
        let i = match stage {
            Stage::ChannelLimit => self.channels.iter().position(|c| &*c.name == name),
            Stage::VolumeConstraint => self.volumes.iter().position(|v| &*v.name == name),
            Stage::ContactPolicy => self.contact_policies.iter().position(|p| &*p.name == name),
            _ => None,
        };
        i.map(|i| i as u32)
    }
}
