r"""Reasoning chains on a knowledge graph: every triple an edge, each one chaining onto the last.

``graph_path(edges)`` is the constraint of graph-constrained decoding ("Decoding on Graphs",
Li et al. 2024): the output is a chain of triples, each written with ``template`` (by default
``"(head, relation, tail)\n"``), where every triple is an edge of the given graph and every
triple after the first starts at the previous triple's tail. Optionally the chain starts at
given topic entities, ends at given answer entities and has a bounded number of hops.

The language is regular and compiled to one trimmed byte automaton: per hop count ``k`` and
current entity ``e``, the trie of the rendered edges leaving ``e``; the last byte of an edge
leads to the root of the trie of its tail at hop ``k + 1``. Prefix weights are exact: a
prefix is viable iff some accepted chain starts with it (the automaton is trimmed, so a
half-written entity that no edge continues, or a tail from which no allowed end can be
reached within the hop budget, is dead at once). The result is an
:class:`~potentia.constraints.automaton.AutomatonPotential`, so it lifts to any token
vocabulary with compiled masks and O(len(token)) single-token checks.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

import numpy as np

from potentia.constraints.automaton import AutomatonPotential
from potentia.constraints.bytedfa import INF, ByteDFA
from potentia.potentials.base import Vocabulary

__all__ = ["graph_path", "render_edge", "DEFAULT_TEMPLATE"]

DEFAULT_TEMPLATE = "({head}, {relation}, {tail})\n"
_FIELDS = ("head", "relation", "tail")
_MAX_STATES = 1 << 20


def _check_template(template: object) -> str:
    if not isinstance(template, str):
        raise TypeError(
            f"`template` is {template!r}; pass a str with {{head}}, {{relation}}, {{tail}}."
        )
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"`template` is {template!r}, not a format string ({exc}).") from None
    if sorted(names) != sorted(_FIELDS):
        raise ValueError(
            f"`template` is {template!r}; it must contain each of {{head}}, {{relation}} and "
            "{tail} exactly once and no other field."
        )
    return template


def render_edge(edge: tuple[str, str, str], template: str = DEFAULT_TEMPLATE) -> str:
    """The text of one triple as :func:`graph_path` writes it."""
    h, r, t = edge
    return template.format(head=h, relation=r, tail=t)


def _check_edges(edges: object) -> list[tuple[str, str, str]]:
    if isinstance(edges, str | bytes) or not isinstance(edges, Iterable):
        raise TypeError(f"`edges` is {edges!r:.60}; pass (head, relation, tail) triples of str.")
    out = []
    for i, e in enumerate(edges):
        if not (isinstance(e, tuple | list) and len(e) == 3 and all(isinstance(x, str) for x in e)):
            raise TypeError(
                f"`edges[{i}]` is {e!r:.60}; pass a (head, relation, tail) triple of str."
            )
        if not all(e):
            raise ValueError(f"`edges[{i}]` is {tuple(e)!r}; names must be non-empty.")
        out.append((e[0], e[1], e[2]))
    if not out:
        raise ValueError("`edges` is empty; pass at least one (head, relation, tail) triple.")
    return list(dict.fromkeys(out))


def _check_entities(value: object, arg: str, known: set[str]) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable):
        raise TypeError(f"`{arg}` is {value!r:.60}; pass entity names (str) or None.")
    vals = list(value)
    for v in vals:
        if not isinstance(v, str):
            raise TypeError(f"`{arg}` holds {v!r}; entity names are str.")
        if v not in known:
            raise ValueError(f"`{arg}` holds {v!r}, which is no entity of the graph.")
    if not vals:
        raise ValueError(f"`{arg}` is empty; pass at least one entity or None.")
    return frozenset(vals)


def _check_hops(min_hops: object, max_hops: object) -> None:
    for arg, v in (("min_hops", min_hops), ("max_hops", max_hops)):
        if v is None and arg == "max_hops":
            continue
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 0:
            raise ValueError(f"`{arg}` is {v!r}; pass an int >= 0.")
    if max_hops is not None and min_hops > max_hops:
        raise ValueError(
            f"`min_hops`={min_hops} > `max_hops`={max_hops}; no chain has such a length."
        )


class _Tries:
    """One trie per source (an entity, or the start set) over the rendered edges leaving it."""

    def __init__(self, edges: list[tuple[str, str, str]], template: str) -> None:
        self.template = template
        self.by_head: dict[str, list[tuple[bytes, str]]] = {}
        for e in edges:
            self.by_head.setdefault(e[0], []).append((render_edge(e, template).encode(), e[2]))

    def words(self, heads: Iterable[str]) -> list[tuple[bytes, str]]:
        """Rendered edges (text, tail) leaving ``heads``, checked to be prefix-free."""
        items = sorted({w for h in heads for w in self.by_head.get(h, [])})
        for (a, ta), (b, tb) in zip(items, items[1:]):
            if a == b:
                raise ValueError(
                    f"`template` {self.template!r} writes two edges with tails {ta!r} and {tb!r} "
                    f"as the same text {a.decode()!r}; use separators that no name contains."
                )
            if b.startswith(a):
                raise ValueError(
                    f"`template` {self.template!r}: the edge text {a.decode()!r} is a prefix of "
                    f"{b.decode()!r}, so a chain could not tell where a triple ends; end the "
                    "template with a separator that no name contains (e.g. '\\n')."
                )
        return items


def graph_path(
    edges: Iterable[tuple[str, str, str]],
    *,
    template: str = DEFAULT_TEMPLATE,
    start: str | Iterable[str] | None = None,
    end: str | Iterable[str] | None = None,
    min_hops: int = 1,
    max_hops: int | None = None,
) -> AutomatonPotential:
    r"""Text that is a chain of graph edges, each starting where the previous one ended.

    A chain of ``k`` hops is ``render(e_1) + ... + render(e_k)`` where every ``e_i`` is one of
    ``edges`` and ``head(e_{i+1}) == tail(e_i)``; ``render`` fills ``template``. Example::

        kg = [("Paris", "capital of", "France"), ("France", "member of", "EU")]
        c = graph_path(kg, start="Paris", max_hops=2)
        # accepts "(Paris, capital of, France)\n(France, member of, EU)\n"

    Args:
        edges: The graph as (head, relation, tail) triples of non-empty str.
        template: How one triple is written; contains ``{head}``, ``{relation}`` and
            ``{tail}`` once each. The texts of the edges leaving one entity must be
            prefix-free (end the template with a separator such as a newline).
        start: Entities the first triple may start from (``None``: any).
        end: Entities the last triple may end at (``None``: any).
        min_hops: Fewest triples (0 allows the empty text).
        max_hops: Most triples, or ``None`` for no bound.

    Returns:
        A hard byte-level potential with exact prefix weights.

    Raises:
        TypeError: if ``edges``, ``template``, ``start`` or ``end`` has the wrong type.
        ValueError: on an empty graph, an unknown ``start``/``end`` entity, bad hop bounds,
            an ambiguous ``template``, or when no chain satisfies the bounds.
    """
    template = _check_template(template)
    triples = _check_edges(edges)
    known = {h for h, _, _ in triples} | {t for _, _, t in triples}
    starts = _check_entities(start, "start", known)
    ends = _check_entities(end, "end", known)
    _check_hops(min_hops, max_hops)
    tries = _Tries(triples, template)
    K = int(max_hops) if max_hops is not None else int(min_hops)

    # state = (hop layer, source, trie-node prefix); source None is the start set
    ids: dict[tuple[int, str | None, bytes], int] = {}
    rows: list[np.ndarray] = []
    accept: list[bool] = []
    words_of: dict[str | None, list[tuple[bytes, str]]] = {}

    def words(src: str | None) -> list[tuple[bytes, str]]:
        if src not in words_of:
            heads = (starts if starts is not None else known) if src is None else (src,)
            words_of[src] = tries.words(heads)
        return words_of[src]

    def state(key: tuple[int, str | None, bytes]) -> int:
        j = ids.get(key)
        if j is None:
            j = ids[key] = len(rows)
            if j >= _MAX_STATES:
                raise ValueError(
                    f"`edges`: the automaton exceeds {_MAX_STATES} states; use a smaller graph."
                )
            rows.append(np.full(256, -1, dtype=np.int32))
            k, src, node = key
            root = node == b""
            ok_end = src is not None and (ends is None or src in ends)
            empty = src is None and min_hops == 0  # the chain of no triples
            accept.append(root and k >= min_hops and (ok_end or empty))
            queue.append(key)
        return j

    queue: list[tuple[int, str | None, bytes]] = []
    state((0, None, b""))
    done = 0
    while done < len(queue):
        key = queue[done]
        done += 1
        k, src, node = key
        if max_hops is not None and k >= max_hops:
            continue  # a full chain: nothing may follow
        j = ids[key]
        for text, tail in words(src):
            if not text.startswith(node) or len(text) == len(node):
                continue
            b = text[len(node)]
            if len(text) == len(node) + 1:
                nxt = (min(k + 1, K) if max_hops is None else k + 1, tail, b"")
            else:
                nxt = (k, src, text[: len(node) + 1])
            rows[j][b] = state(nxt)
    dfa = ByteDFA(np.stack(rows), np.array(accept, dtype=np.bool_)).trimmed()
    label = f"graph_path({len(triples)} edges, min_hops={min_hops}, max_hops={max_hops})"
    if dfa.dist[0] >= INF:
        raise ValueError(
            f"{label}: no chain of the graph satisfies `start`, `end` and the hop bounds; "
            "relax them."
        )
    return AutomatonPotential(dfa, Vocabulary.bytes256(), label=label)
