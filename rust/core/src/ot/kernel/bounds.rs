//! Rigorous bounds for pruning: per-node log-sum-exp of the source weights and a branch-and-bound
//! lower bound of every target's total.

use crate::ot::tree::{box_max_dist2, box_min_dist2, KdTree};

/// log-sum-exp of each source node's weights h (node order), and per node the largest leaf value.
pub(super) fn node_lse(tree: &KdTree, h: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut lse = vec![f64::NEG_INFINITY; tree.nodes.len()];
    let mut leafmax = vec![f64::NEG_INFINITY; tree.nodes.len()];
    for id in (0..tree.nodes.len()).rev() {
        let node = &tree.nodes[id];
        if node.is_leaf() {
            let m = h[node.start..node.end]
                .iter()
                .cloned()
                .fold(f64::NEG_INFINITY, f64::max);
            if m > f64::NEG_INFINITY {
                let s: f64 = h[node.start..node.end].iter().map(|&v| (v - m).exp()).sum();
                lse[id] = m + s.ln();
            }
            leafmax[id] = lse[id];
        } else {
            let (a, b) = (lse[node.left], lse[node.right]);
            let m = a.max(b);
            lse[id] = if m == f64::NEG_INFINITY {
                m
            } else {
                m + ((a - m).exp() + (b - m).exp()).ln()
            };
            leafmax[id] = leafmax[node.left].max(leafmax[node.right]);
        }
    }
    (lse, leafmax)
}

/// A lower bound of log sum_j exp(h_j - |x - y_j|^2/eps) valid for every x in target node `i`,
/// the best single-leaf bound lse_L - dmax(I, L)^2/eps found by branch and bound.
pub(super) fn leaf_lower_bound(
    t: &KdTree,
    i: usize,
    s: &KdTree,
    lse: &[f64],
    leafmax: &[f64],
    inv_eps: f64,
) -> f64 {
    // Leaves are disjoint, so the log-sum-exp of their bounds is a lower bound too: collect the
    // leaves whose bound may come within e^-MARGIN of the best one.
    const MARGIN: f64 = 4.0;
    // Any subset of leaves gives a valid bound: stop after this many (nearest first). Without the
    // cap a wide kernel (early eps stages) visits every source leaf for every target leaf, n^2/256.
    const MAX_LEAVES: usize = 64;
    let mut visited = 0usize;
    let mut best = f64::NEG_INFINITY;
    let (mut m, mut sum) = (f64::NEG_INFINITY, 0.0f64);
    let mut stack = vec![0usize];
    while let Some(j) = stack.pop() {
        if leafmax[j] == f64::NEG_INFINITY
            || leafmax[j] - box_min_dist2(t, i, s, j) * inv_eps <= best - MARGIN
        {
            continue;
        }
        let node = &s.nodes[j];
        if node.is_leaf() {
            visited += 1;
            if visited > MAX_LEAVES {
                break;
            }
            let lb = lse[j] - box_max_dist2(t, i, s, j) * inv_eps;
            if lb == f64::NEG_INFINITY {
                continue;
            }
            best = best.max(lb);
            if lb > m {
                sum = sum * (m - lb).exp() + 1.0;
                m = lb;
            } else {
                sum += (lb - m).exp();
            }
        } else {
            let dl = box_min_dist2(t, i, s, node.left);
            let dr = box_min_dist2(t, i, s, node.right);
            if dl <= dr {
                stack.push(node.right);
                stack.push(node.left);
            } else {
                stack.push(node.left);
                stack.push(node.right);
            }
        }
    }
    if sum > 0.0 {
        m + sum.ln()
    } else {
        f64::NEG_INFINITY
    }
}
