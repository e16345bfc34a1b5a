r"""A transformers ``LogitsProcessor`` from a potentia hard constraint (masking).

:func:`logits_processor` turns any hard constraint into a processor for
``model.generate()``: at every step it sets the score of each token the constraint rejects
to ``-inf``. With ``do_sample=True`` and no other warper, ``generate()`` then samples
*locally constrained decoding* (LCD)::

    q(x) = Π_t  P(x_t | x_<t) · 1[x_≤t viable]  /  Σ_a P(a | x_<t) · 1[x_<t a viable]

which is **not** the constrained posterior ``P(x | x ∈ C) ∝ P(x)·1[x ∈ C]``: every output
satisfies the constraint, but a string gains weight ``1 / Π_t Z_t`` over the posterior,
where ``Z_t`` is the LM mass the mask kept at step ``t``: strings along which the LM keeps
proposing forbidden tokens are over-sampled, because they never pay for the removed mass. For exact
samples of the posterior use :func:`potentia.sample` (SMC with AWRS), which reweights and
resamples. This processor is for users who want validity from ``generate()``.

How it maps vocabularies: potentia's :class:`~potentia.LM` keeps a vocabulary of
*positions* (``lm.vocab.ids[i]`` is the tokenizer id of position ``i``); its EOS set
``lm.eos_ids`` is one position, the last. The processor maps each token id that
``generate()`` appended to its position (an EOS id ends the row), advances one batched
constraint state by one token per row, asks it once per step for the ``(rows, V + 1)``
mask of allowed next tokens, and scatters that mask onto the model's output width: ids of
the vocabulary get their position's verdict, every EOS id gets the EOS verdict, and ids
outside the vocabulary (special tokens, padding rows of the output layer) are masked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from potentia.potentials.base import (
    Potential,
    PotentialState,
    Vocabulary,
    as_potential,
    logsumexp,
)

__all__ = ["ConstraintLogitsProcessor", "logits_processor", "lcd_distribution"]


class ConstraintLogitsProcessor(LogitsProcessor):
    r"""Mask the tokens a hard constraint rejects, for ``model.generate(logits_processor=[...])``.

    This is **locally constrained decoding** (biased: it samples the LCD distribution
    of the module docstring, not the constrained posterior); :func:`potentia.sample` is the
    exact alternative. Build it with :func:`logits_processor`.

    Supported: batches of any size (left-padded prompts), ``do_sample`` or greedy,
    ``num_beams > 1`` and ``num_return_sequences`` (rows are matched to their parents by
    their token history, so beam reordering is followed), and reuse across ``generate()``
    calls (a call whose rows do not extend the previous step's rows starts afresh). A row
    that has emitted an EOS id is finished: only EOS ids stay allowed on it (so padding
    that ``generate()`` appends is never fed to the constraint). Pass
    ``eos_token_id=processor.eos_token_id`` so ``generate()`` stops at every id that
    potentia counts as EOS, and leave ``max_new_tokens`` room for the constraint to
    finish: a row cut by the budget is a viable prefix, not a match.

    Args:
        lm: The :class:`potentia.LM` whose ``model`` generates (its tokenizer ids are
            ``generate()``'s ids).
        constraint: A hard constraint over bytes (lifted to ``lm.vocab`` here, as
            :func:`potentia.sample` does) or over ``lm.vocab`` already.

    Attributes:
        eos_token_id: The tokenizer ids potentia treats as EOS (``lm.eos_ids``).
        constraint: The constraint over ``lm.vocab``.
        calls: How many steps the processor has masked (one batched mask each).
    """

    def __init__(self, lm: Any, constraint: Potential) -> None:
        vocab = getattr(lm, "vocab", None)
        if not isinstance(vocab, Vocabulary) or not hasattr(lm, "eos_ids"):
            raise TypeError(
                f"`lm` is {type(lm).__name__}; pass a potentia.LM (e.g. potentia.LM.smollm2()), "
                "whose vocabulary maps tokenizer ids to bytes."
            )
        c = as_potential(constraint, "constraint")
        if not c.hard:
            raise ValueError(
                f"`constraint` ({c!r:.80}) is soft (hard = False); a logits processor can "
                "only mask, so pass a hard constraint (weights in {0, 1}). For soft "
                "potentials use potentia.sample(..., method='smc')."
            )
        if c.vocab != vocab:
            if c.vocab != Vocabulary.bytes256():
                raise ValueError(
                    f"`constraint` is over {c.vocab!r}, neither bytes nor `lm.vocab`; build "
                    "it over bytes (potentia.regex, potentia.json, ...) or lift it to lm.vocab."
                )
            c = c.lift(vocab)
        if c.prefix([]) == -np.inf:
            raise ValueError(
                f"`constraint` ({c!r:.80}) accepts no string spelled by the tokens of "
                f"{getattr(lm, 'name', 'the LM')}; nothing could be generated."
            )
        self.lm = lm
        self.constraint = c
        self.vocab = vocab
        self.eos_token_id: list[int] = [int(i) for i in lm.eos_ids]
        n_ids = int(max(int(vocab.ids.max()), max(self.eos_token_id)) + 1)
        #: position of every tokenizer id: -1 outside the vocabulary, V for EOS ids
        self._position = np.full(n_ids, -1, dtype=np.int64)
        self._position[vocab.ids] = np.arange(len(vocab))
        self._position[self.eos_token_id] = len(vocab)
        self._ids_t: torch.Tensor | None = None
        self._eos_t: torch.Tensor | None = None
        self.calls = 0
        self.reset()

    def reset(self) -> None:
        """Forget the rows of the last ``generate()`` call (done automatically)."""
        self._started = False
        self._state: PotentialState | None = None  # the live (unfinished) rows only
        self._srow = np.zeros(0, dtype=np.int64)  # row -> row of _state, -1 when finished
        self._rows: dict[tuple[int, ...], int] = {}

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Potentia positions of tokenizer ids (``V`` for EOS, ``-1`` for the rest)."""
        out = np.full(ids.shape, -1, dtype=np.int64)
        ok = (ids >= 0) & (ids < self._position.size)
        out[ok] = self._position[ids[ok]]
        return out

    def _follow(self, seqs: np.ndarray) -> None:
        """Bring the state to the rows ``seqs`` (each one token past a row of the last step)."""
        keys = [tuple(r) for r in seqs.tolist()]
        parents = [self._rows.get(k[:-1]) for k in keys] if self._started else []
        if not self._started or any(p is None for p in parents):
            if self._started and any(p is not None for p in parents):
                raise ValueError(
                    "`input_ids` mixes rows that extend the previous step with rows that do "
                    "not; call processor.reset() between generate() calls, or build one "
                    "processor per call."
                )
            self._started = True
            self._state = self.constraint.init_state(len(keys))
            self._srow = np.arange(len(keys), dtype=np.int64)
        else:
            srow = self._srow[np.asarray(parents, dtype=np.int64)]
            last = self._positions(seqs[:, -1])
            bad = (srow >= 0) & (last < 0)
            if bad.any():
                r = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"generate() appended token id {int(seqs[r, -1])} to row {r}, which is "
                    "neither in the LM's vocabulary nor EOS; another logits processor "
                    "unmasked it. Put this processor last, or drop the other one."
                )
            # rows that just emitted EOS are finished; EOS never advances a state
            live = np.flatnonzero((srow >= 0) & (last < len(self.vocab)))
            self._srow = np.full(len(keys), -1, dtype=np.int64)
            self._srow[live] = np.arange(live.size)
            self._state = self._state.select(srow[live]).advance(last[live]) if live.size else None
        self._rows = {k: i for i, k in enumerate(keys)}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        """Return ``scores`` with every token the constraint rejects set to ``-inf``.

        Args:
            input_ids: ``(rows, length)`` prompt and generated ids so far.
            scores: ``(rows, n_out)`` next-token scores of the model.

        Returns:
            A new tensor (``scores`` is not changed in place).
        """
        seqs = input_ids.detach().cpu().numpy().astype(np.int64)
        self._follow(seqs)
        V = len(self.vocab)
        allowed = np.zeros((seqs.shape[0], V + 1), dtype=bool)
        allowed[:, V] = True  # finished rows: EOS only
        live = np.flatnonzero(self._srow >= 0)
        if live.size:
            allowed[live] = self._state.allowed()  # one batched mask for all live rows
        self.calls += 1
        if self._ids_t is None or self._ids_t.device != scores.device:
            n_out = scores.shape[-1]
            ids = self.vocab.ids
            self._keep = torch.as_tensor(np.flatnonzero(ids < n_out), device=scores.device)
            self._ids_t = torch.as_tensor(ids[ids < n_out], device=scores.device)
            eos = [i for i in self.eos_token_id if i < n_out]
            self._eos_t = torch.as_tensor(eos, dtype=torch.long, device=scores.device)
        allowed_t = torch.as_tensor(allowed, device=scores.device)
        mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        mask[:, self._ids_t] = allowed_t[:, self._keep]
        mask[:, self._eos_t] = allowed_t[:, V : V + 1]
        return scores.masked_fill(~mask, -float("inf"))


def logits_processor(lm: Any, constraint: Potential) -> ConstraintLogitsProcessor:
    """A transformers ``LogitsProcessor`` that masks what ``constraint`` rejects.

    Locally constrained decoding: every output of ``lm.model.generate(...,
    logits_processor=[processor])`` satisfies the constraint (when it ends with EOS), but
    the outputs are *not* distributed as the constrained posterior; see
    :class:`ConstraintLogitsProcessor` and, for exact samples, :func:`potentia.sample`.

    Args:
        lm: The :class:`potentia.LM` whose transformers model generates.
        constraint: A hard constraint over bytes (e.g. ``potentia.regex(...)``) or over
            ``lm.vocab``.

    Returns:
        The processor (pass ``eos_token_id=processor.eos_token_id`` to ``generate()``).

    Raises:
        TypeError: if ``lm`` is not a potentia LM or ``constraint`` not a Potential.
        ValueError: if ``constraint`` is soft, over another vocabulary, or accepts nothing.

    Examples:
        ``proc = logits_processor(pt.LM.smollm2(), pt.regex(r" (yes|no)"))``, then
        ``lm.model.generate(ids, logits_processor=[proc], eos_token_id=proc.eos_token_id)``
        (a full example is in docs/interop.md).
    """
    return ConstraintLogitsProcessor(lm, constraint)


def lcd_distribution(
    lm: Potential, constraint: Potential, max_len: int, max_prefixes: int = 100_000
) -> dict[tuple[int, ...], float]:
    """The exact distribution that masking samples (LCD), by enumeration on small problems.

    ``q(x) = Π_t m_t(x_t)`` with ``m_t`` the LM's next-token row (EOS last) restricted to
    the tokens ``constraint`` allows after ``x_{<t}`` and renormalised. It is what
    ``generate(do_sample=True)`` with :func:`logits_processor` samples (no other warper),
    and it differs from the constrained posterior that :func:`potentia.sample` targets.

    Args:
        lm: The LM conditioned on its prompt, a potential over its vocabulary (e.g.
            ``lm.potential(prompt)``, or a toy LM).
        constraint: A hard constraint over the same vocabulary (lift byte-level ones).
        max_len: Longest string enumerated, in tokens; the language must have no longer
            viable prefix (every string ends by then).
        max_prefixes: Safety bound on the number of prefixes visited.

    Returns:
        Probability of every token string (a tuple of positions) that LCD can produce.

    Raises:
        ValueError: if the vocabularies differ, a viable prefix is longer than
            ``max_len``, or more than ``max_prefixes`` prefixes would be visited.
    """
    c = as_potential(constraint, "constraint")
    if c.vocab != lm.vocab:
        raise ValueError(
            "`constraint` and `lm` have different vocabularies; lift the constraint first "
            "(constraint.lift(lm.vocab))."
        )
    V = len(lm.vocab)
    out: dict[tuple[int, ...], float] = {}
    stack: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    visited = 0
    while stack:
        x, lp = stack.pop()
        visited += 1
        if visited > max_prefixes:
            raise ValueError(
                f"more than `max_prefixes`={max_prefixes} prefixes; use a smaller language."
            )
        ok = c.logw_next(list(x)) > -np.inf
        masked = np.where(ok, lm.logw_next(list(x)), -np.inf)
        z = logsumexp(masked)
        if z == -np.inf:
            continue  # a dead end of the LM: LCD has nowhere to go (generate() would fail)
        masked = masked - z
        if masked[V] > -np.inf:
            out[x] = out.get(x, 0.0) + float(np.exp(lp + masked[V]))
        nxt = np.flatnonzero(ok[:V] & (masked[:V] > -np.inf)).tolist()
        if nxt and len(x) >= max_len:
            raise ValueError(
                f"the prefix {x} of length {len(x)} can still be extended; raise `max_len` "
                "(LCD needs every string of the language to end within it)."
            )
        stack.extend((x + (a,), lp + float(masked[a])) for a in nxt)
    return out
