"""Token samplers: propose a next token with a properly weighted log weight."""

from potentia.samplers.base import SampleOut, TokenSampler, rng_draw
from potentia.samplers.direct import DirectSampler

__all__ = ["TokenSampler", "SampleOut", "DirectSampler", "rng_draw"]
from potentia.samplers.asap import CARS, LCD, ASAp, Trie, twisted_smc  # noqa: E402, F401
