"""AWRS: exact per-token proper weighting, numerics, batching, SMC agreement, bad input.

False-alarm budget of the statistical tests in this file (fixed seeds; a correct
implementation fails with at most this probability): test_chi2_vocab_1000 α = 1e-3 (χ²)
+ 6.3e-5 (|z| > 4 mean test); test_smc_awrs_matches_exact_target α = 1e-3 per problem ×
2 problems (χ²) + 2 × 6.3e-5 (Ẑ mean tests); test_smc_awrs_agrees_with_direct 1e-3.
Total ≤ 4.2e-3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import potentia
from potentia.models import DFA, FiniteLanguage, TablePotential, ToyLM, enumerate_target
from potentia.models.toy import random_ngram
from potentia.potentials.base import PotentialState, Vocabulary, logsumexp
from potentia.samplers import DirectSampler
from potentia.samplers.awrs import AWRS
from potentia.smc import smc
from potentia.testing import (
    assert_gof,
    assert_mean,
    assert_properly_weighted,
    smc_exact_draws,
)
from potentia.testing.strategies import hard_constraints, soft_potentials, toy_lms, vocabularies

CAPS = [1, 2, 3, None, math.inf]


def _vocab(n: int) -> Vocabulary:
    return Vocabulary([f"t{i}".encode() for i in range(n)])


def _unigram(vocab: Vocabulary, logp) -> TablePotential:
    return TablePotential(vocab, {(): np.asarray(logp, dtype=float)}, order=1)


def _allow(vocab: Vocabulary, allowed, eos: bool = True) -> DFA:
    """Hard constraint over ``allowed`` tokens.

    ``eos=True``: any string of allowed tokens (EOS allowed everywhere). ``eos=False``:
    exactly one allowed token (EOS forbidden at the start).
    """
    delta = np.full((2, len(vocab)), -1)
    delta[0, list(allowed)] = 0 if eos else 1
    return DFA(vocab, delta, [0] if eos else [1])


class _CountState(PotentialState):
    """Forwards to a constraint state and counts single-token checks."""

    def __init__(self, inner: PotentialState, counter: list[int]) -> None:
        self.inner, self.counter, self.potential = inner, counter, inner.potential

    @property
    def contexts(self):
        return self.inner.contexts

    def logw_next(self):
        return self.inner.logw_next()

    def logw_tokens(self, rows, tokens):
        self.counter[0] += len(tokens)
        return self.inner.logw_tokens(rows, tokens)

    def advance(self, tokens):
        return _CountState(self.inner.advance(tokens), self.counter)

    def select(self, rows):
        return _CountState(self.inner.select(rows), self.counter)


class _CountingDFA(DFA):
    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.calls = [0]

    def init_state(self, n):
        return _CountState(super().init_state(n), self.calls)


# ---------------------------------------------------------------- exact enumeration
@st.composite
def problems(draw):
    vocab = draw(vocabularies(1, 5))
    lm = draw(toy_lms(vocab))
    c = draw(hard_constraints(vocab, 3))
    soft = draw(st.one_of(st.none(), soft_potentials(vocab)))
    cap = draw(st.sampled_from(CAPS))
    sampler = AWRS(lm, c, soft=soft, max_rejects=cap)
    # a random reachable context of length 0..2 under the target
    ctx: list[int] = []
    for _ in range(draw(st.integers(0, 2))):
        lw = sampler.target.logw_next(ctx)[: len(vocab)]
        ok = np.flatnonzero(lw > -np.inf)
        if not len(ok):
            break
        ctx.append(int(ok[draw(st.integers(0, len(ok) - 1))]))
    return sampler, ctx


@settings(max_examples=300, deadline=None, derandomize=True)
@given(problems())
def test_properly_weighted_per_token(problem):
    """E[w·1{x=a}] equals the target's next-token weight for every a, to 1e-9."""
    sampler, ctx = problem
    state = sampler.target.state_from([ctx])
    got = assert_properly_weighted(sampler, state, atol=1e-9, rtol=1e-9)
    assert got.shape == (len(sampler.target.vocab) + 1,)


def test_enumeration_is_sensitive_to_a_wrong_weight():
    """The exactness check catches an estimator that drops the coin (weight S_k always)."""
    vocab = _vocab(4)
    lm = _unigram(vocab, np.log([0.4, 0.3, 0.2, 0.05, 0.05]))
    c = _allow(vocab, [0, 2])
    s = AWRS(lm, c)
    state = s.target.init_state(1)
    assert_properly_weighted(s, state)

    class NoCoin(AWRS):
        def _settle(self, row):
            super()._settle(row)
            if row.done and row.token >= 0 and row.log_w > -np.inf:
                row.log_w = row.log_s[row.seq.index(row.token)]

    with pytest.raises(AssertionError, match="not properly weighted"):
        assert_properly_weighted(NoCoin(lm, c), state)


# ---------------------------------------------------------------- numerics
def test_tiny_allowed_mass_never_dies():
    """Rejected mass rounds to 1 in floating point; the allowed token must still be found."""
    vocab = _vocab(4)
    logp = np.array([np.log(0.5), np.log(0.25), np.log(0.25), -50.0, -np.inf])
    s = AWRS(_unigram(vocab, logp), _allow(vocab, [3], eos=False), max_rejects=math.inf)
    state = s.target.init_state(1)
    got = assert_properly_weighted(s, state, atol=0, rtol=1e-12)
    assert got[3] == pytest.approx(np.exp(-50.0), rel=1e-12)
    out = s.sample(s.target.init_state(64), np.random.default_rng(0))
    assert (out.tokens == 3).all()
    np.testing.assert_allclose(out.log_w, -50.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cap", [1, None, math.inf])
def test_underflowing_allowed_token(cap):
    """An allowed token e^-800 below the rest (exp underflows) is returned with its weight."""
    vocab = _vocab(3)
    logp = np.array([0.0, -800.0, -900.0, -np.inf])
    s = AWRS(_unigram(vocab, logp), _allow(vocab, [1, 2], eos=False), max_rejects=cap)
    want = logsumexp(np.array([-800.0, -900.0]))
    out = s.sample(s.target.init_state(200), np.random.default_rng(1))
    assert set(out.tokens.tolist()) <= {1, 2}
    assert np.isfinite(out.log_w).all()
    # weights are S_k = e^-800(1+e^-100) or ℓ_1 = -800 — both ≈ the allowed mass
    np.testing.assert_allclose(out.log_w, want, atol=1e-9)


def test_underflow_expectations_in_log_space():
    """Exact check of the underflow path, shifted so the expectations are representable."""
    vocab = _vocab(3)
    # the allowed tokens' exp(ℓ - max) is subnormal or zero until the urn is rebuilt
    for shift in (0.0, 650.0):
        logp = np.array([700.0, -30.0, -40.0, -np.inf]) - shift
        s = AWRS(_unigram(vocab, logp), _allow(vocab, [1, 2], eos=False), max_rejects=math.inf)
        got = assert_properly_weighted(s, s.target.init_state(1), atol=0, rtol=1e-9)
        assert got[1] > 0 and got[2] > 0


def test_peaked_distribution():
    """max p → 1: the tail's conditional mass is exact, not 1 − (1 − tiny)."""
    vocab = _vocab(3)
    logp = np.array([np.log1p(-2e-17), np.log(1e-17), np.log(1e-17), -np.inf])
    for allowed in ([0, 1], [1, 2], [0, 2]):
        s = AWRS(_unigram(vocab, logp), _allow(vocab, allowed, eos=False), max_rejects=math.inf)
        assert_properly_weighted(s, s.target.init_state(1), atol=0, rtol=1e-9)


def test_eos_and_minus_inf_tokens():
    vocab = _vocab(3)
    # only EOS allowed (the empty string is the language)
    lm = _unigram(vocab, np.log([0.5, 0.2, 0.2, 0.1]))
    s = AWRS(lm, FiniteLanguage(vocab, [()]))
    out = s.sample(s.target.init_state(50), np.random.default_rng(2))
    assert (out.tokens == 3).all()
    np.testing.assert_allclose(out.log_w, np.log(0.1))
    # the only allowed token has LM probability zero: the target is zero, the row dies
    lm0 = _unigram(vocab, np.array([0.0, -np.inf, -np.inf, -np.inf]))
    s0 = AWRS(lm0, _allow(vocab, [1], eos=False))
    out0 = s0.sample(s0.target.init_state(5), np.random.default_rng(3))
    assert (out0.log_w == -np.inf).all()
    assert_properly_weighted(s0, s0.target.init_state(1))


def test_dead_lm_row_and_empty_batch():
    vocab = _vocab(2)
    lm = _unigram(vocab, np.full(3, -np.inf))
    s = AWRS(lm, _allow(vocab, [0]))
    out = s.sample(s.target.init_state(3), np.random.default_rng(0))
    assert (out.log_w == -np.inf).all() and (out.tokens == 2).all()
    empty = s.sample(s.target.init_state(0), np.random.default_rng(0))
    assert empty.tokens.shape == (0,) and empty.log_w.shape == (0,)


# ---------------------------------------------------------------- batching, counting
def _first_nonzero(p: np.ndarray) -> int:
    return int(np.flatnonzero(p > 0)[0])


def test_batch_equals_one_at_a_time():
    """With a deterministic draw, a batch row gives what the row alone gives."""
    rng = np.random.default_rng(5)
    vocab = _vocab(5)
    lm = random_ngram(rng, vocab, order=2, concentration=0.5)
    c = DFA(vocab, rng.integers(-1, 3, size=(3, 5)), [0, 2])
    s = AWRS(lm, c, max_rejects=2)
    ctxs = [[], [0], [1], [2], [3], [4]]
    ok = [x for x in ctxs if s.target.prefix(x) > -np.inf]
    by_len = {}
    for x in ok:
        by_len.setdefault(len(x), []).append(x)
    for group in by_len.values():
        state = s.target.state_from(group)
        before = state.parts[0].logw_next().copy()
        batch = s.sample(state, np.random.default_rng(0), draw=_first_nonzero)
        np.testing.assert_array_equal(state.parts[0].logw_next(), before)  # not mutated
        for i, x in enumerate(group):
            one = s.sample(s.target.state_from([x]), np.random.default_rng(0), draw=_first_nonzero)
            assert one.tokens[0] == batch.tokens[i]
            assert one.log_w[0] == batch.log_w[i]


def test_constraint_checks_are_counted_and_few():
    rng = np.random.default_rng(7)
    vocab = _vocab(50)
    logp = np.log(rng.dirichlet(np.full(51, 0.3)))
    delta = np.zeros((1, 50), dtype=np.int64)
    c = _CountingDFA(vocab, delta, [0])  # allows everything
    s = AWRS(_unigram(vocab, logp), c)
    distinct = s.target.state_from([[i] for i in range(40)])
    out = s.sample(distinct, np.random.default_rng(0))
    assert out.constraint_checks == c.calls[0] == 2 * 40  # candidate + coin, nothing wasted
    # 40 copies of one context share verdicts: at most one check per distinct token
    c.calls[0] = 0
    out = s.sample(s.target.init_state(40), np.random.default_rng(0))
    assert out.constraint_checks == c.calls[0] <= 51
    # a constraint that rejects most of the mass: one check per drawn token, none repeated
    c2 = _CountingDFA(vocab, np.where(np.arange(50) < 5, 0, -1)[None], [0])
    s2 = AWRS(_unigram(vocab, logp), c2, max_rejects=math.inf)
    out2 = s2.sample(s2.target.state_from([[i] for i in range(5)]), np.random.default_rng(0))
    assert out2.constraint_checks == c2.calls[0]
    assert out2.constraint_checks <= 5 * 51
    assert out2.info["rounds"] >= 1 and out2.info["fallback_rows"] == 0


def test_rejection_cap_switches_to_exact_mask():
    vocab = _vocab(20)
    logp = np.log(np.r_[np.full(19, 0.05), 0.04, 0.01])
    s = AWRS(_unigram(vocab, logp), _allow(vocab, [19], eos=False), max_rejects=3)
    out = s.sample(s.target.init_state(30), np.random.default_rng(0))
    assert out.info["fallback_rows"] > 0
    assert out.target_evals == out.info["masks"] == 1  # 30 copies of one context: one mask
    assert (out.tokens == 19).all()
    np.testing.assert_allclose(out.log_w, np.log(0.04))
    assert out.constraint_checks <= 30 * (3 + 2)  # cap (+1 from the pair round) + coin
    small = _vocab(5)
    logp5 = np.log([0.3, 0.25, 0.2, 0.15, 0.06, 0.04])
    for cap in (1, 2, 3):
        s5 = AWRS(_unigram(small, logp5), _allow(small, [4], eos=False), max_rejects=cap)
        assert_properly_weighted(s5, s5.target.init_state(1))


# ---------------------------------------------------------------- Monte Carlo, V = 1000
def test_chi2_vocab_1000():
    """Rejection-corrected AWRS draws are exact target draws (w ≤ 1 for a normalised LM).

    Keeping a proposal (a, w) with probability w gives P(a, kept) = target(a), so the kept
    tokens follow target/Z exactly: Pearson χ², α = 1e-3. The mean weight estimates Z:
    |z| ≤ 4, α = 6.3e-5.
    """
    rng = np.random.default_rng(1000)
    V = 1000
    vocab = _vocab(V)
    logp = np.log(rng.dirichlet(np.full(V + 1, 0.2)))
    allowed = np.flatnonzero(rng.random(V) < 0.3)
    s = AWRS(_unigram(vocab, logp), _allow(vocab, allowed), max_rejects=8)
    target = logp + s.constraint.logw_next([])
    Z = float(np.exp(logsumexp(target)))
    toks, lws = [], []
    for _ in range(10):
        out = s.sample(s.target.init_state(2000), rng)
        toks.append(out.tokens)
        lws.append(out.log_w)
    tokens, w = np.concatenate(toks), np.exp(np.concatenate(lws))
    assert (w <= 1 + 1e-12).all() and (w > 0).all()
    keep = rng.random(len(w)) < w
    probs = {a: float(np.exp(target[a])) for a in np.flatnonzero(target > -np.inf)}
    assert_gof(tokens[keep].tolist(), probs, false_alarm=1e-3)
    assert_mean(w, Z, sigmas=4.0)


# ---------------------------------------------------------------- SMC
def _toy_problem(seed: int):
    rng = np.random.default_rng(seed)
    vocab = _vocab(3)
    lm = random_ngram(rng, vocab, order=2, concentration=0.7, eos_boost=1.5)
    c = DFA(vocab, np.array([[1, 0, 2], [1, -1, 0], [0, 2, -1]]), [0, 2])
    return lm, c


@pytest.mark.parametrize("seed", [11, 12])
def test_smc_awrs_matches_exact_target(seed):
    """Posterior (rejection-corrected draws, χ² α = 1e-3) and Ẑ (mean test) are exact."""
    lm, c = _toy_problem(seed)
    max_len = 4
    exact = enumerate_target(lm * c, max_len)
    s = AWRS(lm, c, max_rejects=2)
    rng = np.random.default_rng(seed)
    runs = [smc(s, 4, max_len, rng=rng, ess_threshold=0.5) for _ in range(1500)]
    assert_mean([np.exp(r.log_z) for r in runs], float(np.exp(exact.log_z)), sigmas=4.0)
    draws = smc_exact_draws(runs, np.random.default_rng(seed + 100), log_bound=0.0)
    assert len(draws) > 300
    assert_gof(draws, exact.posterior, false_alarm=1e-3)
    assert all(
        r.status.count("finished") + sum(x.startswith("dead") for x in r.status) == 4 for r in runs
    )


def test_smc_awrs_agrees_with_direct():
    """Exact draws from SMC+AWRS and SMC+direct runs are homogeneous (χ² contingency, α=1e-3)."""
    lm, c = _toy_problem(13)
    rng = np.random.default_rng(13)
    awrs = [smc(AWRS(lm, c), 4, 4, rng=rng) for _ in range(800)]
    direct = [smc(DirectSampler(lm * c), 4, 4, rng=rng) for _ in range(800)]
    da = smc_exact_draws(awrs, rng)
    dd = smc_exact_draws(direct, rng)
    keys = sorted(set(da) | set(dd))
    table = np.array([[da.count(k) for k in keys], [dd.count(k) for k in keys]])
    # pool rare outcomes (expected count < 5) into one column
    rare = table.sum(0) < 10
    if rare.any():
        table = np.c_[table[:, ~rare], table[:, rare].sum(1)]
    assert stats.chi2_contingency(table).pvalue >= 1e-3


def test_sample_front_door_picks_awrs():
    lm, c = _toy_problem(14)
    out = potentia.sample(ToyLM(lm), [], c, particles=4, max_tokens=4, seed=0)
    assert "AWRS" in out.method
    assert all(c.complete(x) == 0.0 for x, s in zip(out.contexts, out.status) if s == "finished")
    out2 = potentia.sample(ToyLM(lm), [], c, sampler="awrs", particles=4, max_tokens=4, seed=0)
    assert out2.method == out.method
    soft = random_ngram(np.random.default_rng(0), lm.vocab, 2, normalised=False)
    assert "Direct" in potentia.sample(ToyLM(lm), [], soft, particles=2, max_tokens=2).method
    with pytest.raises(TypeError, match="`constraint`"):
        potentia.sample(ToyLM(lm), [], soft, sampler="awrs", particles=2, max_tokens=2)


# ---------------------------------------------------------------- lifting, bad input
def test_byte_level_constraint_is_lifted():
    tokvocab = Vocabulary([b"a", b"b", b"ab"])
    lm = random_ngram(np.random.default_rng(3), tokvocab, order=2)
    delta = np.full((3, 256), -1)
    delta[0, ord("a")] = 1
    delta[1, ord("b")] = 2
    delta[2, ord("a")] = 1
    bytes_dfa = DFA(Vocabulary.bytes256(), delta, [2])  # (ab)+
    s = AWRS(lm, bytes_dfa)
    assert s.target.vocab == tokvocab
    for ctx in ([], [0], [2], [0, 1]):
        assert_properly_weighted(s, s.target.state_from([ctx]))


def test_bad_input():
    vocab = _vocab(3)
    lm = _unigram(vocab, np.log([0.25] * 4))
    c = _allow(vocab, [0])
    soft = random_ngram(np.random.default_rng(0), vocab, 2, normalised=False)
    with pytest.raises(TypeError, match="`constraint`.*soft potential"):
        AWRS(lm, soft)
    with pytest.raises(ValueError, match="`max_rejects` is 0"):
        AWRS(lm, c, max_rejects=0)
    with pytest.raises(ValueError, match="`max_rejects` is -3"):
        AWRS(lm, c, max_rejects=-3)
    with pytest.raises(TypeError, match="`max_rejects`"):
        AWRS(lm, c, max_rejects=True)
    with pytest.raises(TypeError, match="`max_rejects`"):
        AWRS(lm, c, max_rejects="5")
    with pytest.raises(TypeError, match="`lm`"):
        AWRS("gpt", c)
    with pytest.raises(TypeError, match="`constraint`"):
        AWRS(lm, lambda s: True)
    other = _allow(_vocab(4), [0])
    with pytest.raises(ValueError, match="`constraint`.*cannot be aligned"):
        AWRS(lm, other)


# ---------------------------------------------------------------- real model (Gemma 3 270M)
FRANCE = "The capital of France is"
CITY = r" (Paris|Lyon|Marseille|[A-Z][a-z]+)(\.|,)"


def _finished_texts(res):
    return [t for t, s in zip(res.texts, res.status) if s == "finished"]


@pytest.mark.real_model
def test_gemma_regex_valid_and_agrees_with_direct(gemma):
    """Only valid outputs; E[Ẑ·p̂(S)] agrees between AWRS and direct (|z| ≤ 4, α ≈ 6e-5).

    For any set S of strings, Ẑ·p̂(S) is an unbiased estimate of target(S) for both
    samplers, so the two run averages differ by Monte-Carlo error only. S = outputs that
    start with " Paris" (the bulk of the posterior) and S = everything (Ẑ itself).
    """
    import re

    lmp = gemma.potential(FRANCE)
    c = potentia.regex(CITY).lift(gemma.vocab)
    rng = np.random.default_rng(2025)
    est = {"awrs": [], "direct": []}
    for name, sampler in (("awrs", AWRS(lmp, c)), ("direct", DirectSampler(lmp * c))):
        for _ in range(8):
            res = smc(sampler, 8, 6, rng=rng)
            texts = _finished_texts(res)
            assert texts and all(re.fullmatch(CITY, t) for t in texts)
            assert not any(s.startswith("dead") for s in res.status)
            z = np.exp(res.log_z)
            paris = sum(w for t, w in zip(res.texts, res.weights) if t.startswith(" Paris"))
            est[name].append((z, z * paris))
    for k in (0, 1):
        a = np.array([e[k] for e in est["awrs"]])
        d = np.array([e[k] for e in est["direct"]])
        se = np.sqrt(a.var(ddof=1) / len(a) + d.var(ddof=1) / len(d))
        assert abs(a.mean() - d.mean()) <= 4 * se + 1e-12


@pytest.mark.real_model
def test_gemma_json_newline_eos(gemma):
    import json as _json

    import jsonschema

    from potentia.lm import LM

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    lm_nl = LM(gemma.backend, gemma.tokenizer, eos="\n")
    prompt = (
        'People as JSON, one per line:\n{"name": "Alice", "age": 31}\n{"name": "Bob", "age": 45}\n'
    )
    res = smc(AWRS(lm_nl.potential(prompt), potentia.json(schema)), 4, 20, rng=0)
    texts = _finished_texts(res)
    assert texts
    for t in texts:
        jsonschema.validate(_json.loads(t), schema)
    assert res.constraint_checks <= 5 * res.n_steps * 4


@pytest.mark.real_model
def test_gemma_unlikely_regex_no_dead_particles(gemma):
    """The LM puts almost no mass on the constraint: AWRS must never kill a particle."""
    import re

    pattern = r" [A-Z][a-z]+ (is|was) [0-9]{2,4}\."
    res = smc(AWRS(gemma.potential(FRANCE), potentia.regex(pattern)), 4, 16, rng=1)
    sampler_deaths = [s for s in res.status if s.startswith("dead") and "max_tokens" not in s]
    assert sampler_deaths == []
    assert all(re.fullmatch(pattern, t) for t in _finished_texts(res))
