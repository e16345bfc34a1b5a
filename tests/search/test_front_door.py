"""pt.sample(..., method="astar" | "beam" | "deal" | "bon") reaches potentia.search."""

import numpy as np
import pytest

import potentia as pt
from potentia.models import FiniteLanguage, ToyLM, enumerate_target, random_ngram


def _problem():
    lm = random_ngram(np.random.default_rng(5), 3, smoothing=0.2)
    lang = FiniteLanguage(lm.vocab, [[0, 1], [1, 2, 0], [2], [2, 2, 1], [0]])
    return ToyLM(lm), lm, lang


@pytest.mark.parametrize("method", ["astar", "beam", "deal", "bon"])
def test_methods_run_and_respect_budgets(method):
    model, lm, lang = _problem()
    ex = enumerate_target(lm * lang, 3)
    res = pt.sample(
        model, [], lang, method=method, particles=8, max_tokens=3, seed=0, max_lm_calls=10_000
    )
    assert res.contexts and all(tuple(c) in ex.log_weights for c in res.contexts)
    if method in ("astar", "beam"):  # exact with 8 ≥ all strings / full width here
        assert res.extra["logp"][0] == pytest.approx(max(ex.log_weights.values()))
    cut = pt.sample(model, [], lang, method=method, particles=8, max_tokens=3, max_lm_calls=5)
    assert cut.extra["spent"]["lm_tokens"] <= 5


def test_front_door_errors():
    model, lm, lang = _problem()
    with pytest.raises(ValueError, match="particles"):
        pt.sample(model, [], lang, method="astar", particles=0)
    with pytest.raises(ValueError, match="method"):
        pt.sample(model, [], lang, method="a-star")
    with pytest.raises(ValueError, match="max_lm_calls|lm_tokens"):
        pt.sample(model, [], lang, method="beam", max_lm_calls=0)
