//! Bindings of `lorainne_core::ot`: log-domain Sinkhorn and the hierarchical Gaussian kernel.
//! Arrays are C-contiguous float64 (the Python facade converts); the core builds the k-d trees
//! (one permuted copy of the points) and maps values to and from tree order.

use crate::convert::kwargs;
use crate::errors::{guarded, to_py};
use crate::interrupt::interruptible;
use lorainne_core::ot::{
    log_apply_columns_in_order, log_apply_in_order, sinkhorn, sinkhorn_symmetric, KdTree,
    KernelOptions, KernelStats as CoreStats, Progress, SinkhornOptions, SinkhornOutput,
    StoredKernel,
};
use lorainne_core::{parallel, Error};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// `log_apply_columns`' result: the log sums (targets,) and the ratios (targets, k).
type LogSumsAndRatios<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray2<f64>>);

/// The points of a C-contiguous (n, d) array as a row-major slice, and d (no copy).
fn points<'a>(a: &'a PyReadonlyArray2<'_, f64>, name: &str) -> PyResult<(&'a [f64], usize)> {
    let d = a.as_array().ncols();
    let slice = a
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))?;
    Ok((slice, d))
}

fn same_dimension(d: usize, dy: usize) -> PyResult<()> {
    if d != dy {
        return Err(to_py(Error::invalid(
            "y",
            format!("has {dy} columns, x has {d}"),
        )));
    }
    Ok(())
}

/// Block counts and work of one kernel application.
#[pyclass(module = "lorainne._core", name = "KernelStats", frozen, get_all)]
#[derive(Clone)]
struct PyKernelStats {
    near_blocks: u64,
    far_blocks: u64,
    pruned_blocks: u64,
    near_entries: u64,
    far_terms: u64,
    max_order: u64,
    far_cached: u64,
    far_rows: u64,
    far_general: u64,
    far_general_points: u64,
    cache_order: u64,
}

impl From<&CoreStats> for PyKernelStats {
    fn from(s: &CoreStats) -> Self {
        PyKernelStats {
            near_blocks: s.near_blocks,
            far_blocks: s.far_blocks,
            pruned_blocks: s.pruned_blocks,
            near_entries: s.near_entries,
            far_terms: s.far_terms,
            max_order: s.max_order,
            far_cached: s.far_cached,
            far_rows: s.far_rows,
            far_general: s.far_general,
            far_general_points: s.far_general_points,
            cache_order: s.cache_order,
        }
    }
}

#[pymethods]
impl PyKernelStats {
    /// The counts as a dict (field name -> value).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("near_blocks", self.near_blocks)?;
        dict.set_item("far_blocks", self.far_blocks)?;
        dict.set_item("pruned_blocks", self.pruned_blocks)?;
        dict.set_item("near_entries", self.near_entries)?;
        dict.set_item("far_terms", self.far_terms)?;
        dict.set_item("max_order", self.max_order)?;
        dict.set_item("far_cached", self.far_cached)?;
        dict.set_item("far_rows", self.far_rows)?;
        dict.set_item("far_general", self.far_general)?;
        dict.set_item("far_general_points", self.far_general_points)?;
        dict.set_item("cache_order", self.cache_order)?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        format!(
            "KernelStats(near_blocks={}, far_blocks={}, pruned_blocks={}, near_entries={}, far_terms={}, max_order={}, \
             far_cached={}, far_rows={}, far_general={}, far_general_points={}, cache_order={})",
            self.near_blocks,
            self.far_blocks,
            self.pruned_blocks,
            self.near_entries,
            self.far_terms,
            self.max_order,
            self.far_cached,
            self.far_rows,
            self.far_general,
            self.far_general_points,
            self.cache_order
        )
    }
}

/// The outcome of `sinkhorn_log`: potentials f, g (caller's point order), iterations, the
/// marginal error of the returned potentials, primal cost and dual value, kernel statistics and
/// the bytes held by the trees.
#[pyclass(module = "lorainne._core", frozen, get_all)]
struct SinkhornResult {
    f: Py<PyArray1<f64>>,
    g: Py<PyArray1<f64>>,
    n_iter: usize,
    marginal_error: f64,
    converged: bool,
    cost: f64,
    dual: f64,
    stats: Py<PyKernelStats>,
    memory_bytes: usize,
}

/// The scalar settings of `sinkhorn_log`, passed by keyword.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct SinkhornArgs {
    eps: f64,
    tol: f64,
    n_iter_max: usize,
    kernel_tol: f64,
    leaf_size: usize,
    #[pyo3(default)]
    eps_scaling: Option<f64>,
    #[pyo3(default)]
    exact: bool,
    #[pyo3(default = true)]
    relax: bool,
    /// Anderson memory of the accelerated stage (0: over-relaxation).
    #[pyo3(default)]
    anderson: usize,
    /// Points per leaf of the early stages' coarse clouds (0: no multiscale warm start).
    #[pyo3(default)]
    coarse_leaf: usize,
    /// KL penalties of the two marginals (None: balanced).
    #[pyo3(default)]
    rho_a: Option<f64>,
    #[pyo3(default)]
    rho_b: Option<f64>,
    /// The mass the marginal error is divided by.
    #[pyo3(default = 1.0)]
    mass: f64,
    /// The stored stabilized kernel on the full clouds (method="matrix").
    #[pyo3(default)]
    stored: bool,
}

const SINKHORN_KEYS: [&str; 14] = [
    "eps",
    "tol",
    "n_iter_max",
    "kernel_tol",
    "leaf_size",
    "eps_scaling",
    "exact",
    "relax",
    "anderson",
    "coarse_leaf",
    "rho_a",
    "rho_b",
    "mass",
    "stored",
];

impl SinkhornArgs {
    fn options(&self, parallel: bool) -> SinkhornOptions {
        SinkhornOptions {
            eps: self.eps,
            tol: self.tol,
            n_iter_max: self.n_iter_max,
            eps_scaling: self.eps_scaling,
            kernel_tol: self.kernel_tol,
            exact: self.exact,
            leaf_size: self.leaf_size,
            parallel,
            relax: self.relax,
            anderson: self.anderson,
            coarse_leaf: self.coarse_leaf,
            rho_a: self.rho_a.unwrap_or(f64::INFINITY),
            rho_b: self.rho_b.unwrap_or(f64::INFINITY),
            mass: self.mass,
            stored: self.stored,
        }
    }
}

/// The solver's output as the Python result.
fn to_result(py: Python<'_>, out: SinkhornOutput) -> PyResult<SinkhornResult> {
    Ok(SinkhornResult {
        f: out.f.into_pyarray(py).unbind(),
        g: out.g.into_pyarray(py).unbind(),
        n_iter: out.n_iter,
        marginal_error: out.marginal_error,
        converged: out.converged,
        cost: out.cost,
        dual: out.dual,
        stats: Py::new(py, PyKernelStats::from(&out.stats))?,
        memory_bytes: out.memory_bytes,
    })
}

/// Runs `solve` with the options, on a pool of `n_threads`, interruptibly, with the Python
/// callback `callback(n_iter, eps, marginal_error) -> bool` wired in.
fn run_solver(
    py: Python<'_>,
    args: &SinkhornArgs,
    n_threads: Option<usize>,
    callback: Option<Py<PyAny>>,
    solve: impl Fn(
            &SinkhornOptions,
            &mut dyn FnMut(&Progress) -> bool,
            &lorainne_core::interrupt::Interrupt,
        ) -> lorainne_core::Result<SinkhornOutput>
        + Send
        + Sync,
) -> PyResult<SinkhornResult> {
    let mut callback_error: Option<PyErr> = None;
    let out = interruptible(py, |interrupt| {
        guarded(|| {
            parallel::run(n_threads, |par| {
                let opts = args.options(!matches!(par, faer::Par::Seq));
                let mut hook = |p: &Progress| -> bool {
                    match &callback {
                        None => false,
                        Some(cb) => Python::attach(|py| {
                            match cb.call1(py, (p.n_iter, p.eps, p.marginal_error)) {
                                Ok(v) => v.is_truthy(py).unwrap_or(false),
                                Err(e) => {
                                    callback_error = Some(e);
                                    true
                                }
                            }
                        }),
                    }
                };
                solve(&opts, &mut hook, interrupt)
            })?
        })
    })?;
    if let Some(e) = callback_error {
        return Err(e);
    }
    to_result(py, out)
}

/// sinkhorn_log(x, y, a, b, *, eps, tol, n_iter_max, kernel_tol, leaf_size, eps_scaling=None,
/// exact=False, relax=True, n_threads=None, callback=None) -> SinkhornResult.
/// `callback(n_iter, eps, marginal_error) -> bool` (True stops) is called with the GIL
/// re-acquired after each iteration.
#[pyfunction]
#[pyo3(signature = (x, y, a, b, *, n_threads=None, callback=None, **options))]
fn sinkhorn_log<'py>(
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    a: PyReadonlyArray1<'py, f64>,
    b: PyReadonlyArray1<'py, f64>,
    n_threads: Option<usize>,
    callback: Option<Py<PyAny>>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<SinkhornResult> {
    let py = x.py();
    let args: SinkhornArgs = kwargs(py, "sinkhorn_log", &SINKHORN_KEYS, options)?.extract()?;
    let (xv, d) = points(&x, "x")?;
    let (yv, dy) = points(&y, "y")?;
    same_dimension(d, dy)?;
    let av = a
        .as_slice()
        .map_err(|_| PyValueError::new_err("a must be contiguous"))?;
    let bv = b
        .as_slice()
        .map_err(|_| PyValueError::new_err("b must be contiguous"))?;
    run_solver(py, &args, n_threads, callback, |opts, hook, interrupt| {
        sinkhorn(xv, yv, d, av, bv, opts, hook, interrupt)
    })
}

/// sinkhorn_log_symmetric(x, a, *, <the options of sinkhorn_log>) -> SinkhornResult: the
/// symmetric problem OT_eps(a, a) by averaged updates (g = f; rho_b is not used).
#[pyfunction]
#[pyo3(signature = (x, a, *, n_threads=None, callback=None, **options))]
fn sinkhorn_log_symmetric<'py>(
    x: PyReadonlyArray2<'py, f64>,
    a: PyReadonlyArray1<'py, f64>,
    n_threads: Option<usize>,
    callback: Option<Py<PyAny>>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<SinkhornResult> {
    let py = x.py();
    let args: SinkhornArgs =
        kwargs(py, "sinkhorn_log_symmetric", &SINKHORN_KEYS, options)?.extract()?;
    let (xv, d) = points(&x, "x")?;
    let av = a
        .as_slice()
        .map_err(|_| PyValueError::new_err("a must be contiguous"))?;
    run_solver(py, &args, n_threads, callback, |opts, hook, interrupt| {
        sinkhorn_symmetric(xv, d, av, opts, hook, interrupt)
    })
}

/// The log sums of one side and their error bound.
type LogSumsAndBound<'py> = (Bound<'py, PyArray1<f64>>, f64);

fn contiguous<'a>(v: &'a PyReadonlyArray1<'_, f64>, name: &str) -> PyResult<&'a [f64]> {
    v.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be contiguous")))
}

/// stored_kernel_apply(x, y, a, b, g_hat, f, g, eps, n_threads=None) -> ((rows, bound),
/// (cols, bound)): the stored stabilized kernel of method="matrix" absorbed at g_hat, applied to g
/// (rows: log sum_j b_j exp((g_j - C_ij)/eps)) and to f (columns: log sum_i a_i exp((f_i -
/// C_ij)/eps)), each with its run-time error bound (in log).
#[pyfunction]
#[pyo3(signature = (x, y, a, b, g_hat, f, g, eps, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn stored_kernel_apply<'py>(
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    a: PyReadonlyArray1<'py, f64>,
    b: PyReadonlyArray1<'py, f64>,
    g_hat: PyReadonlyArray1<'py, f64>,
    f: PyReadonlyArray1<'py, f64>,
    g: PyReadonlyArray1<'py, f64>,
    eps: f64,
    n_threads: Option<usize>,
) -> PyResult<(LogSumsAndBound<'py>, LogSumsAndBound<'py>)> {
    let py = x.py();
    let (xv, d) = points(&x, "x")?;
    let (yv, dy) = points(&y, "y")?;
    same_dimension(d, dy)?;
    let (av, bv) = (contiguous(&a, "a")?, contiguous(&b, "b")?);
    let (hv, fv, gv) = (
        contiguous(&g_hat, "g_hat")?,
        contiguous(&f, "f")?,
        contiguous(&g, "g")?,
    );
    let ((rows, rb), (cols, cb)) = py.detach(|| {
        guarded(|| {
            parallel::run(n_threads, |par| {
                let parallel = !matches!(par, faer::Par::Seq);
                let (kern, _) = StoredKernel::build(xv, yv, d, bv, hv, eps, parallel)?;
                kern.apply_checked(av, fv, bv, gv, parallel)
            })?
        })
    })?;
    Ok(((rows.into_pyarray(py), rb), (cols.into_pyarray(py), cb)))
}

/// stored_kernel_fused(x, y, a, b, f_hat, f, g, eps, omega=1.0, damping=1.0, shift=None,
/// n_threads=None) -> ((rows, bound), g_next, (cols, bound)): one fused pass of method="matrix"'s
/// iteration on the kernel with the y points as rows, absorbed at f_hat: rows = log sum_i a_i
/// exp((f_i - C_ij)/eps) per y point, g_next = g + omega (-eps damping rows - g), cols = log sum_j
/// b_j exp((g_next_j - C_ij)/eps) per x point, each with its run-time bound. `shift`: the
/// exponent the new scaling is divided by (default: its exact largest value).
#[pyfunction]
#[pyo3(signature = (x, y, a, b, f_hat, f, g, eps, omega=1.0, damping=1.0, shift=None, n_threads=None))]
#[allow(clippy::too_many_arguments)]
fn stored_kernel_fused<'py>(
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    a: PyReadonlyArray1<'py, f64>,
    b: PyReadonlyArray1<'py, f64>,
    f_hat: PyReadonlyArray1<'py, f64>,
    f: PyReadonlyArray1<'py, f64>,
    g: PyReadonlyArray1<'py, f64>,
    eps: f64,
    omega: f64,
    damping: f64,
    shift: Option<f64>,
    n_threads: Option<usize>,
) -> PyResult<FusedPass<'py>> {
    let py = x.py();
    let (xv, d) = points(&x, "x")?;
    let (yv, dy) = points(&y, "y")?;
    same_dimension(d, dy)?;
    let (av, bv) = (contiguous(&a, "a")?, contiguous(&b, "b")?);
    let (hv, fv, gv) = (
        contiguous(&f_hat, "f_hat")?,
        contiguous(&f, "f")?,
        contiguous(&g, "g")?,
    );
    let (n, m) = (xv.len() / d, yv.len() / d);
    if av.len() != n || fv.len() != n || bv.len() != m || gv.len() != m {
        return Err(PyValueError::new_err(format!(
            "expected a, f_hat, f of length {n} and b, g of length {m}"
        )));
    }
    if !(omega > 0.0 && omega < 2.0 && damping > 0.0 && damping <= 1.0) {
        return Err(PyValueError::new_err(format!(
            "omega must be in (0, 2) and damping in (0, 1], got {omega} and {damping}"
        )));
    }
    let pass = py.detach(|| {
        guarded(|| {
            parallel::run(n_threads, |par| {
                let parallel = !matches!(par, faer::Par::Seq);
                let (kern, _) = StoredKernel::build(yv, xv, d, av, hv, eps, parallel)?;
                let shift = shift.unwrap_or_else(|| kern.top_exponent(bv, gv));
                let scale = -eps * damping;
                Ok::<_, Error>(kern.fused(av, fv, bv, gv, scale, omega, shift, parallel))
            })?
        })
    })?;
    Ok((
        (pass.rows.into_pyarray(py), pass.row_bound),
        pass.next.into_pyarray(py),
        (pass.cols.into_pyarray(py), pass.col_bound),
    ))
}

type FusedPass<'py> = (
    LogSumsAndBound<'py>,
    Bound<'py, PyArray1<f64>>,
    LogSumsAndBound<'py>,
);

/// The Gibbs kernel exp(-|x_i - y_j|^2 / eps) on two k-d trees, applied in the log domain.
#[pyclass(module = "lorainne._core", frozen)]
struct HierarchicalKernel {
    tx: KdTree,
    ty: KdTree,
    eps: f64,
    tol: f64,
    exact: bool,
    last: std::sync::Mutex<CoreStats>,
}

#[pymethods]
impl HierarchicalKernel {
    #[new]
    #[pyo3(signature = (x, y, eps, tol, leaf_size, exact=false))]
    fn new(
        py: Python<'_>,
        x: PyReadonlyArray2<'_, f64>,
        y: PyReadonlyArray2<'_, f64>,
        eps: f64,
        tol: f64,
        leaf_size: usize,
        exact: bool,
    ) -> PyResult<Self> {
        let (xv, d) = points(&x, "x")?;
        let (yv, dy) = points(&y, "y")?;
        same_dimension(d, dy)?;
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(to_py(Error::invalid(
                "eps",
                format!("must be positive and finite, got {eps}"),
            )));
        }
        let (tx, ty) = py.detach(|| {
            guarded(|| {
                Ok((
                    KdTree::build(xv, d, leaf_size)?,
                    KdTree::build(yv, d, leaf_size)?,
                ))
            })
        })?;
        Ok(HierarchicalKernel {
            tx,
            ty,
            eps,
            tol,
            exact,
            last: std::sync::Mutex::new(CoreStats::default()),
        })
    }

    /// log_apply(log_v, transpose=False, n_threads=None): log sum_j exp(log_v_j - C_ij/eps)
    /// (transpose: sum over i, for each j), in the caller's point order.
    #[pyo3(signature = (log_v, transpose=false, n_threads=None))]
    fn log_apply<'py>(
        &self,
        py: Python<'py>,
        log_v: PyReadonlyArray1<'py, f64>,
        transpose: bool,
        n_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let (t, s) = if transpose {
            (&self.ty, &self.tx)
        } else {
            (&self.tx, &self.ty)
        };
        let lv = log_v
            .as_slice()
            .map_err(|_| PyValueError::new_err("log_v must be contiguous"))?;
        let (eps, tol, exact) = (self.eps, self.tol, self.exact);
        let (out, stats) = py.detach(|| {
            guarded(|| {
                parallel::run(n_threads, |par| {
                    let opts = KernelOptions {
                        eps,
                        tol,
                        exact,
                        parallel: !matches!(par, faer::Par::Seq),
                    };
                    log_apply_in_order(t, s, lv, &opts)
                })?
            })
        })?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = stats;
        Ok(out.into_pyarray(py))
    }

    /// log_apply_columns(log_v, columns, transpose=False, n_threads=None) -> (log_sum, ratios):
    /// `log_apply` and, from the same traversal, for each column c of `columns` (k x sources,
    /// C-contiguous, entries in [0, 1]) the ratio sum_j exp(log_v_j - C_ij/eps) columns[c, j] /
    /// sum_j exp(log_v_j - C_ij/eps): ratios has shape (targets, k).
    #[pyo3(signature = (log_v, columns, transpose=false, n_threads=None))]
    fn log_apply_columns<'py>(
        &self,
        py: Python<'py>,
        log_v: PyReadonlyArray1<'py, f64>,
        columns: PyReadonlyArray2<'py, f64>,
        transpose: bool,
        n_threads: Option<usize>,
    ) -> PyResult<LogSumsAndRatios<'py>> {
        let (t, s) = if transpose {
            (&self.ty, &self.tx)
        } else {
            (&self.tx, &self.ty)
        };
        let lv = log_v
            .as_slice()
            .map_err(|_| PyValueError::new_err("log_v must be contiguous"))?;
        let k = columns.as_array().nrows();
        let cv = columns
            .as_slice()
            .map_err(|_| PyValueError::new_err("columns must be C-contiguous"))?;
        let (eps, tol, exact) = (self.eps, self.tol, self.exact);
        let (out, ratios, stats) = py.detach(|| {
            guarded(|| {
                parallel::run(n_threads, |par| {
                    let opts = KernelOptions {
                        eps,
                        tol,
                        exact,
                        parallel: !matches!(par, faer::Par::Seq),
                    };
                    log_apply_columns_in_order(t, s, lv, cv, k, &opts)
                })?
            })
        })?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = stats;
        let rows = out.len();
        let ratios = Array2::from_shape_vec((rows, k), ratios)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok((out.into_pyarray(py), ratios.into_pyarray(py)))
    }

    /// Block statistics of the last application.
    fn stats(&self) -> PyKernelStats {
        PyKernelStats::from(&*self.last.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Bytes held by the two trees (points, permutations, boxes).
    fn memory_bytes(&self) -> usize {
        self.tx.memory_bytes() + self.ty.memory_bytes()
    }

    /// Number of tree nodes and leaves, (x tree, y tree).
    fn tree_sizes(&self) -> ((usize, usize), (usize, usize)) {
        (
            (self.tx.nodes.len(), self.tx.leaves.len()),
            (self.ty.nodes.len(), self.ty.leaves.len()),
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sinkhorn_log, m)?)?;
    m.add_function(wrap_pyfunction!(sinkhorn_log_symmetric, m)?)?;
    m.add_function(wrap_pyfunction!(stored_kernel_apply, m)?)?;
    m.add_function(wrap_pyfunction!(stored_kernel_fused, m)?)?;
    m.add_class::<HierarchicalKernel>()?;
    m.add_class::<SinkhornResult>()?;
    m.add_class::<PyKernelStats>()?;
    Ok(())
}
