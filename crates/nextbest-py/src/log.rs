//! The decision log as Arrow tables, read through the core's reader
//! (`nextbest::audit::reader::read_log`: plain and zstd files, damaged
//! lines reported, not fatal).
//!
//! Three tables, each a flat set of columns:
//! - decisions: one row per decision record; the context's attributes
//!   become columns `context.NAME`;
//! - candidates: one row per candidate of each decision: the ranked ones
//!   with their scores, the removed ones with the stage that removed them;
//! - outcomes: one row per outcome record.
//!
//! Column types are inferred from the values (integers, floats, booleans,
//! strings, lists of strings); a column whose values mix kinds holds their
//! JSON text. `timestamp` columns are UTC datetimes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, TimestampSecondBuilder};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, UInt64Array,
};
use arrow_schema::{Field, Schema};
use nextbest::audit::reader::{LogLine, ReadProblems};
use nextbest::{Stage, Timestamp};
use serde_json::Value as J;

/// Rows being collected, column by column.
#[derive(Default)]
struct Frame {
    rows: usize,
    names: Vec<String>,
    index: HashMap<String, usize>,
    columns: Vec<Vec<J>>,
}

impl Frame {
    /// Columns that must exist even in an empty table, in this order.
    fn with_columns(names: &[&str]) -> Frame {
        let mut f = Frame::default();
        for n in names {
            f.column(n);
        }
        f
    }

    fn column(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.names.push(name.to_string());
        self.columns.push(Vec::new());
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    fn new_row(&mut self) {
        self.rows += 1;
    }

    /// Set the current row's `name` (nulls are left out).
    fn set(&mut self, name: &str, value: &J) {
        if value.is_null() || self.rows == 0 {
            return;
        }
        let i = self.column(name);
        let col = &mut self.columns[i];
        col.resize(self.rows - 1, J::Null);
        col.push(value.clone());
    }

    fn finish(mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut fields = Vec::with_capacity(self.names.len());
        let mut arrays = Vec::with_capacity(self.names.len());
        for (name, col) in self.names.iter().zip(self.columns.iter_mut()) {
            col.resize(self.rows, J::Null);
            let (field, array) = column(name, col);
            fields.push(field);
            arrays.push(array);
        }
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(self.rows));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
    }
}

/// The kind of a column, from its values.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Int,
    UInt,
    Float,
    Text,
    TextList,
    Json,
}

fn kind_of(v: &J) -> Option<Kind> {
    Some(match v {
        J::Null => return None,
        J::Bool(_) => Kind::Bool,
        J::Number(n) if n.is_i64() => Kind::Int,
        J::Number(n) if n.is_u64() => Kind::UInt,
        J::Number(_) => Kind::Float,
        J::String(_) => Kind::Text,
        J::Array(a) if a.iter().all(J::is_string) => Kind::TextList,
        _ => Kind::Json,
    })
}

fn unify(a: Kind, b: Kind) -> Kind {
    use Kind::*;
    match (a, b) {
        _ if a == b => a,
        (Int, UInt) | (UInt, Int) => Float,
        (Int | UInt | Float, Int | UInt | Float) => Float,
        _ => Json,
    }
}

fn column(name: &str, values: &[J]) -> (Field, ArrayRef) {
    let kind = values
        .iter()
        .filter_map(kind_of)
        .reduce(unify)
        .unwrap_or(Kind::Text);
    let text = |v: &J| match v {
        J::Null => None,
        J::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    if name == "timestamp" && kind == Kind::Text {
        let mut b = TimestampSecondBuilder::with_capacity(values.len()).with_timezone("UTC");
        let parsed: Vec<Option<i64>> = values
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(|s| Timestamp::parse(s).ok())
                    .map(|t| t.0)
            })
            .collect();
        if parsed
            .iter()
            .zip(values)
            .all(|(p, v)| p.is_some() || v.is_null())
        {
            b.extend(parsed);
            let a = b.finish();
            return (Field::new(name, a.data_type().clone(), true), Arc::new(a));
        }
    }
    let array: ArrayRef = match kind {
        Kind::Bool => Arc::new(values.iter().map(J::as_bool).collect::<BooleanArray>()),
        Kind::Int => Arc::new(values.iter().map(J::as_i64).collect::<Int64Array>()),
        Kind::UInt => Arc::new(values.iter().map(J::as_u64).collect::<UInt64Array>()),
        Kind::Float => Arc::new(values.iter().map(J::as_f64).collect::<Float64Array>()),
        Kind::TextList => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for v in values {
                match v.as_array() {
                    Some(items) => {
                        for it in items {
                            b.values().append_option(it.as_str());
                        }
                        b.append(true);
                    }
                    None => b.append(false),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Text | Kind::Json => {
            let mut b = StringBuilder::with_capacity(values.len(), values.len() * 16);
            b.extend(values.iter().map(text));
            Arc::new(b.finish())
        }
    };
    (Field::new(name, array.data_type().clone(), true), array)
}

/// Which tables to build.
#[derive(Clone, Copy)]
pub enum Which {
    Decisions,
    Candidates,
    Outcomes,
}

const DECISION_COLUMNS: &[&str] = &[
    "decision_id",
    "timestamp",
    "ruleset",
    "version",
    "hash",
    "customer_id",
    "channel",
    "experiment",
    "arm",
    "seed",
    "limit",
    "detail",
    "actions",
    "first_action",
    "selection_probability",
    "elapsed_ns",
    "masked",
];

const CANDIDATE_COLUMNS: &[&str] = &[
    "decision_id",
    "customer_id",
    "channel",
    "action",
    "rank",
    "chosen",
    "stage",
    "level",
    "condition",
    "reason",
    "propensity",
    "context_weight",
    "value",
    "lever",
    "priority",
];

const OUTCOME_COLUMNS: &[&str] = &[
    "decision_id",
    "timestamp",
    "customer_id",
    "action",
    "channel",
    "outcome",
];

/// Read the log files (oldest first) and build the table asked for.
pub fn read(
    paths: &[PathBuf],
    which: Which,
) -> Result<(RecordBatch, ReadProblems), nextbest::Error> {
    let (lines, problems) = nextbest::audit::reader::read_log(paths)?;
    let batch = match which {
        Which::Decisions => decisions(&lines),
        Which::Candidates => candidates(&lines),
        Which::Outcomes => outcomes(&lines),
    }
    .map_err(|e| nextbest::Error::InvalidRequest(format!("building the table: {e}")))?;
    Ok((batch, problems))
}

fn is_decision(l: &LogLine) -> bool {
    l.record["kind"] == "decision"
}

fn decisions(lines: &[LogLine]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut f = Frame::with_columns(DECISION_COLUMNS);
    for l in lines.iter().filter(|l| is_decision(l)) {
        let r = &l.record;
        f.new_row();
        for k in [
            "decision_id",
            "timestamp",
            "customer_id",
            "channel",
            "experiment",
            "arm",
            "seed",
            "limit",
            "detail",
            "actions",
            "selection_probability",
            "elapsed_ns",
            "masked",
        ] {
            f.set(k, &r[k]);
        }
        f.set("ruleset", &r["ruleset"]["name"]);
        f.set("version", &r["ruleset"]["version"]);
        f.set("hash", &r["ruleset"]["hash"]);
        f.set("first_action", &r["actions"][0]);
        if let Some(ctx) = r["context"].as_object() {
            for (k, v) in ctx {
                f.set(&format!("context.{k}"), v);
            }
        }
    }
    f.finish()
}

fn candidates(lines: &[LogLine]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut f = Frame::with_columns(CANDIDATE_COLUMNS);
    for l in lines.iter().filter(|l| is_decision(l)) {
        let r = &l.record;
        let head = |f: &mut Frame| {
            f.new_row();
            f.set("decision_id", &r["decision_id"]);
            f.set("customer_id", &r["customer_id"]);
            f.set("channel", &r["channel"]);
        };
        for c in r["candidates"].as_array().into_iter().flatten() {
            head(&mut f);
            for k in &CANDIDATE_COLUMNS[3..] {
                f.set(k, &c[*k]);
            }
            if c["rank"].is_number() && c["chosen"].is_null() {
                f.set("chosen", &J::Bool(false));
            }
        }
        for (stage, actions) in r["removed"].as_object().into_iter().flatten() {
            for a in actions.as_array().into_iter().flatten() {
                head(&mut f);
                f.set("action", a);
                f.set("chosen", &J::Bool(false));
                f.set("stage", &J::String(stage.clone()));
            }
        }
    }
    f.finish()
}

fn outcomes(lines: &[LogLine]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut f = Frame::with_columns(OUTCOME_COLUMNS);
    for l in lines.iter().filter(|l| l.record["kind"] == "outcome") {
        f.new_row();
        for (k, v) in l.record.as_object().into_iter().flatten() {
            if k != "v" && k != "kind" {
                f.set(k, v);
            }
        }
    }
    f.finish()
}

/// The decision funnel of a log: candidates, removals per stage (in
/// funnel order), ranked and chosen, over every decision whose record
/// lists its removed candidates.
pub struct Funnel {
    pub decisions: usize,
    pub candidates: usize,
    pub removed: Vec<(String, usize)>,
    pub ranked: usize,
    pub chosen: usize,
    /// Decisions logged with a detail that leaves removals out.
    pub without_removals: usize,
}

pub fn funnel(paths: &[PathBuf]) -> Result<(Funnel, ReadProblems), nextbest::Error> {
    let (lines, problems) = nextbest::audit::reader::read_log(paths)?;
    let mut removed: Vec<(String, usize)> = Stage::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    let mut count = |stage: &str| match removed.iter_mut().find(|(s, _)| s == stage) {
        Some((_, n)) => *n += 1,
        None => removed.push((stage.to_string(), 1)),
    };
    let mut f = Funnel {
        decisions: 0,
        candidates: 0,
        removed: Vec::new(),
        ranked: 0,
        chosen: 0,
        without_removals: 0,
    };
    for l in lines.iter().filter(|l| is_decision(l)) {
        let r = &l.record;
        match r["detail"].as_str() {
            Some("stages") | Some("all") => {}
            _ => {
                f.without_removals += 1;
                continue;
            }
        }
        f.decisions += 1;
        for c in r["candidates"].as_array().into_iter().flatten() {
            f.candidates += 1;
            match c["stage"].as_str() {
                Some(stage) => count(stage),
                None => {
                    f.ranked += 1;
                    if c["chosen"] == true {
                        f.chosen += 1;
                    }
                }
            }
        }
        for (stage, actions) in r["removed"].as_object().into_iter().flatten() {
            for _ in actions.as_array().into_iter().flatten() {
                f.candidates += 1;
                count(stage);
            }
        }
    }
    f.removed = removed;
    Ok((f, problems))
}
