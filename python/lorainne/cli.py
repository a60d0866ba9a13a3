"""The ``lorainne`` command: ``lorainne demo``, ``lorainne svd IN.npy --rank K``, ...

Run ``lorainne COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ._cli_io import (
    CommandError,
    check_output,
    check_positive,
    load_array,
    load_slices,
    one_line,
    save_atomic,
    save_npz,
)
from ._progress import Progress
from .compress import _cli as compress_cli  # each area may keep its subcommand beside its code
from .ot import METHODS as OT_METHODS
from .tensor import CP_INITS, TUCKER_METHODS
from .trace import DENSITY_METHODS, FUNCTION_METHODS, NAMED_FUNCTIONS, TRACE_METHODS


def _residual_norm(A, U, S, Vt, block: int = 4096) -> float:
    """||A - U diag(S) Vt||_F in row blocks (never a second copy of A)."""
    total = 0.0
    for start in range(0, A.shape[0], block):
        rows = A[start : start + block]
        rows = rows.toarray() if hasattr(rows, "toarray") else np.asarray(rows)
        total += float(np.sum((rows - (U[start : start + block] * S) @ Vt) ** 2))
    return float(np.sqrt(total))


def command_svd(args) -> int:
    """Run ``lorainne svd``: randomized SVD of a matrix file, optionally saved as U, S, Vt."""
    from . import randomized_svd

    output = check_output(args.output, [args.input], (".npz",))
    A = load_array(args.input, "matrix")
    with Progress(2, "svd", enabled=not args.quiet) as bar:
        start = time.perf_counter()
        U, S, Vt = randomized_svd(
            A,
            args.rank,
            n_oversamples=args.oversamples,
            n_power_iter=args.power_iter,
            random_state=args.seed,
            n_threads=args.threads,
        )
        seconds = time.perf_counter() - start
        bar.advance("factorized")
        norm = float(np.sqrt(A.multiply(A).sum())) if hasattr(A, "multiply") else float(np.linalg.norm(A))
        error = _residual_norm(A, U, S, Vt) / norm if norm > 0 else 0.0
        bar.advance("error measured")
    print(
        f"randomized SVD of {A.shape[0]}x{A.shape[1]} {A.dtype} at rank "
        f"{args.rank}: relative error {error:.4e}, {seconds:.3f} s"
    )
    if output is not None:
        save_npz(output, U=U, S=S, Vt=Vt)
        print(f"wrote U {U.shape}, S {S.shape}, Vt {Vt.shape} to {output}")
    return 0


def command_trace(args) -> int:
    """Run ``lorainne trace``: a randomized trace (or tr f(A)) estimate with its error estimate."""
    from . import trace, trace_function

    A = load_array(args.input, "matrix")
    start = time.perf_counter()
    if args.function:
        est = trace_function(
            A,
            args.function,
            n_vectors=args.vectors,
            degree=args.degree,
            method=args.function_method,
            random_state=args.seed,
        )
        what = f"tr {args.function}(A) by {args.function_method} ({args.vectors} vectors x {args.degree})"
    else:
        est = trace(A, args.matvecs, method=args.method, psd=True if args.psd else None, random_state=args.seed)
        what = f"tr(A) by {args.method}" + (" (psd)" if args.psd else "")
    seconds = time.perf_counter() - start
    print(
        f"{what} of {A.shape[0]}x{A.shape[1]} {A.dtype}: {est.value:.10g} +- "
        f"{est.error_estimate:.3g} ({est.n_matvec} products, {seconds:.3f} s)"
    )
    return 0


def command_density(args) -> int:
    """Run ``lorainne density``: the spectral density of a symmetric matrix, printed or written."""
    from . import spectral_density, spectrum_bounds

    out = check_output(args.output, [args.input])
    plt = _pyplot() if out is not None and out.suffix.lower() == ".png" else None
    A = load_array(args.input, "matrix")
    with Progress(2, "density", enabled=not args.quiet) as bar:
        start = time.perf_counter()
        lo, hi = spectrum_bounds(A, random_state=args.seed, n_threads=args.threads)
        t = np.linspace(lo - 3 * args.sigma, hi + 3 * args.sigma, args.points)
        bar.advance("spectrum bounds")
        phi = spectral_density(
            A,
            t,
            sigma=args.sigma,
            n_vectors=args.vectors,
            degree=args.degree,
            method=args.method,
            spectrum_bounds=(lo, hi),
            random_state=args.seed,
            n_threads=args.threads,
        )
        seconds = time.perf_counter() - start
        bar.advance("density")
    print(
        f"spectral density of {A.shape[0]}x{A.shape[1]} by {args.method}: spectrum in [{lo:.4g}, {hi:.4g}], "
        f"integral {float(np.trapezoid(phi, t)):.4f}, {seconds:.3f} s"
    )
    if out is not None:
        if plt is not None:
            fig, ax = plt.subplots(figsize=(7, 4))
            ax.plot(t, phi, lw=1.2)
            ax.set_xlabel("eigenvalue")
            ax.set_ylabel("density")
            ax.set_title(f"{args.input}: {args.method}, sigma={args.sigma:g}, {args.vectors} vectors")
            fig.tight_layout()
            fig.savefig(out, dpi=120)
            plt.close(fig)
        else:
            np.savetxt(out, np.c_[t, phi], delimiter=",", header="t,density", comments="")
        print(f"wrote {out}")
    return 0


def _pyplot():
    """matplotlib.pyplot on the Agg backend, or CommandError when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError("a .png output needs matplotlib (pip install matplotlib); use .csv instead") from None
    return plt


def _parse_ranks(text: str) -> list[int]:
    try:
        ranks = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or comma-separated ints, got {text!r}") from None
    return ranks


def command_cp(args) -> int:
    """Run ``lorainne cp``: CP decomposition by ALS of a tensor file."""
    from . import cp

    check_positive(args.n_iter_max, "--n-iter-max")
    output = check_output(args.output, [args.input], (".npz",))
    X = load_array(args.input, "dense")
    with Progress(args.n_iter_max, "cp", enabled=not args.quiet) as bar:

        def progress(state, error):
            bar.advance(f"error {error:.4e}")
            return False

        start = time.perf_counter()
        model = cp(
            X,
            args.rank,
            init=args.init,
            n_iter_max=args.n_iter_max,
            tol=args.tol,
            nonnegative=args.nonnegative,
            random_state=args.seed,
            n_threads=args.threads,
            callback=None if args.quiet else progress,
        )
        seconds = time.perf_counter() - start
    shape = "x".join(str(s) for s in X.shape)
    status = "converged" if model.converged else "not converged"
    print(
        f"CP of {shape} {X.dtype} at rank {args.rank}: relative error "
        f"{model.errors[-1]:.4e} after {model.n_iter} sweeps ({status}), {seconds:.3f} s"
    )
    if output is not None:
        arrays = {"weights": model.weights, **{f"factor_{n}": f for n, f in enumerate(model.factors)}}
        save_npz(output, **arrays)
        print(f"wrote weights {model.weights.shape} and {len(model.factors)} factors to {output}")
    return 0


def command_parafac2(args) -> int:
    """Run ``lorainne parafac2``: PARAFAC2 of the slices stored in an .npz file."""
    from . import parafac2

    check_positive(args.n_iter_max, "--n-iter-max")
    output = check_output(args.output, [args.input], (".npz",))
    slices = load_slices(args.input)
    with Progress(args.n_iter_max, "parafac2", enabled=not args.quiet) as bar:

        def progress(state, error):
            bar.advance(f"error {error:.4e}")
            return False

        start = time.perf_counter()
        model = parafac2(
            slices,
            args.rank,
            init=args.init,
            n_iter_max=args.n_iter_max,
            tol=args.tol,
            nonnegative=args.nonnegative,
            random_state=args.seed,
            n_threads=args.threads,
            callback=None if args.quiet else progress,
        )
        seconds = time.perf_counter() - start
    rows = [s.shape[0] for s in slices]
    status = "converged" if model.converged else "not converged"
    print(
        f"PARAFAC2 of {len(slices)} slices ({min(rows)}..{max(rows)} x {slices[0].shape[1]}) at rank {args.rank}: "
        f"relative error {model.errors[-1]:.4e} after {model.n_iter} iterations ({status}), {seconds:.3f} s"
    )
    if output is not None:
        A, B, C = model.factors
        projections = {f"projection_{k}": p for k, p in enumerate(model.projections)}
        save_npz(output, weights=model.weights, A=A, B=B, C=C, **projections)
        print(f"wrote weights, A {A.shape}, B {B.shape}, C {C.shape} and {len(projections)} projections to {output}")
    return 0


def command_tucker(args) -> int:
    """Run ``lorainne tucker``: Tucker decomposition (HOOI or HOSVD) of a tensor file."""
    from . import tucker

    check_positive(args.n_iter_max, "--n-iter-max")
    output = check_output(args.output, [args.input], (".npz",))
    X = load_array(args.input, "dense")
    ranks = args.rank[0] if len(args.rank) == 1 else args.rank
    with Progress(args.n_iter_max, "tucker", enabled=not args.quiet) as bar:

        def progress(state, error):
            bar.advance(f"error {error:.4e}")
            return False

        start = time.perf_counter()
        model = tucker(
            X,
            ranks,
            method=args.method,
            n_iter_max=args.n_iter_max,
            tol=args.tol,
            random_state=args.seed,
            callback=None if args.quiet else progress,
        )
        seconds = time.perf_counter() - start
    shape = "x".join(str(s) for s in X.shape)
    print(
        f"Tucker ({args.method}) of {shape} {X.dtype} at rank {model.rank}: relative "
        f"error {model.errors[-1]:.4e} after {model.n_iter} sweeps, {seconds:.3f} s"
    )
    if output is not None:
        save_npz(output, core=model.core, **{f"factor_{n}": f for n, f in enumerate(model.factors)})
        print(f"wrote core {model.core.shape} and {len(model.factors)} factors to {output}")
    return 0


def _peak_rss_mb() -> float | None:
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20
    except Exception:  # pragma: no cover - no resource module (Windows)
        return None


def command_ot(args) -> int:
    """Run ``lorainne ot``: entropic optimal transport between two point clouds."""
    from . import sinkhorn

    check_positive(args.max_iter, "--max-iter")
    inputs = [args.x, args.y, args.a, args.b]
    output = check_output(args.output, inputs, (".npz",))
    map_out = check_output(args.map, inputs, (".npy",), option="--map")
    plan_out = check_output(args.plan_sparse, inputs, (".npz",), option="--plan-sparse")
    outputs = [out.resolve() for out in (output, map_out, plan_out) if out is not None]
    if len(set(outputs)) < len(outputs):
        raise CommandError("-o, --map and --plan-sparse must name different files")
    if not 0.0 < args.threshold < 1.0:
        raise CommandError(f"--threshold must be in (0, 1), got {args.threshold}")
    x = load_array(args.x, "dense")
    y = load_array(args.y, "dense")
    a = load_array(args.a, "dense") if args.a else None
    b = load_array(args.b, "dense") if args.b else None
    with Progress(1, "ot", enabled=not args.quiet) as bar:
        start = time.perf_counter()
        result = sinkhorn(
            x, y, a, b, eps=args.eps, method=args.method, tol=args.tol, n_iter_max=args.max_iter, n_threads=args.threads
        )
        seconds = time.perf_counter() - start
        bar.advance("solved")
    peak = _peak_rss_mb()
    print(
        f"entropic OT between {x.shape[0]} and {y.shape[0]} points in "
        f"{1 if x.ndim == 1 else x.shape[1]}-D, eps = {args.eps:g} ({args.method})"
    )
    print(f"cost            {result.cost:.10g}")
    print(f"dual            {result.dual:.10g}")
    print(f"iterations      {result.n_iter} ({'converged' if result.converged else 'NOT converged'})")
    print(f"marginal error  {result.marginal_error:.3e}")
    print(f"time            {seconds:.3f} s")
    if peak is not None:
        print(f"peak memory     {peak:.1f} MB (whole process)")
    if output is not None:
        save_npz(
            output,
            f=result.f,
            g=result.g,
            cost=result.cost,
            dual=result.dual,
            n_iter=result.n_iter,
            marginal_error=result.marginal_error,
        )
        print(f"wrote f {result.f.shape}, g {result.g.shape}, cost, dual to {output}")
    if map_out is not None:
        T = result.barycentric_map()
        save_atomic(map_out, lambda stream: np.save(stream, T))
        print(f"wrote the barycentric map {T.shape} to {map_out}")
    if plan_out is not None:
        import scipy.sparse

        P = result.plan_sparse(args.threshold)
        save_atomic(plan_out, lambda stream: scipy.sparse.save_npz(stream, P))
        print(f"wrote the sparse plan {P.shape}, {P.nnz} entries (threshold {args.threshold:g}) to {plan_out}")
    return 0 if result.converged else 1


def command_demo(args) -> int:
    """Run ``lorainne demo``: a tour of every capability on built-in synthetic data."""
    from ._demo import SECTIONS, format_table
    from ._demo_areas import SECTIONS as AREA_SECTIONS

    sections = SECTIONS + AREA_SECTIONS
    rng = np.random.default_rng(args.seed)
    rows = []
    with Progress(len(sections), "demo", enabled=not args.quiet) as bar:
        for section in sections:
            rows.extend(section(rng))
            bar.advance(section.__name__)
    print(format_table(rows))
    return 0


def _add_common_options(parser, *, seed: bool = False, threads: bool = False, quiet: bool = False) -> None:
    """The options several commands share, spelled and documented once."""
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    if threads:
        parser.add_argument(
            "--threads", type=int, default=None, help="threads of the Rust kernels (default: all cores)"
        )
    if quiet:
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``lorainne`` argument parser, one subcommand per capability."""
    parser = argparse.ArgumentParser(
        prog="lorainne", description="Low-rank approximations: randomized SVD, QR, and more."
    )
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
    _add_common_options(svd, seed=True, threads=True, quiet=True)
    svd.set_defaults(run=command_svd)

    tr = sub.add_parser("trace", help="randomized trace (or tr f(A)) of a square matrix file (.npy or .npz)")
    tr.add_argument("input", help="matrix file (.npy or .npz)")
    tr.add_argument("--matvecs", type=int, default=100, help="products with A (default 100)")
    tr.add_argument("--method", default="auto", choices=TRACE_METHODS)
    tr.add_argument("--psd", action="store_true", help="A is symmetric positive semidefinite (auto picks XNysTrace)")
    tr.add_argument("--function", choices=NAMED_FUNCTIONS, help="estimate tr f(A) instead (symmetric A)")
    tr.add_argument("--function-method", default="slq", choices=FUNCTION_METHODS)
    tr.add_argument("--vectors", type=int, default=30, help="random vectors for --function (default 30)")
    tr.add_argument(
        "--degree", type=int, default=30, help="Lanczos steps / Chebyshev degree for --function (default 30)"
    )
    _add_common_options(tr, seed=True)
    tr.set_defaults(run=command_trace)

    density = sub.add_parser("density", help="smoothed spectral density of a symmetric matrix file, plotted to a PNG")
    density.add_argument("input", help="matrix file (.npy or .npz)")
    density.add_argument("--sigma", type=float, required=True, help="Gaussian smoothing width")
    density.add_argument("--vectors", type=int, default=40, help="random vectors (default 40)")
    density.add_argument(
        "--degree", type=int, default=None, help="Chebyshev degree / Lanczos steps (default: from sigma)"
    )
    density.add_argument("--method", default="nystrom++", choices=DENSITY_METHODS)
    density.add_argument("--points", type=int, default=500, help="grid points (default 500)")
    density.add_argument("-o", "--output", help="write the plot (.png, needs matplotlib) or the values (.csv)")
    _add_common_options(density, seed=True, threads=True, quiet=True)
    density.set_defaults(run=command_density)

    cp = sub.add_parser("cp", help="CP decomposition (ALS) of a dense tensor file (.npy or .npz)")
    cp.add_argument("input", help="tensor file (.npy, or the first array of a .npz)")
    cp.add_argument("--rank", type=int, required=True, help="number of components R")
    cp.add_argument("-o", "--output", help="write weights and factor_0..factor_{N-1} to this .npz file")
    cp.add_argument("--init", choices=CP_INITS, default="svd", help="start (default svd)")
    cp.add_argument("--n-iter-max", type=int, default=100, help="maximum sweeps (default 100)")
    cp.add_argument(
        "--tol", type=float, default=1e-8, help="stop when the error changes by less (default 1e-8; 0: run all sweeps)"
    )
    cp.add_argument("--nonnegative", action="store_true", help="nonnegative factors (HALS)")
    _add_common_options(cp, seed=True, threads=True, quiet=True)
    cp.set_defaults(run=command_cp)

    p2 = sub.add_parser("parafac2", help="PARAFAC2 of the slices X_k (I_k x J) stored in an .npz file")
    p2.add_argument("input", help=".npz file, one 2-D array per slice in the archive's order (or a 3-D .npy)")
    p2.add_argument("--rank", type=int, required=True, help="number of components R")
    p2.add_argument("-o", "--output", help="write weights, A, B, C and projection_0..projection_{K-1} (.npz)")
    p2.add_argument("--init", choices=("svd", "random"), default="svd", help="start (default svd)")
    p2.add_argument("--n-iter-max", type=int, default=200, help="maximum iterations (default 200)")
    p2.add_argument("--tol", type=float, default=1e-8, help="stop when the error changes by less (default 1e-8)")
    p2.add_argument("--nonnegative", action="store_true", help="nonnegative A and C")
    _add_common_options(p2, seed=True, threads=True, quiet=True)
    p2.set_defaults(run=command_parafac2)

    tk = sub.add_parser("tucker", help="Tucker decomposition (HOOI or HOSVD) of a dense tensor file")
    tk.add_argument("input", help="tensor file (.npy, or the first array of a .npz)")
    tk.add_argument("--rank", type=_parse_ranks, required=True, help="multilinear rank: R for every mode, or R1,R2,...")
    tk.add_argument("-o", "--output", help="write core and factor_0..factor_{N-1} to this .npz file")
    tk.add_argument("--method", choices=TUCKER_METHODS, default="hooi", help="default hooi")
    tk.add_argument("--n-iter-max", type=int, default=100, help="maximum sweeps (default 100)")
    tk.add_argument("--tol", type=float, default=1e-8, help="stop when the error changes by less (default 1e-8)")
    _add_common_options(tk, seed=True, quiet=True)
    tk.set_defaults(run=command_tucker)

    ot = sub.add_parser(
        "ot",
        help="entropic optimal transport between two point clouds (.npy (n, d) arrays)",
        description="Entropic OT with squared Euclidean cost C_ij = |x_i - y_j|^2 and absolute eps, by log-domain "
        "Sinkhorn (k-d tree hierarchical kernel for large inputs). Prints cost, dual, iterations, marginal error, "
        "time and peak memory; exits 1 when not converged.",
    )
    ot.add_argument("x", help="source points X.npy, shape (n, d)")
    ot.add_argument("y", help="target points Y.npy, shape (m, d)")
    ot.add_argument(
        "--eps", type=float, required=True, help="entropic regularization (absolute, in squared-distance units)"
    )
    ot.add_argument("--a", help="source weights A.npy (n,), default uniform")
    ot.add_argument("--b", help="target weights B.npy (m,), default uniform")
    ot.add_argument("--method", choices=OT_METHODS, default="auto", help="kernel (default auto)")
    ot.add_argument("--tol", type=float, default=1e-6, help="marginal error tolerance (default 1e-6)")
    ot.add_argument("--max-iter", type=int, default=10000, help="iteration cap (default 10000)")
    ot.add_argument("-o", "--output", help="write f, g, cost, dual to this .npz file")
    ot.add_argument("--map", help="write the barycentric map sum_j P_ij y_j / (P 1)_i, shape (n, d), to this .npy file")
    ot.add_argument(
        "--plan-sparse",
        help="write the plan's near field (each row keeps all but --threshold of its mass) as a SciPy CSR .npz "
        "(scipy.sparse.load_npz)",
    )
    ot.add_argument(
        "--threshold", type=float, default=1e-6, help="mass fraction a --plan-sparse row may drop (default 1e-6)"
    )
    _add_common_options(ot, threads=True, quiet=True)
    ot.set_defaults(run=command_ot)
    compress_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lorainne`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CommandError as error:  # bad files or options: one line, exit code 2 (SystemExit)
        print(f"lorainne {args.command}: {error.message}", file=sys.stderr)
        raise
    except (ValueError, TypeError) as error:
        print(f"lorainne {args.command}: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lorainne {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
