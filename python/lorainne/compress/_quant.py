"""NF4 (and k-bit NormalFloat) blockwise quantization as bitsandbytes defines it, LQ-LoRA, and the
bit allocation of LQ-LoRA by a mixed-integer program.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from .._backend import to_host
from .._validation import as_float_array, check_int
from ._allocate import named
from ._lowrank import truncated_svd

# The 16 NF4 values as bitsandbytes publishes them (functional.get_4bit_type("nf4")).
NF4_CODE = np.array(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ],
    dtype=np.float32,
)
BITS = (2, 3, 4, 8)


def normal_float_code(bits: int) -> np.ndarray:
    """The k-bit NormalFloat code book (float32, ascending): the published table for 4 bits;
    for other widths bitsandbytes' ``create_normal_map`` construction (2^(k-1) positive and
    2^(k-1) - 1 negative normal quantiles at offset 0.9677083, plus 0, scaled to [-1, 1]).
    """
    if bits == 4:
        return NF4_CODE.copy()
    from scipy.stats import norm

    offset = 0.9677083
    half = 2 ** (bits - 1)
    positive = norm.ppf(np.linspace(offset, 0.5, half + 1)[:-1])
    negative = -norm.ppf(np.linspace(offset, 0.5, half)[:-1])
    values = np.sort(np.concatenate([positive, [0.0], negative]))
    return (values / values.max()).astype(np.float32)


def _thresholds(code: np.ndarray) -> np.ndarray:
    """Decision thresholds: midpoints of neighbouring code values (computed in float64, stored as
    float32 literals, as in bitsandbytes' ``dQuantizeNF4`` tree).
    """
    c = code.astype(np.float64)
    return ((c[1:] + c[:-1]) / 2).astype(np.float32)


@dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """A blockwise NormalFloat-quantized array.

    Attributes
    ----------
    codes : numpy uint8 array
        4 bits: two indices per byte, the first element in the high nibble (bitsandbytes' packing);
        other widths: one index per byte.
    absmax : numpy float32 array (n_blocks,)
        Per-block scale ``max |x|`` over each run of ``block_size`` elements in C order.
    shape : tuple
    block_size : int
    bits : int
    dtype : numpy dtype of the original array
    """

    codes: np.ndarray
    absmax: np.ndarray
    shape: tuple
    block_size: int
    bits: int
    dtype: np.dtype

    @property
    def n_bits(self) -> int:
        """Storage in bits: the indices plus a float32 scale per block."""
        return int(np.prod(self.shape)) * self.bits + 32 * int(self.absmax.size)


def _check_block_size(block_size) -> int:
    return check_int(block_size, "block_size", low=2)


def _check_bits(bits) -> int:
    bits = check_int(bits, "bits", low=2, high=8)
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits}")
    return bits


def nf4_quantize(W, block_size: int = 64, *, bits: int = 4) -> QuantizedTensor:
    """Blockwise NormalFloat quantization, bit-exact to bitsandbytes' NF4 for ``bits=4``.

    The array is flattened in C order and cut into blocks of ``block_size`` (the last one may be
    shorter). Each block is scaled by the reciprocal of its float32 absmax (``x * (1 / absmax)``
    in float32, as the CUDA kernel does), and each value gets the index of the nearest code value
    (ties go to the lower one: ``x > threshold`` moves up, as in ``dQuantizeNF4``). An all-zero
    block gets the index of 0.

    Parameters
    ----------
    W : array
        Any shape, float32/float64 (integers promoted); any array library (copied to the host).
    block_size : int, default 64
    bits : {2, 3, 4, 8}, default 4
        4 is NF4; other widths use the same NormalFloat construction.

    Returns
    -------
    QuantizedTensor

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.compress import nf4_dequantize, nf4_quantize
    >>> W = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    >>> q = nf4_quantize(W)
    >>> q.codes.shape, q.absmax.shape, q.n_bits / W.size
    ((128,), (4,), 4.5)
    >>> float(np.abs(nf4_dequantize(q) - W).max() / np.abs(W).max()) < 0.2
    True
    """
    block_size = _check_block_size(block_size)
    bits = _check_bits(bits)
    W = as_float_array(W, "W")
    dtype = np.dtype(str(W.dtype).split(".")[-1])
    flat = to_host(W, np.float32).reshape(-1)
    n = flat.size
    n_blocks = -(-n // block_size)
    padded = np.zeros(n_blocks * block_size, dtype=np.float32)
    padded[:n] = flat
    blocks = padded.reshape(n_blocks, block_size)
    absmax = np.max(np.abs(blocks), axis=1).astype(np.float32)
    with np.errstate(divide="ignore"):
        inverse = np.where(absmax > 0, np.float32(1.0) / absmax, np.float32(0.0)).astype(np.float32)
    normalized = blocks * inverse[:, None]
    code = normal_float_code(bits)
    indices = np.searchsorted(_thresholds(code), normalized, side="left").astype(np.uint8).reshape(-1)[:n]
    if bits == 4:
        if n % 2:
            indices = np.concatenate([indices, np.zeros(1, dtype=np.uint8)])
        indices = (indices[0::2] << 4) | indices[1::2]
    return QuantizedTensor(indices, absmax, tuple(int(s) for s in W.shape), block_size, bits, dtype)


def nf4_dequantize(q: QuantizedTensor) -> np.ndarray:
    """``code[index] * absmax`` in float32 (bitsandbytes' dequantization), cast to the original dtype."""
    if not isinstance(q, QuantizedTensor):
        raise TypeError(f"q must be a QuantizedTensor, got {type(q).__name__}")
    n = int(np.prod(q.shape))
    if q.bits == 4:
        indices = np.empty(2 * q.codes.size, dtype=np.uint8)
        indices[0::2], indices[1::2] = q.codes >> 4, q.codes & 0x0F
        indices = indices[:n]
    else:
        indices = q.codes[:n]
    values = normal_float_code(q.bits)[indices]
    scales = np.repeat(q.absmax, q.block_size)[:n]
    return (values * scales).astype(q.dtype).reshape(q.shape)


@dataclass(frozen=True, eq=False)
class LQLoRAResult:
    """``W ~ dequantize(quantized) + L1 @ L2``.

    Attributes
    ----------
    quantized : QuantizedTensor
    L1 : numpy array (out, rank)
    L2 : numpy array (rank, in)
    errors : list of float
        ``||W - Q - L1 L2||_F / ||W||_F`` after each iteration (index 0: quantization only, L = 0).
    best_iter : int
        The iteration whose iterate is returned (the best one).
    """

    quantized: QuantizedTensor
    L1: np.ndarray
    L2: np.ndarray
    errors: list
    best_iter: int

    def to_dense(self) -> np.ndarray:
        return nf4_dequantize(self.quantized).astype(np.float64) + self.L1 @ self.L2

    @property
    def n_bits(self) -> int:
        """Quantized storage plus the low-rank factors in 16 bits."""
        return self.quantized.n_bits + 16 * (self.L1.size + self.L2.size)


def lq_lora(W, rank: int, *, bits: int = 4, block_size: int = 64, n_iter: int = 10, random_state=None) -> LQLoRAResult:
    """LQ-LoRA decomposition ``W ~ Q + L1 L2`` (Guo et al. 2024): alternately ``L1 L2 = SVD_r(W - Q)``
    and ``Q = quantize(W - L1 L2)``, from ``L = 0``, keeping the best iterate.

    Parameters
    ----------
    W : array (out, in)
    rank : int, 1 <= rank <= min(out, in)
    bits : {2, 3, 4, 8}, default 4
    block_size : int, default 64
    n_iter : int, default 10
        Alternations after the quantization-only start.
    random_state : None, int, Generator
        For the randomized SVD when rank is small against min(out, in).

    Returns
    -------
    LQLoRAResult
        ``quantized``, ``L1``, ``L2``, ``errors`` (relative, per iteration), ``best_iter``.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.compress import lq_lora
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((64, 64)) + 3 * np.outer(rng.standard_normal(64), rng.standard_normal(64))
    >>> r = lq_lora(W, 4, n_iter=5)
    >>> r.errors[r.best_iter] < r.errors[0]
    True
    """
    W = as_float_array(W, "W", ndim=2)
    bits = _check_bits(bits)
    block_size = _check_block_size(block_size)
    n_iter = check_int(n_iter, "n_iter", low=0)
    W = to_host(W, np.float64)
    rank = check_int(rank, "rank", low=1, high=min(W.shape))
    norm = max(float(np.linalg.norm(W)), 1e-300)
    q = nf4_quantize(W, block_size, bits=bits)
    L1, L2 = np.zeros((W.shape[0], rank)), np.zeros((rank, W.shape[1]))
    errors = [float(np.linalg.norm(W - nf4_dequantize(q))) / norm]
    best = (errors[0], q, L1, L2, 0)
    for it in range(1, n_iter + 1):
        U, S, Vt = truncated_svd(W - nf4_dequantize(q), rank, "auto", random_state)
        L1, L2 = U * S[None, :], Vt
        q = nf4_quantize(W - L1 @ L2, block_size, bits=bits)
        errors.append(float(np.linalg.norm(W - nf4_dequantize(q) - L1 @ L2)) / norm)
        if errors[-1] < best[0]:
            best = (errors[-1], q, L1, L2, it)
    _, q, L1, L2, it = best
    return LQLoRAResult(q, L1, L2, errors, it)


@dataclass(frozen=True, eq=False)
class BitAllocation:
    """The result of :func:`lq_lora_budget`: a configuration (bits, block size) per layer."""

    configs: dict
    n_bits: int
    budget_bits: int
    errors: dict  # layer -> {(bits, block_size): squared error}
    total_error: float


def lq_lora_budget(
    layers,
    bits_budget: float,
    *,
    rank: int = 8,
    configs=((2, 64), (3, 64), (4, 64), (4, 128), (8, 64)),
    n_iter: int = 2,
    random_state=None,
) -> BitAllocation:
    """Choose (bits, block size) per matrix under an average-bits budget by LQ-LoRA's integer program.

    For each layer and configuration, the squared error ``||W - Q - L1 L2||_F^2`` of :func:`lq_lora`
    (``n_iter`` alternations) and its storage in bits (indices, float32 block scales; the rank-r
    factors cost the same in every configuration and are left out) are computed; then
    ``min sum_ij err_ij x_ij`` s.t. ``sum_j x_ij = 1``, ``sum_ij bits_ij x_ij <= budget``,
    ``x`` binary, is solved by ``scipy.optimize.milp``.

    Parameters
    ----------
    layers : mapping name -> array (out, in), or a list of arrays
    bits_budget : float
        Average bits per weight entry over all layers (e.g. 3.5).
    rank : int, default 8
    configs : sequence of (bits, block_size)
    n_iter : int, default 2
    random_state : None, int, Generator

    Returns
    -------
    BitAllocation
        ``configs`` (layer -> (bits, block_size)), ``n_bits``, ``budget_bits``, ``errors``, ``total_error``.

    Raises
    ------
    ValueError
        A non-positive budget, or one below the cheapest configuration.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    items = named(layers, "layers")
    if not items:
        raise ValueError("layers is empty")
    if isinstance(bits_budget, bool) or not isinstance(bits_budget, numbers.Real) or not (float(bits_budget) > 0):
        raise ValueError(f"bits_budget must be a positive number of bits per weight, got {bits_budget!r}")
    configs = [(_check_bits(b), _check_block_size(s)) for b, s in configs]
    if not configs:
        raise ValueError("configs is empty")
    names = list(items)
    n_c = len(configs)
    err = np.zeros((len(names), n_c))
    cost = np.zeros((len(names), n_c))
    total_entries = 0
    errors: dict = {}
    for i, name in enumerate(names):
        W = to_host(as_float_array(items[name], f"layers[{name!r}]", ndim=2), np.float64)
        total_entries += W.size
        r = min(rank, min(W.shape))
        errors[name] = {}
        for j, (bits, block) in enumerate(configs):
            result = lq_lora(W, r, bits=bits, block_size=block, n_iter=n_iter, random_state=random_state)
            err[i, j] = (result.errors[result.best_iter] * np.linalg.norm(W)) ** 2
            cost[i, j] = result.quantized.n_bits
            errors[name][(bits, block)] = float(err[i, j])
    budget_bits = int(np.floor(float(bits_budget) * total_entries))
    if cost.min(axis=1).sum() > budget_bits:
        cheapest = cost.min(axis=1).sum() / total_entries
        raise ValueError(
            f"bits_budget={bits_budget} is below the cheapest configuration ({cheapest:.3f} bits per weight)"
        )
    n_layers = len(names)
    one_each = np.zeros((n_layers, n_layers * n_c))
    for i in range(n_layers):
        one_each[i, i * n_c : (i + 1) * n_c] = 1
    constraints = [LinearConstraint(one_each, 1, 1), LinearConstraint(cost.reshape(1, -1), -np.inf, budget_bits)]
    scale = max(float(err.max()), 1e-300)
    res = milp(
        err.reshape(-1) / scale, constraints=constraints, integrality=np.ones(n_layers * n_c), bounds=Bounds(0, 1)
    )
    if not res.success:  # pragma: no cover - the cheapest choice is feasible, checked above
        raise RuntimeError(f"milp failed: {res.message}")
    choice = np.round(res.x).reshape(n_layers, n_c).argmax(axis=1)
    chosen = {name: configs[choice[i]] for i, name in enumerate(names)}
    used = int(sum(cost[i, choice[i]] for i in range(n_layers)))
    return BitAllocation(chosen, used, budget_bits, errors, float(sum(err[i, choice[i]] for i in range(n_layers))))
