"""GaLore gradient projectors on the warm-started randomized range finder, and a reference
Adam-in-the-subspace step (Zhao et al., "GaLore: memory-efficient LLM training by gradient
low-rank projection", ICML 2024).
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from .._backend import numpy_dtype
from .._validation import check_int, check_n_threads, check_option, check_random_state
from ..randomized import range_finder

logger = logging.getLogger("lorainne")

SIDES = ("auto", "left", "right")
METHODS = ("randomized", "svd")
MOMENTS = ("rotate", "reset", "keep")
_HALF = ("float16", "bfloat16", "half")


class GradientWarning(UserWarning):
    """A gradient could not be used (NaN/Inf or all zeros); the previous state was kept."""


def check_positive_real(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0); ``ValueError`` naming the argument otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def working_gradient(G: Any, name: str = "G"):
    """``G`` as a 2-D float32/float64 array of its library: half precision (float16, bfloat16 from
    ml_dtypes or torch) is upcast to float32, integers to float64. Finiteness is not checked.
    """
    if getattr(G, "dtype", None) is None or getattr(G, "ndim", None) is None:
        raise TypeError(f"{name} must be an array, got {type(G).__name__}")
    if G.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got an array of shape {tuple(G.shape)}")
    if any(s == 0 for s in G.shape):
        raise ValueError(f"{name} must not be empty, got shape {tuple(G.shape)}")
    label = str(G.dtype).split(".")[-1]
    if label in _HALF:
        if isinstance(G, np.ndarray):
            return G.astype(np.float32)
        xp = array_namespace(G)
        return xp.astype(G, xp.float32)
    xp = array_namespace(G)
    if G.dtype == xp.float32 or G.dtype == xp.float64:
        return G
    if xp.isdtype(G.dtype, ("integral", "bool")):
        return xp.astype(G, xp.float64)
    raise TypeError(f"{name} has unsupported dtype {label}: use a real floating dtype")


def _random_orthonormal(xp, rng, rows: int, cols: int, dtype, dev):
    block = rng.standard_normal((rows, cols))
    Q, _ = np.linalg.qr(block)
    return xp.asarray(Q.astype(numpy_dtype(dtype)), device=dev)


class GaLoreProjector:
    """Low-rank projector of a weight matrix's gradients, refreshed from the gradient itself.

    Every ``update_every`` steps (and at the first call) the basis is recomputed from the current
    gradient ``G`` (m, n): the top-``rank`` left singular subspace ``P`` (m, r) for the left side,
    or the top right singular subspace ``Q`` (n, r) for the right side. With
    ``method="randomized"`` it comes from :func:`lorainne.range_finder` with a few oversampling
    columns followed by a Rayleigh-Ritz step (SVD of the small projected matrix); with
    ``warm_start=True`` the previous basis is the starting block, so consecutive refreshes (whose
    subspaces move slowly during training) need a single power iteration. ``method="svd"`` is the
    full SVD GaLore computes.

    The projector never fails on a bad gradient. Half precision (float16, bfloat16) is upcast to
    float32. A NaN/Inf or all-zero gradient at a refresh keeps the previous basis (a random
    orthonormal one if there is none yet); such a gradient, at a refresh or not, warns
    :class:`GradientWarning` once per projector (later ones are logged at DEBUG level on the
    ``lorainne`` logger). A rank-deficient gradient gives a basis that contains its range,
    completed to ``rank`` orthonormal columns. ``rank >= min(m, n)`` makes the projector the
    identity (no basis, no SVD).

    Parameters
    ----------
    rank : int
        Rank of the projection, >= 1.
    update_every : int, default 200
        Refresh period in steps (GaLore's T).
    side : {"auto", "left", "right"}, default "auto"
        "auto" keeps the basis on the smaller side: left (``R = P^T G``, shape (r, n)) when
        m < n, right (``R = G Q``, shape (m, r)) otherwise.
    method : {"randomized", "svd"}, default "randomized"
    n_power_iter : int, default 1
        Subspace iterations of the randomized refresh.
    n_oversamples : int, default 8
        Extra columns of the randomized refresh.
    warm_start : bool, default True
        Start the randomized refresh from the previous basis.
    moments : {"rotate", "reset", "keep"}, default "rotate"
        What :meth:`state_transform` does to optimizer moments when the basis changes: "rotate"
        maps them into the new basis (first moments by ``C = P_new^T P_old``, second moments by
        the elementwise square ``C * C``, which keeps them nonnegative and is exact when ``C`` is
        a signed permutation); "reset" returns zeros; "keep" returns them unchanged (what GaLore
        does).
    random_state : None, int, numpy Generator or RandomState
        Seeds the sketches and the fallback basis.
    n_threads : int, optional
        Threads of the Rust range finder (NumPy gradients; default all cores).

    Attributes
    ----------
    basis : array or None
        The current basis (m, r) or (n, r); None before the first step and for the identity.
    side : str
        The resolved side ("left", "right", or "identity"), set at the first step.
    changed : bool
        Whether the last :meth:`project` replaced the basis.
    n_refresh : int
        Number of refreshes so far.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.train import GaLoreProjector
    >>> G = np.random.default_rng(0).standard_normal((64, 32))
    >>> proj = GaLoreProjector(8, random_state=0)
    >>> R = proj.project(G, step=0)
    >>> proj.side, R.shape
    ('right', (64, 8))
    >>> Q = proj.basis
    >>> bool(np.allclose(Q.T @ Q, np.eye(8)))
    True
    >>> proj.project_back(R).shape
    (64, 32)
    """

    def __init__(
        self,
        rank: int,
        *,
        update_every: int = 200,
        side: str = "auto",
        method: str = "randomized",
        n_power_iter: int = 1,
        n_oversamples: int = 8,
        warm_start: bool = True,
        moments: str = "rotate",
        random_state=None,
        n_threads: int | None = None,
    ):
        self.rank = check_int(rank, "rank", low=1)
        self.update_every = check_int(update_every, "update_every", low=1)
        self.requested_side = check_option(side, "side", SIDES)
        self.method = check_option(method, "method", METHODS)
        self.n_power_iter = check_int(n_power_iter, "n_power_iter", low=0)
        self.n_oversamples = check_int(n_oversamples, "n_oversamples", low=0)
        if not isinstance(warm_start, bool):
            raise TypeError(f"warm_start must be a bool, got {warm_start!r}")
        self.warm_start = warm_start
        self.moments = check_option(moments, "moments", MOMENTS)
        self._rng = check_random_state(random_state)
        self.n_threads = check_n_threads(n_threads)
        self.basis = None
        self.side: str | None = None
        self.shape: tuple[int, int] | None = None
        self.changed = False
        self.n_refresh = 0
        self._transition = None  # C = new^T old after the last refresh
        self._warned = False

    # ------------------------------------------------------------------ helpers
    def _warn(self, message: str) -> None:
        if self._warned:
            logger.debug("GaLoreProjector: %s", message)
            return
        self._warned = True
        warnings.warn(
            f"GaLoreProjector: {message} (further bad gradients are logged at DEBUG level)",
            GradientWarning,
            stacklevel=3,
        )

    def _setup(self, shape: tuple[int, int]) -> None:
        m, n = shape
        self.shape = shape
        if self.rank >= min(m, n):
            self.side = "identity"
        elif self.requested_side == "auto":
            self.side = "left" if m < n else "right"
        else:
            self.side = self.requested_side

    def _compute_basis(self, A, xp):
        """Top-``rank`` left singular subspace of ``A`` (oriented so the basis is on its rows)."""
        r = self.rank
        if self.method == "svd":
            U, _, _ = xp.linalg.svd(A, full_matrices=False)
            return U[:, :r]
        init = self.basis if (self.warm_start and self.basis is not None) else None
        Q = range_finder(
            A,
            r,
            n_oversamples=self.n_oversamples,
            n_power_iter=self.n_power_iter,
            init=init,
            random_state=self._rng,
            n_threads=self.n_threads,
        )
        if Q.shape[1] == r:
            return Q
        Ub, _, _ = xp.linalg.svd(Q.T @ A, full_matrices=False)  # Rayleigh-Ritz: best r of the l columns
        return Q @ Ub[:, :r]

    def _refresh(self, G, xp, step: int) -> None:
        A = G if self.side == "left" else G.T
        old = self.basis
        if old is not None and old.dtype != A.dtype:
            old = self.basis = xp.astype(old, A.dtype)
        norm = float(xp.linalg.vector_norm(A))
        new = None
        if not math.isfinite(norm):
            self._warn(f"gradient at step {step} has NaN or infinite entries; keeping the previous basis")
        elif norm == 0.0:
            self._warn(f"gradient at step {step} is all zeros; keeping the previous basis")
        else:
            try:
                new = self._compute_basis(A, xp)
            except (ValueError, np.linalg.LinAlgError) as error:  # pragma: no cover - defensive
                self._warn(f"basis refresh failed at step {step} ({error}); keeping the previous basis")
        if new is None:
            if old is not None:
                self.changed = False
                return
            new = _random_orthonormal(xp, self._rng, A.shape[0], self.rank, A.dtype, device(A))
        self.basis, self.changed = new, True
        self._transition = None if old is None else new.T @ old
        self.n_refresh += 1

    # ------------------------------------------------------------------ public
    def project(self, G, step: int):
        """Project the gradient ``G`` (m, n) of ``step``; refreshes the basis when
        ``step % update_every == 0`` or there is none yet.

        Returns ``P^T G`` (r, n) on the left side, ``G Q`` (m, r) on the right side, ``G`` itself
        for the identity projector; float32 for half-precision ``G``.
        """
        G = working_gradient(G)
        step = check_int(step, "step", low=0)
        if self.shape is None:
            self._setup(tuple(G.shape))
        elif tuple(G.shape) != self.shape:
            raise ValueError(
                f"G must have the shape of the projector's earlier gradients {self.shape}, got {tuple(G.shape)}"
            )
        xp = array_namespace(G)
        self.changed = False
        if self.side == "identity":
            if not bool(xp.all(xp.isfinite(G))):
                self._warn(f"gradient at step {step} has NaN or infinite entries")
            return G
        if self.basis is None or step % self.update_every == 0:
            self._refresh(G, xp, step)
        basis = self.basis if self.basis.dtype == G.dtype else xp.astype(self.basis, G.dtype)
        R = basis.T @ G if self.side == "left" else G @ basis
        if not self.changed and not bool(xp.all(xp.isfinite(R))):
            self._warn(f"gradient at step {step} has NaN or infinite entries")
        return R

    def project_back(self, N):
        """Map a low-rank update ``N`` back to the full shape: ``P N`` (left), ``N Q^T`` (right)."""
        if self.side is None:
            raise ValueError("project_back needs a basis: call project first")
        if self.side == "identity":
            return N
        m, n = self.shape
        r = self.rank
        expected = (r, n) if self.side == "left" else (m, r)
        if tuple(N.shape) != expected:
            raise ValueError(f"N must have shape {expected} (the projected shape), got {tuple(N.shape)}")
        basis = self.basis if self.basis.dtype == N.dtype else array_namespace(N).astype(self.basis, N.dtype)
        return basis @ N if self.side == "left" else N @ basis.T

    def state_transform(self, M, *, second_moment: bool = False):
        """Map an optimizer moment from the previous basis into the current one.

        Apply after a :meth:`project` that returned with ``changed`` True. Follows ``moments``
        (see the class); a no-op when the basis did not change or for the identity projector.
        """
        if not self.changed or self.side == "identity" or self.moments == "keep" or self._transition is None:
            return M
        xp = array_namespace(M)
        if self.moments == "reset":
            return xp.zeros_like(M)
        C = self._transition if self._transition.dtype == M.dtype else xp.astype(self._transition, M.dtype)
        if second_moment:
            C = C * C
        return C @ M if self.side == "left" else M @ C.T


@dataclass
class GaLoreAdamState:
    """State of :func:`galore_adam_step`: the projector, the step count and the projected moments.

    Create one per weight matrix with :func:`galore_adam_state`.
    """

    projector: GaLoreProjector
    step: int = 0
    exp_avg: Any = None
    exp_avg_sq: Any = None
    n_skipped: int = 0


def galore_adam_state(rank: int, **projector_options) -> GaLoreAdamState:
    """A fresh :class:`GaLoreAdamState` whose projector is ``GaLoreProjector(rank, **projector_options)``.

    Examples
    --------
    >>> from lorainne.train import galore_adam_state
    >>> galore_adam_state(4, update_every=50).projector.update_every
    50
    """
    return GaLoreAdamState(GaLoreProjector(rank, **projector_options))


def galore_adam_step(
    W,
    G,
    state: GaLoreAdamState,
    lr: float,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    scale: float = 1.0,
):
    """One Adam step in the projector's subspace (reference implementation on arrays).

    ``R = project(G)``; Adam's moments and bias-corrected update ``N`` are computed on ``R``;
    ``W_new = W - lr * scale * project_back(N) - lr * weight_decay * W`` (decoupled decay, as
    AdamW). With the identity projector (rank >= min(m, n)) this is Adam(W). A gradient with
    NaN/Inf is skipped (``W`` returned unchanged, ``state.n_skipped`` counted) after the
    projector's single warning.

    Parameters
    ----------
    W : array (m, n)
        Weights; not modified.
    G : array (m, n)
        Gradient of the loss at ``W`` (half precision is upcast to float32).
    state : GaLoreAdamState
        Updated in place.
    lr : float
        Learning rate, finite and > 0.
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    scale : float, default 1
        GaLore's scale of the projected update.

    Returns
    -------
    array (m, n)
        The new weights, of ``W``'s library and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from lorainne.train import galore_adam_state, galore_adam_step
    >>> rng = np.random.default_rng(0)
    >>> target = rng.standard_normal((20, 30))
    >>> W, state = np.zeros((20, 30)), galore_adam_state(4, update_every=10, random_state=0)
    >>> for _ in range(50):
    ...     W = galore_adam_step(W, W - target, state, lr=0.05)
    >>> bool(np.linalg.norm(W - target) < np.linalg.norm(target))
    True
    """
    if not isinstance(state, GaLoreAdamState):
        raise TypeError(f"state must be a GaLoreAdamState (see galore_adam_state), got {type(state).__name__}")
    lr = check_positive_real(lr, "lr")
    eps = check_positive_real(eps, "eps")
    weight_decay = check_positive_real(weight_decay, "weight_decay", allow_zero=True)
    scale = check_positive_real(scale, "scale")
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}")
    b1, b2 = (check_positive_real(b, "betas", allow_zero=True) for b in betas)
    if b1 >= 1 or b2 >= 1:
        raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}")
    W = working_gradient(W, "W")
    if tuple(G.shape) != tuple(W.shape):
        raise ValueError(f"G must have the shape of W {tuple(W.shape)}, got {tuple(G.shape)}")
    xp = array_namespace(W)
    proj = state.projector
    R = proj.project(G, state.step)
    if not bool(xp.all(xp.isfinite(R))):
        state.n_skipped += 1
        state.step += 1
        return W
    R = R if R.dtype == W.dtype else xp.astype(R, W.dtype)
    if state.exp_avg is None or tuple(state.exp_avg.shape) != tuple(R.shape):
        state.exp_avg, state.exp_avg_sq = xp.zeros_like(R), xp.zeros_like(R)
    elif proj.changed:
        state.exp_avg = proj.state_transform(state.exp_avg)
        state.exp_avg_sq = proj.state_transform(state.exp_avg_sq, second_moment=True)
    state.step += 1
    t = state.step - state.n_skipped  # Adam's count of applied updates
    state.exp_avg = b1 * state.exp_avg + (1 - b1) * R
    state.exp_avg_sq = b2 * state.exp_avg_sq + (1 - b2) * (R * R)
    m_hat = state.exp_avg / (1 - b1**t)
    v_hat = state.exp_avg_sq / (1 - b2**t)
    N = m_hat / (xp.sqrt(v_hat) + eps)
    update = proj.project_back(N)
    W_new = W - (lr * scale) * update
    if weight_decay:
        W_new = W_new - (lr * weight_decay) * W
    return W_new
