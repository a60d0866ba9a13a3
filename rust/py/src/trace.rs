//! Bindings of `lorainne_core::trace`: Chebyshev moments and batched Lanczos on explicit dense
//! or CSR matrices. The Python facade has validated the arguments; the GIL is released around
//! every kernel.

use crate::convert::{vec_to_numpy, view};
use crate::errors::guarded;
use crate::interrupt::interruptible;
use lorainne_core::trace::{self as core, CsrRef, Operator};
use lorainne_core::{parallel, Scalar};
use numpy::{Element, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// The parameters of the Chebyshev moments: A_hat = (A - center) / half_width, `n_steps` block
/// products, full s x s blocks or their diagonals.
#[derive(Clone, Copy)]
struct Chebyshev {
    center: f64,
    half_width: f64,
    n_steps: usize,
    full: bool,
}

/// The typed arrays of a CSR matrix, borrowed from NumPy.
struct CsrArrays<'py, T: Element> {
    indptr: PyReadonlyArray1<'py, i64>,
    indices: PyReadonlyArray1<'py, i64>,
    data: PyReadonlyArray1<'py, T>,
    ncols: usize,
}

fn moments_typed<'py, T: Scalar + Element>(
    a: PyReadonlyArray2<'py, T>,
    x: PyReadonlyArray2<'py, T>,
    cheb: Chebyshev,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let py = a.py();
    let (a, x) = (view(&a), view(&x));
    let out = interruptible(py, |interrupt| {
        guarded(|| {
            parallel::run(n_threads, |par| {
                core::chebyshev_moments(
                    Operator::Dense(a),
                    x,
                    cheb.center,
                    cheb.half_width,
                    cheb.n_steps,
                    cheb.full,
                    par,
                    interrupt,
                )
            })?
        })
    })?;
    Ok(vec_to_numpy(py, out))
}

/// trace_chebyshev(a, x, center, half_width, n_steps, full, n_threads=None) -> moments (flat f64).
#[pyfunction]
#[pyo3(signature = (a, x, center, half_width, n_steps, full, n_threads=None))]
fn trace_chebyshev<'py>(
    a: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    center: f64,
    half_width: f64,
    n_steps: usize,
    full: bool,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let cheb = Chebyshev {
        center,
        half_width,
        n_steps,
        full,
    };
    dispatch_float!(PyReadonlyArray2, a, |T| Ok(moments_typed::<T>(
        a.extract()?,
        x.extract()?,
        cheb,
        n_threads
    )?
    .into_any()))
}

fn moments_csr_typed<'py, T: Scalar + Element>(
    py: Python<'py>,
    csr: CsrArrays<'py, T>,
    x: PyReadonlyArray2<'py, T>,
    cheb: Chebyshev,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (indptr, indices, data) = (
        csr.indptr.as_slice()?,
        csr.indices.as_slice()?,
        csr.data.as_slice()?,
    );
    let ncols = csr.ncols;
    let x = view(&x);
    let out = interruptible(py, |interrupt| {
        guarded(|| {
            let csr = CsrRef::new(ncols, indptr, indices, data)?;
            parallel::run(n_threads, |par| {
                core::chebyshev_moments(
                    Operator::Csr(csr),
                    x,
                    cheb.center,
                    cheb.half_width,
                    cheb.n_steps,
                    cheb.full,
                    par,
                    interrupt,
                )
            })?
        })
    })?;
    Ok(vec_to_numpy(py, out))
}

/// trace_chebyshev_csr(indptr, indices, data, ncols, x, center, half_width, n_steps, full,
/// n_threads=None) -> moments (flat f64).
// The one binding over clippy's argument count: its positional Python signature (SciPy's CSR
// triplet, ncols, then trace_chebyshev's arguments) is what callers and tests use; the typed
// kernel below takes the `CsrArrays` and `Chebyshev` structs.
#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, ncols, x, center, half_width, n_steps, full, n_threads=None))]
fn trace_chebyshev_csr<'py>(
    indptr: PyReadonlyArray1<'py, i64>,
    indices: PyReadonlyArray1<'py, i64>,
    data: &Bound<'py, PyAny>,
    ncols: usize,
    x: &Bound<'py, PyAny>,
    center: f64,
    half_width: f64,
    n_steps: usize,
    full: bool,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = x.py();
    let cheb = Chebyshev {
        center,
        half_width,
        n_steps,
        full,
    };
    dispatch_float!(PyReadonlyArray1, data, |T| Ok(moments_csr_typed::<T>(
        py,
        CsrArrays {
            indptr,
            indices,
            data: data.extract()?,
            ncols
        },
        x.extract()?,
        cheb,
        n_threads
    )?
    .into_any()))
}

fn lanczos_tuple<'py>(
    py: Python<'py>,
    (alpha, beta): (Vec<f64>, Vec<f64>),
) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            vec_to_numpy(py, alpha).into_any(),
            vec_to_numpy(py, beta).into_any(),
        ],
    )
}

fn lanczos_typed<'py, T: Scalar + Element>(
    py: Python<'py>,
    a: PyReadonlyArray2<'py, T>,
    v0: PyReadonlyArray2<'py, T>,
    n_steps: usize,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let (a, v0) = (view(&a), view(&v0));
    let out = interruptible(py, |interrupt| {
        guarded(|| {
            parallel::run(n_threads, |par| {
                core::lanczos(Operator::Dense(a), v0, n_steps, par, interrupt)
            })?
        })
    })?;
    lanczos_tuple(py, out)
}

/// trace_lanczos(a, v0, n_steps, n_threads=None) -> (alpha, beta), flat f64 (s * n_steps each).
#[pyfunction]
#[pyo3(signature = (a, v0, n_steps, n_threads=None))]
fn trace_lanczos<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    v0: &Bound<'py, PyAny>,
    n_steps: usize,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    dispatch_float!(PyReadonlyArray2, a, |T| lanczos_typed::<T>(
        py,
        a.extract()?,
        v0.extract()?,
        n_steps,
        n_threads
    ))
}

fn lanczos_csr_typed<'py, T: Scalar + Element>(
    py: Python<'py>,
    csr: CsrArrays<'py, T>,
    v0: PyReadonlyArray2<'py, T>,
    n_steps: usize,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let (indptr, indices, data) = (
        csr.indptr.as_slice()?,
        csr.indices.as_slice()?,
        csr.data.as_slice()?,
    );
    let ncols = csr.ncols;
    let v0 = view(&v0);
    let out = interruptible(py, |interrupt| {
        guarded(|| {
            let csr = CsrRef::new(ncols, indptr, indices, data)?;
            parallel::run(n_threads, |par| {
                core::lanczos(Operator::Csr(csr), v0, n_steps, par, interrupt)
            })?
        })
    })?;
    lanczos_tuple(py, out)
}

/// trace_lanczos_csr(indptr, indices, data, ncols, v0, n_steps, n_threads=None) -> (alpha, beta).
#[pyfunction]
#[pyo3(signature = (indptr, indices, data, ncols, v0, n_steps, n_threads=None))]
fn trace_lanczos_csr<'py>(
    indptr: PyReadonlyArray1<'py, i64>,
    indices: PyReadonlyArray1<'py, i64>,
    data: &Bound<'py, PyAny>,
    ncols: usize,
    v0: &Bound<'py, PyAny>,
    n_steps: usize,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let py = data.py();
    dispatch_float!(PyReadonlyArray1, data, |T| lanczos_csr_typed::<T>(
        py,
        CsrArrays {
            indptr,
            indices,
            data: data.extract()?,
            ncols
        },
        v0.extract()?,
        n_steps,
        n_threads
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(trace_chebyshev, m)?)?;
    m.add_function(wrap_pyfunction!(trace_chebyshev_csr, m)?)?;
    m.add_function(wrap_pyfunction!(trace_lanczos, m)?)?;
    m.add_function(wrap_pyfunction!(trace_lanczos_csr, m)?)?;
    Ok(())
}
