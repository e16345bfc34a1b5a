"""The potential contract: log-space prefix/complete weights over a token vocabulary.

A potential φ over a vocabulary A gives, in log space (``-inf`` is weight zero):

* ``complete(x)``: log φ(x) for a finished string x;
* ``prefix(x)``: log φ̄(x), with φ̄(x) = 0 ⇒ φ(xy) = 0 for every y;
* ``logw_next(x)``: a vector over A ∪ {EOS} (EOS is the *last* index) with
  ``logw_next(x)[a] = prefix(xa) - prefix(x)`` and
  ``logw_next(x)[EOS] = complete(x) - prefix(x)``.

Contexts are sequences of *vocabulary indices* ``0 <= i < len(vocab)``; EOS never appears
inside a context. Subclasses implement :meth:`Potential._prefix` and
:meth:`Potential._complete`; every other method has a correct (slow) default that fast
potentials override. The public methods validate their inputs and outputs, so a bad context
or a NaN weight fails loudly where it happens.

Sequential engines do not call the context methods: they hold a :class:`PotentialState`, a
batch of contexts that is advanced by one token at a time, reindexed on resampling and asked
for next-token vectors or single-token weights. The default state recomputes from contexts;
an LM keeps KV caches in it and a grammar keeps its matchers.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Vocabulary",
    "Potential",
    "PotentialState",
    "ContextState",
    "check_logw",
    "logsumexp",
]

Context = Sequence[int]


def logsumexp(a: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Numerically stable ``log(sum(exp(a)))`` that returns ``-inf`` for all ``-inf`` input."""
    a = np.asarray(a, dtype=float)
    m = np.max(a, axis=axis, keepdims=True) if a.size else np.array(-np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    if axis is None:
        return float(out.reshape(()))
    return np.squeeze(out, axis=axis)


def check_logw(values: np.ndarray | float, who: str) -> None:
    """Raise ``ValueError`` if log weights contain NaN or ``+inf``.

    Args:
        values: Log weights returned by a potential.
        who: A description of the producer, used in the message.
    """
    arr = np.asarray(values)
    if np.isnan(arr).any() or np.isposinf(arr).any():
        bad = "NaN" if np.isnan(arr).any() else "+inf"
        raise ValueError(
            f"{who} returned {bad} as a log weight. Log weights must lie in [-inf, inf): "
            "use -inf for weight zero and check the potential for 0/0 or log of a negative."
        )


class Vocabulary:
    """An ordered token vocabulary: each position carries a token id and its byte string.

    Position ``i`` of a next-token vector refers to ``tokens[i]``; position ``len(vocab)``
    is EOS. Several positions may share a byte string (tokenizers have duplicates); they
    are told apart by their ids.

    Args:
        tokens: Byte string of every token, in vector order.
        ids: The underlying tokenizer id of each token (default: ``0..n-1``).
        name: Optional label shown in error messages.
    """

    def __init__(
        self,
        tokens: Sequence[bytes],
        ids: Sequence[int] | None = None,
        name: str = "",
    ) -> None:
        tokens = list(tokens)
        for i, t in enumerate(tokens):
            if not isinstance(t, bytes):
                raise TypeError(
                    f"`tokens[{i}]` is {t!r} of type {type(t).__name__}; every token must be "
                    "a bytes object (encode text tokens with .encode('utf-8'))."
                )
        if not tokens:
            raise ValueError("`tokens` is empty: a vocabulary needs at least one token.")
        self.tokens: list[bytes] = tokens
        if ids is None:
            self.ids = np.arange(len(tokens), dtype=np.int64)
        else:
            self.ids = np.asarray(list(ids), dtype=np.int64)
            if self.ids.shape != (len(tokens),):
                raise ValueError(
                    f"`ids` has {self.ids.size} entries but `tokens` has {len(tokens)}; "
                    "give one id per token."
                )
        self.name = name
        self._index: dict[bytes, int] | None = None
        self._key: tuple | None = None

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def eos(self) -> int:
        """Index of EOS in next-token vectors (always the last one)."""
        return len(self.tokens)

    @property
    def has_unique_bytes(self) -> bool:
        """Whether no two tokens share a byte string."""
        return len(self.index) == len(self.tokens)

    @property
    def index(self) -> dict[bytes, int]:
        """Map from byte string to the first position holding it."""
        if self._index is None:
            idx: dict[bytes, int] = {}
            for i, t in enumerate(self.tokens):
                idx.setdefault(t, i)
            self._index = idx
        return self._index

    def greedy_encode(self, data: bytes, skip: bool = False) -> list[int]:
        """Positions of a greedy longest-match split of ``data`` into tokens.

        Any split spells the same bytes, so this serves wherever bytes must be fed to a
        token-level engine.

        Args:
            data: The bytes to split.
            skip: Skip a byte no token starts with (else raise).

        Raises:
            ValueError: if a byte of ``data`` starts no token and ``skip`` is false.
        """
        index = self.index
        longest = self.__dict__.get("_longest")
        if longest is None:
            longest = self._longest = max((len(t) for t in self.tokens), default=1)
        out, i = [], 0
        while i < len(data):
            for n in range(min(longest, len(data) - i), 0, -1):
                j = index.get(data[i : i + n])
                if j is not None:
                    out.append(j)
                    i += n
                    break
            else:
                if not skip:
                    raise ValueError(
                        f"byte {data[i]:#04x} at offset {i} of {data[:40]!r} starts no token "
                        "of this vocabulary."
                    )
                i += 1
        return out

    def key(self) -> tuple:
        """A hashable identity: equal keys mean identical vocabularies."""
        if self._key is None:
            self._key = (tuple(self.tokens), self.ids.tobytes())
        return self._key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        if self is other:
            return True
        if hash(self) != hash(other):
            return False
        # equal vocabularies of 262k tokens take ~12 ms to compare: remember the answer
        seen = self.__dict__.setdefault("_equal_to", {})
        ref = seen.get(id(other))
        if ref is not None and ref() is other:
            return True
        if self.key() != other.key():
            return False
        if len(seen) > 64:
            seen.clear()
        seen[id(other)] = weakref.ref(other)
        return True

    def __hash__(self) -> int:
        h = self.__dict__.get("_hash")
        if h is None:  # a tuple does not cache its hash: 262k tokens take ~1 ms each time
            h = self._hash = hash(self.key())
        return h

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.tokens[:5])
        more = ", ..." if len(self) > 5 else ""
        label = f"{self.name!r}, " if self.name else ""
        return f"Vocabulary({label}{len(self)} tokens: [{head}{more}])"

    def decode_bytes(self, context: Context) -> bytes:
        """Concatenate the byte strings of ``context``."""
        toks = self.tokens
        return b"".join(toks[i] for i in context)

    def decode(self, context: Context) -> str:
        """Decode ``context`` as UTF-8 (invalid bytes shown as backslash escapes)."""
        return self.decode_bytes(context).decode("utf-8", errors="backslashreplace")

    def check_context(self, context: Context, arg: str = "context") -> None:
        """Raise ``ValueError`` if ``context`` holds an index outside the vocabulary."""
        n = len(self.tokens)
        for j, t in enumerate(context):
            if not (isinstance(t, int | np.integer) and 0 <= t < n):
                hint = " (EOS may only end a string, never appear inside a context)"
                raise ValueError(
                    f"`{arg}[{j}]` is {t!r}, not a token index of this vocabulary "
                    f"(0..{n - 1}){hint if t == n else ''}. Contexts hold vocabulary "
                    "positions, not tokenizer ids or strings."
                )

    @classmethod
    def from_strings(cls, strings: Iterable[str], name: str = "") -> Vocabulary:
        """Build a vocabulary from text tokens (UTF-8 encoded)."""
        return cls([s.encode("utf-8") for s in strings], name=name)

    @classmethod
    def bytes256(cls) -> Vocabulary:
        """The byte alphabet: token ``i`` is ``bytes([i])``."""
        return cls([bytes([i]) for i in range(256)], name="bytes")


#: The composition classes behind ``*``, ``&``, ``|``, ``~``, ``**`` and :meth:`Potential.lift`,
#: by name. :mod:`potentia.potentials.ops` fills it when it is imported (the package's
#: ``__init__`` imports it), so this module needs no import of ``ops`` (no circle).
ALGEBRA: dict[str, Any] = {}


class PotentialState:
    """A batch of contexts of one potential, advanced one token at a time.

    Engines never mutate a state: :meth:`advance` and :meth:`select` return new states.
    Row ``r`` of every answer refers to the ``r``-th context of the batch.
    """

    potential: Potential

    @property
    def contexts(self) -> list[list[int]]:
        """The contexts of the batch (do not mutate)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.contexts)

    def logw_next(self) -> np.ndarray:
        """Next-token log weights, shape ``(len(self), V + 1)``, EOS last."""
        raise NotImplementedError

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Log weight of one next token per query: ``logw_next()[rows[k], tokens[k]]``.

        Fast potentials answer this without building the whole vector (the single-token
        check that rejection samplers use). ``tokens`` may contain EOS (``V``).
        """
        rows = np.asarray(rows, dtype=np.int64)
        tokens = np.asarray(tokens, dtype=np.int64)
        return self.logw_next()[rows, tokens]

    def allowed(self) -> np.ndarray:
        """Boolean ``(len(self), V + 1)`` matrix: next-token weight is positive (EOS last).

        For hard constraints this is the whole answer, and engine-backed constraints fill
        it from a native bitmask without building a dense float row (the fast mask path
        that products and samplers use). Default: ``logw_next() > -inf``.

        Raises:
            ValueError: if the potential is declared hard but a weight is not 0 or -inf
                (it would be read as 1 here, silently changing the target).
        """
        lw = self.logw_next()
        if getattr(self.potential, "hard", False):
            bad = np.isfinite(lw) & (lw != 0.0)
            if bad.any():
                r, t = (int(i) for i in np.argwhere(bad)[0])
                raise ValueError(
                    f"`constraint` ({self.potential!r:.80}) is declared hard (weights in "
                    f"{{0, 1}}) but gave log weight {lw[r, t]!r} to token {t} after "
                    f"{self.contexts[r][:20]!r}; return 0.0 or -inf, or set `hard = False` "
                    "to use it as a soft potential."
                )
        return lw > -np.inf

    def where(self) -> list[str | None]:
        """Per row, where the string stands in the user's terms, or ``None``.

        E.g. ``"inside a JSON string"``; used to explain particles that could not finish.
        """
        return [None] * len(self)

    def maximal(self) -> np.ndarray:
        """Boolean ``(len(self),)``: no non-EOS token can extend the row.

        A structured constraint whose value is closed (``{"a": 1}`` under a JSON schema
        with no trailing whitespace) is maximal: only EOS may follow. Default: from
        :meth:`allowed`; engine-backed constraints answer without a mask.
        """
        return ~self.allowed()[:, :-1].any(axis=1)

    def advance(self, tokens: np.ndarray) -> PotentialState:
        """Extend context ``r`` by ``tokens[r]`` (non-EOS) for every row."""
        raise NotImplementedError

    def _row_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """``tokens`` as int64, checked to hold one token per row (for ``advance``)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.shape != (len(self),):
            raise ValueError(
                f"`tokens` has shape {tokens.shape}; advance needs one token per row ({len(self)})."
            )
        return tokens

    def select(self, rows: np.ndarray) -> PotentialState:
        """A new batch made of rows ``rows`` (repeats allowed: resampling)."""
        raise NotImplementedError

    def prefix(self) -> np.ndarray:
        """log φ̄ of every context."""
        return self.potential.batch_prefix(self.contexts)

    def complete(self) -> np.ndarray:
        """log φ of every context, as a finished string."""
        return self.potential.batch_complete(self.contexts)


class ContextState(PotentialState):
    """Default state: keeps plain contexts and recomputes through the batch methods.

    The next-token matrix is computed lazily and memoised, so a single-token query after
    ``logw_next`` costs nothing extra.
    """

    def __init__(self, potential: Potential, contexts: list[list[int]]) -> None:
        self.potential = potential
        self._contexts = contexts
        self._cache: np.ndarray | None = None

    @property
    def contexts(self) -> list[list[int]]:  # noqa: D102
        return self._contexts

    def logw_next(self) -> np.ndarray:  # noqa: D102
        if self._cache is None:
            self._cache = self.potential.batch_logw_next(self._contexts)
        return self._cache

    def advance(self, tokens: np.ndarray) -> ContextState:  # noqa: D102
        tokens = self._row_tokens(tokens)
        new = [c + [int(t)] for c, t in zip(self._contexts, tokens)]
        return type(self)(self.potential, new)

    def select(self, rows: np.ndarray) -> ContextState:  # noqa: D102
        rows = np.asarray(rows, dtype=np.int64)
        out = type(self)(self.potential, [list(self._contexts[r]) for r in rows])
        if self._cache is not None:
            out._cache = self._cache[rows]
        return out


class Potential:
    """Base class of all potentials (see the module docstring for the contract).

    Subclasses set ``self.vocab`` (a :class:`Vocabulary`) and implement ``_prefix`` and
    ``_complete``. Override ``_logw_next``, ``_batch_logw_next`` and :meth:`init_state` for
    speed. Class attribute ``hard`` is ``True`` for constraints whose weights are in {0, 1}.
    """

    vocab: Vocabulary
    hard: bool = False

    # ----- to implement -------------------------------------------------------------
    def _prefix(self, context: list[int]) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement `_prefix`.")

    def _complete(self, context: list[int]) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement `_complete`.")

    # ----- slow defaults ------------------------------------------------------------
    def _logw_next(self, context: list[int]) -> np.ndarray:
        """Default: one ``_prefix`` call per token (O(V) calls; override for speed)."""
        V = len(self.vocab)
        out = np.full(V + 1, -np.inf)
        base = self._prefix(context)
        if base == -np.inf:
            return out
        for a in range(V):
            out[a] = self._prefix(context + [a]) - base
        out[V] = self._complete(context) - base
        return out

    def _batch_logw_next(self, contexts: list[list[int]]) -> np.ndarray:
        return (
            np.stack([self._logw_next(c) for c in contexts])
            if contexts
            else np.zeros((0, len(self.vocab) + 1))
        )

    # ----- public API ---------------------------------------------------------------
    def prefix(self, context: Context) -> float:
        """log φ̄(context): ``-inf`` iff no extension of ``context`` has positive weight."""
        ctx = self._as_context(context)
        out = float(self._prefix(ctx))
        check_logw(out, f"{type(self).__name__}.prefix")
        return out

    def complete(self, context: Context) -> float:
        """log φ(context) for ``context`` as a finished string."""
        ctx = self._as_context(context)
        out = float(self._complete(ctx))
        check_logw(out, f"{type(self).__name__}.complete")
        return out

    def logw_next(self, context: Context) -> np.ndarray:
        """Next-token log weights over the vocabulary and EOS (last), shape ``(V + 1,)``.

        Where ``prefix(context)`` is ``-inf`` the vector is all ``-inf``.
        """
        ctx = self._as_context(context)
        out = np.asarray(self._logw_next(ctx), dtype=float)
        self._check_vector(out, (len(self.vocab) + 1,), "logw_next")
        return out

    def batch_prefix(self, contexts: Sequence[Context]) -> np.ndarray:
        """:meth:`prefix` of each context."""
        return np.array([self.prefix(c) for c in contexts], dtype=float)

    def batch_complete(self, contexts: Sequence[Context]) -> np.ndarray:
        """:meth:`complete` of each context."""
        return np.array([self.complete(c) for c in contexts], dtype=float)

    def batch_logw_next(self, contexts: Sequence[Context]) -> np.ndarray:
        """:meth:`logw_next` of each context, shape ``(len(contexts), V + 1)``."""
        ctxs = [self._as_context(c) for c in contexts]
        out = np.asarray(self._batch_logw_next(ctxs), dtype=float)
        self._check_vector(out, (len(ctxs), len(self.vocab) + 1), "batch_logw_next")
        return out

    def init_state(self, n: int) -> PotentialState:
        """A batch of ``n`` empty contexts, ready for sequential evaluation."""
        return ContextState(self, [[] for _ in range(n)])

    def state_from(self, contexts: Sequence[Context]) -> PotentialState:
        """A batch state holding the given contexts of equal length (replays them)."""
        ctxs = [self._as_context(c) for c in contexts]
        lengths = {len(c) for c in ctxs}
        if len(lengths) > 1:
            raise ValueError(
                f"`contexts` have different lengths {sorted(lengths)}; a replayed state needs "
                "contexts of one length."
            )
        state = self.init_state(len(ctxs))
        for t in range(lengths.pop() if lengths else 0):
            state = state.advance(np.array([c[t] for c in ctxs], dtype=np.int64))
        return state

    # ----- composition --------------------------------------------------------------
    def __mul__(self, other: Potential) -> Potential:
        return ALGEBRA["Product"](self, other)

    def __and__(self, other: Potential) -> Potential:
        return ALGEBRA["And"](self, other)

    def __or__(self, other: Potential) -> Potential:
        return ALGEBRA["Or"](self, other)

    def __invert__(self) -> Potential:
        return ALGEBRA["Not"](self)

    def __pow__(self, power: float) -> Potential:
        return ALGEBRA["Power"](self, power)

    # ----- helpers ------------------------------------------------------------------
    def _as_context(self, context: Context) -> list[int]:
        ctx = [int(t) for t in context] if not isinstance(context, list) else context
        self.vocab.check_context(ctx)
        return ctx

    def _check_vector(self, out: np.ndarray, shape: tuple, method: str) -> None:
        if out.shape != shape:
            raise ValueError(
                f"{type(self).__name__}.{method} returned shape {out.shape}, expected {shape} "
                "(one entry per token plus EOS last)."
            )
        check_logw(out, f"{type(self).__name__}.{method}")

    def lift(self, vocab: Vocabulary) -> Potential:
        """This byte-level potential over a token vocabulary (see :class:`ops.Lifted`)."""
        return ALGEBRA["Lifted"](self, vocab)

    def spawn(self) -> Potential:
        """A fresh copy safe to use concurrently (default: ``self``; stateless)."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab={len(self.vocab)} tokens)"


def as_potential(obj: Any, arg: str) -> Potential:
    """Return ``obj`` if it is a :class:`Potential`, else raise a ``TypeError``."""
    if not isinstance(obj, Potential):
        raise TypeError(
            f"`{arg}` is {type(obj).__name__}, not a Potential. Build one with a constraint "
            "builder such as potentia.regex(...), potentia.json(...) or potentia.predicate(...)."
        )
    return obj
