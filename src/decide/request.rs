//! What goes into a decision: the request, how it is decided ([`Mode`]),
//! and its JSON form, parsed in one pass that binds the context.

use std::sync::Arc;

use serde::Deserialize;

use crate::base::{Error, Stage, Timestamp};
use crate::context::{Context, RequestWarning};

/// How a decision treats the engine's state, the wall clock and the log.
///
/// | mode | strategy hooks' wall-clock budget | engine state | logged and counted |
/// |---|---|---|---|
/// | `Live` | yes | read, and changed: volume units taken, impressions recorded (when the engine records them) | yes |
/// | `Simulate` | no | read and changed, as `Live` | yes |
/// | `Preview` | no | read only | no |
/// | `Replay` | no (the logged time-outs are reproduced) | the logged state, not the engine's | no |
///
/// Without the wall-clock budget, a hook is stopped by its operations
/// budget only, so the decision depends on its inputs alone, not on how
/// loaded the machine is.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Serving a customer (the default).
    #[default]
    Live,
    /// A simulation: as `Live`, without the wall-clock budget.
    Simulate,
    /// What would be decided now, changing nothing and logging nothing.
    Preview,
    /// Re-deciding a logged decision with the engine state it read.
    Replay(Arc<ReplayState>),
}

impl Mode {
    /// Whether strategy hooks stop at the wall-clock budget.
    pub(crate) fn wall_clock(&self) -> bool {
        matches!(self, Mode::Live)
    }

    /// Whether the decision changes engine state (takes volume units,
    /// records impressions), and is logged and counted.
    pub(crate) fn commits(&self) -> bool {
        matches!(self, Mode::Live | Mode::Simulate)
    }

    /// The logged state a replay decides with.
    pub(crate) fn replaying(&self) -> Option<&ReplayState> {
        match self {
            Mode::Replay(r) => Some(r),
            _ => None,
        }
    }
}

/// What a replay must reproduce that the request does not determine: the
/// engine state a logged decision read, and what the machine did to it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ReplayState {
    /// The hooks the wall-clock budget stopped when the decision was made.
    pub timed_out: Vec<String>,
    /// Actions engine state removed: (action, stage, policy).
    pub blocked: Vec<(String, Stage, String)>,
    /// Learning evidence: (action, successes, failures).
    pub evidence: Vec<(String, u32, u32)>,
    /// Contextual-model evidence: (action, the customer's likelihood
    /// ratio `exp(z)`, the model's positives).
    pub model_evidence: Vec<(String, f64, u32)>,
    /// The contextual-model snapshot the decision used.
    pub model_snapshot: Option<u64>,
    /// The seed of the decision's draws.
    pub seed: Option<u64>,
}

impl ReplayState {
    /// Whether the wall-clock budget stopped `hook` when the decision was
    /// made.
    pub(crate) fn timed_out(&self, hook: &str) -> bool {
        self.timed_out.iter().any(|h| h == hook)
    }
}

/// Most actions a request may ask for.
pub const MAX_LIMIT: usize = 1000;

/// A request for the next best actions for one customer on one channel.
///
/// ```
/// # let engine = nextbest::Engine::from_dir("tests/fixtures/mini").unwrap();
/// use nextbest::{Context, DecisionRequest};
/// let ctx = Context::builder(&engine.schema()).set("age", 35).build().unwrap();
/// let req = DecisionRequest::new("C1", "call_center", ctx).limit(2).explain(true);
/// assert_eq!(req.limit, Some(2));
/// ```
#[derive(Debug, Clone)]
pub struct DecisionRequest {
    /// The customer's id (used for experiment assignment and the log).
    pub customer_id: String,
    /// The channel the decision is for.
    pub channel: String,
    /// The customer context.
    pub context: Context,
    /// How many actions to return (default: the channel's limit, then the
    /// rule set's `default_limit`).
    pub limit: Option<usize>,
    /// Record why each action was removed and how each survivor scored.
    pub explain: bool,
    /// The decision time (default: now). Conditions such as `days_since`
    /// use it, so a replay with the same time decides the same way.
    pub now: Option<Timestamp>,
    /// The seed of the decision's random draws (Thompson sampling and
    /// epsilon-greedy learning). Default: derived from the decision id.
    /// Set it to make a test or a simulation reproducible; the decision log
    /// records the seed used either way, so replays draw the same.
    pub seed: Option<u64>,
    /// How the decision treats engine state, the wall clock and the log
    /// (default: [`Mode::Live`]).
    pub mode: Mode,
    /// What the request held that the decision will not use (see
    /// [`DecisionRequest::warnings`]).
    pub(crate) warnings: Option<Arc<[RequestWarning]>>,
}

impl DecisionRequest {
    /// A request with no limit override, no explanation, decided now.
    pub fn new(
        customer_id: impl Into<String>,
        channel: impl Into<String>,
        context: Context,
    ) -> DecisionRequest {
        DecisionRequest {
            customer_id: customer_id.into(),
            channel: channel.into(),
            context,
            limit: None,
            explain: false,
            now: None,
            seed: None,
            mode: Mode::Live,
            warnings: None,
        }
    }

    /// Ask for at most `n` actions.
    pub fn limit(mut self, n: usize) -> DecisionRequest {
        self.limit = Some(n);
        self
    }

    /// Ask for an explanation.
    pub fn explain(mut self, on: bool) -> DecisionRequest {
        self.explain = on;
        self
    }

    /// Seed the decision's random draws (see [`DecisionRequest::seed`]).
    pub fn seed(mut self, seed: u64) -> DecisionRequest {
        self.seed = Some(seed);
        self
    }

    /// Decide as of `t`.
    pub fn at(mut self, t: Timestamp) -> DecisionRequest {
        self.now = Some(t);
        self
    }

    /// Decide in `mode` (see [`Mode`]).
    pub fn mode(mut self, mode: Mode) -> DecisionRequest {
        self.mode = mode;
        self
    }

    /// What the request held that the decision will not use: context
    /// attributes the schema does not declare (each with the closest
    /// declared name), found when it was parsed from JSON. The decision
    /// carries them ([`crate::Decision::warnings`]); an engine with
    /// `strict_requests` refuses the request instead.
    pub fn warnings(&self) -> &[RequestWarning] {
        self.warnings.as_deref().unwrap_or(&[])
    }

    /// Add a warning (a request built from another input than JSON that
    /// found, say, an attribute its schema does not declare: see
    /// [`RequestWarning::unknown_attribute`]).
    pub fn warn(mut self, warning: RequestWarning) -> DecisionRequest {
        let mut all = self.warnings().to_vec();
        all.push(warning);
        self.warnings = Some(all.into());
        self
    }

    /// Parse a JSON request (the shape in the README) against `schema`.
    ///
    /// The context is bound straight into the schema's slots as it is
    /// parsed: no intermediate map of names to JSON values. Context
    /// attributes the schema does not declare are ignored and listed in
    /// [`DecisionRequest::warnings`].
    pub fn from_json(
        schema: &Arc<crate::context::schema::Schema>,
        json: &str,
    ) -> Result<DecisionRequest, Error> {
        use serde::de::DeserializeSeed;
        let mut failed = None;
        let mut unknown = Vec::new();
        let mut de = serde_json::Deserializer::from_str(json);
        let parsed = RequestSeed {
            schema,
            failed: &mut failed,
            unknown: &mut unknown,
        }
        .deserialize(&mut de)
        .and_then(|r| de.end().map(|()| r));
        // Errors in the request's JSON first, then the context's values.
        let (raw, context) = parsed.map_err(|e| Error::InvalidRequest(e.to_string()))?;
        if let Some(e) = failed {
            return Err(e);
        }
        let mut request = raw.finish(context.unwrap_or_else(|| Context::empty(schema)))?;
        if !unknown.is_empty() {
            request.warnings = Some(RequestWarning::unknown_attributes(schema, unknown).into());
        }
        Ok(request)
    }
}

/// The fields of a JSON request, in the order of [`RequestJson`] (the
/// order serde's messages list them in).
const REQUEST_FIELDS: &[&str] = &[
    "customer_id",
    "channel",
    "context",
    "limit",
    "explain",
    "now",
];

/// Parses a JSON request in one pass, binding its context into slots as it
/// goes (see [`crate::context::ContextSeed`]). The same fields, defaults
/// and errors as deriving `Deserialize` for [`RequestJson`] with
/// `deny_unknown_fields` (a property test compares them), except that a
/// request must be an object: serde's positional form (an array of the
/// fields in order) is not a request.
struct RequestSeed<'s> {
    schema: &'s Arc<crate::context::schema::Schema>,
    failed: &'s mut Option<Error>,
    unknown: &'s mut Vec<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for RequestSeed<'_> {
    type Value = (RequestJson, Option<Context>);
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_struct("RequestJson", REQUEST_FIELDS, self)
    }
}

impl<'de> serde::de::Visitor<'de> for RequestSeed<'_> {
    type Value = (RequestJson, Option<Context>);
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a decision request object ({\"customer_id\": ..., \"channel\": ..., \"context\": {...}})")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut customer_id: Option<String> = None;
        let mut channel: Option<String> = None;
        let mut context: Option<Option<Context>> = None;
        let mut limit: Option<Option<u64>> = None;
        let mut explain: Option<bool> = None;
        let mut now: Option<Option<serde_json::Value>> = None;
        while let Some(crate::context::Key(key)) = map.next_key()? {
            match &*key {
                "customer_id" if customer_id.is_some() => {
                    return Err(A::Error::duplicate_field("customer_id"))
                }
                "customer_id" => customer_id = Some(map.next_value()?),
                "channel" if channel.is_some() => return Err(A::Error::duplicate_field("channel")),
                "channel" => channel = Some(map.next_value()?),
                "context" if context.is_some() => return Err(A::Error::duplicate_field("context")),
                "context" => {
                    context = Some(map.next_value_seed(crate::context::ContextSeed {
                        schema: self.schema,
                        failed: &mut *self.failed,
                        unknown: &mut *self.unknown,
                    })?)
                }
                "limit" if limit.is_some() => return Err(A::Error::duplicate_field("limit")),
                "limit" => limit = Some(map.next_value()?),
                "explain" if explain.is_some() => return Err(A::Error::duplicate_field("explain")),
                "explain" => explain = Some(map.next_value()?),
                "now" if now.is_some() => return Err(A::Error::duplicate_field("now")),
                "now" => now = Some(map.next_value()?),
                other => return Err(A::Error::unknown_field(other, REQUEST_FIELDS)),
            }
        }
        let customer_id = customer_id.ok_or_else(|| A::Error::missing_field("customer_id"))?;
        let channel = channel.ok_or_else(|| A::Error::missing_field("channel"))?;
        Ok((
            RequestJson {
                customer_id,
                channel,
                context: serde_json::Map::new(),
                limit: limit.flatten(),
                explain: explain.unwrap_or(false),
                now: now.flatten(),
            },
            context.flatten(),
        ))
    }
}

/// The JSON shape of a request, before binding.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestJson {
    pub customer_id: String,
    pub channel: String,
    #[serde(default)]
    pub context: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub explain: bool,
    #[serde(default)]
    pub now: Option<serde_json::Value>,
}

impl RequestJson {
    pub(crate) fn bind(
        self,
        schema: &Arc<crate::context::schema::Schema>,
    ) -> Result<DecisionRequest, Error> {
        let context = Context::from_json(schema, &self.context)?;
        let unknown: Vec<String> = self
            .context
            .keys()
            .filter(|k| schema.slot(k).is_none())
            .cloned()
            .collect();
        let mut request = self.finish(context)?;
        if !unknown.is_empty() {
            request.warnings = Some(RequestWarning::unknown_attributes(schema, unknown).into());
        }
        Ok(request)
    }

    /// The request with `context` (already bound) and the other fields
    /// checked.
    fn finish(self, context: Context) -> Result<DecisionRequest, Error> {
        let limit = match self.limit {
            Some(n) => Some(super::version::check_limit(
                usize::try_from(n).unwrap_or(usize::MAX),
            )?),
            None => None,
        };
        let now = match self.now {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => {
                Some(Timestamp::parse(&s).map_err(|m| Error::InvalidRequest(format!("now: {m}")))?)
            }
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(s) => Some(Timestamp(s)),
                None => {
                    return Err(Error::InvalidRequest(format!(
                        "now: {n} is not whole epoch seconds"
                    )))
                }
            },
            Some(other) => {
                return Err(Error::InvalidRequest(format!(
                    "now must be an RFC 3339 string or epoch seconds, got {other}"
                )))
            }
        };
        Ok(DecisionRequest {
            customer_id: self.customer_id,
            channel: self.channel,
            context,
            limit,
            explain: self.explain,
            now,
            seed: None,
            mode: Mode::Live,
            warnings: None,
        })
    }
}
