//! All eigenvalues and the top-k eigenvectors of a symmetric tridiagonal matrix T (diagonal d,
//! off-diagonal e): the tridiagonal stage of `lorainne.randomized._eigh_top`, which replaces a full
//! `eigh` of the small Gram matrices of the randomized SVD when only their top eigenvectors are used.
//!
//! Eigenvalues: Sturm counts in the division-free form `p_i = (d_i - x) p_{i-1} - e_{i-1}^2 p_{i-2}`
//! (a pivot guard and a rescaling every `RESCALE_EVERY` rows), in `LANES` independent lanes at once,
//! with the derivative `p'` carried along for a Newton step inside each bracket. The ratio form of
//! LAPACK's bisection has a division per row on its dependent chain; this one has only multiplies,
//! so it runs at the throughput of the vector units. Each eigenvalue starts in a cell of one shared
//! grid of counts, takes Newton steps while its bracket isolates it (bisection otherwise) and stops
//! once the bracket is narrower than `2 n u ||T||`.
//!
//! Eigenvectors: inverse iteration on the LU factors (partial pivoting) of T - lambda I with LAPACK
//! dstein's rules: eigenvalues closer than 1e-3 ||T|| form a cluster whose vectors are
//! orthogonalized against each other, coincident shifts are pulled apart by 10 u ||T||, a vector is
//! accepted after its growth passes sqrt(0.1 / n) twice, and any failure (no growth within
//! `MAX_INVERSE_STEPS`, a residual above `RESIDUAL_SLACK n u ||T||`, non-finite values) returns
//! `None`: the caller then runs a full `eigh`.

use crate::error::{Error, Result};

/// Points per Sturm pass: four 8-wide vectors in flight hide the latency of each row's dependent
/// multiply-subtract (one vector ran at that latency).
const LANES: usize = 32;
const RESCALE_EVERY: usize = 8;
/// Smallest |p_i / p_{i-1}| kept (T scaled to max |entry| in [0.5, 1]): eight guarded rows in a row
/// shrink p by at most 2^-800, above the underflow threshold, and move an eigenvalue by 2^-100 ||T||.
const PIVMIN: f64 = 7.888609052210118e-31; // 2^-100
const MAX_EVALUATIONS: usize = 200;
/// Newton steps allowed to one eigenvalue before its search bisects only.
const NEWTON_STEPS: usize = 40;
/// Cluster threshold of inverse iteration, relative to ||T||_1 (LAPACK dstein's ORTOL).
const CLUSTER_GAP: f64 = 1e-3;
const MAX_INVERSE_STEPS: usize = 6;
/// Accepted residual ||T v - lambda v||_inf of a unit vector, in units of n u ||T||_1.
const RESIDUAL_SLACK: f64 = 10.0;

/// All n eigenvalues ascending and the eigenvectors of the k largest (column-major n x k, in
/// ascending order of their eigenvalues), or `Ok(None)` when the checks above fail.
pub fn tridiagonal_eigh_top(d: &[f64], e: &[f64], k: usize) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
    let n = d.len();
    if n == 0 {
        return Err(Error::invalid("d", "must not be empty"));
    }
    if e.len() + 1 != n {
        return Err(Error::invalid(
            "e",
            format!("must have {} entries (len(d) - 1), got {}", n - 1, e.len()),
        ));
    }
    if k == 0 || k > n {
        return Err(Error::invalid("k", format!("must be in [1, {n}], got {k}")));
    }
    if !d.iter().chain(e).all(|v| v.is_finite()) {
        return Ok(None);
    }
    let largest = d.iter().chain(e).fold(0.0f64, |m, v| m.max(v.abs()));
    if largest == 0.0 {
        // T = 0: every eigenvalue is 0 and the unit vectors are eigenvectors.
        let mut vectors = vec![0.0; n * k];
        for c in 0..k {
            vectors[c * n + n - k + c] = 1.0;
        }
        return Ok(Some((vec![0.0; n], vectors)));
    }
    // An exact power of two brings max |entry| into [0.5, 1]: no rounding, and the Sturm
    // recurrence's bounds below hold whatever the input's scale.
    let scale = 2f64.powi(-(largest.log2().floor() as i32) - 1);
    let ds: Vec<f64> = d.iter().map(|v| v * scale).collect();
    let es: Vec<f64> = e.iter().map(|v| v * scale).collect();
    let Some(values) = eigenvalues(&ds, &es)? else {
        return Ok(None);
    };
    let Some(vectors) = top_eigenvectors(&ds, &es, &values[n - k..]) else {
        return Ok(None);
    };
    Ok(Some((values.iter().map(|v| v / scale).collect(), vectors)))
}

/// (count of eigenvalues below x, p(x) / p'(x)) in each lane: one pass over T for `LANES` points.
#[inline(always)]
fn sturm_lanes(d: &[f64], e2: &[f64], x: &[f64; LANES]) -> ([f64; LANES], [f64; LANES]) {
    let mut p_prev = [1.0; LANES];
    let mut dp_prev = [0.0; LANES];
    let mut p = [0.0; LANES];
    let mut dp = [-1.0; LANES];
    let mut count = [0.0; LANES];
    for l in 0..LANES {
        let t = d[0] - x[l];
        p[l] = if t.abs() < PIVMIN { -PIVMIN } else { t };
        count[l] = if p[l] < 0.0 { 1.0 } else { 0.0 };
    }
    let mut row = 1;
    while row < d.len() {
        let end = (row + RESCALE_EVERY).min(d.len());
        for i in row..end {
            let (di, ei) = (d[i], e2[i - 1]);
            for l in 0..LANES {
                let t = di - x[l];
                let raw = t * p[l] - ei * p_prev[l];
                // q_i = p_i / p_{i-1} kept at least PIVMIN in magnitude, negative when guarded (as
                // LAPACK's dstebz does with its ratio form): p never becomes 0, the count stays exact.
                let next = if raw.abs() < PIVMIN * p[l].abs() {
                    -PIVMIN * p[l]
                } else {
                    raw
                };
                let dnext = t * dp[l] - ei * dp_prev[l] - p[l];
                count[l] += if (next < 0.0) != (p[l] < 0.0) { 1.0 } else { 0.0 };
                p_prev[l] = p[l];
                p[l] = next;
                dp_prev[l] = dp[l];
                dp[l] = dnext;
            }
        }
        // |p_i| grows at most 4x a row (|d_i - x| <= 3, e^2 <= 1) and shrinks at most PIVMIN-fold:
        // bringing |p_i| + |p_{i-1}| back to 1 every few rows keeps both in range.
        for l in 0..LANES {
            let r = 1.0 / (p[l].abs() + p_prev[l].abs());
            p[l] *= r;
            p_prev[l] *= r;
            dp[l] *= r;
            dp_prev[l] *= r;
        }
        row = end;
    }
    let mut ratio = [0.0; LANES];
    for l in 0..LANES {
        ratio[l] = p[l] / dp[l];
    }
    (count, ratio)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sturm_lanes_avx2(d: &[f64], e2: &[f64], x: &[f64; LANES]) -> ([f64; LANES], [f64; LANES]) {
    sturm_lanes(d, e2, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
fn sturm_lanes_avx512(d: &[f64], e2: &[f64], x: &[f64; LANES]) -> ([f64; LANES], [f64; LANES]) {
    sturm_lanes(d, e2, x)
}

type SturmFn = fn(&[f64], &[f64], &[f64; LANES]) -> ([f64; LANES], [f64; LANES]);

/// The widest build of `sturm_lanes` this CPU runs.
fn sturm_kernel() -> SturmFn {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            if has!("avx512f") && has!("avx512vl") {
                // SAFETY: the CPU has these features (checked just above)
                return |d, e2, x| unsafe { sturm_lanes_avx512(d, e2, x) };
            }
            // SAFETY: as above
            return |d, e2, x| unsafe { sturm_lanes_avx2(d, e2, x) };
        }
    }
    sturm_lanes
}

/// An interval [lo, hi) with `count_lo` eigenvalues below lo and `count_hi` below hi; `next` is
/// where its search evaluates next (a Newton point from an end's evaluation, or its midpoint).
#[derive(Clone, Copy)]
struct Interval {
    lo: f64,
    hi: f64,
    count_lo: usize,
    count_hi: usize,
    next: f64,
    /// |last Newton step| (infinite after a bisection).
    last_step: f64,
    evaluations: usize,
}

impl Interval {
    /// Starts at the first of the Newton points `newton` inside (lo, hi), else at the midpoint.
    fn new(lo: f64, hi: f64, count_lo: usize, count_hi: usize, newton: [f64; 2]) -> Interval {
        let inside = |x: f64| lo < x && x < hi; // false for NaN (an overflowed derivative)
        let next = newton.into_iter().find(|&x| inside(x)).unwrap_or(0.5 * (lo + hi));
        Interval { lo, hi, count_lo, count_hi, next, last_step: f64::INFINITY, evaluations: 0 }
    }
}

/// Files an interval: dropped when it holds no eigenvalue, its eigenvalues set when narrower than
/// tol, to `isolated` when it holds one, to `open` (to bisect) otherwise.
fn file(part: Interval, tol: f64, values: &mut [f64], open: &mut Vec<Interval>, isolated: &mut Vec<Interval>) {
    if part.count_hi <= part.count_lo {
    } else if part.hi - part.lo <= tol {
        values[part.count_lo..part.count_hi].fill(0.5 * (part.lo + part.hi));
    } else if part.count_hi - part.count_lo == 1 {
        isolated.push(part);
    } else {
        open.push(part);
    }
}

/// All eigenvalues of T (scaled to max |entry| in [0.5, 1]) ascending, each within `tol / 2` of a
/// bracket of width `tol = (2 n + 4) u ||T||` (plus the counts' rounding, a few u ||T||).
///
/// Shared bisection first: one grid of `LANES` points, then the midpoints of up to `LANES`
/// intervals per pass, until each interval holds one eigenvalue (or is narrower than tol); then
/// each isolated eigenvalue alone, by Newton steps inside its bracket (bisection when a step
/// leaves it), `LANES` eigenvalues per pass, a finished lane refilled at once.
fn eigenvalues(d: &[f64], e: &[f64]) -> Result<Option<Vec<f64>>> {
    let n = d.len();
    let e2: Vec<f64> = e.iter().map(|v| v * v).collect();
    let sturm = sturm_kernel();
    // Gershgorin bounds, widened past the counts' rounding so that count(lo) = 0, count(hi) = n.
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for i in 0..n {
        let radius = if i > 0 { e[i - 1].abs() } else { 0.0 } + if i + 1 < n { e[i].abs() } else { 0.0 };
        lo = lo.min(d[i] - radius);
        hi = hi.max(d[i] + radius);
    }
    let norm = lo.abs().max(hi.abs());
    let u = f64::EPSILON / 2.0;
    let tol = (2.0 * n as f64 + 4.0) * u * norm;
    lo -= 4.0 * tol + 2.0 * PIVMIN;
    hi += 4.0 * tol + 2.0 * PIVMIN;
    let mut values = vec![f64::NAN; n];
    let mut open = Vec::new();
    let mut isolated = Vec::new();
    let mut x: [f64; LANES] = std::array::from_fn(|l| lo + (hi - lo) * (l + 1) as f64 / (LANES + 1) as f64);
    let (count, ratio) = sturm(d, &e2, &x);
    let mut below = (lo, 0usize, f64::NAN);
    for l in 0..=LANES {
        // Counts are monotone in exact arithmetic; rounding may break that by one near an eigenvalue.
        let above = if l < LANES {
            (x[l], (count[l] as usize).clamp(below.1, n), x[l] - ratio[l])
        } else {
            (hi, n, f64::NAN)
        };
        let part = Interval::new(below.0, above.0, below.1, above.1, [below.2, above.2]);
        file(part, tol, &mut values, &mut open, &mut isolated);
        below = above;
    }
    while !open.is_empty() {
        // Up to LANES intervals, each cut at `points` inner points: with few intervals left (a
        // tight cluster), multisection uses every lane instead of halving one interval per pass.
        let batch = open.split_off(open.len().saturating_sub(LANES));
        let points = LANES / batch.len();
        for (b, part) in batch.iter().enumerate() {
            for p in 0..points {
                let t = (p + 1) as f64 / (points + 1) as f64;
                x[b * points + p] = part.lo + (part.hi - part.lo) * t;
            }
        }
        let (count, ratio) = sturm(d, &e2, &x);
        for (b, part) in batch.iter().enumerate() {
            let mut below = (part.lo, part.count_lo, f64::NAN);
            for p in 0..=points {
                let l = b * points + p;
                let above = if p < points {
                    (x[l], (count[l] as usize).clamp(below.1, part.count_hi), x[l] - ratio[l])
                } else {
                    (part.hi, part.count_hi, f64::NAN)
                };
                let piece = Interval::new(below.0, above.0, below.1, above.1, [below.2, above.2]);
                file(piece, tol, &mut values, &mut open, &mut isolated);
                below = above;
            }
        }
    }
    let mut pending = isolated.into_iter();
    let mut lanes: [Option<Interval>; LANES] = [None; LANES];
    loop {
        for lane in lanes.iter_mut().filter(|lane| lane.is_none()) {
            *lane = pending.next();
        }
        if lanes.iter().all(Option::is_none) {
            break;
        }
        for (l, lane) in lanes.iter().enumerate() {
            x[l] = lane.map_or(0.5 * (lo + hi), |s| s.next);
        }
        let (count, ratio) = sturm(d, &e2, &x);
        for l in 0..LANES {
            let Some(mut s) = lanes[l] else { continue };
            let index = s.count_lo; // the one eigenvalue of [lo, hi) while it stays isolated
            if count[l] as usize > index {
                s.hi = x[l];
            } else {
                s.lo = x[l];
            }
            s.evaluations += 1;
            if s.hi - s.lo <= tol {
                values[index] = 0.5 * (s.lo + s.hi);
                lanes[l] = None;
                continue;
            }
            if s.evaluations > MAX_EVALUATIONS {
                return Ok(None);
            }
            // Newton, while it converges faster than bisection: a step more than half the last
            // one (a far start, where the other eigenvalues slow Newton to a crawl) bisects once.
            let step = -ratio[l];
            let fast = step.abs() <= 0.5 * s.last_step; // false for NaN (an overflowed derivative)
            // A step shorter than tol/2 has converged (it may round to no move at all): step tol/2
            // past it, so that the next count closes the bracket from the other side.
            let next = if step.abs() < 0.5 * tol {
                x[l] + (0.5 * tol).copysign(step)
            } else {
                x[l] + step
            };
            let inside = s.lo < next && next < s.hi;
            if fast && inside && s.evaluations < NEWTON_STEPS {
                (s.next, s.last_step) = (next, step.abs());
            } else {
                (s.next, s.last_step) = (0.5 * (s.lo + s.hi), f64::INFINITY);
            }
            lanes[l] = Some(s);
        }
    }
    if !values.iter().all(|v| v.is_finite()) {
        return Ok(None);
    }
    Ok(Some(values))
}

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
            pivot[l] = if swap { right[l] - factor * next_d } else { next_d - factor * right[l] };
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
                let (first, second) = if swapped[i][l] { (bottom, top) } else { (top, bottom) };
                work[i][l] = first;
                work[i + 1][l] = second - lower[i][l] * first;
            }
        }
        for l in 0..SHIFTS {
            work[n - 1][l] *= inverse[n - 1][l];
        }
        if n >= 2 {
            for l in 0..SHIFTS {
                work[n - 2][l] = (work[n - 2][l] - upper[n - 2][l] * work[n - 1][l]) * inverse[n - 2][l];
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
fn inverse_iteration(d: &[f64], e: &[f64], shift: &[f64; SHIFTS], norm1: f64, work: &mut [[f64; SHIFTS]]) -> [bool; SHIFTS] {
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

fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let mut pairs = a.chunks_exact(4).zip(b.chunks_exact(4));
    for (x, y) in &mut pairs {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f64 = a.chunks_exact(4).remainder().iter().zip(b.chunks_exact(4).remainder()).map(|(x, y)| x * y).sum();
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
fn top_eigenvectors(d: &[f64], e: &[f64], top: &[f64]) -> Option<Vec<f64>> {
    let n = d.len();
    let k = top.len();
    let u = f64::EPSILON / 2.0;
    let mut norm1 = 0.0f64; // ||T||_1
    for i in 0..n {
        let side = if i > 0 { e[i - 1].abs() } else { 0.0 } + if i + 1 < n { e[i].abs() } else { 0.0 };
        norm1 = norm1.max(d[i].abs() + side);
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
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
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
fn residual(d: &[f64], e: &[f64], value: f64, v: &[f64]) -> f64 {
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

#[cfg(test)]
#[path = "tridiagonal_tests.rs"]
mod tests;
