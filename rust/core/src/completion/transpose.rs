//! The column side of the observations: the CSR of `A^T` (the CSC of `A`) built from the CSR of
//! `A` by a counting sort over the columns, so that the column half-steps gather as the row ones
//! do. Rows are scattered in order, so each column lists its rows in increasing order whatever the
//! order within the input's rows, and repeated entries stay repeated (as SciPy's `tocsc()` keeps
//! them). Indices come in as `i32` or `i64` (SciPy's two index types) and go out as `i32` where
//! the row numbers fit (as SciPy's would), so that no index array is widened on either side.

use super::solve::{index_error, indices_below, ColIndex};
use crate::error::{check_alloc, Error, Result};

/// The row numbers of the transpose's entries: `i32` where the matrix has fewer than 2^31 rows
/// (SciPy's own choice), `i64` otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum RowNumbers {
    Narrow(Vec<i32>),
    Wide(Vec<i64>),
}

/// The column side of the observations: the CSR of the transpose, and whether every value is
/// finite.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    pub indptr: Vec<i64>,
    pub indices: RowNumbers,
    pub data: Vec<f64>,
    pub finite: bool,
}

/// The CSR `(indptr, indices, data)` of the transpose of an m x `n` matrix given as CSR
/// (m = `indptr.len() - 1`). Checks the structure (`indptr` starts at 0, never decreases and ends
/// at the number of entries; every index lies in `[0, n)`) and reports whether the values are
/// finite; the input is only read. O(nnz + m + n) time: one pass to count the columns, one to
/// scatter the entries.
pub fn csr_transpose<I: ColIndex>(
    indptr: &[i64],
    indices: &[I],
    data: &[f64],
    n: usize,
) -> Result<Columns> {
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
    if !indices_below(indices, n) {
        return Err(index_error(n));
    }
    // t_indptr[j + 1]: entries in column j (then, by the prefix sum, where column j starts)
    let mut t_indptr = zeroed::<i64>(n + 1, "column pointers")?;
    for &j in indices {
        t_indptr[j.at() + 1] += 1;
    }
    for j in 0..n {
        t_indptr[j + 1] += t_indptr[j];
    }
    let next = t_indptr[..n].to_vec();
    let mut t_data = zeroed::<f64>(nnz, "column values")?;
    let (t_indices, finite) = if i32::try_from(m).is_ok() {
        let mut rows = zeroed::<i32>(nnz, "column indices")?;
        let finite = scatter(indptr, indices, data, next, &mut rows, &mut t_data, |i| {
            i as i32
        });
        (RowNumbers::Narrow(rows), finite)
    } else {
        let mut rows = zeroed::<i64>(nnz, "column indices")?;
        let finite = scatter(indptr, indices, data, next, &mut rows, &mut t_data, |i| {
            i as i64
        });
        (RowNumbers::Wide(rows), finite)
    };
    Ok(Columns {
        indptr: t_indptr,
        indices: t_indices,
        data: t_data,
        finite,
    })
}

/// Writes each entry's row number (as `R`) and value at its column's next position (`next`: where
/// each column starts); returns whether every value is finite.
fn scatter<I: ColIndex, R: Copy>(
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
            let slot = &mut next[j.at()];
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

    fn wide(r: &RowNumbers) -> Vec<i64> {
        match r {
            RowNumbers::Narrow(v) => v.iter().map(|&i| i64::from(i)).collect(),
            RowNumbers::Wide(v) => v.clone(),
        }
    }

    #[test]
    fn transposes_with_empty_rows_and_columns_unsorted_and_repeated_entries() {
        // 4 x 5: row 1 empty, column 2 empty, row 0 unsorted, (3, 4) stored twice
        let indptr = [0i64, 3, 3, 4, 7];
        let indices = [4i32, 0, 3, 1, 4, 0, 4];
        let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        let t = csr_transpose(&indptr, &indices, &data, 5).unwrap();
        assert!(t.finite);
        assert_eq!(t.indptr, vec![0, 2, 3, 3, 4, 7]);
        assert_eq!(t.indices, RowNumbers::Narrow(vec![0, 3, 2, 0, 0, 3, 3]));
        assert_eq!(t.data, vec![2.0, 6.0, 4.0, 3.0, 1.0, 5.0, 7.0]);
        // the dense matrices agree entry by entry (repeats summed)
        let rows = wide(&t.indices);
        let mut a = [[0.0; 5]; 4];
        let mut b = [[0.0; 5]; 4];
        for i in 0..4 {
            for p in indptr[i] as usize..indptr[i + 1] as usize {
                a[i][indices[p] as usize] += data[p];
            }
        }
        for j in 0..5 {
            for p in t.indptr[j] as usize..t.indptr[j + 1] as usize {
                b[rows[p] as usize][j] += t.data[p];
            }
        }
        assert_eq!(a, b);
        // i64 indices give the same
        let wide_in: Vec<i64> = indices.iter().map(|&j| i64::from(j)).collect();
        assert_eq!(csr_transpose(&indptr, &wide_in, &data, 5).unwrap(), t);
    }

    #[test]
    fn bad_structure_and_values_are_reported() {
        assert!(
            !csr_transpose(&[0, 1], &[0i64], &[f64::NAN], 1)
                .unwrap()
                .finite
        );
        assert!(
            !csr_transpose(&[0, 1], &[0i32], &[f64::INFINITY], 1)
                .unwrap()
                .finite
        );
        assert!(csr_transpose(&[0, 1], &[1i64], &[1.0], 1).is_err());
        assert!(csr_transpose(&[0, 1], &[-1i32], &[1.0], 2).is_err());
        assert!(csr_transpose(&[0, 2], &[0i64], &[1.0], 2).is_err());
        assert!(csr_transpose(&[0, 1, 0], &[0i64], &[1.0], 2).is_err());
        assert!(csr_transpose(&[1, 1], &[0i64], &[1.0], 2).is_err());
        assert!(csr_transpose(&[], &[0i64], &[1.0], 2).is_err());
        assert!(csr_transpose(&[0, 1], &[0i64], &[], 2).is_err());
        let empty = csr_transpose::<i64>(&[0, 0, 0], &[], &[], 0).unwrap();
        assert_eq!(empty.indptr, vec![0]);
    }
}
