//! Sparse tensors in coordinate form and their MTTKRP (rayon over ranges of output rows, each
//! row summed over its entries in entry order: no atomics, no locks, the same bits for every
//! thread count).

use super::dense::{check_factors, threads};
use crate::error::{check_alloc, try_filled, Error, Result};
use crate::scalar::Scalar;
use faer::Par;
use rayon::prelude::*;

/// A COO tensor: `coords` is (nnz x N) row-major, `values` (nnz).
#[derive(Clone, Copy)]
pub struct SparseTensor<'a, T> {
    pub coords: &'a [i64],
    pub values: &'a [T],
    pub shape: &'a [usize],
}

impl<'a, T: Scalar> SparseTensor<'a, T> {
    /// Checks the lengths and that every coordinate is in range.
    pub fn new(coords: &'a [i64], values: &'a [T], shape: &'a [usize]) -> Result<Self> {
        let n = shape.len();
        if n < 2 {
            return Err(Error::invalid(
                "x",
                format!("needs at least 2 modes, got {n}"),
            ));
        }
        if coords.len() != values.len() * n {
            return Err(Error::invalid(
                "coords",
                format!(
                    "has {} entries, expected {} x {n}",
                    coords.len(),
                    values.len()
                ),
            ));
        }
        for (k, row) in coords.chunks_exact(n).enumerate() {
            for (m, (&c, &s)) in row.iter().zip(shape).enumerate() {
                if c < 0 || c as u64 >= s as u64 {
                    return Err(Error::invalid(
                        "coords",
                        format!("entry {k} has index {c} in mode {m} of size {s}"),
                    ));
                }
            }
        }
        Ok(Self {
            coords,
            values,
            shape,
        })
    }

    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// `M[i, :] = sum over entries with i_mode = i of v * prod_{k != mode} A_k[i_k, :]`.
    ///
    /// Each row of M is summed by one task over its entries in entry order (the entries are
    /// grouped by their index in `mode` with a stable counting sort): the result is the same to
    /// the last bit for every thread count, and no private copies of M are reduced.
    pub fn mttkrp(&self, factors: &[&[T]], mode: usize, rank: usize, par: Par) -> Result<Vec<T>> {
        check_factors(self.shape, factors, rank)?;
        let n = self.shape.len();
        if mode >= n {
            return Err(Error::invalid("mode", format!("{mode} is not in 0..{n}")));
        }
        let rows = self.shape[mode];
        check_alloc::<T>(rows.checked_mul(rank), "the sparse MTTKRP")?;
        let (offsets, order) = self.group_by(mode)?;
        let mut out = try_filled(rows * rank, T::ZERO, "the sparse MTTKRP")?;
        // Row ranges of about nnz / tasks entries each (any split gives the same bits).
        let t = threads(par);
        let tasks = if t == 1 { 1 } else { 4 * t };
        let nnz = self.nnz();
        let mut pieces: Vec<(usize, &mut [T])> = Vec::with_capacity(tasks);
        let mut rest: &mut [T] = &mut out;
        let mut first = 0;
        for k in 1..=tasks {
            let end = if k == tasks {
                rows
            } else {
                let target = nnz / tasks * k + nnz % tasks * k / tasks;
                offsets.partition_point(|&o| o < target).clamp(first, rows)
            };
            let (head, tail) = std::mem::take(&mut rest).split_at_mut((end - first) * rank);
            pieces.push((first, head));
            rest = tail;
            first = end;
        }
        let rows_of = |(first, piece): (usize, &mut [T])| {
            let count = piece.len() / rank;
            let entries = |i: usize| &order[offsets[i]..offsets[i + 1]];
            macro_rules! fixed {
                ($($r:literal)*) => {
                    match rank {
                        $($r => {
                            for (local, row) in piece.chunks_exact_mut($r).enumerate() {
                                self.row_fixed::<$r>(factors, mode, entries(first + local), row);
                            }
                            return;
                        })*
                        _ => {}
                    }
                };
            }
            fixed!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 20 24 32);
            let mut w = vec![T::ZERO; rank];
            for local in 0..count {
                let row = &mut piece[local * rank..(local + 1) * rank];
                self.row(factors, mode, entries(first + local), row, &mut w);
            }
        };
        match par {
            Par::Seq => pieces.into_iter().for_each(rows_of),
            _ => pieces.into_par_iter().for_each(rows_of),
        }
        Ok(out)
    }

    /// `(offsets, order)`: the entries whose index in `mode` is `i` are
    /// `order[offsets[i]..offsets[i + 1]]`, in increasing entry order (a stable counting sort).
    fn group_by(&self, mode: usize) -> Result<(Vec<usize>, Vec<usize>)> {
        let n = self.shape.len();
        let rows = self.shape[mode];
        let mut offsets = try_filled(rows + 1, 0usize, "the sparse MTTKRP's row offsets")?;
        for idx in self.coords.chunks_exact(n) {
            offsets[idx[mode] as usize + 1] += 1;
        }
        for i in 0..rows {
            offsets[i + 1] += offsets[i];
        }
        let mut next = try_filled(rows, 0usize, "the sparse MTTKRP's row offsets")?;
        next.copy_from_slice(&offsets[..rows]);
        let mut order = try_filled(self.nnz(), 0usize, "the sparse MTTKRP's entry order")?;
        for (e, idx) in self.coords.chunks_exact(n).enumerate() {
            let i = idx[mode] as usize;
            order[next[i]] = e;
            next[i] += 1;
        }
        Ok((offsets, order))
    }

    /// One row of the MTTKRP of `mode`: the sum over `entries` (in order) of
    /// `v * prod_{k != mode} A_k[i_k, :]`, added into `out` (rank), `w` a scratch row.
    fn row(&self, factors: &[&[T]], mode: usize, entries: &[usize], out: &mut [T], w: &mut [T]) {
        let n = self.shape.len();
        let rank = out.len();
        for &e in entries {
            let idx = &self.coords[e * n..(e + 1) * n];
            let v = self.values[e];
            w.iter_mut().for_each(|x| *x = v);
            for (k, &i) in idx.iter().enumerate() {
                if k != mode {
                    let row = &factors[k][i as usize * rank..(i as usize + 1) * rank];
                    for (x, &f) in w.iter_mut().zip(row) {
                        *x *= f;
                    }
                }
            }
            for (o, &x) in out.iter_mut().zip(w.iter()) {
                *o += x;
            }
        }
    }

    /// As `row` with the rank known at compile time (fixed-size rows: unrolled, vectorized).
    fn row_fixed<const R: usize>(
        &self,
        factors: &[&[T]],
        mode: usize,
        entries: &[usize],
        out: &mut [T],
    ) {
        let n = self.shape.len();
        let mut sum = [T::ZERO; R];
        if let Ok(current) = <&[T; R]>::try_from(&*out) {
            sum = *current;
        }
        for &e in entries {
            let idx = &self.coords[e * n..(e + 1) * n];
            let mut w = [self.values[e]; R];
            for (k, &i) in idx.iter().enumerate() {
                if k != mode {
                    let start = i as usize * R;
                    if let Some(Ok(row)) = factors[k].get(start..start + R).map(<&[T; R]>::try_from)
                    {
                        for (x, &f) in w.iter_mut().zip(row) {
                            *x *= f;
                        }
                    }
                }
            }
            for (o, &x) in sum.iter_mut().zip(&w) {
                *o += x;
            }
        }
        out.copy_from_slice(&sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::dense::{mttkrp, DenseTensor};

    #[test]
    fn sparse_equals_dense() {
        let shape = [3usize, 4, 2];
        let mut dense_data = vec![0.0f64; 24];
        let coords: Vec<i64> = vec![0, 1, 1, 1, 3, 0, 2, 0, 1, 2, 2, 0];
        let values = vec![1.5, -2.0, 0.5, 3.0];
        for (k, v) in values.iter().enumerate() {
            let c = &coords[k * 3..k * 3 + 3];
            dense_data[(c[0] as usize * 4 + c[1] as usize) * 2 + c[2] as usize] += v;
        }
        let rank = 2;
        let factors: Vec<Vec<f64>> = shape
            .iter()
            .map(|&s| (0..s * rank).map(|i| (i as f64) * 0.3 - 0.7).collect())
            .collect();
        let refs: Vec<&[f64]> = factors.iter().map(|f| f.as_slice()).collect();
        let s = SparseTensor::new(&coords, &values, &shape).unwrap();
        let d = DenseTensor::new(&dense_data, &shape).unwrap();
        for mode in 0..3 {
            for par in [Par::Seq, Par::rayon(2)] {
                let a = s.mttkrp(&refs, mode, rank, par).unwrap();
                let b = mttkrp(d, &refs, mode, rank, Par::Seq).unwrap();
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 1e-12);
                }
            }
        }
        assert!(SparseTensor::new(&[0, 9, 0], &[1.0], &shape).is_err());
    }

    #[test]
    fn the_same_bits_for_every_thread_count() {
        let shape = [7usize, 5, 6];
        let nnz = 150;
        let coords: Vec<i64> = (0..nnz * 3)
            .map(|i| ((i * 7919 + 13) % shape[i % 3]) as i64)
            .collect();
        let values: Vec<f64> = (0..nnz)
            .map(|i| ((i * 104729) % 997) as f64 / 97.0 - 5.0)
            .collect();
        let s = SparseTensor::new(&coords, &values, &shape).unwrap();
        for rank in [3usize, 17] {
            let factors: Vec<Vec<f64>> = shape
                .iter()
                .map(|&d| {
                    (0..d * rank)
                        .map(|i| ((i * 31 % 17) as f64).sin())
                        .collect()
                })
                .collect();
            let refs: Vec<&[f64]> = factors.iter().map(|f| f.as_slice()).collect();
            for mode in 0..3 {
                let one = s.mttkrp(&refs, mode, rank, Par::Seq).unwrap();
                for t in [2, 3, 8] {
                    let many = s.mttkrp(&refs, mode, rank, Par::rayon(t)).unwrap();
                    assert!(one
                        .iter()
                        .zip(&many)
                        .all(|(a, b)| a.to_bits() == b.to_bits()));
                }
            }
        }
    }
}
