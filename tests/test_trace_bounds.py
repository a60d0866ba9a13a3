"""spectrum_bounds (the public interval estimate) and the CLI's use of the public trace API only."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import lorainne
from lorainne import spectrum_bounds


def goe(seed, n=200):
    G = np.random.default_rng(seed).standard_normal((n, n))
    return (G + G.T) / 2


@pytest.mark.parametrize("seed", range(4))
def test_bounds_enclose_the_extreme_eigenvalues_within_one_percent(seed):
    A = goe(seed)
    ev = np.linalg.eigvalsh(A)
    lower, upper = spectrum_bounds(A, n_steps=60, margin=0.0, random_state=seed)
    assert lower <= ev[0] and upper >= ev[-1]
    assert ev[0] - lower <= 0.01 * abs(ev[0])
    assert upper - ev[-1] <= 0.01 * abs(ev[-1])


@pytest.mark.parametrize("seed", range(4))
def test_default_margin_widens_by_one_percent_of_the_scale(seed):
    A = goe(seed)
    ev = np.linalg.eigvalsh(A)
    lo0, hi0 = spectrum_bounds(A, margin=0.0, random_state=seed)
    lower, upper = spectrum_bounds(A, random_state=seed)
    pad = 0.01 * max(hi0 - lo0, abs(lo0), abs(hi0))
    assert lower == pytest.approx(lo0 - pad, rel=1e-12)
    assert upper == pytest.approx(hi0 + pad, rel=1e-12)
    assert lower <= ev[0] and upper >= ev[-1]  # 30 steps and the margin: the default encloses
    assert max(ev[0] - lower, upper - ev[-1]) <= 0.06 * np.max(np.abs(ev))


def test_exhausted_krylov_space_gives_the_exact_extremes():
    rng = np.random.default_rng(3)
    lam = np.array([-3.0, -1.0, 0.5, 2.0, 7.0, 7.5, 8.0, 9.0])
    U, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    lower, upper = spectrum_bounds((U * lam) @ U.T, n_steps=30, margin=0.0, random_state=0)
    assert lower == pytest.approx(-3.0, abs=1e-10) and upper == pytest.approx(9.0, abs=1e-10)


def test_dense_sparse_operator_and_backends_agree():
    A = goe(7, n=120)
    ref = spectrum_bounds(A, random_state=5, backend="xp")
    for other in (
        spectrum_bounds(A, random_state=5),
        spectrum_bounds(sp.csr_matrix(A), random_state=5, n_threads=1),
        spectrum_bounds(spla.aslinearoperator(A), random_state=5),
    ):
        np.testing.assert_allclose(other, ref, rtol=1e-8)
    assert all(isinstance(b, float) for b in ref)


def test_bounds_are_ordered_for_a_multiple_of_the_identity():
    lower, upper = spectrum_bounds(2.0 * np.eye(6), random_state=0)
    assert lower < 2.0 < upper


@pytest.mark.parametrize(
    "A, kwargs, error, match",
    [
        (np.ones((3, 4)), {}, ValueError, "A must be square"),
        (np.triu(np.ones((5, 5))), {}, ValueError, "A must be symmetric"),
        (np.eye(4), {"n_steps": 0}, ValueError, "n_steps"),
        (np.eye(4), {"n_steps": 2.5}, TypeError, "n_steps"),
        (np.eye(4), {"margin": -0.1}, ValueError, "margin"),
        (np.eye(4), {"margin": float("nan")}, ValueError, "margin"),
        (np.eye(4), {"margin": "wide"}, TypeError, "margin"),
        (np.eye(4), {"margin": True}, TypeError, "margin"),
        (np.eye(4), {"n_threads": 0}, ValueError, "n_threads"),
        (np.eye(4), {"random_state": -1}, ValueError, "random_state"),
        (np.eye(4), {"backend": "fortran"}, ValueError, "backend"),
        ("not a matrix", {}, TypeError, "A"),
    ],
)
def test_bad_input_names_the_argument(A, kwargs, error, match):
    with pytest.raises(error, match=match):
        spectrum_bounds(A, **kwargs)


def test_spectrum_bounds_is_public():
    assert "spectrum_bounds" in lorainne.__all__
    from lorainne.trace import __all__ as trace_all

    assert "spectrum_bounds" in trace_all


# --------------------------------------------------------------------------- the CLI on the public API


def test_cli_choices_come_from_the_modules():
    from lorainne.cli import build_parser
    from lorainne.ot import METHODS as OT_METHODS
    from lorainne.trace import DENSITY_METHODS, FUNCTION_METHODS, NAMED_FUNCTIONS, TRACE_METHODS

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices

    def choices(command, dest):
        return next(a for a in sub[command]._actions if a.dest == dest).choices

    assert choices("trace", "method") is TRACE_METHODS
    assert choices("trace", "function") is NAMED_FUNCTIONS
    assert choices("trace", "function_method") is FUNCTION_METHODS
    assert choices("density", "method") is DENSITY_METHODS
    assert choices("ot", "method") is OT_METHODS


def test_cli_loader_refuses_a_sparse_tensor_and_a_missing_file(tmp_path):
    from lorainne.cli import load_array, main

    sp.save_npz(tmp_path / "S.npz", sp.eye(4, format="csr"))
    assert sp.issparse(load_array(str(tmp_path / "S.npz"), "matrix"))
    with pytest.raises(SystemExit, match="sparse"):
        main(["cp", str(tmp_path / "S.npz"), "--rank", "2", "-q"])
    np.savez(tmp_path / "X.npz", X=np.ones((2, 3, 4)))
    assert load_array(str(tmp_path / "X.npz"), "dense").shape == (2, 3, 4)
    with pytest.raises(SystemExit, match="no such file"):
        load_array(str(tmp_path / "missing.npy"), "dense")
    with pytest.raises(ValueError, match="kind"):
        load_array(str(tmp_path / "X.npz"), "tensor")
