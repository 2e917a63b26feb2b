//! `decide_batches` decides every row as the JSON API decides the same
//! request, whatever the Arrow types of the columns, the chunk size or the
//! number of threads; and it stops at the first bad row, naming it.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type};
use arrow_array::{
    Array, ArrayRef, Date32Array, Float64Array, Int32Array, RecordBatch, RecordBatchIterator,
    StringArray, TimestampMillisecondArray,
};
use arrow_cast::cast;
use arrow_schema::{DataType, Field};
use nextbest::{AttrType, Engine};
use nextbest_arrow::{decide_batches, BatchError, BatchOptions, BatchSummary};
use serde_json::Value as J;

const NOW: &str = "2026-11-23T10:00:00Z";
const RULES: &str = "../../rules/retail_bank";

fn customers() -> Vec<J> {
    std::fs::read_to_string(format!("{RULES}/customers.jsonl"))
        .expect("the population")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The population as one Arrow table: a column per schema attribute that
/// any customer has, typed by the schema.
fn table(engine: &Engine, rows: &[J]) -> RecordBatch {
    let mut columns: Vec<(String, ArrayRef)> = Vec::new();
    let mut ids = StringBuilder::new();
    for r in rows {
        ids.append_value(r["customer_id"].as_str().expect("an id"));
    }
    columns.push(("customer_id".into(), Arc::new(ids.finish())));
    for attr in engine.schema().attributes() {
        let values: Vec<&J> = rows.iter().map(|r| &r["context"][attr.name()]).collect();
        if values.iter().all(|v| v.is_null()) {
            continue;
        }
        let array: ArrayRef = match attr.ty() {
            AttrType::Int => {
                let mut b = Int64Builder::new();
                b.extend(values.iter().map(|v| v.as_i64()));
                Arc::new(b.finish())
            }
            AttrType::Float => {
                let mut b = Float64Builder::new();
                b.extend(values.iter().map(|v| v.as_f64()));
                Arc::new(b.finish())
            }
            AttrType::Bool => {
                let mut b = BooleanBuilder::new();
                b.extend(values.iter().map(|v| v.as_bool()));
                Arc::new(b.finish())
            }
            AttrType::String | AttrType::Timestamp => {
                let mut b = StringBuilder::new();
                b.extend(values.iter().map(|v| v.as_str()));
                Arc::new(b.finish())
            }
            AttrType::StringSet => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for v in &values {
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
            other => panic!("no column for {other:?}"),
        };
        columns.push((attr.name().to_string(), array));
    }
    RecordBatch::try_from_iter(columns).expect("a table")
}

/// One customer's chosen actions, as comparable text.
fn actions_json(d: &J) -> Vec<String> {
    d["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a.to_string())
        .collect()
}

/// Each customer's chosen actions, as comparable text, in input order.
type ByCustomer = Vec<(String, Vec<String>)>;

/// Run a batch; every output row as the decision JSON's action object
/// (fields in the JSON's order), grouped by customer.
fn run(
    engine: &Engine,
    batch: RecordBatch,
    opts: &BatchOptions,
) -> Result<(BatchSummary, ByCustomer), BatchError> {
    let schema = batch.schema();
    let input = RecordBatchIterator::new([Ok(batch)], schema);
    let mut out: ByCustomer = Vec::new();
    let summary = decide_batches(engine, input, opts, |b| {
        let s = |i: usize| b.column(i).as_string::<i32>().clone();
        let f = |i: usize| b.column(i).as_primitive::<Float64Type>().clone();
        let (customer, action, group, issue, treatment) = (s(0), s(2), s(3), s(4), s(5));
        let rank = b.column(1).as_primitive::<UInt32Type>().clone();
        let (priority, propensity, cw, value, lever) = (f(6), f(7), f(8), f(9), f(10));
        for i in 0..b.num_rows() {
            let a = serde_json::json!({
                "rank": rank.value(i), "action": action.value(i), "group": group.value(i),
                "issue": issue.value(i), "treatment": treatment.value(i),
                "priority": priority.value(i), "propensity": propensity.value(i),
                "context_weight": cw.value(i), "value": value.value(i), "lever": lever.value(i),
            });
            match out.last_mut() {
                Some((c, list)) if c == customer.value(i) => list.push(a.to_string()),
                _ => out.push((customer.value(i).to_string(), vec![a.to_string()])),
            }
        }
        Ok(())
    })?;
    Ok((summary, out))
}

/// What the JSON API decides for every customer on `channel` (customers
/// with no action left out, as the batch leaves them out).
fn by_json(engine: &Engine, rows: &[J], channel: &str) -> ByCustomer {
    rows.iter()
        .filter_map(|r| {
            let request = serde_json::json!({
                "customer_id": r["customer_id"], "channel": channel,
                "context": r["context"], "now": NOW,
            });
            let d = engine.decide_json(&request.to_string()).expect("decides");
            let d: J = serde_json::from_str(&d.to_json()).expect("JSON");
            let actions = actions_json(&d);
            (!actions.is_empty()).then(|| (r["customer_id"].as_str().unwrap().to_string(), actions))
        })
        .collect()
}

fn options(channel: &str, chunk_rows: usize, threads: usize) -> BatchOptions {
    let mut o = BatchOptions::new(channel);
    o.now = Some(nextbest::Timestamp::parse(NOW).expect("a time"));
    o.chunk_rows = chunk_rows;
    o.threads = threads;
    o
}

#[test]
fn every_row_is_decided_as_the_json_api_decides_it() {
    let engine = Engine::from_dir(RULES).expect("rules load");
    let rows = customers();
    let batch = table(&engine, &rows);
    for (channel, chunk_rows, threads) in [
        ("call_center", 4096, 1),
        ("call_center", 97, 2),
        ("email", 1, 3),
    ] {
        let expected = by_json(&engine, &rows, channel);
        let (summary, got) = run(
            &engine,
            batch.clone(),
            &options(channel, chunk_rows, threads),
        )
        .expect("runs");
        assert_eq!(summary.rows, rows.len());
        assert_eq!(summary.without_action, rows.len() - expected.len());
        assert_eq!(
            got, expected,
            "{channel}, chunks of {chunk_rows}, {threads} threads"
        );
    }
}

#[test]
fn other_arrow_types_bind_to_the_same_values() {
    let engine = Engine::from_dir(RULES).expect("rules load");
    let rows = customers();
    let plain = table(&engine, &rows);
    let (_, expected) = run(&engine, plain.clone(), &options("web", 512, 2)).expect("runs");
    // Strings as views, large strings and dictionaries; ints as floats
    // and as Int32; lists as large lists of views; the timestamp as
    // milliseconds since the epoch in UTC.
    let schema = plain.schema();
    let mut columns: Vec<(String, ArrayRef)> = Vec::new();
    for (field, col) in schema.fields().iter().zip(plain.columns()) {
        let name = field.name().as_str();
        let to = |t: DataType| cast(col, &t).expect("casts");
        let array = match name {
            "segment" => to(DataType::Utf8View),
            "employment" => to(DataType::LargeUtf8),
            "call_reason" => to(DataType::Dictionary(
                Box::new(DataType::Int8),
                Box::new(DataType::Utf8),
            )),
            "age" => to(DataType::Float64),
            "credit_score" => to(DataType::Int32),
            "products" => to(DataType::LargeList(Arc::new(Field::new_list_field(
                DataType::Utf8View,
                true,
            )))),
            "last_contact" => {
                let text = col.as_string::<i32>();
                let millis: TimestampMillisecondArray = text
                    .iter()
                    .map(|s| s.map(|s| nextbest::Timestamp::parse(s).expect("RFC 3339").0 * 1000))
                    .collect();
                Arc::new(millis.with_timezone("UTC"))
            }
            _ => col.clone(),
        };
        columns.push((name.to_string(), array));
    }
    let retyped = RecordBatch::try_from_iter(columns).expect("a table");
    let (_, got) = run(&engine, retyped, &options("web", 512, 2)).expect("runs");
    assert_eq!(got, expected);
}

#[test]
fn dates_and_epoch_seconds_are_timestamps() {
    let engine = Engine::from_dir(RULES).expect("rules load");
    let rows = customers();
    let plain = table(&engine, &rows[..200]);
    let (_, expected) = run(&engine, plain.clone(), &options("branch", 64, 2)).expect("runs");
    let seconds = |s: &str| nextbest::Timestamp::parse(s).expect("RFC 3339").0;
    let texts = plain
        .column_by_name("last_contact")
        .expect("column")
        .as_string::<i32>()
        .clone();
    // Midnight of the same day.
    let days: Date32Array = texts
        .iter()
        .map(|s| s.map(|s| seconds(s).div_euclid(86_400) as i32))
        .collect();
    let epoch: arrow_array::Int64Array = texts.iter().map(|s| s.map(seconds)).collect();
    let with = |name: &str, a: ArrayRef| {
        let i = plain.schema().index_of(name).expect("column");
        let mut cols = plain.columns().to_vec();
        cols[i] = a;
        RecordBatch::try_new(
            Arc::new(arrow_schema::Schema::new(
                plain
                    .schema()
                    .fields()
                    .iter()
                    .zip(&cols)
                    .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), true))
                    .collect::<Vec<_>>(),
            )),
            cols,
        )
        .expect("a table")
    };
    let (_, got) = run(
        &engine,
        with("last_contact", Arc::new(epoch)),
        &options("branch", 64, 2),
    )
    .expect("runs");
    assert_eq!(got, expected);
    // Dates lose the time of day, so decisions may differ: check that
    // every row binds and is decided.
    let (summary, _) = run(
        &engine,
        with("last_contact", Arc::new(days)),
        &options("branch", 64, 2),
    )
    .expect("runs");
    assert_eq!(summary.rows, 200);
}

#[test]
fn a_bad_row_stops_the_run_naming_row_customer_and_attribute() {
    let engine = Engine::from_dir(RULES).expect("rules load");
    let mut rows = customers();
    rows.truncate(300);
    rows[211]["context"]["segment"] = J::from("gold");
    let batch = table(&engine, &rows);
    let err = run(&engine, batch, &options("call_center", 50, 2)).expect_err("a bad row");
    match &err {
        BatchError::Row {
            row: 211,
            customer_id: Some(c),
            error: nextbest::Error::InvalidContext { attribute, .. },
        } => {
            assert_eq!(c, rows[211]["customer_id"].as_str().unwrap());
            assert_eq!(attribute, "segment");
        }
        other => panic!("expected row 211's segment, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("row 211 (customer RB000212): context attribute `segment`"),
        "{err}"
    );
}

#[test]
fn a_fractional_float_for_an_int_attribute_is_an_error() {
    let engine = Engine::from_dir(RULES).expect("rules load");
    let batch = RecordBatch::try_from_iter([
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["A", "B"])) as ArrayRef,
        ),
        (
            "age",
            Arc::new(Float64Array::from(vec![Some(40.0), Some(40.5)])) as ArrayRef,
        ),
    ])
    .expect("a table");
    let err = run(&engine, batch, &options("call_center", 10, 1)).expect_err("40.5");
    assert!(
        err.to_string()
            .contains("`age`: expected int, got float 40.5"),
        "{err}"
    );
}

#[test]
fn columns_are_checked_before_any_row_is_decided() {
    let engine = Engine::from_dir(RULES).expect("rules load");
    let ids = Arc::new(StringArray::from(vec!["A"])) as ArrayRef;
    let no_ids = RecordBatch::try_from_iter([("id", ids.clone())]).expect("a table");
    let err = run(&engine, no_ids, &options("web", 10, 1)).expect_err("no customer_id");
    assert!(
        matches!(&err, BatchError::Column { column, .. } if column == "customer_id"),
        "{err}"
    );

    let ages = Arc::new(StringArray::from(vec!["forty"])) as ArrayRef;
    let wrong = RecordBatch::try_from_iter([("customer_id", ids.clone()), ("age", ages)]).unwrap();
    let err = run(&engine, wrong, &options("web", 10, 1)).expect_err("a string age");
    assert_eq!(
        err.to_string(),
        "column `age`: a column of type Utf8 cannot hold attribute `age`, which is int \
         (an integer column, or floats with integral values)"
    );

    let ok = RecordBatch::try_from_iter([
        ("customer_id", ids),
        ("age", Arc::new(Int32Array::from(vec![40])) as ArrayRef),
    ])
    .unwrap();
    let err = run(&engine, ok, &options("fax", 10, 1)).expect_err("an unknown channel");
    assert!(
        err.to_string().starts_with("unknown channel `fax`"),
        "{err}"
    );
}

#[test]
fn unknown_columns_and_nulls_are_ignored_as_in_json() {
    let engine = Engine::from_dir(RULES).expect("rules load");
    let batch = RecordBatch::try_from_iter([
        (
            "customer_id",
            Arc::new(StringArray::from(vec!["A", "B"])) as ArrayRef,
        ),
        (
            "age",
            Arc::new(Int32Array::from(vec![Some(40), None])) as ArrayRef,
        ),
        (
            "shoe_size",
            Arc::new(Int32Array::from(vec![44, 38])) as ArrayRef,
        ),
    ])
    .expect("a table");
    let (summary, got) = run(&engine, batch, &options("call_center", 10, 2)).expect("runs");
    assert_eq!(summary.rows, 2);
    let json = |ctx: &str, id: &str| {
        let d = engine
            .decide_json(&format!(
                r#"{{"customer_id":"{id}","channel":"call_center","context":{ctx},"now":"{NOW}"}}"#
            ))
            .expect("decides");
        actions_json(&serde_json::from_str(&d.to_json()).unwrap())
    };
    let expected: Vec<(String, Vec<String>)> =
        [("A", json(r#"{"age":40}"#, "A")), ("B", json("{}", "B"))]
            .into_iter()
            .filter(|(_, a)| !a.is_empty())
            .map(|(c, a)| (c.to_string(), a))
            .collect();
    assert_eq!(got, expected);
}

/// An input that counts the batches read from it.
struct Counting {
    batches: std::vec::IntoIter<RecordBatch>,
    schema: arrow_schema::SchemaRef,
    read: Arc<std::sync::atomic::AtomicUsize>,
}

impl Iterator for Counting {
    type Item = Result<RecordBatch, arrow_schema::ArrowError>;
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.batches.next()?;
        self.read.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(Ok(b))
    }
}

impl arrow_array::RecordBatchReader for Counting {
    fn schema(&self) -> arrow_schema::SchemaRef {
        self.schema.clone()
    }
}

#[test]
fn the_input_is_read_as_chunks_are_emitted_not_all_at_once() {
    use std::sync::atomic::Ordering;
    let engine = Engine::from_dir(RULES).expect("rules load");
    let all = table(&engine, &customers());
    let batches: Vec<RecordBatch> = (0..all.num_rows() / 40)
        .map(|i| all.slice(i * 40, 40))
        .collect();
    let count = batches.len();
    assert!(count >= 40);
    for threads in [1, 2, 3] {
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let input = Counting {
            batches: batches.clone().into_iter(),
            schema: all.schema(),
            read: read.clone(),
        };
        let mut emitted = 0;
        let mut ahead = Vec::new();
        let opts = options("call_center", 40, threads);
        decide_batches(&engine, input, &opts, |_| {
            emitted += 1;
            ahead.push(read.load(Ordering::SeqCst) - emitted);
            Ok(())
        })
        .expect("decides");
        assert_eq!(emitted, count);
        // Chunks read but not yet emitted: queued, being decided, or
        // decided and waiting for their turn: two per thread at most, and
        // the one in hand.
        let most = ahead.iter().copied().max().unwrap_or(0);
        assert!(
            most <= 2 * threads + 1,
            "{threads} threads: {most} chunks ahead"
        );
    }
}
