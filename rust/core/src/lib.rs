//! Pure-Rust kernels of lorainne. No Python here: the `lorainne-py` crate binds them.
//!
//! One module per capability area, mirroring `python/lorainne/`.

pub mod als;
pub mod error;
pub mod hmatrix;
pub mod linalg;
pub mod ot;
pub mod parallel;
pub mod scalar;
pub mod trace;
pub mod train;

pub use error::{Error, Result};
pub use scalar::Scalar;
