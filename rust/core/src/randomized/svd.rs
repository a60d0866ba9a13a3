//! Randomized range finder and SVD (Halko, Martinsson, Tropp 2011), with re-orthonormalization
//! between every product of the power (subspace) iteration. Real and complex input (`Field`):
//! products with A^H, singular values real.
//!
//! The random test matrix is drawn by the caller (Python, from a NumPy Generator) so the Rust
//! and xp paths see the same numbers.

use super::qr::{cholesky_qr2, householder_qr};
use crate::error::{Error, Result};
use crate::interrupt::Interrupt;
use crate::scalar::Field;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::matmul::matmul;
use faer::linalg::svd::{svd, svd_scratch, ComputeSvdVectors};
use faer::traits::math_utils::{conj, one, real};
use faer::traits::ComplexField;
use faer::{Accum, Mat, MatRef, Par};

/// (U, singular values, V^H) of a truncated SVD.
pub type Triplets<T> = (Mat<T>, Vec<<T as ComplexField>::Real>, Mat<T>);

/// How the basis is re-orthonormalized after each product with A or A^T.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orthonormalizer {
    /// CholeskyQR2 with its shifted and Householder fallbacks.
    CholeskyQr2,
    Householder,
}

pub struct PowerIterations {
    pub n_power_iter: usize,
    pub orthonormalizer: Orthonormalizer,
}

fn orthonormalize<T: Field>(y: MatRef<'_, T>, how: Orthonormalizer, par: Par) -> Mat<T> {
    match how {
        Orthonormalizer::CholeskyQr2 => cholesky_qr2(y, par).0,
        Orthonormalizer::Householder => householder_qr(y, None, par).0,
    }
}

/// `lhs @ rhs`. A row-major `lhs` (a C-ordered NumPy A, or the transpose of a basis) is
/// multiplied as `(rhs^T lhs^T)^T`, whose left factor is then column-major: faer's GEMM ran
/// 1.5-2x faster that way on A Omega (2000 x 1000 times 1000 x 60-80, 1 thread), and the
/// transposing copy of the m x l result costs a few percent of the product.
pub fn product<T: Field>(lhs: MatRef<'_, T>, rhs: MatRef<'_, T>, par: Par) -> Mat<T> {
    let row_major = lhs.col_stride() == 1 && lhs.row_stride() != 1 && lhs.ncols() > 1;
    if row_major {
        let mut out_t = Mat::<T>::zeros(rhs.ncols(), lhs.nrows());
        matmul(
            out_t.as_mut(),
            Accum::Replace,
            rhs.transpose(),
            lhs.transpose(),
            one(),
            par,
        );
        return out_t.transpose().to_owned();
    }
    let mut out = Mat::<T>::zeros(lhs.nrows(), rhs.ncols());
    matmul(out.as_mut(), Accum::Replace, lhs, rhs, one(), par);
    out
}

/// lhs^H rhs (for a C-ordered lhs, lhs^H is column-major: faer's fast layout).
pub fn adjoint_product<T: Field>(lhs: MatRef<'_, T>, rhs: MatRef<'_, T>, par: Par) -> Mat<T> {
    let mut out = Mat::<T>::zeros(lhs.ncols(), rhs.ncols());
    matmul(out.as_mut(), Accum::Replace, lhs.adjoint(), rhs, one(), par);
    out
}

/// Orthonormal Q (m x l) whose range approximates the dominant range of A (m x n).
///
/// `start` is either a test matrix Omega (n x l; the sketch is A Omega) or, when
/// `start_is_range`, a starting basis (m x l) such as a previous Q (warm start), in which case
/// at least one power iteration is run. `interrupt` is checked before every power iteration.
pub fn range_finder<T: Field>(
    a: MatRef<'_, T>,
    start: MatRef<'_, T>,
    start_is_range: bool,
    iterations: &PowerIterations,
    par: Par,
    interrupt: &Interrupt,
) -> Result<Mat<T>> {
    let (m, n) = a.shape();
    let expected = if start_is_range { m } else { n };
    if start.nrows() != expected {
        return Err(Error::invalid(
            "start",
            format!("has {} rows, expected {expected}", start.nrows()),
        ));
    }
    let l = start.ncols();
    if l == 0 || l > m.min(n) {
        return Err(Error::invalid(
            "start",
            format!("has {l} columns, expected 1..={}", m.min(n)),
        ));
    }
    let how = iterations.orthonormalizer;
    let (mut q, n_iter) = if start_is_range {
        (
            orthonormalize(start, how, par),
            iterations.n_power_iter.max(1),
        )
    } else {
        (
            orthonormalize(product(a, start, par).as_ref(), how, par),
            iterations.n_power_iter,
        )
    };
    for _ in 0..n_iter {
        interrupt.check()?;
        let z = orthonormalize(adjoint_product(a, q.as_ref(), par).as_ref(), how, par);
        q = orthonormalize(product(a, z.as_ref(), par).as_ref(), how, par);
    }
    Ok(q)
}

/// Truncated SVD from a basis: B = Q^H A, B = Ub S V^H, U = Q Ub; the first `rank` triplets
/// (U, S, V^H).
pub fn svd_from_basis<T: Field>(
    a: MatRef<'_, T>,
    q: MatRef<'_, T>,
    rank: usize,
    par: Par,
) -> Result<Triplets<T>> {
    let b = adjoint_product(q, a, par);
    let (l, n) = b.shape();
    let k = l.min(n);
    if rank == 0 || rank > k {
        return Err(Error::invalid("rank", format!("{rank} is not in 1..={k}")));
    }
    let mut s = Mat::<T>::zeros(k, 1);
    let mut ub = Mat::<T>::zeros(l, k);
    let mut v = Mat::<T>::zeros(n, k);
    let mut mem = MemBuffer::new(svd_scratch::<T>(
        l,
        n,
        ComputeSvdVectors::Thin,
        ComputeSvdVectors::Thin,
        par,
        Default::default(),
    ));
    svd(
        b.as_ref(),
        s.as_mut().col_mut(0).as_diagonal_mut(),
        Some(ub.as_mut()),
        Some(v.as_mut()),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| Error::NumericalBreakdown(format!("SVD of the projected matrix: {e:?}")))?;
    let u = product(q, ub.as_ref().get(.., ..rank), par);
    let singular_values = (0..rank).map(|i| real(&s[(i, 0)])).collect();
    let vt = Mat::<T>::from_fn(rank, n, |i, j| conj(&v[(j, i)]));
    Ok((u, singular_values, vt))
}

/// Randomized SVD: range finder then SVD of the projection. Returns (U, S, V^H).
pub fn randomized_svd<T: Field>(
    a: MatRef<'_, T>,
    start: MatRef<'_, T>,
    start_is_range: bool,
    rank: usize,
    iterations: &PowerIterations,
    par: Par,
    interrupt: &Interrupt,
) -> Result<Triplets<T>> {
    let q = range_finder(a, start, start_is_range, iterations, par, interrupt)?;
    interrupt.check()?;
    svd_from_basis(a, q.as_ref(), rank, par)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::NEVER;

    #[test]
    fn exact_low_rank_is_recovered() {
        let (m, n, k) = (60, 40, 3);
        let left = Mat::<f64>::from_fn(m, k, |i, j| ((i * 3 + j * 5) % 11) as f64 - 5.0);
        let right = Mat::<f64>::from_fn(k, n, |i, j| ((i * 7 + j * 2) % 13) as f64 - 6.0);
        let a = &left * &right;
        let omega = Mat::<f64>::from_fn(n, k + 4, |i, j| {
            (((i * 31 + j * 17) % 23) as f64 - 11.0) / 7.0
        });
        let its = PowerIterations {
            n_power_iter: 2,
            orthonormalizer: Orthonormalizer::CholeskyQr2,
        };
        let (u, s, vt) =
            randomized_svd(a.as_ref(), omega.as_ref(), false, k, &its, Par::Seq, &NEVER).unwrap();
        let us = Mat::<f64>::from_fn(m, k, |i, j| u[(i, j)] * s[j]);
        assert!((&us * &vt - &a).norm_l2() < 1e-10 * a.norm_l2());
        assert!(s.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn complex_low_rank_is_recovered() {
        use faer::c64;
        let (m, n, k) = (50, 35, 3);
        let left = Mat::<c64>::from_fn(m, k, |i, j| {
            c64::new(
                ((i * 3 + j * 5) % 11) as f64 - 5.0,
                ((i + 2 * j) % 7) as f64 - 3.0,
            )
        });
        let right = Mat::<c64>::from_fn(k, n, |i, j| {
            c64::new(
                ((i * 7 + j * 2) % 13) as f64 - 6.0,
                ((3 * i + j) % 5) as f64 - 2.0,
            )
        });
        let a = &left * &right;
        let omega = Mat::<c64>::from_fn(n, k + 4, |i, j| {
            c64::new(
                (((i * 31 + j * 17) % 23) as f64 - 11.0) / 7.0,
                ((i * j) % 3) as f64,
            )
        });
        let its = PowerIterations {
            n_power_iter: 1,
            orthonormalizer: Orthonormalizer::CholeskyQr2,
        };
        let (u, s, vh) =
            randomized_svd(a.as_ref(), omega.as_ref(), false, k, &its, Par::Seq, &NEVER).unwrap();
        let us = Mat::<c64>::from_fn(m, k, |i, j| u[(i, j)] * c64::new(s[j], 0.0));
        assert!((&us * &vh - &a).norm_l2() < 1e-10 * a.norm_l2());
        assert!(s.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn product_is_layout_independent() {
        let a = Mat::<f64>::from_fn(7, 5, |i, j| ((i * 3 + j * 5) % 11) as f64 - 5.0);
        let x = Mat::<f64>::from_fn(5, 3, |i, j| ((i * 7 + j * 2) % 13) as f64 - 6.0);
        let a_rows = a.transpose().to_owned(); // a row-major view of `a` below
        let expected = &a * &x;
        for lhs in [a.as_ref(), a_rows.as_ref().transpose()] {
            let got = product(lhs, x.as_ref(), Par::Seq);
            assert_eq!(got.shape(), (7, 3));
            assert!((&got - &expected).norm_l2() <= 1e-12 * expected.norm_l2());
        }
    }

    #[test]
    fn bad_start_is_an_error() {
        let a = Mat::<f64>::zeros(5, 4);
        let omega = Mat::<f64>::zeros(3, 2);
        let its = PowerIterations {
            n_power_iter: 1,
            orthonormalizer: Orthonormalizer::Householder,
        };
        assert!(range_finder(a.as_ref(), omega.as_ref(), false, &its, Par::Seq, &NEVER).is_err());
    }
}
