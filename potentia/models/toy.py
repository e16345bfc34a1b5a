"""Toy LMs and toy constraints with exactly known targets, for exactness tests.

* :class:`TablePotential` — next-token log weights read from a table keyed by the last
  ``order - 1`` tokens (an n-gram). Normalised rows make it an LM (:class:`NGramLM`);
  unnormalised rows make it a soft potential.
* :class:`DFA` — a hard constraint given by a deterministic automaton over the vocabulary,
  with an exact prefix test (a state can still reach acceptance).
* :class:`FiniteLanguage` — a hard constraint that accepts a finite set of strings.
* :class:`ToyLM` — the model object that :func:`potentia.sample` takes, wrapping an n-gram
  and conditioning it on a prompt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from potentia.potentials.base import (
    ContextState,
    Potential,
    PotentialState,
    Vocabulary,
    logsumexp,
)

__all__ = ["TablePotential", "NGramLM", "DFA", "FiniteLanguage", "ToyLM", "random_ngram"]

BOS = -1


class TablePotential(Potential):
    """Next-token log weights from a table keyed by the last ``order - 1`` tokens.

    ``prefix(x) = Σ_t table[key(x<t)][x_t]`` and ``complete(x) = prefix(x) + table[key(x)][EOS]``.
    Contexts shorter than ``order - 1`` are padded on the left with ``-1`` (BOS) after the
    ``prompt``.

    Args:
        vocab: The vocabulary.
        table: Map from a key tuple of length ``order - 1`` to a log weight vector of
            length ``V + 1`` (EOS last). Missing keys raise ``KeyError`` when reached.
        order: The n of the n-gram (1 = unigram, no context).
        prompt: Token indices that precede every context (condition on a prompt).
    """

    def __init__(
        self,
        vocab: Vocabulary,
        table: dict[tuple[int, ...], np.ndarray],
        order: int = 2,
        prompt: Sequence[int] = (),
    ) -> None:
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"`order` is {order!r}; it must be an int >= 1.")
        self.vocab, self.order = vocab, order
        V = len(vocab)
        self.table = {}
        for k, v in table.items():
            v = np.asarray(v, dtype=float)
            if v.shape != (V + 1,):
                raise ValueError(
                    f"`table[{k!r}]` has shape {v.shape}; rows need V + 1 = {V + 1} entries "
                    "(EOS last)."
                )
            if len(k) != order - 1:
                raise ValueError(f"`table` key {k!r} must have length order - 1 = {order - 1}.")
            self.table[tuple(k)] = v
        vocab.check_context(list(prompt), "prompt")
        self.prompt = tuple(int(t) for t in prompt)

    def _key(self, context: Sequence[int]) -> tuple[int, ...]:
        k = self.order - 1
        if k == 0:
            return ()
        full = (BOS,) * k + self.prompt + tuple(context)
        return full[len(full) - k :]

    def _row(self, context: Sequence[int]) -> np.ndarray:
        return self.table[self._key(context)]

    def _prefix(self, context: list[int]) -> float:
        total = 0.0
        for t in range(len(context)):
            total += self._row(context[:t])[context[t]]
            if total == -np.inf:
                return total
        return total

    def _complete(self, context: list[int]) -> float:
        p = self._prefix(context)
        return p if p == -np.inf else p + self._row(context)[-1]

    def _logw_next(self, context: list[int]) -> np.ndarray:
        if self._prefix(context) == -np.inf:
            return np.full(len(self.vocab) + 1, -np.inf)
        return self._row(context).copy()

    def init_state(self, n: int) -> PotentialState:  # noqa: D102
        return _TableState(self, [[] for _ in range(n)], np.zeros(n))


class _TableState(ContextState):
    """Keeps each context's prefix weight so a step costs one table lookup per row."""

    def __init__(self, potential: TablePotential, contexts, prefixes: np.ndarray) -> None:
        super().__init__(potential, contexts)
        self._prefixes = prefixes

    def logw_next(self) -> np.ndarray:
        if self._cache is None:
            p = self.potential
            rows = [p._row(c) for c in self._contexts]
            out = np.array(rows) if rows else np.zeros((0, len(p.vocab) + 1))
            out[self._prefixes == -np.inf] = -np.inf
            self._cache = out
        return self._cache

    def advance(self, tokens):
        tokens = np.asarray(tokens, dtype=np.int64)
        lw = self.logw_next()[np.arange(len(tokens)), tokens]
        new = [c + [int(t)] for c, t in zip(self._contexts, tokens)]
        return _TableState(self.potential, new, self._prefixes + lw)

    def select(self, rows):
        rows = np.asarray(rows, dtype=np.int64)
        out = _TableState(
            self.potential, [list(self._contexts[r]) for r in rows], self._prefixes[rows]
        )
        if self._cache is not None:
            out._cache = self._cache[rows]
        return out

    def prefix(self) -> np.ndarray:
        return self._prefixes.copy()


class NGramLM(TablePotential):
    """An n-gram language model: a :class:`TablePotential` whose rows are log-normalised."""

    def __init__(self, vocab, table, order: int = 2, prompt: Sequence[int] = ()) -> None:
        super().__init__(vocab, table, order, prompt)
        for k, v in self.table.items():
            z = logsumexp(v)
            if not np.isclose(z, 0.0, atol=1e-9):
                raise ValueError(
                    f"`table[{k!r}]` sums to {np.exp(z):.6g}, not 1: an LM's next-token "
                    "probabilities (EOS included) must sum to one. Use TablePotential for "
                    "unnormalised weights."
                )


def random_ngram(
    rng: np.random.Generator,
    vocab: Vocabulary | int,
    order: int = 2,
    concentration: float = 1.0,
    eos_boost: float = 1.0,
    zero_prob: float = 0.0,
    normalised: bool = True,
    smoothing: float = 0.0,
) -> TablePotential:
    """A random n-gram over a tiny vocabulary: rows ~ Dirichlet(concentration).

    Args:
        rng: Source of randomness.
        vocab: A vocabulary or a size (then tokens are ``b"a"``, ``b"b"``, ...).
        order: The n of the n-gram.
        concentration: Dirichlet concentration (small = peaked rows).
        eos_boost: Multiplier on EOS's Dirichlet parameter (large = short strings).
        zero_prob: Probability that a non-EOS entry is set to exactly zero.
        normalised: Return an :class:`NGramLM` (rows sum to one) if true, else a
            :class:`TablePotential` with rows scaled by a random positive factor.
        smoothing: Mix each row with the uniform distribution, ``(1 - s) p + s / (V + 1)``
            (before zeros are planted), which bounds how rare any path can be.
    """
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"`smoothing` is {smoothing}; it must lie in [0, 1].")
    if isinstance(vocab, int):
        vocab = Vocabulary([bytes([97 + i]) for i in range(vocab)])
    V = len(vocab)
    keys = [()]
    for _ in range(order - 1):
        keys = [k + (t,) for k in keys for t in [BOS, *range(V)]]
    alpha = np.full(V + 1, float(concentration))
    alpha[-1] *= eos_boost
    table = {}
    for k in keys:
        p = (1 - smoothing) * rng.dirichlet(alpha) + smoothing / (V + 1)
        if zero_prob > 0:
            mask = rng.random(V) < zero_prob
            p[:V][mask] = 0.0
            if p.sum() == 0:
                p[-1] = 1.0
            p = p / p.sum()
        with np.errstate(divide="ignore"):
            row = np.log(p)
        if not normalised:
            row = row + rng.normal()
        table[k] = row
    cls = NGramLM if normalised else TablePotential
    return cls(vocab, table, order)


class DFA(Potential):
    """A hard constraint recognised by a deterministic finite automaton.

    Args:
        vocab: The vocabulary (the automaton's alphabet).
        transitions: Integer array ``(n_states, V)``; entry ``-1`` means no transition.
        accepting: The accepting states.
        start: The start state.
    """

    hard = True

    def __init__(
        self,
        vocab: Vocabulary,
        transitions: np.ndarray,
        accepting: Iterable[int],
        start: int = 0,
    ) -> None:
        delta = np.asarray(transitions, dtype=np.int64)
        n = delta.shape[0] if delta.ndim == 2 else 0
        if delta.ndim != 2 or delta.shape[1] != len(vocab):
            raise ValueError(
                f"`transitions` has shape {delta.shape}; it must be (n_states, {len(vocab)})."
            )
        if ((delta < -1) | (delta >= n)).any():
            raise ValueError("`transitions` entries must be -1 or a state in 0..n_states-1.")
        self.vocab, self.delta, self.start = vocab, delta, int(start)
        self.accepting = np.zeros(n, dtype=bool)
        self.accepting[list(accepting)] = True
        # Co-reachability: states from which an accepting state can be reached.
        live = self.accepting.copy()
        while True:
            nxt = live | np.array([(row >= 0).any() and live[row[row >= 0]].any() for row in delta])
            if (nxt == live).all():
                break
            live = nxt
        self.live = live

    def _state(self, context: list[int]) -> int:
        q = self.start
        for t in context:
            q = int(self.delta[q, t])
            if q < 0:
                return -1
        return q

    def _prefix(self, context: list[int]) -> float:
        q = self._state(context)
        return 0.0 if q >= 0 and self.live[q] else -np.inf

    def _complete(self, context: list[int]) -> float:
        q = self._state(context)
        return 0.0 if q >= 0 and self.accepting[q] else -np.inf

    def _logw_next(self, context: list[int]) -> np.ndarray:
        V = len(self.vocab)
        out = np.full(V + 1, -np.inf)
        q = self._state(context)
        if q < 0 or not self.live[q]:
            return out
        nxt = self.delta[q]
        ok = (nxt >= 0) & self.live[np.maximum(nxt, 0)]
        out[:V][ok] = 0.0
        out[V] = 0.0 if self.accepting[q] else -np.inf
        return out


class FiniteLanguage(Potential):
    """A hard constraint accepting exactly the given token strings.

    Args:
        vocab: The vocabulary.
        strings: The accepted strings, as sequences of token indices.
    """

    hard = True

    def __init__(self, vocab: Vocabulary, strings: Iterable[Sequence[int]]) -> None:
        self.vocab = vocab
        self.strings = {tuple(int(t) for t in s) for s in strings}
        for s in self.strings:
            vocab.check_context(list(s), "strings[...]")
        self.prefixes = {s[:i] for s in self.strings for i in range(len(s) + 1)}

    def _prefix(self, context: list[int]) -> float:
        return 0.0 if tuple(context) in self.prefixes else -np.inf

    def _complete(self, context: list[int]) -> float:
        return 0.0 if tuple(context) in self.strings else -np.inf


class ToyLM:
    """A model object for :func:`potentia.sample` built on an n-gram table.

    Args:
        lm: A :class:`TablePotential` (usually an :class:`NGramLM`).
    """

    def __init__(self, lm: TablePotential) -> None:
        self.lm = lm
        self.vocab = lm.vocab

    def encode(self, text: str) -> list[int]:
        """Greedy longest-match tokenisation of ``text`` into vocabulary indices."""
        data, out, i = text.encode("utf-8"), [], 0
        by_len = sorted(range(len(self.vocab)), key=lambda j: -len(self.vocab.tokens[j]))
        while i < len(data):
            for j in by_len:
                tok = self.vocab.tokens[j]
                if tok and data.startswith(tok, i):
                    out.append(j)
                    i += len(tok)
                    break
            else:
                raise ValueError(
                    f"`prompt` {text!r} cannot be tokenised by the toy vocabulary at byte {i}."
                )
        return out

    def potential(self, prompt: str | Sequence[int] = ()) -> TablePotential:
        """The LM conditioned on ``prompt`` (text or token indices)."""
        ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        cls = type(self.lm)
        return cls(self.vocab, self.lm.table, self.lm.order, prompt=ids)
