"""A toy ReAct world with an exactly enumerable target (shared by the agent tests).

The vocabulary holds step pieces (``"Thought: "``, ``"go\\n"``, ``"Action: "``, ...), whole
steps (``"Final Answer: 2\\n"``) and the pieces of tool outputs. The LM is a bigram whose
rows put most of their mass on tokens that continue a ReAct trace and the rest on
everything (EOS, ``"Observation: "`` written by the model, schema-breaking inputs), so the
constraints have something to forbid.

:func:`reference_target` computes the exact target of the agent loop by brute force,
independently of potentia's step grammars and automata: it enumerates token sequences,
decodes them, checks each line with Python's ``json``/``jsonschema`` and a hand-written
transition table of ReAct, calls the tools, appends their outputs' greedy tokenization,
and multiplies the bigram's probabilities of the model-written tokens only.
"""

from __future__ import annotations

import json
from collections import defaultdict

import jsonschema
import numpy as np

from potentia.agents import Protocol, Tool
from potentia.models import NGramLM, ToyLM
from potentia.potentials import Vocabulary

TOKENS = [
    "Thought: ",
    "go\n",
    "Action: ",
    "dbl\n",
    "inc\n",
    "Action Input: ",
    '{"q": 1}\n',
    '{"q": "a"}\n',
    "Observation: ",
    "2\n",
    "Final Answer: ",
    "Final Answer: 2\n",
]
VOCAB = Vocabulary.from_strings(TOKENS)
SCHEMA = {
    "type": "object",
    "properties": {"q": {"type": "integer"}},
    "required": ["q"],
    "additionalProperties": False,
}
TOOLS = [
    Tool("dbl", lambda a: 2 * a["q"], SCHEMA, "doubles q."),
    Tool("inc", lambda a: "go", SCHEMA, "says go."),
]
PY_TOOLS = {"dbl": lambda v: str(2 * v["q"]), "inc": lambda v: "go"}

#: ReAct's label automaton, written out by hand (the reference for the LTLf compiler).
REACT_NEXT = {
    "start": {"Thought": "t"},
    "t": {"Action": "a", "Final Answer": "end"},
    "a": {"Action Input": "i"},
    "i": {"Observation": "o"},
    "o": {"Thought": "t"},
    "end": {},
}
#: A protocol that may end after any Final Answer, by the model's EOS (no tools).
CHAT = Protocol(
    "Chat",
    labels=["Thought", "Final Answer"],
    formula='F "Final Answer"',
    content={"Thought": "text", "Final Answer": "text"},
    answer="Final Answer",
)
CHAT_NEXT = {
    "start": {"Thought": "start", "Final Answer": "acc"},
    "acc": {"Thought": "acc", "Final Answer": "acc"},
}


def toy_lm(
    seed: int = 0, structure: float = 0.75, extra: tuple[str, ...] = (), sparsity: float = 0.0
) -> ToyLM:
    """A bigram over :data:`VOCAB` (plus ``extra`` tokens): ``structure`` of each row on
    ReAct-like successors, the rest spread at random over the tokens and EOS, of which a
    fraction ``sparsity`` get nothing (fewer random paths to enumerate)."""
    rng = np.random.default_rng(seed)
    tokens = TOKENS + [t for t in extra if t not in TOKENS]
    idx = {t: i for i, t in enumerate(tokens)}
    V = len(tokens)
    after = {
        None: ["Thought: "],
        "Thought: ": ["go\n", "2\n"],
        "go\n": ["Action: ", "Final Answer: ", "Final Answer: 2\n"],
        "Action: ": ["dbl\n", "inc\n"],
        "dbl\n": ["Action Input: "],
        "inc\n": ["Action Input: "],
        "Action Input: ": ['{"q": 1}\n', '{"q": "a"}\n'],
        '{"q": 1}\n': ["Observation: "],
        '{"q": "a"}\n': ["Observation: "],
        "Observation: ": ["2\n"],
        "2\n": ["Thought: ", "Final Answer: 2\n"],
        "Final Answer: ": ["2\n", "go\n"],
        "Final Answer: 2\n": [],
    }
    table = {}
    after.update({t: [] for t in tokens if t not in after})
    for prev in [None, *tokens]:
        row = (1 - structure) * rng.dirichlet(np.ones(V + 1))
        if sparsity:
            off = rng.random(V + 1) < sparsity
            if off.all():
                off[-1] = False
            row[off] = 0.0
            row *= (1 - structure) / row.sum()
        nxt = after[prev]
        if nxt:
            w = rng.dirichlet(np.ones(len(nxt)))
            for t, p in zip(nxt, w):
                row[idx[t]] += structure * p
        else:
            row[V] += structure  # EOS after a final answer
        with np.errstate(divide="ignore"):
            table[(-1 if prev is None else idx[prev],)] = np.log(row)
    vocab = VOCAB if not extra else Vocabulary.from_strings(tokens)
    return ToyLM(NGramLM(vocab, table, order=2))


def greedy(text: str) -> tuple[int, ...]:
    """Greedy longest-match tokenization over :data:`VOCAB` (the toy LM's encode)."""
    data, out, i = text.encode(), [], 0
    order = sorted(range(len(TOKENS)), key=lambda j: -len(VOCAB.tokens[j]))
    while i < len(data):
        j = next(j for j in order if data.startswith(VOCAB.tokens[j], i))
        out.append(j)
        i += len(VOCAB.tokens[j])
    return tuple(out)


def _line_ok(line: bytes, labels: list[str], kinds: dict, tool: str | None) -> str | None:
    """The label of a valid step line (exactly one newline, at the end), else ``None``."""
    if line.count(b"\n") != 1 or not line.endswith(b"\n"):
        return None
    text = line[:-1].decode()
    for lab in labels:
        if text.startswith(lab + ": "):
            content = text[len(lab) + 2 :]
            kind = kinds[lab]
            if kind == "text":
                return lab if content else None
            if kind == "tool":
                return lab if content in PY_TOOLS else None
            try:
                value = json.loads(content)
            except ValueError:
                return None
            ok = jsonschema.Draft202012Validator(SCHEMA).is_valid(value)
            return lab if ok and json.dumps(value) == content else None
    return None


def _viable(data: bytes, labels: list[str]) -> bool:
    return b"\n" not in data and any(
        (lab + ": ").encode().startswith(data) or data.startswith((lab + ": ").encode())
        for lab in labels
    )


def reference_target(
    lm: ToyLM,
    protocol: Protocol,
    nxt: dict,
    max_steps: int,
    max_step_tokens: int,
) -> dict[tuple[int, ...], float]:
    """Exact unnormalised target over trace token sequences (see the module docstring)."""
    table = lm.lm.table
    V = len(TOKENS)
    kinds = protocol.content
    env = set(protocol.environment)
    out: dict[tuple[int, ...], float] = defaultdict(float)
    memo: dict = {}

    def prob(prev: int, t: int) -> float:
        return float(np.exp(table[(prev,)][t]))

    def steps(prev: int, labels: tuple, tool: str | None) -> list:
        key = (prev, labels, tool)
        if key in memo:
            return memo[key]
        found = []

        def dfs(seq: tuple, data: bytes, p: float, last: int) -> None:
            for t in range(V):
                b = data + VOCAB.tokens[t]
                q = p * prob(last, t)
                if q == 0:
                    continue
                if b"\n" in b:
                    lab = _line_ok(b, list(labels), kinds, tool)
                    if lab is not None:
                        found.append((seq + (t,), lab, b[len(lab) + 2 : -1].decode(), q))
                elif len(seq) + 1 < max_step_tokens and _viable(b, list(labels)):
                    dfs(seq + (t,), b, q, t)

        dfs((), b"", 1.0, prev)
        memo[key] = found
        return found

    def rec(ctx: tuple, state: str, n: int, w: float, tool, inp) -> None:
        prev = ctx[-1] if ctx else -1
        allowed = nxt[state]
        if not allowed:  # the protocol ends the trace
            out[ctx] += w
            return
        if state == "acc" and prob(prev, V) > 0:  # accepting, more may follow: EOS may end
            out[ctx] += w * prob(prev, V)
        if n == max_steps:
            return
        env_labels = [x for x in allowed if x in env]
        if env_labels:
            obs = PY_TOOLS[tool](json.loads(inp))
            toks = greedy(f"{env_labels[0]}: {obs}\n")
            rec(ctx + toks, allowed[env_labels[0]], n + 1, w, tool, inp)
            return
        labels = tuple(x for x in protocol.labels if x in allowed)
        for seq, lab, content, p in steps(prev, labels, tool if "Action Input" in labels else None):
            t2 = content if kinds[lab] == "tool" else tool
            i2 = content if kinds[lab] == "input" else inp
            rec(ctx + seq, allowed[lab], n + 1, w * p, t2, i2)

    rec((), "start", 0, 1.0, None, None)
    return dict(out)
