//! Sparse (CSR) times dense products for the spectral start: `Y = A X` over the observed entries.
//! The product with `A^T` is the same call on the CSR of the transpose (the column side of the
//! observations), so both run row-parallel with gathers only.
//!
//! Each output row is accumulated in registers over its observed entries, up to 32 columns at a
//! time (`C` chunks of 4 lanes, fixed at compile time): one multiply-add per lane and entry. `X`
//! is gathered from a padded copy stored as `T`: f64, or f32 where a start needs no more (half the
//! bytes of the random gathers; the sums stay f64).

use super::fixed::{axpy, load, store, Chunks, PRODUCT_CHUNKS};
use super::rows::{prefetch_row, PREFETCH_AHEAD};
use super::solve::{check_indptr, index_error, indices_below, padded_aligned, ColIndex, Isa};
use crate::error::{try_filled, Error, Result};
use crate::scalar::Scalar;
use rayon::prelude::*;

/// Output rows per rayon job.
const ROWS_PER_JOB: usize = 256;

/// `out[..4 C] = sum_t vals[t] X[cols[t], off..off + 4 C]` (X row-major with stride `wp`).
#[inline(always)]
fn row_block<const F: bool, const C: usize, T: Scalar, I: ColIndex>(
    cols: &[I],
    vals: &[f64],
    x: &[T],
    wp: usize,
    off: usize,
    out: &mut [f64],
) {
    let mut acc: Chunks<C> = [[0.0; 4]; C];
    for (t, (&j, &a)) in cols.iter().zip(vals).enumerate() {
        if F && off == 0 {
            if let Some(&ahead) = cols.get(t + PREFETCH_AHEAD) {
                prefetch_row(x, ahead.at(), wp);
            }
        }
        let s = j.at() * wp + off;
        axpy::<F, C>(a, &load::<T, C>(&x[s..s + 4 * C]), &mut acc);
    }
    store(&acc, out);
}

/// Rows `first..` of the product into `out` (rows of stride `wp`), column blocks of up to 32; false
/// (at the first such row) if a row has an index outside `[0, n)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn product_rows<const F: bool, T: Scalar, I: ColIndex>(
    indptr: &[i64],
    indices: &[I],
    data: &[f64],
    x: &[T],
    wp: usize,
    n: usize,
    first: usize,
    out: &mut [f64],
) -> bool {
    for (t, yi) in out.chunks_exact_mut(wp).enumerate() {
        let i = first + t;
        let (a, b) = (indptr[i] as usize, indptr[i + 1] as usize);
        let (cols, vals) = (&indices[a..b], &data[a..b]);
        if !indices_below(cols, n) {
            return false;
        }
        let mut off = 0;
        while off < wp {
            let chunks = ((wp - off) / 4).min(PRODUCT_CHUNKS);
            let o = &mut yi[off..];
            match chunks {
                1 => row_block::<F, 1, T, I>(cols, vals, x, wp, off, o),
                2 => row_block::<F, 2, T, I>(cols, vals, x, wp, off, o),
                3 => row_block::<F, 3, T, I>(cols, vals, x, wp, off, o),
                4 => row_block::<F, 4, T, I>(cols, vals, x, wp, off, o),
                5 => row_block::<F, 5, T, I>(cols, vals, x, wp, off, o),
                6 => row_block::<F, 6, T, I>(cols, vals, x, wp, off, o),
                7 => row_block::<F, 7, T, I>(cols, vals, x, wp, off, o),
                _ => row_block::<F, 8, T, I>(cols, vals, x, wp, off, o),
            }
            off += 4 * chunks;
        }
    }
    true
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn product_rows_avx2<T: Scalar, I: ColIndex>(
    indptr: &[i64],
    indices: &[I],
    data: &[f64],
    x: &[T],
    wp: usize,
    n: usize,
    first: usize,
    out: &mut [f64],
) -> bool {
    product_rows::<true, T, I>(indptr, indices, data, x, wp, n, first, out)
}

/// The same with the AVX-512F/VL register file (32 registers: no spills for 32 columns).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
#[allow(clippy::too_many_arguments)]
fn product_rows_avx512<T: Scalar, I: ColIndex>(
    indptr: &[i64],
    indices: &[I],
    data: &[f64],
    x: &[T],
    wp: usize,
    n: usize,
    first: usize,
    out: &mut [f64],
) -> bool {
    product_rows::<true, T, I>(indptr, indices, data, x, wp, n, first, out)
}

/// `A X` for the CSR matrix `A = (indptr, indices, data)` of shape m x n (m = `indptr.len() - 1`)
/// and `X` (n x w, row-major); returns the m x w product, row-major. `parallel`: rows in blocks
/// on the current rayon pool, else on the calling thread. `low_precision`: gather `X` from an f32
/// copy (the product of `A` with `X` rounded to f32, summed in f64).
#[allow(clippy::too_many_arguments)]
pub fn csr_times_dense<I: ColIndex>(
    indptr: &[i64],
    indices: &[I],
    data: &[f64],
    x: &[f64],
    n: usize,
    w: usize,
    parallel: bool,
    low_precision: bool,
) -> Result<Vec<f64>> {
    if indptr.is_empty() {
        return Err(Error::invalid("indptr", "must hold at least one entry"));
    }
    let m = indptr.len() - 1;
    check_indptr(indptr, indices.len(), data.len(), m)?;
    if w == 0 || x.len() != n * w {
        return Err(Error::invalid(
            "x",
            format!("length {} != {n} * {w} (w > 0)", x.len()),
        ));
    }
    // columns padded to whole 4-lane chunks (zeros: they add nothing)
    let wp = w.div_ceil(4) * 4;
    let yp = if low_precision {
        let (xp, off) = padded_aligned::<f32>(x, w, wp, "x")?;
        product_into(
            indptr,
            indices,
            data,
            &xp[off..off + n * wp],
            m,
            n,
            wp,
            parallel,
        )?
    } else {
        let (xp, off) = padded_aligned::<f64>(x, w, wp, "x")?;
        product_into(
            indptr,
            indices,
            data,
            &xp[off..off + n * wp],
            m,
            n,
            wp,
            parallel,
        )?
    };
    if wp == w {
        return Ok(yp);
    }
    let mut y = try_filled(m * w, 0.0, "product")?;
    for (d, s) in y.chunks_exact_mut(w).zip(yp.chunks_exact(wp)) {
        d.copy_from_slice(&s[..w]);
    }
    Ok(y)
}

/// The m x `wp` product with the padded `xp` (rows of stride `wp`).
#[allow(clippy::too_many_arguments)]
fn product_into<T: Scalar, I: ColIndex>(
    indptr: &[i64],
    indices: &[I],
    data: &[f64],
    xp: &[T],
    m: usize,
    n: usize,
    wp: usize,
    parallel: bool,
) -> Result<Vec<f64>> {
    let mut yp = try_filled(m * wp, 0.0, "product")?;
    let isa = Isa::detect();
    let rows = |first: usize, out: &mut [f64]| -> bool {
        #[cfg(target_arch = "x86_64")]
        match isa {
            // SAFETY: `isa` is the run-time detection of these features
            Isa::Avx512 => {
                return unsafe { product_rows_avx512(indptr, indices, data, xp, wp, n, first, out) }
            }
            // SAFETY: as above
            Isa::Avx2 => {
                return unsafe { product_rows_avx2(indptr, indices, data, xp, wp, n, first, out) }
            }
            Isa::Portable => {}
        }
        let _ = isa;
        product_rows::<false, T, I>(indptr, indices, data, xp, wp, n, first, out)
    };
    let job = |(b, out): (usize, &mut [f64])| {
        if rows(b * ROWS_PER_JOB, out) {
            Ok(())
        } else {
            Err(index_error(n))
        }
    };
    if parallel {
        yp.par_chunks_mut(ROWS_PER_JOB * wp)
            .enumerate()
            .try_for_each(job)?;
    } else {
        yp.chunks_mut(ROWS_PER_JOB * wp)
            .enumerate()
            .try_for_each(job)?;
    }
    Ok(yp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the plain triple loop, for widths around the chunk sizes (padding, several blocks).
    #[test]
    fn matches_dense_product() {
        let (m, n) = (5usize, 7usize);
        let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
        for i in 0..m {
            for j in 0..n {
                if (i * 5 + j * 3) % 4 != 1 {
                    indices.push(j as i64);
                    data.push((i as f64 + 1.0) * 0.5 - j as f64 * 0.25);
                }
            }
            indptr.push(indices.len() as i64);
        }
        for w in [1usize, 3, 4, 5, 30, 33, 40] {
            let x: Vec<f64> = (0..n * w).map(|t| ((t * 37 % 11) as f64) - 5.0).collect();
            // low precision: the product with x rounded to f32 (exact here: small integers)
            for (parallel, low) in [(false, false), (true, false), (true, true)] {
                let y = csr_times_dense(&indptr, &indices, &data, &x, n, w, parallel, low).unwrap();
                // int32 indices (SciPy's usual type) read as they are: the same product
                let narrow: Vec<i32> = indices.iter().map(|&j| j as i32).collect();
                let y32 =
                    csr_times_dense(&indptr, &narrow, &data, &x, n, w, parallel, low).unwrap();
                assert_eq!(y, y32);
                for i in 0..m {
                    for c in 0..w {
                        let mut want = 0.0;
                        for p in indptr[i] as usize..indptr[i + 1] as usize {
                            want += data[p] * x[indices[p] as usize * w + c];
                        }
                        assert!((y[i * w + c] - want).abs() < 1e-12, "w {w} row {i} col {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(csr_times_dense(&[0, 1], &[0], &[1.0], &[1.0, 2.0], 1, 3, false, false).is_err());
        assert!(csr_times_dense(&[0, 1], &[2], &[1.0], &[1.0], 1, 1, false, false).is_err());
        assert!(csr_times_dense::<i64>(&[], &[], &[], &[1.0], 1, 1, false, true).is_err());
        assert!(csr_times_dense(&[0, 1], &[-1i32], &[1.0], &[1.0], 1, 1, false, false).is_err());
    }
}
