"""Step potentials: the potential laws, caching, and SMC with them against exact targets.

False-alarm budget: each Ẑ check is a 4-σ two-sided mean test (6.3e-5), 6 checks →
≤ 4e-4 in all; seeded and deterministic.
"""

import numpy as np
import pytest

import potentia as pt
from potentia.models import enumerate_target, random_ngram
from potentia.search import unit_smc
from potentia.search.step_potentials import StepPotential, prm, reward, verifier
from potentia.smc import smc
from potentia.testing import assert_mean, assert_potential_laws

VOCAB = pt.Vocabulary([b"a", b"\n", b"b"])
CONTEXTS = [[], [0], [1], [0, 1], [2, 2, 1], [0, 1, 2], [2, 1, 2, 1], [0, 0, 1, 0]]


def _score(steps):
    """A soft PRM-like score in (0, 1]: penalises 'b's, depends on the whole trajectory."""
    return 1.0 / (1.0 + sum(s.count("b") for s in steps) + 0.5 * len(steps))


def _no_bb(steps):
    return all("bb" not in s for s in steps)


def _lm(seed=0):
    return random_ngram(np.random.default_rng(seed), VOCAB, smoothing=0.3, eos_boost=1.5)


@pytest.mark.parametrize("mode", ["ratio", "product"])
@pytest.mark.parametrize("unit", ["\n", 2])
def test_laws_soft(mode, unit):
    assert_potential_laws(reward(_score, VOCAB, unit, mode=mode), CONTEXTS)


def test_laws_verifier_and_prm():
    v = verifier(_no_bb, VOCAB)
    assert v.hard
    assert_potential_laws(v, CONTEXTS + [[2, 2, 1, 0]], valid=[[0, 1], [2, 1, 2]])
    assert v.prefix([2, 2, 1]) == -np.inf and v.prefix([2, 2]) == 0.0
    p = prm(lambda prompt, steps: _score(steps) if prompt == "Q" else 0.0, VOCAB, "Q", "\n")
    assert_potential_laws(p, CONTEXTS)


def test_modes_define_their_targets():
    x = [0, 1, 2, 2, 1, 0]  # steps "a\n", "bb\n", then the unfinished "a"
    s = ["a\n", "bb\n", "a"]
    ratio = reward(_score, VOCAB, "\n")
    prod = reward(_score, VOCAB, "\n", mode="product")
    assert ratio.complete(x) == pytest.approx(np.log(_score(s)))
    assert ratio.prefix(x) == pytest.approx(np.log(_score(s[:2])))
    want = sum(np.log(_score(s[: j + 1])) for j in range(3))
    assert prod.complete(x) == pytest.approx(want)
    assert prod.prefix(x) == pytest.approx(want - np.log(_score(s)))


def test_cached_per_prefix_and_batched():
    seen = []
    b = reward(lambda lists: [seen.append(len(lists)) or _score(x) for x in lists], VOCAB)
    b.batched = True
    b.batch_prefix([[0, 1], [0, 1, 2, 1], [0, 1]])
    b.batch_prefix([[0, 1], [0, 1, 2, 1]])
    assert b.calls == 1 and b.evaluated == 2
    one = reward(_score, VOCAB)
    for _ in range(3):
        one.prefix([0, 1, 2, 1])
    assert one.calls == 1


@pytest.mark.parametrize("mode", ["ratio", "product"])
def test_smc_with_step_critic_targets_lm_times_reward(mode):
    lm = _lm(1)
    crit = reward(_score, VOCAB, "\n", mode=mode)
    exact = enumerate_target(lm * crit, 3)
    Z = np.exp(exact.log_z)
    R = 150
    zs = [np.exp(smc(pt.DirectSampler(lm), 4, 3, rng=s, critic=crit).log_z) for s in range(R)]
    assert_mean(zs, Z, sigmas=4.0, resolution=Z / R)
    zs = [
        np.exp(
            unit_smc(pt.DirectSampler(lm), "\n", 4, 3, rng=s, critic=crit, ess_threshold=1.0).log_z
        )
        for s in range(R)
    ]
    assert_mean(zs, Z, sigmas=4.0, resolution=Z / R)


def test_smc_with_verifier_and_step_twist():
    lm = _lm(2)
    v = verifier(_no_bb, VOCAB)
    exact = enumerate_target(lm * v, 3)
    Z = np.exp(exact.log_z)
    R = 150
    zs = [np.exp(smc(pt.DirectSampler(lm * v), 4, 3, rng=s).log_z) for s in range(R)]
    assert_mean(zs, Z, sigmas=4.0, resolution=Z / R)
    tw = reward(_score, VOCAB, "\n")  # a twist only guides resampling: target stays lm
    Z0 = np.exp(enumerate_target(lm, 3).log_z)
    zs = [np.exp(smc(pt.DirectSampler(lm), 4, 3, rng=s, twist=tw).log_z) for s in range(R)]
    assert_mean(zs, Z0, sigmas=4.0, resolution=Z0 / R)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"vocab": "abc"}, TypeError, "vocab"),
        ({"score": 3}, TypeError, "score"),
        ({"mode": "odds"}, ValueError, "mode"),
        ({"unit": 0}, ValueError, "unit"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    args = {"vocab": VOCAB, "score": _score} | kwargs
    with pytest.raises(exc, match=match):
        StepPotential(**args)


def test_bad_scores():
    with pytest.raises(ValueError, match="r >= 0"):
        reward(lambda s: -1.0, VOCAB).prefix([0, 1])
    with pytest.raises(TypeError, match="number"):
        reward(lambda s: "x", VOCAB).prefix([0, 1])
    with pytest.raises(ValueError, match="verifier"):
        verifier(lambda s: 0.5, VOCAB).prefix([0, 1])


def test_lm_judge_on_a_toy_model():
    from potentia.models import ToyLM
    from potentia.search import lm_judge

    lm = _lm(3)
    judge = lm_judge(ToyLM(lm), template="{question}{steps}", yes="a", no="b")
    r = judge("a", ["b\n"])
    row = ToyLM(lm).potential("ab\n").logw_next([])
    want = np.exp(row[0]) / (np.exp(row[0]) + np.exp(row[2]))
    assert r == pytest.approx(want)
    p = prm(judge, VOCAB, "a", "\n")
    assert_potential_laws(p, CONTEXTS[:5])
    with pytest.raises(ValueError, match="same token"):
        lm_judge(ToyLM(lm), "{steps}", yes="a", no="a")
    with pytest.raises(TypeError, match="model"):
        lm_judge(lm)


@pytest.mark.real_model
def test_lm_judge_on_the_embedded_model(gemma):
    """The embedded model judges its own steps; r is a probability (tiny run)."""
    from potentia.search import lm_judge

    judge = lm_judge(gemma)
    r1 = judge("What is 2 + 3?", ["2 + 3 = 5\n"])
    r2 = judge("What is 2 + 3?", ["2 + 3 = 7\n"])
    assert 0.0 < r1 < 1.0 and 0.0 < r2 < 1.0
    crit = prm(judge, gemma.vocab, "What is 2 + 3?", "\n")
    res = smc(pt.DirectSampler(gemma.potential("2 + 3 =")), 2, 4, rng=0, critic=crit)
    assert len(res.contexts) == 2 and crit.calls <= 2 * 5
