"""potentia: correct constrained sampling from language models.

The LM times the user's potentials is the target; the engines return properly weighted
samples of it and an estimate of its normaliser::

    import potentia as pt
    out = pt.sample(model, "prompt", constraint, particles=16, seed=0)
    out.posterior, out.log_z

The engine itself is ``potentia.smc.smc`` (the subpackage ``potentia.smc`` holds the
engine, the resampling schemes and the result type).
"""

from potentia.api import register_sampler, sample
from potentia.lm import LM  # noqa: F401
from potentia.potentials import Potential, PotentialState, Vocabulary
from potentia.potentials.cfg import cfg  # noqa: F401
from potentia.potentials.json_schema import json_schema as json  # noqa: F401
from potentia.potentials.lexical import contains, excludes, length, span_of  # noqa: F401
from potentia.potentials.predicate import predicate  # noqa: F401
from potentia.potentials.regex import regex  # noqa: F401
from potentia.samplers import DirectSampler, TokenSampler
from potentia.samplers.awrs import AWRS  # noqa: F401  (registers sampler "awrs"; after api)
from potentia.smc.result import Result

__all__ = [
    "sample",
    "register_sampler",
    "Potential",
    "PotentialState",
    "Vocabulary",
    "TokenSampler",
    "DirectSampler",
    "Result",
]
__version__ = "0.1.0"
