"""Looking at a run: matplotlib figures of SMC runs, posteriors and θ tries; an HTML view.

Every function returns a ``matplotlib.figure.Figure`` built without ``pyplot`` (nothing is
shown, nothing is kept in pyplot's figure list; in a notebook run ``%matplotlib inline``
once and the returned figure displays itself). matplotlib is an optional dependency,
imported only when a figure is drawn: ``pip install matplotlib``.

* :func:`plot_run` (``Result.plot()``): log weights and ESS over steps, the resampling
  events, and the ancestry of the final particles;
* :func:`plot_posterior` (``Result.plot_posterior()``): bar chart of one or several
  distributions over texts, with their total-variation distance to the first;
* :func:`plot_trie`: an ASAp/CARS/LCD θ trie as a tree, θ of each prefix on its node;
* :func:`result_html` (``Result._repr_html_``): the particles as an HTML table, each text's
  background coloured by its normalised weight (:func:`weight_colour`), with its lineage.

The result and the trie are taken duck-typed (their attributes are read, nothing of the
engines is imported), so this module sits at the layer of :mod:`potentia.result`.
"""

from __future__ import annotations

import heapq
import html
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "plot_run",
    "plot_posterior",
    "plot_trie",
    "result_html",
    "weight_colour",
    "tv_distance",
    "epochs",
    "trie_nodes",
]

#: RGB of the highlight colour of :func:`weight_colour` (an orange).
HIGHLIGHT = (255, 165, 0)


def _figure(figsize: tuple[float, float]) -> Any:
    """A new ``Figure`` (not registered with pyplot), or a clear ImportError."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "potentia's plots need matplotlib: `pip install matplotlib` "
            "(it is in the dev extra: `pip install potentia[dev]`)."
        ) from e
    return Figure(figsize=figsize, layout="constrained")


def _label(text: str, width: int = 32) -> str:
    r = repr(text)
    return r if len(r) <= width else r[: width - 1] + "…"


# ----- an SMC run ---------------------------------------------------------------------
def epochs(n_steps: int, resampled_at: list[int]) -> np.ndarray:
    """Epoch of every time ``t = 0..n_steps``: how many resampling events came before it.

    A resampling recorded at step ``s`` happens after step ``s``'s reweighting, so time
    ``s`` is still in the old epoch and ``s + 1`` in the new one.
    """
    t = np.arange(n_steps + 1)
    return np.searchsorted(np.asarray(resampled_at, dtype=np.int64), t, side="left")


def plot_run(result: Any, *, figsize: tuple[float, float] = (8.0, 7.5)) -> Any:
    """Three panels of an SMC run sharing the step axis (what ``Result.plot()`` draws).

    1. ``log weight``: one line per particle slot, its log weight after each step's
       reweighting (``result.logw_history``; dead particles leave the plot);
    2. ``ESS``: ``result.ess_history``, the resampling events as dots on it and dashed
       vertical lines on every panel, and N as a dotted line;
    3. ``ancestry``: one line per final particle giving, at each time, the index of the
       particle it descends from (``result.ancestry()``), darker for a larger final weight;
       lines that merge share an ancestor.

    Artists carry a ``gid`` for programmatic access: ``"logw:<j>"``, ``"ess"``,
    ``"resampled"``, ``"n_particles"``, ``"resample_event"``, ``"lineage:<j>"``.

    Args:
        result: A :class:`~potentia.result.Result` of an SMC run.
        figsize: Figure size in inches.

    A result with an ESS record but no per-particle one (an engine that keeps only
    ``ess_history`` and ``resampled_at``) gets the ESS panel alone.

    Raises:
        ValueError: if ``result`` has no per-step record at all (``logw_history`` and
            ``ess_history`` empty, as for the trie and search engines).
    """
    hist = np.asarray(getattr(result, "logw_history", np.zeros((0, 0))), dtype=float)
    ess = np.asarray(result.ess_history, dtype=float)
    if hist.size == 0 and ess.size == 0:
        raise ValueError(
            f"this result (method={result.method!r}, {result.n_steps} steps) has no per-step "
            "record (`logw_history` and `ess_history` are empty): `Result.plot()` draws the "
            "steps of an SMC run; use `Result.plot_posterior()` for any result."
        )
    fig = _figure(figsize)
    at = np.asarray(result.resampled_at, dtype=np.int64)
    if hist.size == 0:  # an engine that records the ESS only (e.g. SMC over agent steps)
        ax_e = fig.subplots()
        _ess_panel(ax_e, ess, at, len(result.texts))
        ax_e.set_xlabel("step")
        ax_e.set_title(
            f"{result.method}: N = {len(result.texts)}, log Ẑ = {result.log_z:.4g} "
            "(per-particle weights and ancestry not recorded)"
        )
        for s in at:
            ax_e.axvline(s, color="C3", ls="--", lw=0.6, alpha=0.5, gid="resample_event")
        return fig
    T, N = hist.shape
    steps = np.arange(1, T + 1)
    ax_w, ax_e, ax_a = fig.subplots(3, 1, sharex=True)
    with np.errstate(invalid="ignore"):
        shown = np.where(np.isfinite(hist), hist, np.nan)
    for j in range(N):
        ax_w.plot(steps, shown[:, j], lw=0.8, alpha=0.7, gid=f"logw:{j}")
    ax_w.set_ylabel("log weight")
    ax_w.set_title(
        f"{result.method}: N = {N}, log Ẑ = {result.log_z:.4g}, "
        f"{len(result.resampled_at)} resampling events"
    )
    _ess_panel(ax_e, ess, at, N)

    anc = result.ancestry()
    ep = epochs(T, list(result.resampled_at))
    w = np.asarray(result.weights, dtype=float)
    top = w.max() if len(w) and w.max() > 0 else 1.0
    t = np.arange(T + 1)
    if anc.shape[0] != len(at) + 1:  # an engine that did not record its ancestors
        ax_a.text(0.5, 0.5, "ancestors not recorded", transform=ax_a.transAxes, ha="center")
        N = 0
    for j in range(N):
        shade = w[j] / top
        ax_a.plot(
            t,
            anc[ep, j],
            color=(0.1, 0.2, 0.5, 0.15 + 0.85 * shade) if shade > 0 else (0.6, 0.6, 0.6, 0.3),
            lw=0.8 + 1.5 * shade,
            gid=f"lineage:{j}",
        )
    ax_a.set_ylabel("ancestor index")
    ax_a.set_xlabel("step")
    for s in at:
        for ax in (ax_w, ax_e, ax_a):
            ax.axvline(s, color="C3", ls="--", lw=0.6, alpha=0.5, gid="resample_event")
    return fig


def _ess_panel(ax: Any, ess: np.ndarray, at: np.ndarray, n: int) -> None:
    """The ESS line, N dotted, and the resampling events as dots on the line."""
    ax.plot(np.arange(1, len(ess) + 1), ess, color="C0", gid="ess", label="ESS")
    ax.axhline(n, color="grey", ls=":", lw=1, gid="n_particles")
    ok = (at >= 1) & (at <= len(ess))
    ax.plot(at[ok], ess[at[ok] - 1], "o", color="C3", ms=4, gid="resampled", label="resampled")
    ax.set_ylabel("ESS")
    ax.set_ylim(0, n * 1.05)
    ax.legend(loc="lower left", fontsize="small")


# ----- posteriors ---------------------------------------------------------------------
def _as_dist(d: Any) -> dict[str, float]:
    if hasattr(d, "posterior"):
        d = d.posterior
    if not isinstance(d, Mapping):
        raise TypeError(
            f"expected a Result or a mapping {{text: probability}}, got {type(d).__name__}."
        )
    return {str(k): float(v) for k, v in d.items()}


def tv_distance(p: Mapping[str, float] | Any, q: Mapping[str, float] | Any) -> float:
    """Total-variation distance ½ Σ_x |p(x) − q(x)| between two distributions over texts.

    Args:
        p: A mapping ``{text: probability}`` or a ``Result`` (its ``posterior``).
        q: The same.
    """
    p, q = _as_dist(p), _as_dist(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def plot_posterior(
    dists: Any,
    top: int = 20,
    *,
    figsize: tuple[float, float] | None = None,
) -> Any:
    """Horizontal bars of one or several distributions over texts.

    Args:
        dists: A ``Result`` or a mapping ``{text: probability}``; or, to compare, a mapping
            ``{label: Result or {text: probability}}`` (e.g. ``{"exact": target, "smc":
            out, "lcd": lcd}``). The texts shown are the ``top`` most probable under the
            first distribution, then the most probable of the others; each further
            distribution's legend entry gives its TV distance to the first.
        top: Number of texts (bar groups) shown.
        figsize: Figure size in inches (``None``: grows with the number of texts).

    Returns:
        The ``Figure``; each distribution is one ``BarContainer`` of its axes
        (``ax.containers``, labelled), bar ``i`` holding the probability of text ``i``
        from the top (texts missing from a distribution get 0).
    """
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise ValueError(f"`top` is {top!r}; pass the number of texts to show, an int >= 1.")
    if hasattr(dists, "posterior") or (
        isinstance(dists, Mapping) and all(isinstance(v, int | float) for v in dists.values())
    ):
        dists = {getattr(dists, "method", "") or "posterior": dists}
    if not isinstance(dists, Mapping) or not dists:
        raise TypeError(
            "`dists` must be a Result, a mapping {text: probability}, or a non-empty mapping "
            f"{{label: Result or mapping}}; got {type(dists).__name__}."
        )
    named = {str(k): _as_dist(v) for k, v in dists.items()}
    first_label, first = next(iter(named.items()))
    order = sorted(first, key=lambda k: -first[k])[:top]
    if len(order) < top:
        rest = {k: max(d.get(k, 0.0) for d in named.values()) for d in named.values() for k in d}
        order += sorted((k for k in rest if k not in order), key=lambda k: -rest[k])[
            : top - len(order)
        ]
    n, m = len(order), len(named)
    fig = _figure(figsize or (7.0, 1.2 + 0.28 * max(n, 1) * max(1, m / 2)))
    ax = fig.subplots()
    height = 0.8 / m
    y = np.arange(n)
    for i, (label, d) in enumerate(named.items()):
        vals = [d.get(k, 0.0) for k in order]
        if i:
            label = f"{label} (TV to {first_label}: {tv_distance(d, first):.3f})"
        ax.barh(y - 0.4 + height * (i + 0.5), vals, height=height, label=label)
    ax.set_yticks(y, [_label(k) for k in order], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("probability")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(f"posterior over texts (top {n})")
    return fig


# ----- the θ trie ---------------------------------------------------------------------
def _trie_of(obj: Any) -> Any:
    trie = getattr(obj, "trie", obj)  # an ASAp / CARS / LCD sampler holds its trie
    for attr in ("root", "log_theta", "vocab"):
        if not hasattr(trie, attr):
            raise TypeError(
                f"`trie` is {type(obj).__name__}; pass a potentia.asap.trie.Trie or an "
                "ASAp/CARS/LCD sampler (its `.trie`)."
            )
    return trie


def trie_nodes(trie: Any, max_nodes: int) -> list[tuple[Any, float]]:
    """The ``max_nodes`` most probable nodes of a trie with their log P(prefix).

    Best first from the root, so every chosen node's parent is chosen too.
    """
    trie = _trie_of(trie)
    out: list[tuple[Any, float]] = []
    heap: list[tuple[float, int, Any]] = [(-0.0, 0, trie.root)]
    tie = 1
    while heap and len(out) < max_nodes:
        neg, _, node = heapq.heappop(heap)
        out.append((node, -neg))
        for child in node.children.values():
            lp = -neg + float(node.logp[child.slot])
            heapq.heappush(heap, (-lp, tie, child))
            tie += 1
    return out


def plot_trie(
    trie: Any,
    max_nodes: int = 60,
    *,
    figsize: tuple[float, float] | None = None,
) -> Any:
    """Draw a θ trie as a tree: one node per prefix, labelled with its token and θ.

    The root (the empty prefix, ``ε``) is on top; a node's children are ordered by LM
    probability, most probable on the left. A node's colour is θ of its prefix (the
    trie's over-approximation of the prefix's expected future grammaticality); an
    unexpanded node is drawn hollow.

    Args:
        trie: A :class:`potentia.asap.trie.Trie`, or an ASAp / CARS / LCD sampler.
        max_nodes: Draw at most this many nodes, the most probable prefixes (every drawn
            node's parent is drawn).
        figsize: Figure size in inches (``None``: from the tree's size).

    Returns:
        The ``Figure``. Its axes hold one text artist per node (``gid`` ``"node"``,
        label: the token, a newline, ``θ=<θ>``), one scatter of the nodes (``gid`` ``"nodes"``, array
        = θ) and one line collection of the edges (``gid`` ``"edges"``).
    """
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int | np.integer) or max_nodes < 1:
        raise ValueError(f"`max_nodes` is {max_nodes!r}; pass an int >= 1.")
    t = _trie_of(trie)
    fig = _figure(figsize or (8.0, 5.0))  # a clear ImportError without matplotlib
    from matplotlib.collections import LineCollection

    chosen = trie_nodes(t, int(max_nodes))
    keep = {id(n) for n, _ in chosen}

    def kids(node: Any) -> list[Any]:
        cs = [c for c in node.children.values() if id(c) in keep]
        return sorted(cs, key=lambda c: (-float(node.logp[c.slot]), c.token))

    pos: dict[int, tuple[float, float]] = {}
    nxt = [0.0]

    def place(node: Any) -> float:
        cs = kids(node)
        if not cs:
            x = nxt[0]
            nxt[0] += 1.0
        else:
            xs = [place(c) for c in cs]
            x = (xs[0] + xs[-1]) / 2
        pos[id(node)] = (x, -float(node.depth))
        return x

    place(t.root)
    nodes = [n for n, _ in chosen]
    theta = np.array([np.exp(t.log_theta(n)) for n in nodes])
    xy = np.array([pos[id(n)] for n in nodes])
    ax = fig.subplots()
    segs = [[pos[id(n.parent)], pos[id(n)]] for n in nodes if n.parent is not None]
    ax.add_collection(LineCollection(segs, colors="0.6", lw=0.8, gid="edges", zorder=1))
    expanded = np.array([bool(n.expanded) for n in nodes])
    sc = ax.scatter(
        xy[:, 0],
        xy[:, 1],
        c=theta,
        cmap="viridis",
        vmin=0.0,
        vmax=1.0,
        s=60,
        edgecolors=np.where(expanded[:, None], np.array([[0, 0, 0, 1.0]]), [[0.4, 0.4, 0.4, 1.0]]),
        linewidths=np.where(expanded, 0.5, 1.5),
        gid="nodes",
        zorder=2,
    )
    for n, (x, y), th in zip(nodes, xy, theta):
        tok = "ε" if n.parent is None else _label(t.vocab.decode([n.token]), 14)
        ax.text(x, y - 0.12, f"{tok}\nθ={th:.3g}", ha="center", va="top", fontsize=7, gid="node")
    fig.colorbar(sc, ax=ax, label="θ(prefix)")
    ax.set_xlim(xy[:, 0].min() - 0.8, xy[:, 0].max() + 0.8)
    ax.set_ylim(xy[:, 1].min() - 0.9, 0.4)
    ax.set_axis_off()
    shown = f"{len(nodes)} of {len(t)}" if len(nodes) < len(t) else f"{len(t)}"
    ax.set_title(
        f"θ trie: {shown} nodes, {getattr(t, 'lm_calls', '?')} LM calls, "
        f"θ(root) = {np.exp(t.log_theta(t.root)):.4g}"
    )
    return fig


# ----- HTML ---------------------------------------------------------------------------
def weight_colour(w: float, w_max: float) -> str:
    """The CSS background of a text of normalised weight ``w``.

    The highlight colour :data:`HIGHLIGHT` with opacity ``w / w_max`` (``w_max``: the largest
    weight of the run; opacity 0 when nothing has weight), to three decimals.
    """
    a = float(w) / float(w_max) if w_max > 0 else 0.0
    r, g, b = HIGHLIGHT
    return f"rgba({r}, {g}, {b}, {a:.3f})"


def _lineage(chain: np.ndarray, width: int = 6) -> str:
    """``"7 ← 3 ← 0"``: the particle, then its ancestors back to its founder."""
    back = [int(v) for v in chain[::-1]]
    if len(back) > width:
        back = [*back[: width - 2], "…", back[-1]]
    return " ← ".join(str(v) for v in back)


def result_html(result: Any, max_rows: int = 50) -> str:
    """An HTML view of a run: a summary line and one table row per particle.

    Rows are sorted by normalised weight (largest first). Each text's background is
    :func:`weight_colour` of its weight; the ``lineage`` column lists the particle and
    its ancestors at each resampling event back to its founder (``Result.ancestry``).

    Args:
        result: A :class:`~potentia.result.Result`.
        max_rows: Largest number of particle rows (the rest are counted in a last line).
    """
    w = np.asarray(result.weights, dtype=float)
    lw = np.asarray(result.log_weights, dtype=float)
    n = len(result.texts)
    w_max = float(w.max()) if n else 0.0
    anc = result.ancestry()
    order = sorted(range(n), key=lambda i: (-w[i], i))
    esc = html.escape
    head = (
        f"<b>{esc(result.method or 'result')}</b>: {n} particles, log Ẑ = {result.log_z:.4g}, "
        f"ESS = {result.ess:.3g}, {result.n_steps} steps, "
        f"{len(result.resampled_at)} resampling events"
    )
    rows = []
    for i in order[:max_rows]:
        rows.append(
            "<tr>"
            f"<td>{i}</td>"
            f'<td style="background-color: {weight_colour(w[i], w_max)}; '
            f'white-space: pre-wrap; font-family: monospace">{esc(result.texts[i])}</td>'
            f"<td>{w[i]:.4f}</td><td>{lw[i]:.4g}</td>"
            f"<td>{esc(result.status[i])}</td>"
            f"<td>{_lineage(anc[:, i])}</td>"
            "</tr>"
        )
    more = f'<tr><td colspan="6">… {n - max_rows} more particles</td></tr>' if n > max_rows else ""
    msg = f"<br><small>{esc(result.message)}</small>" if result.message else ""
    return (
        '<div class="potentia-result">'
        f"<p>{head}{msg}</p>"
        "<table><thead><tr><th>#</th><th>text</th><th>weight</th><th>log w</th>"
        "<th>status</th><th>lineage</th></tr></thead>"
        f"<tbody>{''.join(rows)}{more}</tbody></table></div>"
    )
