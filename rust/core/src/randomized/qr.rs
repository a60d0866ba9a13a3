//! Reduced QR factorizations of tall matrices.
//!
//! `householder_qr` is faer's blocked Householder QR (panel + compact-WY updates).
//! `cholesky_qr2` is CholeskyQR2 with the fallbacks of the xp reference
//! (`python/lorainne/_qr.py`): extra CholeskyQR passes while the Gram matrix is far from I,
//! a shifted first pass when Cholesky breaks down, and Householder as the last resort.
//! Both return R with a real nonnegative diagonal, so the factorization is unique for full-rank
//! input and the Rust and xp paths can be compared entry by entry. Real and complex input alike
//! (`Field`): transposes are conjugate transposes.

use crate::scalar::{Field, Scalar};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{
    cholesky_in_place, cholesky_in_place_scratch, LltRegularization,
};
use faer::linalg::householder::{
    apply_block_householder_sequence_on_the_left_in_place_scratch,
    apply_block_householder_sequence_on_the_left_in_place_with_conj,
};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::qr::no_pivoting::factor::{
    qr_in_place, qr_in_place_scratch, recommended_block_size,
};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::traits::math_utils::{abs, conj, from_real, imag, is_finite, one, real, recip, zero};
use faer::{Accum, Conj, Mat, MatMut, MatRef, Par};

/// Which algorithm produced an orthonormal basis (reported to Python for diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrMethod {
    CholeskyQr2 = 0,
    ShiftedCholeskyQr3 = 1,
    Householder = 2,
}

/// A Gram matrix within this Frobenius distance of I means the next CholeskyQR pass leaves Q
/// orthonormal to working precision (its orthogonality error is O(u * cond(X)^2), cond(X)^2 <= 3).
const GRAM_ACCEPT: f64 = 0.5;
/// Passes after the first before giving up on CholeskyQR.
const MAX_EXTRA_PASSES: usize = 3;

/// Reduced Householder QR: A (m x n) = Q (m x k) R (k x n), k = min(m, n), diag(R) real >= 0.
///
/// Single-precision input is factored in double precision and rounded back: faer 0.24's float32
/// QR was measured losing backward stability on ill-conditioned input (||QR - A|| / ||A|| = 2e-3
/// at cond 1e5, against 4e-8 for LAPACK), while its float64 QR is still faster than LAPACK's
/// float32 one.
pub fn householder_qr<T: Field>(
    a: MatRef<'_, T>,
    block_size: Option<usize>,
    par: Par,
) -> (Mat<T>, Mat<T>) {
    if T::IS_SINGLE {
        let wide = Mat::<T::Wide>::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)].widen());
        let (q, r) = householder_qr_native(wide.as_ref(), block_size, par);
        let narrow =
            |x: &Mat<T::Wide>| Mat::<T>::from_fn(x.nrows(), x.ncols(), |i, j| T::narrow(x[(i, j)]));
        return (narrow(&q), narrow(&r));
    }
    householder_qr_native(a, block_size, par)
}

fn householder_qr_native<T: Field>(
    a: MatRef<'_, T>,
    block_size: Option<usize>,
    par: Par,
) -> (Mat<T>, Mat<T>) {
    let (m, n) = a.shape();
    let k = m.min(n);
    if k == 0 {
        return (Mat::zeros(m, k), Mat::zeros(k, n));
    }
    let mut factors = a.to_owned();
    let bs = block_size
        .unwrap_or_else(|| recommended_block_size::<T>(m, n))
        .clamp(1, k);
    let mut coeff = Mat::<T>::zeros(bs, k);
    let mut mem = MemBuffer::new(qr_in_place_scratch::<T>(m, n, bs, par, Default::default()));
    qr_in_place(
        factors.as_mut(),
        coeff.as_mut(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );

    let mut r = Mat::<T>::from_fn(k, n, |i, j| if i <= j { factors[(i, j)] } else { zero() });
    let mut q = Mat::<T>::from_fn(m, k, |i, j| if i == j { one() } else { zero() });
    let mut mem = MemBuffer::new(
        apply_block_householder_sequence_on_the_left_in_place_scratch::<T>(m, bs, k),
    );
    apply_block_householder_sequence_on_the_left_in_place_with_conj(
        factors.as_ref().get(.., ..k),
        coeff.as_ref(),
        Conj::No,
        q.as_mut(),
        par,
        MemStack::new(&mut mem),
    );
    make_diagonal_nonnegative(q.as_mut(), r.as_mut());
    (q, r)
}

/// Moves the phase of each diagonal entry of R into Q: row i of R times conj(phase), column i of
/// Q times phase (phase = r_ii / |r_ii|; for real input a sign flip where r_ii < 0).
fn make_diagonal_nonnegative<T: Field>(mut q: MatMut<'_, T>, mut r: MatMut<'_, T>) {
    for i in 0..r.nrows() {
        let d = r[(i, i)];
        let real_nonnegative = imag(&d) == Scalar::ZERO && !(real(&d) < Scalar::ZERO);
        if real_nonnegative {
            continue;
        }
        let phase = if imag(&d) == Scalar::ZERO {
            -one::<T>()
        } else {
            d * from_real::<T>(&recip(&abs(&d)))
        };
        let back = conj(&phase);
        for j in 0..r.ncols() {
            r[(i, j)] = back * r[(i, j)];
        }
        for row in 0..q.nrows() {
            q[(row, i)] *= phase;
        }
        r[(i, i)] = from_real(&abs(&d)); // exactly real, no rounding residue
    }
}

/// X^H X, computing only the lower triangle (half the flops of a full product) and mirroring it.
fn gram<T: Field>(x: MatRef<'_, T>, par: Par) -> Mat<T> {
    let n = x.ncols();
    let mut g = Mat::<T>::zeros(n, n);
    triangular::matmul(
        g.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        x.adjoint(),
        BlockStructure::Rectangular,
        x,
        BlockStructure::Rectangular,
        one(),
        par,
    );
    for j in 0..n {
        for i in 0..j {
            g[(i, j)] = conj(&g[(j, i)]);
        }
    }
    g
}

fn distance_to_identity<T: Field>(g: MatRef<'_, T>) -> f64 {
    let mut sum = 0.0f64;
    for j in 0..g.ncols() {
        for i in 0..g.nrows() {
            let re = real(&g[(i, j)]).to_f64() - if i == j { 1.0 } else { 0.0 };
            let im = imag(&g[(i, j)]).to_f64();
            sum += re * re + im * im;
        }
    }
    sum.sqrt()
}

/// One CholeskyQR pass on the Gram matrix `g` (+ shift I): X <- X R^{-1}; returns R,
/// or None when Cholesky breaks down or produces non-finite numbers.
fn cholesky_pass<T: Field>(
    x: MatMut<'_, T>,
    mut g: Mat<T>,
    shift: T::Real,
    par: Par,
) -> Option<Mat<T>> {
    let n = g.nrows();
    for i in 0..n {
        g[(i, i)] += from_real::<T>(&shift);
    }
    let mut mem = MemBuffer::new(cholesky_in_place_scratch::<T>(n, par, Default::default()));
    let regularization = LltRegularization {
        dynamic_regularization_delta: Scalar::ZERO,
        dynamic_regularization_epsilon: Scalar::ZERO,
    };
    cholesky_in_place(
        g.as_mut(),
        regularization,
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .ok()?;
    let lower = Mat::<T>::from_fn(n, n, |i, j| if i >= j { g[(i, j)] } else { zero() });
    if (0..n).any(|i| !(real(&lower[(i, i)]) > Scalar::ZERO) || !is_finite(&lower[(i, i)])) {
        return None;
    }
    // R = L^H: X R^{-1} = X conj(L)^{-T}  <=>  (X^T) <- conj(L)^{-1} X^T
    solve_lower_triangular_in_place(lower.as_ref().conjugate(), x.transpose_mut(), par);
    let mut r = Mat::<T>::from_fn(n, n, |i, j| conj(&lower[(j, i)]));
    real_diagonal(&mut r);
    Some(r)
}

fn all_finite<T: Field>(x: MatRef<'_, T>) -> bool {
    (0..x.ncols()).all(|j| (0..x.nrows()).all(|i| is_finite(&x[(i, j)])))
}

/// Drops the roundoff residue of a complex R's diagonal (real by construction: products of the
/// real Cholesky diagonals).
fn real_diagonal<T: Field>(r: &mut Mat<T>) {
    for i in 0..r.nrows().min(r.ncols()) {
        r[(i, i)] = from_real(&real(&r[(i, i)]));
    }
}

/// Repeats CholeskyQR passes on X (R accumulated) until a Gram matrix was near I.
fn refine<T: Field>(x: &mut Mat<T>, r: &mut Mat<T>, par: Par) -> bool {
    for _ in 0..MAX_EXTRA_PASSES {
        let g = gram(x.as_ref(), par);
        let close = distance_to_identity(g.as_ref()) <= GRAM_ACCEPT;
        let Some(r_pass) = cholesky_pass(x.as_mut(), g, Scalar::ZERO, par) else {
            return false;
        };
        let mut r_new = Mat::<T>::zeros(r.nrows(), r.ncols());
        matmul(
            r_new.as_mut(),
            Accum::Replace,
            r_pass.as_ref(),
            r.as_ref(),
            one(),
            par,
        );
        *r = r_new;
        real_diagonal(r);
        if close {
            return all_finite(x.as_ref());
        }
    }
    false
}

/// CholeskyQR2 with fallbacks: returns (Q, R, method). Requires m >= n.
pub fn cholesky_qr2<T: Field>(a: MatRef<'_, T>, par: Par) -> (Mat<T>, Mat<T>, QrMethod) {
    let (m, n) = a.shape();
    if n == 0 {
        return (Mat::zeros(m, 0), Mat::zeros(0, 0), QrMethod::CholeskyQr2);
    }
    let mut x = a.to_owned();
    if let Some(mut r) = cholesky_pass(x.as_mut(), gram(a, par), Scalar::ZERO, par) {
        if refine(&mut x, &mut r, par) {
            return (x, r, QrMethod::CholeskyQr2);
        }
    }
    // Shifted CholeskyQR (Fukaya, Kannan, Nakatsukasa, Yamamoto, Yanagisawa 2020):
    // s = 11 (m n + n (n + 1)) u ||A||_F^2 keeps Cholesky alive up to cond(A) ~ 1/u.
    let g = gram(a, par);
    let frob2: f64 = (0..n).map(|i| real(&g[(i, i)]).to_f64()).sum();
    let u = <T::Real as Scalar>::UNIT_ROUNDOFF.to_f64();
    let shift =
        <T::Real as Scalar>::from_f64(11.0 * ((m * n) as f64 + (n * (n + 1)) as f64) * u * frob2);
    if shift > Scalar::ZERO {
        let mut x = a.to_owned();
        if let Some(mut r) = cholesky_pass(x.as_mut(), g, shift, par) {
            if refine(&mut x, &mut r, par) {
                return (x, r, QrMethod::ShiftedCholeskyQr3);
            }
        }
    }
    let (q, r) = householder_qr(a, None, par);
    (q, r, QrMethod::Householder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orth_error<T: Field>(q: MatRef<'_, T>) -> f64 {
        distance_to_identity(gram(q, Par::Seq).as_ref())
    }

    fn test_matrix(m: usize, n: usize) -> Mat<f64> {
        Mat::from_fn(m, n, |i, j| {
            ((i * 7 + j * 13) % 17) as f64 - 8.0 + if i == j { 20.0 } else { 0.0 }
        })
    }

    #[test]
    fn householder_reconstructs() {
        let a = test_matrix(50, 7);
        let (q, r) = householder_qr(a.as_ref(), Some(3), Par::Seq);
        assert!(orth_error(q.as_ref()) < 1e-13);
        let diff = &q * &r - &a;
        assert!(diff.norm_l2() < 1e-12 * a.norm_l2());
        assert!((0..7).all(|i| r[(i, i)] >= 0.0));
    }

    #[test]
    fn cholesky_qr2_matches_householder() {
        let a = test_matrix(40, 6);
        let (q1, r1, method) = cholesky_qr2(a.as_ref(), Par::Seq);
        assert_eq!(method, QrMethod::CholeskyQr2);
        let (q2, r2) = householder_qr(a.as_ref(), None, Par::Seq);
        assert!((&q1 - &q2).norm_l2() < 1e-12);
        assert!((&r1 - &r2).norm_l2() < 1e-10 * r2.norm_l2());
    }

    #[test]
    fn float32_householder_is_backward_stable_on_ill_conditioned_input() {
        // Columns scaled from 1 down to 1e-5 after mixing: cond ~ 1e5.
        let (m, n) = (400, 12);
        let base = test_matrix(m, n);
        let (q0, _) = householder_qr(base.as_ref(), None, Par::Seq);
        let a = Mat::<f32>::from_fn(m, n, |i, j| {
            (0..n)
                .map(|k| {
                    q0[(i, k)]
                        * 10f64.powf(-5.0 * k as f64 / (n - 1) as f64)
                        * (((k * 3 + j * 5) % 7) as f64 - 3.0)
                })
                .sum::<f64>() as f32
        });
        let (q, r) = householder_qr(a.as_ref(), None, Par::Seq);
        let residual = (&q * &r - &a).norm_l2() / a.norm_l2();
        assert!(residual < 1e-6, "residual {residual}");
    }

    #[test]
    fn rank_deficient_falls_back_to_householder() {
        let mut a = test_matrix(30, 5);
        for i in 0..30 {
            a[(i, 4)] = a[(i, 0)] + a[(i, 1)];
        }
        let (q, r, method) = cholesky_qr2(a.as_ref(), Par::Seq);
        assert_ne!(method, QrMethod::CholeskyQr2);
        assert!(orth_error(q.as_ref()) < 1e-12);
        assert!((&q * &r - &a).norm_l2() < 1e-12 * a.norm_l2());
    }

    fn complex_test_matrix(m: usize, n: usize) -> Mat<faer::c64> {
        let re = test_matrix(m, n);
        Mat::from_fn(m, n, |i, j| {
            faer::c64::new(re[(i, j)], ((i * 5 + j * 11) % 13) as f64 - 6.0)
        })
    }

    #[test]
    fn complex_qr_is_unitary_with_real_positive_diagonal() {
        let a = complex_test_matrix(45, 6);
        let (q1, r1, method) = cholesky_qr2(a.as_ref(), Par::Seq);
        assert_eq!(method, QrMethod::CholeskyQr2);
        let (q2, r2) = householder_qr(a.as_ref(), Some(2), Par::Seq);
        for (q, r) in [(&q1, &r1), (&q2, &r2)] {
            assert!(orth_error(q.as_ref()) < 1e-13);
            assert!((q * r - &a).norm_l2() < 1e-12 * a.norm_l2());
            assert!(
                (0..6).all(|i| r[(i, i)].im == 0.0 && r[(i, i)].re > 0.0),
                "{:?}",
                (0..6).map(|i| r[(i, i)]).collect::<Vec<_>>()
            );
        }
        // the factorization with a real positive diagonal is unique
        assert!((&q1 - &q2).norm_l2() < 1e-12);
    }

    #[test]
    fn complex64_qr_runs_in_double_precision() {
        let a = complex_test_matrix(30, 4);
        let narrow = Mat::<faer::c32>::from_fn(30, 4, |i, j| {
            faer::c32::new(a[(i, j)].re as f32, a[(i, j)].im as f32)
        });
        let (q, r) = householder_qr(narrow.as_ref(), None, Par::Seq);
        assert!((&q * &r - &narrow).norm_l2() < 1e-6 * narrow.norm_l2());
    }

    #[test]
    fn zero_matrix_gives_orthonormal_q() {
        let a = Mat::<f64>::zeros(10, 3);
        let (q, r, method) = cholesky_qr2(a.as_ref(), Par::Seq);
        assert_eq!(method, QrMethod::Householder);
        assert!(orth_error(q.as_ref()) < 1e-14);
        assert_eq!(r.norm_l2(), 0.0);
    }
}
