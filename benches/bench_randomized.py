"""Randomized SVD and tall-skinny QR against scikit-learn, fbpca, torch and LAPACK.

    python benches/bench_randomized.py            # full sizes (a few minutes)
    python benches/bench_randomized.py --quick    # small sizes, a smoke test

Every library runs single-threaded (threadpoolctl for BLAS, n_threads=1 for lorainne) on the same
matrices in the same process. Matrices have a known spectrum (A = U diag(s) V^T with s_i = 1/(i+1)),
so the optimal rank-k error is exact: sqrt(sum_{i>=k} s_i^2).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
import lorainne  # noqa: E402
from _common import best_time, git_revision, machine, markdown_table  # noqa: E402

RANK, OVERSAMPLES, POWER_ITER = 50, 10, 2


def planted(rng, m, n, dtype):
    k = min(m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    s = 1.0 / (1.0 + np.arange(k))
    return np.ascontiguousarray(((U * s) @ V.T).astype(dtype)), s


def frobenius_error(A, U, S, Vt):
    A64 = A.astype(np.float64, copy=False)
    return np.linalg.norm(A64 - (U.astype(np.float64) * S.astype(np.float64)) @ Vt.astype(np.float64))


def svd_contenders():
    from sklearn.utils.extmath import randomized_svd as sk_rsvd

    contenders = {
        "lorainne": lambda A: lorainne.randomized_svd(
            A, RANK, n_oversamples=OVERSAMPLES, n_power_iter=POWER_ITER, random_state=0, n_threads=1
        ),
        "scikit-learn": lambda A: sk_rsvd(A, RANK, n_oversamples=OVERSAMPLES, n_iter=POWER_ITER, random_state=0),
    }
    if importlib.util.find_spec("fbpca"):
        import fbpca

        contenders["fbpca"] = lambda A: fbpca.pca(A, k=RANK, raw=True, n_iter=POWER_ITER, l=RANK + OVERSAMPLES)
    if importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(1)

        def torch_svd(A):
            U, S, V = torch.svd_lowrank(torch.from_numpy(A), q=RANK + OVERSAMPLES, niter=POWER_ITER)
            return U[:, :RANK].numpy(), S[:RANK].numpy(), V[:, :RANK].T.numpy()

        contenders["torch.svd_lowrank"] = torch_svd
    return contenders


def bench_svd(shapes, dtypes, full_svd: bool, repeats: int):
    rng = np.random.default_rng(0)
    rows = []
    contenders = svd_contenders()
    for m, n in shapes:
        for dtype in dtypes:
            A, s = planted(rng, m, n, dtype)
            optimal = np.sqrt(np.sum(s[RANK:] ** 2))
            results = {}
            for name, run in contenders.items():
                seconds, (U, S, Vt) = best_time(lambda: run(A), repeats)
                results[name] = (seconds, frobenius_error(A, U, S, Vt) / optimal)
            if full_svd:
                seconds, (U, S, Vt) = best_time(lambda: scipy.linalg.svd(A, full_matrices=False), 1)
                results["scipy.linalg.svd (full)"] = (
                    seconds,
                    frobenius_error(A, U[:, :RANK], S[:RANK], Vt[:RANK]) / optimal,
                )
            ours = results["lorainne"][0]
            for name, (seconds, ratio) in results.items():
                rows.append(
                    [f"{m}x{n}", np.dtype(dtype).name, name, f"{seconds:.3f}", f"{seconds / ours:.2f}", f"{ratio:.4f}"]
                )
            flops = 2 * m * n * (RANK + OVERSAMPLES) * (2 + 2 * POWER_ITER)
            rows.append(
                [
                    f"{m}x{n}",
                    np.dtype(dtype).name,
                    "floor: matmul flops at peak GEMM rate",
                    f"{flops / PEAK[np.dtype(dtype).name]:.3f}",
                    "",
                    "",
                ]
            )
    return rows


def bench_qr(shapes, dtypes, repeats: int):
    rng = np.random.default_rng(1)
    rows = []
    for m, n in shapes:
        for dtype in dtypes:
            A = rng.standard_normal((m, n)).astype(dtype)
            contenders = {
                "numpy.linalg.qr": lambda: np.linalg.qr(A),
                "scipy.linalg.qr (economic)": lambda: scipy.linalg.qr(A, mode="economic", check_finite=False),
                "lorainne.householder_qr": lambda: lorainne.householder_qr(A, n_threads=1),
                "lorainne.cholesky_qr2": lambda: lorainne.cholesky_qr2(A, n_threads=1),
            }
            times = {}
            for name, run in contenders.items():
                seconds, (Q, R) = best_time(run, repeats)
                Q64 = Q.astype(np.float64)
                orth = np.linalg.norm(Q64.T @ Q64 - np.eye(n))
                resid = np.linalg.norm(Q64 @ R.astype(np.float64) - A) / np.linalg.norm(A)
                times[name] = (seconds, orth, resid)
            base = times["numpy.linalg.qr"][0]
            for name, (seconds, orth, resid) in times.items():
                rows.append(
                    [
                        f"{m}x{n}",
                        np.dtype(dtype).name,
                        name,
                        f"{seconds * 1e3:.1f}",
                        f"{seconds / base:.2f}",
                        f"{orth:.1e}",
                        f"{resid:.1e}",
                    ]
                )
            flops = 4 * m * n * n  # Householder: 2mn^2 - 2n^3/3 to factor, as much again to form Q
            rows.append(
                [
                    f"{m}x{n}",
                    np.dtype(dtype).name,
                    "floor: 4mn^2 flops at peak GEMM rate",
                    f"{flops / PEAK[np.dtype(dtype).name] * 1e3:.1f}",
                    "",
                    "",
                    "",
                ]
            )
    return rows


def equal_accuracy_matrices(quick: bool):
    """(name, A, exact singular values) with slowly decaying spectra and two real data matrices."""
    from sklearn.datasets import load_digits, load_sample_images

    rng = np.random.default_rng(3)
    m, n = (800, 400) if quick else (2000, 1000)
    out = []
    for decay in (0.5, 1.0):
        U, _ = np.linalg.qr(rng.standard_normal((m, n)))
        V, _ = np.linalg.qr(rng.standard_normal((n, n)))
        s = (1.0 + np.arange(n)) ** -decay
        out.append((f"planted {m}x{n}, s_i = i^-{decay:g}", np.ascontiguousarray((U * s) @ V.T), s))
    images = load_sample_images().images  # two 427 x 640 x 3 photographs
    X = np.concatenate([img.reshape(img.shape[0], -1) for img in images], axis=0).astype(np.float64) / 255.0
    if quick:
        X = X[:, ::4]
    X = np.ascontiguousarray(X)
    out.append((f"sample images {X.shape[0]}x{X.shape[1]} (pixel rows)", X, np.linalg.svd(X, compute_uv=False)))
    D = np.ascontiguousarray(load_digits().data.astype(np.float64))
    out.append((f"digits {D.shape[0]}x{D.shape[1]}", D, np.linalg.svd(D, compute_uv=False)))
    return out


def bench_equal_accuracy(quick: bool, repeats: int, target: float = 1.01):
    """Passes and time to reach ||A - U S Vt||_2 <= target * s_{k+1} (rank k = 50; 10 on digits,
    whose 64 columns leave no room for a 60-column block at depth >= 1)."""
    from sklearn.utils.extmath import randomized_svd as sk_rsvd

    contenders = {
        "lorainne block_krylov": lambda A, k, q: lorainne.randomized_svd(
            A, k, n_power_iter=q, method="block_krylov", random_state=0, n_threads=1
        ),
        "lorainne subspace": lambda A, k, q: lorainne.randomized_svd(
            A, k, n_power_iter=q, method="subspace", random_state=0, n_threads=1
        ),
        "scikit-learn randomized_svd": lambda A, k, q: sk_rsvd(A, k, n_oversamples=10, n_iter=q, random_state=0),
    }
    rows = []
    for name, A, s in equal_accuracy_matrices(quick):
        k = 10 if A.shape[1] < 100 else RANK
        optimal = s[k]
        results = {}
        for label, run in contenders.items():
            for q in range(0, 30):
                U, S, Vt = run(A, k, q)
                ratio = np.linalg.norm(A - (U * S) @ Vt, 2) / optimal
                if ratio <= target:
                    break
            seconds, _ = best_time(lambda: run(A, k, q), repeats)
            results[label] = (q, 2 * q + 2, seconds, ratio)
        base_passes, base_time = results["lorainne subspace"][1:3]
        for label, (q, passes, seconds, ratio) in results.items():
            rows.append(
                [
                    name,
                    str(k),
                    label,
                    str(q),
                    str(passes),
                    f"{passes / base_passes:.2f}",
                    f"{seconds:.3f}",
                    f"{seconds / base_time:.2f}",
                    f"{seconds / results['lorainne block_krylov'][2]:.2f}",
                    f"{ratio:.4f}",
                ]
            )
    return rows


KRYLOV_OVERSAMPLES = (0, 5, 10, 20, 30, 40, 60)
# Blocks narrower than the rank (``randomized_svd(..., block_size=b)``), at depths up to 9.
KRYLOV_NARROW_BLOCKS = (10, 15, 20, 25, 30, 40)
KRYLOV_NARROW_MAX_DEPTH = 9


def small_side_flops(m: int, n: int, k: int) -> float:
    """Flops of the exact small-side SVD (``randomized/_small_side.py``) that runs when the block
    spans min(m, n) = s columns: the Gram matrix (m n s, one syrk), its eigendecomposition (~9 s^3),
    A V_k (2 m n k), CholeskyQR2 of it (~6 max(m, n) k^2) and the k x k SVD."""
    s, big = min(m, n), max(m, n)
    return float(m * n * s + 9 * s**3 + 2 * m * n * k + 6 * big * k * k + 20 * k**3)


# A pass over A (8 m n bytes) costs at least its read: A Z at 2000 x 1000 took 1.36 + 0.059 b ms
# (b = 10-60, 1 thread, best of 15: 20.6 Gflop/s at b = 10, 49 at b = 60), i.e. 2 m n (b + 23): the
# read weighs as 23 more columns, 5.75 flops per byte. Narrow blocks make more, cheaper passes; without
# this the flop count favours them twice too much.
PASS_READ_FLOPS_PER_BYTE = 5.75


def krylov_flops(m: int, n: int, k: int, b: int, q: int) -> float:
    """Flops of block Krylov (depth q, blocks of b, L = (q + 1) b columns): 2 q + 2 passes of 2 m n b
    plus each pass's read of A (8 m n bytes at :data:`PASS_READ_FLOPS_PER_BYTE`),
    the block Gram-Schmidt (block j projected twice off the j b columns before it, 8 s j b^2, and its
    CholeskyQR2 ~6 s b^2; s = min(m, n), the side ``transpose="auto"`` puts the basis on, l the other),
    and the Rayleigh-Ritz of the Gram route that float64 takes (Z^H Z by syrk, l L^2; the top-k
    eigenpairs of the L x L Gram matrix: ``eigh_top``'s tridiagonalization 4/3 L^3 and
    back-transformation 4 L^2 k when k <= L / 2, else the full ``eigh`` ~9 L^3; C = U_Bk^H Z^H,
    2 l L k; its QR ~6 l k^2; U = Q U_Bk, 2 s L k). Narrow blocks trade the passes' m n b for more,
    smaller blocks: the per-block calls are not flops (``fastest measured`` times them). A block of
    min(m, n) columns or more runs the exact small-side SVD instead (:func:`small_side_flops`),
    whatever q."""
    if b >= min(m, n):
        return small_side_flops(m, n, k)
    L = min((q + 1) * b, min(m, n))
    passes = (2 * q + 2) * (2 * m * n * b + PASS_READ_FLOPS_PER_BYTE * 8 * m * n)
    short, long = min(m, n), max(m, n)  # transpose="auto": the basis on the short side
    gram_schmidt = sum(8 * short * j * b * b + 6 * short * b * b for j in range(q + 1))
    eigenpairs = 4 * L**3 / 3 + 4 * L * L * k if 2 * k <= L else 9 * L**3
    rayleigh_ritz = long * L * L + eigenpairs + 2 * long * L * k + 6 * long * k * k + 2 * short * L * k
    return float(passes + gram_schmidt + rayleigh_ritz)


def spectral_error(A, U, S, Vt) -> float:
    """||A - U S Vt||_2 from the largest eigenvalue of the small side's Gram matrix (relative error
    ~ u ||E||_2^2 / ||E||_2^2 on the square: far below the 1e-4 the bench reads; 4-5x faster than
    ``numpy.linalg.norm(E, 2)``'s full SVD at 2000 x 1000, which the wide grid of narrow blocks needs)."""
    from scipy.linalg import eigvalsh

    E = A - (U * S) @ Vt
    G = E.T @ E if E.shape[0] >= E.shape[1] else E @ E.T
    return float(np.sqrt(max(eigvalsh(G, subset_by_index=[G.shape[0] - 1, G.shape[0] - 1])[0], 0.0)))


def _cheapest_reaching(run, A, k, optimal, configs, target, memo=None):
    """The first (q, b) of ``configs`` (sorted by cost) whose error/optimal <= target (b: the block,
    rank + oversamples for subspace iteration and scikit-learn); ``memo`` keeps the errors already
    measured for the same ``run``."""
    memo = {} if memo is None else memo
    for q, b in configs:
        if (q, b) not in memo:
            memo[q, b] = spectral_error(A, *run(A, k, q, b)) / optimal
        ratio = memo[q, b]
        if ratio <= target:
            return q, b, ratio
    raise RuntimeError("no configuration reached the target")


def _fastest_reaching(run, A, k, optimal, configs, target, memo, repeats: int = 3):
    """The (q, b, error/optimal) of least measured time among the configurations reaching
    the target: for each depth q its narrowest block that reaches it (``configs`` in any order),
    those few timed interleaved (best of ``repeats``). The flop model (:func:`krylov_flops`) misses
    what a block costs beyond its flops (its CholeskyQR2 and projections run at a third to a half of
    the passes' GEMM rate, plus the per-block calls), so the measured time decides."""
    frontier = {}
    for q, b in sorted(configs, key=lambda c: (c[0], c[1])):
        if q in frontier:
            continue
        try:
            frontier[q] = _cheapest_reaching(run, A, k, optimal, [(q, b)], target, memo)
        except RuntimeError:
            continue
    fns = {q: (lambda c=c: run(A, k, c[0], c[1])) for q, c in frontier.items()}
    best = _interleaved_best(fns, repeats)
    return frontier[min(best, key=best.get)]


def bench_krylov_tuned(quick: bool, repeats: int, target: float = 1.01):
    """Block Krylov with its depth q AND block b chosen per matrix (the (q, b) of fewest
    :func:`krylov_flops` reaching the target; the (q, b) of fewest passes, then fewest flops; the
    fastest measured), against lorainne subspace and scikit-learn's randomized_svd with their n_iter
    raised until they reach it (10 oversamples, their default), all timed interleaved (best of
    ``repeats``), 1 thread. The blocks: b = k + oversamples at depths 0-3 as before, and blocks
    narrower than the rank (``block_size`` in :data:`KRYLOV_NARROW_BLOCKS`) at depths up to
    :data:`KRYLOV_NARROW_MAX_DEPTH` where (q + 1) b >= k + 10."""
    from sklearn.utils.extmath import randomized_svd as sk_rsvd

    def krylov(A, k, q, b):
        return lorainne.randomized_svd(
            A, k, block_size=b, n_power_iter=q, method="block_krylov", random_state=0, n_threads=1
        )

    runs = {
        "lorainne block_krylov, tuned q and b": krylov,
        "lorainne block_krylov, fewest passes": krylov,
        "lorainne block_krylov, fastest measured": krylov,
        "lorainne block_krylov, b = k + 10": krylov,
        "lorainne subspace": lambda A, k, q, b: lorainne.randomized_svd(
            A, k, n_oversamples=b - k, n_power_iter=q, method="subspace", random_state=0, n_threads=1
        ),
        "scikit-learn randomized_svd": lambda A, k, q, b: sk_rsvd(A, k, n_oversamples=b - k, n_iter=q, random_state=0),
    }
    rows = []
    for name, A, s in equal_accuracy_matrices(quick):
        k = 10 if A.shape[1] < 100 else RANK
        small = min(A.shape)
        # Depth 0 too (2 passes), and the block of min(m, n) columns, which spans the whole range in
        # one product (the exact small-side SVD: on digits' 64 columns it is cheaper than any iteration).
        candidates = {(q, k + o) for q in (0, 1, 2, 3) for o in KRYLOV_OVERSAMPLES if (q + 1) * (k + o) <= small}
        candidates |= {
            (q, b)
            for q in range(KRYLOV_NARROW_MAX_DEPTH + 1)
            for b in KRYLOV_NARROW_BLOCKS
            if k + 10 <= (q + 1) * b <= small
        }
        tuned = sorted(candidates | {(0, small)}, key=lambda c: (krylov_flops(*A.shape, k, c[1], c[0]), c[0]))
        # Fewest passes among the iterations proper: the full-width block (2 passes, the exact SVD of the
        # small side) counts only where it is also the cheapest in flops (digits).
        iterations = [c for c in tuned if c[1] < small or c == tuned[0]]
        fewest_passes = sorted(iterations, key=lambda c: (c[0], krylov_flops(*A.shape, k, c[1], c[0])))
        fixed = [(q, k + 10) for q in range(0, 30)]
        chosen, krylov_errors = {}, {}
        for label, run in runs.items():
            if label.endswith("fastest measured"):
                chosen[label] = _fastest_reaching(run, A, k, s[k], tuned, target, krylov_errors)
                continue
            if label.endswith("tuned q and b"):
                configs = tuned
            elif label.endswith("fewest passes"):  # the passes goal: fewest passes, then fewest flops
                configs = fewest_passes
            else:
                configs = fixed
            krylov_memo = krylov_errors if "block_krylov" in label else None
            chosen[label] = _cheapest_reaching(run, A, k, s[k], configs, target, krylov_memo)
        fns = {label: (lambda run=run, c=chosen[label]: run(A, k, c[0], c[1])) for label, run in runs.items()}
        best = _interleaved_best(fns, repeats)
        base = best["lorainne subspace"]
        base_passes = 2 * chosen["lorainne subspace"][0] + 2
        ours = best["lorainne block_krylov, tuned q and b"]
        for label, (q, b, ratio) in chosen.items():
            passes = 2 * q + 2
            rows.append(
                [
                    name,
                    str(k),
                    label,
                    str(q),
                    str(b),
                    str(passes),
                    str(passes * b),
                    f"{passes / base_passes:.2f}",
                    f"{best[label]:.4f}",
                    f"{best[label] / base:.2f}",
                    f"{best[label] / ours:.2f}",
                    f"{ratio:.4f}",
                ]
            )
    return rows


KRYLOV_TUNED_HEADER = [
    "matrix",
    "k",
    "method",
    "q",
    "block b",
    "passes",
    "passes x b",
    "passes / subspace",
    "time (s)",
    "time / subspace",
    "time / tuned krylov",
    "error/optimal (2-norm)",
]


def bench_cqrrpt(quick: bool, repeats: int):
    """CQRRPT against LAPACK's QR with column pivoting (scipy.linalg.qr(pivoting=True))."""
    from lorainne.randomized import cqrrpt

    rng = np.random.default_rng(4)
    rows = []
    for m, n in [(20000, 100)] if quick else [(20000, 100), (100000, 100), (50000, 300)]:
        A = rng.standard_normal((m, n)) * np.logspace(0, -8, n)
        t_lapack, (Q2, R2, p2) = best_time(
            lambda: scipy.linalg.qr(A, mode="economic", pivoting=True, check_finite=False), repeats
        )
        t_ours, (Q1, R1, p1, k) = best_time(lambda: cqrrpt(A, random_state=0), repeats)
        runs = (("scipy.linalg.qr(pivoting=True)", t_lapack, Q2, R2, p2), ("cqrrpt", t_ours, Q1, R1, p1))
        for name, t, Q, R, p in runs:
            resid = np.linalg.norm(A[:, p] - Q @ R) / np.linalg.norm(A)
            orth = np.linalg.norm(Q.T @ Q - np.eye(Q.shape[1]))
            rows.append([f"{m}x{n}", name, f"{t * 1e3:.1f}", f"{t_lapack / t:.2f}", f"{resid:.1e}", f"{orth:.1e}"])
    return rows


def estimator_matrices(quick: bool):
    """(name, X) for the estimator comparison: the equal-accuracy matrices (a planted one shifted
    off-center, so PCA's centering matters) and a sparse term-document-like matrix.
    """
    import scipy.sparse

    out = []
    for name, A, _ in equal_accuracy_matrices(quick):
        out.append((name, A + 1.0 if name.startswith("planted") else A))
    m, n = (3000, 1000) if quick else (5000, 2000)  # the exact SVD for the optimum stays cheap
    sparse = scipy.sparse.random(m, n, density=0.01, format="csr", random_state=5, dtype=np.float64)
    out.append((f"sparse {m}x{n}, density 0.01", sparse))
    return out


def _estimator_error(X, Z, components, center: bool, optimal: float) -> float:
    """||X_c - Z components||_2 / s_{k+1}(X_c) (X_c centered for PCA); sparse: the Frobenius error
    over the optimal Frobenius error of the same rank.
    """
    dense = X.toarray() if hasattr(X, "toarray") else X
    Xc = dense - dense.mean(axis=0) if center else dense
    residual = Xc - Z @ components
    order = 2 if not hasattr(X, "toarray") else "fro"
    return float(np.linalg.norm(residual, order) / optimal)


def bench_estimators(quick: bool, repeats: int, target: float = 1.01):
    """lorainne.sklearn.PCA / RandomizedSVD against sklearn's PCA(svd_solver="randomized") /
    TruncatedSVD: defaults against defaults, then scikit-learn with the smallest n_iter that reaches
    lorainne's accuracy (or ``target``, whichever is larger)."""
    from sklearn.decomposition import PCA as SkPCA
    from sklearn.decomposition import TruncatedSVD

    from lorainne.sklearn import PCA, RandomizedSVD

    pairs = {
        "PCA": (
            True,
            lambda k: PCA(k, random_state=0, n_threads=1),
            lambda k, q: SkPCA(k, svd_solver="randomized", random_state=0, iterated_power="auto" if q is None else q),
        ),
        "TruncatedSVD": (
            False,
            lambda k: RandomizedSVD(k, random_state=0, n_threads=1),
            lambda k, q: TruncatedSVD(k, random_state=0, n_iter=5 if q is None else q),
        ),
    }
    rows = []
    for name, X in estimator_matrices(quick):
        sparse = hasattr(X, "toarray")
        k = 10 if X.shape[1] < 100 else RANK
        for kind, (center, ours, theirs) in pairs.items():
            if sparse and center:
                continue  # sparse input: the TruncatedSVD comparison only
            dense = X.toarray() if sparse else X
            Xc = dense - dense.mean(axis=0) if center else dense
            s = np.linalg.svd(Xc, compute_uv=False)
            optimal = float(np.sqrt(np.sum(s[k:] ** 2))) if sparse else float(s[k])
            t_ours, Z = best_time(lambda: ours(k).fit_transform(X), repeats)
            e_ours = _estimator_error(X, Z, ours(k).fit(X).components_, center, optimal)
            t_def, Z = best_time(lambda: theirs(k, None).fit_transform(X), repeats)
            e_def = _estimator_error(X, Z, theirs(k, None).fit(X).components_, center, optimal)
            goal = max(e_ours, target)
            for q in range(0, 30):
                fitted = theirs(k, q)
                Z = fitted.fit_transform(X)
                e_tuned = _estimator_error(X, Z, fitted.components_, center, optimal)
                if e_tuned <= goal:
                    break
            t_tuned, _ = best_time(lambda: theirs(k, q).fit_transform(X), repeats)
            rows.append(
                [
                    name,
                    kind,
                    str(k),
                    f"{t_ours:.3f}",
                    f"{e_ours:.4f}",
                    f"{t_def:.3f}",
                    f"{e_def:.4f}",
                    f"{t_def / t_ours:.2f}",
                    str(q),
                    f"{t_tuned:.3f}",
                    f"{e_tuned:.4f}",
                    f"{t_tuned / t_ours:.2f}",
                ]
            )
    return rows


def _interleaved_best(fns: dict, repeats: int) -> dict:
    """Best time of each contender, running them in turn ``repeats`` times (shared-machine noise
    then hits every contender alike)."""
    import time

    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def interleaved_report(repeats: int = 7) -> str:
    """The headline ratios with contenders interleaved: the estimators against scikit-learn at its
    defaults and at n_iter = 4 (its equal-accuracy setting here), CQRRPT against LAPACK's QRCP."""
    from sklearn.decomposition import PCA as SkPCA
    from sklearn.decomposition import TruncatedSVD

    from lorainne.sklearn import PCA, RandomizedSVD

    lines = []
    matrices = estimator_matrices(False)
    for name, X in (matrices[0], matrices[2], matrices[4]):
        fns = {
            "lorainne PCA": lambda: PCA(RANK, random_state=0, n_threads=1).fit_transform(X),
            "sklearn PCA default": lambda: SkPCA(RANK, svd_solver="randomized", random_state=0).fit_transform(X),
            "sklearn PCA n_iter=4": lambda: SkPCA(
                RANK, svd_solver="randomized", random_state=0, iterated_power=4
            ).fit_transform(X),
            "lorainne RandomizedSVD": lambda: RandomizedSVD(RANK, random_state=0, n_threads=1).fit_transform(X),
            "sklearn TruncatedSVD default": lambda: TruncatedSVD(RANK, random_state=0).fit_transform(X),
            "sklearn TruncatedSVD n_iter=4": lambda: TruncatedSVD(RANK, random_state=0, n_iter=4).fit_transform(X),
        }
        if hasattr(X, "toarray"):
            fns = {k: v for k, v in fns.items() if "PCA" not in k}
        best = _interleaved_best(fns, repeats)
        lines.append(f"{name}: " + ", ".join(f"{k} {v:.3f} s" for k, v in best.items()))
    lines += cqrrpt_interleaved()
    return "\n".join(lines)


def cqrrpt_interleaved(repeats: int = 5) -> list[str]:
    """CQRRPT against LAPACK's QRCP, interleaved, best of ``repeats`` (3 on the largest)."""
    from lorainne.randomized import cqrrpt

    lines = []
    rng = np.random.default_rng(4)
    for m, n in [(20000, 100), (100000, 100), (50000, 300)]:
        A = rng.standard_normal((m, n)) * np.logspace(0, -8, n)
        best = _interleaved_best(
            {
                "lapack": lambda: scipy.linalg.qr(A, mode="economic", pivoting=True, check_finite=False),
                "cqrrpt": lambda: cqrrpt(A, random_state=0),
            },
            3 if m * n > 5e6 else repeats,
        )
        lines.append(
            f"{m}x{n}: scipy.linalg.qr(pivoting=True) {best['lapack'] * 1e3:.1f} ms, cqrrpt "
            f"{best['cqrrpt'] * 1e3:.1f} ms, speedup {best['lapack'] / best['cqrrpt']:.2f}"
        )
    return lines


ESTIMATOR_HEADER = [
    "matrix",
    "estimator",
    "k",
    "lorainne (s)",
    "lorainne err/opt",
    "sklearn default (s)",
    "sklearn default err/opt",
    "speedup vs default",
    "sklearn tuned n_iter",
    "sklearn tuned (s)",
    "sklearn tuned err/opt",
    "speedup vs tuned",
]


def equal_accuracy_report(quick: bool, repeats: int) -> str:
    with threadpool_limits(1):
        rows = bench_equal_accuracy(quick, repeats)
        cqrrpt_rows = bench_cqrrpt(quick, repeats)
        estimator_rows = bench_estimators(quick, repeats)
    command = "python benches/bench_randomized.py --equal-accuracy" + (" --quick" if quick else "")
    return "\n\n".join(
        [
            "## Equal accuracy: block Krylov vs subspace iteration vs scikit-learn (1 thread)",
            f"Machine: {machine()}. Commit {git_revision()}. Command: `{command}`.",
            "Each method's depth q (power iterations for subspace and scikit-learn, Krylov depth for "
            "block Krylov; 2 q + 2 passes over A each) is the smallest reaching ||A - U S Vt||_2 <= "
            "1.01 s_{k+1}; blocks of k + 10 columns. `passes ratio` and `time ratio` are relative to "
            "lorainne subspace; `time / krylov` is relative to block Krylov (above 1: slower). "
            f"Best of {repeats} runs.",
            markdown_table(
                [
                    "matrix",
                    "k",
                    "method",
                    "q",
                    "passes",
                    "passes ratio",
                    "time (s)",
                    "time ratio",
                    "time / krylov",
                    "error/optimal (2-norm)",
                ],
                rows,
            ),
            "## CQRRPT vs QR with column pivoting (1 thread)",
            "`speedup` = scipy.linalg.qr(pivoting=True)'s time / this time (above 1: faster than LAPACK). "
            "Columns graded from 1 to 1e-8.",
            markdown_table(["shape", "method", "time (ms)", "speedup", "||AP-QR||/||A||", "||QtQ-I||_F"], cqrrpt_rows),
            "## scikit-learn estimators: lorainne.sklearn vs sklearn.decomposition (1 thread)",
            "lorainne.sklearn.PCA / RandomizedSVD at their defaults (block Krylov, depth 3, n_threads=1) "
            "against sklearn's PCA(svd_solver='randomized') / TruncatedSVD at their defaults and tuned: "
            "the smallest n_iter (iterated_power) whose error is at most max(lorainne's, 1.01). "
            "`err/opt`: ||X_c - Z components||_2 / s_{k+1} (Frobenius norms for the sparse matrix); "
            "`speedup` = sklearn's time / lorainne's (above 1: lorainne faster). fit_transform, "
            f"best of {repeats}.",
            markdown_table(ESTIMATOR_HEADER, estimator_rows),
        ]
    )


PEAK: dict[str, float] = {}


def measure_peak():
    """Single-thread GEMM rate (flop/s): the best of NumPy's BLAS and lorainne's faer kernel on a
    2000^3 product (what the hardware sustains in practice)."""
    from lorainne import _core

    for dtype in (np.float32, np.float64):
        A = np.random.default_rng(2).standard_normal((2000, 2000)).astype(dtype)
        blas, _ = best_time(lambda: A @ A, 3)
        faer, _ = best_time(lambda: _core.matmul(A, A, 1), 3)
        PEAK[np.dtype(dtype).name] = 2 * 2000**3 / min(blas, faer)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--no-full-svd", action="store_true", help="skip scipy.linalg.svd (slow)")
    parser.add_argument("--output", help="write the markdown report here")
    parser.add_argument("--equal-accuracy", action="store_true", help="only the equal-accuracy table")
    parser.add_argument("--estimators", action="store_true", help="only the scikit-learn estimator table")
    parser.add_argument("--cqrrpt", action="store_true", help="only the CQRRPT table")
    parser.add_argument("--interleaved", action="store_true", help="headline ratios, contenders interleaved")
    parser.add_argument(
        "--krylov-tuned", action="store_true", help="block Krylov with tuned depth and block vs tuned peers"
    )
    parser.add_argument("--repeats", type=int, help="--krylov-tuned: best of this many interleaved runs (default 7)")
    args = parser.parse_args()
    if args.cqrrpt and args.interleaved:
        with threadpool_limits(1):
            print("\n".join(cqrrpt_interleaved()))
        return
    if args.krylov_tuned:
        with threadpool_limits(1):
            repeats = args.repeats or (3 if args.quick else 7)
            print(markdown_table(KRYLOV_TUNED_HEADER, bench_krylov_tuned(args.quick, repeats)))
        return
    if args.interleaved:
        with threadpool_limits(1):
            print(interleaved_report())
        return
    if args.estimators or args.cqrrpt:
        repeats = 1 if args.quick else 3
        with threadpool_limits(1):
            if args.estimators:
                print(markdown_table(ESTIMATOR_HEADER, bench_estimators(args.quick, repeats)))
            if args.cqrrpt:
                header = ["shape", "method", "time (ms)", "speedup", "||AP-QR||/||A||", "||QtQ-I||_F"]
                print(markdown_table(header, bench_cqrrpt(args.quick, repeats)))
        return
    if args.equal_accuracy:
        report = equal_accuracy_report(args.quick, repeats=1 if args.quick else 3)
        print(report)
        if args.output:
            Path(args.output).write_text(report + "\n")
        return
    svd_shapes = [(800, 800), (4000, 400)] if args.quick else [(4000, 4000), (20000, 2000)]
    qr_shapes = [(4000, 100)] if args.quick else [(20000, 100), (20000, 60)]
    dtypes = [np.float64, np.float32]
    with threadpool_limits(1):
        measure_peak()
        svd_rows = bench_svd(svd_shapes, dtypes, not args.no_full_svd, repeats=1 if args.quick else 3)
        qr_rows = bench_qr(qr_shapes, dtypes, repeats=3 if args.quick else 7)
    command = (
        "python benches/bench_randomized.py"
        + (" --quick" if args.quick else "")
        + (" --no-full-svd" if args.no_full_svd else "")
    )
    report = "\n\n".join(
        [
            "## Randomized SVD (rank 50, 10 oversamples, 2 power iterations, 1 thread)",
            f"Machine: {machine()}. Peak GEMM measured: {PEAK['float64'] / 1e9:.1f} GFLOP/s (float64), "
            f"{PEAK['float32'] / 1e9:.1f} GFLOP/s (float32). Commit {git_revision()}. Command: `{command}`.",
            "Spectrum s_i = 1/(i+1); `error/optimal` = ||A - U S Vt||_F / sqrt(sum_{i>=50} "
            "s_i^2); `ratio` = time / lorainne's time (above 1: slower than lorainne).",
            markdown_table(["shape", "dtype", "method", "time (s)", "ratio", "error/optimal"], svd_rows),
            "## Tall-skinny QR (1 thread)",
            "`ratio` = time / numpy.linalg.qr's time (below 1: faster than NumPy).",
            markdown_table(
                ["shape", "dtype", "method", "time (ms)", "ratio", "||QtQ-I||_F", "||QR-A||/||A||"], qr_rows
            ),
        ]
    )
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n")


if __name__ == "__main__":
    main()
