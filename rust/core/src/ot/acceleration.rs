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
