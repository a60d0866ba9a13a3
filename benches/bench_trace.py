"""Trace and spectral-density estimators: error vs products, imate comparison, parametric cost.

Run:  python benches/bench_trace.py            (about 2-4 minutes on 2 busy cores)
Prints markdown tables (also written to benches/RESULTS_trace.md with --write).
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_info, threadpool_limits

import lorainne
from lorainne import spectral_density, trace, trace_function

SEEDS = 8
METHODS = ("hutchinson", "hutch++", "nystrom++", "xtrace", "xnystrace")
REFERENCE = {
    ("i^-2", 80, "hutch++"): 6.6e-4,
    ("i^-2", 80, "nystrom++"): 8.7e-4,
    ("i^-2", 80, "xtrace"): 3.7e-4,
    ("i^-2", 80, "xnystrace"): 2.5e-4,
    ("0.9^i", 160, "xtrace"): 1.3e-5,
    ("0.9^i", 160, "xnystrace"): 8.6e-8,
}


def planted(n, lam, seed=0):
    U, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return (U * lam) @ U.T


def grid_laplacian(k=50, shift=0.05):
    L1 = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])
    A = (sp.kron(L1, sp.eye(k)) + sp.kron(sp.eye(k), L1) + shift * sp.eye(k * k)).tocsr()
    d = 2 - 2 * np.cos(np.pi * np.arange(1, k + 1) / (k + 1))
    return A, np.add.outer(d, d).ravel() + shift


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def error_vs_products(lines):
    n = 1000
    spectra = {
        "i^-2": np.arange(1, n + 1) ** -2.0,
        "0.9^i": 0.9 ** np.arange(n),
        "step": np.r_[np.ones(50), 1e-3 * np.ones(n - 50)],
    }
    budgets = (10, 20, 40, 80, 160)
    lines.append(
        f"### Error vs products (n = {n}, median relative error over {SEEDS} "
        "seeds; coverage = share of all runs with |error| <= 2 error_estimate)\n"
    )
    lines.append("| spectrum | method | " + " | ".join(f"m={m}" for m in budgets) + " | coverage | ms/call at m=80 |")
    lines.append("|---|---|" + "---|" * (len(budgets) + 2))
    reference_rows = []
    for name, lam in spectra.items():
        A = planted(n, lam, seed=1)
        exact = lam.sum()
        for method in METHODS:
            cells, hits, total, ms = [], 0, 0, 0.0
            for m in budgets:
                errors = []
                for s in range(SEEDS):
                    est, seconds = timed(trace, A, m, method=method, random_state=s)
                    errors.append(abs(est.value - exact) / exact)
                    hits += abs(est.value - exact) <= 2 * est.error_estimate
                    total += 1
                    if m == 80:
                        ms += 1000 * seconds / SEEDS
                median = float(np.median(errors))
                cells.append(f"{median:.1e}")
                if (name, m, method) in REFERENCE:  # the reference rows get 30 seeds
                    more = [
                        abs(trace(A, m, method=method, random_state=100 + s).value - exact) / exact for s in range(30)
                    ]
                    reference_rows.append((name, m, method, float(np.median(more)), REFERENCE[(name, m, method)]))
            lines.append(f"| {name} | {method} | " + " | ".join(cells) + f" | {hits / total:.0%} | {ms:.1f} |")
    lines.append("\n### Against the reference ports of the issue (goal: within 1.5x; median over 30 seeds)\n")
    lines.append("| spectrum | m | method | ours (median) | reference | ratio |")
    lines.append("|---|---|---|---|---|---|")
    for name, m, method, ours, ref in reference_rows:
        lines.append(f"| {name} | {m} | {method} | {ours:.2e} | {ref:.1e} | {ours / ref:.2f} |")
    flops = 2 * n * n * 80
    lines.append(
        f"\nFloor: m = 80 products with a dense 1000 x 1000 matrix are {flops / 1e6:.0f} Mflop (one GEMM, about 3-4 ms "
        "on one core here: Hutchinson's time is the floor); XTrace / XNysTrace add QR of the sketch and O(m^3) small "
        "algebra (the leave-one-out and leave-two-out formulas), about 2x the floor at m = 80."
    )


def imate_comparison(lines):
    A, lam = grid_laplacian()
    exact_logdet, exact_inv = np.sum(np.log(lam)), np.sum(1 / lam)
    lines.append(
        "\n### Log-determinant and trace of the inverse, 50 x 50 grid "
        "Laplacian + 0.05 I (n = 2500), 40 vectors x 30 steps = 1200 products\n"
    )
    lines.append(
        f"exact log det = {exact_logdet:.2f}, exact tr(A^-1) = {exact_inv:.2f}; "
        f"median / max relative error over {SEEDS} seeds, median time\n"
    )
    lines.append("| quantity | estimator | median rel. error | max rel. error | time (s) | time ratio ours/imate |")
    lines.append("|---|---|---|---|---|---|")
    try:
        import imate
    except ImportError:
        imate = None
    for label, f, exact, imate_fn in (
        ("log det", "log", exact_logdet, "logdet"),
        ("tr inv", "inv", exact_inv, "traceinv"),
    ):
        results = {}
        for name, run in (
            (
                "lorainne slq",
                lambda s: trace_function(A, f, n_vectors=40, degree=30, random_state=s, n_threads=1).value,
            ),
            (
                "lorainne slq, no control variates",
                lambda s: (
                    trace_function(
                        A, f, n_vectors=40, degree=30, control_variates=False, random_state=s, n_threads=1
                    ).value
                ),
            ),
            (
                "lorainne chebyshev (degree 60)",
                lambda s: (
                    trace_function(A, f, n_vectors=40, degree=60, method="chebyshev", random_state=s, n_threads=1).value
                ),
            ),
        ):
            errs, times = [], []
            for s in range(SEEDS):
                value, seconds = timed(run, s)
                errs.append(abs(value - exact) / exact)
                times.append(seconds)
            results[name] = (np.median(errs), np.max(errs), np.median(times))
        if imate is not None:
            fn = getattr(imate, imate_fn)
            errs, times = [], []
            for _ in range(SEEDS):  # imate draws its own random vectors
                value, seconds = timed(
                    fn,
                    A,
                    method="slq",
                    min_num_samples=40,
                    max_num_samples=40,
                    lanczos_degree=30,
                    num_threads=1,
                    orthogonalize=-1,
                )
                errs.append(abs(value - exact) / exact)
                times.append(seconds)
            results["imate slq (full reorth.)"] = (np.median(errs), np.max(errs), np.median(times))
        peer = results.get("imate slq (full reorth.)", (None, None, None))[2]
        for name, (med, mx, sec) in results.items():
            ratio = f"{sec / peer:.2f}" if (peer and not name.startswith("imate")) else "—"
            lines.append(f"| {label} | {name} | {med:.1e} | {mx:.1e} | {sec:.3f} | {ratio} |")
    if imate is None:
        lines.append("\nimate is not installed (pip install imate): no peer rows.")


def parametric(lines):
    n = 1000
    rng = np.random.default_rng(0)
    lam = np.sort(rng.uniform(0, 1, n))
    A = planted(n, lam, seed=3)
    sigma, degree, vectors = 0.02, 200, 20
    lines.append(
        "\n### Parametric: spectral density of a 1000 x 1000 matrix (uniform "
        f"spectrum), sigma = {sigma}, degree {degree}, {vectors} vectors\n"
    )
    lines.append("| values of t | method | products | time (s) | time / time(10 t) |")
    lines.append("|---|---|---|---|---|")
    base = {}
    for method in ("nystrom++", "kpm"):
        for size in (10, 100, 1000):
            t = np.linspace(-0.05, 1.05, size)
            _, seconds = timed(
                spectral_density,
                A,
                t,
                sigma=sigma,
                n_vectors=vectors,
                degree=degree,
                method=method,
                spectrum_bounds=(-0.05, 1.05),
                random_state=0,
                n_threads=1,
            )
            base.setdefault(method, seconds)
            products = vectors * (degree if method == "nystrom++" else (degree + 1) // 2)
            lines.append(
                f"| {size} | {method} (shared vectors) | {products} | {seconds:.3f} | {seconds / base[method]:.2f} |"
            )
    # A separate Chebyshev-Hutchinson estimator per t (the products grow with len(t)).
    t = np.linspace(-0.05, 1.05, 100)
    start = time.perf_counter()
    for tk in t:
        trace_function(
            A,
            lambda x, tk=tk: np.exp(-((tk - x) ** 2) / (2 * sigma**2)),
            n_vectors=vectors,
            degree=degree,
            method="chebyshev",
            spectrum_bounds=(-0.05, 1.05),
            control_variates=False,
            random_state=0,
            n_threads=1,
        )
    seconds = time.perf_counter() - start
    per_t = vectors * ((degree + 1) // 2)
    lines.append(f"| 100 | separate KPM estimator per t | {100 * per_t} | {seconds:.3f} | — |")
    lines.append(f"| 1000 | separate KPM estimator per t (extrapolated) | {1000 * per_t} | {10 * seconds:.1f} | — |")


def nystrom_vs_kpm(lines):
    lines.append("\n### Chebyshev-Nystrom++ vs KPM at equal products (L1 error of the smoothed density)\n")
    lines.append(
        "| matrix | sigma | degree | Nystrom++ (vectors) | KPM (vectors) | L1 Nystrom++ | L1 KPM | KPM / Nystrom++ |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for n, sigma in ((200, 0.01), (1000, 0.004)):
        rng = np.random.default_rng(0)
        lam = np.sort(rng.uniform(0, 1, n))
        A = planted(n, lam, seed=4)
        t = np.linspace(-0.1, 1.1, 600)
        exact = np.exp(-((t[:, None] - lam[None, :]) ** 2) / (2 * sigma**2)).mean(axis=1) / (sigma * np.sqrt(2 * np.pi))
        l1 = {}
        for method, vectors in (("nystrom++", 40), ("kpm", 80)):
            errs = []
            for s in range(3):
                phi = spectral_density(
                    A,
                    t,
                    sigma=sigma,
                    n_vectors=vectors,
                    method=method,
                    spectrum_bounds=(-0.05, 1.05),
                    random_state=s,
                    n_threads=1,
                )
                errs.append(np.trapezoid(np.abs(phi - exact), t))
            l1[method] = float(np.mean(errs))
        degree = int(np.ceil(7 * 1.1 / (2 * sigma))) + 4
        lines.append(
            f"| uniform spectrum, n = {n} | {sigma} | {degree} | 40 | 80 | "
            f"{l1['nystrom++']:.1e} | {l1['kpm']:.1e} | {l1['kpm'] / l1['nystrom++']:.1f} |"
        )


def _xdiag_definition(A, Om):
    """XDiag transcribed from its definition (Epperly, Tropp and Webber 2024, Sec. 2.4): the mean
    over i of diag(Q_i Q_i^T A) + omega_i (.) (I - Q_i Q_i^T) A omega_i, Q_i an orthonormal basis
    of A Omega without column i. An independent reference (one QR per i), not lorainne's downdate.
    """
    Y = A @ Om
    total = np.zeros(A.shape[0])
    for i in range(Om.shape[1]):
        Q = np.linalg.qr(np.delete(Y, i, axis=1))[0]
        w = Om[:, i]
        Aw = Y[:, i]
        total += np.sum(Q * (A.T @ Q), axis=1) + w * (Aw - Q @ (Q.T @ Aw))
    return total / Om.shape[1]


def xdiag_paper_matrices(lines):
    """XDiag on the XTrace paper's test-matrix families (n = 1000, Haar eigenvectors, exponential
    0.7^i and algebraic i^-2 spectra): lorainne's XDiag against the paper's definition transcribed
    (same Rademacher vectors) and against Diag++ and Hutchinson at equal products.
    """
    from lorainne import diagonal

    n, seeds = 1000, 6
    spectra = {"exp 0.7^i": 0.7 ** np.arange(n), "alg i^-2": np.arange(1, n + 1) ** -2.0}
    budgets = (20, 40, 80, 160)
    lines.append(
        f"### XDiag on the paper's test matrices (n = {n}, mean relative error ||d_hat - d||_2 / ||d||_2 "
        f"over {seeds} seeds)\n"
    )
    lines.append(
        "`definition`: XDiag computed from its leave-one-out definition (one QR per left-out vector; "
        "budgets <= 80) with the same random signs; `ratio` = lorainne XDiag / definition. The paper "
        "gives these errors as curves (no table), so the transcribed definition is the reference.\n"
    )
    lines.append("| spectrum | matvecs | XDiag | definition | ratio | Diag++ | Hutchinson | XDiag / Diag++ |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for name, lam in spectra.items():
        A = planted(n, lam, seed=1)
        d = np.diag(A)
        for budget in budgets:
            errors = {"xdiag": [], "definition": [], "diag++": [], "hutchinson": []}
            for seed in range(seeds):
                for method in ("xdiag", "diag++", "hutchinson"):
                    est = diagonal(A, budget, method=method, random_state=seed)
                    errors[method].append(np.linalg.norm(est.values - d) / np.linalg.norm(d))
                if budget <= 80:
                    signs = np.random.default_rng(seed).integers(0, 2, size=(n, budget // 2)).astype(float) * 2 - 1
                    reference = _xdiag_definition(A, signs)
                    errors["definition"].append(np.linalg.norm(reference - d) / np.linalg.norm(d))
            mean = {k: float(np.mean(v)) if v else float("nan") for k, v in errors.items()}
            ratio = mean["xdiag"] / mean["definition"] if errors["definition"] else float("nan")
            lines.append(
                f"| {name} | {budget} | {mean['xdiag']:.2e} | "
                + (f"{mean['definition']:.2e} | {ratio:.2f}" if errors["definition"] else "— | —")
                + f" | {mean['diag++']:.2e} | {mean['hutchinson']:.2e} | {mean['xdiag'] / mean['diag++']:.2f} |"
            )
    lines.append("")


def main():
    lines = ["## Trace and spectral density (`benches/bench_trace.py`)\n"]
    blas = ", ".join(sorted({f"{i.get('internal_api')} {i.get('version')}" for i in threadpool_info()}))
    lines.append(
        f"Machine: {platform.machine()}, nproc = {os.cpu_count()}, BLAS: "
        f"{blas}; threads pinned to 1 (threadpoolctl, n_threads=1); "
        f"lorainne {lorainne.__version__}, numpy {np.__version__}.  Command: `python benches/bench_trace.py --write`\n"
    )
    sections = (error_vs_products, imate_comparison, parametric, nystrom_vs_kpm, xdiag_paper_matrices)
    if "--xdiag" in sys.argv:  # only the XDiag section: python benches/bench_trace.py --xdiag
        sections = (xdiag_paper_matrices,)
    with threadpool_limits(1):
        for section in sections:
            start = time.perf_counter()
            section(lines)
            print(f"[{section.__name__}: {time.perf_counter() - start:.1f} s]", file=sys.stderr)
    text = "\n".join(lines) + "\n"
    print(text)
    if "--write" in sys.argv:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS_trace.md")
        with open(path, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
