//! Sparse tensors in coordinate form and their MTTKRP (rayon over chunks of nonzeros, private
//! accumulators reduced at the end: no atomics, no locks).

use super::dense::{check_factors, reduce_tasks, threads};
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use faer::Par;

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
    pub fn mttkrp(&self, factors: &[&[T]], mode: usize, rank: usize, par: Par) -> Result<Vec<T>> {
        check_factors(self.shape, factors, rank)?;
        let n = self.shape.len();
        if mode >= n {
            return Err(Error::invalid("mode", format!("{mode} is not in 0..{n}")));
        }
        let nnz = self.nnz();
        let t = threads(par);
        let tasks = if t == 1 { 1 } else { (4 * t).min(nnz.max(1)) };
        let per = nnz.div_ceil(tasks.max(1)).max(1);
        let rows = self.shape[mode];
        macro_rules! fixed {
            ($($r:literal)*) => {
                match rank {
                    $($r => return Ok(reduce_tasks(par, tasks, rows * rank, |task, acc| {
                        self.accumulate_fixed::<$r>(factors, mode, task * per..((task + 1) * per).min(nnz), acc)
                    })),)*
                    _ => {}
                }
            };
        }
        fixed!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 20 24 32);
        Ok(reduce_tasks(par, tasks, rows * rank, |task, acc| {
            self.accumulate(
                factors,
                mode,
                rank,
                task * per..((task + 1) * per).min(nnz),
                acc,
            )
        }))
    }

    /// The entries `range` of the MTTKRP of `mode`, added into `acc` (rows x rank).
    fn accumulate(
        &self,
        factors: &[&[T]],
        mode: usize,
        rank: usize,
        range: std::ops::Range<usize>,
        acc: &mut [T],
    ) {
        let n = self.shape.len();
        let mut w = vec![T::ZERO; rank];
        for e in range {
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
            let target = idx[mode] as usize;
            for (o, &x) in acc[target * rank..(target + 1) * rank].iter_mut().zip(&w) {
                *o += x;
            }
        }
    }

    /// As `accumulate` with the rank known at compile time (fixed-size rows: unrolled, vectorized).
    fn accumulate_fixed<const R: usize>(
        &self,
        factors: &[&[T]],
        mode: usize,
        range: std::ops::Range<usize>,
        acc: &mut [T],
    ) {
        let n = self.shape.len();
        for e in range {
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
            let start = idx[mode] as usize * R;
            if let Some(Ok(out)) = acc.get_mut(start..start + R).map(<&mut [T; R]>::try_from) {
                for (o, &x) in out.iter_mut().zip(&w) {
                    *o += x;
                }
            }
        }
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
}
