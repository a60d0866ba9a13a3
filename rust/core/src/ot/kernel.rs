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
//! Nothing of size n x m is stored: memory is the trees plus O(n) work arrays. Work is split over
//! a fixed set of target subtrees (independent of the thread count), each traversed sequentially,
//! so results are bitwise deterministic for any thread count.

use super::tree::{box_max_dist2, box_min_dist2, KdTree};
use crate::error::{Error, Result};
use rayon::prelude::*;

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
}

impl KernelStats {
    fn merge(&mut self, o: &KernelStats) {
        self.near_blocks += o.near_blocks;
        self.far_blocks += o.far_blocks;
        self.pruned_blocks += o.pruned_blocks;
        self.near_entries += o.near_entries;
        self.far_terms += o.far_terms;
        self.max_order = self.max_order.max(o.max_order);
    }
}

/// Multi-indices of total degree <= p_max in d variables, sorted by degree; each (but the first)
/// is its parent plus one unit on `axis`.
struct MultiIndex {
    parent: Vec<usize>,
    axis: Vec<usize>,
    /// 1 / (new exponent on `axis`): turns parent's w^a/a! into the child's.
    inv: Vec<f64>,
    /// count[p] = number of multi-indices of degree <= p.
    count: Vec<usize>,
    /// Total degree and 1/alpha! of each multi-index.
    degree: Vec<usize>,
    inv_factorial: Vec<f64>,
}

const MAX_TERMS: usize = 4096;
const MAX_ORDER: usize = 40;
/// Largest T = 2 r_I r_J / eps expanded. Measured on 2-D Sinkhorn potentials at n = 1e4..4e4
/// (tol 1e-7): T = 0.5 is fastest (0.25: 2.3x and 1: 1.3x slower; 4: 5x); it also keeps the
/// rounding of the moments (which grows like e^(2T)) negligible.
const MAX_T: f64 = 0.5;

impl MultiIndex {
    fn new(d: usize) -> MultiIndex {
        let mut exps: Vec<Vec<u32>> = vec![vec![0; d]];
        let mut mi = MultiIndex {
            parent: vec![0],
            axis: vec![0],
            inv: vec![1.0],
            count: vec![1],
            degree: Vec::new(),
            inv_factorial: Vec::new(),
        };
        let mut prev_start = 0;
        for _p in 1..=MAX_ORDER {
            let prev_end = exps.len();
            for q in prev_start..prev_end {
                // Generate children with axis >= last nonzero axis of q (each multi-index once).
                let last = (0..d).rev().find(|&k| exps[q][k] > 0).unwrap_or(0);
                for k in last..d {
                    let mut e = exps[q].clone();
                    e[k] += 1;
                    mi.parent.push(q);
                    mi.axis.push(k);
                    mi.inv.push(1.0 / e[k] as f64);
                    exps.push(e);
                }
            }
            prev_start = prev_end;
            if exps.len() > MAX_TERMS {
                exps.truncate(prev_end);
                mi.parent.truncate(prev_end);
                mi.axis.truncate(prev_end);
                mi.inv.truncate(prev_end);
                break;
            }
            mi.count.push(exps.len());
        }
        mi.degree = vec![0; mi.parent.len()];
        mi.inv_factorial = vec![1.0; mi.parent.len()];
        for a in 1..mi.parent.len() {
            mi.degree[a] = mi.degree[mi.parent[a]] + 1;
            mi.inv_factorial[a] = mi.inv_factorial[mi.parent[a]] * mi.inv[a];
        }
        mi
    }

    /// The smallest order whose Taylor remainder bound e^T T^(p+1)/(p+1)! is <= tol, if available.
    fn order_for(&self, t: f64, tol: f64) -> Option<usize> {
        if t > MAX_T {
            return None;
        }
        let mut term = t.exp(); // e^T T^(p+1)/(p+1)! for p = -1
        for p in 0..self.count.len() {
            term *= t / (p + 1) as f64;
            if term <= tol {
                return Some(p);
            }
        }
        None
    }
}

/// exp(x) for x <= ~709, to about 2 ulp (0 below -708): Cody-Waite reduction to |r| <= ln2/2
/// and a degree-13 Taylor polynomial, branch-free so that loops over it vectorize.
#[cfg(test)]
fn exp_fast(x: f64) -> f64 {
    exp_fast_with::<false>(x)
}

/// a * b + c, fused when the caller runs with FMA (`F`), else two roundings.
#[inline(always)]
fn madd<const F: bool>(a: f64, b: f64, c: f64) -> f64 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `exp_fast` with the Horner steps fused when `F` (inside an FMA-enabled caller).
#[inline(always)]
#[allow(clippy::excessive_precision)] // the Cody-Waite constants as published
fn exp_fast_with<const F: bool>(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer
    let xc = x.clamp(-708.0, 709.0);
    let t = xc * LOG2E + MAGIC;
    let k = t - MAGIC;
    let r = madd::<F>(-k, LN2_LO, madd::<F>(-k, LN2_HI, xc));
    let mut p = 1.0 / 6_227_020_800.0; // 1/13!
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = madd::<F>(p, r, c);
    }
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    let v = p * scale;
    if x < -708.0 {
        0.0
    } else {
        v
    }
}

/// Dot product with four independent partial sums (vectorizes; the order is fixed, so results
/// stay deterministic).
#[inline(always)]
fn dot<const F: bool>(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0.0f64; 4];
    let chunks = n / 4;
    for c in 0..chunks {
        for l in 0..4 {
            s[l] = madd::<F>(a[4 * c + l], b[4 * c + l], s[l]);
        }
    }
    let mut tail = 0.0;
    for k in 4 * chunks..n {
        tail = madd::<F>(a[k], b[k], tail);
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// `out[a] = sum_q weights[q] * rows[q * stride + a]` for a < out.len(): blocks of 8 columns kept
/// in registers over all rows, four rows at a time (independent chains hide the FMA latency).
#[inline(always)]
fn weighted_column_sums<const F: bool>(
    rows: &[f64],
    stride: usize,
    weights: &[f64],
    out: &mut [f64],
) {
    const W: usize = 8;
    let terms = out.len();
    let n = weights.len();
    let mut c = 0;
    while c < terms {
        let width = W.min(stride - c);
        if width == W {
            let mut acc = [[0.0f64; W]; 4];
            let mut q = 0;
            while q + 4 <= n {
                for u in 0..4 {
                    let wq = weights[q + u];
                    let row = &rows[(q + u) * stride + c..(q + u) * stride + c + W];
                    for l in 0..W {
                        acc[u][l] = madd::<F>(wq, row[l], acc[u][l]);
                    }
                }
                q += 4;
            }
            for (qq, &wq) in weights.iter().enumerate().skip(q) {
                let row = &rows[qq * stride + c..qq * stride + c + W];
                for l in 0..W {
                    acc[0][l] = madd::<F>(wq, row[l], acc[0][l]);
                }
            }
            for l in 0..W.min(terms - c) {
                out[c + l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
            }
        } else {
            for l in 0..width.min(terms - c) {
                out[c + l] = (0..n).fold(0.0, |sum, q| {
                    madd::<F>(weights[q], rows[q * stride + c + l], sum)
                });
            }
        }
        c += W;
    }
}

/// Accumulates log-sum-exp contributions for one target point: value = exp(m) * s; q is the
/// optional cost accumulator in the same scale.
#[derive(Clone, Copy)]
struct Acc {
    m: f64,
    s: f64,
    q: f64,
}

impl Acc {
    const EMPTY: Acc = Acc {
        m: f64::NEG_INFINITY,
        s: 0.0,
        q: 0.0,
    };
    #[inline]
    fn add(&mut self, log_value: f64, cost: f64) {
        // adds exp(log_value) to s and exp(log_value) * cost to q
        if log_value.is_nan() || log_value == f64::NEG_INFINITY {
            return;
        }
        if log_value > self.m {
            let r = (self.m - log_value).exp();
            self.s = self.s * r + 1.0;
            self.q = self.q * r + cost;
            self.m = log_value;
        } else {
            let e = (log_value - self.m).exp();
            self.s += e;
            self.q += e * cost;
        }
    }
    /// Adds exp(log_base) * val (val >= 0) without a logarithm: in the current scale when it stays
    /// far from overflow (the scale starts at a lower bound of the target's total, so this is the
    /// common case), else through `add`.
    #[inline(always)]
    fn add_scaled<const F: bool>(&mut self, log_base: f64, val: f64) {
        let t = log_base - self.m;
        if t <= 600.0 {
            self.s = madd::<F>(exp_fast_with::<F>(t), val, self.s);
        } else if val > 0.0 {
            self.add(log_base + val.ln(), 0.0);
        }
    }
    fn log(&self) -> f64 {
        if self.s > 0.0 {
            self.m + self.s.ln()
        } else {
            f64::NEG_INFINITY
        }
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
    with_cost: bool,
}

struct Work {
    acc: Vec<Acc>,
    offset: usize,
    mono: Vec<f64>,
    mom: Vec<f64>,
    mom_c: Vec<f64>,
    mom_w: Vec<f64>,
    wt: Vec<f64>,
    rows_i: Vec<f64>,
    rows_j: Vec<f64>,
    stats: KernelStats,
}

/// log-sum-exp of each source node's weights h (node order), and per node the largest leaf value.
fn node_lse(tree: &KdTree, h: &[f64]) -> (Vec<f64>, Vec<f64>) {
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
fn leaf_lower_bound(
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

impl<'a> Ctx<'a> {
    #[inline(always)]
    fn dense<const F: bool>(&self, i: usize, j: usize, w: &mut Work) {
        let (t, s, d) = (self.t, self.s, self.t.d);
        let (ni, nj) = (&t.nodes[i], &s.nodes[j]);
        w.stats.near_blocks += 1;
        w.stats.near_entries += (ni.len() * nj.len()) as u64;
        let hs = &self.h[nj.start..nj.end];
        let ys = &s.points[nj.start * d..nj.end * d];
        w.wt.resize(nj.len(), 0.0);
        w.mono.resize(nj.len(), 0.0);
        for p in ni.start..ni.end {
            let x = t.point(p);
            // z_q = h_q - C_pq/eps (and C_pq kept for the cost), then one log-sum-exp per row
            let mut zmax = f64::NEG_INFINITY;
            for (q, (z, c)) in w.wt.iter_mut().zip(w.mono.iter_mut()).enumerate() {
                let y = &ys[q * d..(q + 1) * d];
                let mut cq = 0.0;
                for k in 0..d {
                    let t = x[k] - y[k];
                    cq += t * t;
                }
                *c = cq;
                *z = hs[q] - cq * self.inv_eps;
                zmax = zmax.max(*z);
            }
            if zmax == f64::NEG_INFINITY {
                continue;
            }
            let acc = &mut w.acc[p - w.offset];
            // sum in the accumulator's scale when that cannot overflow (no log, no rescaling)
            let in_scale = zmax - acc.m <= 600.0;
            let reference = if in_scale { acc.m } else { zmax };
            for z in w.wt.iter_mut() {
                *z = exp_fast_with::<F>(*z - reference); // a map: vectorizes
            }
            let (mut sum, mut qsum) = (0.0, 0.0);
            for (e, c) in w.wt.iter().zip(w.mono.iter()) {
                sum += e;
                qsum += e * c;
            }
            if in_scale {
                acc.s += sum;
                acc.q += qsum;
            } else if sum > 0.0 {
                acc.add(zmax + sum.ln(), qsum / sum);
            }
        }
    }

    /// The monomial rows u^alpha (degree <= order) of the points of node `id`, into `out`.
    #[inline(always)]
    fn monomial_rows(&self, tree: &KdTree, id: usize, order: usize, out: &mut Vec<f64>) {
        let terms = self.mi.count[order];
        let node = &tree.nodes[id];
        let c = tree.center(id);
        out.clear();
        out.resize(node.len() * terms, 0.0);
        let (parent, axis) = (&self.mi.parent[..terms], &self.mi.axis[..terms]);
        for (r, p) in (node.start..node.end).enumerate() {
            let x = tree.point(p);
            let mut u = [0.0f64; 8];
            for k in 0..tree.d {
                u[k] = x[k] - c[k];
            }
            let row = &mut out[r * terms..(r + 1) * terms];
            row[0] = 1.0;
            for a in 1..terms {
                row[a] = row[parent[a]] * u[axis[a]];
            }
        }
    }

    /// The cached monomial rows of node `id` of `tree` (filled on first use), if the cache serves `order`.
    fn cached<'t>(&self, tree: &'t KdTree, id: usize, order: usize) -> Option<&'t [f64]> {
        let cache_order = *tree.mono_order.get()?;
        if order > cache_order {
            return None;
        }
        let stride = self.mi.count[cache_order];
        let mi = &self.mi;
        let rows = tree.mono_cache[id].get_or_init(|| {
            let node = &tree.nodes[id];
            let c = tree.center(id);
            let mut out = vec![0.0; node.len() * stride];
            for (r, p) in (node.start..node.end).enumerate() {
                let x = tree.point(p);
                let row = &mut out[r * stride..(r + 1) * stride];
                row[0] = 1.0;
                for a in 1..stride {
                    row[a] = row[mi.parent[a]] * (x[mi.axis[a]] - c[mi.axis[a]]);
                }
            }
            out.into_boxed_slice()
        });
        Some(rows)
    }

    /// Far-field block from cached monomials: the moments are one pass of axpys over contiguous
    /// rows, the evaluation one dot product per target.
    #[inline(always)]
    fn far_cached<const F: bool>(
        &self,
        i: usize,
        j: usize,
        order: usize,
        w: &mut Work,
        rows_i: &[f64],
        rows_j: &[f64],
    ) {
        let (t, s, d) = (self.t, self.s, self.t.d);
        let (ni, nj) = (&t.nodes[i], &s.nodes[j]);
        let terms = self.mi.count[order];
        let stride_i = rows_i.len() / ni.len();
        let stride_j = rows_j.len() / nj.len();
        let (ci, cj) = (t.center(i), s.center(j));
        let mut dvec = [0.0f64; 8];
        let dvec = if d <= 8 {
            &mut dvec[..d]
        } else {
            return self.far::<F>(i, j, order, w);
        };
        for k in 0..d {
            dvec[k] = ci[k] - cj[k];
        }
        let d2: f64 = dvec.iter().map(|v| v * v).sum();
        let Some(shift) = self.start_far_block(i, j, order, &dvec, w) else {
            return;
        };
        w.mom.clear();
        w.mom.resize(terms, 0.0);
        for e in w.wt.iter_mut() {
            *e = exp_fast_with::<F>(*e - shift);
        }
        weighted_column_sums::<F>(rows_j, stride_j, &w.wt, &mut w.mom);
        // exp(u~.w~) = sum_alpha (2/eps)^|alpha| u^alpha w^alpha / alpha!
        let two_over_eps = 2.0 * self.inv_eps;
        let mut scale = 1.0;
        let mut deg = 0;
        for a in 0..terms {
            while self.mi.degree[a] > deg {
                scale *= two_over_eps;
                deg += 1;
            }
            w.mom[a] *= scale * self.mi.inv_factorial[a];
        }
        for (r, p) in (ni.start..ni.end).enumerate() {
            let row = &rows_i[r * stride_i..r * stride_i + terms];
            let val = dot::<F>(row, &w.mom[..terms]);
            if val > 0.0 {
                let x = t.point(p);
                let (mut u2, mut ud) = (0.0, 0.0);
                for k in 0..d {
                    let uk = x[k] - ci[k];
                    u2 += uk * uk;
                    ud += uk * dvec[k];
                }
                let base = shift - (d2 + u2 + 2.0 * ud) * self.inv_eps;
                w.acc[p - w.offset].add_scaled::<F>(base, val);
            }
        }
    }

    /// Source side of far block (i, j) with centre offset D = c_I - c_J: e_q = h_q - (|w_q|^2 -
    /// 2 w_q.D)/eps into `w.wt` (w_q = y_q - c_J), counted in the statistics; returns their
    /// maximum, the block's shift, or None (counted as pruned) when no source has weight.
    #[inline(always)]
    fn start_far_block(
        &self,
        i: usize,
        j: usize,
        order: usize,
        dvec: &[f64],
        w: &mut Work,
    ) -> Option<f64> {
        let shift = self.source_exponents(j, dvec, &mut w.wt);
        if shift == f64::NEG_INFINITY || shift.is_nan() {
            w.stats.pruned_blocks += 1;
            return None;
        }
        w.stats.far_blocks += 1;
        w.stats.far_terms +=
            ((self.t.nodes[i].len() + self.s.nodes[j].len()) * self.mi.count[order]) as u64;
        w.stats.max_order = w.stats.max_order.max(order as u64);
        Some(shift)
    }

    #[inline(always)]
    fn source_exponents(&self, j: usize, dvec: &[f64], out: &mut Vec<f64>) -> f64 {
        let (s, nj) = (self.s, &self.s.nodes[j]);
        let cj = s.center(j);
        out.clear();
        let mut shift = f64::NEG_INFINITY;
        for q in nj.start..nj.end {
            let y = s.point(q);
            let (mut w2, mut wd) = (0.0, 0.0);
            for k in 0..dvec.len() {
                let wk = y[k] - cj[k];
                w2 += wk * wk;
                wd += wk * dvec[k];
            }
            let e = self.h[q] - (w2 - 2.0 * wd) * self.inv_eps;
            shift = shift.max(e);
            out.push(e);
        }
        shift
    }

    #[inline(always)]
    fn far<const F: bool>(&self, i: usize, j: usize, order: usize, w: &mut Work) {
        let (t, s, d) = (self.t, self.s, self.t.d);
        let (ni, nj) = (&t.nodes[i], &s.nodes[j]);
        let terms = self.mi.count[order];
        let (ci, cj) = (t.center(i), s.center(j));
        let dvec: Vec<f64> = (0..d).map(|k| ci[k] - cj[k]).collect();
        let d2: f64 = dvec.iter().map(|v| v * v).sum();
        let Some(shift) = self.start_far_block(i, j, order, &dvec, w) else {
            return;
        };
        let mi = &self.mi;
        w.mom.clear();
        w.mom.resize(terms, 0.0);
        if self.with_cost {
            w.mom_c.clear();
            w.mom_c.resize(terms, 0.0);
            w.mom_w.clear();
            w.mom_w.resize(terms * d, 0.0);
        }
        w.mono.resize(terms, 0.0);
        for (idx, q) in (nj.start..nj.end).enumerate() {
            let weight = exp_fast_with::<F>(w.wt[idx] - shift);
            if weight == 0.0 {
                continue;
            }
            let y = s.point(q);
            w.mono[0] = weight;
            for a in 1..terms {
                let k = mi.axis[a];
                w.mono[a] = w.mono[mi.parent[a]] * ((y[k] - cj[k]) * self.scale) * mi.inv[a];
            }
            for a in 0..terms {
                w.mom[a] += w.mono[a];
            }
            if self.with_cost {
                let (mut w2, mut wd) = (0.0, 0.0);
                for k in 0..d {
                    let wk = y[k] - cj[k];
                    w2 += wk * wk;
                    wd += wk * dvec[k];
                }
                let cw = w2 - 2.0 * wd;
                for a in 0..terms {
                    w.mom_c[a] += w.mono[a] * cw;
                }
                for k in 0..d {
                    let wk = y[k] - cj[k];
                    for a in 0..terms {
                        w.mom_w[k * terms + a] += w.mono[a] * wk;
                    }
                }
            }
        }
        // target side
        let mut u = vec![0.0; d];
        for p in ni.start..ni.end {
            let x = t.point(p);
            let (mut u2, mut ud) = (0.0, 0.0);
            for k in 0..d {
                u[k] = x[k] - ci[k];
                u2 += u[k] * u[k];
                ud += u[k] * dvec[k];
            }
            let mut mono_prev = std::mem::take(&mut w.mono);
            mono_prev[0] = 1.0;
            let mut val = w.mom[0];
            for a in 1..terms {
                let k = mi.axis[a];
                mono_prev[a] = mono_prev[mi.parent[a]] * (u[k] * self.scale);
                val += mono_prev[a] * w.mom[a];
            }
            let mut cost = 0.0;
            if self.with_cost && val > 0.0 {
                let mut vc = 0.0;
                for a in 0..terms {
                    vc += mono_prev[a] * w.mom_c[a];
                }
                let mut vw = 0.0;
                for k in 0..d {
                    let mut sk = 0.0;
                    for a in 0..terms {
                        sk += mono_prev[a] * w.mom_w[k * terms + a];
                    }
                    vw += u[k] * sk;
                }
                // sum_j K v C / sum_j K v, C = |D|^2 + |u|^2 + 2u.D + (|w|^2 - 2w.D) - 2u.w
                cost = d2 + u2 + 2.0 * ud + (vc - 2.0 * vw) / val;
            }
            w.mono = mono_prev;
            if val > 0.0 {
                let base = shift - (d2 + u2 + 2.0 * ud) * self.inv_eps;
                w.acc[p - w.offset].add(base + val.ln(), cost);
            }
        }
    }

    /// One task: the dense reference or the traversal, with AVX2 + FMA code where the CPU has
    /// them (checked at run time; the wheel targets baseline x86-64).
    fn run_task(&self, i: usize, exact: bool, w: &mut Work) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were just detected
            unsafe { self.run_task_avx2(i, exact, w) };
            return;
        }
        if exact {
            self.dense::<false>(i, 0, w);
        } else {
            self.visit::<false>(i, 0, w);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn run_task_avx2(&self, i: usize, exact: bool, w: &mut Work) {
        if exact {
            self.dense::<true>(i, 0, w);
        } else {
            self.visit_avx2(i, 0, w);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn visit_avx2(&self, i: usize, j: usize, w: &mut Work) {
        self.visit::<true>(i, j, w);
    }

    /// Recursion of `visit`, staying in the AVX2 + FMA build when `F`.
    #[inline(always)]
    fn recurse<const F: bool>(&self, i: usize, j: usize, w: &mut Work) {
        #[cfg(target_arch = "x86_64")]
        if F {
            // SAFETY: F is only true inside `visit_avx2`, reached after the run-time check
            unsafe { self.visit_avx2(i, j, w) };
            return;
        }
        self.visit::<false>(i, j, w);
    }

    #[inline(always)]
    fn visit<const F: bool>(&self, i: usize, j: usize, w: &mut Work) {
        let (ni, nj) = (&self.t.nodes[i], &self.s.nodes[j]);
        let ub = self.lse[j] - box_min_dist2(self.t, i, self.s, j) * self.inv_eps;
        if ub == f64::NEG_INFINITY || ub <= self.lower[i] + self.log_prune {
            w.stats.pruned_blocks += 1;
            return;
        }
        let (a, b) = (ni.len() as f64, nj.len() as f64);
        let tt = 2.0 * ni.radius * nj.radius * self.inv_eps;
        let dense_cost = a * b * (2.0 * self.t.d as f64 + 20.0);
        // Error budget of this block: tol_far relative to its own contribution, or, when its upper
        // bound is small next to the targets' totals, tol_far * exp(lower_I) / #source leaves in
        // absolute terms (at most #source-leaves such disjoint blocks per target, so together they
        // add at most tol_far relative). Far-away blocks then get low expansion orders.
        let loosen = (self.lower[i] + self.log_spread - ub).exp();
        let block_tol = (self.tol_far * loosen.max(1.0)).min(0.5);
        // (Allowing loosened blocks a larger T, up to 3, was measured to add work: big blocks then
        // take the expansion before their sub-blocks could be pruned.)
        if let Some(order) = self.mi.order_for(tt, block_tol) {
            let terms = self.mi.count[order] as f64;
            let factor = if self.with_cost {
                2.0 + self.t.d as f64
            } else {
                2.0
            };
            let far_cost = (a + b) * (factor * terms + 20.0);
            if far_cost < dense_cost {
                if !self.with_cost {
                    if let (Some(ri), Some(rj)) =
                        (self.cached(self.t, i, order), self.cached(self.s, j, order))
                    {
                        self.far_cached::<F>(i, j, order, w, ri, rj);
                        return;
                    }
                    if self.t.d <= 8 && ni.len().max(nj.len()) <= ROWS_MAX {
                        // no cache (too large): the same kernel on rows built for this block
                        // (blocks above ROWS_MAX points, rare, take `far`: no n-sized scratch)
                        let (mut ri, mut rj) =
                            (std::mem::take(&mut w.rows_i), std::mem::take(&mut w.rows_j));
                        self.monomial_rows(self.t, i, order, &mut ri);
                        self.monomial_rows(self.s, j, order, &mut rj);
                        self.far_cached::<F>(i, j, order, w, &ri, &rj);
                        (w.rows_i, w.rows_j) = (ri, rj);
                        return;
                    }
                }
                self.far::<F>(i, j, order, w);
                return;
            }
            if ni.is_leaf() || nj.is_leaf() || far_cost < 4.0 * dense_cost {
                // splitting only makes blocks where the expansion pays even less: go dense
                self.dense::<F>(i, j, w);
                return;
            }
        }
        match (ni.is_leaf(), nj.is_leaf()) {
            (true, true) => self.dense::<F>(i, j, w),
            (true, false) => {
                self.recurse::<F>(i, nj.left, w);
                self.recurse::<F>(i, nj.right, w);
            }
            (false, true) => {
                self.recurse::<F>(ni.left, j, w);
                self.recurse::<F>(ni.right, j, w);
            }
            (false, false) => {
                if ni.radius >= nj.radius {
                    self.recurse::<F>(ni.left, j, w);
                    self.recurse::<F>(ni.right, j, w);
                } else {
                    self.recurse::<F>(i, nj.left, w);
                    self.recurse::<F>(i, nj.right, w);
                }
            }
        }
    }
}

/// The result of one application, in target tree order.
pub struct Applied {
    /// log sum_j exp(h_j - C_ij/eps).
    pub log_sum: Vec<f64>,
    /// sum_j exp(h_j - C_ij/eps) C_ij / sum_j exp(h_j - C_ij/eps) (only when asked; else empty).
    pub mean_cost: Vec<f64>,
    pub stats: KernelStats,
}

/// Largest node whose monomial rows an uncached far-field block builds in scratch memory (at most
/// ~20 MB per buffer; at n = 1e6, eps = 0.01 many far-field nodes hold more than 4096 points).
const ROWS_MAX: usize = 1 << 16;
/// Number of target subtrees processed as independent tasks (fixed: results do not depend on
/// the thread count).
const TASKS: usize = 256;
/// Largest estimated monomial cache per tree (1.5 GB: at n = 1e6 in 2-D, tol 1e-5, order 4; the
/// whole Sinkhorn solve peaked at 2.3 GB).
const CACHE_BYTES: u128 = 1_500_000_000;
/// Tree levels of far-field nodes per point, for the estimate (measured ~9 at n = 1e5, 2-D).
const CACHE_LEVELS: usize = 9;

/// Fixes the order of `tree`'s monomial cache for applications at relative tolerance `tol` (the
/// first call wins; `log_apply` calls it with its own tolerance). A caller that applies the kernel
/// at several tolerances (Sinkhorn's loose early eps stages) calls it first with the finest one.
/// The order is that of the largest admissible T at `tol`, lowered until the estimated cache fits
/// the cap; blocks of a higher order build their monomial rows each time (measured: a cache of
/// order 4 instead of none makes the n = 1e6 solve over 1.6x faster).
pub fn reserve_monomial_cache(tree: &KdTree, tol: f64) {
    let mi = MultiIndex::new(tree.d);
    let finest = mi.order_for(MAX_T, 0.25 * tol).unwrap_or(0);
    // the largest order that fits: blocks of higher order build their rows each time
    let fits =
        |p: usize| (tree.n as u128) * ((mi.count[p] * 8 * CACHE_LEVELS) as u128) <= CACHE_BYTES;
    let order = (0..=finest).rev().find(|&p| fits(p)).unwrap_or(0);
    let _ = tree.mono_order.get_or_init(|| order);
}
/// Applies the kernel in the log domain: targets and sources in tree order, `h` per source.
pub fn log_apply(
    targets: &KdTree,
    sources: &KdTree,
    h: &[f64],
    opts: &KernelOptions,
    with_cost: bool,
) -> Result<Applied> {
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
        with_cost,
    };
    reserve_monomial_cache(targets, tol);
    reserve_monomial_cache(sources, tol);
    let tasks = targets.frontier(TASKS);
    let run = |&i: &usize| -> (Vec<Acc>, KernelStats) {
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
            offset: node.start,
            mono: Vec::new(),
            mom: Vec::new(),
            mom_c: Vec::new(),
            mom_w: Vec::new(),
            wt: Vec::new(),
            rows_i: Vec::new(),
            rows_j: Vec::new(),
            stats: KernelStats::default(),
        };
        ctx.run_task(i, exact, &mut w);
        (w.acc, w.stats)
    };
    let parts: Vec<(Vec<Acc>, KernelStats)> = if opts.parallel {
        tasks.par_iter().map(run).collect()
    } else {
        tasks.iter().map(run).collect()
    };
    let mut log_sum = vec![f64::NEG_INFINITY; targets.n];
    let mut mean_cost = if with_cost {
        vec![0.0; targets.n]
    } else {
        Vec::new()
    };
    let mut stats = KernelStats::default();
    for (&i, (acc, st)) in tasks.iter().zip(parts) {
        let start = targets.nodes[i].start;
        for (k, a) in acc.iter().enumerate() {
            log_sum[start + k] = a.log();
            if with_cost {
                mean_cost[start + k] = if a.s > 0.0 { a.q / a.s } else { 0.0 };
            }
        }
        stats.merge(&st);
    }
    Ok(Applied {
        log_sum,
        mean_cost,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    fn check(n: usize, m: usize, d: usize, eps: f64, spread: f64) {
        let mut seed = 7u64;
        let x: Vec<f64> = (0..n * d).map(|_| lcg(&mut seed)).collect();
        let y: Vec<f64> = (0..m * d).map(|_| lcg(&mut seed)).collect();
        let tx = KdTree::build(&x, d, 16).unwrap();
        let ty = KdTree::build(&y, d, 16).unwrap();
        let h: Vec<f64> = (0..m).map(|_| spread * (lcg(&mut seed) - 0.5)).collect();
        let tol = 1e-6;
        let approx = log_apply(
            &tx,
            &ty,
            &h,
            &KernelOptions {
                eps,
                tol,
                exact: false,
                parallel: false,
            },
            true,
        )
        .unwrap();
        let exact = log_apply(
            &tx,
            &ty,
            &h,
            &KernelOptions {
                eps,
                tol,
                exact: true,
                parallel: false,
            },
            true,
        )
        .unwrap();
        for k in 0..n {
            let e = (approx.log_sum[k] - exact.log_sum[k]).abs();
            assert!(e <= tol, "n={n} d={d} eps={eps}: error {e} at {k}");
            let c = (approx.mean_cost[k] - exact.mean_cost[k]).abs();
            assert!(c <= 1e-5 * (1.0 + exact.mean_cost[k]), "cost error {c}");
        }
        assert!(approx.stats.far_blocks + approx.stats.pruned_blocks > 0 || n < 100);
        // without the cost, far-field blocks run from the cached monomials
        let cached = log_apply(
            &tx,
            &ty,
            &h,
            &KernelOptions {
                eps,
                tol,
                exact: false,
                parallel: false,
            },
            false,
        )
        .unwrap();
        assert!(tx.mono_order.get().is_some());
        assert_eq!(
            cached.stats.far_blocks > 0,
            tx.mono_cache.iter().any(|c| c.get().is_some())
        );
        for k in 0..n {
            assert!((cached.log_sum[k] - exact.log_sum[k]).abs() <= tol);
        }
    }

    #[test]
    fn matches_dense() {
        check(1500, 1300, 2, 0.01, 40.0);
        check(1500, 1300, 2, 0.05, 40.0);
        check(800, 900, 1, 0.001, 40.0);
        check(1000, 1000, 3, 0.02, 40.0);
    }

    #[test]
    fn uncached_far_field_matches_dense() {
        // a cache of order 0 serves no far block: every block builds its own monomial rows
        let mut seed = 5u64;
        let (n, d, eps, tol) = (1200, 2, 0.01, 1e-6);
        let x: Vec<f64> = (0..n * d).map(|_| lcg(&mut seed)).collect();
        let y: Vec<f64> = (0..n * d).map(|_| lcg(&mut seed)).collect();
        let (tx, ty) = (
            KdTree::build(&x, d, 16).unwrap(),
            KdTree::build(&y, d, 16).unwrap(),
        );
        tx.mono_order.set(0).unwrap();
        ty.mono_order.set(0).unwrap();
        let h: Vec<f64> = (0..n).map(|_| 40.0 * (lcg(&mut seed) - 0.5)).collect();
        let opts = KernelOptions {
            eps,
            tol,
            exact: false,
            parallel: false,
        };
        let approx = log_apply(&tx, &ty, &h, &opts, false).unwrap();
        let exact = log_apply(
            &tx,
            &ty,
            &h,
            &KernelOptions {
                exact: true,
                ..opts
            },
            false,
        )
        .unwrap();
        assert!(approx.stats.far_blocks > 0);
        for k in 0..n {
            assert!((approx.log_sum[k] - exact.log_sum[k]).abs() <= tol, "{k}");
        }
    }

    #[test]
    fn exp_fast_is_accurate() {
        let mut seed = 11u64;
        let mut worst: f64 = 0.0;
        for _ in 0..200_000 {
            let x = -700.0 * lcg(&mut seed) + 5.0 * (lcg(&mut seed) - 0.5);
            let (a, b) = (exp_fast(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
            let fused = exp_fast_with::<true>(x);
            worst = worst.max(((fused - b) / b).abs());
        }
        assert!(worst < 5e-16, "worst relative error {worst}");
        assert_eq!(exp_fast(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_fast(-800.0), 0.0);
        assert_eq!(exp_fast(0.0), 1.0);
    }

    #[test]
    fn multi_index_counts() {
        let mi = MultiIndex::new(2);
        assert_eq!(mi.count[0], 1);
        assert_eq!(mi.count[3], 10);
        let mi = MultiIndex::new(3);
        assert_eq!(mi.count[2], 10);
        assert!(mi.order_for(0.5, 1e-6).unwrap() >= 5);
        assert!(mi.order_for(1.0, 1e-6).is_none()); // beyond MAX_T: split instead
    }
}
