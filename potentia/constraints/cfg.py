"""``potentia.cfg``: context-free grammars in Lark syntax or GBNF/EBNF (llama.cpp, GAD).

Lark grammars use llguidance's Lark dialect (``start:`` rule, ``"literals"``,
``/regexes/``, upper-case terminals, ``%ignore``, ``%json``; see llguidance's
``docs/syntax.md``). GBNF/EBNF grammars (``root ::= ...``, as written for llama.cpp and
for grammar-aligned decoding) are parsed with llguidance's GBNF reader, cleaned up, and
converted to Lark.

Prefix exactness. An Earley parser recognises exactly the viable prefixes of a grammar
whose non-terminals all derive some string. For GBNF input we therefore remove
*unproductive* alternatives (those that can never finish, e.g. through a rule that only
recurses) before compiling, so that a prefix is allowed iff some completion is in the
language. A rule that is referenced but never defined is an error by default;
``undefined_rules="empty"`` treats it as matching nothing (the convention that lets
grammars extracted from treebanks, such as GAD's ``CP_*.ebnf``, load). For Lark input the
grammar is passed to llguidance as written; keep every rule productive there.
"""

from __future__ import annotations

import re
from typing import Literal

from llguidance import gbnf_to_lark as _g2l

from potentia.constraints.llg import LLGConstraint
from potentia.potentials.base import Vocabulary

__all__ = ["cfg", "CFG", "gbnf_to_lark"]

Format = Literal["auto", "lark", "gbnf", "ebnf"]


def _productive(node: _g2l.ASTNode, prod: set[str]) -> bool:
    if isinstance(node, _g2l.RuleRefNode):
        return node.name in prod
    if isinstance(node, _g2l.SequenceNode):
        return all(_productive(n, prod) for n in node.nodes)
    if isinstance(node, _g2l.AlternativeNode):
        return any(_productive(n, prod) for n in node.alternatives)
    if isinstance(node, _g2l.RepetitionNode):
        return node.min_times == 0 or _productive(node.node, prod)
    return True  # literals and character classes


def _prune(node: _g2l.ASTNode, prod: set[str]) -> _g2l.ASTNode | None:
    """``node`` without its unproductive alternatives (``None`` if nothing is left)."""
    if isinstance(node, _g2l.RuleRefNode):
        return node if node.name in prod else None
    if isinstance(node, _g2l.SequenceNode):
        parts = [_prune(n, prod) for n in node.nodes]
        return None if any(p is None for p in parts) else _g2l.SequenceNode(parts)
    if isinstance(node, _g2l.AlternativeNode):
        alts = [a for a in (_prune(n, prod) for n in node.alternatives) if a is not None]
        return _g2l.AlternativeNode(alts) if alts else None
    if isinstance(node, _g2l.RepetitionNode):
        inner = _prune(node.node, prod)
        if inner is None:
            return None if node.min_times > 0 else _g2l.SequenceNode([])
        return _g2l.RepetitionNode(inner, node.min_times, node.max_times)
    return node


def _refs(node: _g2l.ASTNode) -> set[str]:
    if isinstance(node, _g2l.RuleRefNode):
        return {node.name}
    out: set[str] = set()
    for c in node.children():
        out |= _refs(c)
    return out


def gbnf_to_lark(text: str, undefined_rules: Literal["error", "empty"] = "error") -> str:
    """Convert a GBNF/EBNF grammar to llguidance Lark, removing unproductive alternatives.

    Args:
        text: The grammar, with a ``root`` rule.
        undefined_rules: ``"error"`` to refuse a reference to an undefined rule, ``"empty"``
            to treat such a rule as matching nothing.

    Raises:
        ValueError: on a syntax error, a missing ``root`` rule, an undefined rule (with
            ``undefined_rules="error"``), or an empty language.
    """
    try:
        rules = _g2l.GrammarParser().parse(text)
    except Exception as e:  # the reader raises bare Exceptions with a position
        raise ValueError(f"`grammar` is not valid GBNF/EBNF: {e}") from e
    if "root" not in rules:
        raise ValueError(
            "`grammar` has no `root` rule; a GBNF/EBNF grammar starts at `root ::= ...`."
        )
    undefined = sorted({r for rule in rules.values() for r in _refs(rule)} - set(rules))
    if undefined and undefined_rules == "error":
        raise ValueError(
            f"`grammar` references undefined rule(s) {undefined}; define them, or pass "
            "`undefined_rules='empty'` to treat undefined rules as matching nothing."
        )
    prod: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, rule in rules.items():
            if name not in prod and _productive(rule.alternatives, prod):
                prod.add(name)
                changed = True
    if "root" not in prod:
        raise ValueError(
            "`grammar` has an empty language: `root` derives no finite string (every "
            "alternative needs an undefined rule or recurses forever)."
        )
    kept: dict[str, _g2l.RuleNode] = {}
    for name, rule in rules.items():
        body = _prune(rule.alternatives, prod) if name in prod else None
        if body is not None:
            rule.alternatives = body
            kept[name] = rule
    try:
        _g2l.resolve(kept)
    except Exception as e:
        raise ValueError(f"`grammar` could not be converted to Lark: {e}") from e
    ordered = sorted(kept.values(), key=lambda r: r.order)
    return "\n\n".join(str(r) for r in ordered) + "\n"


def _is_gbnf(text: str) -> bool:
    return "::=" in text and re.search(r"(?m)^\s*start\s*:", text) is None


class CFG(LLGConstraint):
    """A context-free grammar constraint (see the module docstring).

    Args:
        grammar: The grammar text.
        format: ``"lark"``, ``"gbnf"`` (alias ``"ebnf"``) or ``"auto"`` (GBNF iff the text
            uses ``::=``).
        undefined_rules: For GBNF: ``"error"`` or ``"empty"`` (see :func:`gbnf_to_lark`).
        vocab: The vocabulary (default: bytes; use :meth:`lift` for a token vocabulary).
    """

    def __init__(
        self,
        grammar: str,
        format: Format = "auto",
        undefined_rules: Literal["error", "empty"] = "error",
        vocab: Vocabulary | None = None,
    ) -> None:
        if not isinstance(grammar, str):
            raise TypeError(f"`grammar` is {type(grammar).__name__}; pass the grammar text.")
        if format not in ("auto", "lark", "gbnf", "ebnf"):
            raise ValueError(f"`format` is {format!r}; use 'auto', 'lark', 'gbnf' or 'ebnf'.")
        if undefined_rules not in ("error", "empty"):
            raise ValueError(f"`undefined_rules` is {undefined_rules!r}; use 'error' or 'empty'.")
        gbnf = format in ("gbnf", "ebnf") or (format == "auto" and _is_gbnf(grammar))
        self.grammar_text, self.format = grammar, "gbnf" if gbnf else "lark"
        lark = gbnf_to_lark(grammar, undefined_rules) if gbnf else grammar
        if not gbnf and re.search(r"(?m)^\s*start\s*:", lark) is None:
            raise ValueError(
                "`grammar` has no `start` rule; a Lark grammar starts at `start: ...` "
                "(for GBNF, write `root ::= ...`)."
            )
        super().__init__(lark, vocab, name="cfg")


def cfg(
    grammar: str,
    format: Format = "auto",
    undefined_rules: Literal["error", "empty"] = "error",
) -> CFG:
    """A byte-level hard constraint: the whole output must be derivable from ``grammar``.

    ``constraint.lift(lm.vocab)`` (done automatically by :func:`potentia.sample`) gives the
    fast token-level constraint; terminals may span token boundaries and tokens may end
    inside a UTF-8 character.

    Args:
        grammar: A Lark grammar (``start: ...``) or a GBNF/EBNF grammar (``root ::= ...``).
        format: ``"auto"`` (default), ``"lark"``, ``"gbnf"`` or ``"ebnf"``.
        undefined_rules: For GBNF: ``"error"`` (default) to refuse references to undefined
            rules, ``"empty"`` to treat them as matching nothing.

    Raises:
        ValueError: on a syntax error, an undefined rule, a missing start rule or an empty
            language.

    Example:
        >>> import potentia as pt
        >>> c = pt.cfg('root ::= "(" root ")" | "x"')
        >>> c.complete(list(b"((x))")), c.prefix(list(b"((x)"))
        (0.0, 0.0)
    """
    return CFG(grammar, format, undefined_rules)
