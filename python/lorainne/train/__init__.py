"""Low-rank training kernels, framework-agnostic: gradients arrive as arrays of any array-API
library (NumPy, CuPy, torch, ...) and results return in the same library.

* GaLore gradient projectors refreshed by the warm-started randomized range finder
  (:class:`GaLoreProjector`) and a reference Adam step in the subspace (:func:`galore_adam_step`);
* dynamical low-rank training, the rank-adaptive augmented BUG integrator of DLRT
  (:class:`LowRankLayer`, :func:`dlrt_kl_step`, :func:`dlrt_s_step`, :func:`dlrt_truncate`,
  :func:`dlrt_step`) and its Tucker form for convolution kernels (:class:`TuckerLayer`,
  :func:`tdlrt_step`);
* adapters: LoRA with zero or PiSSA initialization (:func:`lora_init`, :func:`lora_merge`) and NOLA
  with bases from the Philox counter-based generator, bit-identical across libraries
  (:func:`nola_basis`, :func:`nola_delta`).
"""

from ._adapters import LoRAInit, lora_init, lora_merge, nola_basis, nola_delta
from ._dlrt import AugmentedLayer, LowRankLayer, dlrt_kl_step, dlrt_s_step, dlrt_step, dlrt_truncate
from ._galore import GaLoreAdamState, GaLoreProjector, GradientWarning, galore_adam_state, galore_adam_step
from ._tdlrt import TuckerLayer, tdlrt_step

__all__ = [
    "AugmentedLayer",
    "GaLoreAdamState",
    "GaLoreProjector",
    "GradientWarning",
    "LoRAInit",
    "LowRankLayer",
    "TuckerLayer",
    "dlrt_kl_step",
    "dlrt_s_step",
    "dlrt_step",
    "dlrt_truncate",
    "galore_adam_state",
    "galore_adam_step",
    "lora_init",
    "lora_merge",
    "nola_basis",
    "nola_delta",
    "tdlrt_step",
]
