"""Step units: the unit sampler is properly weighted at the unit level (exact enumeration).

Every random path of the token sampler is enumerated (``enumerate_draws``), so each check
is exact (tolerance 1e-9, no false alarms).
"""

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.models import random_ngram
from potentia.samplers.units import Boundary, UnitSampler, as_boundary
from potentia.testing import NoRandomness, enumerate_draws
from potentia.testing.strategies import toy_problems

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _unit_expectations(us, context, max_len):
    """E[exp(log_w) 1{unit = u, eos = e}] for every (u, e), by enumerating every draw."""
    state = us.target.state_from([context])

    def run(draw):
        out = us.sample(state, NoRandomness(), draw=draw, max_len=max_len)
        return tuple(out.units[0]), bool(out.eos[0]), float(out.log_w[0]), out.status[0]

    acc = defaultdict(float)
    for prob, (u, e, lw, status) in enumerate_draws(run):
        if status != "dead":
            acc[(u, e)] += prob * np.exp(lw)
    return acc


def _exact(target, context, unit, max_len):
    """target.prefix(x u)/prefix(x) (or complete for EOS) for every unit u, by brute force."""
    V = len(target.vocab)
    b = as_boundary(unit)
    base = target.prefix(context)
    out = {}
    stack = [()]
    while stack:
        u = stack.pop()
        ctx = list(context) + list(u)
        lw = target.logw_next(ctx)
        if lw[V] > -np.inf:
            out[(u, True)] = np.exp(target.complete(ctx) - base)
        for a in np.flatnonzero(lw[:V] > -np.inf):
            v = u + (int(a),)
            if b.ends(target.vocab, list(v)) or len(v) >= max_len:
                out[(v, False)] = np.exp(target.prefix(list(context) + list(v)) - base)
            else:
                stack.append(v)
    return out


@SETTINGS
@given(
    problem=toy_problems(max_vocab=3, max_len=3),
    unit=st.sampled_from([None, 1, 2, "a", "b"]),
    kind=st.sampled_from(["direct", "awrs"]),
    data=st.data(),
)
def test_unit_properly_weighted(problem, unit, kind, data):
    target = problem.target
    if kind == "awrs" and problem.constraint is not None and problem.constraint.hard:
        sampler = pt.AWRS(problem.lm, problem.constraint)
    else:
        sampler = pt.DirectSampler(target)
    V = len(target.vocab)
    ctx = data.draw(st.lists(st.integers(0, V - 1), max_size=1))
    if target.prefix(ctx) == -np.inf:
        return
    us = UnitSampler(sampler, unit)
    got = _unit_expectations(us, ctx, problem.max_len)
    want = _exact(target, ctx, unit, problem.max_len)
    for key in set(got) | set(want):
        assert got.get(key, 0.0) == pytest.approx(want.get(key, 0.0), rel=1e-9, abs=1e-12), key


def test_batched_units_and_token_budget():
    lm = random_ngram(np.random.default_rng(0), 3, smoothing=0.2)
    us = UnitSampler(pt.DirectSampler(lm), 2)
    out = us.sample(lm.init_state(8), np.random.default_rng(1))
    assert len(out.units) == 8
    for u, e, s in zip(out.units, out.eos, out.status):
        assert (s == "boundary" and len(u) == 2 and not e) or (s == "eos" and e and len(u) < 2)
    assert out.tokens == sum(len(u) + int(e) for u, e in zip(out.units, out.eos))
    whole = UnitSampler(pt.DirectSampler(lm), None)
    for budget in (0, 1, 5, 13):
        o = whole.sample(lm.init_state(6), np.random.default_rng(2), token_budget=budget)
        assert o.tokens <= budget
        assert o.tokens == sum(len(u) + int(e) for u, e in zip(o.units, o.eos))
        if o.tokens < budget:
            assert all(s in ("eos", "dead") for s in o.status)


def test_delimiter_spanning_tokens():
    vocab = pt.Vocabulary([b"x\n", b"\n", b"y"])
    b = Boundary(delimiter="\n\n")
    assert not b.ends(vocab, [0])
    assert b.ends(vocab, [0, 1])
    assert not b.ends(vocab, [2, 1])


@pytest.mark.parametrize(
    ("unit", "exc", "match"),
    [
        ("", ValueError, "unit"),
        (0, ValueError, "unit"),
        (1.5, TypeError, "unit"),
        (True, TypeError, "unit"),
    ],
)
def test_bad_units(unit, exc, match):
    with pytest.raises(exc, match=match):
        as_boundary(unit)


def test_bad_sampler():
    with pytest.raises(TypeError, match="sampler"):
        UnitSampler(object(), 2)
