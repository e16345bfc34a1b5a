"""Token samplers: propose a next token with a properly weighted log weight."""

from potentia.samplers.base import SampleOut, TokenSampler, rng_draw
from potentia.samplers.direct import DirectSampler

__all__ = ["TokenSampler", "SampleOut", "DirectSampler", "rng_draw"]
