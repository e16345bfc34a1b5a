r"""LTLf over a trace of step labels, compiled to a minimal DFA by formula progression.

A *trace* is a finite sequence of steps and **each step carries exactly one label** from
``labels`` (an atom ``p`` holds at a step iff that step's label is ``p``; two different atoms
never hold at the same step). The constraint is a hard :class:`~potentia.potentials.Potential`
over the vocabulary whose tokens are the label names, so it composes with any potential over
that vocabulary (``&``, ``|``, ``~``, ``*``).

**Semantics** (positions ``0 <= i <= n`` of a trace of length ``n``; ``i = n`` is the empty
rest and only occurs for the empty trace at top level):

* ``p``: ``i < n`` and step ``i`` is labelled ``p``;  ``true``, ``false``, ``!``, ``&``, ``|``, ``->``;
* ``X f`` (strong next): ``i + 1 < n`` and ``f`` at ``i + 1`` — false at the last step;
* ``WX f`` (weak next): ``i + 1 >= n`` or ``f`` at ``i + 1`` — true at the last step;
* ``F f``: some ``i <= j < n`` has ``f``;  ``G f``: every ``i <= j < n`` has ``f``;
* ``f U g``: some ``i <= j < n`` has ``g`` and ``f`` holds on ``[i, j)``;
* ``f R g``: ``!(!f U !g)``.

A trace is accepted iff the formula holds at position 0 (so the empty trace satisfies
``G f`` and ``WX f`` but not ``F f``, ``X f`` or an atom).

**Compilation.** The state of a prefix is the obligation the rest of the trace must meet.
Reading label ``a`` *progresses* it: ``prog(X f) = f & nonempty``, ``prog(WX f) = f | end``,
``prog(F f) = prog(f) | F f``, ``prog(G f) = prog(f) & G f``,
``prog(f U g) = prog(g) | (prog(f) & f U g)``, ``prog(f R g) = prog(g) & (prog(f) | f R g)``,
with ``nonempty = F true`` and ``end = G false``. Obligations are Boolean functions of the
formula's temporal subformulas, kept as reduced ordered BDDs, so propositionally equal
obligations are one state and the construction terminates. A state accepts iff its
obligation holds on the empty rest. The automaton is then minimised (Moore partition
refinement) and every state that cannot reach acceptance is removed, so the prefix weight is
exact: a prefix is viable iff its state can still reach an accepting state.

**Syntax** of the string form, loosest binding first: ``<->``, ``->`` (right associative),
``|``, ``&``, ``U`` / ``R`` (right associative), then the prefix operators ``!``, ``X``, ``WX``,
``F``, ``G``. Atoms are identifiers (``[A-Za-z_][A-Za-z0-9_]*``, other than the keywords
``X WX F G U R true false``) or quoted strings (``"Final Answer"``). The Python form uses the
classes :class:`Atom`, :class:`Not`, :class:`And`, :class:`Or`, :class:`Next`,
:class:`WeakNext`, :class:`Eventually`, :class:`Always`, :class:`Until`, :class:`Release`
(and :func:`implies`); formulas support ``&``, ``|`` and ``~``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from potentia.potentials.base import ContextState, Potential, PotentialState, Vocabulary

__all__ = [
    "Formula",
    "Atom",
    "Const",
    "Not",
    "And",
    "Or",
    "Next",
    "WeakNext",
    "Eventually",
    "Always",
    "Until",
    "Release",
    "implies",
    "parse",
    "LTL",
    "ltl",
]


# ----- formulas ---------------------------------------------------------------------------
class Formula:
    """Base class of LTLf formulas (immutable, hashable, compared structurally)."""

    def __and__(self, other: Formula) -> Formula:
        return And(self, _as_formula(other, "other"))

    def __or__(self, other: Formula) -> Formula:
        return Or(self, _as_formula(other, "other"))

    def __invert__(self) -> Formula:
        return Not(self)


@dataclass(frozen=True)
class Atom(Formula):
    """The current step is labelled ``name``."""

    name: str


@dataclass(frozen=True)
class Const(Formula):
    """``true`` or ``false``."""

    value: bool


@dataclass(frozen=True)
class Not(Formula):
    """Negation."""

    arg: Formula


@dataclass(frozen=True)
class And(Formula):
    """Conjunction."""

    left: Formula
    right: Formula


@dataclass(frozen=True)
class Or(Formula):
    """Disjunction."""

    left: Formula
    right: Formula


@dataclass(frozen=True)
class Next(Formula):
    """Strong next ``X``: there is a next step and ``arg`` holds there."""

    arg: Formula


@dataclass(frozen=True)
class WeakNext(Formula):
    """Weak next ``WX``: there is no next step, or ``arg`` holds there."""

    arg: Formula


@dataclass(frozen=True)
class Eventually(Formula):
    """``F``: ``arg`` holds at this or a later step."""

    arg: Formula


@dataclass(frozen=True)
class Always(Formula):
    """``G``: ``arg`` holds at this and every later step."""

    arg: Formula


@dataclass(frozen=True)
class Until(Formula):
    """``left U right``: ``right`` holds at some step, ``left`` at every step before it."""

    left: Formula
    right: Formula


@dataclass(frozen=True)
class Release(Formula):
    """``left R right``: ``right`` holds up to and including the first ``left`` step, or to the end."""

    left: Formula
    right: Formula


def implies(a: Formula, b: Formula) -> Formula:
    """``a -> b``, i.e. ``!a | b``."""
    return Or(Not(a), b)


def _as_formula(obj: object, arg: str) -> Formula:
    if isinstance(obj, Formula):
        return obj
    if isinstance(obj, str):
        return parse(obj)
    raise TypeError(
        f"`{arg}` is {type(obj).__name__}; give an LTLf formula as a string such as "
        "'G(call -> F result)' or as a potentia.constraints.ltl.Formula."
    )


# ----- parser -----------------------------------------------------------------------------
_TOKEN = re.compile(
    r'\s*(?:(?P<op><->|->|WX|[!&|()~])|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|"(?P<quoted>[^"]*)")'
)
_UNARY = {"!": Not, "~": Not, "X": Next, "WX": WeakNext, "F": Eventually, "G": Always}


def parse(text: str) -> Formula:
    """Parse the string form of an LTLf formula (syntax in the module docstring).

    Raises:
        ValueError: on a syntax error, with the position and what was expected.
    """
    if not isinstance(text, str):
        raise TypeError(f"`formula` is {type(text).__name__}; expected a string.")
    toks: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(
                f"`formula` {text!r}: unexpected character {text[pos:].lstrip()[:1]!r} at "
                f'position {pos}. Atoms are identifiers or "quoted labels"; operators are '
                "! X WX F G U R & | -> <->."
            )
        if m.group("op") is not None:
            toks.append(("op", m.group("op"), m.start("op")))
        elif m.group("name") is not None:
            name = m.group("name")
            kind = "op" if name in ("X", "F", "G", "U", "R") else "name"
            toks.append((kind, name, m.start("name")))
        else:
            toks.append(("atom", m.group("quoted"), m.start("quoted") - 1))
        pos = m.end()
    i = 0

    def peek() -> tuple[str, str, int] | None:
        return toks[i] if i < len(toks) else None

    def fail(expected: str) -> ValueError:
        t = peek()
        where = f"{t[1]!r} at position {t[2]}" if t else "the end"
        return ValueError(f"`formula` {text!r}: expected {expected}, found {where}.")

    def binary(ops: tuple[str, ...], sub, right_assoc: bool):
        nonlocal i
        left = sub()
        while (t := peek()) is not None and t[0] == "op" and t[1] in ops:
            i += 1
            right = binary(ops, sub, right_assoc) if right_assoc else sub()
            left = _BIN[t[1]](left, right)
            if right_assoc:
                break
        return left

    def unary() -> Formula:
        nonlocal i
        t = peek()
        if t is None:
            raise fail("a formula")
        if t[0] == "op" and t[1] in _UNARY:
            i += 1
            return _UNARY[t[1]](unary())
        if t[0] == "op" and t[1] == "(":
            i += 1
            f = iff()
            if (c := peek()) is None or c[1] != ")" or c[0] != "op":
                raise fail("')'")
            i += 1
            return f
        if t[0] == "name":
            i += 1
            return Const(t[1] == "true") if t[1] in ("true", "false") else Atom(t[1])
        if t[0] == "atom":
            i += 1
            return Atom(t[1])
        raise fail("an atom, '(' or a prefix operator")

    def until() -> Formula:
        return binary(("U", "R"), unary, True)

    def conj() -> Formula:
        return binary(("&",), until, False)

    def disj() -> Formula:
        return binary(("|",), conj, False)

    def imp() -> Formula:
        return binary(("->",), disj, True)

    def iff() -> Formula:
        return binary(("<->",), imp, False)

    f = iff()
    if peek() is not None:
        raise fail("an operator or the end")
    return f


_BIN = {
    "&": And,
    "|": Or,
    "U": Until,
    "R": Release,
    "->": implies,
    "<->": lambda a, b: Or(And(a, b), And(Not(a), Not(b))),
}


def atoms(f: Formula) -> set[str]:
    """The atom names used in ``f``."""
    if isinstance(f, Atom):
        return {f.name}
    if isinstance(f, Const):
        return set()
    out: set[str] = set()
    for v in vars(f).values():
        out |= atoms(v)
    return out


# ----- BDDs over temporal subformulas ---------------------------------------------------------
_NONEMPTY = Eventually(Const(True))
_END = Always(Const(False))
_TEMPORAL = (Atom, Next, WeakNext, Eventually, Always, Until, Release)


class _BDD:
    """Reduced ordered BDDs: node 0 is false, 1 is true, others are ``(var, lo, hi)``."""

    def __init__(self) -> None:
        self.nodes: list[tuple[int, int, int]] = [(1 << 30, 0, 0), (1 << 30, 1, 1)]
        self.unique: dict[tuple[int, int, int], int] = {}
        self.memo: dict[tuple[str, int, int], int] = {}

    def mk(self, var: int, lo: int, hi: int) -> int:
        if lo == hi:
            return lo
        key = (var, lo, hi)
        node = self.unique.get(key)
        if node is None:
            node = len(self.nodes)
            self.nodes.append(key)
            self.unique[key] = node
        return node

    def var(self, v: int) -> int:
        return self.mk(v, 0, 1)

    def neg(self, u: int) -> int:
        if u < 2:
            return 1 - u
        key = ("n", u, 0)
        r = self.memo.get(key)
        if r is None:
            v, lo, hi = self.nodes[u]
            r = self.mk(v, self.neg(lo), self.neg(hi))
            self.memo[key] = r
        return r

    def apply(self, op: str, u: int, w: int) -> int:
        if op == "&":
            if u == 0 or w == 0:
                return 0
            if u == 1:
                return w
            if w == 1 or u == w:
                return u
        else:
            if u == 1 or w == 1:
                return 1
            if u == 0:
                return w
            if w == 0 or u == w:
                return u
        if u > w:
            u, w = w, u
        key = (op, u, w)
        r = self.memo.get(key)
        if r is None:
            (vu, lu, hu), (vw, lw, hw) = self.nodes[u], self.nodes[w]
            v = min(vu, vw)
            lo_u, hi_u = (lu, hu) if vu == v else (u, u)
            lo_w, hi_w = (lw, hw) if vw == v else (w, w)
            r = self.mk(v, self.apply(op, lo_u, lo_w), self.apply(op, hi_u, hi_w))
            self.memo[key] = r
        return r

    def ite(self, c: int, t: int, e: int) -> int:
        return self.apply("|", self.apply("&", c, t), self.apply("&", self.neg(c), e))


class _Compiler:
    """Formula progression over BDD-represented obligations (one compiler per formula)."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.bdd = _BDD()
        self.var_of: dict[Formula, int] = {}
        self.elem: list[Formula] = []
        self.prog_var: dict[tuple[int, int], int] = {}
        self.prog_node: dict[tuple[int, int], int] = {}

    def encode(self, f: Formula) -> int:
        """The BDD of ``f`` as a Boolean function of its temporal subformulas."""
        b = self.bdd
        if isinstance(f, Const):
            return 1 if f.value else 0
        if isinstance(f, Not):
            return b.neg(self.encode(f.arg))
        if isinstance(f, And):
            return b.apply("&", self.encode(f.left), self.encode(f.right))
        if isinstance(f, Or):
            return b.apply("|", self.encode(f.left), self.encode(f.right))
        if isinstance(f, _TEMPORAL):
            v = self.var_of.get(f)
            if v is None:
                v = len(self.elem)
                self.var_of[f] = v
                self.elem.append(f)
            return b.var(v)
        raise TypeError(f"`formula` contains {f!r}, which is not an LTLf formula node.")

    def _prog_elem(self, v: int, a: int) -> int:
        key = (v, a)
        r = self.prog_var.get(key)
        if r is not None:
            return r
        b, f = self.bdd, self.elem[v]
        if isinstance(f, Atom):
            r = 1 if f.name == self.labels[a] else 0
        elif isinstance(f, Next):
            r = b.apply("&", self.encode(f.arg), self.encode(_NONEMPTY))
        elif isinstance(f, WeakNext):
            r = b.apply("|", self.encode(f.arg), self.encode(_END))
        elif isinstance(f, Eventually):
            r = b.apply("|", self.prog(self.encode(f.arg), a), b.var(v))
        elif isinstance(f, Always):
            r = b.apply("&", self.prog(self.encode(f.arg), a), b.var(v))
        elif isinstance(f, Until):
            stay = b.apply("&", self.prog(self.encode(f.left), a), b.var(v))
            r = b.apply("|", self.prog(self.encode(f.right), a), stay)
        else:  # Release
            stay = b.apply("|", self.prog(self.encode(f.left), a), b.var(v))
            r = b.apply("&", self.prog(self.encode(f.right), a), stay)
        self.prog_var[key] = r
        return r

    def prog(self, u: int, a: int) -> int:
        """Progress obligation ``u`` through one step labelled ``labels[a]``."""
        if u < 2:
            return u
        key = (u, a)
        r = self.prog_node.get(key)
        if r is None:
            v, lo, hi = self.bdd.nodes[u]
            r = self.bdd.ite(self._prog_elem(v, a), self.prog(hi, a), self.prog(lo, a))
            self.prog_node[key] = r
        return r

    def accepts_empty(self, u: int) -> bool:
        """Whether obligation ``u`` holds on the empty rest of a trace."""
        while u >= 2:
            v, lo, hi = self.bdd.nodes[u]
            u = hi if isinstance(self.elem[v], WeakNext | Always | Release) else lo
        return u == 1


def compile_dfa(
    formula: Formula, labels: Sequence[str], max_states: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    """The minimal DFA of ``formula`` over ``labels`` (start state 0, dead states removed).

    Returns:
        ``(delta, accepting)``: ``int64[S, len(labels)]`` transitions (``-1``: the prefix
        can no longer be accepted) and ``bool[S]``. A formula no trace satisfies gives
        ``S = 1`` with no transitions and no acceptance.
    """
    comp = _Compiler(labels)
    start = comp.encode(formula)
    index = {start: 0}
    order = [start]
    rows: list[list[int]] = []
    queue = deque([start])
    while queue:
        u = queue.popleft()
        row = []
        for a in range(len(labels)):
            w = comp.prog(u, a)
            if w not in index:
                if len(order) >= max_states:
                    raise ValueError(
                        f"`formula` needs more than {max_states} automaton states; simplify "
                        "it or raise `max_states`."
                    )
                index[w] = len(order)
                order.append(w)
                queue.append(w)
            row.append(index[w])
        rows.append(row)
    delta = np.array(rows, dtype=np.int64).reshape(len(order), len(labels))
    accept = np.array([comp.accepts_empty(u) for u in order], dtype=bool)
    return _minimise(delta, accept)


def _minimise(delta: np.ndarray, accept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moore minimisation of a complete DFA, then removal of states that cannot accept."""
    S, K = delta.shape
    # co-reachability (states that can reach acceptance)
    preds: list[list[int]] = [[] for _ in range(S)]
    for s in range(S):
        for t in delta[s]:
            preds[int(t)].append(s)
    live = accept.copy()
    queue = deque(np.flatnonzero(accept).tolist())
    while queue:
        t = queue.popleft()
        for s in preds[t]:
            if not live[s]:
                live[s] = True
                queue.append(s)
    if not live[0]:
        return np.full((1, K), -1, dtype=np.int64), np.zeros(1, dtype=bool)
    # partition refinement; all dead states form one block (-1)
    block = np.where(live, accept.astype(np.int64), -1)
    while True:
        sig = {}
        new = np.full(S, -1, dtype=np.int64)
        for s in range(S):
            if not live[s]:
                continue
            key = (int(block[s]), *(int(block[t]) for t in delta[s]))
            new[s] = sig.setdefault(key, len(sig))
        if len(sig) == len(set(block[live].tolist())):
            block = new
            break
        block = new
    # renumber so that the start state is 0, in BFS order
    ren = {int(block[0]): 0}
    reps = [0]
    queue = deque([0])
    while queue:
        s = queue.popleft()
        for t in delta[s]:
            bt = int(block[t])
            if bt >= 0 and bt not in ren:
                ren[bt] = len(reps)
                reps.append(int(t))
                queue.append(int(t))
    out = np.full((len(reps), K), -1, dtype=np.int64)
    acc = np.zeros(len(reps), dtype=bool)
    for i, s in enumerate(reps):
        acc[i] = accept[s]
        for a in range(K):
            bt = int(block[delta[s, a]])
            out[i, a] = ren[bt] if bt >= 0 else -1
    return out, acc


# ----- the potential ------------------------------------------------------------------------
class LTL(Potential):
    """A hard constraint: the trace of labels (one label per token) satisfies an LTLf formula.

    Build it with :func:`ltl`. ``delta``/``accepting`` are the minimal DFA; ``prefix`` is
    ``0`` iff the prefix's state can still reach acceptance.
    """

    hard = True

    def __init__(self, formula: Formula, labels: Sequence[str], max_states: int = 100_000):
        self.formula = formula
        self.labels = list(labels)
        self.vocab = Vocabulary.from_strings(self.labels, name="labels")
        self.delta, self.accepting = compile_dfa(formula, self.labels, max_states)
        self._q0 = 0 if (self.delta[0] >= 0).any() or self.accepting[0] else -1

    @property
    def n_states(self) -> int:
        """Number of states of the minimal automaton."""
        return self.delta.shape[0]

    def state_of(self, context: Sequence[int]) -> int:
        """The automaton state after ``context`` (``-1``: no longer satisfiable)."""
        q = self._q0
        for t in context:
            if q < 0:
                return -1
            q = int(self.delta[q, t])
        return q

    def _prefix(self, context: list[int]) -> float:
        return 0.0 if self.state_of(context) >= 0 else -np.inf

    def _complete(self, context: list[int]) -> float:
        q = self.state_of(context)
        return 0.0 if q >= 0 and self.accepting[q] else -np.inf

    def _row(self, q: int) -> np.ndarray:
        out = np.full(len(self.labels) + 1, -np.inf)
        if q >= 0:
            out[:-1][self.delta[q] >= 0] = 0.0
            out[-1] = 0.0 if self.accepting[q] else -np.inf
        return out

    def _logw_next(self, context: list[int]) -> np.ndarray:
        return self._row(self.state_of(context))

    def init_state(self, n: int) -> PotentialState:  # noqa: D102
        q0 = self.state_of([])
        return _LTLState(self, [[] for _ in range(n)], np.full(n, q0, dtype=np.int64))

    def __repr__(self) -> str:
        return f"LTL({len(self.labels)} labels, {self.n_states} states)"


class _LTLState(ContextState):
    """Batch state: the automaton state of every row, advanced by table look-up."""

    def __init__(self, potential: LTL, contexts, q: np.ndarray) -> None:
        super().__init__(potential, contexts)
        self.q = q

    def logw_next(self) -> np.ndarray:  # noqa: D102
        if self._cache is None:
            p: LTL = self.potential
            rows = np.full((len(self.q), len(p.labels) + 1), -np.inf)
            ok = self.q >= 0
            qs = np.maximum(self.q, 0)
            allowed = (p.delta[qs] >= 0) & ok[:, None]
            rows[:, :-1][allowed] = 0.0
            rows[:, -1][ok & p.accepting[qs]] = 0.0
            self._cache = rows
        return self._cache

    def advance(self, tokens):  # noqa: D102
        tokens = self._row_tokens(tokens)
        p: LTL = self.potential
        ok = self.q >= 0
        q = np.where(ok, p.delta[np.maximum(self.q, 0), tokens], -1)
        new = [c + [int(t)] for c, t in zip(self._contexts, tokens)]
        return _LTLState(p, new, q)

    def select(self, rows):  # noqa: D102
        rows = np.asarray(rows, dtype=np.int64)
        out = _LTLState(self.potential, [list(self._contexts[r]) for r in rows], self.q[rows])
        if self._cache is not None:
            out._cache = self._cache[rows]
        return out

    def prefix(self) -> np.ndarray:  # noqa: D102
        return np.where(self.q >= 0, 0.0, -np.inf)


def ltl(formula: str | Formula, labels: Sequence[str], max_states: int = 100_000) -> LTL:
    """A hard constraint: the trace of step labels satisfies the LTLf ``formula``.

    Each step (token of the returned potential's vocabulary) carries exactly one label, so
    ``p & q`` for two different labels never holds at a step.

    Args:
        formula: An LTLf formula, as a string (``"G(call -> X result) & F done"``) or built
            from :class:`Atom`, :class:`Next`, :class:`Until`, ... (see the module docstring).
        labels: The step labels, in vocabulary order (unique non-empty strings).
        max_states: Refuse formulas whose automaton passes this many states.

    Raises:
        ValueError: on a syntax error, empty or repeated labels, or an atom that is not a
            label.

    Example:
        >>> import potentia as pt
        >>> c = pt.ltl("G(call -> X result) & F done", labels=["call", "result", "done"])
        >>> c.complete([0, 1, 2]), c.prefix([0, 0])
        (0.0, -inf)
    """
    f = _as_formula(formula, "formula")
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise TypeError(
            f"`labels` is {type(labels).__name__}; give a list of label strings, e.g. "
            "labels=['Thought', 'Action', 'Observation']."
        )
    labels = list(labels)
    if not labels or not all(isinstance(x, str) and x for x in labels):
        raise ValueError(f"`labels` is {labels!r}; give at least one non-empty string label.")
    if len(set(labels)) != len(labels):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        raise ValueError(f"`labels` repeats {dup}; every label must be unique.")
    unknown = sorted(atoms(f) - set(labels))
    if unknown:
        raise ValueError(
            f"`formula` uses atoms {unknown} that are not in `labels` {labels}; add them to "
            "`labels` or fix the spelling."
        )
    return LTL(f, labels, max_states)
