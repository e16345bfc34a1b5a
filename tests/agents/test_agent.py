"""pt.agent: exactness on a toy world, spec enforcement, few-shot validation, bad inputs."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import potentia as pt
from potentia.agents import PLAN_ACT, REACT, Agent, Protocol, Tool, answers, call_tool
from potentia.testing import enumerate_draws
from potentia.testing.gof import assert_gof
from potentia.testing.smc_checks import smc_exact_draws

sys.path.insert(0, str(Path(__file__).parent))
from toy import (  # noqa: E402
    CHAT,
    CHAT_NEXT,
    REACT_NEXT,
    SCHEMA,
    TOOLS,
    VOCAB,
    reference_target,
    toy_lm,
)


def _expectations(agent: Agent, lm, weights: dict | None = None, **kw) -> tuple[dict, int]:
    """Exact E[w · 1{trace}] of a one-particle run, over every random path of its draws.

    With the direct sampler a trace's weight is a function of the trace; ``weights`` (if
    given) receives it, per trace.
    """
    got: dict[tuple[int, ...], float] = {}
    paths = enumerate_draws(
        lambda draw: agent.run(lm, prompt=(), particles=1, sampler="direct", draw=draw, **kw)
    )
    for prob, res in paths:
        if res.status[0] == "finished":
            key = tuple(res.contexts[0])
            got[key] = got.get(key, 0.0) + prob * float(np.exp(res.log_weights[0]))
            if weights is not None:
                weights[key] = float(res.log_weights[0])
    return got, len(paths)


@pytest.mark.parametrize("seed", [0, 1])
def test_react_one_particle_is_properly_weighted_exactly(seed):
    """E[w · 1{τ}] = target(τ) for every trace τ, by enumerating every random path."""
    lm = toy_lm(seed, sparsity=0.5)
    agent = Agent(REACT, TOOLS)
    want = reference_target(lm, REACT, REACT_NEXT, max_steps=6, max_step_tokens=2)
    weight: dict = {}
    got, n_paths = _expectations(agent, lm, weight, max_steps=6, max_step_tokens=2)
    assert n_paths > 50 and len(want) > 20  # the problem is not trivial
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-15), VOCAB.decode(k)
    # the tool was called: some trace holds the environment's observation
    assert any("Observation: 2\n" in VOCAB.decode(k) for k in want)
    # particles drawn as rows of one batch (shared histories) get the same weights as the
    # one-particle runs enumerated above: without resampling, w is the trace's function
    for r in range(3):
        res = agent.run(
            lm,
            prompt=(),
            particles=8,
            seed=r,
            sampler="direct",
            ess_threshold=0.0,
            max_steps=6,
            max_step_tokens=2,
        )
        for ctx, st, lw in zip(res.contexts, res.status, res.log_weights):
            if st == "finished":
                assert lw == pytest.approx(weight[tuple(ctx)], abs=1e-9)


def test_eos_ending_protocol_is_properly_weighted_exactly():
    """A protocol that accepts with continuations: the model's EOS ends the trace."""
    lm = toy_lm(3, sparsity=0.5)
    agent = Agent(CHAT)
    want = reference_target(lm, CHAT, CHAT_NEXT, max_steps=3, max_step_tokens=2)
    got, _ = _expectations(agent, lm, max_steps=3, max_step_tokens=2)
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-15), VOCAB.decode(k)


def test_smc_with_resampling_matches_the_exact_posterior_chi2():
    """AWRS, 4 particles, resampling at every step boundary: rejection-corrected draws
    (Ẑ ≤ 1 surely) are exact posterior samples; Pearson χ², false-alarm budget 1e-3."""
    lm = toy_lm(2, structure=0.9, sparsity=0.5)  # Z ≈ 0.65: most runs' draws are accepted
    agent = Agent(REACT, TOOLS)
    want = reference_target(lm, REACT, REACT_NEXT, max_steps=6, max_step_tokens=2)
    rng = np.random.default_rng(7)
    runs = []
    for r in range(200):
        res = agent.run(
            lm, prompt=(), particles=4, seed=r, ess_threshold=1.0, max_steps=6, max_step_tokens=2
        )
        runs.append(res)
    assert sum(len(r.resampled_at) for r in runs) > 100  # resampling happened
    draws = smc_exact_draws(runs, rng, log_bound=0.0)
    assert len(draws) > 100

    # outcome: the trace's label sequence and its answer (pools the rare token paths)
    def outcome(ctx):
        text = VOCAB.decode(ctx)
        labels = [line.split(": ")[0] for line in text.splitlines()]
        return (tuple(labels), text.splitlines()[-1])

    probs: dict = {}
    for k, w in want.items():
        probs[outcome(k)] = probs.get(outcome(k), 0.0) + w
    assert_gof([outcome(d) for d in draws], probs, false_alarm=1e-3)


def _check_trace(text: str, tools=("dbl", "inc"), complete: bool = True) -> None:
    """The trace (or, unless ``complete``, a prefix of one) obeys ReAct: labels, registered
    tools, valid inputs, the tools' real observations."""
    lines = text.splitlines()
    state = "start"
    tool = inp = None
    for line in lines:
        lab, _, content = line.partition(": ")
        assert lab in REACT_NEXT[state], (text, lab, state)
        state = REACT_NEXT[state][lab]
        if lab == "Action":
            assert content in tools
            tool = content
        if lab == "Action Input":
            value = json.loads(content)
            jsonschema.validate(value, SCHEMA)
            inp = value
        if lab == "Observation":
            assert content == {"dbl": str(2 * inp["q"]), "inc": "go"}[tool]
    assert state == "end" or not complete


@pytest.mark.parametrize("sampler", ["awrs", "direct"])
def test_spec_is_enforced_although_the_lm_prefers_breaking_it(sampler):
    """A toy LM that puts most of its mass on disallowed steps: every finished trace is
    still a ReAct trace with registered tools, valid inputs and the tools' observations."""
    lm = toy_lm(5, structure=0.3)
    agent = Agent(REACT, TOOLS)
    finished = 0
    for seed in range(6):
        res = agent.run(lm, prompt=(), particles=4, seed=seed, sampler=sampler, max_steps=10)
        for text, st, steps in zip(res.texts, res.status, res.extra["steps"]):
            _check_trace(text, complete=st == "finished")  # unfinished: a valid prefix
            if st == "finished":
                finished += 1
                assert [s.by for s in steps if s.label == "Observation"] == ["environment"] * len(
                    [s for s in steps if s.label == "Observation"]
                )
    assert finished > 0


def test_plan_act_spec_and_answers():
    plan = Agent(PLAN_ACT, TOOLS)
    steps = plan.validate(
        'Plan: use dbl\nAction: dbl\nAction Input: {"q": 1}\nObservation: 2\nFinal Answer: 2\n'
    )
    assert [s.by for s in steps] == ["model"] * 3 + ["environment", "model"]
    with pytest.raises(ValueError, match=r"step 3 \(Plan\).*does not allow 'Plan'"):
        plan.validate("Plan: a\nAction: dbl\nPlan: b\n")


# ----- few-shot validation -------------------------------------------------------------
GOOD = 'Thought: go\nAction: dbl\nAction Input: {"q": 1}\nObservation: 2\nThought: go\nFinal Answer: 2\n'


@pytest.mark.parametrize(
    "trace, message",
    [
        (
            "Thought: go\nObservation: 2\n",
            r"step 2 \(Observation\).*allowed there: \['Action', 'Final Answer'\]",
        ),
        ("Action: dbl\n", r"step 1 \(Action\).*after the start"),
        ("Thought: go\nAction: triple\n", r"step 2 \(Action: 'triple'\).*not a registered tool"),
        (
            'Thought: go\nAction: dbl\nAction Input: {"q": "a"}\n',
            r"step 3 \(Action Input.*breaks the schema of tool 'dbl'.*not of type 'integer'",
        ),
        ("Thought: go\nAction: dbl\nAction Input: {q: 1}\n", r"step 3 .*not JSON"),
        ('Thought: go\nAction: dbl\nAction Input: {"q":1}\n', r'json.dumps writes it.*\{"q": 1\}'),
        (
            "Thought: go\nAction: dbl\n",
            r"ends after step 2 \('Action'\).*needs one of \['Action Input'\]",
        ),
        ("Thought: go\nFinal Answer 2\n", r"line 2 .*not a step of ReAct"),
        ("Thought: \nFinal Answer: 2\n", r"step 1 \(Thought: ''\).*content is empty"),
        ("Thought: go\nFinal Answer: 2\nThought: more\n", r"step 3 \(Thought\).*nothing"),
    ],
)
def test_few_shot_examples_are_validated_with_the_offending_step(trace, message):
    with pytest.raises(ValueError, match=message):
        Agent(REACT, TOOLS, examples=[GOOD, ("q?", trace)])
    with pytest.raises(ValueError, match=r"`examples\[1\]`"):
        Agent(REACT, TOOLS, examples=[GOOD, ("q?", trace)])


def test_valid_examples_go_into_the_prompt():
    agent = Agent(REACT, TOOLS, examples=[("What is 2?", GOOD)])
    text = agent.prompt("What is 4?")
    assert "Question: What is 2?\n" + GOOD in text
    assert text.endswith("Question: What is 4?\n")
    assert "- dbl: doubles q. Input: " in text


# ----- tools ------------------------------------------------------------------------------
def test_tool_errors_and_timeouts_become_observation_text():
    def boom(args):
        raise RuntimeError("no\nway")

    def slow(args):
        time.sleep(5)
        return "late"

    t_boom, t_slow = Tool("boom", boom, SCHEMA), Tool("slow", slow, SCHEMA)
    assert call_tool(t_boom, '{"q": 1}', 1.0, 100) == "Error: RuntimeError: no way"
    assert call_tool(t_slow, '{"q": 1}', 0.05, 100) == "Error: the tool timed out after 0.05 s"
    long = Tool("long", lambda a: "x" * 50, SCHEMA)
    assert call_tool(long, '{"q": 1}', 1.0, 20) == "x" * 16 + " ..."


def test_pydantic_tool_gets_the_model_instance():
    from pydantic import BaseModel

    class Q(BaseModel):
        q: int

    t = Tool("p", lambda m: f"{type(m).__name__}:{m.q}", Q)
    assert call_tool(t, '{"q": 3}', 1.0, 100) == "Q:3"


CALL_ONCE = Protocol(
    "CallOnce",
    ["Action", "Action Input", "Observation", "Final Answer"],
    'Action & G(Action -> X "Action Input") & G("Action Input" -> X Observation)'
    ' & G(Observation -> X "Final Answer") & G("Final Answer" -> WX false)',
    {"Action": "tool", "Action Input": "input", "Final Answer": "text"},
    environment=["Observation"],
    answer="Final Answer",
)


def test_a_failing_tool_is_read_by_the_model_not_raised():
    """The tool raises; the run goes on and the model reads the error as its Observation."""
    chars = ("\n", *(chr(c) for c in range(32, 127)))
    lm = toy_lm(0, structure=0.95, extra=chars)  # single characters spell the error text
    err = [Tool("dbl", lambda a: 1 / 0, SCHEMA), Tool("inc", lambda a: 1 / 0, SCHEMA)]
    go = lm.vocab.tokens.index(b"go\n")  # after "go\n" the toy LM likes "Action: "
    res = Agent(CALL_ONCE, err).run(lm, prompt=[go], particles=4, seed=0, max_step_tokens=3)
    obs = [s.content for steps in res.extra["steps"] for s in steps if s.label == "Observation"]
    assert obs and set(obs) == {"Error: ZeroDivisionError: division by zero"}
    assert res.extra["tool_calls"] >= len(obs)
    assert "finished" in res.status


# ----- budgets and failure ------------------------------------------------------------
def test_all_truncated_run_says_why():
    res = Agent(REACT, TOOLS).run(toy_lm(0), prompt=(), particles=3, seed=0, max_steps=1)
    assert res.log_z == -np.inf and res.posterior == {}
    assert "no particle finished" in res.message and "raise `max_steps`" in res.message
    assert set(res.status) == {"truncated"}


def test_step_token_budget_truncates_with_reason():
    # a Thought takes two tokens of the toy vocabulary: one-token steps cannot start a trace
    res = Agent(REACT, TOOLS).run(
        toy_lm(0), prompt=(), particles=2, seed=0, max_steps=6, max_step_tokens=1
    )
    assert set(res.status) == {"truncated"}
    assert all("max_step_tokens" in w for w in res.extra["truncated_by"])
    assert "raise `max_step_tokens`" in res.message


def test_time_limit_stops_the_run():
    res = Agent(REACT, TOOLS).run(toy_lm(0), prompt=(), particles=2, seed=0, time_limit=1e-9)
    assert "time_limit" in res.message and res.extra["stopped_by"]
    assert set(res.status) == {"truncated"}


def test_all_dead_run_says_why():
    # no token of the toy vocabulary starts a "Zed: " step: every particle dies at once
    zed = Protocol("Zed", ["Zed"], "Zed", {"Zed": "text"})
    res = Agent(zed).run(toy_lm(0), prompt=(), particles=3, seed=0)
    assert res.all_dead and res.log_z == -np.inf
    assert all(s.startswith("dead: no allowed next token") for s in res.status)
    assert "no particle finished" in res.message and "3 of 3 particles" in res.message


def test_answers_posterior():
    res = Agent(REACT, TOOLS).run(toy_lm(0), prompt=(), particles=8, seed=1, max_steps=6)
    post = answers(res)
    assert post and abs(sum(post.values()) - 1) < 1e-12
    assert res.extra["answer_posterior"] == post


# ----- bad inputs: clear errors before any LM call -------------------------------------------
class _NoCalls:
    """A model whose every use fails: the checks must come first."""

    context_window = 2048

    def potential(self, prompt):
        raise AssertionError("the LM was called before the arguments were checked")


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        ({"particles": 0}, ValueError, "`particles`"),
        ({"particles": 2.5}, TypeError, "`particles`"),
        ({"max_steps": 0}, ValueError, "`max_steps`"),
        ({"max_step_tokens": -1}, ValueError, "`max_step_tokens`"),
        ({"max_tokens": 0}, ValueError, "`max_tokens`"),
        ({"time_limit": -1}, ValueError, "`time_limit`"),
        ({"ess_threshold": 2}, ValueError, "`ess_threshold`"),
        ({"resampling": "magic"}, ValueError, "`resampling`"),
        ({"sampler": "magic"}, ValueError, "`sampler`"),
        ({"seed": "x"}, TypeError, "`seed`"),
    ],
)
def test_bad_run_arguments_fail_before_any_lm_call(kwargs, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        Agent(REACT, TOOLS).run(_NoCalls(), "q?", **kwargs)


def test_bad_agent_arguments():
    with pytest.raises(TypeError, match="`spec`"):
        pt.agent("react", _NoCalls(), "q?", tools=TOOLS)
    with pytest.raises(ValueError, match="exactly one of `question`"):
        Agent(REACT, TOOLS).run(_NoCalls())
    with pytest.raises(TypeError, match="`question`"):
        Agent(REACT, TOOLS).run(_NoCalls(), 3)
    with pytest.raises(TypeError, match="`model`"):
        Agent(REACT, TOOLS).run(object(), "q?")
    with pytest.raises(ValueError, match="`tools` is empty"):
        Agent(REACT, [])
    with pytest.raises(ValueError, match="two tools named 'dbl'"):
        Agent(REACT, [TOOLS[0], TOOLS[0]])
    with pytest.raises(TypeError, match=r"`tools\[0\]`"):
        Agent(REACT, [print])
    with pytest.raises(ValueError, match="`name`"):
        Tool("bad name", print, SCHEMA)
    with pytest.raises(ValueError, match="`schema` of tool 'x'"):
        Tool("x", print, {"type": "nonsense"})
    with pytest.raises(TypeError, match=r"`examples\[0\]`"):
        Agent(REACT, TOOLS, examples=[("only one",)])
    with pytest.raises(ValueError, match="context window"):
        Agent(REACT, TOOLS).run(_TinyWindow(), "q?", max_step_tokens=48)


class _TinyWindow(_NoCalls):
    context_window = 40

    def potential(self, prompt):  # tokenizing only: no forward
        class P:
            prompt_ids = list(range(len(prompt) // 4))
            vocab = VOCAB

        return P()


def test_bad_protocols_are_refused():
    with pytest.raises(ValueError, match="allows the environment label 'Obs' and also"):
        Protocol(
            "bad",
            ["Act", "In", "Obs"],
            "G(Act -> X In) & F Obs",
            {"Act": "tool", "In": "input"},
            environment=["Obs"],
        )
    with pytest.raises(ValueError, match="no kind for the model labels"):
        Protocol("bad", ["A", "B"], "F A", {"A": "text"})
    with pytest.raises(ValueError, match="accepts no trace"):
        Protocol("bad", ["A"], "A & !A", {"A": "text"})
    with pytest.raises(ValueError, match="without ':'"):
        Protocol("bad", ["A:"], "F A", {"A:": "text"})
