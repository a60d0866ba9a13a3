//! The stored stabilized kernel (`method="matrix"`): K~_ij = exp(r_i + c_j - C_ij/eps) in single
//! precision, row-major (x rows, y columns, both in tree order), built once per absorption so that
//! one kernel application is one matrix-vector product with f64 accumulation:
//!
//! `sum_j b_j exp((g_j - C_ij)/eps) = exp(-r_i) sum_j K~_ij [b_j exp(g_j/eps - c_j)]` (rows) and
//! `sum_i a_i exp((f_i - C_ij)/eps) = exp(-c_j) sum_i K~_ij [a_i exp(f_i/eps - r_i)]` (columns).
//!
//! The absorption at a source potential g^ sets c = g^/eps and r_i = -max_j (log b_j + (g^_j -
//! C_ij)/eps), so the largest entry of every row of b K~ is 1 and the entries stay far from the
//! single-precision range limits; it returns log sum_j b_j exp((g^_j - C_ij)/eps) per row (a
//! dense log-domain application in f64, the row update at g^).
//!
//! Error bound of one application (checked at run time, per target): each stored entry is the
//! f64 value rounded to f32 (relative error <= 2^-24), or flushed to 0 below `f32::MIN_POSITIVE`
//! (absolute error below it); all terms are nonnegative, so the relative error of target i's sum
//! S_i is at most `2^-24 + MIN_POSITIVE * sum_j v_j / S_i` (+ the f64 accumulation, ~m 2^-53),
//! and its log is off by at most that / (1 - that). The scaling vector v is divided by its
//! largest entry (an offset common to all sources changes nothing), so v <= 1.

use super::simd::{exp_fast_with, madd};
use crate::error::{Error, Result};
use rayon::prelude::*;

mod pass;

/// Largest matrix the stored method builds (4 GB of f32 entries).
pub const STORED_MAX_BYTES: usize = 4_000_000_000;
/// Relative rounding of one stored entry (f32) plus the f64 accumulation's share.
pub const STORED_ROUNDING: f64 = 5.97e-8;
/// Half-range of the scaled drift (g/eps - c or f/eps - r, over sources with weight) beyond which
/// the kernel is absorbed again (exp(-2 DRIFT_MAX) of a source's scaling is still far above the
/// f32 flush level times the other sources').
pub const DRIFT_MAX: f64 = 30.0;
/// Row blocks of the column-side product (fixed: results do not depend on the thread count).
const COL_BLOCKS: usize = 32;

/// The log sums of one side's targets and their error bound.
pub type LogSums = (Vec<f64>, f64);

pub struct StoredKernel {
    n: usize,
    m: usize,
    entries: Vec<f32>,
    /// r (per row) and c (per column), the absorbed scalings.
    r: Vec<f64>,
    c: Vec<f64>,
    eps: f64,
}

/// The checked size of an n x m stored kernel in bytes.
pub fn stored_bytes(n: usize, m: usize) -> Result<usize> {
    let bytes = (n as u128) * (m as u128) * 4;
    if bytes > STORED_MAX_BYTES as u128 {
        return Err(Error::invalid(
            "method",
            format!(
                "'matrix' stores n * m = {} kernel entries ({bytes} bytes of float32), above the \
                 cap of {STORED_MAX_BYTES} bytes: use method='hierarchical'",
                (n as u128) * (m as u128)
            ),
        ));
    }
    Ok(bytes as usize)
}

/// Scaling vector of a potential: v_k = w_k exp(pot_k/eps - shift_k - top) with top the largest
/// exponent over weighted sources; returns (v, top, half-range of the exponents).
fn scaling(w: &[f64], pot: &[f64], shift: &[f64], eps: f64) -> (Vec<f64>, f64, f64) {
    let (mut top, mut low) = (f64::NEG_INFINITY, f64::INFINITY);
    for ((&wk, &p), &s) in w.iter().zip(pot).zip(shift) {
        if wk > 0.0 {
            let e = p / eps - s;
            top = top.max(e);
            low = low.min(e);
        }
    }
    let v = w
        .iter()
        .zip(pot)
        .zip(shift)
        .map(|((&wk, &p), &s)| {
            if wk > 0.0 {
                wk * (p / eps - s - top).exp()
            } else {
                0.0
            }
        })
        .collect();
    (v, top, 0.5 * (top - low))
}

/// log(shift-free sum) per target and the largest relative error bound (module notes).
fn finish(sums: &[f64], shift: &[f64], top: f64, vsum: f64) -> (Vec<f64>, f64) {
    let mut bound = 0.0f64;
    let logs = sums
        .iter()
        .zip(shift)
        .map(|(&s, &sh)| {
            let rel = if s > 0.0 {
                STORED_ROUNDING + f64::from(f32::MIN_POSITIVE) * vsum / s
            } else {
                f64::INFINITY
            };
            bound = bound.max(rel / (1.0 - rel).max(0.0));
            if s > 0.0 {
                -sh + top + s.ln()
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect();
    (logs, if bound.is_nan() { f64::INFINITY } else { bound })
}

impl StoredKernel {
    /// Absorbs the kernel at the source potential `g`: builds K~ for the points x (n x d) and y
    /// (m x d), row-major, and returns it with log sum_j b_j exp((g_j - C_ij)/eps) per row (exact
    /// up to f64 rounding).
    pub fn build(
        x: &[f64],
        y: &[f64],
        d: usize,
        b: &[f64],
        g: &[f64],
        eps: f64,
        parallel: bool,
    ) -> Result<(StoredKernel, Vec<f64>)> {
        if d == 0 || x.len() % d != 0 || y.len() % d != 0 || x.is_empty() || y.is_empty() {
            return Err(Error::invalid(
                "x",
                "x and y must be non-empty (n, d) and (m, d) arrays",
            ));
        }
        let (n, m) = (x.len() / d, y.len() / d);
        if b.len() != m || g.len() != m {
            return Err(Error::invalid(
                "b",
                format!(
                    "expected {m} weights and potentials, got {} and {}",
                    b.len(),
                    g.len()
                ),
            ));
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::invalid(
                "eps",
                format!("must be positive and finite, got {eps}"),
            ));
        }
        if b.iter().chain(g).any(|v| !v.is_finite()) || b.iter().any(|&v| v < 0.0) {
            return Err(Error::invalid(
                "b",
                "weights must be finite and nonnegative, potentials finite",
            ));
        }
        stored_bytes(n, m)?;
        let inv_eps = 1.0 / eps;
        // y column-major, so each row's distances vectorize over j
        let mut yt = vec![0.0; d * m];
        for (j, pt) in y.chunks_exact(d).enumerate() {
            for (k, &v) in pt.iter().enumerate() {
                yt[k * m + j] = v;
            }
        }
        let c: Vec<f64> = g.iter().map(|&v| v * inv_eps).collect();
        let log_b: Vec<f64> = b
            .iter()
            .map(|&w| if w > 0.0 { w.ln() } else { f64::NEG_INFINITY })
            .collect();
        let mut entries = vec![0.0f32; n * m];
        // per row: the shift r_i and the log sum
        let mut rows = vec![[0.0; 2]; n];
        let row = |work: &mut Vec<f64>, (i, (out, ri)): (usize, (&mut [f32], &mut [f64; 2]))| {
            build_row(
                &x[i * d..(i + 1) * d],
                &yt,
                &c,
                &log_b,
                b,
                inv_eps,
                work,
                Some(out),
                ri,
            )
        };
        let ok = if parallel {
            entries
                .par_chunks_mut(m)
                .zip(rows.par_iter_mut())
                .enumerate()
                .map_init(|| vec![0.0; m], row)
                .reduce(|| true, |x, y| x && y)
        } else {
            let mut work = vec![0.0; m];
            entries
                .chunks_mut(m)
                .zip(rows.iter_mut())
                .enumerate()
                .map(|job| row(&mut work, job))
                .filter(|ok| !ok)
                .count()
                == 0
        };
        if !ok {
            return Err(Error::invalid(
                "b",
                "the weights span more than the float32 range of method='matrix' (an entry \
                 overflows, or a row has no weighted source): use method='hierarchical'",
            ));
        }
        let r = rows.iter().map(|v| v[0]).collect();
        let log_rows = rows.iter().map(|v| v[1]).collect();
        Ok((
            StoredKernel {
                n,
                m,
                entries,
                r,
                c,
                eps,
            },
            log_rows,
        ))
    }

    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Checks a weight vector and potential of the side of `len` points.
    fn check(w: &[f64], pot: &[f64], len: usize, name: &'static str) -> Result<()> {
        if w.len() != len || pot.len() != len {
            return Err(Error::invalid(
                name,
                format!(
                    "expected {len} weights and potentials, got {} and {}",
                    w.len(),
                    pot.len()
                ),
            ));
        }
        if w.iter().any(|&v| !(v.is_finite() && v >= 0.0)) || pot.iter().any(|v| v.is_nan()) {
            return Err(Error::invalid(
                name,
                "weights must be finite and nonnegative, potentials not NaN",
            ));
        }
        Ok(())
    }

    /// `rows` and `cols` with their inputs checked (the bindings' entry).
    pub fn apply_checked(
        &self,
        a: &[f64],
        f: &[f64],
        b: &[f64],
        g: &[f64],
        parallel: bool,
    ) -> Result<(LogSums, LogSums)> {
        Self::check(a, f, self.n, "a")?;
        Self::check(b, g, self.m, "b")?;
        let (rows, rb, _) = self.rows(b, g, parallel);
        let (cols, cb, _) = self.cols(a, f, parallel);
        Ok(((rows, rb), (cols, cb)))
    }

    /// Rows: log sum_j b_j exp((g_j - C_ij)/eps) per x point, the error bound, and the drift's
    /// half-range (in units of eps).
    pub fn rows(&self, b: &[f64], g: &[f64], parallel: bool) -> (Vec<f64>, f64, f64) {
        let (v, top, drift) = scaling(b, g, &self.c, self.eps);
        let vsum: f64 = v.iter().sum();
        let mut sums = vec![0.0; self.n];
        let m = self.m;
        let job = |(out, row): (&mut f64, &[f32])| *out = dot_f32(row, &v);
        if parallel {
            sums.par_iter_mut()
                .zip(self.entries.par_chunks(m))
                .for_each(job);
        } else {
            sums.iter_mut().zip(self.entries.chunks(m)).for_each(job);
        }
        let (logs, bound) = finish(&sums, &self.r, top, vsum);
        (logs, bound, drift)
    }

    /// Columns: log sum_i a_i exp((f_i - C_ij)/eps) per y point, the bound and the drift.
    pub fn cols(&self, a: &[f64], f: &[f64], parallel: bool) -> (Vec<f64>, f64, f64) {
        let (u, top, drift) = scaling(a, f, &self.r, self.eps);
        let usum: f64 = u.iter().sum();
        let (n, m) = (self.n, self.m);
        let block = n.div_ceil(COL_BLOCKS).max(1);
        let job = |k: usize| -> Vec<f64> {
            let mut acc = vec![0.0; m];
            let (lo, hi) = (k * block, ((k + 1) * block).min(n));
            for i in lo..hi {
                if u[i] != 0.0 {
                    axpy_f32(u[i], &self.entries[i * m..(i + 1) * m], &mut acc);
                }
            }
            acc
        };
        let blocks = n.div_ceil(block);
        let partial: Vec<Vec<f64>> = if parallel {
            (0..blocks).into_par_iter().map(job).collect()
        } else {
            (0..blocks).map(job).collect()
        };
        let mut sums = vec![0.0; m];
        for p in &partial {
            for (s, v) in sums.iter_mut().zip(p) {
                *s += v;
            }
        }
        let (logs, bound) = finish(&sums, &self.c, top, usum);
        (logs, bound, drift)
    }
}

/// One row of the absorption: returns false on an overflowing entry or a row without weight.
/// `out` None: only the row's log sum. `ri`: the row's shift r_i and its log sum
/// log sum_j b_j exp(c_j - C_ij/eps).
#[allow(clippy::too_many_arguments)]
fn build_row(
    xi: &[f64],
    yt: &[f64],
    c: &[f64],
    log_b: &[f64],
    b: &[f64],
    inv_eps: f64,
    work: &mut [f64],
    out: Option<&mut [f32]>,
    ri: &mut [f64; 2],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            return unsafe { build_row_avx512(xi, yt, c, log_b, b, inv_eps, work, out, ri) };
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            return unsafe { build_row_avx2(xi, yt, c, log_b, b, inv_eps, work, out, ri) };
        }
    }
    build_row_with::<false>(xi, yt, c, log_b, b, inv_eps, work, out, ri)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn build_row_avx2(
    xi: &[f64],
    yt: &[f64],
    c: &[f64],
    log_b: &[f64],
    b: &[f64],
    inv_eps: f64,
    work: &mut [f64],
    out: Option<&mut [f32]>,
    ri: &mut [f64; 2],
) -> bool {
    build_row_with::<true>(xi, yt, c, log_b, b, inv_eps, work, out, ri)
}

/// The same with the AVX-512 register width (8 exponentials per instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[allow(clippy::too_many_arguments)]
unsafe fn build_row_avx512(
    xi: &[f64],
    yt: &[f64],
    c: &[f64],
    log_b: &[f64],
    b: &[f64],
    inv_eps: f64,
    work: &mut [f64],
    out: Option<&mut [f32]>,
    ri: &mut [f64; 2],
) -> bool {
    build_row_with::<true>(xi, yt, c, log_b, b, inv_eps, work, out, ri)
}

/// Lanes of the partial sums and maxima (fixed, so results do not depend on the vector width).
const LANES: usize = 16;

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn build_row_with<const F: bool>(
    xi: &[f64],
    yt: &[f64],
    c: &[f64],
    log_b: &[f64],
    b: &[f64],
    inv_eps: f64,
    work: &mut [f64],
    out: Option<&mut [f32]>,
    ri: &mut [f64; 2],
) -> bool {
    let m = c.len();
    let d = xi.len();
    // exponents c_j - C_ij/eps and their b-weighted maximum, `LANES` columns at a time (one pass)
    let mut hi = [f64::NEG_INFINITY; LANES];
    let full = m / LANES * LANES;
    for j0 in (0..full).step_by(LANES) {
        let mut dist = [0.0f64; LANES];
        for k in 0..d {
            let ys = &yt[k * m + j0..k * m + j0 + LANES];
            for l in 0..LANES {
                let t = xi[k] - ys[l];
                dist[l] = madd::<F>(t, t, dist[l]);
            }
        }
        let (w, cs, lb) = (
            &mut work[j0..j0 + LANES],
            &c[j0..j0 + LANES],
            &log_b[j0..j0 + LANES],
        );
        for l in 0..LANES {
            w[l] = madd::<F>(-dist[l], inv_eps, cs[l]);
            let v = w[l] + lb[l];
            hi[l] = if v > hi[l] { v } else { hi[l] };
        }
    }
    let mut top = hi.iter().fold(f64::NEG_INFINITY, |acc, &v| acc.max(v));
    for j in full..m {
        let mut dist = 0.0;
        for k in 0..d {
            let t = xi[k] - yt[k * m + j];
            dist = madd::<F>(t, t, dist);
        }
        work[j] = madd::<F>(-dist, inv_eps, c[j]);
        top = top.max(work[j] + log_b[j]);
    }
    if !top.is_finite() {
        return false;
    }
    // r_i = -top: entries exp(c_j - C_ij/eps + r_i), the row's log sum top + ln sum_j b_j entry_j
    let mut s = [0.0f64; LANES];
    let mut ok = true;
    let mut out = out;
    for j0 in (0..full).step_by(LANES) {
        let mut e = [0.0f64; LANES];
        let (w, bs) = (&work[j0..j0 + LANES], &b[j0..j0 + LANES]);
        for l in 0..LANES {
            e[l] = exp_fast_with::<F>(w[l] - top);
            s[l] = madd::<F>(bs[l], e[l], s[l]);
        }
        if let Some(o) = out.as_deref_mut() {
            ok &= store_f32(&e, &mut o[j0..j0 + LANES]);
        }
    }
    let mut tail = 0.0;
    for j in full..m {
        let e = exp_fast_with::<F>(work[j] - top);
        tail = madd::<F>(b[j], e, tail);
        if let Some(o) = out.as_deref_mut() {
            ok &= store_f32(&[e], &mut o[j..j + 1]);
        }
    }
    let sum = fold_lanes(&s) + tail;
    *ri = [-top, top + sum.ln()];
    ok && sum > 0.0
}

/// Entries rounded to f32, those below the f32 normal range flushed to 0; false on an overflow.
#[inline(always)]
fn store_f32(e: &[f64], out: &mut [f32]) -> bool {
    let mut ok = true;
    for (o, &v) in out.iter_mut().zip(e) {
        ok &= v < f64::from(f32::MAX);
        *o = if v < f64::from(f32::MIN_POSITIVE) {
            0.0
        } else {
            v as f32
        };
    }
    ok
}

/// The partial sums added pairwise in a fixed order.
#[inline(always)]
fn fold_lanes(s: &[f64; LANES]) -> f64 {
    let mut h = *s;
    let mut w = LANES / 2;
    while w > 0 {
        for l in 0..w {
            h[l] += h[l + w];
        }
        w /= 2;
    }
    h[0]
}

/// sum_k row_k v_k in f64, `LANES` independent partial sums (AVX2 / AVX-512 + FMA where the CPU
/// has them).
pub(super) fn dot_f32(row: &[f32], v: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            return unsafe { dot_f32_avx512(row, v) };
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            return unsafe { dot_f32_avx2(row, v) };
        }
    }
    dot_f32_with::<false>(row, v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_avx2(row: &[f32], v: &[f64]) -> f64 {
    dot_f32_with::<true>(row, v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn dot_f32_avx512(row: &[f32], v: &[f64]) -> f64 {
    dot_f32_with::<true>(row, v)
}

#[inline(always)]
fn dot_f32_with<const F: bool>(row: &[f32], v: &[f64]) -> f64 {
    let mut s = [0.0f64; LANES];
    let (rc, vc) = (row.chunks_exact(LANES), v.chunks_exact(LANES));
    let (rr, vr) = (rc.remainder(), vc.remainder());
    for (x, y) in rc.zip(vc) {
        for l in 0..LANES {
            s[l] = madd::<F>(f64::from(x[l]), y[l], s[l]);
        }
    }
    let tail: f64 = rr.iter().zip(vr).map(|(&x, &y)| f64::from(x) * y).sum();
    fold_lanes(&s) + tail
}

/// acc += alpha * row (f32 row, f64 accumulator).
pub(super) fn axpy_f32(alpha: f64, row: &[f32], acc: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            unsafe { axpy_f32_avx512(alpha, row, acc) };
            return;
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            unsafe { axpy_f32_avx2(alpha, row, acc) };
            return;
        }
    }
    axpy_f32_with::<false>(alpha, row, acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_f32_avx2(alpha: f64, row: &[f32], acc: &mut [f64]) {
    axpy_f32_with::<true>(alpha, row, acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn axpy_f32_avx512(alpha: f64, row: &[f32], acc: &mut [f64]) {
    axpy_f32_with::<true>(alpha, row, acc);
}

#[inline(always)]
fn axpy_f32_with<const F: bool>(alpha: f64, row: &[f32], acc: &mut [f64]) {
    for (a, &x) in acc.iter_mut().zip(row) {
        *a = madd::<F>(alpha, f64::from(x), *a);
    }
}

/// Rows per group of the fused pass's kernels (their dots share the loads of v, their updates
/// one read and write of the accumulator), and the partial sums per row.
pub(super) const ROWS: usize = 4;
const ROW_LANES: usize = 8;

/// `dot_f32` of `ROWS` rows at once (`ROW_LANES` partial sums per row, fixed order).
pub(super) fn dots_f32(rows: &[&[f32]; ROWS], v: &[f64]) -> [f64; ROWS] {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            return unsafe { dots_f32_avx512(rows, v) };
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            return unsafe { dots_f32_avx2(rows, v) };
        }
    }
    dots_f32_with::<false>(rows, v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_f32_avx2(rows: &[&[f32]; ROWS], v: &[f64]) -> [f64; ROWS] {
    dots_f32_with::<true>(rows, v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn dots_f32_avx512(rows: &[&[f32]; ROWS], v: &[f64]) -> [f64; ROWS] {
    dots_f32_with::<true>(rows, v)
}

#[inline(always)]
fn dots_f32_with<const F: bool>(rows: &[&[f32]; ROWS], v: &[f64]) -> [f64; ROWS] {
    let n = v.len();
    let rows: [&[f32]; ROWS] = std::array::from_fn(|r| &rows[r][..n]);
    let full = n / ROW_LANES * ROW_LANES;
    let mut s = [[0.0f64; ROW_LANES]; ROWS];
    for j0 in (0..full).step_by(ROW_LANES) {
        let vc = &v[j0..j0 + ROW_LANES];
        for r in 0..ROWS {
            let rc = &rows[r][j0..j0 + ROW_LANES];
            for l in 0..ROW_LANES {
                s[r][l] = madd::<F>(f64::from(rc[l]), vc[l], s[r][l]);
            }
        }
    }
    std::array::from_fn(|r| {
        let tail: f64 = (full..n).map(|j| f64::from(rows[r][j]) * v[j]).sum();
        let h = &s[r];
        ((h[0] + h[4]) + (h[2] + h[6])) + ((h[1] + h[5]) + (h[3] + h[7])) + tail
    })
}

/// acc += sum_r alpha_r row_r (f32 rows, f64 accumulator; the rows added in order).
pub(super) fn axpy_rows(alpha: &[f64; ROWS], rows: &[&[f32]; ROWS], acc: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            unsafe { axpy_rows_avx512(alpha, rows, acc) };
            return;
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            unsafe { axpy_rows_avx2(alpha, rows, acc) };
            return;
        }
    }
    axpy_rows_with::<false>(alpha, rows, acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_rows_avx2(alpha: &[f64; ROWS], rows: &[&[f32]; ROWS], acc: &mut [f64]) {
    axpy_rows_with::<true>(alpha, rows, acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn axpy_rows_avx512(alpha: &[f64; ROWS], rows: &[&[f32]; ROWS], acc: &mut [f64]) {
    axpy_rows_with::<true>(alpha, rows, acc);
}

#[inline(always)]
fn axpy_rows_with<const F: bool>(alpha: &[f64; ROWS], rows: &[&[f32]; ROWS], acc: &mut [f64]) {
    let n = acc.len();
    let rows: [&[f32]; ROWS] = std::array::from_fn(|r| &rows[r][..n]);
    for j in 0..n {
        let mut a = acc[j];
        for r in 0..ROWS {
            a = madd::<F>(alpha[r], f64::from(rows[r][j]), a);
        }
        acc[j] = a;
    }
}

/// The objective's per-row update: s += v row, t += v row cost with cost_i = |y - x_i|^2 (x
/// coordinate-major, d x m); returns the largest cost.
pub(super) fn objective_row(
    v: f64,
    row: &[f32],
    y: &[f64],
    xt: &[f64],
    s: &mut [f64],
    t: &mut [f64],
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            return unsafe { objective_row_avx512(v, row, y, xt, s, t) };
        }
        if has!("avx2") && has!("fma") {
            // SAFETY: the features were just detected
            return unsafe { objective_row_avx2(v, row, y, xt, s, t) };
        }
    }
    objective_row_with::<false>(v, row, y, xt, s, t)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn objective_row_avx2(
    v: f64,
    row: &[f32],
    y: &[f64],
    xt: &[f64],
    s: &mut [f64],
    t: &mut [f64],
) -> f64 {
    objective_row_with::<true>(v, row, y, xt, s, t)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
unsafe fn objective_row_avx512(
    v: f64,
    row: &[f32],
    y: &[f64],
    xt: &[f64],
    s: &mut [f64],
    t: &mut [f64],
) -> f64 {
    objective_row_with::<true>(v, row, y, xt, s, t)
}

#[inline(always)]
fn objective_row_with<const F: bool>(
    v: f64,
    row: &[f32],
    y: &[f64],
    xt: &[f64],
    s: &mut [f64],
    t: &mut [f64],
) -> f64 {
    let m = row.len();
    let (s, t) = (&mut s[..m], &mut t[..m]);
    let full = m / LANES * LANES;
    let mut hi = [0.0f64; LANES];
    let cost = |i: usize| -> f64 {
        let mut c = 0.0;
        for (k, &yk) in y.iter().enumerate() {
            let dx = xt[k * m + i] - yk;
            c = madd::<F>(dx, dx, c);
        }
        c
    };
    for i0 in (0..full).step_by(LANES) {
        let mut c = [0.0f64; LANES];
        for (k, &yk) in y.iter().enumerate() {
            let xs = &xt[k * m + i0..k * m + i0 + LANES];
            for l in 0..LANES {
                let dx = xs[l] - yk;
                c[l] = madd::<F>(dx, dx, c[l]);
            }
        }
        let (rs, sc, tc) = (
            &row[i0..i0 + LANES],
            &mut s[i0..i0 + LANES],
            &mut t[i0..i0 + LANES],
        );
        for l in 0..LANES {
            let kv = v * f64::from(rs[l]);
            sc[l] += kv;
            tc[l] = madd::<F>(kv, c[l], tc[l]);
            hi[l] = if c[l] > hi[l] { c[l] } else { hi[l] };
        }
    }
    let mut top = hi.iter().fold(0.0f64, |a, &c| a.max(c));
    for i in full..m {
        let c = cost(i);
        let kv = v * f64::from(row[i]);
        s[i] += kv;
        t[i] = madd::<F>(kv, c, t[i]);
        top = top.max(c);
    }
    top
}

#[cfg(test)]
mod tests {
    use super::super::super::tree::KdTree;
    use super::*;

    fn cloud(n: usize, d: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n * d)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    /// log sum_k w_k exp((pot_k - |t - s_k|^2)/eps), directly.
    fn direct(t: &[f64], src: &KdTree, w: &[f64], pot: &[f64], eps: f64) -> f64 {
        let terms: Vec<f64> = (0..src.n)
            .map(|k| {
                let c: f64 = t
                    .iter()
                    .zip(src.point(k))
                    .map(|(a, b)| (a - b).powi(2))
                    .sum();
                w[k].ln() + (pot[k] - c) / eps
            })
            .collect();
        let top = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln()
    }

    #[test]
    fn both_sides_match_the_direct_sums_within_the_bound() {
        let (n, m, d, eps) = (70, 50, 3, 0.02);
        let tx = KdTree::build(&cloud(n, d, 1), d, 8).unwrap();
        let ty = KdTree::build(&cloud(m, d, 2), d, 8).unwrap();
        let a: Vec<f64> = (0..n).map(|i| 1.0 + (i % 3) as f64).collect();
        let b: Vec<f64> = (0..m).map(|j| 1.0 + (j % 5) as f64).collect();
        let g0: Vec<f64> = cloud(m, 1, 3).iter().map(|v| 0.1 * v).collect();
        for parallel in [false, true] {
            let (kern, rows0) =
                StoredKernel::build(&tx.points, &ty.points, d, &b, &g0, eps, parallel).unwrap();
            for i in 0..n {
                let want = direct(tx.point(i), &ty, &b, &g0, eps);
                assert!((rows0[i] - want).abs() <= 1e-12 * want.abs().max(1.0));
            }
            // potentials drifted by up to ~10 eps from the absorbed ones
            let g: Vec<f64> = g0
                .iter()
                .zip(cloud(m, 1, 4))
                .map(|(v, r)| v + 0.2 * r)
                .collect();
            let f: Vec<f64> = cloud(n, 1, 5)
                .iter()
                .zip(&rows0)
                .map(|(v, l)| 0.2 * v - l * eps)
                .collect();
            let (rows, rb, _) = kern.rows(&b, &g, parallel);
            let (cols, cb, _) = kern.cols(&a, &f, parallel);
            assert!(rb < 1e-7 && cb < 1e-7, "{rb} {cb}");
            for i in 0..n {
                let want = direct(tx.point(i), &ty, &b, &g, eps);
                assert!((rows[i] - want).abs() <= rb, "{} vs {want}", rows[i]);
            }
            for j in 0..m {
                let want = direct(ty.point(j), &tx, &a, &f, eps);
                assert!((cols[j] - want).abs() <= cb, "{} vs {want}", cols[j]);
            }
        }
    }

    #[test]
    fn refuses_above_the_memory_cap() {
        let err = stored_bytes(100_000, 20_000).unwrap_err().to_string();
        assert!(
            err.contains("2000000000") && err.contains("8000000000"),
            "{err}"
        );
        assert_eq!(stored_bytes(100, 10).unwrap(), 4000);
    }
}
