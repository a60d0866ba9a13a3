//! The hot loops of a CG row solve with the padded rank fixed at compile time: `C` chunks of 4
//! lanes (`kp = 4 C`, rank <= 4 * [`MAX_CHUNKS`]).
//!
//! The run-time-length loops of `rows.rs` keep their accumulators in memory: every observed entry
//! loads and stores them, which puts a store-to-load round trip (~5 cycles) on top of each
//! multiply-add on the critical path. Here the accumulators are `[[f64; 4]; C]` arrays, unrolled by
//! the compiler and held in registers across the whole row. Same arithmetic as `rows.rs`, summed in
//! another order (the results agree to rounding).

use super::rows::{fmadd, prefetch_row, PREFETCH_AHEAD};
use crate::scalar::Scalar;

/// Largest chunk count with a fixed-size kernel (rank <= 32); larger ranks use `rows.rs`.
pub(super) const MAX_CHUNKS: usize = 8;

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
    let (mut s0, mut s1) = ([0.0; 4], [0.0; 4]);
    for c in 0..C {
        let s = if c % 2 == 0 { &mut s0 } else { &mut s1 };
        for l in 0..4 {
            s[l] = fmadd::<F>(a[c][l], b[c][l], s[l]);
        }
    }
    ((s0[0] + s1[0]) + (s0[2] + s1[2])) + ((s0[1] + s1[1]) + (s0[3] + s1[3]))
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
pub(super) fn gather_residual<const F: bool, const C: usize>(
    factor: &[f64],
    cols: &[i64],
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
                prefetch_row(factor, ahead as usize, kp);
            }
        }
        let j = j as usize;
        let f = load::<f64, C>(&factor[j * kp..(j + 1) * kp]);
        store(&f, &mut rows[t * kp..(t + 1) * kp]);
        let e = b - dot::<F, C>(&f, &xv);
        axpy::<F, C>(e, &f, &mut acc_r);
        axpy::<F, C>(b, &f, &mut acc_b);
    }
    store(&acc_r, r);
    store(&acc_b, rhs);
}

/// `out = A^T (A v)` over the gathered rows `A` (stride `4 C`).
#[inline(always)]
pub(super) fn normal_pass<const F: bool, const C: usize>(rows: &[f64], v: &[f64], out: &mut [f64]) {
    let vv = load::<f64, C>(v);
    let mut acc = [[0.0; 4]; C];
    for f in rows.chunks_exact(4 * C) {
        let f = load::<f64, C>(f);
        axpy::<F, C>(dot::<F, C>(&f, &vv), &f, &mut acc);
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
