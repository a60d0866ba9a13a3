"""``lorainne compress``: compress the 2-D weights of a .safetensors file under a parameter budget."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .._progress import Progress


def _budget(text: str) -> float | int:
    value = float(text)
    return int(value) if value > 1 and value.is_integer() else value


def command_compress(args) -> int:
    try:
        from safetensors.numpy import load_file, save_file
    except ImportError:  # pragma: no cover - safetensors is a test dependency
        raise SystemExit("lorainne compress: needs the safetensors package (pip install safetensors)") from None
    from lorainne.compress import compress_state_dict, load_stats

    path = Path(args.input)
    if not path.exists():
        raise SystemExit(f"lorainne: no such file: {args.input}")
    try:
        tensors = load_file(path)  # the safetensors format holds raw buffers: loading runs no code
    except Exception as error:
        raise SystemExit(f"lorainne compress: cannot read {args.input}: {error}") from None
    stats = load_stats(args.stats) if args.stats else None
    method = args.method or ("svd-llm" if stats else "svd")
    candidates = [n for n, t in tensors.items() if t.ndim == 2 and t.dtype.kind == "f" and min(t.shape) >= 2]
    start = time.perf_counter()
    with Progress(len(candidates), "compress", enabled=not args.quiet) as bar:
        result = compress_state_dict(
            tensors,
            args.budget,
            stats=stats,
            method=method,
            skip=args.skip or None,
            transpose=args.transpose,
            round_to=args.round_to,
            random_state=args.seed,
            callback=bar.advance,
        )
    seconds = time.perf_counter() - start
    print(result.report)
    print(f"method {method}, {seconds:.2f} s")
    if args.output:
        save_file({name: np.ascontiguousarray(t) for name, t in result.tensors.items()}, args.output)
        print(f"wrote {args.output}")
    return 0


def add_parser(subparsers) -> None:
    """Register ``lorainne compress`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "compress",
        help="low-rank compression of the 2-D weights of a .safetensors file under a parameter budget",
        description="Each compressed weight NAME becomes NAME.A (out, r) and NAME.B (r, in) with NAME ~ NAME.A @ B; "
        "every other tensor is copied. Ranks are allocated globally (a layer stays dense rather than pass its "
        "break-even rank). Prints the per-layer report.",
    )
    p.add_argument("input", help="model.safetensors")
    p.add_argument(
        "--budget", type=_budget, required=True, help="fraction in (0, 1] of the weights' parameters, or a count"
    )
    p.add_argument("--stats", help="activation statistics .npz written by lorainne.compress.save_stats")
    p.add_argument("--method", choices=["svd", "asvd", "svd-llm"], help="default: svd-llm with --stats, svd without")
    p.add_argument(
        "--skip", action="append", metavar="PATTERN", help="glob of weight names to leave dense (repeatable)"
    )
    p.add_argument("--transpose", action="store_true", help="weights are stored (in, out) (GPT-2 Conv1D)")
    p.add_argument("--round-to", type=int, default=1, help="ranks multiple of this (8 for GPU kernels; default 1)")
    p.add_argument("-o", "--output", help="write the compressed tensors to this .safetensors file")
    p.add_argument("--seed", type=int, default=0, help="random seed of the randomized SVD (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=command_compress)
