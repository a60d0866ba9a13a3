//! Bindings of `lorainne_core::randomized`: QR factorizations, range finder, randomized SVD.
//! The QR and randomized SVD functions take float32, float64, complex64 or complex128 arrays
//! (the Python facade has validated them).

use crate::convert::{to_numpy, vec_to_numpy, view};
use crate::errors::guarded;
use crate::interrupt::interruptible;
use lorainne_core::randomized::{self as core, Orthonormalizer, PowerIterations};
use lorainne_core::{parallel, Error, Field, Scalar};
use numpy::{
    Element, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArrayDyn,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

type Matrix<'py, T> = Bound<'py, PyArray2<T>>;

fn orthonormalizer(name: &str) -> PyResult<Orthonormalizer> {
    match name {
        "cholesky" => Ok(Orthonormalizer::CholeskyQr2),
        "householder" => Ok(Orthonormalizer::Householder),
        other => Err(crate::errors::to_py(Error::invalid(
            "qr",
            format!("unknown method {other:?}"),
        ))),
    }
}

fn householder_qr_typed<'py, T: Field + Element>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, T>,
    block_size: Option<usize>,
    n_threads: Option<usize>,
) -> PyResult<(Matrix<'py, T>, Matrix<'py, T>)> {
    let a = view(&a);
    let (q, r) = py.detach(|| {
        guarded(|| parallel::run(n_threads, |par| core::householder_qr(a, block_size, par)))
    })?;
    Ok((to_numpy(py, &q)?, to_numpy(py, &r)?))
}

/// householder_qr(a, block_size=None, n_threads=None) -> (Q, R), reduced, diag(R) real >= 0.
#[pyfunction]
#[pyo3(signature = (a, block_size=None, n_threads=None))]
fn householder_qr<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    block_size: Option<usize>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    dispatch_field!(PyReadonlyArray2, a, |T| {
        let (q, r) = householder_qr_typed::<T>(py, a.extract()?, block_size, n_threads)?;
        PyTuple::new(py, [q.into_any(), r.into_any()])
    })
}

fn cholesky_qr2_typed<'py, T: Field + Element>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, T>,
    n_threads: Option<usize>,
) -> PyResult<(Matrix<'py, T>, Matrix<'py, T>, u8)> {
    let a = view(&a);
    let (q, r, method) =
        py.detach(|| guarded(|| parallel::run(n_threads, |par| core::cholesky_qr2(a, par))))?;
    Ok((to_numpy(py, &q)?, to_numpy(py, &r)?, method as u8))
}

/// cholesky_qr2(a, n_threads=None) -> (Q, R, method) with method 0 = CholeskyQR2,
/// 1 = shifted CholeskyQR3, 2 = Householder.
#[pyfunction]
#[pyo3(signature = (a, n_threads=None))]
fn cholesky_qr2<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    dispatch_field!(PyReadonlyArray2, a, |T| {
        let (q, r, method) = cholesky_qr2_typed::<T>(py, a.extract()?, n_threads)?;
        PyTuple::new(
            py,
            [
                q.into_any(),
                r.into_any(),
                method.into_pyobject(py)?.into_any(),
            ],
        )
    })
}

fn range_finder_typed<'py, T: Field + Element>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, T>,
    start: PyReadonlyArray2<'py, T>,
    start_is_range: bool,
    iterations: PowerIterations,
    n_threads: Option<usize>,
) -> PyResult<Matrix<'py, T>> {
    let (a, start) = (view(&a), view(&start));
    let q = interruptible(py, |interrupt| {
        guarded(|| {
            parallel::run(n_threads, |par| {
                core::range_finder(a, start, start_is_range, &iterations, par, interrupt)
            })?
        })
    })?;
    to_numpy(py, &q)
}

/// range_finder(a, start, start_is_range, n_power_iter, qr, n_threads=None) -> Q.
#[pyfunction]
#[pyo3(signature = (a, start, start_is_range, n_power_iter, qr, n_threads=None))]
fn range_finder<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    start: &Bound<'py, PyAny>,
    start_is_range: bool,
    n_power_iter: usize,
    qr: &str,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let iterations = PowerIterations {
        n_power_iter,
        orthonormalizer: orthonormalizer(qr)?,
    };
    dispatch_field!(PyReadonlyArray2, a, |T| Ok(range_finder_typed::<T>(
        py,
        a.extract()?,
        start.extract()?,
        start_is_range,
        iterations,
        n_threads
    )?
    .into_any()))
}

type SvdTriplet<'py, T> = (
    Matrix<'py, T>,
    Bound<'py, PyArray1<<T as faer::traits::ComplexField>::Real>>,
    Matrix<'py, T>,
);

fn randomized_svd_typed<'py, T: Field<Real: Element> + Element>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, T>,
    start: PyReadonlyArray2<'py, T>,
    start_is_range: bool,
    rank: usize,
    iterations: PowerIterations,
    n_threads: Option<usize>,
) -> PyResult<SvdTriplet<'py, T>> {
    let (a, start) = (view(&a), view(&start));
    let (u, s, vt) = interruptible(py, |interrupt| {
        guarded(|| {
            parallel::run(n_threads, |par| {
                core::randomized_svd(a, start, start_is_range, rank, &iterations, par, interrupt)
            })?
        })
    })?;
    Ok((to_numpy(py, &u)?, vec_to_numpy(py, s), to_numpy(py, &vt)?))
}

/// randomized_svd(a, start, start_is_range, rank, n_power_iter, qr, n_threads=None) -> (U, S, Vt).
#[pyfunction]
#[pyo3(signature = (a, start, start_is_range, rank, n_power_iter, qr, n_threads=None))]
fn randomized_svd<'py>(
    a: &Bound<'py, PyAny>,
    start: &Bound<'py, PyAny>,
    start_is_range: bool,
    rank: usize,
    n_power_iter: usize,
    qr: &str,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let py = a.py();
    let iterations = PowerIterations {
        n_power_iter,
        orthonormalizer: orthonormalizer(qr)?,
    };
    dispatch_field!(PyReadonlyArray2, a, |T| {
        let (u, s, vt) = randomized_svd_typed::<T>(
            py,
            a.extract()?,
            start.extract()?,
            start_is_range,
            rank,
            iterations,
            n_threads,
        )?;
        PyTuple::new(py, [u.into_any(), s.into_any(), vt.into_any()])
    })
}

fn matmul_typed<'py, T: Field + Element>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, T>,
    b: PyReadonlyArray2<'py, T>,
    n_threads: Option<usize>,
    adjoint: bool,
) -> PyResult<Matrix<'py, T>> {
    let (a, b) = (view(&a), view(&b));
    let inner = if adjoint { a.nrows() } else { a.ncols() };
    if inner != b.nrows() {
        return Err(crate::errors::to_py(Error::invalid(
            "b",
            format!("has {} rows, expected {inner}", b.nrows()),
        )));
    }
    let c = py.detach(|| {
        guarded(|| {
            parallel::run(n_threads, |par| {
                if adjoint {
                    core::adjoint_product(a, b, par)
                } else {
                    core::product(a, b, par)
                }
            })
        })
    })?;
    to_numpy(py, &c)
}

/// matmul(a, b, n_threads=None, adjoint=False) -> a @ b (a^H @ b with adjoint) with faer's GEMM:
/// the products of block Krylov on the Rust backend, and the benchmarks' measure of peak rate.
#[pyfunction]
#[pyo3(signature = (a, b, n_threads=None, adjoint=false))]
fn matmul<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
    n_threads: Option<usize>,
    adjoint: bool,
) -> PyResult<Bound<'py, PyAny>> {
    dispatch_field!(PyReadonlyArray2, a, |T| Ok(matmul_typed::<T>(
        py,
        a.extract()?,
        b.extract()?,
        n_threads,
        adjoint
    )?
    .into_any()))
}

fn max_abs_typed<T: Scalar + Element>(
    py: Python<'_>,
    a: PyReadonlyArrayDyn<'_, T>,
    n_threads: Option<usize>,
) -> PyResult<f64> {
    let values = a.as_slice().map_err(|_| {
        crate::errors::to_py(Error::invalid("a", "must be C- or Fortran-contiguous"))
    })?;
    let top =
        py.detach(|| guarded(|| parallel::run(n_threads, |par| core::max_abs(values, par))))?;
    Ok(top.to_f64())
}

/// max_abs(a, n_threads=None) -> the largest |a_i| of a contiguous float array in one read (NaN
/// when an entry is NaN or infinite; 0.0 when empty).
#[pyfunction]
#[pyo3(signature = (a, n_threads=None))]
fn max_abs(py: Python<'_>, a: &Bound<'_, PyAny>, n_threads: Option<usize>) -> PyResult<f64> {
    dispatch_float!(PyReadonlyArrayDyn, a, |T| max_abs_typed::<T>(
        py,
        a.extract()?,
        n_threads
    ))
}

/// All eigenvalues and the top eigenvectors (rows).
type EigenPairs<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<f64>>);

/// tridiagonal_eigh_top(d, e, k) -> (w, vectors) or None: all eigenvalues w (ascending) of the
/// symmetric tridiagonal matrix with diagonal d and off-diagonal e, and the eigenvectors of its k
/// largest as the rows of a k x n array (ascending); None when its own checks fail.
#[pyfunction]
fn tridiagonal_eigh_top<'py>(
    py: Python<'py>,
    d: PyReadonlyArray1<'py, f64>,
    e: PyReadonlyArray1<'py, f64>,
    k: usize,
) -> PyResult<Option<EigenPairs<'py>>> {
    let contiguous = |name| crate::errors::to_py(Error::invalid(name, "must be contiguous"));
    let (d, e) = (
        d.as_slice().map_err(|_| contiguous("d"))?,
        e.as_slice().map_err(|_| contiguous("e"))?,
    );
    let n = d.len();
    let Some((w, vectors)) = py.detach(|| guarded(|| core::tridiagonal_eigh_top(d, e, k)))? else {
        return Ok(None);
    };
    let vectors = vec_to_numpy(py, vectors).reshape([k, n])?;
    Ok(Some((vec_to_numpy(py, w), vectors)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tridiagonal_eigh_top, m)?)?;
    m.add_function(wrap_pyfunction!(matmul, m)?)?;
    m.add_function(wrap_pyfunction!(max_abs, m)?)?;
    m.add_function(wrap_pyfunction!(householder_qr, m)?)?;
    m.add_function(wrap_pyfunction!(cholesky_qr2, m)?)?;
    m.add_function(wrap_pyfunction!(range_finder, m)?)?;
    m.add_function(wrap_pyfunction!(randomized_svd, m)?)?;
    Ok(())
}
