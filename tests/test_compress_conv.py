"""lorainne.compress: CP, Tucker-2 and per-filter CP factorizations of convolutions."""

import array_api_strict as xps
import numpy as np
import pytest

from lorainne.compress import conv_cp, conv_tucker2, filter_cp


def direct_conv(x, K, padding):
    """Direct convolution (torch conv2d semantics) by explicit loops over the kernel taps."""
    ph, pw = padding
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    T, S, kh, kw = K.shape
    n, _, H, W = x.shape
    out = np.zeros((n, T, H - kh + 1, W - kw + 1))
    for a in range(kh):
        for b in range(kw):
            out += np.einsum("ts,nshw->nthw", K[:, :, a, b], x[:, :, a : a + H - kh + 1, b : b + W - kw + 1])
    return out


def planted_cp(rng, shape, rank):
    return np.einsum("ta,sa,ia,ja->tsij", *(rng.standard_normal((n, rank)) for n in shape))


def test_cp_pipeline_equals_direct_convolution_and_recovers_planted_kernel(rng):
    K = planted_cp(rng, (12, 6, 3, 5), 4)
    f = conv_cp(K, 4, random_state=0)
    assert [k.shape for k in f.kernels] == [(4, 6, 1, 1), (4, 1, 3, 1), (4, 1, 1, 5), (12, 4, 1, 1)]
    K_hat = f.to_kernel()
    assert np.linalg.norm(K_hat - K) / np.linalg.norm(K) < 1e-6
    x = rng.standard_normal((2, 6, 9, 11))
    for padding in ((0, 0), (1, 2)):
        y = f.apply(x, padding)
        ref = direct_conv(x, K_hat, padding)
        assert np.max(np.abs(y - ref)) <= 1e-10 * np.max(np.abs(ref))
    assert f.n_params == 4 * (6 + 3 + 5 + 12) and f.dense_params == K.size
    assert f.flops(9, 11) == f.n_params * 99 and f.dense_flops(9, 11) == 12 * 6 * 15 * 99


def test_tucker2_pipeline_equals_direct_convolution_and_recovers_planted_kernel(rng):
    core = rng.standard_normal((5, 3, 3, 3))
    U_t, _ = np.linalg.qr(rng.standard_normal((16, 5)))
    U_s, _ = np.linalg.qr(rng.standard_normal((8, 3)))
    K = np.einsum("abij,ta,sb->tsij", core, U_t, U_s)
    f = conv_tucker2(K, (5, 3), random_state=0)
    assert [k.shape for k in f.kernels] == [(3, 8, 1, 1), (5, 3, 3, 3), (16, 5, 1, 1)]
    K_hat = f.to_kernel()
    assert np.linalg.norm(K_hat - K) / np.linalg.norm(K) < 1e-10
    x = rng.standard_normal((2, 8, 7, 7))
    y, ref = f.apply(x, (1, 1)), direct_conv(x, K_hat, (1, 1))
    assert np.max(np.abs(y - ref)) <= 1e-10 * np.max(np.abs(ref))
    assert f.n_params == 3 * 8 + 5 * 3 * 9 + 16 * 5
    assert f.flops(7, 7) == (3 * 8 + 5 * 3 * 9 + 16 * 5) * 49


def test_filter_cp_pipeline_equals_direct_convolution(rng):
    K = np.stack([planted_cp(rng, (1, 5, 3, 3), 2)[0] for _ in range(4)])
    f = filter_cp(K, 2, random_state=0)
    assert f.groups == [1, 8, 8, 4] and f.n_params == 4 * 2 * (5 + 3 + 3 + 1)
    K_hat = f.to_kernel()
    assert np.linalg.norm(K_hat - K) / np.linalg.norm(K) < 1e-6
    x = rng.standard_normal((1, 5, 8, 6))
    y, ref = f.apply(x, (1, 1)), direct_conv(x, K_hat, (1, 1))
    assert np.max(np.abs(y - ref)) <= 1e-10 * np.max(np.abs(ref))


def test_conv_array_api_strict_input(rng):
    K = planted_cp(rng, (6, 4, 3, 3), 2)
    f = conv_tucker2(xps.asarray(K), (6, 4))
    assert np.linalg.norm(f.to_kernel() - K) / np.linalg.norm(K) < 1e-10


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda K: conv_cp(K[0], 2), ValueError, "K must be 4-D"),
        (lambda K: conv_cp(K, 0), ValueError, "rank must be"),
        (lambda K: conv_tucker2(K, (7, 2)), ValueError, r"ranks\[0\] must be in"),
        (lambda K: conv_tucker2(K, 3), ValueError, "ranks must be a pair"),
        (lambda K: filter_cp(K * np.nan, 1), ValueError, "K contains NaN"),
    ],
)
def test_conv_bad_input(rng, call, error, match):
    with pytest.raises(error, match=match):
        call(rng.standard_normal((6, 4, 3, 3)))
