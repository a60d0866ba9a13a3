"""Hessian spectral density of a small neural network, estimated from Hessian-vector products.

A one-hidden-layer tanh MLP (64 -> 16 -> 10, 1210 parameters) is trained on scikit-learn's
digits with a squared loss. Its Hessian is never formed by the estimators: they see an object
with ``shape`` and ``matvec`` (an exact Hessian-vector product, Pearlmutter's R-operator).
The estimated densities are plotted against the exact one (from the full Hessian, built here
only for the comparison) in ``examples/hessian_density.png``.

Run:  python examples/hessian_density.py
"""

from __future__ import annotations

import os
import time

import numpy as np
from sklearn.datasets import load_digits

from lorainne import spectral_density, trace, trace_function


class MLP:
    def __init__(self, X, Y, hidden=16, seed=0):
        rng = np.random.default_rng(seed)
        self.X, self.Y = X, Y
        d, c = X.shape[1], Y.shape[1]
        self.shapes = [(d, hidden), (hidden,), (hidden, c), (c,)]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.theta = np.concatenate(
            [
                rng.standard_normal(self.sizes[0]) / np.sqrt(d),
                np.zeros(hidden),
                rng.standard_normal(self.sizes[2]) / np.sqrt(hidden),
                np.zeros(c),
            ]
        )

    def unpack(self, v):
        parts, start = [], 0
        for shape, size in zip(self.shapes, self.sizes, strict=False):
            parts.append(v[start : start + size].reshape(shape))
            start += size
        return parts

    def forward(self, theta):
        W1, b1, W2, b2 = self.unpack(theta)
        A1 = np.tanh(self.X @ W1 + b1)
        return A1, A1 @ W2 + b2

    def loss(self, theta):
        return 0.5 * np.sum((self.forward(theta)[1] - self.Y) ** 2) / len(self.X)

    def gradient(self, theta):
        W1, b1, W2, b2 = self.unpack(theta)
        A1, out = self.forward(theta)
        d_out = (out - self.Y) / len(self.X)
        d_h1 = (d_out @ W2.T) * (1 - A1**2)
        return np.concatenate([(self.X.T @ d_h1).ravel(), d_h1.sum(0), (A1.T @ d_out).ravel(), d_out.sum(0)])

    def hvp(self, v):
        """Exact Hessian-vector product (forward-over-reverse, the R-operator)."""
        W1, b1, W2, b2 = self.unpack(self.theta)
        V1, c1, V2, c2 = self.unpack(v)
        A1, out = self.forward(self.theta)
        n = len(self.X)
        d_out = (out - self.Y) / n
        slope = 1 - A1**2
        r_a1 = slope * (self.X @ V1 + c1)
        r_d_out = (r_a1 @ W2 + A1 @ V2 + c2) / n
        d_a1 = d_out @ W2.T
        r_d_h1 = (r_d_out @ W2.T + d_out @ V2.T) * slope + d_a1 * (-2 * A1 * r_a1)
        return np.concatenate(
            [(self.X.T @ r_d_h1).ravel(), r_d_h1.sum(0), (r_a1.T @ d_out + A1.T @ r_d_out).ravel(), r_d_out.sum(0)]
        )


class HessianOperator:
    """What the estimators see: a shape and a Hessian-vector product (counted)."""

    def __init__(self, model):
        self.model, self.count = model, 0
        p = model.theta.size
        self.shape = (p, p)

    def matvec(self, v):
        self.count += 1
        return self.model.hvp(v)


def main():
    digits = load_digits()
    X = digits.data / 16.0
    Y = np.eye(10)[digits.target]
    model = MLP(X, Y)
    for _ in range(2000):  # plain gradient descent to a reasonable point
        model.theta -= 0.1 * model.gradient(model.theta)
    print(f"training loss {model.loss(model.theta):.4f}, {model.theta.size} parameters")

    # Check the Hessian-vector product against finite differences of the gradient.
    rng = np.random.default_rng(1)
    v = rng.standard_normal(model.theta.size)
    h = 1e-5
    fd = (model.gradient(model.theta + h * v) - model.gradient(model.theta - h * v)) / (2 * h)
    assert np.linalg.norm(model.hvp(v) - fd) <= 1e-6 * np.linalg.norm(fd), "Hessian-vector product is wrong"

    op = HessianOperator(model)
    start = time.perf_counter()
    H = np.column_stack([model.hvp(e) for e in np.eye(model.theta.size)])  # exact, for the comparison only
    H = (H + H.T) / 2
    lam = np.linalg.eigvalsh(H)
    print(
        f"exact Hessian: {time.perf_counter() - start:.1f} s; eigenvalues "
        f"in [{lam[0]:.3g}, {lam[-1]:.3g}], trace {lam.sum():.4f}"
    )

    est = trace(op, 100, random_state=0)
    print(
        f"tr(H) by XTrace from {est.n_matvec} products: {est.value:.4f} "
        f"+- {est.error_estimate:.1e} (exact {lam.sum():.4f})"
    )
    fro = trace_function(op, lambda x: x**2, n_vectors=10, degree=10, random_state=0)
    print(f"tr(H^2) by SLQ: {fro.value:.4g} +- {fro.error_estimate:.1e} (exact {np.sum(lam**2):.4g})")

    sigma = 0.01 * (lam[-1] - lam[0])
    t = np.linspace(lam[0] - 4 * sigma, lam[-1] + 4 * sigma, 800)
    exact = np.exp(-((t[:, None] - lam[None, :]) ** 2) / (2 * sigma**2)).mean(axis=1) / (sigma * np.sqrt(2 * np.pi))
    curves = {}
    for method, vectors in (("slq", 20), ("kpm", 40), ("nystrom++", 20)):
        op.count = 0
        start = time.perf_counter()
        phi = spectral_density(
            op, t, sigma=sigma, n_vectors=vectors, method=method, degree=80 if method == "slq" else None, random_state=0
        )
        seconds = time.perf_counter() - start
        l1 = float(np.trapezoid(np.abs(phi - exact), t))
        curves[method] = phi
        print(f"{method:10s}: {op.count:6d} Hessian-vector products, {seconds:.2f} s, L1 error vs exact {l1:.3f}")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.semilogy(t, np.maximum(exact, 1e-8), "k", lw=2.5, label="exact (all eigenvalues)")
    for method, phi in curves.items():
        ax.semilogy(t, np.maximum(phi, 1e-8), lw=1.2, label=method)
    ax.set_ylim(1e-5, None)
    ax.set_xlabel("Hessian eigenvalue")
    ax.set_ylabel("smoothed density")
    ax.set_title(f"Hessian spectral density, MLP 64-16-10 on digits ({model.theta.size} parameters)")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hessian_density.png")
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
