r"""Beam search and DeAL lookahead beam search over tokens.

**Beam search** (``beam_search``). Round t expands every hypothesis of the beam: each
child x a with positive weight is scored ``target.prefix(x a)`` and each EOS child
``target.complete(x)``; EOS children go to the finished pool, and the ``width``
highest-scoring other children form the next beam (ties: the child created first).
A hypothesis of ``max_tokens`` tokens only gets its EOS child. The run ends when the
beam is empty; the finished strings are returned best first. With ``width`` at least the
number of prefixes the beam never prunes, and the result is every string of the target
ranked by weight (the brute-force definition, checked in the tests).

**DeAL** (``deal``; Huang et al. 2024). Like beam search, but each hypothesis proposes
only its ``top_k`` likeliest next tokens (EOS included), and each candidate x a is scored

    score(x a) = target.prefix(x a) + weight · reward(x a y)

where y is a greedy lookahead of ``lookahead`` tokens from x a (argmax of the target's
next-token weights, ending early at EOS or at ``max_tokens``); a finished candidate x EOS
scores ``target.complete(x) + weight · reward(x)``. Finished strings are ranked by that
score. Every lookahead pick (EOS included) is paid from ``budget.lm_tokens``; every uncached
reward call from ``budget.reward_calls``.

Budgets are checked before each hypothesis is expanded, for the worst case of the whole
expansion (its children, full-length lookaheads, one reward call per child); the first
expansion that may not fit ends the run, so no budget is ever exceeded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from potentia.potentials.base import Potential, as_potential
from potentia.result import Result
from potentia.search.astar import check_int
from potentia.search.base import Budget, CountedFn, Meter, Tree, search_result

__all__ = ["beam_search", "deal"]


def beam_search(
    target: Potential, max_tokens: int, width: int, *, budget: Budget | None = None
) -> Result:
    """Plain beam search over tokens (every child of every hypothesis is scored).

    Args:
        target: The potential whose weight ranks the hypotheses.
        max_tokens: Longest string considered.
        width: Beam width.
        budget: The :class:`~potentia.search.base.Budget` (``None``: no limits).

    Returns:
        A :class:`Result` with the finished strings best first (``log_weights`` = log
        target(x)); ``extra`` holds the tree and the spending.
    """
    check_int("width", width)
    return _beam(target, max_tokens, width, None, None, 0, 0.0, budget, "beam")


def deal(
    target: Potential,
    max_tokens: int,
    width: int,
    reward: Callable[[list[int]], float] | None = None,
    *,
    top_k: int | None = None,
    lookahead: int = 0,
    weight: float = 1.0,
    budget: Budget | None = None,
) -> Result:
    """DeAL: top-k proposals, a greedy lookahead, score log p + weight · reward.

    Args:
        target: The potential (LM × constraints) that proposes and scores tokens.
        max_tokens: Longest string considered.
        width: Beam width.
        reward: ``reward(context) -> float`` on the candidate extended by its lookahead
            (``None``: the lookahead string's ``target.prefix``, i.e. a pure lookahead).
        top_k: Next tokens proposed per hypothesis (``None``: all with positive weight).
        lookahead: Greedy lookahead length l (0: the reward sees the candidate itself).
        weight: λ, the reward's weight.
        budget: The :class:`~potentia.search.base.Budget` (``None``: no limits).

    Returns:
        A :class:`Result` with the finished strings best first by DeAL score; each
        node's lookahead is in ``extra["tree"]["info"]``.
    """
    check_int("width", width)
    check_int("top_k", top_k, none_ok=True)
    check_int("lookahead", lookahead, low=0)
    if isinstance(weight, bool) or not isinstance(weight, int | float | np.number):
        raise TypeError(f"`weight` is {weight!r}; pass a float (the reward's weight λ).")
    target = as_potential(target, "target")
    r = CountedFn(reward if reward is not None else target.prefix, "reward")
    return _beam(target, max_tokens, width, top_k, r, int(lookahead), float(weight), budget, "deal")


def _beam(target, max_tokens, width, top_k, reward, lookahead, weight, budget, name):
    target = as_potential(target, "target")
    check_int("max_tokens", max_tokens)
    meter = Meter(budget)
    V = len(target.vocab)
    tree = Tree(eos=V)
    tree.logp[0] = tree.score[0] = target.prefix([])
    beam = [0] if tree.logp[0] > -np.inf else []
    goals: list[int] = []
    stopped_by = None
    while beam and not stopped_by:
        cands = []
        lws = target.batch_logw_next([tree.context(b) for b in beam])
        for b, lw in zip(beam, lws):
            ctx = tree.context(b)
            plan = _candidates(target, ctx, lw, max_tokens, top_k)
            n_open = sum(1 for a, _ in plan if a != V)
            if reward is None:
                worst_tok, worst_r = len(plan), 0
            else:  # pay the worst case up front: full lookaheads, no cache hits
                worst_tok, worst_r = len(plan) + n_open * lookahead, len(plan)
            stopped_by = meter.blocked(expansions=1, lm_tokens=worst_tok, reward_calls=worst_r)
            if stopped_by:
                break
            tree.expand(b)
            n_tok, n_r = len(plan), 0
            for a, lp in plan:
                score, roll, picks = lp, [], 0
                if reward is not None:
                    if a != V:
                        roll, picks = _rollout(target, ctx + [a], lookahead, max_tokens)
                        n_tok += picks
                    end = ctx + ([a] if a != V else []) + roll
                    n_r += 0 if reward.cached(end) else 1
                    score += weight * reward(end)
                c = tree.add(b, [a], lp, score)
                if reward is not None:
                    tree.info[c] = {"lookahead": roll, "picks": picks if a != V else 0}
                (goals if a == V else cands).append(c)
            meter.spend(expansions=1, lm_tokens=n_tok, reward_calls=n_r)
        cands.sort(key=lambda c: (-tree.score[c], c))
        beam = cands[:width]
    objective = (
        "rank by log target(x)"
        if reward is None
        else f"rank by log target(x) + {weight:g}·reward(x + greedy lookahead of {lookahead})"
    )
    return search_result(target, tree, goals, meter, name, objective, stopped_by)


def _candidates(target, ctx, lw, max_tokens, top_k):
    """The children of one hypothesis: ``(token, logp)``; only EOS at the length bound."""
    V = len(target.vocab)
    base = target.prefix(ctx)
    cand = [V] if len(ctx) >= max_tokens else list(range(V + 1))
    cand = [a for a in cand if lw[a] > -np.inf]
    if top_k is not None:
        cand = sorted(cand, key=lambda a: (-lw[a], a))[:top_k]
    return [(a, target.complete(ctx) if a == V else base + lw[a]) for a in cand]


def _rollout(target, x, lookahead, max_tokens):
    """Greedy lookahead from ``x``: ``(tokens, picks)``; a pick of EOS ends it (and counts)."""
    V = len(target.vocab)
    roll: list[int] = []
    picks = 0
    while picks < lookahead and len(x) + len(roll) < max_tokens:
        nxt = target.logw_next(x + roll)
        best = int(np.argmax(nxt))
        if nxt[best] == -np.inf:
            break
        picks += 1
        if best == V:
            break
        roll.append(best)
    return roll, picks
