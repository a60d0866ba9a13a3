"""The shared argument checks: one rule everywhere (TypeError for a wrong type, ValueError for a
wrong value), ``verbose`` as a bool or an int, ``n_threads`` capped at the CPUs available.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

import lorainne
from lorainne._validation import available_cpus, check_n_threads, check_real, check_tol, check_verbose

RNG = np.random.default_rng(0)
X3 = RNG.random((5, 4, 3))
A = RNG.random((12, 9))
B = RNG.random((60, 40))
PTS_X, PTS_Y = RNG.random((8, 2)), RNG.random((9, 2))

# Each public function with `verbose`, called on a small problem with extra keywords.
VERBOSE_CALLS = {
    "cp": lambda **kw: lorainne.cp(X3, 2, n_iter_max=3, tol=0, **kw),
    "tucker": lambda **kw: lorainne.tucker(X3, 2, n_iter_max=3, tol=0, **kw),
    "nmf": lambda **kw: lorainne.nmf(A, 2, n_iter_max=3, tol=0, **kw),
    "sinkhorn": lambda **kw: lorainne.sinkhorn(PTS_X, PTS_Y, eps=0.5, **kw),
}


@pytest.mark.parametrize("name", sorted(VERBOSE_CALLS))
@pytest.mark.parametrize("verbose", [True, False, np.True_, 0, 1, 2])
def test_verbose_accepts_bools_and_ints(name, verbose, caplog):
    with caplog.at_level(logging.INFO, logger="lorainne"):
        VERBOSE_CALLS[name](verbose=verbose)
    assert bool(caplog.records) == bool(verbose)


@pytest.mark.parametrize("name", sorted(VERBOSE_CALLS))
@pytest.mark.parametrize(
    ("verbose", "error"), [("yes", TypeError), (1.0, TypeError), (None, TypeError), (-1, ValueError)]
)
def test_verbose_rejects_other_values(name, verbose, error):
    with pytest.raises(error, match="verbose"):
        VERBOSE_CALLS[name](verbose=verbose)


# (call, keyword, wrong-type value, wrong-value value)
RULE_CASES = [
    (lambda **kw: lorainne.cp(X3, 2, **kw), "tol", "1e-3", 2.0),
    (lambda **kw: lorainne.cp(X3, 2, **kw), "n_iter_max", 2.5, -1),
    (lambda **kw: lorainne.cp(X3, 2, **kw), "l2_reg", "0.1", -1.0),
    (lambda **kw: lorainne.tucker(X3, 2, **kw), "tol", "x", 1.0),
    (lambda **kw: lorainne.nmf(A, 2, **kw), "tol", [1e-3], -0.5),
    (lambda **kw: lorainne.randomized_svd(A, 2, **kw), "tol", "0.1", 0.0),
    (lambda **kw: lorainne.randomized_svd(A, 2, **kw), "n_power_iter", 1.0, -1),
    (lambda **kw: lorainne.sinkhorn(PTS_X, PTS_Y, **kw), "eps", "0.1", 0.0),
    (lambda **kw: lorainne.sinkhorn(PTS_X, PTS_Y, eps=0.5, **kw), "tol", 1j, 1.5),
    (lambda **kw: lorainne.sinkhorn(PTS_X, PTS_Y, eps=0.5, **kw), "eps_scaling", "half", 1.5),
    (lambda **kw: lorainne.sinkhorn(PTS_X, PTS_Y, eps=0.5, **kw), "method", 3, "fast"),
    (lambda **kw: lorainne.sinkhorn(PTS_X, PTS_Y, eps=0.5, **kw), "random_state", True, -1),
    (lambda **kw: lorainne.trace(A.T @ A, 6, **kw), "method", None, "magic"),
    (lambda **kw: lorainne.trace_function(A.T @ A + np.eye(9), n_vectors=2, degree=4, **kw), "f", 3, "cube"),
    (
        lambda **kw: lorainne.trace_function(A.T @ A + np.eye(9), "log", n_vectors=2, degree=4, **kw),
        "spectrum_bounds",
        ("a", "b"),
        (2.0, 1.0),
    ),
    (lambda **kw: lorainne.spectral_density(A.T @ A, t=[0.0, 1.0], n_vectors=2, **kw), "sigma", "0.1", 0.0),
    (lambda **kw: lorainne.spectrum_bounds(A.T @ A, **kw), "margin", "0.1", -1.0),
]


@pytest.mark.parametrize(("call", "keyword", "wrong_type", "wrong_value"), RULE_CASES)
def test_wrong_type_is_type_error_and_wrong_value_is_value_error(call, keyword, wrong_type, wrong_value):
    with pytest.raises(TypeError, match=keyword):
        call(**{keyword: wrong_type})
    with pytest.raises(ValueError, match=keyword):
        call(**{keyword: wrong_value})


def test_shared_checkers():
    assert check_verbose(True) == 1 and check_verbose(False) == 0 and check_verbose(np.int64(2)) == 2
    assert check_real(np.float32(0.5), "x", low=0.0) == 0.5
    assert check_tol(0, allow_zero=True) == 0.0
    for bad in (True, "1", None, 1j, np.ones(1)):
        with pytest.raises(TypeError, match="x must be a real number"):
            check_real(bad, "x")
    for bad in (np.nan, np.inf, -1.0):
        with pytest.raises(ValueError, match="x must be"):
            check_real(bad, "x", low=0.0)
    with pytest.raises(ValueError, match=r"tol must be a number in \(0, 1\), got 0"):
        check_tol(0)


def test_n_threads_above_the_cpus_is_capped_with_a_warning():
    limit = available_cpus()
    assert check_n_threads(limit) == limit
    with pytest.warns(UserWarning, match=f"n_threads={limit + 1} is more than the {limit} CPUs") as record:
        assert check_n_threads(limit + 1) == limit
    assert record[0].filename == __file__  # the warning points at the caller, not at lorainne


@pytest.mark.parametrize(
    "call",
    [
        lambda n: lorainne.randomized_svd(B, 5, random_state=0, n_threads=n).S,
        lambda n: lorainne.cp(X3, 2, random_state=0, n_iter_max=5, tol=0, n_threads=n).factors[0],
        lambda n: lorainne.sinkhorn(PTS_X, PTS_Y, eps=0.5, n_threads=n).cost,
    ],
)
def test_huge_n_threads_is_capped_not_spawned(call):
    # 10**6 threads used to be requested from the OS (and 1000 took seconds on a 60 x 40 problem).
    with pytest.warns(UserWarning, match="n_threads=1000000"):
        capped = call(10**6)
    np.testing.assert_allclose(capped, call(available_cpus()), rtol=1e-10)


# The structured tensor models take `verbose` through one shared check as well.
SQUARE = RNG.random((4, 4, 6))
STRUCTURED_CALLS = {
    "parafac2": lambda **kw: lorainne.parafac2([RNG.random((5, 4)) for _ in range(3)], 2, n_iter_max=3, **kw),
    "cmtf": lambda **kw: lorainne.cmtf(X3, RNG.random((5, 6)), 2, n_iter_max=3, **kw),
    "block_term": lambda **kw: lorainne.block_term(RNG.random((6, 6, 4)), (2, 2), n_iter_max=3, **kw),
    "confac": lambda **kw: lorainne.confac(X3, 2, n_iter_max=3, **kw),
    "paratuck2": lambda **kw: lorainne.paratuck2(SQUARE, (2, 2), init="random", n_iter_max=3, **kw),
    "dedicom": lambda **kw: lorainne.dedicom(SQUARE, 2, n_iter_max=3, **kw),
}


@pytest.mark.filterwarnings("ignore::lorainne.ConvergenceWarning")
@pytest.mark.parametrize("name", sorted(STRUCTURED_CALLS))
def test_structured_models_take_verbose_as_bool_or_int(name):
    for verbose in (True, 1, False):
        STRUCTURED_CALLS[name](verbose=verbose)
    with pytest.raises(TypeError, match="verbose"):
        STRUCTURED_CALLS[name](verbose="yes")
