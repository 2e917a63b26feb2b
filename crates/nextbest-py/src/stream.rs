//! Arrow across the boundary, through the Arrow C stream interface and
//! arrow-rs's own `ffi_stream`: no row ever becomes a Python object.
//!
//! In: any object with `__arrow_c_stream__` (the PyCapsule protocol:
//! polars and pyarrow objects, recent pandas), else one with pyarrow's
//! `_export_to_c(address)` that exports a *stream* (a `RecordBatchReader`
//! of older pyarrow; the Python side converts everything else first).
//! Out: [`Batches`], an object with `__arrow_c_stream__`, which
//! `polars.DataFrame(...)` or `pyarrow.table(...)` import without copying
//! the numbers.

use std::ffi::CStr;

use arrow_array::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use arrow_array::{RecordBatch, RecordBatchIterator};
use arrow_schema::SchemaRef;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

const STREAM: &CStr = c"arrow_array_stream";

/// Read `table` as an Arrow stream.
pub fn reader(table: &Bound<'_, PyAny>) -> PyResult<ArrowArrayStreamReader> {
    let arrow_err = |e: arrow_schema::ArrowError| PyValueError::new_err(e.to_string());
    if table.hasattr("__arrow_c_stream__")? {
        let capsule = table.call_method0("__arrow_c_stream__")?;
        let capsule = capsule
            .cast::<PyCapsule>()
            .map_err(|_| PyTypeError::new_err("__arrow_c_stream__ did not return a PyCapsule"))?;
        let ptr = capsule.pointer_checked(Some(STREAM))?;
        // SAFETY: a capsule named "arrow_array_stream" holds an
        // ArrowArrayStream (the PyCapsule protocol); from_raw moves it out
        // and leaves a released stream behind, which the capsule's
        // destructor then leaves alone.
        return unsafe { ArrowArrayStreamReader::from_raw(ptr.as_ptr().cast()) }.map_err(arrow_err);
    }
    if table.hasattr("_export_to_c")? {
        let mut stream = Box::new(FFI_ArrowArrayStream::empty());
        let address = &mut *stream as *mut FFI_ArrowArrayStream as usize;
        table.call_method1("_export_to_c", (address,))?;
        return ArrowArrayStreamReader::try_new(*stream).map_err(arrow_err);
    }
    Err(PyTypeError::new_err(format!(
        "expected a polars or pandas DataFrame, a pyarrow Table or any object with \
         __arrow_c_stream__, got {}",
        table.get_type().name()?
    )))
}

/// Record batches, handed to Python as an Arrow C stream (each call of
/// `__arrow_c_stream__` exports them again; the buffers are shared, not
/// copied).
#[pyclass(module = "nextbest._nextbest", frozen)]
pub struct Batches {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl Batches {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Batches {
        Batches { schema, batches }
    }
}

#[pymethods]
impl Batches {
    /// Export as an Arrow C stream (the PyCapsule protocol).
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // The protocol lets a consumer ask for another schema; it may be
        // ignored, and is: the columns are what they are.
        let _ = requested_schema;
        let reader = RecordBatchIterator::new(
            self.batches.clone().into_iter().map(Ok),
            self.schema.clone(),
        );
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        PyCapsule::new_with_value(py, stream, STREAM)
    }

    /// Rows in all batches.
    fn __len__(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}
