"""Progress bars honour their documented delay: ``progress=None`` draws only past 2 s."""

from __future__ import annotations

import time

import numpy as np

import potentia as pt
from potentia.models import DFA, random_ngram
from potentia.smc import smc


def _sampler():
    rng = np.random.default_rng(3)
    lm = random_ngram(rng, 3, order=2, eos_boost=1.5)
    dfa = DFA(lm.vocab, np.array([[1, 0, -1], [1, 1, 0]]), [1])
    return pt.DirectSampler(lm * dfa)


def test_short_run_draws_no_bar_outside_pytest(monkeypatch, capsys):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # as if run by a user
    s = _sampler()
    t0 = time.perf_counter()
    smc(s, 4, 6, rng=0, progress=None)
    assert time.perf_counter() - t0 < 2.0  # a short run: under tqdm's 2 s delay
    err = capsys.readouterr().err
    assert "smc" not in err and "tok" not in err, err


def test_forced_bar_draws(monkeypatch, capsys):
    """The check above can fail: with ``progress=True`` the same run draws its bar."""
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    smc(_sampler(), 4, 6, rng=0, progress=True)
    assert "smc" in capsys.readouterr().err
