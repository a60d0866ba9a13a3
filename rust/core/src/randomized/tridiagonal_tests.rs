use super::*;
use crate::randomized::inverse_iteration::{dot, residual};

/// (max |w - exact|, max residual ||T v - w v||_inf, max |V^T V - I|) of the top k.
fn errors(d: &[f64], e: &[f64], k: usize, exact: &[f64]) -> (f64, f64, f64) {
    let n = d.len();
    let (w, v) = tridiagonal_eigh_top(d, e, k).unwrap().expect("vouched for");
    let value_error = w
        .iter()
        .zip(exact)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(w.windows(2).all(|p| p[0] <= p[1]), "ascending");
    let mut res: f64 = 0.0;
    let mut orth: f64 = 0.0;
    for a in 0..k {
        let col = &v[a * n..(a + 1) * n];
        res = res.max(residual(d, e, w[n - k + a], col));
        for b in 0..k {
            let target = if a == b { 1.0 } else { 0.0 };
            orth = orth.max((dot(col, &v[b * n..(b + 1) * n]) - target).abs());
        }
    }
    (value_error, res, orth)
}

#[test]
fn second_difference_matrix_matches_its_closed_form() {
    for n in [1usize, 2, 3, 17, 64, 165] {
        let d = vec![2.0; n];
        let e = vec![-1.0; n - 1];
        let mut exact: Vec<f64> = (1..=n)
            .map(|j| 2.0 - 2.0 * (j as f64 * std::f64::consts::PI / (n as f64 + 1.0)).cos())
            .collect();
        exact.sort_by(f64::total_cmp);
        for k in [1, n.div_ceil(3), n] {
            let (dw, res, orth) = errors(&d, &e, k, &exact);
            let bound = 20.0 * n as f64 * f64::EPSILON * 4.0;
            assert!(dw <= bound && res <= bound, "n {n} k {k}: {dw:e} {res:e}");
            assert!(
                orth <= 20.0 * n as f64 * f64::EPSILON,
                "n {n} k {k}: {orth:e}"
            );
        }
    }
}

#[test]
fn identity_zero_and_split_matrices() {
    let n = 40;
    // 3 I: one n-fold cluster; the zero matrix; a diagonal with repeated values (e = 0 splits).
    let d_repeated: Vec<f64> = (0..n).map(|i| (i % 4) as f64).collect();
    for (d, value) in [(vec![3.0; n], 3.0), (vec![0.0; n], 0.0)] {
        let (dw, res, orth) = errors(&d, &vec![0.0; n - 1], n, &vec![value; n]);
        assert!(
            dw <= 1e-13 && res <= 1e-13 && orth <= 1e-13,
            "{dw:e} {res:e} {orth:e}"
        );
    }
    let mut exact = d_repeated.clone();
    exact.sort_by(f64::total_cmp);
    let (dw, res, orth) = errors(&d_repeated, &vec![0.0; n - 1], 25, &exact);
    assert!(
        dw <= 1e-13 && res <= 1e-13 && orth <= 1e-13,
        "{dw:e} {res:e} {orth:e}"
    );
}

#[test]
fn wilkinson_matrix_has_its_close_top_pair_resolved() {
    // W21+: d = |10 - i|, e = 1; its two largest eigenvalues agree to ~1e-14.
    let d: Vec<f64> = (0..21).map(|i| (10.0f64 - i as f64).abs()).collect();
    let e = vec![1.0; 20];
    let (w, v) = tridiagonal_eigh_top(&d, &e, 6).unwrap().unwrap();
    assert!((w[20] - 10.746194182903393).abs() < 1e-12, "{}", w[20]);
    for a in 0..6 {
        assert!(residual(&d, &e, w[15 + a], &v[a * 21..(a + 1) * 21]) < 1e-12);
        for b in 0..a {
            assert!(dot(&v[a * 21..(a + 1) * 21], &v[b * 21..(b + 1) * 21]).abs() < 1e-12);
        }
    }
}

#[test]
fn bad_input_is_an_error_or_none() {
    assert!(tridiagonal_eigh_top(&[], &[], 1).is_err());
    assert!(tridiagonal_eigh_top(&[1.0, 2.0], &[], 1).is_err());
    assert!(tridiagonal_eigh_top(&[1.0, 2.0], &[1.0], 0).is_err());
    assert!(tridiagonal_eigh_top(&[1.0, 2.0], &[1.0], 3).is_err());
    assert_eq!(tridiagonal_eigh_top(&[f64::NAN, 2.0], &[1.0], 1), Ok(None));
    assert_eq!(
        tridiagonal_eigh_top(&[1.0, 2.0], &[f64::INFINITY], 1),
        Ok(None)
    );
}

#[test]
fn graded_and_tiny_scales_keep_their_accuracy() {
    // Diagonal 1 .. 1e-15 with small couplings, at three overall scales (the power-of-two scaling).
    let n = 30;
    for s in [1e-150, 1.0, 1e150] {
        let d: Vec<f64> = (0..n)
            .map(|i| s * 10f64.powf(-15.0 * i as f64 / (n - 1) as f64))
            .collect();
        let e: Vec<f64> = (0..n - 1).map(|i| 1e-3 * d[i + 1]).collect();
        let (w, v) = tridiagonal_eigh_top(&d, &e, n).unwrap().unwrap();
        let norm = w[n - 1].abs();
        for a in 0..n {
            let r = residual(&d, &e, w[a], &v[a * n..(a + 1) * n]);
            assert!(
                r <= 20.0 * n as f64 * f64::EPSILON * norm,
                "scale {s:e}: {r:e}"
            );
        }
    }
}
