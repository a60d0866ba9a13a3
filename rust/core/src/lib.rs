//! Pure-Rust kernels of lorainne. No Python here: the `lorainne-py` crate binds them.
//!
//! One module per capability area, mirroring `python/lorainne/`.

pub mod completion;
pub mod error;
pub mod ot;
pub mod parallel;
pub mod randomized;
pub mod scalar;
pub mod tensor;
pub mod trace;

pub use error::{Error, Result};
pub use scalar::Scalar;
