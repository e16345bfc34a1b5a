r"""Templates: literal text with typed holes, one byte-level hard constraint.

``template("Name: {name}\nAge: {age}\n", name=regex(...), age=json({"type": "integer"}))``
accepts exactly the strings ``L0 v1 L1 v2 L2`` where the ``L`` are the literal parts (UTF-8
bytes; ``{{`` and ``}}`` stand for braces) and each hole value ``v_k`` is a **complete string
of its own constraint** (``hole.complete(v_k) == 0``). That is the concatenation of the
parts' languages, nothing more and nothing less.

**Where a hole ends.** Nowhere is a boundary guessed: the constraint follows *every* way of
splitting the text read so far into parts at once (a set of parses, like a
nondeterministic automaton), so a hole whose language can contain the following literal
(a hole ``[a-z\n]+`` before ``"\n"``) is handled exactly. A prefix is viable iff some parse
is: it sits inside a literal, or inside a hole whose prefix is viable (every hole's
language is non-empty, checked when the template is built). The prefix is therefore exact
whenever the holes' prefixes are (llguidance regexes are; JSON keywords checked only on the
finished value make a hole's prefix, and so the template's, a superset, as in
:mod:`potentia.constraints.json_schema`). If more than ``max_parses`` parses are alive at
once the constraint raises instead of slowing down without bound.

:meth:`Template.fields` parses a finished text back into its named fields; a text with two
valid parses is refused there (``ValueError``, with :meth:`Template.parses` listing all).

**Token level.** :meth:`Template.lift` gives a potential over a token vocabulary whose state
checks one token in O(len(token) x parses) byte steps (the AWRS path), and builds a full
mask by walking the vocabulary's byte trie with the parse set, pruning dead branches.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from potentia.potentials.base import Potential, PotentialState, Vocabulary, as_potential

__all__ = ["Template", "template"]

_BYTES = Vocabulary.bytes256()


class _Hole:
    """A one-row state of a hole's constraint with its byte mask computed once."""

    __slots__ = ("state", "_mask")

    def __init__(self, state: PotentialState) -> None:
        self.state = state
        self._mask: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """Allowed bytes and EOS (last) after the hole's bytes so far."""
        if self._mask is None:
            self._mask = np.asarray(self.state.allowed()[0], dtype=bool)
        return self._mask

    def viable(self) -> bool:
        return bool(self.state.prefix()[0] > -np.inf)

    def advance(self, b: int) -> _Hole:
        return _Hole(self.state.advance(np.array([b], dtype=np.int64)))


class Template(Potential):
    """A byte-level hard constraint: literal parts with typed holes (see the module docstring).

    Build it with :func:`template`.

    Args:
        literals: The ``n + 1`` literal byte strings around the ``n`` holes.
        names: The ``n`` hole names, in order.
        holes: The ``n`` hole constraints (hard potentials over bytes).
        max_parses: Most simultaneous parses before a ``ValueError``.
    """

    hard = True

    def __init__(
        self,
        literals: Sequence[bytes],
        names: Sequence[str],
        holes: Sequence[Potential],
        max_parses: int = 64,
    ) -> None:
        if len(literals) != len(holes) + 1 or len(names) != len(holes):
            raise ValueError("`literals` must have one entry more than `holes` and `names`.")
        self.vocab = _BYTES
        self.literals = [bytes(x) for x in literals]
        self.names = list(names)
        self.holes = list(holes)
        self.max_parses = int(max_parses)
        self._fresh = [_Hole(h.init_state(1)) for h in self.holes]

    # ----- parses ------------------------------------------------------------------
    # A parse is ("L", i, j, spans): at byte j of literal i; ("H", k, state, start, spans):
    # inside hole k, which began at byte ``start``; or ("E", spans): the whole template read.
    # ``spans`` are the (start, end) byte offsets of the holes closed so far.
    def _close(self, cfg: tuple, pos: int, out: list) -> None:
        """Add ``cfg`` and everything reachable from it without reading a byte to ``out``."""
        if cfg[0] == "L":
            _, i, j, spans = cfg
            if j < len(self.literals[i]):
                out.append(cfg)
            elif i == len(self.holes):
                out.append(("E", spans))
            else:
                self._close(("H", i, self._fresh[i], pos, spans), pos, out)
        elif cfg[0] == "H":
            _, k, st, start, spans = cfg
            if not st.viable():
                return
            out.append(cfg)
            if st.mask[256]:
                self._close(("L", k + 1, 0, (*spans, (start, pos))), pos, out)
        else:
            out.append(cfg)

    def _dedupe(self, cfgs: list, keep_spans: bool) -> list:
        # Parses in one literal at one offset, in one hole opened at one offset, or at the
        # end have the same future and are merged (unless their spans are wanted).
        seen, out = set(), []
        for c in cfgs:
            if c[0] == "H":
                key = ("H", c[1], c[3], c[4] if keep_spans else None)
            elif c[0] == "L":
                key = ("L", c[1], c[2], c[3] if keep_spans else None)
            else:
                key = ("E", c[1] if keep_spans else None)
            if key not in seen:
                seen.add(key)
                out.append(c)
        if len(out) > self.max_parses:  # counted after merging
            raise ValueError(
                f"the template has {len(out)} live parses of one prefix (more than "
                f"`max_parses`={self.max_parses}): a hole's language overlaps the literal "
                "after it many times over. Make the hole exclude that literal, or raise "
                "`max_parses`."
            )
        return out

    def _start(self, keep_spans: bool = False) -> list:
        out: list = []
        self._close(("L", 0, 0, ()), 0, out)
        return self._dedupe(out, keep_spans)

    def _step(self, cfgs: list, b: int, pos: int, keep_spans: bool = False) -> list:
        """The parses after reading byte ``b`` (at offset ``pos``) from ``cfgs``."""
        out: list = []
        for c in cfgs:
            if c[0] == "L":
                if self.literals[c[1]][c[2]] == b:
                    self._close(("L", c[1], c[2] + 1, c[3]), pos + 1, out)
            elif c[0] == "H":
                if c[2].mask[b]:
                    self._close(("H", c[1], c[2].advance(b), c[3], c[4]), pos + 1, out)
        return self._dedupe(out, keep_spans)

    def _run(self, data: bytes, keep_spans: bool = False) -> list:
        cfgs = self._start(keep_spans)
        for pos, b in enumerate(data):
            if not cfgs:
                break
            cfgs = self._step(cfgs, b, pos, keep_spans)
        return cfgs

    def _allowed_bytes(self, cfgs: list) -> np.ndarray:
        """Boolean mask over the 256 bytes and EOS (last)."""
        out = np.zeros(257, dtype=bool)
        for c in cfgs:
            if c[0] == "L":
                out[self.literals[c[1]][c[2]]] = True
            elif c[0] == "H":
                out[:256] |= c[2].mask[:256]
            else:
                out[256] = True
        return out

    # ----- the contract ----------------------------------------------------------------
    def _prefix(self, context: list[int]) -> float:
        return 0.0 if self._run(bytes(context)) else -np.inf

    def _complete(self, context: list[int]) -> float:
        return 0.0 if any(c[0] == "E" for c in self._run(bytes(context))) else -np.inf

    def _logw_next(self, context: list[int]) -> np.ndarray:
        return np.where(self._allowed_bytes(self._run(bytes(context))), 0.0, -np.inf)

    def init_state(self, n: int) -> PotentialState:  # noqa: D102
        start = self._start()
        return _TemplateState(self, [[] for _ in range(n)], [start] * n, [0] * n)

    def _mask(self, cfgs: list, pos: int) -> np.ndarray:
        return self._allowed_bytes(cfgs)

    def _advance(self, cfgs: list, t: int, pos: int) -> tuple[list, int]:
        return (self._step(cfgs, t, pos) if cfgs else cfgs), pos + 1

    def lift(self, vocab: Vocabulary) -> Potential:
        """This template over a token vocabulary (single-token checks in O(len(token)))."""
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"`vocab` is {type(vocab).__name__}; pass a potentia Vocabulary.")
        if vocab == self.vocab:
            return self
        return LiftedTemplate(self, vocab)

    # ----- reading fields back ----------------------------------------------------------
    def parses(self, text: str | bytes) -> list[dict[str, str]]:
        """Every way ``text`` splits into the template's parts, as ``{name: value}`` dicts.

        Args:
            text: A finished output (``str`` is UTF-8 encoded).
        """
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        out = []
        for c in self._run(data, keep_spans=True):
            if c[0] == "E":
                out.append(
                    {
                        name: data[s:e].decode("utf-8", errors="backslashreplace")
                        for name, (s, e) in zip(self.names, c[1])
                    }
                )
        return out

    def fields(self, text: str | bytes) -> dict[str, str]:
        """The named hole values of a finished ``text`` (e.g. ``tpl.fields(out.texts[i])``).

        Raises:
            ValueError: if ``text`` is not in the template's language, or splits into the
                parts in more than one way (see :meth:`parses`).
        """
        found = self.parses(text)
        if not found:
            raise ValueError(
                f"`text` {text!r} does not match the template; only finished outputs of this "
                "template (status 'finished') can be parsed into fields."
            )
        if len(found) > 1:
            raise ValueError(
                f"`text` {text!r} splits into the template's parts in {len(found)} ways "
                f"({found[:3]}...); use `parses(text)` to see them all."
            )
        return found[0]

    def fields_of(self, result: Any) -> list[dict[str, str] | None]:
        """The fields of every particle of a :class:`~potentia.Result` (``None`` if unfinished).

        Args:
            result: A result whose ``texts`` and ``status`` line up (any engine's).
        """
        return [
            self.fields(t) if s == "finished" else None for t, s in zip(result.texts, result.status)
        ]

    def __repr__(self) -> str:
        return f"Template({self.names})"


class _TemplateState(PotentialState):
    """Rows of a (lifted) template: the parse set of every row's prefix."""

    def __init__(
        self, potential, contexts: list[list[int]], cfgs: list[list], pos: list[int]
    ) -> None:
        self.potential = potential
        self._contexts = contexts
        self.cfgs = cfgs
        self.pos = pos  # byte length of every row's context
        self._mask: np.ndarray | None = None

    @property
    def contexts(self) -> list[list[int]]:  # noqa: D102
        return self._contexts

    def __len__(self) -> int:
        return len(self.cfgs)

    def allowed(self) -> np.ndarray:  # noqa: D102
        if self._mask is None:
            self._mask = (
                np.stack([self.potential._mask(c, n) for c, n in zip(self.cfgs, self.pos)])
                if self.cfgs
                else (np.zeros((0, len(self.potential.vocab) + 1), dtype=bool))
            )
        return self._mask

    def logw_next(self) -> np.ndarray:  # noqa: D102
        return np.where(self.allowed(), 0.0, -np.inf)

    def logw_tokens(self, rows: np.ndarray, tokens: np.ndarray) -> np.ndarray:  # noqa: D102
        if self._mask is not None:
            return np.where(self._mask[np.asarray(rows), np.asarray(tokens)], 0.0, -np.inf)
        p = self.potential
        V = len(p.vocab)
        out = []
        for r, t in zip(np.asarray(rows).tolist(), np.asarray(tokens).tolist()):
            cfgs = self.cfgs[r]
            if t == V:
                ok = any(c[0] == "E" for c in cfgs)
            else:
                ok = bool(p._advance(cfgs, t, self.pos[r])[0])
            out.append(0.0 if ok else -np.inf)
        return np.array(out, dtype=float)

    def advance(self, tokens: np.ndarray) -> _TemplateState:  # noqa: D102
        tokens = self._row_tokens(tokens)
        p = self.potential
        new = [p._advance(c, int(t), n) for c, t, n in zip(self.cfgs, tokens, self.pos)]
        ctxs = [c + [int(t)] for c, t in zip(self._contexts, tokens)]
        return _TemplateState(p, ctxs, [x[0] for x in new], [x[1] for x in new])

    def select(self, rows: np.ndarray) -> _TemplateState:  # noqa: D102
        rows = np.asarray(rows, dtype=np.int64).tolist()
        out = _TemplateState(
            self.potential,
            [list(self._contexts[r]) for r in rows],
            [self.cfgs[r] for r in rows],
            [self.pos[r] for r in rows],
        )
        if self._mask is not None:
            out._mask = self._mask[rows]
        return out

    def prefix(self) -> np.ndarray:  # noqa: D102
        return np.array([0.0 if c else -np.inf for c in self.cfgs])

    def complete(self) -> np.ndarray:  # noqa: D102
        return np.array([0.0 if any(x[0] == "E" for x in c) else -np.inf for c in self.cfgs])


class LiftedTemplate(Potential):
    """A :class:`Template` over a token vocabulary: a token is the concatenation of its bytes.

    Args:
        inner: The byte-level template.
        vocab: The token vocabulary.
    """

    hard = True

    def __init__(self, inner: Template, vocab: Vocabulary) -> None:
        self.inner, self.vocab = inner, vocab
        self._trie: dict | None = None

    def _bytes(self, context: list[int]) -> bytes:
        return self.vocab.decode_bytes(context)

    def _prefix(self, context: list[int]) -> float:
        return self.inner._prefix(list(self._bytes(context)))

    def _complete(self, context: list[int]) -> float:
        return self.inner._complete(list(self._bytes(context)))

    def _logw_next(self, context: list[int]) -> np.ndarray:
        data = self._bytes(context)
        return np.where(self._mask(self.inner._run(data), len(data)), 0.0, -np.inf)

    def init_state(self, n: int) -> PotentialState:  # noqa: D102
        start = self.inner._start()
        return _TemplateState(self, [[] for _ in range(n)], [start] * n, [0] * n)

    def _advance(self, cfgs: list, t: int, pos: int) -> tuple[list, int]:
        for b in self.vocab.tokens[t]:
            if not cfgs:
                break
            cfgs = self.inner._step(cfgs, b, pos)
            pos += 1
        return cfgs, pos

    def _build_trie(self) -> dict:
        root: dict = {}
        for i, tok in enumerate(self.vocab.tokens):
            node = root
            for b in tok:
                node = node.setdefault(b, {})
            node.setdefault(-1, []).append(i)
        return root

    def _mask(self, cfgs: list, pos: int) -> np.ndarray:
        """Allowed tokens (and EOS, last) from parse set ``cfgs``: a pruned trie walk."""
        if self._trie is None:
            self._trie = self._build_trie()
        V = len(self.vocab)
        out = np.zeros(V + 1, dtype=bool)
        if not cfgs:
            return out
        out[V] = any(c[0] == "E" for c in cfgs)
        inner = self.inner
        stack = [(self._trie, cfgs, pos)]
        while stack:
            node, cur, at = stack.pop()
            ok = inner._allowed_bytes(cur)
            for b, child in node.items():
                if b == -1:
                    out[child] = True  # tokens whose bytes end at this node
                elif ok[b]:
                    stack.append((child, inner._step(cur, b, at), at + 1))
        return out

    def __repr__(self) -> str:
        return f"LiftedTemplate({self.inner.names}, {len(self.vocab)} tokens)"


def template(text: str, /, max_parses: int = 64, **holes: Potential) -> Template:
    r"""A byte-level hard constraint: ``text`` with each ``{name}`` filled by its constraint.

    Each hole's value must be a complete string of its constraint; literal text is matched
    byte by byte (``{{`` and ``}}`` are literal braces). Every split of the output into
    parts is followed at once, so holes that can contain the next literal are exact (see the
    module docstring). ``tpl.fields(text)`` reads the named values back.

    Args:
        text: The template, in ``str.format`` syntax with bare names (``{name}``).
        max_parses: Most simultaneous parses of one prefix before a ``ValueError``.
        **holes: One byte-level hard constraint per hole name (``regex``, ``json``, ``cfg``,
            ``template``, ...).

    Raises:
        ValueError: on a malformed template, a hole without a constraint (or a constraint
            without a hole), a repeated hole, or a hole whose language is empty.
        TypeError: if a hole's constraint is not a hard byte-level potential.

    Example:
        >>> import potentia as pt
        >>> tpl = pt.template("Age: {age}\n", age=pt.regex(r"[0-9]{1,3}"))
        >>> tpl.complete(list(b"Age: 42\n")), tpl.fields("Age: 42\n")
        (0.0, {'age': '42'})
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` is {type(text).__name__}; give the template as a str.")
    try:
        pieces = list(string.Formatter().parse(text))
    except ValueError as err:
        raise ValueError(
            f"`text` {text!r} is not a valid template ({err}); write literal braces as "
            "'{{' and '}}'."
        ) from None
    literals, names = [""], []
    for lit, name, spec, conv in pieces:
        literals[-1] += lit
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(
                f"`text` has the hole {{{name}}}; hole names must be identifiers such as "
                "{name} (positional or attribute holes are not supported)."
            )
        if spec or conv:
            raise ValueError(
                f"`text` gives the hole {{{name}}} a format spec or conversion; holes take "
                "their form from their constraint: write {" + name + "}."
            )
        if name in names:
            raise ValueError(f"`text` uses the hole {{{name}}} twice; give each hole its own name.")
        names.append(name)
        literals.append("")
    missing = [n for n in names if n not in holes]
    extra = [n for n in holes if n not in names]
    if missing or extra:
        raise ValueError(
            f"holes {names} need one constraint each: missing {missing}, not in `text` "
            f"{extra}. Pass them as keywords, e.g. template(text, {(missing or ['x'])[0]}="
            "pt.regex(...))."
        )
    pots = []
    for n in names:
        h = as_potential(holes[n], n)
        if h.vocab != _BYTES or not getattr(h, "hard", False):
            raise TypeError(
                f"`{n}` must be a hard byte-level constraint (pt.regex, pt.json, pt.cfg, ...); "
                f"got {h!r}."
            )
        if h.prefix([]) == -np.inf:
            raise ValueError(f"`{n}` accepts no string, so the template matches nothing.")
        pots.append(h)
    return Template([x.encode("utf-8") for x in literals], names, pots, max_parses)
