"""Well-formed reasoning chains on a knowledge graph ("Decoding on Graphs", Li et al. 2024).

The model answers a question by writing a chain of triples ``(head, relation, tail)``, each on
a new line (:data:`TEMPLATE`), starting at the question's topic entity; a blank line ends
it. ``pt.graph_path`` makes the chain *well-formed*: every triple is an edge of the graph
below (:data:`KG`, 40 facts), and each triple starts at the previous triple's tail. The constraint is one trimmed byte automaton
(per hop and current entity, a trie of the edges leaving it), so the prefix test is exact:
a half-written name that no edge continues, or a relation the current entity does not have,
is dead at the byte where it goes wrong, and a masked token is never one that could still
lead to a valid chain. The answer is the last triple's tail.

    .venv/bin/python examples/kg_chain.py [--particles 8] [--max-tokens 40] [--max-hops 3]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import potentia as pt  # noqa: E402

KG = [
    ("Marie Curie", "born in", "Warsaw"),
    ("Marie Curie", "spouse", "Pierre Curie"),
    ("Marie Curie", "field", "physics"),
    ("Marie Curie", "award", "Nobel Prize in Physics"),
    ("Marie Curie", "child", "Irène Joliot-Curie"),
    ("Pierre Curie", "born in", "Paris"),
    ("Pierre Curie", "spouse", "Marie Curie"),
    ("Pierre Curie", "award", "Nobel Prize in Physics"),
    ("Irène Joliot-Curie", "born in", "Paris"),
    ("Irène Joliot-Curie", "award", "Nobel Prize in Chemistry"),
    ("Albert Einstein", "born in", "Ulm"),
    ("Albert Einstein", "field", "physics"),
    ("Albert Einstein", "award", "Nobel Prize in Physics"),
    ("Albert Einstein", "worked at", "Princeton University"),
    ("Ada Lovelace", "born in", "London"),
    ("Ada Lovelace", "field", "mathematics"),
    ("Ada Lovelace", "parent", "Lord Byron"),
    ("Lord Byron", "born in", "London"),
    ("Lord Byron", "occupation", "poet"),
    ("Alan Turing", "born in", "London"),
    ("Alan Turing", "field", "mathematics"),
    ("Alan Turing", "worked at", "University of Manchester"),
    ("Warsaw", "capital of", "Poland"),
    ("Paris", "capital of", "France"),
    ("London", "capital of", "United Kingdom"),
    ("Ulm", "located in", "Germany"),
    ("Princeton University", "located in", "United States"),
    ("University of Manchester", "located in", "United Kingdom"),
    ("Poland", "located in", "Europe"),
    ("France", "located in", "Europe"),
    ("Germany", "located in", "Europe"),
    ("United Kingdom", "located in", "Europe"),
    ("United States", "located in", "North America"),
    ("Poland", "official language", "Polish"),
    ("France", "official language", "French"),
    ("Germany", "official language", "German"),
    ("United Kingdom", "official language", "English"),
    ("United States", "official language", "English"),
    ("Nobel Prize in Physics", "awarded by", "Royal Swedish Academy of Sciences"),
    ("Nobel Prize in Chemistry", "awarded by", "Royal Swedish Academy of Sciences"),
]
FEW_SHOT = (
    "Answer the question with a chain of facts (head, relation, tail), one per line.\n\n"
    "Question: In which country was the parent of Ada Lovelace born?\n"
    "Chain:\n(Ada Lovelace, parent, Lord Byron)\n(Lord Byron, born in, London)\n"
    "(London, capital of, United Kingdom)\n\n"
)
QUESTION = "In which country was the spouse of Marie Curie born?"
TOPIC = "Marie Curie"
TEMPLATE = "\n({head}, {relation}, {tail})"  # each triple on a new line


def constraint(max_hops: int = 3) -> pt.Potential:
    """Chains of 1..``max_hops`` edges of :data:`KG` starting at :data:`TOPIC`."""
    return pt.graph_path(KG, template=TEMPLATE, start=TOPIC, max_hops=max_hops)


def show_prefix_checks(c: pt.Potential) -> None:
    """The exact prefix test on a few chains."""
    for text in [
        "\n(Marie Curie, spouse, Pierre Curie)\n(Pierre Curie, born in, Paris)",
        "\n(Marie Curie, spouse, Pierre Curie)\n(Pierre Curie, bo",
        "\n(Marie Curie, spouse, Pierre Curie)\n(Pierre Curie, field",  # no such edge
        "\n(Marie Curie, spouse, Pierre Curie)\n(Paris",  # does not chain on
        "\n(Albert Einstein",  # not the topic entity
    ]:
        x = list(text.encode())
        print(f"  prefix {c.prefix(x):>4}  complete {c.complete(x):>4}  {text!r}")


def answer(chain: str) -> str | None:
    """The last triple's tail."""
    lines = [ln for ln in chain.split("\n") if ln]
    return lines[-1][1:-1].rsplit(", ", 1)[-1] if lines else None


def main(
    lm: pt.LM | None = None,
    particles: int = 8,
    max_tokens: int = 40,
    max_hops: int = 3,
    seed: int = 0,
) -> pt.Result:
    """Answer :data:`QUESTION` with a well-formed chain; print the weighted chains."""
    t0 = time.perf_counter()
    lm = lm if lm is not None else pt.LM.default()
    lm = lm.with_eos([*lm.eos_ids, "\n\n"])  # a blank line ends the chain
    c = constraint(max_hops)
    print(f"constraint: {c} ({c.dfa.n_states} automaton states)")
    show_prefix_checks(c)
    prompt = f"{FEW_SHOT}Question: {QUESTION}\nChain:"
    out = pt.sample(
        lm, prompt, c, particles=particles, max_tokens=max_tokens, seed=seed, progress=False
    )
    print(f"\nQuestion: {QUESTION}\n{out.message}; log Ẑ = {out.log_z:.2f}")
    for text, p in list(out.posterior.items())[:4]:
        print(f"  {p:6.3f}  answer {answer(text)!r}\n{text}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="reasoning chains on a knowledge graph")
    ap.add_argument("--particles", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=40)
    ap.add_argument("--max-hops", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(particles=a.particles, max_tokens=a.max_tokens, max_hops=a.max_hops, seed=a.seed)
