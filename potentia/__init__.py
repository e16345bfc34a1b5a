"""potentia: correct constrained sampling from language models.

The LM times the user's potentials is the target; the engines return properly weighted
samples of it and an estimate of its normaliser::

    import potentia as pt
    out = pt.sample(model, "prompt", constraint, particles=16, seed=0)
    out.posterior, out.log_z

The engine itself is ``potentia.smc.smc`` (the subpackage ``potentia.smc`` holds the
engine, the resampling schemes and the result type).
"""

from potentia import interop
from potentia.agents import agent
from potentia.api import register_sampler, sample
from potentia.constraints.cfg import cfg
from potentia.constraints.graph import graph_path
from potentia.constraints.infill import infill
from potentia.constraints.intersect import intersect
from potentia.constraints.json_schema import json_schema as json
from potentia.constraints.lexical import contains, excludes, length, span_of
from potentia.constraints.ltl import ltl
from potentia.constraints.predicate import predicate
from potentia.constraints.regex import regex
from potentia.constraints.template import template
from potentia.constraints.verse import suffix_rhyme, syllables
from potentia.lm import LM
from potentia.many import sample_many
from potentia.potentials import Potential, PotentialState, Vocabulary
from potentia.result import Result
from potentia.samplers import DirectSampler, TokenSampler
from potentia.samplers.awrs import AWRS
from potentia.search.step_potentials import lm_judge, prm, reward, verifier

__all__ = [
    "interop",
    "sample",
    "sample_many",
    "agent",
    "register_sampler",
    "LM",
    "regex",
    "cfg",
    "json",
    "predicate",
    "ltl",
    "template",
    "infill",
    "contains",
    "excludes",
    "length",
    "span_of",
    "graph_path",
    "intersect",
    "syllables",
    "suffix_rhyme",
    "Potential",
    "PotentialState",
    "Vocabulary",
    "TokenSampler",
    "DirectSampler",
    "AWRS",
    "Result",
    "reward",
    "verifier",
    "prm",
    "lm_judge",
]
__version__ = "0.1.0"
