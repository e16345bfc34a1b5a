"""Constrained sampling on the embedded Gemma 3 270M: what ``make demo`` runs.

The target is the LM's continuation of "The capital of France is" *conditioned* on matching
the regular expression `` (Paris|Lyon|Marseille|[A-Z][a-z]+)\\.`` — a capitalised word and
a full stop — and ending there (EOS is the model's end token or a newline). SMC with the
best available token sampler (AWRS once registered, else the exact direct sampler) returns
properly weighted particles; the weighted posterior over the distinct outputs and log Ẑ
(the log-probability that the LM's line matches) are printed. The first run on a machine
converts the model (about a minute); later runs load it from the cache in seconds.

    .venv/bin/python examples/demo.py [--particles 32] [--max-tokens 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

import potentia as pt  # noqa: E402

PROMPT = "The capital of France is"
PATTERN = r" (Paris|Lyon|Marseille|[A-Z][a-z]+)\."


def main(
    particles: int = 32, max_tokens: int = 8, seed: int = 0, sampler: str = "auto"
) -> pt.Result:
    """Run the demo and print the weighted posterior and log Ẑ."""
    t0 = time.perf_counter()
    print("loading the embedded Gemma 3 270M (first run converts it, ~1 min) ...", flush=True)
    # the output ends at a newline (or the model's own end tokens): one sentence
    lm = pt.LM.default().with_eos([*pt.LM.default().eos_ids, "\n"])
    print(f"  {lm} in {time.perf_counter() - t0:.1f} s")
    constraint = pt.regex(PATTERN)
    t1 = time.perf_counter()
    out = pt.sample(
        lm,
        PROMPT,
        constraint,
        sampler=sampler,
        particles=particles,
        max_tokens=max_tokens,
        seed=seed,
        progress=True,
    )
    secs = time.perf_counter() - t1
    print(f"\nprompt {PROMPT!r}, constraint regex {PATTERN!r}")
    print(f"{out.method}: {particles} particles, {out.n_steps} steps, {secs:.1f} s")
    print(out.message)
    print("\nweighted posterior over outputs:")
    for text, p in list(out.posterior.items())[:10]:
        print(f"  {p:6.3f}  {text!r}")
    print(
        f"\nlog Ẑ = {out.log_z:.3f}   (Ẑ ≈ {np.exp(out.log_z):.3g}: the estimated probability that"
    )
    print("        the LM's continuation up to the end of the line matches the pattern)")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="potentia demo on the embedded Gemma 3 270M")
    ap.add_argument("--particles", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sampler", default="auto", help="'auto', 'direct', 'awrs', ...")
    a = ap.parse_args()
    main(a.particles, a.max_tokens, a.seed, a.sampler)
