"""LM step: every backend x weight type of the embedded Gemma 3 270M, 1 thread, vs the LM head.

Measures, in one process with one thread (``torch.set_num_threads(1)``, llama.cpp
``n_threads=1``):

* the SMC step ``state.advance(tokens).logw_next()`` (one batched forward for all rows and
  every full 262k-logit row converted to potentia's float64-normalised (V+1)-vector by
  ``LMState.logw_next``) for N in {1, 8, 16, 32} rows whose contexts differ (distinct first
  tokens, then a fresh random token per row each step), on transformers fp32 / bf16 and
  llama.cpp F32 / F16 / BF16 (the shipped Q4_K_M is listed with the reason it is refused);
  configurations alternate step by step and the config order flips every round; medians
  without each run's first 2 steps; wall and process CPU time;
* the share of the step spent in the row conversion (``LMPotential.to_vocab``);
* the arithmetic bound of the step: a bare matmul of N final hidden states (N x 640) with
  the 262,144 x 640 output matrix in the same weight type (torch ``F.linear`` on the
  transformers model's head; ggml ``ggml_mul_mat`` on the GGUF's ``token_embd`` through
  llama.cpp's own CPU backend), and step / bound;
* distance from transformers fp32 on fixed contexts (full output layer, float64):
  KL(fp32 || x), max |d log p|, top-10 and argmax agreement;
* in fresh processes: the first run on an EMPTY model cache (``$POTENTIA_CACHE`` set to a
  temporary folder: GGUF assembly and conversion included) for the default backend and
  llama.cpp fp16, the load with a warm cache, and the peak RSS (VmHWM) of 16 particles x
  256 tokens.

    .venv/bin/python benchmarks/lm_step.py            # full run, writes docs/benchmarks.md
    .venv/bin/python benchmarks/lm_step.py --quick    # smoke: few steps, no fresh processes

Ends with ``BENCH lm_step best_step8_ms=... step8_over_bound=... n1_speedup_vs_fp32=...
first_run_s=... cached_load_s=... rss16x256_gb=...``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NS = (1, 8, 16, 32)
CONFIGS = (
    ("transformers", "fp32"),
    ("transformers", "bf16"),
    ("llama.cpp", "fp32"),
    ("llama.cpp", "fp16"),
    ("llama.cpp", "bf16"),
    ("llama.cpp", "q4_k_m"),
)
REF = ("transformers", "fp32")
PROMPT = (
    "The following is a short report on the history of the city of Lyon, written for "
    "visitors who arrive by train and have one afternoon to spend in the old town."
)
#: fixed contexts for the distance from fp32 (every position of each; as in the F32 test)
DIST_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    '{"name": "Alice", "age":',
)
DIST_CONTINUATIONS = ("", " Paris, and the", "\n    if n <", ' 30, "city": "')


def label(cfg: tuple[str, str]) -> str:
    """``backend dtype``, e.g. ``llama.cpp fp16``."""
    return f"{cfg[0]} {cfg[1]}"


# ----- the LM-head bound ------------------------------------------------------------------
class _GgmlInitParams(ctypes.Structure):
    _fields_ = [
        ("mem_size", ctypes.c_size_t),
        ("mem_buffer", ctypes.c_void_p),
        ("no_alloc", ctypes.c_bool),
    ]


def _ggml():
    """ggml's base and CPU libraries as shipped by llama-cpp-python (ctypes, typed)."""
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    base = ctypes.CDLL(str(lib / "libggml-base.so"))
    cpu = ctypes.CDLL(str(lib / "libggml-cpu.so"))
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    base.ggml_init.argtypes, base.ggml_init.restype = [_GgmlInitParams], p
    base.ggml_free.argtypes, base.ggml_free.restype = [p], None
    base.ggml_new_tensor_2d.argtypes = [p, ctypes.c_int, i64, i64]
    base.ggml_new_tensor_2d.restype = p
    base.ggml_mul_mat.argtypes, base.ggml_mul_mat.restype = [p, p, p], p
    base.ggml_new_graph.argtypes, base.ggml_new_graph.restype = [p], p
    base.ggml_build_forward_expand.argtypes = [p, p]
    base.ggml_build_forward_expand.restype = None
    base.ggml_get_data.argtypes, base.ggml_get_data.restype = [p], p
    base.ggml_graph_overhead.argtypes, base.ggml_graph_overhead.restype = [], ctypes.c_size_t
    base.ggml_tensor_overhead.argtypes, base.ggml_tensor_overhead.restype = [], ctypes.c_size_t
    cpu.ggml_graph_compute_with_ctx.argtypes = [p, p, ctypes.c_int]
    cpu.ggml_graph_compute_with_ctx.restype = ctypes.c_int
    cpu.ggml_cpu_init.argtypes, cpu.ggml_cpu_init.restype = [], None
    cpu.ggml_cpu_init()
    return base, cpu


class GgmlHead:
    """A ``(rows, k)`` weight matrix of one ggml type and ``y = W @ h`` for ``(n, k)`` ``h``.

    The matmul runs through ggml's CPU backend (``ggml_mul_mat``, the op llama.cpp's LM head
    is), on ``n_threads`` threads; ``h`` is float32 as llama.cpp's hidden states are (ggml
    converts it to the weight type's dot-product type, as in the model).

    Args:
        raw: The weight's bytes in ggml layout (row-major ``rows x k`` elements of ``gtype``).
        gtype: The ggml type number (0 F32, 1 F16, 30 BF16, ...).
        rows: Output rows (262,144 for Gemma).
        k: Inner size (640).
        n_threads: CPU threads.
    """

    def __init__(self, raw: np.ndarray, gtype: int, rows: int, k: int, n_threads: int = 1):
        self.base, self.cpu = _ggml()
        self.rows, self.k, self.n_threads = rows, k, n_threads
        raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
        over = self.base.ggml_tensor_overhead()
        self.wctx = self.base.ggml_init(_GgmlInitParams(raw.nbytes + over + 4096, None, False))
        self.w = self.base.ggml_new_tensor_2d(self.wctx, gtype, k, rows)
        ctypes.memmove(self.base.ggml_get_data(self.w), raw.ctypes.data, raw.nbytes)
        self._graphs: dict[int, tuple] = {}

    def _graph(self, n: int, reps: int):
        """A context holding ``h`` (n x k f32), the product and its graph, with work room."""
        b = self.base
        size = (
            4 * n * self.k + 4 * n * self.rows + b.ggml_graph_overhead()
            + 4 * b.ggml_tensor_overhead()
            + (reps + 4) * (8 * n * self.k + 65536)  # a work buffer per compute
            + (1 << 20)
        )  # fmt: skip
        ctx = b.ggml_init(_GgmlInitParams(size, None, False))
        h = b.ggml_new_tensor_2d(ctx, 0, self.k, n)
        y = b.ggml_mul_mat(ctx, self.w, h)
        gf = b.ggml_new_graph(ctx)
        b.ggml_build_forward_expand(gf, y)
        return ctx, h, y, gf

    def matmul(self, h: np.ndarray) -> np.ndarray:
        """``W @ h.T`` as float32, shape ``(n, rows)`` (one compute; for checking)."""
        n = h.shape[0]
        ctx, ht, y, gf = self._graph(n, 1)
        try:
            hh = np.ascontiguousarray(h, dtype=np.float32)
            ctypes.memmove(self.base.ggml_get_data(ht), hh.ctypes.data, hh.nbytes)
            if self.cpu.ggml_graph_compute_with_ctx(ctx, gf, self.n_threads) != 0:
                raise RuntimeError("ggml_graph_compute_with_ctx failed")
            ptr = ctypes.cast(self.base.ggml_get_data(y), ctypes.POINTER(ctypes.c_float))
            return np.ctypeslib.as_array(ptr, shape=(n, self.rows)).copy()
        finally:
            self.base.ggml_free(ctx)

    def times(self, h: np.ndarray, reps: int) -> list[float]:
        """(wall, CPU) seconds of ``reps`` computes of ``W @ h.T`` (a first one warms up)."""
        n = h.shape[0]
        ctx, ht, _, gf = self._graph(n, reps + 1)
        try:
            hh = np.ascontiguousarray(h, dtype=np.float32)
            ctypes.memmove(self.base.ggml_get_data(ht), hh.ctypes.data, hh.nbytes)
            out = []
            for r in range(reps + 1):
                t0, c0 = time.perf_counter(), time.process_time()
                if self.cpu.ggml_graph_compute_with_ctx(ctx, gf, self.n_threads) != 0:
                    raise RuntimeError("ggml_graph_compute_with_ctx failed")
                if r:
                    out.append((time.perf_counter() - t0, time.process_time() - c0))
            return out
        finally:
            self.base.ggml_free(ctx)

    def close(self) -> None:
        """Free the weight's context."""
        if self.wctx:
            self.base.ggml_free(self.wctx)
            self.wctx = None


def ggml_head_of(dtype: str) -> GgmlHead:
    """The output matrix of the embedded Gemma's GGUF of ``dtype`` (tied: ``token_embd``)."""
    from gguf import GGUFReader

    from potentia.lm.embedded import gemma_gguf_typed

    reader = GGUFReader(gemma_gguf_typed(dtype))
    by_name = {t.name: t for t in reader.tensors}
    t = by_name.get("output.weight") or by_name["token_embd.weight"]
    k, rows = (int(x) for x in t.shape[:2])
    return GgmlHead(np.asarray(t.data), int(t.tensor_type), rows, k)


class TorchHead:
    """The transformers model's own LM head: ``F.linear(h, W)`` in the model's dtype."""

    def __init__(self, lm) -> None:
        self.w = lm.model.get_output_embeddings().weight.detach()

    def times(self, h: np.ndarray, reps: int) -> list[float]:
        """(wall, CPU) seconds of ``reps`` head matmuls (a first one warms up)."""
        x = torch.as_tensor(h).to(self.w.dtype)
        out = []
        with torch.inference_mode():
            for r in range(reps + 1):
                t0, c0 = time.perf_counter(), time.process_time()
                torch.nn.functional.linear(x, self.w)
                if r:
                    out.append((time.perf_counter() - t0, time.process_time() - c0))
        return out


# ----- steps -----------------------------------------------------------------------------
class Timed:
    """An LM potential whose row conversion (``to_vocab``) is timed (instance attribute)."""

    def __init__(self, lm) -> None:
        self.pot = lm.potential(PROMPT)
        self.conv = [0.0, 0.0]  # wall, CPU
        cls_to_vocab = type(self.pot).to_vocab
        pot = self.pot

        def to_vocab(scores):
            t0, c0 = time.perf_counter(), time.process_time()
            out = cls_to_vocab(pot, scores)
            self.conv[0] += time.perf_counter() - t0
            self.conv[1] += time.process_time() - c0
            return out

        pot.to_vocab = to_vocab


def run_steps(timed: dict, n: int, steps: int, rng: np.random.Generator, order: list) -> dict:
    """Per config: (wall, CPU, conversion wall, conversion CPU) s of each step after two."""
    V = len(next(iter(timed.values())).pot.vocab)
    first = rng.choice(V, n, replace=False)  # distinct first tokens: contexts differ per row
    states = {}
    for k in order:
        s = timed[k].pot.init_state(n)
        s.logw_next()
        states[k] = s.advance(first)
        states[k].logw_next()
    out: dict = {k: [] for k in order}
    for step in range(steps + 2):
        tokens = rng.integers(0, V, n)
        for k in order:
            t = timed[k]
            t.conv = [0.0, 0.0]
            w0, c0 = time.perf_counter(), time.process_time()
            states[k] = states[k].advance(tokens)
            states[k].logw_next()
            w, c = time.perf_counter() - w0, time.process_time() - c0
            if step >= 2:
                out[k].append((w, c, *t.conv))
    return out


def full_rows(lm, prompt: str, ctx: list[int]) -> np.ndarray:
    """Float64 log-softmax over the whole output layer after ``prompt`` and each prefix."""
    cache, s0 = lm.backend.prefill(lm.potential(prompt).prompt_ids)
    rows = [s0[None]]
    if ctx:
        rows.append(lm.backend.score(cache, lm.vocab.ids[ctx]))
    return torch.log_softmax(torch.cat(rows).double(), dim=-1).numpy()


def distance(ref, other) -> dict:
    """KL(ref || other), max |d log p|, top-10 / argmax agreement on the fixed contexts."""
    kls, dmax, top10, top1, total = [], 0.0, 0, 0, 0
    for prompt in DIST_PROMPTS:
        for cont in DIST_CONTINUATIONS:
            ctx = list(ref.encode(cont)) if cont else []
            a, b = full_rows(ref, prompt, ctx), full_rows(other, prompt, ctx)
            kls += list((np.exp(a) * (a - b)).sum(axis=1))
            dmax = max(dmax, float(np.abs(a - b).max()))
            ta, tb = np.argsort(-a, axis=1)[:, :10], np.argsort(-b, axis=1)[:, :10]
            top10 += int((ta == tb).all(axis=1).sum())
            top1 += int((ta[:, 0] == tb[:, 0]).sum())
            total += len(a)
    return {
        "kl_mean": float(np.mean(kls)),
        "kl_max": float(np.max(kls)),
        "dmax": dmax,
        "top10": top10,
        "top1": top1,
        "positions": total,
    }


# ----- fresh processes -------------------------------------------------------------------
def child(code: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh Python process; it prints one JSON line last."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


LOAD_CODE = """
import time, json
t0 = time.perf_counter()
import torch; torch.set_num_threads(1)
import potentia as pt
t1 = time.perf_counter()
lm = pt.LM.default(**%(kw)r)
t2 = time.perf_counter()
lm.potential("Hi").init_state(1).logw_next()
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "first_vector": t3 - t2,
                  "total": t3 - t0, "name": lm.name}))
"""

RSS_CODE = """
import json, time
import numpy as np, torch

def hwm_gb():  # VmHWM: this process image's peak RSS (ru_maxrss would carry the parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20

torch.set_num_threads(1)
import potentia as pt
lm = pt.LM.default(**%(kw)r)
pot = lm.potential(%(prompt)r)
state = pot.init_state(16)
state.logw_next()
base = hwm_gb()
rng = np.random.default_rng(0)
t = time.perf_counter()
for step in range(%(tokens)d):
    v = state.logw_next()[:, :-1]
    p = np.exp(v - v.max(1, keepdims=True))
    c = np.cumsum(p, axis=1)
    u = rng.random(16) * c[:, -1]
    toks = np.minimum((c < u[:, None]).sum(1), c.shape[1] - 1)  # inverse-CDF draw per row
    state = state.advance(toks)
state.logw_next()
print(json.dumps({"peak_gb": hwm_gb(), "after_load_gb": base, "tokens": %(tokens)d,
                  "total_s": time.perf_counter() - t, "name": lm.name}))
"""


def kwargs(cfg: tuple[str, str] | None) -> dict:
    """``LM.default`` keyword arguments of a config (``None``: the default backend)."""
    return {} if cfg is None else {"backend": cfg[0], "dtype": cfg[1], "n_threads": 1}


# ----- main ------------------------------------------------------------------------------
def med(xs) -> float:
    return float(np.median(xs)) if len(xs) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=24, help="timed steps per run (+2 warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (>= 2)")
    ap.add_argument("--bound-reps", type=int, default=20, help="LM-head matmuls per round")
    ap.add_argument("--rss-tokens", type=int, default=256)
    ap.add_argument("--no-fresh", action="store_true", help="skip the fresh-process figures")
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="the time behind ratios and the BENCH line: wall, or process CPU time (1 thread: "
        "leaves out waiting for a core on a shared machine); both are tabled",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run; does not write docs")
    args = ap.parse_args()
    ns = NS
    if args.quick:
        args.steps, args.rounds, args.bound_reps, args.no_fresh, ns = 3, 1, 3, True, (1, 8)
    torch.set_num_threads(1)
    import potentia as pt
    from potentia.lm.model import DEFAULT_BACKEND

    t_start = time.perf_counter()
    load0 = os.getloadavg()
    lms, refused = {}, {}
    for cfg in CONFIGS:
        try:
            lms[cfg] = pt.LM.default(**kwargs(cfg))
        except (ValueError, ImportError) as err:
            refused[cfg] = str(err).splitlines()[0]
    avail = [c for c in CONFIGS if c in lms]
    timed = {c: Timed(lms[c]) for c in avail}
    heads = {}
    for c in avail:
        heads[c] = TorchHead(lms[c]) if c[0] == "transformers" else ggml_head_of(c[1])
    # the ggml bound computes the real product: check it against numpy once
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((max(ns), 640)).astype(np.float32)
    for c in avail:
        if isinstance(heads[c], GgmlHead):
            w = lms[REF].model.get_output_embeddings().weight.detach().numpy()
            got = heads[c].matmul(hidden[:2])
            want = hidden[:2] @ w.T
            err = np.abs(got - want).max() / np.abs(want).max()
            assert err < 2e-2, (c, err)  # bf16 weights: 8-bit mantissa

    steps = {(c, n): [] for c in avail for n in ns}
    bounds = {(c, n): [] for c in avail for n in ns}
    for r in range(args.rounds):
        order = avail if r % 2 == 0 else avail[::-1]
        for n in ns:
            got = run_steps(timed, n, args.steps, rng, order)
            for c in order:
                steps[c, n] += got[c]
                bounds[c, n] += heads[c].times(hidden[:n], args.bound_reps)
    for h in heads.values():
        if isinstance(h, GgmlHead):
            h.close()
    dist = {c: distance(lms[REF], lms[c]) for c in avail if c != REF}
    load1 = os.getloadavg()
    t_steps = time.perf_counter() - t_start

    j = 0 if args.clock == "wall" else 1
    wall = {k: med([s[0] for s in v]) for k, v in steps.items()}
    cpu = {k: med([s[1] for s in v]) for k, v in steps.items()}
    step = wall if j == 0 else cpu  # the clock behind ratios and the BENCH line
    conv = {k: med([s[2 + j] for s in v]) for k, v in steps.items()}
    bound = {k: med([b[j] for b in v]) for k, v in bounds.items()}

    fresh: dict = {}
    if not args.no_fresh:
        child(LOAD_CODE % {"kw": {}})  # the shared cache exists (a first run converts here)
        extra = [c for c in [("llama.cpp", "fp16")] if c in lms and DEFAULT_BACKEND != c[0]]
        for cfg in [None, *extra]:
            name = "default" if cfg is None else label(cfg)
            with tempfile.TemporaryDirectory(prefix="potentia-empty-cache-") as tmp:
                fresh["first", name] = child(
                    LOAD_CODE % {"kw": kwargs(cfg)}, {"POTENTIA_CACHE": tmp}
                )
            fresh["cached", name] = child(LOAD_CODE % {"kw": kwargs(cfg)})
        for cfg in [None, *extra, *[c for c in [("llama.cpp", "bf16")] if c in lms]]:
            name = "default" if cfg is None else label(cfg)
            fresh["rss", name] = child(
                RSS_CODE % {"kw": kwargs(cfg), "prompt": PROMPT, "tokens": args.rss_tokens}
            )

    # ----- report ----------------------------------------------------------------------
    p_ids = len(lms[REF].potential(PROMPT).prompt_ids)
    cmd = ".venv/bin/python benchmarks/lm_step.py" + (
        " " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""
    )
    n_med = args.rounds * args.steps
    lines = [
        "## lm_step: one SMC step per backend and weight type (Gemma 3 270M, 1 thread)",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {os.cpu_count()} CPUs shared with other jobs (load average "
        f"{load0[0]:.1f} at the start, {load1[0]:.1f} after the steps), {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, llama-cpp-python {_llama_version()}. One process, 1 thread "
        "(torch.set_num_threads(1), llama.cpp n_threads=1). Step = `state.advance(tokens)` + "
        f"`state.logw_next()`: one batched forward and every full 262k-logit row converted to "
        f"potentia's (V+1)-vector. Prompt of {p_ids} tokens; rows start with distinct tokens "
        f"and get a fresh random token each step (contexts {p_ids + 2}..{p_ids + args.steps + 3} "
        f"tokens). Medians of {n_med} steps ({args.rounds} rounds x {args.steps}, the first 2 "
        "of each run dropped); configurations alternate step by step, their order flips each "
        "round. Wall ms, process CPU ms in parentheses.",
        "",
        "| backend, weights | " + " | ".join(f"N={n}" for n in ns) + " |",
        "|---|" + "---:|" * len(ns),
    ]
    for c in CONFIGS:
        if c in refused:
            lines.append(f"| {label(c)} | refused: {refused[c]} |" + " |" * (len(ns) - 1))
            continue
        cells = [f"{wall[c, n] * 1e3:.1f} ({cpu[c, n] * 1e3:.1f})" for n in ns]
        lines.append(f"| {label(c)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "LM-head bound (bare `N x 640` by `640 x 262144` matmul in the weight type: torch "
        "`F.linear` on the transformers head, ggml `ggml_mul_mat` on the GGUF's output matrix; "
        f"median of {args.rounds * args.bound_reps}), step / bound, step vs transformers fp32 "
        f"and the row conversion's share of the step, all in {args.clock} time:",
        "",
        "| backend, weights | N | bound ms | step / bound | speed-up vs fp32 | to_vocab ms (share) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in avail:
        for n in ns:
            k = (c, n)
            lines.append(
                f"| {label(c)} | {n} | {bound[k] * 1e3:.1f} | {step[k] / bound[k]:.1f} | "
                f"{step[REF, n] / step[k]:.2f}x | {conv[k] * 1e3:.1f} ({conv[k] / step[k]:.0%}) |"
            )
    lines += [
        "",
        f"Distance from transformers fp32 on {dist[avail[1]]['positions'] if len(avail) > 1 else 0} "
        "fixed positions (4 prompts x 4 continuations, every position; full output layer, "
        "float64):",
        "",
        "| backend, weights | mean KL | max KL | max \\|Δ log p\\| | top-10 equal | argmax equal |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c, d in dist.items():
        lines.append(
            f"| {label(c)} | {d['kl_mean']:.1e} | {d['kl_max']:.1e} | {d['dmax']:.3f} | "
            f"{d['top10']}/{d['positions']} | {d['top1']}/{d['positions']} |"
        )
    best8 = min(avail, key=lambda c: step[c, 8]) if 8 in ns else avail[0]
    best1 = min(avail, key=lambda c: step[c, 1])
    bests = {n: min(avail, key=lambda c, n=n: step[c, n]) for n in ns}
    lines += [
        "",
        f"Fastest ({args.clock} median): "
        + "; ".join(f"N={n}: {label(c)} {step[c, n] * 1e3:.1f} ms" for n, c in bests.items())
        + f". Default backend: `{DEFAULT_BACKEND}`.",
    ]
    first_s = cached_s = rss_gb = float("nan")
    if fresh:
        lines.append("")
        for name in [k[1] for k in fresh if k[0] == "first"]:
            f, c = fresh["first", name], fresh["cached", name]
            lines.append(
                f"- {name} ({f['name']}): first run on an empty model cache (fresh process, "
                f"conversion included) {f['total']:.1f} s (imports {f['imports']:.1f}, "
                f"LM.default {f['load']:.1f}, first vector {f['first_vector']:.1f}); with the "
                f"cache warm: LM.default {c['load']:.2f} s (imports {c['imports']:.1f}, first "
                f"vector {c['first_vector']:.2f}, {c['total']:.1f} s in all)"
            )
        for name in [k[1] for k in fresh if k[0] == "rss"]:
            r = fresh["rss", name]
            lines.append(
                f"- {name} ({r['name']}): peak RSS (VmHWM, fresh process) of 16 particles x "
                f"{r['tokens']} tokens {r['peak_gb']:.2f} GB (after load and prefill "
                f"{r['after_load_gb']:.2f} GB; {r['total_s']:.0f} s)"
            )
        first_s = fresh["first", "default"]["total"]
        cached_s = fresh["cached", "default"]["load"]
        rss_gb = fresh["rss", "default"]["peak_gb"]
    lines.append(
        f"- BENCH keys: best_step8 = {label(best8)}; n1_speedup_vs_fp32 = transformers fp32 N=1 "
        f"/ {label(best1)} N=1; first_run_s = the default backend's first run in all "
        "(imports included); cached_load_s = its LM.default() with a warm cache; rss = its "
        f"16 x {args.rss_tokens} run. Steps and distances took {t_steps:.0f} s."
    )
    s8 = step[best8, 8] if 8 in ns else float("nan")
    b8 = bound[best8, 8] if 8 in ns else float("nan")
    bench = (
        f"BENCH lm_step best_step8_ms={s8 * 1e3:.1f} step8_over_bound={s8 / b8:.2f} "
        f"n1_speedup_vs_fp32={step[REF, 1] / step[best1, 1]:.2f} first_run_s={first_s:.1f} "
        f"cached_load_s={cached_s:.2f} rss16x256_gb={rss_gb:.3f}"
    )
    table = "\n".join([*lines, "", f"`{bench}`"])
    print(table)
    if not (args.quick or args.no_write):
        write_section("lm_step", table)
    print(bench)


def _llama_version() -> str:
    try:
        import llama_cpp
    except ImportError:
        return "not installed"
    return llama_cpp.__version__


if __name__ == "__main__":
    main()
