"""fp32 vs bf16 transformers backend on the embedded Gemma 3 270M, one thread.

Step latency (CPU time of the one-thread process, and wall time): one SMC-shaped step (``advance`` one token per row + ``logw_next``, which runs
one batched forward and converts every row to the (V+1)-vector with the float64
normaliser) at N = 1, 8, 16 rows; the two weight types interleaved, medians over
``--steps`` steps in each of ``--rounds`` rounds (alternating step by step). Distance: max |Δ log p| over all tokens,
KL(fp32 ‖ bf16) and argmax agreement of the next-token vectors on fixed contexts.

    .venv/bin/python benchmarks/lm_dtype.py            # writes docs/benchmarks.md (lm_dtype)

Ends with ``BENCH lm_dtype ...`` (one line, key=value).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import write_section  # noqa: E402

from potentia.lm import LM  # noqa: E402

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    '{"name": "Alice", "age":',
]
CONTINUATIONS = ["", " Paris, and the", "\n    if n <", " there lived a", ' 30, "city": "']


def step_times(
    lms: dict[str, LM], n: int, steps: int, rng: np.random.Generator
) -> dict[str, list[tuple[float, float]]]:
    """(CPU, wall) seconds per step (advance + logw_next) for ``n`` rows, per weight type.

    With one thread, CPU time leaves out the time the process waited for a core, which
    dominates wall time on a shared machine; both are reported.

    The weight types alternate step by step (same tokens), so a load change on a shared
    machine hits both alike; two warm-up steps each are not timed.
    """
    states = {}
    for d, lm in lms.items():
        states[d] = lm.potential(PROMPTS[0]).init_state(n)
        states[d].logw_next()
    V = len(next(iter(lms.values())).vocab)
    out: dict[str, list[tuple[float, float]]] = {d: [] for d in lms}
    for k in range(steps + 2):
        tokens = rng.integers(0, V, n)
        for d in lms:
            t0, c0 = time.perf_counter(), time.process_time()
            states[d] = states[d].advance(tokens)
            states[d].logw_next()
            if k >= 2:
                out[d].append((time.process_time() - c0, time.perf_counter() - t0))
    return out


def distance(ref: LM, other: LM) -> dict[str, float]:
    """max |Δ log p|, mean and max KL(ref ‖ other), argmax agreement on fixed contexts."""
    dmax, kls, same, total = 0.0, [], 0, 0
    for prompt in PROMPTS:
        pr, po = ref.potential(prompt), other.potential(prompt)
        for cont in CONTINUATIONS:
            try:
                ctx = ref.encode(cont)
            except ValueError:
                continue
            a, b = pr.logw_next(ctx), po.logw_next(ctx)
            fin = np.isfinite(a)
            dmax = max(dmax, float(np.abs(a[fin] - b[fin]).max()))
            p = np.exp(a[fin])
            kls.append(float((p * (a[fin] - b[fin])).sum()))
            same += int(a.argmax() == b.argmax())
            total += 1
    return {
        "max_abs": dmax,
        "kl_mean": float(np.mean(kls)),
        "kl_max": float(np.max(kls)),
        "same": same,
        "total": total,
    }


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 16])
    ap.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    lms = {"fp32": LM.default(dtype="fp32"), "bf16": LM.default(dtype="bf16")}
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    times: dict[tuple[str, int], list] = {(d, n): [] for d in lms for n in args.sizes}
    for _ in range(args.rounds):
        for n in args.sizes:
            for d, ts in step_times(lms, n, args.steps, rng).items():
                times[d, n] += ts
    med = {k: 1e3 * statistics.median(c for c, _ in v) for k, v in times.items()}
    wall = {k: 1e3 * statistics.median(w for _, w in v) for k, v in times.items()}
    dist = distance(lms["fp32"], lms["bf16"])
    lines = [
        f"Gemma 3 270M, 1 thread, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}; step = advance + logw_next (forward + (V+1)-vector "
        f"per row); median of {args.rounds} x {args.steps} steps, weight types alternating "
        "step by step; "
        f"both models loaded in {load_s:.1f} s.",
        "",
        "| dtype | " + " | ".join(f"N={n}" for n in args.sizes) + " | max \\|Δ log p\\| | "
        "KL(fp32‖·) mean / max | argmax equal |",
        "|---|" + "---:|" * len(args.sizes) + "---:|---|---|",
    ]
    for d in lms:
        row = " | ".join(f"{med[d, n]:.0f} ms ({wall[d, n]:.0f})" for n in args.sizes)
        if d == "fp32":
            lines.append(f"| fp32 | {row} | — | — | — |")
        else:
            lines.append(
                f"| {d} | {row} | {dist['max_abs']:.2f} | {dist['kl_mean']:.1e} / "
                f"{dist['kl_max']:.1e} | {dist['same']}/{dist['total']} |"
            )
    speed = {n: med["fp32", n] / med["bf16", n] for n in args.sizes}
    lines += [
        "",
        "Step times are CPU-time medians of the one-thread process (wall-clock medians in "
        "parentheses; they include waiting for a core on a shared machine).",
        "bf16 speedup (CPU time): "
        + ", ".join(f"N={n} {s:.2f}x" for n, s in speed.items())
        + "; wall: "
        + ", ".join(f"N={n} {wall['fp32', n] / wall['bf16', n]:.2f}x" for n in args.sizes)
        + f". Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.",
        f"Distance on {dist['total']} fixed contexts ({len(PROMPTS)} prompts x "
        "continuations), next-token vectors over the vocabulary plus EOS.",
        "",
        "    .venv/bin/python benchmarks/lm_dtype.py",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("lm_dtype", "## LM weight types (`benchmarks/lm_dtype.py`)\n\n" + text)
    fields = [f"{d}_n{n}_ms={med[d, n]:.1f}" for d in lms for n in args.sizes]
    fields += [f"{d}_n{n}_wall_ms={wall[d, n]:.1f}" for d in lms for n in args.sizes]
    fields += [f"bf16_speedup_n{n}={s:.2f}" for n, s in speed.items()]
    fields += [
        f"max_abs_dlogp={dist['max_abs']:.3f}",
        f"mean_kl={dist['kl_mean']:.2e}",
        f"max_kl={dist['kl_max']:.2e}",
        f"argmax_equal={dist['same']}/{dist['total']}",
    ]
    print("BENCH lm_dtype " + " ".join(fields))


if __name__ == "__main__":
    main()
