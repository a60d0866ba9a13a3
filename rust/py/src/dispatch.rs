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

/// `dispatch_types!(PyReadonlyArray2, arg, |T| body, [f64, f32], error)` runs `body` with `T` the
/// first listed element type `arg` can be read as (a rust-numpy array type: `PyReadonlyArray1`,
/// `PyReadonlyArray2`, `PyReadonlyArrayDyn`), else evaluates to `Err(error)`.
macro_rules! dispatch_types {
    ($array:ident, $arg:expr, |$t:ident| $body:expr, [$($ty:ty),+], $error:expr) => {{
        'dispatch: {
            $(
                if $arg.extract::<numpy::$array<$ty>>().is_ok() {
                    type $t = $ty;
                    break 'dispatch ($body);
                }
            )+
            Err($error)
        }
    }};
}

/// `dispatch_float!(PyReadonlyArray2, arg, |T| body)` runs `body` with `T` = f64 or f32 according
/// to the dtype of `arg`; other dtypes raise `TypeError`.
macro_rules! dispatch_float {
    ($array:ident, $arg:expr, |$t:ident| $body:expr) => {
        dispatch_types!(
            $array,
            $arg,
            |$t| $body,
            [f64, f32],
            $crate::dispatch::dtype_error($arg)
        )
    };
}

pub fn field_dtype_error(arg: &Bound<'_, PyAny>) -> PyErr {
    unsupported_dtype(arg, "float32, float64, complex64 or complex128")
}

/// `dispatch_field!(PyReadonlyArray2, arg, |T| body)`: as `dispatch_float!`, with the complex
/// types too (`T` = f64, f32, c64 or c32), for the kernels generic over `lorainne_core::Field`.
macro_rules! dispatch_field {
    ($array:ident, $arg:expr, |$t:ident| $body:expr) => {
        dispatch_types!(
            $array,
            $arg,
            |$t| $body,
            [f64, f32, faer::c64, faer::c32],
            $crate::dispatch::field_dtype_error($arg)
        )
    };
}
