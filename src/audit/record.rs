//! The decision-log record format (version 1) and masking.
//!
//! Serialisation runs on the log's writer thread, never on the decision
//! path; so does the evaluation of why a condition could not be evaluated
//! (a missing attribute, an overflow), which explanations need.

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use std::sync::mpsc::SyncSender;

use super::Masking;
use crate::base::{EvalError, Outcome, Timestamp, Value};
use crate::context::{Context, Slot, Texts};
use crate::decide::decision::Decision;
use crate::expr::Env;
use crate::ruleset::json::{log_texts, LogTexts};

/// Record format version.
pub(crate) const FORMAT_VERSION: u32 = 1;

pub(crate) enum Item {
    Decision(Box<DecisionItem>),
    Outcome(Box<OutcomeItem>),
    /// A record written as given (an engine event such as a governance
    /// refusal): a JSON object with `v` and `kind`.
    Note(Box<serde_json::Value>),
    Flush(SyncSender<std::io::Result<()>>),
}

pub(crate) struct DecisionItem {
    /// The decision with every candidate (removed and ranked), whatever
    /// the request's `explain`.
    pub decision: Decision,
    pub customer_id: String,
    pub context: Context,
    pub limit: Option<usize>,
    pub detail: super::LogDetail,
}

pub(crate) struct OutcomeItem {
    pub outcome: Outcome,
    pub at: Timestamp,
}

/// Write `item`'s record into `buf` (cleared first; reused across records,
/// so a large record does not regrow a fresh buffer) and return it (UTF-8).
/// Never inlined: `.ci/icount`'s writer workloads count the instructions
/// inside it.
#[inline(never)]
pub(crate) fn write_record<'b>(item: &Item, masking: &Masking, buf: &'b mut Vec<u8>) -> &'b [u8] {
    buf.clear();
    let r = match item {
        Item::Decision(d) => write_decision(d, masking, buf),
        Item::Outcome(o) => serde_json::to_writer(&mut *buf, &OutcomeRecord(o)),
        Item::Note(v) => serde_json::to_writer(&mut *buf, v),
        Item::Flush(_) => Ok(()),
    };
    if let Err(e) = r {
        buf.clear();
        buf.extend_from_slice(
            format!(
                "{{\"v\":1,\"kind\":\"error\",\"message\":{:?}}}",
                e.to_string()
            )
            .as_bytes(),
        );
    }
    // The hand-written record must be the `Serialize` one, byte for byte
    // (unit tests run every record through both).
    #[cfg(test)]
    if let Item::Decision(d) = item {
        let reference = serde_json::to_vec(&DecisionRecord {
            item: d,
            masking,
            part: Part::All,
        })
        .unwrap();
        if *buf != reference {
            let message = format!(
                "hand-written record differs from the reference:\n{}\n{}",
                String::from_utf8_lossy(buf),
                String::from_utf8_lossy(&reference)
            );
            buf.clear();
            buf.extend_from_slice(
                format!("{{\"v\":1,\"kind\":\"error\",\"message\":{message:?}}}").as_bytes(),
            );
        }
    }
    // Valid UTF-8: every piece is a `str` or ASCII (sinks that take text
    // check it: `Sink::write_bytes`).
    buf
}

/// A decision record: what [`DecisionRecord`] serialises, written by hand
/// (serde's map serialiser escapes every key byte by byte, and the keys
/// here are fixed). Only the strategy's diagnostics are serialised by
/// serde.
fn write_decision(
    item: &DecisionItem,
    masking: &Masking,
    buf: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let d = &item.decision;
    let rules = d.ruleset();
    buf.extend_from_slice(b"{\"v\":");
    int_json(buf, FORMAT_VERSION);
    buf.extend_from_slice(b",\"kind\":\"decision\",\"decision_id\":\"");
    buf.extend_from_slice(&d.id.hex());
    buf.extend_from_slice(b"\",\"timestamp\":");
    timestamp_json(buf, d.timestamp);
    buf.extend_from_slice(b",\"ruleset\":{\"name\":");
    str_json(buf, rules.name());
    buf.extend_from_slice(b",\"version\":");
    int_json(buf, d.version());
    buf.extend_from_slice(b",\"hash\":");
    str_json(buf, rules.hash());
    buf.extend_from_slice(b"},\"customer_id\":");
    str_json(buf, &item.customer_id);
    buf.extend_from_slice(b",\"channel\":");
    str_json(buf, d.channel());
    if let Some(e) = &d.version.rules.experiment {
        buf.extend_from_slice(b",\"experiment\":");
        str_json(buf, &e.name);
    }
    buf.extend_from_slice(b",\"arm\":");
    str_json(buf, d.arm.as_str());
    buf.extend_from_slice(b",\"seed\":");
    match d.seed {
        Some(seed) => int_json(buf, seed),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"limit\":");
    match item.limit {
        Some(limit) => int_json(buf, limit),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b",\"context\":");
    let keys = (item.context.schema.fingerprint == rules.schema.fingerprint
        && item.context.schema.attrs.len() == rules.schema.attrs.len())
    .then(|| &log_texts(rules).keys);
    write_context(buf, &item.context, masking, keys);
    buf.extend_from_slice(b",\"masked\":[");
    let mut first = true;
    for (a, _) in given(&item.context).filter(|(a, _)| a.sensitive) {
        if !first {
            buf.push(b',');
        }
        first = false;
        str_json(buf, &a.name);
    }
    buf.push(b']');
    if !rules.models.is_empty() {
        buf.extend_from_slice(b",\"models\":[");
        for (i, (m, score)) in model_scores(item).enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(b"{\"name\":");
            str_json(buf, &m.name);
            buf.extend_from_slice(b",\"hash\":");
            str_json(buf, &m.hash);
            if let Some(score) = score {
                buf.extend_from_slice(b",\"score\":");
                match score {
                    Some(s) => f64_json(buf, s),
                    None => buf.extend_from_slice(b"null"),
                }
            }
            buf.push(b'}');
        }
        buf.push(b']');
    }
    buf.extend_from_slice(b",\"detail\":");
    buf.extend_from_slice(match item.detail {
        super::LogDetail::Stages => b"\"stages\"",
        super::LogDetail::All => b"\"all\"",
        super::LogDetail::Ranked => b"\"ranked\"",
        super::LogDetail::Chosen => b"\"chosen\"",
    });
    buf.extend_from_slice(b",\"candidates\":");
    let texts = log_texts(rules);
    match item.detail {
        super::LogDetail::Chosen => write_chosen(item, buf),
        super::LogDetail::Stages => {
            write_candidates(item, buf);
            buf.extend_from_slice(b",\"removed\":");
            write_removed_by_stage(d, texts, buf);
        }
        super::LogDetail::All | super::LogDetail::Ranked => write_candidates(item, buf),
    }
    buf.extend_from_slice(b",\"actions\":[");
    for (i, c) in d.chosen.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(texts.id(c.action));
    }
    buf.push(b']');
    if let Some(p) = d.selection_probability {
        buf.extend_from_slice(b",\"selection_probability\":");
        f64_json(buf, p);
    }
    if !d.blocked.is_empty() {
        buf.extend_from_slice(b",\"blocked\":[");
        for (i, b) in d.blocked.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.push(b'[');
            buf.extend_from_slice(texts.id(b.action));
            // Stage names are identifiers: nothing to escape.
            buf.extend_from_slice(b",\"");
            buf.extend_from_slice(b.stage.as_str().as_bytes());
            buf.extend_from_slice(b"\",");
            str_json(buf, rules.blocker_name(b));
            buf.push(b']');
        }
        buf.push(b']');
    }
    if let Some(m) = &d.model {
        buf.extend_from_slice(b",\"model\":{\"id\":\"");
        buf.extend_from_slice(format!("{:016x}", m.id).as_bytes());
        buf.extend_from_slice(b"\",\"snapshot\":\"");
        buf.extend_from_slice(format!("{:016x}", m.snapshot).as_bytes());
        buf.extend_from_slice(b"\"}");
    }
    if !d.evidence.is_empty() {
        buf.extend_from_slice(b",\"evidence\":[");
        for (i, &(a, s, f)) in d.evidence.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.push(b'[');
            buf.extend_from_slice(texts.id(a));
            buf.push(b',');
            int_json(buf, s);
            buf.push(b',');
            int_json(buf, f);
            // The contextual model's: the customer's likelihood ratio
            // and the model's positives.
            if let Some(&(lr, positives)) = d.model_evidence.get(i) {
                buf.push(b',');
                f64_json(buf, lr);
                buf.push(b',');
                int_json(buf, positives);
            }
            buf.push(b']');
        }
        buf.push(b']');
    }
    if !d.diagnostics.is_empty() {
        // `{"diagnostics":...}` -> `,"diagnostics":...`
        let rest = buf.len();
        serde_json::to_writer(
            &mut *buf,
            &DecisionRecord {
                item,
                masking,
                part: Part::Rare,
            },
        )?;
        buf.truncate(buf.len() - 1);
        buf[rest] = b',';
    }
    buf.extend_from_slice(b",\"elapsed_ns\":");
    int_json(buf, d.elapsed_ns);
    buf.push(b'}');
    Ok(())
}

/// Each predictive model of the decision's version with its score: `None`
/// when its attribute is sensitive (not logged), `Some(None)` when the
/// score was missing. The writer works the score out again from the
/// logged context, as the decision did (the same inputs and code give
/// the same bits), so that a decision pays nothing to log it.
fn model_scores(
    item: &DecisionItem,
) -> impl Iterator<Item = (&crate::ruleset::model::Model, Option<Option<f64>>)> {
    let rules = item.decision.ruleset();
    let schema = &rules.schema;
    let ctx = (!rules.models.is_empty()).then(|| item.context.bound_to(schema));
    rules.models.iter().map(move |m| {
        let sensitive = schema.attrs[m.slot as usize].sensitive;
        let score = ctx.as_ref().and_then(|c| m.score(c));
        (m, (!sensitive).then_some(score))
    })
}

/// A decision record's `models`.
struct ModelsJson<'a>(&'a DecisionItem);

impl Serialize for ModelsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for (m, score) in model_scores(self.0) {
            seq.serialize_element(&ModelJson {
                name: &m.name,
                hash: &m.hash,
                score,
            })?;
        }
        seq.end()
    }
}

/// One model of a record's `models`: its score left out when `None`.
#[derive(Serialize)]
struct ModelJson<'a> {
    name: &'a str,
    hash: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<Option<f64>>,
}

/// The context as [`ContextJson`] serialises it. `keys` are its
/// attributes' `"NAME":`, if the version's schema is the context's.
fn write_context(buf: &mut Vec<u8>, ctx: &Context, masking: &Masking, keys: Option<&Texts>) {
    buf.push(b'{');
    let mut first = true;
    for (attr, slot) in given(ctx) {
        let masked = match (attr.sensitive, masking) {
            (false, _) => None,
            // The same mask whatever the value.
            (true, Masking::Fixed) => Some(std::borrow::Cow::Borrowed("***")),
            (true, _) => {
                let Some(m) = masked_value(ctx, slot, masking) else {
                    continue;
                };
                Some(std::borrow::Cow::Owned(m))
            }
        };
        if !first {
            buf.push(b',');
        }
        first = false;
        match keys {
            Some(keys) => buf.extend_from_slice(keys.bytes(slot.into())),
            None => {
                str_json(buf, &attr.name);
                buf.push(b':');
            }
        }
        if let Some(m) = masked {
            str_json(buf, &m);
            continue;
        }
        let (value, texts, set_items) = ctx.raw(slot);
        match *value {
            Slot::Missing => buf.extend_from_slice(b"null"),
            Slot::Int(v) => int_json(buf, v),
            Slot::Float(v) => f64_json(buf, v),
            Slot::Bool(v) => buf.extend_from_slice(if v { b"true" } else { b"false" }),
            Slot::Str(_, t) => str_json(buf, texts.get(t)),
            Slot::Set(start, len, _) => {
                buf.push(b'[');
                for (i, &(_, t)) in set_items[start as usize..(start + len) as usize]
                    .iter()
                    .enumerate()
                {
                    if i > 0 {
                        buf.push(b',');
                    }
                    str_json(buf, texts.get(t));
                }
                buf.push(b']');
            }
            Slot::Time(t) => timestamp_json(buf, Timestamp(t)),
        }
    }
    buf.push(b'}');
}

/// A timestamp as a JSON string (RFC 3339). Consecutive records mostly
/// share their second: the last one formatted is kept.
fn timestamp_json(buf: &mut Vec<u8>, t: Timestamp) {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, Vec<u8>)> =
            const { std::cell::RefCell::new((i64::MIN, Vec::new())) };
    }
    LAST.with_borrow_mut(|(at, text)| {
        if *at != t.0 || text.is_empty() {
            text.clear();
            match t.rfc3339() {
                Some(digits) => {
                    text.push(b'"');
                    text.extend_from_slice(&digits);
                    text.push(b'"');
                }
                None => str_json(text, &t.to_string()),
            }
            *at = t.0;
        }
        buf.extend_from_slice(text);
    });
}

/// A JSON string. Most strings here (ids, names, attribute values) need
/// no escaping: they are copied as they are after one scan.
fn str_json(buf: &mut Vec<u8>, s: &str) {
    if plain(s.as_bytes()) {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    }
}

/// Whether JSON (as serde_json writes it) escapes none of these bytes: no
/// control character, quote or backslash. Eight bytes at a time.
fn plain(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of the result is set where `x` has a byte
    // below `n` (exact for n <= 0x80; bytes >= 0x80 never count).
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * n as u64) & !x & HIGH;
    let word = |x: u64| {
        below(x, 0x20) | below(x ^ (ONES * b'"' as u64), 1) | below(x ^ (ONES * b'\\' as u64), 1)
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut found = 0;
    for c in &mut chunks {
        found |= word(u64::from_le_bytes(c.try_into().unwrap_or_default()));
    }
    let rest = chunks.remainder();
    let mut last = [b' '; 8];
    last[..rest.len()].copy_from_slice(rest);
    found |= word(u64::from_le_bytes(last));
    found == 0
}

/// An integer as JSON (as serde_json writes it: it uses `itoa` too).
fn int_json(buf: &mut Vec<u8>, v: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A float as JSON: the shortest text that reads back as the same float,
/// or `null` when it is not finite (as serde_json writes it: it uses
/// `zmij` too).
fn f64_json(buf: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        buf.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        buf.extend_from_slice(b"null");
    }
}

/// Formatted scores, keyed by action and field: scores mostly repeat from
/// one decision to the next (a starting propensity, a fixed value or
/// lever), and formatting a float costs about a hundred instructions. An
/// entry is keyed by the float's bits, so it is exact whatever the action
/// and version. Per action too, the whole entry after its rank ([`Tail`]).
struct ScoreMemo(Vec<MemoEntry>, Vec<Tail>);

/// A ranked candidate's entry after its rank, keyed by its scores' bits
/// and whether it was chosen: on catalogs whose scores do not depend on
/// the customer, each action's is the same from record to record.
#[derive(Clone, Default)]
struct Tail {
    key: [u64; SCORES],
    chosen: bool,
    text: Vec<u8>,
}

#[derive(Clone, Copy)]
struct MemoEntry {
    bits: u64,
    len: u8,
    text: [u8; 31],
}

/// The memoised scores of a ranked candidate: P, C, V, L and priority.
const SCORES: usize = 5;

impl ScoreMemo {
    /// Entries per field; actions past it share entries (still exact).
    const ACTIONS: usize = 1024;

    /// Run `f` with this thread's memo (the writer's).
    fn with<R>(f: impl FnOnce(&mut ScoreMemo) -> R) -> R {
        thread_local! {
            static MEMO: std::cell::RefCell<ScoreMemo> =
                const { std::cell::RefCell::new(ScoreMemo(Vec::new(), Vec::new())) };
        }
        MEMO.with_borrow_mut(|m| {
            if m.0.is_empty() {
                m.0.resize(
                    Self::ACTIONS * SCORES,
                    MemoEntry {
                        bits: 0,
                        len: 0,
                        text: [0; 31],
                    },
                );
                m.1.resize(Self::ACTIONS, Tail::default());
            }
            f(m)
        })
    }

    /// Write score `field` of `action`, `v`, as JSON.
    #[inline]
    fn write(&mut self, buf: &mut Vec<u8>, action: u32, field: usize, v: f64) {
        let e = &mut self.0[(action as usize % Self::ACTIONS) * SCORES + field];
        if e.len != 0 && e.bits == v.to_bits() {
            // A fixed-size copy (no call), then cut to the text.
            let end = buf.len() + e.len as usize;
            buf.extend_from_slice(&e.text);
            buf.truncate(end);
            return;
        }
        let start = buf.len();
        f64_json(buf, v);
        let text = &buf[start..];
        if text.len() <= e.text.len() {
            e.text[..text.len()].copy_from_slice(text);
            e.len = text.len() as u8;
            e.bits = v.to_bits();
        }
    }
}

/// A ranked candidate; `start` is its action's `{"action":ID,"rank":`.
fn write_ranked(
    buf: &mut Vec<u8>,
    memo: &mut ScoreMemo,
    start: &[u8],
    rank: usize,
    c: &crate::decide::decision::Scored,
    chosen: bool,
) {
    buf.extend_from_slice(start);
    int_json(buf, rank);
    let key = [
        c.propensity.to_bits(),
        c.context_weight.to_bits(),
        c.value.to_bits(),
        c.lever.to_bits(),
        c.priority.to_bits(),
    ];
    let i = c.action as usize % ScoreMemo::ACTIONS;
    let tail = &memo.1[i];
    if !tail.text.is_empty() && tail.key == key && tail.chosen == chosen {
        buf.extend_from_slice(&tail.text);
        return;
    }
    let from = buf.len();
    buf.extend_from_slice(b",\"propensity\":");
    memo.write(buf, c.action, 0, c.propensity);
    buf.extend_from_slice(b",\"context_weight\":");
    memo.write(buf, c.action, 1, c.context_weight);
    buf.extend_from_slice(b",\"value\":");
    memo.write(buf, c.action, 2, c.value);
    buf.extend_from_slice(b",\"lever\":");
    memo.write(buf, c.action, 3, c.lever);
    buf.extend_from_slice(b",\"priority\":");
    memo.write(buf, c.action, 4, c.priority);
    buf.extend_from_slice(if chosen {
        b",\"chosen\":true}"
    } else {
        b",\"chosen\":false}"
    });
    let tail = &mut memo.1[i];
    tail.key = key;
    tail.chosen = chosen;
    tail.text.clear();
    tail.text.extend_from_slice(&buf[from..]);
}

/// What [`Chosen`] serialises.
fn write_chosen(item: &DecisionItem, buf: &mut Vec<u8>) {
    let d = &item.decision;
    let texts = log_texts(d.ruleset());
    buf.push(b'[');
    ScoreMemo::with(|memo| {
        for (i, c) in d.chosen.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            write_ranked(buf, memo, texts.ranked(c.action), i + 1, c, true);
        }
    });
    buf.push(b']');
}

thread_local! {
    /// The writer's buffers for sorting a decision's survivors.
    static SORTED: std::cell::RefCell<(Vec<crate::decide::decision::Scored>, Vec<u64>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// What [`Candidates`] serialises.
fn write_candidates(item: &DecisionItem, buf: &mut Vec<u8>) {
    let d = &item.decision;
    let rules = d.ruleset();
    let texts = log_texts(rules);
    let rebound;
    let ctx = if item.context.schema.fingerprint == rules.schema.fingerprint {
        &item.context
    } else {
        rebound = item.context.rebind(&rules.schema);
        &rebound
    };
    let ch = &rules.channels[d.channel as usize];
    let env = Env {
        ctx,
        now: d.timestamp.0,
        channel: (ch.sym, &ch.name),
    };
    buf.push(b'[');
    let mut first = true;
    ScoreMemo::with(|memo| {
        // Unsorted survivors are sorted here, into this thread's buffers:
        // the decision is left as it came (its memory is the deciding
        // thread's, which frees it).
        SORTED.with_borrow_mut(|(sorted, keys)| {
            let ranked: &[crate::decide::decision::Scored] = if d.ranked_unsorted {
                crate::decide::selection::sort_into(&d.ranked, sorted, keys);
                sorted
            } else {
                d.ranked_in_order()
            };
            for (i, c) in ranked.iter().enumerate() {
                if !first {
                    buf.push(b',');
                }
                first = false;
                let chosen = d.chosen.iter().any(|x| x.action == c.action);
                write_ranked(buf, memo, texts.ranked(c.action), i + 1, c, chosen);
            }
        });
    });
    // `stages` lists removed candidates apart (`write_removed_by_stage`).
    let removals = match item.detail {
        super::LogDetail::Stages => None,
        _ => Some(d.removals()),
    };
    for r in removals.into_iter().flatten() {
        let r = &r;
        if !first {
            buf.push(b',');
        }
        first = false;
        let (condition, reason) = removed_detail(rules, texts, &d.notes, &env, r);
        if let Some(start) = texts.removed(rules, r) {
            buf.extend_from_slice(start);
            // `removed` gives a start only to entries with a condition.
            buf.extend_from_slice(texts.cond(r.cond.unwrap_or_default()));
            if let Some(reason) = reason {
                buf.extend_from_slice(b",\"reason\":");
                reason.write(buf, rules);
            }
            buf.push(b'}');
            continue;
        }
        buf.extend_from_slice(b"{\"action\":");
        buf.extend_from_slice(texts.id(r.action));
        // Stage and level names are identifiers: nothing to escape.
        buf.extend_from_slice(b",\"stage\":\"");
        buf.extend_from_slice(r.stage.as_str().as_bytes());
        buf.extend_from_slice(b"\",\"level\":\"");
        buf.extend_from_slice(r.level.as_str().as_bytes());
        buf.push(b'"');
        match (r.cond, condition) {
            (Some(c), _) => {
                buf.extend_from_slice(b",\"condition\":");
                buf.extend_from_slice(texts.cond(c));
            }
            (None, Some(c)) => {
                buf.extend_from_slice(b",\"condition\":");
                str_json(buf, c);
            }
            (None, None) => {}
        }
        if let Some(reason) = reason {
            buf.extend_from_slice(b",\"reason\":");
            reason.write(buf, rules);
        }
        buf.push(b'}');
    }
    buf.push(b']');
}

/// The removed candidates as `{"STAGE":[ACTION,...],...}`: stages in
/// funnel order, each with the actions it removed in the order the
/// decision records them; stages that removed nothing are left out.
fn write_removed_by_stage(
    d: &crate::decide::decision::Decision,
    texts: &LogTexts,
    buf: &mut Vec<u8>,
) {
    use crate::ruleset::Stage;
    // Each removal as `stage << 32 | action`: on the stack for the usual
    // few, on the heap past them.
    let mut stack = [0u64; 256];
    let mut heap = Vec::new();
    let mut n = 0;
    let mut stages = 0u32;
    for r in d.removals() {
        stages |= 1 << r.stage as u32;
        let w = (r.stage as u64) << 32 | u64::from(r.action);
        if n < stack.len() {
            stack[n] = w;
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&stack);
            }
            heap.push(w);
        }
        n += 1;
    }
    let removed: &[u64] = if n <= stack.len() { &stack[..n] } else { &heap };
    buf.push(b'{');
    // A pass per stage that removed any (there are few candidates and
    // fewer stages: cheaper than sorting).
    for (i, stage) in Stage::ALL
        .into_iter()
        .filter(|&s| stages & (1 << s as u32) != 0)
        .enumerate()
    {
        if i > 0 {
            buf.push(b',');
        }
        // Stage names are identifiers: nothing to escape.
        buf.push(b'"');
        buf.extend_from_slice(stage.as_str().as_bytes());
        buf.extend_from_slice(b"\":[");
        let of_stage = removed
            .iter()
            .filter(|&&w| (w >> 32) as u32 == stage as u32);
        for (j, &w) in of_stage.enumerate() {
            if j > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(texts.id(w as u32));
        }
        buf.push(b']');
    }
    buf.push(b'}');
}

/// Why a removed candidate's condition did not hold, when it says more
/// than that it was false.
enum Reason<'a> {
    /// The strategy's reason, or the contact policy, limit or constraint.
    Note(&'a str),
    /// The condition could not be evaluated.
    Error(EvalError),
}

impl Reason<'_> {
    /// As a JSON string, as [`removed_detail_reference`] gives its text.
    fn write(&self, buf: &mut Vec<u8>, rules: &crate::ruleset::RuleSet) {
        match *self {
            Reason::Note(n) => str_json(buf, n),
            Reason::Error(EvalError::Missing(slot)) => {
                let name = &rules.schema.attrs[slot as usize].name;
                if plain(name.as_bytes()) {
                    buf.extend_from_slice(b"\"missing attribute `");
                    buf.extend_from_slice(name.as_bytes());
                    buf.extend_from_slice(b"`\"");
                } else {
                    str_json(buf, &format!("missing attribute `{name}`"));
                }
            }
            Reason::Error(EvalError::Overflow) => buf.extend_from_slice(b"\"integer overflow\""),
            Reason::Error(EvalError::DivisionByZero) => {
                buf.extend_from_slice(b"\"division by zero\"")
            }
        }
    }
}

/// A removed candidate's condition text and reason. A failed engagement
/// condition is evaluated again only if it can have failed to evaluate: it
/// reads a missing attribute, or has an operation that can fail
/// (`LogTexts::total`); then as explanations do
/// ([`crate::expr::ir::Test::error`]: a flat test can only have lacked its
/// attribute). [`removed_detail_reference`] evaluates every condition
/// again, and the unit tests hold every record to it.
fn removed_detail<'a>(
    rules: &'a crate::ruleset::RuleSet,
    texts: &LogTexts,
    notes: &'a [std::sync::Arc<str>],
    env: &Env<'_>,
    r: &crate::decide::decision::Removed,
) -> (Option<&'a str>, Option<Reason<'a>>) {
    let (condition, error) = match r.cond {
        Some(c) => (
            Some(&*rules.conds[c as usize].text),
            r.error.or_else(|| match &texts.total[c as usize] {
                // Every slot it reads is there: it was false, not failed.
                Some(reads)
                    if reads
                        .iter()
                        .all(|&s| env.ctx.slots[s as usize] != Slot::Missing) =>
                {
                    None
                }
                _ => rules.tests.get(c).error(env, &rules.conds),
            }),
        ),
        None => match &rules.actions[r.action as usize].value {
            crate::ruleset::ValueFn::Expr(ir, text, _)
                if r.stage == crate::ruleset::Stage::Value =>
            {
                (Some(&**text), r.error.or_else(|| ir.eval(*env).err()))
            }
            _ => (None, None),
        },
    };
    let reason = match (rules.removal_note(r, notes), error) {
        (Some(n), _) => Some(Reason::Note(n)),
        (None, Some(e)) => Some(Reason::Error(e)),
        (None, None) => None,
    };
    (condition, reason)
}

/// A removed candidate's condition text and reason, as the log gives them:
/// the reference for [`removed_detail`].
fn removed_detail_reference<'a>(
    rules: &'a crate::ruleset::RuleSet,
    notes: &'a [std::sync::Arc<str>],
    env: Env<'_>,
    r: &crate::decide::decision::Removed,
) -> (Option<&'a str>, Option<std::borrow::Cow<'a, str>>) {
    let a = &rules.actions[r.action as usize];
    let (condition, error) = match r.cond {
        Some(c) => {
            let cond = &rules.conds[c as usize];
            (
                Some(&*cond.text),
                r.error.or_else(|| cond.ir.eval(env).err()),
            )
        }
        None => match &a.value {
            crate::ruleset::ValueFn::Expr(ir, text, _)
                if r.stage == crate::ruleset::Stage::Value =>
            {
                (Some(&**text), r.error.or_else(|| ir.eval(env).err()))
            }
            _ => (None, None),
        },
    };
    let reason = match (rules.removal_note(r, notes), error) {
        (Some(n), _) => Some(std::borrow::Cow::Borrowed(n)),
        (None, Some(EvalError::Missing(slot))) => Some(std::borrow::Cow::Owned(format!(
            "missing attribute `{}`",
            rules.schema.attrs[slot as usize].name
        ))),
        (None, Some(EvalError::Overflow)) => Some("integer overflow".into()),
        (None, Some(EvalError::DivisionByZero)) => Some("division by zero".into()),
        (None, None) => None,
    };
    (condition, reason)
}

/// The mask for a sensitive value.
pub(crate) fn mask(masking: &Masking, value: &str) -> String {
    match masking {
        Masking::Fixed => "***".into(),
        Masking::KeyedHash(key) => {
            use hmac::{Hmac, Mac};
            let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
                return "***".into();
            };
            mac.update(value.as_bytes());
            let tag = mac.finalize().into_bytes();
            let hex: String = tag[..16].iter().map(|b| format!("{b:02x}")).collect();
            format!("hmac:{hex}")
        }
    }
}

/// Which fields of a decision record to serialise.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    /// All of them (the reference for the hand-written record).
    #[cfg_attr(not(test), allow(dead_code))]
    All,
    /// Only the diagnostics and the hooks that timed out (the
    /// hand-written record leaves them to serde).
    Rare,
}

struct DecisionRecord<'a> {
    item: &'a DecisionItem,
    masking: &'a Masking,
    part: Part,
}

impl Serialize for DecisionRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let it = self.item;
        let d = &it.decision;
        let rules = d.ruleset();
        let mut m = s.serialize_map(None)?;
        let all = self.part == Part::All;
        if all {
            m.serialize_entry("v", &FORMAT_VERSION)?;
            m.serialize_entry("kind", "decision")?;
            m.serialize_entry("decision_id", &d.id.to_string())?;
            m.serialize_entry("timestamp", &d.timestamp.to_string())?;
            m.serialize_entry(
                "ruleset",
                &RulesetRef {
                    name: rules.name(),
                    version: d.version(),
                    hash: rules.hash(),
                },
            )?;
            m.serialize_entry("customer_id", &it.customer_id)?;
            m.serialize_entry("channel", d.channel())?;
            if let Some(e) = &d.version.rules.experiment {
                m.serialize_entry("experiment", &e.name)?;
            }
            m.serialize_entry("arm", d.arm.as_str())?;
            m.serialize_entry("seed", &d.seed)?;
            m.serialize_entry("limit", &it.limit)?;
            m.serialize_entry(
                "context",
                &ContextJson {
                    ctx: &it.context,
                    masking: self.masking,
                },
            )?;
            m.serialize_entry("masked", &MaskedNames(&it.context))?;
            if !rules.models.is_empty() {
                m.serialize_entry("models", &ModelsJson(it))?;
            }
            m.serialize_entry("detail", &it.detail)?;
        }
        if all {
            if it.detail == super::LogDetail::Chosen {
                m.serialize_entry("candidates", &Chosen(it))?;
            } else {
                m.serialize_entry("candidates", &Candidates(it))?;
            }
            if it.detail == super::LogDetail::Stages {
                m.serialize_entry("removed", &RemovedByStage(it))?;
            }
            m.serialize_entry("actions", &d.action_ids())?;
        }
        if let Some(p) = d.selection_probability.filter(|_| all) {
            m.serialize_entry("selection_probability", &p)?;
        }
        // What engine state (history, counters, learning) contributed: a
        // replay cannot recompute it from the context.
        if all && !d.blocked.is_empty() {
            let blocked: Vec<(&str, &str, &str)> = d
                .blocked
                .iter()
                .map(|b| {
                    (
                        &*rules.actions[b.action as usize].id,
                        b.stage.as_str(),
                        &**rules.blocker_name(b),
                    )
                })
                .collect();
            m.serialize_entry("blocked", &blocked)?;
        }
        if let Some(model) = d.model.as_ref().filter(|_| all) {
            m.serialize_entry(
                "model",
                &serde_json::json!({"id": format!("{:016x}", model.id), "snapshot": format!("{:016x}", model.snapshot)}),
            )?;
        }
        if all && !d.evidence.is_empty() {
            let evidence: Vec<serde_json::Value> = d
                .evidence
                .iter()
                .enumerate()
                .map(|(i, &(a, s, f))| {
                    let id = &*rules.actions[a as usize].id;
                    match d.model_evidence.get(i) {
                        Some(&(lr, p)) => serde_json::json!([id, s, f, lr, p]),
                        None => serde_json::json!([id, s, f]),
                    }
                })
                .collect();
            m.serialize_entry("evidence", &evidence)?;
        }
        if !d.diagnostics.is_empty() {
            let diags: Vec<String> = d.diagnostics.iter().map(ToString::to_string).collect();
            m.serialize_entry("diagnostics", &diags)?;
            // Whether a wall-clock budget runs out depends on the machine,
            // not the inputs: the replay needs to know which hooks it stopped.
            let timed_out: Vec<&str> = d
                .diagnostics
                .iter()
                .filter(|x| x.timed_out())
                .map(|x| x.hook)
                .collect();
            if !timed_out.is_empty() {
                m.serialize_entry("timed_out", &timed_out)?;
            }
        }
        if all {
            m.serialize_entry("elapsed_ns", &d.elapsed_ns)?;
        }
        m.end()
    }
}

/// The context as given by the caller (defaults are re-applied on replay),
/// with sensitive attributes masked. Serialized straight from the slots:
/// no map or value tree is built per record.
struct ContextJson<'a> {
    ctx: &'a Context,
    masking: &'a Masking,
}

/// The attributes the caller gave, in schema order, with their slots.
fn given(ctx: &Context) -> impl Iterator<Item = (&crate::ruleset::Attribute, u16)> {
    ctx.schema
        .attrs
        .iter()
        .enumerate()
        .filter(|(i, _)| ctx.given[*i])
        .filter(|(i, _)| !matches!(ctx.raw(*i as u16).0, Slot::Missing))
        .map(|(i, a)| (a, i as u16))
}

impl Serialize for ContextJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (attr, slot) in given(self.ctx) {
            if attr.sensitive {
                let Some(masked) = masked_value(self.ctx, slot, self.masking) else {
                    continue;
                };
                m.serialize_entry(&*attr.name, &masked)?;
            } else {
                m.serialize_entry(&*attr.name, &SlotJson(self.ctx.raw(slot)))?;
            }
        }
        m.end()
    }
}

/// A sensitive attribute's mask: of its value's JSON text (a string's own
/// text). Rare, so built through `value_json`.
fn masked_value(ctx: &Context, slot: u16, masking: &Masking) -> Option<String> {
    let text = match value_json(&ctx.value(slot)?) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    Some(mask(masking, &text))
}

/// One slot's value as JSON, the same as `value_json` gives.
struct SlotJson<'a>(crate::context::RawSlot<'a>);

impl Serialize for SlotJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (slot, texts, set_items) = self.0;
        match *slot {
            Slot::Missing => s.serialize_unit(),
            Slot::Int(v) => s.serialize_i64(v),
            Slot::Float(v) if v.is_finite() => s.serialize_f64(v),
            Slot::Float(_) => s.serialize_unit(),
            Slot::Bool(v) => s.serialize_bool(v),
            Slot::Str(_, t) => s.serialize_str(texts.get(t)),
            Slot::Set(start, len, _) => {
                let items = &set_items[start as usize..(start + len) as usize];
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for &(_, t) in items {
                    seq.serialize_element(texts.get(t))?;
                }
                seq.end()
            }
            Slot::Time(t) => s.collect_str(&Timestamp(t)),
        }
    }
}

/// The names of the attributes that were masked.
struct MaskedNames<'a>(&'a Context);

impl Serialize for MaskedNames<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            given(self.0)
                .filter(|(a, _)| a.sensitive)
                .map(|(a, _)| &*a.name),
        )
    }
}

pub(crate) fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::StringSet(items) => serde_json::Value::Array(
            items
                .iter()
                .cloned()
                .map(serde_json::Value::String)
                .collect(),
        ),
        Value::Timestamp(t) => serde_json::Value::String(t.to_string()),
    }
}

struct Candidates<'a>(&'a DecisionItem);

/// A ranked candidate in the log: its scores and whether it was chosen.
struct RankedJson<'a> {
    action: &'a str,
    rank: usize,
    scored: &'a crate::decide::decision::Scored,
    chosen: bool,
}

impl Serialize for RankedJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.scored;
        let mut m = s.serialize_map(Some(8))?;
        m.serialize_entry("action", self.action)?;
        m.serialize_entry("rank", &self.rank)?;
        m.serialize_entry("propensity", &c.propensity)?;
        m.serialize_entry("context_weight", &c.context_weight)?;
        m.serialize_entry("value", &c.value)?;
        m.serialize_entry("lever", &c.lever)?;
        m.serialize_entry("priority", &c.priority)?;
        m.serialize_entry("chosen", &self.chosen)?;
        m.end()
    }
}

/// A removed candidate in the log: stage, level, condition, reason.
struct RemovedJson<'a> {
    action: &'a str,
    removed: &'a crate::decide::decision::Removed,
    condition: Option<&'a str>,
    reason: Option<std::borrow::Cow<'a, str>>,
}

impl Serialize for RemovedJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("action", self.action)?;
        m.serialize_entry("stage", self.removed.stage.as_str())?;
        m.serialize_entry("level", self.removed.level.as_str())?;
        if let Some(c) = self.condition {
            m.serialize_entry("condition", c)?;
        }
        if let Some(r) = &self.reason {
            m.serialize_entry("reason", r.as_ref())?;
        }
        m.end()
    }
}

impl Serialize for Candidates<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let it = self.0;
        let d = &it.decision;
        let rules = d.ruleset();
        let rebound;
        let ctx = if it.context.schema.fingerprint == rules.schema.fingerprint {
            &it.context
        } else {
            rebound = it.context.rebind(&rules.schema);
            &rebound
        };
        let ch = &rules.channels[d.channel as usize];
        let env = Env {
            ctx,
            now: d.timestamp.0,
            channel: (ch.sym, &ch.name),
        };
        // `stages` lists removed candidates apart (`RemovedByStage`).
        let removals = match it.detail {
            super::LogDetail::Stages => None,
            _ => Some(d.removals()),
        };
        let mut seq = s.serialize_seq(Some(
            d.ranked.len() + removals.as_ref().map_or(0, |r| r.len()),
        ))?;
        for (i, c) in d.ranked_in_order().iter().enumerate() {
            seq.serialize_element(&RankedJson {
                action: &rules.actions[c.action as usize].id,
                rank: i + 1,
                scored: c,
                chosen: d.chosen.iter().any(|x| x.action == c.action),
            })?;
        }
        for r in removals.into_iter().flatten() {
            let a = &rules.actions[r.action as usize];
            let (condition, reason) = removed_detail_reference(rules, &d.notes, env, &r);
            seq.serialize_element(&RemovedJson {
                action: &a.id,
                removed: &r,
                condition,
                reason,
            })?;
        }
        seq.end()
    }
}

/// `stages`' removed candidates: each stage that removed any, in funnel
/// order, with its actions in the order the decision records them.
struct RemovedByStage<'a>(&'a DecisionItem);

impl Serialize for RemovedByStage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = &self.0.decision;
        let rules = d.ruleset();
        let mut by_stage: std::collections::BTreeMap<crate::ruleset::Stage, Vec<&str>> =
            std::collections::BTreeMap::new();
        for r in d.removals() {
            by_stage
                .entry(r.stage)
                .or_default()
                .push(&rules.actions[r.action as usize].id);
        }
        let mut m = s.serialize_map(Some(by_stage.len()))?;
        for (stage, actions) in &by_stage {
            m.serialize_entry(stage.as_str(), actions)?;
        }
        m.end()
    }
}

struct Chosen<'a>(&'a DecisionItem);

impl Serialize for Chosen<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = &self.0.decision;
        let rules = d.ruleset();
        let mut seq = s.serialize_seq(Some(d.chosen.len()))?;
        for (i, c) in d.chosen.iter().enumerate() {
            seq.serialize_element(&RankedJson {
                action: &rules.actions[c.action as usize].id,
                rank: i + 1,
                scored: c,
                chosen: true,
            })?;
        }
        seq.end()
    }
}

struct RulesetRef<'a> {
    name: &'a str,
    version: u64,
    hash: &'a str,
}

impl Serialize for RulesetRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("name", self.name)?;
        m.serialize_entry("version", &self.version)?;
        m.serialize_entry("hash", self.hash)?;
        m.end()
    }
}

struct OutcomeRecord<'a>(&'a OutcomeItem);

impl Serialize for OutcomeRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let o = &self.0.outcome;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("v", &FORMAT_VERSION)?;
        m.serialize_entry("kind", "outcome")?;
        m.serialize_entry("timestamp", &o.timestamp.unwrap_or(self.0.at).to_string())?;
        m.serialize_entry("decision_id", &o.decision_id.map(|d| d.to_string()))?;
        m.serialize_entry("customer_id", &o.customer_id)?;
        m.serialize_entry("action", &o.action)?;
        m.serialize_entry("channel", &o.channel)?;
        m.serialize_entry("outcome", o.kind.as_str())?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        /// The word-at-a-time scan agrees with the byte-by-byte rule at
        /// every length and position, bytes of every kind.
        #[test]
        fn plain_is_the_bytewise_rule(bytes in proptest::collection::vec(
            proptest::prop_oneof![
                0u8..=0xff,
                proptest::sample::select(vec![0u8, 0x1f, 0x20, b'"', b'\\', 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xff, 0xa2, 0xdc]),
            ],
            0..40,
        )) {
            let expected = bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
            proptest::prop_assert_eq!(super::plain(&bytes), expected);
        }

        /// The hand-made RFC 3339 text is `Display`'s, wherever `Display`
        /// gives one (years 0 to 9999); the rest falls back to it.
        #[test]
        fn rfc3339_is_display(t in proptest::prop_oneof![
            -70_000_000_000i64..260_000_000_000,
            proptest::num::i64::ANY,
            proptest::sample::select(vec![0i64, -1, -62_167_219_200, -62_167_219_201, 253_402_300_799, 253_402_300_800, 951_782_400]),
        ]) {
            let display = crate::Timestamp(t).to_string();
            match crate::Timestamp(t).rfc3339() {
                Some(text) => proptest::prop_assert_eq!(std::str::from_utf8(&text).unwrap(), display),
                None => proptest::prop_assert!(!display.contains('T'), "{}", display),
            }
        }

        /// The hand-made hex id is `Display`'s.
        #[test]
        fn hex_id_is_display(id in proptest::num::u128::ANY) {
            let id = crate::decide::decision::DecisionId(id);
            let hex = id.hex();
            proptest::prop_assert_eq!(std::str::from_utf8(&hex).unwrap(), id.to_string());
        }

        /// The memo gives what formatting gives, whatever repeats.
        #[test]
        fn memoised_scores_are_formatted_scores(
            scores in proptest::collection::vec((proptest::sample::select(vec![0u32, 1, 1024, 1025, 2999]), 0usize..2, proptest::prop_oneof![
                proptest::num::f64::ANY,
                proptest::sample::select(vec![0.0, -0.0, 1.0, 0.05, 1e308, f64::NAN, f64::INFINITY]),
            ]), 1..64)
        ) {
            for (action, field, v) in scores {
                let mut got = b"x".to_vec();
                super::ScoreMemo::with(|m| m.write(&mut got, action, field, v));
                proptest::prop_assert_eq!(got.remove(0), b'x');
                proptest::prop_assert_eq!(got, serde_json::to_vec(&v).unwrap());
            }
        }
    }

    use crate::audit::{LogDetail, LogOptions, Masking, MemorySink};
    use crate::{DecisionRequest, Engine, EngineConfig, Outcome, OutcomeKind, RuleSet, Timestamp};

    /// An engine deciding on `rules` whose log keeps its records in memory
    /// (and, under `cfg(test)`, checks each against the reference).
    fn logging(rules: RuleSet, options: LogOptions) -> (Engine, MemorySink) {
        let sink = MemorySink::new();
        let engine = Engine::with_sink(
            rules,
            EngineConfig::default(),
            Box::new(sink.clone()),
            options,
        )
        .unwrap();
        (engine, sink)
    }

    /// The record's rarer fields, also compared with the `Serialize` one:
    /// an experiment (its name, the challenger and control arms, the
    /// control's logged seed), epsilon-greedy's selection probability,
    /// timestamps, sets and attribute values that need escaping.
    #[test]
    fn hand_written_records_equal_the_serialized_ones_in_experiments() {
        let main = std::fs::read_to_string("tests/fixtures/mini/ruleset.toml").unwrap();
        let actions = std::fs::read_to_string("tests/fixtures/mini/actions/actions.toml").unwrap();
        let learning = "\n[learning]\nmode = \"epsilon_greedy\"\nepsilon = 0.5\n";
        let challenger = crate::RuleSource::new()
            .file("ruleset.toml", format!("{main}{learning}"))
            .file("actions/actions.toml", actions.clone());
        let experiment = "\n[experiment]\nname = \"e\\\"1\"\nsalt = \"s\"\nchallenger = \"mini\"\nchallenger_share = 0.3\ncontrol_share = 0.3\ncontrol = \"random_eligible\"\n";
        let source = crate::RuleSource::new()
            .file("ruleset.toml", format!("{main}{experiment}"))
            .file("actions/actions.toml", actions)
            .challenger(challenger);
        let (engine, sink) = logging(RuleSet::compile(&source).unwrap(), LogOptions::default());
        let reasons = ["billing", "cancel\\\"la\\\\tion", "\\u0001x", "caf\u{e9}"];
        for i in 0..200 {
            let req = format!(
                r#"{{"customer_id":"C{i}","channel":"call_center","now":"2026-11-23T10:00:0{}Z","context":{{"age":{},"income":{}.5,"segment":"gold","products":["A{i}","B"],"call_reason":"{}","last_contact":"2026-11-20T09:00:00Z"}}}}"#,
                i % 10,
                20 + i % 50,
                i * 1000,
                reasons[i % reasons.len()],
            );
            engine.decide_json(&req).unwrap();
        }
        engine.flush().unwrap();
        let got = sink.records();
        assert_eq!(got.len(), 200);
        for r in &got {
            assert!(!r.contains(r#""kind":"error""#), "{r}");
        }
        for (what, needle) in [
            ("the experiment", r#""experiment":"e\"1""#),
            ("the challenger arm", r#""arm":"challenger""#),
            ("the control arm", r#""arm":"control""#),
            ("a seed", r#""seed":1"#),
            ("a selection probability", r#""selection_probability":0.5"#),
            (
                "a timestamp attribute",
                r#""last_contact":"2026-11-20T09:00:00Z""#,
            ),
            ("an escaped value", r#""call_reason":"cancel\"la\\tion""#),
        ] {
            assert!(
                got.iter().any(|r| r.contains(needle)),
                "no record has {what} ({needle})"
            );
        }
        assert!(
            got.iter().any(|r| !r.contains("selection_probability")),
            "no record without the rare fields"
        );
    }

    /// Records of a version with predictive models (tests/fixtures/churn,
    /// plus a second model whose attribute is sensitive): `models` lists
    /// each with its version and score (null when missing; left out when
    /// sensitive), as the reference writes it.
    #[test]
    fn hand_written_records_equal_the_serialized_ones_with_models() {
        let source = crate::RuleSource::from_dir("tests/fixtures/churn").unwrap();
        let main = std::fs::read_to_string("tests/fixtures/churn/ruleset.toml").unwrap();
        let source = source
            .file(
                "ruleset.toml",
                main.replace(
                    "[channels]",
                    "secret = { type = \"float\", model = \"models/secret.toml\", sensitive = true }\n[channels]",
                ),
            )
            .file(
                "models/secret.toml",
                "link = \"identity\"\nintercept = 1.5\n[inputs.monthly_bill]\ncoefficient = 2.0\n",
            );
        let (engine, sink) = logging(RuleSet::compile(&source).unwrap(), LogOptions::default());
        for i in 0..40 {
            let tenure = if i % 4 == 0 {
                "null".to_string()
            } else {
                i.to_string()
            };
            let req = format!(
                r#"{{"customer_id":"C{i}","channel":"web","context":{{"tenure_months":{tenure},"monthly_bill":{}.25,"contract":"monthly","region":"north","has_tv":true,"complaints":{}}}}}"#,
                i * 3,
                i % 5
            );
            engine.decide_json(&req).unwrap();
        }
        engine.flush().unwrap();
        let got = sink.records();
        assert_eq!(got.len(), 40);
        for r in &got {
            assert!(!r.contains(r#""kind":"error""#), "{r}");
            let record: serde_json::Value = serde_json::from_str(r).unwrap();
            let secret = &record["models"][1];
            assert_eq!(secret["name"], "secret", "{r}");
            assert!(
                secret["hash"].is_string() && secret.get("score").is_none(),
                "{r}"
            );
        }
        assert!(got.iter().any(|r| r.contains(r#""score":null}"#)));
        assert!(got.iter().any(|r| r.contains(r#""score":0."#)));
    }

    /// A decision whose strategy failed (its operations budget cut to
    /// nothing) has diagnostics, learning evidence and selection
    /// probabilities in one record, each once, as the reference writes it.
    #[test]
    fn records_with_diagnostics_have_each_field_once() {
        let source = crate::RuleSource::from_dir("rules/retail_bank").unwrap();
        let main = std::fs::read_to_string("rules/retail_bank/ruleset.toml").unwrap();
        assert!(main.contains("max_operations = 20000"));
        let source = source.file(
            "ruleset.toml",
            main.replace("max_operations = 20000", "max_operations = 5"),
        );
        let (engine, sink) = logging(RuleSet::compile(&source).unwrap(), LogOptions::default());
        let text = std::fs::read_to_string("rules/retail_bank/customers.jsonl").unwrap();
        for line in text.lines().take(20) {
            let c: serde_json::Value = serde_json::from_str(line).unwrap();
            let req = serde_json::json!({
                "customer_id": c["customer_id"],
                "channel": "call_center",
                "context": c["context"],
                "now": "2026-11-23T10:00:00Z",
            });
            engine.decide_json(&req.to_string()).unwrap();
        }
        engine.flush().unwrap();
        let got = sink.records();
        assert_eq!(got.len(), 20);
        for r in &got {
            assert!(!r.contains(r#""kind":"error""#), "{r}");
            assert!(r.contains(r#""diagnostics":"#), "no diagnostics: {r}");
            for key in [
                "evidence",
                "diagnostics",
                "selection_probability",
                "elapsed_ns",
            ] {
                assert!(
                    r.matches(&format!("\"{key}\":")).count() <= 1,
                    "{key} twice: {r}"
                );
            }
        }
        assert!(got.iter().any(|r| r.contains(r#""evidence":"#)));
    }

    /// Every decision record written by hand equals the `Serialize` one:
    /// under `cfg(test)`, `write_record` writes an error record when they
    /// differ. Both rule sets, every channel, all four detail levels,
    /// both maskings, and engine state (outcomes that make contact
    /// policies block candidates).
    #[test]
    fn hand_written_records_equal_the_serialized_ones() {
        for dir in ["rules/retail_bank", "rules/telco_care"] {
            for (detail, masking) in [
                (LogDetail::Stages, Masking::KeyedHash(b"k".to_vec())),
                (LogDetail::All, Masking::KeyedHash(b"k".to_vec())),
                (LogDetail::All, Masking::Fixed),
                (LogDetail::Ranked, Masking::KeyedHash(b"k".to_vec())),
                (LogDetail::Chosen, Masking::Fixed),
            ] {
                let (engine, sink) = logging(
                    RuleSet::from_dir(dir).unwrap(),
                    LogOptions {
                        masking,
                        detail,
                        ..LogOptions::default()
                    },
                );
                let channels: Vec<String> = engine
                    .current()
                    .rules()
                    .channel_names()
                    .map(str::to_string)
                    .collect();
                let text = std::fs::read_to_string(format!("{dir}/customers.jsonl")).unwrap();
                let mut records = 0;
                for round in 0..2 {
                    for (i, line) in text.lines().take(60).enumerate() {
                        let c: serde_json::Value = serde_json::from_str(line).unwrap();
                        // Some ids need escaping (the hand-written record
                        // copies strings that do not).
                        let id = c["customer_id"].as_str().unwrap();
                        let id = match i % 8 {
                            0 => format!("{id}\""),
                            1 => format!("{id}\\"),
                            2 => format!("{id}\u{1f}"),
                            3 => format!("{id}\u{e9}\u{7f}"),
                            _ => id.to_string(),
                        };
                        let req = serde_json::json!({
                            "customer_id": id,
                            "channel": channels[i % channels.len()],
                            "context": c["context"],
                            "explain": i % 3 == 0,
                            "now": "2026-11-23T10:00:00Z",
                        });
                        let req =
                            DecisionRequest::from_json(&engine.schema(), &req.to_string()).unwrap();
                        let d = engine.decide(&req).unwrap();
                        records += 1;
                        if round == 0 {
                            if let Some(a) = d.actions().next() {
                                engine
                                    .record_outcome(&Outcome {
                                        decision_id: Some(d.id()),
                                        customer_id: req.customer_id.clone(),
                                        action: a.action().to_string(),
                                        channel: d.channel().to_string(),
                                        kind: OutcomeKind::Accepted,
                                        timestamp: Some(Timestamp(1_795_000_000)),
                                    })
                                    .unwrap();
                                records += 1;
                            }
                        }
                    }
                }
                engine.flush().unwrap();
                let got = sink.records();
                assert_eq!(got.len(), records, "{dir}");
                for r in &got {
                    assert!(!r.contains(r#""kind":"error""#), "{dir} {detail:?}: {r}");
                }
                assert!(
                    got.iter().any(|r| r.contains(r#""blocked""#))
                        || !matches!(detail, LogDetail::All | LogDetail::Stages),
                    "{dir}: no record with blocked candidates"
                );
            }
        }
    }
}
