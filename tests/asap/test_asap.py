"""ASAp, CARS and the θ twist on toy LMs with exactly known targets.

False-alarm budget of this file: four χ² tests at α = 1e-3 each and one mean test at
4σ (≈ 6e-5), so a correct implementation fails with probability < 4.1e-3 (per seed;
seeds are fixed, so the outcome is deterministic). Every other check is exact.
"""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from potentia.asap.asap import CARS, LCD, ASAp, ThetaTwist, Trie, TrieSampler, twisted_smc
from potentia.models.exact import enumerate_target
from potentia.models.toy import DFA, FiniteLanguage, ToyLM, random_ngram
from potentia.potentials.base import Vocabulary
from potentia.testing import (
    assert_gof,
    assert_mean,
    assert_potential_laws,
    assert_properly_weighted,
    chi2_gof,
    enumerate_draws,
    smc_exact_draws,
)
from potentia.testing.strategies import hard_constraints, toy_lms, vocabularies


def exact_efg(lm, c, ctx, max_len) -> float:
    """Σ_y P(y EOS | ctx) 1[ctx y ∈ L, |ctx y| <= max_len], by brute-force recursion."""
    V = len(lm.vocab)
    lw, cw = lm.logw_next(ctx), c.logw_next(ctx)
    tot = float(np.exp(lw[V])) if cw[V] > -np.inf else 0.0
    if len(ctx) < max_len:
        for a in range(V):
            if cw[a] > -np.inf and lw[a] > -np.inf:
                tot += float(np.exp(lw[a])) * exact_efg(lm, c, ctx + [a], max_len)
    return tot


def kl(p: dict, q: dict) -> float:
    return float(sum(v * np.log(v / q[k]) for k, v in p.items() if v > 0))


def outcome_distribution(fn) -> dict:
    out: dict = {}
    for prob, value in enumerate_draws(fn):
        out[value] = out.get(value, 0.0) + prob
    return out


def biased_problem():
    """A toy case where LCD is provably biased: LCD's exact KL to the target is > 0.1."""
    lm = random_ngram(np.random.default_rng(3), 3, order=2)
    lang = FiniteLanguage(lm.vocab, [(0, 1), (1,), (0, 0, 2), (2, 2, 2), (1, 0), (2, 0)])
    return lm, lang, 3


# ----- θ: an upper bound, exact once expanded --------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_theta_upper_bounds_efg_and_is_exact_when_expanded(data):
    vocab = data.draw(vocabularies(1, 3))
    lm = data.draw(toy_lms(vocab))
    L = data.draw(st.integers(1, 3))
    c = data.draw(hard_constraints(vocab, L))
    methods = data.draw(st.lists(st.sampled_from(["asap", "cars", "lcd"]), min_size=1, max_size=12))
    seed = data.draw(st.integers(0, 2**16))
    z = exact_efg(lm, c, [], L)
    if c.prefix([]) == -np.inf:
        with pytest.raises(ValueError, match="accepts no string"):
            Trie(lm, c, max_tokens=L)
        return
    trie = Trie(lm, c, max_tokens=L)
    if z == 0:
        with pytest.raises(ValueError, match="empty"):
            ASAp(trie=trie).sample(1, seed)
        return
    rng = np.random.default_rng(seed)
    cls = {"asap": ASAp, "cars": CARS, "lcd": LCD}
    for m in methods:
        cls[m](trie=trie).sample(1, rng)
        for node in trie.nodes():
            theta = np.exp(trie.log_theta(node))
            efg = exact_efg(lm, c, list(node.context), L)
            assert theta >= efg * (1 - 1e-9) - 1e-15, (node.context, theta, efg)
    trie.expand_all()
    for node in trie.nodes():
        efg = exact_efg(lm, c, list(node.context), L)
        assert np.isclose(np.exp(trie.log_theta(node)), efg, rtol=1e-9, atol=1e-15)
    assert np.isclose(np.exp(trie.root_logtheta), z, rtol=1e-9)


# ----- CARS: exact --------------------------------------------------------------------------


@pytest.mark.parametrize("warmup", [0, 2, 6])
def test_cars_attempt_returns_x_with_probability_p_over_theta_root(warmup):
    """Exact for every state of the trie, so every accepted string is an exact draw."""
    lm, lang, L = biased_problem()
    ex = enumerate_target(lm * lang, L)

    def fresh():
        trie = Trie(lm, lang, max_tokens=L)
        ASAp(trie=trie).sample(warmup, np.random.default_rng(2))  # a partly learned θ
        return trie

    theta_root = np.exp(fresh().root_logtheta)

    def one_attempt(draw):
        x = CARS(trie=fresh()).attempt(draw=draw)
        return None if x is None else tuple(x)

    got = outcome_distribution(one_attempt)
    assert set(got) - {None} == set(ex.log_weights)
    for x, lw in ex.log_weights.items():
        assert np.isclose(got[x], np.exp(lw) / theta_root, rtol=1e-9)
    assert np.isclose(got.get(None, 0.0), 1 - np.exp(ex.log_z) / theta_root, atol=1e-12)


def test_cars_chi2_and_acceptance_rises_to_one():
    lm, lang, L = biased_problem()
    ex = enumerate_target(lm * lang, L)
    cars = CARS(lm, lang, max_tokens=L)
    out = cars.sample(2000, np.random.default_rng(11))
    assert_gof([tuple(c) for c in out.contexts], ex.posterior, false_alarm=1e-3)
    assert out.extra["attempts"] > 2000  # it did reject while learning
    assert abs(out.log_z - ex.log_z) < 0.1
    cars.trie.expand_all()  # θ(root) = Z: no attempt can fail any more
    later = cars.sample(200, np.random.default_rng(12))
    assert later.extra["attempts"] == 200 and later.target_evals == 0
    assert np.isclose(later.log_z, ex.log_z, rtol=1e-9)


# ----- ASAp converges where LCD is biased ---------------------------------------------------


def test_asap_converges_where_lcd_is_provably_biased():
    lm, lang, L = biased_problem()
    exact = enumerate_target(lm * lang, L).posterior
    trie = Trie(lm, lang, max_tokens=L)
    trie.expand_all()
    lcd = outcome_distribution(lambda d: tuple(LCD(trie=trie).sample(1, draw=d).contexts[0]))
    kl_lcd = kl(exact, lcd)
    assert kl_lcd > 0.1  # exact: LCD's own distribution is far from the target

    def asap_next(trie):
        return outcome_distribution(
            lambda d: tuple(ASAp(trie=copy.deepcopy(trie)).sample(1, draw=d).contexts[0])
        )

    asap = ASAp(lm, lang, max_tokens=L)
    first = asap_next(asap.trie)  # empty trie: θ = 1 everywhere, ASAp's first draw is LCD's
    assert all(np.isclose(first[x], lcd[x], rtol=1e-9) for x in exact)
    kls, drawn = [], []
    for _ in range(6):
        kls.append(kl(exact, asap_next(asap.trie)))
        drawn += asap.sample(300, np.random.default_rng(len(drawn))).contexts
    assert kls[-1] < 1e-3 * kl_lcd and min(kls[1:]) < kls[0]
    # the empirical distribution of all 1,800 draws is far closer than LCD's bias
    counts = Counter(tuple(c) for c in drawn)
    emp = {x: counts[x] / len(drawn) for x in counts}
    assert kl(emp, exact) < kl_lcd / 5
    # statistical power check: LCD's samples fail the χ² test against the target
    lcd_draws = LCD(trie=trie).sample(2000, np.random.default_rng(5)).contexts
    assert chi2_gof([tuple(c) for c in lcd_draws], exact).p_value < 1e-12


def test_asap_samples_after_convergence_pass_chi2():
    lm, lang, L = biased_problem()
    exact = enumerate_target(lm * lang, L).posterior
    asap = ASAp(lm, lang, max_tokens=L)
    asap.trie.expand_all()
    out = asap.sample(2000, np.random.default_rng(8))
    assert out.target_evals == 0
    assert_gof([tuple(c) for c in out.contexts], exact, false_alarm=1e-3)


# ----- the θ twist in SMC -------------------------------------------------------------------


def test_twisted_smc_with_a_converged_trie_has_equal_weights_and_exact_z():
    lm, lang, L = biased_problem()
    ex = enumerate_target(lm * lang, L)
    trie = Trie(lm, lang, max_tokens=L)
    trie.expand_all()
    for seed in range(5):
        r = twisted_smc(trie, 6, seed)
        assert np.isclose(r.log_z, ex.log_z, rtol=1e-12)
        assert np.allclose(r.log_weights, r.log_weights[0], rtol=1e-12)
        assert r.extra["lm_calls"] == 0


def test_twisted_smc_is_exact_and_unbiased_while_learning():
    lm, lang, L = biased_problem()
    ex = enumerate_target(lm * lang, L)
    trie = Trie(lm, lang, max_tokens=L)
    runs = [twisted_smc(trie, 3, seed) for seed in range(600)]
    calls = [r.extra["lm_calls"] for r in runs]
    assert calls[0] > 0 and sum(calls[300:]) == 0  # the trie learned from the particles
    # Each run's Ẑ is at most θ(root) of its snapshot (every twisted increment is <= 1), so
    # accepting one particle per run with probability Ẑ / θ_root gives exact draws.
    rng = np.random.default_rng(0)
    draws = []
    for r in runs:
        assert r.log_z <= r.extra["log_theta_root"] + 1e-9
        draws += smc_exact_draws([r], rng, log_bound=r.extra["log_theta_root"])
    assert len(draws) > 400
    assert_gof(draws, ex.posterior, false_alarm=1e-3)
    # Ẑ unbiased for a fixed, partly learned snapshot (independent copies of one trie)
    base = Trie(lm, lang, max_tokens=L)
    ASAp(trie=base).sample(2, np.random.default_rng(4))
    zs = [np.exp(twisted_smc(copy.deepcopy(base), 3, 100 + s).log_z) for s in range(400)]
    assert_mean(zs, np.exp(ex.log_z), sigmas=4.0)


def test_twist_is_a_frozen_snapshot_and_a_lawful_potential():
    lm, lang, L = biased_problem()
    trie = Trie(lm, lang, max_tokens=L)
    ASAp(trie=trie).sample(3, np.random.default_rng(0))
    twist = ThetaTwist(trie)
    before = [twist.prefix(list(n.context)) for n in trie.nodes()]
    for n in trie.nodes():
        assert twist.prefix(list(n.context)) == trie.log_theta(n)
    trie.expand_all()
    assert [twist.prefix(list(n.context)) for n in list(trie.nodes())[: len(before)]] != [
        trie.log_theta(n) for n in list(trie.nodes())[: len(before)]
    ]
    ctxs = [[], [0], [1], [2], [0, 0], [2, 2], [1, 0], [0, 1, 2]]
    assert_potential_laws(twist, ctxs)


def test_trie_sampler_is_properly_weighted_per_token():
    lm, lang, L = biased_problem()
    trie = Trie(lm, lang, max_tokens=L)
    ASAp(trie=trie).sample(2, np.random.default_rng(0))
    sampler = TrieSampler(trie)
    for ctx in ([], [0], [2], [0, 0]):
        state = sampler.init_state(1)
        for t in ctx:
            state = state.advance(np.array([t]))
        assert_properly_weighted(sampler, state)


# ----- one trie per (prompt, constraint); bad input -----------------------------------------


def test_tries_are_never_shared_between_prompts():
    vocab = Vocabulary.from_strings(["a", "b", "c"])
    toy = ToyLM(random_ngram(np.random.default_rng(0), vocab, order=2))
    lang = FiniteLanguage(vocab, [(0,), (1, 1), (2, 0)])
    s1 = ASAp.from_model(toy, "a", lang, max_tokens=3)
    s2 = ASAp.from_model(toy, "b", lang, max_tokens=3)
    s3 = ASAp.from_model(toy, "a", lang, max_tokens=3)
    s1.sample(20, 0)
    assert s1.trie is not s2.trie and s1.trie is not s3.trie
    assert len(s2.trie) == 1 and s2.trie.lm_calls == 0 and len(s3.trie) == 1
    s2.sample(5, 0)
    assert s2.trie.root.logp is not s1.trie.root.logp


def test_bad_input():
    vocab = Vocabulary.from_strings(["a", "b"])
    lm = random_ngram(np.random.default_rng(0), vocab, order=1)
    lang = FiniteLanguage(vocab, [(0,)])
    with pytest.raises(TypeError, match="soft"):
        ASAp(lm, random_ngram(np.random.default_rng(1), vocab, normalised=False))
    with pytest.raises(ValueError, match="accepts no string"):
        ASAp(lm, FiniteLanguage(vocab, []))
    with pytest.raises(ValueError, match="max_tokens"):
        ASAp(lm, lang, max_tokens=0)
    with pytest.raises(ValueError, match="not both"):
        ASAp(lm, lang, trie=Trie(lm, lang))
    with pytest.raises(ValueError, match="`n`"):
        ASAp(lm, lang).sample(-1)
    with pytest.raises(TypeError, match="model"):
        ASAp.from_model(lm, "x", lang)
    # a language the LM cannot produce: token "a" has probability zero
    with np.errstate(divide="ignore"):
        table = {(): np.log(np.array([0.0, 0.5, 0.5]))}
    from potentia.models.toy import NGramLM

    with pytest.raises(ValueError, match="empty under the LM"):
        CARS(NGramLM(vocab, table, order=1), lang).sample(1, 0)
    # strings only longer than max_tokens
    dfa = DFA(vocab, np.array([[1, -1], [2, -1], [2, -1]]), [2])
    with pytest.raises(ValueError, match="max_tokens"):
        ASAp(lm, dfa, max_tokens=1).sample(1, 0)


# ----- a real LM ---------------------------------------------------------------------------


@pytest.mark.real_model
def test_real_lm_theta_reaches_the_exact_target_and_cars_is_exact(smollm):
    """SmolLM2, GAD's binary_len_3 grammar (5 strings): θ(root) = Z; CARS passes χ² (α=1e-3)."""
    from pathlib import Path

    from potentia.constraints.cfg import cfg
    from potentia.models.finite import exact_finite_target

    path = Path("/work/shared/data/grammars/gad-examples/binary_len_3.ebnf")
    if not path.exists():
        pytest.skip("the shared GAD grammars are not present")
    g = cfg(path.read_text())
    pot = smollm.potential("Generate a binary string of length 3")
    exact = exact_finite_target(pot, g)
    cars = CARS(pot, g, max_tokens=4)
    out = cars.sample(1000, np.random.default_rng(0))
    assert out.target_evals <= exact.lm_calls
    assert_gof([tuple(c) for c in out.contexts], exact.posterior, false_alarm=1e-3)
    cars.trie.expand_all()
    assert np.isclose(cars.trie.root_logtheta, exact.log_z, rtol=1e-4)


# ----- budgets (issue 11: nothing hangs) ----------------------------------------------------
def _three_or_more():
    """Strings of at least 3 tokens over {a, b, c}."""
    vocab = Vocabulary.from_strings(["a", "b", "c"])
    lm = random_ngram(np.random.default_rng(5), vocab, order=2)
    dfa = DFA(vocab, np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3], [3, 3, 3]]), [3])
    return lm, dfa


@pytest.mark.parametrize("cls", [ASAp, CARS, LCD])
@pytest.mark.parametrize(
    ("budget", "name"),
    [({"max_attempts": 3}, "`max_attempts`=3"), ({"max_lm_calls": 2}, "`max_lm_calls`=2"),
     ({"time_limit": 1e-9}, "`time_limit`=1e-09 s")],
)  # fmt: skip
def test_budgets_stop_the_walks_and_say_which(cls, budget, name):
    lm, dfa = _three_or_more()
    s = cls(lm, dfa, max_tokens=8)
    out = s.sample(1000, 0, **budget)
    assert out.extra["stopped_by"].startswith(f"{name} ran out")
    assert out.message.startswith(f"stopped early: {name} ran out") and "raise" in out.message
    assert len(out.texts) < 1000
    if "max_attempts" in budget:
        assert out.extra["attempts"] == 3
    if "max_lm_calls" in budget:
        assert s.trie.lm_calls - 0 >= 2 and out.target_evals <= 2 + 8  # one walk may finish
    if "time_limit" in budget:
        assert out.extra["attempts"] == 0


def test_unreached_budgets_leave_the_draws_alone():
    lm, dfa = _three_or_more()
    a = CARS(lm, dfa, max_tokens=6).sample(30, 7)
    b = CARS(lm, dfa, max_tokens=6).sample(30, 7, max_attempts=10**6, time_limit=1e6,
                                           max_lm_calls=10**6)  # fmt: skip
    assert a.contexts == b.contexts and b.extra["stopped_by"] is None
    assert a.extra["attempts"] == b.extra["attempts"]


def test_progress_bar_runs(capsys):
    lm, dfa = _three_or_more()
    out = ASAp(lm, dfa, max_tokens=6).sample(5, 0, progress=True)
    assert len(out.texts) == 5 and "asap" in capsys.readouterr().err


def test_bad_budgets():
    lm, dfa = _three_or_more()
    s = CARS(lm, dfa, max_tokens=6)
    with pytest.raises(ValueError, match="`max_attempts`"):
        s.sample(1, 0, max_attempts=0)
    with pytest.raises(ValueError, match="`time_limit`"):
        s.sample(1, 0, time_limit=-1)
    with pytest.raises(TypeError, match="`max_lm_calls`"):
        s.sample(1, 0, max_lm_calls="10")
    assert s.trie.lm_calls == 0


def test_length_bound_nodes_cost_no_lm_call():
    """At depth ``max_tokens`` a node whose EOS the constraint forbids is known dead (θ = 0)."""
    lm, dfa = _three_or_more()
    trie = Trie(lm, dfa, max_tokens=2)
    trie.expand(trie.root)
    n1 = trie.child(trie.root, 0)
    trie.expand(n1)
    calls = trie.lm_calls
    trie.expand(trie.child(n1, 1))
    assert trie.lm_calls == calls and trie.log_theta(trie.child(n1, 1)) == -np.inf


def test_a_hard_constraint_with_soft_weights_is_an_error():
    """A potential declared hard whose next-token weights are not 0/-inf is refused."""
    from potentia.potentials.base import Potential

    lm, dfa = _three_or_more()

    class HalfHard(Potential):
        hard = True
        vocab = lm.vocab

        def _prefix(self, context):
            return -0.5 if context else 0.0

        def _complete(self, context):
            return 0.0

    with pytest.raises(ValueError, match=r"declared hard but gave the log weight -0\.5"):
        ASAp(lm, HalfHard()).sample(1, 0)
