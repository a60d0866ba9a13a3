//! The vectorized loops of the stored kernel (kernel/stored.rs): one row of the absorption, the
//! f32-row products with f64 sums (one row, or `ROWS` rows sharing their loads), and the
//! objective's cost-weighted row update; each with AVX2 and AVX-512 versions chosen at run time
//! (the same code compiled for each: the lanes and the order of every sum are fixed, so results
//! do not depend on the thread count).

use crate::ot::kernel::simd::{exp_poly_with, madd};

/// One row of the absorption: returns false on an overflowing entry or a row without weight.
/// `out` None: only the row's log sum. `ri`: the row's shift r_i and its log sum
/// log sum_j b_j exp(c_j - C_ij/eps).
#[allow(clippy::too_many_arguments)]
pub(super) fn build_row(
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
    const L: usize = BUILD_LANES;
    // exponents c_j - C_ij/eps and their b-weighted maximum, `L` columns at a time (one pass)
    let mut hi = [f64::NEG_INFINITY; L];
    let full = m / L * L;
    for j0 in (0..full).step_by(L) {
        let mut dist = [0.0f64; L];
        for k in 0..d {
            let ys = &yt[k * m + j0..k * m + j0 + L];
            for l in 0..L {
                let t = xi[k] - ys[l];
                dist[l] = madd::<F>(t, t, dist[l]);
            }
        }
        let (w, cs, lb) = (&mut work[j0..j0 + L], &c[j0..j0 + L], &log_b[j0..j0 + L]);
        for l in 0..L {
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
    // r_i = -top: entries exp(c_j - C_ij/eps + r_i), the row's log sum top + ln sum_j b_j entry_j;
    // `L` independent exponentials per step (their polynomials are latency-bound one at a time)
    let mut s = [0.0f64; L];
    let mut ok = true;
    let mut out = out;
    for j0 in (0..full).step_by(L) {
        let mut e = [0.0f64; L];
        let (w, bs) = (&work[j0..j0 + L], &b[j0..j0 + L]);
        for l in 0..L {
            e[l] = exp_entry::<F>(w[l] - top);
            s[l] = madd::<F>(bs[l], e[l], s[l]);
        }
        if let Some(o) = out.as_deref_mut() {
            ok &= store_f32(&e, &mut o[j0..j0 + L]);
        }
    }
    let mut tail = 0.0;
    for j in full..m {
        let e = exp_entry::<F>(work[j] - top);
        tail = madd::<F>(b[j], e, tail);
        if let Some(o) = out.as_deref_mut() {
            ok &= store_f32(&[e], &mut o[j..j + 1]);
        }
    }
    let sum = fold(&s) + tail;
    *ri = [-top, top + sum.ln()];
    ok && sum > 0.0
}

/// Columns per step of the absorption (8 AVX-512 registers of exponentials in flight).
const BUILD_LANES: usize = 64;

/// exp(x) for x <= 709 to ~3e-13 relative (0 below -708): `exp_fast_with`'s Cody-Waite reduction
/// with a degree-10 Taylor polynomial (remainder 0.347^11 / 11! < 2.2e-13 on |r| <= ln2/2), far
/// below the 2^-24 of the float32 rounding that follows (`STORED_ROUNDING` keeps 9e-11 for it).
#[inline(always)]
pub(super) fn exp_entry<const F: bool>(x: f64) -> f64 {
    exp_poly_with::<F, 10>(
        x,
        &[
            1.0 / 3_628_800.0, // 1/10!
            1.0 / 362_880.0,
            1.0 / 40_320.0,
            1.0 / 5_040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ],
    )
}

/// Partial sums added pairwise in a fixed order.
#[inline(always)]
fn fold<const N: usize>(s: &[f64; N]) -> f64 {
    let mut h = *s;
    let mut w = N / 2;
    while w > 0 {
        for l in 0..w {
            h[l] += h[l + w];
        }
        w /= 2;
    }
    h[0]
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
    fold(&s) + tail
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
