"""LoRA and NOLA adapters: bit-identical Philox bases across Rust, NumPy and array_api_strict,
known answers, merge equals the unmerged forward, output unchanged at init, validation."""

import array_api_strict as xps
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lorainne._backend import to_host
from lorainne.train import lora_init, lora_merge, nola_basis, nola_delta
from lorainne.train._philox import philox4x32


def test_philox_known_answers():
    """Random123's known-answer vectors for Philox4x32-10, on the xp path (int64 arithmetic)."""
    cases = [
        ([0, 0, 0, 0], (0, 0), [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
        ([0xFFFFFFFF] * 4, (0xFFFFFFFF, 0xFFFFFFFF), [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
        (
            [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
            (0xA4093822, 0x299F31D0),
            [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
        ),
    ]
    for counter, key, expected in cases:
        for xp in (xps,):
            words = philox4x32(xp, [xp.asarray([c], dtype=xp.int64) for c in counter], key)
            assert [int(w[0]) for w in words] == expected


@given(
    seed=st.integers(0, 2**64 - 1),
    stream=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    k=st.integers(1, 5),
    double=st.booleans(),
)
def test_nola_basis_is_bit_identical_across_backends(seed, stream, shape, k, double):
    dtype = np.float64 if double else np.float32
    rust = nola_basis(seed, shape, k, dtype, stream=stream, backend="rust", n_threads=1)
    numpy = nola_basis(seed, shape, k, dtype, stream=stream, backend="numpy")
    strict = nola_basis(seed, shape, k, xps.float64 if double else xps.float32, stream=stream, xp=xps)
    assert rust.shape == (k, *shape) and rust.dtype == dtype
    bits = np.uint64 if double else np.uint32
    assert np.array_equal(rust.view(bits), numpy.view(bits))
    assert np.array_equal(rust.view(bits), to_host(strict).view(bits))
    bound = np.sqrt(3.0)
    assert np.all(rust >= -bound) and np.all(rust < bound)


def test_nola_basis_streams_threads_and_statistics():
    a = nola_basis(5, (300, 200), 4)  # all threads
    b = nola_basis(5, (300, 200), 4, n_threads=1)
    assert np.array_equal(a, b)
    assert np.array_equal(nola_basis(5, (300, 200), 2), a[:2])  # a prefix of the same stream
    assert not np.array_equal(nola_basis(5, (300, 200), 1, stream=1)[0], a[0])
    assert not np.array_equal(nola_basis(6, (300, 200), 1)[0], a[0])
    x = nola_basis(5, (1000, 1000), 1, np.float64)
    assert abs(x.mean()) < 5e-3 and abs(x.var() - 1.0) < 5e-3
    # distinct seeds give uncorrelated bases
    y = nola_basis(7, (1000, 1000), 1, np.float64)
    assert abs(float(np.mean(x * y))) < 5e-3


def test_lora_zero_init_leaves_output_unchanged_and_merge_matches(rng):
    W = rng.standard_normal((20, 30))
    W_copy = W.copy()
    base, A, B, scale = lora_init(W, 4, scale=2.0, random_state=0)
    assert base is W and A.shape == (4, 30) and B.shape == (20, 4) and np.all(B == 0)
    x = rng.standard_normal((7, 30))
    assert np.array_equal(x @ lora_merge(base, A, B, scale).T, x @ W.T)
    # after training the adapter, merged forward == unmerged forward
    B = rng.standard_normal((20, 4))
    unmerged = x @ base.T + scale * (x @ A.T) @ B.T
    merged = x @ lora_merge(base, A, B, scale).T
    assert np.max(np.abs(merged - unmerged)) <= 1e-12 * np.max(np.abs(unmerged))
    assert np.array_equal(W, W_copy)


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_pissa_init_takes_the_principal_triplets(rng, scale):
    U, _ = np.linalg.qr(rng.standard_normal((40, 25)))
    V, _ = np.linalg.qr(rng.standard_normal((25, 25)))
    s = 0.6 ** np.arange(25)
    W = (U * s) @ V.T
    base, A, B, sc = lora_init(W, 5, scale=scale, init="svd", random_state=0)
    assert np.linalg.norm(base + sc * B @ A - W) < 1e-12  # output unchanged at init
    assert np.allclose(np.linalg.svd(sc * B @ A, compute_uv=False)[:5], s[:5], rtol=1e-8)
    assert np.isclose(np.linalg.norm(base, 2), s[5], rtol=1e-8)  # the residual holds the tail
    x = rng.standard_normal((3, 25))
    assert np.max(np.abs(x @ lora_merge(base, A, B, sc).T - x @ W.T)) < 1e-12


def test_lora_on_array_api_strict(rng):
    W = rng.standard_normal((12, 9))
    base, A, B, scale = lora_init(xps.asarray(W), 3, init="svd", random_state=0)
    assert np.allclose(to_host(lora_merge(base, A, B, scale)), W, atol=1e-12)
    base, A, B, scale = lora_init(xps.asarray(W), 3, random_state=0)
    ref = lora_init(W, 3, random_state=0)
    assert np.array_equal(to_host(A), ref.A)


def test_nola_delta_is_the_product_of_the_combined_bases():
    alpha, beta = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.25])
    delta = nola_delta(alpha, beta, seed=11, shape=(6, 5), rank=2, scale=0.5)
    bases_A = nola_basis(11, (2, 5), 3, np.float64, stream=0)
    bases_B = nola_basis(11, (6, 2), 2, np.float64, stream=1)
    A = sum(a * M for a, M in zip(alpha, bases_A, strict=True))
    B = sum(b * M for b, M in zip(beta, bases_B, strict=True))
    assert np.allclose(delta, 0.5 * B @ A, atol=1e-14)
    strict = nola_delta(xps.asarray(alpha), xps.asarray(beta), seed=11, shape=(6, 5), rank=2, scale=0.5)
    assert np.allclose(to_host(strict), delta, atol=1e-14)
    assert nola_delta(alpha.astype(np.float32), beta.astype(np.float32), 11, (6, 5), 2).dtype == np.float32


def test_bad_arguments(rng):
    W = rng.standard_normal((6, 4))
    with pytest.raises(ValueError, match="rank must be"):
        lora_init(W, 0)
    with pytest.raises(ValueError, match="rank must be"):
        lora_init(W, 5)
    with pytest.raises(ValueError, match="init must be"):
        lora_init(W, 2, init="gaussian")
    with pytest.raises(ValueError, match="scale must be"):
        lora_init(W, 2, scale=np.nan)
    with pytest.raises(ValueError, match="W contains NaN"):
        lora_init(np.full((3, 3), np.nan), 1)
    with pytest.raises(ValueError, match="A must have 4 columns"):
        lora_merge(W, np.ones((2, 3)), np.ones((6, 2)))
    with pytest.raises(ValueError, match="B must have shape"):
        lora_merge(W, np.ones((2, 4)), np.ones((6, 3)))
    with pytest.raises(ValueError, match="seed must be"):
        nola_basis(-1, (2, 2), 1)
    with pytest.raises(ValueError, match="seed must be"):
        nola_basis(2**64, (2, 2), 1)
    with pytest.raises(ValueError, match="k must be"):
        nola_basis(0, (2, 2), 0)
    with pytest.raises(ValueError, match="shape must be"):
        nola_basis(0, (2, 0), 1)
    with pytest.raises(ValueError, match="stream must be"):
        nola_basis(0, (2, 2), 1, stream=2**32)
    with pytest.raises(TypeError, match="dtype must be"):
        nola_basis(0, (2, 2), 1, np.int32)
    with pytest.raises(ValueError, match="alpha must be 1-D"):
        nola_delta(np.ones((2, 2)), np.ones(2), 0, (3, 3), 1)
    with pytest.raises(ValueError, match="shape must be"):
        nola_delta(np.ones(2), np.ones(2), 0, (3, 3, 3), 1)
