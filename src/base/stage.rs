//! The stages of the decision funnel, policy levels, channel directions and
//! control-group modes.

use std::fmt;

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
