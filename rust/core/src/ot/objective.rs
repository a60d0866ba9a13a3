//! The objective values a solve returns: the transport cost (plus the marginal KL terms of an
//! unbalanced problem) and the dual, from potentials in tree order; one kernel application (two
//! for a penalized y).

use super::sinkhorn::{apply, Side, SinkhornOptions};
use crate::error::Result;

/// rho <w, 1 - exp(-pot/rho)> for a penalized side, <w, pot> for a fixed one (zero weights skipped).
fn dual_term(side: &Side, pot: &[f64]) -> f64 {
    let rho = side.rho;
    side.w
        .iter()
        .zip(pot)
        .map(|(&w, &v)| match (w > 0.0, rho.is_finite()) {
            (false, _) => 0.0,
            (true, true) => -w * rho * (-v / rho).exp_m1(),
            (true, false) => w * v,
        })
        .sum()
}

/// The marginal of the plan on `t`'s side: t.w_i exp(pot_i/eps + log_sum_i), and sum_i of
/// marginal_i log(marginal_i / w_i) - marginal_i + w_i (the generalized KL to w).
fn marginal_kl(t: &Side, pot: &[f64], log_sum: &[f64], eps: f64) -> (f64, f64) {
    let (mut mass, mut kl) = (0.0, 0.0);
    for ((&w, &v), &l) in t.w.iter().zip(pot).zip(log_sum) {
        if w > 0.0 {
            let log_ratio = v / eps + l;
            let mi = w * log_ratio.exp();
            mass += mi;
            kl += mi * log_ratio - mi + w;
        }
    }
    (mass, kl)
}

/// The returned objective values of potentials f (on `xs`), g (on `ys`), tree order:
/// cost = sum_ij P_ij C_ij + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b) (the KL terms only for
/// penalized sides), dual = a.f + b.g when balanced, else
/// sum over sides of (rho <w, 1 - exp(-pot/rho)> or <w, pot>) - eps (sum_ij P_ij - sum(a) sum(b)).
pub(super) fn objective(
    xs: &Side,
    ys: &Side,
    f: &[f64],
    g: &[f64],
    opts: &SinkhornOptions,
) -> Result<(f64, f64)> {
    let eps = opts.eps;
    let applied = apply(xs, ys, g, opts, eps, true)?;
    let mut cols = || Ok(apply(ys, xs, f, opts, eps, false)?.log_sum);
    objective_from(
        xs,
        ys,
        f,
        g,
        eps,
        &applied.log_sum,
        &applied.mean_cost,
        &mut cols,
    )
}

/// `objective` from the rows' log sums log sum_j b_j exp((g_j - C_ij)/eps) and plan-weighted mean
/// costs (per x point) computed by any kernel; `cols` gives the columns' log sums (only called for
/// a penalized y).
#[allow(clippy::too_many_arguments)]
pub(super) fn objective_from(
    xs: &Side,
    ys: &Side,
    f: &[f64],
    g: &[f64],
    eps: f64,
    log_sum: &[f64],
    mean_cost: &[f64],
    cols: &mut dyn FnMut() -> Result<Vec<f64>>,
) -> Result<(f64, f64)> {
    // cost = sum_ij P_ij C_ij = sum_i a_i exp(f_i/eps) S_i * meanC_i, with S_i from the kernel
    let mut cost = 0.0;
    for i in 0..f.len() {
        if xs.w[i] > 0.0 {
            let mass = xs.w[i] * (f[i] / eps + log_sum[i]).exp();
            cost += mass * mean_cost[i];
        }
    }
    let mut dual = dual_term(xs, f) + dual_term(ys, g);
    if xs.rho.is_finite() || ys.rho.is_finite() {
        let (plan_mass, kl_a) = marginal_kl(xs, f, log_sum, eps);
        if xs.rho.is_finite() {
            cost += xs.rho * kl_a;
        }
        if ys.rho.is_finite() {
            cost += ys.rho * marginal_kl(ys, g, &cols()?, eps).1;
        }
        let (sa, sb) = (xs.w.iter().sum::<f64>(), ys.w.iter().sum::<f64>());
        dual -= eps * (plan_mass - sa * sb);
    }
    Ok((cost, dual))
}
