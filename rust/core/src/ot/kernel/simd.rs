//! Scalar primitives written so that their loops vectorize (branch-free exp, fused multiply-add
//! when the caller is compiled with FMA, dot products and column sums with independent partial
//! sums in a fixed order, so results stay deterministic), and the log-sum-exp accumulator.

use super::expansion::RowValue;

/// exp(x) for x <= ~709, to about 2 ulp (0 below -708): Cody-Waite reduction to |r| <= ln2/2
/// and a degree-13 Taylor polynomial, branch-free so that loops over it vectorize.
#[cfg(test)]
pub(super) fn exp_fast(x: f64) -> f64 {
    exp_fast_with::<false>(x)
}

/// a * b + c, fused when the caller runs with FMA (`F`), else two roundings.
#[inline(always)]
pub(super) fn madd<const F: bool>(a: f64, b: f64, c: f64) -> f64 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `exp_fast` with the Horner steps fused when `F` (inside an FMA-enabled caller).
#[inline(always)]
pub(super) fn exp_fast_with<const F: bool>(x: f64) -> f64 {
    exp_poly_with::<F, 13>(
        x,
        &[
            1.0 / 6_227_020_800.0, // 1/13!
            1.0 / 479_001_600.0,
            1.0 / 39_916_800.0,
            1.0 / 3_628_800.0,
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

/// exp(x) for x <= 709 (0 below -708): Cody-Waite reduction to |r| <= ln2/2, then the Taylor
/// polynomial of degree `N` whose `N + 1` coefficients (highest first) are given, by Horner steps
/// fused when `F`. The degree sets the accuracy (`exp_fast_with`: 13; the stored kernel's: 10).
#[inline(always)]
#[allow(clippy::excessive_precision)] // the Cody-Waite constants as published
pub(super) fn exp_poly_with<const F: bool, const N: usize>(x: f64, taylor: &[f64]) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer
    let xc = x.clamp(-708.0, 709.0);
    let t = xc * LOG2E + MAGIC;
    let k = t - MAGIC;
    let r = madd::<F>(-k, LN2_LO, madd::<F>(-k, LN2_HI, xc));
    let mut p = taylor[0];
    for &c in &taylor[1..=N] {
        p = madd::<F>(p, r, c);
    }
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    let v = p * scale;
    if x < -708.0 {
        0.0
    } else {
        v
    }
}

/// Dot product with four independent partial sums (vectorizes; the order is fixed, so results
/// stay deterministic).
#[inline(always)]
pub(super) fn dot<const F: bool, R: RowValue>(a: &[R], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0.0f64; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..4 {
            s[l] = madd::<F>(x[l].get(), y[l], s[l]);
        }
    }
    let mut tail = 0.0;
    for (x, y) in ar.iter().zip(br) {
        tail = madd::<F>(x.get(), *y, tail);
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// `out[r] = dot(rows[r * stride..][..v.len()], v)` for every r < out.len(): four rows at a time
/// (four independent chains share the loads of `v`), each summed in `dot`'s order, so the values
/// are `dot`'s bit for bit.
#[inline(always)]
pub(super) fn dots<const F: bool, R: RowValue>(
    rows: &[R],
    stride: usize,
    v: &[f64],
    out: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    if F {
        // SAFETY: F is only true inside functions compiled with AVX2 + FMA, reached after the
        // run-time check
        unsafe { dots_avx2::<R>(rows, stride, v, out) };
        return;
    }
    let terms = v.len();
    let k0 = terms / 4 * 4;
    let mut quads = out.chunks_exact_mut(4);
    let mut r = 0;
    for o in &mut quads {
        let row = |u: usize| &rows[(r + u) * stride..(r + u) * stride + terms];
        let rs = [row(0), row(1), row(2), row(3)];
        let mut s = [[0.0f64; 4]; 4];
        for ((((vc, a0), a1), a2), a3) in v
            .chunks_exact(4)
            .zip(rs[0].chunks_exact(4))
            .zip(rs[1].chunks_exact(4))
            .zip(rs[2].chunks_exact(4))
            .zip(rs[3].chunks_exact(4))
        {
            for l in 0..4 {
                s[0][l] = madd::<F>(a0[l].get(), vc[l], s[0][l]);
                s[1][l] = madd::<F>(a1[l].get(), vc[l], s[1][l]);
                s[2][l] = madd::<F>(a2[l].get(), vc[l], s[2][l]);
                s[3][l] = madd::<F>(a3[l].get(), vc[l], s[3][l]);
            }
        }
        for ((o, su), a) in o.iter_mut().zip(&s).zip(rs) {
            let mut tail = 0.0;
            for (x, y) in a[k0..].iter().zip(&v[k0..]) {
                tail = madd::<F>(x.get(), *y, tail);
            }
            *o = (su[0] + su[1]) + (su[2] + su[3]) + tail;
        }
        r += 4;
    }
    for (k, o) in quads.into_remainder().iter_mut().enumerate() {
        let q = r + k;
        *o = dot::<F, R>(&rows[q * stride..q * stride + terms], v);
    }
}

/// `dots` in AVX2 + FMA intrinsics: the same four lanes per row (lane l sums the terms l, l + 4,
/// ...), fused multiply-adds, the same final sums, so the values are `dots::<true, _>`'s bit for
/// bit (the compiler paired rows in 2-wide registers with shuffles instead: ~30% of the far-field
/// evaluation, measured at n = 1e4).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2<R: RowValue>(rows: &[R], stride: usize, v: &[f64], out: &mut [f64]) {
    use std::arch::x86_64::{
        __m256d, _mm256_cvtps_pd, _mm256_fmadd_pd, _mm256_loadu_pd, _mm256_setzero_pd,
        _mm256_storeu_pd, _mm_loadu_ps,
    };
    let terms = v.len();
    let k0 = terms / 4 * 4;
    let quads = out.len() / 4;
    // every row read below lies in `rows`: rows r < out.len(), entries < terms
    assert!(out.is_empty() || (out.len() - 1) * stride + terms <= rows.len());
    // SAFETY (loads): p + c + 4 <= p + k0 <= p + terms, inside `rows` by the asserts
    let load = |p: *const R, c: usize| -> __m256d {
        unsafe {
            if R::SINGLE {
                _mm256_cvtps_pd(_mm_loadu_ps(p.add(c) as *const f32))
            } else {
                _mm256_loadu_pd(p.add(c) as *const f64)
            }
        }
    };
    for qd in 0..quads {
        let r = 4 * qd;
        let base = rows.as_ptr();
        let p = [0, 1, 2, 3].map(|u| unsafe { base.add((r + u) * stride) });
        let mut s = [_mm256_setzero_pd(); 4];
        let mut c = 0;
        while c < k0 {
            let vc = unsafe { _mm256_loadu_pd(v.as_ptr().add(c)) };
            for u in 0..4 {
                s[u] = _mm256_fmadd_pd(load(p[u], c), vc, s[u]);
            }
            c += 4;
        }
        for u in 0..4 {
            let mut lanes = [0.0f64; 4];
            unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), s[u]) };
            let row = &rows[(r + u) * stride..(r + u) * stride + terms];
            let mut tail = 0.0;
            for (x, y) in row[k0..].iter().zip(&v[k0..]) {
                tail = x.get().mul_add(*y, tail);
            }
            out[r + u] = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail;
        }
    }
    for q in 4 * quads..out.len() {
        out[q] = dot::<true, R>(&rows[q * stride..q * stride + terms], v);
    }
}

/// `out[a] = sum_q weights[q] * rows[q * stride + a]` for a < out.len(): blocks of 8 columns kept
/// in registers over all rows, four rows at a time (independent chains hide the FMA latency).
#[inline(always)]
pub(super) fn weighted_column_sums<const F: bool>(
    rows: &[f64],
    stride: usize,
    weights: &[f64],
    out: &mut [f64],
) {
    const W: usize = 8;
    let terms = out.len();
    let n = weights.len();
    let mut c = 0;
    while c < terms {
        let width = W.min(stride - c);
        if width == W {
            let mut acc = [[0.0f64; W]; 4];
            let mut q = 0;
            while q + 4 <= n {
                for u in 0..4 {
                    let wq = weights[q + u];
                    let row = &rows[(q + u) * stride + c..(q + u) * stride + c + W];
                    for l in 0..W {
                        acc[u][l] = madd::<F>(wq, row[l], acc[u][l]);
                    }
                }
                q += 4;
            }
            for (qq, &wq) in weights.iter().enumerate().skip(q) {
                let row = &rows[qq * stride + c..qq * stride + c + W];
                for l in 0..W {
                    acc[0][l] = madd::<F>(wq, row[l], acc[0][l]);
                }
            }
            for l in 0..W.min(terms - c) {
                out[c + l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
            }
        } else {
            for l in 0..width.min(terms - c) {
                out[c + l] = (0..n).fold(0.0, |sum, q| {
                    madd::<F>(weights[q], rows[q * stride + c + l], sum)
                });
            }
        }
        c += W;
    }
}

/// Largest exponent added in a target's current scale (no overflow from sums of such terms).
pub(super) const SCALE_MAX: f64 = 600.0;

/// Accumulates log-sum-exp contributions for one target point: value = exp(m) * s; q is the
/// optional cost accumulator in the same scale.
#[derive(Clone, Copy)]
pub(super) struct Acc {
    pub(super) m: f64,
    pub(super) s: f64,
    pub(super) q: f64,
}

impl Acc {
    pub(super) const EMPTY: Acc = Acc {
        m: f64::NEG_INFINITY,
        s: 0.0,
        q: 0.0,
    };
    #[inline]
    pub(super) fn add(&mut self, log_value: f64, cost: f64) {
        // adds exp(log_value) to s and exp(log_value) * cost to q
        if log_value.is_nan() || log_value == f64::NEG_INFINITY {
            return;
        }
        if log_value > self.m {
            let r = (self.m - log_value).exp();
            self.s = self.s * r + 1.0;
            self.q = self.q * r + cost;
            self.m = log_value;
        } else {
            let e = (log_value - self.m).exp();
            self.s += e;
            self.q += e * cost;
        }
    }
    /// `add`, and exp(log_value) * frac(c) to the target's column sums `cols` (kept in the same
    /// scale: rescaled with `s`).
    #[inline]
    pub(super) fn add_cols(
        &mut self,
        cols: &mut [f64],
        log_value: f64,
        cost: f64,
        frac: impl Fn(usize) -> f64,
    ) {
        if log_value.is_nan() || log_value == f64::NEG_INFINITY {
            return;
        }
        if log_value > self.m {
            let r = (self.m - log_value).exp();
            for (c, v) in cols.iter_mut().enumerate() {
                *v = *v * r + frac(c);
            }
        } else {
            let e = (log_value - self.m).exp();
            for (c, v) in cols.iter_mut().enumerate() {
                *v += e * frac(c);
            }
        }
        self.add(log_value, cost);
    }

    pub(super) fn log(&self) -> f64 {
        if self.s > 0.0 {
            self.m + self.s.ln()
        } else {
            f64::NEG_INFINITY
        }
    }
}
