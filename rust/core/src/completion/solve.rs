//! The per-row regressions of one alternating-minimization half-step.

use crate::error::{Error, Result};
use rayon::prelude::*;

/// How each row's k x k ridge system is solved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowSolver {
    /// Form the normal matrix and factor it (Cholesky).
    Exact,
    /// Preconditioned CG from the previous iterate, at most `max_iter` steps, relative residual `tol`.
    Cg { max_iter: usize, tol: f64 },
}

/// What one half-step did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HalfStep {
    /// Total CG iterations over all rows (0 for the exact solver).
    pub cg_iterations: usize,
    /// Rows with at least one but fewer than k observations (solved with the `reg_under` ridge).
    pub underdetermined: usize,
    /// Rows without observations (set to zero).
    pub empty: usize,
}

fn check_csr(indptr: &[i64], indices: &[i64], data_len: usize, m: usize, n: usize) -> Result<()> {
    if indptr.len() != m + 1 {
        return Err(Error::invalid(
            "indptr",
            format!("length {} != rows + 1 = {}", indptr.len(), m + 1),
        ));
    }
    if indptr[0] != 0 || indptr[m] as usize != indices.len() || indices.len() != data_len {
        return Err(Error::invalid("indptr", "does not match indices and data"));
    }
    if indptr.windows(2).any(|w| w[1] < w[0]) {
        return Err(Error::invalid("indptr", "must be nondecreasing"));
    }
    if indices.iter().any(|&j| j < 0 || j as usize >= n) {
        return Err(Error::invalid(
            "indices",
            format!("entries must lie in [0, {n})"),
        ));
    }
    Ok(())
}

/// Cholesky of a k x k row-major SPD matrix in place (lower triangle); false if not positive definite.
fn cholesky(a: &mut [f64], k: usize) -> bool {
    for j in 0..k {
        let mut d = a[j * k + j];
        for p in 0..j {
            d -= a[j * k + p] * a[j * k + p];
        }
        if !(d > 0.0) {
            return false;
        }
        let d = d.sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let mut s = a[i * k + j];
            for p in 0..j {
                s -= a[i * k + p] * a[j * k + p];
            }
            a[i * k + j] = s / d;
        }
    }
    true
}

fn cholesky_solve(l: &[f64], k: usize, b: &mut [f64]) {
    for i in 0..k {
        let mut s = b[i];
        for p in 0..i {
            s -= l[i * k + p] * b[p];
        }
        b[i] = s / l[i * k + i];
    }
    for i in (0..k).rev() {
        let mut s = b[i];
        for p in i + 1..k {
            s -= l[p * k + i] * b[p];
        }
        b[i] = s / l[i * k + i];
    }
}

/// Dot product with eight independent accumulators: a plain `sum()` is one serial dependency
/// chain (floating-point addition is not reassociated), which the compiler cannot vectorize.
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `out = (sum_j F_j F_j^T + reg I) v` over the columns `cols` of one row.
fn normal_product(factor: &[f64], k: usize, cols: &[i64], reg: f64, v: &[f64], out: &mut [f64]) {
    for (o, vi) in out.iter_mut().zip(v) {
        *o = reg * vi;
    }
    for &j in cols {
        let f = &factor[j as usize * k..(j as usize + 1) * k];
        let s = dot(f, v);
        for (o, fi) in out.iter_mut().zip(f) {
            *o += s * fi;
        }
    }
}

struct Precond<'a> {
    q: &'a [f64],
    lam: &'a [f64],
    k: usize,
}

impl Precond<'_> {
    /// `out = (c Q diag(lam) Q^T + reg I)^{-1} r`.
    fn apply(&self, c: f64, reg: f64, r: &[f64], tmp: &mut [f64], out: &mut [f64]) {
        let k = self.k;
        for a in 0..k {
            let mut s = 0.0;
            for i in 0..k {
                s += self.q[i * k + a] * r[i];
            }
            let d = c * self.lam[a] + reg;
            tmp[a] = if d > 0.0 { s / d } else { s };
        }
        for i in 0..k {
            out[i] = dot(&self.q[i * k..(i + 1) * k], tmp);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn solve_one(
    factor: &[f64],
    n: usize,
    k: usize,
    cols: &[i64],
    vals: &[f64],
    reg: f64,
    solver: RowSolver,
    precond: &Precond<'_>,
    x: &mut [f64],
) -> Result<usize> {
    let mut rhs = vec![0.0; k];
    for (&j, &mij) in cols.iter().zip(vals) {
        let f = &factor[j as usize * k..(j as usize + 1) * k];
        for (r, fi) in rhs.iter_mut().zip(f) {
            *r += mij * fi;
        }
    }
    match solver {
        RowSolver::Exact => {
            let mut g = vec![0.0; k * k];
            for &j in cols {
                let f = &factor[j as usize * k..(j as usize + 1) * k];
                for a in 0..k {
                    let fa = f[a];
                    for (gb, fb) in g[a * k..a * k + a + 1].iter_mut().zip(&f[..=a]) {
                        *gb += fa * fb;
                    }
                }
            }
            let scale = (0..k).map(|a| g[a * k + a]).fold(0.0, f64::max);
            for a in 0..k {
                g[a * k + a] += reg;
            }
            let mut jitter = f64::EPSILON * scale.max(f64::MIN_POSITIVE);
            let mut l = g.clone();
            while !cholesky(&mut l, k) {
                // semidefinite normal matrix (degenerate sampling, reg = 0): the smallest ridge that factors
                if !(jitter.is_finite()) || jitter > scale.max(1.0) * 1e6 {
                    return Err(Error::NumericalBreakdown(
                        "row normal matrix is not finite".into(),
                    ));
                }
                l.copy_from_slice(&g);
                for a in 0..k {
                    l[a * k + a] += jitter;
                }
                jitter *= 100.0;
            }
            cholesky_solve(&l, k, &mut rhs);
            x.copy_from_slice(&rhs);
            Ok(0)
        }
        RowSolver::Cg { max_iter, tol } => {
            let c = cols.len() as f64 / n as f64;
            let (mut r, mut z, mut p, mut ap, mut tmp) = (
                vec![0.0; k],
                vec![0.0; k],
                vec![0.0; k],
                vec![0.0; k],
                vec![0.0; k],
            );
            normal_product(factor, k, cols, reg, x, &mut ap);
            for i in 0..k {
                r[i] = rhs[i] - ap[i];
            }
            let target = tol * dot(&rhs, &rhs).sqrt();
            if dot(&r, &r).sqrt() <= target {
                return Ok(0);
            }
            precond.apply(c, reg, &r, &mut tmp, &mut z);
            p.copy_from_slice(&z);
            let mut rz = dot(&r, &z);
            for it in 0..max_iter {
                normal_product(factor, k, cols, reg, &p, &mut ap);
                let pap = dot(&p, &ap);
                if !(pap > 0.0) || !(rz > 0.0) {
                    return Ok(it);
                }
                let alpha = rz / pap;
                for i in 0..k {
                    x[i] += alpha * p[i];
                    r[i] -= alpha * ap[i];
                }
                if dot(&r, &r).sqrt() <= target {
                    return Ok(it + 1);
                }
                precond.apply(c, reg, &r, &mut tmp, &mut z);
                let rz_new = dot(&r, &z);
                let beta = rz_new / rz;
                rz = rz_new;
                for i in 0..k {
                    p[i] = z[i] + beta * p[i];
                }
            }
            Ok(max_iter)
        }
    }
}

/// One half-step: overwrite each row of `x` (m x k, row-major; the CG warm start) with the solution
/// of its ridge regression against `factor` (n x k, row-major) over the observed entries of the
/// CSR matrix `(indptr, indices, data)` of shape m x n.
///
/// Rows with fewer than k observations use the ridge `max(reg, reg_under)`; rows without any are
/// set to zero. For CG, `q` (k x k, row-major) and `lam` (k) are the eigendecomposition of
/// `factor^T factor / n` (ignored by the exact solver; pass empty slices).
#[allow(clippy::too_many_arguments)]
pub fn solve_rows(
    indptr: &[i64],
    indices: &[i64],
    data: &[f64],
    factor: &[f64],
    n: usize,
    k: usize,
    x: &mut [f64],
    reg: f64,
    reg_under: f64,
    solver: RowSolver,
    q: &[f64],
    lam: &[f64],
) -> Result<HalfStep> {
    if k == 0 || x.len() % k != 0 {
        return Err(Error::invalid(
            "x",
            "length must be a positive multiple of rank",
        ));
    }
    let m = x.len() / k;
    check_csr(indptr, indices, data.len(), m, n)?;
    if factor.len() != n * k {
        return Err(Error::invalid(
            "factor",
            format!("length {} != {n} * {k}", factor.len()),
        ));
    }
    if !(reg >= 0.0) || !(reg_under >= 0.0) {
        return Err(Error::invalid("reg", "must be nonnegative"));
    }
    if let RowSolver::Cg { .. } = solver {
        if q.len() != k * k || lam.len() != k {
            return Err(Error::invalid(
                "q",
                "preconditioner must be k x k with k eigenvalues",
            ));
        }
    }
    let precond = Precond { q, lam, k };
    let results: Vec<Result<(usize, bool, bool)>> = x
        .par_chunks_mut(k)
        .enumerate()
        .map(|(i, xi)| {
            let (a, b) = (indptr[i] as usize, indptr[i + 1] as usize);
            if a == b {
                xi.fill(0.0);
                return Ok((0, false, true));
            }
            let under = b - a < k;
            let reg_i = if under { reg.max(reg_under) } else { reg };
            let it = solve_one(
                factor,
                n,
                k,
                &indices[a..b],
                &data[a..b],
                reg_i,
                solver,
                &precond,
                xi,
            )?;
            Ok((it, under, false))
        })
        .collect();
    let mut stats = HalfStep::default();
    for r in results {
        let (it, under, empty) = r?;
        stats.cg_iterations += it;
        stats.underdetermined += usize::from(under);
        stats.empty += usize::from(empty);
    }
    Ok(stats)
}

/// `sum_{(i,j) observed} (M_ij - <U_i, V_j>)^2` for the CSR matrix of shape m x n.
pub fn observed_sq_error(
    indptr: &[i64],
    indices: &[i64],
    data: &[f64],
    u: &[f64],
    v: &[f64],
    n: usize,
    k: usize,
) -> Result<f64> {
    if k == 0 || u.len() % k != 0 || v.len() != n * k {
        return Err(Error::invalid("u", "factor lengths do not match rank"));
    }
    let m = u.len() / k;
    check_csr(indptr, indices, data.len(), m, n)?;
    Ok((0..m)
        .into_par_iter()
        .map(|i| {
            let ui = &u[i * k..(i + 1) * k];
            let (a, b) = (indptr[i] as usize, indptr[i + 1] as usize);
            (a..b)
                .map(|p| {
                    let j = indices[p] as usize;
                    let e = data[p] - dot(ui, &v[j * k..(j + 1) * k]);
                    e * e
                })
                .sum::<f64>()
        })
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3 x 2 rank-1 matrix fully observed: one exact half-step recovers the row factor.
    #[test]
    fn exact_and_cg_agree_on_small_case() {
        let factor = [1.0, 0.5, -0.3, 2.0, 0.7, 0.1]; // n = 3, k = 2
        let truth = [0.4, -1.0, 2.0, 0.3]; // m = 2
        let indptr = [0i64, 3, 6];
        let indices = [0i64, 1, 2, 0, 1, 2];
        let mut data = vec![0.0; 6];
        for i in 0..2 {
            for j in 0..3 {
                data[i * 3 + j] = dot(&truth[i * 2..i * 2 + 2], &factor[j * 2..j * 2 + 2]);
            }
        }
        let mut x = vec![0.0; 4];
        solve_rows(
            &indptr,
            &indices,
            &data,
            &factor,
            3,
            2,
            &mut x,
            0.0,
            1e-8,
            RowSolver::Exact,
            &[],
            &[],
        )
        .unwrap();
        for (a, b) in x.iter().zip(&truth) {
            assert!((a - b).abs() < 1e-12);
        }
        let mut y = vec![0.0; 4];
        let (q, lam) = ([1.0, 0.0, 0.0, 1.0], [1.0, 1.0]);
        let cg = RowSolver::Cg {
            max_iter: 10,
            tol: 1e-14,
        };
        let stats = solve_rows(
            &indptr, &indices, &data, &factor, 3, 2, &mut y, 0.0, 1e-8, cg, &q, &lam,
        )
        .unwrap();
        assert!(stats.cg_iterations >= 2);
        for (a, b) in y.iter().zip(&truth) {
            assert!((a - b).abs() < 1e-10);
        }
        let err = observed_sq_error(&indptr, &indices, &data, &y, &factor, 3, 2).unwrap();
        assert!(err < 1e-18);
    }

    #[test]
    fn bad_structure_is_an_error() {
        let mut x = vec![0.0; 2];
        let r = solve_rows(
            &[0, 1],
            &[5],
            &[1.0],
            &[1.0, 1.0],
            1,
            2,
            &mut x,
            0.0,
            0.0,
            RowSolver::Exact,
            &[],
            &[],
        );
        assert!(r.is_err());
    }

    #[test]
    fn underdetermined_and_empty_rows_are_counted() {
        let factor = [1.0, 0.0, 0.0, 1.0];
        let mut x = vec![0.0; 4];
        let s = solve_rows(
            &[0, 1, 1],
            &[0],
            &[2.0],
            &factor,
            2,
            2,
            &mut x,
            0.0,
            1e-6,
            RowSolver::Exact,
            &[],
            &[],
        )
        .unwrap();
        assert_eq!((s.underdetermined, s.empty), (1, 1));
        assert!((x[0] - 2.0).abs() < 1e-5 && x[1].abs() < 1e-12 && x[2] == 0.0);
    }
}
