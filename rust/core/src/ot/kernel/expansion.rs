//! Far-field blocks: the truncated Taylor expansion of exp(2 u.w / eps) over multi-indices, its
//! order from the Lagrange remainder, the monomial rows (cached per tree node or built in scratch
//! memory) and the moments they give.

use super::simd::{exp_fast_with, weighted_column_sums};
use super::{Ctx, Work};
use crate::ot::tree::{KdTree, MonoRows};

/// Relative error of a far-field block whose monomial rows (target's and source's) are stored in
/// single precision: each row entry (u/r)^alpha in [-1, 1] is rounded by at most 2^-24 relative
/// (entries below f32's normal range by at most 2^-150 absolute, negligible), so the expansion
/// errs by at most 2 * 2^-24 * (sum of its terms' magnitudes) <= 2 * 2^-24 * e^T * sum of the
/// weights, while its value is at least e^-T * sum of the weights: <= 2^-23 e^(2 MAX_T) =
/// 3.24e-7 (T <= MAX_T = 0.5), rounded up.
pub(super) const SINGLE_ROUNDING: f64 = 3.3e-7;

/// A cached row entry: f64, or f32 read as f64.
pub(super) trait RowValue: Copy {
    /// Whether the entries are f32 (else f64): how the AVX2 code loads them.
    const SINGLE: bool;
    fn get(self) -> f64;
}

impl RowValue for f64 {
    const SINGLE: bool = false;
    #[inline(always)]
    fn get(self) -> f64 {
        self
    }
}

impl RowValue for f32 {
    const SINGLE: bool = true;
    #[inline(always)]
    fn get(self) -> f64 {
        self as f64
    }
}

/// A node's cached monomial rows, in either precision.
#[derive(Clone, Copy)]
pub(super) enum Rows<'a> {
    Double(&'a [f64]),
    Single(&'a [f32]),
}

/// The factor that normalizes a node's offsets u = x - c to |u / r| <= 1 in its monomial rows.
#[inline(always)]
pub(super) fn row_radius(tree: &KdTree, id: usize) -> f64 {
    let r = tree.nodes[id].radius;
    if r > 0.0 {
        r
    } else {
        1.0
    }
}

/// Multi-indices of total degree <= p_max in d variables, sorted by degree; each (but the first)
/// is its parent plus one unit on `axis`.
pub(super) struct MultiIndex {
    pub(super) parent: Vec<usize>,
    pub(super) axis: Vec<usize>,
    /// 1 / (new exponent on `axis`): turns parent's w^a/a! into the child's.
    pub(super) inv: Vec<f64>,
    /// count[p] = number of multi-indices of degree <= p.
    pub(super) count: Vec<usize>,
    /// Total degree and 1/alpha! of each multi-index.
    pub(super) degree: Vec<usize>,
    pub(super) inv_factorial: Vec<f64>,
}

pub(super) const MAX_TERMS: usize = 4096;
pub(super) const MAX_ORDER: usize = 40;
/// Largest T = 2 r_I r_J / eps expanded. Measured on 2-D Sinkhorn potentials at n = 1e4..4e4
/// (tol 1e-7): T = 0.5 is fastest (0.25: 2.3x and 1: 1.3x slower; 4: 5x); it also keeps the
/// rounding of the moments (which grows like e^(2T)) negligible.
pub(super) const MAX_T: f64 = 0.5;

impl MultiIndex {
    pub(super) fn new(d: usize) -> MultiIndex {
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
    pub(super) fn order_for(&self, t: f64, tol: f64) -> Option<usize> {
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

impl Ctx<'_> {
    /// The monomial rows (u/r)^alpha (degree <= order, r = `row_radius`) of the points of node
    /// `id`, into `out`.
    #[inline(always)]
    pub(super) fn monomial_rows(&self, tree: &KdTree, id: usize, order: usize, out: &mut Vec<f64>) {
        let terms = self.mi.count[order];
        let node = &tree.nodes[id];
        let c = tree.center(id);
        let inv_r = 1.0 / row_radius(tree, id);
        out.clear();
        out.resize(node.len() * terms, 0.0);
        let (parent, axis) = (&self.mi.parent[..terms], &self.mi.axis[..terms]);
        for (r, p) in (node.start..node.end).enumerate() {
            let x = tree.point(p);
            let mut u = [0.0f64; 8];
            for k in 0..tree.d {
                u[k] = (x[k] - c[k]) * inv_r;
            }
            let row = &mut out[r * terms..(r + 1) * terms];
            row[0] = 1.0;
            for a in 1..terms {
                row[a] = row[parent[a]] * u[axis[a]];
            }
        }
    }

    /// The cached monomial rows of node `id` of `tree` (filled on first use), if the cache serves
    /// `order` (and, for a single-precision cache, this application's tolerance).
    pub(super) fn cached<'t>(&self, tree: &'t KdTree, id: usize, order: usize) -> Option<Rows<'t>> {
        let cache_order = *tree.mono_order.get()?;
        let single = tree.mono_single.get().copied().unwrap_or(false);
        if order > cache_order || (single && !self.single_ok) {
            return None;
        }
        let rows = tree.mono_cache[id].get_or_init(|| {
            let mut out = Vec::new();
            self.monomial_rows(tree, id, cache_order, &mut out);
            if single {
                MonoRows::Single(out.iter().map(|&v| v as f32).collect())
            } else {
                MonoRows::Double(out.into_boxed_slice())
            }
        });
        Some(match rows {
            MonoRows::Double(v) => Rows::Double(v),
            MonoRows::Single(v) => Rows::Single(v),
        })
    }

    /// Far-field block from cached monomials: the moments are one pass of axpys over contiguous
    /// rows, the evaluation one dot product per target.
    #[inline(always)]
    pub(super) fn far_cached<const F: bool>(
        &self,
        i: usize,
        j: usize,
        order: usize,
        w: &mut Work,
        rows_i: &[f64],
        rows_j: &[f64],
    ) {
        let (t, s, d) = (self.t, self.s, self.t.d);
        let nj = &s.nodes[j];
        let terms = self.mi.count[order];
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
        let Some(shift) = self.start_far_block(i, j, order, dvec, w) else {
            return;
        };
        let per = self.per_block();
        w.mom.clear();
        w.mom.resize(terms * per, 0.0);
        for e in w.wt.iter_mut() {
            *e = exp_fast_with::<F>(*e - shift);
        }
        weighted_column_sums::<F>(rows_j, stride_j, &w.wt, &mut w.mom[..terms]);
        for c in 1..per {
            // the column's (or the cost's) moments: its values times the block's weights
            w.wcol.clear();
            w.wcol.resize(nj.len(), 0.0);
            self.column_weights(j, &*dvec, c, &w.wt, &mut w.wcol);
            let out = &mut w.mom[c * terms..(c + 1) * terms];
            weighted_column_sums::<F>(rows_j, stride_j, &w.wcol, out);
        }
        let radii = row_radius(t, i) * row_radius(s, j);
        for c in 0..per {
            self.scale_moments(&mut w.mom[c * terms..(c + 1) * terms], radii);
        }
        let mom = std::mem::take(&mut w.mom);
        self.far_targets::<F, f64>(i, &*dvec, d2, shift, &mom, terms, rows_i, w);
        w.mom = mom;
    }

    /// Source side of far block (i, j) with centre offset D = c_I - c_J: e_q = h_q - (|w_q|^2 -
    /// 2 w_q.D)/eps into `w.wt` (w_q = y_q - c_J), counted in the statistics; returns their
    /// maximum, the block's shift, or None (counted as pruned) when no source has weight.
    #[inline(always)]
    pub(super) fn start_far_block(
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
    pub(super) fn source_exponents(&self, j: usize, dvec: &[f64], out: &mut Vec<f64>) -> f64 {
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
    pub(super) fn far<const F: bool>(&self, i: usize, j: usize, order: usize, w: &mut Work) {
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
        let kc = self.k;
        // the columns' moments (kc x terms) ride in `wcol`
        w.wcol.clear();
        w.wcol.resize(kc * terms, 0.0);
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
            for c in 0..kc {
                let v = self.vcols[c * s.n + q];
                for a in 0..terms {
                    w.wcol[c * terms + a] += w.mono[a] * v;
                }
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
            if val > 0.0 {
                let base = shift - (d2 + u2 + 2.0 * ud) * self.inv_eps;
                let r = p - w.offset;
                if kc == 0 {
                    w.acc[r].add(base + val.ln(), cost);
                } else {
                    let (wcol, mono) = (&w.wcol, &mono_prev);
                    let frac = |c: usize| {
                        let m = &wcol[c * terms..(c + 1) * terms];
                        m.iter().zip(mono).map(|(m, u)| m * u).sum::<f64>() / val
                    };
                    w.acc[r].add_cols(
                        &mut w.cols[r * kc..(r + 1) * kc],
                        base + val.ln(),
                        cost,
                        frac,
                    );
                }
            }
            w.mono = mono_prev;
        }
    }
}
