//! The column side of the observations: the CSR of `A^T` (the CSC of `A`) built from the CSR of
//! `A` by a counting sort over the columns, so that the column half-steps gather as the row ones
//! do. Rows are scattered in order, so each column lists its rows in increasing order whatever the
//! order within the input's rows, and repeated entries stay repeated (as SciPy's `tocsc()` keeps
//! them). Indices come in as `i32` or `i64` (SciPy's two index types) and go out as `i64`.

use crate::error::{check_alloc, Error, Result};

/// A CSR matrix with `i64` indices (the form the completion kernels take).
#[derive(Debug, Clone, PartialEq)]
pub struct Csr {
    pub indptr: Vec<i64>,
    pub indices: Vec<i64>,
    pub data: Vec<f64>,
}

/// The column side of the observations, and the row side's indices as `i64` when asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct BothSides {
    /// The input's indices widened to `i64` (`None` unless `widen`).
    pub row_indices: Option<Vec<i64>>,
    /// The CSR of the transpose.
    pub cols: Csr,
    /// Whether every stored value is finite.
    pub finite: bool,
}

/// The CSR `(indptr, indices, data)` of an m x `n` matrix (m = `indptr.len() - 1`) and of its
/// transpose. Checks the structure (`indptr` starts at 0, never decreases and ends at the number
/// of entries; every index lies in `[0, n)`) and reports whether the values are finite; the input
/// is only read. `widen`: also return the input's indices as `i64` (for `i32` input: the kernels
/// take `i64`). O(nnz + m + n) time: one pass to count the columns (and widen the indices), one to
/// scatter the entries.
pub fn csr_both_sides<I: Copy + Into<i64>>(
    indptr: &[i64],
    indices: &[I],
    data: &[f64],
    n: usize,
    widen: bool,
) -> Result<BothSides> {
    if indptr.is_empty() {
        return Err(Error::invalid("indptr", "must hold at least one entry"));
    }
    let m = indptr.len() - 1;
    let nnz = indices.len();
    if data.len() != nnz {
        return Err(Error::invalid(
            "data",
            format!("length {} != the {nnz} indices", data.len()),
        ));
    }
    if indptr[0] != 0 || indptr[m] != nnz as i64 {
        return Err(Error::invalid(
            "indptr",
            format!("must run from 0 to the {nnz} entries"),
        ));
    }
    if indptr.windows(2).any(|w| w[1] < w[0]) {
        return Err(Error::invalid("indptr", "must be nondecreasing"));
    }
    // counts[j + 1]: entries in column j (then, by the prefix sum, where column j starts)
    let mut t_indptr = zeroed::<i64>(n + 1, "column pointers")?;
    let mut bad = None;
    let mut count = |j: i64| {
        if j >= 0 && (j as u64) < n as u64 {
            t_indptr[j as usize + 1] += 1;
        } else {
            bad.get_or_insert(j);
        }
        j
    };
    let wide: Vec<i64> = if widen {
        check_alloc::<i64>(Some(nnz), "indices")?;
        indices.iter().map(|&j| count(j.into())).collect()
    } else {
        indices.iter().for_each(|&j| {
            count(j.into());
        });
        Vec::new()
    };
    if let Some(j) = bad {
        return Err(Error::invalid(
            "indices",
            format!("entries must lie in [0, {n}), got {j}"),
        ));
    }
    for j in 0..n {
        t_indptr[j + 1] += t_indptr[j];
    }
    let next = t_indptr[..n].to_vec();
    let mut t_data = zeroed::<f64>(nnz, "column values")?;
    // the row numbers are scattered as u32 where they fit and widened in order afterwards: half
    // the bytes of the random writes (each column's write position moves through its own line)
    let (t_indices, finite) = if u32::try_from(m).is_ok() {
        let mut narrow = zeroed::<u32>(nnz, "column indices")?;
        let finite = scatter(indptr, indices, data, next, &mut narrow, &mut t_data, |i| {
            i as u32
        });
        check_alloc::<i64>(Some(nnz), "column indices")?;
        (narrow.iter().map(|&i| i64::from(i)).collect(), finite)
    } else {
        let mut wide_rows = zeroed::<i64>(nnz, "column indices")?;
        let finite = scatter(
            indptr,
            indices,
            data,
            next,
            &mut wide_rows,
            &mut t_data,
            |i| i as i64,
        );
        (wide_rows, finite)
    };
    Ok(BothSides {
        row_indices: widen.then_some(wide),
        cols: Csr {
            indptr: t_indptr,
            indices: t_indices,
            data: t_data,
        },
        finite,
    })
}

/// Writes each entry's row number (as `R`) and value at its column's next position (`next`: where
/// each column starts); returns whether every value is finite.
fn scatter<I: Copy + Into<i64>, R: Copy>(
    indptr: &[i64],
    indices: &[I],
    data: &[f64],
    mut next: Vec<i64>,
    rows_out: &mut [R],
    data_out: &mut [f64],
    row: impl Fn(usize) -> R,
) -> bool {
    let mut finite = true;
    for i in 0..indptr.len() - 1 {
        let (a, b) = (indptr[i] as usize, indptr[i + 1] as usize);
        let r = row(i);
        for (&j, &v) in indices[a..b].iter().zip(&data[a..b]) {
            let j: i64 = j.into();
            let slot = &mut next[j as usize];
            let q = *slot as usize;
            *slot += 1;
            rows_out[q] = r;
            data_out[q] = v;
            finite &= v.is_finite();
        }
    }
    finite
}

/// `len` zeros, checked as `try_filled` checks, without writing them: a zeroed allocation takes
/// fresh pages, which the system zeroes when they are first written (a fill would write each
/// page twice).
fn zeroed<T: Copy + Default>(len: usize, what: &str) -> Result<Vec<T>> {
    check_alloc::<T>(Some(len), what)?;
    Ok(vec![T::default(); len])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense m x n from a CSR (repeated entries summed).
    fn dense(c: &Csr, m: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for p in c.indptr[i] as usize..c.indptr[i + 1] as usize {
                out[i * n + c.indices[p] as usize] += c.data[p];
            }
        }
        out
    }

    #[test]
    fn transposes_with_empty_rows_and_columns_unsorted_and_repeated_entries() {
        // 4 x 5: row 1 empty, column 2 empty, row 0 unsorted, (3, 4) stored twice
        let indptr = [0i64, 3, 3, 4, 7];
        let indices = [4i32, 0, 3, 1, 4, 0, 4];
        let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        let both = csr_both_sides(&indptr, &indices, &data, 5, true).unwrap();
        assert!(both.finite);
        let wide = vec![4i64, 0, 3, 1, 4, 0, 4];
        assert_eq!(both.row_indices.as_ref(), Some(&wide));
        assert_eq!(both.cols.indptr, vec![0, 2, 3, 3, 4, 7]);
        assert_eq!(both.cols.indices, vec![0, 3, 2, 0, 0, 3, 3]);
        let rows = Csr {
            indptr: indptr.to_vec(),
            indices: wide.clone(),
            data: data.to_vec(),
        };
        let (a, t) = (dense(&rows, 4, 5), dense(&both.cols, 5, 4));
        for i in 0..4 {
            for j in 0..5 {
                assert_eq!(a[i * 5 + j], t[j * 4 + i]);
            }
        }
        // i64 indices give the same columns
        let from_wide = csr_both_sides(&indptr, &wide, &data, 5, false).unwrap();
        assert_eq!((from_wide.row_indices, from_wide.cols), (None, both.cols));
    }

    #[test]
    fn bad_structure_and_values_are_reported() {
        let ok = csr_both_sides(&[0, 1], &[0i64], &[f64::NAN], 1, false).unwrap();
        assert!(!ok.finite);
        assert!(csr_both_sides(&[0, 1], &[1i64], &[1.0], 1, false).is_err());
        assert!(csr_both_sides(&[0, 1], &[-1i64], &[1.0], 2, false).is_err());
        assert!(csr_both_sides(&[0, 2], &[0i64], &[1.0], 2, false).is_err());
        assert!(csr_both_sides(&[0, 1, 0], &[0i64], &[1.0], 2, false).is_err());
        assert!(csr_both_sides(&[1, 1], &[0i64], &[1.0], 2, false).is_err());
        assert!(csr_both_sides(&[], &[0i64], &[1.0], 2, false).is_err());
        assert!(csr_both_sides(&[0, 1], &[0i64], &[], 2, false).is_err());
        let empty = csr_both_sides::<i64>(&[0, 0, 0], &[], &[], 0, true).unwrap();
        assert_eq!(empty.cols.indptr, vec![0]);
    }
}
