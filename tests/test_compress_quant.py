"""lorainne.compress: NF4 quantization (bit-exact to bitsandbytes), lq_lora, lq_lora_budget."""

import itertools

import array_api_strict as xps
import numpy as np
import pytest

from lorainne.compress import lq_lora, lq_lora_budget, nf4_dequantize, nf4_quantize
from lorainne.compress._quant import _thresholds, normal_float_code

# bitsandbytes functional.get_4bit_type("nf4"), as published.
PUBLISHED_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0,
]  # fmt: skip
# The decision thresholds of bitsandbytes' dQuantizeNF4 (csrc kernels), as float literals.
PUBLISHED_THRESHOLDS = [
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
]  # fmt: skip


def bnb_tree(x):
    """bitsandbytes' dQuantizeNF4 decision tree, written out: x > t moves up."""
    t = np.float32(PUBLISHED_THRESHOLDS)
    lo, hi = 0, 15  # binary search over the sorted thresholds, same comparisons as the tree
    while lo < hi:
        mid = (lo + hi) // 2
        if x > t[mid]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def test_code_book_and_thresholds_match_the_published_tables():
    np.testing.assert_array_equal(normal_float_code(4), np.float32(PUBLISHED_NF4))
    np.testing.assert_array_equal(_thresholds(normal_float_code(4)), np.float32(PUBLISHED_THRESHOLDS))
    for bits in (2, 3, 8):
        code = normal_float_code(bits)
        assert code.size == 2**bits and code[0] == -1 and code[-1] == 1 and 0.0 in code and np.all(np.diff(code) > 0)


def test_round_trip_of_code_values_is_exact_and_indices_match_the_tree(rng):
    block = 16
    absmax = np.float32(rng.uniform(0.5, 3.0, size=8))
    idx = rng.integers(0, 16, size=(8, block))
    idx[:, 0] = 15  # +absmax in every block, so the scale is exactly absmax
    values = (np.float32(PUBLISHED_NF4)[idx] * absmax[:, None]).astype(np.float32)
    q = nf4_quantize(values, block)
    np.testing.assert_array_equal(q.absmax, absmax)
    np.testing.assert_array_equal(nf4_dequantize(q), values)
    x = rng.standard_normal(4096).astype(np.float32)
    q = nf4_quantize(x, 64)
    unpacked = np.stack([q.codes >> 4, q.codes & 15], axis=1).reshape(-1)
    scales = np.repeat(q.absmax, 64)
    normalized = x * (np.float32(1) / scales)
    expected = np.array([bnb_tree(v) for v in normalized[:512]])
    np.testing.assert_array_equal(unpacked[:512], expected)
    ties = np.float32(PUBLISHED_THRESHOLDS + [1.0])  # exactly on a threshold: the lower index (x > t is false)
    tq = nf4_quantize(ties, 16)
    np.testing.assert_array_equal(np.stack([tq.codes >> 4, tq.codes & 15], 1).reshape(-1)[:15], np.arange(15))


def test_dequantize_error_bound_shapes_and_zero_blocks(rng):
    W = rng.standard_normal((7, 33))  # 231 entries: odd count, last block short
    q = nf4_quantize(W, 64)
    D = nf4_dequantize(q)
    assert D.shape == W.shape and D.dtype == np.float64 and q.absmax.size == 4
    gaps = np.diff(np.float32(PUBLISHED_NF4)).max() / 2
    scales = np.repeat(q.absmax, 64)[: W.size].reshape(W.shape)
    assert np.all(np.abs(D - W) <= gaps * scales + 1e-6)
    Z = np.zeros((2, 64))
    np.testing.assert_array_equal(nf4_dequantize(nf4_quantize(Z)), Z)
    np.testing.assert_allclose(nf4_dequantize(nf4_quantize(xps.asarray(W), 64)), D)


def test_lq_lora_beats_quantization_alone(rng):
    W = rng.standard_normal((96, 80)) * 0.3 + (rng.standard_normal((96, 4)) * [5, 4, 3, 2]) @ rng.standard_normal(
        (4, 80)
    )
    r = lq_lora(W, 4, n_iter=6)
    quantize_only = np.linalg.norm(W - nf4_dequantize(nf4_quantize(W))) / np.linalg.norm(W)
    assert abs(r.errors[0] - quantize_only) <= 1e-12
    assert r.errors[r.best_iter] <= quantize_only and r.errors[r.best_iter] < 0.85 * quantize_only
    assert all(b <= a * (1 + 1e-9) for a, b in zip(r.errors[:3], r.errors[1:4], strict=True))  # non-increasing at first
    assert abs(np.linalg.norm(W - r.to_dense()) / np.linalg.norm(W) - r.errors[r.best_iter]) <= 1e-6
    assert r.L1.shape == (96, 4) and r.L2.shape == (4, 80)


def test_lq_lora_budget_matches_brute_force(rng):
    layers = {
        "smooth": rng.standard_normal((32, 4)) @ rng.standard_normal((4, 48)) + 0.01 * rng.standard_normal((32, 48)),
        "heavy": rng.standard_t(2, size=(48, 32)),
        "plain": rng.standard_normal((40, 40)),
    }
    configs = ((2, 64), (3, 64), (4, 64), (8, 64))
    alloc = lq_lora_budget(layers, 3.6, rank=2, configs=configs, n_iter=1)
    assert alloc.n_bits <= alloc.budget_bits
    sizes = {name: W.size for name, W in layers.items()}
    bits_of = lambda name, c: sizes[name] * c[0] + 32 * -(-sizes[name] // c[1])  # noqa: E731
    best = min(
        (sum(alloc.errors[n][c] for n, c in zip(layers, combo, strict=True)), combo)
        for combo in itertools.product(configs, repeat=3)
        if sum(bits_of(n, c) for n, c in zip(layers, combo, strict=True)) <= alloc.budget_bits
    )
    assert abs(alloc.total_error - best[0]) <= 1e-9 * best[0]
    with pytest.raises(ValueError, match="below the cheapest"):
        lq_lora_budget(layers, 1.0, configs=configs)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda W: nf4_quantize(W, 1), ValueError, "block_size must be"),
        (lambda W: nf4_quantize(W, bits=5), ValueError, "bits must be one of"),
        (lambda W: nf4_quantize(np.full(4, np.nan)), ValueError, "W contains NaN"),
        (lambda W: nf4_dequantize(W), TypeError, "q must be a QuantizedTensor"),
        (lambda W: lq_lora(W, 0), ValueError, "rank must be in"),
        (lambda W: lq_lora(W, 9), ValueError, "rank must be in"),
        (lambda W: lq_lora(np.ones(5), 1), ValueError, "W must be 2-D"),
        (lambda W: lq_lora_budget({"w": W}, -2), ValueError, "bits_budget must be a positive"),
    ],
)
def test_quant_bad_input(rng, call, error, match):
    with pytest.raises(error, match=match):
        call(rng.standard_normal((8, 8)))
