//! Dtype dispatch shared by every binding: one generic kernel call per float type.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

/// TypeError naming the dtypes a kernel takes (`expected`) and the one it got.
fn unsupported_dtype(arg: &Bound<'_, PyAny>, expected: &str) -> PyErr {
    let dtype = arg
        .getattr("dtype")
        .map(|d| d.to_string())
        .unwrap_or_else(|_| "unknown".into());
    PyTypeError::new_err(format!(
        "expected a {expected} NumPy array, got dtype {dtype}"
    ))
}

pub fn dtype_error(arg: &Bound<'_, PyAny>) -> PyErr {
    unsupported_dtype(arg, "float32 or float64")
}

/// `dispatch_float!(PyReadonlyArray2, arg, |T| body)` runs `body` with `T` = f64 or f32 according
/// to the dtype of `arg`, read as the given rust-numpy array type (`PyReadonlyArray1`,
/// `PyReadonlyArray2`, `PyReadonlyArrayDyn`); other dtypes raise `TypeError`.
macro_rules! dispatch_float {
    ($array:ident, $arg:expr, |$t:ident| $body:expr) => {{
        if $arg.extract::<numpy::$array<f64>>().is_ok() {
            type $t = f64;
            $body
        } else if $arg.extract::<numpy::$array<f32>>().is_ok() {
            type $t = f32;
            $body
        } else {
            Err($crate::dispatch::dtype_error($arg))
        }
    }};
}

pub fn field_dtype_error(arg: &Bound<'_, PyAny>) -> PyErr {
    unsupported_dtype(arg, "float32, float64, complex64 or complex128")
}

/// `dispatch_field!(PyReadonlyArray2, arg, |T| body)`: as `dispatch_float!`, with the complex
/// types too (`T` = f64, f32, c64 or c32), for the kernels generic over `lorainne_core::Field`.
macro_rules! dispatch_field {
    ($array:ident, $arg:expr, |$t:ident| $body:expr) => {{
        if $arg.extract::<numpy::$array<f64>>().is_ok() {
            type $t = f64;
            $body
        } else if $arg.extract::<numpy::$array<f32>>().is_ok() {
            type $t = f32;
            $body
        } else if $arg.extract::<numpy::$array<faer::c64>>().is_ok() {
            type $t = faer::c64;
            $body
        } else if $arg.extract::<numpy::$array<faer::c32>>().is_ok() {
            type $t = faer::c32;
            $body
        } else {
            Err($crate::dispatch::field_dtype_error($arg))
        }
    }};
}
