"""What every search engine shares: budgets, the search tree, and the result.

Budgets (:class:`Budget`), each ``None`` for no limit, are checked *before* the work
they pay for, so no budget is ever exceeded, not even by one token:

* ``lm_tokens``: every token the engine creates in the search, whether kept or not: each
  child node (EOS children included) scored from a next-token vector, each token of a
  sampled unit or a sampled string (EOS included), each token of a lookahead rollout;
* ``expansions``: nodes expanded (a next-token vector read, or a batch of units sampled);
* ``reward_calls``: calls of the user's heuristic or reward function (cached answers are
  free and not counted);
* ``time_limit``: wall-clock seconds, checked before each expansion.

The search tree (:class:`Tree`) records every node: its parent, its token (``V`` = EOS;
a unit of several tokens for unit search), the log weight of its string under the target
(``logp``: ``prefix`` for an open node, ``complete`` for a goal), the engine's ranking
``score``, when it was created and when it was expanded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from potentia.potentials.base import Potential
from potentia.result import Result

__all__ = ["Budget", "Meter", "Tree", "CountedFn", "search_result"]


def _check_limit(name: str, value: object, integer: bool) -> None:
    if value is None:
        return
    kinds = int | np.integer if integer else int | float | np.number
    if isinstance(value, bool) or not isinstance(value, kinds):
        what = "an int >= 1" if integer else "a number of seconds > 0"
        raise TypeError(f"`{name}` is {value!r}; pass {what}, or None (no limit).")
    if not value > 0:
        what = "an int >= 1" if integer else "a number of seconds > 0"
        raise ValueError(f"`{name}` is {value}; pass {what}, or None (no limit).")


@dataclass
class Budget:
    """Search budgets; ``None`` means no limit (see the module docstring for what counts).

    Attributes:
        lm_tokens: LM tokens (sampled or scored candidates, rollouts).
        expansions: Node expansions.
        reward_calls: Heuristic / reward function calls.
        time_limit: Wall-clock seconds.
    """

    lm_tokens: int | None = None
    expansions: int | None = None
    reward_calls: int | None = None
    time_limit: float | None = None

    def __post_init__(self) -> None:
        _check_limit("lm_tokens", self.lm_tokens, True)
        _check_limit("expansions", self.expansions, True)
        _check_limit("reward_calls", self.reward_calls, True)
        _check_limit("time_limit", self.time_limit, False)


class Meter:
    """Counts what a run spends against a :class:`Budget`."""

    def __init__(self, budget: Budget | None) -> None:
        if budget is not None and not isinstance(budget, Budget):
            raise TypeError(
                f"`budget` is {type(budget).__name__}; pass potentia.search.Budget(...) or None."
            )
        self.budget = budget or Budget()
        self.spent = {"lm_tokens": 0, "expansions": 0, "reward_calls": 0}
        self.t0 = time.perf_counter()

    def room(self, name: str) -> float:
        """How much of budget ``name`` is left (``inf`` without a limit)."""
        limit = getattr(self.budget, name)
        return np.inf if limit is None else limit - self.spent[name]

    def blocked(self, lm_tokens: int = 0, expansions: int = 0, reward_calls: int = 0) -> str | None:
        """Which budget this work would overrun (a sentence), or ``None`` if it fits."""
        for name, k in (
            ("expansions", expansions),
            ("lm_tokens", lm_tokens),
            ("reward_calls", reward_calls),
        ):
            if k > self.room(name):
                return (
                    f"`{name}`={getattr(self.budget, name)} would be exceeded "
                    f"(spent {self.spent[name]}, the next step needs {k})"
                )
        t = self.budget.time_limit
        if t is not None and time.perf_counter() - self.t0 >= t:
            return f"`time_limit`={t:g} s ran out"
        return None

    def spend(self, lm_tokens: int = 0, expansions: int = 0, reward_calls: int = 0) -> None:
        """Record work (callers check :meth:`blocked` first)."""
        self.spent["lm_tokens"] += int(lm_tokens)
        self.spent["expansions"] += int(expansions)
        self.spent["reward_calls"] += int(reward_calls)

    def report(self) -> dict:
        """Spent amounts, the limits and the wall time."""
        return {
            **self.spent,
            "wall_time": time.perf_counter() - self.t0,
            "limits": {
                "lm_tokens": self.budget.lm_tokens,
                "expansions": self.budget.expansions,
                "reward_calls": self.budget.reward_calls,
                "time_limit": self.budget.time_limit,
            },
        }


class CountedFn:
    """A user function of a context (heuristic, reward), cached per context and counted.

    Args:
        fn: ``fn(context: list[int]) -> float``.
        name: Its public argument name (for error messages).
    """

    def __init__(self, fn: Callable[[list[int]], float], name: str) -> None:
        if not callable(fn):
            raise TypeError(
                f"`{name}` is {fn!r}; pass a function of a token list returning a float."
            )
        self.fn, self.name = fn, name
        self.cache: dict[tuple[int, ...], float] = {}

    def cached(self, context: list[int]) -> bool:
        """Whether ``context`` is answered without a call."""
        return tuple(context) in self.cache

    def __call__(self, context: list[int]) -> float:
        """``fn(context)``, from the cache when seen before."""
        key = tuple(context)
        if key not in self.cache:
            v = self.fn(list(context))
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"`{self.name}` returned {v!r}; it must return a float.") from None
            if np.isnan(v):
                raise ValueError(f"`{self.name}` returned NaN for context {list(context)}.")
            self.cache[key] = v
        return self.cache[key]


@dataclass
class Tree:
    """The search tree; node 0 is the root (the empty string).

    Attributes:
        parent: Parent id of every node (``-1`` for the root).
        tokens: The tokens each node adds to its parent's string (``[V]`` = EOS: a goal).
        logp: Log weight of the node's string under the target.
        score: The engine's ranking score (A*: ``-f``; beam: ``logp``; DeAL: ``logp`` +
            λ·reward of the lookahead; best-of-N: the reward).
        created: Number of expansions done when the node was created.
        expanded: The node's place in the expansion order, or ``-1``.
        order: Node ids in the order they were expanded.
        info: Per-node extras (DeAL: the lookahead rollout).
    """

    eos: int
    parent: list[int] = field(default_factory=lambda: [-1])
    tokens: list[list[int]] = field(default_factory=lambda: [[]])
    logp: list[float] = field(default_factory=lambda: [0.0])
    score: list[float] = field(default_factory=lambda: [0.0])
    created: list[int] = field(default_factory=lambda: [0])
    expanded: list[int] = field(default_factory=lambda: [-1])
    order: list[int] = field(default_factory=list)
    info: dict[int, dict] = field(default_factory=dict)

    def add(self, parent: int, tokens: list[int], logp: float, score: float) -> int:
        """A new child of ``parent``; returns its id."""
        self.parent.append(parent)
        self.tokens.append(list(tokens))
        self.logp.append(float(logp))
        self.score.append(float(score))
        self.created.append(len(self.order))
        self.expanded.append(-1)
        return len(self.parent) - 1

    def expand(self, node: int) -> None:
        """Record that ``node`` is expanded now."""
        self.expanded[node] = len(self.order)
        self.order.append(node)

    def is_goal(self, node: int) -> bool:
        """Whether the node ends with EOS (a finished string)."""
        t = self.tokens[node]
        return bool(t) and t[-1] == self.eos

    def context(self, node: int) -> list[int]:
        """The node's string (token indices, EOS excluded)."""
        parts = []
        while node > 0:
            parts.append(self.tokens[node])
            node = self.parent[node]
        out = [t for part in reversed(parts) for t in part]
        return out[:-1] if out and out[-1] == self.eos else out

    def depth(self, node: int) -> int:
        """Number of tokens in the node's string (EOS excluded)."""
        return len(self.context(node))

    def as_dict(self) -> dict:
        """The tree as plain lists (what ``Result.extra["tree"]`` holds)."""
        return {
            "parent": list(self.parent),
            "tokens": [list(t) for t in self.tokens],
            "logp": list(self.logp),
            "score": list(self.score),
            "created": list(self.created),
            "expanded": list(self.expanded),
            "order": list(self.order),
            "goal": [self.is_goal(i) for i in range(len(self.parent))],
            "info": dict(self.info),
        }


def search_result(
    target: Potential,
    tree: Tree,
    goals: list[int],
    meter: Meter,
    method: str,
    objective: str,
    stopped_by: str | None,
) -> Result:
    """The run as a :class:`Result`: goals best first, with the tree and the spending.

    ``log_weights`` hold the goals' scores (the engine's objective, not importance
    weights), so ``Result.posterior`` is only the softmax of the scores over the strings
    found, not the target's posterior; ``log_z`` is NaN: a search estimates no normaliser.
    """
    goals = sorted(goals, key=lambda g: (-tree.score[g], g))
    contexts = [tree.context(g) for g in goals]
    n = len(goals)
    msg = f"{method}: {n} finished string{'s' if n != 1 else ''}"
    msg += f", best score {tree.score[goals[0]]:.6g}" if n else ""
    msg += f"; spent {meter.spent}"
    if stopped_by:
        msg = f"stopped early: {stopped_by}; {msg}"
    report = meter.report()
    return Result(
        contexts=contexts,
        texts=[target.vocab.decode(c) for c in contexts],
        log_weights=np.array([tree.score[g] for g in goals], dtype=float),
        log_z=float("nan"),
        status=["finished"] * n,
        n_steps=meter.spent["expansions"],
        wall_time=report["wall_time"],
        method=method,
        message=msg,
        extra={
            "scores": [tree.score[g] for g in goals],
            "logp": [tree.logp[g] for g in goals],
            "nodes": goals,
            "tree": tree.as_dict(),
            "spent": report,
            "objective": objective,
            "stopped_by": stopped_by,
        },
    )
