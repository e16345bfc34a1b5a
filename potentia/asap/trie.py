r"""A persistent trie of sampled token prefixes with over-approximations θ of their futures.

For an LM P and a hard constraint with language L, the *expected future grammaticality* of
a prefix w is

    EFG(w) = Σ_y P(y EOS | w) · 1[w y ∈ L]

and the constrained conditional factorises as P(t | w) · EFG(w t) / EFG(w). The trie keeps,
at every node w it has *expanded* (one LM call), the LM's log-probabilities ``logp`` of the
next tokens the constraint allows (EOS included when w ∈ L; unnormalised, i.e. not
renormalised over the allowed set) and the log of an over-approximation θ(w t) ≥ EFG(w t)
of every allowed child:

* an unexplored child has θ = 1 (log 0): nothing is known beyond the constraint's mask;
* a disallowed child has θ = 0 and is not stored at all;
* the EOS child of a string in L has θ = 1 exactly;
* an expanded node's own θ is Σ_t P(t | w) θ(w t), recomputed bottom-up whenever one of
  its children tightens (:meth:`Trie.expand` does this up to the root).

Every update only lowers θ and θ never drops below EFG, so θ(w) = EFG(w) for every node
once every node below it is expanded; then sampling from P(t | w) θ(w t) is exact.
Strings longer than ``max_tokens`` are outside the target: a node at depth ``max_tokens``
allows only EOS.

The trie is built for one (LM-with-prompt, constraint) pair and is never shared implicitly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from potentia.potentials.base import Potential, PotentialState, Vocabulary, as_potential, logsumexp

__all__ = ["Node", "Trie", "ThetaSnapshot", "coerce_constraint"]


class Node:
    """One prefix w of the trie.

    Attributes:
        parent: The parent node (``None`` at the root).
        token: The token that leads from the parent here (``-1`` at the root).
        slot: Position of ``token`` in the parent's ``tokens`` array.
        depth: Number of tokens in w.
        tokens: Allowed next tokens, ascending (EOS = ``V`` last); ``None`` until expanded.
        logp: The LM's log P(t | w) of each allowed token (not renormalised).
        logtheta: log θ(w t) of each allowed child.
        children: Expanded-or-created child nodes by token.
    """

    __slots__ = (
        "parent",
        "token",
        "slot",
        "depth",
        "tokens",
        "logp",
        "logtheta",
        "children",
        "states",
    )

    def __init__(self, parent: Node | None, token: int, slot: int, depth: int) -> None:
        self.parent, self.token, self.slot, self.depth = parent, token, slot, depth
        self.tokens: np.ndarray | None = None
        self.logp: np.ndarray | None = None
        self.logtheta: np.ndarray | None = None
        self.children: dict[int, Node] = {}
        self.states: tuple[PotentialState, PotentialState] | None = None

    @property
    def expanded(self) -> bool:
        """Whether the LM and the constraint have been evaluated at this prefix."""
        return self.tokens is not None

    @property
    def context(self) -> tuple[int, ...]:
        """The token prefix w of this node."""
        out, n = [], self
        while n.parent is not None:
            out.append(n.token)
            n = n.parent
        return tuple(reversed(out))

    def weights(self) -> np.ndarray:
        """log P(t | w) + log θ(w t) of every allowed token (the ASAp proposal, unnormalised)."""
        if self.tokens is None:
            raise ValueError("this node is not expanded yet; call Trie.expand(node) first.")
        return self.logp + self.logtheta

    def find(self, token: int) -> int:
        """Slot of ``token`` among the allowed tokens, or ``-1`` if it is not allowed."""
        if self.tokens is None:
            raise ValueError("this node is not expanded yet; call Trie.expand(node) first.")
        k = int(np.searchsorted(self.tokens, token))
        return k if k < len(self.tokens) and self.tokens[k] == token else -1

    def __repr__(self) -> str:
        state = f"{len(self.tokens)} allowed" if self.tokens is not None else "unexpanded"
        return f"Node(depth={self.depth}, token={self.token}, {state})"


def coerce_constraint(lm: Potential, constraint: Potential) -> Potential:
    """Check ``constraint`` is a hard potential over ``lm``'s tokens (lifting byte-level ones).

    Raises:
        TypeError: if either argument is not a potential or the constraint is soft.
        ValueError: if the vocabularies differ.
    """
    as_potential(lm, "lm")
    as_potential(constraint, "constraint")
    if not constraint.hard:
        raise TypeError(
            f"`constraint` ({constraint!r}) is a soft potential; ASAp, exact rejection and the "
            "θ trie need a hard constraint (weights in {0, 1}). Use SMC for soft potentials."
        )
    if constraint.vocab != lm.vocab and constraint.vocab == Vocabulary.bytes256():
        constraint = constraint.lift(lm.vocab)
    if constraint.vocab != lm.vocab and constraint.vocab.tokens != lm.vocab.tokens:
        raise ValueError(
            f"`constraint` has vocabulary {constraint.vocab!r} but the LM has {lm.vocab!r}; "
            "lift the constraint to the LM's vocabulary (`constraint.lift(lm.vocab)`)."
        )
    return constraint


class Trie:
    """The θ trie of one (LM with prompt, hard constraint) pair.

    Args:
        lm: The LM conditioned on its prompt, as a potential whose next-token vectors are
            log-probabilities summing to at most one (EOS last; an LM that leaves special
            tokens out of its vocabulary sums to slightly less, which keeps θ an upper bound).
        constraint: A hard constraint over the same tokens (a byte-level constraint is
            lifted to the LM's vocabulary).
        max_tokens: Longest string (in tokens) of the target; deeper nodes allow only EOS.
        max_states: How many per-node LM/constraint states to keep (least recently used
            ones are dropped and replayed from an ancestor when needed).

    Raises:
        TypeError: on a soft constraint or a non-potential.
        ValueError: on a bad ``max_tokens`` or a constraint that rejects every string
            (before any LM call).
    """

    def __init__(
        self, lm: Potential, constraint: Potential, max_tokens: int = 64, max_states: int = 256
    ) -> None:
        constraint = coerce_constraint(lm, constraint)
        for arg, v in (("max_tokens", max_tokens), ("max_states", max_states)):
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"`{arg}` is {v!r}; pass an int >= 1.")
        if constraint.prefix([]) == -np.inf:
            raise ValueError(
                f"`constraint` ({constraint!r}) accepts no string at all (its prefix weight of "
                "the empty string is zero); check the grammar."
            )
        self.lm, self.constraint = lm, constraint
        self.vocab = lm.vocab
        self.max_tokens, self.max_states = int(max_tokens), int(max_states)
        self.root = Node(None, -1, -1, 0)
        self.root_logtheta = 0.0
        self.lm_calls = 0
        self.version = 0  # bumped on every change of θ (snapshots check it)
        self._n_nodes = 1
        self._lru: OrderedDict[int, Node] = OrderedDict()

    # ----- θ ------------------------------------------------------------------------
    def log_theta(self, node: Node) -> float:
        """log θ(w) of ``node`` (0 for an unexplored node: nothing known yet)."""
        return self.root_logtheta if node.parent is None else float(node.parent.logtheta[node.slot])

    def _set_log_theta(self, node: Node, value: float) -> None:
        if node.parent is None:
            self.root_logtheta = value
        else:
            node.parent.logtheta[node.slot] = value

    def _propagate(self, node: Node) -> None:
        """Recompute θ of ``node`` from its children and of every ancestor up to the root."""
        n: Node | None = node
        while n is not None:
            new = float(logsumexp(n.weights())) if len(n.tokens) else -np.inf
            old = self.log_theta(n)
            # θ only ever decreases; round-off must not raise it
            self._set_log_theta(n, min(new, old))
            n = n.parent
        self.version += 1

    # ----- structure ----------------------------------------------------------------
    def child(self, node: Node, token: int) -> Node:
        """The child of expanded ``node`` reached by ``token`` (created if new)."""
        c = node.children.get(token)
        if c is None:
            slot = node.find(token)
            if slot < 0 or token == len(self.vocab):
                raise ValueError(
                    f"`token` {token} is not an allowed non-EOS continuation of {node.context!r}."
                )
            c = node.children[token] = Node(node, int(token), slot, node.depth + 1)
            self._n_nodes += 1
        return c

    def node_at(self, context: tuple[int, ...] | list[int], expand: bool = False) -> Node | None:
        """The node of ``context`` (``None`` if it is not in the trie).

        Args:
            context: A token prefix.
            expand: Expand every node along the way (LM calls) and create missing ones.
        """
        n = self.root
        for t in context:
            if not n.expanded:
                if not expand:
                    return None
                self.expand(n)
            if int(t) not in n.children:
                if not expand or n.find(int(t)) < 0:
                    return None
                self.child(n, int(t))
            n = n.children[int(t)]
        if expand and not n.expanded:
            self.expand(n)
        return n

    def nodes(self) -> Iterator[Node]:
        """Every node of the trie, depth first."""
        stack = [self.root]
        while stack:
            n = stack.pop()
            yield n
            stack.extend(n.children.values())

    def __len__(self) -> int:
        return self._n_nodes

    # ----- expansion (the only place that calls the LM) -----------------------------
    def _states(self, node: Node) -> tuple[PotentialState, PotentialState]:
        """Batch-of-one states of ``node``'s prefix, replayed from the nearest ancestor."""
        path, n = [], node
        while n.states is None and n.parent is not None:
            path.append(n)
            n = n.parent
        if n.states is None:  # the root: never evicted once built
            n.states = (self.lm.init_state(1), self.constraint.init_state(1))
        lm_s, c_s = n.states
        for m in reversed(path):
            tok = np.array([m.token], dtype=np.int64)
            lm_s, c_s = lm_s.advance(tok), c_s.advance(tok)
        if path:
            self._keep(node, (lm_s, c_s))
        return lm_s, c_s

    def _keep(self, node: Node, states: tuple[PotentialState, PotentialState]) -> None:
        node.states = states
        self._lru[id(node)] = node
        self._lru.move_to_end(id(node))
        while len(self._lru) > self.max_states:
            _, old = self._lru.popitem(last=False)
            old.states = None

    def expand(self, node: Node) -> None:
        """Evaluate the LM and the constraint at ``node`` (one LM call) and tighten θ."""
        if node.expanded:
            return
        lm_s, c_s = self._states(node)
        c_vec = c_s.logw_next()[0]
        if node.depth >= self.max_tokens and c_vec[len(self.vocab)] == -np.inf:
            # at the length bound only EOS may follow, and the constraint forbids it:
            # θ = 0 is known without asking the LM
            node.tokens = np.zeros(0, dtype=np.int64)
            node.logp = node.logtheta = np.zeros(0)
            self._propagate(node)
            self._check_nonempty()
            return
        self.record(node, lm_s.logw_next()[0], c_vec)

    def record(self, node: Node, lm_vec: np.ndarray, c_vec: np.ndarray) -> None:
        """Store an expansion computed elsewhere (e.g. by a batched SMC step) and tighten θ.

        Args:
            node: The unexpanded node.
            lm_vec: The LM's next-token log-probabilities at ``node`` (length ``V + 1``).
            c_vec: The constraint's next-token log weights at ``node`` (0 or ``-inf``).
        """
        if node.expanded:
            return
        V = len(self.vocab)
        lm_vec = np.asarray(lm_vec, dtype=float)
        c_vec = np.asarray(c_vec, dtype=float)
        total = logsumexp(lm_vec)
        if not total < 1e-6:
            raise ValueError(
                f"the LM's next-token probabilities at {node.context!r} sum to "
                f"{np.exp(total):.6g} > 1: θ is an upper bound only for an LM whose rows sum "
                "to at most one (pass the LM itself, not a product with other potentials)."
            )
        soft = np.isfinite(c_vec) & (c_vec != 0.0) | np.isnan(c_vec) | (c_vec == np.inf)
        if soft.any():
            bad = int(np.flatnonzero(soft)[0])
            raise ValueError(
                f"`constraint` ({self.constraint!r:.80}) is declared hard but gave the log "
                f"weight {float(c_vec[bad])!r} to token {bad} after {node.context!r}; a hard "
                "constraint returns 0.0 (allowed) or -inf (rejected) only. Fix the "
                "potential, or declare it soft and use SMC."
            )
        allowed = np.isfinite(lm_vec) & np.isfinite(c_vec)
        if node.depth >= self.max_tokens:
            allowed[:V] = False
        toks = np.flatnonzero(allowed)
        node.tokens = toks.astype(np.int64)
        node.logp = lm_vec[toks]
        node.logtheta = np.zeros(len(toks))
        self.lm_calls += 1
        self._propagate(node)
        self._check_nonempty()

    def _check_nonempty(self) -> None:
        if self.root_logtheta == -np.inf:
            raise ValueError(
                f"the constraint's language is empty under the LM: no string of at most "
                f"`max_tokens`={self.max_tokens} tokens of this vocabulary is allowed and has "
                "positive LM probability. Check the grammar against the tokenizer, or raise "
                "`max_tokens`."
            )

    def expand_all(self, max_nodes: int = 100_000) -> int:
        """Expand every reachable node (exact θ everywhere); returns the LM calls made.

        Raises:
            ValueError: if more than ``max_nodes`` nodes would be expanded.
        """
        before = self.lm_calls
        stack = [self.root]
        while stack:
            n = stack.pop()
            self.expand(n)
            if self.lm_calls - before > max_nodes:
                raise ValueError(
                    f"expand_all passed `max_nodes`={max_nodes} expansions; the language is "
                    "too large to expand fully (lower `max_tokens`)."
                )
            V = len(self.vocab)
            stack.extend(self.child(n, int(t)) for t in n.tokens if t != V)
        return self.lm_calls - before

    def snapshot(self) -> ThetaSnapshot:
        """A frozen copy of θ on every node (for a twist held fixed within an SMC run)."""
        return ThetaSnapshot(self)

    def summary(self, max_lines: int = 20) -> str:
        """A readable view of the most probable part of the trie."""
        lines = [
            f"Trie: {len(self)} nodes, {self.lm_calls} LM calls, "
            f"θ(root) = {np.exp(self.root_logtheta):.6g}"
        ]
        stack = [(self.root, 0.0)]
        while stack and len(lines) <= max_lines:
            n, lp = stack.pop()
            txt = self.vocab.decode(n.context)
            lines.append(
                f"{'  ' * n.depth}{txt!r}: log P = {lp:.3f}, θ = {np.exp(self.log_theta(n)):.4g}"
                + ("" if n.expanded else " (unexpanded)")
            )
            kids = sorted(n.children.items(), key=lambda kv: -n.logp[kv[1].slot])
            stack.extend((c, lp + float(n.logp[c.slot])) for _, c in reversed(kids))
        return "\n".join(lines)


class ThetaSnapshot:
    """θ of every node of a trie, frozen at one moment.

    Lookups follow ``(node id, token) -> (child id, log θ)``; a prefix that has left the
    trie keeps θ = 1 (nothing was known about it at snapshot time).
    """

    def __init__(self, trie: Trie) -> None:
        self.root_logtheta = trie.root_logtheta
        self.version = trie.version
        self.edges: dict[tuple[int, int], tuple[int, float]] = {}
        self.allowed: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        ids: dict[int, int] = {id(trie.root): 0}
        stack = [trie.root]
        while stack:
            n = stack.pop()
            i = ids[id(n)]
            if n.tokens is None:
                continue
            self.allowed[i] = (n.tokens, n.logp, n.logtheta.copy())
            for t, c in n.children.items():
                ids[id(c)] = j = len(ids)
                self.edges[(i, t)] = (j, float(n.logtheta[c.slot]))
                stack.append(c)
        self.n_nodes = len(ids)

    def step(self, node_id: int, token: int) -> tuple[int, float]:
        """``(child id, log θ(w t))`` for node ``node_id`` (``-1``: off the trie, θ = 1)."""
        if node_id < 0:
            return -1, 0.0
        hit = self.edges.get((node_id, token))
        if hit is not None:
            return hit
        known = self.allowed.get(node_id)
        if known is not None:
            toks, _, lt = known
            k = int(np.searchsorted(toks, token))
            if k < len(toks) and toks[k] == token:
                return -1, float(lt[k])
            return -1, -np.inf
        return -1, 0.0
