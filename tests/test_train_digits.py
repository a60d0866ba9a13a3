"""A real training run: a two-hidden-layer network on scikit-learn's bundled digits, with the
forward and backward passes written here in NumPy, trained by (a) full Adam, (b) GaLore rank 16,
(c) DLRT with theta = 0.1. (b) and (c) must reach (a)'s test accuracy within 2 points."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from lorainne.train import (
    LowRankLayer,
    dlrt_kl_step,
    dlrt_s_step,
    dlrt_truncate,
    galore_adam_state,
    galore_adam_step,
)

HIDDEN = 128
EPOCHS = 20
BATCH = 64


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    return X_train, X_test, y_train, y_test


def init_weights(seed):
    rng = np.random.default_rng(seed)
    sizes = [(HIDDEN, 64), (HIDDEN, HIDDEN), (10, HIDDEN)]
    weights = [rng.standard_normal(s) * np.sqrt(2.0 / s[1]) for s in sizes]
    biases = [np.zeros((1, s[0])) for s in sizes]
    return weights, biases


def forward_backward(weights, biases, X, y):
    """Cross-entropy loss and its gradients for the ReLU network x -> W3 relu(W2 relu(W1 x))."""
    activations = [X]
    h = X
    for W, b in zip(weights[:-1], biases[:-1], strict=True):
        h = np.maximum(h @ W.T + b, 0.0)
        activations.append(h)
    logits = h @ weights[-1].T + biases[-1]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    n = X.shape[0]
    loss = -np.mean(np.log(p[np.arange(n), y] + 1e-300))
    delta = p
    delta[np.arange(n), y] -= 1.0
    delta /= n
    grads_W, grads_b = [None] * 3, [None] * 3
    for layer in (2, 1, 0):
        grads_W[layer] = delta.T @ activations[layer]
        grads_b[layer] = delta.sum(axis=0, keepdims=True)
        if layer:
            delta = (delta @ weights[layer]) * (activations[layer] > 0)
    return loss, grads_W, grads_b


def accuracy(weights, biases, X, y):
    h = X
    for W, b in zip(weights[:-1], biases[:-1], strict=True):
        h = np.maximum(h @ W.T + b, 0.0)
    return float(np.mean(np.argmax(h @ weights[-1].T + biases[-1], axis=1) == y))


def batches(n, epoch):
    order = np.random.default_rng(epoch).permutation(n)
    return [order[i : i + BATCH] for i in range(0, n, BATCH)]


def train_adam(data, rank):
    """Adam on every parameter; with ``rank`` the hidden weights use GaLore projections."""
    X_train, X_test, y_train, y_test = data
    weights, biases = init_weights(0)
    full = 10**6  # rank >= min(m, n): the identity projector, i.e. plain Adam
    states_W = [
        galore_adam_state(rank if (rank and i < 2) else full, update_every=50, random_state=i) for i in range(3)
    ]
    states_b = [galore_adam_state(full) for _ in range(3)]
    for epoch in range(EPOCHS):
        for idx in batches(len(y_train), epoch):
            _, gW, gb = forward_backward(weights, biases, X_train[idx], y_train[idx])
            weights = [galore_adam_step(W, G, s, lr=2e-3) for W, G, s in zip(weights, gW, states_W, strict=True)]
            biases = [galore_adam_step(b, G, s, lr=2e-3) for b, G, s in zip(biases, gb, states_b, strict=True)]
    return accuracy(weights, biases, X_test, y_test), states_W


def train_dlrt(data, theta, start_rank=64, lr=0.3):
    """DLRT (augmented BUG, SGD steps) on the hidden weights; Adam on the output layer and biases."""
    X_train, X_test, y_train, y_test = data
    weights, biases = init_weights(0)
    layers = [LowRankLayer.from_dense(weights[i], start_rank) for i in range(2)]
    full = 10**6
    state_out = galore_adam_state(full)
    states_b = [galore_adam_state(full) for _ in range(3)]
    rank_history = []
    for epoch in range(EPOCHS):
        for idx in batches(len(y_train), epoch):
            weights[0], weights[1] = layers[0].to_dense(), layers[1].to_dense()
            _, gW, gb = forward_backward(weights, biases, X_train[idx], y_train[idx])
            for i in range(2):
                layer, G = layers[i], gW[i]
                # K/L-step from the gradient of the factored layer: dL/dK = G V, dL/dL = G^T U
                aug = dlrt_kl_step(layer, G @ layer.V, G.T @ layer.U, lr)
                # S-step: the augmented point is the same W, so G is the gradient there too
                aug = dlrt_s_step(aug, aug.U.T @ G @ aug.V, lr)
                layers[i] = dlrt_truncate(aug, theta)
            weights[2] = galore_adam_step(weights[2], gW[2], state_out, lr=2e-3)
            biases = [galore_adam_step(b, G, s, lr=2e-3) for b, G, s in zip(biases, gb, states_b, strict=True)]
        rank_history.append(tuple(layer.rank for layer in layers))
    weights[0], weights[1] = layers[0].to_dense(), layers[1].to_dense()
    return accuracy(weights, biases, X_test, y_test), layers, rank_history


def test_galore_and_dlrt_match_full_adam_on_digits(data):
    with threadpool_limits(1):
        acc_adam, _ = train_adam(data, rank=None)
        acc_galore, states = train_adam(data, rank=16)
        acc_dlrt, layers, history = train_dlrt(data, theta=0.1)
    dense_params = 64 * HIDDEN + HIDDEN * HIDDEN
    lowrank_params = sum(layer.n_params for layer in layers)
    print(
        f"\ndigits test accuracy: Adam {acc_adam:.4f}, GaLore r=16 {acc_galore:.4f}, DLRT theta=0.1 {acc_dlrt:.4f}; "
        f"DLRT ranks {[layer.rank for layer in layers]} (per epoch {history}), "
        f"hidden-layer parameters {lowrank_params} vs {dense_params} dense"
    )
    assert acc_adam >= 0.95
    assert acc_galore >= acc_adam - 0.02
    assert acc_dlrt >= acc_adam - 0.02
    assert all(s.projector.side in ("left", "right") for s in states[:2]) and states[2].projector.side == "identity"
    assert all(layer.rank < 64 for layer in layers)  # theta = 0.1 pruned the starting rank
    assert lowrank_params < dense_params
