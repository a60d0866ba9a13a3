//! The top-k eigenvectors of a symmetric tridiagonal matrix T from its eigenvalues, for
//! `tridiagonal`: inverse iteration on the LU factors (partial pivoting) of T - lambda I, 8 shifts
//! side by side, with LAPACK dstein's rules: start vectors scaled so that a large solution proves
//! growth along the eigenvector, accepted after that test passes twice; eigenvalues closer than
//! 1e-3 ||T||_1 form a cluster whose vectors are orthogonalized against each other (after the
//! solves); coincident shifts pulled apart by 10 u ||T||_1. Any failure (no growth within
//! `MAX_INVERSE_STEPS` solves, a residual above `RESIDUAL_SLACK n u ||T||_1`, non-finite values)
//! returns `None`, and the caller runs a full `eigh`.

use super::tridiagonal::off_diagonal_radius;

/// Accepted residual ||T v - lambda v||_inf of a unit vector, in units of n u ||T||_1.
const RESIDUAL_SLACK: f64 = 10.0;
const MAX_INVERSE_STEPS: usize = 6;
/// Cluster threshold of inverse iteration, relative to ||T||_1 (LAPACK dstein's ORTOL).
const CLUSTER_GAP: f64 = 1e-3;
/// Shifts per inverse-iteration pass: independent LU factorizations and solves side by side hide
/// the latency of each row's division and multiply-subtract (one shift at a time ran at it).
const SHIFTS: usize = 8;

/// `SHIFTS` unit-norm-free solutions of inverse iteration: `work` (n rows of `SHIFTS` lanes) holds
/// the start vectors in and the iterates out; returns, per lane, whether the growth test passed
/// twice (LAPACK dstein's rule: after scaling b to ||b||_1 = n ||T||_1 max(u, |u_nn|), a solution of
/// inf-norm >= sqrt(0.1 / n) is a growth only the eigenvector's direction gives).
#[inline(always)]
fn inverse_iteration_lanes(
    d: &[f64],
    e: &[f64],
    shift: &[f64; SHIFTS],
    norm1: f64,
    work: &mut [[f64; SHIFTS]],
) -> [bool; SHIFTS] {
    let n = d.len();
    let u = f64::EPSILON / 2.0;
    let tiny = u * norm1;
    // LU with partial pivoting of T - shift I, branch-free per lane: row i of U is
    // (diag[i], upper[i], upper2[i]); L's multiplier lower[i]; swapped[i] when rows i, i+1 swapped.
    let mut diag = vec![[0.0; SHIFTS]; n];
    let mut upper = vec![[0.0; SHIFTS]; n];
    let mut upper2 = vec![[0.0; SHIFTS]; n];
    let mut lower = vec![[0.0; SHIFTS]; n];
    let mut swapped = vec![[false; SHIFTS]; n];
    let mut pivot: [f64; SHIFTS] = std::array::from_fn(|l| d[0] - shift[l]);
    let mut right = [if n > 1 { e[0] } else { 0.0 }; SHIFTS];
    for i in 0..n - 1 {
        let below = e[i];
        let next_e = if i + 2 < n { e[i + 1] } else { 0.0 };
        for l in 0..SHIFTS {
            let a = pivot[l];
            let next_d = d[i + 1] - shift[l];
            let swap = a.abs() < below.abs();
            let (num, den) = if swap { (a, below) } else { (below, a) };
            let factor = if den != 0.0 { num / den } else { 0.0 };
            lower[i][l] = factor;
            swapped[i][l] = swap;
            diag[i][l] = if swap { below } else { a };
            upper[i][l] = if swap { next_d } else { right[l] };
            upper2[i][l] = if swap { next_e } else { 0.0 };
            pivot[l] = if swap {
                right[l] - factor * next_d
            } else {
                next_d - factor * right[l]
            };
            right[l] = if swap { -factor * next_e } else { next_e };
        }
    }
    diag[n - 1] = pivot;
    // Pivots below tiny are raised to it (keeping their sign): the solve then amplifies the
    // eigenvector's direction instead of dividing by zero (LAPACK dlagtf/dlagts's perturbation).
    let mut inverse = vec![[0.0; SHIFTS]; n];
    for (row, inv) in diag.iter_mut().zip(&mut inverse) {
        for l in 0..SHIFTS {
            if row[l].abs() < tiny {
                row[l] = if row[l] < 0.0 { -tiny } else { tiny };
            }
            inv[l] = 1.0 / row[l];
        }
    }
    let growth_needed = (0.1 / n as f64).sqrt();
    let mut passed = [0usize; SHIFTS];
    for _ in 0..MAX_INVERSE_STEPS {
        let mut l1 = [0.0; SHIFTS];
        for row in work.iter() {
            for l in 0..SHIFTS {
                l1[l] += row[l].abs();
            }
        }
        let scale: [f64; SHIFTS] =
            std::array::from_fn(|l| n as f64 * norm1 * u.max(diag[n - 1][l].abs()) / l1[l]);
        for row in work.iter_mut() {
            for l in 0..SHIFTS {
                row[l] *= scale[l];
            }
        }
        for i in 0..n - 1 {
            for l in 0..SHIFTS {
                let (top, bottom) = (work[i][l], work[i + 1][l]);
                let (first, second) = if swapped[i][l] {
                    (bottom, top)
                } else {
                    (top, bottom)
                };
                work[i][l] = first;
                work[i + 1][l] = second - lower[i][l] * first;
            }
        }
        for l in 0..SHIFTS {
            work[n - 1][l] *= inverse[n - 1][l];
        }
        if n >= 2 {
            for l in 0..SHIFTS {
                work[n - 2][l] =
                    (work[n - 2][l] - upper[n - 2][l] * work[n - 1][l]) * inverse[n - 2][l];
            }
        }
        for i in (0..n.saturating_sub(2)).rev() {
            for l in 0..SHIFTS {
                let sum = work[i][l] - upper[i][l] * work[i + 1][l] - upper2[i][l] * work[i + 2][l];
                work[i][l] = sum * inverse[i][l];
            }
        }
        let mut largest = [0.0f64; SHIFTS];
        for row in work.iter() {
            for l in 0..SHIFTS {
                largest[l] = largest[l].max(row[l].abs());
            }
        }
        for l in 0..SHIFTS {
            passed[l] += usize::from(largest[l] >= growth_needed);
        }
        if passed.iter().all(|&p| p >= 2) {
            break;
        }
    }
    passed.map(|p| p >= 2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn inverse_iteration_avx2(
    d: &[f64],
    e: &[f64],
    shift: &[f64; SHIFTS],
    norm1: f64,
    work: &mut [[f64; SHIFTS]],
) -> [bool; SHIFTS] {
    inverse_iteration_lanes(d, e, shift, norm1, work)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
fn inverse_iteration_avx512(
    d: &[f64],
    e: &[f64],
    shift: &[f64; SHIFTS],
    norm1: f64,
    work: &mut [[f64; SHIFTS]],
) -> [bool; SHIFTS] {
    inverse_iteration_lanes(d, e, shift, norm1, work)
}

/// The widest build of `inverse_iteration_lanes` this CPU runs.
fn inverse_iteration(
    d: &[f64],
    e: &[f64],
    shift: &[f64; SHIFTS],
    norm1: f64,
    work: &mut [[f64; SHIFTS]],
) -> [bool; SHIFTS] {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            if has!("avx512f") && has!("avx512vl") {
                // SAFETY: the CPU has these features (checked just above)
                return unsafe { inverse_iteration_avx512(d, e, shift, norm1, work) };
            }
            // SAFETY: as above
            return unsafe { inverse_iteration_avx2(d, e, shift, norm1, work) };
        }
    }
    inverse_iteration_lanes(d, e, shift, norm1, work)
}

pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let mut pairs = a.chunks_exact(4).zip(b.chunks_exact(4));
    for (x, y) in &mut pairs {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f64 = a
        .chunks_exact(4)
        .remainder()
        .iter()
        .zip(b.chunks_exact(4).remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// Removes from b its components along the (orthonormal) columns of `basis`.
fn orthogonalize(b: &mut [f64], basis: &[f64]) {
    for v in basis.chunks_exact(b.len()) {
        let c = dot(v, b);
        for (x, y) in b.iter_mut().zip(v) {
            *x -= c * y;
        }
    }
}

/// Unit eigenvectors (column-major, n x k) of T for the ascending eigenvalues `top`, or None.
///
/// Each shift's inverse iteration runs alone (`SHIFTS` at a time); then, in order, each vector is
/// orthogonalized against the earlier ones of its cluster (eigenvalues closer than 1e-3 ||T||_1,
/// LAPACK dstein's rule; a second time when the first removed most of it), normalized, and its
/// residual checked. Coincident eigenvalues get shifts 10 u ||T||_1 apart, so that their solutions
/// differ; within a cluster the final orthogonalization spans the invariant subspace.
pub(super) fn top_eigenvectors(d: &[f64], e: &[f64], top: &[f64]) -> Option<Vec<f64>> {
    let n = d.len();
    let k = top.len();
    let u = f64::EPSILON / 2.0;
    let mut norm1 = 0.0f64; // ||T||_1
    for i in 0..n {
        norm1 = norm1.max(d[i].abs() + off_diagonal_radius(e, i));
    }
    let separation = 10.0 * u * norm1;
    let mut shifts = top.to_vec();
    let mut cluster_of = vec![0usize; k];
    for j in 1..k {
        let same = top[j] - top[j - 1] <= CLUSTER_GAP * norm1;
        cluster_of[j] = if same { cluster_of[j - 1] } else { j };
        if same && shifts[j] - shifts[j - 1] < separation {
            shifts[j] = shifts[j - 1] + separation;
        }
    }
    // A fixed pseudo-random start (a 64-bit LCG): reproducible, and with a component along every
    // eigenvector in practice; a rare unlucky start shows as a failed growth test, hence None.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut vectors = vec![0.0; n * k];
    let mut work = vec![[0.0; SHIFTS]; n];
    for first in (0..k).step_by(SHIFTS) {
        let lanes = SHIFTS.min(k - first);
        // Unused lanes repeat the last shift: their results are dropped.
        let shift: [f64; SHIFTS] = std::array::from_fn(|l| shifts[first + l.min(lanes - 1)]);
        for row in work.iter_mut() {
            for x in row.iter_mut() {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *x = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            }
        }
        let passed = inverse_iteration(d, e, &shift, norm1, &mut work);
        for l in 0..lanes {
            if !passed[l] {
                return None;
            }
            let column = &mut vectors[(first + l) * n..(first + l + 1) * n];
            for (x, row) in column.iter_mut().zip(&work) {
                *x = row[l];
            }
        }
    }
    for j in 0..k {
        let (done, rest) = vectors.split_at_mut(j * n);
        let cluster = &done[cluster_of[j] * n..];
        let b = &mut rest[..n];
        let before = dot(b, b).sqrt();
        if !(before > 0.0 && before.is_finite()) {
            return None;
        }
        b.iter_mut().for_each(|v| *v /= before);
        orthogonalize(b, cluster);
        let mut length = dot(b, b).sqrt();
        // Most of b removed (a tight cluster): once more, which is enough (Kahan's "twice is
        // enough"); otherwise b is already orthogonal to rounding.
        if length < 0.5 {
            orthogonalize(b, cluster);
            length = dot(b, b).sqrt();
        }
        if !(length > 0.0 && length.is_finite()) {
            return None;
        }
        b.iter_mut().for_each(|v| *v /= length);
        if residual(d, e, top[j], b) > RESIDUAL_SLACK * n as f64 * u * norm1 {
            return None;
        }
    }
    Some(vectors)
}

/// ||T v - lambda v||_inf.
pub(super) fn residual(d: &[f64], e: &[f64], value: f64, v: &[f64]) -> f64 {
    let n = v.len();
    (0..n)
        .map(|i| {
            let mut r = (d[i] - value) * v[i];
            if i > 0 {
                r += e[i - 1] * v[i - 1];
            }
            if i + 1 < n {
                r += e[i] * v[i + 1];
            }
            r.abs()
        })
        .fold(0.0, f64::max)
}
