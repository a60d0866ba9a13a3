//! The dual traversal of target and source trees (prune, expand or recurse per block), the
//! near-field dense blocks, and the run-time dispatch to the AVX2 + FMA build.

use super::deferred::FarPair;
use super::simd::exp_fast_with;
use super::{Ctx, Work, MAX_COLUMNS, ROWS_MAX};
use crate::ot::tree::box_min_dist2;

impl Ctx<'_> {
    #[inline(always)]
    pub(super) fn dense<const F: bool>(&self, i: usize, j: usize, w: &mut Work) {
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
            let k = self.k;
            if k == 0 {
                if in_scale {
                    acc.s += sum;
                    acc.q += qsum;
                } else if sum > 0.0 {
                    acc.add(zmax + sum.ln(), qsum / sum);
                }
                continue;
            }
            // the columns' sums from the same exponentials
            let mut csum = [0.0f64; MAX_COLUMNS];
            for (c, cs) in csum[..k].iter_mut().enumerate() {
                let v = &self.vcols[c * s.n + nj.start..c * s.n + nj.end];
                *cs = v.iter().zip(&w.wt).map(|(v, e)| v * e).sum();
            }
            let cols = &mut w.cols[(p - w.offset) * k..(p - w.offset + 1) * k];
            if in_scale {
                acc.s += sum;
                acc.q += qsum;
                for (v, cs) in cols.iter_mut().zip(&csum) {
                    *v += cs;
                }
            } else if sum > 0.0 {
                acc.add_cols(cols, zmax + sum.ln(), qsum / sum, |c| csum[c] / sum);
            }
        }
    }

    /// One task: the dense reference or the traversal, with AVX2 + FMA code where the CPU has
    /// them (checked at run time; the wheel targets baseline x86-64).
    pub(super) fn run_task(&self, i: usize, exact: bool, w: &mut Work) {
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
    pub(super) fn run_task_avx2(&self, i: usize, exact: bool, w: &mut Work) {
        if exact {
            self.dense::<true>(i, 0, w);
        } else {
            self.visit_avx2(i, 0, w);
        }
    }

    /// `group_moments` in the AVX2 + FMA build where the CPU has it.
    pub(super) fn moments_task(
        &self,
        j: usize,
        group: &[FarPair],
        moms: &mut [f64],
        shifts: &mut [f64],
        weights: &mut Vec<f64>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were just detected
            unsafe { self.moments_avx2(j, group, moms, shifts, weights) };
            return;
        }
        self.group_moments::<false>(j, group, moms, shifts, weights);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn moments_avx2(
        &self,
        j: usize,
        group: &[FarPair],
        moms: &mut [f64],
        shifts: &mut [f64],
        weights: &mut Vec<f64>,
    ) {
        self.group_moments::<true>(j, group, moms, shifts, weights);
    }

    /// The deferred blocks of one task: `pos[k]` is block k's place in `offs` (moment offsets)
    /// and `shifts`.
    pub(super) fn eval_task(
        &self,
        w: &mut Work,
        pos: &[usize],
        offs: &[usize],
        moms: &[f64],
        shifts: &[f64],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were just detected
            unsafe { self.eval_avx2(w, pos, offs, moms, shifts) };
            return;
        }
        self.eval_pairs::<false>(w, pos, offs, moms, shifts);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn eval_avx2(&self, w: &mut Work, pos: &[usize], offs: &[usize], moms: &[f64], shifts: &[f64]) {
        self.eval_pairs::<true>(w, pos, offs, moms, shifts);
    }

    #[inline(always)]
    fn eval_pairs<const F: bool>(
        &self,
        w: &mut Work,
        pos: &[usize],
        offs: &[usize],
        moms: &[f64],
        shifts: &[f64],
    ) {
        let pairs = std::mem::take(&mut w.pairs);
        for (&pair, &r) in pairs.iter().zip(pos) {
            self.far_eval::<F>(pair, &moms[offs[r]..offs[r + 1]], shifts[r], w);
        }
        w.pairs = pairs;
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn visit_avx2(&self, i: usize, j: usize, w: &mut Work) {
        self.visit::<true>(i, j, w);
    }

    /// Recursion of `visit`, staying in the AVX2 + FMA build when `F`.
    #[inline(always)]
    pub(super) fn recurse<const F: bool>(&self, i: usize, j: usize, w: &mut Work) {
        #[cfg(target_arch = "x86_64")]
        if F {
            // SAFETY: F is only true inside `visit_avx2`, reached after the run-time check
            unsafe { self.visit_avx2(i, j, w) };
            return;
        }
        self.visit::<false>(i, j, w);
    }

    #[inline(always)]
    pub(super) fn visit<const F: bool>(&self, i: usize, j: usize, w: &mut Work) {
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
        // (less the rounding of single-precision monomial rows, where they may serve)
        if let Some(order) = self.mi.order_for(tt, block_tol - self.rounding) {
            let terms = self.mi.count[order] as f64;
            let factor = if self.with_cost {
                2.0 + self.t.d as f64
            } else {
                2.0
            };
            let far_cost = (a + b) * (factor * terms + 20.0);
            if far_cost < dense_cost {
                // (the cost's moments, when asked, ride with the weights': `per_block`)
                if self.t.d <= 8
                    && self.cached(self.t, i, order).is_some()
                    && self.cached(self.s, j, order).is_some()
                {
                    // evaluated after the traversal, moments grouped by source node
                    w.pairs.push(FarPair {
                        i: i as u32,
                        j: j as u32,
                        order: order as u32,
                    });
                    return;
                }
                if self.t.d <= 8 && ni.len().max(nj.len()) <= ROWS_MAX {
                    // no cache (too large): the same kernel on rows built for this block
                    // (blocks above ROWS_MAX points, rare, take `far`: no n-sized scratch)
                    w.stats.far_rows += 1;
                    let (mut ri, mut rj) =
                        (std::mem::take(&mut w.rows_i), std::mem::take(&mut w.rows_j));
                    self.monomial_rows(self.t, i, order, &mut ri);
                    self.monomial_rows(self.s, j, order, &mut rj);
                    self.far_cached::<F>(i, j, order, w, &ri, &rj);
                    (w.rows_i, w.rows_j) = (ri, rj);
                    return;
                }
                w.stats.far_general += 1;
                w.stats.far_general_points += (ni.len() + nj.len()) as u64;
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
