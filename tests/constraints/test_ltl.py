"""LTLf constraint: the compiled DFA against a from-scratch recursive trace semantics."""

from __future__ import annotations

import itertools
import time
from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.constraints.ltl import (
    Always,
    And,
    Atom,
    Const,
    Eventually,
    Next,
    Not,
    Or,
    Release,
    Until,
    WeakNext,
    implies,
    parse,
)
from potentia.testing import assert_potential_laws

MAX_LEN = 6


# ----- reference semantics: the textbook definition, position by position -----------------
def holds(f, trace: tuple[str, ...], i: int = 0) -> bool:
    """π, i ⊨ f for 0 <= i <= n (written from the definition, no automaton)."""
    return _holds(f, trace, i, {})


def _holds(f, trace, i, memo) -> bool:
    key = (id(f), i)
    if key not in memo:
        memo[key] = _holds_at(f, trace, i, memo)
    return memo[key]


def _holds_at(f, trace, i, memo) -> bool:
    n = len(trace)

    def h(g, j):
        return _holds(g, trace, j, memo)

    if isinstance(f, Const):
        return f.value
    if isinstance(f, Atom):
        return i < n and trace[i] == f.name
    if isinstance(f, Not):
        return not h(f.arg, i)
    if isinstance(f, And):
        return h(f.left, i) and h(f.right, i)
    if isinstance(f, Or):
        return h(f.left, i) or h(f.right, i)
    if isinstance(f, Next):
        return i + 1 < n and h(f.arg, i + 1)
    if isinstance(f, WeakNext):
        return i + 1 >= n or h(f.arg, i + 1)
    if isinstance(f, Eventually):
        return any(h(f.arg, j) for j in range(i, n))
    if isinstance(f, Always):
        return all(h(f.arg, j) for j in range(i, n))
    if isinstance(f, Until):
        return any(h(f.right, j) and all(h(f.left, k) for k in range(i, j)) for j in range(i, n))
    if isinstance(f, Release):
        # right holds at every j until (and including) the first left, or at every j
        return all(h(f.right, j) or any(h(f.left, k) for k in range(i, j)) for j in range(i, n))
    raise TypeError(f)


def formulas(labels: list[str]):
    leaf = st.one_of(st.sampled_from([Atom(x) for x in labels]), st.builds(Const, st.booleans()))
    unary = (Not, Next, WeakNext, Eventually, Always)
    binary = (And, Or, Until, Release, implies)

    def extend(sub):
        return st.one_of(
            st.builds(lambda op, a: op(a), st.sampled_from(unary), sub),
            st.builds(lambda op, a, b: op(a, b), st.sampled_from(binary), sub, sub),
        )

    return st.recursive(leaf, extend, max_leaves=6)


LABELS = ["a", "b", "c"]
TRACES = [t for n in range(MAX_LEN + 1) for t in itertools.product(LABELS, repeat=n)]


def shortest_completion(c, q: int) -> list[int] | None:
    """A shortest label path from DFA state ``q`` to acceptance (BFS in the automaton)."""
    prev = {q: None}
    queue = deque([q])
    while queue:
        s = queue.popleft()
        if c.accepting[s]:
            path = []
            while prev[s] is not None:
                s, a = prev[s]
                path.append(a)
            return path[::-1]
        for a, t in enumerate(c.delta[s]):
            if t >= 0 and int(t) not in prev:
                prev[int(t)] = (s, a)
                queue.append(int(t))
    return None


@settings(
    max_examples=220,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(formulas(LABELS))
def test_dfa_matches_trace_semantics(f):
    """Acceptance of every trace up to length 6, and prefix viability, against `holds`."""
    c = pt.ltl(f, labels=LABELS)
    idx = {x: i for i, x in enumerate(LABELS)}
    accepted = {}
    for t in TRACES:
        want = holds(f, t)
        accepted[t] = want
        q = c.state_of([idx[x] for x in t])
        assert (q >= 0 and bool(c.accepting[q])) == want, (f, t)
    for t in TRACES[:200]:  # the public methods agree with the automaton
        ctx = [idx[x] for x in t]
        assert (c.complete(ctx) == 0.0) == accepted[t]
        assert (c.prefix(ctx) == 0.0) == (c.state_of(ctx) >= 0)
    # some extension within the enumerated length is accepted (longest traces first)
    extendable = {}
    for t in reversed(TRACES):
        extendable[t] = accepted[t] or (
            len(t) < MAX_LEN and any(extendable[t + (x,)] for x in LABELS)
        )
    for t in TRACES:
        q = c.state_of([idx[x] for x in t])
        if q >= 0:
            # the automaton's witness must be accepted by the reference semantics
            w = shortest_completion(c, q)
            assert w is not None
            assert holds(f, t + tuple(LABELS[a] for a in w)), (f, t, w)
        else:
            # no extension within the enumerated length is accepted
            assert not extendable[t], (f, t)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(formulas(LABELS))
def test_minimal_no_two_equivalent_states(f):
    """Every pair of states is told apart by a word the reference semantics confirms."""
    c = pt.ltl(f, labels=LABELS)
    S = c.n_states
    # a word reaching each state
    reach = {0: ()}
    queue = deque([0])
    while queue:
        s = queue.popleft()
        for a, t in enumerate(c.delta[s]):
            if t >= 0 and int(t) not in reach:
                reach[int(t)] = reach[s] + (LABELS[a],)
                queue.append(int(t))
    if c.prefix([]) == -np.inf:
        assert S == 1
        return
    assert set(reach) == set(range(S)), "unreachable states"
    for s, u in itertools.combinations(range(S), 2):
        # BFS over state pairs (with -1 as the dead state) for a distinguishing word
        seen = {(s, u): ()}
        queue = deque([(s, u)])
        word = None
        while queue and word is None:
            p, q = queue.popleft()
            acc = lambda x: x >= 0 and bool(c.accepting[x])  # noqa: E731
            if acc(p) != acc(q):
                word = seen[(p, q)]
                break
            for a in range(len(LABELS)):
                nxt = (int(c.delta[p, a]) if p >= 0 else -1, int(c.delta[q, a]) if q >= 0 else -1)
                if nxt not in seen:
                    seen[nxt] = seen[(p, q)] + (LABELS[a],)
                    queue.append(nxt)
        assert word is not None, f"states {s} and {u} are equivalent in {f}"
        assert holds(f, reach[s] + word) != holds(f, reach[u] + word)


def test_strong_and_weak_next_at_end_of_trace():
    c_x = pt.ltl("X a", labels=["a", "b"])
    c_wx = pt.ltl("WX a", labels=["a", "b"])
    assert c_x.complete([0]) == -np.inf  # no next step: strong next fails
    assert c_wx.complete([0]) == 0.0  # no next step: weak next holds
    assert c_x.complete([1, 0]) == 0.0 and c_wx.complete([1, 0]) == 0.0
    assert c_x.complete([1, 1]) == -np.inf and c_wx.complete([1, 1]) == -np.inf
    assert c_x.complete([]) == -np.inf and c_wx.complete([]) == 0.0
    # G(a -> WX b): the trace may end right after `a`; with X it may not
    g_wx = pt.ltl("G(a -> WX b)", labels=["a", "b"])
    g_x = pt.ltl("G(a -> X b)", labels=["a", "b"])
    assert g_wx.complete([1, 0]) == 0.0 and g_x.complete([1, 0]) == -np.inf
    assert g_x.prefix([1, 0]) == 0.0  # still viable: a `b` may follow


def test_one_label_per_step():
    c = pt.ltl("F(a & b)", labels=["a", "b"])
    assert c.prefix([]) == -np.inf and c.n_states == 1


def test_parser_and_python_form_agree():
    f = parse('G(call -> X("tool result" | call)) & (!done U done) & F done')
    g = (
        Always(implies(Atom("call"), Next(Atom("tool result") | Atom("call"))))
        & Until(~Atom("done"), Atom("done"))
        & Eventually(Atom("done"))
    )
    assert f == g
    assert parse("a U b U c") == Until(Atom("a"), Until(Atom("b"), Atom("c")))
    assert parse("a -> b -> c") == implies(Atom("a"), implies(Atom("b"), Atom("c")))
    assert parse("!a & b | c") == Or(And(Not(Atom("a")), Atom("b")), Atom("c"))
    assert parse("X WX F G a") == Next(WeakNext(Eventually(Always(Atom("a")))))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(formula="G(a ->", labels=["a"]), "expected a formula"),
        (dict(formula="a $ b", labels=["a", "b"]), "unexpected character"),
        (dict(formula="F z", labels=["a"]), "not in `labels`"),
        (dict(formula="F a", labels=["a", "a"]), "repeats"),
        (dict(formula="F a", labels=[]), "at least one"),
        (dict(formula="a b", labels=["a", "b"]), "expected an operator"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pt.ltl(**kwargs)
    with pytest.raises(TypeError, match="labels"):
        pt.ltl("F a", labels="a")


def test_potential_laws_and_composition():
    labels = ["think", "act", "obs", "answer"]
    c = pt.ltl("G(act -> X obs) & F answer & G(answer -> WX false)", labels=labels)
    ctxs = [list(t) for n in range(4) for t in itertools.product(range(4), repeat=n)]
    valid = [[3], [0, 1, 2, 3], [1, 2, 0, 3]]
    assert_potential_laws(c, ctxs, valid=valid, rng=np.random.default_rng(0))
    both = c & pt.ltl("!answer U think", labels=labels)
    assert_potential_laws(both, ctxs, valid=[[0, 3]], rng=np.random.default_rng(1))
    assert both.complete([3]) == -np.inf and both.complete([0, 3]) == 0.0


def test_compile_time_ten_atoms():
    """Formulas over 10 labels with 10 atom occurrences compile fast (numbers in docs/dsl.md)."""
    labels = [f"p{i}" for i in range(10)]
    response = " & ".join(f"G(p{i} -> F p{i + 1})" for i in range(0, 10, 2))
    chain = "p0 U (p1 U (p2 U (p3 U (p4 U (p5 U (p6 U (p7 U (p8 U p9))))))))"
    order = " & ".join(f"(!p{i + 1} U p{i})" for i in range(0, 10, 2))
    for text in (response, chain, order):
        t0 = time.perf_counter()
        c = pt.ltl(text, labels=labels)
        dt = time.perf_counter() - t0
        assert c.n_states >= 2
        assert dt < 5.0, (text, dt)
