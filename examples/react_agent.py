"""A ReAct agent with a calculator and a lookup table, on an embedded model.

The model (SmolLM2 135M Instruct by default, or Gemma 3 270M) writes the ``Thought``,
``Action``, ``Action Input`` and ``Final Answer`` steps of the ReAct protocol; the tools
write the ``Observation`` steps. Every model step is constrained as it is written: only the
labels the protocol allows next, an ``Action`` that names a registered tool, an ``Action
Input`` valid for that tool's JSON Schema. SMC over steps keeps the traces properly weighted
for LM × constraints (tool outputs are fixed context). The few-shot example in the prompt
is validated against the protocol before the model runs.

The calculator evaluates arithmetic safely: the expression is parsed with :mod:`ast` and
only numbers, ``+ - * / // % **`` and parentheses are evaluated (no ``eval``); anything
else is an error, which the agent reads as its Observation.

    .venv/bin/python examples/react_agent.py [--model smollm2|gemma] [--particles 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import ast
import operator
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import potentia as pt  # noqa: E402
from potentia.agents import REACT, Tool, answers  # noqa: E402

_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def safe_eval(expression: str) -> float | int:
    """Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses only.

    Raises:
        ValueError: for anything else (names, calls, attributes, huge powers, ...).
    """

    def ev(node: ast.AST) -> float | int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 100:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"not arithmetic: {ast.dump(node)[:40]}")

    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"cannot parse {expression!r}") from err
    return ev(tree)


def calculator(args: dict) -> str:
    """The calculator tool: ``{"expression": "..."}`` → its value."""
    value = safe_eval(args["expression"])
    return str(round(value, 6)) if isinstance(value, float) else str(value)


#: The lookup tool's table: population in millions (rounded), 2023 estimates.
TABLE = {"france": "68", "germany": "84", "italy": "59", "spain": "48", "japan": "124"}


def lookup(args: dict) -> str:
    """The lookup tool: ``{"key": "..."}`` → the table's entry."""
    key = args["key"].strip().lower()
    if key not in TABLE:
        raise KeyError(f"{args['key']!r} is not in the table; keys: {sorted(TABLE)}")
    return TABLE[key]


TOOLS = [
    Tool(
        "calculator",
        calculator,
        {
            "type": "object",
            "properties": {"expression": {"type": "string", "maxLength": 40}},
            "required": ["expression"],
            "additionalProperties": False,
        },
        "evaluates an arithmetic expression.",
    ),
    Tool(
        "lookup",
        lookup,
        {
            "type": "object",
            "properties": {"key": {"enum": sorted(TABLE)}},
            "required": ["key"],
            "additionalProperties": False,
        },
        "population of a country in millions.",
    ),
]

EXAMPLES = [
    (
        "What is the population of Japan plus 10, in millions?",
        "Thought: I need the population of Japan.\n"
        "Action: lookup\n"
        'Action Input: {"key": "japan"}\n'
        "Observation: 124\n"
        "Thought: I add 10 to it.\n"
        "Action: calculator\n"
        'Action Input: {"expression": "124 + 10"}\n'
        "Observation: 134\n"
        "Thought: I know the answer.\n"
        "Final Answer: 134\n",
    )
]

QUESTION = "What is the population of France times 2, in millions?"


def main(
    model: str = "smollm2",
    question: str = QUESTION,
    particles: int = 4,
    max_steps: int = 14,
    max_step_tokens: int = 24,
    seed: int = 0,
    sampler: str = "auto",
    time_limit: float | None = 300.0,
    lm: pt.LM | None = None,
) -> pt.Result:
    """Run the agent once and print the traces, the answer posterior and the run time.

    Args:
        model: ``"smollm2"`` (SmolLM2 135M Instruct) or ``"gemma"`` (Gemma 3 270M).
        question: The question.
        particles: Number of particles.
        max_steps: Most steps per trace.
        max_step_tokens: Most tokens per model step.
        seed: Random seed.
        sampler: ``"auto"`` (AWRS), ``"direct"`` or ``"awrs"``.
        time_limit: Wall-clock budget in seconds.
        lm: An already loaded model (tests pass the session's), else ``model`` is loaded.
    """
    t0 = time.perf_counter()
    if lm is None:
        lm = pt.LM.smollm2() if model == "smollm2" else pt.LM.default()
    print(f"model {lm} loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    agent = pt.agents.Agent(REACT, TOOLS, examples=EXAMPLES)  # the example is validated here
    t1 = time.perf_counter()
    out = agent.run(
        lm,
        question,
        particles=particles,
        seed=seed,
        sampler=sampler,
        max_steps=max_steps,
        max_step_tokens=max_step_tokens,
        time_limit=time_limit,
    )
    secs = time.perf_counter() - t1
    print(f"question: {question}")
    print(f"{out.method}: {particles} particles, {out.n_steps} rounds, {secs:.1f} s")
    print(out.message)
    print(f"log Ẑ = {out.log_z:.3f}, tool calls {out.extra['tool_calls']}")
    for i in sorted(range(len(out.texts)), key=lambda i: -out.weights[i])[:2]:
        print(f"\n--- particle {i} (weight {out.weights[i]:.3f}, {out.status[i]}) ---")
        print(out.texts[i].rstrip("\n"))
    print("\nanswer posterior:", answers(out))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["smollm2", "gemma"], default="smollm2")
    ap.add_argument("--question", default=QUESTION)
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--max-steps", type=int, default=14)
    ap.add_argument("--max-step-tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sampler", default="auto")
    a = ap.parse_args()
    main(
        a.model,
        a.question,
        a.particles,
        a.max_steps,
        a.max_step_tokens,
        a.seed,
        a.sampler,
    )
