//! Outcomes: what the customer did with what we offered. They go the other
//! way from decisions: to the decision log, the interaction history and the
//! learning models.

use serde::{Deserialize, Serialize};

use super::error::Error;
use super::ids::DecisionId;
use super::time::Timestamp;

/// What the customer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutcomeKind {
    /// The action was presented.
    Impression,
    /// The customer clicked or showed interest.
    Clicked,
    /// The customer accepted.
    Accepted,
    /// The customer declined.
    Rejected,
    /// The customer did not respond within the response window.
    NoResponse,
}

impl OutcomeKind {
    /// Every kind, in the order of their counts in saved state.
    pub const ALL: [OutcomeKind; 5] = [
        OutcomeKind::Impression,
        OutcomeKind::Clicked,
        OutcomeKind::Accepted,
        OutcomeKind::Rejected,
        OutcomeKind::NoResponse,
    ];

    /// The kind named `s` in JSON.
    pub fn parse(s: &str) -> Option<OutcomeKind> {
        OutcomeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind's name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Impression => "impression",
            OutcomeKind::Clicked => "clicked",
            OutcomeKind::Accepted => "accepted",
            OutcomeKind::Rejected => "rejected",
            OutcomeKind::NoResponse => "no_response",
        }
    }
}

/// One outcome, tied to a decision (by id) or to a customer, action,
/// channel and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The decision that offered the action, if known.
    pub decision_id: Option<DecisionId>,
    /// The customer.
    pub customer_id: String,
    /// The action.
    pub action: String,
    /// The channel it was offered on.
    pub channel: String,
    /// What happened.
    pub kind: OutcomeKind,
    /// When it happened (default: now).
    pub timestamp: Option<Timestamp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeJson {
    #[serde(default)]
    decision_id: Option<String>,
    customer_id: String,
    action: String,
    channel: String,
    outcome: OutcomeKind,
    #[serde(default)]
    timestamp: Option<String>,
}

impl Outcome {
    /// Parse the outcome JSON shape in the README:
    /// `{"decision_id": "...", "customer_id": "C1", "action": "CARD_GOLD",
    /// "channel": "call_center", "outcome": "accepted"}` (`decision_id` and
    /// `timestamp` optional).
    pub fn from_json(json: &str) -> Result<Outcome, Error> {
        let raw: OutcomeJson = serde_json::from_str(json)
            .map_err(|e| Error::InvalidRequest(format!("outcome: {e}")))?;
        let decision_id = match raw.decision_id {
            Some(s) => Some(DecisionId::parse(&s).ok_or_else(|| {
                Error::InvalidRequest(format!("outcome: decision_id `{s}` is not 32 hex digits"))
            })?),
            None => None,
        };
        let timestamp = match raw.timestamp {
            Some(s) => Some(
                Timestamp::parse(&s)
                    .map_err(|m| Error::InvalidRequest(format!("outcome: timestamp: {m}")))?,
            ),
            None => None,
        };
        Ok(Outcome {
            decision_id,
            customer_id: raw.customer_id,
            action: raw.action,
            channel: raw.channel,
            kind: raw.outcome,
            timestamp,
        })
    }
}

/// The bit of an outcome kind in a kind set.
pub(crate) fn kind_bit(k: OutcomeKind) -> u8 {
    1 << (k as u8)
}

/// Outcome kinds counted, in [`OutcomeKind::ALL`] order.
pub(crate) const KINDS: usize = OutcomeKind::ALL.len();
