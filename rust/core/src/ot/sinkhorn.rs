//! Log-domain Sinkhorn with eps-scaling, entirely in Rust (no Python per iteration).
//!
//! Conventions: C_ij = |x_i - y_j|^2; P_ij = a_i b_j exp((f_i + g_j - C_ij)/eps).
//! Updates: f_i = -eps log sum_j b_j exp((g_j - C_ij)/eps), g_j likewise. After the g-update the
//! column marginals are exact, and the next f-update f' gives the row marginals of (f, g)
//! exactly: r_i = a_i exp((f_i - f'_i)/eps). The L1 row error is the marginal error; the loop
//! returns the (f, g) it measured, so the reported error is that of the returned potentials (up to
//! the kernel's relative tolerance).
//!
//! Over-relaxation (final eps stage): both updates become `g <- g + omega (G(f) - g)`,
//! `f <- f + omega (F(g) - f)`. Plain Sinkhorn converges linearly at a rate theta (per iteration,
//! close to 1 for small eps); as for SOR on a Gauss-Seidel iteration, omega = 2 / (1 + sqrt(1 -
//! theta)) turns it into about omega - 1 (e.g. 0.95 -> 0.64: 46 iterations per decade become 5).
//! theta is measured on the first plain iterations of the stage. With omega != 1 neither marginal is
//! exact, so the error is the L1 sum of both, each read off the updates computed anyway:
//! column j of (f, g) is b_j exp((g_j - G(f)_j)/eps), row i is a_i exp((f_i - F(g)_i)/eps).
//! With `anderson` > 0 the final stage mixes instead (`Anderson` in acceleration.rs): g stays the
//! plain G(f), so every measured pair has exact columns, and f moves to an extrapolation of the
//! last images F(G(f)); no rate has to be measured first (n = 1e4, eps = 0.01: 44 -> ~16 iterations).
//!
//! Unbalanced OT (`rho_a`, `rho_b` finite: KL penalties of strength rho on the two marginals, see
//! python/lorainne/ot/__init__.py for the objective and its dual): every update is damped,
//! f = rho_a / (rho_a + eps) * (-eps log sum_j b_j exp((g_j - C_ij)/eps)), and the error of one
//! side is the L1 gap between the plan's marginal and the one the potential asks for,
//! sum_i |P1_i - a_i exp(-f_i/rho_a)| = sum_i a_i exp(-f_i/rho_a) |exp((f_i - F(g)_i)/eps') - 1|
//! with eps' = eps rho_a / (eps + rho_a) (-> the balanced error as rho -> infinity). The dual is
//! strictly concave there, so the linearized iteration is a two-block Gauss-Seidel on a definite
//! Hessian and the same SOR rule applies (Ostrowski-Reich: omega in (0, 2)).
//!
//! With `stored` (method="matrix") every chain (the coarse stages' too) applies a stored float32
//! stabilized kernel (kernel/stored.rs; sinkhorn/stored_step.rs): one iteration is one read of the
//! matrix (both products fused), the kernel is absorbed again at each chain start and when the
//! potentials drift, and its run-time error bound takes the loose kernel tolerance's place in
//! `Chain::step`. The plain run (below) then starts only if the final stage stalls: its first
//! iteration on the accurate kernel costs as much as ~10 stored ones in 3-D, and it meets tol at
//! once only when eps is so large against the data that the whole schedule is a few cheap
//! iterations anyway.
//!
//! A schedule is never much worse than none: the plain run at eps (no scaling) makes its first
//! iteration before the schedule (and is returned at once if that meets tol), and when the final
//! stage stalls (`Stall`) the two `Chain`s race, one iteration each in turn, the first to reach
//! tol winning (on n_iter_max, the better measured pair of the two).

use super::acceleration::{loose_kernel_tol, relax, Anderson, Relaxation, Stall, SLACK, TRUST};
use super::kernel::{
    log_apply, reserve_monomial_cache, stored_bytes, Applied, KernelOptions, KernelStats,
};
use super::multiscale::{coarse_side, extend};
use super::objective::objective;
use super::tree::KdTree;
use crate::error::{Error, Result};
use crate::interrupt::Interrupt;

mod stored_step;
use stored_step::{objective_stored, stored_start, Matrix};

#[derive(Debug, Clone)]
pub struct SinkhornOptions {
    pub eps: f64,
    pub tol: f64,
    pub n_iter_max: usize,
    /// Ratio between successive eps of the eps-scaling schedule (None: no scaling).
    pub eps_scaling: Option<f64>,
    /// Kernel relative tolerance.
    pub kernel_tol: f64,
    /// Dense kernel (the exact reference) instead of the hierarchical one.
    pub exact: bool,
    pub leaf_size: usize,
    pub parallel: bool,
    /// Accelerate the final eps stage (see the module notes): by Anderson mixing when `anderson`
    /// > 0, else by over-relaxation.
    pub relax: bool,
    /// Memory of the Anderson mixing (0: over-relaxation instead).
    pub anderson: usize,
    /// Points per leaf of the coarse clouds of the stages before the last (0: those stages run on
    /// the full clouds; see multiscale.rs).
    pub coarse_leaf: usize,
    /// Strength of the KL penalty on the marginal of x (on a), and of y; infinity: balanced.
    pub rho_a: f64,
    pub rho_b: f64,
    /// The marginal error is reported (and compared with tol) divided by this mass.
    pub mass: f64,
    /// The chains on the full clouds apply the stored stabilized kernel (`StoredKernel`, n * m
    /// float32 entries) instead; `exact` then picks the accurate kernel of the measurements that
    /// need one (its bound above `kernel_tol`), the projections and the objective.
    pub stored: bool,
}

impl SinkhornOptions {
    /// Balanced options on unit masses (rho infinite, mass 1) with the given settings.
    #[allow(clippy::too_many_arguments)]
    pub fn balanced(
        eps: f64,
        tol: f64,
        n_iter_max: usize,
        eps_scaling: Option<f64>,
        kernel_tol: f64,
        exact: bool,
        leaf_size: usize,
        relax: bool,
    ) -> SinkhornOptions {
        SinkhornOptions {
            eps,
            tol,
            n_iter_max,
            eps_scaling,
            kernel_tol,
            exact,
            leaf_size,
            parallel: false,
            relax,
            anderson: 0,
            coarse_leaf: 0,
            rho_a: f64::INFINITY,
            rho_b: f64::INFINITY,
            mass: 1.0,
            stored: false,
        }
    }
}

/// What the progress callback sees.
#[derive(Debug, Clone)]
pub struct Progress {
    pub n_iter: usize,
    pub eps: f64,
    pub marginal_error: f64,
}

#[derive(Debug, Clone)]
pub struct SinkhornOutput {
    pub f: Vec<f64>,
    pub g: Vec<f64>,
    pub n_iter: usize,
    pub marginal_error: f64,
    pub converged: bool,
    pub cost: f64,
    pub dual: f64,
    pub stats: KernelStats,
    pub memory_bytes: usize,
}

fn check_weights(w: &[f64], n: usize, name: &'static str) -> Result<()> {
    if w.len() != n {
        return Err(Error::invalid(
            name,
            format!("expected {n} weights, got {}", w.len()),
        ));
    }
    if w.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(Error::invalid(
            name,
            "weights must be finite and nonnegative",
        ));
    }
    Ok(())
}

/// One point cloud: its tree, weights (tree order), the penalty rho on its marginal (infinite:
/// a constraint) and the mass its marginal errors are divided by.
pub(super) struct Side {
    pub(super) tree: KdTree,
    pub(super) log_w: Vec<f64>, // log weights, tree order
    pub(super) w: Vec<f64>,
    pub(super) rho: f64,
    pub(super) mass: f64,
}

impl Side {
    pub(super) fn new(
        points: &[f64],
        d: usize,
        weights: &[f64],
        leaf_size: usize,
        rho: f64,
        mass: f64,
    ) -> Result<Side> {
        let tree = KdTree::build(points, d, leaf_size)?;
        let w: Vec<f64> = tree.perm.iter().map(|&p| weights[p]).collect();
        let log_w = w.iter().map(|&v| v.ln()).collect();
        Ok(Side {
            tree,
            log_w,
            w,
            rho,
            mass,
        })
    }

    /// The factor rho / (rho + eps) of the unbalanced update (1 when balanced).
    pub(super) fn damping(&self, eps: f64) -> f64 {
        if self.rho.is_finite() {
            self.rho / (self.rho + eps)
        } else {
            1.0
        }
    }

    /// A potential in the caller's order.
    pub(super) fn to_caller_order(&self, pot: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; pot.len()];
        for (k, &p) in self.tree.perm.iter().enumerate() {
            out[p] = pot[k];
        }
        out
    }
}

/// log sum_j w_j exp((pot_j - C_ij)/eps) for the targets `t` (tree order), sources `s`; with
/// `with_cost`, also the plan-weighted mean cost of each row.
pub(super) fn apply(
    t: &Side,
    s: &Side,
    pot: &[f64],
    opts: &SinkhornOptions,
    eps: f64,
    with_cost: bool,
) -> Result<Applied> {
    let h: Vec<f64> = s
        .log_w
        .iter()
        .zip(pot)
        .map(|(&lw, &p)| {
            if lw == f64::NEG_INFINITY {
                lw
            } else {
                lw + p / eps
            }
        })
        .collect();
    let kopts = KernelOptions {
        eps,
        tol: opts.kernel_tol,
        exact: opts.exact,
        parallel: opts.parallel,
    };
    log_apply(&t.tree, &s.tree, &h, &kopts, with_cost)
}

/// The potential update: out_i = -eps log sum_j w_j exp((pot_j - C_ij)/eps), targets `t`, sources
/// `s`, damped by rho / (rho + eps) when `t`'s marginal is penalized rather than fixed.
pub(super) fn update(
    t: &Side,
    s: &Side,
    pot: &[f64],
    opts: &SinkhornOptions,
    eps: f64,
    stats: &mut KernelStats,
) -> Result<Vec<f64>> {
    let applied = apply(t, s, pot, opts, eps, false)?;
    *stats = applied.stats;
    let scale = -eps * t.damping(eps); // exactly -eps when balanced
    Ok(applied.log_sum.iter().map(|&l| scale * l).collect())
}

/// L1 error of one marginal: sum_i w_i |exp((pot_i - plain_i)/eps) - 1|, `plain` the exact update
/// (unbalanced: sum_i w_i exp(-pot_i/rho) |exp((pot_i - plain_i)/eps') - 1|, module notes),
/// divided by the side's mass.
pub(super) fn marginal_error(side: &Side, pot: &[f64], plain: &[f64], eps: f64) -> f64 {
    let rho = side.rho;
    let sum: f64 = if rho.is_finite() {
        let eps_damped = eps * rho / (eps + rho);
        side.w
            .iter()
            .zip(pot.iter().zip(plain))
            .map(|(&w, (&u, &v))| {
                if w > 0.0 {
                    let target = w * (-u / rho).min(700.0).exp();
                    target * (((u - v) / eps_damped).min(700.0).exp() - 1.0).abs()
                } else {
                    0.0
                }
            })
            .sum()
    } else {
        side.w
            .iter()
            .zip(pot.iter().zip(plain))
            .map(|(&w, (&u, &v))| {
                if w > 0.0 {
                    // exponent capped as in the xp reference: a huge error stays finite (and large)
                    w * (((u - v) / eps).min(700.0).exp() - 1.0).abs()
                } else {
                    0.0
                }
            })
            .sum()
    };
    sum / side.mass
}

/// One sequence of Sinkhorn iterations at one eps, from a given g (f = F(g) first); the same as
/// `_Chain` in python/lorainne/ot/_xp.py. `step` runs one iteration and measures the error of the pair
/// (f, g) it leaves; `advance` then moves f on (over-relaxed when `relax`) and records the error.
struct Chain {
    eps: f64,
    relax: bool,
    f: Vec<f64>,
    g: Vec<f64>,
    /// The f of the last measured pair (f_step, g), kept only when `keep_step` (a race).
    f_step: Option<Vec<f64>>,
    f_plain: Vec<f64>,
    omega: f64,
    err: f64,
    iters: usize,
    relaxation: Relaxation,
    /// Anderson mixing instead of over-relaxation (then `relax` is false).
    anderson: Option<Anderson>,
    /// The stored stabilized kernel this chain applies (`SinkhornOptions::stored`).
    matrix: Option<Matrix>,
}

/// The two sides and the options every chain works with.
struct Problem<'a> {
    xs: &'a Side,
    ys: &'a Side,
}

impl Chain {
    fn new(
        p: &Problem<'_>,
        g: Vec<f64>,
        opts: &SinkhornOptions,
        eps: f64,
        relax: bool,
        stats: &mut KernelStats,
    ) -> Result<Chain> {
        // the first f only starts the chain (every measured pair is (f, G(f)) with f_plain =
        // F(G(f)) measured at the step's tolerance), so the early stages' loose kernel serves
        let start = SinkhornOptions {
            kernel_tol: opts.kernel_tol.max(loose_kernel_tol(f64::INFINITY)),
            ..opts.clone()
        };
        let f = update(p.xs, p.ys, &g, &start, eps, stats)?;
        Ok(Chain::fresh(p, f, g, opts, eps, relax))
    }

    /// A chain at (f, g) before its first iteration: Anderson mixing when `relax` and the options
    /// ask for it, else over-relaxation when `relax`.
    fn fresh(
        p: &Problem<'_>,
        f: Vec<f64>,
        g: Vec<f64>,
        opts: &SinkhornOptions,
        eps: f64,
        relax: bool,
    ) -> Chain {
        let anderson = (relax && opts.anderson > 0).then(|| Anderson::new(opts.anderson, &p.xs.w));
        Chain {
            eps,
            relax: relax && anderson.is_none(),
            f,
            g,
            f_step: None,
            f_plain: Vec::new(),
            omega: 1.0,
            err: f64::INFINITY,
            iters: 0,
            relaxation: Relaxation::new(),
            anderson,
            matrix: None,
        }
    }

    /// One iteration (inexact Sinkhorn): while the marginal error is large the kernel only needs
    /// a hundredth of it as relative tolerance (at most 1e-3, that of the early eps stages), which
    /// perturbs the iterates and the measured error by about 1% of the error. An error measured
    /// below `TRUST` times that tolerance is measured again from the same state at `kernel_tol`
    /// when it could be within `tol`: a kernel of relative error t moves each marginal's measured
    /// error by at most about t (1 + err) and leaves a column error of about t (g is the loose
    /// G(f)), so a measured err above tol + `SLACK` t (1 + err) is above tol (not measured
    /// again: an error that fell more than 3x in one Anderson step needs no exact value); the
    /// pair that meets `tol` is always measured at full accuracy.
    fn step(
        &mut self,
        p: &Problem<'_>,
        opts: &SinkhornOptions,
        stats: &mut KernelStats,
    ) -> Result<f64> {
        if self.matrix.is_some() {
            // the stored kernel's bound plays the loose tolerance's part (same re-measure rule)
            let g = self.g.clone();
            let (err, bound) = self.step_stored(p, opts)?;
            if bound <= opts.kernel_tol
                || err > TRUST * bound
                || err > opts.tol + SLACK * bound * (1.0 + err)
            {
                return Ok(err);
            }
            self.g = g;
            self.iters -= 1;
            return self.step_at(p, opts, stats);
        }
        let loose_tol = loose_kernel_tol(self.err);
        if opts.exact || !(loose_tol > opts.kernel_tol) {
            return self.step_at(p, opts, stats);
        }
        let g = self.g.clone();
        let loose = SinkhornOptions {
            kernel_tol: loose_tol,
            ..opts.clone()
        };
        let err = self.step_at(p, &loose, stats)?;
        if err > TRUST * loose_tol || err > opts.tol + SLACK * loose_tol * (1.0 + err) {
            return Ok(err);
        }
        self.g = g;
        self.iters -= 1;
        self.step_at(p, opts, stats)
    }

    fn step_at(
        &mut self,
        p: &Problem<'_>,
        opts: &SinkhornOptions,
        stats: &mut KernelStats,
    ) -> Result<f64> {
        let eps = self.eps;
        let omega = if self.relax {
            self.relaxation.omega()
        } else {
            1.0
        };
        let g_plain = update(p.ys, p.xs, &self.f, opts, eps, stats)?;
        relax(&mut self.g, &g_plain, omega);
        // the column error of (f, g) (exactly 0 in a plain iteration)
        let col_err = if omega == 1.0 {
            0.0
        } else {
            marginal_error(p.ys, &self.g, &g_plain, eps)
        };
        self.f_plain = update(p.xs, p.ys, &self.g, opts, eps, stats)?;
        self.err = marginal_error(p.xs, &self.f, &self.f_plain, eps) + col_err;
        self.omega = omega;
        self.iters += 1;
        Ok(self.err)
    }

    fn advance(&mut self, keep_step: bool) {
        if keep_step {
            self.f_step = Some(self.f.clone());
        }
        if let Some(acc) = self.anderson.as_mut() {
            self.f = acc.next(&self.f, &self.f_plain, self.err, self.eps);
        } else {
            relax(&mut self.f, &self.f_plain, self.omega);
            self.relaxation.observe(self.err);
        }
    }

    /// The measured pair (f, g) whose error is `err`, and the error.
    fn into_pair(self, advanced: bool) -> (Vec<f64>, Vec<f64>, f64) {
        let f = match (advanced, self.f_step) {
            (true, Some(f)) => f,
            _ => self.f,
        };
        (f, self.g, self.err)
    }
}

/// What an iteration of a chain leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Run,
    /// The stage's tolerance is reached.
    Done,
    /// The callback or n_iter_max stops the loop.
    Stop,
}

/// One iteration of `ch`, counted, reported to the callback and checked against `stage_tol` and
/// `n_iter_max`.
fn run(
    ch: &mut Chain,
    p: &Problem<'_>,
    opts: &SinkhornOptions,
    stage_tol: f64,
    n_iter: &mut usize,
    stats: &mut KernelStats,
    callback: &mut dyn FnMut(&Progress) -> bool,
) -> Result<Outcome> {
    let err = ch.step(p, opts, stats)?;
    *n_iter += 1;
    if !err.is_finite() {
        return Err(Error::NumericalBreakdown(format!(
            "marginal error became {err} at iteration {} (eps = {:e})",
            *n_iter, ch.eps
        )));
    }
    // (f, g) is the pair whose error is `err`: every exit returns it
    if callback(&Progress {
        n_iter: *n_iter,
        eps: ch.eps,
        marginal_error: err,
    }) {
        return Ok(Outcome::Stop);
    }
    if err <= stage_tol {
        return Ok(Outcome::Done);
    }
    if *n_iter >= opts.n_iter_max {
        return Ok(Outcome::Stop);
    }
    Ok(Outcome::Run)
}

/// Checks the scalar options every solver shares.
pub(super) fn check_options(opts: &SinkhornOptions) -> Result<()> {
    if !(opts.eps > 0.0 && opts.eps.is_finite()) {
        return Err(Error::invalid(
            "eps",
            format!("must be positive and finite, got {}", opts.eps),
        ));
    }
    if !(opts.tol > 0.0) {
        return Err(Error::invalid(
            "tol",
            format!("must be positive, got {}", opts.tol),
        ));
    }
    for (name, rho) in [("rho_a", opts.rho_a), ("rho_b", opts.rho_b)] {
        if !(rho > 0.0) {
            return Err(Error::invalid(
                name,
                format!("must be positive (infinite: balanced), got {rho}"),
            ));
        }
    }
    if !(opts.mass > 0.0 && opts.mass.is_finite()) {
        return Err(Error::invalid(
            "mass",
            format!("must be positive and finite, got {}", opts.mass),
        ));
    }
    Ok(())
}

/// The eps schedule: from the squared diameter of the joint cloud down to eps (eps alone without
/// scaling).
pub(super) fn eps_schedule(tx: &KdTree, ty: &KdTree, opts: &SinkhornOptions) -> Result<Vec<f64>> {
    let mut schedule = Vec::new();
    if let Some(q) = opts.eps_scaling {
        if !(q > 0.0 && q < 1.0) {
            return Err(Error::invalid(
                "eps_scaling",
                format!("must be in (0, 1), got {q}"),
            ));
        }
        let mut diam2 = 0.0;
        for k in 0..tx.d {
            let lo = tx.lo(0)[k].min(ty.lo(0)[k]);
            let hi = tx.hi(0)[k].max(ty.hi(0)[k]);
            diam2 += (hi - lo) * (hi - lo);
        }
        if !diam2.is_finite() {
            return Err(Error::invalid(
                "x",
                format!("the squared diameter of x and y is {diam2}: rescale the points"),
            ));
        }
        let mut e = diam2;
        while e > opts.eps {
            schedule.push(e);
            e *= q;
        }
    }
    schedule.push(opts.eps);
    Ok(schedule)
}

/// Solves entropic OT between x (n x d) and y (m x d), row-major, with weights a, b.
/// `callback` is called after every iteration; returning true stops the loop. `interrupt` is
/// checked before every iteration (`Error::Interrupted` once raised).
#[allow(clippy::too_many_arguments)]
pub fn sinkhorn(
    x: &[f64],
    y: &[f64],
    d: usize,
    a: &[f64],
    b: &[f64],
    opts: &SinkhornOptions,
    callback: &mut dyn FnMut(&Progress) -> bool,
    interrupt: &Interrupt,
) -> Result<SinkhornOutput> {
    if d == 0 || x.is_empty() || y.is_empty() || x.len() % d != 0 || y.len() % d != 0 {
        return Err(Error::invalid(
            "x",
            "x and y must be non-empty (n, d) and (m, d) arrays",
        ));
    }
    let (n, m) = (x.len() / d, y.len() / d);
    check_weights(a, n, "a")?;
    check_weights(b, m, "b")?;
    check_options(opts)?;
    let xs = Side::new(x, d, a, opts.leaf_size, opts.rho_a, opts.mass)?;
    let ys = Side::new(y, d, b, opts.leaf_size, opts.rho_b, opts.mass)?;
    let mut memory_bytes = xs.tree.memory_bytes() + ys.tree.memory_bytes() + 8 * 8 * (n + m);
    if opts.stored {
        memory_bytes += stored_bytes(n, m)?; // refused above the cap before any work
    }
    let schedule = eps_schedule(&xs.tree, &ys.tree, opts)?;

    // the caches serve the final tolerance, not that of the first (loose) stage
    reserve_monomial_cache(&xs.tree, opts.kernel_tol);
    reserve_monomial_cache(&ys.tree, opts.kernel_tol);
    let mut stats = KernelStats::default();
    let p = Problem { xs: &xs, ys: &ys };
    // a stage before the last only warm-starts the next one (to marginal error 1e-2): its kernel
    // needs no more than that / 10 (measured: early stages 1.3x faster at n = 1e5)
    let loose = SinkhornOptions {
        kernel_tol: opts.kernel_tol.max(opts.tol.max(1e-2) / 10.0),
        ..opts.clone()
    };
    // multiscale: the stages before the last on coarse clouds (multiscale.rs)
    let coarse = if opts.coarse_leaf > 0 && schedule.len() > 1 {
        let cx = coarse_side(&xs, opts.coarse_leaf, opts.leaf_size)?;
        let cy = coarse_side(&ys, opts.coarse_leaf, opts.leaf_size)?;
        reserve_monomial_cache(&cx.tree, loose.kernel_tol);
        reserve_monomial_cache(&cy.tree, loose.kernel_tol);
        Some((cx, cy))
    } else {
        None
    };
    let cp = coarse.as_ref().map(|(cx, cy)| Problem { xs: cx, ys: cy });
    let mut n_iter = 0usize;
    let mut converged = false;
    let last = schedule.len() - 1;
    let mut state = Outcome::Run;
    // with a schedule, the plain run at eps (what eps_scaling = None does) makes its first
    // iteration now, and races the final stage if that stalls (see `Stall`)
    // (method="matrix": only once the final stage stalls, module notes)
    let plain_chain =
        |stats: &mut KernelStats| Chain::new(&p, vec![0.0; m], opts, opts.eps, opts.relax, stats);
    let mut plain = if last > 0 && !opts.stored {
        Some(plain_chain(&mut stats)?)
    } else {
        None
    };
    // which chain's measured pair is returned, and whether that chain has advanced past it
    let mut pick_plain = true;
    let mut pick_advanced = false;
    if let Some(pc) = plain.as_mut() {
        state = run(pc, &p, opts, opts.tol, &mut n_iter, &mut stats, callback)?;
        converged = state == Outcome::Done;
        if state == Outcome::Run {
            pc.advance(true);
        }
    }
    let mut warm: Option<Chain> = None;
    for (stage, &eps) in schedule.iter().enumerate() {
        if state != Outcome::Run || n_iter >= opts.n_iter_max {
            break;
        }
        let final_stage = stage == last;
        let stage_tol = if final_stage {
            opts.tol
        } else {
            opts.tol.max(1e-2)
        };
        let stage_opts = if final_stage { opts } else { &loose };
        let prob = match (&cp, final_stage) {
            (Some(coarse_problem), false) => coarse_problem,
            _ => &p,
        };
        // warm start from the previous stage's g (from the coarse f's c-transform onto the full y
        // when the previous stage ran on the coarse clouds)
        let relax_stage = final_stage && opts.relax;
        let mut chain = if opts.stored {
            // g of the previous stage lives on the coarse y until the final stage's start
            let source = match (&cp, final_stage) {
                (Some(coarse_problem), true) => coarse_problem.ys,
                _ => prob.ys,
            };
            let f = stored_start(warm.take(), source, prob.xs, eps, opts)?;
            Chain::new_stored(prob, f, stage_opts, eps, relax_stage)?
        } else {
            let g = match (warm.take(), &cp) {
                (None, _) => vec![0.0; prob.ys.w.len()],
                (Some(c), Some(coarse_problem)) if final_stage => {
                    extend(&ys, coarse_problem.xs, &c.f, &loose, eps, &mut stats)?
                }
                (Some(c), _) => c.g,
            };
            Chain::new(prob, g, stage_opts, eps, relax_stage, &mut stats)?
        };
        let mut stall = (final_stage && last > 0).then(|| Stall::new(opts.tol));
        let keep = stall.is_some();
        (pick_plain, pick_advanced) = (false, false);
        while state == Outcome::Run {
            interrupt.check()?;
            let racing = stall.as_ref().is_some_and(Stall::stalled);
            if racing && plain.is_none() {
                plain = Some(plain_chain(&mut stats)?);
            }
            if let (Some(pc), true) = (plain.as_mut(), racing) {
                state = run(pc, &p, opts, stage_tol, &mut n_iter, &mut stats, callback)?;
                if state == Outcome::Run {
                    pc.advance(true);
                } else {
                    // plain stopped or converged; on a stop, the better measured pair of the two
                    let warm_better = state == Outcome::Stop && chain.err < pc.err;
                    (pick_plain, pick_advanced) = (!warm_better, warm_better);
                    break;
                }
                state = run(
                    &mut chain,
                    prob,
                    stage_opts,
                    stage_tol,
                    &mut n_iter,
                    &mut stats,
                    callback,
                )?;
                if state == Outcome::Stop && pc.err < chain.err {
                    (pick_plain, pick_advanced) = (true, true);
                }
            } else {
                state = run(
                    &mut chain,
                    prob,
                    stage_opts,
                    stage_tol,
                    &mut n_iter,
                    &mut stats,
                    callback,
                )?;
            }
            if state != Outcome::Run {
                break;
            }
            chain.advance(keep);
            if !final_stage && chain.iters >= 50 {
                break;
            }
            if let Some(st) = stall.as_mut() {
                st.observe(chain.err);
            }
        }
        if state == Outcome::Done {
            converged = final_stage;
            state = if final_stage {
                Outcome::Stop
            } else {
                Outcome::Run
            };
        }
        warm = Some(chain);
    }
    // the final stage's stored kernel serves the objective (when its bounds allow)
    let matrix = warm
        .as_mut()
        .filter(|c| c.eps == opts.eps)
        .and_then(|c| c.matrix.take());
    let picked = if pick_plain { plain } else { warm };
    let Some(chain) = picked else {
        return Err(Error::NumericalBreakdown(
            "no Sinkhorn iteration ran".to_string(),
        ));
    };
    let chain_eps = chain.eps;
    let (mut f, mut g, mut err) = chain.into_pair(pick_advanced);
    if chain_eps != opts.eps {
        // stopped inside an eps-scaling stage: project onto the final eps so that the potentials,
        // cost and error all refer to it (not counted as an iteration)
        let eps = opts.eps;
        if let Some(coarse_problem) = &cp {
            g = extend(&ys, coarse_problem.xs, &f, opts, eps, &mut stats)?; // a coarse chain's g
        }
        f = update(&xs, &ys, &g, opts, eps, &mut stats)?;
        g = update(&ys, &xs, &f, opts, eps, &mut stats)?;
        let f_next = update(&xs, &ys, &g, opts, eps, &mut stats)?;
        err = marginal_error(&xs, &f, &f_next, eps);
    }
    let (cost, dual) = match objective_stored(matrix, &xs, &ys, &f, &g, opts)? {
        Some(values) => values,
        None => objective(&xs, &ys, &f, &g, opts)?,
    };
    Ok(SinkhornOutput {
        f: xs.to_caller_order(&f),
        g: ys.to_caller_order(&g),
        n_iter,
        marginal_error: err,
        converged,
        cost,
        dual,
        stats,
        memory_bytes,
    })
}

#[cfg(test)]
mod tests;
