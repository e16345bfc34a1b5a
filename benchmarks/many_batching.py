"""Would batching several prompts' SMC steps into one forward pay? And sequential vs Ray.

Part 1 (the question ``sample_many`` had to answer): on an embedded LM, one thread, the CPU
time of one SMC-shaped step (``advance`` one token per row + ``logw_next``: one batched
forward and the (V+1)-vector conversion) for ``N`` rows — one run of ``N`` particles — and
for ``2N`` rows — what a batch of two runs would cost if their rows shared one forward. The
``2N`` rows here share one prompt, so this is an *upper bound* of the gain (different
prompts would add padding). Sizes interleaved step by step, medians.
``gain_bound = 2 · t(N) / t(2N)``.

Part 2: ``sample_many`` on 1,000 toy prompts (4 particles, 6 tokens), ``workers=None``
against ``workers=2`` on a local Ray cluster of 2 CPUs (wall time; the Ray start and the
actors' start-up are reported apart from the run).

    .venv/bin/python benchmarks/many_batching.py [--model smollm2|default] [--no-ray]

Ends with ``BENCH many ...`` (one line, key=value).
"""

from __future__ import annotations

import argparse
import functools
import os
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

import potentia as pt  # noqa: E402
from potentia.models import DFA, ToyLM, random_ngram  # noqa: E402


def step_cpu(lm, n_sizes: list[int], steps: int, seed: int = 0) -> dict[int, float]:
    """Median CPU seconds of one step per row count (distinct contexts: no row sharing)."""
    rng = np.random.default_rng(seed)
    pot = lm.potential("The capital of France is")
    V = len(lm.vocab)
    states = {n: pot.init_state(n) for n in n_sizes}
    for n in n_sizes:  # first step: the prompt's vector; second: every row distinct
        states[n].logw_next()
        states[n] = states[n].advance(rng.choice(V, size=n, replace=False))
        states[n].logw_next()
    out: dict[int, list[float]] = {n: [] for n in n_sizes}
    for _ in range(steps):
        for n in n_sizes:
            tokens = rng.integers(V, size=n)
            c0 = time.process_time()
            states[n] = states[n].advance(tokens)
            states[n].logw_next()
            out[n].append(time.process_time() - c0)
    return {n: statistics.median(v) for n, v in out.items()}


def toy_runs(workers) -> tuple[float, list]:
    ngram = random_ngram(np.random.default_rng(0), 3, order=2)
    toy = ToyLM(ngram)
    c = DFA(toy.vocab, np.array([[1, 0, -1], [1, 1, 0]]), accepting=[1])
    prompts = [[i % 3, (i // 3) % 3, (i // 9) % 3, (i // 27) % 3] for i in range(1000)]
    model = toy if workers is None else functools.partial(ToyLM, ngram)
    t0 = time.perf_counter()
    out = pt.sample_many(
        model, prompts, c, workers=workers, seed=11, particles=4, max_tokens=6, progress=False
    )
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2", choices=["smollm2", "default"])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lm = pt.LM.smollm2() if args.model == "smollm2" else pt.LM.default()
    n = args.n
    t = step_cpu(lm, [n, 2 * n], args.steps)
    gain = 2 * t[n] / t[2 * n]
    lines = [
        f"Model {lm.name} ({args.model}), {lm.dtype}, 1 thread, CPU time per step, medians of "
        f"{args.steps} interleaved steps; load average {os.getloadavg()[0]:.1f}.",
        "",
        "| rows in one forward | step CPU ms |",
        "|---:|---:|",
        f"| {n} (one run) | {1e3 * t[n]:.1f} |",
        f"| {2 * n} (two runs batched, same prompt: upper bound) | {1e3 * t[2 * n]:.1f} |",
        "",
        f"Batching two runs of {n} particles into one forward would save at most "
        f"{100 * (1 - 1 / gain):.0f} % of their LM time (gain bound {gain:.2f}x).",
    ]
    bench = f"BENCH many model={args.model} step{n}_ms={1e3 * t[n]:.1f} "
    bench += f"step{2 * n}_ms={1e3 * t[2 * n]:.1f} batch_gain_bound={gain:.2f}"
    seq_s, seq = toy_runs(None)
    lines += ["", f"1,000 toy prompts, `workers=None`: {seq_s:.1f} s wall."]
    bench += f" toy1000_here_s={seq_s:.1f}"
    if not args.no_ray:
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        init_s = time.perf_counter() - t0
        ray_s, par = toy_runs(2)
        same = all(a.to_json() == b.to_json() for a, b in zip(_nowall(seq), _nowall(par)))
        ray.shutdown()
        lines.append(
            f"The same on Ray, `workers=2` (local cluster of 2 CPUs): {ray_s:.1f} s wall for "
            f"the call (actor start-up and model loads included), after {init_s:.1f} s of "
            f"`ray.init`; results identical to `workers=None`: {same}."
        )
        bench += f" toy1000_ray2_s={ray_s:.1f} ray_init_s={init_s:.1f} identical={int(same)}"
    cmd = "`.venv/bin/python benchmarks/many_batching.py" + (" --no-ray`" if args.no_ray else "`")
    write_section("many", "## Many prompts (sample_many)\n\n" + cmd + "\n\n" + "\n".join(lines))
    print("\n".join(lines))
    print(bench)


def _nowall(results):
    for r in results:
        r.wall_time = 0.0
        yield r


if __name__ == "__main__":
    main()
