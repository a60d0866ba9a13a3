//! The stored-kernel iteration of a `Chain` (`SinkhornOptions::stored`, kernel/stored.rs). The
//! matrix has the y points as rows and the x points as columns and is absorbed at the chain's f, so
//! that one read of it (`StoredKernel::fused`) gives g = G(f) (its rows) and F(g) (its columns):
//! one whole iteration f -> F(G(f)), the map the Anderson mixing and the over-relaxation work on,
//! for the bytes of one product. An absorption gives G(f) exactly (the dense f64 application),
//! so the step after it needs only the column product.

use super::super::acceleration::relax;
use super::super::kernel::{StoredKernel, DRIFT_MAX, STORED_ROUNDING};
use super::super::objective::objective_from;
use super::{marginal_error, Chain, Problem, Side, SinkhornOptions};
use crate::error::{Error, Result};

/// The stored kernel of a chain and what its next step needs.
pub(super) struct Matrix {
    kern: StoredKernel,
    /// Drift of the first g applied to it (unbalanced potentials keep an offset; NaN: none yet).
    drift0: f64,
    /// G(f) (log sums of the rows) from the absorption, for the next step.
    pending: Option<Vec<f64>>,
    /// The largest exponent of the last g applied (the next fused pass's shift).
    shift: f64,
}

/// The first f of a stored chain: zero, or the c-transform F(g) at `eps` of the previous stage's g
/// (as `Chain::new` starts), dense in f64 (x points x `source` points exponentials): `source` is
/// the cloud that g lives on, the coarse y when the previous stage ran on the coarse clouds. (The
/// previous f itself is a poor start for an unbalanced problem, whose potentials scale with
/// rho / (rho + eps).)
pub(super) fn stored_start(
    warm: Option<Chain>,
    source: &Side,
    xs: &Side,
    eps: f64,
    opts: &SinkhornOptions,
) -> Result<Vec<f64>> {
    let Some(c) = warm else {
        return Ok(vec![0.0; xs.w.len()]);
    };
    let (logs, _) = StoredKernel::log_sums_dense(
        &xs.tree.points,
        &source.tree.points,
        xs.tree.d,
        &source.w,
        &c.g,
        eps,
        opts.parallel,
    )?;
    let scale = -eps * xs.damping(eps);
    Ok(logs.iter().map(|&l| scale * l).collect())
}

/// cost and dual from the chain's stored kernel when its error bounds allow (`kernel_tol`), else
/// None (the caller uses the accurate kernel): one read of the matrix with the costs recomputed
/// from the points (two for a penalized y).
pub(super) fn objective_stored(
    matrix: Option<Matrix>,
    xs: &Side,
    ys: &Side,
    f: &[f64],
    g: &[f64],
    opts: &SinkhornOptions,
) -> Result<Option<(f64, f64)>> {
    let Some(mat) = matrix else {
        return Ok(None);
    };
    let d = xs.tree.d;
    let sums =
        mat.kern
            .objective_sums(&ys.tree.points, &xs.tree.points, d, &ys.w, g, opts.parallel)?;
    if !(sums.bound <= opts.kernel_tol) {
        return Ok(None);
    }
    let mut refused = false;
    let mut cols = || -> Result<Vec<f64>> {
        let (logs, bound, _) = mat.kern.rows(&xs.w, f, opts.parallel);
        refused = !(bound <= opts.kernel_tol);
        Ok(logs)
    };
    let out = objective_from(
        xs,
        ys,
        f,
        g,
        opts.eps,
        &sums.log_sum,
        &sums.mean_cost,
        &mut cols,
    )?;
    Ok((!refused).then_some(out))
}

impl Chain {
    /// A chain on the stored kernel from a first f (`Chain::new` starts from a g): the kernel is
    /// absorbed at f, which gives g = G(f) exactly.
    pub(super) fn new_stored(
        p: &Problem<'_>,
        f: Vec<f64>,
        opts: &SinkhornOptions,
        eps: f64,
        relax: bool,
    ) -> Result<Chain> {
        let mut chain = Chain::fresh(p, f, Vec::new(), opts, eps, relax);
        chain.absorb(p, opts)?;
        let scale = -eps * p.ys.damping(eps);
        chain.g = match chain.matrix.as_ref().and_then(|m| m.pending.as_ref()) {
            Some(rows) => rows.iter().map(|&l| scale * l).collect(),
            None => return Err(Error::NumericalBreakdown("no stored kernel".to_string())),
        };
        Ok(chain)
    }

    /// Absorbs the stored kernel at the current f (y rows, x columns); G(f) waits in `pending`.
    fn absorb(&mut self, p: &Problem<'_>, opts: &SinkhornOptions) -> Result<()> {
        // the old matrix's memory serves the new one (one matrix alive at a time)
        let (y, x, d) = (&p.ys.tree.points, &p.xs.tree.points, p.xs.tree.d);
        let (kern, rows) = match self.matrix.take() {
            Some(old) => old
                .kern
                .rebuild(y, x, d, &p.xs.w, &self.f, self.eps, opts.parallel)?,
            None => StoredKernel::build(y, x, d, &p.xs.w, &self.f, self.eps, opts.parallel)?,
        };
        self.matrix = Some(Matrix {
            kern,
            drift0: f64::NAN,
            pending: Some(rows),
            shift: f64::NAN,
        });
        Ok(())
    }

    /// `step_at` on the stored kernel: one fused pass (g = G(f) relaxed, then F(g)), or after an
    /// absorption the column product alone. The kernel is absorbed again (at f) when the scaled
    /// drift of f passes `DRIFT_MAX`, that of g passes its drift after the absorption by
    /// `DRIFT_MAX`, or a product's error bound passes `kernel_tol` (and twice the f32 rounding,
    /// which no absorption removes). Returns the error and the larger error bound (in log) of the
    /// step's two products.
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
        let scale_y = -eps * p.ys.damping(eps);
        let missing = || Error::NumericalBreakdown("no stored kernel".to_string());
        let mat = self.matrix.as_mut().ok_or_else(missing)?;
        let mut fused = None;
        if mat.pending.is_none() {
            let pass = mat.kern.fused(
                &p.xs.w, &self.f, &p.ys.w, &self.g, scale_y, omega, mat.shift, par,
            );
            if pass.col_drift <= DRIFT_MAX
                && pass.row_drift <= mat.drift0 + DRIFT_MAX
                && pass.row_bound <= limit
                && pass.col_bound <= limit
            {
                fused = Some(pass);
            }
        }
        let (g_plain, cols, bound) = match fused {
            Some(pass) => {
                mat.shift = pass.top;
                self.g = pass.next;
                (pass.plain, pass.cols, pass.row_bound.max(pass.col_bound))
            }
            None => {
                if mat.pending.is_none() {
                    self.absorb(p, opts)?;
                }
                let mat = self.matrix.as_mut().ok_or_else(missing)?;
                let rows = mat.pending.take().ok_or_else(missing)?;
                let g_plain: Vec<f64> = rows.iter().map(|&l| scale_y * l).collect();
                relax(&mut self.g, &g_plain, omega);
                let (cols, bound, drift) = mat.kern.cols(&p.ys.w, &self.g, par);
                (mat.drift0, mat.shift) = (drift, mat.kern.top_exponent(&p.ys.w, &self.g));
                (g_plain, cols, bound)
            }
        };
        let col_err = if omega == 1.0 {
            0.0
        } else {
            marginal_error(p.ys, &self.g, &g_plain, eps)
        };
        let scale_x = -eps * p.xs.damping(eps);
        self.f_plain = cols.iter().map(|&l| scale_x * l).collect();
        self.err = marginal_error(p.xs, &self.f, &self.f_plain, eps) + col_err;
        self.omega = omega;
        self.iters += 1;
        Ok((self.err, bound))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{sinkhorn, SinkhornOptions};
    use crate::interrupt::NEVER;
    use crate::ot::test_points::uniform;

    #[test]
    fn stored_kernel_solves_as_the_dense_one() {
        for (d, rho, anderson) in [
            (2usize, f64::INFINITY, 8),
            (3, f64::INFINITY, 8),
            (2, 0.5, 8),
            (3, f64::INFINITY, 0),
        ] {
            let (n, m) = (300, 250);
            let x = uniform(n * d, 7);
            let y: Vec<f64> = uniform(m * d, 8).iter().map(|v| 0.5 * v + 0.2).collect();
            let (a, b) = (vec![1.0 / n as f64; n], vec![1.0 / m as f64; m]);
            let mut opts =
                SinkhornOptions::balanced(0.01, 1e-6, 5000, Some(0.5), 1e-7, true, 16, true);
            opts.anderson = anderson;
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
            assert!((dense.dual - stored.dual).abs() <= 1e-5 * dense.dual.abs());
        }
    }

    #[test]
    fn stored_chains_on_coarse_clouds_give_the_same_solution() {
        let (n, m, d) = (2500, 2200, 3);
        let x = uniform(n * d, 11);
        let y: Vec<f64> = uniform(m * d, 12).iter().map(|v| 0.4 * v + 0.3).collect();
        let (a, b) = (vec![1.0 / n as f64; n], vec![1.0 / m as f64; m]);
        let mut opts =
            SinkhornOptions::balanced(0.01, 1e-6, 5000, Some(0.5), 1e-7, false, 16, true);
        (opts.anderson, opts.coarse_leaf) = (8, 8);
        let tree = sinkhorn(&x, &y, d, &a, &b, &opts, &mut |_| false, &NEVER).unwrap();
        opts.stored = true;
        let stored = sinkhorn(&x, &y, d, &a, &b, &opts, &mut |_| false, &NEVER).unwrap();
        assert!(tree.converged && stored.converged && stored.marginal_error <= 1e-6);
        assert!((tree.cost - stored.cost).abs() <= 1e-6 * tree.cost);
        assert!((tree.dual - stored.dual).abs() <= 1e-6 * tree.dual.abs());
        // every potential within the error the tolerance allows (eps * 1e-5 per point)
        let shift = stored.f[0] - tree.f[0];
        for (u, v) in stored.f.iter().zip(&tree.f) {
            assert!((u - v - shift).abs() <= 1e-6, "{u} {v}");
        }
    }
}
