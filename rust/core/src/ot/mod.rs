//! Entropic optimal transport: the log-domain Sinkhorn loop on hierarchical (or dense) Gaussian
//! kernels. The hierarchical (k-d tree) kernel has near-field dense blocks, far-field expansions
//! with entrywise relative accuracy and pruning with a rigorous bound; see `kernel` for the scheme.

mod acceleration;
pub mod kernel;
mod multiscale;
mod objective;
pub mod sinkhorn;
pub mod symmetric;
#[cfg(test)]
mod test_points;
pub mod tree;

pub use kernel::{
    log_apply, log_apply_columns, log_apply_columns_in_order, log_apply_in_order,
    reserve_monomial_cache, Applied, KernelOptions, KernelStats, StoredKernel, MAX_COLUMNS,
};
pub use sinkhorn::{sinkhorn, Progress, SinkhornOptions, SinkhornOutput};
pub use symmetric::sinkhorn_symmetric;
pub use tree::KdTree;
