//! The Gibbs kernel K_ij = exp(-|x_i - y_j|^2 / eps) applied in the log domain through a k-d tree:
//! `out_i = log sum_j exp(h_j - |x_i - y_j|^2 / eps)`, with an entrywise RELATIVE error bound.
//!
//! A dual traversal of the target and source trees splits the (implicit) n x m kernel into blocks:
//!
//! * pruned blocks: an upper bound of the block's contribution, `lse_J - dmin(I,J)^2/eps`, is below
//!   `log(tol/2) - log(#source leaves)` plus a rigorous lower bound of every target's total (found
//!   by a branch-and-bound over source leaves). The dropped mass of a target is then at most
//!   tol/2 of its total.
//! * far-field blocks, for boxes with centres c_I, c_J, radii r_I, r_J: with u = x - c_I,
//!   w = y - c_J, D = c_I - c_J,
//!   `|x-y|^2 = |D|^2 + (|u|^2 + 2u.D) + (|w|^2 - 2w.D) - 2u.w`, so
//!   `exp(-|x-y|^2/eps) = exp(-|D|^2/eps) alpha_i beta_j exp(2u.w/eps)`. Only the last factor is
//!   expanded (multivariate Taylor series of total degree p in the scaled variables
//!   sqrt(2/eps) u, sqrt(2/eps) w). With T = 2 r_I r_J / eps >= |2u.w/eps| the truncation has
//!   relative error <= e^T T^(p+1)/(p+1)! (Lagrange remainder), so p is chosen per block from T
//!   for tol/4 (or, for a block whose upper bound is small next to the targets' lower bound, for
//!   an absolute budget tol/4 * exp(lower)/#source-leaves, which allows a lower order; both kinds
//!   together add at most tol/2 relative); the rank depends on the radii and eps, never on the
//!   separation. Source weights
//!   are shifted by their block maximum (log domain), so every moment sums numbers <= 1.
//! * near-field blocks: dense log-sum-exp, evaluated on the fly.
//!
//! Far-field blocks served by the monomial cache are evaluated after the traversal of a batch of
//! target subtrees, their moments grouped by source node (`deferred`).
//!
//! Several quantities share one traversal as extra moment sets of every far block (`per_block`):
//! source columns in [0, 1] (`log_apply_columns`: the barycentric map and the gradients need
//! P 1 and P y together) and the plan-weighted cost of each row (`with_cost`).
//!
//! Nothing of size n x m is stored (except by the opt-in `stored` kernel of `method="matrix"`, a
//! float32 n x m matrix of the stabilized kernel, see stored.rs): memory is the trees plus O(n) work
//! arrays. Work is split over
//! a fixed set of target subtrees (independent of the thread count), each traversed sequentially,
//! so results are bitwise deterministic for any thread count.

mod bounds;
mod deferred;
mod expansion;
mod simd;
mod stored;
mod traversal;

use super::tree::KdTree;
use crate::error::{Error, Result};
use bounds::{leaf_lower_bound, node_lse};
use deferred::FarPair;
use expansion::{MultiIndex, MAX_T, SINGLE_ROUNDING};
use rayon::prelude::*;
use simd::Acc;
pub use stored::{stored_bytes, StoredKernel, DRIFT_MAX, STORED_MAX_BYTES, STORED_ROUNDING};

/// Block counts and work of one application.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelStats {
    pub near_blocks: u64,
    pub far_blocks: u64,
    pub pruned_blocks: u64,
    /// Kernel entries evaluated densely.
    pub near_entries: u64,
    /// Sum over far blocks of (|I| + |J|) * (number of expansion terms).
    pub far_terms: u64,
    /// Largest expansion order used.
    pub max_order: u64,
    /// Far blocks by path: served by the monomial caches (deferred), on monomial rows built for
    /// the block (order above the caches'), on the general scalar path (nodes over `ROWS_MAX`
    /// points, or the dimension over 8), and the points (|I| + |J|) of the general path's blocks.
    pub far_cached: u64,
    pub far_rows: u64,
    pub far_general: u64,
    pub far_general_points: u64,
    /// The order of the monomial caches (the smaller of the two trees').
    pub cache_order: u64,
}

impl KernelStats {
    fn merge(&mut self, o: &KernelStats) {
        self.near_blocks += o.near_blocks;
        self.far_blocks += o.far_blocks;
        self.pruned_blocks += o.pruned_blocks;
        self.near_entries += o.near_entries;
        self.far_terms += o.far_terms;
        self.max_order = self.max_order.max(o.max_order);
        self.far_cached += o.far_cached;
        self.far_rows += o.far_rows;
        self.far_general += o.far_general;
        self.far_general_points += o.far_general_points;
    }
}

/// How to apply the kernel.
#[derive(Debug, Clone, Copy)]
pub struct KernelOptions {
    pub eps: f64,
    /// Relative error bound (split evenly between pruning and far-field truncation).
    pub tol: f64,
    /// Dense evaluation of every entry (the reference; no pruning or expansion).
    pub exact: bool,
    /// Run target subtrees in parallel on the current rayon pool.
    pub parallel: bool,
}

struct Ctx<'a> {
    t: &'a KdTree,
    s: &'a KdTree,
    h: &'a [f64],
    inv_eps: f64,
    scale: f64,
    lse: Vec<f64>,
    lower: Vec<f64>,
    log_prune: f64,
    /// -log(#source leaves): spreads an absolute error budget over disjoint source blocks.
    log_spread: f64,
    tol_far: f64,
    mi: MultiIndex,
    /// The smaller of the two trees' monomial cache orders (0 for a cache this application may
    /// not use).
    cache_order: usize,
    /// Whether single-precision caches may serve this application (its tolerance leaves room).
    single_ok: bool,
    /// Subtracted from each far block's budget when a single-precision cache may serve it.
    rounding: f64,
    with_cost: bool,
    /// Extra nonnegative source columns in [0, 1], column-major (`k` columns of `s.n`, tree
    /// order): each target also gets sum_j exp(h_j - C_ij/eps) v_jc, from the same traversal.
    vcols: &'a [f64],
    k: usize,
}

struct Work {
    acc: Vec<Acc>,
    /// The columns' sums per target, in each target's `Acc` scale (`k` per target).
    cols: Vec<f64>,
    offset: usize,
    mono: Vec<f64>,
    mom: Vec<f64>,
    mom_c: Vec<f64>,
    mom_w: Vec<f64>,
    wt: Vec<f64>,
    rows_i: Vec<f64>,
    rows_j: Vec<f64>,
    /// Per target of a far block: the expansion's value, its exponent, the scaled exponential.
    vals: Vec<f64>,
    expo: Vec<f64>,
    scaled: Vec<f64>,
    /// Per column and target of a far block: the column's expansion value.
    vals_c: Vec<f64>,
    /// A source column times the block's weights (uncached far blocks).
    wcol: Vec<f64>,
    /// Far-field blocks left for after the traversal (see `deferred`).
    pairs: Vec<FarPair>,
    stats: KernelStats,
}

/// The result of one application, in target tree order.
pub struct Applied {
    /// log sum_j exp(h_j - C_ij/eps).
    pub log_sum: Vec<f64>,
    /// sum_j exp(h_j - C_ij/eps) C_ij / sum_j exp(h_j - C_ij/eps) (only when asked; else empty).
    pub mean_cost: Vec<f64>,
    /// Per target and column c (row-major, `k` per target): sum_j exp(h_j - C_ij/eps) v_jc /
    /// sum_j exp(h_j - C_ij/eps) (only with columns; else empty).
    pub ratios: Vec<f64>,
    pub stats: KernelStats,
}

/// Largest node whose monomial rows an uncached far-field block builds in scratch memory (at most
/// ~20 MB per buffer; at n = 1e6, eps = 0.01 many far-field nodes hold more than 4096 points).
const ROWS_MAX: usize = 1 << 16;
/// Number of target subtrees processed as independent tasks (fixed: results do not depend on
/// the thread count).
const TASKS: usize = 256;
/// Target subtrees per batch of deferred far-field blocks.
const BATCH: usize = 64;
/// Largest estimated monomial cache per tree (1.5 GB: at n = 1e6 in 2-D, tol 1e-5, order 4; the
/// whole Sinkhorn solve peaked at 2.3 GB).
const CACHE_BYTES: u128 = 1_500_000_000;
/// Tree levels of far-field nodes per point, for the estimate (measured ~9 at n = 1e5, 2-D).
const CACHE_LEVELS: usize = 9;

impl Ctx<'_> {
    /// The far-field blocks the traversal of `works` deferred: moments grouped by source node,
    /// then each task's evaluation.
    fn deferred(&self, works: &mut [Work], parallel: bool) {
        let pairs: Vec<FarPair> = works.iter().flat_map(|w| w.pairs.iter().copied()).collect();
        if pairs.is_empty() {
            return;
        }
        let n = pairs.len();
        let mut sorted: Vec<usize> = (0..n).collect();
        sorted.sort_by_key(|&k| (pairs[k].j, k));
        let mut pos = vec![0usize; n];
        let mut offs = vec![0usize; n + 1];
        for (r, &k) in sorted.iter().enumerate() {
            pos[k] = r;
            offs[r + 1] = offs[r] + self.mi.count[pairs[k].order as usize] * self.per_block();
        }
        let sorted: Vec<FarPair> = sorted.iter().map(|&k| pairs[k]).collect();
        let mut moms = vec![0.0; offs[n]];
        let mut shifts = vec![0.0; n];
        // one job per source node: disjoint slices of the moments and shifts
        let mut jobs = Vec::new();
        let (mut mrest, mut srest) = (&mut moms[..], &mut shifts[..]);
        let mut start = 0;
        for r in 1..=n {
            if r == n || sorted[r].j != sorted[start].j {
                let (m, mr) = std::mem::take(&mut mrest).split_at_mut(offs[r] - offs[start]);
                let (sh, sr) = std::mem::take(&mut srest).split_at_mut(r - start);
                (mrest, srest) = (mr, sr);
                jobs.push((start..r, m, sh));
                start = r;
            }
        }
        let job = |(g, m, sh): &mut (std::ops::Range<usize>, &mut [f64], &mut [f64]),
                   weights: &mut Vec<f64>| {
            let group = &sorted[g.clone()];
            self.moments_task(group[0].j as usize, group, m, sh, weights);
        };
        if parallel {
            jobs.par_iter_mut()
                .for_each_init(Vec::new, |wts, jb| job(jb, wts));
        } else {
            let mut wts = Vec::new();
            for jb in jobs.iter_mut() {
                job(jb, &mut wts);
            }
        }
        let mut bases = Vec::with_capacity(works.len());
        let mut base = 0;
        for w in works.iter() {
            bases.push(base);
            base += w.pairs.len();
        }
        let eval = |(w, &b): (&mut Work, &usize)| {
            let k = w.pairs.len();
            self.eval_task(w, &pos[b..b + k], &offs, &moms, &shifts);
        };
        if parallel {
            works.par_iter_mut().zip(bases.par_iter()).for_each(eval);
        } else {
            works.iter_mut().zip(bases.iter()).for_each(eval);
        }
    }
}

/// Fixes the order and precision of `tree`'s monomial cache for applications at relative
/// tolerance `tol` (the first call wins; `log_apply` calls it with its own tolerance). A caller
/// that applies the kernel at several tolerances (Sinkhorn's loose early eps stages) calls it
/// first with the finest one. The order is that of the largest admissible T at `tol`, in double
/// precision if the estimated cache fits the cap; else in single precision (half the bytes) where
/// `tol` leaves room for its rounding (`SINGLE_ROUNDING`), lowered until the cache fits. Blocks
/// of a higher order build their monomial rows each time (measured at n = 1e6, 2-D, tol 1e-5:
/// the double cache fits order 4 of the 7 needed, half the far blocks built their rows, and one
/// application took 2.6-4x the CPU time it takes with the single-precision cache of order 7).
pub fn reserve_monomial_cache(tree: &KdTree, tol: f64) {
    let mi = MultiIndex::new(tree.d);
    let fits = |p: usize, bytes: usize| {
        (tree.n as u128) * ((mi.count[p] * bytes * CACHE_LEVELS) as u128) <= CACHE_BYTES
    };
    let tol_far = 0.25 * tol;
    let finest = mi.order_for(MAX_T, tol_far).unwrap_or(0);
    let (order, single) = if fits(finest, 8) {
        (finest, false)
    } else if single_allowed(tol_far) {
        let finest = mi.order_for(MAX_T, tol_far - SINGLE_ROUNDING).unwrap_or(0);
        ((0..=finest).rev().find(|&p| fits(p, 4)).unwrap_or(0), true)
    } else {
        ((0..=finest).rev().find(|&p| fits(p, 8)).unwrap_or(0), false)
    };
    let _ = tree.mono_order.get_or_init(|| {
        // published with the order: a reader that sees the order sees the precision
        let _ = tree.mono_single.set(single);
        order
    });
}

/// Whether single-precision monomial rows fit a far-field budget `tol_far` (their rounding
/// takes at most a quarter of it).
fn single_allowed(tol_far: f64) -> bool {
    tol_far >= 4.0 * SINGLE_ROUNDING
}

/// Applies the kernel in the log domain: targets and sources in tree order, `h` per source.
pub fn log_apply(
    targets: &KdTree,
    sources: &KdTree,
    h: &[f64],
    opts: &KernelOptions,
    with_cost: bool,
) -> Result<Applied> {
    apply_with_columns(targets, sources, h, &[], 0, opts, with_cost)
}

/// Most columns `log_apply_columns` takes at once (a gradient in d <= 10 needs d).
pub const MAX_COLUMNS: usize = 16;

/// `log_apply` and, from the same traversal (the same blocks, each far-field block's moments for
/// all columns in one pass over its source rows), the ratios
/// `sum_j exp(h_j - C_ij/eps) v_jc / sum_j exp(h_j - C_ij/eps)` for `k` source columns `v_c`
/// with entries in [0, 1] (`columns`: column-major, k x sources.n, tree order).
///
/// Error: |log_sum - exact| <= tol as for `log_apply`; each ratio is within 2 tol of the exact
/// one (a pruned or truncated block's share of a column is at most its share of the weights, as
/// 0 <= v <= 1).
pub fn log_apply_columns(
    targets: &KdTree,
    sources: &KdTree,
    h: &[f64],
    columns: &[f64],
    k: usize,
    opts: &KernelOptions,
) -> Result<Applied> {
    apply_with_columns(targets, sources, h, columns, k, opts, false)
}

fn apply_with_columns(
    targets: &KdTree,
    sources: &KdTree,
    h: &[f64],
    columns: &[f64],
    k: usize,
    opts: &KernelOptions,
    with_cost: bool,
) -> Result<Applied> {
    if k > MAX_COLUMNS {
        return Err(Error::invalid(
            "columns",
            format!("at most {MAX_COLUMNS} columns, got {k}"),
        ));
    }
    if columns.len() != k * sources.n {
        return Err(Error::invalid(
            "columns",
            format!(
                "expected {k} columns of {} values, got {} values",
                sources.n,
                columns.len()
            ),
        ));
    }
    if columns.iter().any(|v| !(0.0..=1.0).contains(v)) {
        return Err(Error::invalid(
            "columns",
            "entries must lie in [0, 1] (not NaN)",
        ));
    }
    if targets.d != sources.d {
        return Err(Error::invalid(
            "y",
            format!("dimension {} differs from x's {}", sources.d, targets.d),
        ));
    }
    if h.len() != sources.n {
        return Err(Error::invalid(
            "log_v",
            format!("expected {} values, got {}", sources.n, h.len()),
        ));
    }
    if !(opts.eps > 0.0 && opts.eps.is_finite()) {
        return Err(Error::invalid(
            "eps",
            format!("must be positive and finite, got {}", opts.eps),
        ));
    }
    if h.iter().any(|v| v.is_nan() || *v == f64::INFINITY) {
        return Err(Error::invalid("log_v", "contains NaN or +infinity"));
    }
    let inv_eps = 1.0 / opts.eps;
    let (lse, leafmax) = node_lse(sources, h);
    let tol = if opts.tol > 0.0 { opts.tol } else { 1e-6 };
    let mut lower = vec![f64::NEG_INFINITY; targets.nodes.len()];
    let exact = opts.exact;
    if !exact {
        let lb: Vec<f64> = if opts.parallel {
            targets
                .leaves
                .par_iter()
                .map(|&l| leaf_lower_bound(targets, l, sources, &lse, &leafmax, inv_eps))
                .collect()
        } else {
            targets
                .leaves
                .iter()
                .map(|&l| leaf_lower_bound(targets, l, sources, &lse, &leafmax, inv_eps))
                .collect()
        };
        for (&l, &v) in targets.leaves.iter().zip(&lb) {
            lower[l] = v;
        }
        for id in (0..targets.nodes.len()).rev() {
            let node = &targets.nodes[id];
            if !node.is_leaf() {
                lower[id] = lower[node.left].min(lower[node.right]);
            }
        }
    }
    reserve_monomial_cache(targets, tol);
    reserve_monomial_cache(sources, tol);
    let single = |t: &KdTree| t.mono_single.get().copied().unwrap_or(false);
    let single_ok = single_allowed(0.25 * tol);
    // the order a usable cache serves (none: a single-precision cache at too fine a tolerance)
    let cache_order = |t: &KdTree| {
        if single(t) && !single_ok {
            0
        } else {
            *t.mono_order.get().unwrap_or(&0)
        }
    };
    let ctx = Ctx {
        t: targets,
        s: sources,
        h,
        inv_eps,
        scale: (2.0 * inv_eps).sqrt(),
        lse,
        lower,
        log_prune: (0.5 * tol).ln() - (sources.leaves.len() as f64).ln(),
        log_spread: -(sources.leaves.len() as f64).ln(),
        tol_far: 0.25 * tol,
        mi: MultiIndex::new(targets.d),
        cache_order: cache_order(targets).min(cache_order(sources)),
        single_ok,
        rounding: if single_ok && (single(targets) || single(sources)) {
            SINGLE_ROUNDING
        } else {
            0.0
        },
        with_cost,
        vcols: columns,
        k,
    };
    let tasks = targets.frontier(TASKS);
    let run = |&i: &usize| -> Work {
        let node = &targets.nodes[i];
        let mut acc = vec![Acc::EMPTY; node.len()];
        // start each target's scale at its leaf's lower bound: most additions then need no log
        for &l in &targets.leaves {
            let leaf = &targets.nodes[l];
            if leaf.start >= node.start && leaf.end <= node.end && ctx.lower[l].is_finite() {
                for a in &mut acc[leaf.start - node.start..leaf.end - node.start] {
                    a.m = ctx.lower[l];
                }
            }
        }
        let mut w = Work {
            acc,
            cols: vec![0.0; node.len() * k],
            offset: node.start,
            mono: Vec::new(),
            mom: Vec::new(),
            mom_c: Vec::new(),
            mom_w: Vec::new(),
            wt: Vec::new(),
            rows_i: Vec::new(),
            rows_j: Vec::new(),
            vals: Vec::new(),
            expo: Vec::new(),
            scaled: Vec::new(),
            vals_c: Vec::new(),
            wcol: Vec::new(),
            pairs: Vec::new(),
            stats: KernelStats::default(),
        };
        ctx.run_task(i, exact, &mut w);
        w
    };
    let mut log_sum = vec![f64::NEG_INFINITY; targets.n];
    let mut mean_cost = if with_cost {
        vec![0.0; targets.n]
    } else {
        Vec::new()
    };
    let mut ratios = vec![0.0; targets.n * k];
    let mut stats = KernelStats::default();
    // batches of target subtrees (fixed, so results do not depend on the thread count) bound the
    // memory of the deferred blocks' moments
    for batch in tasks.chunks(BATCH) {
        let mut works: Vec<Work> = if opts.parallel {
            batch.par_iter().map(run).collect()
        } else {
            batch.iter().map(run).collect()
        };
        ctx.deferred(&mut works, opts.parallel);
        for (&i, w) in batch.iter().zip(works) {
            let start = targets.nodes[i].start;
            for (r, a) in w.acc.iter().enumerate() {
                log_sum[start + r] = a.log();
                if with_cost {
                    mean_cost[start + r] = if a.s > 0.0 { a.q / a.s } else { 0.0 };
                }
            }
            if k > 0 {
                for (r, (a, c)) in w.acc.iter().zip(w.cols.chunks_exact(k)).enumerate() {
                    if a.s > 0.0 {
                        for (out, v) in ratios[(start + r) * k..(start + r + 1) * k]
                            .iter_mut()
                            .zip(c)
                        {
                            *out = (v / a.s).clamp(0.0, 1.0);
                        }
                    }
                }
            }
            stats.merge(&w.stats);
        }
    }
    stats.cache_order = ctx.cache_order as u64;
    Ok(Applied {
        log_sum,
        mean_cost,
        ratios,
        stats,
    })
}

/// `log_apply` in the callers' point order: `h` per source point and the sums per target point,
/// as given to `KdTree::build`; the permutations to and from tree order happen here.
pub fn log_apply_in_order(
    targets: &KdTree,
    sources: &KdTree,
    h: &[f64],
    opts: &KernelOptions,
) -> Result<(Vec<f64>, KernelStats)> {
    if h.len() != sources.n {
        return Err(Error::invalid(
            "log_v",
            format!("expected {} values, got {}", sources.n, h.len()),
        ));
    }
    let in_tree_order: Vec<f64> = sources.perm.iter().map(|&p| h[p]).collect();
    let applied = log_apply(targets, sources, &in_tree_order, opts, false)?;
    let mut out = vec![0.0; targets.n];
    for (&p, &v) in targets.perm.iter().zip(&applied.log_sum) {
        out[p] = v;
    }
    Ok((out, applied.stats))
}

/// `log_apply_columns` in the callers' point order: `h` per source point, `columns` column-major
/// (k x sources.n) in source point order; returns the log sums per target point and the ratios
/// (row-major, k per target point).
pub fn log_apply_columns_in_order(
    targets: &KdTree,
    sources: &KdTree,
    h: &[f64],
    columns: &[f64],
    k: usize,
    opts: &KernelOptions,
) -> Result<(Vec<f64>, Vec<f64>, KernelStats)> {
    if h.len() != sources.n {
        return Err(Error::invalid(
            "log_v",
            format!("expected {} values, got {}", sources.n, h.len()),
        ));
    }
    if columns.len() != k * sources.n {
        return Err(Error::invalid(
            "columns",
            format!("expected {k} columns of {} values", sources.n),
        ));
    }
    let m = sources.n;
    let in_tree_order: Vec<f64> = sources.perm.iter().map(|&p| h[p]).collect();
    let cols_tree: Vec<f64> = (0..k)
        .flat_map(|c| sources.perm.iter().map(move |&p| columns[c * m + p]))
        .collect();
    let applied = log_apply_columns(targets, sources, &in_tree_order, &cols_tree, k, opts)?;
    let mut out = vec![0.0; targets.n];
    let mut ratios = vec![0.0; targets.n * k];
    for (r, &p) in targets.perm.iter().enumerate() {
        out[p] = applied.log_sum[r];
        ratios[p * k..(p + 1) * k].copy_from_slice(&applied.ratios[r * k..(r + 1) * k]);
    }
    Ok((out, ratios, applied.stats))
}

#[cfg(test)]
mod tests;
