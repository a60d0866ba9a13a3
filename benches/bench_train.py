"""Low-rank training kernels: GaLore projector refresh and DLRT step.

    python benches/bench_train.py                # default sizes (2048 x 5504 gradient; a few minutes)
    python benches/bench_train.py --full         # the LLaMA-7B MLP shape 4096 x 11008
    python benches/bench_train.py --quick        # small sizes, a smoke test
    python benches/bench_train.py --write        # also write benches/RESULTS_train.md

1. Projector refresh on a float32 gradient, rank 128: GaLoreProjector warm-started from the basis of
   the previous step's gradient, against a full ``numpy.linalg.svd`` (what GaLore computes every T
   steps) and ``torch.svd_lowrank`` when torch is installed. The gradients of consecutive steps are
   ``G_t = L_t diag(s) R_t`` with Gaussian factors drifting by 1% per step; the error is the sine of
   the largest principal angle between the basis and the exact top-128 left singular subspace of
   the last gradient (from the timed full SVD).
2. DLRT step on a 2048 x 2048 layer at rank 64 against the dense step, both with a batch of 256:
   forward ``y = x W^T``, backward with a fixed upstream gradient, update. The dense step forms
   ``G = delta^T x`` and updates W; the DLRT step works on the factors only (K/L-step, QR
   augmentation, S-step on the 128 x 128 core, SVD truncation back to rank 64).

Everything runs single-threaded (threadpoolctl for BLAS, n_threads=1 for lorainne) and is timed in
CPU seconds of the process (the single-core time, unaffected by other jobs on a shared machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
import lorainne  # noqa: E402
from _common import cpu_flags, git_revision, machine, markdown_table  # noqa: E402
from lorainne.train import GaLoreProjector, LowRankLayer, dlrt_kl_step, dlrt_s_step, dlrt_truncate  # noqa: E402

RANK = 128
# (warm start, power iterations q, oversampling p) of the projector runs
VARIANTS = ((True, 1, 8), (True, 1, 32), (True, 2, 16), (False, 1, 8), (False, 3, 32))


def cpu_time(fn, repeats: int = 1):
    """(best CPU time of this process in seconds, last result): every library runs on one thread, so
    CPU time is the single-core time even when other jobs share the machine (wall time is not)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def sin_largest_angle(A, B):
    s = np.linalg.svd(A.astype(np.float64).T @ B.astype(np.float64), compute_uv=False)
    return float(np.sqrt(max(0.0, 1.0 - s.min() ** 2)))


def projection_error(G, P):
    """||G - P P^T G||_F in float64."""
    G64, P64 = G.astype(np.float64), P.astype(np.float64)
    return float(np.linalg.norm(G64 - P64 @ (P64.T @ G64)))


def gradient_sequence(rng, m, n, spectrum, steps, drift=0.01, k=512):
    """Gradients of consecutive steps: L_t diag(s) R_t with Gaussian factors drifting slowly."""
    L = rng.standard_normal((m, k)).astype(np.float32) / np.sqrt(m)
    R = rng.standard_normal((k, n)).astype(np.float32) / np.sqrt(n)
    s = spectrum(np.arange(k)).astype(np.float32)
    out = []
    for _ in range(steps):
        out.append(np.ascontiguousarray((L * s) @ R))
        L = L + drift * rng.standard_normal((m, k)).astype(np.float32) / np.sqrt(m)
        R = R + drift * rng.standard_normal((k, n)).astype(np.float32) / np.sqrt(n)
    return out


SPECTRA = {
    "exp(-i/32)": lambda i: np.exp(-i / 32.0),
    "(1+i)^-1": lambda i: 1.0 / (1.0 + i),
}


def bench_projector(m, n, steps):
    rows = []
    rng = np.random.default_rng(0)
    have_torch = importlib.util.find_spec("torch") is not None
    for name, spectrum in SPECTRA.items():
        grads = gradient_sequence(rng, m, n, spectrum, steps)
        G = grads[-1]
        t_svd, (U, _, _) = cpu_time(lambda G=G: np.linalg.svd(G, full_matrices=False), repeats=1)
        exact = U[:, :RANK]
        best = projection_error(G, exact)
        rows.append([name, "numpy.linalg.svd (GaLore)", f"{t_svd:.2f}", "1.0", "0 (reference)", "1.000"])
        for warm, q, p in VARIANTS:
            label = f"{'warm' if warm else 'cold'}, q={q}, p={p}"
            proj = GaLoreProjector(
                RANK,
                update_every=1,
                side="left",
                n_power_iter=q,
                n_oversamples=p,
                warm_start=warm,
                random_state=0,
                n_threads=1,
            )
            for step, Gs in enumerate(grads[:-1]):  # earlier steps: the warm start's history (untimed)
                proj.project(Gs, step)
            t, _ = cpu_time(lambda proj=proj, G=G: _refresh(proj, G, steps - 1), repeats=1)
            err = sin_largest_angle(proj.basis, exact)
            ratio = projection_error(G, proj.basis) / best
            rows.append(
                [name, f"GaLoreProjector {label}", f"{t:.2f}", f"{t_svd / t:.1f}", f"{err:.3f}", f"{ratio:.3f}"]
            )
        if have_torch:  # pragma: no cover - torch is not a dependency
            import torch

            torch.set_num_threads(1)
            Gt = torch.from_numpy(G)
            t, (Ut, _, _) = cpu_time(lambda Gt=Gt: torch.svd_lowrank(Gt, q=RANK + 8, niter=2), repeats=1)
            err = sin_largest_angle(Ut.numpy()[:, :RANK], exact)
            ratio = projection_error(G, Ut.numpy()[:, :RANK]) / best
            rows.append(
                [
                    name,
                    "torch.svd_lowrank (q=r+8, niter=2)",
                    f"{t:.2f}",
                    f"{t_svd / t:.1f}",
                    f"{err:.3f}",
                    f"{ratio:.3f}",
                ]
            )
        else:
            rows.append([name, "torch.svd_lowrank", "not installed", "", "", ""])
    return rows


def _cells(t, t_svd, err, ratio):
    return [f"{t:.2f}", f"{t_svd / t:.1f}", f"{err:.3f}", f"{ratio:.3f}"]


def _refresh(proj, G, step):
    proj.project(G, step)
    return proj.basis


def bench_dlrt(n, r, batch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, n)).astype(np.float32)
    delta = rng.standard_normal((batch, n)).astype(np.float32) / batch
    W = rng.standard_normal((n, n)).astype(np.float32) / np.sqrt(n)
    lr = 1e-3

    def dense_step(W=W):
        _ = x @ W.T  # forward
        G = delta.T @ x  # backward (weight gradient)
        _ = delta @ W  # backward (input gradient)
        return W - lr * G

    layer = LowRankLayer.from_dense(W, r)

    def dlrt(layer=layer):
        U, S, V = layer.U, layer.S, layer.V
        xV = x @ V
        _ = (xV @ S.T) @ U.T  # forward through the factors
        dU = delta @ U
        _ = (dU @ S) @ V.T  # input gradient
        aug = dlrt_kl_step(layer, delta.T @ xV, x.T @ dU, lr, n_threads=1)  # dL/dK = delta^T x V, dL/dL = x^T delta U
        grad_S = (delta @ aug.U).T @ (x @ aug.V)
        aug = dlrt_s_step(aug, grad_S, lr)
        return dlrt_truncate(aug, rank=r)

    t_dense, _ = cpu_time(dense_step, repeats=5)
    t_dlrt, out = cpu_time(dlrt, repeats=5)
    dense_params, lowrank_params = n * n, layer.n_params
    return [
        [f"dense {n}x{n}", f"{1e3 * t_dense:.1f}", "1.0", f"{dense_params:,}"],
        [
            f"DLRT rank {r} (augmented to {2 * r})",
            f"{1e3 * t_dlrt:.1f}",
            f"{t_dense / t_dlrt:.2f}",
            f"{lowrank_params:,}",
        ],
    ]


NOTES = """### Notes

- Size: the default run uses 2048 x 5504 (the issue's fallback) instead of the LLaMA-7B MLP shape
  4096 x 11008: one single-threaded float32 `numpy.linalg.svd` of the full shape takes about 8x
  longer (two spectra, minutes of CPU each) on a 2-core machine shared with other jobs. `--full` runs it.
- Spectrum matters for the subspace error, not for the time. With a decaying spectrum
  (exp(-i/32): sigma_129 / sigma_128 = 0.97) the default warm-started refresh (q=1, p=8) meets the
  <= 5% target. With the power law (1+i)^-1 the top-128 subspace is ill-defined
  (sigma_128 / sigma_129 = 1.008) and no randomized variant pins it down; the last column
  (||G - P P^T G||_F over its optimum, from the exact top-128 subspace) says how much of the
  gradient the projection loses all the same.
- A cold start with the same work (q=1, p=8) is far off (error 0.6+): the warm start is what makes
  one power iteration enough.
- DLRT: the step works on the factors only (batch x n x r products, QR of n x 2r, SVD of 2r x 2r),
  the dense step on n x n products; the parameters column is what each stores.
"""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true", help="4096 x 11008 gradient (LLaMA-7B MLP)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.quick:
        (m, n), steps, layer_n, batch = (512, 1376), 6, 512, 64
    elif args.full:
        (m, n), steps, layer_n, batch = (4096, 11008), 6, 2048, 256
    else:
        (m, n), steps, layer_n, batch = (2048, 5504), 6, 2048, 256
    with threadpool_limits(1):
        proj_rows = bench_projector(m, n, steps)
        dlrt_rows = bench_dlrt(layer_n, 64, batch)
    flags = cpu_flags()
    command = (
        "python benches/bench_train.py" + (" --full" if args.full else " --quick" if args.quick else "") + " --write"
    )
    text = "\n".join(
        [
            "## Low-rank training (`benches/bench_train.py`)",
            "",
            f"Machine: {machine()}; CPU flags {', '.join(flags)}; threads pinned to 1 (threadpoolctl, n_threads=1); "
            f"lorainne {lorainne.__version__} at {git_revision()}, numpy {np.__version__}. Command: `{command}`",
            "",
            f"### GaLore projector refresh, float32 gradient {m} x {n}, rank {RANK} (basis on the smaller side)",
            "",
            f"Step {steps - 1} of a sequence of gradients drifting 1% per step; the warm start has refreshed on the "
            f"{steps - 1} earlier ones. Error: sin of the largest principal angle to the exact top-{RANK} subspace.",
            "",
            markdown_table(
                [
                    "spectrum",
                    "method",
                    "time (s)",
                    "speed-up vs full SVD",
                    "subspace error",
                    "projection error / optimal",
                ],
                proj_rows,
            ),
            "",
            f"### DLRT step vs dense step ({layer_n} x {layer_n} layer, batch {batch}, forward + backward + update)",
            "",
            markdown_table(["step", "time (ms)", "speed-up vs dense", "parameters"], dlrt_rows),
            "",
            NOTES,
        ]
    )
    print(text)
    if args.write:
        Path(__file__).with_name("RESULTS_train.md").write_text(text)


if __name__ == "__main__":
    main()
