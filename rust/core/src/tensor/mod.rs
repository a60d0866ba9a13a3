//! Tensor decompositions by alternating least squares: dense and sparse MTTKRP, the small
//! Gram steps, and the CP-ALS loop. Mirrors `python/lorainne/tensor/`.

// `!(x > 0)` is deliberate throughout: it is also true for NaN.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub mod cp;
pub mod dense;
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub mod gram;
pub mod sparse;

pub use cp::{cp_als, AlsOptions, AlsResult, Status, SweepSource};
pub use dense::{mttkrp, DenseTensor};
pub use sparse::SparseTensor;
