//! Recurrences of stochastic trace estimation on explicit matrices (dense or CSR), over blocks
//! of vectors: the Chebyshev three-term recurrence (moments X^T T_d(A_hat) X) and independent
//! Lanczos runs with full reorthogonalization (the tridiagonal coefficients).
//!
//! Blocks of s vectors of length n are stored row-major (n x s, row i holds entry i of every
//! vector), so a CSR row touches contiguous memory and a dense product is one faer matmul.
//! The random vectors come from the caller (Python draws them from a NumPy Generator), so the
//! Rust and xp paths see the same numbers.

use crate::error::{Error, Result};
use crate::interrupt::Interrupt;
use crate::scalar::Scalar;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// A CSR matrix borrowed from the caller (SciPy's `indptr`, `indices`, `data`).
#[derive(Clone, Copy)]
pub struct CsrRef<'a, T> {
    pub nrows: usize,
    pub ncols: usize,
    pub indptr: &'a [i64],
    pub indices: &'a [i64],
    pub data: &'a [T],
}

impl<'a, T: Scalar> CsrRef<'a, T> {
    /// Checks the structure (monotone `indptr`, column indices in range) once.
    pub fn new(ncols: usize, indptr: &'a [i64], indices: &'a [i64], data: &'a [T]) -> Result<Self> {
        if indptr.is_empty() {
            return Err(Error::invalid("indptr", "must have nrows + 1 >= 1 entries"));
        }
        let nrows = indptr.len() - 1;
        if indices.len() != data.len() {
            return Err(Error::invalid(
                "indices",
                format!("has {} entries but data has {}", indices.len(), data.len()),
            ));
        }
        if indptr[0] != 0
            || indptr.windows(2).any(|w| w[0] > w[1])
            || indptr[nrows] as usize != data.len()
        {
            return Err(Error::invalid(
                "indptr",
                "must start at 0, be nondecreasing and end at nnz",
            ));
        }
        if indices.iter().any(|&j| j < 0 || j as usize >= ncols) {
            return Err(Error::invalid(
                "indices",
                format!("column index out of range 0..{ncols}"),
            ));
        }
        Ok(CsrRef {
            nrows,
            ncols,
            indptr,
            indices,
            data,
        })
    }
}

/// The matrix a recurrence multiplies by.
#[derive(Clone, Copy)]
pub enum Operator<'a, T> {
    Dense(MatRef<'a, T>),
    Csr(CsrRef<'a, T>),
}

impl<T: Scalar> Operator<'_, T> {
    fn shape(&self) -> (usize, usize) {
        match self {
            Operator::Dense(a) => a.shape(),
            Operator::Csr(c) => (c.nrows, c.ncols),
        }
    }

    /// y = A x for row-major blocks x (n x s) and y (n x s).
    fn apply(&self, x: &[T], y: &mut [T], s: usize, par: Par) {
        match self {
            Operator::Dense(a) => {
                let n = a.ncols();
                let xv = MatRef::from_row_major_slice(x, n, s);
                let yv = MatMut::from_row_major_slice_mut(y, a.nrows(), s);
                matmul(yv, Accum::Replace, *a, xv, T::ONE, par);
            }
            Operator::Csr(c) => {
                let row = |(i, out): (usize, &mut [T])| {
                    out.iter_mut().for_each(|o| *o = T::ZERO);
                    let (start, end) = (c.indptr[i] as usize, c.indptr[i + 1] as usize);
                    for k in start..end {
                        let a = c.data[k];
                        let j = c.indices[k] as usize;
                        let xr = &x[j * s..(j + 1) * s];
                        for (o, &xv) in out.iter_mut().zip(xr) {
                            *o += a * xv;
                        }
                    }
                };
                if is_parallel(par) {
                    y.par_chunks_mut(s).enumerate().for_each(row);
                } else {
                    y.chunks_mut(s).enumerate().for_each(row);
                }
            }
        }
    }
}

impl<T: Scalar> Operator<'_, T> {
    /// y = A x for column-major blocks (column r contiguous): one GEMM for a dense A, one
    /// sparse matrix-vector product per column (columns in parallel) for a CSR A.
    fn apply_columns(&self, x: &[T], y: &mut [T], s: usize, par: Par) {
        match self {
            Operator::Dense(a) => {
                let n = a.ncols();
                let xv = MatRef::from_column_major_slice(x, n, s);
                let yv = MatMut::from_column_major_slice_mut(y, a.nrows(), s);
                matmul(yv, Accum::Replace, *a, xv, T::ONE, par);
            }
            Operator::Csr(c) => {
                let n = c.ncols;
                let column = |(out, xr): (&mut [T], &[T])| {
                    for (i, o) in out.iter_mut().enumerate() {
                        let (start, end) = (c.indptr[i] as usize, c.indptr[i + 1] as usize);
                        let mut acc = T::ZERO;
                        for k in start..end {
                            acc += c.data[k] * xr[c.indices[k] as usize];
                        }
                        *o = acc;
                    }
                };
                if is_parallel(par) {
                    y.par_chunks_mut(c.nrows)
                        .zip(x.par_chunks(n))
                        .for_each(column);
                } else {
                    y.chunks_mut(c.nrows).zip(x.chunks(n)).for_each(column);
                }
            }
        }
    }
}

fn is_parallel(par: Par) -> bool {
    !matches!(par, Par::Seq)
}

fn check_block<T: Scalar>(
    op: &Operator<'_, T>,
    x: MatRef<'_, T>,
    name: &'static str,
) -> Result<(usize, usize)> {
    let (m, n) = op.shape();
    if m != n {
        return Err(Error::invalid(
            "a",
            format!("must be square, got {m} x {n}"),
        ));
    }
    if x.nrows() != n || x.ncols() == 0 {
        return Err(Error::invalid(
            name,
            format!(
                "must have {n} rows and at least one column, got {} x {}",
                x.nrows(),
                x.ncols()
            ),
        ));
    }
    Ok((n, x.ncols()))
}

fn to_row_major<T: Scalar>(x: MatRef<'_, T>) -> Vec<T> {
    let (n, s) = x.shape();
    let mut out = Vec::with_capacity(n * s);
    for i in 0..n {
        for r in 0..s {
            out.push(x[(i, r)]);
        }
    }
    out
}

/// Gram p^T q of two row-major n x s blocks: the full s x s matrix (row-major) or its diagonal.
fn gram<T: Scalar>(p: &[T], q: &[T], n: usize, s: usize, full: bool, par: Par) -> Vec<f64> {
    if full {
        let mut g = vec![T::ZERO; s * s];
        let pv = MatRef::from_row_major_slice(p, n, s);
        let qv = MatRef::from_row_major_slice(q, n, s);
        matmul(
            MatMut::from_row_major_slice_mut(&mut g, s, s),
            Accum::Replace,
            pv.transpose(),
            qv,
            T::ONE,
            par,
        );
        g.into_iter().map(|v| v.to_f64()).collect()
    } else {
        let mut d = vec![0.0f64; s];
        for (pr, qr) in p.chunks(s).zip(q.chunks(s)) {
            for ((acc, &a), &b) in d.iter_mut().zip(pr).zip(qr) {
                *acc += a.to_f64() * b.to_f64();
            }
        }
        d
    }
}

/// Chebyshev moments mu_d = X^T T_d(A_hat) X, d = 0 ..= 2 n_steps, of A_hat = (A - center) /
/// half_width, from `n_steps` block products (doubling: T_2k = 2 T_k^2 - T_0,
/// T_2k+1 = 2 T_k+1 T_k - T_1). Returns (2 n_steps + 1) blocks of s x s (row-major) when `full`,
/// else of s diagonal entries, concatenated; f64. `interrupt` is checked before every step.
#[allow(clippy::too_many_arguments)]
pub fn chebyshev_moments<T: Scalar>(
    op: Operator<'_, T>,
    x: MatRef<'_, T>,
    center: f64,
    half_width: f64,
    n_steps: usize,
    full: bool,
    par: Par,
    interrupt: &Interrupt,
) -> Result<Vec<f64>> {
    let (n, s) = check_block(&op, x, "x")?;
    if !(half_width.is_finite() && half_width > 0.0 && center.is_finite()) {
        return Err(Error::invalid(
            "half_width",
            format!("must be positive and finite (center {center}, half_width {half_width})"),
        ));
    }
    if n_steps == 0 {
        return Err(Error::invalid("n_steps", "must be at least 1"));
    }
    let (c, inv_h) = (T::from_f64(center), T::from_f64(1.0 / half_width));
    let two = T::from_f64(2.0);
    let block = if full { s * s } else { s };
    let mut moments = vec![0.0f64; (2 * n_steps + 1) * block];
    let mut prev = to_row_major(x);
    let mut ax = vec![T::ZERO; n * s];
    // V_1 = A_hat X
    op.apply(&prev, &mut ax, s, par);
    let mut cur: Vec<T> = ax
        .iter()
        .zip(&prev)
        .map(|(&a, &v)| (a - c * v) * inv_h)
        .collect();
    let m0 = gram(&prev, &prev, n, s, full, par);
    let m1 = gram(&prev, &cur, n, s, full, par);
    moments[..block].copy_from_slice(&m0);
    moments[block..2 * block].copy_from_slice(&m1);
    for k in 1..=n_steps {
        interrupt.check()?;
        let g = gram(&cur, &cur, n, s, full, par);
        for (i, out) in moments[2 * k * block..(2 * k + 1) * block]
            .iter_mut()
            .enumerate()
        {
            *out = 2.0 * g[i] - m0[i];
        }
        if k == n_steps {
            break;
        }
        op.apply(&cur, &mut ax, s, par);
        // V_{k+1} = 2 A_hat V_k - V_{k-1}, written over V_{k-1}
        for ((p, &a), &v) in prev.iter_mut().zip(&ax).zip(&cur) {
            *p = two * (a - c * v) * inv_h - *p;
        }
        let g = gram(&prev, &cur, n, s, full, par);
        for (i, out) in moments[(2 * k + 1) * block..(2 * k + 2) * block]
            .iter_mut()
            .enumerate()
        {
            *out = 2.0 * g[i] - m1[i];
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    Ok(moments)
}

/// Independent Lanczos runs started from the (unit) columns of `v0`, advanced together (one
/// block product per step), each fully reorthogonalized (twice) against its own basis.
/// Returns (alpha, beta), each s x n_steps row-major, f64; beta[r][j] couples steps j and j + 1.
/// A run whose Krylov space is exhausted (beta below eps^(3/4) times the largest coefficient)
/// stops: its later alpha and beta are zero. `interrupt` is checked before every step.
pub fn lanczos<T: Scalar>(
    op: Operator<'_, T>,
    v0: MatRef<'_, T>,
    n_steps: usize,
    par: Par,
    interrupt: &Interrupt,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (n, s) = check_block(&op, v0, "v0")?;
    if n_steps == 0 {
        return Err(Error::invalid("n_steps", "must be at least 1"));
    }
    let threshold = (2.0 * T::UNIT_ROUNDOFF.to_f64()).powf(0.75);
    // Column-major blocks: each run reads and writes its own contiguous column.
    let mut v: Vec<T> = (0..s)
        .flat_map(|r| (0..n).map(move |i| (r, i)))
        .map(|(r, i)| v0[(i, r)])
        .collect();
    let mut w = vec![T::ZERO; n * s];
    // Per run: its basis (n_steps x n, row-major), previous vector, beta, scale, active flag.
    struct Run<T> {
        basis: Vec<T>,
        prev: Vec<T>,
        beta_prev: T,
        scale: f64,
        active: bool,
        alpha: Vec<f64>,
        beta: Vec<f64>,
    }
    let mut runs: Vec<Run<T>> = (0..s)
        .map(|_| Run {
            basis: vec![T::ZERO; n_steps * n],
            prev: vec![T::ZERO; n],
            beta_prev: T::ZERO,
            scale: 0.0,
            active: true,
            alpha: vec![0.0; n_steps],
            beta: vec![0.0; n_steps],
        })
        .collect();
    for j in 0..n_steps {
        interrupt.check()?;
        op.apply_columns(&v, &mut w, s, par);
        let step = |((run, vcol), wcol): ((&mut Run<T>, &mut [T]), &[T])| {
            let vr: Vec<T> = vcol.to_vec();
            let mut wr: Vec<T> = wcol.to_vec();
            run.basis[j * n..(j + 1) * n].copy_from_slice(&vr);
            let mut alpha = dot(&vr, &wr);
            for ((x, &a), &b) in wr.iter_mut().zip(&vr).zip(&run.prev) {
                *x -= alpha * a + run.beta_prev * b;
            }
            // Classical Gram-Schmidt (the xp reference always runs it twice): c = B w, w -= B^T c
            // with B the run's basis (j + 1 rows), two matrix-vector products each.
            let basis = MatRef::from_row_major_slice(&run.basis[..(j + 1) * n], j + 1, n);
            let norm_in = dot(&wr, &wr).to_f64();
            let mut coefficients = vec![T::ZERO; j + 1];
            for pass in 0..2 {
                // DGKS: the second pass only when the first removed more than 1 - 1/sqrt(2) of w
                // (otherwise w is already orthogonal to working precision).
                let before = if pass == 1 {
                    dot(&wr, &wr).to_f64()
                } else {
                    0.0
                };
                if pass == 1 && before > 0.5 * norm_in {
                    break;
                }
                {
                    let wv = MatRef::from_column_major_slice(&wr, n, 1);
                    let cv = MatMut::from_column_major_slice_mut(&mut coefficients, j + 1, 1);
                    matmul(cv, Accum::Replace, basis, wv, T::ONE, Par::Seq);
                }
                {
                    let cv = MatRef::from_column_major_slice(&coefficients, j + 1, 1);
                    let wv = MatMut::from_column_major_slice_mut(&mut wr, n, 1);
                    matmul(wv, Accum::Add, basis.transpose(), cv, -T::ONE, Par::Seq);
                }
                alpha += coefficients[j];
            }
            let beta = dot(&wr, &wr).sqrt();
            run.scale = run
                .scale
                .max(alpha.to_f64().abs().max(run.beta_prev.to_f64()));
            let alive = run.active && beta.to_f64() > threshold * run.scale;
            run.alpha[j] = if run.active { alpha.to_f64() } else { 0.0 };
            run.beta[j] = if alive { beta.to_f64() } else { 0.0 };
            for (out, &x) in vcol.iter_mut().zip(&wr) {
                *out = if alive { x / beta } else { T::ZERO };
            }
            run.prev = vr;
            run.beta_prev = if alive { beta } else { T::ZERO };
            run.active = alive;
        };
        if is_parallel(par) {
            runs.par_iter_mut()
                .zip(v.par_chunks_mut(n))
                .zip(w.par_chunks(n))
                .for_each(step);
        } else {
            runs.iter_mut()
                .zip(v.chunks_mut(n))
                .zip(w.chunks(n))
                .for_each(step);
        }
    }
    let mut alpha = Vec::with_capacity(s * n_steps);
    let mut beta = Vec::with_capacity(s * n_steps);
    for run in &runs {
        alpha.extend_from_slice(&run.alpha);
        beta.extend_from_slice(&run.beta);
    }
    Ok((alpha, beta))
}

fn dot<T: Scalar>(a: &[T], b: &[T]) -> T {
    let mut acc = T::ZERO;
    for (&x, &y) in a.iter().zip(b) {
        acc += x * y;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::NEVER;
    use faer::Mat;

    fn tridiagonal(n: usize) -> Mat<f64> {
        Mat::from_fn(n, n, |i, j| {
            if i == j {
                2.0 + i as f64 * 0.01
            } else if i.abs_diff(j) == 1 {
                -1.0
            } else {
                0.0
            }
        })
    }

    fn as_csr(a: &Mat<f64>) -> (Vec<i64>, Vec<i64>, Vec<f64>) {
        let (mut indptr, mut indices, mut data) = (vec![0i64], vec![], vec![]);
        for i in 0..a.nrows() {
            for j in 0..a.ncols() {
                if a[(i, j)] != 0.0 {
                    indices.push(j as i64);
                    data.push(a[(i, j)]);
                }
            }
            indptr.push(data.len() as i64);
        }
        (indptr, indices, data)
    }

    #[test]
    fn chebyshev_moments_of_dense_and_csr_agree_with_direct_polynomials() {
        let n = 12;
        let a = tridiagonal(n);
        let x = Mat::<f64>::from_fn(n, 3, |i, j| ((i * 7 + j * 3) % 5) as f64 - 2.0);
        let (center, half) = (2.05, 2.2);
        let dense = chebyshev_moments(
            Operator::Dense(a.as_ref()),
            x.as_ref(),
            center,
            half,
            3,
            true,
            Par::Seq,
            &NEVER,
        )
        .unwrap();
        let (indptr, indices, data) = as_csr(&a);
        let csr = CsrRef::new(n, &indptr, &indices, &data).unwrap();
        let sparse = chebyshev_moments(
            Operator::Csr(csr),
            x.as_ref(),
            center,
            half,
            3,
            true,
            Par::Seq,
            &NEVER,
        )
        .unwrap();
        // direct: T_d(A_hat) X
        let ahat = Mat::<f64>::from_fn(n, n, |i, j| {
            (a[(i, j)] - if i == j { center } else { 0.0 }) / half
        });
        let mut t_prev = x.clone();
        let mut t_cur = &ahat * &x;
        for d in 0..=6 {
            let td = if d == 0 {
                x.clone()
            } else if d == 1 {
                t_cur.clone()
            } else {
                let next = Mat::<f64>::from_fn(n, 3, |i, j| {
                    2.0 * (&ahat * &t_cur)[(i, j)] - t_prev[(i, j)]
                });
                t_prev = t_cur.clone();
                t_cur = next.clone();
                next
            };
            let g = x.transpose() * &td;
            for p in 0..3 {
                for q in 0..3 {
                    assert!((dense[d * 9 + p * 3 + q] - g[(p, q)]).abs() < 1e-9, "d={d}");
                    assert!(
                        (sparse[d * 9 + p * 3 + q] - g[(p, q)]).abs() < 1e-9,
                        "d={d}"
                    );
                }
            }
        }
        let diag = chebyshev_moments(
            Operator::Dense(a.as_ref()),
            x.as_ref(),
            center,
            half,
            3,
            false,
            Par::Seq,
            &NEVER,
        )
        .unwrap();
        for d in 0..=6 {
            for p in 0..3 {
                assert!((diag[d * 3 + p] - dense[d * 9 + p * 3 + p]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn lanczos_reproduces_moments_and_stops_on_breakdown() {
        let n = 10;
        let a = Mat::<f64>::from_fn(n, n, |i, j| {
            if i == j {
                if i < 5 {
                    1.0
                } else {
                    3.0
                }
            } else {
                0.0
            }
        });
        let v0 = Mat::<f64>::from_fn(n, 2, |_, _| 1.0 / (n as f64).sqrt());
        let (alpha, beta) = lanczos(
            Operator::Dense(a.as_ref()),
            v0.as_ref(),
            4,
            Par::Seq,
            &NEVER,
        )
        .unwrap();
        assert!((alpha[0] - 2.0).abs() < 1e-12); // v^T A v
        assert!((beta[0] - 1.0).abs() < 1e-12);
        assert_eq!(beta[1], 0.0); // two distinct eigenvalues: the Krylov space has dimension 2
        assert_eq!(alpha[2], 0.0);
        let (indptr, indices, data) = as_csr(&a);
        let csr = CsrRef::new(n, &indptr, &indices, &data).unwrap();
        let (alpha2, beta2) =
            lanczos(Operator::Csr(csr), v0.as_ref(), 4, Par::Seq, &NEVER).unwrap();
        assert_eq!(alpha.len(), alpha2.len());
        for (x, y) in alpha.iter().zip(&alpha2).chain(beta.iter().zip(&beta2)) {
            assert!((x - y).abs() < 1e-12);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let a = Mat::<f64>::zeros(4, 3);
        let x = Mat::<f64>::zeros(3, 2);
        assert!(chebyshev_moments(
            Operator::Dense(a.as_ref()),
            x.as_ref(),
            0.0,
            1.0,
            2,
            true,
            Par::Seq,
            &NEVER,
        )
        .is_err());
        let sq = Mat::<f64>::zeros(3, 3);
        assert!(chebyshev_moments(
            Operator::Dense(sq.as_ref()),
            x.as_ref(),
            0.0,
            0.0,
            2,
            true,
            Par::Seq,
            &NEVER,
        )
        .is_err());
        assert!(lanczos(
            Operator::Dense(sq.as_ref()),
            x.as_ref(),
            0,
            Par::Seq,
            &NEVER
        )
        .is_err());
        assert!(CsrRef::<f64>::new(3, &[0, 2, 1, 3], &[0, 1, 2], &[1.0, 1.0, 1.0]).is_err());
        assert!(CsrRef::<f64>::new(2, &[0, 1], &[5], &[1.0]).is_err());
    }
}
