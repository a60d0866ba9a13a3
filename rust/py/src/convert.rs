//! Views of NumPy arrays as faer matrices, and faer matrices back to NumPy.

use faer::{Mat, MatRef};
use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;

/// A read-only faer view of a 2-D NumPy array (any strides), valid while `array` is borrowed.
pub fn view<'a, T: Element>(array: &'a PyReadonlyArray2<'_, T>) -> MatRef<'a, T> {
    let v = array.as_array();
    let (m, n) = v.dim();
    let strides = v.strides();
    // SAFETY: pointer, shape and element strides come from a live, borrowed NumPy array.
    unsafe { MatRef::from_raw_parts(v.as_ptr(), m, n, strides[0], strides[1]) }
}

/// Copies a faer matrix into a new C-ordered NumPy array.
pub fn to_numpy<'py, T: Element + Copy>(py: Python<'py>, mat: &Mat<T>) -> Bound<'py, PyArray2<T>> {
    let (m, n) = mat.shape();
    Array2::from_shape_fn((m, n), |(i, j)| mat[(i, j)]).into_pyarray(py)
}

pub fn vec_to_numpy<'py, T: Element>(py: Python<'py>, values: Vec<T>) -> Bound<'py, PyArray1<T>> {
    values.into_pyarray(py)
}
