//! Randomized linear algebra: QR factorizations, the randomized range finder / SVD, and the
//! one-read check of a dense input (`checks`).

pub mod checks;
mod inverse_iteration;
pub mod qr;
pub mod svd;
pub mod tridiagonal;

pub use checks::max_abs;
pub use qr::{cholesky_qr2, householder_qr, QrMethod};
pub use svd::{
    adjoint_product, product, randomized_svd, range_finder, svd_from_basis, Orthonormalizer,
    PowerIterations,
};
pub use tridiagonal::tridiagonal_eigh_top;
