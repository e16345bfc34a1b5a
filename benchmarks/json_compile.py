"""Compile time of ``potentia.json`` on the MaskBench sample (byte level, one thread).

Each schema of ``../shared/data/maskbench-sample/`` is compiled once with
``JSONSchema(schema)`` (meta-schema check, relaxation, llguidance grammar build and
validation, the root matcher, the emptiness check) and, with ``--vocab gemma``, lifted to
Gemma 3's 262k-token vocabulary (``.lift(vocab)``, what ``pt.sample`` does; the vocabulary
and its llguidance tokenizer are built once beforehand); schemas potentia refuses are
counted apart. Prints p50/p99/max and a final ``BENCH json_compile`` line.

Run: ``.venv/bin/python benchmarks/json_compile.py [--vocab bytes|gemma] [--save FILE]
[--baseline FILE] [--write] [--load FILE]``. ``--save`` keeps the raw times (JSON); ``--baseline`` reads such a file
(measured before a change) and adds it to the table; ``--write`` writes the table to
docs/benchmarks.md between the ``json_compile`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from _report import write_section  # noqa: E402

from potentia.constraints.json_schema import JSONSchema  # noqa: E402

DATA = Path("/work/shared/data/maskbench-sample")
ROOT = Path(__file__).resolve().parents[1]


def gemma_vocab():
    """Gemma 3's vocabulary (non-special tokens with bytes), from its tokenizer only."""
    from potentia.lm.embedded import _fast_tokenizer, cache_dir
    from potentia.lm.tokenizer import byte_table
    from potentia.potentials import Vocabulary

    table = byte_table(_fast_tokenizer(cache_dir() / "gemma-3-270m-f32-v1"), exclude_special=True)
    ids = [i for i, t in enumerate(table.tokens) if t]
    return Vocabulary([table.tokens[i] for i in ids], ids=ids, name="gemma")


def measure(vocab_name: str = "bytes", clock: str = "wall") -> dict:
    """Compile every schema once; the times in ms and the names of refused schemas.

    ``clock="cpu"`` times with ``time.process_time`` (this process's CPU time: on a
    machine shared with other jobs it does not count the time the process waits).
    """
    now = time.process_time if clock == "cpu" else time.perf_counter
    vocab = gemma_vocab() if vocab_name == "gemma" else None
    warm = JSONSchema({"type": "string"})  # warm the tokenizers and imports
    if vocab is not None:
        warm.lift(vocab)
    times, refused = {}, []
    for f in sorted(DATA.glob("*.json")):
        schema = json.loads(f.read_text())["schema"]
        t0 = now()
        try:
            c = JSONSchema(schema)
            if vocab is not None:
                c.lift(vocab)
        except ValueError:
            refused.append(f.stem)
            continue
        times[f.stem] = (now() - t0) * 1e3
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "commit": commit,
        "vocab": vocab_name,
        "clock": clock,
        "times_ms": times,
        "refused": refused,
    }


def stats(res: dict) -> tuple[float, float, float]:
    """p50, p99 and max of the compile times in ms."""
    xs = np.asarray(list(res["times_ms"].values()))
    return float(np.percentile(xs, 50)), float(np.percentile(xs, 99)), float(xs.max())


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", choices=("bytes", "gemma"), default="bytes")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--save", type=Path)
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--load", type=Path, help="report a saved run instead of measuring")
    args = ap.parse_args()
    res = json.loads(args.load.read_text()) if args.load else measure(args.vocab, args.clock)
    if args.save:
        args.save.write_text(json.dumps(res))
    rows = []
    if args.baseline:
        base = json.loads(args.baseline.read_text())
        rows.append((f"before (commit {base['commit']})", base))
    rows.append((f"after (commit {res['commit']})", res))
    lines = [
        "| run | schemas compiled | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for label, r in rows:
        p50, p99, mx = stats(r)
        n = len(r["times_ms"])
        lines.append(
            f"| {label} | {n} / {n + len(r['refused'])} | {p50:.1f} | {p99:.1f} | {mx:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write:
        gemma = res.get("vocab") == "gemma"
        cpu = res.get("clock") == "cpu"
        opt = (" --vocab gemma" if gemma else "") + (" --clock cpu" if cpu else "")
        cmd = f".venv/bin/python benchmarks/json_compile.py{opt} --save AFTER --baseline BEFORE --write"
        where = "lifted to Gemma 3's vocabulary (262k tokens)" if gemma else "byte level"
        write_section(
            "json_compile_gemma" if gemma else "json_compile",
            f"## JSON compile time (MaskBench sample, {where}, 1 thread"
            f"{', CPU time of the process' if cpu else ''})\n\n"
            f"{table}\n\nCommand: `{cmd}` (BEFORE saved by `--save` on the code before the change; both runs on the shared 2-core machine with other jobs running, so absolute times are noisy).",
        )
    p50, p99, mx = stats(res)
    print(f"BENCH json_compile p50_ms={p50:.1f} p99_ms={p99:.1f} max_ms={mx:.1f}")


if __name__ == "__main__":
    main()
