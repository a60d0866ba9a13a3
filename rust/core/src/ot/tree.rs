//! A k-d cluster tree over points in any dimension: bounding boxes, centres, radii, leaf size.
//!
//! Points are stored permuted into tree order (row-major, `d` coordinates per point) so that
//! every node owns a contiguous range `start..end`. Splits halve the widest side of the box at
//! the median point, so the tree is balanced: depth is about log2(n / leaf_size).

use crate::error::{Error, Result};
use std::sync::OnceLock;

/// One node of the tree: a contiguous range of (permuted) points and its geometry.
#[derive(Debug, Clone)]
pub struct Node {
    pub start: usize,
    pub end: usize,
    /// Children indices (both 0 for a leaf; the root is node 0 so 0 never names a child).
    pub left: usize,
    pub right: usize,
    /// Largest distance from `center` to a point of the node.
    pub radius: f64,
}

impl Node {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    pub fn is_leaf(&self) -> bool {
        self.left == 0
    }
}

/// One node's cached monomial rows: double precision, or single precision where the cache would
/// not fit the memory cap otherwise (halves it; the rounding enters the kernel's error budget).
#[derive(Debug, Clone)]
pub enum MonoRows {
    Double(Box<[f64]>),
    Single(Box<[f32]>),
}

impl MonoRows {
    pub fn bytes(&self) -> usize {
        match self {
            MonoRows::Double(v) => v.len() * 8,
            MonoRows::Single(v) => v.len() * 4,
        }
    }
}

/// A k-d tree over `n` points of dimension `d`.
#[derive(Debug, Clone)]
pub struct KdTree {
    pub d: usize,
    pub n: usize,
    pub leaf_size: usize,
    /// `perm[k]` = original index of the k-th point in tree order.
    pub perm: Vec<usize>,
    /// Points in tree order, row-major (n * d).
    pub points: Vec<f64>,
    pub nodes: Vec<Node>,
    /// Per node: lo (d), hi (d), center (d), stored as `3 * d` numbers.
    pub geometry: Vec<f64>,
    /// Leaves in tree order (left to right).
    pub leaves: Vec<usize>,
    /// Per node, filled on first far-field use: the monomials (u/r)^alpha (u = point - centre, r
    /// the node's radius, all multi-indices of degree <= `mono_order`), one row per point, in
    /// double or (`mono_single`) single precision. Depends on geometry only.
    pub mono_cache: Vec<OnceLock<MonoRows>>,
    /// The order of the cached monomials, fixed by the first application that uses the cache.
    pub mono_order: OnceLock<usize>,
    /// Whether the cache stores single precision (set with `mono_order`; unset means double).
    pub mono_single: OnceLock<bool>,
}

impl KdTree {
    /// Builds the tree of `points` (row-major, `n * d`).
    pub fn build(points: &[f64], d: usize, leaf_size: usize) -> Result<KdTree> {
        if d == 0 {
            return Err(Error::invalid("points", "dimension must be at least 1"));
        }
        if points.is_empty() || points.len() % d != 0 {
            return Err(Error::invalid(
                "points",
                format!(
                    "expected a non-empty n x {d} array, got {} numbers",
                    points.len()
                ),
            ));
        }
        if leaf_size == 0 {
            return Err(Error::invalid("leaf_size", "must be at least 1"));
        }
        if points.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("points", "contains NaN or infinity"));
        }
        let n = points.len() / d;
        let mut perm: Vec<usize> = (0..n).collect();
        let mut tree = KdTree {
            d,
            n,
            leaf_size,
            perm: Vec::new(),
            points: Vec::new(),
            nodes: Vec::new(),
            geometry: Vec::new(),
            leaves: Vec::new(),
            mono_cache: Vec::new(),
            mono_order: OnceLock::new(),
            mono_single: OnceLock::new(),
        };
        tree.split(points, &mut perm, 0, n);
        tree.points = Vec::with_capacity(n * d);
        for &p in &perm {
            tree.points.extend_from_slice(&points[p * d..(p + 1) * d]);
        }
        tree.perm = perm;
        tree.finish_geometry();
        tree.mono_cache = (0..tree.nodes.len()).map(|_| OnceLock::new()).collect();
        Ok(tree)
    }

    fn bbox(points: &[f64], d: usize, idx: &[usize]) -> (Vec<f64>, Vec<f64>) {
        let mut lo = vec![f64::INFINITY; d];
        let mut hi = vec![f64::NEG_INFINITY; d];
        for &p in idx {
            for k in 0..d {
                let v = points[p * d + k];
                lo[k] = lo[k].min(v);
                hi[k] = hi[k].max(v);
            }
        }
        (lo, hi)
    }

    /// Recursively splits `perm[start..end]`; returns the node index. Iterative-safe depth:
    /// median splits give depth log2(n), so recursion is shallow.
    fn split(&mut self, points: &[f64], perm: &mut [usize], start: usize, end: usize) -> usize {
        let d = self.d;
        let id = self.nodes.len();
        self.nodes.push(Node {
            start,
            end,
            left: 0,
            right: 0,
            radius: 0.0,
        });
        let count = end - start;
        if count <= self.leaf_size {
            return id;
        }
        let (lo, hi) = Self::bbox(points, d, &perm[start..end]);
        let mut axis = 0;
        let mut width = -1.0;
        for k in 0..d {
            if hi[k] - lo[k] > width {
                width = hi[k] - lo[k];
                axis = k;
            }
        }
        if width <= 0.0 {
            return id; // all points coincide: a leaf however many there are
        }
        let mid = count / 2;
        perm[start..end].select_nth_unstable_by(mid, |&a, &b| {
            points[a * d + axis].total_cmp(&points[b * d + axis])
        });
        let left = self.split(points, perm, start, start + mid);
        let right = self.split(points, perm, start + mid, end);
        self.nodes[id].left = left;
        self.nodes[id].right = right;
        id
    }

    fn finish_geometry(&mut self) {
        let d = self.d;
        self.geometry = vec![0.0; self.nodes.len() * 3 * d];
        self.leaves.clear();
        for id in 0..self.nodes.len() {
            let (start, end) = (self.nodes[id].start, self.nodes[id].end);
            let mut lo = vec![f64::INFINITY; d];
            let mut hi = vec![f64::NEG_INFINITY; d];
            for p in start..end {
                for k in 0..d {
                    let v = self.points[p * d + k];
                    lo[k] = lo[k].min(v);
                    hi[k] = hi[k].max(v);
                }
            }
            let center: Vec<f64> = (0..d).map(|k| 0.5 * (lo[k] + hi[k])).collect();
            let mut r2: f64 = 0.0;
            for p in start..end {
                let mut s = 0.0;
                for k in 0..d {
                    let t = self.points[p * d + k] - center[k];
                    s += t * t;
                }
                r2 = r2.max(s);
            }
            self.nodes[id].radius = r2.sqrt();
            let g = &mut self.geometry[id * 3 * d..(id + 1) * 3 * d];
            g[..d].copy_from_slice(&lo);
            g[d..2 * d].copy_from_slice(&hi);
            g[2 * d..].copy_from_slice(&center);
        }
        let mut stack = vec![0usize];
        while let Some(id) = stack.pop() {
            let node = &self.nodes[id];
            if node.is_leaf() {
                self.leaves.push(id);
            } else {
                stack.push(node.right);
                stack.push(node.left);
            }
        }
    }

    pub fn lo(&self, id: usize) -> &[f64] {
        &self.geometry[id * 3 * self.d..id * 3 * self.d + self.d]
    }
    pub fn hi(&self, id: usize) -> &[f64] {
        &self.geometry[id * 3 * self.d + self.d..id * 3 * self.d + 2 * self.d]
    }
    pub fn center(&self, id: usize) -> &[f64] {
        &self.geometry[id * 3 * self.d + 2 * self.d..(id + 1) * 3 * self.d]
    }
    pub fn point(&self, k: usize) -> &[f64] {
        &self.points[k * self.d..(k + 1) * self.d]
    }

    /// Bytes held by the tree (points, permutation, nodes, geometry).
    pub fn memory_bytes(&self) -> usize {
        let cached: usize = self
            .mono_cache
            .iter()
            .map(|c| c.get().map_or(0, MonoRows::bytes))
            .sum();
        self.points.len() * 8
            + self.perm.len() * 8
            + self.nodes.len()
                * (std::mem::size_of::<Node>() + std::mem::size_of::<OnceLock<MonoRows>>())
            + self.geometry.len() * 8
            + self.leaves.len() * 8
            + cached
    }

    /// Nodes whose subtrees partition the points into about `count` pieces (the nodes at the first
    /// depth that has at least `count` of them, leaves above it included), left to right.
    pub fn frontier(&self, count: usize) -> Vec<usize> {
        let mut level = vec![0usize];
        loop {
            if level.len() >= count || level.iter().all(|&id| self.nodes[id].is_leaf()) {
                return level;
            }
            let mut next = Vec::with_capacity(2 * level.len());
            for &id in &level {
                let node = &self.nodes[id];
                if node.is_leaf() {
                    next.push(id);
                } else {
                    next.push(node.left);
                    next.push(node.right);
                }
            }
            level = next;
        }
    }
}

/// Squared smallest distance between the boxes of node `a` of `ta` and node `b` of `tb`.
pub fn box_min_dist2(ta: &KdTree, a: usize, tb: &KdTree, b: usize) -> f64 {
    let (alo, ahi, blo, bhi) = (ta.lo(a), ta.hi(a), tb.lo(b), tb.hi(b));
    let mut s = 0.0;
    for k in 0..ta.d {
        let gap = (blo[k] - ahi[k]).max(alo[k] - bhi[k]).max(0.0);
        s += gap * gap;
    }
    s
}

/// Squared largest distance between the boxes of node `a` of `ta` and node `b` of `tb`.
pub fn box_max_dist2(ta: &KdTree, a: usize, tb: &KdTree, b: usize) -> f64 {
    let (alo, ahi, blo, bhi) = (ta.lo(a), ta.hi(a), tb.lo(b), tb.hi(b));
    let mut s = 0.0;
    for k in 0..ta.d {
        let span = (bhi[k] - alo[k]).abs().max((ahi[k] - blo[k]).abs());
        s += span * span;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_partitions_points() {
        let n = 1000;
        let d = 3;
        let pts: Vec<f64> = (0..n * d)
            .map(|i| ((i * 7919) % 1009) as f64 / 1009.0)
            .collect();
        let t = KdTree::build(&pts, d, 16).unwrap();
        let mut seen = vec![false; n];
        for &p in &t.perm {
            seen[p] = true;
        }
        assert!(seen.iter().all(|&s| s));
        let total: usize = t.leaves.iter().map(|&l| t.nodes[l].len()).sum();
        assert_eq!(total, n);
        for &l in &t.leaves {
            assert!(t.nodes[l].len() <= 16);
            let c = t.center(l);
            for k in t.nodes[l].start..t.nodes[l].end {
                let p = t.point(k);
                let r: f64 = (0..d).map(|q| (p[q] - c[q]).powi(2)).sum::<f64>().sqrt();
                assert!(r <= t.nodes[l].radius + 1e-12);
            }
        }
    }

    #[test]
    fn duplicates_make_one_leaf() {
        let pts = vec![0.5; 200];
        let t = KdTree::build(&pts, 2, 8).unwrap();
        assert_eq!(t.nodes.len(), 1);
        assert!(KdTree::build(&[], 2, 8).is_err());
        assert!(KdTree::build(&[f64::NAN, 0.0], 2, 8).is_err());
    }
}
