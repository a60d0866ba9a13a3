//! Tensor decompositions by alternating least squares: dense and sparse MTTKRP, the small
//! Gram steps, and the CP-ALS loop. Mirrors `python/lorainne/tensor/`.

pub mod cp;
pub mod dense;
pub mod gram;
pub mod parafac2;
pub mod sparse;

pub use cp::{cp_als, AlsOptions, AlsResult, Status, SweepSource};
pub use dense::{mttkrp, DenseTensor};
pub use parafac2::{parafac2_project, Projected};
pub use sparse::SparseTensor;
