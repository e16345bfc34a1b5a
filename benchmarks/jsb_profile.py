"""cProfile of potentia's SMC on JSONSchemaBench schemas (issue 17): where a step goes.

``.venv/bin/python benchmarks/jsb_profile.py Github_easy 80 [NAME ...]`` runs
``pt.sample(lm, prompt, pt.json(schema), particles=8, max_tokens=80)`` (the defaults: AWRS,
budget guard, length twist) on the schemas of ``jsonschemabench.sample_schemas(2, 0)`` in
that split (or the named schemas of the split), with the benchmark's prompt, Gemma 3 270M fp32 and one thread, and prints the
wall time per step and the cumulative time of the parts (LM linear layers, greedy
completions, constraint masks, the escape search, the llguidance tokenizer build).
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jsonschemabench as jb  # noqa: E402

PARTS = [
    ("linear.py", "forward", "LM linear layers"),
    ("completion.py", "greedy_completion", "greedy completions"),
    ("llg.py", "_mask_bits", "constraint masks"),
    ("json_spelling.py", "pending_viable", "escape search"),
    ("json_schema.py", "_spelling", "spelling lookups"),
    ("llg.py", "llg_tokenizer", "llguidance tokenizer build"),
]


def main() -> None:  # noqa: D103
    import torch

    import potentia as pt

    torch.set_num_threads(1)
    split = sys.argv[1] if len(sys.argv) > 1 else "Glaiveai2K"
    max_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 80
    names = sys.argv[3:]  # schema names in the split (default: sample 0, 2 per split)
    lm = pt.LM.default()
    picks = (
        [(split, n, json.loads((jb.JSB / split / f"{n}.json").read_text())) for n in names]
        if names
        else jb.sample_schemas(2, 0)
    )
    for sp, name, schema in picks:
        if sp != split:
            continue
        prompt = jb.PROMPT.format(schema=json.dumps(schema))
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        res = pt.sample(
            lm, prompt, pt.json(schema), particles=8, max_tokens=max_tokens, seed=0, progress=False
        )
        prof.disable()
        if os.environ.get("JSB_PROF_DUMP"):
            prof.dump_stats(f"{os.environ['JSB_PROF_DUMP']}/{name}.prof")
        wall = time.perf_counter() - t0
        stats = pstats.Stats(prof).stats
        # SMC steps run (the longest particle, finished or not), not the returned text's length
        steps = sum(
            v[1] for (f, _l, fn), v in stats.items() if f.endswith("engine.py") and fn == "step"
        ) or max(len(c) for c in res.contexts)
        print(f"{sp}/{name}: {wall:.1f} s, {steps} steps, {1e3 * wall / steps:.0f} ms/step")
        for (file, _line, fn), (_cc, nc, _tt, ct, _callers) in stats.items():
            for f, g, label in PARTS:
                if file.endswith(f) and fn == g:
                    print(f"  {label}: {nc} calls, {ct:.2f} s")


if __name__ == "__main__":
    main()
