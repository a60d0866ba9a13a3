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

use crate::error::{Error, Result};
use rayon::prelude::*;

mod kernels;
mod pass;
use kernels::{axpy_f32, axpy_rows, build_row, dot_f32, dots_f32, objective_row, ROWS};

/// Largest matrix the stored method builds (4 GB of f32 entries).
pub const STORED_MAX_BYTES: usize = 4_000_000_000;
/// Relative rounding of one stored entry (f32: 2^-24 = 5.9605e-8) plus the f64 exponential's
/// (< 3e-13, `exp_entry`) and the f64 accumulation's share.
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
        Self::build_in(None, x, y, d, b, g, eps, parallel)
    }

    /// `build` into this kernel's memory when the sizes match (no new pages to fault in and zero).
    #[allow(clippy::too_many_arguments)]
    pub fn rebuild(
        self,
        x: &[f64],
        y: &[f64],
        d: usize,
        b: &[f64],
        g: &[f64],
        eps: f64,
        parallel: bool,
    ) -> Result<(StoredKernel, Vec<f64>)> {
        Self::build_in(Some(self.entries), x, y, d, b, g, eps, parallel)
    }

    #[allow(clippy::too_many_arguments)]
    fn build_in(
        memory: Option<Vec<f32>>,
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
        // every entry is written below: a reused buffer needs no zeroing
        let mut entries = match memory {
            Some(v) if v.len() == n * m => v,
            _ => {
                drop(memory);
                vec![0.0f32; n * m]
            }
        };
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
        // groups of `ROWS` rows share the loads of v
        let job = |(out, group): (&mut [f64], &[f32])| {
            if out.len() == ROWS {
                let rows: [&[f32]; ROWS] = std::array::from_fn(|r| &group[r * m..(r + 1) * m]);
                out.copy_from_slice(&dots_f32(&rows, &v));
            } else {
                for (o, row) in out.iter_mut().zip(group.chunks(m)) {
                    *o = dot_f32(row, &v);
                }
            }
        };
        if parallel {
            sums.par_chunks_mut(ROWS)
                .zip(self.entries.par_chunks(ROWS * m))
                .for_each(job);
        } else {
            sums.chunks_mut(ROWS)
                .zip(self.entries.chunks(ROWS * m))
                .for_each(job);
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
            let row = |i: usize| &self.entries[i * m..(i + 1) * m];
            let mut i = lo;
            while i + ROWS <= hi {
                let rows: [&[f32]; ROWS] = std::array::from_fn(|r| row(i + r));
                let alpha: [f64; ROWS] = std::array::from_fn(|r| u[i + r]);
                axpy_rows(&alpha, &rows, &mut acc);
                i += ROWS;
            }
            for i in i..hi {
                if u[i] != 0.0 {
                    axpy_f32(u[i], row(i), &mut acc);
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

#[cfg(test)]
mod tests {
    use super::super::super::tree::KdTree;
    use super::kernels::exp_entry;
    use super::*;
    use crate::ot::test_points::uniform;

    fn cloud(n: usize, d: usize, seed: u64) -> Vec<f64> {
        uniform(n * d, seed)
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
    fn entry_exponential_is_within_its_share_of_the_rounding() {
        let mut worst = 0.0f64;
        for k in 0..200_001 {
            let x = -700.0 + 720.0 * k as f64 / 200_000.0;
            let (got, want) = (exp_entry::<false>(x), x.exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 3e-13, "{worst}");
        assert!(STORED_ROUNDING - 2f64.powi(-24) > 10.0 * worst);
        assert_eq!(exp_entry::<false>(-800.0), 0.0);
    }

    #[test]
    fn fused_pass_equals_the_two_products() {
        let (n, m, d, eps) = (45, 38, 3, 0.03);
        let (x, y) = (cloud(n, d, 21), cloud(m, d, 22));
        let a: Vec<f64> = (0..n).map(|i| 1.0 + (i % 4) as f64).collect();
        let b: Vec<f64> = (0..m).map(|j| 0.5 + (j % 3) as f64).collect();
        let f_hat: Vec<f64> = cloud(n, 1, 23).iter().map(|v| 0.05 * v).collect();
        // rows y, columns x, absorbed at f_hat
        let (kern, _) = StoredKernel::build(&y, &x, d, &a, &f_hat, eps, false).unwrap();
        let f: Vec<f64> = f_hat
            .iter()
            .zip(cloud(n, 1, 24))
            .map(|(u, r)| u + 0.1 * r)
            .collect();
        let old: Vec<f64> = cloud(m, 1, 25).iter().map(|v| 0.02 * v).collect();
        for (omega, damping, parallel) in [(1.0, 1.0, false), (1.5, 0.8, true)] {
            let scale = -eps * damping;
            let (rows, rb, _) = kern.rows(&a, &f, false);
            let next: Vec<f64> = old
                .iter()
                .zip(&rows)
                .map(|(&o, &l)| o + omega * (scale * l - o))
                .collect();
            let (cols, cb, _) = kern.cols(&b, &next, false);
            let shift = kern.top_exponent(&b, &next) + 3.0;
            let pass = kern.fused(&a, &f, &b, &old, scale, omega, shift, parallel);
            assert!((pass.row_bound - rb).abs() <= 1e-12 && (pass.col_bound - cb).abs() <= 1e-9);
            for (p, q) in pass.rows.iter().zip(&rows) {
                assert!((p - q).abs() <= 1e-12 * q.abs().max(1.0));
            }
            for (p, q) in pass.next.iter().zip(&next) {
                assert!((p - q).abs() <= 1e-12 * q.abs().max(1.0));
            }
            for (p, q) in pass.cols.iter().zip(&cols) {
                assert!((p - q).abs() <= 1e-12 * q.abs().max(1.0), "{p} {q}");
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
