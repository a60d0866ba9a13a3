//! One read of the stored kernel per Sinkhorn iteration, the dense c-transform, and the objective's
//! sums on the stored kernel.
//!
//! `fused`: the row products give each row's log sum L_j = log sum_i w_i exp((pot_i - C_ij)/eps)
//! and so the row's new potential q_j (plain: scale L_j; relaxed: q_j + omega (scale L_j - q_j));
//! while that row (4 m bytes, in cache) is at hand, `v_j K~_j.` is added to the column
//! accumulator, with v_j = w'_j exp(q_j/eps - r_j - shift) the row's new scaling. After the last row
//! the accumulator holds the column products at q: two products for one read of the matrix. The
//! same values as `rows` then `cols` up to the order of the f64 sums; `shift` is the previous
//! pass's largest exponent (the exact one is known only at the end; any shift gives the same
//! logs, and the error bound `finish` computes is invariant under it; a shift far off makes a
//! sum overflow or vanish, which the bound reports as infinite).

use super::{
    axpy_f32, axpy_rows, dot_f32, dots_f32, finish, objective_row, scaling, LogSums, StoredKernel,
    COL_BLOCKS, ROWS,
};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// What one fused pass returns (rows: the kernel's rows; columns: its columns).
#[derive(Debug, Clone)]
pub struct Fused {
    /// Log sums of the rows at the column potential, their bound, and the column potential's
    /// drift (half-range of pot/eps - c over weighted columns).
    pub rows: Vec<f64>,
    pub row_bound: f64,
    pub col_drift: f64,
    /// The rows' plain new potential (scale * rows) and the relaxed one the columns were applied to.
    pub plain: Vec<f64>,
    pub next: Vec<f64>,
    /// Log sums of the columns at `next`, their bound, the drift of `next` (half-range of
    /// next/eps - r over weighted rows) and its largest exponent (the next pass's shift).
    pub cols: Vec<f64>,
    pub col_bound: f64,
    pub row_drift: f64,
    pub top: f64,
}

/// What one block of rows of a fused pass leaves: its column accumulator, its rows' sums, and the
/// extremes of the new rows' exponents over weighted rows.
struct Block {
    acc: Vec<f64>,
    sums: Vec<f64>,
    hi: f64,
    lo: f64,
    vsum: f64,
}

/// The objective's sums per column (x point): the log sum log sum_j w_j exp((pot_j - C_ij)/eps),
/// the plan-weighted mean cost, and the relative error bound of both (`objective_sums`).
#[derive(Debug, Clone)]
pub struct ObjectiveSums {
    pub log_sum: Vec<f64>,
    pub mean_cost: Vec<f64>,
    pub bound: f64,
}

impl StoredKernel {
    fn check_points(&self, rows_pts: &[f64], cols_pts: &[f64], d: usize) -> Result<()> {
        if d == 0 || rows_pts.len() != self.n * d || cols_pts.len() != self.m * d {
            return Err(Error::invalid(
                "x",
                format!(
                    "expected {} row and {} column points of dimension {d}",
                    self.n, self.m
                ),
            ));
        }
        Ok(())
    }

    /// One pass (module notes): rows at (`col_w`, `col_pot`), the rows' new potential
    /// `next = old + omega (scale * rows - old)`, and the columns at (`row_w`, `next`).
    #[allow(clippy::too_many_arguments)]
    pub fn fused(
        &self,
        col_w: &[f64],
        col_pot: &[f64],
        row_w: &[f64],
        old: &[f64],
        scale: f64,
        omega: f64,
        shift: f64,
        parallel: bool,
    ) -> Fused {
        let (n, m, eps) = (self.n, self.m, self.eps);
        let (u, top_u, col_drift) = scaling(col_w, col_pot, &self.c, eps);
        let usum: f64 = u.iter().sum();
        let block = n.div_ceil(COL_BLOCKS).max(1);
        let blocks = n.div_ceil(block);
        let shift = if shift.is_finite() { shift } else { 0.0 };
        let job = |k: usize| -> Block {
            let (lo_row, hi_row) = (k * block, ((k + 1) * block).min(n));
            let mut b = Block {
                acc: vec![0.0; m],
                sums: Vec::with_capacity(hi_row - lo_row),
                hi: f64::NEG_INFINITY,
                lo: f64::INFINITY,
                vsum: 0.0,
            };
            // the row's new potential and scaling from its sum s (0 for a row without weight)
            let scaling_of = |j: usize, s: f64, b: &mut Block| -> f64 {
                b.sums.push(s);
                if !(row_w[j] > 0.0) {
                    return 0.0;
                }
                // the same log sum as `finish`
                let log_sum = if s > 0.0 {
                    -self.r[j] + top_u + s.ln()
                } else {
                    f64::NEG_INFINITY
                };
                let plain = scale * log_sum;
                let next = if omega == 1.0 {
                    plain
                } else {
                    old[j] + omega * (plain - old[j])
                };
                let e = next / eps - self.r[j];
                b.hi = b.hi.max(e);
                b.lo = b.lo.min(e);
                let v = row_w[j] * (e - shift).exp();
                b.vsum += v;
                v
            };
            let row_at = |j: usize| &self.entries[j * m..(j + 1) * m];
            let mut j = lo_row;
            while j + ROWS <= hi_row {
                let rows: [&[f32]; ROWS] = std::array::from_fn(|r| row_at(j + r));
                let sums = dots_f32(&rows, &u);
                let alpha: [f64; ROWS] =
                    std::array::from_fn(|r| scaling_of(j + r, sums[r], &mut b));
                axpy_rows(&alpha, &rows, &mut b.acc);
                j += ROWS;
            }
            for j in j..hi_row {
                let v = scaling_of(j, dot_f32(row_at(j), &u), &mut b);
                if v != 0.0 {
                    axpy_f32(v, row_at(j), &mut b.acc);
                }
            }
            b
        };
        let parts: Vec<Block> = if parallel {
            (0..blocks).into_par_iter().map(job).collect()
        } else {
            (0..blocks).map(job).collect()
        };
        let mut sums = Vec::with_capacity(n);
        let mut acc = vec![0.0; m];
        let (mut hi, mut lo, mut vsum) = (f64::NEG_INFINITY, f64::INFINITY, 0.0);
        for p in &parts {
            sums.extend_from_slice(&p.sums);
            for (s, v) in acc.iter_mut().zip(&p.acc) {
                *s += v;
            }
            (hi, lo, vsum) = (hi.max(p.hi), lo.min(p.lo), vsum + p.vsum);
        }
        let (rows, row_bound) = finish(&sums, &self.r, top_u, usum);
        let plain: Vec<f64> = rows.iter().map(|&l| scale * l).collect();
        let next: Vec<f64> = if omega == 1.0 {
            plain.clone()
        } else {
            old.iter()
                .zip(&plain)
                .map(|(&o, &p)| o + omega * (p - o))
                .collect()
        };
        let (cols, col_bound) = finish(&acc, &self.c, shift, vsum);
        Fused {
            rows,
            row_bound,
            col_drift,
            plain,
            next,
            cols,
            col_bound,
            row_drift: 0.5 * (hi - lo),
            top: hi,
        }
    }

    /// The columns' objective sums at the row potential (`row_w`, `row_pot`): per column i,
    /// log sum_j w_j exp((pot_j - C_ij)/eps) and the plan-weighted mean cost sum_j P_ij C_ij /
    /// sum_j P_ij, with C recomputed from the points (`rows_pts`: the kernel's rows, `cols_pts`
    /// its columns, row-major), and the relative error bound: f32 rounding (2^-24) of each entry,
    /// the flush level times the largest cost for flushed entries. The cost's bound is that of the
    /// cost-weighted sums alone (the mass of column i comes from the same log sum, so that sum's
    /// error cancels); the log sums' own bound enters for an unbalanced problem's marginal terms.
    pub fn objective_sums(
        &self,
        rows_pts: &[f64],
        cols_pts: &[f64],
        d: usize,
        row_w: &[f64],
        row_pot: &[f64],
        parallel: bool,
    ) -> Result<ObjectiveSums> {
        self.check_points(rows_pts, cols_pts, d)?;
        let (n, m, eps) = (self.n, self.m, self.eps);
        let (v, top, _) = scaling(row_w, row_pot, &self.r, eps);
        let vsum: f64 = v.iter().sum();
        // column points coordinate-major, so each row's costs vectorize over i
        let mut xt = vec![0.0; d * m];
        for (i, pt) in cols_pts.chunks_exact(d).enumerate() {
            for (k, &val) in pt.iter().enumerate() {
                xt[k * m + i] = val;
            }
        }
        let block = n.div_ceil(COL_BLOCKS).max(1);
        let blocks = n.div_ceil(block);
        let job = |k: usize| -> (Vec<f64>, Vec<f64>, f64) {
            let (mut s_acc, mut t_acc) = (vec![0.0; m], vec![0.0; m]);
            let mut cmax = 0.0f64;
            for j in k * block..((k + 1) * block).min(n) {
                if v[j] == 0.0 {
                    continue;
                }
                let yj = &rows_pts[j * d..(j + 1) * d];
                let row = &self.entries[j * m..(j + 1) * m];
                cmax = cmax.max(objective_row(v[j], row, yj, &xt, &mut s_acc, &mut t_acc));
            }
            (s_acc, t_acc, cmax)
        };
        let parts: Vec<(Vec<f64>, Vec<f64>, f64)> = if parallel {
            (0..blocks).into_par_iter().map(job).collect()
        } else {
            (0..blocks).map(job).collect()
        };
        let (mut s_sum, mut t_sum, mut cmax) = (vec![0.0; m], vec![0.0; m], 0.0f64);
        for (s, t, c) in &parts {
            for ((a, b), (x, y)) in s_sum.iter_mut().zip(t_sum.iter_mut()).zip(s.iter().zip(t)) {
                *a += x;
                *b += y;
            }
            cmax = cmax.max(*c);
        }
        let (log_sum, s_bound) = finish(&s_sum, &self.c, top, vsum);
        let flush = f64::from(f32::MIN_POSITIVE) * vsum * cmax;
        // the cost sums mass_i T_i / S_i with mass_i from the same S_i: its relative error is
        // T_i's; the log sums (S_i) enter only an unbalanced problem's marginal terms
        let mut bound = s_bound;
        let mean_cost = s_sum
            .iter()
            .zip(&t_sum)
            .map(|(&s, &t)| {
                let rel_t = if t > 0.0 {
                    super::STORED_ROUNDING + flush / t
                } else if flush == 0.0 {
                    0.0
                } else {
                    f64::INFINITY
                };
                bound = bound.max(rel_t);
                if s > 0.0 {
                    t / s
                } else {
                    0.0
                }
            })
            .collect();
        Ok(ObjectiveSums {
            log_sum,
            mean_cost,
            bound: if bound.is_nan() { f64::INFINITY } else { bound },
        })
    }

    /// The dense log-domain application without storing a matrix: log sum_j w_j exp((pot_j -
    /// C_ij)/eps) for every target point i (n x d) over the sources (m x d), in f64 (the exact
    /// c-transform, e.g. from a coarse cloud onto the full one).
    #[allow(clippy::too_many_arguments)]
    pub fn log_sums_dense(
        targets: &[f64],
        sources: &[f64],
        d: usize,
        w: &[f64],
        pot: &[f64],
        eps: f64,
        parallel: bool,
    ) -> Result<LogSums> {
        if d == 0 || targets.len() % d != 0 || sources.len() % d != 0 || sources.is_empty() {
            return Err(Error::invalid(
                "x",
                "x and y must be non-empty (n, d) and (m, d) arrays",
            ));
        }
        let m = sources.len() / d;
        if w.len() != m || pot.len() != m || !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::invalid(
                "w",
                format!("expected {m} weights and potentials and eps > 0"),
            ));
        }
        let mut yt = vec![0.0; d * m];
        for (j, pt) in sources.chunks_exact(d).enumerate() {
            for (k, &val) in pt.iter().enumerate() {
                yt[k * m + j] = val;
            }
        }
        let inv_eps = 1.0 / eps;
        let c: Vec<f64> = pot.iter().map(|&p| p * inv_eps).collect();
        let log_w: Vec<f64> = w
            .iter()
            .map(|&v| if v > 0.0 { v.ln() } else { f64::NEG_INFINITY })
            .collect();
        let n = targets.len() / d;
        let mut out = vec![0.0; n];
        let row = |work: &mut Vec<f64>, (i, o): (usize, &mut f64)| {
            let mut r = [0.0; 2];
            let ok = super::build_row(
                &targets[i * d..(i + 1) * d],
                &yt,
                &c,
                &log_w,
                w,
                inv_eps,
                work,
                None,
                &mut r,
            );
            *o = if ok { r[1] } else { f64::NEG_INFINITY };
        };
        if parallel {
            out.par_iter_mut()
                .enumerate()
                .for_each_init(|| vec![0.0; m], row);
        } else {
            let mut work = vec![0.0; m];
            out.iter_mut()
                .enumerate()
                .for_each(|job| row(&mut work, job));
        }
        Ok((out, 0.0))
    }
}

impl StoredKernel {
    /// The largest exponent pot_j/eps - r_j over the weighted rows (a fused pass's shift).
    pub fn top_exponent(&self, row_w: &[f64], row_pot: &[f64]) -> f64 {
        scaling(row_w, row_pot, &self.r, self.eps).1
    }
}
