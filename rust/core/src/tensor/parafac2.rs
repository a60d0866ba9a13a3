//! The projection step of PARAFAC2 ALS over a zero-padded stack of ragged slices: for slice `k`
//! (its first `rows[k]` rows), `P_k = U V^T` from the thin SVD of `X_k C diag(A[k]) B^T` (the
//! orthonormal `P_k` closest to it) and the projected slice `Y_k = P_k^T X_k`. One rayon task per
//! slice: the slice is read twice while it is still in cache, and the padding is never read.

use crate::error::{Error, Result};
use crate::scalar::Scalar;
use crate::tensor::gram::dot_f64;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::linalg::matmul::matmul;
use faer::linalg::svd::{svd, svd_scratch, ComputeSvdVectors};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

/// The projections `(K, n, R)` (rows past `rows[k]` are zero), the projected tensor `(K, R, J)`,
/// both row-major, and the squared norm of the projected tensor (accumulated in f64).
pub struct Projected<T> {
    pub projections: Vec<T>,
    pub projected: Vec<T>,
    pub norm_sq: f64,
}

/// The PARAFAC2 projection step. `data` is the `(K, n, J)` stack, `rows[k] <= n` the rows of slice
/// `k`; `factors` are `A` (K x R), `B` (R x R), `C` (J x R), row-major.
pub fn parafac2_project<T: Scalar>(
    data: &[T],
    shape: [usize; 3],
    rows: &[usize],
    factors: [&[T]; 3],
    rank: usize,
    par: Par,
) -> Result<Projected<T>> {
    let [k, n, j] = shape;
    let [a, b, c] = factors;
    check(data, shape, rows, a, b, c, rank)?;
    let mut projections = vec![T::ZERO; k * n * rank];
    let mut projected = vec![T::ZERO; k * rank * j];
    let work = |slice: usize, p: &mut [T], y: &mut [T]| -> Result<()> {
        let start = slice * n * j;
        let x = MatRef::from_row_major_slice(&data[start..start + rows[slice] * j], rows[slice], j);
        project_slice(x, &a[slice * rank..(slice + 1) * rank], b, c, p, y)
    };
    let outcome: Result<()> = match par {
        Par::Seq => projections
            .chunks_mut(n * rank)
            .zip(projected.chunks_mut(rank * j))
            .enumerate()
            .try_for_each(|(s, (p, y))| work(s, p, y)),
        _ => projections
            .par_chunks_mut(n * rank)
            .zip(projected.par_chunks_mut(rank * j))
            .enumerate()
            .try_for_each(|(s, (p, y))| work(s, p, y)),
    };
    outcome?;
    let norm_sq = dot_f64(&projected, &projected);
    Ok(Projected {
        projections,
        projected,
        norm_sq,
    })
}

fn check<T>(
    data: &[T],
    [k, n, j]: [usize; 3],
    rows: &[usize],
    a: &[T],
    b: &[T],
    c: &[T],
    rank: usize,
) -> Result<()> {
    if k == 0 || n == 0 || j == 0 {
        return Err(Error::invalid(
            "x",
            format!("has an empty mode: shape {:?}", [k, n, j]),
        ));
    }
    if k.checked_mul(n).and_then(|kn| kn.checked_mul(j)) != Some(data.len()) {
        return Err(Error::invalid(
            "x",
            format!("has {} entries, not {k} x {n} x {j}", data.len()),
        ));
    }
    if rank == 0 || rank > j {
        return Err(Error::invalid(
            "factors",
            format!("rank {rank} is not in 1..={j}"),
        ));
    }
    if rows.len() != k || rows.iter().any(|&r| r > n) {
        return Err(Error::invalid(
            "rows",
            format!("must be {k} row counts, each at most {n}"),
        ));
    }
    let expected = [k * rank, rank * rank, j * rank];
    for (name, (len, want)) in ["A", "B", "C"]
        .iter()
        .zip([a.len(), b.len(), c.len()].into_iter().zip(expected))
    {
        if len != want {
            return Err(Error::invalid(
                "factors",
                format!("{name} has {len} entries, expected {want}"),
            ));
        }
    }
    Ok(())
}

/// `P = U V^T` of `X C diag(a) B^T` into `p` (its first `x.nrows()` rows), `P^T X` into `y`.
fn project_slice<T: Scalar>(
    x: MatRef<'_, T>,
    a: &[T],
    b: &[T],
    c: &[T],
    p: &mut [T],
    y: &mut [T],
) -> Result<()> {
    let (rows, j) = x.shape();
    let rank = a.len();
    if rows == 0 {
        return Ok(()); // an empty slice projects to zero
    }
    // W = C diag(a) B^T (J x R): small, so the slice meets it in one product.
    let scaled = Mat::<T>::from_fn(j, rank, |i, r| c[i * rank + r] * a[r]);
    let mut w = Mat::<T>::zeros(j, rank);
    let bm = MatRef::from_row_major_slice(b, rank, rank);
    matmul(
        w.as_mut(),
        Accum::Replace,
        scaled.as_ref(),
        bm.transpose(),
        T::ONE,
        Par::Seq,
    );
    let mut m = Mat::<T>::zeros(rows, rank);
    matmul(m.as_mut(), Accum::Replace, x, w.as_ref(), T::ONE, Par::Seq);
    let mut pm = MatMut::from_row_major_slice_mut(&mut p[..rows * rank], rows, rank);
    polar(m.as_ref(), pm.as_mut())?;
    matmul(
        MatMut::from_row_major_slice_mut(y, rank, j),
        Accum::Replace,
        pm.as_ref().transpose(),
        x,
        T::ONE,
        Par::Seq,
    );
    Ok(())
}

/// The polar factor `U V^T` of `m` (`m = U S V^T`, thin) into `p`. When `M^T M` is well
/// conditioned (`lambda_min >= sqrt(u) lambda_max`): `P = M (M^T M)^{-1/2}` from its
/// eigendecomposition, then one Newton-Schulz step `P (3I - P^T P) / 2`. The Gram route leaves an
/// orthonormality error of about `u cond(M)^2 <= sqrt(u)`, which the step squares to `u`; its
/// rotation error is about `u cond(M)`, as for the SVD. Otherwise (or `rows < rank`) the thin SVD.
/// On the benchmark's 100 x 5 products the Gram route costs a few small products instead of an SVD.
fn polar<T: Scalar>(m: MatRef<'_, T>, mut p: MatMut<'_, T>) -> Result<()> {
    if m.nrows() >= m.ncols() && polar_from_gram(m, p.as_mut())? {
        return Ok(());
    }
    polar_from_svd(m, p)
}

fn polar_from_gram<T: Scalar>(m: MatRef<'_, T>, p: MatMut<'_, T>) -> Result<bool> {
    let (rows, rank) = m.shape();
    let mut g = Mat::<T>::zeros(rank, rank);
    matmul(
        g.as_mut(),
        Accum::Replace,
        m.transpose(),
        m,
        T::ONE,
        Par::Seq,
    );
    let mut s = Mat::<T>::zeros(rank, 1);
    let mut u = Mat::<T>::zeros(rank, rank);
    let mut mem = MemBuffer::new(self_adjoint_evd_scratch::<T>(
        rank,
        ComputeEigenvectors::Yes,
        Par::Seq,
        Default::default(),
    ));
    self_adjoint_evd(
        g.as_ref(),
        s.as_mut().col_mut(0).as_diagonal_mut(),
        Some(u.as_mut()),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| Error::NumericalBreakdown(format!("eigendecomposition of M^T M: {e:?}")))?;
    let values: Vec<T> = (0..rank).map(|i| s[(i, 0)]).collect();
    let top = values
        .iter()
        .fold(T::ZERO, |a, &b| if b > a { b } else { a });
    let low = values.iter().fold(top, |a, &b| if b < a { b } else { a });
    let floor = Scalar::sqrt(T::UNIT_ROUNDOFF) * top;
    if !(top > T::ZERO && low >= floor) {
        return Ok(false); // ill-conditioned (or NaN): the SVD decides
    }
    let inv_sqrt: Vec<T> = values.iter().map(|&v| T::ONE / Scalar::sqrt(v)).collect();
    let h = Mat::<T>::from_fn(rank, rank, |i, l| {
        (0..rank).fold(T::ZERO, |acc, t| acc + u[(i, t)] * inv_sqrt[t] * u[(l, t)])
    });
    let mut first = Mat::<T>::zeros(rows, rank);
    matmul(
        first.as_mut(),
        Accum::Replace,
        m,
        h.as_ref(),
        T::ONE,
        Par::Seq,
    );
    let mut q = Mat::<T>::zeros(rank, rank);
    matmul(
        q.as_mut(),
        Accum::Replace,
        first.as_ref().transpose(),
        first.as_ref(),
        T::ONE,
        Par::Seq,
    );
    let half = T::from_f64(0.5);
    let step = Mat::<T>::from_fn(rank, rank, |i, l| {
        let identity = if i == l { T::from_f64(1.5) } else { T::ZERO };
        identity - half * q[(i, l)]
    });
    matmul(
        p,
        Accum::Replace,
        first.as_ref(),
        step.as_ref(),
        T::ONE,
        Par::Seq,
    );
    Ok(true)
}

fn polar_from_svd<T: Scalar>(m: MatRef<'_, T>, p: MatMut<'_, T>) -> Result<()> {
    let (rows, rank) = m.shape();
    let thin = rows.min(rank);
    let mut s = Mat::<T>::zeros(thin, 1);
    let mut u = Mat::<T>::zeros(rows, thin);
    let mut v = Mat::<T>::zeros(rank, thin);
    let mut mem = MemBuffer::new(svd_scratch::<T>(
        rows,
        rank,
        ComputeSvdVectors::Thin,
        ComputeSvdVectors::Thin,
        Par::Seq,
        Default::default(),
    ));
    svd(
        m,
        s.as_mut().col_mut(0).as_diagonal_mut(),
        Some(u.as_mut()),
        Some(v.as_mut()),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| Error::NumericalBreakdown(format!("SVD of a PARAFAC2 cross product: {e:?}")))?;
    matmul(
        p,
        Accum::Replace,
        u.as_ref(),
        v.as_ref().transpose(),
        T::ONE,
        Par::Seq,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64, len: usize) -> Vec<f64> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect()
    }

    #[test]
    fn projections_are_orthonormal_and_project_the_slice() {
        let (k, n, j, r) = (3, 7, 5, 2);
        let rows = [7, 4, 6];
        let mut data = lcg(1, k * n * j);
        for (s, &nk) in rows.iter().enumerate() {
            data[s * n * j + nk * j..(s + 1) * n * j].fill(0.0); // the padding
        }
        let (a, b, c) = (lcg(2, k * r), lcg(3, r * r), lcg(4, j * r));
        for par in [Par::Seq, Par::rayon(2)] {
            let out = parafac2_project(&data, [k, n, j], &rows, [&a, &b, &c], r, par).unwrap();
            for (s, &nk) in rows.iter().enumerate() {
                let p =
                    MatRef::from_row_major_slice(&out.projections[s * n * r..][..nk * r], nk, r);
                let ptp = p.transpose() * p;
                for i in 0..r {
                    for l in 0..r {
                        let want = if i == l { 1.0 } else { 0.0 };
                        assert!((ptp[(i, l)] - want).abs() < 1e-12);
                    }
                }
                assert!(out.projections[s * n * r + nk * r..(s + 1) * n * r]
                    .iter()
                    .all(|&v| v == 0.0));
                let x = MatRef::from_row_major_slice(&data[s * n * j..][..nk * j], nk, j);
                let y = p.transpose() * x;
                for i in 0..r {
                    for l in 0..j {
                        assert!((y[(i, l)] - out.projected[s * r * j + i * j + l]).abs() < 1e-12);
                    }
                }
            }
            let norm: f64 = out.projected.iter().map(|v| v * v).sum();
            assert!((norm - out.norm_sq).abs() < 1e-12);
        }
    }

    #[test]
    fn gram_route_agrees_with_the_svd_and_ill_conditioning_falls_back() {
        let (rows, rank) = (40, 4);
        let mut m = Mat::<f64>::from_fn(rows, rank, |i, l| lcg((i * rank + l) as u64 + 7, 1)[0]);
        let mut svd_p = Mat::<f64>::zeros(rows, rank);
        polar_from_svd(m.as_ref(), svd_p.as_mut()).unwrap();
        let mut gram_p = Mat::<f64>::zeros(rows, rank);
        assert!(polar_from_gram(m.as_ref(), gram_p.as_mut()).unwrap());
        assert!((&gram_p - &svd_p).norm_max() < 1e-13);
        for i in 0..rows {
            m[(i, 3)] = m[(i, 2)] * (1.0 + 1e-9); // cond(M) ~ 1e9: the Gram route declines
        }
        assert!(!polar_from_gram(m.as_ref(), gram_p.as_mut()).unwrap());
        let mut p = Mat::<f64>::zeros(rows, rank);
        polar(m.as_ref(), p.as_mut()).unwrap();
        polar_from_svd(m.as_ref(), svd_p.as_mut()).unwrap();
        assert!((&p - &svd_p).norm_max() == 0.0);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let data = vec![0.0f64; 2 * 3 * 4];
        let (a, b, c) = (vec![1.0; 4], vec![1.0; 4], vec![1.0; 8]);
        let go = |rows: &[usize], rank| {
            parafac2_project(&data, [2, 3, 4], rows, [&a, &b, &c], rank, Par::Seq).is_err()
        };
        assert!(go(&[3, 4], 2)); // a row count past the padding
        assert!(go(&[3], 2)); // one count for two slices
        assert!(go(&[3, 3], 5)); // rank above J
        assert!(go(&[3, 3], 1)); // factors of another rank
        assert!(!go(&[3, 0], 2)); // an empty slice is fine
        assert!(parafac2_project(&data, [2, 3, 5], &[3, 3], [&a, &b, &c], 2, Par::Seq).is_err());
    }
}
