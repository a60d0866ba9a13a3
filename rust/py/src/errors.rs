//! Core errors and panics become Python exceptions; nothing unwinds into the interpreter.

use lorainne_core::Error;
use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::PyErr;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub fn to_py(error: Error) -> PyErr {
    match error {
        Error::InvalidArgument { .. } | Error::NumericalBreakdown(_) => {
            PyValueError::new_err(error.to_string())
        }
        Error::ThreadPool(_) => PyRuntimeError::new_err(error.to_string()),
        Error::OutOfMemory { .. } => PyMemoryError::new_err(error.to_string()),
        // normally replaced by the exception the signal handler raised (see interrupt.rs)
        Error::Interrupted => PyKeyboardInterrupt::new_err(error.to_string()),
    }
}

/// Runs a kernel, turning a panic (a bug, never expected) into a `RuntimeError`.
pub fn guarded<R>(kernel: impl FnOnce() -> Result<R, Error>) -> Result<R, PyErr> {
    match catch_unwind(AssertUnwindSafe(kernel)) {
        Ok(result) => result.map_err(to_py),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(PyRuntimeError::new_err(format!(
                "internal error in a lorainne kernel (please report): {what}"
            )))
        }
    }
}
