"""The ``lorainne`` command: ``lorainne demo``, ``lorainne svd IN.npy --rank K``, ...

Run ``lorainne COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ._progress import Progress


def load_matrix(path: str):
    """A dense matrix from .npy, or a matrix from .npz (SciPy sparse ``save_npz`` or the first array)."""
    file = Path(path)
    if not file.exists():
        raise SystemExit(f"lorainne: no such file: {path}")
    if file.suffix == ".npy":
        return np.load(file, allow_pickle=False)
    if file.suffix == ".npz":
        with np.load(file, allow_pickle=False) as data:
            if "format" in data.files and "shape" in data.files:
                import scipy.sparse

                return scipy.sparse.load_npz(file)
            if not data.files:
                raise SystemExit(f"lorainne: {path} holds no array")
            return data[data.files[0]]
    raise SystemExit(f"lorainne: {path}: expected a .npy or .npz file")


def _residual_norm(A, U, S, Vt, block: int = 4096) -> float:
    """||A - U diag(S) Vt||_F in row blocks (never a second copy of A)."""
    total = 0.0
    for start in range(0, A.shape[0], block):
        rows = A[start : start + block]
        rows = rows.toarray() if hasattr(rows, "toarray") else np.asarray(rows)
        total += float(np.sum((rows - (U[start : start + block] * S) @ Vt) ** 2))
    return float(np.sqrt(total))


def command_svd(args) -> int:
    from . import randomized_svd

    A = load_matrix(args.input)
    with Progress(2, "svd", enabled=not args.quiet) as bar:
        start = time.perf_counter()
        U, S, Vt = randomized_svd(
            A, args.rank, n_oversamples=args.oversamples, n_power_iter=args.power_iter, random_state=args.seed, n_threads=args.threads
        )
        seconds = time.perf_counter() - start
        bar.advance("factorized")
        norm = float(np.sqrt(A.multiply(A).sum())) if hasattr(A, "multiply") else float(np.linalg.norm(A))
        error = _residual_norm(A, U, S, Vt) / norm if norm > 0 else 0.0
        bar.advance("error measured")
    print(f"randomized SVD of {A.shape[0]}x{A.shape[1]} {A.dtype} at rank {args.rank}: relative error {error:.4e}, {seconds:.3f} s")
    if args.output:
        np.savez(args.output, U=U, S=S, Vt=Vt)
        print(f"wrote U {U.shape}, S {S.shape}, Vt {Vt.shape} to {args.output}")
    return 0


def _peak_rss_mb() -> float | None:
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20
    except Exception:  # pragma: no cover - no resource module (Windows)
        return None


def _load_points(path: str, name: str):
    points = load_matrix(path)
    if hasattr(points, "toarray"):
        raise SystemExit(f"lorainne ot: {name} must be a dense (n, d) array of points, got a sparse matrix")
    return np.asarray(points)


def command_ot(args) -> int:
    from . import sinkhorn

    x = _load_points(args.x, "X")
    y = _load_points(args.y, "Y")
    a = _load_points(args.a, "A") if args.a else None
    b = _load_points(args.b, "B") if args.b else None
    with Progress(1, "ot", enabled=not args.quiet) as bar:
        start = time.perf_counter()
        result = sinkhorn(
            x, y, a, b, eps=args.eps, method=args.method, tol=args.tol, n_iter_max=args.max_iter, n_threads=args.threads
        )
        seconds = time.perf_counter() - start
        bar.advance("solved")
    peak = _peak_rss_mb()
    print(f"entropic OT between {x.shape[0]} and {y.shape[0]} points in {1 if x.ndim == 1 else x.shape[1]}-D, eps = {args.eps:g} ({args.method})")
    print(f"cost            {result.cost:.10g}")
    print(f"dual            {result.dual:.10g}")
    print(f"iterations      {result.n_iter} ({'converged' if result.converged else 'NOT converged'})")
    print(f"marginal error  {result.marginal_error:.3e}")
    print(f"time            {seconds:.3f} s")
    if peak is not None:
        print(f"peak memory     {peak:.1f} MB (whole process)")
    if args.output:
        np.savez(args.output, f=result.f, g=result.g, cost=result.cost, dual=result.dual, n_iter=result.n_iter, marginal_error=result.marginal_error)
        print(f"wrote f {result.f.shape}, g {result.g.shape}, cost, dual to {args.output}")
    return 0 if result.converged else 1


def command_demo(args) -> int:
    from ._demo import SECTIONS, format_table

    rng = np.random.default_rng(args.seed)
    rows = []
    with Progress(len(SECTIONS), "demo", enabled=not args.quiet) as bar:
        for section in SECTIONS:
            rows.extend(section(rng))
            bar.advance(section.__name__)
    print(format_table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorainne", description="Low-rank approximations: randomized SVD, QR, and more.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run every capability on built-in synthetic data and print a table")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the synthetic data (default 0)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=command_demo)

    svd = sub.add_parser("svd", help="randomized SVD of a matrix file (.npy, or .npz from scipy.sparse.save_npz)")
    svd.add_argument("input", help="matrix file (.npy or .npz)")
    svd.add_argument("--rank", type=int, required=True, help="target rank K")
    svd.add_argument("-o", "--output", help="write U, S, Vt to this .npz file")
    svd.add_argument("--oversamples", type=int, default=10, help="extra sketch columns (default 10)")
    svd.add_argument("--power-iter", type=int, default=2, help="power iterations (default 2)")
    svd.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    svd.add_argument("--threads", type=int, default=None, help="threads of the Rust kernels (default: all cores)")
    svd.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    svd.set_defaults(run=command_svd)

    ot = sub.add_parser(
        "ot",
        help="entropic optimal transport between two point clouds (.npy (n, d) arrays)",
        description="Entropic OT with squared Euclidean cost C_ij = |x_i - y_j|^2 and absolute eps, by log-domain "
        "Sinkhorn (k-d tree hierarchical kernel for large inputs). Prints cost, dual, iterations, marginal error, "
        "time and peak memory; exits 1 when not converged.",
    )
    ot.add_argument("x", help="source points X.npy, shape (n, d)")
    ot.add_argument("y", help="target points Y.npy, shape (m, d)")
    ot.add_argument("--eps", type=float, required=True, help="entropic regularization (absolute, in squared-distance units)")
    ot.add_argument("--a", help="source weights A.npy (n,), default uniform")
    ot.add_argument("--b", help="target weights B.npy (m,), default uniform")
    ot.add_argument("--method", choices=["auto", "dense", "hierarchical"], default="auto", help="kernel (default auto)")
    ot.add_argument("--tol", type=float, default=1e-6, help="marginal error tolerance (default 1e-6)")
    ot.add_argument("--max-iter", type=int, default=10000, help="iteration cap (default 10000)")
    ot.add_argument("-o", "--output", help="write f, g, cost, dual to this .npz file")
    ot.add_argument("--threads", type=int, default=None, help="threads of the Rust kernels (default: all cores)")
    ot.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ot.set_defaults(run=command_ot)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError) as error:
        print(f"lorainne {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
