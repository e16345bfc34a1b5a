"""pt.sample's defaults for structured output sample the declared target exactly.

With a constraint that ends itself (``pt.json``'s structured mode), ``pt.sample`` runs SMC
with AWRS, auto-stop, the budget guard (a declared restriction), the length twist and,
by default (``resampling="auto"``), residual resampling at ESS < 0.5·N, held while any
particle is tight under the guard (on this toy the hold skips 52 of 59 resampling events
in 200 runs, so it is exercised). The draws of many
such runs, rejection-corrected (``smc_exact_draws``), must follow the exact posterior of
``AutoStop(LM, c) × c × guard`` (χ², false alarm 1e-4), and Ẑ must be unbiased for its Z
(4 standard errors). The guard is a real restriction on this toy (it removes 7% of
the unguarded posterior), so a run that ignored it would fail.
"""

from __future__ import annotations

import numpy as np

import potentia as pt
from potentia.constraints.completion import BudgetGuard
from potentia.models import ToyLM, enumerate_target, random_ngram
from potentia.potentials.ops import AutoStop
from potentia.testing import assert_gof, assert_mean, smc_exact_draws

VOCAB = pt.Vocabulary([b'{"a": "', b"x", b"xx", b'"}', b'"', b"}", b'x"}'])
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
T = 4


def _problem():
    lm = random_ngram(np.random.default_rng(3), VOCAB, order=2, concentration=3.0)
    toy = ToyLM(lm)
    c = pt.json(SCHEMA).lift(VOCAB)
    lp = toy.potential(())
    target = AutoStop(lp, c) * c * BudgetGuard(c, VOCAB, T)
    plain = AutoStop(lp, c) * c
    return toy, target, plain


def test_structured_defaults_match_enumeration():
    toy, target, plain = _problem()
    exact, unguarded = enumerate_target(target, T), enumerate_target(plain, T)
    assert exact.log_z > np.log(0.1) and len(exact.posterior) >= 20
    # the guard changes the target here: at one token left only `"}` may close the string,
    # so strings ending in `x"}` there are removed (7% of the unguarded posterior)
    removed = sum(p for x, p in unguarded.posterior.items() if x not in exact.posterior)
    assert removed > 0.05
    runs = [
        pt.sample(toy, (), pt.json(SCHEMA), particles=4, max_tokens=T, seed=s, progress=False)
        for s in range(1000)
    ]
    draws = smc_exact_draws(runs, np.random.default_rng(1), log_bound=0.0)
    assert len(draws) > 110
    assert_gof(draws, exact.posterior, false_alarm=1e-4)
    Z = np.exp(exact.log_z)
    assert_mean([np.exp(r.log_z) for r in runs], Z, sigmas=4.0, resolution=Z / len(runs))
    assert any(r.resampled_at for r in runs)  # the resampling path is exercised
