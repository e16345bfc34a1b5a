"""Countdown and keyword-coverage tasks: constraint, value function and verifier vs brute force.

The brute forces here are written independently of potentia.search.tasks: move sequences
by direct recursion over index pairs, the value function over all expression trees.
Randomised check: the random solver's success rate over 4000 runs is within 4 standard
errors of its exact probability (two-sided false-alarm rate 6.3e-5 per instance, 3 instances).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import potentia as pt
from potentia.potentials.base import Vocabulary
from potentia.search import Budget, astar
from potentia.search.tasks import (
    Countdown,
    Keywords,
    countdown_instances,
    greedy,
    keyword_instances,
    legal_moves,
    random_solver,
    solutions,
    solvable,
)
from potentia.testing import assert_mean

SMALL = [Countdown((2, 3, 5), 25), Countdown((1, 1, 8), 10), Countdown((2, 2), 4)]


def _op(a, op, b):
    return {"+": a + b, "*": a * b, "-": a - b if a >= b else None}.get(
        op, (a // b) if op == "/" and b and a % b == 0 else None
    )


def _brute_sequences(nums: tuple[int, ...]) -> set[str]:
    """Every complete move text from ``nums`` (independent recursion)."""
    if len(nums) == 1:
        return {""}
    out = set()
    for i, j in itertools.permutations(range(len(nums)), 2):
        rest = tuple(n for k, n in enumerate(nums) if k not in (i, j))
        for op in "+-*/":
            c = _op(nums[i], op, nums[j])
            if c is not None:
                out |= {f"{nums[i]}{op}{nums[j]}={c}\n" + t for t in _brute_sequences((*rest, c))}
    return out


def _values(nums: tuple[int, ...]) -> set[int]:
    """Every number an expression tree over all of ``nums`` can make (same rules)."""
    if len(nums) == 1:
        return {nums[0]}
    out = set()
    idx = range(len(nums))
    for r in range(1, len(nums)):
        for left in itertools.combinations(idx, r):
            right = [k for k in idx if k not in left]
            lv = _values(tuple(nums[k] for k in left))
            rv = _values(tuple(nums[k] for k in right))
            for a in lv:
                for b in rv:
                    for op in "+-*/":
                        c = _op(a, op, b)
                        if c is not None:
                            out.add(c)
    return out


def _language(constraint, max_len: int) -> set[bytes]:
    """Every byte string the byte-level constraint accepts (DFS with prefix pruning)."""
    out, stack = set(), [b""]
    while stack:
        s = stack.pop()
        lw = constraint.logw_next(list(s))
        if lw[256] > -np.inf:
            out.add(s)
        if len(s) < max_len:
            stack += [s + bytes([b]) for b in range(256) if lw[b] > -np.inf]
    return out


@pytest.mark.parametrize("task", SMALL, ids=str)
def test_move_constraint_language_is_exactly_the_legal_move_sequences(task):
    brute = _brute_sequences(task.numbers)
    lang = _language(task.constraint(), max_len=max(map(len, brute)) + 2)
    assert lang == {s.encode() for s in brute}
    assert set(solutions(task.numbers)) == brute
    correct = {s for s in brute if task.verify(s)}
    assert set(solutions(task.numbers, task.target)) == correct
    assert bool(correct) == solvable(task.numbers, task.target)


def test_value_function_equals_expression_tree_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(40):
        nums = tuple(int(x) for x in rng.integers(1, 10, rng.integers(1, 5)))
        reach = _values(nums)
        for target in range(0, 100):
            assert solvable(nums, target) == (target in reach), (nums, target)


def test_verifier_and_states():
    t = Countdown((2, 3, 5), 25)
    assert t.verify("2+3=5\n5*5=25\n") and t.verify("3+2=5\n5*5=25\n")
    for bad in ["2+3=5\n5*5=25", "2+3=6\n6*5=30\n", "2+2=4\n4*5=20\n", "5-3=2\n2*2=4\n", ""]:
        assert not t.verify(bad), bad
    assert t.state(["2+3=5\n"]) == (5, 5) and t.state(["2+3=6\n"]) is None
    assert t.value(["2+3=5\n"]) == 1.0 and t.value(["2*3=6\n"]) == 0.0
    assert t.value(["2+3=5\n", "5*5=25\n"]) == 1.0 and t.value(["2+3=5\n", "5+5=10\n"]) == 0.0
    exact, noisy = t.scorer("exact"), t.scorer("noisy", flip=0.5, seed=1)
    assert exact(["2*3=6\n"]) == 0.0 and noisy(["2*3=7\n"]) == 0.0  # malformed: 0
    v = noisy(["2+3=5\n"])
    assert min(abs(v - 0.9), abs(v - 0.1)) < 1e-12 and v == noisy(["3+2=5\n"])
    with pytest.raises(ValueError, match="`kind`"):
        t.scorer("oracle")
    with pytest.raises(ValueError, match="judge"):
        t.scorer("judge")


def test_noisy_scorer_flips_at_its_rate():
    tasks = countdown_instances(0, 30, 3)
    flips = [
        (t.scorer("noisy", flip=0.25)([line]) > 0.5) != bool(t.value([line]))
        for t in tasks
        for line, _ in legal_moves(t.numbers)
    ]
    # a Binomial(n, 0.25) proportion within 4 standard errors
    assert_mean(np.array(flips, dtype=float), 0.25, sigmas=4.0)


def test_instances_are_seeded_distinct_and_solvable():
    a, b = countdown_instances(7, 10, 3), countdown_instances(7, 10, 3)
    assert a == b and len(set(a)) == 10
    assert all(solvable(t.numbers, t.target) and 10 <= t.target <= 60 for t in a)
    with pytest.raises(ValueError, match="n_numbers"):
        countdown_instances(0, 1, 6)


@pytest.mark.parametrize("task", countdown_instances(11, 3, 3), ids=str)
def test_random_solver_success_rate(task):
    rng = np.random.default_rng(0)
    wins = [task.verify(random_solver(task, rng)) for _ in range(4000)]
    assert all(task.state(random_solver(task, rng).splitlines(keepends=True)) for _ in range(20))
    assert_mean(np.array(wins, dtype=float), task.random_success(), sigmas=4.0, resolution=1e-3)


def test_keywords():
    k = Keywords(("ball", "dog", "run"))
    assert k.coverage("The dogs RUN.") == pytest.approx(2 / 3)
    assert k.covered("a ball, a dog and a runner") == ["ball", "dog", "run"]
    vocab = Vocabulary([b"dog", b" ball", b" ran", b" run", b" "])
    r = k.reward(vocab)
    assert r.complete([0, 1, 3]) == pytest.approx(0.0)  # all covered: r = 4/4
    assert r.complete([0, 2]) == pytest.approx(np.log(2 / 4))
    c = k.constraint()
    assert c.complete(list(b"run, dog, ball")) == 0.0 and c.complete(list(b"run dog")) == -np.inf
    assert len(set(keyword_instances(0, 5))) == 5


# ----- the embedded model ----------------------------------------------------------------
@pytest.mark.real_model
def test_countdown_on_smollm(smollm):
    task = Countdown((2, 3, 5), 25)
    moves = task.constraint().lift(smollm.vocab)
    lm = smollm.potential(task.prompt())
    # the lifted constraint allows exactly the tokens that extend a legal prefix
    prefixes = {s.encode()[:i] for s in solutions(task.numbers) for i in range(len(s) + 1)}
    for ctx_text in ["", "2+", "2+3=5\n5"]:
        ctx = smollm.encode(ctx_text) if ctx_text else []
        allowed = np.flatnonzero(moves.logw_next(ctx)[:-1] > -np.inf)
        want = [
            i
            for i, tok in enumerate(smollm.vocab.tokens)
            if ctx_text.encode() + tok in prefixes and tok
        ]
        assert sorted(allowed.tolist()) == want, ctx_text
    # floors: greedy decoding of LM × moves gives a legal solution
    g = smollm.vocab.decode(greedy(lm * moves, 24))
    assert task.state(g.splitlines(keepends=True)) is not None and len(g.splitlines()) == 2
    # A* (sampled steps) with the exact value function as a ratio-mode PRM
    target = lm * moves * task.prm(smollm.vocab, "exact")
    res = astar(
        target,
        24,
        expand="sample",
        unit="\n",
        k=4,
        sampler=pt.DirectSampler(lm * moves),
        rng=0,
        budget=Budget(lm_tokens=400),
    )
    assert res.extra["spent"]["lm_tokens"] <= 400
    assert res.texts and all(task.verify(t) for t in res.texts)  # r = 0 prunes wrong goals


@pytest.mark.real_model
def test_keyword_reward_as_smc_critic_on_smollm(smollm):
    kw = Keywords(("ball", "dog", "park"))
    reward = kw.reward(smollm.vocab)  # scored at every word boundary
    run = dict(particles=4, max_tokens=8, seed=0, ess_threshold=0.0, progress=False)
    plain = pt.sample(smollm, kw.prompt(), **run)
    res = pt.sample(smollm, kw.prompt(), critic=reward, **run)
    assert reward.calls > 0 and res.contexts == plain.contexts  # no resampling: same draws
    for ctx, a, b in zip(res.contexts, res.log_weights, plain.log_weights):
        covered = len(kw.covered(smollm.vocab.decode(ctx)))
        assert a - b == pytest.approx(np.log((1 + covered) / 4))  # the critic's factor r(x)
