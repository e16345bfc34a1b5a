"""Terminology-constrained translation: the output must contain the given target-language terms.

The target is Gemma 3 270M's (few-shot) French translation of an English sentence, conditioned
on containing every required term (a terminology list, as in terminology-constrained machine
translation) within a length budget. ``pt.contains(*terms, max_length=n)`` is one exact
automaton: a prefix is dead as soon as the characters left cannot fit the terms still
missing (overlaps with the text so far counted), so SMC never spends tokens on a particle
that can no longer succeed. (``pt.contains(...) & pt.length(max=n)`` would be sound but not
exact: each factor alone is satisfiable long after their intersection is not.)

    .venv/bin/python examples/terminology_translation.py [--particles 8] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import potentia as pt  # noqa: E402

SOURCE = "The cat is sleeping on the mat."
TERMS = ("chat", "tapis")
MAX_CHARS = 32
PROMPT = (
    "Translate English to French using the given terms.\n"
    "English: The dog is in the garden. Terms: chien, jardin\n"
    "French: Le chien est dans le jardin.\n"
    "English: I like red apples. Terms: pommes, rouges\n"
    "French: J'aime les pommes rouges.\n"
    f"English: {SOURCE} Terms: {', '.join(TERMS)}\n"
    "French:"
)


def constraint(terms=TERMS, max_chars: int = MAX_CHARS) -> pt.Potential:
    """Every term occurs, the whole output has at most ``max_chars`` characters (exact)."""
    return pt.contains(*terms, max_length=max_chars)


def show_prefix_checks(c: pt.Potential) -> None:
    """The exact prefix test at work on a few byte strings."""
    for text in [
        " Le chat dort sur le tapis.",  # complete and valid
        " Le chat dort sur le ",  # viable: 'tapis' still fits
        " Le chat dort sur le petit lit",  # 30 characters: 'tapis' (5) no longer fits
        " Le chien dort sur le",  # 21: 'chatapis' (8) fits, the terms overlapping
        " Le chien dort sur le lit",  # 25: no room left for both terms
    ]:
        x = list(text.encode())
        print(f"  prefix {c.prefix(x):>4}  complete {c.complete(x):>4}  {text!r}")


def main(
    lm: pt.LM | None = None, particles: int = 8, max_tokens: int = 16, seed: int = 0
) -> pt.Result:
    """Translate :data:`SOURCE` under the terminology constraint; print the weighted outputs."""
    t0 = time.perf_counter()
    lm = lm if lm is not None else pt.LM.default()
    lm = lm.with_eos([*lm.eos_ids, "\n"])  # one line of output
    c = constraint()
    print(f"constraint: {c}")
    show_prefix_checks(c)
    out = pt.sample(
        lm,
        PROMPT,
        c,
        particles=particles,
        max_tokens=max_tokens,
        seed=seed,
        progress=False,
    )
    print(f"\n{SOURCE!r} -> French with terms {TERMS}, at most {MAX_CHARS} characters")
    print(f"{out.message}; log Ẑ = {out.log_z:.2f} (log P(terms fit | prompt), estimated)")
    for text, p in list(out.posterior.items())[:5]:
        print(f"  {p:6.3f}  {text!r}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(particles=a.particles, max_tokens=a.max_tokens, seed=a.seed)
