"""The llama.cpp backend: a GGUF model run natively through llama-cpp-python's C API.

One llama.cpp context holds a *unified* KV cache shared by a bank of sequence ids. A cache
handle (:class:`SeqCache`) names one sequence id per row and the next position of each.
Extending a handle never writes into its sequences: every output row gets a fresh sequence
id from the bank, first made a copy of its source row with ``llama_memory_seq_cp`` (metadata
only: the KV cells are shared, not copied), then the new tokens of every row go through
*one* ``llama_decode``. Old handles therefore stay valid, as the backend contract requires
(branching from a state twice works); a handle's sequences go back to the bank
(``llama_memory_seq_rm``) when the handle is garbage collected.

Token ids are the HF tokenizer's: the embedded GGUF and its converted transformers folder
share one vocabulary, so every constraint and byte table works unchanged. Scores leave as
float32 ``(m, keep, n_vocab)`` tensors, normalised in float64 by
:func:`potentia.lm.backend.log_probs` like the transformers backend's.

Weight types (``dtype``): ``"fp32"``, ``"fp16"``, ``"bf16"`` and ``"q4_k_m"`` (the shipped
file). The first three are rewritten once from the shipped Q4_K_M with the ``gguf`` package
into the model cache (:func:`potentia.lm.embedded.gemma_gguf_typed`).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import torch

from potentia.lm.backend import Backend

__all__ = ["LLAMA_DTYPES", "LlamaCppBackend", "SeqCache", "resolve_llama_dtype"]

#: public weight-type name → GGUF tensor type name
LLAMA_DTYPES = {"fp32": "F32", "fp16": "F16", "bf16": "BF16", "q4_k_m": "Q4_K_M"}
_ALIASES = {"float32": "fp32", "f32": "fp32", "float16": "fp16", "f16": "fp16", "bfloat16": "bf16"}

_INIT_LOCK = threading.Lock()
_LOG_CB = None  # kept alive: llama.cpp holds the pointer
#: every open backend, closed by an atexit hook while the interpreter is whole
_OPEN: weakref.WeakSet = weakref.WeakSet()


def _close_all() -> None:
    """Free every open llama.cpp context and model before the interpreter tears down.

    Left to garbage collection at exit, a context could outlive the Python objects and
    state its destructors use (a test session ended in a segfault after all tests passed);
    closed here, in order, nothing of llama.cpp is left for the process's exit.
    """
    for b in list(_OPEN):
        try:
            b.close()
        except Exception:  # noqa: BLE001, S110 - best effort at exit
            pass


def resolve_llama_dtype(dtype: str | torch.dtype) -> str:
    """The public name of a llama.cpp ``dtype`` argument (``fp32``/``fp16``/``bf16``/``q4_k_m``).

    Raises:
        ValueError: for any other value, naming ``dtype`` and the accepted ones.
    """
    if isinstance(dtype, torch.dtype):
        dtype = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(
            dtype, str(dtype)
        )
    name = _ALIASES.get(dtype.lower(), dtype.lower()) if isinstance(dtype, str) else None
    if name not in LLAMA_DTYPES:
        raise ValueError(
            f"`dtype` is {dtype!r}; the llama.cpp backend runs 'fp32', 'fp16', 'bf16' or "
            "'q4_k_m' (the shipped GGUF) weights."
        )
    return name


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise ImportError(
            "the llama.cpp backend needs llama-cpp-python (>= 0.3.36, the llama_memory_* KV "
            "API). Install it with `make setup` or\n"
            "    CMAKE_ARGS=-DLLAVA_BUILD=OFF python -m pip install llama-cpp-python\n"
            "or pass backend='transformers'."
        ) from None
    if not hasattr(llama_cpp, "llama_memory_seq_cp"):
        raise ImportError(
            f"llama-cpp-python {getattr(llama_cpp, '__version__', '?')} has no llama_memory_* "
            "KV API; install llama-cpp-python >= 0.3.36, or pass backend='transformers'."
        )
    global _LOG_CB
    with _INIT_LOCK:
        if _LOG_CB is None:
            import atexit

            atexit.register(_close_all)
            _LOG_CB = llama_cpp.llama_log_callback(lambda level, text, data: None)
            llama_cpp.llama_log_set(_LOG_CB, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
    return llama_cpp


def _release_pages(ptr, nbytes: int) -> None:
    """Give the whole pages of ``[ptr, ptr + nbytes)`` back to the OS (``MADV_DONTNEED``).

    llama.cpp sizes its logits buffer for ``n_seq_max`` rows (256 × 262k floats, 268 MB for
    Gemma) and zero-fills it, so all of it is resident although a decode writes only its
    own output rows from the start of the buffer. The buffer is private anonymous memory,
    which reads back as zeros after ``MADV_DONTNEED``: the same content, resident again
    only where a decode writes (measured: 16 rows keep 17 MB, not 268). Linux only; a
    no-op elsewhere or if the call fails.
    """
    if not sys.platform.startswith("linux") or not ptr:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        page = os.sysconf("SC_PAGE_SIZE")
        start = ptr if isinstance(ptr, int) else ctypes.cast(ptr, ctypes.c_void_p).value
        lo = -(-start // page) * page
        hi = (start + nbytes) // page * page
        if hi > lo:
            libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 4)  # MADV_DONTNEED
    except (OSError, AttributeError, ValueError):
        pass


class SeqCache:
    """A backend cache: one sequence id of the shared KV cache per row, and its length.

    A handle also keeps each row's tokens, so that the backend may *evict* it when the bank
    of sequence ids runs out (least recently used first) and rebuild its rows by decoding
    those tokens again if it is extended later.

    Attributes:
        seqs: Sequence id of each row (stale while evicted).
        pos: Next position of each row (tokens it covers).
        tokens: Each row's token ids from position 0 (int32 arrays).
        used: When the backend last extended from this handle (its clock).
    """

    __slots__ = ("seqs", "pos", "tokens", "used", "_owned", "__weakref__")

    def __init__(
        self,
        backend: LlamaCppBackend,
        seqs: np.ndarray,
        pos: np.ndarray,
        tokens: list[np.ndarray],
    ) -> None:
        self.seqs = seqs
        self.pos = pos
        self.tokens = tokens
        self.used = backend._tick()
        # the ids this handle holds now: emptied on eviction, refilled on rebuild; the
        # finalizer hands back whatever it holds then
        self._owned = seqs.tolist()
        weakref.finalize(self, backend._release, self._owned)
        backend._live.add(self)

    @property
    def evicted(self) -> bool:
        """Whether the backend took this handle's sequence ids back (rebuilt on use)."""
        return not self._owned and len(self.seqs) > 0

    def __len__(self) -> int:
        return len(self.seqs)


class LlamaCppBackend(Backend):
    """A GGUF model run by llama.cpp as a :class:`Backend` (see the module docstring).

    Args:
        path: The GGUF file.
        dtype: Its weight type, for messages and ``lm.dtype`` (not read from the file).
        n_threads: CPU threads for llama.cpp (1: measured best on shared machines).
        n_ctx: KV cells shared by every live row and prompt (tokens of distinct contexts).
        n_seq_max: Sequence ids in the bank (at most 256, llama.cpp's limit): live rows of
            the live handles. When they run out, the least recently used handles give
            theirs back and are rebuilt from their tokens if used again, so only the rows
            of one step (and the handle it extends) must fit. Also the logits buffer's
            rows, of which only the written ones stay resident.
        name: A label for messages.
        flash_attn: Use llama.cpp's flash-attention kernel (``None``: off for fp32 weights,
            llama.cpp's automatic choice otherwise). Its CPU kernel rounds through fp16:
            on the embedded Gemma with fp32 weights it took KL(transformers fp32 ‖ llama.cpp)
            from at most 4.4e-6 to 1.1e-5 and changed the top-10 order at one of 36 positions
            (measured; fp16 and bf16 moved within noise in KL and in speed).

    Raises:
        ImportError: if llama-cpp-python is missing or too old.
        ValueError: if ``path`` is not a GGUF file llama.cpp can load, or an argument is bad.
    """

    def __init__(
        self,
        path: str | Path,
        dtype: str = "q4_k_m",
        n_threads: int = 1,
        n_ctx: int = 8192,
        n_seq_max: int = 256,
        name: str | None = None,
        flash_attn: bool | None = None,
    ) -> None:
        super().__init__()
        lc = _llama_cpp()
        self._lc = lc
        path = Path(path).expanduser()
        if not path.is_file():
            raise ValueError(f"`path` is {str(path)!r}, which is not a GGUF file.")
        for arg, v in (("n_threads", n_threads), ("n_ctx", n_ctx), ("n_seq_max", n_seq_max)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{arg}` is {v!r}; pass a positive int.")
        if n_seq_max > 256:
            raise ValueError(f"`n_seq_max` is {n_seq_max}; llama.cpp allows at most 256.")
        self.dtype = resolve_llama_dtype(dtype)
        self.name = name or path.stem
        self.device = torch.device("cpu")
        mp = lc.llama_model_default_params()
        self._model = lc.llama_model_load_from_file(str(path).encode(), mp)
        if not self._model:
            raise ValueError(f"`path` {str(path)!r}: llama.cpp could not load this GGUF file.")
        vocab = lc.llama_model_get_vocab(self._model)
        self.n_out = int(lc.llama_vocab_n_tokens(vocab))
        eos = {int(lc.llama_vocab_eos(vocab)), int(lc.llama_vocab_eot(vocab))}
        self.eos_token_ids = tuple(sorted(e for e in eos if 0 <= e < self.n_out))
        self.n_batch = 512
        cp = lc.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = self.n_batch
        cp.n_ubatch = self.n_batch
        cp.n_seq_max = n_seq_max
        cp.n_threads = cp.n_threads_batch = n_threads
        cp.kv_unified = True
        cp.swa_full = True  # rows at different positions share the sliding-window cells
        cp.no_perf = True
        if flash_attn is None and self.dtype == "fp32":
            flash_attn = False
        if flash_attn is not None:  # llama_flash_attn_type: -1 auto, 0 disabled, 1 enabled
            cp.flash_attn_type = int(bool(flash_attn))
        # the logits buffer: the most outputs of one decode (not n_batch × 262k floats)
        # (llama.cpp reserves at least n_seq_max rows)
        cp.n_outputs_max = n_seq_max
        self._ctx = lc.llama_init_from_model(self._model, cp)
        if not self._ctx:
            raise ValueError(
                f"llama.cpp could not make a context for {str(path)!r} (n_ctx={n_ctx})."
            )
        self.n_outputs_max = n_seq_max
        self.n_seq_max = n_seq_max
        _release_pages(lc.llama_get_logits(self._ctx), n_seq_max * self.n_out * 4)
        self._mem = lc.llama_get_memory(self._ctx)
        #: the context the model was trained for (the most ``n_ctx`` can usefully give)
        self.n_ctx_train = int(lc.llama_model_n_ctx_train(self._model))
        self.context_window = min(self.n_ctx_train, n_ctx)
        self.n_threads = n_threads
        self._free = list(range(n_seq_max - 1, -1, -1))
        # ids of garbage-collected handles, back to the bank at the next take: a finalizer
        # may run inside any allocation, also while this thread holds the lock or is
        # between llama.cpp calls, so it only appends here (atomic), never locks or calls C
        self._pending: list[list[int]] = []
        self._lock = threading.RLock()
        self._live: weakref.WeakSet[SeqCache] = weakref.WeakSet()  # handles (for eviction)
        self._clock = 0
        #: handles evicted (their ids taken back) and rebuilt (decoded again) so far
        self.evictions = 0
        self.rebuilds = 0
        self._batch = lc.llama_batch_init(self.n_batch, 0, 1)
        b = self._batch
        n = self.n_batch
        self._tok = np.ctypeslib.as_array(b.token, shape=(n,))
        self._pos = np.ctypeslib.as_array(b.pos, shape=(n,))
        self._nseq = np.ctypeslib.as_array(b.n_seq_id, shape=(n,))
        self._out = np.ctypeslib.as_array(b.logits, shape=(n,))
        self._seq = [b.seq_id[i] for i in range(n)]
        self._nseq[:] = 1
        _OPEN.add(self)

    # ----- the bank of sequence ids ---------------------------------------------------
    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _take(self, m: int, keep: SeqCache | None = None) -> list[int]:
        """``m`` free sequence ids; evicts least recently used handles (never ``keep``)."""
        with self._lock:
            self._reclaim()
            if len(self._free) < m:
                import gc

                gc.collect()  # handles in reference cycles
                self._reclaim()
            if len(self._free) < m:
                self._evict(m - len(self._free), keep)
            if len(self._free) < m:
                held = len(keep._owned) if keep is not None else 0
                raise RuntimeError(
                    f"one llama.cpp step needs {m} sequence ids beside the {held} of the state "
                    f"it extends, and the backend has {self.n_seq_max} in all: use fewer "
                    "particles (at most n_seq_max / 2 per step), or backend='transformers'."
                )
            return [self._free.pop() for _ in range(m)]

    def _evict(self, need: int, keep: SeqCache | None) -> None:
        """Take back the ids of the least recently used live handles (lock held)."""
        for h in sorted((h for h in list(self._live) if h._owned), key=lambda h: h.used):
            if need <= 0:
                break
            if h is keep:
                continue
            ids = list(h._owned)
            h._owned.clear()
            for s in ids:
                self._lc.llama_memory_seq_rm(self._mem, s, -1, -1)
            self._free.extend(ids)
            need -= len(ids)
            self.evictions += 1

    def _rebuild(self, h: SeqCache) -> None:
        """Give an evicted handle ids again and decode its rows' tokens into them."""
        with self._lock:
            ids = self._take(len(h.tokens), keep=h)
            h.seqs = np.asarray(ids, dtype=np.int64)
            h._owned.extend(ids)
            self.rebuilds += 1
        lens = [len(t) for t in h.tokens]
        self._decode(
            np.concatenate(h.tokens),
            np.concatenate([np.arange(n) for n in lens]),
            np.repeat(h.seqs, lens),
            np.zeros(sum(lens), dtype=np.int8),
        )

    def _release(self, seqs: list[int]) -> None:
        """A handle's finalizer: queue its ids (see ``_pending``); nothing else."""
        if getattr(self, "_ctx", None) is not None:
            self._pending.append(seqs)

    @property
    def free_seq_ids(self) -> int:
        """Sequence ids a new handle can take now (queued ones included)."""
        with self._lock:
            self._reclaim()
            return len(self._free)

    def _reclaim(self) -> None:
        """Clear the KV cells of queued ids and return them to the bank (lock held)."""
        if self._ctx is None:
            self._pending.clear()
            return
        while self._pending:
            seqs = self._pending.pop()
            for s in seqs:
                self._lc.llama_memory_seq_rm(self._mem, s, -1, -1)
            self._free.extend(seqs)

    # ----- the contract ---------------------------------------------------------------
    def _cache_rows(self, cache: SeqCache) -> int:
        return len(cache)

    def _extend(self, cache, rows, ids, keep):
        if self._ctx is None:
            raise RuntimeError(f"{self!r} is closed.")
        lc = self._lc
        ids_np = ids.cpu().numpy().astype(np.int32)
        m, k = ids_np.shape
        keep = min(int(keep), k)
        if cache is None:
            sel, start = None, np.zeros(m, dtype=np.int64)
        else:
            sel = np.arange(len(cache)) if rows is None else np.asarray(rows, dtype=np.int64)
            start = cache.pos[sel]
        if (start + k > self.context_window).any():
            raise ValueError(
                f"a context would reach {int((start + k).max())} tokens; the llama.cpp "
                f"context holds {self.context_window} (make the backend with a larger `n_ctx`)."
            )
        if cache is not None:
            if cache.evicted:
                self._rebuild(cache)
            cache.used = self._tick()
        new = np.asarray(self._take(m, keep=cache), dtype=np.int64)
        if cache is None:
            tokens = [ids_np[i].copy() for i in range(m)]
        else:
            tokens = [np.concatenate((cache.tokens[r], ids_np[i])) for i, r in enumerate(sel)]
        handle = SeqCache(self, new, start + k, tokens)  # owns `new` from here
        if cache is not None:
            for s, d in zip(cache.seqs[sel].tolist(), new.tolist(), strict=True):
                lc.llama_memory_seq_cp(self._mem, s, d, -1, -1)
        # token order: row-major; outputs (the last `keep` of each row) in the same order
        out = np.zeros((m, k), dtype=np.int8)
        out[:, k - keep :] = 1
        result = self._decode(
            ids_np.reshape(-1),
            (start[:, None] + np.arange(k)[None]).reshape(-1),
            np.repeat(new, k),
            out.reshape(-1),
        )
        return torch.from_numpy(result).view(m, keep, self.n_out), handle

    def _decode(
        self, tok: np.ndarray, pos: np.ndarray, seq: np.ndarray, out: np.ndarray
    ) -> np.ndarray:
        """Feed flat tokens (id, position, sequence, output flag) to ``llama_decode``.

        Batches of at most ``n_batch`` tokens and ``n_outputs_max`` outputs; returns the
        output rows' float32 scores, in order.
        """
        lc = self._lc
        result = np.empty((int(out.sum()), self.n_out), dtype=np.float32)
        done = 0
        total = len(tok)
        i = 0
        while i < total:
            j = i + self.n_batch
            # at most n_outputs_max outputs per decode
            cum = np.cumsum(out[i:j])
            if cum[-1] > self.n_outputs_max:
                j = i + int(np.searchsorted(cum, self.n_outputs_max, side="right"))
            j = min(j, total)
            n = j - i
            self._tok[:n] = tok[i:j]
            self._pos[:n] = pos[i:j]
            self._out[:n] = out[i:j]
            for t in range(n):
                self._seq[t][0] = int(seq[i + t])
            self._batch.n_tokens = n
            rc = lc.llama_decode(self._ctx, self._batch)
            if rc != 0:
                raise RuntimeError(
                    f"llama_decode returned {rc}"
                    + (
                        ": no room in the KV cache; make the backend with a larger `n_ctx`."
                        if rc == 1
                        else "."
                    )
                )
            n_o = int(out[i:j].sum())
            if n_o:
                ptr = lc.llama_get_logits(self._ctx)
                result[done : done + n_o] = np.ctypeslib.as_array(ptr, shape=(n_o, self.n_out))
                done += n_o
            i = j
        return result

    def close(self) -> None:
        """Free the llama.cpp context and model (the backend is unusable afterwards)."""
        lc = self._lc
        with self._lock:
            ctx, self._ctx = getattr(self, "_ctx", None), None
            if ctx is not None:
                lc.llama_batch_free(self._batch)
                lc.llama_free(ctx)
                lc.llama_model_free(self._model)

    def __del__(self) -> None:
        try:
            # at shutdown the atexit hook has closed it, and it is too late to call C (even
            # the module's globals may be gone: any error here means "shutting down")
            if not sys.is_finalizing():
                self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"LlamaCppBackend({self.name!r}, {self.dtype}, threads={self.n_threads})"
