//! The hierarchical kernel against dense evaluation: accuracy, determinism, columns, caches.

use super::simd::{exp_fast, exp_fast_with};
use super::*;
use crate::ot::test_points::lcg;

fn check(n: usize, m: usize, d: usize, eps: f64, spread: f64) {
    let mut seed = 7u64;
    let x: Vec<f64> = (0..n * d).map(|_| lcg(&mut seed)).collect();
    let y: Vec<f64> = (0..m * d).map(|_| lcg(&mut seed)).collect();
    let tx = KdTree::build(&x, d, 16).unwrap();
    let ty = KdTree::build(&y, d, 16).unwrap();
    let h: Vec<f64> = (0..m).map(|_| spread * (lcg(&mut seed) - 0.5)).collect();
    let tol = 1e-6;
    let approx = log_apply(
        &tx,
        &ty,
        &h,
        &KernelOptions {
            eps,
            tol,
            exact: false,
            parallel: false,
        },
        true,
    )
    .unwrap();
    let exact = log_apply(
        &tx,
        &ty,
        &h,
        &KernelOptions {
            eps,
            tol,
            exact: true,
            parallel: false,
        },
        true,
    )
    .unwrap();
    for k in 0..n {
        let e = (approx.log_sum[k] - exact.log_sum[k]).abs();
        assert!(e <= tol, "n={n} d={d} eps={eps}: error {e} at {k}");
        let c = (approx.mean_cost[k] - exact.mean_cost[k]).abs();
        assert!(c <= 1e-5 * (1.0 + exact.mean_cost[k]), "cost error {c}");
    }
    assert!(approx.stats.far_blocks + approx.stats.pruned_blocks > 0 || n < 100);
    // without the cost, far-field blocks run from the cached monomials
    let cached = log_apply(
        &tx,
        &ty,
        &h,
        &KernelOptions {
            eps,
            tol,
            exact: false,
            parallel: false,
        },
        false,
    )
    .unwrap();
    assert!(tx.mono_order.get().is_some());
    assert_eq!(
        cached.stats.far_blocks > 0,
        tx.mono_cache.iter().any(|c| c.get().is_some())
    );
    for k in 0..n {
        assert!((cached.log_sum[k] - exact.log_sum[k]).abs() <= tol);
    }
}

#[test]
fn matches_dense() {
    check(1500, 1300, 2, 0.01, 40.0);
    check(1500, 1300, 2, 0.05, 40.0);
    check(800, 900, 1, 0.001, 40.0);
    check(1000, 1000, 3, 0.02, 40.0);
}

#[test]
fn deferred_far_field_is_deterministic_and_accurate() {
    // the deferred blocks' moments are grouped by source node across target subtrees: the
    // result must not depend on the threads, and must keep the entrywise bound (3-D too)
    for (d, n, eps) in [(2usize, 3000usize, 0.01), (3, 2500, 0.03)] {
        let mut seed = 17u64;
        let x: Vec<f64> = (0..n * d).map(|_| lcg(&mut seed)).collect();
        let y: Vec<f64> = (0..n * d).map(|_| 0.6 * lcg(&mut seed) + 0.2).collect();
        let (tx, ty) = (
            KdTree::build(&x, d, 16).unwrap(),
            KdTree::build(&y, d, 16).unwrap(),
        );
        let h: Vec<f64> = (0..n).map(|_| 60.0 * (lcg(&mut seed) - 0.5)).collect();
        let opts = KernelOptions {
            eps,
            tol: 1e-7,
            exact: false,
            parallel: false,
        };
        let one = log_apply(&tx, &ty, &h, &opts, false).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let par = pool
            .install(|| {
                log_apply(
                    &tx,
                    &ty,
                    &h,
                    &KernelOptions {
                        parallel: true,
                        ..opts
                    },
                    false,
                )
            })
            .unwrap();
        assert!(one.stats.far_blocks > 100, "{:?}", one.stats);
        assert_eq!(one.stats, par.stats);
        let exact = log_apply(
            &tx,
            &ty,
            &h,
            &KernelOptions {
                exact: true,
                ..opts
            },
            false,
        )
        .unwrap();
        for k in 0..n {
            assert_eq!(one.log_sum[k].to_bits(), par.log_sum[k].to_bits(), "{k}");
            let e = (one.log_sum[k] - exact.log_sum[k]).abs();
            assert!(e <= 1e-7, "d={d}: error {e} at {k}");
        }
    }
}

/// Brute force: log sums and column ratios per target (tree order).
fn brute_columns(
    tx: &KdTree,
    ty: &KdTree,
    h: &[f64],
    cols: &[f64],
    k: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (d, m) = (tx.d, ty.n);
    let mut logs = vec![0.0; tx.n];
    let mut ratios = vec![0.0; tx.n * k];
    for i in 0..tx.n {
        let z: Vec<f64> = (0..m)
            .map(|j| {
                let c: f64 = (0..d)
                    .map(|a| (tx.point(i)[a] - ty.point(j)[a]).powi(2))
                    .sum();
                h[j] - c / eps
            })
            .collect();
        let top = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - top).exp()).collect();
        let sum: f64 = e.iter().sum();
        logs[i] = top + sum.ln();
        for c in 0..k {
            let num: f64 = e
                .iter()
                .zip(&cols[c * m..(c + 1) * m])
                .map(|(e, v)| e * v)
                .sum();
            ratios[i * k + c] = num / sum;
        }
    }
    (logs, ratios)
}

#[test]
fn columns_share_the_traversal_and_keep_the_bound() {
    // cached deferred blocks, uncached rows (order-0 cache) and the general path (with the
    // cost): the log sums as without columns, each ratio within 2 tol of the exact one
    for (d, n, eps, mode) in [
        (2usize, 1500usize, 0.01, 0),
        (3, 1200, 0.03, 0),
        (2, 1200, 0.01, 1),
        (2, 900, 0.02, 2),
    ] {
        let mut seed = 23u64 + mode as u64;
        let x: Vec<f64> = (0..n * d).map(|_| lcg(&mut seed)).collect();
        let y: Vec<f64> = (0..n * d).map(|_| 0.7 * lcg(&mut seed)).collect();
        let (tx, ty) = (
            KdTree::build(&x, d, 16).unwrap(),
            KdTree::build(&y, d, 16).unwrap(),
        );
        if mode == 1 {
            tx.mono_order.set(0).unwrap();
            ty.mono_order.set(0).unwrap();
        }
        let h: Vec<f64> = (0..n).map(|_| 40.0 * (lcg(&mut seed) - 0.5)).collect();
        let k = 3;
        // one column spans decades (a weight-like column), one is exactly zero in places
        let cols: Vec<f64> = (0..k * n)
            .map(|q| match q / n {
                0 => lcg(&mut seed),
                1 => (-30.0 * lcg(&mut seed)).exp(),
                _ => (lcg(&mut seed) - 0.5).max(0.0),
            })
            .collect();
        let tol = 1e-7;
        let opts = KernelOptions {
            eps,
            tol,
            exact: false,
            parallel: false,
        };
        let got = apply_with_columns(&tx, &ty, &h, &cols, k, &opts, mode == 2).unwrap();
        let plain = log_apply(&tx, &ty, &h, &opts, mode == 2).unwrap();
        assert!(got.stats.far_blocks > 0, "{:?}", got.stats);
        assert_eq!(got.stats, plain.stats);
        let (logs, ratios) = brute_columns(&tx, &ty, &h, &cols, k, eps);
        for i in 0..n {
            assert_eq!(got.log_sum[i].to_bits(), plain.log_sum[i].to_bits(), "{i}");
            assert!((got.log_sum[i] - logs[i]).abs() <= tol);
            for c in 0..k {
                let e = (got.ratios[i * k + c] - ratios[i * k + c]).abs();
                assert!(
                    e <= 2.0 * tol,
                    "d={d} mode={mode}: column {c} error {e} at {i}"
                );
            }
        }
    }
}

#[test]
fn columns_are_checked() {
    let x = [0.0, 0.0, 1.0, 1.0];
    let t = KdTree::build(&x, 2, 16).unwrap();
    let opts = KernelOptions {
        eps: 0.1,
        tol: 1e-6,
        exact: false,
        parallel: false,
    };
    let h = [0.0, 0.0];
    assert!(log_apply_columns(&t, &t, &h, &[0.5, 1.5], 1, &opts).is_err());
    assert!(log_apply_columns(&t, &t, &h, &[0.5, f64::NAN], 1, &opts).is_err());
    assert!(log_apply_columns(&t, &t, &h, &[0.5], 1, &opts).is_err());
    let (logs, ratios, _) =
        log_apply_columns_in_order(&t, &t, &h, &[0.25, 0.75], 1, &opts).unwrap();
    assert_eq!(logs.len(), 2);
    // the point order is the caller's: each point is nearest itself
    assert!(ratios[0] < 0.5 && ratios[1] > 0.5, "{ratios:?}");
}

#[test]
fn uncached_far_field_matches_dense() {
    // a cache of order 0 serves no far block: every block builds its own monomial rows
    let mut seed = 5u64;
    let (n, d, eps, tol) = (1200, 2, 0.01, 1e-6);
    let x: Vec<f64> = (0..n * d).map(|_| lcg(&mut seed)).collect();
    let y: Vec<f64> = (0..n * d).map(|_| lcg(&mut seed)).collect();
    let (tx, ty) = (
        KdTree::build(&x, d, 16).unwrap(),
        KdTree::build(&y, d, 16).unwrap(),
    );
    tx.mono_order.set(0).unwrap();
    ty.mono_order.set(0).unwrap();
    let h: Vec<f64> = (0..n).map(|_| 40.0 * (lcg(&mut seed) - 0.5)).collect();
    let opts = KernelOptions {
        eps,
        tol,
        exact: false,
        parallel: false,
    };
    let approx = log_apply(&tx, &ty, &h, &opts, false).unwrap();
    let exact = log_apply(
        &tx,
        &ty,
        &h,
        &KernelOptions {
            exact: true,
            ..opts
        },
        false,
    )
    .unwrap();
    assert!(approx.stats.far_blocks > 0);
    for k in 0..n {
        assert!((approx.log_sum[k] - exact.log_sum[k]).abs() <= tol, "{k}");
    }
}

#[test]
fn single_precision_cache_keeps_the_bound() {
    // a single-precision cache (forced here; chosen at large n) serves a tolerance with room
    // for its rounding and keeps the entrywise bound; at a finer tolerance it is not used
    let mut seed = 29u64;
    let (n, d, eps) = (2500, 2, 0.01);
    let x: Vec<f64> = (0..n * d).map(|_| lcg(&mut seed)).collect();
    let y: Vec<f64> = (0..n * d).map(|_| 0.8 * lcg(&mut seed)).collect();
    let h: Vec<f64> = (0..n).map(|_| 40.0 * (lcg(&mut seed) - 0.5)).collect();
    let mut exact_opts = KernelOptions {
        eps,
        tol: 1e-5,
        exact: true,
        parallel: false,
    };
    for (tol, used) in [(1e-5, true), (1e-4, true), (1e-8, false)] {
        let (tx, ty) = (
            KdTree::build(&x, d, 16).unwrap(),
            KdTree::build(&y, d, 16).unwrap(),
        );
        for t in [&tx, &ty] {
            t.mono_single.set(true).unwrap();
            t.mono_order.set(7).unwrap();
        }
        let opts = KernelOptions {
            tol,
            exact: false,
            ..exact_opts
        };
        let got = log_apply(&tx, &ty, &h, &opts, false).unwrap();
        exact_opts.tol = tol;
        let exact = log_apply(&tx, &ty, &h, &exact_opts, false).unwrap();
        assert_eq!(got.stats.far_cached > 0, used, "{:?}", got.stats);
        assert!(got.stats.far_blocks > 0);
        let single = tx
            .mono_cache
            .iter()
            .any(|c| matches!(c.get(), Some(crate::ot::tree::MonoRows::Single(_))));
        assert_eq!(single, used);
        for k in 0..n {
            let e = (got.log_sum[k] - exact.log_sum[k]).abs();
            assert!(e <= tol, "tol {tol}: error {e} at {k}");
        }
    }
}

#[test]
fn exp_fast_is_accurate() {
    let mut seed = 11u64;
    let mut worst: f64 = 0.0;
    for _ in 0..200_000 {
        let x = -700.0 * lcg(&mut seed) + 5.0 * (lcg(&mut seed) - 0.5);
        let (a, b) = (exp_fast(x), x.exp());
        worst = worst.max(((a - b) / b).abs());
        let fused = exp_fast_with::<true>(x);
        worst = worst.max(((fused - b) / b).abs());
    }
    assert!(worst < 5e-16, "worst relative error {worst}");
    assert_eq!(exp_fast(f64::NEG_INFINITY), 0.0);
    assert_eq!(exp_fast(-800.0), 0.0);
    assert_eq!(exp_fast(0.0), 1.0);
}

#[test]
fn multi_index_counts() {
    let mi = MultiIndex::new(2);
    assert_eq!(mi.count[0], 1);
    assert_eq!(mi.count[3], 10);
    let mi = MultiIndex::new(3);
    assert_eq!(mi.count[2], 10);
    assert!(mi.order_for(0.5, 1e-6).unwrap() >= 5);
    assert!(mi.order_for(1.0, 1e-6).is_none()); // beyond MAX_T: split instead
}

/// `dots` in the AVX2 + FMA build (intrinsics) against its definition: four lanes per row (lane
/// l sums terms l, l + 4, ... with fused multiply-adds), the tail, (s0 + s1) + (s2 + s3) + tail,
/// bit for bit, on f64 and f32 rows of every length up to 45 terms and row counts 0..9.
#[test]
#[cfg(target_arch = "x86_64")]
fn avx2_dots_match_their_definition_bit_for_bit() {
    use super::expansion::RowValue;
    use super::simd::dots;
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
    {
        return;
    }
    fn reference<R: RowValue>(row: &[R], v: &[f64]) -> f64 {
        let k0 = v.len() / 4 * 4;
        let mut s = [0.0f64; 4];
        for c in 0..k0 {
            s[c % 4] = row[c].get().mul_add(v[c], s[c % 4]);
        }
        let mut tail = 0.0;
        for c in k0..v.len() {
            tail = row[c].get().mul_add(v[c], tail);
        }
        (s[0] + s[1]) + (s[2] + s[3]) + tail
    }
    let mut seed = 5u64;
    for terms in 0..=45 {
        let stride = terms + 3;
        for nrows in 0..9 {
            let rows: Vec<f64> = (0..nrows * stride)
                .map(|_| 2.0 * lcg(&mut seed) - 1.0)
                .collect();
            let single: Vec<f32> = rows.iter().map(|&v| v as f32).collect();
            let v: Vec<f64> = (0..terms).map(|_| lcg(&mut seed) * 1e3 - 5e2).collect();
            let mut out = vec![f64::NAN; nrows];
            dots::<true, f64>(&rows, stride, &v, &mut out);
            let mut out_single = vec![f64::NAN; nrows];
            dots::<true, f32>(&single, stride, &v, &mut out_single);
            for r in 0..nrows {
                let row = &rows[r * stride..r * stride + terms];
                assert_eq!(
                    out[r].to_bits(),
                    reference(row, &v).to_bits(),
                    "f64 {terms} {r}"
                );
                let row = &single[r * stride..r * stride + terms];
                assert_eq!(
                    out_single[r].to_bits(),
                    reference(row, &v).to_bits(),
                    "f32 {terms} {r}"
                );
            }
        }
    }
}
