//! Bindings of `lorainne_core::completion`: the per-row regressions of an alternating-minimization
//! half-step over a CSR matrix of observed entries (float64). The Python facade has validated the
//! arguments; the GIL is released around every kernel.

use crate::errors::guarded;
use faer::Par;
use lorainne_core::completion::{
    self as core, ColIndex, HalfStep, RowNumbers, RowProblem, RowSolver,
};
use lorainne_core::parallel;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

fn contiguous<'a>(a: &'a PyReadonlyArray2<'_, f64>, name: &str) -> PyResult<&'a [f64]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

/// The solved rows, CG steps, underdetermined rows, empty rows and squared residual.
type SolveRowsOut<'py> = (Bound<'py, PyArray2<f64>>, usize, usize, usize, f64);

/// completion_solve_rows(indptr, indices, data, factor, x0, reg, reg_under, solver, cg_max_iter,
/// cg_tol, q, lam, n_threads=None, residual=False) -> (x, cg_iterations, underdetermined, empty,
/// sq_residual) (sq_residual: the new rows' squared residual over the observed entries, or 0;
/// indices: int32 or int64, read as they are).
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, factor, x0, reg, reg_under, solver, cg_max_iter, cg_tol, q, lam, n_threads=None, residual=false))]
#[allow(clippy::too_many_arguments)]
fn completion_solve_rows<'py>(
    py: Python<'py>,
    indptr: PyReadonlyArray1<'py, i64>,
    indices: IndexArray<'py>,
    data: PyReadonlyArray1<'py, f64>,
    factor: PyReadonlyArray2<'py, f64>,
    x0: PyReadonlyArray2<'py, f64>,
    reg: f64,
    reg_under: f64,
    solver: &str,
    cg_max_iter: usize,
    cg_tol: f64,
    q: PyReadonlyArray2<'py, f64>,
    lam: PyReadonlyArray1<'py, f64>,
    n_threads: Option<usize>,
    residual: bool,
) -> PyResult<SolveRowsOut<'py>> {
    let solver = match solver {
        "exact" => RowSolver::Exact,
        "cg" => RowSolver::Cg {
            max_iter: cg_max_iter,
            tol: cg_tol,
        },
        other => {
            return Err(PyValueError::new_err(format!(
                "solver must be 'cg' or 'exact', got {other:?}"
            )))
        }
    };
    let (m, k) = (x0.shape()[0], x0.shape()[1]);
    if factor.shape()[1] != k {
        return Err(PyValueError::new_err(
            "factor and x0 must have the same number of columns",
        ));
    }
    let n = factor.shape()[0];
    let (indptr, data) = (indptr.as_slice()?, data.as_slice()?);
    let (factor, q, lam) = (
        contiguous(&factor, "factor")?,
        q.as_slice()?,
        lam.as_slice()?,
    );
    let mut x = contiguous(&x0, "x0")?.to_vec();
    macro_rules! problem {
        ($indices:expr) => {
            RowProblem {
                indptr,
                indices: $indices,
                data,
                factor,
                n,
                k,
                reg,
                reg_under,
                solver,
                q,
                lam,
            }
        };
    }
    let stats = match &indices {
        IndexArray::I32(a) => {
            solve_with(py, &problem!(a.as_slice()?), &mut x, n_threads, residual)?
        }
        IndexArray::I64(a) => {
            solve_with(py, &problem!(a.as_slice()?), &mut x, n_threads, residual)?
        }
    };
    let out = numpy::ndarray::Array2::from_shape_vec((m, k), x)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((
        out.into_pyarray(py),
        stats.cg_iterations,
        stats.underdetermined,
        stats.empty,
        stats.sq_residual,
    ))
}

/// One half-step with the GIL released, for either index type.
fn solve_with<I: ColIndex>(
    py: Python<'_>,
    problem: &RowProblem<'_, I>,
    x: &mut [f64],
    n_threads: Option<usize>,
    residual: bool,
) -> PyResult<HalfStep> {
    py.detach(|| {
        guarded(|| {
            parallel::run(n_threads, |par| {
                core::solve_rows(problem, x, !matches!(par, Par::Seq), residual)
            })?
        })
    })
}

/// completion_observed_error(indptr, indices, data, u, v, n_threads=None) -> sum of squared residuals.
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, u, v, n_threads=None))]
fn completion_observed_error<'py>(
    py: Python<'py>,
    indptr: PyReadonlyArray1<'py, i64>,
    indices: PyReadonlyArray1<'py, i64>,
    data: PyReadonlyArray1<'py, f64>,
    u: PyReadonlyArray2<'py, f64>,
    v: PyReadonlyArray2<'py, f64>,
    n_threads: Option<usize>,
) -> PyResult<f64> {
    let (k, n) = (u.shape()[1], v.shape()[0]);
    if v.shape()[1] != k {
        return Err(PyValueError::new_err(
            "u and v must have the same number of columns",
        ));
    }
    let (indptr, indices, data) = (indptr.as_slice()?, indices.as_slice()?, data.as_slice()?);
    let (u, v) = (contiguous(&u, "u")?, contiguous(&v, "v")?);
    py.detach(|| {
        guarded(|| {
            parallel::run(n_threads, |par| {
                core::observed_sq_error(indptr, indices, data, u, v, n, k, !matches!(par, Par::Seq))
            })?
        })
    })
}

/// completion_csr_product(indptr, indices, data, x, n_threads=None, low_precision=False) -> A @ x
/// for the CSR matrix A = (indptr, indices, data) with x.shape[0] columns (the product with A^T:
/// the same call on the CSR of the transpose; low_precision: x is gathered from an f32 copy).
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, x, n_threads=None, low_precision=false))]
fn completion_csr_product<'py>(
    py: Python<'py>,
    indptr: PyReadonlyArray1<'py, i64>,
    indices: IndexArray<'py>,
    data: PyReadonlyArray1<'py, f64>,
    x: PyReadonlyArray2<'py, f64>,
    n_threads: Option<usize>,
    low_precision: bool,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let (n, w) = (x.shape()[0], x.shape()[1]);
    let m = indptr.len().saturating_sub(1);
    let (indptr, data) = (indptr.as_slice()?, data.as_slice()?);
    let x = contiguous(&x, "x")?;
    fn product<I: ColIndex>(
        py: Python<'_>,
        (indptr, indices, data): (&[i64], &[I], &[f64]),
        x: &[f64],
        (n, w): (usize, usize),
        n_threads: Option<usize>,
        low_precision: bool,
    ) -> PyResult<Vec<f64>> {
        py.detach(|| {
            guarded(|| {
                parallel::run(n_threads, |par| {
                    let parallel = !matches!(par, Par::Seq);
                    core::csr_times_dense(indptr, indices, data, x, n, w, parallel, low_precision)
                })?
            })
        })
    }
    let y = match &indices {
        IndexArray::I32(a) => product(
            py,
            (indptr, a.as_slice()?, data),
            x,
            (n, w),
            n_threads,
            low_precision,
        )?,
        IndexArray::I64(a) => product(
            py,
            (indptr, a.as_slice()?, data),
            x,
            (n, w),
            n_threads,
            low_precision,
        )?,
    };
    let out = numpy::ndarray::Array2::from_shape_vec((m, w), y)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(out.into_pyarray(py))
}

/// A CSR index array as SciPy stores it: int32 or int64.
#[derive(FromPyObject)]
enum IndexArray<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

/// The CSR of the transpose: pointers, row numbers (int32 where they fit, else int64), values, and
/// whether every value is finite.
type TransposeOut<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyAny>,
    Bound<'py, PyArray1<f64>>,
    bool,
);

/// completion_transpose(indptr, indices, data, n) -> (t_indptr, t_indices, t_data, finite): the CSR
/// of the transpose of the m x n CSR matrix (int32 or int64 indices, int64 pointers; repeated
/// entries kept, rows in order within each column, as SciPy's tocsc()), and whether the values are
/// finite. The structure is checked (ValueError naming indptr or indices); the input is only read.
#[pyfunction]
fn completion_transpose<'py>(
    py: Python<'py>,
    indptr: PyReadonlyArray1<'py, i64>,
    indices: IndexArray<'py>,
    data: PyReadonlyArray1<'py, f64>,
    n: usize,
) -> PyResult<TransposeOut<'py>> {
    let (indptr, data) = (indptr.as_slice()?, data.as_slice()?);
    let t = match &indices {
        IndexArray::I32(a) => {
            let a = a.as_slice()?;
            py.detach(|| guarded(|| core::csr_transpose(indptr, a, data, n)))?
        }
        IndexArray::I64(a) => {
            let a = a.as_slice()?;
            py.detach(|| guarded(|| core::csr_transpose(indptr, a, data, n)))?
        }
    };
    let rows = match t.indices {
        RowNumbers::Narrow(v) => v.into_pyarray(py).into_any(),
        RowNumbers::Wide(v) => v.into_pyarray(py).into_any(),
    };
    Ok((
        t.indptr.into_pyarray(py),
        rows,
        t.data.into_pyarray(py),
        t.finite,
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(completion_solve_rows, m)?)?;
    m.add_function(wrap_pyfunction!(completion_observed_error, m)?)?;
    m.add_function(wrap_pyfunction!(completion_csr_product, m)?)?;
    m.add_function(wrap_pyfunction!(completion_transpose, m)?)?;
    Ok(())
}
