//! Hierarchical (k-d tree) Gaussian kernels: near-field dense blocks, far-field expansions with
//! entrywise relative accuracy, pruning with a rigorous bound. See `kernel` for the scheme.

pub mod kernel;
pub mod tree;

pub use kernel::{log_apply, reserve_monomial_cache, Applied, KernelOptions, KernelStats};
pub use tree::KdTree;
