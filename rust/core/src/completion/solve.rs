//! The per-row regressions of one alternating-minimization half-step.

use super::fixed::MAX_CHUNKS;
use super::rows::{
    cg_row, cg_sq_residual, dot4, exact_row, factor_sq_residual, fmadd, Precond, RowData, Work,
};
use crate::error::{try_filled, Error, Result};
use crate::scalar::Scalar;
use rayon::prelude::*;

/// How each row's k x k ridge system is solved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowSolver {
    /// Form the normal matrix and factor it (Cholesky).
    Exact,
    /// Preconditioned CG from the previous iterate, at most `max_iter` steps, relative residual `tol`.
    Cg { max_iter: usize, tol: f64 },
}

/// What one half-step did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HalfStep {
    /// Total CG iterations over all rows (0 for the exact solver).
    pub cg_iterations: usize,
    /// Rows with at least one but fewer than k observations (solved with the `reg_under` ridge).
    pub underdetermined: usize,
    /// Rows without observations (set to zero).
    pub empty: usize,
    /// `sum (M_ij - <x_i, F_j>)^2` over the observed entries after the solves (when asked for;
    /// otherwise 0): the observed error of the new iterate without another pass over the factor.
    pub sq_residual: f64,
}

/// Checks the row pointers of a CSR matrix with `m` rows against its `nnz` indices and values.
/// The indices themselves are checked row by row where the kernels read them ([`indices_below`]):
/// a separate pass over them would cost a tenth of a half-step.
pub(super) fn check_indptr(indptr: &[i64], nnz: usize, data_len: usize, m: usize) -> Result<()> {
    if indptr.len() != m + 1 {
        return Err(Error::invalid(
            "indptr",
            format!("length {} != rows + 1 = {}", indptr.len(), m + 1),
        ));
    }
    if indptr[0] != 0 || indptr[m] as usize != nnz || nnz != data_len {
        return Err(Error::invalid("indptr", "does not match indices and data"));
    }
    if indptr.windows(2).any(|w| w[1] < w[0]) {
        return Err(Error::invalid("indptr", "must be nondecreasing"));
    }
    Ok(())
}

/// A column index of the observations: `i32` or `i64`, SciPy's two index types (int32 indices,
/// the common case, are read as they are: half the bytes of every pass over the structure).
pub trait ColIndex: Copy + Send + Sync + 'static {
    /// The index as a position (meaningful once [`indices_below`] has checked it).
    fn at(self) -> usize;
    /// The index sign-extended to `u64`: a negative one becomes a huge value.
    fn key(self) -> u64;
}

impl ColIndex for i32 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
    #[inline(always)]
    fn key(self) -> u64 {
        i64::from(self) as u64
    }
}

impl ColIndex for i64 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
    #[inline(always)]
    fn key(self) -> u64 {
        self as u64
    }
}

/// Whether every index lies in `[0, n)`: a negative one wraps to a huge `u64`, so one maximum
/// (vectorized) decides.
#[inline(always)]
pub(super) fn indices_below<I: ColIndex>(indices: &[I], n: usize) -> bool {
    indices.is_empty() || indices.iter().fold(0u64, |m, &j| m.max(j.key())) < n as u64
}

pub(super) fn index_error(n: usize) -> Error {
    Error::invalid("indices", format!("entries must lie in [0, {n})"))
}

pub(super) fn check_csr(
    indptr: &[i64],
    indices: &[i64],
    data_len: usize,
    m: usize,
    n: usize,
) -> Result<()> {
    check_indptr(indptr, indices.len(), data_len, m)?;
    if !indices_below(indices, n) {
        return Err(index_error(n));
    }
    Ok(())
}

/// Rows per work unit: one set of work vectors per block, so nothing is allocated per row.
const BLOCK: usize = 64;

/// `src` (rows x k) copied into rows of stride `kp` with zero padding.
fn padded(src: &[f64], k: usize, kp: usize, what: &str) -> Result<Vec<f64>> {
    let rows = src.len() / k;
    let mut out = try_filled(rows * kp, 0.0, what)?;
    for (o, s) in out.chunks_exact_mut(kp).zip(src.chunks_exact(k)) {
        o[..k].copy_from_slice(s);
    }
    Ok(out)
}

/// A copy of `src` (rows x k) as `T` in rows of stride `kp`, zero padded, starting on a 64-byte
/// boundary (a gathered row then touches the fewest cache lines: 3 for 20 f64): the buffer and
/// the offset of its first row.
pub(super) fn padded_aligned<T: Scalar>(
    src: &[f64],
    k: usize,
    kp: usize,
    what: &str,
) -> Result<(Vec<T>, usize)> {
    let rows = src.len() / k;
    let slack = 64 / std::mem::size_of::<T>();
    let mut out = try_filled(rows * kp + slack, T::ZERO, what)?;
    let off = out.as_ptr().align_offset(64).min(slack);
    for (o, s) in out[off..].chunks_exact_mut(kp).zip(src.chunks_exact(k)) {
        for (d, &v) in o.iter_mut().zip(s) {
            *d = T::from_f64(v);
        }
    }
    Ok((out, off))
}

struct HalfStepInput<'a, I> {
    indptr: &'a [i64],
    indices: &'a [I],
    data: &'a [f64],
    factor: &'a [f64],
    n: usize,
    k: usize,
    kp: usize,
    reg: f64,
    reg_under: f64,
    solver: RowSolver,
    precond: Precond,
    residual: bool,
    /// Whether CG may run on the fixed-size kernels (false only in tests: the run-time-length path).
    fixed: bool,
}

type BlockStats = (usize, usize, usize, f64);

/// Solves the rows `first..first + x.len() / k` into `x`; returns (CG steps, under, empty) or the
/// first row whose exact normal matrix could not be factored. `C`: as in [`cg_row`] (the exact
/// solver runs with `C = 0` only).
#[inline(always)]
fn solve_block<const F: bool, const C: usize, I: ColIndex>(
    h: &HalfStepInput<'_, I>,
    first: usize,
    x: &mut [f64],
    w: &mut Work,
) -> Result<BlockStats> {
    let (k, kp) = (h.k, h.kp);
    let (mut steps, mut under, mut empty, mut sq) = (0, 0, 0, 0.0);
    for (t, xi) in x.chunks_exact_mut(k).enumerate() {
        let i = first + t;
        let (a, b) = (h.indptr[i] as usize, h.indptr[i + 1] as usize);
        if a == b {
            xi.fill(0.0);
            empty += 1;
            continue;
        }
        if !indices_below(&h.indices[a..b], h.n) {
            return Err(index_error(h.n));
        }
        let few = b - a < k;
        under += usize::from(few);
        let row = RowData {
            cols: &h.indices[a..b],
            vals: &h.data[a..b],
            reg: if few { h.reg.max(h.reg_under) } else { h.reg },
            c: (b - a) as f64 / h.n as f64,
        };
        w.x[..k].copy_from_slice(xi);
        match h.solver {
            RowSolver::Exact => {
                if C != 0 {
                    return Err(Error::invalid(
                        "solver",
                        "exact rows run on the C = 0 build",
                    ));
                }
                if !exact_row::<F, I>(h.factor, k, kp, &row, w) {
                    return Err(Error::NumericalBreakdown(
                        "row normal matrix is not finite".into(),
                    ));
                }
                if h.residual {
                    sq += factor_sq_residual::<F, I>(h.factor, kp, &row, &w.x);
                }
            }
            RowSolver::Cg { max_iter, tol } => {
                steps += cg_row::<F, C, I>(h.factor, k, kp, &row, &h.precond, max_iter, tol, w);
                if h.residual {
                    sq += cg_sq_residual::<F, C>(kp, row.cols.len(), row.vals, w);
                }
            }
        }
        xi.copy_from_slice(&w.x[..k]);
    }
    Ok((steps, under, empty, sq))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn solve_block_avx2<const C: usize, I: ColIndex>(
    h: &HalfStepInput<'_, I>,
    first: usize,
    x: &mut [f64],
    w: &mut Work,
) -> Result<BlockStats> {
    solve_block::<true, C, I>(h, first, x, w)
}

/// The same AVX2 code with AVX-512F/VL enabled: 32 vector registers instead of 16, so the
/// accumulators, the iterate and the current factor row of the fixed-size kernels (4 C registers
/// in the gather) stay in registers instead of spilling to the stack on every entry.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
fn solve_block_avx512<const C: usize, I: ColIndex>(
    h: &HalfStepInput<'_, I>,
    first: usize,
    x: &mut [f64],
    w: &mut Work,
) -> Result<BlockStats> {
    solve_block::<true, C, I>(h, first, x, w)
}

/// The instruction sets the kernels are built for (chosen at run time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Isa {
    Portable,
    /// AVX2 + FMA.
    Avx2,
    /// AVX2 + FMA with the AVX-512F/VL register file.
    Avx512,
}

impl Isa {
    /// The widest build this CPU runs.
    pub(super) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                return if has!("avx512f") && has!("avx512vl") {
                    Isa::Avx512
                } else {
                    Isa::Avx2
                };
            }
        }
        Isa::Portable
    }

    /// Every build this CPU runs (for the tests that compare them).
    #[cfg(test)]
    pub(super) fn available() -> Vec<Isa> {
        match Isa::detect() {
            Isa::Portable => vec![Isa::Portable],
            Isa::Avx2 => vec![Isa::Portable, Isa::Avx2],
            Isa::Avx512 => vec![Isa::Portable, Isa::Avx2, Isa::Avx512],
        }
    }
}

fn run_block_with<const C: usize, I: ColIndex>(
    h: &HalfStepInput<'_, I>,
    isa: Isa,
    first: usize,
    x: &mut [f64],
    w: &mut Work,
) -> Result<BlockStats> {
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: `isa` comes from `Isa::detect` (or a test's `Isa::available`): the CPU has these features
        Isa::Avx512 => return unsafe { solve_block_avx512::<C, I>(h, first, x, w) },
        // SAFETY: as above
        Isa::Avx2 => return unsafe { solve_block_avx2::<C, I>(h, first, x, w) },
        Isa::Portable => {}
    }
    let _ = isa;
    solve_block::<false, C, I>(h, first, x, w)
}

/// The block on the build for its padded rank: CG with `kp <= 4 MAX_CHUNKS` on the fixed-size
/// kernels, everything else on the run-time-length loops.
fn run_block<I: ColIndex>(
    h: &HalfStepInput<'_, I>,
    fast: Isa,
    first: usize,
    x: &mut [f64],
    w: &mut Work,
) -> Result<BlockStats> {
    let chunks = match h.solver {
        RowSolver::Cg { .. } if h.fixed && h.kp <= 4 * MAX_CHUNKS => h.kp / 4,
        _ => 0,
    };
    match chunks {
        1 => run_block_with::<1, I>(h, fast, first, x, w),
        2 => run_block_with::<2, I>(h, fast, first, x, w),
        3 => run_block_with::<3, I>(h, fast, first, x, w),
        4 => run_block_with::<4, I>(h, fast, first, x, w),
        5 => run_block_with::<5, I>(h, fast, first, x, w),
        6 => run_block_with::<6, I>(h, fast, first, x, w),
        7 => run_block_with::<7, I>(h, fast, first, x, w),
        8 => run_block_with::<8, I>(h, fast, first, x, w),
        9 => run_block_with::<9, I>(h, fast, first, x, w),
        10 => run_block_with::<10, I>(h, fast, first, x, w),
        _ => run_block_with::<0, I>(h, fast, first, x, w),
    }
}

/// One half-step's regressions: the observed entries (CSR of shape m x `n`), the fixed factor and
/// the solver.
#[derive(Debug, Clone, Copy)]
pub struct RowProblem<'a, I = i64> {
    pub indptr: &'a [i64],
    pub indices: &'a [I],
    pub data: &'a [f64],
    /// The fixed factor, `n x k`, row-major.
    pub factor: &'a [f64],
    pub n: usize,
    pub k: usize,
    /// Ridge of every row, and of the rows with fewer than k observations (the larger one applies).
    pub reg: f64,
    pub reg_under: f64,
    pub solver: RowSolver,
    /// For CG: the eigendecomposition `factor^T factor / n = q diag(lam) q^T` (`q` k x k, row-major);
    /// ignored by the exact solver (pass empty slices).
    pub q: &'a [f64],
    pub lam: &'a [f64],
}

/// One half-step: overwrite each row of `x` (m x k, row-major; the CG warm start) with the solution
/// of its ridge regression against `p.factor` over its observed entries.
///
/// Rows with fewer than k observations use the ridge `max(reg, reg_under)`; rows without any are
/// set to zero. `parallel`: rows in blocks on the current rayon pool, else on the calling thread.
/// `residual`: also return the squared residual of the new rows over their observed entries.
pub fn solve_rows<I: ColIndex>(
    p: &RowProblem<'_, I>,
    x: &mut [f64],
    parallel: bool,
    residual: bool,
) -> Result<HalfStep> {
    solve_rows_on(p, x, parallel, residual, Isa::detect(), true)
}

/// [`solve_rows`] on the build `fast` (one the CPU runs), and
/// with (`fixed`) or without the fixed-size CG kernels.
fn solve_rows_on<I: ColIndex>(
    p: &RowProblem<'_, I>,
    x: &mut [f64],
    parallel: bool,
    residual: bool,
    fast: Isa,
    fixed: bool,
) -> Result<HalfStep> {
    let RowProblem {
        indptr,
        indices,
        data,
        factor,
        n,
        k,
        reg,
        reg_under,
        solver,
        q,
        lam,
    } = *p;
    if k == 0 || x.len() % k != 0 {
        return Err(Error::invalid(
            "x",
            "length must be a positive multiple of rank",
        ));
    }
    let m = x.len() / k;
    check_indptr(indptr, indices.len(), data.len(), m)?;
    if factor.len() != n * k {
        return Err(Error::invalid(
            "factor",
            format!("length {} != {n} * {k}", factor.len()),
        ));
    }
    if !(reg >= 0.0) || !(reg_under >= 0.0) {
        return Err(Error::invalid("reg", "must be nonnegative"));
    }
    let kp = k.div_ceil(4) * 4;
    let precond = match solver {
        RowSolver::Cg { .. } => {
            if q.len() != k * k || lam.len() != k {
                return Err(Error::invalid(
                    "q",
                    "preconditioner must be k x k with k eigenvalues",
                ));
            }
            let mut qt = vec![0.0; k * k];
            for i in 0..k {
                for a in 0..k {
                    qt[a * k + i] = q[i * k + a];
                }
            }
            let mut lam_p = vec![0.0; kp];
            lam_p[..k].copy_from_slice(lam);
            Precond {
                q: padded(q, k, kp, "preconditioner")?,
                qt: padded(&qt, k, kp, "preconditioner")?,
                lam: lam_p,
            }
        }
        RowSolver::Exact => Precond {
            q: Vec::new(),
            qt: Vec::new(),
            lam: vec![0.0; kp],
        },
    };
    let (factor_p, off) = padded_aligned::<f64>(factor, k, kp, "factor")?;
    let h = HalfStepInput {
        indptr,
        indices,
        data,
        factor: &factor_p[off..off + n * kp],
        n,
        k,
        kp,
        reg,
        reg_under,
        solver,
        precond,
        residual,
        fixed,
    };
    // work vectors per rayon job, not per block: the gathered rows take up to max|Omega_i| x kp
    // (a fresh large buffer per block costs page faults that outweigh the arithmetic)
    let longest = indptr
        .windows(2)
        .map(|w| (w[1] - w[0]) as usize)
        .max()
        .unwrap_or(0);
    let new_work = || Work::new(kp, longest);
    let run = |w: &mut Work, (b, xb): (usize, &mut [f64])| run_block(&h, fast, b * BLOCK, xb, w);
    let results: Vec<Result<BlockStats>> = if parallel {
        x.par_chunks_mut(BLOCK * k)
            .enumerate()
            .map_init(new_work, run)
            .collect()
    } else {
        let mut w = new_work();
        x.chunks_mut(BLOCK * k)
            .enumerate()
            .map(|item| run(&mut w, item))
            .collect()
    };
    let mut stats = HalfStep::default();
    for r in results {
        let (it, under, empty, sq) = r?;
        stats.sq_residual += sq;
        stats.cg_iterations += it;
        stats.underdetermined += under;
        stats.empty += empty;
    }
    Ok(stats)
}

#[inline(always)]
fn sq_error_rows<const F: bool>(
    indptr: &[i64],
    indices: &[i64],
    data: &[f64],
    u: &[f64],
    v: &[f64],
    kp: usize,
    rows: std::ops::Range<usize>,
) -> f64 {
    let mut total = 0.0;
    for i in rows {
        let ui = &u[i * kp..(i + 1) * kp];
        for p in indptr[i] as usize..indptr[i + 1] as usize {
            let j = indices[p] as usize;
            let e = data[p] - dot4::<F>(ui, &v[j * kp..(j + 1) * kp]);
            total = fmadd::<F>(e, e, total);
        }
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sq_error_rows_avx2(
    indptr: &[i64],
    indices: &[i64],
    data: &[f64],
    u: &[f64],
    v: &[f64],
    kp: usize,
    rows: std::ops::Range<usize>,
) -> f64 {
    sq_error_rows::<true>(indptr, indices, data, u, v, kp, rows)
}

/// `sum_{(i,j) observed} (M_ij - <U_i, V_j>)^2` for the CSR matrix of shape m x n.
#[allow(clippy::too_many_arguments)]
pub fn observed_sq_error(
    indptr: &[i64],
    indices: &[i64],
    data: &[f64],
    u: &[f64],
    v: &[f64],
    n: usize,
    k: usize,
    parallel: bool,
) -> Result<f64> {
    if k == 0 || u.len() % k != 0 || v.len() != n * k {
        return Err(Error::invalid("u", "factor lengths do not match rank"));
    }
    let m = u.len() / k;
    check_csr(indptr, indices, data.len(), m, n)?;
    let kp = k.div_ceil(4) * 4;
    let (u, v) = (padded(u, k, kp, "u")?, padded(v, k, kp, "v")?);
    let fast = Isa::detect() != Isa::Portable;
    let block = |b: usize| {
        let rows = b * BLOCK..((b + 1) * BLOCK).min(m);
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: `fast` is the run-time detection of AVX2 and FMA
            return unsafe { sq_error_rows_avx2(indptr, indices, data, &u, &v, kp, rows) };
        }
        let _ = fast;
        sq_error_rows::<false>(indptr, indices, data, &u, &v, kp, rows)
    };
    let blocks = m.div_ceil(BLOCK);
    Ok(if parallel {
        (0..blocks).into_par_iter().map(block).sum()
    } else {
        (0..blocks).map(block).sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// A 3 x 2 rank-1 matrix fully observed: one exact half-step recovers the row factor.
    #[test]
    fn exact_and_cg_agree_on_small_case() {
        let factor = [1.0, 0.5, -0.3, 2.0, 0.7, 0.1]; // n = 3, k = 2
        let truth = [0.4, -1.0, 2.0, 0.3]; // m = 2
        let indptr = [0i64, 3, 6];
        let indices = [0i64, 1, 2, 0, 1, 2];
        let mut data = vec![0.0; 6];
        for i in 0..2 {
            for j in 0..3 {
                data[i * 3 + j] = dot(&truth[i * 2..i * 2 + 2], &factor[j * 2..j * 2 + 2]);
            }
        }
        let mut x = vec![0.0; 4];
        let exact = RowProblem {
            indptr: &indptr,
            indices: &indices,
            data: &data,
            factor: &factor,
            n: 3,
            k: 2,
            reg: 0.0,
            reg_under: 1e-8,
            solver: RowSolver::Exact,
            q: &[],
            lam: &[],
        };
        solve_rows(&exact, &mut x, false, false).unwrap();
        for (a, b) in x.iter().zip(&truth) {
            assert!((a - b).abs() < 1e-12);
        }
        let mut y = vec![0.0; 4];
        let (q, lam) = ([1.0, 0.0, 0.0, 1.0], [1.0, 1.0]);
        let cg = RowSolver::Cg {
            max_iter: 10,
            tol: 1e-14,
        };
        let problem = RowProblem {
            solver: cg,
            q: &q,
            lam: &lam,
            ..exact
        };
        let stats = solve_rows(&problem, &mut y, true, true).unwrap();
        assert!(stats.cg_iterations >= 2);
        for (a, b) in y.iter().zip(&truth) {
            assert!((a - b).abs() < 1e-10);
        }
        let err = observed_sq_error(&indptr, &indices, &data, &y, &factor, 3, 2, false).unwrap();
        assert!(err < 1e-18);
        assert!((stats.sq_residual - err).abs() < 1e-18);
    }

    #[test]
    fn bad_structure_is_an_error() {
        let mut x = vec![0.0; 2];
        let problem = RowProblem {
            indptr: &[0, 1],
            indices: &[5],
            data: &[1.0],
            factor: &[1.0, 1.0],
            n: 1,
            k: 2,
            reg: 0.0,
            reg_under: 0.0,
            solver: RowSolver::Exact,
            q: &[],
            lam: &[],
        };
        let r = solve_rows(&problem, &mut x, false, false);
        assert!(r.is_err());
        let negative = RowProblem {
            indptr: &[0, 1],
            indices: &[-1i32],
            data: &[1.0],
            factor: &[1.0, 1.0],
            n: 1,
            k: 2,
            reg: 0.0,
            reg_under: 0.0,
            solver: RowSolver::Exact,
            q: &[],
            lam: &[],
        };
        assert!(solve_rows(&negative, &mut x, false, false).is_err());
    }

    #[test]
    fn underdetermined_and_empty_rows_are_counted() {
        let factor = [1.0, 0.0, 0.0, 1.0];
        let mut x = vec![0.0; 4];
        let problem = RowProblem {
            indptr: &[0, 1, 1],
            indices: &[0],
            data: &[2.0],
            factor: &factor,
            n: 2,
            k: 2,
            reg: 0.0,
            reg_under: 1e-6,
            solver: RowSolver::Exact,
            q: &[],
            lam: &[],
        };
        let s = solve_rows(&problem, &mut x, false, false).unwrap();
        assert_eq!((s.underdetermined, s.empty), (1, 1));
        assert!((x[0] - 2.0).abs() < 1e-5 && x[1].abs() < 1e-12 && x[2] == 0.0);
    }

    /// The portable build and the AVX2 + FMA build, with and without the fixed-size CG kernels,
    /// agree, for a rank that is not a multiple of 4 (padding) and rows of every length around it,
    /// with both solvers.
    #[test]
    fn portable_and_simd_builds_agree() {
        let (m, n, k) = (7usize, 9usize, 5usize);
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let factor: Vec<f64> = (0..n * k).map(|_| next()).collect();
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
        for i in 0..m {
            for j in 0..n {
                if (i * 7 + j * 3) % (i + 2) != 0 {
                    indices.push(j as i64);
                    data.push(next());
                }
            }
            indptr.push(indices.len() as i64);
        }
        let x0: Vec<f64> = (0..m * k).map(|_| next()).collect();
        let (q, lam): (Vec<f64>, Vec<f64>) = (
            (0..k * k)
                .map(|t| f64::from(u8::from(t % (k + 1) == 0)))
                .collect(),
            vec![1.0; k],
        );
        let cg = RowSolver::Cg {
            max_iter: k,
            tol: 1e-12,
        };
        for solver in [RowSolver::Exact, cg] {
            let run = |fast: Isa, fixed: bool| {
                let mut x = x0.clone();
                let problem = RowProblem {
                    indptr: &indptr,
                    indices: &indices,
                    data: &data,
                    factor: &factor,
                    n,
                    k,
                    reg: 1e-3,
                    reg_under: 0.1,
                    solver,
                    q: &q,
                    lam: &lam,
                };
                let s = solve_rows_on(&problem, &mut x, false, true, fast, fixed).unwrap();
                // int32 indices (SciPy's usual type) read as they are: the same rows
                let narrow: Vec<i32> = indices.iter().map(|&j| j as i32).collect();
                let mut x32 = x0.clone();
                let problem32 = RowProblem {
                    indptr: problem.indptr,
                    indices: &narrow,
                    data: problem.data,
                    factor: problem.factor,
                    n,
                    k,
                    reg: problem.reg,
                    reg_under: problem.reg_under,
                    solver,
                    q: &q,
                    lam: &lam,
                };
                let s32 = solve_rows_on(&problem32, &mut x32, false, true, fast, fixed).unwrap();
                assert_eq!((&x, s), (&x32, s32));
                (x, s)
            };
            let (xa, sa) = run(Isa::Portable, false);
            let builds = Isa::available()
                .into_iter()
                .flat_map(|i| [(i, false), (i, true)]);
            for (fast, fixed) in builds.skip(1) {
                let (xb, sb) = run(fast, fixed);
                for (a, b) in xa.iter().zip(&xb) {
                    assert!((a - b).abs() <= 1e-9 * (1.0 + a.abs()), "{a} vs {b}");
                }
                assert_eq!(
                    (sa.underdetermined, sa.empty),
                    (sb.underdetermined, sb.empty)
                );
                assert!((sa.sq_residual - sb.sq_residual).abs() <= 1e-9 * (1.0 + sa.sq_residual));
            }
        }
    }
}
