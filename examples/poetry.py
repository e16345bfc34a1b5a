"""Poetry: a lipogram couplet with syllables counted per line and a rhyme checked at its end.

The target is Gemma 3 270M's (few-shot) couplet conditioned on three things:

* no letter "e" or "E" (a lipogram, ``pt.excludes(letters="e", ignore_case=True)``);
* :data:`PER_LINE` syllables in each line, counted by the vowel-group heuristic of
  ``potentia.constraints.verse`` (a documented estimate, not a pronunciation dictionary:
  the PyPI ones are GPL-licensed);
* the two lines rhyme by spelling: their last words end on the same two letters
  (``pt.suffix_rhyme("AA", letters=2)``).

The lipogram and the syllable counts are intersected into one automaton (``pt.intersect``),
so their joint prefix test is exact: a line whose count already exceeds its budget, or that
can no longer end on it without an "e", is dead at once. The rhyme is checked when the line
ends (exact for the rhyme alone); ``&`` combines it with the rest, so a particle whose second
line has used up its syllables on a word that does not rhyme lives on until the line ends,
and then dies (with seed 0, 4 particles finish and 8 all die: raise ``--particles`` or try
other seeds).

    .venv/bin/python examples/poetry.py [--particles 4] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import potentia as pt  # noqa: E402
from potentia.constraints.verse import rhyme_key, syllable_counts  # noqa: E402

PER_LINE = [4, 4]
BANNED = "e"
PROMPT = (
    'Rhyming couplets without the letter "e", four syllables a line:\n\n'
    "A big black cat\nsat on a hat\n\n"
    "Too many roads\nall full of toads\n\n"
)


def constraint(per_line=PER_LINE, banned: str = BANNED) -> pt.Potential:
    """Lipogram ∩ syllables per line (one exact automaton), times a suffix rhyme."""
    shape = pt.intersect(pt.syllables(per_line), pt.excludes(letters=banned, ignore_case=True))
    return shape & pt.suffix_rhyme("A" * len(per_line), letters=2)


def show_prefix_checks(c: pt.Potential) -> None:
    """The prefix test on a few texts."""
    for text in [
        "A dog in fog\nran to a log",  # valid
        "A dog in fog\nran",  # viable
        "A dog in fog and",  # 5 syllables on a 4-syllable line: dead
        "A dog in a b",  # an open word past the budget (it will count 1): dead
        "A dog in fog\nran to the",  # an "e": dead
        "A dog in fog\nran to a cat",  # complete but no rhyme
    ]:
        x = list(text.encode())
        print(f"  prefix {c.prefix(x):>4}  complete {c.complete(x):>4}  {text!r}")


def main(
    lm: pt.LM | None = None, particles: int = 4, max_tokens: int = 16, seed: int = 0
) -> pt.Result:
    """Write a couplet under the constraints; print the weighted poems and their counts."""
    t0 = time.perf_counter()
    lm = lm if lm is not None else pt.LM.default()
    lm = lm.with_eos([*lm.eos_ids, "\n\n"])  # a blank line ends the poem
    c = constraint()
    print(f"constraint: {c}")
    show_prefix_checks(c)
    out = pt.sample(
        lm, PROMPT, c, particles=particles, max_tokens=max_tokens, seed=seed, progress=False
    )
    print(f"\n{out.message}; log Ẑ = {out.log_z:.2f}")
    for text, p in list(out.posterior.items())[:4]:
        keys = [rhyme_key(line) for line in text.split("\n")]
        print(f"  {p:6.3f}  syllables {syllable_counts(text)}  endings {keys}\n{text}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="lipogram couplets with syllables and rhyme")
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(particles=a.particles, max_tokens=a.max_tokens, seed=a.seed)
