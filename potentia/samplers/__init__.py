"""Token samplers only: propose a next token with a properly weighted log weight.

(Direct and AWRS). Whole-string engines live in :mod:`potentia.smc` and :mod:`potentia.asap`.
"""

from potentia.samplers.base import SampleOut, TokenSampler, rng_draw
from potentia.samplers.direct import DirectSampler

__all__ = ["TokenSampler", "SampleOut", "DirectSampler", "rng_draw"]
