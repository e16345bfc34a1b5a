r"""ASAp grammar-aligned sampling and CARS exact rejection, on one persistent θ trie.

Both draw whole strings from an LM P under a hard constraint with language L; the target is

    P^L(x) = P(x) · 1[x ∈ L] / Z,        Z = Σ_{x ∈ L} P(x).

**ASAp** (adaptive sampling with approximate expected futures; Park et al., "Grammar-Aligned
Decoding", NeurIPS 2024) draws each token from P(t | w) · θ(w t), normalised, where θ is the
trie's over-approximation of the expected future grammaticality (see
:mod:`potentia.asap.trie`). Every sample expands the nodes it visits and tightens θ, so
the sampling distribution converges to P^L as samples accumulate; early samples are biased
(an unexplored θ = 1 is the locally constrained decoder's view).

**CARS** (constrained adaptive rejection sampling; Parys et al., 2025) walks the same trie
but never renormalises: at node w, reached with budget θ_old(w) (the value read when its
parent chose it), it continues with probability Σ_t P(t | w) θ(w t) / θ_old(w) and otherwise
rejects the whole attempt. An attempt that reaches EOS returns x with probability
P(x) / θ(root), exactly proportional to the target, so accepted samples are i.i.d. exact
draws; rejections tighten θ (a rejected branch learns its mass), so acceptance rises.

**LCD** (locally constrained decoding, mask and renormalise) is the biased baseline: it
draws from P(t | w) · 1[t allowed] renormalised, ignoring θ.

Each method continues the same trie across calls: ask for more samples and it keeps
converging. Samplers over a shared trie (``ASAp(trie=...)``) pool their LM calls.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from potentia.asap.trie import Trie
from potentia.asap.twist import ThetaTwist, TrieSampler, twisted_smc
from potentia.potentials.base import Potential, logsumexp
from potentia.result import Result
from potentia.samplers.base import Draw, rng_draw
from potentia.smc.engine import validate_budgets

__all__ = [
    "ASAp",
    "CARS",
    "LCD",
    "TrieMethod",
    "Trie",
    "ThetaTwist",
    "TrieSampler",
    "twisted_smc",
]


class TrieMethod:
    """Base of the whole-string samplers that walk a :class:`Trie`.

    Give either ``lm`` and ``constraint`` (a fresh trie is built for this pair) or
    ``trie`` (continue an existing one, possibly shared with another method).

    Args:
        lm: The LM conditioned on its prompt (normalised next-token log-probabilities).
        constraint: A hard constraint over the LM's tokens (byte-level ones are lifted).
        max_tokens: Longest string of the target, in tokens.
        trie: An existing trie to continue instead of ``lm``/``constraint``.
    """

    name = "trie"

    def __init__(
        self,
        lm: Potential | None = None,
        constraint: Potential | None = None,
        *,
        max_tokens: int = 64,
        trie: Trie | None = None,
    ) -> None:
        if trie is not None:
            if lm is not None or constraint is not None:
                raise ValueError(
                    "pass either `trie` or `lm` and `constraint`, not both: a trie already "
                    "belongs to one (LM, prompt, constraint)."
                )
            if not isinstance(trie, Trie):
                raise TypeError(f"`trie` is {type(trie).__name__}; pass a potentia Trie.")
            self.trie = trie
        else:
            if lm is None or constraint is None:
                raise ValueError("`lm` and `constraint` are both required when no `trie` is given.")
            self.trie = Trie(lm, constraint, max_tokens=max_tokens)
        self._attempts = self._tokens = 0
        self._z_sum = 0.0

    @classmethod
    def from_model(
        cls, model: Any, prompt: Any, constraint: Potential, max_tokens: int = 64
    ) -> TrieMethod:
        """Build a sampler (with its own trie) for ``model`` conditioned on ``prompt``.

        Args:
            model: A model object with ``.potential(prompt)`` (``potentia.LM``, ``ToyLM``).
            prompt: The prompt.
            constraint: A hard constraint (byte-level ones are lifted to the model's tokens).
            max_tokens: Longest string of the target, in tokens.
        """
        if not hasattr(model, "potential"):
            raise TypeError(
                f"`model` is {type(model).__name__}; pass a model such as potentia.LM.default() "
                "or a ToyLM (or build the sampler from a potential with the constructor)."
            )
        return cls(model.potential(prompt), constraint, max_tokens=max_tokens)

    # ----- the walk -----------------------------------------------------------------
    def _attempt(self, draw: Draw) -> tuple[list[int] | None, str]:
        """One walk from the root: ``(tokens, "ok")`` or ``(None, why)``."""
        raise NotImplementedError

    def attempt(
        self, rng: np.random.Generator | int | None = None, draw: Draw | None = None
    ) -> list[int] | None:
        """One walk from the root (tightening the trie): a string, or ``None`` if it failed.

        For :class:`CARS` a walk fails by rejection; for the others, at a dead end.

        Args:
            rng: Generator or seed for every random choice.
            draw: Optional ``draw(probs) -> index`` replacing ``rng`` (exact enumeration).
        """
        if draw is None:
            rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            draw = rng_draw(rng)
        return self._attempt(draw)[0]

    def sample(
        self,
        n: int,
        rng: np.random.Generator | int | None = None,
        draw: Draw | None = None,
        max_attempts: int | None = None,
        *,
        max_lm_calls: int | None = None,
        time_limit: float | None = None,
        progress: bool | None = False,
    ) -> Result:
        """Draw ``n`` strings, continuing (and tightening) the trie.

        The budgets are checked before each walk; when one runs out the run returns the
        strings drawn so far, and the message and ``extra["stopped_by"]`` name the budget.

        Args:
            n: Number of strings to return.
            rng: Generator or seed for every random choice.
            draw: Optional ``draw(probs) -> index`` replacing ``rng`` (exact enumeration).
            max_attempts: Stop after this many walks; ``None``: no limit.
            max_lm_calls: Stop once this call has made this many LM calls (node
                expansions); ``None``: no limit.
            time_limit: Stop after this many seconds; ``None``: no limit.
            progress: Progress bar over the strings (``None``: only for runs over 2 s,
                never under pytest).

        Returns:
            A :class:`~potentia.result.Result` with equal weights. ``extra`` holds
            ``lm_calls_after`` (the trie's cumulative LM calls after each string),
            ``attempts`` (walks started), ``failures`` (walks that ended without a string:
            rejections for CARS, dead ends otherwise), ``tokens_generated`` (decoding steps,
            i.e. what an uncached decoder would pay), ``log_theta_root`` and
            ``stopped_by`` (the budget that ran out, or ``None``).
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"`n` is {n!r}; pass the number of samples as an int >= 0.")
        if max_attempts is not None and (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, int | np.integer)
            or max_attempts < 1
        ):
            raise ValueError(f"`max_attempts` is {max_attempts!r}; pass an int >= 1, or None.")
        validate_budgets(time_limit, max_lm_calls)
        if draw is None:
            rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            draw = rng_draw(rng)
        t0 = time.perf_counter()
        calls0 = self.trie.lm_calls
        contexts: list[list[int]] = []
        lm_after: list[int] = []
        failures: dict[str, int] = {}
        self._attempts = self._tokens = 0
        self._z_sum = 0.0
        stopped_by = None
        bar = _progress(progress, n, self.name)
        try:
            while len(contexts) < n:
                stopped_by = self._budget_out(
                    max_attempts, max_lm_calls, time_limit, calls0, t0, len(contexts), n
                )
                if stopped_by:
                    break
                self._attempts += 1
                x, why = self._attempt(draw)
                if bar is not None:
                    bar.set_postfix(
                        attempts=self._attempts, lm_calls=self.trie.lm_calls - calls0, refresh=False
                    )
                if x is None:
                    failures[why] = failures.get(why, 0) + 1
                    continue
                contexts.append(x)
                lm_after.append(self.trie.lm_calls)
                if bar is not None:
                    bar.update(1)
        except KeyboardInterrupt:
            stopped_by = f"interrupted (KeyboardInterrupt) after {len(contexts)} of {n} strings"
        finally:
            if bar is not None:
                bar.close()
        return self._result(contexts, lm_after, failures, calls0, t0, stopped_by)

    def _budget_out(self, max_attempts, max_lm_calls, time_limit, calls0, t0, got, n):
        """The budget that ran out, as a sentence with the fix, or ``None``."""
        short = f"{got} of {n} strings drawn"
        if max_attempts is not None and self._attempts >= max_attempts:
            return f"`max_attempts`={max_attempts} ran out ({short}; raise `max_attempts`)"
        calls = self.trie.lm_calls - calls0
        if max_lm_calls is not None and calls >= max_lm_calls:
            return (
                f"`max_lm_calls`={max_lm_calls} ran out after {self._attempts} attempts "
                f"({short}; raise `max_lm_calls`, or use method='smc')"
            )
        elapsed = time.perf_counter() - t0
        if time_limit is not None and elapsed >= time_limit:
            return (
                f"`time_limit`={time_limit:g} s ran out after {self._attempts} attempts "
                f"({short}; raise `time_limit`)"
            )
        return None

    def _result(self, contexts, lm_after, failures, calls0, t0, stopped_by=None) -> Result:
        n = len(contexts)
        vocab = self.trie.vocab
        log_z, note = self._log_z()
        fails = sum(failures.values())
        message = (
            f"{self.name}: {n} strings in {self._attempts} attempts ({fails} failed: "
            f"{failures or 'none'}), {self.trie.lm_calls - calls0} new LM calls, "
            f"trie of {len(self.trie)} nodes; {note}"
        )
        if stopped_by:
            message = f"stopped early: {stopped_by}; {message}"
        return Result(
            contexts=contexts,
            texts=[vocab.decode(c) for c in contexts],
            log_weights=np.zeros(n),
            log_z=log_z,
            status=["finished"] * n,
            n_steps=self._tokens,
            target_evals=self.trie.lm_calls - calls0,
            wall_time=time.perf_counter() - t0,
            method=self.name,
            message=message,
            extra={
                "lm_calls_after": np.array(lm_after, dtype=np.int64),
                "attempts": self._attempts,
                "failures": failures,
                "tokens_generated": self._tokens,
                "log_theta_root": self.trie.root_logtheta,
                "stopped_by": stopped_by,
            },
        )

    def _log_z(self) -> tuple[float, str]:
        return float("nan"), (
            "no estimate of Z (extra['log_theta_root'] is an upper bound on log Z)"
        )

    def _walk(self, draw: Draw, use_theta: bool) -> tuple[list[int] | None, str]:
        """Descend from the root drawing from P·θ (or P·mask); dead ends return ``None``."""
        trie, V = self.trie, len(self.trie.vocab)
        node, out = trie.root, []
        while True:
            trie.expand(node)
            w = (
                node.weights()
                if use_theta
                else np.where(node.logtheta > -np.inf, node.logp, -np.inf)
            )
            tot = logsumexp(w) if len(w) else -np.inf
            if tot == -np.inf:
                return None, "dead end"
            k = int(draw(np.exp(w - tot)))
            tok = int(node.tokens[k])
            self._tokens += 1
            if tok == V:
                return out, "ok"
            out.append(tok)
            node = trie.child(node, tok)


class ASAp(TrieMethod):
    """Adaptive sampling with approximate expected futures (grammar-aligned decoding).

    Each string is drawn token by token from P(t | w) θ(w t) / Σ_u P(u | w) θ(w u); the
    trie expands every node visited and tightens θ bottom-up. The sampling distribution
    converges to the constrained target as the trie fills (it is exact once every
    reachable node is expanded); the strings drawn before that are biased.
    """

    name = "asap"

    def _attempt(self, draw: Draw) -> tuple[list[int] | None, str]:
        return self._walk(draw, use_theta=True)


class LCD(TrieMethod):
    """Locally constrained decoding (mask and renormalise): the biased baseline.

    Draws from P(t | w) · 1[t allowed] renormalised at every step, never using θ, so its
    distribution is Π_i P(x_i | x_<i) / P(allowed | x_<i) rather than the target. The trie
    only caches the LM calls (``tokens_generated`` counts what an uncached decoder pays).
    A walk into a dead end (an allowed prefix with no allowed continuation) is retried.
    """

    name = "lcd"

    def _attempt(self, draw: Draw) -> tuple[list[int] | None, str]:
        return self._walk(draw, use_theta=False)


class CARS(TrieMethod):
    """Exact rejection sampling on the θ trie (constrained adaptive rejection sampling).

    Every accepted string is an exact, independent draw from P(x) 1[x ∈ L] / Z. An attempt
    is rejected with the probability mass that θ over-estimated at the nodes it visits,
    and θ is tightened there, so later attempts are accepted more often.
    ``Result.log_z`` is a consistent estimate of log Z: the mean over attempts of
    θ(root at the attempt's start) · 1[accepted].
    """

    name = "cars"

    def _attempt(self, draw: Draw) -> tuple[list[int] | None, str]:
        trie, V = self.trie, len(self.trie.vocab)
        budget = trie.root_logtheta
        theta_start = budget
        node, out = trie.root, []
        while True:
            trie.expand(node)
            w = node.weights()
            tot = logsumexp(w) if len(w) else -np.inf
            go = float(np.exp(min(tot - budget, 0.0))) if tot > -np.inf else 0.0
            if go < 1.0 and draw(np.array([go, 1.0 - go])) != 0:
                return None, "rejected"
            k = int(draw(np.exp(w - tot)))
            tok = int(node.tokens[k])
            self._tokens += 1
            if tok == V:
                self._z_sum += float(np.exp(theta_start))
                return out, "ok"
            budget = float(w[k] - node.logp[k])  # θ(w t) as read when choosing t
            out.append(tok)
            node = trie.child(node, tok)

    def sample(  # noqa: D102
        self,
        n: int,
        rng: np.random.Generator | int | None = None,
        draw: Draw | None = None,
        max_attempts: int | None = None,
        **budgets,
    ) -> Result:
        out = super().sample(n, rng, draw, max_attempts, **budgets)
        out.extra["accept_rate"] = len(out.contexts) / max(out.extra["attempts"], 1)
        return out

    def _log_z(self) -> tuple[float, str]:
        if self._attempts == 0 or self._z_sum == 0:
            return -np.inf, "no attempt accepted, log Z estimate -inf"
        return float(np.log(self._z_sum / self._attempts)), "log_z: consistent estimate"


def _progress(progress: bool | None, total: int, name: str):
    if progress is False or (progress is None and "PYTEST_CURRENT_TEST" in os.environ):
        return None  # off in tests unless asked for explicitly
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=name, unit="str", delay=0 if progress else 2.0, leave=False)
