r"""Step units: a unit is the tokens up to a boundary, sampled by any token sampler.

A *boundary* ends a unit after the token that makes the unit's bytes contain a delimiter
(``"\n"``, ``"\n\n"``, ``". "``), or after every ``k`` tokens; EOS always ends a unit
(and the string). :class:`UnitSampler` wraps any :class:`TokenSampler` and samples one
whole unit for every row of a batch, one batched sampler call per token position.

Proper weighting at the unit level. The token sampler's weights are properly weighted
for ``target.logw_next`` token by token, and the unit's log weight is their sum. By the
tower rule over the tokens of the unit,

    E[ exp(log_w) · 1{unit = u} ] = target.prefix(x u) / target.prefix(x)          (u has no EOS)
    E[ exp(log_w) · 1{unit = u EOS} ] = target.complete(x u) / target.prefix(x)

for every unit ``u`` after the context ``x``, which is the unit-level contract that
``tests/samplers/test_units.py`` checks by exact enumeration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from potentia.potentials.base import PotentialState, Vocabulary
from potentia.samplers.base import Draw, TokenSampler

__all__ = ["Boundary", "as_boundary", "UnitSampler", "UnitOut"]


class Boundary:
    """Where a unit ends: after a delimiter, after ``every`` tokens, or only at EOS.

    Args:
        delimiter: The unit ends after the first token that makes the unit's bytes
            contain this string (UTF-8) or bytes.
        every: The unit ends after this many tokens.

    At most one of the two may be given; with neither, a unit is the whole string.
    """

    def __init__(self, delimiter: str | bytes | None = None, every: int | None = None) -> None:
        if delimiter is not None and every is not None:
            raise ValueError("pass either `delimiter` or `every` to Boundary, not both.")
        if isinstance(delimiter, str):
            delimiter = delimiter.encode("utf-8")
        if delimiter is not None and (not isinstance(delimiter, bytes) or not delimiter):
            raise ValueError(f"`delimiter` is {delimiter!r}; pass a non-empty str or bytes.")
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, int | np.integer) or every < 1
        ):
            raise ValueError(f"`every` is {every!r}; pass an int >= 1 (tokens per unit).")
        self.delimiter = delimiter
        self.every = None if every is None else int(every)

    def ends(self, vocab: Vocabulary, unit: list[int]) -> bool:
        """Whether the unit ``unit`` (token indices, no EOS) is complete."""
        if self.every is not None:
            return len(unit) >= self.every
        if self.delimiter is not None:
            return self.delimiter in vocab.decode_bytes(unit)
        return False

    def __repr__(self) -> str:
        if self.every is not None:
            return f"Boundary(every={self.every})"
        if self.delimiter is not None:
            return f"Boundary(delimiter={self.delimiter!r})"
        return "Boundary()"


def as_boundary(unit: object, arg: str = "unit") -> Boundary:
    """A :class:`Boundary` from ``unit``: a delimiter string, a token count, or ``None``.

    ``None`` means the whole string is one unit.
    """
    if isinstance(unit, Boundary):
        return unit
    if unit is None:
        return Boundary()
    if isinstance(unit, str | bytes):
        if not unit:
            raise ValueError(f"`{arg}` is {unit!r}; pass a non-empty delimiter such as '\\n'.")
        return Boundary(delimiter=unit)
    if isinstance(unit, int | np.integer) and not isinstance(unit, bool):
        if unit < 1:
            raise ValueError(f"`{arg}` is {unit}; pass a token count >= 1 or a delimiter.")
        return Boundary(every=int(unit))
    raise TypeError(
        f"`{arg}` is {unit!r} ({type(unit).__name__}); pass a delimiter string such as "
        "'\\n', a token count k >= 1, a Boundary, or None (whole strings)."
    )


@dataclass
class UnitOut:
    """One unit per row.

    Attributes:
        units: The unit's tokens per row (EOS excluded).
        eos: Whether the row's unit ended with EOS (the string is finished).
        log_w: Properly weighted log weight of each row's unit (``-inf``: the row died).
        status: Per row: ``"boundary"``, ``"eos"``, ``"dead"``, ``"length"`` (the row hit
            its length bound mid-unit) or ``"budget"`` (the token budget ran out mid-unit).
        tokens: Tokens the sampler drew for the batch (EOS and the tokens of dead rows
            included): the LM-token cost of the call.
        target_evals: Full next-token vectors the token sampler computed.
        constraint_checks: Single-token constraint checks it made.
    """

    units: list[list[int]]
    eos: np.ndarray
    log_w: np.ndarray
    status: list[str]
    tokens: int = 0
    target_evals: int = 0
    constraint_checks: int = 0
    info: dict = field(default_factory=dict)


class UnitSampler:
    """Samples one unit per row with a token sampler, properly weighted at the unit level.

    Args:
        sampler: Any token sampler (direct, AWRS, ...).
        unit: A delimiter string, a token count, a :class:`Boundary`, or ``None``
            (the whole string is one unit).
    """

    def __init__(self, sampler: TokenSampler, unit: object = None) -> None:
        if not isinstance(sampler, TokenSampler):
            raise TypeError(
                f"`sampler` is {type(sampler).__name__}; pass a TokenSampler such as "
                "DirectSampler(target)."
            )
        self.sampler = sampler
        self.boundary = as_boundary(unit)
        self.target = sampler.target

    def init_state(self, n: int) -> PotentialState:
        """The token sampler's batch state of ``n`` empty contexts."""
        return self.sampler.init_state(n)

    def sample(
        self,
        state: PotentialState,
        rng: np.random.Generator,
        draw: Draw | None = None,
        max_len: int | np.ndarray | None = None,
        token_budget: int | None = None,
    ) -> UnitOut:
        """Sample one unit after every context of ``state``.

        Args:
            state: The batch of contexts (the token sampler's state).
            rng: Source of randomness.
            draw: Optional ``draw(probs) -> index`` for every random choice (enumeration).
            max_len: Largest number of tokens a row's unit may take (one int, or one per
                row); a row that reaches it mid-unit gets status ``"length"``.
            token_budget: Largest number of tokens to draw in all; when the next token
                position would overrun it, the rows beyond the budget stop with status
                ``"budget"`` (so the cost never exceeds the budget).
        """
        n = len(state)
        vocab = self.target.vocab
        V = len(vocab)
        limit = np.full(n, np.iinfo(np.int64).max) if max_len is None else np.asarray(max_len)
        limit = np.broadcast_to(limit, (n,)).astype(np.int64)
        units: list[list[int]] = [[] for _ in range(n)]
        status = ["running"] * n
        log_w = np.zeros(n)
        eos = np.zeros(n, dtype=bool)
        spent = evals = checks = 0
        for r in np.flatnonzero(limit <= 0):
            status[r] = "length"
        active = np.flatnonzero(limit > 0)
        st = state.select(active) if len(active) < n else state
        while len(active):
            if token_budget is not None and spent + len(active) > token_budget:
                room = max(token_budget - spent, 0)
                for r in active[room:]:
                    status[r] = "budget"
                active = active[:room]
                st = st.select(np.arange(room))
                if not room:
                    break
            out = self.sampler.sample(st, rng, draw)
            spent += len(active)
            evals += out.target_evals
            checks += out.constraint_checks
            toks = np.asarray(out.tokens, dtype=np.int64)
            log_w[active] += np.asarray(out.log_w, dtype=float)
            keep = []
            for k, r in enumerate(active):
                if log_w[r] == -np.inf:
                    status[r] = "dead"
                elif toks[k] == V:
                    status[r], eos[r] = "eos", True
                else:
                    units[r].append(int(toks[k]))
                    if self.boundary.ends(vocab, units[r]):
                        status[r] = "boundary"
                    elif len(units[r]) >= limit[r]:
                        status[r] = "length"
                    else:
                        keep.append(k)
            keep = np.asarray(keep, dtype=np.int64)
            st = st.select(keep).advance(toks[keep]) if len(keep) else None
            active = active[keep]
        return UnitOut(units, eos, log_w, status, spent, evals, checks)
