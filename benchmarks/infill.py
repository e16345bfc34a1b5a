"""Cost of the infilling check per token, against llguidance's grammar check (one thread).

The example's constraint (``examples/infill.py``: a JSON-like grammar, parts
``{"name": "<gap>, "age": <gap>}``) lifted to SmolLM2's 49,152 tokens. Fixed outputs of that
example are replayed token by token (their SmolLM2 tokenization). At every step we time, on
fresh copies of the state (no cached mask):

* ``check``: the single-token check AWRS makes (``logw_tokens``) plus advancing the state by
  the token: the cost the constraint adds per generated token;
* the same with the llguidance pre-filter on (``prefilter=True``);
* the baseline: ``pt.cfg`` of the same grammar without the parts (llguidance alone, what a
  masking decoder pays; it cannot see the gaps, so it is not the same constraint);
* ``mask``: the full exact mask (trie walk; AWRS's fallback after repeated rejections)
  against llguidance's full mask.

A constraint is built afresh for every pass, so the memo tables start empty; medians over
all steps and ``--repeat`` passes. Then byte-level ``prefix`` calls per second over every
prefix of the texts (a fresh constraint, so the rows are read incrementally).

Usage::

    .venv/bin/python benchmarks/infill.py [--repeat 3] [--write]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import write_section  # noqa: E402

import potentia as pt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    '{"name": "Aristotle", "age": 72}',
    '{"name": "Ada Lovelace", "age": 36}',
    '{"name": "Grace Hopper", "age": 85, "job": "admiral"}',
    '{"name": "Alan", "city": "London", "age": 41}',
]


def example():
    spec = importlib.util.spec_from_file_location("infill_example", ROOT / "examples/infill.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def replay(make, toks_list, masks: bool) -> tuple[list[float], list[float]]:
    """Per-step check+advance seconds and (optionally) full-mask seconds."""
    checks, mask_s = [], []
    for toks in toks_list:
        c = make()
        state = c.init_state(1)
        for t in toks:
            row, tok = np.zeros(1, dtype=np.int64), np.array([t], dtype=np.int64)
            if masks:
                fresh = state.select(np.zeros(1, dtype=np.int64))
                mask_s.append(timed(lambda fresh=fresh: fresh.allowed()))
            t0 = time.perf_counter()
            ok = state.logw_tokens(row, tok)[0]
            state = state.advance(tok)
            checks.append(time.perf_counter() - t0)
            if ok != 0.0:
                raise RuntimeError(f"{c!r} rejected a token of a valid text")
    return checks, mask_s


def main(repeat: int = 3, write: bool = False) -> str:
    torch.set_num_threads(1)
    ex = example()
    t0 = time.perf_counter()
    lm = pt.LM.smollm2()
    vocab = lm.vocab
    load_s = time.perf_counter() - t0
    toks_list = [lm.encode(t) for t in TEXTS]
    byte = ex.constraint()
    for t in TEXTS:
        assert byte.complete(list(t.encode())) == 0.0, t
    n_tok = sum(map(len, toks_list))

    build_s = float(np.median([timed(ex.constraint) for _ in range(repeat)]))
    lift_s = timed(lambda: ex.constraint().lift(vocab))
    rows = {
        "infill": ([], []),
        "infill, llguidance pre-filter": ([], []),
        "llguidance cfg": ([], []),
    }
    for k in range(repeat):
        masks = k == 0  # full masks once (slow): one pass
        c1, m1 = replay(lambda: ex.constraint().lift(vocab), toks_list, masks)
        c2, _ = replay(
            lambda: pt.infill(ex.GRAMMAR, parts=ex.PARTS, prefilter=True).lift(vocab),
            toks_list,
            False,
        )
        c3, m3 = replay(lambda: pt.cfg(ex.GRAMMAR).lift(vocab), toks_list, masks)
        rows["infill"][0].extend(c1)
        rows["infill"][1].extend(m1)
        rows["infill, llguidance pre-filter"][0].extend(c2)
        rows["llguidance cfg"][0].extend(c3)
        rows["llguidance cfg"][1].extend(m3)
    # byte-level prefix calls per second (every prefix of every text, fresh constraint)
    data = [list(t.encode()[:i]) for t in TEXTS for i in range(len(t.encode()) + 1)]
    c = ex.constraint()
    pre_s = timed(lambda: [c.prefix(x) for x in data])

    def ms(v):
        return f"{1000 * float(np.median(v)):.3f}" if v else "—"

    def p99(v):
        return f"{1000 * float(np.percentile(v, 99)):.2f}" if v else "—"

    lines = [
        "## Infilling check cost (`benchmarks/infill.py`)",
        "",
        f"SmolLM2 vocabulary ({len(vocab)} tokens), the constraint of `examples/infill.py`; "
        f"{len(TEXTS)} outputs replayed ({n_tok} tokens), {repeat} passes, fresh constraint "
        f"per pass, 1 thread. Build {1000 * build_s:.0f} ms, lift {1000 * lift_s:.0f} ms "
        f"(model + tokenizer loaded in {load_s:.1f} s).",
        "",
        "| constraint | check + advance per token: p50 / p99 ms | full mask p50 / p99 ms |",
        "|---|---|---|",
    ]
    for name, (ch, mk) in rows.items():
        lines.append(f"| {name} | {ms(ch)} / {p99(ch)} | {ms(mk)} / {p99(mk)} |")
    ratio = float(np.median(rows["infill"][0]) / np.median(rows["llguidance cfg"][0]))
    lines += [
        "",
        f"Exact infill check / llguidance-only check per token: {ratio:.1f}x (p50). "
        f"Byte-level `prefix`: {len(data) / pre_s:,.0f} calls/s over {len(data)} prefixes.",
        "The llguidance baseline checks the grammar alone (no gaps, no fixed parts): it is the "
        "necessary pre-filter, not the same constraint.",
        "",
        "    .venv/bin/python benchmarks/infill.py --write",
    ]
    text = "\n".join(lines)
    print(text)
    if write:
        write_section("infill", text)
    print(
        f"BENCH infill check_ms={ms(rows['infill'][0])} "
        f"check_prefilter_ms={ms(rows['infill, llguidance pre-filter'][0])} "
        f"llg_check_ms={ms(rows['llguidance cfg'][0])} ratio={ratio:.2f} "
        f"mask_ms={ms(rows['infill'][1])} llg_mask_ms={ms(rows['llguidance cfg'][1])} "
        f"prefix_per_s={len(data) / pre_s:.0f} build_ms={1000 * build_s:.1f}"
    )
    return text


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    a = ap.parse_args()
    main(a.repeat, a.write)
