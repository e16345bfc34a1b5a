"""Smoke test of examples/react_agent.py on SmolLM2 at tiny settings, and its calculator."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "react_agent.py"


def _load():
    spec = importlib.util.spec_from_file_location("react_agent", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_safe_calculator_evaluates_arithmetic_only():
    ex = _load()
    assert ex.calculator({"expression": "68 * 2"}) == "136"
    assert ex.calculator({"expression": "(1 + 2) ** 3 - 7 / 2"}) == "23.5"
    for bad in ["__import__('os')", "x + 1", "2 ** 1000", "open('f')", "1 +"]:
        with pytest.raises(ValueError):
            ex.safe_eval(bad)


NEXT = {
    None: {"Thought"},
    "Thought": {"Action", "Final Answer"},
    "Action": {"Action Input"},
    "Action Input": {"Observation"},
    "Observation": {"Thought"},
    "Final Answer": set(),
}


@pytest.mark.real_model
def test_react_example_runs_and_obeys_the_protocol(smollm, capsys):
    ex = _load()
    out = ex.main(particles=2, max_steps=10, max_step_tokens=16, seed=0, time_limit=20.0, lm=smollm)
    printed = capsys.readouterr().out
    assert "answer posterior" in printed and "agent[ReAct" in printed
    tools = {t.name: t for t in ex.TOOLS}
    calls = 0  # observations in the final traces (copies made by resampling included)
    for steps, status in zip(out.extra["steps"], out.status):
        prev, tool, arg = None, None, None
        for s in steps:  # every trace, finished or not, is a prefix of a ReAct trace
            assert s.label in NEXT[prev], (s, prev)
            assert (s.by == "environment") == (s.label == "Observation")
            if s.label == "Action":
                assert s.content in tools
                tool = tools[s.content]
            if s.label == "Action Input":
                arg = json.loads(s.content)
                jsonschema.validate(arg, tool.schema)
                assert s.content == json.dumps(arg)
            if s.label == "Observation":
                calls += 1
                try:
                    want = str(tool.fn(arg))
                except Exception as err:  # noqa: BLE001 - the agent reads errors as text
                    want = f"Error: {type(err).__name__}: {err}"
                assert s.content == want
            prev = s.label
        if status == "finished":
            assert prev == "Final Answer"
    assert (calls > 0) <= (out.extra["tool_calls"] > 0)
