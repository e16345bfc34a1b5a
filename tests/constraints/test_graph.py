"""graph_path: exact against brute force over all walks of small graphs, laws, lifting, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.constraints.graph import DEFAULT_TEMPLATE, render_edge
from potentia.potentials.base import Vocabulary
from potentia.testing import assert_potential_laws

ENTS = ["a", "b", "c"]
RELS = ["r", "s"]
T = "{head}{relation}{tail};"


def walks(edges, starts, ends, lo, hi, template=T):
    """Every walk of lo..hi edges (start/end entities respected), as rendered text."""
    out: set[bytes] = set()
    frontier = [((), None)]
    for k in range(hi + 1):
        nxt = []
        for path, at in frontier:
            if k >= lo and (k == 0 or ends is None or at in ends):
                out.add(b"".join(render_edge(e, template).encode() for e in path))
            if k == hi:
                continue
            for e in edges:
                if (at is None and (starts is None or e[0] in starts)) or e[0] == at:
                    nxt.append((path + (e,), e[2]))
        frontier = nxt
    return out


def check_exact(c, accepted: set[bytes], max_len: int | None = None) -> None:
    """prefix/complete equal the brute-force sets on P ∪ P·Σ (P = prefixes of ``accepted``).

    Both prefix sets are prefix-closed, so agreeing on P and on every one-byte extension of P
    means they are equal; ``max_len`` restricts the check to strings no longer than it.
    """
    P = {w[:i] for w in accepted for i in range(len(w) + 1)}
    if max_len is not None:
        P = {p for p in P if len(p) <= max_len}
    for p in P:
        assert c.prefix(list(p)) == 0.0, p
        assert c.complete(list(p)) == (0.0 if p in accepted else -np.inf), p
        if max_len is not None and len(p) == max_len:
            continue
        # one-byte extensions through logw_next (= prefix(p + b) - prefix(p), the laws)
        ext = c.logw_next(list(p))[:256] == 0.0
        want = np.array([p + bytes((b,)) in P for b in range(256)])
        assert (ext == want).all(), (p, np.flatnonzero(ext != want))
    for p in list(P)[:50]:  # and a few through prefix itself
        for b in (0x3B, 0x61, 0xC3, 0xFF):
            q = p + bytes((b,))
            if q not in P and (max_len is None or len(q) <= max_len):
                assert c.prefix(list(q)) == -np.inf, q


graphs = st.lists(
    st.tuples(st.sampled_from(ENTS), st.sampled_from(RELS), st.sampled_from(ENTS)),
    min_size=1,
    max_size=7,
)
entity_sets = st.none() | st.sets(st.sampled_from(ENTS), min_size=1, max_size=2)


@settings(max_examples=60, deadline=None)
@given(graphs, entity_sets, entity_sets, st.integers(0, 2), st.integers(0, 2))
def test_bounded_chains_equal_brute_force(edges, starts, ends, lo, extra):
    known = {h for h, _, _ in edges} | {t for _, _, t in edges}
    starts = None if starts is None else starts & known or None
    ends = None if ends is None else ends & known or None
    hi = lo + extra
    accepted = walks(edges, starts, ends, lo, hi)
    if not accepted:
        with pytest.raises(ValueError, match="no chain"):
            pt.graph_path(edges, template=T, start=starts, end=ends, min_hops=lo, max_hops=hi)
        return
    c = pt.graph_path(edges, template=T, start=starts, end=ends, min_hops=lo, max_hops=hi)
    check_exact(c, accepted)


@settings(max_examples=40, deadline=None)
@given(graphs, entity_sets, entity_sets, st.integers(0, 2))
def test_unbounded_chains_equal_brute_force(edges, starts, ends, lo):
    """No max_hops: strings up to 9 bytes against walks long enough to witness them.

    A prefix of <= 9 bytes spans at most 3 triples (4 bytes each); if it can be completed,
    it can be with at most lo + |entities| more hops (a shortest walk to an allowed end
    after the hop minimum), so walks of up to 3 + lo + 3 hops witness every viable prefix.
    """
    known = {h for h, _, _ in edges} | {t for _, _, t in edges}
    starts = None if starts is None else starts & known or None
    ends = None if ends is None else ends & known or None
    accepted = walks(edges, starts, ends, lo, 3 + lo + len(ENTS))
    if not accepted:
        with pytest.raises(ValueError, match="no chain"):
            pt.graph_path(edges, template=T, start=starts, end=ends, min_hops=lo)
        return
    c = pt.graph_path(edges, template=T, start=starts, end=ends, min_hops=lo)
    check_exact(c, accepted, max_len=9)


KG = [
    ("Marie Curie", "born in", "Warsaw"),
    ("Warsaw", "capital of", "Poland"),
    ("Poland", "member of", "EU"),
    ("Marie Curie", "spouse", "Pierre Curie"),
    ("Pierre Curie", "born in", "Paris"),
    ("Paris", "capital of", "France"),
    ("France", "member of", "EU"),
]


def test_multibyte_names_and_default_template():
    kg = KG + [("Kraków", "city in", "Poland"), ("Warsaw", "twin city", "Kraków")]
    c = pt.graph_path(kg, start="Marie Curie", end={"EU", "Kraków"}, max_hops=3)
    accepted = walks(kg, {"Marie Curie"}, {"EU", "Kraków"}, 1, 3, DEFAULT_TEMPLATE)
    assert b"(Marie Curie, born in, Warsaw)\n(Warsaw, twin city, Krak\xc3\xb3w)\n" in accepted
    check_exact(c, accepted)
    # the head of the next triple must be the previous tail
    assert c.prefix(list(b"(Marie Curie, born in, Warsaw)\n(P")) == -np.inf
    assert c.prefix(list(b"(Marie Curie, born in, Warsaw)\n(W")) == 0.0


TOY = Vocabulary(
    [b"(", b")", b", ", b"\n", b"Marie", b" Curie", b"Marie Curie", b"W", b"arsaw", b"Warsaw",
     b"Poland", b"EU", b"born in", b"capital of", b"member of", b"P", b"aris", b"x", b"C",
     b"spouse", b"Pierre", b"France", b"France)\n("]
)  # fmt: skip


def test_laws_and_lift_on_toy_vocabulary():
    c = pt.graph_path(KG, start="Marie Curie", max_hops=2)
    lifted = c.lift(TOY)
    rng = np.random.default_rng(0)
    ctx = [[]]
    for _ in range(40):  # random walks through the lifted constraint's support
        x = []
        for _ in range(int(rng.integers(1, 12))):
            ok = np.flatnonzero(lifted.logw_next(x)[:-1] == 0.0)
            if not len(ok):
                break
            x.append(int(rng.choice(ok)))
            ctx.append(list(x))
    ctx += [[7], [4, 18], [0, 4, 5, 2, 12, 2, 9, 1, 3, 0, 15]]
    valid = [x for x in ctx if lifted.complete(x) == 0.0]
    assert valid
    assert_potential_laws(lifted, ctx, valid=valid)
    for x in ctx:
        bs = list(TOY.decode_bytes(x))
        assert lifted.prefix(x) == c.prefix(bs) and lifted.complete(x) == c.complete(bs)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="`edges` is empty"):
        pt.graph_path([])
    with pytest.raises(TypeError, match=r"`edges\[0\]`"):
        pt.graph_path([("a", "b")])
    with pytest.raises(ValueError, match="`start` holds 'Rome'"):
        pt.graph_path(KG, start="Rome")
    with pytest.raises(ValueError, match="`template`"):
        pt.graph_path(KG, template="{head} {tail}")
    with pytest.raises(ValueError, match="prefix of"):
        pt.graph_path([("a", "r", "b"), ("a", "r", "bc")], template="{head}{relation}{tail}")
    with pytest.raises(ValueError, match="same text"):
        pt.graph_path([("a", "r s", "t"), ("a", "r", "s t")], template="{head} {relation} {tail}\n")
    with pytest.raises(ValueError, match="`min_hops`=3 > `max_hops`=1"):
        pt.graph_path(KG, min_hops=3, max_hops=1)
    with pytest.raises(ValueError, match="no chain"):
        pt.graph_path(KG, start="EU")
