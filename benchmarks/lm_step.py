"""LM step benchmark: batched KV-cached next-token vectors on the embedded Gemma 3 270M.

Measures, with one torch thread, in one run:

* per-step latency of ``LMState.advance(tokens).logw_next()`` for 1, 4, 8, 16 particles
  (contexts sampled from the LM itself, so rows differ), against a raw transformers
  single-sequence decode step (``model(input_ids=[[t]], cache=...)``, logits only) on the
  same tokens: the overhead of potentia's bookkeeping and vocabulary mapping;
* genlm-control's ``AsyncTransformer.batch_next_token_logprobs`` on the same 16 contexts,
  step by step (its token trie reuses the previous step's KV cache), and the largest
  difference between its log-probs and ours;
* peak RSS of a process that loads Gemma and runs 16 particles for 256 tokens;
* cold (first: GGUF assembly + dequantisation + conversion) and cached load times, each in a
  fresh process.

Configurations are interleaved over ``--repeats`` rounds and the median step is reported,
because the machine may be shared. Writes its table between the ``lm_step`` markers of
docs/benchmarks.md and ends with the BENCH line.

    .venv/bin/python benchmarks/lm_step.py                 # full run (~5-8 min on 2 cores)
    .venv/bin/python benchmarks/lm_step.py --quick         # smoke: few steps, no cold load
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "The capital of France is"
NS = (1, 4, 8, 16)


def child(code: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh Python process; it prints one JSON line last."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
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
import potentia.lm.embedded as E
from potentia.lm import LM
t1 = time.perf_counter()
lm = E.load_gemma(LM)
t2 = time.perf_counter()
lm.potential("Hi").logw_next([])
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "first_vector": t3 - t2}))
"""

RSS_CODE = """
import json, time
import numpy as np, torch

def hwm_gb():  # VmHWM: peak RSS of this process image (ru_maxrss would include the parent's
    # RSS at fork time, which Linux carries across exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20

torch.set_num_threads(1)
import potentia.lm.embedded as E
from potentia.lm import LM
lm = E.load_gemma(LM)
pot = lm.potential(%(prompt)r)
state = pot.init_state(16)
state.logw_next()
base = hwm_gb()
rng = np.random.default_rng(0)
t = time.perf_counter()
last = []
for step in range(%(tokens)d):
    v = state.logw_next()[:, :-1]
    p = np.exp(v - v.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    toks = np.array([rng.choice(len(p[r]), p=p[r]) for r in range(16)])
    s0 = time.perf_counter()
    state = state.advance(toks)
    state.logw_next()
    last.append(time.perf_counter() - s0)
peak = hwm_gb()
print(json.dumps({"peak_gb": peak, "after_load_gb": base, "tokens": %(tokens)d,
                  "last_step_s": float(np.median(last[-8:])), "total_s": time.perf_counter() - t}))
"""


def sample_rows(pot, n: int, steps: int, seed: int) -> np.ndarray:
    """Token positions of ``n`` particles sampled from the LM for ``steps`` steps."""
    rng = np.random.default_rng(seed)
    state = pot.init_state(n)
    rows = np.zeros((n, steps), dtype=np.int64)
    for t in range(steps):
        v = state.logw_next()[:, :-1]
        p = np.exp(v - v.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        rows[:, t] = [rng.choice(p.shape[1], p=p[r]) for r in range(n)]
        state = state.advance(rows[:, t])
    return rows


def time_ours(pot, rows: np.ndarray) -> list[float]:
    """Seconds per step of advance + logw_next for all rows of ``rows``."""
    state = pot.init_state(len(rows))
    state.logw_next()
    out = []
    for t in range(rows.shape[1]):
        t0 = time.perf_counter()
        state = state.advance(rows[:, t])
        state.logw_next()
        out.append(time.perf_counter() - t0)
    return out


def time_raw(lm, prompt_ids: list[int], row: np.ndarray) -> list[float]:
    """Seconds per raw transformers decode step (one sequence, logits only)."""
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        out = lm.model(input_ids=ids, use_cache=True)
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        times = []
        for tok in lm.vocab.ids[row]:
            t0 = time.perf_counter()
            out = lm.model(
                input_ids=torch.tensor([[int(tok)]]), use_cache=True, **{lm.cache_arg: cache}
            )
            _ = out.logits[0, -1]
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            times.append(time.perf_counter() - t0)
    return times


def time_genlm(lm, pot, rows: np.ndarray) -> tuple[list[float], float, float]:
    """genlm AsyncTransformer on the same contexts: seconds per step, setup s, max |Δlogp|."""
    import warnings

    warnings.filterwarnings("ignore")
    from genlm.backend.llm import AsyncTransformer

    t0 = time.perf_counter()
    llm = AsyncTransformer(lm.model, lm.tokenizer, batch_size=len(rows), timeout=0.001)
    setup = time.perf_counter() - t0
    ids = lm.vocab.ids[rows]
    prompt = list(pot.prompt_ids)
    times, diff = [], 0.0
    ours = pot.init_state(len(rows))
    for t in range(rows.shape[1] + 1):
        ctxs = [prompt + [int(i) for i in ids[r, :t]] for r in range(len(rows))]
        t0 = time.perf_counter()
        res = asyncio.run(llm.batch_next_token_logprobs(ctxs))
        if t:
            times.append(time.perf_counter() - t0)
        lp = torch.stack(list(res)).double() if isinstance(res, list | tuple) else res.double()
        mine = ours.logw_next()[:, :-1]
        diff = max(diff, float(np.abs(lp[:, lm.vocab.ids].numpy() - mine).max()))
        if t < rows.shape[1]:
            ours = ours.advance(rows[:, t])
    return times, setup, diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=24, help="decode steps per configuration")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--rss-tokens", type=int, default=256)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold (conversion) load")
    ap.add_argument("--no-genlm", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run; does not write docs")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.repeats, args.rss_tokens, args.no_cold = 4, 1, 8, True
    torch.set_num_threads(1)
    from potentia.lm import LM

    child(LOAD_CODE)  # make sure the shared cache exists (a first run converts here)
    # children start from a parent that holds no model
    rss = child(RSS_CODE % {"prompt": PROMPT, "tokens": args.rss_tokens})
    loads = {}
    if not args.no_cold:
        with tempfile.TemporaryDirectory() as tmp:
            loads["cold"] = child(LOAD_CODE, {"POTENTIA_CACHE": tmp})
    loads["cached"] = child(LOAD_CODE)

    lm = LM.default()
    pot = lm.potential(PROMPT)
    rows = sample_rows(pot, max(NS), args.steps, seed=0)
    skip = min(2, args.steps - 1)  # warm-up steps left out of the medians
    per: dict[str, list[float]] = {k: [] for k in ["raw", *map(str, NS)]}
    for _ in range(args.repeats):
        per["raw"] += time_raw(lm, pot.prompt_ids, rows[0])[skip:]
        for n in NS:
            per[str(n)] += time_ours(pot, rows[:n])[skip:]
    med = {k: float(np.median(v)) for k, v in per.items()}
    genlm = None
    if not args.no_genlm:
        try:
            g_times, g_setup, g_diff = time_genlm(lm, pot, rows)
            genlm = (float(np.median(g_times[skip:])), g_setup, g_diff)
        except Exception as err:  # report, do not hide, a broken baseline
            print(f"genlm baseline failed: {type(err).__name__}: {err}", file=sys.stderr)

    step1, step16, raw = med["1"], med["16"], med["raw"]
    overhead = (step1 - raw) / raw
    speedup = genlm[0] / step16 if genlm else float("nan")
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lm_step.py" + (
        " " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""
    )
    lines = [
        "## lm_step: batched KV-cached LM steps (Gemma 3 270M, fp32, 1 torch thread)",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {os.cpu_count()} CPUs (shared), torch {torch.__version__}. Prompt "
        f"{PROMPT!r} ({len(pot.prompt_ids)} tokens), {args.steps} steps x {args.repeats} "
        "interleaved rounds, medians without the first 2 steps.",
        "",
        "| configuration | median step (ms) | vs 1 particle | vs raw decode |",
        "|---|---:|---:|---:|",
        f"| raw transformers decode, 1 sequence (logits only) | {raw * 1e3:.1f} | | 1.00 |",
    ]
    for n in NS:
        m = med[str(n)]
        lines.append(
            f"| potentia LMState, {n} particle{'s' if n > 1 else ''} | {m * 1e3:.1f} "
            f"| {m / step1:.2f} | {m / raw:.2f} |"
        )
    if genlm:
        lines.append(
            f"| genlm AsyncTransformer, 16 contexts | {genlm[0] * 1e3:.1f} | "
            f"{genlm[0] / step1:.2f} | {genlm[0] / raw:.2f} |"
        )
    lines += [
        "",
        f"- overhead of 1 particle over the raw decode step: {overhead:+.1%}",
        f"- 16-particle step / 1-particle step: {step16 / step1:.2f}",
    ]
    if genlm:
        lines.append(
            f"- genlm AsyncTransformer: {speedup:.2f}x slower per 16-context step than potentia; "
            f"setup (byte vocabulary) {genlm[1]:.1f} s; max |Δ log p| vs potentia {genlm[2]:.1e}"
        )
    else:
        lines.append("- genlm AsyncTransformer baseline: not run or failed (see stderr)")
    lines.append(
        f"- peak RSS, load + 16 particles x {rss['tokens']} tokens: {rss['peak_gb']:.2f} GB "
        f"(after load and prefill: {rss['after_load_gb']:.2f} GB; step at the end "
        f"{rss['last_step_s'] * 1e3:.0f} ms, {rss['total_s']:.0f} s in all)"
    )
    c = loads["cached"]
    lines.append(
        f"- cached load (fresh process): load_gemma() {c['load']:.2f} s, plus imports "
        f"{c['imports']:.2f} s, first vector {c['first_vector']:.2f} s"
    )
    if "cold" in loads:
        k = loads["cold"]
        lines.append(
            f"- cold load (empty cache: assemble GGUF, dequantise, convert, load): "
            f"{k['load']:.1f} s"
        )
    table = "\n".join(lines)
    print(table)
    if not args.quick:
        write_section("lm_step", table)
    print(
        f"BENCH lm_step step16_over_step1={step16 / step1:.3f} overhead_vs_raw={overhead:.3f} "
        f"rss16x256_gb={rss['peak_gb']:.3f} cached_load_s={c['load']:.2f} "
        f"speedup_vs_genlm={speedup:.2f}"
    )


if __name__ == "__main__":
    main()
