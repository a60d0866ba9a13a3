//! Bindings of `lorainne_core::train`: the Philox4x32-10 uniform stream of NOLA's bases. The
//! Python facade has validated the arguments; the GIL is released around the kernel.

use crate::convert::vec_to_numpy;
use crate::errors::guarded;
use lorainne_core::{parallel, train as core};
use pyo3::prelude::*;

/// philox_uniform(seed, stream, size, double, n_threads=None) -> 1-D float32/float64 array,
/// uniform on [-sqrt(3), sqrt(3)), bit-identical to lorainne.train._philox.uniform_xp.
#[pyfunction]
#[pyo3(signature = (seed, stream, size, double, n_threads=None))]
fn philox_uniform<'py>(
    py: Python<'py>,
    seed: u64,
    stream: u32,
    size: usize,
    double: bool,
    n_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    if double {
        let out = py.detach(|| {
            guarded(|| parallel::run(n_threads, |par| core::uniform_f64(seed, stream, size, par)))
        })?;
        Ok(vec_to_numpy(py, out).into_any())
    } else {
        let out = py.detach(|| {
            guarded(|| parallel::run(n_threads, |par| core::uniform_f32(seed, stream, size, par)))
        })?;
        Ok(vec_to_numpy(py, out).into_any())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(philox_uniform, m)?)?;
    Ok(())
}
