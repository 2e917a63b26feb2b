//! The engine's errors as Python exceptions, and the one guard every call
//! into the engine runs under.
//!
//! The exception classes live in `nextbest/errors.py` (so that they can
//! inherit from `ValueError` or `OSError` as well as `NextbestError`, and
//! carry their fields as attributes); this module builds them.
//!
//! **Panics.** No panic crosses into Python as a panic: every call into
//! the engine runs inside [`guard`], which catches an unwinding panic and
//! turns it into `nextbest.errors.InternalError` (a `NextbestError`). The
//! batch path also catches panics on its worker threads
//! (`nextbest_arrow::decide_batches`). Anything left (a panic in the
//! binding code itself) is caught by pyo3's own trampoline and raised as
//! `pyo3_runtime.PanicException`; none is known.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// What a guarded call failed with.
pub enum Failure {
    /// The engine's error; `rules_dir` resolves rule-file locations.
    Engine(nextbest::Error),
    /// A batch run's error.
    Batch(nextbest_arrow::BatchError),
    /// A Python error raised while converting.
    Python(PyErr),
    /// A caught panic's message.
    Panic(String),
}

impl From<nextbest::Error> for Failure {
    fn from(e: nextbest::Error) -> Failure {
        Failure::Engine(e)
    }
}

impl From<nextbest_arrow::BatchError> for Failure {
    fn from(e: nextbest_arrow::BatchError) -> Failure {
        Failure::Batch(e)
    }
}

impl From<PyErr> for Failure {
    fn from(e: PyErr) -> Failure {
        Failure::Python(e)
    }
}

/// Run `f`, catching a panic as [`Failure::Panic`].
pub fn guard<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(Failure::Panic(nextbest_arrow::panic_message(&*p))))
}

/// Build the Python exception `class_name(message, **fields)` from
/// `nextbest.errors`.
fn exception(
    py: Python<'_>,
    class_name: &str,
    message: String,
    fields: &[(&str, Bound<'_, PyAny>)],
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = py.import("nextbest.errors")?.getattr(class_name)?;
        let kwargs = PyDict::new(py);
        for (k, v) in fields {
            kwargs.set_item(*k, v)?;
        }
        let value = class.call((message,), Some(&kwargs))?;
        Ok(PyErr::from_value(value))
    };
    build().unwrap_or_else(|e| e)
}

fn s<'py>(py: Python<'py>, v: &str) -> Bound<'py, PyAny> {
    pyo3::types::PyString::new(py, v).into_any()
}

/// The Python exception for `f`. Rule-file locations are made relative to
/// `rules_dir` (the directory the error came from), as `nextbest validate`
/// prints them.
pub fn to_pyerr(py: Python<'_>, f: Failure, rules_dir: Option<&Path>) -> PyErr {
    match f {
        Failure::Python(e) => e,
        Failure::Panic(m) => exception(py, "InternalError", format!("internal error: {m}"), &[]),
        Failure::Engine(e) => engine_error(py, e, rules_dir),
        Failure::Batch(e) => batch_error(py, e, rules_dir),
    }
}

fn engine_error(py: Python<'_>, e: nextbest::Error, rules_dir: Option<&Path>) -> PyErr {
    use nextbest::Error as E;
    let message = e.to_string();
    match e {
        E::Rules(errs) => {
            let problem = py
                .import("nextbest.errors")
                .and_then(|m| m.getattr("RuleProblem"));
            let mut list = Vec::new();
            for r in errs.errors() {
                let file = match rules_dir {
                    Some(d) => d.join(&r.location.file),
                    None => r.location.file.clone(),
                };
                if let Ok(class) = &problem {
                    let p = class.call1((
                        file.display().to_string(),
                        r.location.line,
                        r.location.column,
                        r.message.as_str(),
                    ));
                    match p {
                        Ok(p) => list.push(p),
                        Err(err) => return err,
                    }
                }
            }
            let list = match PyList::new(py, list) {
                Ok(l) => l.into_any(),
                Err(err) => return err,
            };
            exception(py, "RuleError", message, &[("errors", list)])
        }
        E::InvalidContext { attribute, .. } => exception(
            py,
            "ContextError",
            message,
            &[("attribute", s(py, &attribute))],
        ),
        E::UnknownChannel { channel, .. } => {
            exception(py, "ChannelError", message, &[("channel", s(py, &channel))])
        }
        E::InvalidRequest(_) => exception(py, "RequestError", message, &[]),
        E::InvalidConfig(_) => exception(py, "ConfigError", message, &[]),
        E::Rollback(_) => exception(py, "RollbackError", message, &[]),
        E::State(_) => exception(py, "StateError", message, &[]),
        E::Io { path, .. } => exception(
            py,
            "FileError",
            message,
            &[("path", s(py, &path.display().to_string()))],
        ),
        _ => exception(py, "NextbestError", message, &[]),
    }
}

fn batch_error(py: Python<'_>, e: nextbest_arrow::BatchError, rules_dir: Option<&Path>) -> PyErr {
    use nextbest_arrow::BatchError as B;
    let message = e.to_string();
    match e {
        B::Engine(e) => engine_error(py, e, rules_dir),
        B::Column { column, .. } => {
            exception(py, "BatchError", message, &[("column", s(py, &column))])
        }
        B::Row {
            row,
            customer_id,
            error,
        } => {
            let mut fields = vec![("row", pyo3::types::PyInt::new(py, row as u64).into_any())];
            if let Some(c) = customer_id {
                fields.push(("customer_id", s(py, &c)));
            }
            if let nextbest::Error::InvalidContext { attribute, .. } = &error {
                fields.push(("column", s(py, attribute)));
            }
            exception(py, "BatchError", message, &fields)
        }
        B::Panic(m) => exception(py, "InternalError", format!("internal error: {m}"), &[]),
        _ => exception(py, "BatchError", message, &[]),
    }
}
