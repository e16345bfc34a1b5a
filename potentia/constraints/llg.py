"""llguidance-backed constraints: a grammar as a potential over any token vocabulary.

:class:`LLGConstraint` turns an llguidance grammar (Lark syntax; regexes and JSON schemas
are compiled to it) into a hard :class:`~potentia.potentials.base.Potential`. The same
class serves the byte level (``Vocabulary.bytes256()``) and every token vocabulary:
:meth:`LLGConstraint.lift` recompiles the grammar for another vocabulary, whose llguidance
tokenizer is built once from the potentia :class:`Vocabulary` itself (tokens in vector
order, plus a special EOS entry at position ``V``), so masks come out directly in vocabulary
positions, for toy and real vocabularies alike.

Semantics. A byte string is in the language iff it is valid UTF-8 accepted by the grammar
and, where the builder gives one, passes the exact ``check`` at completion (a regex
full-match, a JSON Schema validation). A token context stands for the concatenation of its
tokens' bytes, so tokens may end inside a multi-byte character and a token with no bytes
never changes the answer. The prefix weight is 1 iff llguidance accepts the bytes so far,
i.e. iff some continuation is accepted by the engine's grammar.

Exactness. llguidance normally tokenizes forced bytes canonically and masks every other
split of them; we compile every grammar with ``%llguidance {"no_forcing": true}`` so that
every tokenization of a viable byte prefix is allowed (the potential is defined on bytes,
not on canonical tokenizations).

Speed. :class:`LLGState` keeps one llguidance matcher per row. Matchers are never mutated
once a state holds them: :meth:`LLGState.advance` deep-copies (a few µs) and consumes,
:meth:`LLGState.select` shares references, so states are persistent and cheap to fork.
``logw_tokens`` checks one token with ``validate_tokens`` (no mask);
``logw_next`` fills llguidance's bitmask and expands it to a log-weight matrix.

Engine errors. llguidance reports a resource limit (lexer fuel, lexer states, ...) by
putting the matcher into an error state, and the matchers copied from one root share the
lexer's caches, so one heavy query can make every later query of the same object fail.
An engine error is therefore never read as weight zero: the query is rerun on a matcher
compiled afresh (a clean cache), then with the limits raised 10x and 100x (see
:data:`ESCALATION`); the poisoned root is replaced. If every try fails, ``complete``
falls back on the exact ``check`` when the builder declares it exact (``check_exact``),
and every other query raises :class:`EngineLimitError`, which names the limit and how to
raise it (``limits=``). Answers never depend on the order of earlier queries.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable

import llguidance
import numpy as np

from potentia.potentials.base import Potential, PotentialState, Vocabulary

__all__ = ["LLGConstraint", "LLGState", "llg_tokenizer", "EngineLimitError", "NO_FORCING"]

NO_FORCING = '%llguidance {"no_forcing": true}\n'
_EOS_BYTES = b"\xff[potentia-eos]"
#: Factors applied to llguidance's resource limits when a query hits one (first a fresh
#: matcher with the given limits, then larger ones).
ESCALATION = (1, 10, 100)
_LIMIT_DEFAULTS = {
    "step_lexer_fuel": 200_000,
    "initial_lexer_fuel": 1_000_000,
    "step_max_items": 50_000,
    "max_lexer_states": 250_000,
}
_LIMIT_KEYS = (*_LIMIT_DEFAULTS, "max_items_in_row", "max_grammar_size", "precompute_large_lexemes")


_LIMIT_WORDS = ("too many", "fuel", "limit", "exceeded", "too large", "too big", "max_")


def _is_limit(err: str) -> bool:
    """Whether an llguidance error reports a resource limit (not the grammar's answer).

    Other errors (e.g. ``NoExtensionBias``: no byte can follow) are the engine's answer.
    """
    return any(w in err.lower() for w in _LIMIT_WORDS)


class EngineLimitError(RuntimeError):
    """llguidance hit a resource limit on a query, even after a fresh, larger retry."""


_TOKENIZERS: weakref.WeakKeyDictionary[Vocabulary, llguidance.LLTokenizer] = (
    weakref.WeakKeyDictionary()
)


_EMPTY: weakref.WeakKeyDictionary[Vocabulary, np.ndarray] = weakref.WeakKeyDictionary()


def _empty_tokens(vocab: Vocabulary) -> np.ndarray:
    """Positions of the tokens with no bytes, cached per vocabulary.

    A scan of 262k tokens costs ~0.1 s, more than compiling most grammars.
    """
    out = _EMPTY.get(vocab)
    if out is None:
        out = _EMPTY[vocab] = np.array(
            [i for i, t in enumerate(vocab.tokens) if not t], dtype=np.int64
        )
    return out


_BYTES: list[Vocabulary] = []


def bytes_vocab() -> Vocabulary:
    """One shared ``Vocabulary.bytes256()``.

    Building one costs ~0.4 ms, and a shared one keeps the per-vocabulary caches above
    (tokenizer, empty tokens, spelling tables) alive between compiles.
    """
    if not _BYTES:
        _BYTES.append(Vocabulary.bytes256())
    return _BYTES[0]


def _check_limits(limits: dict | None) -> dict:
    if limits is None:
        return {}
    if not isinstance(limits, dict):
        raise TypeError(
            f"`limits` is {type(limits).__name__}; pass a dict such as "
            "{'step_lexer_fuel': 2_000_000}."
        )
    bad = sorted(set(limits) - set(_LIMIT_KEYS))
    if bad:
        raise ValueError(f"`limits` has unknown keys {bad}; use some of {list(_LIMIT_KEYS)}.")
    return dict(limits)


class _VocabTokenizer:
    """The ``TokenizerWrapper`` protocol over a potentia vocabulary (EOS appended last).

    llguidance only tokenizes text to force bytes canonically, which ``no_forcing`` turns
    off; the greedy longest-match tokenizer below exists to satisfy the protocol.
    """

    def __init__(self, vocab: Vocabulary) -> None:
        self.tokens = list(vocab.tokens) + [_EOS_BYTES]
        self.eos_token_id = len(vocab)
        self.bos_token_id = None
        self.special_token_ids = [len(vocab)]
        self._vocab = vocab

    def __call__(self, data: bytes | str) -> list[int]:
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self._vocab.greedy_encode(data, skip=True)  # never used for masks


def llg_tokenizer(vocab: Vocabulary) -> llguidance.LLTokenizer:
    """The llguidance tokenizer of ``vocab`` (built once per vocabulary, then cached).

    Token ``i`` of the tokenizer is position ``i`` of ``vocab``; token ``len(vocab)`` is a
    special EOS token.
    """
    tok = _TOKENIZERS.get(vocab)
    if tok is None:
        tok = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_VocabTokenizer(vocab)))
        _TOKENIZERS[vocab] = tok
    return tok


class LLGConstraint(Potential):
    """A hard constraint given by an llguidance Lark grammar, over ``vocab``.

    Args:
        lark: The grammar in llguidance's Lark dialect (without a ``%llguidance`` line).
        vocab: The vocabulary of the potential (``Vocabulary.bytes256()`` for the byte
            level; use :meth:`lift` to move to another one).
        check: Optional exact test of a finished byte string, applied at EOS on top of the
            engine's accepting state (returns ``True`` to accept).
        name: A short description used in ``repr`` and error messages.
        check_exact: ``check`` alone decides membership (the engine's language is a
            superset); then ``complete`` still answers through ``check`` when the engine
            hits a resource limit.
        limits: llguidance resource limits (``LLParserLimits`` fields, e.g.
            ``{"step_lexer_fuel": 2_000_000}``); each query retries with them raised
            10x and 100x before it gives up (see the module docstring).

    Raises:
        ValueError: if llguidance rejects the grammar, or the language is empty.
    """

    hard = True

    def __init__(
        self,
        lark: str,
        vocab: Vocabulary | None = None,
        *,
        check: Callable[[bytes], bool] | None = None,
        name: str = "grammar",
        check_exact: bool = False,
        limits: dict | None = None,
        _root: llguidance.LLMatcher | None = None,
    ) -> None:
        self.lark = lark
        self.check = check
        self.name = name
        self.check_exact = check_exact and check is not None
        self.limits = _check_limits(limits)
        self._compile(bytes_vocab() if vocab is None else vocab, _root)

    # ----- compilation ---------------------------------------------------------------
    def _compile(self, vocab: Vocabulary, root: llguidance.LLMatcher | None = None) -> None:
        """Build the grammar and its root matcher once (the constructor validates it)."""
        self.vocab = vocab
        self.tokenizer = llg_tokenizer(vocab)
        self._grammar = llguidance.LLMatcher.grammar_from_lark(NO_FORCING + self.lark)
        if root is None:
            root = self._new_root(1)
        if root.is_error():
            err = root.get_error().strip()
            raise ValueError(f"{self.name}: llguidance rejects the grammar: {err}")
        self._root = root
        self._empty = _empty_tokens(vocab)
        self._nwords = (len(vocab) + 1 + 31) // 32
        if vocab == bytes_vocab():
            self._check_nonempty()

    def _llg_limits(self, factor: int) -> llguidance.LLParserLimits:
        lim = dict(self.limits)
        for k, v in _LIMIT_DEFAULTS.items():
            lim[k] = lim.get(k, v) * factor
        return llguidance.LLParserLimits(**lim)

    def _new_root(self, factor: int) -> llguidance.LLMatcher:
        return llguidance.LLMatcher(
            self.tokenizer, self._grammar, log_level=0, limits=self._llg_limits(factor)
        )

    def _check_nonempty(self) -> None:
        """Raise if no string is in the language (checked at the byte level)."""
        root = [self._root]
        bits = self._mask_bits(root, [[]])[0]
        if not bits[: len(self.vocab)].any() and not root[0].is_accepting():
            raise ValueError(
                f"{self.name}: the constraint's language is empty (no string satisfies it); "
                "check the pattern, grammar or schema for contradictory parts."
            )

    def lift(self, vocab: Vocabulary) -> LLGConstraint:
        """The same constraint over token vocabulary ``vocab`` (fast: native masks).

        Args:
            vocab: Any token vocabulary (toy or a real tokenizer's).
        """
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"`vocab` is {type(vocab).__name__}; pass a potentia Vocabulary.")
        if vocab == self.vocab:
            return self
        out = copy.copy(self)
        out._compile(vocab)
        return out

    # ----- engine helpers ------------------------------------------------------------
    def _fresh(self) -> llguidance.LLMatcher:
        return self._root.deep_copy()

    def _tokens(self, context: list[int]) -> list[int]:
        return [t for t in context if self.vocab.tokens[t]]

    def _run(self, context: list[int]) -> llguidance.LLMatcher | None:
        """A matcher after ``context``, or ``None`` if the prefix is not viable.

        Raises:
            EngineLimitError: if the engine fails on ``context`` even with raised limits.
        """
        toks = self._tokens(context)
        m = self._fresh()
        n = m.try_consume_tokens(toks) if toks else 0
        if m.is_error():  # a rejected token leaves no error: a limit, or no continuation
            if not _is_limit(m.get_error()):
                return None
            return self._recover(toks, m.get_error())[0]
        return m if n == len(toks) else None

    def _recover(
        self, toks: list[int], err: str, start: int = 0
    ) -> tuple[llguidance.LLMatcher | None, int]:
        """Rerun ``toks`` on fresh matchers with growing limits, from ``ESCALATION[start]``.

        The root is replaced by a fresh one (the old one's shared caches may be spent).
        Returns the matcher (``None``: not viable) and the escalation step that worked.
        """
        self._root = self._new_root(1)
        for level in range(start, len(ESCALATION)):
            root = self._root if ESCALATION[level] == 1 else self._new_root(ESCALATION[level])
            m = root.deep_copy()
            n = m.try_consume_tokens(toks) if toks else 0
            if not m.is_error():
                return (m if n == len(toks) else None), level
            err = m.get_error()
            if not _is_limit(err):
                return None, level
        raise self._limit_error(err)

    def _limit_error(self, err: str) -> EngineLimitError:
        first = err.strip().splitlines()[0] if err.strip() else "unknown engine error"
        top = ESCALATION[-1]
        raised = ", ".join(
            f"{k}={self.limits.get(k, v) * top:_}" for k, v in _LIMIT_DEFAULTS.items()
        )
        return EngineLimitError(
            f"{self.name}: llguidance failed on this query ({first!r}) even on a fresh matcher "
            f"with its limits raised {top}x ({raised}). Pass larger limits, e.g. "
            "`limits={'step_lexer_fuel': 100_000_000}` to `potentia.json(...)` or "
            "`LLGConstraint(...)`, or simplify the schema/grammar."
        )

    # ----- per-row reading hooks (a subclass may read tokens through a transducer) -----
    def _row_start(self) -> object:
        """The per-row reading state of an empty context (``None``: tokens go as they are)."""
        return None

    def _read(
        self, m: llguidance.LLMatcher, aux: object, t: int, consume: bool
    ) -> tuple[bool, object]:
        """Whether ``m`` takes token ``t`` (consumed into ``m`` iff ``consume``), and the new row state."""
        if consume:
            return m.try_consume_tokens([t]) == 1, aux
        return bool(m.validate_tokens([t])), aux

    def _fix_bits(
        self, matchers: list[llguidance.LLMatcher], auxes: list[object], bits: np.ndarray
    ) -> None:
        """Correct the native mask ``bits`` (in place) where :meth:`_read` differs."""

    def _where(self, aux: object) -> str | None:
        """Where a row with reading state ``aux`` stands, for death messages (or ``None``)."""
        return None

    def _aux_of(self, context: list[int]) -> object:
        """The per-row reading state after ``context``."""
        return None

    def _accepts(self, m: llguidance.LLMatcher, context: list[int]) -> bool:
        acc = m.is_accepting()
        if m.is_error() and _is_limit(m.get_error()):
            try:
                m2 = self._recover(self._tokens(context), m.get_error())[0]
            except EngineLimitError:
                if not self.check_exact:
                    raise
                return bool(self.check(self.vocab.decode_bytes(context)))
            acc = m2 is not None and m2.is_accepting()
        if not acc:
            return False
        if self.check is None:
            return True
        return bool(self.check(self.vocab.decode_bytes(context)))

    def _mask_bits(
        self,
        matchers: list[llguidance.LLMatcher],
        contexts: list[list[int]],
        auxes: list[object] | None = None,
    ) -> np.ndarray:
        """Allowed-token bits of each matcher, shape ``(n, V)`` as booleans.

        A matcher that fails while computing its mask is replaced in ``matchers`` (in
        place) by a recovered one for the same context (see :meth:`_recover`).
        """
        words = np.zeros((len(matchers), self._nwords), dtype=np.int32)
        for i, m in enumerate(matchers):
            row = words[i]
            m.unsafe_compute_mask_ptr(row.ctypes.data, row.nbytes)
            level = 0
            while m.is_error() and _is_limit(m.get_error()):
                toks = self._tokens(contexts[i])
                if level >= len(ESCALATION):
                    raise self._limit_error(m.get_error())
                m, level = self._recover(toks, m.get_error(), level)
                if m is None:  # cannot happen for a viable context; fail loudly if it does
                    raise self._limit_error("a viable prefix became non-viable on a retry")
                matchers[i] = m
                row[:] = 0
                m.unsafe_compute_mask_ptr(row.ctypes.data, row.nbytes)
                level += 1
        bits = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")
        bits = bits[:, : len(self.vocab)].view(bool)
        if self._row_start() is not None:
            if auxes is None:
                auxes = [self._aux_of(c) for c in contexts]
            self._fix_bits(matchers, auxes, bits)
        return bits

    def _vectors(
        self,
        matchers: list[llguidance.LLMatcher | None],
        eos: np.ndarray,
        contexts: list[list[int]],
        auxes: list[object] | None = None,
    ) -> np.ndarray:
        """Log-weight matrix ``(n, V + 1)`` from matchers (``None`` = dead) and EOS weights.

        A matcher recovered while computing its mask replaces the old one in ``matchers``.
        """
        V = len(self.vocab)
        out = np.full((len(matchers), V + 1), -np.inf)
        live = [i for i, m in enumerate(matchers) if m is not None]
        if live:
            sub = [matchers[i] for i in live]
            sub_aux = None if auxes is None else [auxes[i] for i in live]
            bits = self._mask_bits(sub, [contexts[i] for i in live], sub_aux)
            for i, m in zip(live, sub):
                matchers[i] = m
            block = out[live, :V]
            block[bits] = 0.0
            if self._empty.size:
                block[:, self._empty] = 0.0
            out[live, :V] = block
        out[:, V] = eos
        return out

    # ----- the potential contract ----------------------------------------------------
    def _prefix(self, context: list[int]) -> float:
        return 0.0 if self._run(context) is not None else -np.inf

    def _complete(self, context: list[int]) -> float:
        try:
            m = self._run(context)
            return 0.0 if m is not None and self._accepts(m, context) else -np.inf
        except EngineLimitError:
            if not self.check_exact:
                raise
            return 0.0 if self.check(self.vocab.decode_bytes(context)) else -np.inf

    def _logw_next(self, context: list[int]) -> np.ndarray:
        return self._batch_logw_next([context])[0]

    def _batch_logw_next(self, contexts: list[list[int]]) -> np.ndarray:
        ms = [self._run(c) for c in contexts]
        eos = np.array(
            [
                0.0 if m is not None and self._accepts(m, c) else -np.inf
                for m, c in zip(ms, contexts)
            ]
        )
        return self._vectors(ms, eos, contexts)

    def init_state(self, n: int) -> LLGState:  # noqa: D102
        return LLGState(self, [self._root] * n, [[] for _ in range(n)], [self._row_start()] * n)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, vocab={len(self.vocab)} tokens)"


class LLGState(PotentialState):
    """A batch of rows of an :class:`LLGConstraint`, one llguidance matcher per row.

    Matchers held by a state are never mutated, so :meth:`select` shares them and
    :meth:`advance` copies before consuming. A row whose prefix is not viable holds
    ``None`` and has weight zero from then on.
    """

    def __init__(
        self,
        potential: LLGConstraint,
        matchers: list[llguidance.LLMatcher | None],
        contexts: list[list[int]],
        auxes: list[object] | None = None,
    ) -> None:
        self.potential = potential
        self.matchers = matchers
        self._contexts = contexts
        self._aux = [None] * len(matchers) if auxes is None else auxes
        self._eos: np.ndarray | None = None
        self._next: np.ndarray | None = None

    @property
    def contexts(self) -> list[list[int]]:  # noqa: D102
        return self._contexts

    def __len__(self) -> int:
        return len(self.matchers)

    def _eos_weights(self) -> np.ndarray:
        if self._eos is None:
            p = self.potential
            self._eos = np.array(
                [
                    0.0 if m is not None and p._accepts(m, c) else -np.inf
                    for m, c in zip(self.matchers, self._contexts)
                ]
            )
        return self._eos

    def logw_next(self) -> np.ndarray:  # noqa: D102
        if self._next is None:
            self._next = self.potential._vectors(
                self.matchers, self._eos_weights(), self._contexts, self._aux
            )
        return self._next

    def allowed(self) -> np.ndarray:
        """Boolean mask ``(n, V + 1)`` straight from llguidance's bitmask (no float row)."""
        if self._next is not None:
            return self._next > -np.inf
        p = self.potential
        V = len(p.vocab)
        out = np.zeros((len(self.matchers), V + 1), dtype=bool)
        live = [i for i, m in enumerate(self.matchers) if m is not None]
        if live:
            sub = [self.matchers[i] for i in live]
            out[live, :V] = p._mask_bits(
                sub, [self._contexts[i] for i in live], [self._aux[i] for i in live]
            )
            for i, m in zip(live, sub):
                self.matchers[i] = m  # an equivalent matcher recovered from an engine error
            if p._empty.size:
                out[np.ix_(live, p._empty)] = True
        out[:, V] = self._eos_weights() > -np.inf
        return out

    def where(self) -> list[str | None]:  # noqa: D102
        return [self.potential._where(a) for a in self._aux]

    def maximal(self) -> np.ndarray:
        """Rows where the engine can take nothing but EOS (llguidance's ``is_stopped``)."""
        return np.array([m is None or m.is_stopped() for m in self.matchers], dtype=bool)

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:  # noqa: D102
        if self._next is not None:
            return self._next[np.asarray(rows, dtype=np.int64), np.asarray(tokens, dtype=np.int64)]
        # The single-token check AWRS makes for every drawn token: plain Python ints and
        # one native validate_tokens call per query (no mask, no numpy per element).
        p = self.potential
        V = len(p.vocab)
        vtoks = p.vocab.tokens
        matchers = self.matchers
        rl = rows.tolist() if isinstance(rows, np.ndarray) else list(rows)
        tl = tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens)
        res = []
        for r, t in zip(rl, tl):
            m = matchers[r]
            if m is None:
                res.append(-np.inf)
            elif t == V:
                res.append(self._eos_weights()[r])
            elif not vtoks[t]:
                res.append(0.0)
            else:
                ok = p._read(m, self._aux[r], t, False)[0]
                if not ok and m.is_error() and _is_limit(m.get_error()):
                    m = p._recover(p._tokens(self._contexts[r]), m.get_error())[0]
                    matchers[r] = m
                    ok = m is not None and p._read(m, self._aux[r], t, False)[0]
                res.append(0.0 if ok else -np.inf)
        return np.array(res, dtype=float)

    def advance(self, tokens: np.ndarray) -> LLGState:  # noqa: D102
        tokens = self._row_tokens(tokens)
        vtoks = self.potential.vocab.tokens
        p = self.potential
        new: list[llguidance.LLMatcher | None] = []
        auxes: list[object] = []
        ctxs = [c + [t] for c, t in zip(self._contexts, tokens.tolist())]
        for m, aux, t, c in zip(self.matchers, self._aux, tokens.tolist(), ctxs):
            if m is None or not vtoks[t]:
                new.append(m)
                auxes.append(aux)
                continue
            m2 = m.deep_copy()
            ok, aux2 = p._read(m2, aux, t, True)
            if m2.is_error():  # a rejection leaves no error: a limit (rerun) or a dead end
                if _is_limit(m2.get_error()):
                    m2, _ = p._recover(p._tokens(c), m2.get_error())
                    ok = m2 is not None
                else:
                    ok = False
            new.append(m2 if ok else None)
            auxes.append(aux2)
        return LLGState(self.potential, new, ctxs, auxes)

    def select(self, rows: np.ndarray) -> LLGState:  # noqa: D102
        rows = np.asarray(rows, dtype=np.int64).tolist()
        out = LLGState(
            self.potential,
            [self.matchers[r] for r in rows],
            [list(self._contexts[r]) for r in rows],
            [self._aux[r] for r in rows],
        )
        if self._eos is not None:
            out._eos = self._eos[rows]
        if self._next is not None:
            out._next = self._next[rows]
        return out

    def prefix(self) -> np.ndarray:  # noqa: D102
        return np.array([0.0 if m is not None else -np.inf for m in self.matchers])

    def complete(self) -> np.ndarray:  # noqa: D102
        return self._eos_weights().copy()
