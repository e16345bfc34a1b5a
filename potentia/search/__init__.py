"""Search engines over partial outputs: A*, beam search, DeAL, best-of-N, unit SMC.

Step potentials (rewards, verifiers, PRM adapters scored at unit boundaries) live here
too: :mod:`potentia.search.step_potentials`.

Every engine returns :class:`potentia.result.Result` with the best outputs first, their
scores, and in ``extra`` the search tree and what each budget spent.
"""

from potentia.search.astar import astar
from potentia.search.base import Budget
from potentia.search.beam import beam_search, deal
from potentia.search.bon import best_of_n
from potentia.search.step_potentials import StepPotential, lm_judge, prm, reward, verifier
from potentia.search.unit_smc import unit_smc

__all__ = [
    "astar",
    "beam_search",
    "deal",
    "best_of_n",
    "unit_smc",
    "Budget",
    "StepPotential",
    "reward",
    "verifier",
    "prm",
    "lm_judge",
]
