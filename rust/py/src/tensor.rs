//! Bindings of `lorainne_core::tensor`: dense and sparse MTTKRP and the CP-ALS loop.
//! Arrays arrive validated by the Python facade (float32/float64, C-contiguous tensors); factors
//! are copied into row-major buffers (they are small) and returned as new arrays.

use crate::convert::kwargs;
use crate::errors::{guarded, to_py};
use crate::interrupt::interruptible;
use lorainne_core::tensor::{self as core, AlsOptions, DenseTensor, SparseTensor};
use lorainne_core::{parallel, Error, Scalar};
use numpy::ndarray::{Array2, Array3};
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArrayDyn,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

/// Row-major copies of the factors (any strides in), and their common rank.
fn factors_in<T: Element + Copy>(factors: &Bound<'_, PyList>) -> PyResult<(Vec<Vec<T>>, usize)> {
    let mut out = Vec::with_capacity(factors.len());
    let mut rank = None;
    for (n, f) in factors.iter().enumerate() {
        let array: PyReadonlyArray2<T> = f.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "factors[{n}] must be a 2-D array of the tensor's dtype"
            ))
        })?;
        let view = array.as_array();
        let r = view.ncols();
        if *rank.get_or_insert(r) != r {
            return Err(to_py(Error::invalid(
                "factors",
                format!("factors[{n}] has {r} columns, factors[0] has {rank:?}"),
            )));
        }
        out.push(view.iter().copied().collect());
    }
    Ok((out, rank.unwrap_or(0)))
}

fn factors_out<'py, T: Element>(
    py: Python<'py>,
    factors: Vec<Vec<T>>,
    shape: &[usize],
    rank: usize,
) -> PyResult<Bound<'py, PyList>> {
    let arrays: Vec<Bound<'py, PyArray2<T>>> = factors
        .into_iter()
        .zip(shape)
        .map(|(f, &rows)| {
            Array2::from_shape_vec((rows, rank), f)
                .map(|a| a.into_pyarray(py))
                .map_err(|e| to_py(Error::invalid("factors", e.to_string())))
        })
        .collect::<PyResult<_>>()?;
    PyList::new(py, arrays)
}

fn contiguous<'a, T: Element>(x: &'a PyReadonlyArrayDyn<'_, T>) -> PyResult<&'a [T]> {
    x.as_slice()
        .map_err(|_| to_py(Error::invalid("x", "must be C-contiguous")))
}

/// The COO tensor's coordinates (C-contiguous) and values as slices.
fn coo_slices<'a, T: Element>(
    coords: &'a PyReadonlyArray2<'_, i64>,
    values: &'a PyReadonlyArray1<'_, T>,
) -> PyResult<(&'a [i64], &'a [T])> {
    let coords = coords
        .as_slice()
        .map_err(|_| to_py(Error::invalid("coords", "must be C-contiguous")))?;
    let values = values
        .as_slice()
        .map_err(|_| to_py(Error::invalid("values", "must be contiguous")))?;
    Ok((coords, values))
}

/// A row-major `(rows, cols)` buffer as a new array; a size mismatch is blamed on `name`.
fn matrix_out<'py, T: Element>(
    py: Python<'py>,
    data: Vec<T>,
    rows: usize,
    cols: usize,
    name: &'static str,
) -> PyResult<Bound<'py, PyAny>> {
    let array = Array2::from_shape_vec((rows, cols), data)
        .map_err(|e| to_py(Error::invalid(name, e.to_string())))?;
    Ok(array.into_pyarray(py).into_any())
}

fn mttkrp_typed<'py, T: Scalar + Element>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, T>,
    factors: &Bound<'py, PyList>,
    mode: usize,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = x.as_array().shape().to_vec();
    let data = contiguous(&x)?;
    let (factors, rank) = factors_in::<T>(factors)?;
    let m = py.detach(|| {
        guarded(|| {
            let t = DenseTensor::new(data, &shape)?;
            let refs: Vec<&[T]> = factors.iter().map(|f| f.as_slice()).collect();
            parallel::run(n_threads, |par| core::mttkrp(t, &refs, mode, rank, par))?
        })
    })?;
    let rows = shape.get(mode).copied().unwrap_or(0);
    matrix_out(py, m, rows, rank, "mode")
}

/// mttkrp(x, factors, mode, n_threads=None) -> (I_mode, R) array: X_(mode) times the
/// Khatri-Rao product of the other factors (Kolda-Bader order).
#[pyfunction]
#[pyo3(signature = (x, factors, mode, n_threads=None))]
fn mttkrp<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    factors: &Bound<'py, PyList>,
    mode: usize,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    dispatch_float!(PyReadonlyArrayDyn, x, |T| mttkrp_typed::<T>(
        py,
        x.extract()?,
        factors,
        mode,
        n_threads
    ))
}

fn result_tuple<'py, T: Element>(
    py: Python<'py>,
    result: core::AlsResult<T>,
    shape: &[usize],
    rank: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    let errors: Bound<'py, PyArray1<f64>> = result.errors.into_pyarray(py);
    let factors = factors_out(py, result.factors, shape, rank)?;
    PyTuple::new(
        py,
        [
            factors.into_any(),
            errors.into_any(),
            (result.status as u8).into_pyobject(py)?.into_any(),
            pyo3::types::PyBool::new(py, result.degenerate)
                .to_owned()
                .into_any(),
        ],
    )
}

fn cp_als_typed<'py, T: Scalar + Element>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, T>,
    factors: &Bound<'py, PyList>,
    options: AlsOptions,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let shape = x.as_array().shape().to_vec();
    let data = contiguous(&x)?;
    let (factors, rank) = factors_in::<T>(factors)?;
    let result = interruptible(py, |interrupt| {
        guarded(|| {
            let t = DenseTensor::new(data, &shape)?;
            parallel::run(n_threads, |par| {
                core::cp_als(&t, factors, rank, options, par, interrupt)
            })?
        })
    })?;
    result_tuple(py, result, &shape, rank)
}

/// The settings of `cp_als` and `cp_als_sparse`, passed by keyword.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct AlsArgs {
    n_iter_max: usize,
    tol: f64,
    l2_reg: f64,
    #[pyo3(default)]
    norm_x_sq: Option<f64>,
    #[pyo3(default)]
    nonnegative: bool,
    #[pyo3(default)]
    l1_reg: f64,
}

const ALS_KEYS: [&str; 6] = [
    "n_iter_max",
    "tol",
    "l2_reg",
    "norm_x_sq",
    "nonnegative",
    "l1_reg",
];

impl AlsArgs {
    fn parse(
        function: &str,
        options: Option<&Bound<'_, PyDict>>,
        py: Python<'_>,
    ) -> PyResult<AlsOptions> {
        let args: AlsArgs = kwargs(py, function, &ALS_KEYS, options)?.extract()?;
        Ok(AlsOptions {
            n_iter_max: args.n_iter_max,
            tol: args.tol,
            l2: args.l2_reg,
            norm_x_sq: args.norm_x_sq,
            nonnegative: args.nonnegative,
            l1: args.l1_reg,
        })
    }
}

/// cp_als(x, factors, *, n_iter_max, tol, l2_reg, n_threads=None, norm_x_sq=None,
/// nonnegative=False, l1_reg=0.0) -> (factors, errors, status, degenerate): status 0 =
/// n_iter_max reached, 1 = converged, 2 = stalled; tol <= 0 runs all sweeps; norm_x_sq (||X||^2)
/// saves a pass over X when given; nonnegative / l1_reg switch the updates to HALS columns.
#[pyfunction]
#[pyo3(signature = (x, factors, *, n_threads=None, **options))]
fn cp_als<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    factors: &Bound<'py, PyList>,
    n_threads: Option<usize>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let options = AlsArgs::parse("cp_als", options, py)?;
    dispatch_float!(PyReadonlyArrayDyn, x, |T| cp_als_typed::<T>(
        py,
        x.extract()?,
        factors,
        options,
        n_threads
    ))
}

fn cp_als_sparse_typed<'py, T: Scalar + Element>(
    py: Python<'py>,
    coords: PyReadonlyArray2<'py, i64>,
    values: PyReadonlyArray1<'py, T>,
    shape: Vec<usize>,
    factors: &Bound<'py, PyList>,
    options: AlsOptions,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let (coords, values) = coo_slices(&coords, &values)?;
    let (factors, rank) = factors_in::<T>(factors)?;
    let result = interruptible(py, |interrupt| {
        guarded(|| {
            let t = SparseTensor::new(coords, values, &shape)?;
            parallel::run(n_threads, |par| {
                core::cp_als(&t, factors, rank, options, par, interrupt)
            })?
        })
    })?;
    result_tuple(py, result, &shape, rank)
}

/// cp_als_sparse(coords, values, shape, factors, *, n_iter_max, tol, l2_reg, n_threads=None,
/// norm_x_sq=None, nonnegative=False, l1_reg=0.0): as cp_als on the COO tensor (coords (nnz, N)
/// int64, values (nnz,)).
#[pyfunction]
#[pyo3(signature = (coords, values, shape, factors, *, n_threads=None, **options))]
fn cp_als_sparse<'py>(
    py: Python<'py>,
    coords: PyReadonlyArray2<'py, i64>,
    values: &Bound<'py, PyAny>,
    shape: Vec<usize>,
    factors: &Bound<'py, PyList>,
    n_threads: Option<usize>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let options = AlsArgs::parse("cp_als_sparse", options, py)?;
    dispatch_float!(PyReadonlyArrayDyn, values, |T| cp_als_sparse_typed::<T>(
        py,
        coords,
        values.extract()?,
        shape,
        factors,
        options,
        n_threads
    ))
}

fn sparse_mttkrp_typed<'py, T: Scalar + Element>(
    py: Python<'py>,
    coords: PyReadonlyArray2<'py, i64>,
    values: PyReadonlyArray1<'py, T>,
    shape: Vec<usize>,
    factors: &Bound<'py, PyList>,
    mode: usize,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let (coords, values) = coo_slices(&coords, &values)?;
    let (factors, rank) = factors_in::<T>(factors)?;
    let m = py.detach(|| {
        guarded(|| {
            let t = SparseTensor::new(coords, values, &shape)?;
            let refs: Vec<&[T]> = factors.iter().map(|f| f.as_slice()).collect();
            parallel::run(n_threads, |par| t.mttkrp(&refs, mode, rank, par))?
        })
    })?;
    let rows = shape.get(mode).copied().unwrap_or(0);
    matrix_out(py, m, rows, rank, "mode")
}

/// sparse_mttkrp(coords, values, shape, factors, mode, n_threads=None) -> (I_mode, R) array.
#[pyfunction]
#[pyo3(signature = (coords, values, shape, factors, mode, n_threads=None))]
fn sparse_mttkrp<'py>(
    py: Python<'py>,
    coords: PyReadonlyArray2<'py, i64>,
    values: &Bound<'py, PyAny>,
    shape: Vec<usize>,
    factors: &Bound<'py, PyList>,
    mode: usize,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    dispatch_float!(PyReadonlyArrayDyn, values, |T| sparse_mttkrp_typed::<T>(
        py,
        coords,
        values.extract()?,
        shape,
        factors,
        mode,
        n_threads
    ))
}

fn contract_edge_typed<'py, T: Scalar + Element>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, T>,
    u: PyReadonlyArray2<'py, T>,
    first: bool,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = x.as_array().shape().to_vec();
    let data = contiguous(&x)?;
    let view = u.as_array();
    let rank = view.ncols();
    let u: Vec<T> = view.iter().copied().collect();
    let out = py.detach(|| {
        guarded(|| {
            let t = DenseTensor::new(data, &shape)?;
            parallel::run(n_threads, |par| {
                core::dense::contract_edge(t, &u, rank, first, par)
            })?
        })
    })?;
    let rows = out.len().checked_div(rank).unwrap_or(0);
    matrix_out(py, out, rows, rank, "u")
}

/// contract_edge(x, u, first, n_threads=None) -> X_(0)^T u (first) or X_(N-1)^T u (last), with
/// the other modes' indices in C order: the mode product on an edge mode, transposed.
#[pyfunction]
#[pyo3(signature = (x, u, first, n_threads=None))]
fn contract_edge<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    u: &Bound<'py, PyAny>,
    first: bool,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    dispatch_float!(PyReadonlyArrayDyn, x, |T| contract_edge_typed::<T>(
        py,
        x.extract()?,
        u.extract()?,
        first,
        n_threads
    ))
}

fn parafac2_project_typed<'py, T: Scalar + Element>(
    py: Python<'py>,
    x: PyReadonlyArrayDyn<'py, T>,
    rows: Vec<usize>,
    factors: &Bound<'py, PyList>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    let shape = x.as_array().shape().to_vec();
    let [k, n, j]: [usize; 3] = shape.as_slice().try_into().map_err(|_| {
        to_py(Error::invalid(
            "x",
            format!("must be 3-D, got shape {shape:?}"),
        ))
    })?;
    let data = contiguous(&x)?;
    let (factors, rank) = factors_in::<T>(factors)?;
    if factors.len() != 3 {
        return Err(to_py(Error::invalid(
            "factors",
            format!("must be [A, B, C], got {} arrays", factors.len()),
        )));
    }
    let out = py.detach(|| {
        guarded(|| {
            let refs = [&factors[0][..], &factors[1][..], &factors[2][..]];
            parallel::run(n_threads, |par| {
                core::parafac2_project(data, [k, n, j], &rows, refs, rank, par)
            })?
        })
    })?;
    let bad = |e: numpy::ndarray::ShapeError| to_py(Error::invalid("x", e.to_string()));
    let projections = Array3::from_shape_vec((k, n, rank), out.projections).map_err(bad)?;
    let projected = Array3::from_shape_vec((k, rank, j), out.projected).map_err(bad)?;
    PyTuple::new(
        py,
        [
            projections.into_pyarray(py).into_any(),
            projected.into_pyarray(py).into_any(),
            out.norm_sq.into_pyobject(py)?.into_any(),
        ],
    )
}

/// parafac2_project(x, rows, factors, n_threads=None) -> (P (K, n, R), Y (K, R, J), |Y|^2): the
/// PARAFAC2 projection step on the zero-padded (K, n, J) stack whose slice k has rows[k] rows.
#[pyfunction]
#[pyo3(signature = (x, rows, factors, n_threads=None))]
fn parafac2_project<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    rows: Vec<usize>,
    factors: &Bound<'py, PyList>,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    dispatch_float!(PyReadonlyArrayDyn, x, |T| parafac2_project_typed::<T>(
        py,
        x.extract()?,
        rows,
        factors,
        n_threads
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(contract_edge, m)?)?;
    m.add_function(wrap_pyfunction!(mttkrp, m)?)?;
    m.add_function(wrap_pyfunction!(cp_als, m)?)?;
    m.add_function(wrap_pyfunction!(cp_als_sparse, m)?)?;
    m.add_function(wrap_pyfunction!(sparse_mttkrp, m)?)?;
    m.add_function(wrap_pyfunction!(parafac2_project, m)?)?;
    Ok(())
}
