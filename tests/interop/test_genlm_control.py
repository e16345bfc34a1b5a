"""genlm-control interop both ways: the laws on each wrapper, and one target sampled by both.

Shared task: a random bigram toy LM over the tokens ``a, b, c`` times the regular language
``(ab|b|ca?)c?`` (eight strings, at most three tokens), whose exact posterior is
enumerated with potentia's own regex (no wrapper involved). potentia's SMC samples
``LM × from_genlm(genlm BoolFSA)``; genlm-control's SMC samples
``to_genlm(LM) × to_genlm(pt.regex)``. Each run gives one exact draw by rejection
(accept a particle with probability Ẑ ≤ 1; ``potentia.testing.smc_checks``).

False-alarm budget: three χ² tests at α = 1e-3 each (potentia vs exact, genlm vs exact,
potentia vs genlm two-sample), ≤ 3e-3 family-wide. Runs are seeded (numpy, torch for
genlm's draws), so the outcome is deterministic.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import numpy as np
import pytest
import torch
from genlm.control import SMC, BoolFSA, direct_token_sampler
from scipy import stats

import potentia as pt
from potentia.interop import GenlmPotential, PotentiaPotential, from_genlm, to_genlm
from potentia.interop.hf import lcd_distribution
from potentia.models import enumerate_target, random_ngram
from potentia.samplers import DirectSampler
from potentia.smc import smc
from potentia.testing import assert_gof, assert_potential_laws, smc_exact_draws

RX = r"(ab|b|ca?)c?"
VOCAB = pt.Vocabulary([b"a", b"b", b"c"])
RUNS = 1200
CONTEXTS = [[], [0], [0, 1], [1], [2], [2, 0], [2, 0, 2], [1, 1], [0, 0], [2, 2, 2]]


@pytest.fixture(scope="module")
def lm():
    return random_ngram(np.random.default_rng(11), VOCAB, order=2, smoothing=0.3)


@pytest.fixture(scope="module")
def exact(lm):
    """The exact posterior over strings (potentia's regex; no wrapper)."""
    t = enumerate_target(lm * pt.regex(RX).lift(VOCAB), 4)
    return {VOCAB.decode(x): p for x, p in t.posterior.items()}


def genlm_exact_draws(runs, rng: np.random.Generator) -> list[str]:
    """Rejection-corrected draws from genlm-control ``Sequences`` (Ẑ = ``log_ml`` ≤ 0)."""
    out = []
    for seqs in runs:
        if seqs.log_ml == -np.inf:
            continue
        assert seqs.log_ml <= 1e-9
        w = seqs.normalized_weights
        i = int(rng.choice(len(w), p=w / w.sum()))
        if rng.random() < np.exp(seqs.log_ml):
            ctx = seqs.contexts[i]
            out.append(bytes(t for t in ctx[:-1]).decode())
    return out


def two_sample_chi2(a: list[str], b: list[str], min_expected: float = 5.0):
    """Pearson χ² test of homogeneity of two samples (rare outcomes pooled)."""
    ca, cb = Counter(a), Counter(b)
    keys = sorted(set(ca) | set(cb), key=lambda k: -(ca[k] + cb[k]))
    table, pool = [], [0, 0]
    for k in keys:
        row = [ca[k], cb[k]]
        exp_min = min(len(a), len(b)) * (ca[k] + cb[k]) / (len(a) + len(b))
        if exp_min >= min_expected:
            table.append(row)
        else:
            pool = [pool[0] + row[0], pool[1] + row[1]]
    if sum(pool):
        table.append(pool)
    stat, p, dof, _ = stats.chi2_contingency(np.array(table).T, correction=False)
    return float(stat), float(p), int(dof)


def tv(p: dict, q: dict) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


# ----- the laws on each wrapper ---------------------------------------------------------
def test_from_genlm_obeys_potentias_laws(lm):
    g = from_genlm(BoolFSA.from_regex(RX), vocab=VOCAB)
    assert isinstance(g, GenlmPotential) and g.hard
    assert_potential_laws(g, CONTEXTS, valid=[[0, 1], [2, 0, 2], [1]])
    # same answers as potentia's own regex, batched
    mine = pt.regex(RX).lift(VOCAB)
    np.testing.assert_array_equal(g.batch_logw_next(CONTEXTS), mine.batch_logw_next(CONTEXTS))
    # a soft genlm potential: a wrapped-and-unwrapped LM gives the LM's own weights
    soft = from_genlm(to_genlm(lm), vocab=VOCAB)
    assert not soft.hard
    assert_potential_laws(soft, CONTEXTS)
    np.testing.assert_allclose(soft.batch_logw_next(CONTEXTS), lm.batch_logw_next(CONTEXTS))


def test_from_genlm_bytes_vocab_lifts_and_runs_in_pt_sample(lm):
    """Over all 256 bytes, a genlm constraint lifts to a token vocabulary like pt.regex."""
    g = from_genlm(BoolFSA.from_regex(RX), vocab=pt.Vocabulary.bytes256())
    assert g.prefix(list(b"x")) == -np.inf and g.complete(list(b"ca")) == 0.0
    assert_potential_laws(g, [[], list(b"c"), list(b"ab"), list(b"z")], tokens=list(b"abcz"))
    out = pt.sample(lm, None, g, particles=4, max_tokens=4, seed=0)
    assert all(s in {"ab", "abc", "b", "bc", "c", "cc", "ca", "cac"} for s in out.texts)


def test_to_genlm_passes_genlms_own_contract(lm):
    async def check():
        for p in (to_genlm(lm), to_genlm(lm * pt.regex(RX).lift(VOCAB))):
            assert isinstance(p, PotentiaPotential) and p.vocab == [97, 98, 99]
            ctxs = [[], [97], [99, 97], [98, 99]]
            await p.assert_contract(ctxs)

    asyncio.run(check())


def test_token_types_and_a_running_event_loop(lm):
    """bytes / Token vocabularies, and the sync wrapper called inside a running loop."""
    words = pt.Vocabulary([b"ab", b"b", b"c", b"b"], ids=[5, 6, 7, 8])  # a repeated b"b"
    fl = pt.models.FiniteLanguage(words, [[0], [1, 2], [3]])
    tok = to_genlm(fl)
    assert [t.token_id for t in tok.vocab] == [5, 6, 7, 8]
    back = from_genlm(tok, hard=True)
    assert back.vocab == words
    assert_potential_laws(back, [[], [0], [1], [1, 2], [3], [2]], valid=[[0], [1, 2], [3]])
    with pytest.raises(ValueError, match="same bytes"):
        to_genlm(fl, token_type="bytes")
    assert to_genlm(pt.models.FiniteLanguage(words.__class__([b"ab", b"c"]), [[0]])).vocab == [
        b"ab",
        b"c",
    ]

    # wrapped three deep (potentia -> genlm -> potentia -> genlm): each sync call that
    # finds a running loop goes one helper loop further down instead of deadlocking
    nested = from_genlm(to_genlm(back), hard=True)

    async def inside_a_loop():
        return back.prefix([1]), back.batch_complete([[0], [1]]), nested.batch_prefix([[1], [2]])

    pre, comp, deep = asyncio.run(inside_a_loop())
    assert pre == 0.0 and list(comp) == [0.0, -np.inf] and list(deep) == [0.0, -np.inf]


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="`potential`"):
        from_genlm(pt.regex("a"))
    with pytest.raises(TypeError, match="`potential`"):
        to_genlm(BoolFSA.from_regex("a"))
    with pytest.raises(ValueError, match="`token_type`"):
        to_genlm(pt.regex("a"), token_type="str")
    with pytest.raises(ValueError, match="shares no token"):
        from_genlm(BoolFSA.from_regex("a"), vocab=pt.Vocabulary([b"z"]))


# ----- one target, two libraries ----------------------------------------------------------
def test_both_libraries_sample_the_same_target(lm, exact):
    """χ² of each library's exact draws against the enumerated posterior, and of each other."""
    rng = np.random.default_rng(0)
    target = lm * from_genlm(BoolFSA.from_regex(RX), vocab=VOCAB)
    sampler = DirectSampler(target)
    runs = [smc(sampler, n_particles=4, max_tokens=4, rng=rng) for _ in range(RUNS)]
    ours = [VOCAB.decode(x) for x in smc_exact_draws(runs, rng)]

    torch.manual_seed(0)
    np.random.seed(0)  # genlm-control resamples with the global numpy generator
    g_target = to_genlm(lm) * to_genlm(pt.regex(RX).lift(VOCAB))
    g_smc = SMC(direct_token_sampler(g_target))

    async def many():
        return [await g_smc(n_particles=4, ess_threshold=0.5, max_tokens=5) for _ in range(RUNS)]

    theirs = genlm_exact_draws(asyncio.run(many()), rng)

    assert min(len(ours), len(theirs)) > 350  # Z ≈ 0.37: about 0.37 · RUNS draws each
    r1 = assert_gof(ours, exact, false_alarm=1e-3)
    r2 = assert_gof(theirs, exact, false_alarm=1e-3)
    stat, p, dof = two_sample_chi2(ours, theirs)
    assert p >= 1e-3, f"two-sample χ² = {stat:.2f} on {dof} dof, p = {p:.3g}"
    assert min(r1.dof, r2.dof, dof) >= 3
    # power: the same draws reject the masking (LCD) distribution of this problem
    lcd = lcd_distribution(lm, pt.regex(RX).lift(VOCAB), 4)
    lcd = {VOCAB.decode(x): p for x, p in lcd.items()}
    assert tv(lcd, exact) > 0.2  # measured 0.28
    assert not pt.testing.chi2_gof(ours, lcd).passed
    assert not pt.testing.chi2_gof(theirs, lcd).passed
    # the figures quoted in docs/interop.md
    emp = [Counter(s) for s in (ours, theirs)]
    freq = [{k: v / sum(c.values()) for k, v in c.items()} for c in emp]
    print(
        f"\npotentia: n={len(ours)} chi2={r1.statistic:.2f} dof={r1.dof} p={r1.p_value:.3f} "
        f"TV={tv(freq[0], exact):.3f}\ngenlm: n={len(theirs)} chi2={r2.statistic:.2f} "
        f"dof={r2.dof} p={r2.p_value:.3f} TV={tv(freq[1], exact):.3f}\n"
        f"two-sample: chi2={stat:.2f} dof={dof} p={p:.3f} TV={tv(freq[0], freq[1]):.3f}"
    )
