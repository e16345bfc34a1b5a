"""Lexical constraints and predicates lifted to the real vocabularies (one thread).

For Gemma 3 270M (262k tokens) and SmolLM2 (49k), and each constraint: the time to lift
(build the per-vocabulary potential; the vocabulary's trie is built once and reported
apart), then, over the states reached by seeded random walks through allowed tokens,
the full next-token vector for one row cold (mask computed) and warm (cached row), and a
single-token check (``logw_tokens`` for one row and one token, as AWRS calls it), as
p50/p99 in µs. The text predicate is timed the same way, except its full vector (O(V)
Python calls) once per vocabulary.

Usage::

    .venv/bin/python benchmarks/lexical.py [--walks 4] [--steps 24] [--no-write]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import write_section  # noqa: E402

import potentia as pt  # noqa: E402
from potentia.constraints.automaton import vocab_tables  # noqa: E402

PASSAGE = (
    "Marie Curie (née Skłodowska) was a Polish and naturalised-French physicist and chemist "
    "who conducted pioneering research on radioactivity. She was the first woman to win a "
    "Nobel Prize, the first person to win a Nobel Prize twice, and the only person to win a "
    "Nobel Prize in two scientific fields."
)


def constraints():
    return {
        "excludes(letters='e', ignore_case)": pt.excludes(letters="e", ignore_case=True),
        "excludes(5 words)": pt.excludes("the", "and", "of", "to", "in"),
        "contains(2 terms, max 40 chars)": pt.contains("Nobel", "radio", max_length=40),
        "length(max=12 words)": pt.length(max=12, unit="words"),
        "length(max=16 tokens)": pt.length(max=16, unit="tokens"),
        "span_of(passage 277 chars)": pt.span_of(PASSAGE),
        "predicate(prefix, no 'e')": pt.predicate(lambda s: "e" not in s, level="prefix"),
    }


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q)) if len(xs) else float("nan")


def bench(vocab, name, c, walks, steps, rng):
    t0 = time.perf_counter()
    lifted = c.lift(vocab)
    lift_ms = (time.perf_counter() - t0) * 1e3
    V = len(vocab)
    cold, warm, check = [], [], []
    is_pred = name.startswith("predicate")
    for _ in range(walks):
        state = lifted.init_state(1)
        for _step in range(steps):
            if not is_pred:
                lifted._cache.clear()
                t0 = time.perf_counter()
                lw = state.logw_next()
                cold.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                state.logw_next()
                warm.append(time.perf_counter() - t0)
            elif not cold:
                t0 = time.perf_counter()
                lw = state.logw_next()
                cold.append(time.perf_counter() - t0)
            else:
                lw = None
            toks = rng.integers(0, V, 64)
            row = np.zeros(1, dtype=np.int64)
            for a in toks:
                t0 = time.perf_counter()
                state.logw_tokens(row, np.array([a]))
                check.append(time.perf_counter() - t0)
            if lw is None:  # predicate: find an allowed token by single checks
                cand = rng.integers(0, V, 256)
                ok = cand[state.logw_tokens(np.zeros(256, dtype=np.int64), cand) > -np.inf]
            else:
                ok = np.flatnonzero(lw[0, :V] > -np.inf)
            if not len(ok):
                break
            state = state.advance(np.array([rng.choice(ok)]))
    us = 1e6
    return {
        "lift_ms": lift_ms,
        "cold_p50": pct(cold, 50) * us,
        "cold_p99": pct(cold, 99) * us,
        "warm_p50": pct(warm, 50) * us,
        "warm_p99": pct(warm, 99) * us,
        "check_p50": pct(check, 50) * us,
        "check_p99": pct(check, 99) * us,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--walks", type=int, default=4)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ["NUMBA_NUM_THREADS"] = "1"

    rows, summary = [], {}
    warmup = pt.excludes("x").lift(pt.Vocabulary.from_strings(["a", "b"]))  # compile kernels
    warmup.init_state(1).logw_next()
    for vname, load in (("Gemma 3 (262k)", pt.LM.default), ("SmolLM2 (49k)", pt.LM.smollm2)):
        vocab = load().vocab
        t0 = time.perf_counter()
        vocab_tables(vocab)
        trie_ms = (time.perf_counter() - t0) * 1e3
        rows.append(f"| {vname} | vocabulary tables and trie (built once) | {trie_ms:.0f} | | | |")
        for name, c in constraints().items():
            r = bench(vocab, name, c, args.walks, args.steps, np.random.default_rng(0))
            summary.setdefault(vname, []).append(r)
            pred = name.startswith("predicate")
            warm = "—" if pred else f"{r['warm_p50']:.0f} / {r['warm_p99']:.0f}"
            cold = (
                f"{r['cold_p50'] / 1e3:.0f} ms (1 row)"
                if pred
                else f"{r['cold_p50']:.0f} / {r['cold_p99']:.0f}"
            )
            rows.append(
                f"| {vname} | `{name}` | {r['lift_ms']:.1f} | {cold} | {warm} | "
                f"{r['check_p50']:.1f} / {r['check_p99']:.1f} |"
            )
            print(rows[-1], flush=True)
    cmd = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lexical.py " + " ".join(sys.argv[1:])
    table = "\n".join(
        [
            "## Lexical constraints and predicates on real vocabularies",
            "",
            f"Command: `{cmd.strip()}` (1 thread; {args.walks} walks × {args.steps} steps of "
            "seeded random allowed tokens; full vector = one row incl. EOS, float64).",
            "",
            "| vocabulary | constraint | lift ms | full vector cold µs p50 / p99 | "
            "full vector cached µs p50 / p99 | single-token check µs p50 / p99 |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
    if not args.no_write:
        write_section("lexical", table)
    g = summary["Gemma 3 (262k)"]
    auto = g[:-1]
    print(
        "BENCH lexical "
        f"gemma_mask_cold_p50_us={np.median([r['cold_p50'] for r in auto]):.0f} "
        f"gemma_mask_cached_p50_us={np.median([r['warm_p50'] for r in auto]):.0f} "
        f"gemma_token_check_p50_us={np.median([r['check_p50'] for r in auto]):.1f} "
        f"gemma_predicate_check_p50_us={g[-1]['check_p50']:.1f} "
        f"gemma_predicate_vector_ms={g[-1]['cold_p50'] / 1e3:.0f}"
    )


if __name__ == "__main__":
    main()
