//! PyO3 glue of lorainne: NumPy arrays in, NumPy arrays out, errors mapped, the GIL released
//! around every kernel. No numerics here: those live in `lorainne-core`.

use pyo3::prelude::*;

#[macro_use]
mod dispatch;

mod completion;
mod convert;
mod errors;
mod interrupt;
mod ot;
mod randomized;
mod tensor;
mod trace;
mod train;

/// The number of threads a kernel uses when `n_threads` is None: every core.
#[pyfunction]
fn default_threads() -> usize {
    lorainne_core::parallel::default_threads()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(default_threads, m)?)?;
    randomized::register(m)?;
    completion::register(m)?;
    trace::register(m)?;
    tensor::register(m)?;
    ot::register(m)?;
    train::register(m)?;
    Ok(())
}
