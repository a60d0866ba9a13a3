//! Bindings of `lorainne_core::ot`: log-domain Sinkhorn and the
//! hierarchical Gaussian kernel. Arrays are C-contiguous float64 (the Python facade converts).

use crate::errors::{guarded, to_py};
use lorainne_core::ot::{
    log_apply, sinkhorn, KdTree, KernelOptions, KernelStats, Progress, SinkhornOptions,
};
use lorainne_core::{parallel, Error};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn points(a: &PyReadonlyArray2<'_, f64>, name: &str) -> PyResult<(Vec<f64>, usize)> {
    let v = a.as_array();
    let d = v.ncols();
    let slice = a
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))?;
    Ok((slice.to_vec(), d))
}

fn stats_dict<'py>(py: Python<'py>, s: &KernelStats) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("near_blocks", s.near_blocks)?;
    dict.set_item("far_blocks", s.far_blocks)?;
    dict.set_item("pruned_blocks", s.pruned_blocks)?;
    dict.set_item("near_entries", s.near_entries)?;
    dict.set_item("far_terms", s.far_terms)?;
    dict.set_item("max_order", s.max_order)?;
    Ok(dict)
}

/// sinkhorn_log(x, y, a, b, eps, tol, n_iter_max, eps_scaling, kernel_tol, exact, leaf_size,
/// relax=True, n_threads=None, callback=None) -> dict with f, g, n_iter, marginal_error, converged, cost,
/// dual, stats, memory_bytes. `callback(n_iter, eps, marginal_error) -> bool` (True stops) is
/// called with the GIL re-acquired after each iteration.
#[pyfunction]
#[pyo3(signature = (x, y, a, b, eps, tol, n_iter_max, eps_scaling, kernel_tol, exact, leaf_size, relax=true, n_threads=None, callback=None))]
#[allow(clippy::too_many_arguments)]
fn sinkhorn_log<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    y: PyReadonlyArray2<'py, f64>,
    a: PyReadonlyArray1<'py, f64>,
    b: PyReadonlyArray1<'py, f64>,
    eps: f64,
    tol: f64,
    n_iter_max: usize,
    eps_scaling: Option<f64>,
    kernel_tol: f64,
    exact: bool,
    leaf_size: usize,
    relax: bool,
    n_threads: Option<usize>,
    callback: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let (xv, d) = points(&x, "x")?;
    let (yv, dy) = points(&y, "y")?;
    if d != dy {
        return Err(to_py(Error::invalid(
            "y",
            format!("has {dy} columns, x has {d}"),
        )));
    }
    let av = a
        .as_slice()
        .map_err(|_| PyValueError::new_err("a must be contiguous"))?
        .to_vec();
    let bv = b
        .as_slice()
        .map_err(|_| PyValueError::new_err("b must be contiguous"))?
        .to_vec();
    let mut callback_error: Option<PyErr> = None;
    let out = py.detach(|| {
        guarded(|| {
            parallel::run(n_threads, |par| {
                let opts = SinkhornOptions {
                    eps,
                    tol,
                    n_iter_max,
                    eps_scaling,
                    kernel_tol,
                    exact,
                    leaf_size,
                    parallel: !matches!(par, faer::Par::Seq),
                    relax,
                };
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
                sinkhorn(&xv, &yv, d, &av, &bv, &opts, &mut hook)
            })?
        })
    })?;
    if let Some(e) = callback_error {
        return Err(e);
    }
    let dict = PyDict::new(py);
    dict.set_item("f", out.f.into_pyarray(py))?;
    dict.set_item("g", out.g.into_pyarray(py))?;
    dict.set_item("n_iter", out.n_iter)?;
    dict.set_item("marginal_error", out.marginal_error)?;
    dict.set_item("converged", out.converged)?;
    dict.set_item("cost", out.cost)?;
    dict.set_item("dual", out.dual)?;
    dict.set_item("stats", stats_dict(py, &out.stats)?)?;
    dict.set_item("memory_bytes", out.memory_bytes)?;
    Ok(dict)
}

/// The Gibbs kernel exp(-|x_i - y_j|^2 / eps) on two k-d trees, applied in the log domain.
#[pyclass(module = "lorainne._core", frozen)]
struct HierarchicalKernel {
    tx: KdTree,
    ty: KdTree,
    eps: f64,
    tol: f64,
    exact: bool,
    last: std::sync::Mutex<KernelStats>,
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
        if d != dy {
            return Err(to_py(Error::invalid(
                "y",
                format!("has {dy} columns, x has {d}"),
            )));
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(to_py(Error::invalid(
                "eps",
                format!("must be positive and finite, got {eps}"),
            )));
        }
        let (tx, ty) = py.detach(|| {
            guarded(|| {
                Ok((
                    KdTree::build(&xv, d, leaf_size)?,
                    KdTree::build(&yv, d, leaf_size)?,
                ))
            })
        })?;
        Ok(HierarchicalKernel {
            tx,
            ty,
            eps,
            tol,
            exact,
            last: std::sync::Mutex::new(KernelStats::default()),
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
        if lv.len() != s.n {
            return Err(to_py(Error::invalid(
                "log_v",
                format!("expected {} values, got {}", s.n, lv.len()),
            )));
        }
        let h: Vec<f64> = s.perm.iter().map(|&p| lv[p]).collect();
        let (eps, tol, exact) = (self.eps, self.tol, self.exact);
        let applied = py.detach(|| {
            guarded(|| {
                parallel::run(n_threads, |par| {
                    log_apply(
                        t,
                        s,
                        &h,
                        &KernelOptions {
                            eps,
                            tol,
                            exact,
                            parallel: !matches!(par, faer::Par::Seq),
                        },
                        false,
                    )
                })?
            })
        })?;
        let mut out = vec![0.0; t.n];
        for (k, &p) in t.perm.iter().enumerate() {
            out[p] = applied.log_sum[k];
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = applied.stats;
        Ok(out.into_pyarray(py))
    }

    /// Block statistics of the last application.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        stats_dict(py, &s)
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
    m.add_class::<HierarchicalKernel>()?;
    Ok(())
}
