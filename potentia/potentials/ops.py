"""Composition of potentials: product, boolean algebra of hard constraints, powers.

* ``a * b`` — :class:`Product`: log weights add. Vocabularies must hold the same tokens
  (possibly in another order; the product uses the first factor's order).
* ``a & b`` — :class:`And`: product of hard constraints (the intersection language).
* ``a | b`` — :class:`Or`: union of two hard constraints (max in log space).
* ``~a``   — :class:`Not`: complement of a hard constraint. The complement's prefix
  language is not derivable from the operand's, so the prefix weight is 1 everywhere
  (sound) and the constraint is enforced exactly by ``complete``; SMC weights make this a
  correct sampler.
* ``a ** b`` — :class:`Power`: tempering a soft potential, log φ·β.
"""

from __future__ import annotations

import numpy as np

from potentia.potentials.base import (
    ALGEBRA,
    Potential,
    PotentialState,
    Vocabulary,
    as_potential,
    logsumexp,
)

__all__ = [
    "Product",
    "And",
    "Or",
    "OrState",
    "Not",
    "Power",
    "Lifted",
    "AutoStop",
    "StopAt",
    "check_stop",
    "cut_at_stop",
    "Truncate",
    "align",
]


def align(target: Vocabulary, other: Vocabulary, what: str) -> np.ndarray | None:
    """Map positions of ``target`` to positions of ``other`` holding the same token.

    Returns ``None`` when the vocabularies are identical (no mapping needed).

    Raises:
        ValueError: if the two vocabularies do not hold the same set of tokens.
    """
    if target == other:
        return None
    if len(target) == len(other) and target.tokens == other.tokens:
        return None  # same byte strings in the same order (ids may differ)
    if (
        len(target) == len(other)
        and target.has_unique_bytes
        and other.has_unique_bytes
        and set(target.tokens) == set(other.tokens)
    ):
        idx = other.index
        return np.array([idx[t] for t in target.tokens], dtype=np.int64)
    only_t = sorted(set(target.tokens) - set(other.tokens))[:3]
    only_o = sorted(set(other.tokens) - set(target.tokens))[:3]
    raise ValueError(
        f"cannot align the vocabularies of {what}: {target!r} vs {other!r} "
        f"(e.g. only in the first: {only_t}, only in the second: {only_o}). "
        "Maybe you forgot to lift a byte-level constraint to the LM's token vocabulary "
        "(`constraint.lift(lm.vocab)`), or the two potentials come from different tokenizers?"
    )


class Product(Potential):
    """The product of potentials: log weights add.

    Args:
        *factors: Two or more potentials over the same set of tokens. Nested products are
            flattened; ``parts`` lists the factors in order.

    Raises:
        ValueError: if the vocabularies cannot be aligned.
    """

    def __init__(self, *factors: Potential) -> None:
        parts: list[Potential] = []
        for i, f in enumerate(factors):
            as_potential(f, f"factors[{i}]")
            parts.extend(f.parts if type(f) is Product else [f])
        if len(parts) < 2:
            raise ValueError("`factors`: a product needs at least two potentials.")
        self.parts = parts
        self.vocab = parts[0].vocab
        self.maps = [
            align(self.vocab, p.vocab, f"factor 0 ({parts[0]!r}) and factor {i} ({p!r})")
            for i, p in enumerate(parts)
        ]
        self.hard = all(p.hard for p in parts)

    def _ctx(self, i: int, context: list[int]) -> list[int]:
        m = self.maps[i]
        return context if m is None else [int(m[t]) for t in context]

    def _vec(self, i: int, vec: np.ndarray) -> np.ndarray:
        """Reorder part ``i``'s next-token vector(s) into the product's order."""
        m = self.maps[i]
        if m is None:
            return vec
        cols = np.append(m, len(self.vocab))
        return vec[..., cols]

    def part_tokens(self, i: int, tokens: np.ndarray) -> np.ndarray:
        """Product-vocabulary positions ``tokens`` (EOS allowed) as factor ``i``'s positions."""
        m = self.maps[i]
        if m is None:
            return tokens
        V = len(self.vocab)
        return np.where(tokens == V, V, m[np.minimum(tokens, V - 1)])

    def _prefix(self, context: list[int]) -> float:
        total = 0.0
        for i, p in enumerate(self.parts):
            total += p.prefix(self._ctx(i, context))
            if total == -np.inf:
                break
        return total

    def _complete(self, context: list[int]) -> float:
        total = 0.0
        for i, p in enumerate(self.parts):
            total += p.complete(self._ctx(i, context))
            if total == -np.inf:
                break
        return total

    def _logw_next(self, context: list[int]) -> np.ndarray:
        out = np.zeros(len(self.vocab) + 1)
        for i, p in enumerate(self.parts):
            out += self._vec(i, p.logw_next(self._ctx(i, context)))
        return out

    def _batch_logw_next(self, contexts: list[list[int]]) -> np.ndarray:
        out = np.zeros((len(contexts), len(self.vocab) + 1))
        for i, p in enumerate(self.parts):
            out += self._vec(i, p.batch_logw_next([self._ctx(i, c) for c in contexts]))
        return out

    def init_state(self, n: int) -> ProductState:  # noqa: D102
        return ProductState(self, [p.init_state(n) for p in self.parts])

    def lift(self, vocab: Vocabulary) -> Potential:
        """Lift every factor (each with its own fast lifting) and multiply the results."""
        return type(self)(*(p.lift(vocab) for p in self.parts))

    def __repr__(self) -> str:
        return " * ".join(repr(p) for p in self.parts)


class ProductState(PotentialState):
    """Batch state of a :class:`Product`: one state per factor, advanced together."""

    def __init__(self, potential: Product, parts: list[PotentialState]) -> None:
        self.potential = potential
        self.parts = parts

    @property
    def contexts(self) -> list[list[int]]:  # noqa: D102
        return self.parts[0].contexts  # factor 0 defines the product's vocabulary order

    def __len__(self) -> int:
        return len(self.parts[0])

    def logw_next(self) -> np.ndarray:  # noqa: D102
        # Hard factors contribute only a mask (no dense row); soft factors add their rows.
        out, masks = None, []
        for i, s in enumerate(self.parts):
            if s.potential.hard:
                masks.append(self.potential._vec(i, s.allowed()))
                continue
            v = self.potential._vec(i, s.logw_next())
            out = v.copy() if out is None else out + v
        if out is None:
            out = np.zeros((len(self), len(self.potential.vocab) + 1))
        for m in masks:
            out[~m] = -np.inf
        return out

    def where(self) -> list[str | None]:  # noqa: D102
        out: list[str | None] = [None] * len(self)
        for s in self.parts:
            for r, w in enumerate(s.where()):
                out[r] = out[r] or w
        return out

    def allowed(self) -> np.ndarray:  # noqa: D102
        out = None
        for i, s in enumerate(self.parts):
            m = self.potential._vec(i, s.allowed())
            out = m.copy() if out is None else out & m
        return out

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:  # noqa: D102
        tokens = np.asarray(tokens, dtype=np.int64)
        out = np.zeros(len(tokens))
        for i, s in enumerate(self.parts):
            out += s.logw_tokens(rows, self._map_tokens(i, tokens))
        return out

    def _map_tokens(self, i: int, tokens: np.ndarray) -> np.ndarray:
        return self.potential.part_tokens(i, tokens)

    def advance(self, tokens: np.ndarray) -> ProductState:  # noqa: D102
        tokens = np.asarray(tokens, dtype=np.int64)
        return ProductState(
            self.potential,
            [s.advance(self._map_tokens(i, tokens)) for i, s in enumerate(self.parts)],
        )

    def select(self, rows: np.ndarray) -> ProductState:  # noqa: D102
        return ProductState(self.potential, [s.select(rows) for s in self.parts])


def _require_hard(p: Potential, op: str, arg: str) -> None:
    if not p.hard:
        raise TypeError(
            f"`{arg}` ({p!r}) is a soft potential; `{op}` is defined for hard constraints "
            "(weights in {0, 1}) only. Use `*` to multiply soft potentials."
        )


class And(Product):
    """Intersection of hard constraints (a :class:`Product` of 0/1 potentials)."""

    def __init__(self, *constraints: Potential) -> None:
        for i, c in enumerate(constraints):
            as_potential(c, f"constraints[{i}]")
            _require_hard(c, "&", f"constraints[{i}]")
        super().__init__(*constraints)


class Or(Potential):
    """Union of two hard constraints: weight 1 if either accepts (exact prefixes too).

    Its batch state (:class:`OrState`) composes the operands' own states: a prefix is
    viable iff either operand's is, and the allowed next tokens are the OR of their masks,
    so a union of lifted regexes costs two native masks per step, not a loop over the
    vocabulary.
    """

    hard = True

    def __init__(self, left: Potential, right: Potential) -> None:
        for arg, c in (("left", left), ("right", right)):
            as_potential(c, arg)
            _require_hard(c, "|", arg)
        self.left, self.right = left, right
        self.vocab = left.vocab
        self._map = align(left.vocab, right.vocab, f"{left!r} | {right!r}")

    def _r(self, context: list[int]) -> list[int]:
        return context if self._map is None else [int(self._map[t]) for t in context]

    def lift(self, vocab: Vocabulary) -> Potential:
        """Lift both operands, then take the union."""
        return Or(self.left.lift(vocab), self.right.lift(vocab))

    def _prefix(self, context: list[int]) -> float:
        return max(self.left.prefix(context), self.right.prefix(self._r(context)))

    def _complete(self, context: list[int]) -> float:
        return max(self.left.complete(context), self.right.complete(self._r(context)))

    def _logw_next(self, context: list[int]) -> np.ndarray:
        # through the composed state: no loop over the vocabulary
        s = self.init_state(1)
        for t in context:
            s = s.advance(np.array([t], dtype=np.int64))
        return s.logw_next()[0]

    def init_state(self, n: int) -> OrState:  # noqa: D102
        subs = []
        for p in (self.left, self.right):
            alive = p.prefix([]) > -np.inf
            idx = np.arange(n) if alive else np.full(n, -1)
            st = p.init_state(n)
            subs.append((st if alive else st.select(np.zeros(0, dtype=np.int64)), idx))
        return OrState(self, [[] for _ in range(n)], subs)

    def _part_vec(self, i: int, vec: np.ndarray) -> np.ndarray:
        """Factor ``i``'s next-token matrix in this potential's token order (EOS last)."""
        if i == 0 or self._map is None:
            return vec
        return vec[:, np.append(self._map, len(self.vocab))]

    def _part_tokens(self, i: int, tokens: np.ndarray) -> np.ndarray:
        """Positions ``tokens`` (EOS allowed) as factor ``i``'s positions."""
        if i == 0 or self._map is None:
            return tokens
        V = len(self.vocab)
        return np.where(tokens == V, V, self._map[np.minimum(tokens, V - 1)])


class OrState(PotentialState):
    """Batch state of :class:`Or`: each operand's own state, on the rows where it is alive.

    A prefix is viable iff either operand's prefix is, so the allowed next tokens are the
    OR of the operands' masks over the rows where each is still alive (their native mask
    paths: no loop over the vocabulary). An operand whose prefix died leaves its state.
    """

    def __init__(
        self,
        potential: Or,
        contexts: list[list[int]],
        subs: list[tuple[PotentialState, np.ndarray]],
    ) -> None:
        self.potential = potential
        self._contexts = contexts
        self.subs = subs  # (state, row of each Or row in that state or -1)

    @property
    def contexts(self) -> list[list[int]]:  # noqa: D102
        return self._contexts

    def __len__(self) -> int:
        return len(self._contexts)

    def allowed(self) -> np.ndarray:  # noqa: D102
        out = np.zeros((len(self), len(self.potential.vocab) + 1), dtype=bool)
        for i, (st, idx) in enumerate(self.subs):
            alive = idx >= 0
            if alive.any():
                out[alive] |= self.potential._part_vec(i, st.allowed())[idx[alive]]
        return out

    def logw_next(self) -> np.ndarray:  # noqa: D102
        return np.where(self.allowed(), 0.0, -np.inf)

    def _ok(self, i: int, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        st, idx = self.subs[i]
        ok = np.zeros(len(rows), dtype=bool)
        k = np.flatnonzero(idx[rows] >= 0)
        if len(k):
            tok = self.potential._part_tokens(i, tokens[k])
            ok[k] = st.logw_tokens(idx[rows[k]], tok) > -np.inf
        return ok

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:  # noqa: D102
        rows = np.asarray(rows, dtype=np.int64)
        tokens = np.asarray(tokens, dtype=np.int64)
        ok = self._ok(0, rows, tokens) | self._ok(1, rows, tokens)
        return np.where(ok, 0.0, -np.inf)

    def advance(self, tokens: np.ndarray) -> OrState:  # noqa: D102
        tokens = self._row_tokens(tokens)
        rows = np.arange(len(self))
        subs = []
        for i, (st, idx) in enumerate(self.subs):
            keep = np.flatnonzero(self._ok(i, rows, tokens))  # still alive after the token
            new_idx = np.full(len(self), -1)
            new_idx[keep] = np.arange(len(keep))
            tok = self.potential._part_tokens(i, tokens[keep])
            subs.append((st.select(idx[keep]).advance(tok), new_idx))
        ctxs = [c + [int(t)] for c, t in zip(self._contexts, tokens)]
        return OrState(self.potential, ctxs, subs)

    def select(self, rows: np.ndarray) -> OrState:  # noqa: D102
        rows = np.asarray(rows, dtype=np.int64)
        subs = []
        for st, idx in self.subs:
            picked = idx[rows]
            alive = np.flatnonzero(picked >= 0)
            new_idx = np.full(len(rows), -1)
            new_idx[alive] = np.arange(len(alive))
            subs.append((st.select(picked[alive]), new_idx))
        return OrState(self.potential, [self._contexts[r] for r in rows], subs)


class Not(Potential):
    """Complement of a hard constraint.

    ``complete`` is exact. The prefix weight is 1 for every prefix: a prefix can almost
    always be extended outside a language, and where it cannot the engine finds out at EOS
    (this is sound: no valid string gets a zero prefix).
    """

    hard = True

    def __init__(self, inner: Potential) -> None:
        as_potential(inner, "inner")
        _require_hard(inner, "~", "inner")
        self.inner = inner
        self.vocab = inner.vocab

    def lift(self, vocab: Vocabulary) -> Potential:
        """Lift the operand, then complement."""
        return Not(self.inner.lift(vocab))

    def _prefix(self, context: list[int]) -> float:
        return 0.0

    def _complete(self, context: list[int]) -> float:
        return 0.0 if self.inner.complete(context) == -np.inf else -np.inf

    def _logw_next(self, context: list[int]) -> np.ndarray:
        out = np.zeros(len(self.vocab) + 1)
        out[-1] = self._complete(context)
        return out


class Power(Potential):
    """A potential raised to a power β > 0 (log weights times β): tempering.

    Args:
        inner: The potential.
        power: The exponent β; must be finite and positive.
    """

    def __init__(self, inner: Potential, power: float) -> None:
        as_potential(inner, "inner")
        if not (isinstance(power, int | float) and np.isfinite(power) and power > 0):
            raise ValueError(
                f"`power` is {power!r}; it must be a finite number > 0 "
                "(0 would turn -inf weights into NaN)."
            )
        self.inner, self.power = inner, float(power)
        self.vocab = inner.vocab
        self.hard = inner.hard

    def lift(self, vocab: Vocabulary) -> Potential:
        """Lift the operand, then raise to the power."""
        return Power(self.inner.lift(vocab), self.power)

    def _prefix(self, context: list[int]) -> float:
        return self.power * self.inner.prefix(context)

    def _complete(self, context: list[int]) -> float:
        return self.power * self.inner.complete(context)

    def _logw_next(self, context: list[int]) -> np.ndarray:
        return self.power * self.inner.logw_next(context)

    def _batch_logw_next(self, contexts: list[list[int]]) -> np.ndarray:
        return self.power * self.inner.batch_logw_next(contexts)

    def init_state(self, n: int) -> PotentialState:  # noqa: D102
        return _PowerState(self, self.inner.init_state(n))


class _PowerState(PotentialState):
    def __init__(self, potential: Power, inner: PotentialState) -> None:
        self.potential, self.inner = potential, inner

    @property
    def contexts(self) -> list[list[int]]:
        return self.inner.contexts

    def logw_next(self) -> np.ndarray:
        return self.potential.power * self.inner.logw_next()

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        return self.potential.power * self.inner.logw_tokens(rows, tokens)

    def allowed(self) -> np.ndarray:
        return self.inner.allowed()

    def advance(self, tokens: np.ndarray) -> _PowerState:
        return _PowerState(self.potential, self.inner.advance(tokens))

    def select(self, rows: np.ndarray) -> _PowerState:
        return _PowerState(self.potential, self.inner.select(rows))


class Lifted(Potential):
    """A byte-level potential seen through a token vocabulary (slow generic lifting).

    A token context is mapped to the concatenation of its tokens' bytes, so
    ``prefix(tokens) = inner.prefix(bytes)``. This default evaluates every token of the
    vocabulary in Python: engine-backed constraints provide fast lifts of their own.

    Args:
        inner: A potential over :meth:`Vocabulary.bytes256`.
        vocab: The token vocabulary to lift to.
    """

    def __init__(self, inner: Potential, vocab: Vocabulary) -> None:
        as_potential(inner, "inner")
        if inner.vocab != Vocabulary.bytes256():
            raise ValueError(
                f"`inner` has vocabulary {inner.vocab!r}; only byte-level potentials "
                "(Vocabulary.bytes256()) can be lifted to a token vocabulary."
            )
        self.inner, self.vocab, self.hard = inner, vocab, inner.hard

    def _bytes(self, context: list[int]) -> list[int]:
        return list(self.vocab.decode_bytes(context))

    def _prefix(self, context: list[int]) -> float:
        return self.inner.prefix(self._bytes(context))

    def _complete(self, context: list[int]) -> float:
        return self.inner.complete(self._bytes(context))


def check_truncation(top_k: object, top_p: object) -> None:
    """Raise a ``ValueError`` naming ``top_k``/``top_p`` if either is out of range."""
    if top_k is not None and not (
        isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 1
    ):
        raise ValueError(f"`top_k` is {top_k!r}; pass an int >= 1 or None.")
    if top_p is not None and not (
        isinstance(top_p, int | float) and not isinstance(top_p, bool) and 0 < top_p <= 1
    ):
        raise ValueError(f"`top_p` is {top_p!r}; pass a number in (0, 1] or None.")


class Truncate(Potential):
    """An LM whose next-token distribution keeps only its top tokens (top-k / top-p).

    At every step the row of ``lm`` (EOS included as a token) is cut to its ``top_k``
    most probable tokens and/or the smallest set of most probable tokens whose mass
    reaches ``top_p``, then renormalised: a *declared target change*, the LM a
    top-k/top-p sampler would sample from. ``Truncate(lm, ...) × constraint`` is then
    sampled exactly (a masking decoder with top-k samples something else again). Ties at
    the cut are broken by position (lower index first).

    Args:
        lm: A locally normalised LM potential (rows are log-probabilities).
        top_k: Keep this many tokens (``None``: no cut by count).
        top_p: Keep the smallest prefix of the sorted row with mass ≥ ``top_p``, in (0, 1]
            (``None``: no cut by mass).
    """

    def __init__(self, lm: Potential, top_k: int | None = None, top_p: float | None = None) -> None:
        as_potential(lm, "lm")
        check_truncation(top_k, top_p)
        self.lm, self.top_k, self.top_p = lm, top_k, top_p
        self.vocab, self.hard = lm.vocab, lm.hard

    def lift(self, vocab: Vocabulary) -> Potential:
        """Lift the LM."""
        return Truncate(self.lm.lift(vocab), self.top_k, self.top_p)

    def cut(self, rows: np.ndarray) -> np.ndarray:
        """Truncate and renormalise log-probability rows ``(n, V + 1)``."""
        rows = np.atleast_2d(np.asarray(rows, dtype=float))
        order = np.argsort(-rows, axis=1, kind="stable")
        srt = np.take_along_axis(rows, order, axis=1)
        keep = np.isfinite(srt)
        if self.top_k is not None:
            keep[:, self.top_k :] = False
        if self.top_p is not None:
            p = np.exp(srt - logsumexp(srt, axis=1)[:, None])
            before = np.cumsum(p, axis=1) - p  # mass of the tokens ranked above
            keep &= before < self.top_p - 1e-12
        out = np.full_like(rows, -np.inf)
        kept = np.where(keep, srt, -np.inf)
        norm = logsumexp(kept, axis=1)[:, None]
        np.put_along_axis(out, order, kept - np.where(np.isfinite(norm), norm, 0.0), axis=1)
        return out

    def _walk(self, context: list[int]) -> float:
        total = 0.0
        for k in range(len(context)):
            total += self.cut(self.lm.logw_next(context[:k]))[0, context[k]]
            if total == -np.inf:
                break
        return total

    def _prefix(self, context: list[int]) -> float:
        return self._walk(context)

    def _complete(self, context: list[int]) -> float:
        head = self._walk(context)
        return head if head == -np.inf else head + self.cut(self.lm.logw_next(context))[0, -1]

    def _logw_next(self, context: list[int]) -> np.ndarray:
        if self._walk(context) == -np.inf:
            return np.full(len(self.vocab) + 1, -np.inf)
        return self.cut(self.lm.logw_next(context))[0]

    def init_state(self, n: int) -> PotentialState:  # noqa: D102
        return _TruncateState(self, self.lm.init_state(n), np.ones(n, dtype=bool))

    def __repr__(self) -> str:
        return f"Truncate({self.lm!r}, top_k={self.top_k}, top_p={self.top_p})"


class _TruncateState(PotentialState):
    def __init__(self, potential: Truncate, lm: PotentialState, alive: np.ndarray) -> None:
        self.potential, self.lm, self.alive = potential, lm, alive
        self._rows: np.ndarray | None = None

    @property
    def contexts(self) -> list[list[int]]:
        return self.lm.contexts

    def logw_next(self) -> np.ndarray:
        if self._rows is None:
            rows = self.potential.cut(self.lm.logw_next())
            rows[~self.alive] = -np.inf  # a cut token earlier: the prefix has weight zero
            self._rows = rows
        return self._rows

    def advance(self, tokens: np.ndarray) -> _TruncateState:
        tokens = self._row_tokens(tokens)
        took = np.isfinite(self.logw_next()[np.arange(len(tokens)), tokens])
        return _TruncateState(self.potential, self.lm.advance(tokens), self.alive & took)

    def select(self, rows: np.ndarray) -> _TruncateState:
        idx = np.asarray(rows, dtype=np.int64)
        out = _TruncateState(self.potential, self.lm.select(rows), self.alive[idx])
        if self._rows is not None:
            out._rows = self._rows[np.asarray(rows, dtype=np.int64)]
        return out


class AutoStop(Potential):
    r"""An LM that stops by itself once a structured constraint's value is closed.

    ``AutoStop(lm, constraint)`` is ``lm`` except where ``constraint`` is *maximal* (no
    token but EOS can extend the string, e.g. a JSON document's closing brace): there the
    next token is EOS with probability 1. With ``target = AutoStop(lm, c) × c`` the target
    of a string ``x`` is

    .. math::

        \text{target}(x) = \begin{cases} P_{LM}(x\ldots) \cdot c(x) & x \text{ maximal}
        \ (\text{the LM's output begins with } x)\\
        P_{LM}(x \cdot \text{EOS}) \cdot c(x) & \text{otherwise,} \end{cases}

    so the user never has to make the LM emit EOS right after a closed value. Strings that
    extend a maximal prefix get weight zero (they are not in ``c``'s language anyway).

    Args:
        lm: The LM potential (soft), any next-token potential.
        constraint: A hard constraint over the same vocabulary.
    """

    def __init__(self, lm: Potential, constraint: Potential) -> None:
        as_potential(lm, "lm")
        as_potential(constraint, "constraint")
        if not constraint.hard:
            raise TypeError(f"`constraint` ({constraint!r}) must be a hard constraint.")
        if constraint.vocab != lm.vocab:
            raise ValueError(
                "`constraint` must be over the LM's vocabulary; lift it first "
                "(constraint.lift(lm.vocab))."
            )
        self.lm, self.constraint = lm, constraint
        self.vocab, self.hard = lm.vocab, lm.hard

    def lift(self, vocab: Vocabulary) -> Potential:
        """Lift both operands."""
        return AutoStop(self.lm.lift(vocab), self.constraint.lift(vocab))

    def _maximal(self, context: list[int]) -> bool:
        return not (self.constraint.logw_next(context)[:-1] > -np.inf).any()

    def _stopped_before(self, context: list[int]) -> bool:
        return any(self._maximal(context[:k]) for k in range(len(context)))

    def _prefix(self, context: list[int]) -> float:
        return -np.inf if self._stopped_before(context) else self.lm.prefix(context)

    def _complete(self, context: list[int]) -> float:
        if self._stopped_before(context):
            return -np.inf
        if self._maximal(context):
            return self.lm.prefix(context)
        return self.lm.complete(context)

    def _logw_next(self, context: list[int]) -> np.ndarray:
        if self._stopped_before(context):
            return np.full(len(self.vocab) + 1, -np.inf)
        if self._maximal(context):
            out = np.full(len(self.vocab) + 1, -np.inf)
            out[-1] = 0.0
            return out
        return self.lm.logw_next(context)

    def init_state(self, n: int) -> PotentialState:  # noqa: D102
        return _AutoStopState(self, self.lm.init_state(n), self.constraint.init_state(n))

    def __repr__(self) -> str:
        return f"AutoStop({self.lm!r}, {self.constraint!r})"


class _AutoStopState(PotentialState):
    def __init__(self, potential: AutoStop, lm: PotentialState, c: PotentialState) -> None:
        self.potential, self.lm, self.c = potential, lm, c
        self._stop: np.ndarray | None = None

    @property
    def contexts(self) -> list[list[int]]:
        return self.lm.contexts

    def _stops(self) -> np.ndarray:
        if self._stop is None:
            self._stop = np.asarray(self.c.maximal(), dtype=bool)
        return self._stop

    def logw_next(self) -> np.ndarray:
        out = self.lm.logw_next()
        stop = self._stops()
        if stop.any():
            out = out.copy()
            out[stop] = -np.inf
            out[stop, -1] = 0.0
        return out

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        tokens = np.asarray(tokens, dtype=np.int64)
        stop = self._stops()[rows]
        if not stop.any():
            return self.lm.logw_tokens(rows, tokens)
        out = np.where(tokens == len(self.potential.vocab), 0.0, -np.inf)
        keep = ~stop
        if keep.any():
            out[keep] = self.lm.logw_tokens(rows[keep], tokens[keep])
        return out

    def advance(self, tokens: np.ndarray) -> _AutoStopState:
        return _AutoStopState(self.potential, self.lm.advance(tokens), self.c.advance(tokens))

    def select(self, rows: np.ndarray) -> _AutoStopState:
        out = _AutoStopState(self.potential, self.lm.select(rows), self.c.select(rows))
        if self._stop is not None:
            out._stop = self._stop[np.asarray(rows, dtype=np.int64)]
        return out


def check_stop(stop: object) -> tuple[bytes, ...]:
    """``stop`` as a tuple of non-empty byte strings, or a ``ValueError``/``TypeError``.

    Accepts ``None`` (no stop strings: ``()``), one ``str``/``bytes``, or a list/tuple of
    them. Text is encoded as UTF-8.
    """
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str | bytes) else stop
    if not isinstance(items, list | tuple):
        raise TypeError(
            f"`stop` is {type(stop).__name__}; pass a string or a list of strings, "
            'e.g. stop=["\\n\\n", "###"].'
        )
    out = []
    for i, x in enumerate(items):
        if not isinstance(x, str | bytes):
            raise TypeError(
                f"`stop[{i}]` is {x!r:.40} ({type(x).__name__}); stop strings are str "
                '(or bytes), e.g. stop=["\\n\\n"].'
            )
        b = x.encode("utf-8") if isinstance(x, str) else bytes(x)
        if not b:
            raise ValueError(
                f"`stop[{i}]` is empty; an empty stop string would end every string at once. "
                "Remove it."
            )
        out.append(b)
    return tuple(out)


def cut_at_stop(text: str, stops: tuple[bytes, ...]) -> str:
    """``text`` up to and including its first stop string (unchanged if none)."""
    data = text.encode("utf-8")
    ends = [data.find(b) + len(b) for b in stops if b in data]
    if not ends:
        return text
    return data[: min(ends)].decode("utf-8", errors="replace")


class StopAt(Potential):
    r"""An LM that stops once its output contains one of the ``stop`` strings.

    ``StopAt(lm, stop)`` is ``lm`` until the bytes of the token string first contain a
    stop string; from that token on the next token is EOS with probability 1. A token
    string ``x`` (EOS not included) then has weight

    .. math::

        \text{StopAt}(x) = \begin{cases} P_{LM}(x\ldots) & \text{a stop string first
        occurs in the last token of } x \ (\text{the LM's output begins with } x)\\
        P_{LM}(x \cdot \text{EOS}) & x \text{ contains no stop string}\\
        0 & \text{a stop string occurs before the last token,} \end{cases}

    the distribution of the tokens a decoder with stop strings returns (it is locally
    normalised, so the θ trie of ASAp/CARS takes it as an LM). The stop string and the rest
    of the token it ends in belong to ``x``; ``pt.sample(..., stop=...)`` cuts the texts
    after the first stop string (kept). Occurrences are searched in the generated bytes
    only (the prompt is not part of ``x``), across token boundaries.

    Args:
        lm: The LM potential.
        stop: A string or a list of strings (see :func:`check_stop`).
    """

    def __init__(self, lm: Potential, stop: object) -> None:
        as_potential(lm, "lm")
        self.stops = check_stop(stop)
        if not self.stops:
            raise ValueError("`stop` is empty; pass at least one stop string.")
        self.lm = lm
        self.vocab, self.hard = lm.vocab, lm.hard
        self._keep = max(len(b) for b in self.stops) - 1  # bytes a later hit may reuse

    def lift(self, vocab: Vocabulary) -> Potential:
        """Lift the LM (the stop strings are bytes, the same in every vocabulary)."""
        return StopAt(self.lm.lift(vocab), self.stops)

    def hit(self, data: bytes) -> bool:
        """Whether ``data`` contains a stop string."""
        return any(b in data for b in self.stops)

    def _first_stop(self, context: list[int]) -> int | None:
        """Number of tokens up to the one where a stop string first occurs, or ``None``."""
        data = b""
        for k, t in enumerate(context):
            data = data + self.vocab.decode_bytes([t])
            if self.hit(data):
                return k + 1
        return None

    def cut(self, text: str) -> str:
        """``text`` up to and including its first stop string (see :func:`cut_at_stop`)."""
        return cut_at_stop(text, self.stops)

    def _prefix(self, context: list[int]) -> float:
        k = self._first_stop(context)
        return -np.inf if k is not None and k < len(context) else self.lm.prefix(context)

    def _complete(self, context: list[int]) -> float:
        k = self._first_stop(context)
        if k is None:
            return self.lm.complete(context)
        return self.lm.prefix(context) if k == len(context) else -np.inf

    def _logw_next(self, context: list[int]) -> np.ndarray:
        k = self._first_stop(context)
        if k is None:
            return self.lm.logw_next(context)
        out = np.full(len(self.vocab) + 1, -np.inf)
        if k == len(context):
            out[-1] = 0.0
        return out

    def init_state(self, n: int) -> PotentialState:  # noqa: D102
        return _StopAtState(
            self, self.lm.init_state(n), [b""] * n, np.zeros(n, dtype=bool), np.ones(n, bool)
        )

    def __repr__(self) -> str:
        return f"StopAt({self.lm!r}, {list(self.stops)!r})"


class _StopAtState(PotentialState):
    def __init__(
        self,
        potential: StopAt,
        lm: PotentialState,
        tails: list[bytes],
        stopped: np.ndarray,
        alive: np.ndarray,
    ) -> None:
        self.potential, self.lm = potential, lm
        self.tails, self.stopped, self.alive = tails, stopped, alive

    @property
    def contexts(self) -> list[list[int]]:
        return self.lm.contexts

    def __len__(self) -> int:
        return len(self.tails)

    def logw_next(self) -> np.ndarray:
        out = self.lm.logw_next()
        fix = self.stopped | ~self.alive
        if fix.any():
            out = out.copy()
            out[fix] = -np.inf
            out[self.stopped & self.alive, -1] = 0.0
        return out

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        tokens = np.asarray(tokens, dtype=np.int64)
        fix = (self.stopped | ~self.alive)[rows]
        if not fix.any():
            return self.lm.logw_tokens(rows, tokens)
        eos = tokens == len(self.potential.vocab)
        out = np.where(eos & self.stopped[rows] & self.alive[rows], 0.0, -np.inf)
        keep = ~fix
        if keep.any():
            out[keep] = self.lm.logw_tokens(rows[keep], tokens[keep])
        return out

    def advance(self, tokens: np.ndarray) -> _StopAtState:
        tokens = self._row_tokens(tokens)
        p = self.potential
        tails, stopped = [], self.stopped.copy()
        alive = self.alive & ~self.stopped  # a token after the stop: weight zero
        for r, t in enumerate(tokens):
            data = self.tails[r] + p.vocab.decode_bytes([int(t)])
            if not self.stopped[r] and p.hit(data):
                stopped[r] = True
            tails.append(data[len(data) - p._keep :] if p._keep else b"")
        return _StopAtState(p, self.lm.advance(tokens), tails, stopped, alive)

    def select(self, rows: np.ndarray) -> _StopAtState:
        idx = np.asarray(rows, dtype=np.int64)
        return _StopAtState(
            self.potential,
            self.lm.select(rows),
            [self.tails[i] for i in idx],
            self.stopped[idx],
            self.alive[idx],
        )


ALGEBRA.update(Product=Product, And=And, Or=Or, Not=Not, Power=Power, Lifted=Lifted)
