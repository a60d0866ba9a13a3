//! The one-read check of a dense input: its largest magnitude, NaN when an entry is not finite, so that
//! finiteness and the exact-rescaling exponent come from one pass over A (NumPy's max, min and
//! sum took three).

use crate::scalar::Scalar;
use faer::Par;
use rayon::prelude::*;

const LANES: usize = 8;
/// Entries per parallel task: below this a second thread costs more than it saves.
const PARALLEL_CHUNK: usize = 1 << 16;

/// (largest |x|, poison) of a slice in `LANES` independent lanes; poison accumulates x * 0, which
/// is NaN once some x is NaN or infinite. Both are branch-free (compare-and-select, multiply-add),
/// so the loop vectorizes and runs at the speed of a plain sum (a NaN-propagating compare ran 1.4x
/// slower).
fn max_abs_seq<T: Scalar>(values: &[T]) -> (T, T) {
    let mut best = [T::ZERO; LANES];
    let mut poison = [T::ZERO; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for l in 0..LANES {
            let a = chunk[l].abs();
            best[l] = if a > best[l] { a } else { best[l] };
            poison[l] += a * T::ZERO;
        }
    }
    for &x in chunks.remainder() {
        let a = x.abs();
        best[0] = if a > best[0] { a } else { best[0] };
        poison[0] += a * T::ZERO;
    }
    let top = best
        .iter()
        .fold(T::ZERO, |acc, &b| if b > acc { b } else { acc });
    (top, poison.iter().fold(T::ZERO, |acc, &p| acc + p))
}

/// The largest |x| of `values`, or NaN when any entry is NaN or infinite; 0 for an empty slice.
/// One read of the data: the finiteness check and the exact-rescaling exponent at once.
pub fn max_abs<T: Scalar>(values: &[T], par: Par) -> T {
    let (top, poison) = match par {
        Par::Rayon(n) if n.get() > 1 && values.len() >= 2 * PARALLEL_CHUNK => {
            let chunk = values.len().div_ceil(n.get()).max(PARALLEL_CHUNK);
            values.par_chunks(chunk).map(max_abs_seq).reduce(
                || (T::ZERO, T::ZERO),
                |a, b| (if b.0 > a.0 { b.0 } else { a.0 }, a.1 + b.1),
            )
        }
        _ => max_abs_seq(values),
    };
    if poison.is_nan() {
        T::from_f64(f64::NAN)
    } else {
        top
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    #[test]
    fn max_abs_of_every_length_and_sign() {
        for len in [0usize, 1, 7, 8, 9, 33, 1000] {
            let values: Vec<f64> = (0..len).map(|i| ((i * 37) % 101) as f64 - 60.0).collect();
            let expected = values.iter().fold(0.0f64, |a, &x| a.max(x.abs()));
            assert_eq!(max_abs(&values, Par::Seq), expected);
        }
    }

    #[test]
    fn max_abs_is_nan_on_any_nan_or_infinity() {
        let big = 3 * PARALLEL_CHUNK + 5;
        for at in [0, 9, big - 1] {
            let mut values = vec![1.5f64; big];
            values[at] = f64::NAN;
            for par in [Par::Seq, Par::Rayon(NonZeroUsize::new(2).unwrap())] {
                assert!(max_abs(&values, par).is_nan());
            }
            values[at] = f64::NEG_INFINITY;
            for par in [Par::Seq, Par::Rayon(NonZeroUsize::new(2).unwrap())] {
                assert!(max_abs(&values, par).is_nan());
            }
            values[at] = -2.5;
            let parallel = max_abs(&values, Par::Rayon(NonZeroUsize::new(3).unwrap()));
            assert_eq!(parallel, 2.5);
        }
        let single = [1.0f32, f32::NAN, 2.0];
        assert!(max_abs(&single, Par::Seq).is_nan());
    }
}
