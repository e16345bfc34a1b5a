"""Extractive question answering: the answer is a span copied from the passage.

The target is Gemma 3 270M's answer to a question about a passage, conditioned on the answer
being a contiguous substring of the passage (``pt.span_of``, a suffix automaton: a prefix is
viable iff it occurs in the passage starting at a character boundary, so the prefix test is
exact and a particle can never drift off the passage). The answer ends at a newline. The
posterior shows how the model's mass spreads over the candidate spans; log Ẑ is the
(estimated) log-probability that the model's unconstrained answer is a span at all.

    .venv/bin/python examples/extractive_qa.py [--particles 8] [--max-tokens 12]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import potentia as pt  # noqa: E402

PASSAGE = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the "
    "tower from 1887 to 1889 as the centrepiece of the 1889 World's Fair."
)
QUESTION = "Who is the Eiffel Tower named after?"
PROMPT = (
    "Answer with words copied from the passage.\n\n"
    "Passage: The Louvre is the world's most-visited museum. It is located on the Right Bank "
    "of the Seine in Paris.\nQuestion: On which bank of the Seine is the Louvre?\n"
    "Answer: the Right Bank\n\n"
    f"Passage: {PASSAGE}\nQuestion: {QUESTION}\nAnswer:"
)


def constraint(passage: str = PASSAGE) -> pt.Potential:
    """The answer is a span of ``passage`` (a leading space is allowed: ``" " + span``).

    The model writes a space after ``Answer:``; the passage's own spaces make most
    space-led spans substrings already, and the first word is covered by the leading
    space added here.
    """
    return pt.span_of(" " + passage)


def show_prefix_checks(c: pt.Potential) -> None:
    """The exact prefix test on a few answers."""
    for text in [" Gustave Eiffel", " Gustave Eif", " Gustave Eiffel's company", " the tower from"]:
        x = list(text.encode())
        print(f"  prefix {c.prefix(x):>4}  complete {c.complete(x):>4}  {text!r}")


def main(
    lm: pt.LM | None = None, particles: int = 8, max_tokens: int = 12, seed: int = 0
) -> pt.Result:
    """Answer :data:`QUESTION` with a span of :data:`PASSAGE`; print the weighted answers."""
    t0 = time.perf_counter()
    lm = lm if lm is not None else pt.LM.default()
    lm = lm.with_eos([*lm.eos_ids, "\n"])
    c = constraint()
    print(f"constraint: {c} ({c.dfa.n_states} automaton states)")
    show_prefix_checks(c)
    out = pt.sample(
        lm, PROMPT, c, particles=particles, max_tokens=max_tokens, seed=seed, progress=False
    )
    print(f"\nQuestion: {QUESTION}\n{out.message}; log Ẑ = {out.log_z:.2f}")
    for text, p in list(out.posterior.items())[:5]:
        print(f"  {p:6.3f}  {text!r}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="extractive question answering")
    ap.add_argument("--particles", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(particles=a.particles, max_tokens=a.max_tokens, seed=a.seed)
