//! Tensor decompositions by alternating least squares: dense and sparse MTTKRP, the small
//! Gram steps, and the CP-ALS loop. Mirrors `python/lorainne/tensor/`.

pub mod cp;
pub mod dense;
pub mod gram;
pub mod sparse;

pub use cp::{cp_als, AlsOptions, AlsResult, Status, SweepSource};
pub use dense::{mttkrp, DenseTensor};
pub use sparse::SparseTensor;
