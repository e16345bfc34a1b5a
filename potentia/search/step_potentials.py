r"""Step potentials: rewards, verifiers and PRMs evaluated at unit boundaries.

A step potential scores the *steps* of a string: its units up to each boundary
(:mod:`potentia.samplers.units`), decoded to text. The user's function ``score(steps)``
(or ``score(prompt, steps)`` for a PRM adapter) returns r ≥ 0 for a list of step texts;
it is only called at boundaries, once per distinct list of steps (cached per prefix),
and, with ``batched=True``, once per batch of new step lists. Two modes:

* ``mode="ratio"`` (a *critic*, genlm-control's convention): ``prefix(x) = log r(closed
  steps of x)`` (0 before the first boundary) and ``complete(x) = log r(all steps of x)``
  (the unfinished last step included). In SMC the incremental weight at a boundary is
  ``r(x_{1:t}) / r(x_{1:t-1})``, the product telescopes, and the run targets
  ``LM(x) · r(x)``: the final score only.
* ``mode="product"`` (particle filtering with a PRM, Puri et al. 2025): ``prefix(x) =
  Σ_j log r(steps_{1:j})`` over the closed steps, and ``complete`` adds the last,
  unfinished step. The target is ``LM(x) · Π_j r(x_{1:j})``: every partial trajectory's
  score multiplies in, as when each step resamples ∝ r. For resampling ∝ the odds
  ``r / (1 - r)``, pass the odds as the score.

Used as a ``twist`` instead of a critic, either mode only guides resampling and the run
targets the LM (× constraints) itself.

Soundness (the potential law φ̄(x) = 0 ⇒ φ(x y) = 0): in ``ratio`` mode, r = 0 for a
list of steps must mean r = 0 for every extension (a dead trajectory stays dead), as a
PRM's zero or a verifier's rejection does. ``product`` mode is sound for any r.

A *verifier* is a hard step potential (``r ∈ {0, 1}``; in ``ratio`` mode). Soundness is
the verifier's promise: it may reject a list of steps only if no continuation is valid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from potentia.potentials.base import ContextState, Potential, Vocabulary
from potentia.samplers.units import as_boundary

__all__ = ["StepPotential", "reward", "verifier", "prm", "lm_judge", "JUDGE_TEMPLATE"]


class StepPotential(Potential):
    r"""A potential over ``vocab`` that scores steps at unit boundaries.

    Args:
        vocab: The token vocabulary (usually the LM's).
        score: ``score(steps: list[str]) -> float`` with r ≥ 0 (``bool`` for verifiers),
            or ``score(prompt, steps)`` when ``prompt`` is given, or with
            ``batched=True`` a function of a list of step lists returning one r each.
        unit: The boundary: a delimiter (default ``"\n"``), a token count, or a Boundary.
        mode: ``"ratio"`` or ``"product"`` (module docstring).
        hard: Whether r is in {0, 1} (a verifier).
        prompt: Passed as the first argument of ``score`` (a PRM adapter).
        batched: ``score`` takes a list of step lists.

    Attributes:
        calls: Number of calls of ``score`` made (cached answers are not calls).
        evaluated: Number of distinct step lists scored.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        score: Callable[..., Any],
        unit: object = "\n",
        *,
        mode: str = "ratio",
        hard: bool = False,
        prompt: Any = None,
        batched: bool = False,
    ) -> None:
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"`vocab` is {type(vocab).__name__}; pass a Vocabulary (lm.vocab).")
        if not callable(score):
            raise TypeError(f"`score` is {score!r}; pass a function of a list of step texts.")
        if mode not in ("ratio", "product"):
            raise ValueError(f"`mode` is {mode!r}; choose 'ratio' (critic) or 'product' (PRM PF).")
        self.vocab = vocab
        self.boundary = as_boundary(unit)
        self.score, self.mode, self.hard = score, mode, bool(hard)
        self.prompt, self.batched = prompt, bool(batched)
        self.cache: dict[tuple[str, ...], float] = {}
        self.calls = 0

    @property
    def evaluated(self) -> int:
        """Number of distinct step lists scored so far."""
        return len(self.cache)

    # ----- steps and scores -------------------------------------------------------
    def steps(self, context: Sequence[int]) -> tuple[list[str], str | None]:
        """The closed steps of ``context`` as texts, and the unfinished last one (or None)."""
        closed, unit = [], []
        for t in context:
            unit.append(int(t))
            if self.boundary.ends(self.vocab, unit):
                closed.append(self.vocab.decode(unit))
                unit = []
        return closed, (self.vocab.decode(unit) if unit else None)

    def _log_r(self, keys: list[tuple[str, ...]]) -> np.ndarray:
        """log r of each step list (cached; one batched call for the new ones)."""
        new = list(dict.fromkeys(k for k in keys if k and k not in self.cache))
        if new:
            if self.batched:
                self.calls += 1
                vals = list(self.score([list(k) for k in new]))
                if len(vals) != len(new):
                    raise ValueError(
                        f"`score` returned {len(vals)} values for {len(new)} step lists; "
                        "with batched=True it must return one per list."
                    )
            else:
                vals = []
                for k in new:
                    self.calls += 1
                    args = (self.prompt, list(k)) if self.prompt is not None else (list(k),)
                    vals.append(self.score(*args))
            for k, v in zip(new, vals):
                self.cache[k] = _log(v, self.hard)
        return np.array([self.cache[k] if k else 0.0 for k in keys], dtype=float)

    def _keys(self, context: list[int], final: bool) -> list[tuple[str, ...]]:
        closed, rest = self.steps(context)
        steps = closed + ([rest] if final and rest is not None else [])
        if self.mode == "ratio":
            return [tuple(steps)]
        return [tuple(steps[: j + 1]) for j in range(len(steps))]

    def _prefix(self, context: list[int]) -> float:
        return float(self._log_r(self._keys(context, False)).sum())

    def _complete(self, context: list[int]) -> float:
        return float(self._log_r(self._keys(context, True)).sum())

    def batch_prefix(self, contexts):  # noqa: D102
        return self._batched(contexts, False)

    def batch_complete(self, contexts):  # noqa: D102
        return self._batched(contexts, True)

    def _batched(self, contexts, final: bool) -> np.ndarray:
        keys = [self._keys(self._as_context(c), final) for c in contexts]
        self._log_r([k for ks in keys for k in ks])  # one batched call for all new ones
        return np.array([self._log_r(ks).sum() for ks in keys], dtype=float)

    def init_state(self, n: int) -> _StepState:  # noqa: D102
        return _StepState(self, [[] for _ in range(n)])


class _StepState(ContextState):
    """Answers single-token queries with only the scores they need (no V-wide vector)."""

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:  # noqa: D102
        if self._cache is not None:
            return super().logw_tokens(rows, tokens)
        pot: StepPotential = self.potential
        V = len(pot.vocab)
        ctxs = [self._contexts[int(r)] for r in rows]
        base = pot.batch_prefix(ctxs)
        ends = [c for c, t in zip(ctxs, tokens) if int(t) == V]
        nexts = [c + [int(t)] for c, t in zip(ctxs, tokens) if int(t) != V]
        fin = iter(pot.batch_complete(ends)) if ends else iter(())
        nxt = iter(pot.batch_prefix(nexts)) if nexts else iter(())
        out = np.array([next(fin) if int(t) == V else next(nxt) for t in tokens], dtype=float)
        with np.errstate(invalid="ignore"):
            return np.where(base == -np.inf, -np.inf, out - base)


def _log(v: Any, hard: bool) -> float:
    try:
        r = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"`score` returned {v!r}; it must return a number r >= 0.") from None
    if np.isnan(r) or r < 0:
        raise ValueError(f"`score` returned {r}; it must return a number r >= 0 (not NaN).")
    if hard and r not in (0.0, 1.0):
        raise ValueError(f"a verifier returned {r}; it must return True/False (or 1/0).")
    with np.errstate(divide="ignore"):
        return float(np.log(r))


def reward(
    fn: Callable[..., Any],
    vocab: Vocabulary,
    unit: object = "\n",
    *,
    mode: str = "ratio",
    batched: bool = False,
) -> StepPotential:
    """A soft step potential from ``fn(steps) -> r >= 0`` (see :class:`StepPotential`)."""
    return StepPotential(vocab, fn, unit, mode=mode, batched=batched)


def verifier(
    fn: Callable[..., Any],
    vocab: Vocabulary,
    unit: object = "\n",
    *,
    hard: bool = True,
    batched: bool = False,
) -> StepPotential:
    """A step verifier ``fn(steps) -> bool``: hard (weights 0/1), or soft with ``hard=False``."""
    return StepPotential(vocab, fn, unit, mode="ratio", hard=hard, batched=batched)


def prm(
    fn: Callable[[Any, list[str]], float],
    vocab: Vocabulary,
    prompt: Any,
    unit: object = "\n\n",
    *,
    mode: str = "ratio",
) -> StepPotential:
    """A PRM adapter: any ``fn(prompt, steps) -> r in [0, 1]`` as a step potential."""
    return StepPotential(vocab, fn, unit, mode=mode, prompt=prompt)


#: The default judge prompt of :func:`lm_judge` (``{question}`` and ``{steps}`` are filled in).
JUDGE_TEMPLATE = (
    "Question: {question}\nPartial solution:\n{steps}\n"
    "Is every step of the partial solution correct so far? Answer Yes or No.\nAnswer:"
)


def lm_judge(
    model: Any,
    template: str = JUDGE_TEMPLATE,
    yes: str = " Yes",
    no: str = " No",
    chat: bool = False,
) -> Callable[[Any, list[str]], float]:
    """An LM-as-judge PRM: r = P(yes) / (P(yes) + P(no)) after a judge prompt.

    The judge is any model with ``potential(text)`` and ``encode(text)`` (``potentia.LM``,
    ``ToyLM``): the prompt is ``template`` with the question and the steps so far, and r
    compares the next-token probabilities of the first token of ``yes`` and of ``no``.
    Pass the result to :func:`prm` (the question is its ``prompt``).

    Args:
        model: The judging model (e.g. the embedded model itself).
        template: A format string with ``{question}`` and ``{steps}``.
        yes: The text of a "yes" answer (its first token is used).
        no: The text of a "no" answer.
        chat: Wrap the judge prompt in the model's chat template (``potentia.LM`` only).

    Raises:
        TypeError/ValueError: if ``model`` cannot judge or ``yes``/``no`` do not tokenize.
    """
    if not hasattr(model, "potential") or not hasattr(model, "encode"):
        raise TypeError(
            f"`model` is {type(model).__name__}; pass a model with `potential` and `encode` "
            "such as potentia.LM.default()."
        )
    if "{steps}" not in template:
        raise ValueError("`template` must contain '{steps}' (and usually '{question}').")
    ids = []
    for name, text in (("yes", yes), ("no", no)):
        toks = model.encode(text)
        if not toks:
            raise ValueError(f"`{name}` is {text!r}, which has no tokens; pass a word.")
        ids.append(int(toks[0]))
    if ids[0] == ids[1]:
        raise ValueError(f"`yes` {yes!r} and `no` {no!r} start with the same token.")

    def judge(question: Any, steps: list[str]) -> float:
        text = template.format(question=question, steps="".join(steps))
        pot = model.potential(text, chat=True) if chat else model.potential(text)
        lw = pot.logw_next([])
        a, b = lw[ids[0]], lw[ids[1]]
        if a == b == -np.inf:
            return 0.5
        m = max(a, b)
        return float(np.exp(a - m) / (np.exp(a - m) + np.exp(b - m)))

    return judge
