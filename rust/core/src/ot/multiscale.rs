//! Multiscale warm start (GeomLoss's multiscale idea, implemented here on the k-d tree): the
//! eps-scaling stages before the last run on coarse clouds, each leaf of a tree with at most
//! `coarse_leaf` points per leaf replaced by one point at its weighted centroid carrying the
//! leaf's weight; the final stage starts on the full clouds from g = G(f_coarse), one c-transform
//! of the coarse f onto the full y. The stages only warm-start the final one, which runs to `tol`
//! on the full clouds as before, so the answer's accuracy does not depend on the coarsening; at
//! n = 1e4 in 2-D (leaves of at most 8: 2,048 coarse points) the early stages cost ~1/5 and the
//! final stage starts closer to the solution (marginal error 1.4e-2 instead of 5.2e-2).

use super::sinkhorn::{update, Side, SinkhornOptions};
use super::tree::KdTree;
use crate::error::Result;
use crate::ot::kernel::KernelStats;

/// The coarse cloud of `side`: one point per leaf of a tree of `coarse_leaf` points per leaf, at
/// the leaf's weighted centroid (its plain centroid when its weight is zero), with the leaf's
/// weight; same penalty and mass, kernel trees of half the `leaf_size` in 2-D (`coarse_tree_leaf`).
pub(super) fn coarse_side(side: &Side, coarse_leaf: usize, leaf_size: usize) -> Result<Side> {
    let d = side.tree.d;
    let grouping = KdTree::build(&side.tree.points, d, coarse_leaf)?;
    let mut points = Vec::with_capacity(grouping.leaves.len() * d);
    let mut weights = Vec::with_capacity(grouping.leaves.len());
    let mut centroid = vec![0.0; d];
    for &leaf in &grouping.leaves {
        let node = &grouping.nodes[leaf];
        let total: f64 = (node.start..node.end)
            .map(|k| side.w[grouping.perm[k]])
            .sum();
        centroid.iter_mut().for_each(|c| *c = 0.0);
        for k in node.start..node.end {
            let share = if total > 0.0 {
                side.w[grouping.perm[k]] / total
            } else {
                1.0 / node.len() as f64
            };
            for (c, &p) in centroid.iter_mut().zip(grouping.point(k)) {
                *c += share * p;
            }
        }
        points.extend_from_slice(&centroid);
        weights.push(total);
    }
    Side::new(
        &points,
        d,
        &weights,
        coarse_tree_leaf(leaf_size, d),
        side.rho,
        side.mass,
    )
}

/// The leaf size of the coarse clouds' kernel trees: half the full clouds'. A coarse cloud is
/// `coarse_leaf` times sparser, so leaves of the full size are ~sqrt(2 coarse_leaf) times wider
/// (2-D) and at the last coarse eps few leaf pairs admit an expansion (T = 2 r_I r_J / eps > 1/2):
/// measured at 2,048 uniform points, eps = 0.0156, tol 1e-3, one application took 18.5 ms with
/// leaves of 32 (2.6e6 entries evaluated densely), 9.4 ms with 16, 8.5 ms with 8; the mixture
/// 12.6, 8.5 and 18.9 ms. Only in 2-D: in 3-D the whole solve measured 1.03-1.08x slower with it
/// (mixture-3d, n = 1e4, same process, two runs), although the coarse applications alone were not.
pub(super) fn coarse_tree_leaf(leaf_size: usize, d: usize) -> usize {
    if d <= 2 {
        (leaf_size / 2).max(1)
    } else {
        leaf_size
    }
}

/// g on the full `ys` from a coarse f on `coarse_x`: the update G(f) against the coarse cloud.
pub(super) fn extend(
    ys: &Side,
    coarse_x: &Side,
    f: &[f64],
    opts: &SinkhornOptions,
    eps: f64,
    stats: &mut KernelStats,
) -> Result<Vec<f64>> {
    update(ys, coarse_x, f, opts, eps, stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::NEVER;
    use crate::ot::sinkhorn::sinkhorn;
    use crate::ot::test_points::uniform;

    fn cloud(n: usize, seed: u64, scale: f64) -> Vec<f64> {
        uniform(2 * n, seed)
            .iter()
            .map(|v| 0.2 + scale * v)
            .collect()
    }

    #[test]
    fn coarse_cloud_keeps_the_mass_and_the_weighted_mean() {
        let n = 1000;
        let x = cloud(n, 1, 1.0);
        let w: Vec<f64> = (0..n).map(|i| (i % 7) as f64 / 3000.0).collect();
        let side = Side::new(&x, 2, &w, 16, f64::INFINITY, 1.0).unwrap();
        let coarse = coarse_side(&side, 8, 16).unwrap();
        assert!(coarse.w.len() >= n / 8 && coarse.w.len() <= n / 2);
        let (total, coarse_total) = (w.iter().sum::<f64>(), coarse.w.iter().sum::<f64>());
        assert!((total - coarse_total).abs() <= 1e-12 * total);
        for k in 0..2 {
            let mean: f64 = (0..n).map(|i| w[i] * x[2 * i + k]).sum::<f64>() / total;
            let coarse_mean: f64 = (0..coarse.w.len())
                .map(|i| coarse.w[i] * coarse.tree.point(i)[k])
                .sum::<f64>()
                / coarse_total;
            assert!((mean - coarse_mean).abs() <= 1e-12);
        }
    }

    #[test]
    fn coarse_trees_have_half_the_leaf_size() {
        let n = 2000;
        let x = cloud(n, 2, 1.0);
        let side = Side::new(&x, 2, &vec![1.0 / n as f64; n], 32, f64::INFINITY, 1.0).unwrap();
        let coarse = coarse_side(&side, 8, 32).unwrap();
        let tree = &coarse.tree;
        let largest = tree.leaves.iter().map(|&l| tree.nodes[l].len()).max();
        // a tree of the full leaf size would have leaves above 16 points (n / 8 / 16 > 2 leaves)
        assert!(largest.unwrap() <= 16, "largest coarse leaf {largest:?}");
        assert!(largest.unwrap() > 8);
        assert_eq!(coarse_tree_leaf(1, 2), 1);
        assert_eq!(coarse_tree_leaf(32, 2), 16);
        assert_eq!(coarse_tree_leaf(32, 3), 32);
    }

    #[test]
    fn multiscale_warm_start_gives_the_same_solution() {
        let (n, m) = (3000, 2500);
        let (x, y) = (cloud(n, 3, 1.0), cloud(m, 4, 0.5));
        let (a, b) = (vec![1.0 / n as f64; n], vec![1.0 / m as f64; m]);
        let solve = |coarse_leaf: usize| {
            let mut opts =
                SinkhornOptions::balanced(0.01, 1e-7, 5000, Some(0.5), 1e-8, false, 32, true);
            (opts.anderson, opts.coarse_leaf) = (8, coarse_leaf);
            sinkhorn(&x, &y, 2, &a, &b, &opts, &mut |_| false, &NEVER).unwrap()
        };
        let (full, multi) = (solve(0), solve(8));
        assert!(full.converged && multi.converged && multi.marginal_error <= 1e-7);
        assert!((multi.cost - full.cost).abs() <= 1e-6 * full.cost);
        assert!((multi.dual - full.dual).abs() <= 1e-6 * full.dual.abs());
        // stopped inside a coarse stage: the potentials still refer to the full clouds and eps
        let mut opts = SinkhornOptions::balanced(0.01, 1e-7, 4, Some(0.5), 1e-8, false, 32, true);
        opts.coarse_leaf = 8;
        let early = sinkhorn(&x, &y, 2, &a, &b, &opts, &mut |_| false, &NEVER).unwrap();
        assert!(early.f.len() == n && early.g.len() == m && !early.converged);
        assert!(early.marginal_error.is_finite() && early.cost.is_finite());
    }
}
