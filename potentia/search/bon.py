r"""Best-of-N: sample N whole strings, return them ranked by a reward.

The N strings are drawn in one batch by a token sampler (through
:class:`~potentia.samplers.units.UnitSampler` with the whole string as one unit), so
each is a draw of the sampler's proposal (for ``DirectSampler``, the target's
token-by-token conditionals). Each finished string x is scored by ``reward(x)``
(``None``: ``target.complete(x)``, the log weight under the target) and the strings are
returned best first.

Budgets: ``lm_tokens`` bounds every sampled token (EOS and the tokens of strings that
die included): the batch stops drawing for the rows past the budget, which are dropped.
``reward_calls`` bounds the uncached reward calls: strings past it are dropped unscored.
A string still unfinished after ``max_tokens`` tokens is dropped (status ``"length"``).
``time_limit`` is checked once, before the batch is sampled.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from potentia.result import Result
from potentia.samplers.base import TokenSampler
from potentia.samplers.units import UnitSampler
from potentia.search.astar import check_int
from potentia.search.base import Budget, CountedFn, Meter, Tree, search_result

__all__ = ["best_of_n"]


def best_of_n(
    sampler: TokenSampler,
    n: int,
    max_tokens: int,
    reward: Callable[[list[int]], float] | None = None,
    *,
    rng: np.random.Generator | int | None = None,
    budget: Budget | None = None,
) -> Result:
    """Sample ``n`` strings, rank them by ``reward``.

    Args:
        sampler: The token sampler (its ``target`` is the LM × constraints).
        n: Number of strings N.
        max_tokens: Longest string; longer draws are dropped.
        reward: ``reward(context) -> float`` on a finished string (``None``: its
            ``target.complete``).
        rng: Seed or generator.
        budget: The :class:`~potentia.search.base.Budget` (``expansions`` counts the one
            batched sampling call).

    Returns:
        A :class:`Result` with the scored strings best first (``log_weights`` = reward);
        ``extra["tree"]`` holds the root and one node per draw.
    """
    check_int("n", n)
    check_int("max_tokens", max_tokens)
    us = UnitSampler(sampler, None)
    target = us.target
    r = CountedFn(reward if reward is not None else target.complete, "reward")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    meter = Meter(budget)
    V = len(target.vocab)
    tree = Tree(eos=V)
    tree.logp[0] = target.prefix([])
    goals: list[int] = []
    stopped_by = meter.blocked(expansions=1, lm_tokens=1)
    if not stopped_by:
        room = meter.room("lm_tokens")
        out = us.sample(
            us.init_state(n),
            rng,
            max_len=max_tokens,
            token_budget=None if room == np.inf else int(room),
        )
        meter.spend(expansions=1, lm_tokens=out.tokens)
        tree.expand(0)
        if "budget" in out.status:
            stopped_by = f"`lm_tokens`={meter.budget.lm_tokens} ran out while sampling"
        for u, e in zip(out.units, out.eos):
            if not e:
                continue
            cost = 0 if r.cached(u) else 1
            why = meter.blocked(reward_calls=cost)
            if why:
                stopped_by = why
                break
            meter.spend(reward_calls=cost)
            goals.append(tree.add(0, list(u) + [V], target.complete(u), r(u)))
    return search_result(
        target,
        tree,
        goals,
        meter,
        f"bon[{type(sampler).__name__}]",
        "rank N sampled strings by reward(x)" if reward else "rank N samples by log target(x)",
        stopped_by,
    )
