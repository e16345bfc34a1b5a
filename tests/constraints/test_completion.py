"""The length-aware twist and the budget guard (potentia.constraints.completion).

* greedy completions complete: the constraint accepts prefix + completion;
* both potentials obey the potential laws (context API = batch states);
* SMC with the guard samples exactly ``LM × constraint × guard`` (χ² on rejection-corrected
  draws, false alarm 1e-4), and the guard really changes the target on the toy (a planted
  check: the posterior without it differs);
* the twist leaves Ẑ unbiased (it is divided out at EOS).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import potentia as pt
from potentia.constraints.completion import BudgetGuard, CompletionTwist, greedy_completion
from potentia.models import enumerate_target, random_ngram
from potentia.potentials.base import Vocabulary
from potentia.smc import smc
from potentia.testing import assert_gof, assert_mean, assert_potential_laws, smc_exact_draws

VOCAB = Vocabulary([b'"', b"a", b"aa", b'a"', b'""', b"b", b"ab"])
T = 4


def _regex():
    return pt.regex(r'"[ab]*"').lift(VOCAB)


def _lm():
    return random_ngram(np.random.default_rng(160), VOCAB, order=2, concentration=0.2)


FLAT = {
    "type": "object",
    "properties": {"a": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["a", "n"],
}
NESTED = {
    "type": "object",
    "properties": {
        "d": {"type": "object", "properties": {"k": {"type": "boolean"}}, "required": ["k"]}
    },
    "required": ["d"],
}
ARRAY = {"type": "array", "items": {"enum": ["x", "yy"]}, "minItems": 2}


@pytest.mark.parametrize(
    "schema, inst",
    [(FLAT, {"a": "hi", "n": 12}), (ARRAY, ["yy", "x", "x"]), (NESTED, {"d": {"k": True}})],
)
def test_greedy_completion_completes_json(schema, inst):
    c = pt.json(schema)
    rng = np.random.default_rng(0)
    # prefixes of a valid instance, in the structured spelling (json.dumps)
    text = json.dumps(inst).encode()
    for cut in sorted(set(rng.integers(0, len(text), 12).tolist()) | {0, len(text)}):
        st = c.init_state(1).advance(np.array([text[0]])) if cut else c.init_state(1)
        for b in text[1:cut]:
            st = st.advance(np.array([b]))
        done = greedy_completion(c, st.matchers[0], st._aux[0])
        assert done is not None, text[:cut]
        assert c.complete(list(text[:cut] + done)) == 0.0, (text[:cut], done)


def test_greedy_completion_of_a_dead_matcher_is_none():
    c = pt.regex(r"ab")
    st = c.init_state(1).advance(np.array([ord("b")]))
    assert st.matchers[0] is None or greedy_completion(c, st.matchers[0], None) is None


def test_laws():
    c = _regex()
    ctxs = [list(x) for k in range(4) for x in itertools.product(range(len(VOCAB)), repeat=k)]
    ctxs = [x for x in ctxs if c.prefix(x) == 0.0]
    assert_potential_laws(BudgetGuard(c, VOCAB, T), ctxs)
    assert_potential_laws(CompletionTwist(c, VOCAB, T, per_token=0.7, overrun=1.5), ctxs)


def test_guard_forces_the_short_close():
    c = _regex()
    g = BudgetGuard(c, VOCAB, T)
    q, a = VOCAB.index[b'"'], VOCAB.index[b"a"]
    # three tokens in, one left: only the closing quote fits
    lw = g.logw_next([q, a, a])
    assert lw[q] == 0.0 and lw[VOCAB.index[b'a"']] == -np.inf and lw[a] == -np.inf
    assert lw[len(VOCAB)] == 0.0
    # with room to spare every token is allowed
    assert (g.logw_next([q]) == 0.0).all()


@pytest.mark.parametrize("sampler", ["direct", "awrs"])
def test_smc_with_guard_matches_enumeration(sampler):
    lm, c = _lm(), _regex()
    guard = BudgetGuard(c, VOCAB, T)
    cons = c * guard
    target = lm * cons
    exact = enumerate_target(target, T)
    plain = enumerate_target(lm * c, T)
    assert exact.log_z > np.log(0.05) and len(exact.posterior) > 20
    # the guard is a real restriction here: it removes strings (e.g. `"` `a` `a` `a"`)
    # holding a fifth of the unguarded posterior, so a sampler ignoring it fails the test
    removed = sum(p for x, p in plain.posterior.items() if x not in exact.posterior)
    assert removed > 0.15
    make = (
        (lambda: pt.DirectSampler(target)) if sampler == "direct" else (lambda: pt.AWRS(lm, cons))
    )
    runs = (smc(make(), 4, T, rng=seed) for seed in range(1000))
    draws = smc_exact_draws(runs, np.random.default_rng(1), log_bound=0.0)
    assert len(draws) > 100
    assert_gof(draws, exact.posterior, false_alarm=1e-4)


def test_twist_keeps_log_z_unbiased():
    lm, c = _lm(), _regex()
    target = lm * c * BudgetGuard(c, VOCAB, T)
    Z = np.exp(enumerate_target(target, T).log_z)
    tw = CompletionTwist(c, VOCAB, T, per_token=1.0, overrun=2.0)
    R = 300
    zs = [
        np.exp(smc(pt.DirectSampler(target), 4, T, rng=s, ess_threshold=0.9, twist=tw).log_z)
        for s in range(R)
    ]
    assert_mean(zs, Z, sigmas=4.0, resolution=Z / R)


def test_bad_arguments():
    c = _regex()
    with pytest.raises(TypeError, match="constraint"):
        CompletionTwist(_lm(), VOCAB, T)
    with pytest.raises(ValueError, match="max_tokens"):
        BudgetGuard(c, VOCAB, 0)
    with pytest.raises(ValueError, match="per_token"):
        CompletionTwist(c, VOCAB, T, per_token=0.0)


def test_date_format_is_followed_while_writing():
    """`format: date` gives the engine jsonschema's own date regex: same language, tighter prefix."""
    c = pt.json({"type": "string", "format": "date"})
    assert c.complete(list(b'"2024-06-16"')) == 0.0
    assert c.prefix(list(b'"2024-06-16T1')) == -np.inf  # a date-time is no date
    assert c.complete(list(b'"2024-13-40"')) == -np.inf  # the regex fits, the check does not
    off = pt.json({"type": "string", "format": "date"}, formats=False)
    assert off.complete(list(b'"2024-06-16T1"')) == 0.0  # an annotation only


@pytest.mark.parametrize(
    "schema, inst", [(FLAT, {"a": "hi", "n": 12}), (NESTED, {"d": {"k": True}})]
)
def test_memoised_completions_equal_fresh_walks(schema, inst):
    """The memo (shared by twist and guard, filled along each walk's path) answers exactly
    what a fresh greedy walk from the same bytes gives, for prefixes reached both ways."""
    c = pt.json(schema)
    B = Vocabulary.bytes256()
    tw, guard = CompletionTwist(c, B, 64), BudgetGuard(c, B, 64)
    assert guard.bytes_c is tw.bytes_c and guard._greedy is tw._greedy
    root = tw._start()
    g0 = tw._completion(root)  # fills the memo along the root's own path
    text = json.dumps(inst).encode()
    paths = [g0, text, text[:3] + (guard._completion(tw._row(list(text[:3]))) or b"")]
    checked = 0
    for data in paths:
        row = root
        for k in range(len(data) + 1):
            if k:
                row = tw._feed(row, data[k - 1])
            if row[0] is None:
                break
            fresh = greedy_completion(tw.bytes_c, row[0], row[1], tw.max_bytes)
            assert row[2] == data[:k]
            assert tw._completion(row) == fresh, data[:k]
            assert guard._completion(row) == fresh, data[:k]
            checked += 1
    assert checked > len(g0) + len(text)
