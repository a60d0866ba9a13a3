//! The stored-kernel iteration of a `Chain` (`SinkhornOptions::stored`, kernel/stored.rs): the
//! same step as `Chain::step_at` with both applications one product with the stored matrix.

use super::super::acceleration::relax;
use super::super::kernel::{StoredKernel, DRIFT_MAX, STORED_ROUNDING};
use super::{marginal_error, Chain, Problem, SinkhornOptions};
use crate::error::{Error, Result};

impl Chain {
    /// Absorbs the stored kernel again at the current g; returns log sum_j b_j exp((g_j -
    /// C_ij)/eps) per row (exact).
    pub(super) fn absorb(&mut self, p: &Problem<'_>, opts: &SinkhornOptions) -> Result<Vec<f64>> {
        self.matrix = None; // freed before the new one is allocated
        let (kern, log_rows) = StoredKernel::build(
            &p.xs.tree.points,
            &p.ys.tree.points,
            p.xs.tree.d,
            &p.ys.w,
            &self.g,
            self.eps,
            opts.parallel,
        )?;
        self.matrix = Some(kern);
        self.drift0 = f64::NAN;
        Ok(log_rows)
    }

    /// `step_at` on the stored kernel, absorbed again when the scaled drift of the applied
    /// potential passes `DRIFT_MAX` (for f: beyond its drift at the absorption) or the application's error bound passes `kernel_tol` (and
    /// twice the f32 rounding, which no absorption removes). Returns the error and the largest
    /// error bound (in log) of the step's two applications.
    pub(super) fn step_stored(
        &mut self,
        p: &Problem<'_>,
        opts: &SinkhornOptions,
    ) -> Result<(f64, f64)> {
        let eps = self.eps;
        let omega = if self.relax {
            self.relaxation.omega()
        } else {
            1.0
        };
        let limit = opts.kernel_tol.max(2.0 * STORED_ROUNDING);
        let par = opts.parallel;
        let cols_of = |k: &Option<StoredKernel>, f: &[f64]| match k {
            Some(k) => Ok(k.cols(&p.xs.w, f, par)),
            None => Err(Error::NumericalBreakdown("no stored kernel".to_string())),
        };
        let (mut cols, mut col_bound, drift) = cols_of(&self.matrix, &self.f)?;
        if self.drift0.is_nan() {
            self.drift0 = drift;
        }
        if drift > self.drift0 + DRIFT_MAX || col_bound > limit {
            self.absorb(p, opts)?;
            (cols, col_bound, self.drift0) = cols_of(&self.matrix, &self.f)?;
        }
        let scale_y = -eps * p.ys.damping(eps);
        let g_plain: Vec<f64> = cols.iter().map(|&l| scale_y * l).collect();
        relax(&mut self.g, &g_plain, omega);
        let col_err = if omega == 1.0 {
            0.0
        } else {
            marginal_error(p.ys, &self.g, &g_plain, eps)
        };
        let (mut rows, mut row_bound, drift) = match &self.matrix {
            Some(k) => k.rows(&p.ys.w, &self.g, par),
            None => return Err(Error::NumericalBreakdown("no stored kernel".to_string())),
        };
        if drift > DRIFT_MAX || row_bound > limit {
            // absorbed at this g: the rows are the exact (f64) dense application
            (rows, row_bound) = (self.absorb(p, opts)?, 0.0);
        }
        let scale_x = -eps * p.xs.damping(eps);
        self.f_plain = rows.iter().map(|&l| scale_x * l).collect();
        self.err = marginal_error(p.xs, &self.f, &self.f_plain, eps) + col_err;
        self.omega = omega;
        self.iters += 1;
        Ok((self.err, col_bound.max(row_bound)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{sinkhorn, SinkhornOptions};
    use crate::interrupt::NEVER;

    #[test]
    fn stored_kernel_solves_as_the_dense_one() {
        let mut seed = 7u64;
        let mut r = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for (d, rho) in [(2usize, f64::INFINITY), (3, f64::INFINITY), (2, 0.5)] {
            let (n, m) = (300, 250);
            let x: Vec<f64> = (0..n * d).map(|_| r()).collect();
            let y: Vec<f64> = (0..m * d).map(|_| 0.5 * r() + 0.2).collect();
            let (a, b) = (vec![1.0 / n as f64; n], vec![1.0 / m as f64; m]);
            let mut opts =
                SinkhornOptions::balanced(0.01, 1e-6, 5000, Some(0.5), 1e-7, true, 16, true);
            opts.anderson = 8;
            (opts.rho_a, opts.rho_b) = (rho, rho);
            let dense = sinkhorn(&x, &y, d, &a, &b, &opts, &mut |_| false, &NEVER).unwrap();
            opts.stored = true;
            let stored = sinkhorn(&x, &y, d, &a, &b, &opts, &mut |_| false, &NEVER).unwrap();
            assert!(dense.converged && stored.converged, "d {d} rho {rho}");
            assert!(stored.marginal_error <= 1e-6);
            assert!(
                (dense.cost - stored.cost).abs() <= 1e-5 * dense.cost.abs(),
                "{} vs {}",
                dense.cost,
                stored.cost
            );
        }
    }
}
