"""genlm-control interop, both ways: their potentials in potentia, potentia's in genlm-control.

genlm-control (``genlm.control``) and potentia share the potential contract: log-space
``complete``, ``prefix`` and ``logw_next`` with EOS last. genlm-control's methods are
coroutines over a vocabulary of Python objects (ints for bytes, ``bytes`` or
``genlm.backend`` ``Token`` objects for LM tokens); potentia's are synchronous and batched
over vocabulary *positions*. The two wrappers translate contexts and reorder next-token
vectors; nothing else changes, so a target built on either side is the same target.

* :func:`from_genlm` gives a potentia :class:`~potentia.Potential` (:class:`GenlmPotential`)
  whose batch methods make **one** genlm-control batch call each; the coroutines run on a
  private event loop in a helper thread, so the wrapper also works where an event loop is
  already running (Jupyter notebooks, async code).
* :func:`to_genlm` gives a genlm-control ``Potential`` (:class:`PotentiaPotential`) whose
  coroutines call potentia's synchronous batch methods once per genlm-control batch.

genlm-control is imported when this module is, never by ``import potentia``.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine, Sequence
from typing import Any

import numpy as np
from genlm.control import BoolCFG, BoolFSA
from genlm.control.potential import Potential as _GenlmPotential
from genlm.control.util import to_numpy

from potentia.potentials.base import Potential, Vocabulary, as_potential

__all__ = ["from_genlm", "to_genlm", "GenlmPotential", "PotentiaPotential", "run_sync"]


# ----- running coroutines synchronously ------------------------------------------------
class _LoopThread:
    """An event loop running forever in a daemon thread (one per nesting depth)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="potentia-genlm-loop", daemon=True
        )
        self.thread.start()


_LOOPS: list[_LoopThread] = []
_LOOPS_LOCK = threading.Lock()
_LOCAL = threading.local()
_PRIVATE: list[asyncio.AbstractEventLoop] = []  # every thread's private loop, closed at exit


@atexit.register
def _close_loops() -> None:
    for loop in _PRIVATE:
        if not loop.is_running() and not loop.is_closed():
            loop.close()
    for lt in _LOOPS:
        lt.loop.call_soon_threadsafe(lt.loop.stop)
        lt.thread.join(timeout=1.0)
        if not lt.loop.is_running():
            lt.loop.close()


def run_sync(coro: Coroutine) -> Any:
    """Run ``coro`` to completion and return its result, from synchronous code.

    Where the calling thread runs no event loop (a script, a test), the coroutine runs on
    a private loop of that thread, with no thread switch. Where one is running (a
    notebook cell, an ``async`` function), it runs on a private loop in a helper thread
    while the caller waits; a call made from that helper loop (a potential wrapped twice)
    goes one helper further down, so nesting never deadlocks.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = getattr(_LOCAL, "loop", None)
        if loop is None or loop.is_closed():
            loop = _LOCAL.loop = asyncio.new_event_loop()
            with _LOOPS_LOCK:
                _PRIVATE.append(loop)
        return loop.run_until_complete(coro)
    current = threading.current_thread()
    with _LOOPS_LOCK:
        depth = next((i + 1 for i, lt in enumerate(_LOOPS) if lt.thread is current), 0)
        while len(_LOOPS) <= depth:
            _LOOPS.append(_LoopThread())
        runner = _LOOPS[depth]
    return asyncio.run_coroutine_threadsafe(coro, runner.loop).result()


# ----- genlm-control -> potentia -------------------------------------------------------
def _token_bytes(token: Any, i: int) -> bytes:
    if isinstance(token, bool):
        raise TypeError(f"`potential.vocab[{i}]` is {token!r}; expected a byte (int) or bytes.")
    if isinstance(token, int | np.integer) and 0 <= int(token) < 256:
        return bytes([int(token)])
    if isinstance(token, bytes):
        return bytes(token)
    if isinstance(token, str):
        return token.encode("utf-8")
    raise TypeError(
        f"`potential.vocab[{i}]` is {token!r} of type {type(token).__name__}; from_genlm "
        "wraps potentials over bytes (ints 0..255), bytes or Token tokens, or str. Coerce "
        "the genlm potential to one of those token types first (genlm's `coerce`)."
    )


class GenlmPotential(Potential):
    """A genlm-control ``Potential`` as a potentia :class:`~potentia.Potential`.

    Position ``i`` of this potential's vocabulary is a genlm token; EOS is the last index.
    A potentia token that the genlm vocabulary lacks (when ``vocab`` is given) has weight
    zero: genlm-control's potential says nothing about strings containing it.

    Args:
        potential: The genlm-control potential.
        vocab: The potentia vocabulary to present (tokens matched to genlm's by bytes,
            and by id for genlm ``Token`` objects). Default: genlm's own tokens, in its
            order (``Token`` ids kept as the vocabulary's ids).
        hard: Whether the weights are in {0, 1}; ``None``: true for genlm's ``BoolFSA``
            and ``BoolCFG``, false otherwise.

    Raises:
        TypeError: if ``potential`` is not a genlm-control Potential or its tokens are not
            bytes-like.
        ValueError: if genlm's vocabulary has tokens spelling the same bytes and no
            ``vocab`` tells them apart, or ``vocab`` shares no token with it.
    """

    def __init__(
        self, potential: Any, vocab: Vocabulary | None = None, hard: bool | None = None
    ) -> None:
        if not isinstance(potential, _GenlmPotential):
            raise TypeError(
                f"`potential` is {type(potential).__name__}; pass a genlm.control Potential "
                "(e.g. genlm.control.BoolFSA.from_regex(...))."
            )
        self.genlm = potential
        gtoks = list(potential.vocab)
        gbytes = [_token_bytes(t, i) for i, t in enumerate(gtoks)]
        gids = [getattr(t, "token_id", None) for t in gtoks]
        if vocab is None:
            ids = gids if all(i is not None for i in gids) else None
            if ids is None and len(set(gbytes)) != len(gbytes):
                raise ValueError(
                    "`potential` has tokens spelling the same bytes; pass `vocab` (e.g. "
                    "lm.vocab) so its tokens can be told apart."
                )
            vocab = Vocabulary(gbytes, ids=ids, name=f"genlm:{type(potential).__name__}")
            gidx = np.arange(len(gtoks), dtype=np.int64)
        else:
            if not isinstance(vocab, Vocabulary):
                raise TypeError(f"`vocab` is {type(vocab).__name__}; pass a potentia Vocabulary.")
            by_key: dict[Any, int] = {}
            for j, (b, i) in enumerate(zip(gbytes, gids)):
                by_key.setdefault((b, i) if i is not None else b, j)
            gidx = np.array(
                [
                    by_key.get((b, int(i)) if gids and gids[0] is not None else b, -1)
                    for b, i in zip(vocab.tokens, vocab.ids)
                ],
                dtype=np.int64,
            )
            if not (gidx >= 0).any():
                raise ValueError(
                    f"`vocab` ({vocab!r}) shares no token with the genlm potential's "
                    f"vocabulary ({gbytes[:5]!r}...); pass a vocabulary over the same tokens."
                )
        self.vocab = vocab
        #: genlm index of every potentia position (-1: not in genlm's vocabulary)
        self._gidx = gidx
        self._gtoks = gtoks
        if hard is None:
            hard = isinstance(potential, BoolFSA | BoolCFG)
        self.hard = bool(hard)

    def _g(self, context: list[int]) -> list | None:
        """The genlm context of potentia positions (``None`` if a token is not genlm's)."""
        idx = self._gidx[context] if context else np.zeros(0, dtype=np.int64)
        if (idx < 0).any():
            return None
        return [self._gtoks[j] for j in idx.tolist()]

    def _batch(self, method: str, contexts: list[list[int]]) -> np.ndarray:
        """One genlm batch call of ``method`` on the contexts it can score; -inf elsewhere."""
        out = np.full(len(contexts), -np.inf)
        gs = [self._g(c) for c in contexts]
        rows = [r for r, g in enumerate(gs) if g is not None]
        if rows:
            vals = run_sync(getattr(self.genlm, method)([gs[r] for r in rows]))
            out[rows] = np.asarray(to_numpy(vals), dtype=float)
        return out

    def _prefix(self, context: list[int]) -> float:
        return float(self._batch("batch_prefix", [context])[0])

    def _complete(self, context: list[int]) -> float:
        return float(self._batch("batch_complete", [context])[0])

    def batch_prefix(self, contexts: Sequence[Sequence[int]]) -> np.ndarray:
        """:meth:`prefix` of each context, in one genlm ``batch_prefix`` call."""
        out = self._batch("batch_prefix", [self._as_context(c) for c in contexts])
        self._check_vector(out, (len(contexts),), "batch_prefix")
        return out

    def batch_complete(self, contexts: Sequence[Sequence[int]]) -> np.ndarray:
        """:meth:`complete` of each context, in one genlm ``batch_complete`` call."""
        out = self._batch("batch_complete", [self._as_context(c) for c in contexts])
        self._check_vector(out, (len(contexts),), "batch_complete")
        return out

    def _logw_next(self, context: list[int]) -> np.ndarray:
        return self._batch_logw_next([context])[0]

    def _batch_logw_next(self, contexts: list[list[int]]) -> np.ndarray:
        V = len(self.vocab)
        out = np.full((len(contexts), V + 1), -np.inf)
        gs = [self._g(c) for c in contexts]
        rows = [r for r, g in enumerate(gs) if g is not None]
        if not rows:
            return out

        async def both() -> tuple[np.ndarray, np.ndarray | None]:
            # genlm-control refuses logw_next where the prefix weight is zero; potentia's
            # contract answers all -inf there: batch_prefix finds those rows first.
            pre = np.asarray(to_numpy(await self.genlm.batch_prefix([gs[r] for r in rows])))
            live = [r for r, p in zip(rows, pre.tolist()) if p > -np.inf]
            if not live:
                return np.zeros(0, dtype=np.int64), None
            w = await self.genlm.batch_logw_next([gs[r] for r in live])
            return np.asarray(live, dtype=np.int64), np.asarray(to_numpy(w.weights), float)

        live, w = run_sync(both())  # one trip to the event loop per batch
        if w is not None:
            have = self._gidx >= 0
            block = np.full((live.size, V + 1), -np.inf)
            block[:, :V][:, have] = w[:, self._gidx[have]]
            block[:, V] = w[:, -1]
            out[live] = block
        return out

    def spawn(self) -> GenlmPotential:
        """A wrapper of ``potential.spawn()`` (or of the same potential if it cannot spawn)."""
        try:
            inner = self.genlm.spawn()
        except NotImplementedError:
            return self
        out = GenlmPotential.__new__(GenlmPotential)
        out.__dict__.update(self.__dict__)
        out.genlm = inner
        return out

    def __repr__(self) -> str:
        return f"GenlmPotential({type(self.genlm).__name__}, vocab={len(self.vocab)} tokens)"


def from_genlm(
    potential: Any, vocab: Vocabulary | None = None, hard: bool | None = None
) -> GenlmPotential:
    """Wrap a genlm-control ``Potential`` as a potentia potential (synchronous, batched).

    Args:
        potential: A genlm-control potential (``BoolFSA``, ``BoolCFG``, ``WFSA``, a
            ``PromptedLLM``, a product, ...).
        vocab: The potentia vocabulary to present: e.g. ``Vocabulary.bytes256()`` for a
            byte-level genlm potential (then it lifts to any LM like ``pt.regex``), or a
            toy LM's vocabulary. Default: genlm's own tokens.
        hard: Declare the weights to be in {0, 1} (``None``: auto for ``BoolFSA`` and
            ``BoolCFG``).

    Returns:
        A :class:`GenlmPotential`.

    Examples:
        >>> from genlm.control import BoolFSA
        >>> from potentia import Vocabulary
        >>> c = from_genlm(BoolFSA.from_regex(r"ab|b"), vocab=Vocabulary.bytes256())
        >>> c.complete(list(b"ab")), c.prefix(list(b"c"))
        (0.0, -inf)
    """
    return GenlmPotential(potential, vocab=vocab, hard=hard)


# ----- potentia -> genlm-control -------------------------------------------------------
def _genlm_vocabulary(vocab: Vocabulary, token_type: str) -> list:
    toks = vocab.tokens
    if token_type == "auto":
        if vocab.has_unique_bytes and all(len(t) == 1 for t in toks):
            token_type = "int"
        elif vocab.has_unique_bytes:
            token_type = "bytes"
        else:
            token_type = "token"
    if token_type == "int":
        if not (vocab.has_unique_bytes and all(len(t) == 1 for t in toks)):
            raise ValueError(
                "`token_type` is 'int' but the vocabulary has multi-byte or repeated tokens; "
                "use 'bytes' or 'token'."
            )
        return [t[0] for t in toks]
    if token_type == "bytes":
        if not vocab.has_unique_bytes:
            raise ValueError(
                "`token_type` is 'bytes' but several tokens spell the same bytes (genlm "
                "needs distinct tokens); use 'token' (genlm.backend Token objects)."
            )
        return list(toks)
    if token_type == "token":
        from genlm.backend.tokenization import Token

        return [Token(int(i), t) for i, t in zip(vocab.ids.tolist(), toks)]
    raise ValueError(f"`token_type` is {token_type!r}; pass 'auto', 'int', 'bytes' or 'token'.")


class PotentiaPotential(_GenlmPotential):
    """A potentia potential as a genlm-control ``Potential``.

    genlm token ``vocab[i]`` is potentia position ``i``; genlm's EOS is potentia's EOS. Each
    coroutine makes one synchronous potentia call (batch methods one batch call).

    Args:
        potential: The potentia potential.
        token_type: genlm token objects: ``"int"`` (bytes as ints 0..255, genlm's
            byte-level convention, e.g. for ``BoolFSA``), ``"bytes"``, ``"token"``
            (``genlm.backend`` ``Token(id, bytes)``, for vocabularies with repeated byte
            strings, such as LM vocabularies), or ``"auto"`` (the first that fits).

    Raises:
        TypeError: if ``potential`` is not a potentia Potential.
        ValueError: if ``token_type`` does not fit the vocabulary.
    """

    def __init__(self, potential: Potential, token_type: str = "auto") -> None:
        self.potentia = as_potential(potential, "potential")
        self._token_type = token_type
        vocabulary = _genlm_vocabulary(self.potentia.vocab, token_type)
        super().__init__(vocabulary)

    def _pos(self, context: Sequence[Any]) -> list[int]:
        lookup, V = self.lookup, len(self.vocab)
        out = []
        for j, t in enumerate(context):
            i = lookup.get(t, V)
            if i >= V:
                raise ValueError(
                    f"`context[{j}]` is {t!r}, not a token of this potential's vocabulary"
                    + (" (EOS may only end a context)" if i == V else "")
                )
            out.append(i)
        return out

    async def complete(self, context: Sequence[Any]) -> float:  # noqa: D102
        return float(self.potentia.complete(self._pos(context)))

    async def prefix(self, context: Sequence[Any]) -> float:  # noqa: D102
        return float(self.potentia.prefix(self._pos(context)))

    async def logw_next(self, context: Sequence[Any]):  # noqa: D102
        return self.make_lazy_weights(self.potentia.logw_next(self._pos(context)))

    async def batch_complete(self, contexts: Sequence[Sequence[Any]]) -> np.ndarray:  # noqa: D102
        if not contexts:
            raise ValueError("Contexts must be non-empty.")
        return self.potentia.batch_complete([self._pos(c) for c in contexts])

    async def batch_prefix(self, contexts: Sequence[Sequence[Any]]) -> np.ndarray:  # noqa: D102
        if not contexts:
            raise ValueError("Contexts must be non-empty.")
        return self.potentia.batch_prefix([self._pos(c) for c in contexts])

    async def batch_logw_next(self, contexts: Sequence[Sequence[Any]]):  # noqa: D102
        if not contexts:
            raise ValueError("Contexts must be non-empty.")
        return self.make_lazy_weights(
            self.potentia.batch_logw_next([self._pos(c) for c in contexts])
        )

    def spawn(self) -> PotentiaPotential:
        """A wrapper of ``potential.spawn()``."""
        return PotentiaPotential(self.potentia.spawn(), self._token_type)

    def __repr__(self) -> str:
        return f"PotentiaPotential({self.potentia!r})"


def to_genlm(potential: Potential, token_type: str = "auto") -> PotentiaPotential:
    """Expose a potentia potential as a genlm-control ``Potential``.

    Args:
        potential: Any potentia potential (an LM potential, a constraint, a product).
        token_type: ``"auto"``, ``"int"``, ``"bytes"`` or ``"token"`` (see
            :class:`PotentiaPotential`).

    Returns:
        A :class:`PotentiaPotential`, usable in genlm-control products and samplers.

    Examples:
        >>> import asyncio, potentia as pt
        >>> g = to_genlm(pt.regex(r"ab|b"))
        >>> asyncio.run(g.complete(list(b"ab")))
        0.0
    """
    return PotentiaPotential(potential, token_type=token_type)
