"""Plots, the HTML view and the DataFrame of a run: structure and data, not "it ran".

Also the engine's per-step record they read (log weights and ancestors), checked against
the quantities the engine already reports (ESS, log Ẑ) and against a fixed resampler.
"""

import html
import re
import sys

import matplotlib
import numpy as np
import pytest

import potentia as pt
from potentia import plots
from potentia.asap.asap import ASAp
from potentia.models import DFA, FiniteLanguage, ToyLM, random_ngram
from potentia.potentials import Vocabulary
from potentia.potentials.base import logsumexp
from potentia.smc import smc

matplotlib.use("Agg")

VOCAB = Vocabulary([b"<", b"a", b"&"])
# strings with at least one "a" and no "&" after the first "a"
DFA_ = DFA(VOCAB, np.array([[1, 0, 0], [1, 1, -1]]), accepting=[1])


def _model(seed=0):
    return ToyLM(random_ngram(np.random.default_rng(seed), VOCAB, order=2, smoothing=0.2))


def _run(particles=8, ess_threshold=0.9, seed=0, **kw):
    return pt.sample(_model(), "a", DFA_, particles=particles, max_tokens=6, seed=seed,
                     ess_threshold=ess_threshold, **kw)  # fmt: skip


def _logmeanexp(x):
    return float(logsumexp(np.asarray(x)) - np.log(len(x)))


# ----- the engine's record ------------------------------------------------------------
def test_logw_history_gives_ess_and_log_z():
    out = _run(particles=16, ess_threshold=0.9, seed=3)
    T, N = out.logw_history.shape
    assert (T, N) == (out.n_steps, 16) and len(out.ess_history) == T
    assert len(out.resampled_at) >= 2  # the test needs resampling events
    for row, ess in zip(out.logw_history, out.ess_history):
        w = np.exp(row - logsumexp(row))
        assert 1.0 / (w**2).sum() == pytest.approx(ess, rel=1e-12)
    # rows are the weights *before* resampling: log Ẑ is the sum of their log means at
    # every resampling event plus the log mean of the final (finished) weights
    fin = np.array([s == "finished" for s in out.status])
    acc = sum(_logmeanexp(out.logw_history[s - 1]) for s in out.resampled_at)
    final = np.where(fin, out.log_weights, -np.inf)
    assert out.log_z == pytest.approx(acc + _logmeanexp(final), abs=1e-10)
    assert np.array_equal(out.logw_history[-1], out.log_weights)


def test_ancestors_are_the_resampler_indices_and_ancestry_composes_them():
    picks = [np.array([3, 3, 0, 1, 2, 3]), np.array([5, 4, 4, 0, 0, 1])]
    calls = []

    def fixed(rng, weights, n):
        calls.append(len(calls))
        return picks[(len(calls) - 1) % 2]

    lm = _model().potential("a")
    out = smc(pt.DirectSampler(lm * DFA_), 6, 5, rng=0, ess_threshold=1.0, resampling=fixed)
    E = len(out.resampled_at)
    assert E == len(calls) >= 2 and out.ancestors.shape == (E, 6)
    for e in range(E):
        assert np.array_equal(out.ancestors[e], picks[e % 2])
    anc = out.ancestry()
    assert anc.shape == (E + 1, 6) and np.array_equal(anc[-1], np.arange(6))
    for j in range(6):  # walk back by hand
        k = j
        for e in range(E - 1, -1, -1):
            k = int(out.ancestors[e][k])
            assert anc[e, j] == k
    # particles sharing an ancestor at an event share its prefix (up to that step)
    for e, s in enumerate(out.resampled_at):
        for i in range(6):
            for j in range(6):
                if anc[e, i] == anc[e, j]:
                    ci, cj = out.contexts[i], out.contexts[j]
                    m = min(s, len(ci), len(cj))
                    assert ci[:m] == cj[:m]


def test_json_round_trip_keeps_the_record():
    out = _run(particles=6, ess_threshold=1.0)
    back = pt.Result.from_json(out.to_json())
    assert np.array_equal(back.logw_history, out.logw_history)
    assert back.logw_history.dtype == float and back.ancestors.dtype == np.int64
    assert np.array_equal(back.ancestors, out.ancestors)
    assert np.array_equal(back.ancestry(), out.ancestry())
    # a result without resampling, and one written before the record existed
    calm = _run(particles=4, ess_threshold=0.0)
    back = pt.Result.from_json(calm.to_json())
    assert back.ancestors.shape == (0, 4) and np.array_equal(back.ancestry(), [np.arange(4)])
    import json

    d = json.loads(out.to_json())
    del d["logw_history"], d["ancestors"]
    old = pt.Result.from_json(json.dumps(d))
    assert old.logw_history.size == 0 and np.array_equal(old.ancestry(), [np.arange(6)])


# ----- Result.plot --------------------------------------------------------------------
def test_plot_run_draws_the_recorded_weights_ess_resampling_and_ancestry():
    out = _run(particles=8, ess_threshold=0.9)
    fig = out.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    ax_w, ax_e, ax_a = fig.axes
    T, N = out.logw_history.shape
    steps = np.arange(1, T + 1)
    lines = {ln.get_gid(): ln for ln in ax_w.lines if ln.get_gid().startswith("logw:")}
    assert sorted(lines) == sorted(f"logw:{j}" for j in range(N))
    for j in range(N):
        x, y = lines[f"logw:{j}"].get_data()
        expect = np.where(np.isfinite(out.logw_history[:, j]), out.logw_history[:, j], np.nan)
        assert np.array_equal(x, steps) and np.array_equal(y, expect, equal_nan=True)
    (ess,) = [ln for ln in ax_e.lines if ln.get_gid() == "ess"]
    assert np.array_equal(ess.get_xdata(), steps)
    assert np.array_equal(ess.get_ydata(), out.ess_history)
    (dots,) = [ln for ln in ax_e.lines if ln.get_gid() == "resampled"]
    assert list(dots.get_xdata()) == out.resampled_at
    assert np.array_equal(dots.get_ydata(), [out.ess_history[s - 1] for s in out.resampled_at])
    for ax in fig.axes:
        events = [ln for ln in ax.lines if ln.get_gid() == "resample_event"]
        assert sorted(ln.get_xdata()[0] for ln in events) == out.resampled_at
    lineage = {ln.get_gid(): ln for ln in ax_a.lines if ln.get_gid().startswith("lineage:")}
    assert len(lineage) == N
    anc = out.ancestry()
    for j in range(N):
        x, y = lineage[f"lineage:{j}"].get_data()
        assert np.array_equal(x, np.arange(T + 1))
        # at time t the line sits on the ancestor of the epoch t is in (events before t)
        ep = [sum(s < t for s in out.resampled_at) for t in range(T + 1)]
        assert np.array_equal(y, anc[ep, j]) and y[-1] == j
    assert ax_w.get_ylabel() == "log weight" and ax_e.get_ylabel() == "ESS"


def test_plot_run_refuses_results_without_a_record():
    cars = pt.sample(_model(), "a", DFA_, method="cars", particles=3, max_tokens=4)
    with pytest.raises(ValueError, match=r"no per-step record.*plot_posterior"):
        cars.plot()


def test_plot_run_with_an_ess_record_only_draws_the_ess_panel():
    out = _run(particles=6)
    bare = pt.Result(out.contexts, out.texts, out.log_weights, out.log_z, out.status,
                     ess_history=[5.0, 2.5, 6.0], resampled_at=[2], method="steps")  # fmt: skip
    fig = bare.plot()
    (ax,) = fig.axes
    (ess,) = [ln for ln in ax.lines if ln.get_gid() == "ess"]
    assert list(ess.get_xdata()) == [1, 2, 3] and list(ess.get_ydata()) == [5.0, 2.5, 6.0]
    (dots,) = [ln for ln in ax.lines if ln.get_gid() == "resampled"]
    assert list(dots.get_xdata()) == [2] and list(dots.get_ydata()) == [2.5]
    assert "not recorded" in ax.get_title()


def test_plots_need_matplotlib_with_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        _run().plot()


# ----- posterior bars -----------------------------------------------------------------
def test_plot_posterior_bars_are_the_posterior_and_compare_gives_tv():
    out = _run(particles=16)
    lcd = pt.sample(_model(), "a", DFA_, method="lcd", particles=16, max_tokens=6, seed=1)
    fig = out.plot_posterior(top=5, compare={"lcd": lcd})
    (ax,) = fig.axes
    mine, theirs = ax.containers
    texts = list(out.posterior)[:5]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [repr(t) for t in texts]
    assert [b.get_width() for b in mine] == pytest.approx([out.posterior[t] for t in texts])
    assert [b.get_width() for b in theirs] == pytest.approx(
        [lcd.posterior.get(t, 0.0) for t in texts]
    )
    tv = 0.5 * sum(
        abs(out.posterior.get(k, 0) - lcd.posterior.get(k, 0))
        for k in set(out.posterior) | set(lcd.posterior)
    )
    assert plots.tv_distance(out, lcd) == pytest.approx(tv)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [out.method, f"lcd (TV to {out.method}: {tv:.3f})"]


def test_plot_posterior_of_a_plain_mapping_and_bad_top():
    fig = plots.plot_posterior({"x": 0.25, "yy": 0.75})
    (ax,) = fig.axes
    assert [b.get_width() for b in ax.containers[0]] == [0.75, 0.25]
    with pytest.raises(ValueError, match="`top`"):
        plots.plot_posterior({"x": 1.0}, top=0)


# ----- the θ trie ---------------------------------------------------------------------
def _trie(n=25):
    sampler = ASAp(_model().potential("a"), FiniteLanguage(VOCAB, [[1], [1, 1], [0, 1], [2, 1, 0]]),
                   max_tokens=4)  # fmt: skip
    sampler.sample(n, rng=0)
    return sampler


def test_plot_trie_has_one_node_per_trie_node_labelled_with_theta():
    sampler = _trie()
    trie = sampler.trie
    fig = plots.plot_trie(sampler)
    ax = fig.axes[0]
    nodes = list(trie.nodes())
    texts = [t for t in ax.texts if t.get_gid() == "node"]
    assert len(texts) == len(nodes) == len(trie) > 3
    got = sorted(t.get_text() for t in texts)
    want = sorted(
        ("ε" if n.parent is None else repr(trie.vocab.decode([n.token])))
        + f"\nθ={np.exp(trie.log_theta(n)):.3g}"
        for n in nodes
    )
    assert got == want
    (sc,) = [c for c in ax.collections if c.get_gid() == "nodes"]
    assert sorted(sc.get_array()) == pytest.approx(sorted(np.exp(trie.log_theta(n)) for n in nodes))
    (edges,) = [c for c in ax.collections if c.get_gid() == "edges"]
    assert len(edges.get_segments()) == len(nodes) - 1
    # every edge joins a node to one a level below (y = -depth)
    assert all(a[1] - b[1] == 1 for a, b in edges.get_segments())


def test_plot_trie_keeps_the_most_probable_prefixes_with_their_parents():
    trie = _trie().trie
    k = 5
    chosen = plots.trie_nodes(trie, k)
    assert len(chosen) == k and chosen[0][0] is trie.root
    ids = {id(n) for n, _ in chosen}
    assert all(n.parent is None or id(n.parent) in ids for n, _ in chosen)

    def logp(n):
        return 0.0 if n.parent is None else logp(n.parent) + float(n.parent.logp[n.slot])

    best = sorted((logp(n) for n in trie.nodes()), reverse=True)[:k]
    assert sorted((lp for _, lp in chosen), reverse=True) == pytest.approx(best)
    fig = plots.plot_trie(trie, max_nodes=k)
    assert len([t for t in fig.axes[0].texts if t.get_gid() == "node"]) == k
    with pytest.raises(TypeError, match="Trie"):
        plots.plot_trie(object())


# ----- HTML ---------------------------------------------------------------------------
def test_repr_html_colours_each_text_by_its_weight_and_shows_lineage():
    out = _run(particles=8, ess_threshold=0.9)
    page = out._repr_html_()
    rows = re.findall(r"<tr><td>(\d+)</td>(.*?)</tr>", page)
    assert sorted(int(i) for i, _ in rows) == list(range(8))
    w = out.weights
    anc = out.ancestry()
    for i, row in rows:
        i = int(i)
        alpha = w[i] / w.max()
        cell = f'background-color: rgba(255, 165, 0, {alpha:.3f}); white-space: pre-wrap; font-family: monospace">{html.escape(out.texts[i])}</td>'
        assert cell in row
        chain = " ← ".join(str(int(v)) for v in anc[::-1, i])
        assert row.endswith(f"<td>{chain}</td>")
        assert f"<td>{html.escape(out.status[i])}</td>" in row
    assert any("&lt;" in r or "&amp;" in r for _, r in rows)  # texts are escaped
    order = [int(i) for i, _ in rows]
    assert [w[i] for i in order] == sorted(w, reverse=True)


def test_weight_colour_formula_and_row_limit():
    assert plots.weight_colour(0.2, 0.4) == "rgba(255, 165, 0, 0.500)"
    assert plots.weight_colour(0.0, 0.0) == "rgba(255, 165, 0, 0.000)"
    out = _run(particles=8)
    page = plots.result_html(out, max_rows=3)
    assert page.count("<tr><td>") == 3 and "… 5 more particles" in page


# ----- DataFrame ----------------------------------------------------------------------
def test_to_frame_one_row_per_particle():
    out = _run(particles=8, ess_threshold=0.9)
    df = out.to_frame()
    assert list(df.columns) == ["text", "log_weight", "weight", "status", "n_tokens", "founder"]
    assert df.index.name == "particle" and list(df.index) == list(range(8))
    assert list(df["text"]) == out.texts and list(df["status"]) == out.status
    assert np.array_equal(df["log_weight"].to_numpy(), out.log_weights)
    assert np.allclose(df["weight"].to_numpy(), out.weights) and df[
        "weight"
    ].sum() == pytest.approx(1)
    assert list(df["n_tokens"]) == [len(c) for c in out.contexts]
    assert list(df["founder"]) == list(out.ancestry()[0])
    by_text = df[df.weight > 0].groupby("text")["weight"].sum()
    assert by_text.to_dict() == pytest.approx(out.posterior)


def test_to_frame_fields_from_a_function_or_a_list():
    out = _run(particles=6)
    df = out.to_frame(fields=lambda t: {"n_a": t.count("a"), "first": t[:1]})
    for i, (t, s) in enumerate(zip(out.texts, out.status)):
        if s == "finished":
            assert df.loc[i, "n_a"] == t.count("a") and df.loc[i, "first"] == t[:1]
        else:
            assert df.loc[i, "n_a"] is None or np.isnan(df.loc[i, "n_a"])
    rows = [{"k": i} for i in range(6)]
    assert list(out.to_frame(fields=rows)["k"]) == list(range(6))
    with pytest.raises(ValueError, match="`fields` has 2 entries"):
        out.to_frame(fields=rows[:2])
    with pytest.raises(ValueError, match="clash"):
        out.to_frame(fields=[{"text": 1}] * 6)


def test_to_frame_needs_pandas_with_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        _run().to_frame()
