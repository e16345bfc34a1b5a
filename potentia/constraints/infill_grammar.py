"""The grammar side of :mod:`potentia.constraints.infill`: a Lark grammar as integer rules.

:class:`Grammar` reads a Lark grammar with ``lark`` (EBNF expanded to plain rules), keeps
the productive rules, and compiles every terminal's regex to a trimmed automaton over
characters with ``interegular`` (:class:`Term`). :meth:`Grammar.llg_text` writes the same
language as a scannerless llguidance grammar (one-character lexemes), the infill
constraint's optional native pre-filter.
"""

from __future__ import annotations

__all__ = ["Grammar", "Term", "bits"]


def bits(m: int):
    """The indices of the set bits of ``m``, lowest first."""
    while m:
        low = m & -m
        yield low.bit_length() - 1
        m ^= low


class Term:
    """A terminal as a trimmed DFA over characters (from ``interegular``)."""

    def __init__(self, name: str, regex: str, ignored: bool) -> None:
        from interegular import parse_pattern
        from interegular.fsm import anything_else

        try:
            fsm = parse_pattern(regex).to_fsm()
        except Exception as e:  # interegular raises its own errors on unsupported syntax
            raise ValueError(
                f"`grammar`: terminal {name} /{regex}/ cannot be compiled to an automaton "
                f"({type(e).__name__}: {e}); use plain regex syntax (no look-around or "
                "backreferences)."
            ) from None
        self.name, self.regex, self.ignored = name, regex, ignored
        mapping = dict(fsm.alphabet._symbol_mapping)
        self.else_cls = mapping.pop(anything_else, None)
        self.cmap: dict[str, int] = mapping
        # keep the states that can reach a final one; renumber from the initial state
        states = list(fsm.states)
        back: dict = {s: set() for s in states}
        for s in states:
            for s2 in fsm.map.get(s, {}).values():
                back.setdefault(s2, set()).add(s)
        live, stack = set(fsm.finals), list(fsm.finals)
        while stack:
            for s in back.get(stack.pop(), ()):
                if s not in live:
                    live.add(s)
                    stack.append(s)
        if fsm.initial not in live:
            raise ValueError(f"`grammar`: terminal {name} /{regex}/ matches no string.")
        if fsm.initial in fsm.finals:
            raise ValueError(
                f"`grammar`: terminal {name} /{regex}/ matches the empty string; lexemes are "
                "non-empty here: make the terminal non-empty and its use optional in the rules."
            )
        order = [fsm.initial] + sorted((s for s in live if s != fsm.initial), key=str)
        ix = {s: i for i, s in enumerate(order)}
        self.trans: list[dict[int, int]] = [
            {c: ix[s2] for c, s2 in fsm.map.get(s, {}).items() if s2 in live} for s in order
        ]
        self.final = [s in fsm.finals for s in order]
        self.classes = sorted({c for row in self.trans for c in row})

    def step(self, q: int, ch: str) -> int:
        """The state after character ``ch`` from state ``q`` (``-1``: dead)."""
        c = self.cmap.get(ch, self.else_cls)
        return -1 if c is None else self.trans[q].get(c, -1)

    def class_regex(self, c: int) -> str:
        """A one-character Rust regex for class ``c`` (for the llguidance grammar)."""
        if c == self.else_cls:
            listed = "".join(f"\\x{{{ord(ch):x}}}" for ch in sorted(self.cmap))
            return f"/[^{listed}]/" if listed else "/(?s:.)/"
        chars = "".join(f"\\x{{{ord(ch):x}}}" for ch, k in sorted(self.cmap.items()) if k == c)
        return f"/[{chars}]/"


class Grammar:
    """A Lark grammar as integer rules over terminals ``0..T-1`` and non-terminals ``T..``."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"`grammar` is {type(text).__name__}; pass the Lark grammar text.")
        from lark import Lark
        from lark.exceptions import LarkError

        try:
            lk = Lark(text, parser="earley", lexer="dynamic", start="start")
        except LarkError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"`grammar` is not a valid Lark grammar with a `start` rule ({first}); write "
                'it as pt.cfg takes Lark grammars (start: ..., "literals", /regexes/, '
                "%ignore)."
            ) from None
        ignored = set(lk.ignore_tokens)
        used = {s.name for r in lk.rules for s in r.expansion if s.is_term} | ignored
        defs = {t.name: t for t in lk.terminals}
        self.terms = [
            Term(n, defs[n].pattern.to_regexp(), n in ignored) for n in sorted(used, key=str)
        ]
        T = self.T = len(self.terms)
        tix = {t.name: i for i, t in enumerate(self.terms)}
        names = sorted({r.origin.name for r in lk.rules}, key=str)
        nix = {n: T + i for i, n in enumerate(names)}
        rules = []
        for r in lk.rules:
            rhs = []
            for s in r.expansion:
                if s.is_term:
                    rhs.append(tix[s.name])
                elif s.name in nix:
                    rhs.append(nix[s.name])
                else:  # a rule referenced but never defined derives nothing
                    rhs = None
                    break
            if rhs is not None:
                rules.append((nix[r.origin.name], tuple(rhs)))
        # keep productive rules only (Earley's prefixes are exact only then)
        prod: set[int] = set()
        changed = True
        while changed:
            changed = False
            for A, rhs in rules:
                if A not in prod and all(s < T or s in prod for s in rhs):
                    prod.add(A)
                    changed = True
        self.start = nix.get("start")
        if self.start is None or self.start not in prod:
            raise ValueError("`grammar` has an empty language: `start` derives no finite string.")
        rules = sorted({(A, rhs) for A, rhs in rules if all(s < T or s in prod for s in rhs)})
        self.lhs = [A for A, _ in rules]
        self.rhs = [rhs for _, rhs in rules]
        self.n_sym = T + len(names)
        self.rules_of: dict[int, list[int]] = {}
        for i, A in enumerate(self.lhs):
            self.rules_of.setdefault(A, []).append(i)
        self.nullable: set[int] = set()
        changed = True
        while changed:
            changed = False
            for A, rhs in rules:
                if A not in self.nullable and all(s in self.nullable for s in rhs):
                    self.nullable.add(A)
                    changed = True
        self.ignored = [i for i, t in enumerate(self.terms) if t.ignored]
        self.listed = {ch for t in self.terms for ch in t.cmap}

    def llg_text(self) -> str:
        """The same language as a scannerless llguidance grammar (one-character lexemes)."""
        out = []
        ig = " ig" if self.ignored else ""
        out.append(f"start: {ig.strip()} n{self.start}".replace(":  ", ": "))
        for A in sorted(self.rules_of):
            alts = []
            for r in self.rules_of[A]:
                syms = [f"tt{s}" if s < self.T else f"n{s}" for s in self.rhs[r]]
                alts.append(" ".join(syms) if syms else '""')
            out.append(f"n{A}: " + " | ".join(alts))
        for i, t in enumerate(self.terms):
            if not t.ignored:
                out.append(f"tt{i}: t{i}q0{ig}")
            for q, row in enumerate(t.trans):
                alts = []
                for c, q2 in sorted(row.items()):
                    rx = t.class_regex(c)
                    if t.trans[q2]:
                        alts.append(f"{rx} t{i}q{q2}")
                    if t.final[q2]:
                        alts.append(rx)
                if alts:
                    out.append(f"t{i}q{q}: " + " | ".join(alts))
        if self.ignored:
            out.append("ig: (" + " | ".join(f"t{i}q0" for i in self.ignored) + ")*")
        return "\n".join(out) + "\n"
