r"""The backend contract: what runs the model under :class:`potentia.LM`.

A backend turns token contexts into next-token scores over the model's whole output layer.
Everything above it (vocabulary, EOS set, prompts, the potential and its batch state) is
backend-neutral. A backend keeps *caches*: opaque handles, each covering the prompt and one
context per row, that a forward extends without changing the handle it started from.

What a backend provides (the abstract part, per model runtime):

* ``_extend(cache, rows, ids, keep)``: rows ``rows`` of ``cache`` (``None``: all, in order;
  repeats fork a row, absent rows are dropped; ``cache`` ``None``: a fresh start) extended by the token ids ``ids`` of shape
  ``(m, k)``; returns the scores of the last ``keep`` positions, shape ``(m, keep, n_out)``,
  as a float tensor of at least float32 precision, and the extended cache;
* ``_cache_rows(cache)``: how many rows a cache holds;
* the attributes ``name``, ``n_out`` (scores per position), ``context_window`` (prompt plus
  generated tokens the model accepts), ``device``, ``dtype`` and ``eos_token_ids`` (the end
  tokens the model itself declares).

What every backend gets from this class (the shared part):

* :meth:`Backend.prefill` runs a prompt once (one row);
* :meth:`Backend.score` gives the scores after every prefix of one context (the slow path);
* :meth:`Backend.step` advances a batch: rows with equal contexts share one forward row,
  and the row map left by resampling (``select``) forks and drops cache rows in the same
  call;
* :attr:`Backend.stats` counts what was computed: forwards, tokens fed and score rows out;
* :func:`log_probs` turns scores into log-probabilities over vocabulary positions plus EOS,
  with the normaliser accumulated in float64.
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Backend", "BackendStats", "log_probs"]


@dataclass
class BackendStats:
    """What a backend computed since it was made (or since :meth:`reset`).

    Attributes:
        forwards: Model calls (one per prefill, per context-API context, per batch step).
        tokens: Token positions fed to the model (rows × new tokens, prompts included).
        rows: Score rows returned (distinct contexts, not the copies sharing them).
    """

    forwards: int = 0
    tokens: int = 0
    rows: int = 0

    def reset(self) -> None:
        """Set every count to zero."""
        self.forwards = self.tokens = self.rows = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict (for diagnostics and benchmarks)."""
        return asdict(self)


class Backend(ABC):
    """A model runtime behind :class:`potentia.LM` (see the module docstring).

    Attributes:
        name: A label for messages.
        n_out: Scores per position (the size of the model's output layer).
        context_window: The most tokens (prompt + generated) the model accepts.
        device: Where the scores live (``torch.device``).
        dtype: The weight type, ``"fp32"`` or ``"bf16"``.
        eos_token_ids: End tokens declared by the model itself (beyond the tokenizer's).
        stats: Counts of what was computed (:class:`BackendStats`).
    """

    name: str
    n_out: int
    context_window: int
    device: torch.device
    dtype: str
    eos_token_ids: tuple[int, ...] = ()

    def __init__(self) -> None:
        self.stats = BackendStats()

    # ----- per runtime --------------------------------------------------------------
    @abstractmethod
    def _extend(
        self, cache: Any, rows: np.ndarray | None, ids: torch.Tensor, keep: int
    ) -> tuple[torch.Tensor, Any]:
        """Rows ``rows`` of ``cache`` extended by ``ids``.

        ``cache`` is ``None`` for a fresh start (a prompt); ``rows`` is ``None`` for every
        row of ``cache`` in order. Must leave ``cache`` usable as it was. Returns the scores of the last ``keep``
        positions, shape ``(m, keep, n_out)``, and the new cache.
        """

    @abstractmethod
    def _cache_rows(self, cache: Any) -> int:
        """Number of rows ``cache`` holds."""

    def _check_prompt_cache(self, cache: Any) -> None:  # noqa: B027 - optional hook
        """Refuse a model whose cache this backend cannot fork (called after a prefill)."""

    # ----- shared -------------------------------------------------------------------
    def extend(
        self, cache: Any, rows: np.ndarray | None, ids: np.ndarray | torch.Tensor, keep: int = 1
    ) -> tuple[torch.Tensor, Any]:
        """One counted forward: see :meth:`_extend`; ``ids`` has shape ``(m, k)``."""
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        scores, new = self._extend(cache, rows, ids, keep)
        self.stats.forwards += 1
        self.stats.tokens += int(ids.numel())
        self.stats.rows += int(scores.shape[0] * scores.shape[1])
        return scores, new

    def prefill(self, prompt_ids: list[int]) -> tuple[Any, torch.Tensor]:
        """Run a prompt once: its one-row cache and the scores of the next token."""
        scores, cache = self.extend(None, None, np.asarray([prompt_ids], dtype=np.int64))
        self._check_prompt_cache(cache)
        return cache, scores[0, -1]

    def score(self, cache: Any, ids: list[int] | np.ndarray) -> torch.Tensor:
        """Scores after each prefix ``ids[:t + 1]`` of one context, after a 1-row cache.

        Returns shape ``(len(ids), n_out)``; ``ids`` must be non-empty.
        """
        scores, _ = self.extend(cache, None, np.asarray(ids, dtype=np.int64)[None], len(ids))
        return scores[0]

    def step(
        self,
        cache: Any,
        rows: np.ndarray | None,
        contexts: list[list[int]],
        pending: np.ndarray,
    ) -> tuple[torch.Tensor, Any, np.ndarray | None]:
        """Advance a batch by its pending tokens in one forward.

        Args:
            cache: Covers the prompt and every row's context minus ``pending``.
            rows: Row ``r`` of the batch is row ``rows[r]`` of ``cache`` (``None``:
                identity); what resampling left.
            contexts: The full contexts, one per row (equal ones share a forward row).
            pending: Token ids not yet in ``cache``, shape ``(n, k)`` with ``k >= 1``.

        Returns:
            ``(scores, cache, inverse)``: scores of the next token for each *distinct*
            context in order of first occurrence, shape ``(d, n_out)``; the new cache with
            one row per distinct context; and the map from batch rows to those (``None``
            when all ``n`` contexts are distinct, i.e. the identity).
        """
        n = len(contexts)
        first: dict[tuple[int, ...], int] = {}
        inverse = np.array([first.setdefault(tuple(c), len(first)) for c in contexts])
        reps = np.unique(inverse, return_index=True)[1]
        src = (np.arange(n) if rows is None else rows)[reps]
        n_cache = self._cache_rows(cache)
        if len(src) == n_cache and np.array_equal(src, np.arange(n_cache)):
            src = None  # the cache rows are already the distinct contexts, in order
        scores, new = self.extend(cache, src, pending[reps])
        return scores[:, -1], new, None if len(reps) == n else inverse


#: id(vocab_ids tensor) -> (weak reference to it, its runs); torch tensors cannot be keys
#: of a WeakKeyDictionary (their ``==`` is elementwise)
_RUNS: dict[int, tuple[weakref.ref, tuple[tuple[int, int, int], ...]]] = {}


def _runs(vocab_ids: torch.Tensor) -> tuple[tuple[int, int, int], ...]:
    """``vocab_ids`` as contiguous ranges ``(first id, end id, first position)``.

    Memoised per tensor; empty when there are more than 64 ranges (a gather is as good).
    """
    key = id(vocab_ids)
    hit = _RUNS.get(key)
    if hit is not None and hit[0]() is vocab_ids:
        return hit[1]
    ids = vocab_ids.cpu().numpy().astype(np.int64)
    cut = np.flatnonzero(np.diff(ids) != 1) + 1
    starts, ends = np.r_[0, cut], np.r_[cut, len(ids)]
    r: tuple[tuple[int, int, int], ...] = ()
    if len(ids) and len(starts) <= 64:
        r = tuple((int(ids[a]), int(ids[a]) + int(b - a), int(a)) for a, b in zip(starts, ends))
    _RUNS[key] = (weakref.ref(vocab_ids, lambda _r, k=key: _RUNS.pop(k, None)), r)
    return r


def log_probs(scores: torch.Tensor, vocab_ids: torch.Tensor, eos_ids: torch.Tensor) -> np.ndarray:
    """Log-probs over vocabulary positions plus EOS from full-output-layer scores.

    ``scores`` are logits (or log-probs) of shape ``(n, N)`` or ``(N,)``; the result has
    shape ``(n, V + 1)`` or ``(V + 1,)``: the scores of ``vocab_ids``, then the log of the
    summed probability of ``eos_ids``. The normaliser is accumulated in float64 (float32
    sums over ~10^5 logits are off by ~3e-5) over float32 exponentials, whose rounding
    (~1e-7 relative, independent per term) moves the log-normaliser by ~1e-8: far below
    the float32 logits' own rounding. The rows are read once in float32 and written once in
    float64 (the selected scores widened and the normaliser subtracted in one pass); no
    full-row float64 temporary is made.
    """
    x = scores if scores.dim() == 2 else scores[None]
    xn = x.detach().float().cpu().numpy()  # no copy for float32 CPU rows
    m = xn.max(axis=1, keepdims=True)
    buf = xn - m
    np.exp(buf, out=buf)
    lse = m[:, 0].astype(np.float64) + np.log(buf.sum(axis=1, dtype=np.float64))
    del buf
    V = len(vocab_ids)
    out = np.empty((x.shape[0], V + 1))
    runs = _runs(vocab_ids)
    if runs:  # few contiguous id ranges (Gemma: 2): slices, no gathered temporary
        for a, b, d in runs:
            np.subtract(xn[:, a:b], lse[:, None], out=out[:, d : d + b - a])
    else:
        np.subtract(np.take(xn, vocab_ids.cpu().numpy(), axis=1), lse[:, None], out=out[:, :V])
    eos = np.take(xn, eos_ids.cpu().numpy(), axis=1).astype(np.float64)
    me = eos.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # all-(-inf) EOS scores: -inf, as logsumexp gives
        eos_lse = me[:, 0] + np.log(np.exp(eos - me).sum(axis=1))
    out[:, V] = np.where(np.isneginf(me[:, 0]), -np.inf, eos_lse) - lse
    return out if scores.dim() == 2 else out[0]
