//! Far-field blocks served by the monomial cache, evaluated after the traversal: the moments of
//! all the blocks of a batch that share a source node J are computed together (one pass over J's
//! cached rows feeds the moments of four blocks at a time, instead of one pass per block), then
//! each target subtree adds its blocks' expansions.
//!
//! Measured at n = 1e4 (2-D, tol 1e-7): one pass over the source rows per block read ~0.5 GB of
//! cached monomials per application from the last-level cache; the far field ran at ~9% of the
//! FMA peak, bound by those reads.
//!
//! Every moment is a sequential sum over J's points in tree order, whichever blocks share its
//! pass: results do not depend on the grouping, nor on the thread count.

use super::expansion::{row_radius, RowValue, Rows};
use super::simd::{dots, exp_fast_with, madd, SCALE_MAX};
use super::{Ctx, Work};

/// A far-field block (target node i, source node j) whose expansion of order `order` is
/// evaluated after the traversal.
#[derive(Debug, Clone, Copy)]
pub(super) struct FarPair {
    pub(super) i: u32,
    pub(super) j: u32,
    pub(super) order: u32,
}

/// Columns of the moments kept in registers per pass (two AVX2 vectors).
const COLS: usize = 8;

impl Ctx<'_> {
    /// Centre offset D = c_I - c_J of a pair (d <= 8) and |D|^2.
    #[inline(always)]
    fn offset(&self, i: usize, j: usize) -> ([f64; 8], f64) {
        let (ci, cj) = (self.t.center(i), self.s.center(j));
        let mut dvec = [0.0f64; 8];
        for k in 0..self.t.d {
            dvec[k] = ci[k] - cj[k];
        }
        let d2 = dvec.iter().map(|v| v * v).sum();
        (dvec, d2)
    }

    /// Moments of the blocks `group` (all with source node `j`), each of `count[order]` terms per
    /// column (the weights, then the `k` source columns times the weights), concatenated into
    /// `moms`, and their shifts (-inf: no source has weight). A pass over J's rows serves four
    /// (block, column) pairs.
    #[inline(always)]
    pub(super) fn group_moments<const F: bool>(
        &self,
        j: usize,
        group: &[FarPair],
        moms: &mut [f64],
        shifts: &mut [f64],
        weights: &mut Vec<f64>,
    ) {
        match self
            .cached(self.s, j, 0)
            .expect("deferred blocks have cached source rows")
        {
            Rows::Double(rows) => {
                self.moments_from::<F, f64>(j, group, moms, shifts, weights, rows)
            }
            Rows::Single(rows) => {
                self.moments_from::<F, f32>(j, group, moms, shifts, weights, rows)
            }
        }
    }

    /// `group_moments` on J's cached rows of one precision.
    #[inline(always)]
    fn moments_from<const F: bool, R: RowValue>(
        &self,
        j: usize,
        group: &[FarPair],
        moms: &mut [f64],
        shifts: &mut [f64],
        weights: &mut Vec<f64>,
        rows: &[R],
    ) {
        let nj = &self.s.nodes[j];
        let len = nj.len();
        let stride = rows.len() / len;
        let r_j = row_radius(self.s, j);
        let per = self.per_block();
        let virtual_blocks = group.len() * per;
        // slots 0..4: the weights of the pass's (block, column) pairs; slot 4: the block's weights;
        // then J's offsets w = y - c_J by coordinate and |w|^2 (shared by the group's blocks)
        let d = self.s.d;
        weights.resize((6 + d) * len, 0.0);
        let (weights, geometry) = weights.split_at_mut(5 * len);
        self.source_geometry(j, geometry);
        let geometry = &*geometry;
        let mut current = usize::MAX;
        let mut off = 0;
        for first in (0..virtual_blocks).step_by(4) {
            let count = 4.min(virtual_blocks - first);
            let mut terms = [0usize; 4];
            for slot in 0..count {
                let (b, col) = ((first + slot) / per, (first + slot) % per);
                let (slots, base) = weights.split_at_mut(4 * len);
                if b != current {
                    current = b;
                    shifts[b] = self.block_weights::<F>(group[b].i as usize, j, geometry, base);
                }
                let wk = &mut slots[slot * len..(slot + 1) * len];
                if col == 0 {
                    wk.copy_from_slice(base);
                } else {
                    let (dvec, _) = self.offset(group[b].i as usize, j);
                    self.column_weights(j, &dvec, col, base, wk);
                }
                terms[slot] = self.mi.count[group[b].order as usize];
            }
            let width = terms.iter().copied().max().unwrap_or(0);
            let mut out = [[0.0f64; COLS]; 4];
            let mut c = 0;
            while c < width {
                let cols = COLS.min(stride - c);
                match count {
                    4 => column_pass::<4, F, R>(rows, stride, c, cols, weights, len, &mut out),
                    3 => column_pass::<3, F, R>(rows, stride, c, cols, weights, len, &mut out),
                    2 => column_pass::<2, F, R>(rows, stride, c, cols, weights, len, &mut out),
                    _ => column_pass::<1, F, R>(rows, stride, c, cols, weights, len, &mut out),
                }
                let mut o = off;
                for slot in 0..count {
                    for l in 0..cols.min(terms[slot].saturating_sub(c)) {
                        moms[o + c + l] = out[slot][l];
                    }
                    o += terms[slot];
                }
                c += COLS;
            }
            for (slot, &t) in terms[..count].iter().enumerate() {
                let b = (first + slot) / per;
                let radii = row_radius(self.t, group[b].i as usize) * r_j;
                self.scale_moments(&mut moms[off..off + t], radii);
                off += t;
            }
        }
    }

    /// Moment sets per far block: the weights', then one per column, then (with the cost) those
    /// of |w|^2 - 2 w.D and of the d coordinates of w (w = y - c_J).
    #[inline(always)]
    pub(super) fn per_block(&self) -> usize {
        1 + self.k + if self.with_cost { 1 + self.t.d } else { 0 }
    }

    /// Column `col` >= 1 of the moment sets (`per_block`) of a block with source node j and centre
    /// offset `dvec`, times the block's weights `base`, into `out`.
    #[inline(always)]
    pub(super) fn column_weights(
        &self,
        j: usize,
        dvec: &[f64],
        col: usize,
        base: &[f64],
        out: &mut [f64],
    ) {
        let (s, nj) = (self.s, &self.s.nodes[j]);
        if col <= self.k {
            let v = &self.vcols[(col - 1) * s.n + nj.start..(col - 1) * s.n + nj.end];
            for ((e, b), v) in out.iter_mut().zip(base).zip(v) {
                *e = b * v;
            }
            return;
        }
        let cj = s.center(j);
        for ((e, b), q) in out.iter_mut().zip(base).zip(nj.start..nj.end) {
            let y = s.point(q);
            *e = b * if col == self.k + 1 {
                let (mut w2, mut wd) = (0.0, 0.0);
                for a in 0..s.d {
                    let wa = y[a] - cj[a];
                    w2 += wa * wa;
                    wd += wa * dvec[a];
                }
                w2 - 2.0 * wd
            } else {
                let a = col - self.k - 2;
                y[a] - cj[a]
            };
        }
    }

    /// exp(u~.w~) = sum_alpha (2 r_I r_J / eps)^|alpha| (u/r_I)^alpha (w/r_J)^alpha / alpha!: the
    /// factors of the first `mom.len()` moments (`radii` = r_I r_J, the rows' normalizations).
    #[inline(always)]
    pub(super) fn scale_moments(&self, mom: &mut [f64], radii: f64) {
        let two_over_eps = 2.0 * self.inv_eps * radii;
        let (mut scale, mut deg) = (1.0, 0);
        for (a, m) in mom.iter_mut().enumerate() {
            while self.mi.degree[a] > deg {
                scale *= two_over_eps;
                deg += 1;
            }
            *m *= scale * self.mi.inv_factorial[a];
        }
    }

    /// The offsets w = y - c_J of source node j's points by coordinate (`d` slices of |J|), then
    /// |w|^2 (summed over the coordinates in order), into `out`.
    #[inline(always)]
    fn source_geometry(&self, j: usize, out: &mut [f64]) {
        let (s, d) = (self.s, self.s.d);
        let nj = &s.nodes[j];
        let len = nj.len();
        let cj = s.center(j);
        let points = &s.points[nj.start * d..nj.end * d];
        let (coords, w2) = out.split_at_mut(d * len);
        let w2 = &mut w2[..len];
        w2.fill(0.0);
        for (a, wa) in coords.chunks_exact_mut(len).enumerate() {
            for ((v, p), sq) in wa.iter_mut().zip(points.chunks_exact(d)).zip(w2.iter_mut()) {
                *v = p[a] - cj[a];
                *sq += *v * *v;
            }
        }
    }

    /// The source weights exp(h_q - (|w_q|^2 - 2 w_q.D)/eps - shift) of block (i, j) into `out`
    /// (zeros when no source has weight) and the shift, their maximum exponent (-inf then).
    /// `geometry`: j's `source_geometry`. Maps over contiguous slices (they vectorize; a scalar
    /// loop with the maximum in it was ~20% of the moments' time at n = 1e4).
    #[inline(always)]
    fn block_weights<const F: bool>(
        &self,
        i: usize,
        j: usize,
        geometry: &[f64],
        out: &mut [f64],
    ) -> f64 {
        let nj = &self.s.nodes[j];
        let len = nj.len();
        let (dvec, _) = self.offset(i, j);
        let (coords, w2) = geometry.split_at(self.s.d * len);
        let out = &mut out[..len];
        // w.D in the coordinates' order (then |w|^2 - 2 w.D as before, bit for bit)
        out.fill(0.0);
        for (wa, &da) in coords.chunks_exact(len).zip(&dvec) {
            for (e, &v) in out.iter_mut().zip(wa) {
                *e += v * da;
            }
        }
        let h = &self.h[nj.start..nj.end];
        for ((e, &hq), &sq) in out.iter_mut().zip(h).zip(&w2[..len]) {
            *e = hq - (sq - 2.0 * *e) * self.inv_eps;
        }
        // the maximum over four lanes (a select, not f64::max: no NaN can occur here, and the
        // select vectorizes)
        let mut lanes = [f64::NEG_INFINITY; 4];
        let mut quads = out.chunks_exact(4);
        for q in &mut quads {
            for l in 0..4 {
                lanes[l] = if q[l] > lanes[l] { q[l] } else { lanes[l] };
            }
        }
        for &v in quads.remainder() {
            lanes[0] = if v > lanes[0] { v } else { lanes[0] };
        }
        let shift = lanes[0].max(lanes[1]).max(lanes[2].max(lanes[3]));
        if shift == f64::NEG_INFINITY || shift.is_nan() {
            out.fill(0.0);
            return f64::NEG_INFINITY;
        }
        for e in out.iter_mut() {
            *e = exp_fast_with::<F>(*e - shift);
        }
        shift
    }

    /// Adds the expansion of block (i, j) with moments `mom` and shift `shift` to the targets.
    #[inline(always)]
    pub(super) fn far_eval<const F: bool>(
        &self,
        pair: FarPair,
        mom: &[f64],
        shift: f64,
        w: &mut Work,
    ) {
        let (i, j) = (pair.i as usize, pair.j as usize);
        let order = pair.order as usize;
        if shift == f64::NEG_INFINITY {
            w.stats.pruned_blocks += 1;
            return;
        }
        let ni = &self.t.nodes[i];
        let terms = self.mi.count[order];
        w.stats.far_blocks += 1;
        w.stats.far_cached += 1;
        w.stats.far_terms += ((ni.len() + self.s.nodes[j].len()) * terms) as u64;
        w.stats.max_order = w.stats.max_order.max(order as u64);
        let (dvec, d2) = self.offset(i, j);
        let dvec = &dvec[..self.t.d];
        match self
            .cached(self.t, i, 0)
            .expect("deferred blocks have cached target rows")
        {
            Rows::Double(r) => self.far_targets::<F, f64>(i, dvec, d2, shift, mom, terms, r, w),
            Rows::Single(r) => self.far_targets::<F, f32>(i, dvec, d2, shift, mom, terms, r, w),
        }
    }

    /// Target side of far block (i, .) with centre offset `dvec` (|D|^2 = `d2`): the expansions
    /// sum_alpha mom_alpha u^alpha of the weights and of each column (`mom`: `terms` per column,
    /// from the monomial rows `rows_i`) times exp(shift - (|D|^2 + |u|^2 + 2u.D)/eps), added to
    /// the targets' sums. In three passes, so that the exponentials form a map that vectorizes
    /// (one scalar exp per target and block was about half of the far-field time).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn far_targets<const F: bool, R: RowValue>(
        &self,
        i: usize,
        dvec: &[f64],
        d2: f64,
        shift: f64,
        mom: &[f64],
        terms: usize,
        rows_i: &[R],
        w: &mut Work,
    ) {
        let (t, d, k) = (self.t, self.t.d, self.k);
        let ni = &t.nodes[i];
        let len = ni.len();
        let stride_i = rows_i.len() / len;
        let ci = t.center(i);
        for buf in [&mut w.vals, &mut w.expo, &mut w.scaled] {
            buf.clear();
            buf.resize(len, 0.0);
        }
        dots::<F, R>(rows_i, stride_i, &mom[..terms], &mut w.vals);
        let extra = self.per_block() - 1;
        if extra > 0 {
            w.vals_c.clear();
            w.vals_c.resize(extra * len, 0.0);
            for (c, out) in w.vals_c.chunks_exact_mut(len).enumerate() {
                dots::<F, R>(
                    rows_i,
                    stride_i,
                    &mom[(c + 1) * terms..(c + 2) * terms],
                    out,
                );
            }
        }
        let points = &t.points[ni.start * d..ni.end * d];
        let acc = &w.acc[ni.start - w.offset..ni.end - w.offset];
        match d {
            // the dimension as a constant: the loop over the coordinates unrolls
            2 => self.target_exponents::<2>(
                points,
                ci,
                dvec,
                d2,
                shift,
                acc,
                &mut w.expo,
                &mut w.scaled,
            ),
            3 => self.target_exponents::<3>(
                points,
                ci,
                dvec,
                d2,
                shift,
                acc,
                &mut w.expo,
                &mut w.scaled,
            ),
            _ => self.target_exponents::<0>(
                points,
                ci,
                dvec,
                d2,
                shift,
                acc,
                &mut w.expo,
                &mut w.scaled,
            ),
        }
        for sc in w.scaled.iter_mut() {
            *sc = exp_fast_with::<F>(*sc);
        }
        let first = ni.start - w.offset;
        let acc = &mut w.acc[first..first + len];
        if k == 0 && !self.with_cost {
            // a Sinkhorn update: the weights' sums only (the loop below, without the columns and
            // the cost; slices borrowed once, so no buffer is reloaded per target)
            let (vals, expo, scaled) = (&w.vals[..len], &w.expo[..len], &w.scaled[..len]);
            for (((a, &val), &e), &sc) in acc.iter_mut().zip(vals).zip(expo).zip(scaled) {
                if val > 0.0 {
                    if e - a.m <= SCALE_MAX {
                        a.s = madd::<F>(sc, val, a.s);
                    } else {
                        a.add(e + val.ln(), 0.0);
                    }
                }
            }
            return;
        }
        for (r, a) in acc.iter_mut().enumerate() {
            let val = w.vals[r];
            if val > 0.0 {
                // sum_j K v C of the block / its sum_j K v (C = |D|^2 + |u|^2 + 2u.D + (|w|^2 -
                // 2w.D) - 2u.w), from the cost's moment sets
                let cost = if self.with_cost {
                    let x = &points[r * d..(r + 1) * d];
                    let (mut u2, mut ud, mut uw) = (0.0, 0.0, 0.0);
                    for a in 0..d {
                        let ua = x[a] - ci[a];
                        u2 += ua * ua;
                        ud += ua * dvec[a];
                        uw += ua * w.vals_c[(k + 1 + a) * len + r];
                    }
                    d2 + u2 + 2.0 * ud + (w.vals_c[k * len + r] - 2.0 * uw) / val
                } else {
                    0.0
                };
                if w.expo[r] - a.m <= SCALE_MAX {
                    a.s = madd::<F>(w.scaled[r], val, a.s);
                    if self.with_cost {
                        a.q = madd::<F>(w.scaled[r], val * cost, a.q);
                    }
                    for c in 0..k {
                        let v = &mut w.cols[(first + r) * k + c];
                        *v = madd::<F>(w.scaled[r], w.vals_c[c * len + r], *v);
                    }
                } else if k == 0 {
                    a.add(w.expo[r] + val.ln(), cost);
                } else {
                    let vals_c = &w.vals_c;
                    a.add_cols(
                        &mut w.cols[(first + r) * k..(first + r + 1) * k],
                        w.expo[r] + val.ln(),
                        cost,
                        |c| vals_c[c * len + r] / val,
                    );
                }
            }
        }
    }
}

impl Ctx<'_> {
    /// `expo[r]` = shift - (|D|^2 + |u|^2 + 2u.D)/eps for the targets `points` (u = x - c_I) and
    /// `scaled[r]` = min(expo[r] - m_r, SCALE_MAX), m_r the target's scale; `D` the dimension
    /// when known at compile time (0: `self.t.d`). The coordinates summed in order, as before.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn target_exponents<const D: usize>(
        &self,
        points: &[f64],
        ci: &[f64],
        dvec: &[f64],
        d2: f64,
        shift: f64,
        acc: &[super::simd::Acc],
        expo: &mut [f64],
        scaled: &mut [f64],
    ) {
        let d = if D > 0 { D } else { self.t.d };
        let (ci, dvec) = (&ci[..d], &dvec[..d]);
        for (((x, e), sc), a) in points
            .chunks_exact(d)
            .zip(expo.iter_mut())
            .zip(scaled.iter_mut())
            .zip(acc)
        {
            let (mut u2, mut ud) = (0.0, 0.0);
            for k in 0..d {
                let uk = x[k] - ci[k];
                u2 += uk * uk;
                ud += uk * dvec[k];
            }
            *e = shift - (d2 + u2 + 2.0 * ud) * self.inv_eps;
            // relative to the target's scale; `Acc::add` takes the rare ones beyond SCALE_MAX
            // (a select: the same value as f64::min for every input here, and it vectorizes)
            let v = *e - a.m;
            *sc = if v < SCALE_MAX { v } else { SCALE_MAX };
        }
    }
}

/// `out[k][l] = sum_q weights[k * len + q] * rows[q * stride + c + l]` for k < K, l < cols: each
/// row read once for K blocks, every sum sequential over q (the same value for any K).
#[inline(always)]
fn column_pass<const K: usize, const F: bool, R: RowValue>(
    rows: &[R],
    stride: usize,
    c: usize,
    cols: usize,
    weights: &[f64],
    len: usize,
    out: &mut [[f64; COLS]; 4],
) {
    let mut acc = [[0.0f64; COLS]; K];
    let ws: [&[f64]; K] = std::array::from_fn(|k| &weights[k * len..(k + 1) * len]);
    if cols == COLS {
        for q in 0..len {
            let row: &[R; COLS] = rows[q * stride + c..q * stride + c + COLS]
                .try_into()
                .expect("COLS columns");
            let row: [f64; COLS] = std::array::from_fn(|l| row[l].get());
            for k in 0..K {
                let wq = ws[k][q];
                for l in 0..COLS {
                    acc[k][l] = madd::<F>(wq, row[l], acc[k][l]);
                }
            }
        }
    } else {
        for q in 0..len {
            let row = &rows[q * stride + c..q * stride + c + cols];
            for k in 0..K {
                let wq = ws[k][q];
                for l in 0..cols {
                    acc[k][l] = madd::<F>(wq, row[l].get(), acc[k][l]);
                }
            }
        }
    }
    out[..K].copy_from_slice(&acc);
}
