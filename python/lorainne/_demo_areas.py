"""``lorainne demo`` rows of the areas added after the first four: certified SVD, structured tensor
models, matrix completion, weight compression and low-rank training, one row each on synthetic data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._demo import DemoRow, decaying_matrix, timed


def certified_rows(rng) -> list[DemoRow]:
    from . import svd_certified

    A, s = decaying_matrix(rng, 2000, 1000, decay=0.97)
    result, seconds = timed(svd_certified, A, tol=1e-2, random_state=0)
    k = len(result.S)
    true = float(np.sqrt(np.sum(s[k:] ** 2)))
    return [
        DemoRow(
            "svd_certified",
            "2000x1000, tol 1e-2 of ||A||_F^2 (rank chosen)",
            f"rank {k}, error {true:.2e} <= bound {result.error_bound:.2e}",
            seconds,
        )
    ]


def structured_rows(rng) -> list[DemoRow]:
    from . import factor_match_score, parafac2

    rank, n_slices = 3, 30
    A, B, C = rng.uniform(0.5, 1.5, (n_slices, rank)), rng.standard_normal((8, rank)), rng.standard_normal((20, rank))
    slices, noise = [], []
    for k in range(n_slices):
        P, _ = np.linalg.qr(rng.standard_normal((40 + k, 8)))
        clean = P @ B @ np.diag(A[k]) @ C.T
        noise.append(0.01 * np.linalg.norm(clean) / np.sqrt(clean.size) * rng.standard_normal(clean.shape))
        slices.append(clean + noise[-1])
    model, seconds = timed(parafac2, slices, rank, random_state=0, tol=1e-6, n_iter_max=2000)
    fms = factor_match_score((None, [model.factors[0], model.factors[2]]), (None, [A, C]))
    level = np.sqrt(sum(np.sum(e**2) for e in noise) / sum(np.sum(x**2) for x in slices))
    return [
        DemoRow(
            "parafac2",
            f"{n_slices} slices of 40-69 x 20, rank {rank}, 1% noise",
            f"err/noise {model.errors[-1] / level:.3f}, FMS(A, C) {fms:.4f}",
            seconds,
        )
    ]


def completion_rows(rng) -> list[DemoRow]:
    from . import complete

    m, n, rank = 2000, 1000, 10
    M = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))
    mask = rng.random((m, n)) < 0.1
    result, seconds = timed(complete, np.where(mask, M, 0.0), rank, mask=mask, random_state=0)
    missing = np.linalg.norm((result.U @ result.V.T - M)[~mask]) / np.linalg.norm(M[~mask])
    return [
        DemoRow(
            "complete",
            f"{m}x{n} rank {rank}, 10% observed (CG solves)",
            f"missing-entry error {missing:.1e}, {result.n_iter} it.",
            seconds,
        )
    ]


def compress_rows(rng) -> list[DemoRow]:
    from .compress import ActivationStats, low_rank

    W = rng.standard_normal((512, 512)) / np.sqrt(512)
    X = rng.standard_normal((4000, 512)) * np.geomspace(0.01, 3.0, 512)  # anisotropic activations
    stats = ActivationStats().update(X)
    plain = low_rank(W, 64, covariance=stats)
    whitened, seconds = timed(low_rank, W, 64, method="svd-llm", covariance=stats)
    return [
        DemoRow(
            "compress svd-llm",
            "512x512 layer, rank 64, 4000 activations",
            f"data error {whitened.data_error / plain.data_error:.2f}x plain SVD's",
            seconds,
        )
    ]


def train_rows(rng) -> list[DemoRow]:
    from .train import GaLoreProjector

    U, _ = np.linalg.qr(rng.standard_normal((1024, 64)))
    V, _ = np.linalg.qr(rng.standard_normal((512, 64)))
    G = (U * np.exp(-np.arange(64) / 8.0)) @ V.T
    projector = GaLoreProjector(16, update_every=1, random_state=0)
    projector.project(G, step=0)
    drifted = G + 1e-3 * rng.standard_normal(G.shape)
    _, seconds = timed(projector.project, drifted, step=1)
    top = np.linalg.svd(drifted, full_matrices=False)[2][:16].T
    basis = np.asarray(projector.basis)
    sine = float(np.linalg.norm(top - basis @ (basis.T @ top), 2))
    return [
        DemoRow(
            "GaLore refresh",
            "1024x512 gradient, rank 16, warm start",
            f"subspace error (sin angle) {sine:.1e}",
            seconds,
        )
    ]


SECTIONS: list[Callable] = [certified_rows, structured_rows, completion_rows, compress_rows, train_rows]
