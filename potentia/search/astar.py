r"""A* (best-first) search for the highest-weight string of a target.

Objective: the string x (at most ``max_tokens`` tokens) maximising ``target.complete(x)``,
i.e. minimising the path cost ``g(x EOS) = -log target(x)``. A node is a prefix x with
``g(x) = -target.prefix(x)`` (for an LM times hard constraints: ``-log p(x)``), and its
priority is ``f(x) = g(x) + h(x)`` with a user heuristic h; a goal (x EOS) has h = 0.

*Admissible variant* (``expand="all"``): expanding x creates every child with positive
weight (each token a, and EOS) in one next-token vector. If h never overestimates the
remaining cost, ``h(x) <= min_y -log(target(x y) / target.prefix(x))``, the first goal
popped is a true best string, and the first ``n_best`` goals popped are the ``n_best``
best strings in order. ``h = 0`` is admissible whenever the target's ratios are <= 1
(an LM times hard constraints): A* is then uniform-cost search.

*Paper variant* (``expand="sample"``, A*-decoding, Chatziveroglou 2025): expanding x
samples ``k`` continuations of one *unit* each (a reasoning step up to a delimiter, or
k tokens) with a token sampler; children are the distinct sampled units. With a PRM r in
[0, 1] pass ``heuristic = lambda x: 1 - r(x)``. The search then only sees sampled
children, so it returns the best string it found, not necessarily the true best.

*Lazy variant* (``expand="lazy"``, partial expansion): popping an open node x samples only
``k`` units (``k=1``: one at a time), adds the new distinct children and puts x back on
the frontier with priority ``g(x) - log(W·(1 - Q(x))) + λ·h(x)``: Q(x) is the proposal
probability of the distinct units sampled so far at x (pruned ones included), and W the
largest ``m(u) / q(u)`` seen there (m(u): the unit's weight under the proposal's target
relative to x; for ``DirectSampler`` W is the product of the token normalisers). So x
comes back when an unseen child holding all the unseen mass would be the cheapest node.
With one-token units, ``DirectSampler`` and a target equal to the proposal's target, W
is the same for every unit and this is a lower bound on any unseen child's g (partial
expansion keeps A*'s guarantee); for longer units it is an estimate. A node whose units
are exhausted (Q >= 1 - 1e-9) is retired. Tokens are paid only for units actually
sampled, and a node whose children were all pruned is no dead end: it is sampled again
while the budget lasts.

Heuristic weight: the priority is ``f = g + λ·h`` with ``λ = heuristic_weight`` (the
heuristic is in the same units as g, nats, when λ = 1; a PRM's ``1 - r`` is not, and
``h = -log r`` is). A child with ``h = +inf`` is pruned (never pushed).

Path cost: ``g(x) = α·(-log target(x)) + β·steps(x)`` with ``α = g_weight`` (default 1)
and ``β = step_cost`` (default 0), steps(x) the nodes on the path (units, EOS included).
The default is the objective above. ``g_weight=0, step_cost=1`` makes g the number of
steps: the LM is then only the proposal, the search looks for *any* finished string of
positive weight (e.g. a solution the PRM accepts) with the fewest steps, and with an
exact "solvable from here" heuristic (h = -log r, r in {0, 1}) it walks straight down
solvable nodes. A lazily re-queued node's priority uses the same g with the estimated
cost of its next child (one more step). Goals are ranked by score = -f (their
``log target(x)`` is in ``extra["logp"]``).

Tie-breaking: the lowest f is popped first; among equal f a goal comes before an open
node, then the deeper node (more steps), then the node created first (FIFO), so runs
are deterministic.

Search stops when ``n_best`` goals have been popped, when the frontier is empty, or
when the next expansion would overrun a budget (:class:`~potentia.search.base.Budget`);
an expansion is paid in full before it is made, never partly.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

from potentia.potentials.base import Potential, as_potential
from potentia.result import Result
from potentia.samplers.base import TokenSampler
from potentia.samplers.direct import DirectSampler
from potentia.samplers.units import UnitSampler
from potentia.search.base import Budget, CountedFn, Meter, Tree, search_result

__all__ = ["astar", "check_int"]


def check_int(name: str, value: object, low: int = 1, none_ok: bool = False) -> None:
    """Raise a clear error unless ``value`` is an int >= ``low`` (or ``None`` if allowed)."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` is {value!r}; pass an int >= {low}.")
    if value < low:
        raise ValueError(f"`{name}` is {value}; pass an int >= {low}.")


def astar(
    target: Potential,
    max_tokens: int,
    heuristic: Callable[[list[int]], float] | None = None,
    *,
    n_best: int = 1,
    expand: str = "all",
    max_children: int | None = None,
    sampler: TokenSampler | None = None,
    unit: object = None,
    k: int = 4,
    heuristic_weight: float = 1.0,
    g_weight: float = 1.0,
    step_cost: float = 0.0,
    rng: np.random.Generator | int | None = None,
    budget: Budget | None = None,
) -> Result:
    """Best-first search with priority f = g + h.

    Args:
        target: The potential whose highest-weight strings are sought.
        max_tokens: Longest string considered; a node of this length has only the EOS child.
        heuristic: ``h(context) -> float``, an estimate of the remaining cost
            ``-log(target(x y) / target.prefix(x))`` of the best completion; ``None``: 0.
            Calls count against ``budget.reward_calls`` (cached per prefix).
        n_best: Stop after this many goals have been popped.
        expand: ``"all"`` (admissible variant: every child), ``"sample"`` (paper
            variant: ``k`` sampled units, each node expanded once) or ``"lazy"`` (``k``
            units per pop, the node re-queued until its units are exhausted).
        max_children: With ``expand="all"``, keep only the this many likeliest children
            (``None``: all; fewer makes the search inexact).
        sampler: With ``expand="sample"`` / ``"lazy"``, the token sampler that proposes the units
            (``None``: ``DirectSampler(target)``), over the target's vocabulary; any
            proposal will do, since children are scored by ``target`` itself.
        unit: With ``expand="sample"`` / ``"lazy"``, the unit: a delimiter, a token count or ``None``.
        k: With ``expand="sample"`` / ``"lazy"``, units sampled per expansion.
        heuristic_weight: λ in ``f = g + λ·h`` (a number >= 0).
        g_weight: α in ``g = α·(-log target(x)) + β·steps(x)`` (a number >= 0).
        step_cost: β: the cost of each node on the path (a unit, EOS included), >= 0.
        rng: Seed or generator (``expand="sample"`` / ``"lazy"``).
        budget: The :class:`Budget` (``None``: no limits; ``max_tokens`` bounds the tree).

    Returns:
        A :class:`Result` with the goals popped, best first (``log_weights`` = their
        ``logp`` = log target(x)), and in ``extra`` the tree, the spending and why it stopped.
    """
    target = as_potential(target, "target")
    check_int("max_tokens", max_tokens)
    check_int("n_best", n_best)
    check_int("max_children", max_children, none_ok=True)
    check_int("k", k)
    if expand not in ("all", "sample", "lazy"):
        raise ValueError(f"`expand` is {expand!r}; choose 'all', 'sample' or 'lazy'.")
    lam = heuristic_weight
    if isinstance(lam, bool) or not isinstance(lam, int | float | np.number):
        raise TypeError(f"`heuristic_weight` is {lam!r}; pass a number >= 0.")
    if not 0 <= lam < np.inf:
        raise ValueError(f"`heuristic_weight` is {lam}; pass a finite number >= 0.")
    lam = float(lam)
    for name, v in (("g_weight", g_weight), ("step_cost", step_cost)):
        if isinstance(v, bool) or not isinstance(v, int | float | np.number):
            raise TypeError(f"`{name}` is {v!r}; pass a number >= 0.")
        if not 0 <= v < np.inf:
            raise ValueError(f"`{name}` is {v}; pass a finite number >= 0.")
    alpha, beta = float(g_weight), float(step_cost)
    if alpha == 0 and beta == 0:
        raise ValueError("`g_weight` and `step_cost` are both 0; make one positive.")

    def g_of(lp: float, steps: int) -> float:
        return (0.0 if alpha == 0 and lp > -np.inf else -alpha * lp) + beta * steps

    h = CountedFn(heuristic, "heuristic") if heuristic is not None else None
    meter = Meter(budget)
    us = None
    if expand in ("sample", "lazy"):
        us = UnitSampler(sampler if sampler is not None else DirectSampler(target), unit)
        if us.target.vocab != target.vocab:
            raise ValueError(
                f"`sampler.target` has vocabulary {us.target.vocab!r} but `target` has "
                f"{target.vocab!r}; build the sampler over the target's vocabulary."
            )
    elif sampler is not None or unit is not None:
        raise ValueError(
            "`sampler` and `unit` are for expand='sample' or 'lazy'; pass one of those."
        )
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    V = len(target.vocab)
    tree = Tree(eos=V)
    root_lp = target.prefix([])
    goals: list[int] = []
    stopped_by = None
    frontier: list[tuple[float, int, int, int]] = []  # (f, open?, -steps, node)
    steps = [0]  # nodes on the path to each node (the root: 0)
    if root_lp > -np.inf:
        tree.logp[0] = root_lp
        if h is not None and not h.cached([]):
            stopped_by = meter.blocked(reward_calls=1)
            meter.spend(reward_calls=0 if stopped_by else 1)
        if not stopped_by:
            f0 = g_of(root_lp, 0) + (lam * h([]) if h is not None and lam > 0 else 0.0)
            tree.score[0] = -f0
            if f0 < np.inf:
                heapq.heappush(frontier, (f0, 1, 0, 0))
    lazy = expand == "lazy"
    seen: dict[int, dict] = {}  # lazy: per node, the units sampled so far and their mass
    while frontier and not stopped_by and len(goals) < n_best:
        f, is_open, _, node = frontier[0]
        if not is_open:
            heapq.heappop(frontier)
            tree.expand(node)
            goals.append(node)
            continue
        ctx = tree.context(node)
        if us is None:
            kids = _all_children(target, ctx, max_tokens, max_children)
        else:
            stopped_by = meter.blocked(expansions=1, lm_tokens=1)
            if stopped_by:
                break
            book = seen.setdefault(node, {"units": set(), "logw": -np.inf, "prop": 0.0, "pops": 0})
            kids = _sampled_children(
                us, target, ctx, max_tokens, k, rng, meter, book if lazy else None
            )
        n_tok = len(kids) if us is None else 0
        n_h = sum(
            1 for _, toks, _ in kids if toks[-1] != V and h is not None and not h.cached(ctx + toks)
        )
        stopped_by = meter.blocked(expansions=0 if us else 1, lm_tokens=n_tok, reward_calls=n_h)
        if stopped_by:
            break
        heapq.heappop(frontier)
        meter.spend(expansions=0 if us else 1, lm_tokens=n_tok, reward_calls=n_h)
        if tree.expanded[node] < 0:
            tree.expand(node)
        for lp, toks, _ in kids:
            goal = toks[-1] == V
            rest = 0.0 if goal or h is None else h(ctx + toks)
            fc = g_of(lp, steps[node] + 1) + (0.0 if lam == 0 else lam * rest)
            if fc == np.inf:
                continue  # h = +inf: pruned
            c = tree.add(node, toks, lp, -fc)
            steps.append(steps[node] + 1)
            heapq.heappush(frontier, (fc, 0 if goal else 1, -steps[c], c))
        if lazy:
            book["pops"] += 1
            tree.info[node] = {"pops": book["pops"], "seen_proposal_mass": book["prop"]}
            if book["prop"] < 1.0 - 1e-9:
                hx = 0.0 if h is None or lam == 0 else lam * h(ctx)
                lw_max = book["logw"] if book["logw"] > -np.inf else 0.0
                lp_next = tree.logp[node] + lw_max + np.log1p(-book["prop"])
                fx = g_of(lp_next, steps[node] + 1) + hx
                heapq.heappush(frontier, (fx, 1, -steps[node], node))
    return search_result(
        target,
        tree,
        goals,
        meter,
        f"astar[{expand}]",
        "minimise f = -log target(x) + λ·h; goals ranked by score = -f = log target(x)",
        stopped_by,
    )


def _all_children(target, ctx, max_tokens, max_children):
    """Every child with positive weight: ``(logp, tokens, None)``; EOS only at the bound."""
    V = len(target.vocab)
    lw = target.logw_next(ctx)
    base = target.prefix(ctx)
    cand = [V] if len(ctx) >= max_tokens else list(range(V + 1))
    cand = [a for a in cand if lw[a] > -np.inf]
    if max_children is not None:
        cand = sorted(cand, key=lambda a: (-lw[a], a))[:max_children]
    return [(base + lw[a], [a], None) for a in cand]


def _sampled_children(us, target, ctx, max_tokens, k, rng, meter, book=None):
    """``k`` sampled units (distinct ones kept); pays their tokens and one expansion.

    With ``book`` (lazy variant), units already in ``book["units"]`` are dropped too;
    every new distinct unit u adds its proposal probability q(u) to ``book["prop"]`` and
    ``book["logw"]`` keeps the largest ``log W(u) = log(m(u) / q(u))``, m(u) the unit's
    weight under the proposal's target relative to the node.
    """
    V = len(target.vocab)
    depth = len(ctx)
    if depth >= max_tokens:
        meter.spend(expansions=1, lm_tokens=1)
        if book is not None:
            if (V,) in book["units"]:
                return []
            book["units"].add((V,))
            book["prop"] = 1.0  # the only child: the node is exhausted
        lw = target.logw_next(ctx)[V]
        return [(target.complete(ctx), [V], None)] if lw > -np.inf else []
    state = us.init_state(k)  # the sampler's own state, replayed to the node
    for t in ctx:
        state = state.advance(np.full(k, t, dtype=np.int64))
    room = meter.room("lm_tokens")
    out = us.sample(
        state,
        rng,
        max_len=max_tokens - depth,
        token_budget=None if room == np.inf else int(room),
    )
    meter.spend(expansions=1, lm_tokens=out.tokens)
    seen = set() if book is None else book["units"]
    base = us.target.prefix(ctx) if book is not None else 0.0
    kids = []
    for u, e, s, lw in zip(out.units, out.eos, out.status, out.log_w):
        if s in ("dead", "budget"):
            continue
        toks = tuple(u) + ((V,) if e else ())
        if toks in seen:
            continue
        seen.add(toks)
        full = ctx + list(u)
        if book is not None:
            lm_ = (us.target.complete(full) if e else us.target.prefix(full)) - base
            if lw > -np.inf and lm_ > -np.inf:
                book["prop"] += float(np.exp(lm_ - lw))
                book["logw"] = max(book["logw"], float(lw))
        lp = target.complete(full) if e else target.prefix(full)
        if lp > -np.inf:
            kids.append((lp, list(toks), None))
    return kids
