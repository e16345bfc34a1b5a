"""The lazy (partial-expansion) A*, the heuristic weight and the step cost, by brute force.

Deterministic, exact checks on toy LMs (no statistical test): with one-token units and
``DirectSampler`` the lazy A* keeps A*'s guarantee (the first goals popped are the true
best strings), ``g_weight=0, step_cost=1`` finds a shortest string of positive weight,
budgets are never exceeded, the tree is consistent, and a node whose sampled children
were all pruned is sampled again instead of being a dead end.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_engines import check_tree

import potentia as pt
from potentia.models import enumerate_target, random_ngram
from potentia.search import Budget, astar
from potentia.testing.strategies import toy_problems

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(
    problem=toy_problems(max_vocab=3, max_len=3),
    n_best=st.integers(1, 2),
    k=st.integers(1, 3),
    seed=st.integers(0, 3),
)
def test_lazy_astar_with_one_token_units_finds_true_best(problem, n_best, k, seed):
    """LM × hard constraint, h = 0: the re-queue priority bounds every unseen child."""
    assume(problem.constraint is None or problem.constraint.hard)
    target = problem.target
    ex = enumerate_target(target, problem.max_len)
    assume(len(ex.log_weights) >= n_best)
    res = astar(target, problem.max_len, n_best=n_best, expand="lazy", unit=1, k=k, rng=seed)
    want = sorted(ex.log_weights.values(), reverse=True)[:n_best]
    assert np.allclose(res.extra["logp"], want, atol=1e-9)
    check_tree(res, target, lambda i, c, goal, t: t["logp"][i])


@SETTINGS
@given(problem=toy_problems(max_vocab=3, max_len=3), seed=st.integers(0, 3))
def test_step_cost_finds_a_shortest_string(problem, seed):
    """``g_weight=0, step_cost=1``, h = 0: breadth-first in steps, one-token units."""
    target = problem.target
    ex = enumerate_target(target, problem.max_len)
    assume(ex.log_weights)
    res = astar(
        target, problem.max_len, expand="lazy", unit=1, k=1, rng=seed, g_weight=0, step_cost=1
    )
    shortest = min(len(x) for x in ex.log_weights)
    assert res.contexts and len(res.contexts[0]) == shortest
    assert tuple(res.contexts[0]) in ex.log_weights
    assert res.log_weights[0] == -(shortest + 1)  # score -f = -(tokens + EOS)
    check_tree(res, target)


@SETTINGS
@given(
    problem=toy_problems(max_vocab=3, max_len=3),
    lm_tokens=st.integers(1, 30),
    expansions=st.sampled_from([None, 1, 3, 7]),
    reward_calls=st.sampled_from([None, 1, 4]),
    k=st.integers(1, 3),
    unit=st.sampled_from([1, 2, None]),
    lam=st.sampled_from([0.0, 1.0, 5.0]),
)
def test_lazy_budgets_never_exceeded(problem, lm_tokens, expansions, reward_calls, k, unit, lam):
    target = problem.target
    budget = Budget(lm_tokens=lm_tokens, expansions=expansions, reward_calls=reward_calls)
    res = astar(
        target, problem.max_len, lambda c: 0.3 * len(c), n_best=2, expand="lazy", unit=unit,
        k=k, rng=0, budget=budget, heuristic_weight=lam,
    )  # fmt: skip
    spent = res.extra["spent"]
    assert spent["lm_tokens"] <= lm_tokens
    for name, limit in (("expansions", expansions), ("reward_calls", reward_calls)):
        if limit is not None:
            assert spent[name] <= limit
    check_tree(res, target)
    t = res.extra["tree"]
    # children are distinct units of their parent
    kids = {}
    for i in range(1, len(t["parent"])):
        key = (t["parent"][i], tuple(t["tokens"][i]))
        assert key not in kids
        kids[key] = i


def test_heuristic_weight_scales_h_and_inf_prunes():
    lm = random_ngram(np.random.default_rng(4), 3, smoothing=0.2, eos_boost=1.0)
    h = lambda c: 0.5 * len(c)  # noqa: E731
    for lam in (0.0, 2.0):
        res = astar(lm, 3, h, heuristic_weight=lam, n_best=3)
        check_tree(
            res, lm, lambda i, c, goal, t, lam=lam: t["logp"][i] - (0 if goal else lam * h(c))
        )
    banned = lambda c: np.inf if c[:1] == [0] else 0.0  # noqa: E731
    res = astar(lm, 3, banned, n_best=5)
    t = res.extra["tree"]
    assert all(t["tokens"][i][:1] != [0] or t["parent"][i] != 0 for i in range(1, len(t["parent"])))
    assert res.contexts and all(c[:1] != [0] for c in res.contexts)


def test_lazy_resamples_a_node_whose_children_were_all_pruned():
    """h allows only the empty string and strings starting with token 2 (unlikely at the root)."""
    lm = random_ngram(np.random.default_rng(5), 3, smoothing=0.05, eos_boost=1.0)
    assert np.exp(lm.logw_next([])[2]) < 0.5
    h = lambda c: 0.0 if c[:1] in ([], [2]) else np.inf  # noqa: E731
    budget = Budget(lm_tokens=200)
    once = [astar(lm, 4, h, expand="sample", unit=1, k=1, rng=s, budget=budget) for s in range(8)]
    lazy = [astar(lm, 4, h, expand="lazy", unit=1, k=1, rng=s, budget=budget) for s in range(8)]
    assert any(not r.contexts for r in once)  # a dead end: the root's only child pruned
    assert sum(bool(r.contexts) for r in lazy) > sum(bool(r.contexts) for r in once)
    for r in lazy:
        assert r.contexts and r.contexts[0][:1] in ([], [2])  # the empty string, or 2...
        assert r.extra["spent"]["lm_tokens"] <= 200
        assert r.extra["tree"]["info"][0]["pops"] >= 1


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"heuristic_weight": -1.0}, ValueError, "heuristic_weight"),
        ({"heuristic_weight": "x"}, TypeError, "heuristic_weight"),
        ({"g_weight": np.inf}, ValueError, "g_weight"),
        ({"step_cost": -2}, ValueError, "step_cost"),
        ({"g_weight": 0, "step_cost": 0}, ValueError, "g_weight"),
        ({"expand": "eager"}, ValueError, "lazy"),
    ],
)
def test_bad_arguments(kw, exc, match):
    lm = random_ngram(np.random.default_rng(0), 2)
    with pytest.raises(exc, match=match):
        astar(lm, 3, **kw)


def test_lazy_with_a_direct_sampler_over_the_target():
    lm = random_ngram(np.random.default_rng(7), 3, smoothing=0.2)
    res = astar(lm, 3, expand="lazy", sampler=pt.DirectSampler(lm), unit=1, k=2, rng=1)
    ex = enumerate_target(lm, 3)
    assert res.extra["logp"][0] == pytest.approx(max(ex.log_weights.values()))
