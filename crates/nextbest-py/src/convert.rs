//! Python values to the engine's and back.
//!
//! A context dict is bound by each attribute's schema type, with the JSON
//! request's rules: unknown keys are ignored, `None` is missing, `bool` is
//! not an integer, a float is not an `int`. Timestamps are RFC 3339
//! strings, epoch seconds or `datetime` objects (naive ones are UTC).

use std::sync::Arc;

use nextbest::{AttrType, Context, Schema, Timestamp, Value};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyString};

use crate::errors::Failure;

fn invalid(attribute: &str, message: String) -> Failure {
    Failure::Engine(nextbest::Error::InvalidContext {
        attribute: attribute.to_string(),
        message,
    })
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Bind a Python mapping of attribute names to values to `schema`.
pub fn context(
    schema: &Arc<Schema>,
    dict: Option<&Bound<'_, PyDict>>,
    unknown: &mut Vec<String>,
) -> Result<Context, Failure> {
    let mut b = Context::builder(schema);
    let Some(dict) = dict else {
        return Ok(b.build()?);
    };
    for (k, v) in dict.iter() {
        let Ok(name) = k.cast::<PyString>() else {
            return Err(Failure::Python(PyTypeError::new_err(format!(
                "context keys must be strings, got {}",
                type_name(&k)
            ))));
        };
        let name = name.to_cow()?;
        let name: &str = &name;
        let Some(attr) = schema.attribute(name) else {
            // As in a JSON context: decided without it, and named in the
            // decision's warnings.
            unknown.push(name.to_string());
            continue;
        };
        if v.is_none() {
            continue;
        }
        let value = value(attr.ty(), &v).map_err(|m| invalid(name, m))?;
        b = b.set(name, value);
    }
    Ok(b.build()?)
}

/// One context value of type `ty`.
fn value(ty: AttrType, v: &Bound<'_, PyAny>) -> Result<Value, String> {
    let got = || {
        format!(
            "got {} {}",
            type_name(v),
            v.repr().map(|r| r.to_string()).unwrap_or_default()
        )
    };
    let is_bool = v.is_instance_of::<PyBool>() || type_name(v) == "bool_";
    Ok(match ty {
        AttrType::Int if !is_bool && !v.is_instance_of::<PyFloat>() => Value::Int(
            v.extract::<i64>()
                .map_err(|_| format!("expected int, {}", got()))?,
        ),
        AttrType::Float if !is_bool => Value::Float(
            v.extract::<f64>()
                .map_err(|_| format!("expected float, {}", got()))?,
        ),
        AttrType::Bool if is_bool => Value::Bool(v.extract::<bool>().map_err(|e| e.to_string())?),
        AttrType::String => match v.cast::<PyString>() {
            Ok(s) => Value::String(s.to_cow().map_err(|e| e.to_string())?.to_string()),
            Err(_) => return Err(format!("expected string, {}", got())),
        },
        AttrType::StringSet => {
            if v.is_instance_of::<PyString>() {
                return Err(format!("expected a list of strings, {}", got()));
            }
            let items = v
                .try_iter()
                .map_err(|_| format!("expected a list of strings, {}", got()))?;
            let mut out = Vec::new();
            for item in items {
                let item = item.map_err(|e| e.to_string())?;
                match item.cast::<PyString>() {
                    Ok(s) => out.push(s.to_cow().map_err(|e| e.to_string())?.to_string()),
                    Err(_) => {
                        return Err(format!(
                            "expected a list of strings, found element {}",
                            type_name(&item)
                        ))
                    }
                }
            }
            Value::StringSet(out)
        }
        AttrType::Timestamp => Value::Timestamp(timestamp(v)?),
        _ => return Err(format!("expected {}, {}", ty.name(), got())),
    })
}

/// A decision time or timestamp attribute: RFC 3339 text, epoch seconds,
/// or a `datetime` (naive means UTC).
pub fn timestamp(v: &Bound<'_, PyAny>) -> Result<Timestamp, String> {
    if let Ok(s) = v.cast::<PyString>() {
        return Timestamp::parse(&s.to_cow().map_err(|e| e.to_string())?);
    }
    if v.is_instance_of::<PyBool>() {
        return Err("expected a timestamp, got bool".into());
    }
    if let Ok(secs) = v.extract::<i64>() {
        return Ok(Timestamp(secs));
    }
    if v.hasattr("tzinfo").unwrap_or(false) && v.hasattr("timestamp").unwrap_or(false) {
        let py = v.py();
        let aware = if v.getattr("tzinfo").map(|t| t.is_none()).unwrap_or(true) {
            let utc = py
                .import("datetime")
                .and_then(|m| m.getattr("timezone"))
                .and_then(|tz| tz.getattr("utc"))
                .map_err(|e| e.to_string())?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("tzinfo", utc).map_err(|e| e.to_string())?;
            v.call_method("replace", (), Some(&kwargs))
                .map_err(|e| e.to_string())?
        } else {
            v.clone()
        };
        let secs: f64 = aware
            .call_method0("timestamp")
            .and_then(|t| t.extract())
            .map_err(|e| e.to_string())?;
        return Ok(Timestamp(secs.floor() as i64));
    }
    Err(format!(
        "expected an RFC 3339 string, epoch seconds or a datetime, got {}",
        type_name(v)
    ))
}

/// JSON text as the Python value `json.loads` gives (keys in the text's
/// order, as the engine wrote them).
pub fn loads<'py>(py: Python<'py>, json: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let text = std::str::from_utf8(json)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    let text = PyString::new(py, text);
    py.import("json")?.call_method1("loads", (text,))
}
