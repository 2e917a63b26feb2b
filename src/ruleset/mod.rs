//! Rule sets: load a rule directory, validate it, compile it into an
//! immutable [`RuleSet`].
//!
//! Stages: [`RuleSource`] (files as text) → [`RuleSet`] (validated,
//! compiled, content-hashed). Everything a decision needs is computed here,
//! once: conditions are compiled and de-duplicated, each action's checks are
//! laid out in evaluation order, levers are folded into one `L`, context
//! weights are attached to the actions they boost, and each channel has the
//! list of actions it offers. A decision only indexes into these tables.

mod compile;
pub(crate) use compile::source_hash;
pub(crate) mod schema;
pub(crate) mod source;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Location};
use crate::expr::{Affine, BoolIr, FloatIr};
pub use schema::{AttrType, Attribute, Schema};
pub use source::RuleSource;

/// The stage of the decision funnel that removed a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Stage {
    /// May this customer ever get it?
    Eligibility,
    /// Is it relevant now?
    Applicability,
    /// Is it in the customer's interest?
    Suitability,
    /// The value expression failed or was not a finite number.
    Value,
    /// A contact policy suppresses it (the customer's history).
    ContactPolicy,
    /// The channel's contact limit for this customer is reached.
    ChannelLimit,
    /// A volume constraint's cap for the period is reached.
    VolumeConstraint,
    /// The strategy's `adjust` hook excluded it.
    Strategy,
}

impl Stage {
    /// The stage's name in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Eligibility => "eligibility",
            Stage::Applicability => "applicability",
            Stage::Suitability => "suitability",
            Stage::Value => "value",
            Stage::ContactPolicy => "contact_policy",
            Stage::ChannelLimit => "channel_limit",
            Stage::VolumeConstraint => "volume_constraint",
            Stage::Strategy => "strategy",
        }
    }

    /// Every stage, in funnel order.
    pub const ALL: [Stage; 8] = [
        Stage::Eligibility,
        Stage::Applicability,
        Stage::Suitability,
        Stage::Value,
        Stage::ContactPolicy,
        Stage::ChannelLimit,
        Stage::VolumeConstraint,
        Stage::Strategy,
    ];

    pub(crate) fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a policy belongs to the action's group or to the action itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Declared on the group: applies to every action in it.
    Group,
    /// Declared on the action.
    Action,
}

impl Level {
    /// `"group"` or `"action"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Group => "group",
            Level::Action => "action",
        }
    }
}

/// Inbound (the customer came to us) or outbound (we reach out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The customer contacted us (call, app session, web visit).
    Inbound,
    /// We contact the customer (email, sms, outbound call).
    Outbound,
}

/// A compiled conjunct, shared by every policy that uses it.
#[derive(Debug)]
pub(crate) struct Cond {
    pub ir: BoolIr,
    pub text: Box<str>,
    pub location: Location,
}

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
    /// [`crate::history::key`] of the id.
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
    pub need: crate::policy::Need,
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
    /// [`crate::history::channel_key`] of the name.
    pub key: u32,
    pub contact_limit: Option<crate::policy::contact::ContactLimit>,
    /// Volume constraints on the channel.
    pub volumes: Box<[u32]>,
    /// Indices of the actions offered on this channel, ascending (= by id).
    pub actions: Box<[u32]>,
    /// What each of `actions` needs, in the same order (a decision's first
    /// pass reads these, not the actions).
    pub needs: crate::policy::Needs,
    /// The checks of each of `actions`, in the same order (explanations
    /// read these, not the actions).
    pub checks: crate::policy::Checks,
    /// The channel name's symbol (for the built-in `channel`).
    pub sym: crate::expr::Sym,
}

#[derive(Debug)]
pub(crate) struct ContextWeight {
    /// The conjuncts that must all hold, as the memo's words and masks.
    pub need: crate::policy::Need,
    pub boost: f64,
}

/// What the control group of an experiment gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMode {
    /// No action at all (the decision still runs, so explanations show
    /// what the customer would have got).
    NoAction,
    /// One action drawn uniformly from the eligible ones, with a seed
    /// derived from the customer and the decision time (logged, so replays
    /// draw the same).
    RandomEligible,
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

/// An action's names as JSON members: `"action":…,"group":…,"issue":…`,
/// and `"treatment":…` per channel.
pub(crate) type JsonNames = (Box<str>, Box<[Box<str>]>);

/// A version's names and texts escaped as JSON once, on first use.
#[derive(Debug, Default)]
pub(crate) struct JsonCache {
    /// Per action (see [`crate::Decision::to_json`]).
    pub names: std::sync::OnceLock<Box<[JsonNames]>>,
    /// The decision log's fixed pieces, built by its writer.
    pub log: std::sync::OnceLock<crate::audit::LogTexts>,
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
    pub(crate) strategy: Option<crate::script::Strategy>,
    pub(crate) contact_policies: Vec<crate::policy::contact::ContactPolicy>,
    pub(crate) volumes: Vec<crate::policy::contact::VolumeConstraint>,
    pub(crate) learning: Option<crate::learning::Learning>,
    /// How far back contact policies and channel limits look (seconds).
    pub(crate) history_horizon: i64,
    /// Each channel with a contact limit: its key and window.
    pub(crate) contact_limits: Vec<(u32, i64)>,
    /// Tags what this version derives from a customer's history
    /// ([`crate::history::Memo`]): the xxh3 of the content hash.
    pub(crate) memo_tag: u64,
    /// Names and texts escaped as JSON, each table built on first use.
    pub(crate) json: Box<JsonCache>,
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

    /// Whether any condition, value expression or context weight of this
    /// version (or its challenger) reads attribute `name`.
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
        slots.contains(&slot)
            || self
                .experiment
                .as_ref()
                .and_then(|e| e.challenger.as_ref())
                .is_some_and(|c| c.reads_attribute(name))
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
                known: crate::util::list(
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
