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
        ),
        *_more_structured_rows(rng),
    ]


def _more_structured_rows(rng) -> list[DemoRow]:
    """One planted, noiseless problem per remaining structured model: each row says how exactly it is fitted."""
    from . import block_term, cmtf, decouple, dedicom, factor_match_score, paratuck2

    rows = []
    A, B, C, V = (rng.standard_normal((n, 4)) for n in (30, 25, 20, 40))
    X, Y = np.einsum("ir,jr,kr->ijk", A, B, C), A @ V.T
    (tensor_cp, _, errors), seconds = timed(cmtf, X, Y, 4, random_state=0)
    tensor_factors = tensor_cp[1]
    fms = factor_match_score((None, tensor_factors), (None, [A, B, C]))
    rows.append(
        DemoRow(
            "cmtf", "30x25x20 rank 4 + 30x40 coupled matrix", f"rel. error {errors[-1]:.1e}, FMS {fms:.4f}", seconds
        )
    )

    A, B = rng.standard_normal((6, 2)), rng.standard_normal((7, 3))
    CA, T, CB = rng.standard_normal((20, 2)), rng.standard_normal((2, 3)), rng.standard_normal((20, 3))
    X = np.einsum("ir,kr,rs,ks,js->ijk", A, CA, T, CB, B)
    start, seconds = timed(paratuck2, X, (2, 3), n_iter_max=0)
    error = np.linalg.norm(start.to_tensor() - X) / np.linalg.norm(X)
    rows.append(
        DemoRow("paratuck2", "6x7x20, ranks (2, 3): lifting start alone", f"rel. error {error:.1e}, 0 it.", seconds)
    )

    A, B, C = rng.standard_normal((12, 4)), rng.standard_normal((10, 4)), rng.standard_normal((6, 2))
    X = np.einsum("il,jl,kl->ijk", A, B, C[:, [0, 0, 1, 1]])
    model, seconds = timed(block_term, X, [2, 2], random_state=0)
    rows.append(DemoRow("block_term", "12x10x6, two rank-(2,2,1) terms", f"rel. error {model.errors[-1]:.1e}", seconds))

    fixed = np.random.default_rng(5)  # DEDICOM has local minima: fixed data whose SVD start reaches the global one
    A, R, D = fixed.standard_normal((8, 2)), fixed.standard_normal((2, 2)), fixed.standard_normal((10, 2))
    X = np.einsum("ip,kp,pq,kq,jq->ijk", A, D, R, D, A)
    model, seconds = timed(dedicom, X, 2, init="svd", random_state=0)
    rows.append(DemoRow("dedicom", "8x8x10, rank 2", f"rel. error {model.errors[-1]:.1e}", seconds))

    W, V = rng.standard_normal((2, 2)), rng.standard_normal((3, 2))

    def f(u):
        return W @ np.array([(V[:, 0] @ u) ** 3, (V[:, 1] @ u) ** 2])

    def jacobian(u):
        return W @ np.diag([3 * (V[:, 0] @ u) ** 2, 2 * (V[:, 1] @ u)]) @ V.T

    model, seconds = timed(decouple, f, rng.standard_normal((30, 3)), 2, jacobian=jacobian, random_state=0)
    u = rng.standard_normal(3)
    error = np.linalg.norm(model(u) - f(u)) / np.linalg.norm(f(u))
    rows.append(
        DemoRow("decouple", "f: R^3 -> R^2 = W g(V^T u), 2 branches", f"rel. error at a new u {error:.1e}", seconds)
    )
    return rows


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
