//! The per-row work of a half-step on padded rows: vector helpers, preconditioned CG and the exact
//! (Cholesky) solve of one row's ridge regression.
//!
//! Every factor row, iterate and work vector is stored with `kp = k` rounded up to a multiple of 4
//! and zero padding, so the inner loops run over whole 4-lane chunks (one AVX2 register) with no
//! remainder. The code is generic over `F`: `true` inside the `avx2,fma` build of the caller (fused
//! multiply-adds), `false` on other CPUs (a plain multiply and add: `mul_add` without the FMA
//! instruction would call the slow software `fma`). For ranks up to 40 the CG loops run on the
//! fixed-size kernels of `fixed.rs` (accumulators in registers).

use super::fixed;
use super::solve::ColIndex;

/// `a * b + c`, fused where the build has FMA.
#[inline(always)]
pub(super) fn fmadd<const F: bool>(a: f64, b: f64, c: f64) -> f64 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Dot product of two padded vectors (lengths multiples of 4).
#[inline(always)]
pub(super) fn dot4<const F: bool>(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    for (x, y) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for l in 0..4 {
            acc[l] = fmadd::<F>(x[l], y[l], acc[l]);
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3])
}

/// `out += s * f` on padded vectors.
#[inline(always)]
pub(super) fn axpy4<const F: bool>(s: f64, f: &[f64], out: &mut [f64]) {
    for (o, x) in out.chunks_exact_mut(4).zip(f.chunks_exact(4)) {
        for l in 0..4 {
            o[l] = fmadd::<F>(s, x[l], o[l]);
        }
    }
}

/// The shared preconditioner `P_i = c_i Q diag(lam) Q^T + reg_i I`, with `Q` and `Q^T` padded to
/// `kp x kp` (zero rows and columns beyond k).
pub(super) struct Precond {
    pub q: Vec<f64>,
    pub qt: Vec<f64>,
    pub lam: Vec<f64>,
}

/// Work vectors of one block of rows, reused row after row (no allocation per row).
pub(super) struct Work {
    /// The row's observed factor rows, gathered contiguously (|Omega_i| x kp).
    pub rows: Vec<f64>,
    pub x: Vec<f64>,
    pub r: Vec<f64>,
    pub r2: Vec<f64>,
    pub z: Vec<f64>,
    pub p: Vec<f64>,
    pub ap: Vec<f64>,
    pub rhs: Vec<f64>,
    pub tmp: Vec<f64>,
    pub inv_d: Vec<f64>,
    pub g: Vec<f64>,
    pub l: Vec<f64>,
}

impl Work {
    /// Work vectors for rows of at most `longest` observations.
    pub fn new(kp: usize, longest: usize) -> Self {
        let v = || vec![0.0; kp];
        Work {
            rows: vec![0.0; longest * kp],
            x: v(),
            r: v(),
            r2: v(),
            z: v(),
            p: v(),
            ap: v(),
            rhs: v(),
            tmp: v(),
            inv_d: v(),
            g: vec![0.0; kp * kp],
            l: vec![0.0; kp * kp],
        }
    }
}

/// One row of data: the observed columns, their values, the ridge and `c = |Omega_i| / n`.
pub(super) struct RowData<'a, I> {
    pub cols: &'a [I],
    pub vals: &'a [f64],
    pub reg: f64,
    pub c: f64,
}

/// `out = A^T (A v)` over the gathered rows `A` (two accumulators: consecutive rows update
/// different vectors, halving the dependency chain of the additions).
#[inline(always)]
fn normal_pass<const F: bool>(
    rows: &[f64],
    kp: usize,
    v: &[f64],
    out: &mut [f64],
    out2: &mut [f64],
) {
    out.fill(0.0);
    out2.fill(0.0);
    let mut pairs = rows.chunks_exact(2 * kp);
    for pair in pairs.by_ref() {
        let (f0, f1) = pair.split_at(kp);
        let (s0, s1) = (dot4::<F>(f0, v), dot4::<F>(f1, v));
        axpy4::<F>(s0, f0, out);
        axpy4::<F>(s1, f1, out2);
    }
    let rest = pairs.remainder();
    if !rest.is_empty() {
        axpy4::<F>(dot4::<F>(rest, v), rest, out);
    }
    for (o, o2) in out.iter_mut().zip(out2.iter()) {
        *o += o2;
    }
}

/// `out = P^{-1} r` with the row's `1 / (c lam + reg)` in `inv_d` (`C > 0`: on the fixed-size
/// kernel, as in [`cg_row`]).
#[inline(always)]
fn precondition<const F: bool, const C: usize>(
    pc: &Precond,
    k: usize,
    kp: usize,
    inv_d: &[f64],
    r: &[f64],
    tmp: &mut [f64],
    out: &mut [f64],
) {
    if C > 0 {
        fixed::precondition::<F, C>(&pc.q, &pc.qt, k, inv_d, r, out);
        return;
    }
    // tmp = Q^T r (as a sum of the rows of Q), scaled; out = Q tmp (a sum of the rows of Q^T)
    tmp.fill(0.0);
    for i in 0..k {
        axpy4::<F>(r[i], &pc.q[i * kp..(i + 1) * kp], tmp);
    }
    for (t, d) in tmp.iter_mut().zip(inv_d) {
        *t *= d;
    }
    out.fill(0.0);
    for a in 0..k {
        axpy4::<F>(tmp[a], &pc.qt[a * kp..(a + 1) * kp], out);
    }
}

/// Rows ahead of the current one whose factor row is prefetched: the gather is the one pass with
/// random access (the factor does not fit in L2); the loads of later rows do not depend on the
/// current one, so asking for them early hides most of their latency.
pub(super) const PREFETCH_AHEAD: usize = 8;

/// Asks for the cache lines of factor row `j` (a hint: no effect on results). Addresses are
/// computed, not indexed: a prefetch never faults, so `j` needs no bounds check here.
#[inline(always)]
pub(super) fn prefetch_row<T>(factor: &[T], j: usize, kp: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = kp * std::mem::size_of::<T>();
        let row = factor.as_ptr().wrapping_add(j * kp).cast::<i8>();
        let mut off = 0;
        while off < bytes {
            // SAFETY: a prefetch is a hint that never faults, whatever the address
            unsafe { _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(off)) };
            off += 64;
        }
        // SAFETY: as above (the row's last byte, whose line the stride may skip)
        unsafe { _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(bytes - 1)) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (factor, j, kp);
}

/// `sum_t (b_t - <A_t, x>)^2` over the gathered rows: the row's squared residual after its solve.
#[inline(always)]
fn gathered_sq_residual<const F: bool>(rows: &[f64], kp: usize, vals: &[f64], x: &[f64]) -> f64 {
    let mut total = 0.0;
    for (f, &b) in rows.chunks_exact(kp).zip(vals) {
        let e = b - dot4::<F>(f, x);
        total = fmadd::<F>(e, e, total);
    }
    total
}

/// The same from the factor rows (the exact solver does not gather).
#[inline(always)]
pub(super) fn factor_sq_residual<const F: bool, I: ColIndex>(
    factor: &[f64],
    kp: usize,
    row: &RowData<'_, I>,
    x: &[f64],
) -> f64 {
    let mut total = 0.0;
    for (&j, &b) in row.cols.iter().zip(row.vals) {
        let e = b - dot4::<F>(&factor[j.at() * kp..(j.at() + 1) * kp], x);
        total = fmadd::<F>(e, e, total);
    }
    total
}

/// Gathers the row's factor rows into `w.rows` and returns, in `w.r` and `w.rhs`, the residual
/// `A^T (b - A x)` and `A^T b` (one pass over the factor).
#[inline(always)]
fn gather_residual<const F: bool, I: ColIndex>(
    factor: &[f64],
    kp: usize,
    row: &RowData<'_, I>,
    w: &mut Work,
) {
    w.r.fill(0.0);
    w.rhs.fill(0.0);
    for (t, (&j, &b)) in row.cols.iter().zip(row.vals).enumerate() {
        if F {
            if let Some(&ahead) = row.cols.get(t + PREFETCH_AHEAD) {
                prefetch_row(factor, ahead.at(), kp);
            }
        }
        let f = &factor[j.at() * kp..(j.at() + 1) * kp];
        // chunk by chunk: register moves (a slice copy of runtime length calls memmove)
        for (d, s) in w.rows[t * kp..(t + 1) * kp]
            .chunks_exact_mut(4)
            .zip(f.chunks_exact(4))
        {
            d.copy_from_slice(s);
        }
        let e = b - dot4::<F>(f, &w.x);
        axpy4::<F>(e, f, &mut w.r);
        axpy4::<F>(b, f, &mut w.rhs);
    }
}

/// Preconditioned CG from the warm start in `w.x`, at most `max_iter` steps, stopping at the
/// relative residual `tol` (relative to `|A^T b|`). Returns the number of steps. `C > 0`: the
/// padded rank is `4 C` and the loops run on the fixed-size kernels of `fixed.rs`; `C = 0`: any
/// padded rank, run-time-length loops.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn cg_row<const F: bool, const C: usize, I: ColIndex>(
    factor: &[f64],
    k: usize,
    kp: usize,
    row: &RowData<'_, I>,
    pc: &Precond,
    max_iter: usize,
    tol: f64,
    w: &mut Work,
) -> usize {
    if C > 0 {
        let (cols, vals) = (row.cols, row.vals);
        fixed::gather_residual::<F, C, I>(
            factor,
            cols,
            vals,
            &w.x,
            &mut w.rows,
            &mut w.r,
            &mut w.rhs,
        );
    } else {
        gather_residual::<F, I>(factor, kp, row, w);
    }
    let nr = row.cols.len();
    for (ri, xi) in w.r.iter_mut().zip(&w.x) {
        *ri -= row.reg * xi;
    }
    let target = tol * dot4::<F>(&w.rhs, &w.rhs).sqrt();
    if dot4::<F>(&w.r, &w.r).sqrt() <= target {
        return 0;
    }
    for ((d, &lam), a) in w.inv_d.iter_mut().zip(&pc.lam).zip(0..) {
        let den = row.c * lam + row.reg;
        *d = if a < k && den > 0.0 {
            1.0 / den
        } else if a < k {
            1.0
        } else {
            0.0
        };
    }
    precondition::<F, C>(pc, k, kp, &w.inv_d, &w.r, &mut w.tmp, &mut w.z);
    w.p.copy_from_slice(&w.z);
    let mut rz = dot4::<F>(&w.r, &w.z);
    let rows = &w.rows[..nr * kp];
    for it in 0..max_iter {
        if C > 0 {
            fixed::normal_pass::<F, C>(rows, &w.p, &mut w.ap);
        } else {
            normal_pass::<F>(rows, kp, &w.p, &mut w.ap, &mut w.r2);
        }
        for (a, p) in w.ap.iter_mut().zip(&w.p) {
            *a = fmadd::<F>(row.reg, *p, *a);
        }
        let pap = dot4::<F>(&w.p, &w.ap);
        if !(pap > 0.0) || !(rz > 0.0) {
            return it;
        }
        let alpha = rz / pap;
        axpy4::<F>(alpha, &w.p, &mut w.x);
        axpy4::<F>(-alpha, &w.ap, &mut w.r);
        if dot4::<F>(&w.r, &w.r).sqrt() <= target {
            return it + 1;
        }
        precondition::<F, C>(pc, k, kp, &w.inv_d, &w.r, &mut w.tmp, &mut w.z);
        let rz_new = dot4::<F>(&w.r, &w.z);
        let beta = rz_new / rz;
        rz = rz_new;
        for (p, z) in w.p.iter_mut().zip(&w.z) {
            *p = fmadd::<F>(beta, *p, *z);
        }
    }
    max_iter
}

/// `sum_t (b_t - <A_t, x>)^2` over the `nr` gathered rows of `w`, on the kernel of `cg_row::<F, C>`.
#[inline(always)]
pub(super) fn cg_sq_residual<const F: bool, const C: usize>(
    kp: usize,
    nr: usize,
    vals: &[f64],
    w: &Work,
) -> f64 {
    let rows = &w.rows[..nr * kp];
    if C > 0 {
        fixed::sq_residual::<F, C>(rows, vals, &w.x)
    } else {
        gathered_sq_residual::<F>(rows, kp, vals, &w.x)
    }
}

/// Cholesky of the leading k x k block of a row-major matrix with row stride `kp`, in place
/// (lower triangle); false if it is not positive definite.
fn cholesky(a: &mut [f64], k: usize, kp: usize) -> bool {
    for j in 0..k {
        let (above, rest) = a.split_at_mut(j * kp);
        let rj = &mut rest[..kp];
        for p in 0..j {
            let rp = &above[p * kp..p * kp + p];
            let s: f64 = rp.iter().zip(&rj[..p]).map(|(x, y)| x * y).sum();
            rj[p] = (rj[p] - s) / above[p * kp + p];
        }
        let d = rj[j] - rj[..j].iter().map(|x| x * x).sum::<f64>();
        if !(d > 0.0) {
            return false;
        }
        rj[j] = d.sqrt();
    }
    true
}

fn cholesky_solve(l: &[f64], k: usize, kp: usize, b: &mut [f64]) {
    for i in 0..k {
        let s: f64 = l[i * kp..i * kp + i]
            .iter()
            .zip(&b[..i])
            .map(|(x, y)| x * y)
            .sum();
        b[i] = (b[i] - s) / l[i * kp + i];
    }
    for i in (0..k).rev() {
        let mut s = b[i];
        for p in i + 1..k {
            s -= l[p * kp + i] * b[p];
        }
        b[i] = s / l[i * kp + i];
    }
}

/// The exact ridge solve: the lower triangle of `G = A^T A + reg I` accumulated four rows of `A`
/// at a time (each row of G is loaded and stored once per four rank-one updates), then Cholesky.
/// Returns false when G stays singular under any tolerable jitter (non-finite data).
#[inline(always)]
pub(super) fn exact_row<const F: bool, I: ColIndex>(
    factor: &[f64],
    k: usize,
    kp: usize,
    row: &RowData<'_, I>,
    w: &mut Work,
) -> bool {
    let g = &mut w.g;
    g.fill(0.0);
    w.rhs.fill(0.0);
    let row_of = |j: I| &factor[j.at() * kp..(j.at() + 1) * kp];
    let mut quads = row.cols.chunks_exact(4);
    let mut vals = row.vals.chunks_exact(4);
    for (js, bs) in quads.by_ref().zip(vals.by_ref()) {
        let f = [row_of(js[0]), row_of(js[1]), row_of(js[2]), row_of(js[3])];
        for a in 0..k {
            // columns 0..=a, rounded up to whole chunks (the extra entries above the diagonal are unused)
            let width = (a + 4) & !3;
            let ga = &mut g[a * kp..a * kp + width];
            for (c, gc) in ga.chunks_exact_mut(4).enumerate() {
                for l in 0..4 {
                    let mut s = gc[l];
                    for q in 0..4 {
                        s = fmadd::<F>(f[q][a], f[q][4 * c + l], s);
                    }
                    gc[l] = s;
                }
            }
        }
        for q in 0..4 {
            axpy4::<F>(bs[q], f[q], &mut w.rhs);
        }
    }
    for (&j, &b) in quads.remainder().iter().zip(vals.remainder()) {
        let f = row_of(j);
        for a in 0..k {
            let width = (a + 4) & !3;
            axpy4::<F>(f[a], &f[..width], &mut g[a * kp..a * kp + width]);
        }
        axpy4::<F>(b, f, &mut w.rhs);
    }
    let scale = (0..k).map(|a| g[a * kp + a]).fold(0.0, f64::max);
    for a in 0..k {
        g[a * kp + a] += row.reg;
    }
    let mut jitter = f64::EPSILON * scale.max(f64::MIN_POSITIVE);
    w.l.copy_from_slice(g);
    while !cholesky(&mut w.l, k, kp) {
        // semidefinite normal matrix (degenerate sampling, reg = 0): the smallest ridge that factors
        if !jitter.is_finite() || jitter > scale.max(1.0) * 1e6 {
            return false;
        }
        w.l.copy_from_slice(g);
        for a in 0..k {
            w.l[a * kp + a] += jitter;
        }
        jitter *= 100.0;
    }
    cholesky_solve(&w.l, k, kp, &mut w.rhs);
    w.x.copy_from_slice(&w.rhs);
    true
}
