"""Fill-in-the-middle under a grammar: the model writes the gaps, the fixed text is forced.

The target is SmolLM2 135M's continuation of a prompt, conditioned on the output being
``{"name": "<gap 1>, "age": <gap 2>}`` *and* the whole text being an object of a small
JSON-like grammar (``pt.infill``). Generation is left to right: the forced prefix, then the
model's first gap (it must close the name's string: the grammar and the next fixed part
decide where the gap may end), then the forced middle, then the second gap (a number, or
more pairs), then the forced ``}``. The prefix check is exact: a particle is never allowed
a token after which no filling of the remaining gaps parses. The weighted texts, their gap
fillings and log Ẑ are printed, with the constraint's cost per token.

    .venv/bin/python examples/infill.py [--particles 4] [--max-tokens 24] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import potentia as pt  # noqa: E402

GRAMMAR = r"""start: "{" pair ("," pair)* "}"
pair: STRING ":" value
value: STRING | NUMBER | "true" | "false"
STRING: /"[A-Za-z ]*"/
NUMBER: /[0-9]+/
%ignore " "
"""
PARTS = ['{"name": "', None, ', "age": ', None, "}"]
PROMPT = (
    "Write one person as a JSON object on one line.\n"
    '{"name": "Ada Lovelace", "age": 36}\n'
    '{"name": "Alan Turing", "age": 41}\n'
)


def constraint() -> pt.Potential:
    """The infill constraint of :data:`GRAMMAR` and :data:`PARTS` (byte level)."""
    return pt.infill(GRAMMAR, parts=PARTS)


def show_prefix_checks(c) -> None:
    """The exact prefix test on a few texts (byte level, no model)."""
    for text in [
        '{"name": "Bo',
        '{"name": "Bob", "x": 1',
        '{"name": "Bob", "age": 4',
        '{"name": "Bob", "age": ,',
        '{"name": "Bob" "age": 4}',
    ]:
        x = list(text.encode())
        print(f"  prefix {c.prefix(x):>4}  complete {c.complete(x):>4}  {text!r}")


def main(
    lm: pt.LM | None = None, particles: int = 4, max_tokens: int = 24, seed: int = 0
) -> pt.Result:
    """Fill :data:`PARTS`' gaps with SmolLM2 (or ``lm``); print the weighted texts."""
    t0 = time.perf_counter()
    if lm is None:
        print("loading the embedded SmolLM2 135M ...", flush=True)
        lm = pt.LM.smollm2()
    # the output ends at a newline or the model's own end tokens: one line
    lm = lm.with_eos([*lm.eos_ids, "\n"])
    t1 = time.perf_counter()
    c = constraint()
    print(f"constraint built in {1000 * (time.perf_counter() - t1):.0f} ms; prefix checks:")
    show_prefix_checks(c)
    t2 = time.perf_counter()
    out = pt.sample(lm, PROMPT, c, particles=particles, max_tokens=max_tokens, seed=seed)
    run_s = time.perf_counter() - t2
    print(f"\n{out.summary()}" if hasattr(out, "summary") else "")
    print(f"log Ẑ = {out.log_z:.3f}; {run_s:.1f} s for {particles} x {max_tokens} tokens")
    for text, p in sorted(out.posterior.items(), key=lambda kv: -kv[1]):
        fill = c.fillings(text) if c.complete(list(text.encode())) == 0.0 else None
        print(f"  {p:6.3f}  {text!r}  gaps={fill[0] if fill else None}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(particles=a.particles, max_tokens=a.max_tokens, seed=a.seed)
