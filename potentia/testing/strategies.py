"""Hypothesis strategies for random toy LMs, hard constraints and SMC problems.

Every strategy draws a seed and structural parameters, then builds the object with a
``numpy.random.Generator``, so a failing example shrinks to a small, reproducible case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from potentia.models.toy import DFA, FiniteLanguage, TablePotential, random_ngram
from potentia.potentials.base import Potential, Vocabulary

__all__ = [
    "vocabularies",
    "toy_lms",
    "soft_potentials",
    "random_dfas",
    "finite_languages",
    "hard_constraints",
    "ToyProblem",
    "toy_problems",
]

_SYMBOLS = [b"a", b"b", b"c", b"d", b"e", "é".encode(), b"ab", b" "]


@st.composite
def vocabularies(draw, min_size: int = 1, max_size: int = 4) -> Vocabulary:
    """Tiny vocabularies of distinct short byte strings (some multi-byte)."""
    n = draw(st.integers(min_size, max_size))
    toks = draw(st.permutations(_SYMBOLS))[:n]
    return Vocabulary(list(toks))


@st.composite
def toy_lms(draw, vocab: Vocabulary | None = None, max_order: int = 2) -> TablePotential:
    """Random n-gram LMs (rows ~ Dirichlet mixed with uniform), sometimes with exact zeros.

    The uniform mixture keeps every path's probability bounded below, so Monte-Carlo
    means over a hundred runs are not dominated by events too rare to be seen.
    """
    vocab = vocab if vocab is not None else draw(vocabularies())
    seed = draw(st.integers(0, 2**31 - 1))
    order = draw(st.integers(1, max_order))
    conc = draw(st.sampled_from([0.3, 1.0, 3.0]))
    eos = draw(st.sampled_from([0.5, 1.0, 3.0]))
    zero = draw(st.sampled_from([0.0, 0.0, 0.3]))
    smooth = draw(st.sampled_from([0.1, 0.3]))
    return random_ngram(
        np.random.default_rng(seed), vocab, order, conc, eos, zero, smoothing=smooth
    )


@st.composite
def soft_potentials(draw, vocab: Vocabulary) -> TablePotential:
    """Random unnormalised n-gram potentials (soft constraints / rewards)."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    return random_ngram(rng, vocab, 2, 1.0, 1.0, 0.0, normalised=False, smoothing=0.3)


@st.composite
def random_dfas(draw, vocab: Vocabulary, max_states: int = 4) -> DFA:
    """Random DFAs over ``vocab`` with a non-empty accepting set."""
    n = draw(st.integers(1, max_states))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    delta = rng.integers(-1, n, size=(n, len(vocab)))
    acc = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    return DFA(vocab, delta, acc)


@st.composite
def finite_languages(draw, vocab: Vocabulary, max_len: int = 3) -> FiniteLanguage:
    """Random non-empty finite languages of strings up to ``max_len`` tokens."""
    word = st.lists(st.integers(0, len(vocab) - 1), min_size=0, max_size=max_len).map(tuple)
    strings = draw(st.lists(word, min_size=1, max_size=6, unique=True))
    return FiniteLanguage(vocab, strings)


def hard_constraints(vocab: Vocabulary, max_len: int = 3) -> st.SearchStrategy[Potential]:
    """Random DFAs or finite languages over ``vocab``."""
    return st.one_of(random_dfas(vocab), finite_languages(vocab, max_len))


@dataclass
class ToyProblem:
    """An SMC problem with an exactly enumerable target.

    Attributes:
        lm: The toy LM.
        constraint: A hard constraint, a soft potential, or ``None``.
        max_len: Length bound (SMC's ``max_tokens``; the exact target uses the same bound).
    """

    lm: TablePotential
    constraint: Potential | None
    max_len: int

    @property
    def target(self) -> Potential:
        """``lm * constraint`` (or the LM alone)."""
        return self.lm if self.constraint is None else self.lm * self.constraint


@st.composite
def toy_problems(draw, max_vocab: int = 3, max_len: int = 3) -> ToyProblem:
    """Random (toy LM, constraint, length bound) triples."""
    vocab = draw(vocabularies(1, max_vocab))
    lm = draw(toy_lms(vocab))
    kind = draw(st.sampled_from(["none", "hard", "hard", "soft"]))
    L = draw(st.integers(1, max_len))
    if kind == "none":
        c = None
    elif kind == "hard":
        c = draw(hard_constraints(vocab, L))
    else:
        c = draw(soft_potentials(vocab))
    return ToyProblem(lm, c, L)
