r"""The language-model potential: log P(x | prompt) of an LM, over any backend.

For a prompt p and a context x = x_1..x_T of vocabulary positions,

    prefix(x)    = Σ_t log P(x_t | p, x_<t)
    complete(x)  = prefix(x) + log Σ_{e ∈ EOS} P(e | p, x)
    logw_next(x) = [log P(a | p, x) for a in vocab] + [log Σ_{e ∈ EOS} P(e | p, x)]

where P is the model's softmax over its *whole* output layer: the mass of tokens left out of
the vocabulary (special/control tokens) is simply absent, so rows may sum to less than one.

The model runs behind the LM's :class:`~potentia.lm.backend.Backend`. The batch state
(:class:`LMState`) is the fast path the engines use. Its invariants:

* all rows hold contexts of one length (engines advance every row together);
* a backend cache covers the prompt and each row's context except the ``pending`` tokens,
  which :meth:`LMState.advance` appends without running the model;
* :meth:`LMState.logw_next` runs **one** forward of the pending tokens for all rows
  (:meth:`Backend.step <potentia.lm.backend.Backend.step>`: equal contexts share a row),
  memoises the next-token matrix, and the state keeps the extended cache;
* :meth:`LMState.select` composes a row map lazily; the next forward forks and drops cache
  rows by it (no recomputation);
* the prompt is prefilled once per potential and shared by every state.

States are never mutated visibly: a backend forward leaves the cache it started from as it
was, so two states advanced differently from one parent never see each other's tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from potentia.lm.backend import log_probs
from potentia.potentials.base import Potential, PotentialState

__all__ = ["LMPotential", "LMState"]


class LMPotential(Potential):
    """A causal LM conditioned on a prompt, as a potential over the LM's token vocabulary.

    Build it with :meth:`potentia.LM.potential`. See the module docstring for the weights.

    Args:
        lm: The :class:`potentia.LM` (model, tokenizer, vocabulary, EOS set).
        prompt_ids: Tokenizer ids of the prompt (BOS and chat template included), at least one.
    """

    def __init__(self, lm: Any, prompt_ids: list[int]) -> None:
        if not prompt_ids:
            raise ValueError(
                "`prompt_ids` is empty; an LM potential needs at least one prompt token "
                "(e.g. BOS) to predict the first token from."
            )
        if len(prompt_ids) >= lm.max_length:
            raise ValueError(
                f"`prompt` has {len(prompt_ids)} tokens but the model's context holds "
                f"{lm.max_length}; shorten the prompt so that generated tokens fit"
                f"{lm.window_fix()}."
            )
        self.lm = lm
        self.vocab = lm.vocab
        self.prompt_ids = [int(i) for i in prompt_ids]
        self._prompt: tuple | None = None  # (cache, log-probs over the full output layer)
        self._prompt_vocab: np.ndarray | None = None  # the prompt's row over the vocabulary
        self._prefix_memo: dict[tuple[int, ...], float] = {}
        self._next_memo: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()

    # ----- model calls ----------------------------------------------------------------
    def _prefill(self) -> tuple:
        """Run the prompt once; keep its backend cache (one row) and next-token scores."""
        if self._prompt is None:
            self._prompt = self.lm.backend.prefill(self.prompt_ids)
        return self._prompt

    def _prompt_row(self) -> np.ndarray:
        """The prompt's next-token row over the vocabulary (converted once per potential)."""
        if self._prompt_vocab is None:
            self._prompt_vocab = self.to_vocab(self._prefill()[1])
            self._prompt_vocab.flags.writeable = False
        return self._prompt_vocab

    def _full_logprobs(self, context: list[int]) -> torch.Tensor:
        """Log-probs over the full output layer after the prompt and each prefix of ``context``.

        Row ``t`` is the distribution of the token after ``context[:t]`` (``T + 1`` rows).
        """
        self._check_length(len(context))
        cache, s0 = self._prefill()
        rows = [s0[None]]
        if context:
            rows.append(self.lm.backend.score(cache, self.lm.vocab.ids[context]))
        return torch.log_softmax(torch.cat(rows, dim=0).double(), dim=-1)

    def _check_length(self, n_generated: int) -> None:
        total = len(self.prompt_ids) + n_generated
        if total > self.lm.max_length:
            raise ValueError(
                f"prompt ({len(self.prompt_ids)} tokens) plus context ({n_generated} tokens) "
                f"exceeds the model's context of {self.lm.max_length} tokens; lower "
                f"`max_tokens` or shorten the prompt{self.lm.window_fix()}."
            )

    def to_vocab(self, scores: torch.Tensor) -> np.ndarray:
        """Log-probs over vocabulary positions plus EOS (see :func:`~potentia.lm.backend.log_probs`)."""
        return log_probs(scores, self.lm.vocab_ids_t, self.lm.eos_ids_t)

    # ----- context methods (slow path: one forward per context) ----------------------
    def _run(self, context: list[int]) -> None:
        key = tuple(context)
        if key in self._next_memo:
            self._next_memo.move_to_end(key)
            return
        lp = self._full_logprobs(context)
        ids = self.lm.vocab.ids[context]
        steps = lp[torch.arange(len(context)), torch.as_tensor(ids)] if context else lp[:0, 0]
        cum = np.concatenate([[0.0], np.cumsum(steps.cpu().numpy())])
        for t in range(len(context) + 1):
            self._prefix_memo[key[:t]] = float(cum[t])
        if len(self._prefix_memo) > 20_000:
            self._prefix_memo.clear()
            for t in range(len(context) + 1):
                self._prefix_memo[key[:t]] = float(cum[t])
        self._next_memo[key] = lp[-1].clone()
        while len(self._next_memo) > 8:
            self._next_memo.popitem(last=False)

    def _prefix(self, context: list[int]) -> float:
        if not context:
            return 0.0  # P(empty prefix | prompt) = 1: no forward needed (SMC asks this first)
        key = tuple(context)
        if key not in self._prefix_memo:
            self._run(context)
        return self._prefix_memo[key]

    def _complete(self, context: list[int]) -> float:
        return self._prefix(context) + float(self._logw_next(context)[-1])

    def _logw_next(self, context: list[int]) -> np.ndarray:
        self._run(context)
        return self.to_vocab(self._next_memo[tuple(context)])

    def _batch_logw_next(self, contexts: list[list[int]]) -> np.ndarray:
        lengths = {len(c) for c in contexts}
        if len(lengths) == 1:  # one batched forward through the state machinery
            return self.state_from(contexts).logw_next()
        return super()._batch_logw_next(contexts)

    # ----- the batch state ------------------------------------------------------------
    def init_state(self, n: int) -> LMState:
        """``n`` empty contexts sharing the prompt's cache (prefilled once per potential)."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"`n` is {n!r}; pass an int >= 0.")
        cache, _ = self._prefill()
        return LMState(
            self,
            contexts=[[] for _ in range(int(n))],
            cache=cache,
            rows=np.zeros(int(n), dtype=np.int64),
            pending=np.zeros((int(n), 0), dtype=np.int64),
        )

    def __repr__(self) -> str:
        return f"LMPotential({self.lm.name}, prompt={len(self.prompt_ids)} tokens)"


class LMState(PotentialState):
    """Batch of equal-length contexts of an :class:`LMPotential` with per-row KV caches.

    Args:
        potential: The LM potential.
        contexts: The contexts (vocabulary positions), one per row.
        cache: A backend cache covering the prompt and the contexts minus ``pending``.
        rows: Row ``r`` of this state is row ``rows[r]`` of ``cache`` (``None``: identity).
        pending: Tokenizer ids appended since the cache was last extended, shape ``(n, k)``.
    """

    def __init__(
        self,
        potential: LMPotential,
        contexts: list[list[int]],
        cache,
        rows: np.ndarray | None,
        pending: np.ndarray,
    ) -> None:
        self.potential = potential
        self._contexts = contexts
        self._cache = cache
        self._rows = rows
        self._pending = pending
        self._memo: np.ndarray | None = None
        # a parent's memo and the rows selected from it: copied only if read (SMC reads the
        # rows of a resampled state rarely; it advances it, which needs a forward anyway)
        self._memo_of: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def contexts(self) -> list[list[int]]:  # noqa: D102
        return self._contexts

    def __len__(self) -> int:
        return len(self._contexts)

    def logw_next(self) -> np.ndarray:
        """Next-token log-probs of every row (one batched forward, memoised)."""
        if self._memo is not None:
            return self._memo
        if self._memo_of is not None:
            parent, rows = self._memo_of
            self._memo, self._memo_of = parent[rows], None
            return self._memo
        pot = self.potential
        n = len(self._contexts)
        V1 = len(pot.vocab) + 1
        if n == 0:
            self._memo = np.zeros((0, V1))
        elif self._pending.shape[1] == 0:  # nothing generated yet: the prompt's vector
            self._memo = np.repeat(pot._prompt_row()[None], n, axis=0)
        else:
            # Rows with equal contexts (copies made by resampling) share one forward row:
            # the new cache keeps one row per distinct context and ``_rows`` maps back to it.
            scores, self._cache, inverse = pot.lm.backend.step(
                self._cache, self._rows, self._contexts, self._pending
            )
            self._pending = self._pending[:, :0]
            lp = pot.to_vocab(scores)
            self._rows, self._memo = inverse, lp if inverse is None else lp[inverse]
        return self._memo

    def advance(self, tokens: np.ndarray) -> LMState:
        """Append ``tokens[r]`` to row ``r`` (the forward waits for the next ``logw_next``)."""
        pot = self.potential
        V = len(pot.vocab)
        tokens = np.asarray(tokens)
        if tokens.shape != (len(self._contexts),) or (
            tokens.size and not np.issubdtype(tokens.dtype, np.integer)
        ):
            raise ValueError(
                f"`tokens` has shape {tokens.shape} and dtype {tokens.dtype}; advance needs "
                f"one integer token per row ({len(self._contexts)})."
            )
        tokens = tokens.astype(np.int64)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= V):
            bad = tokens[(tokens < 0) | (tokens >= V)][0]
            raise ValueError(
                f"`tokens` holds {bad}, not a vocabulary position (0..{V - 1}); EOS ({V}) "
                "ends a particle and cannot be appended."
            )
        length = len(self._contexts[0]) + 1 if self._contexts else 0
        pot._check_length(length)
        ids = pot.vocab.ids[tokens]
        return LMState(
            pot,
            contexts=[c + [int(t)] for c, t in zip(self._contexts, tokens)],
            cache=self._cache,
            rows=self._rows,
            pending=np.concatenate([self._pending, ids[:, None]], axis=1),
        )

    def select(self, rows: np.ndarray) -> LMState:
        """Rows ``rows`` of this batch (repeats allowed); caches are reindexed lazily."""
        rows = np.asarray(rows, dtype=np.int64)
        n = len(self._contexts)
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= n)):
            raise ValueError(f"`rows` is {rows!r}; pass a 1-d array of row indices in 0..{n - 1}.")
        base = np.arange(n) if self._rows is None else self._rows
        out = LMState(
            self.potential,
            contexts=[list(self._contexts[r]) for r in rows],
            cache=self._cache if rows.size else None,
            rows=base[rows],
            pending=self._pending[rows],
        )
        if self._memo is not None:
            out._memo_of = (self._memo, rows)
        elif self._memo_of is not None:
            parent, prev = self._memo_of
            out._memo_of = (parent, prev[rows])
        return out
