r"""``potentia.regex``: the whole output must match a Python regular expression.

The pattern is parsed with Python's own regex parser and translated node by node into the
regex syntax of llguidance, so the language is Python's: a string is accepted iff
``re.fullmatch(pattern, string)`` matches. Every character class (``\w``, ``[^a-z]``,
``.``, case-insensitive letters, ...) is expanded to the exact set of code points Python
matches, by running Python's matcher once over all of Unicode; the finished string is
checked with ``re.fullmatch`` again at EOS.

Constructs whose meaning is not a regular language over the whole output are refused with
a ``ValueError``: back-references, look-around, ``\b``/``\B``, conditionals, possessive
repeats and atomic groups, and anchors anywhere but the start or end of the pattern.
"""

from __future__ import annotations

import functools
import re

try:  # Python >= 3.11
    import re._constants as _c  # type: ignore[import-not-found]
    import re._parser as _p  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]

from potentia.constraints.llg import LLGConstraint
from potentia.potentials.base import Vocabulary

__all__ = ["regex", "Regex", "python_regex_to_llg"]

_SURR_LO, _SURR_HI = 0xD800, 0xDFFF
_MAX = 0x10FFFF
_CATS = {
    _c.CATEGORY_DIGIT: r"\d",
    _c.CATEGORY_NOT_DIGIT: r"\D",
    _c.CATEGORY_SPACE: r"\s",
    _c.CATEGORY_NOT_SPACE: r"\S",
    _c.CATEGORY_WORD: r"\w",
    _c.CATEGORY_NOT_WORD: r"\W",
}
_FLAG_BITS = re.IGNORECASE | re.ASCII | re.DOTALL | re.LOCALE | re.UNICODE


@functools.lru_cache(maxsize=1)
def _all_chars() -> str:
    """Every Unicode scalar value (no surrogates), in code-point order."""
    return "".join(map(chr, range(_SURR_LO))) + "".join(map(chr, range(_SURR_HI + 1, _MAX + 1)))


@functools.lru_cache(maxsize=4096)
def _char_ranges(py_class: str, flags: int) -> tuple[tuple[int, int], ...]:
    """Code-point ranges matched by a one-character Python pattern ``py_class``."""
    pat = re.compile(f"(?:{py_class})+", flags)
    out: list[tuple[int, int]] = []
    for m in pat.finditer(_all_chars()):
        lo, hi = ord(m.group()[0]), ord(m.group()[-1])
        if lo < _SURR_LO <= hi:
            out += [(lo, _SURR_LO - 1), (_SURR_HI + 1, hi)]
        else:
            out.append((lo, hi))
    return tuple(out)


def _esc(cp: int) -> str:
    ch = chr(cp)
    return ch if ch.isascii() and ch.isalnum() else f"\\x{{{cp:X}}}"


def _class(ranges: tuple[tuple[int, int], ...]) -> str:
    """An llguidance character class for ``ranges`` (the shorter of it and its negation)."""
    if not ranges:
        return "[^\\x{0}-\\x{10FFFF}]"  # matches nothing
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _esc(ranges[0][0])
    comp: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in ranges:
        if lo > nxt and not (nxt == _SURR_HI + 1 and lo == nxt):
            comp.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX:
        comp.append((nxt, _MAX))
    comp = [(lo, hi) for lo, hi in comp if not (lo >= _SURR_LO and hi <= _SURR_HI)]

    def body(rs: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> str:
        return "".join(_esc(lo) if lo == hi else f"{_esc(lo)}-{_esc(hi)}" for lo, hi in rs)

    if len(comp) < len(ranges):
        return f"[^{body(comp)}]" if comp else "[\\x{0}-\\x{10FFFF}]"
    return f"[{body(ranges)}]"


def _refuse(pattern: str, what: str, fix: str) -> ValueError:
    return ValueError(f"`pattern` {pattern!r} uses {what}, which potentia.regex cannot {fix}.")


class _Translator:
    """Translate a parsed Python pattern into llguidance regex syntax."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def seq(self, items: list, flags: int, top: bool = False) -> str:
        items = list(items)
        if top:  # anchors at the very start / end are no-ops under full-match semantics
            while (
                items
                and items[0][0] is _c.AT
                and items[0][1]
                in (
                    _c.AT_BEGINNING,
                    _c.AT_BEGINNING_STRING,
                )
            ):
                items.pop(0)
            while (
                items
                and items[-1][0] is _c.AT
                and items[-1][1]
                in (
                    _c.AT_END,
                    _c.AT_END_STRING,
                )
            ):
                items.pop()
        return "".join(self.node(op, av, flags, top and len(items) == 1) for op, av in items)

    def node(self, op, av, flags: int, top: bool) -> str:  # noqa: C901
        if op is _c.LITERAL:
            if flags & re.IGNORECASE:
                return _class(_char_ranges(re.escape(chr(av)), flags & _FLAG_BITS))
            return _esc(av)
        if op is _c.NOT_LITERAL:
            return _class(_char_ranges("[^" + re.escape(chr(av)) + "]", flags & _FLAG_BITS))
        if op is _c.ANY:
            return _class(_char_ranges(".", flags & _FLAG_BITS))
        if op is _c.IN:
            return _class(_char_ranges(self.py_set(av), flags & _FLAG_BITS))
        if op is _c.BRANCH:
            return "(?:" + "|".join(self.seq(alt, flags, top) for alt in av[1]) + ")"
        if op is _c.SUBPATTERN:
            _group, add, dele, sub = av
            return "(?:" + self.seq(sub, (flags | add) & ~dele, top) + ")"
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            lo, hi, sub = av
            inner = "(?:" + self.seq(sub, flags) + ")"
            if hi is _c.MAXREPEAT:
                return f"{inner}{{{lo},}}"
            return f"{inner}{{{lo},{hi}}}"
        if op is _c.AT:
            raise _refuse(
                self.pattern,
                f"the anchor {op!s}:{av!s} inside the pattern",
                "express as a whole-output match; anchors are only allowed at the very start "
                "or end (the whole output is always matched)",
            )
        names = {
            "GROUPREF": "a back-reference",
            "GROUPREF_EXISTS": "a conditional group",
            "ASSERT": "a look-ahead/look-behind",
            "ASSERT_NOT": "a negative look-around",
            "POSSESSIVE_REPEAT": "a possessive repeat",
            "ATOMIC_GROUP": "an atomic group",
        }
        what = names.get(str(op), f"the construct {op}")
        raise _refuse(
            self.pattern, what, "express as a regular language; rewrite it without that construct"
        )

    def py_set(self, items: list) -> str:
        """Re-serialise an ``IN`` node as a Python character class."""
        parts = []
        neg = ""
        for op, av in items:
            if op is _c.NEGATE:
                neg = "^"
            elif op is _c.LITERAL:
                parts.append(re.escape(chr(av)))
            elif op is _c.RANGE:
                parts.append(f"{re.escape(chr(av[0]))}-{re.escape(chr(av[1]))}")
            elif op is _c.CATEGORY:
                parts.append(_CATS[av])
            else:  # pragma: no cover - sre_parse emits nothing else inside IN
                raise _refuse(self.pattern, f"the class item {op}", "translate")
        return f"[{neg}{''.join(parts)}]"


def python_regex_to_llg(pattern: str, flags: int = 0) -> str:
    """Translate a Python regex into an equivalent llguidance (Rust-syntax) regex.

    Args:
        pattern: A Python regular expression (matched against the whole output).
        flags: ``re`` flags (``re.IGNORECASE``, ``re.DOTALL``, ``re.ASCII``, ...).

    Raises:
        ValueError: if the pattern is malformed or uses a non-regular construct.
    """
    if not isinstance(pattern, str):
        raise TypeError(
            f"`pattern` is {type(pattern).__name__}; pass the regular expression as a str."
        )
    try:
        re.compile(pattern, flags)
        parsed = _p.parse(pattern, flags)
    except re.error as e:
        raise ValueError(f"`pattern` {pattern!r} is not a valid regular expression: {e}.") from e
    st = parsed.state if hasattr(parsed, "state") else parsed.pattern
    return _Translator(pattern).seq(list(parsed), st.flags | flags, top=True)


class Regex(LLGConstraint):
    """The whole output must match a Python regular expression (see the module docstring).

    Args:
        pattern: The regular expression.
        flags: ``re`` flags.
        vocab: The vocabulary (default: bytes; use :meth:`lift` for a token vocabulary).
    """

    def __init__(self, pattern: str, flags: int = 0, vocab: Vocabulary | None = None) -> None:
        rx = python_regex_to_llg(pattern, flags)
        self.pattern, self.flags = pattern, flags
        compiled = re.compile(pattern, flags)

        def check(data: bytes) -> bool:
            try:
                return compiled.fullmatch(data.decode("utf-8")) is not None
            except UnicodeDecodeError:
                return False

        super().__init__(f"start: /{rx}/", vocab, check=check, name=f"regex({pattern!r})")


def regex(pattern: str, flags: int = 0) -> Regex:
    r"""A byte-level hard constraint: the whole output must match ``pattern``.

    ``constraint.lift(lm.vocab)`` (done automatically by :func:`potentia.sample`) gives the
    fast token-level constraint.

    Args:
        pattern: A Python regular expression, matched against the whole output
            (``re.fullmatch`` semantics).
        flags: ``re`` flags, e.g. ``re.IGNORECASE``.

    Raises:
        TypeError: if ``flags`` is not an int of ``re`` flags.
        ValueError: if the pattern is malformed, uses a non-regular construct
            (back-references, look-around, ``\b``, ...) or matches no string, or
            ``flags`` holds a flag other than ``re.IGNORECASE``, ``re.MULTILINE``,
            ``re.DOTALL``, ``re.VERBOSE``, ``re.ASCII``, ``re.UNICODE``.

    Examples:
        >>> import potentia as pt
        >>> c = pt.regex(r"[A-Z][a-z]+ \d{2}")
        >>> c.complete(list(b"Bob 42"))
        0.0
    """
    if isinstance(flags, bool) or not isinstance(flags, int):
        raise TypeError(
            f"`flags` is {flags!r}; pass re flags such as re.IGNORECASE (combine them with |)."
        )
    if flags & ~_PUBLIC_FLAGS:
        raise ValueError(
            f"`flags` is {flags!r}: only re.IGNORECASE, re.MULTILINE, re.DOTALL, re.VERBOSE, "
            "re.ASCII and re.UNICODE are supported (re.LOCALE needs bytes patterns, re.DEBUG "
            "prints); drop the others."
        )
    return Regex(pattern, flags)


_PUBLIC_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE | re.ASCII | re.UNICODE
