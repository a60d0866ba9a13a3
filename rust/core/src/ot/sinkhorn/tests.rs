use super::*;
use crate::interrupt::NEVER;
use crate::ot::test_points::lcg;

#[test]
fn hierarchical_matches_dense() {
    let mut seed = 3u64;
    let mut r = || lcg(&mut seed);
    let (n, m, d) = (600, 500, 2);
    let x: Vec<f64> = (0..n * d).map(|_| r()).collect();
    let y: Vec<f64> = (0..m * d).map(|_| 0.5 * r() + 0.3).collect();
    let a = vec![1.0 / n as f64; n];
    let b = vec![1.0 / m as f64; m];
    let mut opts = SinkhornOptions::balanced(0.01, 1e-7, 5000, Some(0.5), 1e-8, true, 16, true);
    let dense = sinkhorn(&x, &y, d, &a, &b, &opts, &mut |_| false, &NEVER).unwrap();
    opts.exact = false;
    let hier = sinkhorn(&x, &y, d, &a, &b, &opts, &mut |_| false, &NEVER).unwrap();
    assert!(dense.converged && hier.converged);
    assert!(
        (dense.cost - hier.cost).abs() <= 1e-6 * dense.cost,
        "{} vs {}",
        dense.cost,
        hier.cost
    );
    assert!((dense.dual - hier.dual).abs() <= 1e-6 * dense.cost.abs());
    assert!(dense.n_iter.abs_diff(hier.n_iter) <= 1 + dense.n_iter / 10);
}

#[test]
fn anderson_gives_the_same_solution_in_fewer_iterations() {
    let mut seed = 5u64;
    let mut r = || lcg(&mut seed);
    let (n, m) = (400, 300);
    let x: Vec<f64> = (0..2 * n).map(|_| r()).collect();
    let y: Vec<f64> = (0..2 * m).map(|_| 0.4 * r() + 0.3).collect();
    let (a, b) = (vec![1.0 / n as f64; n], vec![1.0 / m as f64; m]);
    let solve = |anderson: usize, exact: bool| {
        let mut opts =
            SinkhornOptions::balanced(0.01, 1e-7, 5000, Some(0.5), 1e-8, exact, 16, true);
        opts.anderson = anderson;
        sinkhorn(&x, &y, 2, &a, &b, &opts, &mut |_| false, &NEVER).unwrap()
    };
    let (sor, acc, hier) = (solve(0, true), solve(8, true), solve(8, false));
    assert!(sor.converged && acc.converged && hier.converged);
    assert!(acc.n_iter < sor.n_iter, "{} vs {}", acc.n_iter, sor.n_iter);
    for other in [&acc, &hier] {
        assert!((other.cost - sor.cost).abs() <= 1e-6 * sor.cost);
        assert!(other.marginal_error <= 1e-7);
    }
    assert!(hier.n_iter.abs_diff(acc.n_iter) <= 1 + acc.n_iter / 10);
}

#[test]
fn unbalanced_dual_equals_primal_and_hierarchical_matches_dense() {
    let (n, m) = (120, 90);
    let mut seed = 11u64;
    let mut r = || lcg(&mut seed);
    let x: Vec<f64> = (0..2 * n).map(|_| r()).collect();
    let y: Vec<f64> = (0..2 * m).map(|_| 0.6 * r() + 0.3).collect();
    let a = vec![1.0 / n as f64; n];
    let b = vec![1.5 / m as f64; m];
    let (eps, rho_a, rho_b) = (0.05, 0.3, 0.7);
    let mut opts = SinkhornOptions::balanced(eps, 1e-10, 5000, Some(0.5), 1e-11, true, 16, true);
    (opts.rho_a, opts.rho_b) = (rho_a, rho_b);
    let dense = sinkhorn(&x, &y, 2, &a, &b, &opts, &mut |_| false, &NEVER).unwrap();
    opts.exact = false;
    let hier = sinkhorn(&x, &y, 2, &a, &b, &opts, &mut |_| false, &NEVER).unwrap();
    assert!(dense.converged && hier.converged);
    assert!((dense.dual - hier.dual).abs() <= 1e-9 * dense.dual.abs());
    // primal at the plan: cost (transport + marginal KLs) + eps KL(P | a b^T) = dual
    let (mut rows, mut cols, mut ent) = (vec![0.0; n], vec![0.0; m], 0.0);
    let mut transport = 0.0;
    for i in 0..n {
        for j in 0..m {
            let c = (x[2 * i] - y[2 * j]).powi(2) + (x[2 * i + 1] - y[2 * j + 1]).powi(2);
            let lr = (dense.f[i] + dense.g[j] - c) / eps;
            let p = a[i] * b[j] * lr.exp();
            rows[i] += p;
            cols[j] += p;
            transport += p * c;
            ent += p * lr - p + a[i] * b[j];
        }
    }
    let kl = |mu: &[f64], w: &[f64]| -> f64 {
        mu.iter()
            .zip(w)
            .map(|(&p, &q)| p * (p / q).ln() - p + q)
            .sum()
    };
    let cost = transport + rho_a * kl(&rows, &a) + rho_b * kl(&cols, &b);
    assert!(
        (cost - dense.cost).abs() <= 1e-9 * cost,
        "{cost} vs {}",
        dense.cost
    );
    let primal = cost + eps * ent;
    assert!(
        (primal - dense.dual).abs() <= 1e-8 * primal,
        "{primal} vs {}",
        dense.dual
    );
    // the marginals are those the potentials ask for: P 1 = a exp(-f / rho_a)
    for i in 0..n {
        let want = a[i] * (-dense.f[i] / rho_a).exp();
        assert!((rows[i] - want).abs() <= 1e-8 * want);
    }
}

#[test]
fn eps_scaling_on_a_grid_is_at_most_about_twice_no_scaling() {
    // x = y = a grid: the scaled stages left an error the final eps removed very slowly
    for (n, eps, tol) in [(10usize, 0.1, 1e-9), (50, 0.2, 1e-8)] {
        let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let w = vec![1.0 / n as f64; n];
        let mut opts =
            SinkhornOptions::balanced(eps, tol, 20_000, None, tol / 10.0, true, 16, true);
        let plain = sinkhorn(&x, &x, 1, &w, &w, &opts, &mut |_| false, &NEVER).unwrap();
        opts.eps_scaling = Some(0.5);
        let scaled = sinkhorn(&x, &x, 1, &w, &w, &opts, &mut |_| false, &NEVER).unwrap();
        assert!(plain.converged && scaled.converged);
        assert!(
            scaled.n_iter <= 2 * plain.n_iter + 100,
            "{} vs {}",
            scaled.n_iter,
            plain.n_iter
        );
    }
}
