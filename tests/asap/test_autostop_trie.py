"""AutoStop for the trie methods (issue 11, item 4): ``pt.sample(method="cars"|"asap"|"lcd")``
with a constraint that ends itself samples ``AutoStop(lm, c) × c``, the same target as SMC.

CARS and converged ASAp are checked by χ² on their draws (false-alarm budget 1e-4 per
test) against exact enumeration of that target; the planted bug (the plain ``lm × c``
target, i.e. no AutoStop) is shown to be rejected by the same test.
"""

import numpy as np
import pytest

import potentia as pt
from potentia.models import FiniteLanguage, ToyLM, enumerate_target, random_ngram
from potentia.potentials.ops import AutoStop
from potentia.testing import assert_gof

STRINGS = [[0, 1], [0, 1, 2], [1], [2, 2], [0]]


class Ends(FiniteLanguage):
    ends_itself = True  # like pt.json: the LM stops by itself once the string is maximal


def _problem(seed=0):
    lm = random_ngram(np.random.default_rng(seed), 3, order=2, smoothing=0.3, eos_boost=0.3)
    return lm, Ends(lm.vocab, STRINGS)


@pytest.mark.parametrize("method", ["cars", "asap"])
def test_trie_methods_sample_the_autostop_target(method):
    lm, lang = _problem()
    exact = enumerate_target(AutoStop(lm, lang) * lang, 4)
    out = pt.sample(ToyLM(lm), None, lang, method=method, particles=3000, max_tokens=4)
    draws = [tuple(c) for c in out.contexts]
    if method == "asap":  # ASAp is exact once θ has converged: draw from the last 1500
        draws = draws[1500:]
    assert_gof(draws, exact.posterior, false_alarm=1e-4)
    plain = enumerate_target(lm * lang, 4)  # the planted bug: no AutoStop
    with pytest.raises(AssertionError):
        assert_gof(draws, plain.posterior, false_alarm=1e-4)


def test_lcd_support_is_the_autostop_support():
    lm, lang = _problem(1)
    out = pt.sample(ToyLM(lm), None, lang, method="lcd", particles=200, max_tokens=4)
    assert {tuple(c) for c in out.contexts} <= {tuple(s) for s in STRINGS}
    assert out.all_dead is False
