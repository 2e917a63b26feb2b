//! Arrow columns to contexts: each column's schema slot and conversion is
//! resolved once per table ([`Binder::new`]); each chunk's columns are cast
//! once to one canonical Arrow type per attribute type ([`Binder::chunk`]);
//! then a row is bound by reading those arrays at its index, with no name
//! lookup and no per-value allocation ([`Chunk::context`]).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, ListArray, RecordBatch, StringArray};
use arrow_cast::{cast_with_options, CastOptions};
use arrow_schema::{DataType, Field, Schema as ArrowSchema, TimeUnit};
use nextbest::{AttrType, Context, ContextBuilder, Schema, Timestamp, Value};

use crate::BatchError;

/// How a column becomes an attribute's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conversion {
    /// Integers (any width) to an `int` attribute.
    Int,
    /// Floats to an `int` attribute: each value must be integral (pandas
    /// turns integer columns with missing values into floats).
    IntFromFloat,
    /// Integers, floats or decimals to a `float` attribute.
    Float,
    /// Booleans to a `bool` attribute.
    Bool,
    /// Strings (plain, large, view or dictionary-encoded) to `string`.
    Str,
    /// Lists of strings to `string_set`.
    StrSet,
    /// Strings (RFC 3339) to `timestamp`.
    TimeText,
    /// Timestamps, dates or integers (epoch seconds) to `timestamp`:
    /// seconds = raw value × `mul` / `div` (rounded down).
    TimeNumber { mul: i64, div: i64 },
}

/// One input column bound to one schema slot.
#[derive(Debug, Clone)]
struct Bound {
    column: usize,
    slot: usize,
    conversion: Conversion,
}

/// A table's columns resolved against a rule set's schema: which column
/// fills which slot, and how.
#[derive(Debug, Clone)]
pub(crate) struct Binder {
    schema: Arc<Schema>,
    customer_column: usize,
    bound: Vec<Bound>,
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

fn item_type(t: &DataType) -> Option<&DataType> {
    match t {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => Some(f.data_type()),
        _ => None,
    }
}

/// The conversion from a column of type `t` to an attribute of type `ty`,
/// if there is one.
fn conversion(ty: AttrType, t: &DataType) -> Option<Conversion> {
    use DataType as D;
    let int = t.is_integer();
    Some(match ty {
        AttrType::Int if int => Conversion::Int,
        AttrType::Int if t.is_floating() => Conversion::IntFromFloat,
        AttrType::Float if int || t.is_floating() || t.is_decimal() => Conversion::Float,
        AttrType::Bool if *t == D::Boolean => Conversion::Bool,
        AttrType::String if is_text(t) => Conversion::Str,
        AttrType::StringSet if item_type(t).is_some_and(is_text) => Conversion::StrSet,
        AttrType::Timestamp => match t {
            _ if is_text(t) => Conversion::TimeText,
            _ if int => Conversion::TimeNumber { mul: 1, div: 1 },
            D::Timestamp(unit, _) => Conversion::TimeNumber {
                mul: 1,
                div: match unit {
                    TimeUnit::Second => 1,
                    TimeUnit::Millisecond => 1_000,
                    TimeUnit::Microsecond => 1_000_000,
                    TimeUnit::Nanosecond => 1_000_000_000,
                },
            },
            D::Date32 => Conversion::TimeNumber {
                mul: 86_400,
                div: 1,
            },
            D::Date64 => Conversion::TimeNumber { mul: 1, div: 1_000 },
            _ => return None,
        },
        _ => return None,
    })
}

fn type_name(ty: AttrType) -> &'static str {
    match ty {
        AttrType::Int => "int (an integer column, or floats with integral values)",
        AttrType::Float => "float (a numeric column)",
        AttrType::Bool => "bool (a boolean column)",
        AttrType::String => "string (a string or categorical column)",
        AttrType::StringSet => "string_set (a column of lists of strings)",
        AttrType::Timestamp => {
            "timestamp (a datetime or date column, epoch seconds, or RFC 3339 strings)"
        }
        _ => "an attribute type this version does not bind from Arrow",
    }
}

impl Binder {
    /// Resolve `table`'s columns against `schema`: the customer id column
    /// by name, and every column named like a schema attribute. Columns
    /// the schema does not declare are ignored (as unknown keys of a JSON
    /// context are); a column whose type cannot hold its attribute is an
    /// error naming both.
    pub(crate) fn new(
        schema: Arc<Schema>,
        table: &ArrowSchema,
        customer_id: &str,
    ) -> Result<Binder, BatchError> {
        let customer_column = table
            .index_of(customer_id)
            .map_err(|_| BatchError::Column {
                column: customer_id.to_string(),
                message: format!(
                    "no such column (the customer id column); the table has {}",
                    list_columns(table)
                ),
            })?;
        let ct = table.field(customer_column).data_type();
        if !(is_text(ct) || ct.is_integer()) {
            return Err(BatchError::Column {
                column: customer_id.to_string(),
                message: format!("customer ids must be strings or integers, not {ct}"),
            });
        }
        let mut bound = Vec::new();
        for (slot, attr) in schema.attributes().iter().enumerate() {
            let Ok(column) = table.index_of(attr.name()) else {
                continue;
            };
            if column == customer_column {
                continue;
            }
            let t = table.field(column).data_type();
            if *t == DataType::Null {
                continue; // every value missing
            }
            let conversion = conversion(attr.ty(), t).ok_or_else(|| BatchError::Column {
                column: attr.name().to_string(),
                message: format!(
                    "a column of type {t} cannot hold attribute `{}`, which is {}",
                    attr.name(),
                    type_name(attr.ty())
                ),
            })?;
            bound.push(Bound {
                column,
                slot,
                conversion,
            });
        }
        Ok(Binder {
            schema,
            customer_column,
            bound,
        })
    }

    /// Cast `batch`'s bound columns to their canonical types.
    pub(crate) fn chunk(&self, batch: &RecordBatch) -> Result<Chunk, BatchError> {
        let name = |i: usize| batch.schema().field(i).name().clone();
        let cast = |i: usize, to: &DataType| -> Result<ArrayRef, BatchError> {
            let opts = CastOptions {
                safe: false,
                ..Default::default()
            };
            cast_with_options(batch.column(i), to, &opts).map_err(|e| BatchError::Column {
                column: name(i),
                message: e.to_string(),
            })
        };
        let customers = cast(self.customer_column, &DataType::Utf8)?;
        let mut columns = Vec::with_capacity(self.bound.len());
        for b in &self.bound {
            let values = match b.conversion {
                Conversion::Int => Values::Int(cast(b.column, &DataType::Int64)?),
                Conversion::IntFromFloat => {
                    Values::IntFromFloat(cast(b.column, &DataType::Float64)?)
                }
                Conversion::Float => Values::Float(cast(b.column, &DataType::Float64)?),
                Conversion::Bool => Values::Bool(batch.column(b.column).clone()),
                Conversion::Str => Values::Str(cast(b.column, &DataType::Utf8)?),
                Conversion::StrSet => Values::StrSet(cast(
                    b.column,
                    &DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                )?),
                Conversion::TimeText => Values::TimeText(cast(b.column, &DataType::Utf8)?),
                Conversion::TimeNumber { mul, div } => {
                    let raw = match batch.column(b.column).data_type() {
                        DataType::Date32 => cast(b.column, &DataType::Int32)
                            .and_then(|a| cast_array(&a, &DataType::Int64, &name(b.column)))?,
                        _ => cast(b.column, &DataType::Int64)?,
                    };
                    Values::TimeNumber(raw, mul, div)
                }
            };
            columns.push((
                b.slot,
                batch.schema().field(b.column).name().clone(),
                values,
            ));
        }
        Ok(Chunk {
            schema: self.schema.clone(),
            customers,
            columns,
        })
    }
}

fn cast_array(a: &ArrayRef, to: &DataType, column: &str) -> Result<ArrayRef, BatchError> {
    cast_with_options(
        a,
        to,
        &CastOptions {
            safe: false,
            ..Default::default()
        },
    )
    .map_err(|e| BatchError::Column {
        column: column.to_string(),
        message: e.to_string(),
    })
}

fn list_columns(table: &ArrowSchema) -> String {
    let names: Vec<String> = table
        .fields()
        .iter()
        .take(12)
        .map(|f| format!("`{}`", f.name()))
        .collect();
    let more = table.fields().len().saturating_sub(12);
    if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else if names.is_empty() {
        "no columns".to_string()
    } else {
        names.join(", ")
    }
}

/// A column's values in their canonical Arrow type.
enum Values {
    Int(ArrayRef),
    IntFromFloat(ArrayRef),
    Float(ArrayRef),
    Bool(ArrayRef),
    Str(ArrayRef),
    StrSet(ArrayRef),
    TimeText(ArrayRef),
    TimeNumber(ArrayRef, i64, i64),
}

/// One chunk of a table, its columns cast, ready to bind row by row.
pub(crate) struct Chunk {
    schema: Arc<Schema>,
    customers: ArrayRef,
    /// (slot, column name, values).
    columns: Vec<(usize, String, Values)>,
}

impl Chunk {
    /// Rows in the chunk.
    pub(crate) fn len(&self) -> usize {
        self.customers.len()
    }

    /// The customer id of `row` (`None` when null).
    pub(crate) fn customer(&self, row: usize) -> Option<&str> {
        let a: &StringArray = self.customers.as_string();
        a.is_valid(row).then(|| a.value(row))
    }

    /// Bind `row` to a context. `items` is the caller's scratch for a
    /// string set's members.
    pub(crate) fn context<'a>(
        &'a self,
        row: usize,
        items: &mut Vec<&'a str>,
    ) -> Result<Context, nextbest::Error> {
        let mut b: ContextBuilder = Context::builder(&self.schema);
        for (slot, name, values) in &self.columns {
            let slot = *slot;
            b = match values {
                Values::Int(a) => match prim::<Int64Type>(a, row) {
                    Some(v) => b.set_slot(slot, v),
                    None => b,
                },
                Values::IntFromFloat(a) => match prim::<Float64Type>(a, row) {
                    Some(v) if v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 => {
                        b.set_slot(slot, v as i64)
                    }
                    Some(v) => {
                        return Err(nextbest::Error::InvalidContext {
                            attribute: name.clone(),
                            message: format!("expected int, got float {v}"),
                        })
                    }
                    None => b,
                },
                Values::Float(a) => match prim::<Float64Type>(a, row) {
                    Some(v) => b.set_slot(slot, v),
                    None => b,
                },
                Values::Bool(a) => {
                    let a: &BooleanArray = a.as_boolean();
                    if a.is_valid(row) {
                        b.set_slot(slot, a.value(row))
                    } else {
                        b
                    }
                }
                Values::Str(a) => {
                    let a: &StringArray = a.as_string();
                    if a.is_valid(row) {
                        b.set_slot_str(slot, a.value(row))
                    } else {
                        b
                    }
                }
                Values::StrSet(a) => {
                    let a: &ListArray = a.as_list();
                    if a.is_valid(row) {
                        let offsets = a.value_offsets();
                        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                        let strings: &StringArray = a.values().as_string();
                        items.clear();
                        items.extend(
                            (start..end)
                                .filter(|&i| strings.is_valid(i))
                                .map(|i| strings.value(i)),
                        );
                        b.set_slot_strs(slot, items)
                    } else {
                        b
                    }
                }
                Values::TimeText(a) => {
                    let a: &StringArray = a.as_string();
                    if a.is_valid(row) {
                        let t = Timestamp::parse(a.value(row)).map_err(|m| {
                            nextbest::Error::InvalidContext {
                                attribute: name.clone(),
                                message: m,
                            }
                        })?;
                        b.set_slot(slot, Value::Timestamp(t))
                    } else {
                        b
                    }
                }
                Values::TimeNumber(a, mul, div) => match prim::<Int64Type>(a, row) {
                    Some(v) => {
                        let secs = v.checked_mul(*mul).map(|s| s.div_euclid(*div));
                        match secs {
                            Some(s) => b.set_slot(slot, Value::Timestamp(Timestamp(s))),
                            None => {
                                return Err(nextbest::Error::InvalidContext {
                                    attribute: name.clone(),
                                    message: format!("timestamp {v} is out of range"),
                                })
                            }
                        }
                    }
                    None => b,
                },
            };
        }
        b.build()
    }
}

#[inline]
fn prim<T: arrow_array::types::ArrowPrimitiveType>(a: &ArrayRef, row: usize) -> Option<T::Native> {
    let a = a.as_primitive::<T>();
    a.is_valid(row).then(|| a.value(row))
}
