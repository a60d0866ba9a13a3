"""lorainne.compress on a real network (scikit-learn MLP on the bundled digits) and compress_state_dict."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from lorainne.compress import ActivationStats, compress_state_dict


def forward(weights, biases, X):
    """Logits and the input of every layer (scikit-learn layout: h @ W + b, ReLU between)."""
    h, inputs = X, []
    for i, (W, b) in enumerate(zip(weights, biases, strict=True)):
        inputs.append(h)
        h = h @ W + b
        if i < len(weights) - 1:
            h = np.maximum(h, 0.0)
    return h, inputs


@pytest.fixture(scope="module")
def mlp():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    with warnings.catch_warnings():  # a short, deliberate training run: sklearn's iteration-cap warning is expected
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        clf = MLPClassifier((256, 192), max_iter=80, random_state=0).fit(X_train, y_train)
    _, inputs = forward(clf.coefs_, clf.intercepts_, X_train)
    stats = {}
    for i, layer_input in enumerate(inputs):
        stats[f"layer{i}.weight"] = ActivationStats()
        for batch in np.array_split(layer_input, 5):  # streamed, as over a calibration loader
            stats[f"layer{i}.weight"].update(batch)
    state = {f"layer{i}.weight": W for i, W in enumerate(clf.coefs_)}
    state.update({f"layer{i}.bias": b for i, b in enumerate(clf.intercepts_)})
    return clf, state, stats, inputs, X_test, y_test


def rebuilt(tensors, n_layers):
    weights = []
    for i in range(n_layers):
        name = f"layer{i}.weight"
        weights.append(tensors[name] if name in tensors else tensors[name + ".A"] @ tensors[name + ".B"])
    return weights


def test_svd_llm_beats_svd_on_the_digits_mlp_at_half_the_parameters(mlp):
    clf, state, stats, inputs, X_test, y_test = mlp
    n = len(clf.coefs_)
    accuracy = {}
    for method in ("svd", "svd-llm"):
        new, report = compress_state_dict(
            state, 0.5, stats=stats, method=method, transpose=True, skip="*.bias", solver="exact"
        )
        assert report.params_after <= 0.5 * report.params_before
        for i in range(n):  # biases pass through untouched, as the same objects
            assert new[f"layer{i}.bias"] is state[f"layer{i}.bias"]
        logits, _ = forward(rebuilt(new, n), clf.intercepts_, X_test)
        accuracy[method] = float(np.mean(logits.argmax(axis=1) == y_test))
        if method == "svd-llm":
            for row, layer_input, W in zip(report.rows, inputs, clf.coefs_, strict=True):
                if row.rank is None:
                    continue
                W_hat = new[row.name + ".A"] @ new[row.name + ".B"]
                measured = np.linalg.norm(layer_input @ (W - W_hat))  # ||(W - AB) X||_F from the activations
                assert abs(row.data_error - measured) <= 1e-8 * measured
                assert abs(row.predicted_data_error - measured) <= 1e-6 * measured
            assert any(row.rank is not None for row in report.rows)
            assert "layer1.weight" in str(report)
    baseline = clf.score(X_test, y_test)
    assert accuracy["svd-llm"] >= accuracy["svd"]
    assert accuracy["svd-llm"] >= baseline - 0.02


def test_svd_llm_lower_data_loss_than_svd_at_every_budget(mlp):
    clf, state, stats, *_ = mlp
    weights = {k: v for k, v in state.items() if k.endswith("weight")}
    for budget in (0.2, 0.35):
        losses = {}
        for method in ("svd", "svd-llm"):
            _, report = compress_state_dict(weights, budget, stats=stats, method=method, transpose=True, solver="exact")
            losses[method] = sum(row.data_error**2 for row in report.rows)
        assert losses["svd-llm"] < losses["svd"]


def test_state_dict_pass_through_skip_and_errors(rng):
    W = rng.standard_normal((40, 6)) @ rng.standard_normal((6, 30))
    state = {
        "a.weight": W,
        "emb.weight": rng.standard_normal((50, 8)),
        "ints": np.arange(6).reshape(2, 3),
        "vec": np.ones(5),
    }
    new, report = compress_state_dict(state, 0.5, method="svd", skip=["emb.*"])
    assert new["emb.weight"] is state["emb.weight"] and new["ints"] is state["ints"] and new["vec"] is state["vec"]
    np.testing.assert_allclose(new["a.weight.A"] @ new["a.weight.B"], W, atol=1e-9)
    assert [row.name for row in report.rows] == ["a.weight"] and report.rows[0].rank == 6
    new, report = compress_state_dict(state, 0.5, method="svd", skip=lambda name: name != "emb.weight")
    assert "a.weight" in new
    with pytest.raises(ValueError, match="no 2-D floating weight"):
        compress_state_dict({"vec": np.ones(4)}, 0.5)
    with pytest.raises(ValueError, match="needs stats for every layer"):
        compress_state_dict(state, 0.5)
    with pytest.raises(ValueError, match="budget must be a nonnegative"):
        compress_state_dict(state, -1.0, method="svd")
    with pytest.raises(ValueError, match="fwsvd"):
        compress_state_dict(state, 0.5, method="fwsvd")
    with pytest.raises(ValueError, match="W contains NaN|contains NaN"):
        compress_state_dict({"w": np.full((4, 4), np.nan)}, 0.5, method="svd")
    new, report = compress_state_dict({"w": W}, 0, method="svd")  # nothing allowed: zero-width factors
    assert new["w.A"].shape == (40, 0) and report.params_after == 0
