"""Chunked prefill of long prompts with a progress bar (issue 11, item 3)."""

import numpy as np
import torch

import potentia as pt
import potentia.api as api

PROMPT = "the cat sat on the mat and the dog ran"


def test_chunked_prefill_matches_one_forward(tiny_lm, monkeypatch, capsys):
    monkeypatch.setattr(api, "PREFILL_PROGRESS_TOKENS", 4)
    monkeypatch.setattr(api, "PREFILL_CHUNK", 5)
    pot = tiny_lm.potential(PROMPT)
    ids = pot.prompt_ids
    assert len(ids) > 10
    backend = pot.lm.backend
    cache1, s1 = backend.prefill(ids)  # the reference: one forward
    ctx = [3, 7, 1]
    want = backend.score(cache1, pot.lm.vocab.ids[ctx])
    pot._prompt, pot._prompt_vocab = None, None
    before = backend.stats.forwards
    assert api.prefill(pot, progress=True)
    assert backend.stats.forwards - before == -(-len(ids) // 5)  # ceil(n / chunk) forwards
    cache2, s2 = pot._prompt
    assert torch.allclose(s1.float(), s2.float(), atol=1e-4)
    got = backend.score(cache2, pot.lm.vocab.ids[ctx])
    assert torch.allclose(want.float(), got.float(), atol=1e-4)  # the cache continues right
    assert "prefill" in capsys.readouterr().err
    assert not api.prefill(pot, progress=True)  # already prefilled: nothing to do


def test_short_prompts_and_progress_false_are_left_alone(tiny_lm, monkeypatch):
    pot = tiny_lm.potential(PROMPT + " again")
    assert not api.prefill(pot, progress=None)  # under the threshold
    monkeypatch.setattr(api, "PREFILL_PROGRESS_TOKENS", 4)
    assert not api.prefill(pot, progress=False)
    assert not api.prefill(pt.regex("a"), progress=True)  # not an LM potential


def test_sample_uses_it(tiny_lm, monkeypatch):
    monkeypatch.setattr(api, "PREFILL_PROGRESS_TOKENS", 4)
    monkeypatch.setattr(api, "PREFILL_CHUNK", 3)
    out = pt.sample(tiny_lm, PROMPT + " once more", particles=2, max_tokens=2, progress=True)
    assert len(out.texts) == 2 and np.isfinite(out.log_z)
