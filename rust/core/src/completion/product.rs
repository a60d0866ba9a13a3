//! Sparse (CSR) times dense products for the spectral start: `Y = A X` over the observed entries.
//! The product with `A^T` is the same call on the CSR of the transpose (the column side of the
//! observations), so both run row-parallel with gathers only.
//!
//! Each output row is accumulated in registers over its observed entries, up to 32 columns at a
//! time (`C` chunks of 4 lanes, fixed at compile time): one multiply-add per lane and entry.

use super::fixed::{axpy, load, store, Chunks, MAX_CHUNKS};
use super::rows::{prefetch_row, PREFETCH_AHEAD};
use super::solve::check_csr;
use crate::error::{try_filled, Error, Result};
use rayon::prelude::*;

/// Output rows per rayon job.
const ROWS_PER_JOB: usize = 256;

/// `out[..4 C] = sum_t vals[t] X[cols[t], off..off + 4 C]` (X row-major with stride `wp`).
#[inline(always)]
fn row_block<const F: bool, const C: usize>(
    cols: &[i64],
    vals: &[f64],
    x: &[f64],
    wp: usize,
    off: usize,
    out: &mut [f64],
) {
    let mut acc: Chunks<C> = [[0.0; 4]; C];
    for (t, (&j, &a)) in cols.iter().zip(vals).enumerate() {
        if F && off == 0 {
            if let Some(&ahead) = cols.get(t + PREFETCH_AHEAD) {
                prefetch_row(x, ahead as usize, wp);
            }
        }
        let s = j as usize * wp + off;
        axpy::<F, C>(a, &load::<C>(&x[s..s + 4 * C]), &mut acc);
    }
    store(&acc, out);
}

/// Rows `first..` of the product into `out` (rows of stride `wp`), column blocks of up to 32.
#[inline(always)]
fn product_rows<const F: bool>(
    indptr: &[i64],
    indices: &[i64],
    data: &[f64],
    x: &[f64],
    wp: usize,
    first: usize,
    out: &mut [f64],
) {
    for (t, yi) in out.chunks_exact_mut(wp).enumerate() {
        let i = first + t;
        let (a, b) = (indptr[i] as usize, indptr[i + 1] as usize);
        let (cols, vals) = (&indices[a..b], &data[a..b]);
        let mut off = 0;
        while off < wp {
            let chunks = ((wp - off) / 4).min(MAX_CHUNKS);
            let o = &mut yi[off..];
            match chunks {
                1 => row_block::<F, 1>(cols, vals, x, wp, off, o),
                2 => row_block::<F, 2>(cols, vals, x, wp, off, o),
                3 => row_block::<F, 3>(cols, vals, x, wp, off, o),
                4 => row_block::<F, 4>(cols, vals, x, wp, off, o),
                5 => row_block::<F, 5>(cols, vals, x, wp, off, o),
                6 => row_block::<F, 6>(cols, vals, x, wp, off, o),
                7 => row_block::<F, 7>(cols, vals, x, wp, off, o),
                _ => row_block::<F, 8>(cols, vals, x, wp, off, o),
            }
            off += 4 * chunks;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn product_rows_avx2(
    indptr: &[i64],
    indices: &[i64],
    data: &[f64],
    x: &[f64],
    wp: usize,
    first: usize,
    out: &mut [f64],
) {
    product_rows::<true>(indptr, indices, data, x, wp, first, out);
}

/// `A X` for the CSR matrix `A = (indptr, indices, data)` of shape m x n (m = `indptr.len() - 1`)
/// and `X` (n x w, row-major); returns the m x w product, row-major. `parallel`: rows in blocks
/// on the current rayon pool, else on the calling thread.
pub fn csr_times_dense(
    indptr: &[i64],
    indices: &[i64],
    data: &[f64],
    x: &[f64],
    n: usize,
    w: usize,
    parallel: bool,
) -> Result<Vec<f64>> {
    if indptr.is_empty() {
        return Err(Error::invalid("indptr", "must hold at least one entry"));
    }
    let m = indptr.len() - 1;
    check_csr(indptr, indices, data.len(), m, n)?;
    if w == 0 || x.len() != n * w {
        return Err(Error::invalid(
            "x",
            format!("length {} != {n} * {w} (w > 0)", x.len()),
        ));
    }
    // columns padded to whole 4-lane chunks (zeros: they add nothing)
    let wp = w.div_ceil(4) * 4;
    let mut xp = try_filled(n * wp, 0.0, "x")?;
    for (d, s) in xp.chunks_exact_mut(wp).zip(x.chunks_exact(w)) {
        d[..w].copy_from_slice(s);
    }
    let mut yp = try_filled(m * wp, 0.0, "product")?;
    let fast = super::solve::has_avx2_fma();
    let job = |(b, out): (usize, &mut [f64])| {
        let first = b * ROWS_PER_JOB;
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: `fast` is the run-time detection of AVX2 and FMA
            return unsafe { product_rows_avx2(indptr, indices, data, &xp, wp, first, out) };
        }
        let _ = fast;
        product_rows::<false>(indptr, indices, data, &xp, wp, first, out);
    };
    if parallel {
        yp.par_chunks_mut(ROWS_PER_JOB * wp)
            .enumerate()
            .for_each(job);
    } else {
        yp.chunks_mut(ROWS_PER_JOB * wp).enumerate().for_each(job);
    }
    if wp == w {
        return Ok(yp);
    }
    let mut y = try_filled(m * w, 0.0, "product")?;
    for (d, s) in y.chunks_exact_mut(w).zip(yp.chunks_exact(wp)) {
        d.copy_from_slice(&s[..w]);
    }
    Ok(y)
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
            for parallel in [false, true] {
                let y = csr_times_dense(&indptr, &indices, &data, &x, n, w, parallel).unwrap();
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
        assert!(csr_times_dense(&[0, 1], &[0], &[1.0], &[1.0, 2.0], 1, 3, false).is_err());
        assert!(csr_times_dense(&[0, 1], &[2], &[1.0], &[1.0], 1, 1, false).is_err());
        assert!(csr_times_dense(&[], &[], &[], &[1.0], 1, 1, false).is_err());
    }
}
