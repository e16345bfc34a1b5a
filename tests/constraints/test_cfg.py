"""potentia.cfg: Lark and GBNF grammars, exact prefixes, every shared .ebnf loads."""

from __future__ import annotations

import itertools
from pathlib import Path

import lark
import numpy as np
import pytest

import potentia as pt
from potentia.potentials import Vocabulary
from potentia.testing.laws import assert_potential_laws

GRAMMARS = Path("/work/shared/data/grammars")
EBNF = sorted(GRAMMARS.rglob("*.ebnf"))

# The same languages written for potentia (GBNF and llguidance Lark) and for lark's Earley
# parser (the reference semantics).
CASES = [
    (
        'root ::= "(" root ")" root | ""',
        'start: "(" start ")" start |',
        "()",
    ),
    (
        'root ::= term (("+" | "*") term)*\nterm ::= "a" | "(" root ")"',
        'start: term (("+" | "*") term)*\nterm: "a" | "(" start ")"',
        "a+*()",
    ),
    (
        'root ::= "a"+ "b" | "ab" "c"?',
        'start: "a"+ "b" | "a" "b" "c"?',
        "abc",
    ),
]


def b(s: str) -> list[int]:
    return list(s.encode())


def strings(alphabet: str, n: int):
    for k in range(n + 1):
        for w in itertools.product(alphabet, repeat=k):
            yield "".join(w)


def in_lark(parser: lark.Lark, s: str) -> bool:
    try:
        parser.parse(s)
        return True
    except lark.exceptions.LarkError:
        return False


def completion_exists(c, parser: lark.Lark, s: str, depth: int = 8) -> bool:
    """Breadth-first search, over the bytes the potential allows, for a lark-accepted string."""
    frontier = [s]
    for _ in range(depth + 1):
        nxt = []
        for x in frontier:
            if in_lark(parser, x):
                return True
            lw = c.logw_next(b(x))
            nxt += [x + chr(a) for a in np.flatnonzero(lw[:256] == 0.0)]
        frontier = nxt[:400]
    return False


@pytest.mark.parametrize("gbnf,ref,alphabet", CASES)
def test_language_and_prefixes_match_lark_earley(gbnf, ref, alphabet):
    parser = lark.Lark(ref, parser="earley", lexer="dynamic")
    c = pt.cfg(gbnf)
    lang = {s for s in strings(alphabet, 6) if in_lark(parser, s)}
    prefixes = {s[:i] for s in lang for i in range(len(s) + 1)}
    for s in strings(alphabet, 4):
        assert (c.complete(b(s)) == 0.0) == (s in lang), s
        if s in prefixes:  # soundness: a prefix of a string of the language is viable
            assert c.prefix(b(s)) == 0.0, s
        elif c.prefix(b(s)) == 0.0:  # exactness: a viable prefix has a completion
            assert completion_exists(c, parser, s), s


def test_random_derivations_are_accepted_token_by_token():
    rng = np.random.default_rng(0)
    c = pt.cfg(CASES[1][0])

    def derive(depth: int) -> str:
        def term() -> str:
            return "a" if depth > 3 or rng.random() < 0.6 else "(" + derive(depth + 1) + ")"

        out = term()
        while rng.random() < 0.4:
            out += rng.choice(["+", "*"]) + term()
        return out

    vocab = Vocabulary.from_strings(["a", "+", "*", "(", ")", "(a", "a)", "+a", "))"])
    lc = c.lift(vocab)
    for _ in range(30):
        s = derive(0)
        # a random tokenization of s
        ctx, i = [], 0
        while i < len(s):
            opts = [j for j, t in enumerate(vocab.tokens) if s.encode().startswith(t, i)]
            j = int(rng.choice(opts))
            ctx.append(j)
            i += len(vocab.tokens[j])
        state = lc.init_state(1)
        for t in ctx:
            assert state.logw_tokens(np.array([0]), np.array([t]))[0] == 0.0
            state = state.advance(np.array([t]))
        assert state.complete()[0] == 0.0


def test_laws_on_lifted_vocab():
    c = pt.cfg('root ::= "(" root ")" | "é"')
    vocab = Vocabulary([b"(", b")", b"((", b"\xc3", b"\xa9", b"\xc3\xa9)", b""])
    lc = c.lift(vocab)
    ctxs = [[], [0], [2], [2, 3], [0, 5], [1], [6, 0, 3, 4]]
    assert_potential_laws(lc, ctxs, valid=[[0, 5], [3, 4], [2, 3, 4, 1, 1]])
    assert_potential_laws(c, [b(""), b("(("), b("(\xc3"), b(")")], valid=[b("((é))")])


def test_lark_grammar_with_regex_terminals():
    c = pt.cfg('start: NAME "=" NUMBER\nNAME: /[a-z]+/\nNUMBER: /[0-9]+/')
    assert c.complete(b("ab=12")) == 0.0
    assert c.prefix(b("ab=")) == 0.0
    assert c.prefix(b("ab=x")) == -np.inf
    assert c.complete(b("ab=")) == -np.inf


@pytest.mark.parametrize("path", EBNF, ids=lambda p: str(p.relative_to(GRAMMARS)))
def test_every_shared_ebnf_loads(path):
    text = path.read_text()
    try:
        c = pt.cfg(text)
    except ValueError as e:  # only undefined rules may need the explicit convention
        assert "undefined rule" in str(e)
        c = pt.cfg(text, undefined_rules="empty")
    assert c.prefix([]) == 0.0
    # some character starts a string of the language (the language is not empty)
    assert (c.logw_next([]) == 0.0).any()


def test_undefined_rule_as_empty_removes_only_dead_alternatives():
    g = 'root ::= "a" missing | "b"'
    with pytest.raises(ValueError, match=r"undefined rule\(s\) \['missing'\]"):
        pt.cfg(g)
    c = pt.cfg(g, undefined_rules="empty")
    assert c.complete(b("b")) == 0.0
    assert c.prefix(b("a")) == -np.inf  # exact: "a" cannot be completed


def test_unproductive_rules_do_not_leak_into_prefixes():
    c = pt.cfg('root ::= "a" loop | "b"\nloop ::= "c" loop')
    assert c.prefix(b("a")) == -np.inf
    assert c.complete(b("b")) == 0.0


@pytest.mark.parametrize(
    "grammar,kw,needle",
    [
        ('foo ::= "a"', {}, "no `root` rule"),
        ('root ::= "a" (', {}, "not valid GBNF"),
        ('foo: "a"', {"format": "lark"}, "no `start` rule"),
        ('start: "a" bar', {}, "unknown name"),
        ('root ::= "a" root', {}, "empty language"),
        ('root ::= "a"', {"format": "xml"}, "`format`"),
        ('root ::= "a"', {"undefined_rules": "skip"}, "`undefined_rules`"),
    ],
)
def test_bad_grammars_raise(grammar, kw, needle):
    with pytest.raises(ValueError, match=needle):
        pt.cfg(grammar, **kw)
