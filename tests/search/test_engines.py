"""Search engines on toy problems, against brute force over exactly enumerated targets.

Every check here is deterministic and exact (no statistical test, no false alarms):
A* with an admissible heuristic returns the true best strings, full-width beam / DeAL
equal their brute-force definitions, budgets are never exceeded, the trees are consistent.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import potentia as pt
from potentia.models import enumerate_target, random_ngram
from potentia.search import Budget, astar, beam_search, best_of_n, deal
from potentia.testing.strategies import toy_problems

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _reward(seed):
    """A deterministic pseudo-random reward of a context."""

    def r(ctx):
        return float(np.random.default_rng([seed, len(ctx), *ctx]).normal())

    return r


def _exact_h(target, max_len):
    """h*(x) = -max_y log(target(x y) / target.prefix(x)), by enumeration (exact, admissible)."""
    ex = enumerate_target(target, max_len)

    def h(ctx):
        best = max(
            (w for x, w in ex.log_weights.items() if list(x[: len(ctx)]) == list(ctx)),
            default=-np.inf,
        )
        return -(best - target.prefix(ctx)) if best > -np.inf else 1e9

    return h, ex


def check_tree(res, target, score_of=None):
    """Every parent was expanded before its child; logp (and scores) recomputed match."""
    t = res.extra["tree"]
    V = len(target.vocab)
    ctx = {0: []}
    for i in range(1, len(t["parent"])):
        p = t["parent"][i]
        assert 0 <= p < i and t["expanded"][p] >= 0
        assert t["created"][i] > t["expanded"][p]
        if t["expanded"][i] >= 0:
            assert t["expanded"][i] > t["expanded"][p]
        toks = t["tokens"][i]
        goal = toks[-1] == V
        ctx[i] = ctx[p] + (toks[:-1] if goal else toks)
        want = target.complete(ctx[i]) if goal else target.prefix(ctx[i])
        assert t["logp"][i] == pytest.approx(want, abs=1e-9)
        if score_of is not None:
            assert t["score"][i] == pytest.approx(score_of(i, ctx[i], goal, t), abs=1e-9)
    assert sorted(t["order"]) == sorted(i for i, e in enumerate(t["expanded"]) if e >= 0)
    assert [t["expanded"][i] for i in t["order"]] == list(range(len(t["order"])))
    return ctx


def _top(ex, n):
    return sorted(ex.log_weights.values(), reverse=True)[:n]


@SETTINGS
@given(problem=toy_problems(max_vocab=3, max_len=3), n_best=st.integers(1, 3))
def test_astar_uniform_cost_finds_true_best(problem, n_best):
    """LM × hard constraint: ratios ≤ 1, so h = 0 is admissible."""
    assume(problem.constraint is None or problem.constraint.hard)
    target = problem.target
    ex = enumerate_target(target, problem.max_len)
    res = astar(target, problem.max_len, n_best=n_best)
    want = _top(ex, n_best)
    assert np.allclose(res.log_weights, want, atol=1e-9)
    for c, w in zip(res.contexts, res.log_weights):
        assert ex.log_weights[tuple(c)] == pytest.approx(w, abs=1e-9)
    check_tree(res, target, lambda i, c, goal, t: t["logp"][i])
    assert res.extra["spent"]["lm_tokens"] == len(res.extra["tree"]["parent"]) - 1


@SETTINGS
@given(problem=toy_problems(max_vocab=3, max_len=3), slack=st.sampled_from([0.0, 0.5, 3.0]))
def test_astar_exact_and_admissible_heuristics(problem, slack):
    """Any target (soft ones too): h* - slack never overestimates, so A* is exact."""
    target = problem.target
    h_star, ex = _exact_h(target, problem.max_len)
    assume(ex.log_weights)

    def h(ctx):
        return h_star(ctx) - slack

    res = astar(target, problem.max_len, h, n_best=2)
    assert np.allclose([res.extra["logp"][0]], _top(ex, 1), atol=1e-9)
    check_tree(res, target, lambda i, c, goal, t: t["logp"][i] - (0 if goal else h(c)))
    if slack == 0.0 and len(ex.log_weights) > 1:
        assert np.allclose(res.extra["logp"], _top(ex, 2), atol=1e-9)


def _ref_beam(target, max_len, width, top_k=None, lookahead=0, weight=0.0, reward=None):
    """Beam / DeAL by their definitions, written independently of the engine."""
    V = len(target.vocab)

    def greedy(x):
        roll = []
        for _ in range(lookahead):
            if len(x) + len(roll) >= max_len:
                break
            lw = target.logw_next(x + roll)
            b = int(np.argmax(lw))
            if lw[b] == -np.inf or b == V:
                break
            roll.append(b)
        return roll

    beam, done = ([()] if target.prefix([]) > -np.inf else []), []
    while beam:
        cands = []
        for x in beam:
            lw = target.logw_next(list(x))
            toks = [V] if len(x) >= max_len else range(V + 1)
            ok = [a for a in toks if lw[a] > -np.inf]
            if top_k is not None:
                ok = sorted(ok, key=lambda a: (-lw[a], a))[:top_k]
            for a in ok:
                if a == V:
                    s = target.complete(list(x))
                    s += weight * reward(list(x)) if reward else 0.0
                    done.append((s, x))
                else:
                    s = target.prefix(list(x) + [a])
                    if reward:
                        s += weight * reward(list(x) + [a] + greedy(list(x) + [a]))
                    cands.append((s, x + (a,)))
        cands.sort(key=lambda sx: -sx[0])  # stable: creation order breaks ties
        beam = [x for _, x in cands[:width]]
    done.sort(key=lambda sx: -sx[0])
    return done


@SETTINGS
@given(
    problem=toy_problems(max_vocab=3, max_len=3),
    width=st.sampled_from([1, 2, 1000]),
    top_k=st.sampled_from([None, 1, 2]),
    lookahead=st.integers(0, 2),
    weight=st.sampled_from([0.0, 0.7, 2.0]),
    seed=st.integers(0, 5),
)
def test_beam_and_deal_equal_brute_force(problem, width, top_k, lookahead, weight, seed):
    target = problem.target
    reward = _reward(seed)
    ref = _ref_beam(target, problem.max_len, width)
    got = beam_search(target, problem.max_len, width)
    assert [tuple(c) for c in got.contexts] == [x for _, x in ref]
    assert np.allclose(got.log_weights, [s for s, _ in ref], atol=1e-9)
    check_tree(got, target, lambda i, c, goal, t: t["logp"][i])
    assert got.extra["spent"]["lm_tokens"] == len(got.extra["tree"]["parent"]) - 1
    if width == 1000:  # full width: every string of the target, ranked by weight
        ex = enumerate_target(target, problem.max_len)
        assert {tuple(c) for c in got.contexts} == set(ex.log_weights)
    ref = _ref_beam(target, problem.max_len, width, top_k, lookahead, weight, reward)
    got = deal(
        target, problem.max_len, width, reward, top_k=top_k, lookahead=lookahead, weight=weight
    )
    assert [tuple(c) for c in got.contexts] == [x for _, x in ref]
    assert np.allclose(got.log_weights, [s for s, _ in ref], atol=1e-9)

    def deal_score(i, c, goal, t):
        return t["logp"][i] + weight * reward(c + t["info"][i]["lookahead"])

    check_tree(got, target, deal_score)
    t = got.extra["tree"]
    n_tok = len(t["parent"]) - 1 + sum(v["picks"] for v in t["info"].values())
    assert got.extra["spent"]["lm_tokens"] == n_tok


@SETTINGS
@given(
    problem=toy_problems(max_vocab=3, max_len=3),
    engine=st.sampled_from(["astar", "astar_sample", "beam", "deal", "bon"]),
    lm_tokens=st.integers(1, 30),
    expansions=st.sampled_from([None, 1, 3]),
    reward_calls=st.sampled_from([None, 1, 4]),
)
def test_budgets_never_exceeded(problem, engine, lm_tokens, expansions, reward_calls):
    target = problem.target
    budget = Budget(lm_tokens=lm_tokens, expansions=expansions, reward_calls=reward_calls)
    L = problem.max_len
    if engine == "astar":
        res = astar(target, L, lambda c: 0.1 * len(c), n_best=3, budget=budget)
    elif engine == "astar_sample":
        res = astar(target, L, expand="sample", unit=2, k=3, rng=0, budget=budget)
    elif engine == "beam":
        res = beam_search(target, L, 2, budget=budget)
    elif engine == "deal":
        res = deal(target, L, 2, _reward(1), lookahead=2, budget=budget)
    else:
        res = best_of_n(pt.DirectSampler(target), 4, L, _reward(2), rng=0, budget=budget)
    spent = res.extra["spent"]
    for name, limit in (("lm_tokens", lm_tokens), ("expansions", expansions)):
        if limit is not None:
            assert spent[name] <= limit
    if reward_calls is not None:
        assert spent["reward_calls"] <= reward_calls
    check_tree(res, target)
    assert list(res.log_weights) == sorted(res.log_weights, reverse=True)


def test_budget_stop_is_reported_and_unlimited_run_is_complete():
    lm = random_ngram(np.random.default_rng(0), 3, smoothing=0.2)
    full = beam_search(lm, 4, 3)
    assert full.extra["stopped_by"] is None
    cut = beam_search(lm, 4, 3, budget=Budget(lm_tokens=10))
    assert cut.extra["spent"]["lm_tokens"] <= 10 and "lm_tokens" in cut.extra["stopped_by"]
    assert "stopped early" in cut.message


def test_best_of_n_ranks_its_draws():
    lm = random_ngram(np.random.default_rng(1), 3, smoothing=0.2, eos_boost=2.0)
    r = _reward(3)
    res = best_of_n(pt.DirectSampler(lm), 16, 6, r, rng=0)
    assert res.contexts and all(
        s == pytest.approx(r(c)) for c, s in zip(res.contexts, res.log_weights)
    )
    assert list(res.log_weights) == sorted(res.log_weights, reverse=True)
    t = res.extra["tree"]
    n_tok = sum(len(tk) for tk in t["tokens"][1:])
    assert res.extra["spent"]["lm_tokens"] >= n_tok
    default = best_of_n(pt.DirectSampler(lm), 16, 6, rng=0)
    assert default.extra["scores"] == pytest.approx(default.extra["logp"])


def test_astar_sample_variant_with_a_prm_heuristic():
    """The paper's variant: k sampled units per expansion, h = 1 - r with r in [0, 1]."""
    lm = random_ngram(np.random.default_rng(2), 3, smoothing=0.2, eos_boost=2.0)
    prm = lambda c: 1.0 / (1.0 + len(c))  # noqa: E731
    res = astar(lm, 6, lambda c: 1.0 - prm(c), expand="sample", unit=2, k=3, rng=0)
    assert res.contexts and res.extra["spent"]["expansions"] >= 1
    for c, lp in zip(res.contexts, res.extra["logp"]):
        assert lm.complete(c) == pytest.approx(lp)
    with pytest.raises(ValueError, match="expand"):
        astar(lm, 6, expand="greedy")
    with pytest.raises(ValueError, match="sampler"):
        astar(lm, 6, unit=2)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda lm: astar(lm, 0), ValueError, "max_tokens"),
        (lambda lm: astar(lm, 3, heuristic=3), TypeError, "heuristic"),
        (lambda lm: astar(lm, 3, n_best=0), ValueError, "n_best"),
        (lambda lm: astar(lm, 3, budget={"lm_tokens": 3}), TypeError, "budget"),
        (lambda lm: beam_search(lm, 3, 0), ValueError, "width"),
        (lambda lm: deal(lm, 3, 2, lookahead=-1), ValueError, "lookahead"),
        (lambda lm: deal(lm, 3, 2, weight="x"), TypeError, "weight"),
        (lambda lm: deal(lm, 3, 2, reward=lambda c: "bad"), TypeError, "reward"),
        (lambda lm: best_of_n(lm, 3, 3), TypeError, "sampler"),
        (lambda lm: Budget(lm_tokens=0), ValueError, "lm_tokens"),
        (lambda lm: Budget(time_limit=-1.0), ValueError, "time_limit"),
        (lambda lm: Budget(expansions=2.5), TypeError, "expansions"),
    ],
)
def test_bad_arguments(call, exc, match):
    lm = random_ngram(np.random.default_rng(0), 2)
    with pytest.raises(exc, match=match):
        call(lm)


def test_time_limit_stops_each_engine():
    lm = random_ngram(np.random.default_rng(0), 3, smoothing=0.2)
    slow = Budget(time_limit=1e-9)  # runs out before the first expansion
    for res in (
        astar(lm, 5, budget=slow),
        beam_search(lm, 5, 3, budget=slow),
        deal(lm, 5, 3, lookahead=1, budget=slow),
        best_of_n(pt.DirectSampler(lm), 4, 5, budget=slow),
    ):
        assert "time_limit" in res.extra["stopped_by"]
        assert res.extra["spent"]["lm_tokens"] == 0


def test_astar_sample_with_awrs_proposals():
    from potentia.models import FiniteLanguage

    lm = random_ngram(np.random.default_rng(6), 3, smoothing=0.2)
    lang = FiniteLanguage(lm.vocab, [[0, 1], [1, 2, 0], [2], [2, 2, 1]])
    target = lm * lang
    res = astar(target, 3, expand="sample", sampler=pt.AWRS(lm, lang), unit=1, k=8, rng=0)
    check_tree(res, target)
    ex = enumerate_target(target, 3)
    assert res.contexts and all(tuple(c) in ex.log_weights for c in res.contexts)
    other = random_ngram(np.random.default_rng(0), 2)
    with pytest.raises(ValueError, match="vocabulary"):
        astar(target, 3, expand="sample", sampler=pt.DirectSampler(other))
