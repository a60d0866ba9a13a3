//! Dense MTTKRP on a C-ordered tensor, in place: no unfolded copy, no full Khatri-Rao product.
//!
//! Layout: the tensor X has shape (I_0, ..., I_{N-1}) in C order (the last index fastest);
//! factors are row-major (I_n x R) slices. Splitting the modes at `s` views X as the row-major
//! matrix X_s of shape (L_s, R_s) with L_s = I_0 ... I_{s-1} and R_s = I_s ... I_{N-1}: a view,
//! never a copy. Two primitive contractions read X once each:
//!
//! * [`contract_right`]: P = X_s K_right (L_s x R), K_right the Khatri-Rao product of the factors
//!   s..N-1. K_right is never formed: its rows come in blocks of I_{N-1} (one per multi-index of
//!   modes s..N-2), each the last factor scaled by one row product, and each block meets its
//!   columns of X in one small GEMM;
//! * [`contract_left`]: Q = X_s^T K_left (R_s x R), likewise in blocks of I_{s-1} rows.
//!
//! [`small_mttkrp`] finishes an MTTKRP from such a partial result (R times smaller than X in the
//! modes it still holds). A CP sweep uses them as a two-level dimension tree: one pass for the
//! modes before the split, one for the modes after ([`sweep`]), instead of one pass per mode.

use crate::error::{Error, Result};
use crate::scalar::Scalar;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// A C-ordered dense tensor view.
#[derive(Clone, Copy)]
pub struct DenseTensor<'a, T> {
    pub data: &'a [T],
    pub shape: &'a [usize],
}

impl<'a, T: Scalar> DenseTensor<'a, T> {
    pub fn new(data: &'a [T], shape: &'a [usize]) -> Result<Self> {
        if shape.len() < 2 {
            return Err(Error::invalid(
                "x",
                format!("needs at least 2 modes, got {}", shape.len()),
            ));
        }
        if shape.contains(&0) {
            return Err(Error::invalid(
                "x",
                format!("has an empty mode: shape {shape:?}"),
            ));
        }
        let size = shape.iter().try_fold(1usize, |acc, &s| acc.checked_mul(s));
        if size != Some(data.len()) {
            return Err(Error::invalid(
                "x",
                format!("has {} entries, shape {shape:?} needs {size:?}", data.len()),
            ));
        }
        Ok(Self { data, shape })
    }

    pub fn ndim(&self) -> usize {
        self.shape.len()
    }
}

pub(crate) fn prod(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// Checks that `factors` are row-major (shape[n] x rank) slices.
pub fn check_factors<T>(shape: &[usize], factors: &[&[T]], rank: usize) -> Result<()> {
    if rank == 0 {
        return Err(Error::invalid("factors", "rank must be at least 1"));
    }
    if factors.len() != shape.len() {
        return Err(Error::invalid(
            "factors",
            format!(
                "{} factors for a tensor of order {}",
                factors.len(),
                shape.len()
            ),
        ));
    }
    for (n, (f, &rows)) in factors.iter().zip(shape).enumerate() {
        if f.len() != rows * rank {
            return Err(Error::invalid(
                "factors",
                format!(
                    "factor {n} has {} entries, expected {rows} x {rank}",
                    f.len()
                ),
            ));
        }
    }
    Ok(())
}

/// `out[r] = prod_k factors[k][i_k, r]` where (i_0, ...) is `index` in C order over `dims`.
fn row_product<T: Scalar>(
    factors: &[&[T]],
    dims: &[usize],
    mut index: usize,
    rank: usize,
    out: &mut [T],
) {
    out.iter_mut().for_each(|v| *v = T::ONE);
    for k in (0..dims.len()).rev() {
        let i = index % dims[k];
        index /= dims[k];
        let row = &factors[k][i * rank..(i + 1) * rank];
        for (o, &f) in out.iter_mut().zip(row) {
            *o *= f;
        }
    }
}

/// Khatri-Rao product of row-major factors, C order (the last factor's row fastest): (prod dims) x rank.
fn khatri_rao<T: Scalar>(factors: &[&[T]], dims: &[usize], rank: usize) -> Vec<T> {
    let mut out = vec![T::ONE; rank];
    for (f, &d) in factors.iter().zip(dims) {
        let rows = out.len() / rank;
        let mut next = Vec::with_capacity(rows * d * rank);
        for a in 0..rows {
            let left = &out[a * rank..(a + 1) * rank];
            for i in 0..d {
                let right = &f[i * rank..(i + 1) * rank];
                next.extend(left.iter().zip(right).map(|(&x, &y)| x * y));
            }
        }
        out = next;
    }
    out
}

pub(crate) fn threads(par: Par) -> usize {
    match par {
        Par::Seq => 1,
        _ => par.degree().max(1),
    }
}

/// Runs `work(chunk_index, chunk)` over `chunk`-sized pieces of `out`: sequentially for
/// `Par::Seq`, on the current rayon pool otherwise.
fn for_chunks<T: Send>(
    par: Par,
    out: &mut [T],
    chunk: usize,
    work: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let chunk = chunk.max(1);
    match par {
        Par::Seq => out
            .chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| work(i, c)),
        _ => out
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| work(i, c)),
    }
}

/// Sum over `n_tasks` of `work(task, acc)` into accumulators of `len` zeros, reduced.
pub(crate) fn reduce_tasks<T: Scalar>(
    par: Par,
    n_tasks: usize,
    len: usize,
    work: impl Fn(usize, &mut [T]) + Sync + Send,
) -> Vec<T> {
    let add = |mut a: Vec<T>, b: Vec<T>| {
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
        a
    };
    match par {
        Par::Seq => {
            let mut acc = vec![T::ZERO; len];
            (0..n_tasks).for_each(|t| work(t, &mut acc));
            acc
        }
        _ => (0..n_tasks)
            .into_par_iter()
            .fold(
                || vec![T::ZERO; len],
                |mut acc, t| {
                    work(t, &mut acc);
                    acc
                },
            )
            .reduce(|| vec![T::ZERO; len], add),
    }
}

/// P = X_s K_right: (L_s x rank) row-major, with K_right the Khatri-Rao product of
/// `factors[s..]` (all N factors are passed). 1 <= s <= N-1.
pub fn contract_right<T: Scalar>(
    x: DenseTensor<'_, T>,
    s: usize,
    factors: &[&[T]],
    rank: usize,
    par: Par,
) -> Vec<T> {
    let n = x.ndim();
    let (lh, rh) = (prod(&x.shape[..s]), prod(&x.shape[s..]));
    let last = x.shape[n - 1];
    let prefix_dims = &x.shape[s..n - 1];
    let prefix_factors = &factors[s..n - 1];
    let n_prefix = prod(prefix_dims);
    let f_last = factors[n - 1];
    let xm = MatRef::from_row_major_slice(x.data, lh, rh);
    let mut out = vec![T::ZERO; lh * rank];
    let t = threads(par);
    // Row blocks: enough for every thread, big enough for efficient GEMMs.
    let block = if t == 1 {
        lh.min(512)
    } else {
        lh.div_ceil(4 * t).clamp(16, 512)
    };
    for_chunks(par, &mut out, block * rank, |b, chunk| {
        let r0 = b * block;
        let rows = chunk.len() / rank;
        let mut acc = MatMut::from_row_major_slice_mut(chunk, rows, rank);
        let mut w = vec![T::ONE; rank];
        let mut scaled = vec![T::ZERO; last * rank];
        for p in 0..n_prefix {
            let rhs = if prefix_dims.is_empty() {
                MatRef::from_row_major_slice(f_last, last, rank)
            } else {
                row_product(prefix_factors, prefix_dims, p, rank, &mut w);
                for (dst, src) in scaled.chunks_exact_mut(rank).zip(f_last.chunks_exact(rank)) {
                    for ((d, &v), &wr) in dst.iter_mut().zip(src).zip(&w) {
                        *d = v * wr;
                    }
                }
                MatRef::from_row_major_slice(&scaled, last, rank)
            };
            let lhs = xm.submatrix(r0, p * last, rows, last);
            let accum = if p == 0 { Accum::Replace } else { Accum::Add };
            matmul(acc.as_mut(), accum, lhs, rhs, T::ONE, Par::Seq);
        }
    });
    out
}

/// Q = X_s^T K_left: (R_s x rank) row-major, with K_left the Khatri-Rao product of
/// `factors[..s]` (all N factors are passed). 1 <= s <= N-1.
///
/// Accumulates in column-major blocks (faer's preferred layout for the X^T operand, which is
/// column-major as a view of the C-ordered X) and transposes the small result at the end.
pub fn contract_left<T: Scalar>(
    x: DenseTensor<'_, T>,
    s: usize,
    factors: &[&[T]],
    rank: usize,
    par: Par,
) -> Vec<T> {
    let (lh, rh) = (prod(&x.shape[..s]), prod(&x.shape[s..]));
    let inner = x.shape[s - 1];
    let prefix_dims = &x.shape[..s - 1];
    let prefix_factors = &factors[..s - 1];
    let n_prefix = prod(prefix_dims);
    let f_inner = factors[s - 1];
    let xm = MatRef::from_row_major_slice(x.data, lh, rh);
    let t = threads(par);
    // One prefix: rows I_{s-1} of X (columns c0..c0+cols) times its factor (scaled by the
    // prefix's row product), added into the column-major (cols x rank) block `acc`.
    let apply = |p: usize, c0: usize, acc: &mut [T], scaled: &mut Vec<T>, w: &mut Vec<T>| {
        let cols = acc.len() / rank;
        let rhs = if prefix_dims.is_empty() {
            MatRef::from_row_major_slice(f_inner, inner, rank)
        } else {
            row_product(prefix_factors, prefix_dims, p, rank, w);
            for (dst, src) in scaled
                .chunks_exact_mut(rank)
                .zip(f_inner.chunks_exact(rank))
            {
                for ((d, &v), &wr) in dst.iter_mut().zip(src).zip(w.iter()) {
                    *d = v * wr;
                }
            }
            MatRef::from_row_major_slice(scaled.as_slice(), inner, rank)
        };
        let lhs = xm.submatrix(p * inner, c0, inner, cols).transpose();
        let out = MatMut::from_column_major_slice_mut(acc, cols, rank);
        matmul(out, Accum::Add, lhs, rhs, T::ONE, Par::Seq);
    };
    let transpose_into = |colmajor: &[T], out: &mut [T]| {
        let cols = colmajor.len() / rank;
        for j in 0..cols {
            for r in 0..rank {
                out[j * rank + r] = colmajor[r * cols + j];
            }
        }
    };
    // Many prefixes and a small result: split the prefixes and reduce private copies of Q.
    if t > 1 && n_prefix >= 2 * t && rh * rank * t <= (1 << 22) {
        let tasks = (4 * t).min(n_prefix);
        let per = n_prefix.div_ceil(tasks);
        let colmajor = reduce_tasks(par, tasks, rh * rank, |task, acc| {
            let mut scaled = vec![T::ZERO; inner * rank];
            let mut w = vec![T::ONE; rank];
            for p in task * per..((task + 1) * per).min(n_prefix) {
                apply(p, 0, acc, &mut scaled, &mut w);
            }
        });
        let mut out = vec![T::ZERO; rh * rank];
        transpose_into(&colmajor, &mut out);
        return out;
    }
    // Otherwise split the columns of X (rows of Q): each block owns its rows of Q.
    let mut out = vec![T::ZERO; rh * rank];
    let block = if t == 1 {
        rh.min(2048)
    } else {
        rh.div_ceil(4 * t).clamp(64, 2048)
    };
    for_chunks(par, &mut out, block * rank, |b, chunk| {
        let mut scaled = vec![T::ZERO; inner * rank];
        let mut w = vec![T::ONE; rank];
        let mut local = vec![T::ZERO; chunk.len()];
        for p in 0..n_prefix {
            apply(p, b * block, &mut local, &mut scaled, &mut w);
        }
        transpose_into(&local, chunk);
    });
    out
}

/// MTTKRP of mode `mode` of a small tensor P of shape (dims..., rank) (the trailing rank index
/// is a batch: column r of the result only sees column r of P and of the factors).
pub fn small_mttkrp<T: Scalar>(
    p: &[T],
    dims: &[usize],
    factors: &[&[T]],
    mode: usize,
    rank: usize,
    par: Par,
) -> Vec<T> {
    if dims.len() == 1 {
        return p.to_vec();
    }
    let a = prod(&dims[..mode]);
    let d = dims[mode];
    let b = prod(&dims[mode + 1..]);
    let wa = khatri_rao(&factors[..mode], &dims[..mode], rank);
    let wb = khatri_rao(&factors[mode + 1..], &dims[mode + 1..], rank);
    let mut out = vec![T::ZERO; d * rank];
    let t = threads(par);
    let rows_per = if t == 1 { d } else { d.div_ceil(4 * t).max(1) };
    let par = if d * a * b * rank < 1 << 16 {
        Par::Seq
    } else {
        par
    };
    for_chunks(par, &mut out, rows_per * rank, |c, chunk| {
        let mut acc = vec![T::ZERO; rank];
        for (local, row_out) in chunk.chunks_exact_mut(rank).enumerate() {
            let i = c * rows_per + local;
            for ai in 0..a {
                acc.iter_mut().for_each(|v| *v = T::ZERO);
                let base = (ai * d + i) * b;
                for bi in 0..b {
                    let row = &p[(base + bi) * rank..(base + bi + 1) * rank];
                    let wrow = &wb[bi * rank..(bi + 1) * rank];
                    for ((s, &x), &y) in acc.iter_mut().zip(row).zip(wrow) {
                        *s += x * y;
                    }
                }
                let wrow = &wa[ai * rank..(ai + 1) * rank];
                for ((o, &s), &y) in row_out.iter_mut().zip(&acc).zip(wrow) {
                    *o += s * y;
                }
            }
        }
    });
    out
}

/// MTTKRP of one mode: `X_(mode) K` (I_mode x rank) row-major, K the Khatri-Rao product of the
/// other factors (Kolda-Bader order). One pass over X.
pub fn mttkrp<T: Scalar>(
    x: DenseTensor<'_, T>,
    factors: &[&[T]],
    mode: usize,
    rank: usize,
    par: Par,
) -> Result<Vec<T>> {
    check_factors(x.shape, factors, rank)?;
    let n = x.ndim();
    if mode >= n {
        return Err(Error::invalid("mode", format!("{mode} is not in 0..{n}")));
    }
    if mode == n - 1 {
        return Ok(contract_left(x, n - 1, factors, rank, par));
    }
    let partial = contract_right(x, mode + 1, factors, rank, par);
    Ok(small_mttkrp(
        &partial,
        &x.shape[..=mode],
        &factors[..=mode],
        mode,
        rank,
        par,
    ))
}

/// The mode product of X with a matrix on its first or last mode, as a contraction with the
/// row-major factor `u` (I_edge x rank): `first` gives (I_1 ... I_{N-1}) x rank = X_(0)^T u,
/// otherwise (I_0 ... I_{N-2}) x rank = X_(N-1)^T u (both row-major). One pass over X.
pub fn contract_edge<T: Scalar>(
    x: DenseTensor<'_, T>,
    u: &[T],
    rank: usize,
    first: bool,
    par: Par,
) -> Result<Vec<T>> {
    let n = x.ndim();
    let edge = if first { 0 } else { n - 1 };
    if rank == 0 || u.len() != x.shape[edge] * rank {
        return Err(Error::invalid(
            "u",
            format!(
                "has {} entries, expected {} x {rank}",
                u.len(),
                x.shape[edge]
            ),
        ));
    }
    let refs = vec![u; n]; // only the edge factor is read
    Ok(if first {
        contract_left(x, 1, &refs, rank, par)
    } else {
        contract_right(x, n - 1, &refs, rank, par)
    })
}

/// The split of the dimension tree: the smallest s with I_0 ... I_{s-1} >= I_s ... I_{N-1}
/// (balances the two partial results), within 1..N-1.
pub fn split_point(shape: &[usize]) -> usize {
    let n = shape.len();
    let total = prod(shape);
    let mut left = 1usize;
    for s in 1..n {
        left *= shape[s - 1];
        if left.saturating_mul(left) >= total {
            return s;
        }
    }
    n - 1
}

/// One dimension-tree sweep: calls `update(mode, mttkrp_of_mode, factors)` for modes 0..N-1 in
/// order; `update` replaces `factors[mode]`, and later modes see the new factor. Two passes over X.
pub fn sweep<T: Scalar>(
    x: DenseTensor<'_, T>,
    factors: &mut Vec<Vec<T>>,
    rank: usize,
    par: Par,
    mut update: impl FnMut(usize, Vec<T>, &mut Vec<Vec<T>>) -> Result<()>,
) -> Result<()> {
    let n = x.ndim();
    let s = split_point(x.shape);
    let left = {
        let refs: Vec<&[T]> = factors.iter().map(|f| f.as_slice()).collect();
        contract_right(x, s, &refs, rank, par)
    };
    for mode in 0..s {
        let m = {
            let refs: Vec<&[T]> = factors.iter().map(|f| f.as_slice()).collect();
            small_mttkrp(&left, &x.shape[..s], &refs[..s], mode, rank, par)
        };
        update(mode, m, factors)?;
    }
    drop(left);
    let right = {
        let refs: Vec<&[T]> = factors.iter().map(|f| f.as_slice()).collect();
        contract_left(x, s, &refs, rank, par)
    };
    for mode in s..n {
        let m = {
            let refs: Vec<&[T]> = factors.iter().map(|f| f.as_slice()).collect();
            small_mttkrp(&right, &x.shape[s..], &refs[s..], mode - s, rank, par)
        };
        update(mode, m, factors)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive MTTKRP by definition.
    fn naive(
        x: &[f64],
        shape: &[usize],
        factors: &[Vec<f64>],
        mode: usize,
        rank: usize,
    ) -> Vec<f64> {
        let mut out = vec![0.0; shape[mode] * rank];
        let n = shape.len();
        for (linear, &v) in x.iter().enumerate() {
            let mut idx = vec![0; n];
            let mut rest = linear;
            for k in (0..n).rev() {
                idx[k] = rest % shape[k];
                rest /= shape[k];
            }
            for r in 0..rank {
                let mut w = v;
                for k in 0..n {
                    if k != mode {
                        w *= factors[k][idx[k] * rank + r];
                    }
                }
                out[idx[mode] * rank + r] += w;
            }
        }
        out
    }

    fn data(len: usize, seed: usize) -> Vec<f64> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104729) % 1009) as f64) / 504.5 - 1.0)
            .collect()
    }

    #[test]
    fn mttkrp_matches_definition() {
        for shape in [
            vec![3, 4],
            vec![5, 1, 3],
            vec![2, 3, 4, 2],
            vec![3, 2, 1, 2, 3],
            vec![7, 6, 5],
        ] {
            let rank = 3;
            let x = data(prod(&shape), 1);
            let factors: Vec<Vec<f64>> = shape
                .iter()
                .enumerate()
                .map(|(k, &s)| data(s * rank, k + 2))
                .collect();
            let refs: Vec<&[f64]> = factors.iter().map(|f| f.as_slice()).collect();
            let t = DenseTensor::new(&x, &shape).unwrap();
            for mode in 0..shape.len() {
                for par in [Par::Seq, Par::rayon(2)] {
                    let got = mttkrp(t, &refs, mode, rank, par).unwrap();
                    let want = naive(&x, &shape, &factors, mode, rank);
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() < 1e-10 * (1.0 + w.abs()),
                            "{shape:?} mode {mode}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn edge_contractions_are_mode_products() {
        let shape = [3usize, 4, 5];
        let x = data(60, 3);
        let t = DenseTensor::new(&x, &shape).unwrap();
        let u0 = data(3 * 2, 4);
        let first = contract_edge(t, &u0, 2, true, Par::Seq).unwrap(); // (20 x 2)
        for j in 0..20 {
            for r in 0..2 {
                let want: f64 = (0..3).map(|i| x[i * 20 + j] * u0[i * 2 + r]).sum();
                assert!((first[j * 2 + r] - want).abs() < 1e-12);
            }
        }
        let u2 = data(5 * 2, 5);
        let last = contract_edge(t, &u2, 2, false, Par::rayon(2)).unwrap(); // (12 x 2)
        for l in 0..12 {
            for r in 0..2 {
                let want: f64 = (0..5).map(|k| x[l * 5 + k] * u2[k * 2 + r]).sum();
                assert!((last[l * 2 + r] - want).abs() < 1e-12);
            }
        }
        assert!(contract_edge(t, &u2, 3, false, Par::Seq).is_err());
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = vec![0.0; 6];
        assert!(DenseTensor::new(&x, &[2, 4]).is_err());
        assert!(DenseTensor::new(&x, &[6]).is_err());
        let t = DenseTensor::new(&x, &[2, 3]).unwrap();
        let f = vec![0.0; 4];
        assert!(mttkrp(t, &[&f, &f], 0, 2, Par::Seq).is_err());
    }
}
