//! Convergence control of the Sinkhorn loops: the over-relaxation factor read off the measured
//! linear rate (`Relaxation`), the stall detector of the final eps stage (`Stall`), used by the
//! balanced and unbalanced loop of `sinkhorn.rs`, and the inexact iterations' kernel tolerance
//! (also used by the symmetric loop of `symmetric.rs`).

/// Inexact iterations: while the marginal error `err` is large the kernel runs at this relative
/// tolerance ...
pub(super) fn loose_kernel_tol(err: f64) -> f64 {
    (1e-2 * err).min(1e-3)
}

/// ... and an error measured below this multiple of that tolerance is measured again at full
/// accuracy.
pub(super) const TRUST: f64 = 30.0;

/// ... when it could be within tol: a bound (in units of that tolerance times 1 + err) on how far
/// a loose kernel moves the measured error of a pair and the pair's unmeasured column error.
pub(super) const SLACK: f64 = 4.0;

/// pot <- pot + omega (plain - pot) (plain itself when omega = 1, bit for bit).
pub(super) fn relax(pot: &mut [f64], plain: &[f64], omega: f64) {
    if omega == 1.0 {
        pot.copy_from_slice(plain);
    } else {
        for (p, &q) in pot.iter_mut().zip(plain) {
            *p += omega * (q - *p);
        }
    }
}

/// Chooses the over-relaxation factor from the error history of the final stage.
#[derive(Debug, Clone)]
pub struct Relaxation {
    errors: Vec<f64>,
    omega: f64,
}

impl Relaxation {
    /// Iterations per window of the rate measurement, and the agreement asked of two windows.
    const WINDOW: usize = 3;
    const AGREE: f64 = 0.02;
    /// No faster than this (rate omega - 1 = 0.9; larger omega amplifies kernel errors).
    const OMEGA_MAX: f64 = 1.9;
    /// Measurements after which omega stays as it is.
    const HISTORY_MAX: usize = 200;

    pub fn new() -> Relaxation {
        Relaxation {
            errors: Vec::new(),
            omega: 1.0,
        }
    }

    pub fn omega(&self) -> f64 {
        self.omega
    }

    /// Records the error of an iteration run with the current omega. Once two successive windows
    /// show the same linear rate r, the plain rate theta follows: theta = r for omega = 1, and,
    /// for omega > 1 converging slower than omega - 1 (theta was underestimated: the first
    /// iterations are not yet asymptotic), the SOR relation (r + omega - 1)^2 = r omega^2 theta.
    /// omega then becomes 2 / (1 + sqrt(1 - theta)) if that is larger, and the history restarts.
    pub fn observe(&mut self, err: f64) {
        if self.errors.len() >= Self::HISTORY_MAX {
            return;
        }
        self.errors.push(err);
        let (k, w) = (self.errors.len(), Self::WINDOW);
        if k < 2 * w + 2 {
            return; // the first iterations after a change are transients
        }
        let e = &self.errors;
        let rate = |a: f64, b: f64| (a / b).powf(1.0 / w as f64);
        let (r1, r2) = (
            rate(e[k - 1], e[k - 1 - w]),
            rate(e[k - 1 - w], e[k - 1 - 2 * w]),
        );
        if !(r1.is_finite() && r2.is_finite() && r1 < 1.0 && (r1 - r2).abs() <= Self::AGREE) {
            return;
        }
        let r = r1.max(r2);
        let om = self.omega;
        if om > 1.0 && r <= 1.1 * (om - 1.0) + 0.02 {
            return; // converging at about the SOR rate: omega is right
        }
        let theta = ((r + om - 1.0).powi(2) / (r * om * om)).min(1.0);
        let omega = (2.0 / (1.0 + (1.0 - theta).sqrt())).min(Self::OMEGA_MAX);
        if omega > om + 0.01 {
            self.omega = omega;
            self.errors.clear();
        }
    }
}

impl Default for Relaxation {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether the final eps stage has stalled, read off its error history (the same rule as `_Stall`
/// in python/lorainne/ot/_xp.py). From the stage's `AFTER`-th iteration on (time for the
/// over-relaxation to settle), the linear rate r over each of the last two windows of `WINDOW`
/// iterations predicts log(tol / err) / log(r) more iterations (infinitely many for r >= 1); when
/// both predict more than `FACTOR` times the stage's iterations so far (and more than `FLOOR`),
/// the stage has stalled. Once true, it stays true.
#[derive(Debug, Clone)]
pub struct Stall {
    tol: f64,
    errors: Vec<f64>,
    stalled: bool,
}

impl Stall {
    const WINDOW: usize = 20;
    const AFTER: usize = 50;
    const FACTOR: f64 = 10.0;
    const FLOOR: f64 = 1000.0;

    pub fn new(tol: f64) -> Stall {
        Stall {
            tol,
            errors: Vec::new(),
            stalled: false,
        }
    }

    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// Records the error of the stage's latest iteration; returns whether the stage has stalled.
    pub fn observe(&mut self, err: f64) -> bool {
        if self.stalled {
            return true;
        }
        self.errors.push(err);
        let (e, w, k) = (&self.errors, Self::WINDOW, self.errors.len());
        if k < Self::AFTER {
            return false;
        }
        let bound = (Self::FACTOR * k as f64).max(Self::FLOOR);
        for (new, old) in [(e[k - 1], e[k - 1 - w]), (e[k - 1 - w], e[k - 1 - 2 * w])] {
            let r = (new / old).powf(1.0 / w as f64);
            if r < 1.0 && (self.tol / new).ln() / r.ln() <= bound {
                return false;
            }
        }
        self.stalled = true;
        true
    }
}

/// Anderson mixing of one eps stage's fixed-point map T(f) = F(G(f)) (one Sinkhorn iteration):
/// the next f is T(f_k) - sum_j gamma_j (T(f_{j+1}) - T(f_j)) over the last `memory` steps, gamma
/// the weighted least-squares fit of the newest residual r_k = (T(f_k) - f_k) / eps by the
/// residual differences (weights: the marginal error's, w_i / sum w; a ridge of `RIDGE` times the
/// trace keeps the small system definite). Unlike SOR it needs no rate measured first, and on the
/// Sinkhorn map (Jacobian similar to a symmetric matrix with spectrum in [0, 1]) it converges like
/// a Krylov method. Safeguard: an error above `RESTART` times the best so far clears the history
/// (the next step is the plain T(f_k)). The same rule as `_Anderson` in python/lorainne/ot/_xp.py.
#[derive(Debug, Clone)]
pub(super) struct Anderson {
    memory: usize,
    weights: Vec<f64>,
    images: std::collections::VecDeque<Vec<f64>>,
    residuals: std::collections::VecDeque<Vec<f64>>,
    best: f64,
}

impl Anderson {
    const RESTART: f64 = 2.0;
    const RIDGE: f64 = 1e-10;

    /// `weights`: the side's weights (normalized here).
    pub(super) fn new(memory: usize, weights: &[f64]) -> Anderson {
        let total: f64 = weights.iter().sum();
        let scale = if total > 0.0 && total.is_finite() {
            1.0 / total
        } else {
            0.0
        };
        Anderson {
            memory,
            weights: weights.iter().map(|&w| w * scale).collect(),
            images: std::collections::VecDeque::new(),
            residuals: std::collections::VecDeque::new(),
            best: f64::INFINITY,
        }
    }

    fn clear(&mut self) {
        self.images.clear();
        self.residuals.clear();
    }

    /// The iterate after `f`, whose image `image` = T(f) left the marginal error `err`.
    pub(super) fn next(&mut self, f: &[f64], image: &[f64], err: f64, eps: f64) -> Vec<f64> {
        if err > Self::RESTART * self.best {
            self.clear();
        }
        self.best = self.best.min(err);
        let r: Vec<f64> = image.iter().zip(f).map(|(&t, &p)| (t - p) / eps).collect();
        self.images.push_back(image.to_vec());
        self.residuals.push_back(r);
        if self.images.len() > self.memory + 1 {
            self.images.pop_front();
            self.residuals.pop_front();
        }
        let k = self.images.len() - 1;
        if k == 0 {
            return image.to_vec();
        }
        let w = &self.weights;
        let diffs: Vec<Vec<f64>> = (0..k)
            .map(|j| {
                let (r0, r1) = (&self.residuals[j], &self.residuals[j + 1]);
                r1.iter().zip(r0).map(|(&u, &v)| u - v).collect()
            })
            .collect();
        let dot = |u: &[f64], v: &[f64]| -> f64 {
            u.iter()
                .zip(v)
                .zip(w)
                .map(|((&p, &q), &wi)| wi * p * q)
                .sum()
        };
        let newest = &self.residuals[k];
        let mut m = vec![0.0; k * k];
        let mut rhs = vec![0.0; k];
        for i in 0..k {
            rhs[i] = dot(&diffs[i], newest);
            for j in 0..=i {
                let v = dot(&diffs[i], &diffs[j]);
                m[i * k + j] = v;
                m[j * k + i] = v;
            }
        }
        let trace: f64 = (0..k).map(|i| m[i * k + i]).sum();
        let gamma = if trace > 0.0 && trace.is_finite() {
            for i in 0..k {
                m[i * k + i] += Self::RIDGE * trace;
            }
            cholesky_solve(&mut m, &mut rhs, k).then_some(rhs)
        } else {
            None
        };
        let Some(gamma) = gamma.filter(|g| g.iter().all(|v| v.is_finite())) else {
            self.clear();
            return image.to_vec();
        };
        let mut out = image.to_vec();
        for (j, &gj) in gamma.iter().enumerate() {
            let (t0, t1) = (&self.images[j], &self.images[j + 1]);
            for ((o, &u), &v) in out.iter_mut().zip(t1).zip(t0) {
                *o -= gj * (u - v);
            }
        }
        out
    }
}

/// Solves m x = b in place (b becomes x) for a symmetric positive definite k x k `m` (row-major,
/// overwritten by its Cholesky factor); false when a pivot is not positive.
fn cholesky_solve(m: &mut [f64], b: &mut [f64], k: usize) -> bool {
    for j in 0..k {
        let mut d = m[j * k + j];
        for p in 0..j {
            d -= m[j * k + p] * m[j * k + p];
        }
        if !(d > 0.0) {
            return false;
        }
        let d = d.sqrt();
        m[j * k + j] = d;
        for i in j + 1..k {
            let mut s = m[i * k + j];
            for p in 0..j {
                s -= m[i * k + p] * m[j * k + p];
            }
            m[i * k + j] = s / d;
        }
    }
    for i in 0..k {
        let mut s = b[i];
        for p in 0..i {
            s -= m[i * k + p] * b[p];
        }
        b[i] = s / m[i * k + i];
    }
    for i in (0..k).rev() {
        let mut s = b[i];
        for p in i + 1..k {
            s -= m[p * k + i] * b[p];
        }
        b[i] = s / m[i * k + i];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_fires_on_a_flat_error_not_on_a_linear_decrease() {
        let mut flat = Stall::new(1e-8);
        let fired = (0..60).any(|_| flat.observe(1e-3));
        assert!(fired && flat.stalled());
        let mut linear = Stall::new(1e-8);
        assert!(!(0..300).any(|k| linear.observe(0.95f64.powi(k))));
    }

    #[test]
    fn relaxation_reads_the_rate_then_corrects_an_underestimate() {
        let mut r = Relaxation::new();
        for k in 0..8 {
            r.observe(0.95f64.powi(k));
        }
        let expected = 2.0 / (1.0 + 0.05f64.sqrt());
        assert!((r.omega() - expected).abs() < 1e-9, "{}", r.omega());
        // the true plain rate was 0.99: SOR with this omega converges at a rate above omega - 1
        let theta: f64 = 0.99;
        let om = r.omega();
        // largest root of (l + om - 1)^2 = l om^2 theta
        let (bq, cq) = (2.0 * (om - 1.0) - om * om * theta, (om - 1.0) * (om - 1.0));
        let rate = (-bq + (bq * bq - 4.0 * cq).sqrt()) / 2.0;
        for k in 0..8 {
            r.observe(rate.powi(k));
        }
        let better = 2.0 / (1.0 + (1.0 - theta).sqrt());
        assert!(
            (r.omega() - better.min(1.9)).abs() < 1e-6,
            "{} vs {}",
            r.omega(),
            better
        );
        // not converging linearly: no change
        let mut q = Relaxation::new();
        for k in 0..20 {
            q.observe(if k % 2 == 0 { 1.0 } else { 0.5 });
        }
        assert_eq!(q.omega(), 1.0);
    }

    #[test]
    fn anderson_solves_a_linear_contraction_in_few_steps() {
        // T(f) = A f + c with A symmetric, spectrum in [0, 0.99]: plain iteration needs ~1400
        // steps for 1e-6; Anderson(8) a few dozen, and its result is the fixed point.
        let n = 40;
        let lam: Vec<f64> = (0..n)
            .map(|i| 0.99 * (i as f64 / (n - 1) as f64).powi(3))
            .collect();
        let c: Vec<f64> = (0..n).map(|i| ((i * 7) % 11) as f64 / 11.0).collect();
        let fixed: Vec<f64> = (0..n).map(|i| c[i] / (1.0 - lam[i])).collect();
        let t = |f: &[f64]| -> Vec<f64> { (0..n).map(|i| lam[i] * f[i] + c[i]).collect() };
        let w = vec![1.0; n];
        let mut acc = Anderson::new(8, &w);
        let mut f = vec![0.0; n];
        let mut steps = 0;
        loop {
            let image = t(&f);
            let err: f64 = image
                .iter()
                .zip(&f)
                .map(|(u, v)| (u - v).abs())
                .sum::<f64>()
                / n as f64;
            if err <= 1e-6 || steps >= 200 {
                break;
            }
            f = acc.next(&f, &image, err, 1.0);
            steps += 1;
        }
        assert!(steps < 60, "{steps} steps");
        for i in 0..n {
            assert!((f[i] - fixed[i]).abs() <= 1e-4 * fixed[i].abs().max(1.0));
        }
    }

    #[test]
    fn cholesky_solve_solves_and_rejects_an_indefinite_matrix() {
        let mut m = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![2.0, 1.0];
        assert!(cholesky_solve(&mut m, &mut b, 2));
        assert!((b[0] - 0.5).abs() < 1e-12 && b[1].abs() < 1e-12);
        let mut m = vec![1.0, 2.0, 2.0, 1.0];
        assert!(!cholesky_solve(&mut m, &mut [1.0, 1.0], 2));
    }
}
