"""The llama.cpp backend on the embedded Gemma 3 270M: cache contract, forks, agreement.

Reference for cache tests: one fresh prefill of prompt + context on the same backend (no
cache reuse). Agreement with transformers fp32 is mass-weighted (KL) and by the top 10.
Measured here (fp16 GGUF rewritten from the shipped Q4_K_M, 1 thread): see docs/lm.md.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from potentia.lm import LM
from potentia.lm.backend import log_probs
from potentia.testing import assert_logw_close, assert_potential_laws

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.real_model

ATOL = 1e-3  # same weights, other batch shapes: llama.cpp fp16 kernels round per shape


@pytest.fixture(scope="session")
def gemma_llama():
    return LM.default(backend="llama.cpp", dtype="fp16")


@pytest.fixture(scope="session")
def gemma_llama_f32():
    """The embedded Gemma on llama.cpp with F32 weights (loaded once per session)."""
    return LM.default(backend="llama.cpp", dtype="fp32")


def fresh(lm: LM, prompt_ids: list[int], ctx: list[int]) -> np.ndarray:
    _, s = lm.backend.prefill(prompt_ids + [int(lm.vocab.ids[t]) for t in ctx])
    return log_probs(s[None].float(), lm.vocab_ids_t, lm.eos_ids_t)[0]


def test_cached_batched_resampled_and_branched_match_fresh(gemma_llama):
    lm = gemma_llama
    pot = lm.potential("The capital of France is")
    ctxs = [lm.encode(s)[:1] for s in (" Paris", " Lyon", " the")]
    state = pot.state_from(ctxs)
    got = state.logw_next()
    for r, c in enumerate(ctxs):
        assert_logw_close(got[r], fresh(lm, pot.prompt_ids, c), ATOL, f"row {r}")
    dot, comma = lm.encode(".")[0], lm.encode(",")[0]
    a = state.select(np.array([2, 0, 2])).advance(np.array([dot, comma, comma]))
    b = state.advance(np.array([comma, comma, dot]))  # a second branch from the same state
    for s in (a, b, a.advance(np.array([dot, dot, dot]))):
        v = s.logw_next()
        for r, c in enumerate(s.contexts):
            assert_logw_close(v[r], fresh(lm, pot.prompt_ids, c), ATOL, f"{c}")


def test_one_decode_per_step_and_seq_ids_return_to_the_bank(gemma_llama):
    import gc

    lm = gemma_llama
    pot = lm.potential("Once upon a time")
    free0 = lm.backend.free_seq_ids
    s = pot.init_state(8)
    s.logw_next()
    stats = lm.backend.stats
    f0 = stats.forwards
    rng = np.random.default_rng(0)
    for _ in range(3):
        s = s.select(rng.integers(0, 8, 8)).advance(rng.integers(0, 1000, 8))
        s.logw_next()
    assert stats.forwards - f0 == 3
    del s
    gc.collect()
    assert lm.backend.free_seq_ids >= free0 - 1  # the prompt's row stays with the potential


def test_a_finalizer_never_waits_for_the_bank(gemma_llama):
    """A handle collected while the bank's lock is held (a finalizer runs inside any
    allocation, also inside the bank's own code) must not block: it queues its ids, and
    they return to the bank at the next take. (The first version locked in the finalizer
    and deadlocked a long JSONSchemaBench run.)"""
    import gc
    import threading

    b = gemma_llama.backend
    pot = gemma_llama.potential("Once upon a time")
    s = pot.init_state(4)
    s.logw_next()
    s = s.advance(np.arange(4))
    s.logw_next()
    free0 = b.free_seq_ids
    with b._lock:
        t = threading.Thread(target=lambda: (gc.collect(), b._release([])))
        t.start()
        t.join(10)
        assert not t.is_alive(), "a finalizer blocked on the bank's lock"
        del s
        gc.collect()  # the collected handle's finalizer runs here, lock held by this thread
    assert b.free_seq_ids == free0 + 4


def test_potential_laws(gemma_llama):
    lm = gemma_llama
    pot = lm.potential("The capital of France is")
    x = lm.encode(" Paris.")
    rng = np.random.default_rng(3)
    tokens = np.concatenate([rng.choice(len(lm.vocab), 4, replace=False), x[:1]])
    assert_potential_laws(pot, [[], x], tokens=tokens, atol=ATOL, rng=rng, check_states=False)


def test_agrees_with_transformers_fp32(gemma_tf, gemma_llama):
    """fp16 GGUF vs transformers fp32: top 10 equal and KL ≤ 1e-4 (measured ~1e-5)."""
    pr, pl = (
        gemma_tf.potential("The capital of France is"),
        gemma_llama.potential("The capital of France is"),
    )
    for c in ([], gemma_tf.encode(" Paris"), gemma_tf.encode(" Paris, and")):
        a, b = pr.logw_next(c), pl.logw_next(c)
        fin = np.isfinite(a)
        kl = float((np.exp(a[fin]) * (a[fin] - b[fin])).sum())
        assert 0 <= kl < 1e-4, (c, kl)
        assert list(np.argsort(-a)[:10]) == list(np.argsort(-b)[:10]), c
    # a one-token change of context is far outside ATOL: the cache tests above can fail
    other = fresh(gemma_llama, pl.prompt_ids, gemma_tf.encode(" Lyon")[:1])
    with pytest.raises(AssertionError):
        assert_logw_close(pl.logw_next(gemma_tf.encode(" Paris")[:1]), other, ATOL)


#: fixed contexts for the F32 agreement test: every position of each (36 rows in all)
AGREE_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
)
AGREE_CONTINUATIONS = ("", " Paris, and the", "\n    if n <")


def full_rows(lm: LM, prompt: str, ctx: list[int]) -> np.ndarray:
    """Float64 log-softmax over the whole output layer after the prompt and each prefix of ``ctx``."""
    cache, s0 = lm.backend.prefill(lm.potential(prompt).prompt_ids)
    rows = [s0[None]]
    if ctx:
        rows.append(lm.backend.score(cache, lm.vocab.ids[ctx]))
    return torch.log_softmax(torch.cat(rows).double(), dim=-1).numpy()


def test_f32_agrees_with_transformers_fp32(gemma_tf, gemma_llama_f32):
    """F32 GGUF vs transformers fp32 (issue 14): top 10 equal and KL ≤ 1e-5 at every position.

    Deterministic (fixed contexts, one thread). Measured on this build: KL at most 6.6e-6
    (mean 8.5e-7) over the 36 positions; the closest two of the reference's top 11 are 7e-4
    apart in log p. The bf16 GGUF fails both checks (KL up to 5.4e-4, the top 10 differs at
    12 positions), and so did F32 with llama.cpp's flash attention on (KL 1.1e-5). F32 is
    not bit-exact fp32 (the KV cache is fp16, and ggml's CPU GELU reads an fp16 table):
    on the wider 84-position set of benchmarks/lm_step.py one position reaches KL 1.2e-5;
    an F32 KV cache took that to 4.5e-6 but swapped two tokens 7e-4 apart elsewhere.
    """
    for prompt in AGREE_PROMPTS:
        for cont in AGREE_CONTINUATIONS:
            ctx = list(gemma_tf.encode(cont)) if cont else []
            a, b = full_rows(gemma_tf, prompt, ctx), full_rows(gemma_llama_f32, prompt, ctx)
            kl = (np.exp(a) * (a - b)).sum(axis=1)  # KL(fp32 ‖ F32 GGUF) per position
            assert kl.max() <= 1e-5, (prompt, cont, kl)
            top_a, top_b = np.argsort(-a, axis=1)[:, :10], np.argsort(-b, axis=1)[:, :10]
            assert np.array_equal(top_a, top_b), (
                prompt,
                cont,
                np.flatnonzero((top_a != top_b).any(1)),
            )


def test_bad_arguments_name_the_argument(tmp_path):
    from potentia.lm.llamacpp_backend import LlamaCppBackend, resolve_llama_dtype

    with pytest.raises(ValueError, match="`backend`"):
        LM.default(backend="onnx")
    with pytest.raises(ValueError, match="`dtype`"):
        LM.default(backend="llama.cpp", dtype="int3")
    with pytest.raises(ValueError, match="`dtype`"):
        LM.default(backend="transformers", dtype="q4_k_m")
    with pytest.raises(ValueError, match="`path`"):
        LlamaCppBackend(tmp_path / "none.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(ValueError, match="`path`"):
        LlamaCppBackend(bad)
    with pytest.raises(ValueError, match="`n_threads`"):
        LlamaCppBackend(bad, n_threads=0)
    assert resolve_llama_dtype(torch.float16) == resolve_llama_dtype("f16") == "fp16"


def test_context_window_follows_n_ctx_and_errors_name_it(gemma):
    """The default backend's window is its KV cache (n_ctx); a prompt or max_tokens past it
    is refused before any LM call, with `n_ctx` named as the way to a longer context."""
    import potentia as pt

    assert gemma.context_window == 8192 and gemma.backend.n_ctx_train == 32768
    gemma.backend.stats.reset()
    with pytest.raises(ValueError, match=r"`max_tokens` is 9000.*pt\.LM\.default\(n_ctx=\.\.\.\)"):
        pt.sample(gemma, "Hi", pt.regex("a+"), max_tokens=9000)
    with pytest.raises(ValueError, match=r"`prompt` has \d+ tokens.*up to 32768 tokens"):
        gemma.potential("word " * 9000)
    assert gemma.backend.stats.as_dict()["forwards"] == 0
    small = LM.default(n_ctx=512)
    assert small is not gemma and small.context_window == 512
    assert small is LM.default(n_ctx=512)  # cached per (dtype, threads, n_ctx)


def test_release_pages_keeps_zeros_and_frees_the_pages():
    """What the backend does to llama.cpp's zero-filled logits buffer: the pages leave the
    resident set and read back as zeros; memory outside the range is untouched."""
    import mmap

    from potentia.lm.llamacpp_backend import _release_pages

    page = mmap.PAGESIZE
    n = 4096 * page
    buf = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # like a large malloc
    arr = np.frombuffer(buf, dtype=np.uint8)
    arr[:] = 0
    arr[:page] = 7  # the first page (outside the released range below) keeps its bytes

    def resident_pages() -> int:
        return sum(1 for b in _mincore(buf, n) if b & 1)

    assert resident_pages() == 4096
    head = ctypes.c_char.from_buffer(buf)
    _release_pages(ctypes.addressof(head) + page, n - page)
    assert resident_pages() == 1
    assert (arr[:page] == 7).all() and not arr[page:].any()
    del arr, head


def _mincore(buf, n):
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    vec = (ctypes.c_ubyte * (n // mmap.PAGESIZE))()
    head = ctypes.c_char.from_buffer(buf)
    assert libc.mincore(ctypes.c_void_p(ctypes.addressof(head)), ctypes.c_size_t(n), vec) == 0
    del head
    return bytes(vec)


def test_more_live_states_than_sequence_ids_evict_and_rebuild(gemma_llama_f32):
    """A trie, a search frontier or user code may keep more single-row states alive than
    the bank has sequence ids: the least recently used give theirs back and are decoded
    again when extended. Every state still gives the rows a fresh forward gives: argmax
    equal and KL ≤ 1e-4 (F32 weights; measured 2e-7..9e-6 with and without evictions —
    an incremental decode and a one-pass prefill round differently, by up to 6e-3 in
    ``assert_logw_close``'s metric on unlikely tokens; a row rebuilt from wrong tokens or
    positions is orders of magnitude further)."""
    from potentia.lm.embedded import gemma_gguf_typed
    from potentia.lm.llamacpp_backend import LlamaCppBackend

    small = LlamaCppBackend(
        gemma_gguf_typed("fp32"), dtype="fp32", n_seq_max=6, n_ctx=2048, name="tiny-bank"
    )
    lm = LM(small, gemma_llama_f32.tokenizer)
    assert lm.vocab == gemma_llama_f32.vocab
    pot = lm.potential("Once upon a time")
    root = pot.init_state(1)
    root.logw_next()
    states = []
    for t in range(12):  # 12 live branches, each one row, after the prompt's: > 6 ids
        s = root.advance(np.array([t]))
        s.logw_next()
        states.append(s)
    assert small.evictions > 0
    rng = np.random.default_rng(0)
    for t, s in enumerate(states):  # every branch, evicted or not, extends correctly
        nxt = int(rng.integers(0, 1000))
        got = s.advance(np.array([nxt])).logw_next()[0]
        want = fresh(lm, pot.prompt_ids, [t, nxt])
        p = np.exp(want)
        kl = float((p * (want - got))[p > 0].sum())
        assert kl <= 1e-4 and got.argmax() == want.argmax(), (t, kl)
    assert small.rebuilds > 0
    with pytest.raises(RuntimeError, match="sequence ids.*fewer particles"):
        pot.init_state(6).advance(np.arange(6)).logw_next()  # 6 new + the prompt's > 6
    small.close()


def test_closed_backends_refuse_work_and_exit_hook_closes_all():
    """The atexit hook frees every open context while the interpreter is whole; a closed
    backend raises instead of handing a freed context to llama.cpp."""
    import subprocess
    import sys

    code = (
        "import numpy as np, potentia as pt\n"
        "from potentia.lm import llamacpp_backend as lb\n"
        "lm = pt.LM.default(n_ctx=256)\n"
        "s = lm.potential('Hi').init_state(2).advance(np.array([5, 6]))\n"
        "s.logw_next()\n"
        "assert lm.backend in set(lb._OPEN)\n"
        "lb._close_all()\n"
        "assert lm.backend._ctx is None\n"
        "try:\n"
        "    s.advance(np.array([1, 2])).logw_next()\n"
        "except RuntimeError as e:\n"
        "    assert 'is closed' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
        "lm2 = pt.LM.default(n_ctx=128)\n"
        "lm2.potential('Hi').init_state(1).logw_next()\n"  # left open: the hook closes it
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
