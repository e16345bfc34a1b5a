"""The transformers LogitsProcessor: exact masks per step, LCD by χ², and SmolLM2 outputs.

False-alarm budget: one χ² test (``generate()`` samples against the exactly enumerated LCD
distribution) at α = 1e-3. Measured (600 rows, seed 0): χ² = 19.6 on 16 dof, p = 0.24; the
same rows against the exact constrained posterior give χ² = 592 (p ≈ 1e-130), TV(LCD,
posterior) = 0.75. Everything else is exact: the masked scores are compared entry
by entry with the constraint's own context API, and the SmolLM2 outputs must all match.
Seeds are fixed (``torch.manual_seed``), so the suite is deterministic.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import potentia as pt
from potentia.interop import ConstraintLogitsProcessor, logits_processor
from potentia.interop.hf import lcd_distribution
from potentia.testing import assert_gof

RX = r"(the|a) (cat|dog|mat)s?"


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer, make_tiny_model):
    """potentia.LM on a random tiny Llama (300 ids, EOS id 0) and a byte-level BPE."""
    return pt.LM(make_tiny_model("llama", len(tiny_tokenizer), seed=1), tiny_tokenizer)


def _generated(proc: ConstraintLogitsProcessor, out: torch.Tensor, n_prompt: int) -> list:
    """Vocabulary positions of each generated row, up to its first EOS id."""
    rows = []
    for row in out[:, n_prompt:].tolist():
        pos = []
        for i in row:
            if i in proc.eos_token_id:
                break
            pos.append(int(proc._position[i]))
        rows.append(tuple(pos))
    return rows


def test_masked_scores_equal_the_constraint_row_by_row(tiny):
    """Every step: allowed ids keep their score exactly, the rest are -inf (rows reordered)."""
    proc = logits_processor(tiny, pt.regex(RX))
    c = proc.constraint
    V = len(tiny.vocab)
    prompt = tiny.prompt_ids("the")
    rng = np.random.default_rng(0)
    seqs = [list(prompt), list(prompt)]
    ctxs: list[list[int]] = [[], []]
    for step in range(6):
        ids = torch.tensor(seqs)
        scores = torch.randn(len(seqs), tiny.model.config.vocab_size)
        before = scores.clone()
        got = proc(ids, scores)
        assert torch.equal(scores, before), "scores changed in place"
        for r, x in enumerate(ctxs):
            if x is None:  # finished: EOS ids only
                want = np.zeros(V + 1, dtype=bool)
                want[V] = True
            else:
                want = c.logw_next(x) > -np.inf
            allowed = np.zeros(scores.shape[1], dtype=bool)
            allowed[tiny.vocab.ids] = want[:V]
            allowed[tiny.eos_ids] = want[V]
            g = got[r].numpy()
            assert np.array_equal(g > -np.inf, allowed), f"row {r} step {step}"
            assert np.array_equal(g[allowed], before[r].numpy()[allowed])
        # the next step: beams reorder and duplicate rows; each row draws an allowed id
        order = rng.integers(0, len(seqs), size=3)
        new_seqs, new_ctxs = [], []
        for r in order.tolist():
            ok = np.flatnonzero(got[r].numpy() > -np.inf)
            tok = int(rng.choice(ok))
            new_seqs.append(seqs[r] + [tok])
            x = ctxs[r]
            done = x is None or tok in tiny.eos_ids
            new_ctxs.append(None if done else x + [int(proc._position[tok])])
        seqs, ctxs = new_seqs, new_ctxs
    assert proc.calls == 6


def test_generate_samples_the_lcd_distribution(tiny):
    """generate(do_sample) with the processor vs the exactly enumerated LCD (χ², α = 1e-3)."""
    c = pt.regex(RX)
    proc = logits_processor(tiny, c)
    prompt = tiny.prompt_ids("the")
    exact = lcd_distribution(tiny.potential("the"), proc.constraint, max_len=12)
    assert abs(sum(exact.values()) - 1) < 1e-9
    n = 600
    ids = torch.tensor([prompt] * n)
    torch.manual_seed(0)
    out = tiny.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        logits_processor=[proc],
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        max_new_tokens=13,
        eos_token_id=proc.eos_token_id,
        pad_token_id=1,
    )
    rows = _generated(proc, out, len(prompt))
    assert all(re.fullmatch(RX, tiny.vocab.decode(x)) for x in rows)
    res = assert_gof(rows, exact, false_alarm=1e-3)
    assert res.dof >= 3  # the test has bins to compare, not one pooled bin
    # LCD is not the constrained posterior: the exact target differs on this problem
    target = pt.testing.enumerate_target(tiny.potential("the") * proc.constraint, 12)
    post = target.posterior
    tv = 0.5 * sum(abs(exact.get(k, 0.0) - post.get(k, 0.0)) for k in set(exact) | set(post))
    assert tv > 0.5  # measured 0.75: LCD favours tokenizations the LM itself rarely ends
    assert not pt.testing.chi2_gof(rows, post, false_alarm=1e-3).passed  # the test has power


def test_beam_search_and_return_sequences_follow_reordered_rows(tiny):
    proc = logits_processor(tiny, pt.regex(RX))
    prompt = tiny.prompt_ids("a")
    ids = torch.tensor([prompt])
    out = tiny.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        logits_processor=[proc],
        num_beams=4,
        num_return_sequences=4,
        do_sample=False,
        max_new_tokens=13,
        eos_token_id=proc.eos_token_id,
        pad_token_id=1,
    )
    texts = [tiny.vocab.decode(x) for x in _generated(proc, out, len(prompt))]
    assert len(texts) == 4 and all(re.fullmatch(RX, t) for t in texts), texts
    # the processor is reused: a second call starts afresh (greedy, batch of 2)
    ids2 = torch.tensor([prompt, prompt])
    out2 = tiny.model.generate(
        ids2,
        attention_mask=torch.ones_like(ids2),
        logits_processor=[proc],
        do_sample=False,
        max_new_tokens=13,
        eos_token_id=proc.eos_token_id,
        pad_token_id=1,
    )
    assert all(re.fullmatch(RX, tiny.vocab.decode(x)) for x in _generated(proc, out2, len(prompt)))


def test_bad_arguments_are_named(tiny):
    with pytest.raises(TypeError, match="`lm`"):
        logits_processor(object(), pt.regex("a"))
    with pytest.raises(TypeError, match="`constraint`"):
        logits_processor(tiny, "a|b")
    soft = tiny.potential("x")
    with pytest.raises(ValueError, match="soft"):
        logits_processor(tiny, soft)
    other = pt.Vocabulary.from_strings(["a", "b"])
    from potentia.models import FiniteLanguage

    with pytest.raises(ValueError, match="neither bytes nor `lm.vocab`"):
        logits_processor(tiny, FiniteLanguage(other, [[0]]))


@pytest.mark.real_model
def test_smollm2_generate_outputs_all_match(smollm):
    """SmolLM2 with model.generate(): sampled and greedy outputs, left-padded prompts."""
    rx = r" ?[0-9]{3}-[0-9]{4}"
    proc = logits_processor(smollm, pt.regex(rx))
    tok = smollm.tokenizer
    prompts = ["My phone number is", "Call me at", "The code is"]
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left")
    torch.manual_seed(0)
    out = smollm.model.generate(
        **enc,
        logits_processor=[proc],
        do_sample=True,
        max_new_tokens=12,
        eos_token_id=proc.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else proc.eos_token_id[0],
    )
    n = enc["input_ids"].shape[1]
    texts = [smollm.vocab.decode(x) for x in _generated(proc, out, n)]
    assert all(re.fullmatch(rx, t) for t in texts), texts
    # every row ended with EOS (the constraint finished within the budget)
    assert all(any(i in proc.eos_token_id for i in row) for row in out[:, n:].tolist())
