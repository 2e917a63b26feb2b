//! Decisions to Arrow: one row per chosen action, built column by column.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{Float64Builder, StringBuilder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use nextbest::Decision;

/// The output's columns: the decision JSON's action fields, with the
/// customer first.
pub fn output_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let text = |n: &str| Field::new(n, DataType::Utf8, false);
            let float = |n: &str| Field::new(n, DataType::Float64, false);
            Arc::new(Schema::new(vec![
                text("customer_id"),
                Field::new("rank", DataType::UInt32, false),
                text("action"),
                text("group"),
                text("issue"),
                text("treatment"),
                float("priority"),
                float("propensity"),
                float("context_weight"),
                float("value"),
                float("lever"),
            ]))
        })
        .clone()
}

/// The output columns of one chunk, being built.
pub(crate) struct Output {
    customer: StringBuilder,
    rank: UInt32Builder,
    action: StringBuilder,
    group: StringBuilder,
    issue: StringBuilder,
    treatment: StringBuilder,
    priority: Float64Builder,
    propensity: Float64Builder,
    context_weight: Float64Builder,
    value: Float64Builder,
    lever: Float64Builder,
}

impl Output {
    /// Room for `rows` output rows.
    pub(crate) fn with_capacity(rows: usize) -> Output {
        let text = || StringBuilder::with_capacity(rows, rows * 12);
        let float = || Float64Builder::with_capacity(rows);
        Output {
            customer: text(),
            rank: UInt32Builder::with_capacity(rows),
            action: text(),
            group: text(),
            issue: text(),
            treatment: StringBuilder::with_capacity(rows, rows * 32),
            priority: float(),
            propensity: float(),
            context_weight: float(),
            value: float(),
            lever: float(),
        }
    }

    /// A row per action `d` chose for `customer`.
    pub(crate) fn push(&mut self, customer: &str, d: &Decision) {
        for a in d.actions() {
            self.customer.append_value(customer);
            self.rank.append_value(a.rank() as u32);
            self.action.append_value(a.action());
            self.group.append_value(a.group());
            self.issue.append_value(a.issue());
            self.treatment.append_value(a.treatment());
            self.priority.append_value(a.priority());
            self.propensity.append_value(a.propensity());
            self.context_weight.append_value(a.context_weight());
            self.value.append_value(a.value());
            self.lever.append_value(a.lever());
        }
    }

    /// The chunk's rows as a record batch of [`output_schema`].
    pub(crate) fn finish(mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.customer.finish()),
            Arc::new(self.rank.finish()),
            Arc::new(self.action.finish()),
            Arc::new(self.group.finish()),
            Arc::new(self.issue.finish()),
            Arc::new(self.treatment.finish()),
            Arc::new(self.priority.finish()),
            Arc::new(self.propensity.finish()),
            Arc::new(self.context_weight.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.lever.finish()),
        ];
        RecordBatch::try_new(output_schema(), columns)
    }
}
