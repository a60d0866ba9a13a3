//! All eigenvalues and the top-k eigenvectors of a symmetric tridiagonal matrix T (diagonal d,
//! off-diagonal e): the tridiagonal stage of `lorainne.randomized._eigh_top`, which replaces a full
//! `eigh` of the small Gram matrices of the randomized SVD when only their top eigenvectors are used.
//!
//! Eigenvalues: Sturm counts in the division-free form `p_i = (d_i - x) p_{i-1} - e_{i-1}^2 p_{i-2}`
//! (a pivot guard and a rescaling every `RESCALE_EVERY` rows), at `LANES` points per pass over T,
//! with the derivative `p'` carried along for a Newton step. LAPACK's bisection (ratio form) has a
//! division per row on its dependent chain; this one has only multiplies, and independent lanes.
//! Shared multisection first isolates each eigenvalue in a bracket; then each takes Newton steps
//! inside its bracket while they converge faster than bisection would, and stops once the bracket
//! is narrower than `(2 n + 4) u ||T||`. The eigenvectors are `inverse_iteration`'s.

use super::inverse_iteration::top_eigenvectors;
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

/// All n eigenvalues ascending and the eigenvectors of the k largest (column-major n x k, in
/// ascending order of their eigenvalues), or `Ok(None)` when the checks above fail.
pub fn tridiagonal_eigh_top(
    d: &[f64],
    e: &[f64],
    k: usize,
) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
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
    // A subnormal largest entry has no representable scale (2^1024 and beyond): the caller's eigh.
    if !scale.is_finite() || !ds.iter().chain(&es).all(|v| v.is_finite()) {
        return Ok(None);
    }
    let Some(values) = eigenvalues(&ds, &es)? else {
        return Ok(None);
    };
    let Some(vectors) = top_eigenvectors(&ds, &es, &values[n - k..]) else {
        return Ok(None);
    };
    Ok(Some((values.iter().map(|v| v / scale).collect(), vectors)))
}

/// |e_{i-1}| + |e_i|: row i's off-diagonal mass (Gershgorin radius; with |d_i|, row i's 1-norm).
pub(super) fn off_diagonal_radius(e: &[f64], i: usize) -> f64 {
    let left = if i > 0 { e[i - 1].abs() } else { 0.0 };
    let right = e.get(i).map_or(0.0, |v| v.abs());
    left + right
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
                count[l] += if (next < 0.0) != (p[l] < 0.0) {
                    1.0
                } else {
                    0.0
                };
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
        let next = newton
            .into_iter()
            .find(|&x| inside(x))
            .unwrap_or(0.5 * (lo + hi));
        Interval {
            lo,
            hi,
            count_lo,
            count_hi,
            next,
            last_step: f64::INFINITY,
            evaluations: 0,
        }
    }
}

/// Files an interval: dropped when it holds no eigenvalue, its eigenvalues set when narrower than
/// tol, to `isolated` when it holds one, to `open` (to bisect) otherwise.
fn file(
    part: Interval,
    tol: f64,
    values: &mut [f64],
    open: &mut Vec<Interval>,
    isolated: &mut Vec<Interval>,
) {
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
        let radius = off_diagonal_radius(e, i);
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
    let mut x: [f64; LANES] =
        std::array::from_fn(|l| lo + (hi - lo) * (l + 1) as f64 / (LANES + 1) as f64);
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
    // Each pass at least halves the intervals it cuts, and an interval narrower than tol
    // (>= 2 n u ||T||) is closed: ~52 cuts per eigenvalue at most. Beyond this, give up (None).
    let mut passes_left = 64 * (n + 1);
    while !open.is_empty() {
        if passes_left == 0 {
            return Ok(None);
        }
        passes_left -= 1;
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
                    (
                        x[l],
                        (count[l] as usize).clamp(below.1, part.count_hi),
                        x[l] - ratio[l],
                    )
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

#[cfg(test)]
#[path = "tridiagonal_tests.rs"]
mod tests;
