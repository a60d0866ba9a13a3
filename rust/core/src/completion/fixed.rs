//! The hot loops of a CG row solve with the padded rank fixed at compile time: `C` chunks of 4
//! lanes (`kp = 4 C`, rank <= 4 * [`MAX_CHUNKS`]).
//!
//! The run-time-length loops of `rows.rs` keep their accumulators in memory: every observed entry
//! loads and stores them, which puts a store-to-load round trip (~5 cycles) on top of each
//! multiply-add on the critical path. Here the accumulators are `[[f64; 4]; C]` arrays, unrolled by
//! the compiler and held in registers across the whole row. Same arithmetic as `rows.rs`, summed in
//! another order (the results agree to rounding).

use super::rows::{fmadd, prefetch_row, PREFETCH_AHEAD};
use super::solve::ColIndex;
use crate::scalar::Scalar;

/// Largest chunk count with a fixed-size CG kernel (rank <= 40, so that the rank-scaling
/// points k = 5..40 all run here); larger ranks use `rows.rs`.
pub(super) const MAX_CHUNKS: usize = 10;

/// Largest chunk count of the product's column blocks (32 columns: the start's 30).
pub(super) const PRODUCT_CHUNKS: usize = 8;

/// A padded vector of `4 C` lanes.
pub(super) type Chunks<const C: usize> = [[f64; 4]; C];

/// `4 C` stored values widened to f64 (the spectral start's products gather f32 copies).
#[inline(always)]
pub(super) fn load<T: Scalar, const C: usize>(s: &[T]) -> Chunks<C> {
    let s = &s[..4 * C];
    let mut out = [[0.0; 4]; C];
    for c in 0..C {
        for l in 0..4 {
            out[c][l] = s[4 * c + l].to_f64();
        }
    }
    out
}

#[inline(always)]
pub(super) fn store<const C: usize>(v: &Chunks<C>, d: &mut [f64]) {
    let d = &mut d[..4 * C];
    for c in 0..C {
        d[4 * c..4 * c + 4].copy_from_slice(&v[c]);
    }
}

/// `<a, b>` with even and odd chunks in separate sums (half the dependency chain).
#[inline(always)]
pub(super) fn dot<const F: bool, const C: usize>(a: &Chunks<C>, b: &Chunks<C>) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if F {
        // SAFETY: `F` is true only inside the AVX2 + FMA builds, which run where the CPU has them
        return unsafe { dot_avx::<C>(a, b) };
    }
    let (mut s0, mut s1) = ([0.0; 4], [0.0; 4]);
    for c in 0..C {
        let s = if c % 2 == 0 { &mut s0 } else { &mut s1 };
        for l in 0..4 {
            s[l] = fmadd::<F>(a[c][l], b[c][l], s[l]);
        }
    }
    ((s0[0] + s1[0]) + (s0[2] + s1[2])) + ((s0[1] + s1[1]) + (s0[3] + s1[3]))
}

/// [`dot`] in AVX registers, the same sums in the same order. Written with intrinsics because the
/// compiler vectorizes the plain version two lanes at a time (it builds its vectors from the final
/// reduction's pairs of lanes), twice the multiply-adds of the 4-lane chunks.
///
/// # Safety
/// The CPU must have AVX2 and FMA; inlined into the `avx2,fma` builds only (where the intrinsics
/// inline too).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dot_avx<const C: usize>(a: &Chunks<C>, b: &Chunks<C>) -> f64 {
    use std::arch::x86_64::{
        _mm256_add_pd, _mm256_castpd256_pd128, _mm256_extractf128_pd, _mm256_fmadd_pd,
        _mm256_loadu_pd, _mm256_setzero_pd, _mm_add_pd, _mm_add_sd, _mm_cvtsd_f64, _mm_unpackhi_pd,
    };
    // SAFETY: the caller guarantees AVX2 and FMA; the loads read whole 4-lane arrays
    unsafe {
        let (mut s0, mut s1) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        for c in 0..C {
            let prod = (
                _mm256_loadu_pd(a[c].as_ptr()),
                _mm256_loadu_pd(b[c].as_ptr()),
            );
            if c % 2 == 0 {
                s0 = _mm256_fmadd_pd(prod.0, prod.1, s0);
            } else {
                s1 = _mm256_fmadd_pd(prod.0, prod.1, s1);
            }
        }
        let s = _mm256_add_pd(s0, s1);
        // lanes (0 + 2) and (1 + 3), then their sum: the plain version's order
        let h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd::<1>(s));
        _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)))
    }
}

/// `acc += s * f`.
#[inline(always)]
pub(super) fn axpy<const F: bool, const C: usize>(s: f64, f: &Chunks<C>, acc: &mut Chunks<C>) {
    for c in 0..C {
        for l in 0..4 {
            acc[c][l] = fmadd::<F>(s, f[c][l], acc[c][l]);
        }
    }
}

/// Gathers the factor rows `cols` into `rows` (contiguous, stride `4 C`) and writes
/// `r = A^T (b - A x)` and `rhs = A^T b` (one pass over the factor, prefetched ahead).
#[inline(always)]
pub(super) fn gather_residual<const F: bool, const C: usize, I: ColIndex>(
    factor: &[f64],
    cols: &[I],
    vals: &[f64],
    x: &[f64],
    rows: &mut [f64],
    r: &mut [f64],
    rhs: &mut [f64],
) {
    let kp = 4 * C;
    let xv = load::<f64, C>(x);
    let (mut acc_r, mut acc_b) = ([[0.0; 4]; C], [[0.0; 4]; C]);
    for (t, (&j, &b)) in cols.iter().zip(vals).enumerate() {
        if F {
            if let Some(&ahead) = cols.get(t + PREFETCH_AHEAD) {
                prefetch_row(factor, ahead.at(), kp);
            }
        }
        let j = j.at();
        let f = load::<f64, C>(&factor[j * kp..(j + 1) * kp]);
        store(&f, &mut rows[t * kp..(t + 1) * kp]);
        let e = b - dot::<F, C>(&f, &xv);
        axpy::<F, C>(e, &f, &mut acc_r);
        axpy::<F, C>(b, &f, &mut acc_b);
    }
    store(&acc_r, r);
    store(&acc_b, rhs);
}

/// `out = A^T (A v)` over the gathered rows `A` (stride `4 C`). Two accumulators: consecutive
/// entries update different ones, halving the chain of dependent multiply-adds (as in `rows.rs`).
#[inline(always)]
pub(super) fn normal_pass<const F: bool, const C: usize>(rows: &[f64], v: &[f64], out: &mut [f64]) {
    let vv = load::<f64, C>(v);
    let (mut acc, mut acc2) = ([[0.0; 4]; C], [[0.0; 4]; C]);
    let mut pairs = rows.chunks_exact(8 * C);
    for pair in pairs.by_ref() {
        let (f0, f1) = (
            load::<f64, C>(&pair[..4 * C]),
            load::<f64, C>(&pair[4 * C..]),
        );
        axpy::<F, C>(dot::<F, C>(&f0, &vv), &f0, &mut acc);
        axpy::<F, C>(dot::<F, C>(&f1, &vv), &f1, &mut acc2);
    }
    let rest = pairs.remainder();
    if !rest.is_empty() {
        let f = load::<f64, C>(rest);
        axpy::<F, C>(dot::<F, C>(&f, &vv), &f, &mut acc);
    }
    for (a, a2) in acc.iter_mut().zip(&acc2) {
        for l in 0..4 {
            a[l] += a2[l];
        }
    }
    store(&acc, out);
}

/// `sum_t (b_t - <A_t, x>)^2` over the gathered rows (two sums: entries alternate between them).
#[inline(always)]
pub(super) fn sq_residual<const F: bool, const C: usize>(
    rows: &[f64],
    vals: &[f64],
    x: &[f64],
) -> f64 {
    let xv = load::<f64, C>(x);
    let mut total = [0.0; 2];
    for (t, (f, &b)) in rows.chunks_exact(4 * C).zip(vals).enumerate() {
        let e = b - dot::<F, C>(&load::<f64, C>(f), &xv);
        total[t & 1] = fmadd::<F>(e, e, total[t & 1]);
    }
    total[0] + total[1]
}

/// `out = Q diag(inv_d) Q^T r` with `Q` and `Q^T` padded to `kp x kp` (rows of stride `4 C`).
#[inline(always)]
pub(super) fn precondition<const F: bool, const C: usize>(
    q: &[f64],
    qt: &[f64],
    k: usize,
    inv_d: &[f64],
    r: &[f64],
    out: &mut [f64],
) {
    let kp = 4 * C;
    let mut tmp = [[0.0; 4]; C];
    for i in 0..k {
        axpy::<F, C>(r[i], &load::<f64, C>(&q[i * kp..]), &mut tmp);
    }
    let d = load::<f64, C>(inv_d);
    for c in 0..C {
        for l in 0..4 {
            tmp[c][l] *= d[c][l];
        }
    }
    let mut acc = [[0.0; 4]; C];
    for a in 0..k {
        axpy::<F, C>(tmp[a / 4][a % 4], &load::<f64, C>(&qt[a * kp..]), &mut acc);
    }
    store(&acc, out);
}
