r"""Grammar-constrained infilling: fixed text with gaps, the whole text in a grammar's language.

``infill(grammar, parts=["def f(", None, "):\n    return ", None, "\n"])`` accepts exactly
the strings ``p0 g1 p2 g3 p4`` whose fixed parts are the given strings, whose gaps ``g`` are
any text, and which are in the language of the Lark grammar. Generation is left to right:
the model writes the first gap, the next fixed part is forced (only its bytes are allowed),
then the next gap, and so on. After Mündler, Dekoninck and Vechev, "Constrained Decoding of
Diffusion LLMs with Context-Free Grammars" (2025): the prefix check is the emptiness of the
intersection of the grammar with a regular language, decided on *terminals*, not bytes.

**The language.** A text is in the grammar's language iff it splits into a sequence of
non-empty lexemes, each matching one terminal's regex, such that the terminals that are not
ignored (``%ignore``) form a sentence of the rules (every split is considered: the
semantics of a scannerless parser, Lark's Earley with ``lexer="dynamic_complete"``). That
is :func:`potentia.cfg`'s language whenever the longest-match lexing of llguidance finds a
valid split; where terminals can run into each other (``A: /a+/`` before ``B: "ab"``) this
language is the larger one. With the parts, the language of the potential is
``L(grammar) ∩ R`` where ``R = p0 Σ* p2 Σ* ... p_last`` (a gap is any text, also text that
contains the next fixed part: every way of placing the fixed parts is followed at once).

**Over the whole output.** The potential reads the whole text, fixed parts included (as
:func:`potentia.template` does): under :func:`potentia.sample` the model writes the fixed
parts too, with only their bytes allowed, so the target is ``LM(x) · 1[x ∈ L ∩ R]`` and the
LM's probability of the forced text is part of the weight. :meth:`Infill.fillings` reads
the gaps back from a finished text.

**The prefix check is exact.** A prefix ``x`` has weight one iff some ``y`` makes ``x y``
a member. It is decided in three steps:

1. ``x`` is read by a nondeterministic lexer and an Earley parser at once (a chart over
   character positions, with the lexemes still open at the end of ``x``), and by the
   automaton of ``R`` (a set of positions in the parts; empty means dead);
2. *at construction*, the automaton of ``R`` is composed with the lexer: for every pair of
   positions ``(p, q)`` of ``R`` and every terminal ``t``, whether some lexeme of ``t`` reads
   from ``p`` to ``q`` (ignored lexemes are ε-moves). That is a finite automaton over
   terminals, and the Bar-Hillel construction gives, for every non-terminal ``A`` and
   position ``p``, the set of positions ``A`` can reach from ``p`` (a fixpoint over bit sets,
   computed once per grammar and parts; it is the cached emptiness answer per gap position);
3. per prefix, a fixpoint over the chart combines both: items at the end of ``x`` and the
   open lexemes (completed in the future: the rest of the current gap, or across the next
   fixed part) climb the chart through their origins, each step moving a set of positions of
   ``R``; ``x`` is viable iff the start symbol, from the chart's start, reaches the end of
   ``R``. Bytes that end inside a UTF-8 character are completed by every character that can
   matter (the characters the terminals and parts name, plus one other).

So terminals may cross the boundary between a gap and a fixed part (``"1"``, gap ``"3"``,
``"+2"`` lexes ``13`` as one number), and fixed parts need not start or end at terminal
boundaries. Cost: the chart is Python (about one Earley set per character), the per-prefix
fixpoint touches the items of the chart whose origins it climbs; results are memoised per
state. ``docs/benchmarks.md`` has measured costs.

**Pre-filter** (``prefilter=True``). The grammar is also compiled for llguidance in a
scannerless form (every terminal becomes right-linear rules over one-character lexemes from
its own automaton, so llguidance's lexing cannot differ from the one above): a prefix
llguidance rejects cannot be completed in the grammar, so the native check runs first on
every single-token query (it is necessary, never sufficient: it knows nothing of the
parts). It is off by default: on the example of ``examples/infill.py`` (SmolLM2's
vocabulary) it makes the per-token check slower (p50 0.064 against 0.049 ms, p99 8.5
against 0.17 ms; ``docs/benchmarks.md``), because the chart above already rejects a token
that breaks the grammar within a byte or two, and the pre-filter's matchers are copied on
every advance. (Compiling the grammar as written
for llguidance would be faster, but its greedy lexer accepts fewer texts than the
every-split semantics when terminals can run into each other, so it would not be sound.)

**Full masks** (AWRS's fallback, the direct sampler) walk the vocabulary's byte trie with
the row, pruned as soon as a prefix is not viable: cheap inside fixed parts (one byte is
allowed), 0.6 s (median; up to about 3 s) for SmolLM2's vocabulary on the example, most
of it inside gaps that allow most tokens.

**Limits.** Terminal regexes are compiled with ``interegular`` (no look-around, no
backreferences); a terminal that matches the empty string is refused. llguidance-only
syntax (``%json``, ``%llguidance``) is not accepted: the grammar is read by ``lark``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from potentia.constraints.infill_grammar import Grammar
from potentia.constraints.infill_grammar import bits as _bits
from potentia.constraints.llg import LLGConstraint
from potentia.potentials.base import Potential, PotentialState, Vocabulary

__all__ = ["Infill", "infill"]

_BYTES = Vocabulary.bytes256()


# ----- the chart -------------------------------------------------------------------------
class _ESet:
    """One Earley set: items ``(rule, dot, origin)`` and, by next symbol, those waiting."""

    __slots__ = ("items", "by_next")

    def __init__(self, items: set, by_next: dict) -> None:
        self.items, self.by_next = items, by_next


class _Row:
    """The reading of one prefix: chart, open lexemes, positions in the parts, pending bytes.

    ``chart`` is ``None`` for a dead prefix. Immutable; ``viable`` is memoised.
    """

    __slots__ = ("chart", "lexes", "rmask", "pending", "viable")

    def __init__(self, chart, lexes, rmask: int, pending: bytes) -> None:
        self.chart, self.lexes, self.rmask, self.pending = chart, lexes, rmask, pending
        self.viable: bool | None = None if chart is not None else False


_DEAD = _Row(None, (), 0, b"")


class Infill(Potential):
    """A byte-level hard constraint: fixed parts and gaps, the whole text in a grammar.

    Build it with :func:`infill` (see the module docstring for the semantics).

    Args:
        grammar: The Lark grammar text (``start: ...``).
        parts: Fixed strings and ``None`` for each gap, in order.
        prefilter: Use llguidance as a native pre-filter (the answers do not change).
    """

    hard = True

    def __init__(self, grammar: str, parts: Sequence[str | None], prefilter: bool = False) -> None:
        self.vocab = _BYTES
        self.parts = _check_parts(parts)
        self.grammar_text = grammar
        self.g = Grammar(grammar)
        self._build_parts()
        self._build_reach()
        self._lex_cache: dict = {}
        self.llg: LLGConstraint | None = None
        if prefilter:
            self.llg = LLGConstraint(self.g.llg_text(), None, name="infill pre-filter")
        self._root = self._start_row()
        self._rows: dict[bytes, _Row] = {}
        self._pending: dict[bytes, list[str]] = {}
        self._fmemo: dict = {}
        if not self._viable(self._root):
            raise ValueError(
                f"`parts` {self.parts!r}: no filling of the gaps gives a text in the "
                "grammar's language; check the fixed parts against the grammar."
            )

    # ----- the automaton of the parts (over characters) ------------------------------------
    def _build_parts(self) -> None:
        kinds: list = []  # per state: a fixed character, "gap", or "end"
        part_state: list[int] = []  # first state of every part
        for p in self.parts:
            part_state.append(len(kinds))
            if p is None:
                kinds.append("gap")
            else:
                kinds.extend(p)
        self.end_state = len(kinds)
        kinds.append("end")
        self.kinds = kinds
        n_parts = len(self.parts)
        entry = [0] * (n_parts + 1)
        entry[n_parts] = 1 << self.end_state
        for j in range(n_parts - 1, -1, -1):
            p = self.parts[j]
            s = part_state[j]
            if p is None:
                entry[j] = (1 << s) | entry[j + 1]
            elif p:
                entry[j] = 1 << s
            else:
                entry[j] = entry[j + 1]
        nxt = [0] * len(kinds)
        for j, p in enumerate(self.parts):
            s = part_state[j]
            if p is None:
                nxt[s] = (1 << s) | entry[j + 1]
            else:
                for o in range(len(p)):
                    nxt[s + o] = (1 << (s + o + 1)) if o + 1 < len(p) else entry[j + 1]
        self.rnext, self.entry0 = nxt, entry[0]
        self.final_bit = 1 << self.end_state
        self.fixed_chars = {ch for p in self.parts if p for ch in p}

    def _step_r(self, mask: int, ch: str) -> int:
        out = 0
        for s in _bits(mask):
            k = self.kinds[s]
            if k == "gap" or k == ch:
                out |= self.rnext[s]
        return out

    def _lex_reach(self, t: int, starts: Sequence[tuple[int, int]]) -> int:
        """Positions where a lexeme of ``t`` can end, from (position, DFA state) pairs."""
        term = self.g.terms[t]
        seen, stack, out = set(starts), list(starts), 0
        while stack:
            r, q = stack.pop()
            k = self.kinds[r]
            if k == "end":
                continue
            if k == "gap":
                moves = term.trans[q].values()
            else:
                q2 = term.step(q, k)
                moves = (q2,) if q2 >= 0 else ()
            for q2 in moves:
                if term.final[q2]:
                    out |= self.rnext[r]
                for r2 in _bits(self.rnext[r]):
                    if (r2, q2) not in seen:
                        seen.add((r2, q2))
                        stack.append((r2, q2))
        return out

    def _close(self, mask: int) -> int:
        """``mask`` closed under ignored lexemes."""
        out, todo = mask, mask
        while todo:
            new = 0
            for s in _bits(todo):
                new |= self._eps[s]
            todo = new & ~out
            out |= new
        return out

    def _build_reach(self) -> None:
        g = self.g
        nR = len(self.kinds)
        self._eps = [0] * nR
        for i in g.ignored:
            for r in range(nR):
                self._eps[r] |= self._lex_reach(i, [(r, 0)])
        # M[s][p]: positions after symbol s from position p (closed); terminals first
        M: list[list[int]] = [[0] * nR for _ in range(g.n_sym)]
        for t in range(g.T):
            if not g.terms[t].ignored:
                for r in range(nR):
                    M[t][r] = self._close(self._lex_reach(t, [(r, 0)]))
        for A in g.nullable:
            for r in range(nR):
                M[A][r] = 1 << r
        self.M = M
        changed = True
        while changed:  # Bar-Hillel: least fixpoint of A's reach over all rules
            changed = False
            for A, rhs in zip(g.lhs, g.rhs):
                row = M[A]
                for p in range(nR):
                    m = self._seq(rhs, 0, 1 << p)
                    if m & ~row[p]:
                        row[p] |= m
                        changed = True

    def _seq(self, rhs: tuple, d: int, mask: int) -> int:
        M = self.M
        for s in rhs[d:]:
            tbl, out = M[s], 0
            for p in _bits(mask):
                out |= tbl[p]
            if not out:
                return 0
            mask = out
        return mask

    # ----- reading a prefix ------------------------------------------------------------------
    def _closure(self, kernel, k: int, chart) -> _ESet:
        g = self.g
        T, rhs_of, lhs_of = g.T, g.rhs, g.lhs
        items: set = set()
        by_next: dict = {}
        predicted: set = set()
        stack = list(kernel)
        while stack:
            it = stack.pop()
            if it in items:
                continue
            items.add(it)
            r, d, o = it
            rhs = rhs_of[r]
            if d < len(rhs):
                s = rhs[d]
                by_next.setdefault(s, []).append(it)
                if s >= T:
                    if s not in predicted:
                        predicted.add(s)
                        stack.extend((r2, 0, k) for r2 in g.rules_of.get(s, ()))
                    if s in g.nullable:
                        stack.append((r, d + 1, o))
            elif o != k:  # an empty span is handled by the nullable advance above
                A = lhs_of[r]
                stack.extend((r2, d2 + 1, o2) for r2, d2, o2 in chart[o].by_next.get(A, ()))
        return _ESet(items, by_next)

    def _new_lexes(self, es: _ESet, k: int) -> list:
        if not es.items:
            return []
        g = self.g
        ts = {s for s in es.by_next if s < g.T} | set(g.ignored)
        return [(k, t, 0) for t in sorted(ts)]

    def _start_row(self) -> _Row:
        g = self.g
        es = self._closure([(r, 0, 0) for r in g.rules_of[g.start]], 0, ())
        return _Row((es,), tuple(self._new_lexes(es, 0)), self.entry0, b"")

    def _advance_char(self, row: _Row, ch: str) -> _Row:
        rmask = self._step_r(row.rmask, ch)
        if not rmask:
            return _DEAD
        g = self.g
        chart = row.chart
        k = len(chart)
        kernel: list = []
        lexes = []
        for i, t, q in row.lexes:
            term = g.terms[t]
            q2 = term.step(q, ch)
            if q2 < 0:
                continue
            if term.trans[q2]:
                lexes.append((i, t, q2))
            if term.final[q2]:
                src = chart[i]
                if term.ignored:
                    kernel.extend(src.items)
                else:
                    kernel.extend((r, d + 1, o) for r, d, o in src.by_next.get(t, ()))
        es = self._closure(kernel, k, chart)
        lexes.extend(self._new_lexes(es, k))
        if not es.items and not lexes:
            return _DEAD
        return _Row((*chart, es), tuple(lexes), rmask, b"")

    def _advance_byte(self, row: _Row, b: int) -> _Row:
        if row.chart is None:
            return _DEAD
        data = row.pending + bytes([b])
        try:
            ch = data.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.reason == "unexpected end of data" and len(data) < 4:
                return _Row(row.chart, row.lexes, row.rmask, data)
            return _DEAD
        return self._advance_char(row, ch)

    def _advance_bytes(self, row: _Row, data: bytes) -> _Row:
        for b in data:
            row = self._advance_byte(row, b)
            if row.chart is None:
                break
        return row

    def _pending_chars(self, pending: bytes) -> list[str]:
        """Characters that complete ``pending`` and can matter (named ones, plus one other)."""
        got = self._pending.get(pending)
        if got is not None:
            return got
        named = self.g.listed | self.fixed_chars
        out = [c for c in sorted(named) if c.encode("utf-8").startswith(pending)]
        todo = [pending]
        while todo:  # depth first, pruned to valid prefixes: the first unnamed completion
            cur = todo.pop()
            try:
                c = cur.decode("utf-8")
            except UnicodeDecodeError as e:
                if e.reason == "unexpected end of data":
                    todo.extend(cur + bytes([x]) for x in range(0xBF, 0x7F, -1))
                continue
            if c not in named:
                out.append(c)
                break
        self._pending[pending] = out
        return out

    # ----- the exact check ---------------------------------------------------------------------
    def _viable(self, row: _Row) -> bool:
        if row.viable is None:
            if row.pending:
                row.viable = any(
                    self._viable(self._advance_char(_Row(row.chart, row.lexes, row.rmask, b""), c))
                    for c in self._pending_chars(row.pending)
                )
            elif not row.chart[-1].items:
                # Inside lexemes only: the answer depends on the open lexemes (their start
                # sets, by identity, fix the chart before them) and the parts' positions,
                # so it is shared by every row that reads on inside the same lexemes.
                key = (row.rmask, *((row.chart[i], t, q) for i, t, q in row.lexes))
                got = self._fmemo.get(key)
                if got is None:
                    if len(self._fmemo) >= 1 << 16:
                        self._fmemo.clear()
                    got = self._fmemo[key] = self._future(row)
                row.viable = got
            else:
                row.viable = self._future(row)
        return row.viable

    def _future(self, row: _Row) -> bool:
        """Whether some continuation in the parts' automaton completes the parse (exact)."""
        g = self.g
        chart = row.chart
        n = len(chart) - 1
        here = self._close(row.rmask)
        done: dict = {}
        work: list = []
        start, final = g.start, self.final_bit

        def add(j: int, A: int, mask: int) -> bool:
            new = mask & ~done.get((j, A), 0)
            if new:
                done[(j, A)] = done.get((j, A), 0) | new
                if A == start and j == 0 and new & final:
                    return True
                work.append((j, A, new))
            return False

        def cont(items, shift: int, mask: int) -> bool:
            for r, d, o in items:
                m = self._seq(g.rhs[r], d + shift, mask)
                if m and add(o, g.lhs[r], m):
                    return True
            return False

        if cont(chart[n].items, 0, here):
            return True
        for i, t, q in row.lexes:
            if i == n:
                continue  # not started: covered by the items at n
            key = (t, q, row.rmask)
            after = self._lex_cache.get(key)
            if after is None:
                after = self._close(self._lex_reach(t, [(r, q) for r in _bits(row.rmask)]))
                self._lex_cache[key] = after
            if not after:
                continue
            src = chart[i]
            if g.terms[t].ignored:
                if cont(src.items, 0, after):
                    return True
            elif cont(src.by_next.get(t, ()), 1, after):
                return True
        while work:
            j, A, delta = work.pop()
            if cont(chart[j].by_next.get(A, ()), 1, delta):
                return True
        return False

    def _accepts(self, row: _Row) -> bool:
        if row.chart is None or row.pending or not row.rmask & self.final_bit:
            return False
        start = self.g.start
        return any(
            o == 0 and d == len(self.g.rhs[r]) and self.g.lhs[r] == start
            for r, d, o in row.chart[-1].items
        )

    # ----- the contract ------------------------------------------------------------------------
    def _row(self, data: bytes) -> _Row:
        """The row after ``data``, walked on from the longest recent prefix memoised."""
        rows = self._rows
        for k in range(len(data), max(-1, len(data) - 9), -1):
            row = rows.get(data[:k])
            if row is not None:
                break
        else:
            k, row = 0, self._root
        row = self._advance_bytes(row, data[k:])
        if len(rows) >= 1 << 16:
            rows.clear()
        rows[data] = row
        return row

    def _prefix(self, context: list[int]) -> float:
        return 0.0 if self._viable(self._row(bytes(context))) else -np.inf

    def _complete(self, context: list[int]) -> float:
        return 0.0 if self._accepts(self._row(bytes(context))) else -np.inf

    def _logw_next(self, context: list[int]) -> np.ndarray:
        return self.init_state(1).advance_all(bytes(context)).logw_next()[0]

    def init_state(self, n: int) -> InfillState:  # noqa: D102
        llg = self.llg.init_state(n) if self.llg is not None else None
        return InfillState(self, [self._root] * n, [[] for _ in range(n)], llg)

    def _token_bytes(self, t: int) -> bytes:
        return self.vocab.tokens[t]

    def _trie(self) -> dict:
        if getattr(self, "_trie_cache", None) is None:
            self._trie_cache = _vocab_trie(self.vocab)
        return self._trie_cache

    def lift(self, vocab: Vocabulary) -> Potential:
        """This constraint over a token vocabulary (a token is the concatenation of its bytes)."""
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"`vocab` is {type(vocab).__name__}; pass a potentia Vocabulary.")
        if vocab == self.vocab:
            return self
        return LiftedInfill(self, vocab)

    # ----- reading the gaps back -----------------------------------------------------------------
    def fillings(self, text: str | bytes) -> list[tuple[str, ...]]:
        """Every way ``text`` splits into the fixed parts and gaps, as tuples of gap texts.

        Args:
            text: A finished output (``str`` or UTF-8 bytes).
        """
        s = text.decode("utf-8", errors="backslashreplace") if isinstance(text, bytes) else text
        out: list[tuple[str, ...]] = []

        def walk(j: int, pos: int, acc: tuple) -> None:
            if j == len(self.parts):
                if pos == len(s):
                    out.append(acc)
                return
            p = self.parts[j]
            if p is not None:
                if s.startswith(p, pos):
                    walk(j + 1, pos + len(p), acc)
                return
            for end in range(pos, len(s) + 1):
                walk(j + 1, end, (*acc, s[pos:end]))

        walk(0, 0, ())
        return out

    def __repr__(self) -> str:
        return f"Infill({self.parts!r})"


class InfillState(PotentialState):
    """Rows of an (optionally lifted) infill constraint: one :class:`_Row` each.

    The llguidance pre-filter, where present, is advanced alongside; a token it rejects is
    rejected without the exact check.
    """

    def __init__(self, potential, rows: list[_Row], contexts: list[list[int]], llg) -> None:
        self.potential = potential
        self.rows = rows
        self._contexts = contexts
        self.llg = llg
        self._mask: np.ndarray | None = None

    @property
    def contexts(self) -> list[list[int]]:  # noqa: D102
        return self._contexts

    def __len__(self) -> int:
        return len(self.rows)

    def _inner(self) -> Infill:
        p = self.potential
        return p.inner if isinstance(p, LiftedInfill) else p

    def advance_all(self, data: bytes) -> InfillState:
        """Row 0 after ``data`` byte by byte (byte-level potentials only; for ``logw_next``)."""
        st = self
        for b in data:
            st = st.advance(np.array([b], dtype=np.int64))
        return st

    def _check(self, r: int, t: int) -> bool:
        inner = self._inner()
        row = inner._advance_bytes(self.rows[r], self.potential._token_bytes(t))
        return row.chart is not None and inner._viable(row)

    def allowed(self) -> np.ndarray:
        """The exact mask: a walk of the vocabulary's byte trie, pruned where a prefix dies.

        Every trie node is one byte step of the row; viability is monotone (a dead prefix has
        no live extension), so a subtree is skipped as soon as its prefix is not viable.
        """
        if self._mask is None:
            p, inner = self.potential, self._inner()
            V = len(p.vocab)
            out = np.zeros((len(self.rows), V + 1), dtype=bool)
            trie = p._trie()
            for r, row in enumerate(self.rows):
                if row.chart is None or not inner._viable(row):
                    continue
                out[r, V] = inner._accepts(row)
                stack = [(trie, row)]
                while stack:
                    node, cur = stack.pop()
                    for b, child in node.items():
                        if b == -1:
                            out[r, child] = True  # tokens whose bytes end here
                            continue
                        nxt = inner._advance_byte(cur, b)
                        if nxt.chart is not None and inner._viable(nxt):
                            stack.append((child, nxt))
            self._mask = out
        return self._mask

    def logw_next(self) -> np.ndarray:  # noqa: D102
        return np.where(self.allowed(), 0.0, -np.inf)

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:  # noqa: D102
        rl = np.asarray(rows, dtype=np.int64)
        tl = np.asarray(tokens, dtype=np.int64)
        if self._mask is not None:
            return np.where(self._mask[rl, tl], 0.0, -np.inf)
        inner, V = self._inner(), len(self.potential.vocab)
        pre = self.llg.logw_tokens(rl, tl) if self.llg is not None else np.zeros(len(rl))
        out = np.full(len(rl), -np.inf)
        for k, (r, t) in enumerate(zip(rl.tolist(), tl.tolist())):
            row = self.rows[r]
            if row.chart is None:
                continue
            if t == V:
                ok = inner._accepts(row)
            else:
                ok = pre[k] == 0.0 and self._check(r, t)
            out[k] = 0.0 if ok else -np.inf
        return out

    def advance(self, tokens: np.ndarray) -> InfillState:  # noqa: D102
        tokens = self._row_tokens(tokens)
        inner, p = self._inner(), self.potential
        rows = [
            inner._advance_bytes(row, p._token_bytes(int(t)))
            for row, t in zip(self.rows, tokens.tolist())
        ]
        ctxs = [c + [int(t)] for c, t in zip(self._contexts, tokens.tolist())]
        llg = self.llg.advance(tokens) if self.llg is not None else None
        return InfillState(p, rows, ctxs, llg)

    def select(self, rows: np.ndarray) -> InfillState:  # noqa: D102
        idx = np.asarray(rows, dtype=np.int64)
        out = InfillState(
            self.potential,
            [self.rows[r] for r in idx.tolist()],
            [list(self._contexts[r]) for r in idx.tolist()],
            self.llg.select(idx) if self.llg is not None else None,
        )
        if self._mask is not None:
            out._mask = self._mask[idx]
        return out

    def prefix(self) -> np.ndarray:  # noqa: D102
        inner = self._inner()
        return np.array([0.0 if inner._viable(r) else -np.inf for r in self.rows])

    def complete(self) -> np.ndarray:  # noqa: D102
        inner = self._inner()
        return np.array([0.0 if inner._accepts(r) else -np.inf for r in self.rows])


class LiftedInfill(Potential):
    """An :class:`Infill` over a token vocabulary (single-token checks: the AWRS path).

    Args:
        inner: The byte-level constraint.
        vocab: The token vocabulary.
    """

    hard = True

    def __init__(self, inner: Infill, vocab: Vocabulary) -> None:
        self.inner, self.vocab = inner, vocab
        self.llg = inner.llg.lift(vocab) if inner.llg is not None else None

    def _token_bytes(self, t: int) -> bytes:
        return self.vocab.tokens[t]

    def _trie(self) -> dict:
        if getattr(self, "_trie_cache", None) is None:
            self._trie_cache = _vocab_trie(self.vocab)
        return self._trie_cache

    def _prefix(self, context: list[int]) -> float:
        return self.inner._prefix(list(self.vocab.decode_bytes(context)))

    def _complete(self, context: list[int]) -> float:
        return self.inner._complete(list(self.vocab.decode_bytes(context)))

    def _logw_next(self, context: list[int]) -> np.ndarray:
        return self.state_from([context]).logw_next()[0]

    def init_state(self, n: int) -> InfillState:  # noqa: D102
        llg = self.llg.init_state(n) if self.llg is not None else None
        return InfillState(self, [self.inner._root] * n, [[] for _ in range(n)], llg)

    def __repr__(self) -> str:
        return f"LiftedInfill({self.inner.parts!r}, {len(self.vocab)} tokens)"


def _vocab_trie(vocab: Vocabulary) -> dict:
    """The byte trie of ``vocab`` (key ``-1`` lists the tokens ending at a node)."""
    trie: dict = {}
    for i, tok in enumerate(vocab.tokens):
        node = trie
        for b in tok:
            node = node.setdefault(b, {})
        node.setdefault(-1, []).append(i)
    return trie


def _check_parts(parts) -> list[str | None]:
    if isinstance(parts, str | bytes) or not isinstance(parts, Sequence):
        raise TypeError(
            f"`parts` is {type(parts).__name__}; pass a list of fixed strings and None for "
            'each gap, e.g. parts=["(", None, ")"].'
        )
    out = list(parts)
    for i, p in enumerate(out):
        if p is not None and not isinstance(p, str):
            raise TypeError(
                f"`parts[{i}]` is {type(p).__name__} ({p!r}); every part is a fixed str or "
                "None (a gap)."
            )
    if not any(p is None for p in out):
        raise ValueError(
            f"`parts` {out!r} has no gap; put None where the model writes, e.g. "
            'parts=["(", None, ")"] (for a fixed text use pt.cfg alone).'
        )
    return out


def infill(grammar: str, parts: Sequence[str | None], prefilter: bool = False) -> Infill:
    """A byte-level hard constraint: fill each gap so the whole text is in ``grammar``.

    The output is ``parts`` with every ``None`` replaced by text the model writes; fixed
    parts are forced byte by byte. The prefix weight is exact: a prefix is allowed iff some
    filling of the rest (the current gap, the later gaps) puts the whole text in the
    grammar's language (see :mod:`potentia.constraints.infill`).

    Args:
        grammar: A Lark grammar (``start: ...``, as :func:`potentia.cfg` takes it).
        parts: Fixed strings and ``None`` for each gap, e.g. ``["[", None, ", 2]"]``.
        prefilter: Check every single-token query with llguidance first (same answers;
            slower on the measured example, see the module docstring).

    Raises:
        TypeError: if ``grammar`` is not a str or ``parts`` is not a list of str/None.
        ValueError: on a malformed grammar, ``parts`` without a gap, or ``parts`` that no
            filling can make valid.

    Example:
        >>> import potentia as pt
        >>> c = pt.infill('start: "(" start ")" | "x"', parts=["((", None, "))"])
        >>> c.complete(list(b"((x))")), c.prefix(list(b"(()")), c.complete(list(b"(())"))
        (0.0, -inf, -inf)
    """
    return Infill(grammar, parts, prefilter)
