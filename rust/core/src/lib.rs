//! Pure-Rust kernels of lorainne. No Python here: the `lorainne-py` crate binds them.
//!
//! One module per capability area, mirroring `python/lorainne/`.

pub mod completion;
pub mod error;
pub mod interrupt;
pub mod ot;
pub mod parallel;
pub mod randomized;
pub mod scalar;
pub mod tensor;
pub mod trace;
pub mod train;

pub use error::{check_alloc, try_filled, Error, Result};
pub use interrupt::Interrupt;
pub use scalar::{Field, Scalar};
