"""The token-sampler contract.

A token sampler proposes one next token for every context of a batch and returns a log
weight that makes the proposal **properly weighted** for its target's next-token weights:

    E[ exp(log_w) · 1{token = a} ] = exp(target.logw_next(x)[a])     for every a ∈ A ∪ {EOS}

A row whose target vector is all zero gets ``log_w = -inf`` (the particle dies).
Every random choice goes through ``rng`` or, for exact-enumeration tests, an injected
``draw(probs) -> index`` callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from potentia.potentials.base import Potential, PotentialState

__all__ = ["TokenSampler", "SampleOut", "Draw", "rng_draw"]

Draw = Callable[[np.ndarray], int]


def rng_draw(rng: np.random.Generator) -> Draw:
    """A ``draw`` that picks index ``i`` with probability ``probs[i]`` using ``rng``."""

    def draw(probs: np.ndarray) -> int:
        c = np.cumsum(probs)
        return int(min(np.searchsorted(c, rng.random() * c[-1], side="right"), len(c) - 1))

    return draw


@dataclass
class SampleOut:
    """One proposal per row.

    Attributes:
        tokens: Proposed token per row (``V`` = EOS).
        log_w: Properly weighted log weight per row (``-inf`` where the row died).
        target_evals: Rows for which a full next-token vector of the target was computed.
        constraint_checks: Single-token constraint evaluations made.
        info: Sampler-specific diagnostics.
    """

    tokens: np.ndarray
    log_w: np.ndarray
    target_evals: int = 0
    constraint_checks: int = 0
    info: dict = field(default_factory=dict)


class TokenSampler:
    """Base class: proposes next tokens for a batch, properly weighted for ``target``."""

    target: Potential

    def init_state(self, n: int) -> PotentialState:
        """The batch state of ``n`` empty contexts that :meth:`sample` expects."""
        return self.target.init_state(n)

    def sample(
        self,
        state: PotentialState,
        rng: np.random.Generator,
        draw: Draw | None = None,
    ) -> SampleOut:
        """Propose one next token for every row of ``state``.

        Args:
            state: The batch of contexts (from :meth:`init_state`, advanced by the engine).
            rng: Source of randomness.
            draw: Optional ``draw(probs) -> index`` used instead of ``rng`` for every random
                choice (exact enumeration in tests).
        """
        raise NotImplementedError
