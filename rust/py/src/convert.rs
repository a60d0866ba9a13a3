//! Views of NumPy arrays as faer matrices, and faer matrices back to NumPy.

use faer::{Mat, MatRef};
use numpy::ndarray::{Array2, ShapeBuilder};
use numpy::{Element, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A read-only faer view of a 2-D NumPy array (any strides), valid while `array` is borrowed.
pub fn view<'a, T: Element>(array: &'a PyReadonlyArray2<'_, T>) -> MatRef<'a, T> {
    let v = array.as_array();
    let (m, n) = v.dim();
    let strides = v.strides();
    // SAFETY: pointer, shape and element strides come from a live, borrowed NumPy array.
    unsafe { MatRef::from_raw_parts(v.as_ptr(), m, n, strides[0], strides[1]) }
}

/// A faer matrix as a new Fortran-ordered NumPy array: faer stores columns contiguously, so the
/// data moves one column (one `memcpy`) at a time into the buffer NumPy then owns without a copy.
pub fn to_numpy<'py, T: Element + Copy>(
    py: Python<'py>,
    mat: &Mat<T>,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let (m, n) = mat.shape();
    let mut data = Vec::with_capacity(m * n);
    for j in 0..n {
        data.extend_from_slice(mat.col_as_slice(j));
    }
    let array = Array2::from_shape_vec((m, n).f(), data)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
    Ok(array.into_pyarray(py))
}

pub fn vec_to_numpy<'py, T: Element>(py: Python<'py>, values: Vec<T>) -> Bound<'py, PyArray1<T>> {
    values.into_pyarray(py)
}

/// The `**options` of `function`, checked against the accepted `keys` (an unknown keyword is a
/// `TypeError`, as for a Python function); extract the options struct from the returned dict.
pub fn kwargs<'py>(
    py: Python<'py>,
    function: &str,
    keys: &[&str],
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let Some(options) = options else {
        return Ok(PyDict::new(py));
    };
    for key in options.keys() {
        let key: String = key.extract()?;
        if !keys.contains(&key.as_str()) {
            return Err(PyTypeError::new_err(format!(
                "{function}() got an unexpected keyword argument '{key}'"
            )));
        }
    }
    Ok(options.clone())
}
