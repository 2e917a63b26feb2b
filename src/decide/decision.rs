//! What goes into a decision and what comes out.

use std::sync::Arc;

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

pub use crate::base::{Arm, DecisionId};
pub(crate) use crate::base::{Blocked, Removed, Scored};
use crate::base::{Error, EvalError, Level, Stage, Timestamp};
use crate::context::Context;
use crate::ruleset::RuleSet;

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

    /// Parse a JSON request (the shape in the README) against `schema`.
    ///
    /// The context is bound straight into the schema's slots as it is
    /// parsed: no intermediate map of names to JSON values.
    pub fn from_json(
        schema: &Arc<crate::context::schema::Schema>,
        json: &str,
    ) -> Result<DecisionRequest, Error> {
        use serde::de::DeserializeSeed;
        let mut failed = None;
        let mut de = serde_json::Deserializer::from_str(json);
        let parsed = RequestSeed {
            schema,
            failed: &mut failed,
        }
        .deserialize(&mut de)
        .and_then(|r| de.end().map(|()| r));
        // Errors in the request's JSON first, then the context's values.
        let (raw, context) = parsed.map_err(|e| Error::InvalidRequest(e.to_string()))?;
        if let Some(e) = failed {
            return Err(e);
        }
        raw.finish(context.unwrap_or_else(|| Context::empty(schema)))
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
        self.finish(context)
    }

    /// The request with `context` (already bound) and the other fields
    /// checked.
    fn finish(self, context: Context) -> Result<DecisionRequest, Error> {
        let limit = match self.limit {
            Some(n) => Some(crate::decide::version::check_limit(
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
        })
    }
}

/// The answer to a [`DecisionRequest`].
#[derive(Debug, Clone)]
pub struct Decision {
    pub(crate) version: crate::decide::version::VersionRef,
    pub(crate) id: DecisionId,
    pub(crate) timestamp: Timestamp,
    pub(crate) arm: Arm,
    /// The random seed of a draw (the random-eligible control group).
    pub(crate) seed: Option<u64>,
    pub(crate) channel: u32,
    pub(crate) chosen: Vec<Scored>,
    pub(crate) ranked: Vec<Scored>,
    pub(crate) removed: Vec<Removed>,
    /// The strategy's reasons for the exclusions in `removed`.
    pub(crate) notes: Vec<Arc<str>>,
    pub(crate) diagnostics: Vec<crate::ruleset::strategy::Diagnostic>,
    pub(crate) elapsed_ns: u64,
    /// Actions removed by engine state.
    pub(crate) blocked: Vec<Blocked>,
    /// The learning evidence used, per survivor: (action, successes,
    /// failures); empty without `[learning]`.
    pub(crate) evidence: Vec<(u32, u32, u32)>,
    /// The probability that the first action was chosen first, when the
    /// learning mode makes it exact (posterior mean: 1; epsilon-greedy).
    pub(crate) selection_probability: Option<f64>,
    /// `ranked` holds every survivor out of arbitration order (a decision
    /// explained or logged with nothing in it that needs them in order):
    /// its readers, the log's writer included, get them sorted
    /// ([`Decision::ranked_in_order`]). Any other order of `ranked` is
    /// deliberate (an epsilon-greedy exploration puts the explored action
    /// first) and is kept.
    pub(crate) ranked_unsorted: bool,
    /// What an explained or logged decision records besides its lists
    /// (boxed: a plain decision carries and drops one pointer for it).
    pub(crate) recorded: Option<Box<Recorded>>,
}

/// See [`Decision::recorded`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorded {
    /// `ranked` in arbitration order, once a reader has asked for it (when
    /// the decision left it unsorted).
    pub(crate) sorted: std::sync::OnceLock<Vec<Scored>>,
    /// The actions the engagement policies removed.
    pub(crate) policy: PolicyRemovals,
}

/// The engagement policies' removals of a decision that records them, kept
/// as what decides them: which conjuncts held (the memo's bits) and which
/// of the channel's actions passed, a bit each. Every action that did not
/// pass was removed by the first of its checks that failed, which
/// [`Removals`] works out for whoever reads the explanation: a decision
/// that removes 800 of 1,000 actions keeps 20-odd words, not 800 entries.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyRemovals {
    /// The memo's words, then the passing set's (empty: not recorded).
    bits: Vec<u64>,
    memo_words: usize,
    /// The failed conjuncts that could not be evaluated, and why, ascending
    /// by conjunct (only when explaining; the log's writer works reasons
    /// out itself).
    errors: Vec<(u32, EvalError)>,
}

impl PolicyRemovals {
    /// Whether the decision recorded its policies' removals.
    pub(crate) fn recorded(&self) -> bool {
        !self.bits.is_empty()
    }

    /// Its words, emptied (for [`crate::decide::spare`]).
    pub(crate) fn take_bits(&mut self) -> Vec<u64> {
        let mut bits = std::mem::take(&mut self.bits);
        bits.clear();
        bits
    }

    /// The removals that the memo bits `memo` and the passing set
    /// `passing` decide; `errors`: why failed conjuncts could not be
    /// evaluated.
    pub(crate) fn of(memo: &[u64], passing: &[u64], errors: Vec<(u32, EvalError)>) -> Self {
        debug_assert!(errors.windows(2).all(|w| w[0].0 < w[1].0));
        let mut bits = crate::decide::spare::words(memo.len() + passing.len());
        bits.extend_from_slice(memo);
        bits.extend_from_slice(passing);
        PolicyRemovals {
            bits,
            memo_words: memo.len(),
            errors,
        }
    }
}

/// Every removed candidate of a decision: the engagement policies'
/// removals in the channel's order (each with the first check that
/// failed, found as they are read), then the later stages' (engine state,
/// value, strategy) as the decision recorded them.
pub(crate) struct Removals<'a> {
    checks: &'a crate::ruleset::policy::Checks,
    actions: &'a [u32],
    memo: &'a [u64],
    passing: &'a [u64],
    errors: &'a [(u32, EvalError)],
    /// The channel's action count (bits past it in the last word are not
    /// actions).
    n: usize,
    /// The word of `passing` being read, and its removed actions not yet
    /// returned.
    word: usize,
    rest: u64,
    /// Policy removals not yet returned.
    left: usize,
    recorded: std::slice::Iter<'a, Removed>,
}

impl<'a> Removals<'a> {
    /// The removed actions of word `w` of the passing set.
    fn removed_in(&self, w: usize) -> u64 {
        let valid = if (w + 1) * 64 <= self.n {
            !0
        } else {
            (1u64 << (self.n % 64)) - 1
        };
        !self.passing[w] & valid
    }
}

impl Iterator for Removals<'_> {
    type Item = Removed;

    // Inlined into the reader's loop, the entry stays in registers.
    #[inline]
    fn next(&mut self) -> Option<Removed> {
        while self.left > 0 {
            if self.rest == 0 {
                self.word += 1;
                self.rest = self.removed_in(self.word);
                continue;
            }
            let pos = self.word * 64 + self.rest.trailing_zeros() as usize;
            self.rest &= self.rest - 1;
            self.left -= 1;
            // An action that did not pass has a check that failed: its
            // need is its checks' conjuncts.
            let Some(check) = self.checks.first_failure(pos, self.memo) else {
                debug_assert!(false, "an action that did not pass failed no check");
                continue;
            };
            // Ascending by conjunct, as `Checks::failed` finds them.
            let error = self
                .errors
                .binary_search_by_key(&check.cond, |&(c, _)| c)
                .ok()
                .map(|i| self.errors[i].1);
            return Some(Removed::by_condition(
                self.actions[pos],
                check.stage,
                check.level,
                Some(check.cond),
                error,
            ));
        }
        self.recorded.next().copied()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.left + self.recorded.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Removals<'_> {}

impl Decision {
    /// The ranked survivors in arbitration order: sorted on the first
    /// call if the decision left them unsorted.
    pub(crate) fn ranked_in_order(&self) -> &[Scored] {
        match &self.recorded {
            Some(r) if self.ranked_unsorted => r
                .sorted
                .get_or_init(|| crate::decide::arbitration::sorted(&self.ranked)),
            _ => {
                debug_assert!(!self.ranked_unsorted, "unsorted with nowhere to sort to");
                &self.ranked
            }
        }
    }

    /// Every removed candidate, engagement policies' first.
    pub(crate) fn removals(&self) -> Removals<'_> {
        let rs = self.ruleset();
        let ch = &rs.channels[self.channel as usize];
        static NONE: PolicyRemovals = PolicyRemovals {
            bits: Vec::new(),
            memo_words: 0,
            errors: Vec::new(),
        };
        let p = self.recorded.as_ref().map_or(&NONE, |r| &r.policy);
        let (memo, passing) = p.bits.split_at(p.memo_words.min(p.bits.len()));
        let n = if passing.is_empty() {
            0
        } else {
            ch.actions.len()
        };
        let mut it = Removals {
            checks: &ch.checks,
            actions: &ch.actions,
            memo,
            passing,
            errors: &p.errors,
            n,
            word: 0,
            rest: 0,
            left: 0,
            recorded: self.removed.iter(),
        };
        if n > 0 {
            it.rest = it.removed_in(0);
            it.left = (0..passing.len())
                .map(|w| it.removed_in(w).count_ones() as usize)
                .sum();
        }
        it
    }

    /// The decision's unique id.
    pub fn id(&self) -> DecisionId {
        self.id
    }

    /// The decision time.
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The rule version number that decided.
    pub fn version(&self) -> u64 {
        self.version.number
    }

    /// The rule set that decided (the challenger's for the challenger arm).
    pub fn ruleset(&self) -> &RuleSet {
        self.version.rules_for(self.arm)
    }

    /// The seed of the random draw, if the decision made one.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The experiment arm.
    pub fn arm(&self) -> Arm {
        self.arm
    }

    /// Nanoseconds spent deciding.
    pub fn elapsed_ns(&self) -> u64 {
        self.elapsed_ns
    }

    /// The channel decided for.
    pub fn channel(&self) -> &str {
        &self.ruleset().channels[self.channel as usize].name
    }

    /// The chosen actions, best first.
    pub fn actions(&self) -> impl ExactSizeIterator<Item = RankedAction<'_>> {
        self.chosen
            .iter()
            .enumerate()
            .map(move |(i, s)| RankedAction {
                decision: self,
                rank: i + 1,
                scored: *s,
            })
    }

    /// The chosen action ids, best first.
    pub fn action_ids(&self) -> Vec<&str> {
        self.chosen
            .iter()
            .map(|s| &*self.ruleset().actions[s.action as usize].id)
            .collect()
    }

    /// With `explain`: every candidate that survived the policies, best
    /// first, including those beyond the limit. Empty otherwise.
    ///
    /// The decision keeps the survivors as it scored them and picks its
    /// top N without sorting them all; the first call sorts them (once).
    pub fn ranked(&self) -> impl ExactSizeIterator<Item = RankedAction<'_>> {
        self.ranked_in_order()
            .iter()
            .enumerate()
            .map(move |(i, s)| RankedAction {
                decision: self,
                rank: i + 1,
                scored: *s,
            })
    }

    /// With `explain`: every candidate removed, with the stage and
    /// condition that removed it. Empty otherwise.
    ///
    /// The engagement policies' removals come first, in the channel's
    /// action order, then the later stages' (contact policies and limits,
    /// volume constraints, value, strategy) in the order they removed
    /// them. The decision keeps the policies' removals as the results of
    /// the conditions and which actions passed (a few words, however many
    /// actions were removed); the first failed check of each is found as
    /// it is read.
    pub fn filtered(&self) -> impl ExactSizeIterator<Item = FilteredAction<'_>> {
        self.removals().map(move |removed| FilteredAction {
            decision: self,
            removed,
        })
    }

    /// The same decision without its explanation lists.
    pub(crate) fn without_candidates(&self) -> Decision {
        Decision {
            version: self.version.clone(),
            id: self.id,
            timestamp: self.timestamp,
            arm: self.arm,
            seed: self.seed,
            channel: self.channel,
            chosen: self.chosen.clone(),
            ranked: Vec::new(),
            removed: Vec::new(),
            recorded: None,
            notes: Vec::new(),
            diagnostics: self.diagnostics.clone(),
            elapsed_ns: self.elapsed_ns,
            blocked: self.blocked.clone(),
            evidence: self.evidence.clone(),
            selection_probability: self.selection_probability,
            ranked_unsorted: false,
        }
    }

    /// The probability that this decision's first action was the one put
    /// first, when the learning mode makes it exact: 1 for the posterior
    /// mean, `(1 - ε) + ε/n` or `ε/n` for epsilon-greedy over `n`
    /// survivors; `None` for Thompson sampling and without `[learning]`.
    pub fn selection_probability(&self) -> Option<f64> {
        self.selection_probability
    }

    /// Problems in the strategy's hooks during this decision (the decision
    /// was made without the hook that failed).
    pub fn diagnostics(&self) -> &[crate::ruleset::strategy::Diagnostic] {
        &self.diagnostics
    }

    /// The decision as the JSON response in the README.
    ///
    /// Byte for byte what `serde_json::to_string` makes of the `Serialize`
    /// implementation (a test checks it), written directly: the keys are
    /// literals (serde_json would scan each for escapes) and the buffer is
    /// sized once.
    pub fn to_json(&self) -> String {
        // serde_json writes UTF-8 only, and so do the literals.
        String::from_utf8(self.to_json_vec()).unwrap_or_default()
    }

    /// [`Decision::to_json`] as bytes, with room for one more (a C caller's
    /// NUL).
    pub fn to_json_vec(&self) -> Vec<u8> {
        let mut w = JsonOut::with_capacity(
            320 + 200 * (self.chosen.len() + self.ranked.len()) + 96 * self.removals().len(),
        );
        w.open();
        w.key("decision_id");
        w.buf.push(b'"');
        let id = self.id.0;
        w.buf.extend(
            (0..32)
                .rev()
                .map(|i| b"0123456789abcdef"[(id >> (4 * i)) as usize & 15]),
        );
        w.buf.push(b'"');
        w.key("timestamp");
        // RFC 3339 straight into the buffer (no escapes needed), or as
        // `Display` writes it when that fails.
        let start = w.buf.len();
        w.buf.push(b'"');
        let written = time::OffsetDateTime::from_unix_timestamp(self.timestamp.0)
            .ok()
            .and_then(|t| {
                t.format_into(&mut w.buf, &time::format_description::well_known::Rfc3339)
                    .ok()
            });
        if written.is_some() {
            w.buf.push(b'"');
        } else {
            w.buf.truncate(start);
            w.display(&self.timestamp);
        }
        let rules = self.ruleset();
        w.key("ruleset");
        w.open();
        w.key("name");
        w.str(&rules.name);
        w.key("version");
        w.num(&self.version.number);
        w.key("hash");
        w.str(&rules.hash);
        w.close();
        w.key("channel");
        w.str(self.channel());
        if let Some(e) = &self.version.rules.experiment {
            w.key("experiment");
            w.str(&e.name);
        }
        w.key("arm");
        w.str(self.arm.as_str());
        if let Some(seed) = self.seed {
            w.key("seed");
            w.num(&seed);
        }
        w.key("actions");
        self.ranked_json(&mut w, &self.chosen);
        if let Some(p) = self.selection_probability {
            w.key("selection_probability");
            w.num(&p);
        }
        w.key("filtered");
        w.buf.push(b'[');
        for (i, f) in self.filtered().enumerate() {
            if i > 0 {
                w.buf.push(b',');
            }
            w.open();
            w.key("action");
            w.str(f.action());
            w.key("stage");
            w.str(f.stage().as_str());
            w.key("level");
            w.str(f.level().as_str());
            if let Some(c) = f.condition() {
                w.key("condition");
                w.str(c);
            }
            if let Some(r) = f.reason() {
                w.key("reason");
                w.str(&r);
            }
            w.close();
        }
        w.buf.push(b']');
        if !self.ranked.is_empty() {
            w.key("ranked");
            self.ranked_json(&mut w, self.ranked_in_order());
        }
        if !self.diagnostics.is_empty() {
            w.key("diagnostics");
            w.buf.push(b'[');
            for (i, d) in self.diagnostics.iter().enumerate() {
                if i > 0 {
                    w.buf.push(b',');
                }
                w.display(d);
            }
            w.buf.push(b']');
        }
        w.key("elapsed_ns");
        w.num(&self.elapsed_ns);
        w.close();
        w.buf
    }

    fn ranked_json(&self, w: &mut JsonOut, list: &[Scored]) {
        let rs = self.ruleset();
        let names = rs.json.names.get_or_init(|| {
            let esc = |v: &str| serde_json::to_string(v).unwrap_or_default();
            rs.actions
                .iter()
                .map(|a| {
                    let head = format!(
                        "\"action\":{},\"group\":{},\"issue\":{}",
                        esc(&a.id),
                        esc(&rs.groups[a.group as usize].name),
                        esc(&rs.issues[a.issue as usize].name)
                    );
                    let treatments = a
                        .treatments
                        .iter()
                        .map(|t| {
                            format!("\"treatment\":{}", esc(t.as_deref().unwrap_or(""))).into()
                        })
                        .collect();
                    (head.into(), treatments)
                })
                .collect()
        });
        w.buf.push(b'[');
        for (i, sc) in list.iter().enumerate() {
            if i > 0 {
                w.buf.push(b',');
            }
            let (head, treatments) = &names[sc.action as usize];
            w.buf.extend_from_slice(b"{\"rank\":");
            w.num(&(i + 1));
            w.buf.push(b',');
            w.buf.extend_from_slice(head.as_bytes());
            w.buf.push(b',');
            w.buf
                .extend_from_slice(treatments[self.channel as usize].as_bytes());
            w.buf.extend_from_slice(b",\"priority\":");
            w.num(&sc.priority);
            w.buf.extend_from_slice(b",\"propensity\":");
            w.num(&sc.propensity);
            w.buf.extend_from_slice(b",\"context_weight\":");
            w.num(&sc.context_weight);
            w.buf.extend_from_slice(b",\"value\":");
            w.num(&sc.value);
            w.buf.extend_from_slice(b",\"lever\":");
            w.num(&sc.lever);
            w.buf.push(b'}');
        }
        w.buf.push(b']');
    }
}

/// A ranked action with its score.
#[derive(Debug, Clone, Copy)]
pub struct RankedAction<'a> {
    decision: &'a Decision,
    rank: usize,
    scored: Scored,
}

impl<'a> RankedAction<'a> {
    fn rules(&self) -> &'a RuleSet {
        self.decision.ruleset()
    }
    /// 1 for the best.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// The action id.
    pub fn action(&self) -> &'a str {
        &self.rules().actions[self.scored.action as usize].id
    }
    /// The action's display name, if the rules give one.
    pub fn name(&self) -> Option<&'a str> {
        self.rules().actions[self.scored.action as usize]
            .name
            .as_deref()
    }
    /// The action's group.
    pub fn group(&self) -> &'a str {
        let rs = self.rules();
        &rs.groups[rs.actions[self.scored.action as usize].group as usize].name
    }
    /// The action's issue.
    pub fn issue(&self) -> &'a str {
        let rs = self.rules();
        &rs.issues[rs.actions[self.scored.action as usize].issue as usize].name
    }
    /// The treatment for the decision's channel.
    pub fn treatment(&self) -> &'a str {
        let rs = self.rules();
        rs.actions[self.scored.action as usize].treatments[self.decision.channel as usize]
            .as_deref()
            .unwrap_or("")
    }
    /// P x C x V x L.
    pub fn priority(&self) -> f64 {
        self.scored.priority
    }
    /// P: the propensity used.
    pub fn propensity(&self) -> f64 {
        self.scored.propensity
    }
    /// C: the context weight.
    pub fn context_weight(&self) -> f64 {
        self.scored.context_weight
    }
    /// V: the value.
    pub fn value(&self) -> f64 {
        self.scored.value
    }
    /// L: the business lever.
    pub fn lever(&self) -> f64 {
        self.scored.lever
    }
}

/// A candidate removed before ranking, and why.
#[derive(Debug, Clone, Copy)]
pub struct FilteredAction<'a> {
    decision: &'a Decision,
    removed: Removed,
}

impl<'a> FilteredAction<'a> {
    fn rules(&self) -> &'a RuleSet {
        self.decision.ruleset()
    }
    /// The action id.
    pub fn action(&self) -> &'a str {
        &self.rules().actions[self.removed.action as usize].id
    }
    /// The stage that removed it.
    pub fn stage(&self) -> Stage {
        self.removed.stage
    }
    /// Whether the failing policy is the group's or the action's.
    pub fn level(&self) -> Level {
        self.removed.level
    }
    /// The condition that was not met (for engagement policies), or the
    /// value expression (for the value stage).
    pub fn condition(&self) -> Option<&'a str> {
        let rs = self.rules();
        match self.removed.cond {
            Some(c) => Some(&rs.conds[c as usize].text),
            None => match &rs.actions[self.removed.action as usize].value {
                crate::ruleset::ValueFn::Expr(_, text, _) if self.removed.stage == Stage::Value => {
                    Some(text)
                }
                _ => None,
            },
        }
    }
    /// Where the failed condition is written in the rule files.
    pub fn condition_location(&self) -> Option<&'a crate::base::Location> {
        self.removed
            .cond
            .map(|c| &self.rules().conds[c as usize].location)
    }
    /// Why the condition could not be evaluated, if it could not
    /// (`missing attribute income`, `integer overflow`, ...). `None` means it
    /// evaluated to false.
    pub fn reason(&self) -> Option<String> {
        let rs = self.rules();
        if let Some(n) = rs.removal_note(&self.removed, &self.decision.notes) {
            return Some(n.to_string());
        }
        self.removed.error.map(|e| match e {
            EvalError::Missing(slot) => format!(
                "missing attribute `{}`",
                rs.schema.attrs[slot as usize].name
            ),
            EvalError::Overflow => "integer overflow".into(),
            EvalError::DivisionByZero => "division by zero".into(),
        })
    }
    /// The missing attribute that made the condition fail, if that is why.
    pub fn missing_attribute(&self) -> Option<&'a str> {
        match self.removed.error {
            Some(EvalError::Missing(slot)) => Some(&self.rules().schema.attrs[slot as usize].name),
            _ => None,
        }
    }
}

/// The compact JSON writer of [`Decision::to_json`]: keys are written as
/// they are (they are literals that need no escaping); values go through
/// serde_json, so strings are escaped and numbers formatted (non-finite
/// floats as `null`) exactly as it does.
struct JsonOut {
    buf: Vec<u8>,
    /// No member written yet in the innermost object.
    first: bool,
}

impl JsonOut {
    fn with_capacity(n: usize) -> JsonOut {
        JsonOut {
            buf: Vec::with_capacity(n),
            first: true,
        }
    }
    fn open(&mut self) {
        self.buf.push(b'{');
        self.first = true;
    }
    fn close(&mut self) {
        self.buf.push(b'}');
        self.first = false;
    }
    #[inline(always)]
    fn key(&mut self, k: &'static str) {
        debug_assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }
    fn str(&mut self, v: &str) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, v);
    }
    fn num<T: Serialize>(&mut self, v: &T) {
        let _ = serde_json::to_writer(&mut self.buf, v);
    }
    /// A `Display` value as a JSON string (ids, timestamps, diagnostics).
    fn display(&mut self, v: &dyn std::fmt::Display) {
        use std::io::Write;
        let start = self.buf.len();
        self.buf.push(b'"');
        let _ = write!(self.buf, "{v}");
        let plain = self.buf[start + 1..]
            .iter()
            .all(|&b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x80);
        if plain {
            self.buf.push(b'"');
        } else {
            let text = String::from_utf8_lossy(&self.buf[start + 1..]).into_owned();
            self.buf.truncate(start);
            self.str(&text);
        }
    }
}

struct ActionsJson<'a>(&'a Decision, &'a [Scored]);

impl Serialize for ActionsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.1.len()))?;
        for (i, sc) in self.1.iter().enumerate() {
            seq.serialize_element(&RankedAction {
                decision: self.0,
                rank: i + 1,
                scored: *sc,
            })?;
        }
        seq.end()
    }
}

impl Serialize for RankedAction<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(10))?;
        m.serialize_entry("rank", &self.rank)?;
        m.serialize_entry("action", self.action())?;
        m.serialize_entry("group", self.group())?;
        m.serialize_entry("issue", self.issue())?;
        m.serialize_entry("treatment", self.treatment())?;
        m.serialize_entry("priority", &self.priority())?;
        m.serialize_entry("propensity", &self.propensity())?;
        m.serialize_entry("context_weight", &self.context_weight())?;
        m.serialize_entry("value", &self.value())?;
        m.serialize_entry("lever", &self.lever())?;
        m.end()
    }
}

impl Serialize for FilteredAction<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("action", self.action())?;
        m.serialize_entry("stage", self.stage().as_str())?;
        m.serialize_entry("level", self.level().as_str())?;
        if let Some(c) = self.condition() {
            m.serialize_entry("condition", c)?;
        }
        if let Some(r) = self.reason() {
            m.serialize_entry("reason", &r)?;
        }
        m.end()
    }
}

struct RulesetJson<'a>(&'a Decision);

impl Serialize for RulesetJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rules = self.0.ruleset();
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("name", &*rules.name)?;
        m.serialize_entry("version", &self.0.version.number)?;
        m.serialize_entry("hash", &rules.hash)?;
        m.end()
    }
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("decision_id", &self.id.to_string())?;
        m.serialize_entry("timestamp", &self.timestamp.to_string())?;
        m.serialize_entry("ruleset", &RulesetJson(self))?;
        m.serialize_entry("channel", self.channel())?;
        if let Some(e) = &self.version.rules.experiment {
            m.serialize_entry("experiment", &e.name)?;
        }
        m.serialize_entry("arm", self.arm.as_str())?;
        if let Some(seed) = self.seed {
            m.serialize_entry("seed", &seed)?;
        }
        m.serialize_entry("actions", &ActionsJson(self, &self.chosen))?;
        if let Some(p) = self.selection_probability {
            m.serialize_entry("selection_probability", &p)?;
        }
        let filtered: Vec<FilteredAction<'_>> = self.filtered().collect();
        m.serialize_entry("filtered", &filtered)?;
        if !self.ranked.is_empty() {
            m.serialize_entry("ranked", &ActionsJson(self, self.ranked_in_order()))?;
        }
        if !self.diagnostics.is_empty() {
            let d: Vec<String> = self.diagnostics.iter().map(ToString::to_string).collect();
            m.serialize_entry("diagnostics", &d)?;
        }
        m.serialize_entry("elapsed_ns", &self.elapsed_ns)?;
        m.end()
    }
}
