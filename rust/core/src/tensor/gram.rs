//! The small R x R steps of ALS, on one thread: Gram matrices, their Hadamard products, and the
//! least-squares solve `A = M pinv(V)` by a symmetric eigendecomposition (the same rule as the
//! xp reference: eigenvalues below R * eps * max are dropped, which flags a degenerate model).

use crate::error::{Error, Result};
use crate::scalar::Scalar;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// F^T F for a row-major (rows x rank) factor: rank x rank, row-major (symmetric).
pub fn gram<T: Scalar>(f: &[T], rows: usize, rank: usize) -> Vec<T> {
    let fm = MatRef::from_row_major_slice(f, rows, rank);
    let mut out = vec![T::ZERO; rank * rank];
    matmul(
        MatMut::from_row_major_slice_mut(&mut out, rank, rank),
        Accum::Replace,
        fm.transpose(),
        fm,
        T::ONE,
        Par::Seq,
    );
    out
}

/// Hadamard product of `grams` except `skip` (all ones when nothing is left).
pub fn hadamard_except<T: Scalar>(grams: &[Vec<T>], skip: Option<usize>, rank: usize) -> Vec<T> {
    let mut out = vec![T::ONE; rank * rank];
    for (k, g) in grams.iter().enumerate() {
        if Some(k) != skip {
            for (o, &v) in out.iter_mut().zip(g) {
                *o *= v;
            }
        }
    }
    out
}

/// `M pinv(V)` for a symmetric positive semidefinite V (rank x rank, row-major) and M
/// (rows x rank, row-major). Returns the solution and whether V was numerically singular.
pub fn solve_gram<T: Scalar>(v: &[T], m: &[T], rows: usize, rank: usize) -> Result<(Vec<T>, bool)> {
    let vm = MatRef::from_row_major_slice(v, rank, rank);
    let mut s = Mat::<T>::zeros(rank, 1);
    let mut u = Mat::<T>::zeros(rank, rank);
    let mut mem = MemBuffer::new(self_adjoint_evd_scratch::<T>(
        rank,
        ComputeEigenvectors::Yes,
        Par::Seq,
        Default::default(),
    ));
    self_adjoint_evd(
        vm,
        s.as_mut().col_mut(0).as_diagonal_mut(),
        Some(u.as_mut()),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| {
        Error::NumericalBreakdown(format!("eigendecomposition of the Gram matrix: {e:?}"))
    })?;
    let top = (0..rank)
        .map(|i| s[(i, 0)])
        .fold(T::ZERO, |a, b| if b > a { b } else { a });
    let eps = T::UNIT_ROUNDOFF + T::UNIT_ROUNDOFF;
    let threshold = T::from_f64(rank as f64) * eps * top;
    let mut degenerate = !(top > T::ZERO);
    let inverse: Vec<T> = (0..rank)
        .map(|i| {
            let lambda = s[(i, 0)];
            if top > T::ZERO && lambda > threshold {
                T::ONE / lambda
            } else {
                degenerate = true;
                T::ZERO
            }
        })
        .collect();
    let mm = MatRef::from_row_major_slice(m, rows, rank);
    let mut tmp = Mat::<T>::zeros(rows, rank);
    matmul(
        tmp.as_mut(),
        Accum::Replace,
        mm,
        u.as_ref(),
        T::ONE,
        Par::Seq,
    );
    for (j, &inv) in inverse.iter().enumerate() {
        for i in 0..rows {
            tmp[(i, j)] *= inv;
        }
    }
    let mut out = vec![T::ZERO; rows * rank];
    matmul(
        MatMut::from_row_major_slice_mut(&mut out, rows, rank),
        Accum::Replace,
        tmp.as_ref(),
        u.as_ref().transpose(),
        T::ONE,
        Par::Seq,
    );
    Ok((out, degenerate))
}

/// Sum of the entrywise product of two equal-length slices, accumulated in f64.
pub fn dot_f64<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x.to_f64() * y.to_f64())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_matches_inverse_and_flags_singular() {
        let f = vec![1.0, 2.0, 0.5, -1.0, 3.0, 1.0]; // 3 x 2
        let v = gram(&f, 3, 2);
        let m = vec![1.0, 0.0, 0.0, 1.0];
        let (x, bad) = solve_gram(&v, &m, 2, 2).unwrap();
        assert!(!bad);
        // x V = m
        for i in 0..2 {
            for j in 0..2 {
                let got: f64 = (0..2).map(|k| x[i * 2 + k] * v[k * 2 + j]).sum();
                assert!((got - m[i * 2 + j]).abs() < 1e-12);
            }
        }
        let (z, bad) = solve_gram(&[0.0f64; 4], &m, 2, 2).unwrap();
        assert!(bad && z.iter().all(|&v| v == 0.0));
    }
}
