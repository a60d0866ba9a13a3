//! The symmetric problem OT_eps(a, a) of a Sinkhorn divergence: one potential f (the plan is
//! P_ij = a_i a_j exp((f_i + f_j - C_ij)/eps), symmetric), found by the averaged update
//! f <- (f + T(f)) / 2 with T(f)_i = -eps log sum_j a_j exp((f_j - C_ij)/eps) (damped by
//! rho / (rho + eps) when unbalanced). One kernel application per iteration instead of two, and
//! one iteration per eps-scaling stage before the last.
//! Averaging removes the oscillation of the plain symmetric update: its linearization at the
//! fixed point has eigenvalues (1 - mu) / 2 with mu the eigenvalues of the (nonnegative definite
//! for a Gaussian kernel) linearized Markov operator, so the slow modes of plain Sinkhorn
//! (mu near 1) converge fastest. Eps-scaling stages as in `sinkhorn`.

use super::acceleration::{loose_kernel_tol, TRUST};
use super::kernel::{reserve_monomial_cache, KernelStats};
use super::objective::objective;
use super::sinkhorn::{
    check_options, eps_schedule, marginal_error, update, Progress, Side, SinkhornOptions,
    SinkhornOutput,
};
use crate::error::{Error, Result};
use crate::interrupt::Interrupt;

/// Iterations after which a stage before the last one hands over to the next: one, as in
/// GeomLoss (measured at n = 2000: 24 kernel applications in all instead of 48 with stages run to
/// error 1e-2, the final stage needing 16 instead of 15).
const STAGE_ITERS: usize = 1;

/// Solves OT_eps(a, a) on the points x (n x d, row-major) with weights a, with the options of
/// `sinkhorn` (`rho_a` is the penalty of both marginals; `relax` and `rho_b` are not used).
/// The output has g = f; `marginal_error` is the L1 error of both marginals (twice one side's).
pub fn sinkhorn_symmetric(
    x: &[f64],
    d: usize,
    a: &[f64],
    opts: &SinkhornOptions,
    callback: &mut dyn FnMut(&Progress) -> bool,
    interrupt: &Interrupt,
) -> Result<SinkhornOutput> {
    if d == 0 || x.is_empty() || x.len() % d != 0 {
        return Err(Error::invalid("x", "x must be a non-empty (n, d) array"));
    }
    let n = x.len() / d;
    if a.len() != n || a.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(Error::invalid(
            "a",
            format!("expected {n} finite nonnegative weights"),
        ));
    }
    let opts = SinkhornOptions {
        rho_b: opts.rho_a,
        ..opts.clone()
    };
    check_options(&opts)?;
    let xs = Side::new(x, d, a, opts.leaf_size, opts.rho_a, opts.mass)?;
    let memory_bytes = xs.tree.memory_bytes() + 8 * 4 * n;
    let schedule = eps_schedule(&xs.tree, &xs.tree, &opts)?;
    reserve_monomial_cache(&xs.tree, opts.kernel_tol);
    let loose = SinkhornOptions {
        kernel_tol: opts.kernel_tol.max(opts.tol.max(1e-2) / 10.0),
        ..opts.clone()
    };
    let mut stats = KernelStats::default();
    let mut f = vec![0.0; n];
    let (mut n_iter, mut err, mut converged) = (0usize, f64::INFINITY, false);
    let mut stage_eps = opts.eps;
    let last = schedule.len() - 1;
    'stages: for (stage, &eps) in schedule.iter().enumerate() {
        let final_stage = stage == last;
        let (stage_opts, stage_tol) = if final_stage {
            (&opts, opts.tol)
        } else {
            (&loose, opts.tol.max(1e-2))
        };
        stage_eps = eps;
        let mut iters = 0;
        loop {
            interrupt.check()?;
            // (f, f) is the pair whose error this is; both marginals are the same
            let t;
            (t, err) = if final_stage {
                inexact_update(&xs, &f, &opts, err, &mut stats)?
            } else {
                let t = update(&xs, &xs, &f, stage_opts, eps, &mut stats)?;
                let e = 2.0 * marginal_error(&xs, &f, &t, eps);
                (t, e)
            };
            n_iter += 1;
            iters += 1;
            if !err.is_finite() {
                return Err(Error::NumericalBreakdown(format!(
                    "marginal error became {err} at iteration {n_iter} (eps = {eps:e})"
                )));
            }
            let stop = callback(&Progress {
                n_iter,
                eps,
                marginal_error: err,
            });
            if err <= stage_tol {
                converged = final_stage;
                if final_stage || stop {
                    break 'stages;
                }
            }
            if stop || n_iter >= opts.n_iter_max {
                break 'stages;
            }
            for (u, v) in f.iter_mut().zip(&t) {
                *u = 0.5 * (*u + v);
            }
            if err <= stage_tol || (!final_stage && iters >= STAGE_ITERS) {
                break;
            }
        }
    }
    if stage_eps != opts.eps {
        // stopped inside an eps-scaling stage: one averaged step at the final eps, so that the
        // potential, cost and error all refer to it (not counted as an iteration)
        let t = update(&xs, &xs, &f, &opts, opts.eps, &mut stats)?;
        for (u, v) in f.iter_mut().zip(&t) {
            *u = 0.5 * (*u + v);
        }
        let t = update(&xs, &xs, &f, &opts, opts.eps, &mut stats)?;
        err = 2.0 * marginal_error(&xs, &f, &t, opts.eps);
    }
    let (cost, dual) = objective(&xs, &xs, &f, &f, &opts)?;
    let f_out = xs.to_caller_order(&f);
    Ok(SinkhornOutput {
        g: f_out.clone(),
        f: f_out,
        n_iter,
        marginal_error: err,
        converged,
        cost,
        dual,
        stats,
        memory_bytes,
    })
}

/// The update T(f) at the final eps and the error of (f, f), inexact while the error is large
/// (as `sinkhorn`'s iterations): the kernel runs at relative tolerance
/// `loose_kernel_tol(err_before)` (a hundredth of it, at most 1e-3), and an error measured below
/// TRUST times that is measured again at `kernel_tol`, so the pair that meets `tol` is always
/// measured at full accuracy.
fn inexact_update(
    xs: &Side,
    f: &[f64],
    opts: &SinkhornOptions,
    err_before: f64,
    stats: &mut KernelStats,
) -> Result<(Vec<f64>, f64)> {
    let loose_tol = loose_kernel_tol(err_before);
    if !opts.exact && loose_tol > opts.kernel_tol {
        let loose = SinkhornOptions {
            kernel_tol: loose_tol,
            ..opts.clone()
        };
        let t = update(xs, xs, f, &loose, opts.eps, stats)?;
        let err = 2.0 * marginal_error(xs, f, &t, opts.eps);
        if err > TRUST * loose_tol {
            return Ok((t, err));
        }
    }
    let t = update(xs, xs, f, opts, opts.eps, stats)?;
    let err = 2.0 * marginal_error(xs, f, &t, opts.eps);
    Ok((t, err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::NEVER;
    use crate::ot::sinkhorn::sinkhorn;
    use crate::ot::test_points::uniform;

    fn cloud(n: usize, seed: u64) -> Vec<f64> {
        uniform(2 * n, seed)
    }

    #[test]
    fn symmetric_matches_the_two_sided_solver() {
        let n = 300;
        let x = cloud(n, 5);
        let a: Vec<f64> = (0..n)
            .map(|i| (1 + i % 3) as f64 / (2.0 * n as f64))
            .collect();
        for (rho, exact) in [(f64::INFINITY, true), (0.5, true), (0.5, false)] {
            let mut opts =
                SinkhornOptions::balanced(0.02, 1e-9, 5000, Some(0.5), 1e-10, exact, 16, true);
            opts.rho_a = rho;
            opts.rho_b = rho;
            opts.mass = a.iter().sum();
            let two = sinkhorn(&x, &x, 2, &a, &a, &opts, &mut |_| false, &NEVER).unwrap();
            let one = sinkhorn_symmetric(&x, 2, &a, &opts, &mut |_| false, &NEVER).unwrap();
            assert!(one.converged && two.converged);
            assert!(
                (one.dual - two.dual).abs() <= 1e-7 * two.dual.abs(),
                "rho {rho}: {} vs {}",
                one.dual,
                two.dual
            );
            assert!((one.cost - two.cost).abs() <= 1e-7 * two.cost.abs());
            assert!(
                one.n_iter < two.n_iter + 20,
                "{} vs {}",
                one.n_iter,
                two.n_iter
            );
        }
    }
}
