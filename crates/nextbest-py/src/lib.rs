//! The Python package's native module, `nextbest._nextbest`.
//!
//! `python/nextbest/__init__.py` is the package users import: it wraps
//! this module's tables in polars DataFrames and adds the pieces that are
//! plain Python (converting a pandas frame to Arrow, the funnel's frame).
//!
//! What this module guarantees:
//! - **The GIL is released while the engine works**: deciding, batches,
//!   reading logs, evaluating, publishing (`Python::detach`, pyo3's name
//!   for `allow_threads`). Python values are converted before and after,
//!   with the GIL held.
//! - **Thread-safe**: an `Engine` is `frozen` (no Python-side mutable
//!   state) and holds the engine in an `Arc`; the engine itself is `Send +
//!   Sync`, so any number of Python threads may decide at once.
//! - **No panic crosses into Python**: see [`errors`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nextbest::{DecisionRequest, Outcome, OutcomeKind};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

mod convert;
mod errors;
mod log;
mod stream;

use errors::{guard, to_pyerr, Failure};
use stream::Batches;

/// A decision engine serving one rule directory.
///
/// See the package's `Engine` for the documentation; this is its native
/// base.
#[pyclass(module = "nextbest._nextbest", name = "Engine", subclass, frozen)]
struct PyEngine {
    engine: Arc<nextbest::Engine>,
    rules_dir: PathBuf,
}

/// Paths from a path or a sequence of paths.
fn paths(obj: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if let Ok(p) = obj.extract::<PathBuf>() {
        return Ok(vec![p]);
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        out.push(item?.extract::<PathBuf>()?);
    }
    if out.is_empty() {
        return Err(PyValueError::new_err("no log files given"));
    }
    Ok(out)
}

/// A decision time from Python (`None` = now).
fn when(now: Option<&Bound<'_, PyAny>>) -> PyResult<Option<nextbest::Timestamp>> {
    match now {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => convert::timestamp(v)
            .map(Some)
            .map_err(|m| PyValueError::new_err(format!("now: {m}"))),
    }
}

impl PyEngine {
    fn err(&self, py: Python<'_>, f: Failure) -> PyErr {
        to_pyerr(py, f, Some(&self.rules_dir))
    }
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (rules_dir, **config))]
    fn new(
        py: Python<'_>,
        rules_dir: PathBuf,
        config: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyEngine> {
        let options = PyDict::new(py);
        if let Some(c) = config {
            options.update(c.as_mapping())?;
        }
        options.set_item("rules_dir", &rules_dir)?;
        let os = py.import("os")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("default", os.getattr("fspath")?)?;
        let json: String = py
            .import("json")?
            .call_method("dumps", (options,), Some(&kwargs))?
            .extract()?;
        let engine = py
            .detach(|| guard(|| Ok(nextbest::Engine::from_config_json(&json)?)))
            .map_err(|f| to_pyerr(py, f, Some(&rules_dir)))?;
        Ok(PyEngine {
            engine: Arc::new(engine),
            rules_dir,
        })
    }

    /// Decide for one customer; the decision JSON as a dict.
    #[pyo3(signature = (customer_id, channel, context=None, explain=false, limit=None, now=None))]
    #[allow(clippy::too_many_arguments)] // the Python signature's
    fn decide<'py>(
        &self,
        py: Python<'py>,
        customer_id: &str,
        channel: &str,
        context: Option<&Bound<'py, PyDict>>,
        explain: bool,
        limit: Option<usize>,
        now: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let schema = self.engine.schema();
        let mut unknown = Vec::new();
        let ctx = convert::context(&schema, context, &mut unknown).map_err(|f| self.err(py, f))?;
        let mut request = DecisionRequest::new(customer_id, channel, ctx).explain(explain);
        for name in &unknown {
            request = request.warn(nextbest::RequestWarning::unknown_attribute(&schema, name));
        }
        request.limit = limit;
        request.now = when(now)?;
        let engine = self.engine.clone();
        let json = py
            .detach(move || guard(|| Ok(engine.decide(&request)?.to_json_vec())))
            .map_err(|f| self.err(py, f))?;
        convert::loads(py, &json)
    }

    /// Decide every row of an Arrow stream (see the package's
    /// `decide_batch`).
    #[pyo3(signature = (table, channel, customer_id, limit, now, chunk_rows, threads))]
    #[allow(clippy::too_many_arguments)]
    fn _decide_batch(
        &self,
        py: Python<'_>,
        table: &Bound<'_, PyAny>,
        channel: String,
        customer_id: String,
        limit: Option<usize>,
        now: Option<&Bound<'_, PyAny>>,
        chunk_rows: usize,
        threads: Option<usize>,
    ) -> PyResult<Batches> {
        let reader = stream::reader(table)?;
        let mut opts = nextbest_arrow::BatchOptions::new(channel);
        opts.customer_id = customer_id;
        opts.limit = limit;
        opts.now = when(now)?;
        opts.chunk_rows = chunk_rows.max(1);
        if let Some(t) = threads {
            opts.threads = t.max(1);
        }
        let engine = self.engine.clone();
        let batches = py
            .detach(move || {
                guard(|| {
                    let mut out = Vec::new();
                    nextbest_arrow::decide_batches(&engine, reader, &opts, |b| {
                        out.push(b);
                        Ok(())
                    })?;
                    Ok(out)
                })
            })
            .map_err(|f| self.err(py, f))?;
        Ok(Batches::new(nextbest_arrow::output_schema(), batches))
    }

    /// Record what a customer did with an action.
    #[pyo3(signature = (customer_id, action, channel, outcome, decision_id=None, timestamp=None))]
    #[allow(clippy::too_many_arguments)]
    fn record_outcome(
        &self,
        py: Python<'_>,
        customer_id: String,
        action: String,
        channel: String,
        outcome: &str,
        decision_id: Option<&str>,
        timestamp: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let kind = OutcomeKind::parse(outcome).ok_or_else(|| {
            self.err(
                py,
                Failure::Engine(nextbest::Error::InvalidRequest(format!(
                    "outcome: unknown kind `{outcome}`; use impression, clicked, accepted, \
                     rejected or no_response"
                ))),
            )
        })?;
        let decision_id = match decision_id {
            None => None,
            Some(s) => Some(nextbest::DecisionId::parse(s).ok_or_else(|| {
                self.err(
                    py,
                    Failure::Engine(nextbest::Error::InvalidRequest(format!(
                        "outcome: decision_id `{s}` is not 32 hex digits"
                    ))),
                )
            })?),
        };
        let outcome = Outcome {
            decision_id,
            customer_id,
            action,
            channel,
            kind,
            timestamp: when(timestamp)?,
        };
        let engine = self.engine.clone();
        py.detach(move || guard(|| Ok(engine.record_outcome(&outcome)?)))
            .map_err(|f| self.err(py, f))
    }

    /// Load, validate and compile a rule directory and make it live.
    fn publish(&self, py: Python<'_>, rules_dir: PathBuf) -> PyResult<u64> {
        let engine = self.engine.clone();
        let dir = rules_dir.clone();
        py.detach(move || guard(|| Ok(engine.reload(&dir)?)))
            .map_err(|f| to_pyerr(py, f, Some(&rules_dir)))
    }

    /// Serve the previous kept version again.
    fn rollback(&self, py: Python<'_>) -> PyResult<u64> {
        let engine = self.engine.clone();
        py.detach(move || guard(|| Ok(engine.rollback()?)))
            .map_err(|f| self.err(py, f))
    }

    /// Counters and the version history.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let engine = self.engine.clone();
        let value = py
            .detach(move || {
                guard(|| {
                    serde_json::to_vec(&engine.stats())
                        .map_err(|e| Failure::Engine(nextbest::Error::State(format!("stats: {e}"))))
                })
            })
            .map_err(|f| self.err(py, f))?;
        convert::loads(py, &value)
    }

    /// Wait until everything logged so far is written and synced.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let engine = self.engine.clone();
        py.detach(move || guard(|| Ok(engine.flush()?)))
            .map_err(|f| self.err(py, f))
    }

    /// The live version's context schema: attribute name to type name.
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for a in self.engine.schema().attributes() {
            d.set_item(a.name(), a.ty().name())?;
        }
        Ok(d)
    }

    /// The rule directory the engine was opened with.
    #[getter]
    fn rules_dir(&self) -> PathBuf {
        self.rules_dir.clone()
    }

    fn __repr__(&self) -> String {
        let v = self.engine.current();
        format!(
            "Engine({:?}: {} version {})",
            self.rules_dir.display().to_string(),
            v.rules().name(),
            v.number()
        )
    }
}

/// Read log files into a table, with the GIL released.
fn read_table(
    py: Python<'_>,
    log: &Bound<'_, PyAny>,
    which: log::Which,
) -> PyResult<(Batches, Vec<String>)> {
    let files = paths(log)?;
    let (batch, problems) = py
        .detach(move || guard(|| Ok(log::read(&files, which)?)))
        .map_err(|f| to_pyerr(py, f, None))?;
    let mut warnings = problems.partial_last_lines;
    warnings.extend(problems.corrupt_lines);
    Ok((Batches::new(batch.schema(), vec![batch]), warnings))
}

/// The decisions of a log (see the package's `read_log`) and the problems
/// reading found.
#[pyfunction]
fn _read_decisions(py: Python<'_>, log: &Bound<'_, PyAny>) -> PyResult<(Batches, Vec<String>)> {
    read_table(py, log, log::Which::Decisions)
}

/// The candidates of a log's decisions.
#[pyfunction]
fn _read_candidates(py: Python<'_>, log: &Bound<'_, PyAny>) -> PyResult<(Batches, Vec<String>)> {
    read_table(py, log, log::Which::Candidates)
}

/// The outcomes of a log.
#[pyfunction]
fn _read_outcomes(py: Python<'_>, log: &Bound<'_, PyAny>) -> PyResult<(Batches, Vec<String>)> {
    read_table(py, log, log::Which::Outcomes)
}

/// The funnel of a log: a dict of counts.
#[pyfunction]
fn _funnel<'py>(py: Python<'py>, log: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyTuple>> {
    let files = paths(log)?;
    let (f, problems) = py
        .detach(move || guard(|| Ok(log::funnel(&files)?)))
        .map_err(|f| to_pyerr(py, f, None))?;
    let d = PyDict::new(py);
    d.set_item("decisions", f.decisions)?;
    d.set_item("candidates", f.candidates)?;
    d.set_item("removed", PyList::new(py, f.removed)?)?;
    d.set_item("ranked", f.ranked)?;
    d.set_item("chosen", f.chosen)?;
    d.set_item("without_removals", f.without_removals)?;
    let mut warnings = problems.partial_last_lines;
    warnings.extend(problems.corrupt_lines);
    PyTuple::new(py, [d.into_any(), PyList::new(py, warnings)?.into_any()])
}

/// Off-policy evaluation of `candidate_dir` on the log (see the package's
/// `evaluate`).
#[pyfunction]
#[pyo3(signature = (log, candidate_dir, success=None))]
fn evaluate<'py>(
    py: Python<'py>,
    log: &Bound<'py, PyAny>,
    candidate_dir: PathBuf,
    success: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyAny>> {
    use nextbest::tools::evaluate::EvaluateOptions;
    let files = paths(log)?;
    let mut opts = EvaluateOptions::default();
    if let Some(kinds) = success.filter(|k| !k.is_empty()) {
        opts.success = kinds
            .iter()
            .map(|s| {
                OutcomeKind::parse(s).ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "unknown outcome kind `{s}`; use impression, clicked, accepted, \
                         rejected or no_response"
                    ))
                })
            })
            .collect::<PyResult<_>>()?;
    }
    let dir = candidate_dir.clone();
    let value = py
        .detach(move || {
            guard(|| {
                let engine = nextbest::Engine::from_dir(&dir)?;
                let ev = nextbest::tools::evaluate::evaluate(&files, &engine, &opts)?;
                serde_json::to_vec(&ev).map_err(|e| {
                    Failure::Engine(nextbest::Error::InvalidRequest(format!("evaluation: {e}")))
                })
            })
        })
        .map_err(|f| to_pyerr(py, f, Some(Path::new(&candidate_dir))))?;
    convert::loads(py, &value)
}

/// Impact against control on the log (see the package's `impact`): the
/// report `nextbest impact --json` prints, as a dict.
#[pyfunction]
#[pyo3(signature = (log, mde=0.1))]
fn impact<'py>(py: Python<'py>, log: &Bound<'py, PyAny>, mde: f64) -> PyResult<Bound<'py, PyAny>> {
    if !(mde > 0.0 && mde.is_finite()) {
        return Err(to_pyerr(
            py,
            Failure::Engine(nextbest::Error::InvalidRequest(format!(
                "mde {mde}: give the relative lift to detect, e.g. 0.1 for 10%"
            ))),
            None,
        ));
    }
    let files = paths(log)?;
    let value = py
        .detach(move || {
            guard(|| {
                let report = nextbest_impact::impact(&files, mde)?;
                serde_json::to_vec(&report).map_err(|e| {
                    Failure::Engine(nextbest::Error::InvalidRequest(format!("impact: {e}")))
                })
            })
        })
        .map_err(|f| to_pyerr(py, f, None))?;
    convert::loads(py, &value)
}

/// Panic, with `message`, inside the guard every call into the engine runs
/// under, with the GIL released as it is there: the tests' proof that a
/// panic reaches Python as `nextbest.errors.InternalError` (and leaves the
/// module usable), not as an abort or a `PanicException`.
#[pyfunction]
fn _panic_in_guard(py: Python<'_>, message: String) -> PyResult<()> {
    py.detach(move || guard(|| -> Result<(), Failure> { panic!("{message}") }))
        .map_err(|f| to_pyerr(py, f, None))
}

/// The native module.
#[pymodule]
fn _nextbest(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyEngine>()?;
    m.add_class::<Batches>()?;
    m.add_function(wrap_pyfunction!(_read_decisions, m)?)?;
    m.add_function(wrap_pyfunction!(_read_candidates, m)?)?;
    m.add_function(wrap_pyfunction!(_read_outcomes, m)?)?;
    m.add_function(wrap_pyfunction!(_funnel, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(impact, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_in_guard, m)?)?;
    let stages: Vec<&str> = nextbest::Stage::ALL.iter().map(|s| s.as_str()).collect();
    m.add("STAGES", PyTuple::new(m.py(), stages)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
