//! The CP-ALS loop: sweeps of exact least-squares updates in mode order 0..N-1, the fit from
//! the last MTTKRP (no reconstruction), an optional ridge penalty with the balancing step, and
//! the stopping rule shared with the xp reference (`python/lorainne/tensor/_xp.py::stop_state`).

use super::dense::{self, check_factors, DenseTensor};
use super::gram::{dot_f64, gram, hadamard_except, solve_gram};
use super::sparse::SparseTensor;
use crate::error::{Error, Result};
use crate::scalar::Scalar;
use faer::Par;

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    MaxIter = 0,
    Converged = 1,
    /// The change fell below tol while the model was rank-deficient (never "converged").
    Stalled = 2,
}

#[derive(Debug, Clone, Copy)]
pub struct AlsOptions {
    pub n_iter_max: usize,
    /// tol <= 0: run exactly n_iter_max sweeps.
    pub tol: f64,
    pub l2: f64,
    /// ||X||^2 when the caller knows it (saves a pass over X per call); None computes it.
    pub norm_x_sq: Option<f64>,
    /// Nonnegative factors: HALS column updates instead of the exact LS solve.
    pub nonnegative: bool,
    /// Sparsity penalty l1 * sum |A_n| (HALS column updates with soft thresholding).
    pub l1: f64,
}

impl AlsOptions {
    pub fn plain(n_iter_max: usize, tol: f64) -> Self {
        Self {
            n_iter_max,
            tol,
            l2: 0.0,
            norm_x_sq: None,
            nonnegative: false,
            l1: 0.0,
        }
    }

    fn hals(&self) -> bool {
        self.nonnegative || self.l1 > 0.0
    }
}

/// One pass of HALS column updates of the row-major factor `a` (rows x rank) for
/// `min 1/2 ||X_(n) - A K^T||^2 + l2/2 ||A||^2 + l1 |A|_1` with `m = X_(n) K`, `v = K^T K`:
/// column r becomes `S(m_r - A v_r + a_r v_rr) / (v_rr + l2)` (S: projection on the
/// nonnegative orthant after subtracting l1, or soft thresholding), using the columns already
/// updated. The same arithmetic as the xp reference.
pub fn hals_columns<T: Scalar>(
    a: &mut [T],
    m: &[T],
    v: &[T],
    rows: usize,
    rank: usize,
    penalty: HalsPenalty<T>,
) {
    let HalsPenalty {
        l2,
        l1,
        nonnegative,
    } = penalty;
    for r in 0..rank {
        let vrr = v[r * rank + r];
        let denominator = vrr + l2;
        if !(denominator > T::ZERO) {
            continue;
        }
        for i in 0..rows {
            let row = &a[i * rank..(i + 1) * rank];
            let mut dot = T::ZERO;
            for (j, &x) in row.iter().enumerate() {
                dot += x * v[j * rank + r];
            }
            let mut numerator = m[i * rank + r] - dot + row[r] * vrr;
            if nonnegative {
                numerator -= l1;
                if !(numerator > T::ZERO) {
                    numerator = T::ZERO;
                }
            } else if l1 > T::ZERO {
                let magnitude = numerator.abs() - l1;
                numerator = if magnitude > T::ZERO {
                    if numerator < T::ZERO {
                        -magnitude
                    } else {
                        magnitude
                    }
                } else {
                    T::ZERO
                };
            }
            a[i * rank + r] = numerator / denominator;
        }
    }
}

/// The penalties of a HALS column update: ridge `l2`, lasso `l1`, and the nonnegativity constraint.
#[derive(Debug, Clone, Copy)]
pub struct HalsPenalty<T> {
    pub l2: T,
    pub l1: T,
    pub nonnegative: bool,
}

pub struct AlsResult<T> {
    pub factors: Vec<Vec<T>>,
    pub errors: Vec<f64>,
    pub status: Status,
    /// Whether the last sweep met a numerically singular Gram matrix.
    pub degenerate: bool,
}

/// Receives `(mode, MTTKRP of the mode, factors)` during a sweep and replaces `factors[mode]`.
pub type Update<'a, T> = dyn FnMut(usize, Vec<T>, &mut Vec<Vec<T>>) -> Result<()> + 'a;

/// What an ALS loop needs from the data: its shape, its squared norm and a sweep of MTTKRPs.
pub trait SweepSource<T: Scalar>: Sync {
    fn shape(&self) -> &[usize];
    fn norm_sq(&self) -> f64;
    fn sweep(
        &self,
        factors: &mut Vec<Vec<T>>,
        rank: usize,
        par: Par,
        update: &mut Update<'_, T>,
    ) -> Result<()>;
}

impl<T: Scalar> SweepSource<T> for DenseTensor<'_, T> {
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn norm_sq(&self) -> f64 {
        dot_f64(self.data, self.data)
    }
    fn sweep(
        &self,
        factors: &mut Vec<Vec<T>>,
        rank: usize,
        par: Par,
        update: &mut Update<'_, T>,
    ) -> Result<()> {
        dense::sweep(*self, factors, rank, par, update)
    }
}

impl<T: Scalar> SweepSource<T> for SparseTensor<'_, T> {
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn norm_sq(&self) -> f64 {
        dot_f64(self.values, self.values)
    }
    fn sweep(
        &self,
        factors: &mut Vec<Vec<T>>,
        rank: usize,
        par: Par,
        update: &mut Update<'_, T>,
    ) -> Result<()> {
        for mode in 0..self.shape.len() {
            let m = {
                let refs: Vec<&[T]> = factors.iter().map(|f| f.as_slice()).collect();
                self.mttkrp(&refs, mode, rank, par)?
            };
            update(mode, m, factors)?;
        }
        Ok(())
    }
}

/// The stopping rule (see the xp reference): None means go on.
pub fn stop_state(
    errors: &[f64],
    degenerate: bool,
    tol: f64,
    floor: f64,
    eps: f64,
) -> Option<Status> {
    if tol <= 0.0 {
        return None;
    }
    let error = *errors.last()?;
    if error <= floor {
        return Some(Status::Converged);
    }
    if errors.len() >= 2 && (errors[errors.len() - 2] - error).abs() < tol.max(4.0 * eps / error) {
        return Some(if degenerate {
            Status::Stalled
        } else {
            Status::Converged
        });
    }
    None
}

/// Rescales each component so that its column norms are equal across modes (the model is
/// unchanged; the ridge penalty is then smallest for it).
fn balance<T: Scalar>(factors: &mut [Vec<T>], grams: &mut [Vec<T>], rank: usize, use_l2: bool) {
    let n = factors.len();
    for r in 0..rank {
        let norms: Vec<f64> = if use_l2 {
            grams
                .iter()
                .map(|g| g[r * rank + r].to_f64().max(0.0).sqrt())
                .collect()
        } else {
            factors
                .iter()
                .map(|f| f.chunks_exact(rank).map(|row| row[r].to_f64().abs()).sum())
                .collect()
        };
        let product: f64 = norms.iter().product();
        if !(product > 0.0) {
            continue;
        }
        let target = product.powf(1.0 / n as f64);
        for k in 0..n {
            let scale = T::from_f64(target / norms[k]);
            for row in factors[k].chunks_exact_mut(rank) {
                row[r] *= scale;
            }
            for j in 0..rank {
                grams[k][r * rank + j] *= scale;
                grams[k][j * rank + r] *= scale;
            }
        }
    }
}

/// CP-ALS from the given row-major factors (I_n x rank each).
pub fn cp_als<T: Scalar, S: SweepSource<T>>(
    x: &S,
    mut factors: Vec<Vec<T>>,
    rank: usize,
    options: AlsOptions,
    par: Par,
) -> Result<AlsResult<T>> {
    let shape = x.shape().to_vec();
    {
        let refs: Vec<&[T]> = factors.iter().map(|f| f.as_slice()).collect();
        check_factors(&shape, &refs, rank)?;
    }
    if !(options.l2 >= 0.0) || !options.l2.is_finite() {
        return Err(Error::invalid(
            "l2_reg",
            format!("must be a finite number >= 0, got {}", options.l2),
        ));
    }
    if !(options.l1 >= 0.0) || !options.l1.is_finite() {
        return Err(Error::invalid(
            "l1_reg",
            format!("must be a finite number >= 0, got {}", options.l1),
        ));
    }
    let n = shape.len();
    let eps = 2.0 * T::UNIT_ROUNDOFF.to_f64();
    let floor = 3.0 * eps.sqrt();
    let norm_x_sq = options.norm_x_sq.unwrap_or_else(|| x.norm_sq());
    let mut grams: Vec<Vec<T>> = factors
        .iter()
        .zip(&shape)
        .map(|(f, &rows)| gram(f, rows, rank))
        .collect();
    let mut errors = Vec::with_capacity(options.n_iter_max);
    let mut status = Status::MaxIter;
    let mut degenerate = false;
    let l2 = T::from_f64(options.l2);
    let penalty = HalsPenalty {
        l2,
        l1: T::from_f64(options.l1),
        nonnegative: options.nonnegative,
    };
    let hals = options.hals();
    for _ in 0..options.n_iter_max {
        degenerate = false;
        let (mut inner, mut model_sq) = (0.0, 0.0);
        let mut update = |mode: usize, m: Vec<T>, factors: &mut Vec<Vec<T>>| -> Result<()> {
            let v = hadamard_except(&grams, Some(mode), rank);
            let f = if hals {
                let mut f = std::mem::take(&mut factors[mode]);
                hals_columns(&mut f, &m, &v, shape[mode], rank, penalty);
                if !v.iter().any(|&x| x > T::ZERO) {
                    degenerate = true;
                }
                f
            } else {
                let mut regularized = v.clone();
                if options.l2 > 0.0 {
                    for r in 0..rank {
                        regularized[r * rank + r] += l2;
                    }
                }
                let (f, bad) = solve_gram(&regularized, &m, shape[mode], rank)?;
                degenerate |= bad;
                f
            };
            grams[mode] = gram(&f, shape[mode], rank);
            if mode == n - 1 {
                inner = dot_f64(&m, &f);
                model_sq = dot_f64(&v, &grams[mode]);
            }
            factors[mode] = f;
            Ok(())
        };
        x.sweep(&mut factors, rank, par, &mut update)?;
        let residual_sq = (norm_x_sq - 2.0 * inner + model_sq).max(0.0);
        let error = if norm_x_sq > 0.0 {
            (residual_sq / norm_x_sq).sqrt()
        } else {
            residual_sq.sqrt()
        };
        errors.push(error);
        if hals && !degenerate {
            // HALS can zero a whole component: a collapsed model.
            degenerate = grams
                .iter()
                .any(|g| (0..rank).any(|r| !(g[r * rank + r] > T::ZERO)));
        }
        if options.l2 > 0.0 || options.l1 > 0.0 {
            balance(&mut factors, &mut grams, rank, options.l2 > 0.0);
        }
        if let Some(s) = stop_state(&errors, degenerate, options.tol, floor, eps) {
            status = s;
            break;
        }
    }
    Ok(AlsResult {
        factors,
        errors,
        status,
        degenerate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_rank_two_matrix_is_fit() {
        let x = vec![29.0, 39.0, 63.0, 85.0];
        let shape = [2, 2];
        let t = DenseTensor::new(&x, &shape).unwrap();
        let factors = vec![vec![1.0, 0.0, 0.0, 1.0], vec![1.0, 0.5, -0.3, 1.0]];
        let out = cp_als(&t, factors, 2, AlsOptions::plain(10, 1e-8), Par::Seq).unwrap();
        assert_eq!(out.status, Status::Converged);
        assert!(*out.errors.last().unwrap() < 1e-7);
    }

    #[test]
    fn zero_tensor_gives_zero_factors() {
        let x = vec![0.0f64; 12];
        let shape = [2, 3, 2];
        let t = DenseTensor::new(&x, &shape).unwrap();
        let factors = vec![vec![1.0; 2], vec![0.5; 3], vec![2.0; 2]];
        let out = cp_als(&t, factors, 1, AlsOptions::plain(5, 1e-8), Par::Seq).unwrap();
        assert!(out.factors.iter().flatten().all(|v| *v == 0.0));
        assert_eq!(out.status, Status::Converged);
    }
}
