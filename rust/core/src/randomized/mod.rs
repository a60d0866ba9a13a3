//! Randomized linear algebra: QR factorizations and the randomized range finder / SVD.

pub mod qr;
pub mod svd;

pub use qr::{cholesky_qr2, householder_qr, QrMethod};
pub use svd::{
    adjoint_product, product, randomized_svd, range_finder, svd_from_basis, Orthonormalizer,
    PowerIterations,
};
