"""Grammar-constrained infilling: exact against brute force (lark's Earley as the oracle).

For every case, every string ``x`` over the case's alphabet up to a length bound is checked:

* ``complete(x)`` equals the oracle: lark's Earley parser with ``lexer="dynamic_complete"``
  (every split into terminals) accepts ``x`` and ``x`` matches the fixed parts (a regex);
* ``prefix(x) = 0`` for every prefix of every member found by enumerating all gap fillings
  up to ``fill`` characters (soundness), and
* ``prefix(x) = 0`` only with a *witness*: a breadth-first search over the alphabet (pruned
  by the potential itself) finds ``w`` with ``x + w`` accepted by the oracle. Together these
  give ``prefix(x) = 0  ⇔  x can be completed`` for every ``x`` checked, without a bound on
  completion lengths (a failed search would fail the test, never pass it).
"""

from __future__ import annotations

import itertools
import re
from functools import cache

import numpy as np
import pytest
from lark import Lark
from lark.exceptions import LarkError

import potentia as pt
from potentia.constraints.infill import Infill
from potentia.models import enumerate_target, random_ngram
from potentia.smc import smc
from potentia.testing import assert_gof, assert_potential_laws, smc_exact_draws

PARENS = """start: item*
item: "(" start ")" | "x"
"""
ARITH = r"""start: expr
expr: expr "+" term | term
term: term "*" atom | atom
atom: NUMBER | "(" expr ")"
NUMBER: /[0-9]+/
%ignore " "
"""
JSONISH = r"""start: value
value: "[" [value ("," value)*] "]" | NUMBER | STRING
NUMBER: /[0-9]+/
STRING: /"[a-z]*"/
%ignore " "
"""

# (grammar, parts, alphabet, length of x checked, total gap length enumerated, the
# alphabet of the witness search: enough characters to complete any viable prefix)
CASES = [
    (PARENS, ["(", None, ")"], "()x", 5, 5, ")x"),
    (PARENS, [None, "((", None], "()x", 5, 5, "()x"),
    (PARENS, ["x", None, ")(", None, ""], "()xy", 5, 4, "()x"),
    (ARITH, ["1", None, "+2"], "12+*() ", 4, 3, "1)+2"),
    (ARITH, ["(", None, ")*", None], "1+*()", 5, 3, "1)*"),
    (JSONISH, ["[", None, ',"a', None, "]"], '[],"a1', 4, 3, '1]",a'),
    (JSONISH, [None, '"', None], '[],"a1', 4, 3, '1]",a'),
]


class Oracle:
    """Membership in L(grammar) ∩ parts by lark (all lexings) and a regex for the parts."""

    def __init__(self, grammar: str, parts: list) -> None:
        self.lark = Lark(grammar, parser="earley", lexer="dynamic_complete")
        self.parts = re.compile(
            "".join("(.*)" if p is None else re.escape(p) for p in parts), re.DOTALL
        )

    @cache  # noqa: B019 - a test helper, one per case
    def __call__(self, s: str) -> bool:
        if not self.parts.fullmatch(s):
            return False
        try:
            self.lark.parse(s)
        except LarkError:
            return False
        return True


def members(parts: list, alphabet: str, fill: int, oracle: Oracle) -> set[str]:
    """Every member whose gaps hold at most ``fill`` characters in total."""
    gaps = sum(p is None for p in parts)
    out = set()
    for total in range(fill + 1):
        for chars in itertools.product(alphabet, repeat=total):
            s = "".join(chars)
            for cuts in itertools.combinations_with_replacement(range(total + 1), gaps - 1):
                bounds = [0, *cuts, total]
                it = iter(s[a:b] for a, b in zip(bounds, bounds[1:]))
                text = "".join(next(it) if p is None else p for p in parts)
                if oracle(text):
                    out.add(text)
    return out


def witness(
    c: Infill, x: str, alphabet: str, oracle: Oracle, known: set[str], depth: int = 10
) -> bool:
    """Whether BFS (pruned by ``c.prefix``) reaches a member or a prefix of a known member.

    ``known`` holds prefixes of strings the oracle accepted; a new member's prefixes join it.
    """
    frontier = [x]
    for _ in range(depth + 1):
        nxt = []
        for s in frontier:
            if s in known:
                return True
            if c.complete(list(s.encode())) == 0.0 and oracle(s):  # the oracle decides
                known.update(s[:i] for i in range(len(s) + 1))
                return True
            nxt.extend(s + a for a in alphabet if c.prefix(list((s + a).encode())) == 0.0)
        frontier = nxt[:5000]
    return False


@pytest.mark.parametrize(("grammar", "parts", "alphabet", "n", "fill", "complete_with"), CASES)
def test_exact_against_brute_force(grammar, parts, alphabet, n, fill, complete_with):
    c = pt.infill(grammar, parts=parts)
    oracle = Oracle(grammar, parts)
    lang = members(parts, alphabet, fill, oracle)
    assert lang, "the enumeration found no member: the case tests nothing"
    prefixes = {s[:i] for s in lang for i in range(len(s) + 1)}
    for s in sorted(prefixes, key=len):  # soundness on every prefix of every member found
        assert c.prefix(list(s.encode())) == 0.0, (parts, s)
    chars_of = "".join(sorted(set(complete_with + "".join(p for p in parts if p))))
    viable = 0
    for k in range(n + 1):
        for chars in itertools.product(alphabet, repeat=k):
            x = "".join(chars)
            data = list(x.encode())
            assert (c.complete(data) == 0.0) == oracle(x), (parts, x)
            if c.prefix(data) == 0.0:
                viable += 1
                assert witness(c, x, chars_of, oracle, prefixes), (parts, x)
            else:
                assert x not in prefixes, (parts, x)  # (witnesses only add viable strings)
    assert viable > 3


def test_terminal_crosses_the_gap_boundary():
    """A number split between a fixed part and a gap, a string opened in a fixed part."""
    c = pt.infill(ARITH, parts=["1", None, "+2"])
    assert c.complete(list(b"13+2")) == 0.0 and c.complete(list(b"1+2")) == 0.0
    assert c.prefix(list(b"1(")) == -np.inf
    j = pt.infill(JSONISH, parts=["[", None, ',"a', None, "]"])
    assert j.complete(list(b'[1,"ab"]')) == 0.0  # the gap continues the string
    assert j.complete(list(b'[1,"a",2]')) == 0.0
    assert j.prefix(list(b'[1,"a1')) == -np.inf  # a digit cannot continue the string


def test_gap_can_contain_the_next_fixed_part():
    c = pt.infill(PARENS, parts=["(", None, ")"])
    assert c.fillings("(())") == [("()",)]
    assert c.prefix(list(b"(()")) == 0.0  # the gap holds "()" so far, or "(" and then ")"
    assert c.complete(list(b"(())")) == 0.0 and c.complete(list(b"()")) == 0.0
    assert c.complete(list(b"(()")) == -np.inf
    two = pt.infill(PARENS, parts=[None, ")", None])
    assert sorted(two.fillings("())")) == [("(", ")"), ("()", "")]


def test_utf8_inside_a_gap_and_split_bytes():
    g = r"""start: "<" WORD ">"
WORD: /[a-zé€]+/
"""
    c = pt.infill(g, parts=["<", None, ">"])
    e = "é".encode()
    assert c.prefix(list(b"<" + e[:1])) == 0.0  # pending byte: some character completes it
    assert c.complete(list(b"<a" + e + b">")) == 0.0
    assert c.prefix(list(b"<\xc3\xa8")) == -np.inf  # è is not in the class
    assert c.prefix(list(b"<\xe2\x82")) == 0.0 and c.prefix(list(b"<\xe2\x81")) == -np.inf
    assert c.prefix(list(b"<\xff")) == -np.inf


@pytest.mark.parametrize(
    ("grammar", "parts", "err", "match"),
    [
        (PARENS, ["(", ")"], ValueError, "`parts`.*no gap"),
        (PARENS, "(", TypeError, "`parts`"),
        (PARENS, ["(", 3, None], TypeError, r"`parts\[1\]`"),
        (PARENS, [b"(", None], TypeError, r"`parts\[0\]`"),
        (PARENS, [")", None], ValueError, "`parts`.*no filling"),
        (ARITH, ["1", None, "++"], ValueError, "`parts`.*no filling"),
        (JSONISH, [None, "][", None], ValueError, "`parts`.*no filling"),
        ("start: (", ["(", None], ValueError, "`grammar`"),
        ('start: "a" | B\nB: /x*/', [None], ValueError, "zero-width"),
        (3, [None], TypeError, "`grammar`"),
    ],
)
def test_bad_input(grammar, parts, err, match):
    with pytest.raises(err, match=match):
        pt.infill(grammar, parts=parts)


@pytest.mark.parametrize("prefilter", [True, False])
def test_laws_bytes_and_lifted(prefilter):
    c = pt.infill(ARITH, parts=["(", None, ")*", None], prefilter=prefilter)
    valid = [b"(1)*2", b"(1+2)*(3)", b"( 1 )* 2", b"((1))*1"]
    ctxs = [list(s[:i]) for s in valid for i in range(len(s) + 1)] + [list(b"(1)+"), list(b"(*")]
    assert_potential_laws(c, ctxs, valid=[list(s) for s in valid], tokens=list(b"12+*() a\xc3"))
    vocab = pt.Vocabulary([b"(", b")", b"1", b"+", b"*", b"1)", b")*", b"(1", b" ", b""])
    lifted = c.lift(vocab)
    tctx = [list(t) for k in range(3) for t in itertools.product(range(len(vocab)), repeat=k)]
    tctx += [[7, 6, 2], [0, 2, 3, 5, 4, 7, 1], [7, 1, 4, 8, 2]]
    assert_potential_laws(lifted, tctx, valid=[[7, 6, 2], [7, 1, 4, 8, 2]])
    for ctx in tctx:  # the lifted weights are the byte weights of the concatenation
        assert lifted.prefix(ctx) == c.prefix(list(vocab.decode_bytes(ctx)))
        assert lifted.complete(ctx) == c.complete(list(vocab.decode_bytes(ctx)))


def test_prefilter_grammar_is_the_same_language():
    """The scannerless llguidance grammar accepts exactly the oracle's members."""
    c = pt.infill(JSONISH, parts=[None], prefilter=True)
    oracle = Oracle(JSONISH, [None])
    for k in range(5):
        for chars in itertools.product('[],"a1 ', repeat=k):
            s = "".join(chars)
            assert (c.llg.complete(list(s.encode())) == 0.0) == oracle(s), s


@pytest.mark.parametrize("sampler", ["direct", "awrs"])
def test_smc_matches_enumeration(sampler):
    """SMC on a toy token LM x the lifted constraint against the exact posterior (chi^2)."""
    vocab = pt.Vocabulary([b"(", b")", b"x", b"(x", b"x)", b"()"])
    c = pt.infill(PARENS, parts=["(", None, ")"])
    lm = random_ngram(np.random.default_rng(2), vocab, order=2, concentration=0.3)
    lifted = c.lift(vocab)
    target = lm * lifted
    exact = enumerate_target(target, 4)
    assert exact.log_z > np.log(0.1) and len(exact.posterior) > 50
    make = (
        (lambda: pt.DirectSampler(target)) if sampler == "direct" else (lambda: pt.AWRS(lm, lifted))
    )
    runs = (smc(make(), 4, 4, rng=seed) for seed in range(500))
    draws = smc_exact_draws(runs, np.random.default_rng(1), log_bound=0.0)
    assert len(draws) > 50
    assert_gof(draws, exact.posterior, false_alarm=1e-4)


def _example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "infill.py"
    spec = importlib.util.spec_from_file_location("infill_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.real_model
def test_smollm_example_and_token_checks(smollm):
    """The example at tiny settings; the lifted checks equal the byte level on SmolLM2."""
    ex = _example()
    c = ex.constraint()
    vocab = smollm.vocab
    lifted = c.lift(vocab)
    state = lifted.init_state(1)
    for t in smollm.encode('{"name": "Bo'):  # inside the first gap (a string)
        state = state.advance(np.array([t]))
    base = list(vocab.decode_bytes(state.contexts[0]))
    toks = np.random.default_rng(0).integers(0, len(vocab), size=150)
    toks = np.append(toks, [vocab.index[b"b"], vocab.index[b'"'], vocab.index[b"4"]])
    got = state.logw_tokens(np.zeros(len(toks), dtype=np.int64), toks)
    want = [c.prefix(base + list(vocab.tokens[t])) for t in toks]
    np.testing.assert_array_equal(got, want)
    assert list(got[-3:]) == [0.0, 0.0, -np.inf]  # a letter, the closing quote; no digit
    out = ex.main(smollm, particles=2, max_tokens=22, seed=0)
    for text, status in zip(out.texts, out.status):
        data = list(text.encode())
        assert c.prefix(data) == 0.0  # no particle ever left the viable prefixes
        if status == "finished":
            assert c.complete(data) == 0.0 and c.fillings(text)


def test_every_split_semantics_differs_from_longest_match():
    """``aab`` splits as A="a", B="ab"; llguidance's longest match (pt.cfg) takes A="aa"."""
    g = 'start: A B\nA: /a+/\nB: "ab"\n'
    assert Oracle(g, [None])("aab")
    assert pt.infill(g, parts=[None]).complete(list(b"aab")) == 0.0
    assert pt.cfg(g).complete(list(b"aab")) == -np.inf
