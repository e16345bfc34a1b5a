"""The exact intersection of byte-automaton constraints.

``a & b`` multiplies two prefix tests: sound, but a prefix that each constraint alone could
complete may have no completion that satisfies both (``contains("abc") & length(max=5)``
accepts the prefix ``"xyz"``, though no text of at most 5 characters starts with it and
contains "abc"). :func:`intersect` builds the product automaton of the operands instead and
trims it, so its prefix test is the exact one of the intersection. One exception: a
``length(min=...)`` minimum is checked at EOS only, so with it prefixes are sound but a
prefix that cannot reach the minimum inside the other operands' language is not cut early.
"""

from __future__ import annotations

from potentia.constraints.automaton import NO_BUDGET, AutomatonPotential
from potentia.constraints.bytedfa import INF
from potentia.potentials.base import Vocabulary

__all__ = ["intersect"]


def intersect(*constraints: AutomatonPotential, max_states: int = 1 << 20) -> AutomatonPotential:
    """One byte automaton accepting exactly what every one of ``constraints`` accepts.

    Works for the automaton-backed builders (``excludes``, ``contains``, ``length``,
    ``span_of``, ``graph_path``, ``syllables``). At most one operand may carry a length
    budget (``length(max=...)``, ``contains(..., max_length=...)``): two budgets would need
    two counters.

    Args:
        *constraints: Two or more byte-level :class:`AutomatonPotential`.
        max_states: Refuse products larger than this many states.

    Returns:
        A hard byte-level potential with exact prefix weights for the intersection.

    Raises:
        TypeError: if an operand is not a byte-level automaton constraint.
        ValueError: with fewer than two operands, two budgets, past ``max_states`` states,
            or when no text satisfies them all.
    """
    if len(constraints) < 2:
        raise ValueError("`constraints`: intersect needs at least two automaton constraints.")
    bytes256 = Vocabulary.bytes256()
    budgeted = []
    for i, c in enumerate(constraints):
        if not isinstance(c, AutomatonPotential) or c.vocab != bytes256:
            raise TypeError(
                f"`constraints[{i}]` is {c!r}; intersect takes byte-level automaton "
                "constraints (excludes, contains, length, span_of, graph_path, syllables); "
                "combine others with `&`."
            )
        if c.budget != NO_BUDGET or c.min_used or c.token_cost or c.dfa.cost.any():
            budgeted.append(i)
    if len(budgeted) > 1:
        raise ValueError(
            f"`constraints[{budgeted[0]}]` and `constraints[{budgeted[1]}]` both count a length; "
            "intersect supports one budget (combine the others with `&`)."
        )
    dfa = constraints[0].dfa
    for c in constraints[1:]:
        dfa = dfa.product(c.dfa, max_states=max_states)
    dfa = dfa.trimmed()
    label = " ∩ ".join(c.label for c in constraints)
    b = constraints[budgeted[0]] if budgeted else None
    if dfa.dist[0] >= INF:
        raise ValueError(f"{label}: no text satisfies every constraint; relax one of them.")
    return AutomatonPotential(
        dfa,
        bytes256,
        budget=None if b is None or b.budget == NO_BUDGET else int(b.budget),
        min_used=0 if b is None else b.min_used,
        token_cost=0 if b is None else b.token_cost,
        label=label,
    )
