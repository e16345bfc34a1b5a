"""Exact enumeration of a target's strings up to a length bound.

For small vocabularies and short strings, every string with positive weight is listed,
which gives the exact normaliser Z and the exact posterior: the ground truth that the
engines' estimates are tested against.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from potentia.potentials.base import Potential, logsumexp

__all__ = ["ExactTarget", "enumerate_target"]


@dataclass
class ExactTarget:
    """The exactly enumerated target.

    Attributes:
        log_weights: ``complete(x)`` of every string ``x`` (token-index tuple) of length
            ``<= max_len`` with positive weight.
        max_len: The length bound used.
        log_z: log Σ_x target(x) over those strings.
    """

    log_weights: dict[tuple[int, ...], float]
    max_len: int
    log_z: float = field(init=False)

    def __post_init__(self) -> None:
        lw = np.array(list(self.log_weights.values()), dtype=float)
        self.log_z = float(logsumexp(lw)) if lw.size else -np.inf

    @property
    def posterior(self) -> dict[tuple[int, ...], float]:
        """Normalised probability of every string (empty if Z = 0)."""
        if self.log_z == -np.inf:
            return {}
        return {x: float(np.exp(w - self.log_z)) for x, w in self.log_weights.items()}

    def text_posterior(self, vocab) -> dict[str, float]:
        """Posterior over decoded strings (token sequences that spell the same text merge)."""
        out: dict[str, float] = defaultdict(float)
        for x, p in self.posterior.items():
            out[vocab.decode(x)] += p
        return dict(out)


def enumerate_target(potential: Potential, max_len: int, max_strings: int = 200_000) -> ExactTarget:
    """List every string of length ``<= max_len`` with positive weight under ``potential``.

    Branches whose next-token weight is zero are pruned; each listed string's weight is
    ``potential.complete(x)`` (computed directly, not from the next-token vectors, so the
    result also checks the potential's factorisation).

    Args:
        potential: The (unnormalised) target.
        max_len: Largest string length, in tokens.
        max_strings: Safety bound on the number of prefixes visited.

    Raises:
        ValueError: if ``max_len`` is negative or the enumeration would visit more than
            ``max_strings`` prefixes (use a smaller bound or vocabulary).
    """
    if not isinstance(max_len, int) or max_len < 0:
        raise ValueError(f"`max_len` is {max_len!r}; it must be an int >= 0.")
    V = len(potential.vocab)
    out: dict[tuple[int, ...], float] = {}
    stack: list[tuple[int, ...]] = [()] if potential.prefix([]) > -np.inf else []
    visited = 0
    while stack:
        x = stack.pop()
        visited += 1
        if visited > max_strings:
            raise ValueError(
                f"enumeration visited more than `max_strings`={max_strings} prefixes; "
                "lower `max_len` or use a smaller vocabulary."
            )
        lw = potential.logw_next(list(x))
        if lw[V] > -np.inf:
            c = potential.complete(list(x))
            if c > -np.inf:
                out[x] = c
        if len(x) < max_len:
            stack.extend(x + (a,) for a in np.flatnonzero(lw[:V] > -np.inf).tolist())
    return ExactTarget(out, max_len)
