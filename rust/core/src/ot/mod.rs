//! Entropic optimal transport: the log-domain Sinkhorn loop on hierarchical (or dense) kernels.

pub mod sinkhorn;

pub use sinkhorn::{sinkhorn, Progress, SinkhornOptions, SinkhornOutput};
