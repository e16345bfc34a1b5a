r"""``pt.agent``: an LM that writes the steps of a protocol, tools that write the others.

**The target.** A particle's text is ``prompt + s_1 s_2 ... s_K``, each step ``s_k`` one
line ``"Label: content\n"``. The model writes the steps at the states of the protocol's
automaton where the model's turn is (:mod:`potentia.agents.protocol`); the environment
writes the others: an ``Observation`` is the output of the tool named by the last
``Action`` on the last ``Action Input``, appended as *forced text*. For the token sequences
``u_k`` of the model-written steps ``M`` the run targets

    target(τ) = Π_{k ∈ M} P_LM(u_k | prompt, s_<k) · 1[the labels satisfy the formula]
                · Π_{k ∈ M} 1[s_k is in the step language at its state] · P_LM(EOS | ...)^[e]

where ``s_<k`` includes the tool outputs as fixed context: the LM reads them (they
condition every later step) but their own LM probability is *not* a factor, and they are
not part of the weighted proposal (the proposal draws only the model's tokens). The step
language (:mod:`potentia.agents.steps`) makes the ``Action`` name a registered tool and
the ``Action Input`` valid for that tool's schema; ``[e]`` is 1 when the trace ended by the
model's own EOS (only possible where the automaton accepts and more steps could follow)
and 0 when the protocol ends it (after ``Final Answer`` in :data:`REACT`). The support is
restricted to traces of at most ``max_steps`` steps (where the protocol accepts at
``max_steps``, the trace ends with the model's EOS, weighted by its probability) whose
model steps have at most ``max_step_tokens`` tokens each (and at most ``max_tokens``
tokens in all).

Tools are called on the particle's own trace: deterministic tools make the target above a
function of the model's steps; a random tool makes it the joint of model steps and
observations, where the environment's probability of each observation is in the target and
in the proposal alike and cancels from the weights.

**The sampler.** Sequential Monte Carlo over steps. Every live particle writes its next
step in turn: an environment step appends the tool output (weight unchanged); a model step
is one unit of :class:`potentia.samplers.units.UnitSampler` (tokens up to the step's
``"\n"``) drawn by a token sampler for ``LM × step language`` (AWRS or direct), whose unit
log weight is properly weighted for that step's factor; at the step's end the step
language's exact completion test (the full tool schema) is multiplied in. So after every
round, each particle's weight is properly weighted for the target of the steps so far.
After each round (a step boundary for every particle), when the ESS falls below
``ess_threshold · N`` all particles are resampled (finished ones too) and weights reset to
their mean, whose log joins log Ẑ; Ẑ is an unbiased estimate of Z = Σ_τ target(τ)
(and Ẑ ≤ 1 surely, every factor being a probability or 0/1). With several particles each
particle calls its tools itself (after resampling, copies call again); weights carry over
between rounds.

Particles that share a history (all of them at the start, and the copies that resampling
makes) draw their next step as the rows of one batch, whose equal contexts share forward
rows. Other particles advance one group at a time: once tool outputs differ their
contexts have different lengths, which one batched LM state cannot hold; each keeps its
own KV cache, and the forced text and the step's tokens go into the next forward together.

**Budgets.** ``max_steps`` (then the particle is ``"truncated"``), ``max_step_tokens``
(a longer step is ``"truncated"``), ``max_tokens`` and the model's context window,
``time_limit`` (checked before every step; the particles not done are ``"truncated"``) and
each tool's timeout. Truncated particles are excluded from the posterior (they are outside
the restricted support). A run whose particles all die or are truncated returns a
:class:`~potentia.result.Result` whose ``message`` says why, with the fix.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from potentia.agents.protocol import Protocol
from potentia.agents.steps import step_constraint
from potentia.agents.tools import Tool, as_tools, call_tool
from potentia.api import SAMPLERS
from potentia.constraints.llg import LLGConstraint
from potentia.potentials.base import PotentialState, Vocabulary, logsumexp
from potentia.potentials.ops import ProductState
from potentia.result import Result
from potentia.samplers.base import Draw
from potentia.samplers.units import UnitSampler
from potentia.smc.engine import validate_budgets
from potentia.smc.resampling import get_scheme

__all__ = ["Agent", "Step", "agent", "answers", "DEFAULT_INSTRUCTIONS"]

#: The first paragraph of the default prompt.
DEFAULT_INSTRUCTIONS = "Answer the question. You can use these tools:"


@dataclass(frozen=True)
class Step:
    """One step of a trace.

    Attributes:
        label: The step's label (``"Thought"``, ``"Observation"``, ...).
        content: The text after ``"Label: "`` (no newline).
        by: ``"model"`` or ``"environment"``.
    """

    label: str
    content: str
    by: str

    @property
    def text(self) -> str:
        r"""The step as written: ``"Label: content\n"``."""
        return f"{self.label}: {self.content}\n"


@dataclass
class _Particle:
    state: PotentialState | None  # the LM's one-row state after prompt + steps
    tokens: list[int] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    q: int = 0
    logw: float = 0.0
    status: str = "running"
    why: str = ""  # why a particle was truncated
    tool: str | None = None
    tool_input: str | None = None
    model_tokens: int = 0

    def fork(self) -> _Particle:
        out = copy.copy(self)
        out.tokens, out.steps = list(self.tokens), list(self.steps)
        return out


def _int_arg(value: Any, name: str, low: int = 1, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        more = ", or None" if none_ok else ""
        raise TypeError(f"`{name}` is {value!r}; pass an int >= {low}{more}.")
    if value < low:
        raise ValueError(f"`{name}` is {value}; pass an int >= {low}.")


class Agent:
    """A protocol with its tools and few-shot examples, checked once, run many times.

    Args:
        protocol: The step protocol (:data:`~potentia.agents.protocol.REACT`,
            :data:`~potentia.agents.protocol.PLAN_ACT` or your own
            :class:`~potentia.agents.protocol.Protocol`).
        tools: The tools (:class:`~potentia.agents.tools.Tool` objects, a list or a
            ``{name: Tool}`` mapping).
        examples: Few-shot examples, each a trace text or a ``(question, trace)`` pair.
            Every example must be a complete, valid trace of the protocol: each line a step
            with a known label, the labels in an order the formula allows, every model step
            in its step language (an ``Action`` names a registered tool, an ``Action Input``
            is valid for its tool's schema, written as ``json.dumps`` writes it with the
            properties in the schema's order). Observations are not compared with the tools.
        instructions: The prompt's first paragraph (tools and format follow).
        tool_timeout: Seconds a tool call may take before its Observation becomes a
            time-out error (``None``: no limit).
        max_observation_chars: Longest Observation kept (longer ones are cut).

    Raises:
        TypeError: for arguments of the wrong type.
        ValueError: for an invalid tool registry, or an example that breaks the protocol,
            naming the example, the offending step and why.
    """

    def __init__(
        self,
        protocol: Protocol,
        tools: Any = (),
        examples: Sequence[str | tuple[str, str]] = (),
        instructions: str = DEFAULT_INSTRUCTIONS,
        tool_timeout: float | None = 10.0,
        max_observation_chars: int = 400,
    ) -> None:
        if not isinstance(protocol, Protocol):
            raise TypeError(
                f"`spec` is {type(protocol).__name__}; pass a potentia.agents.Protocol such as "
                "potentia.agents.REACT or potentia.agents.PLAN_ACT."
            )
        self.protocol = protocol
        if protocol.tool_label is not None:
            self.tools = as_tools(tools)
        else:
            self.tools = as_tools(tools) if tools else {}
        if not isinstance(instructions, str):
            raise TypeError(f"`instructions` is {type(instructions).__name__}; pass a str.")
        self.instructions = instructions
        if tool_timeout is not None:
            validate_budgets(time_limit=tool_timeout)
        self.tool_timeout = tool_timeout
        _int_arg(max_observation_chars, "max_observation_chars", low=8)
        self.max_observation_chars = int(max_observation_chars)
        self._steps: dict[tuple, LLGConstraint] = {}
        self._lifted: dict[tuple, Any] = {}
        if isinstance(examples, str) or not isinstance(examples, Sequence):
            raise TypeError(
                f"`examples` is {type(examples).__name__}; pass a list of trace texts or "
                "(question, trace) pairs."
            )
        self.examples: list[tuple[str | None, str]] = []
        for i, ex in enumerate(examples):
            q, trace = (None, ex) if isinstance(ex, str) else self._pair(ex, i)
            self.validate(trace, where=f"`examples[{i}]`")
            self.examples.append((q, trace if trace.endswith("\n") else trace + "\n"))

    @staticmethod
    def _pair(ex: Any, i: int) -> tuple[str, str]:
        if not (
            isinstance(ex, tuple | list) and len(ex) == 2 and all(isinstance(x, str) for x in ex)
        ):
            raise TypeError(
                f"`examples[{i}]` is {ex!r:.60}; pass a trace text or a (question, trace) pair "
                "of strings."
            )
        return ex[0], ex[1]

    # ----- step languages -------------------------------------------------------------
    def step_language(self, q: int, tool: str | None) -> LLGConstraint:
        """The byte-level constraint of a model step at automaton state ``q``.

        Args:
            q: The automaton state (``protocol.start`` before the first step).
            tool: The tool named by the last tool step (``None`` if none yet).
        """
        p = self.protocol
        labels = [x for x in p.allowed(q) if x not in p.environment]
        may_end = bool(p.accepting[q]) and bool(labels)
        needs_tool = p.input_label in labels
        key = (tuple(labels), may_end, tool if needs_tool else None)
        if key not in self._steps:
            t = self.tools.get(tool) if needs_tool and tool is not None else None
            self._steps[key] = step_constraint(p, labels, may_end, self.tools, t)
        return self._steps[key]

    def _lift(self, c: LLGConstraint, vocab: Vocabulary) -> Any:
        key = (id(c), id(vocab))  # ids: hashing a 262k-token vocabulary costs O(V)
        if key not in self._lifted:
            self._lifted[key] = (c, vocab, c.lift(vocab))  # c and vocab kept alive
        return self._lifted[key][2]

    # ----- few-shot validation ----------------------------------------------------------
    def validate(self, trace: str, where: str = "trace") -> list[Step]:
        """The steps of ``trace`` if it is a complete valid trace; else a ``ValueError``.

        Args:
            trace: A trace text, one step per line.
            where: How to name the trace in errors.

        Raises:
            ValueError: naming the first offending step (its number, label and content)
                and why: an unknown label, a label the formula does not allow there (with
                the allowed ones), a tool that is not registered, an input that is not
                JSON, breaks the tool's schema or is not spelt as ``json.dumps`` writes it,
                or a trace that ends before the protocol is satisfied.
        """
        p = self.protocol
        steps = p.parse_trace(trace, where)
        q, prev, tool = p.start, "the start", None
        out = []
        for k, (lab, content) in enumerate(steps, start=1):
            r = p.check_step(q, lab, k, prev, where)
            by = "environment" if lab in p.environment else "model"
            if by == "model":
                c = self.step_language(q, tool)
                line = f"{lab}: {content}\n".encode()
                if c.complete(list(line)) != 0.0:
                    raise ValueError(
                        f"{where}, step {k} ({lab}: {content!r:.60}): "
                        f"{self._why(lab, content, tool)}."
                    )
                if lab == p.tool_label:
                    tool = content
            out.append(Step(lab, content, by))
            q, prev = r, repr(lab)
        p.check_end(q, len(steps), prev, where)
        return out

    def _why(self, label: str, content: str, tool: str | None) -> str:
        kind = self.protocol.content[label]
        if kind == "text":
            return "the content is empty; write one non-empty line after the label"
        if kind == "tool":
            return f"{content!r} is not a registered tool; the tools are {list(self.tools)}"
        t = self.tools.get(tool) if tool else None
        if t is None:
            return f"no registered tool was named before it (the last tool step named {tool!r})"
        try:
            value = json.loads(content)
        except ValueError as err:
            return f"the input for {t.name!r} is not JSON ({err})"
        errs = sorted(t.json.validator.iter_errors(value), key=lambda e: list(e.path))
        if errs:
            return f"the input breaks the schema of tool {t.name!r}: {errs[0].message}"
        if t.model is not None:
            try:
                t.model.model_validate_json(content)
            except Exception as err:  # noqa: BLE001 - pydantic's own validation errors
                first = str(err).splitlines()
                return f"the input fails the Pydantic model of {t.name!r}: {' '.join(first[:3])}"
        props = list((t.schema.get("properties") or {}) if isinstance(t.schema, dict) else {})
        if isinstance(value, dict):
            value = {
                **{k: value[k] for k in props if k in value},
                **{k: v for k, v in value.items() if k not in props},
            }
        canon = json.dumps(value, ensure_ascii=False)
        return f"write the input as json.dumps writes it, properties in the schema's order: {canon}"

    # ----- the prompt ------------------------------------------------------------------
    def prompt(self, question: str) -> str:
        """The prompt text: instructions, tools, the protocol's guide, examples, question."""
        if not isinstance(question, str):
            raise TypeError(f"`question` is {type(question).__name__}; pass the question as a str.")
        head = self.instructions
        for t in self.tools.values():
            head += f"\n- {t.name}: {t.description} Input: {t.schema_text()}".replace("  ", " ")
        parts = [head]
        if self.protocol.guide:
            parts.append(self.protocol.guide.replace("{tools}", ", ".join(self.tools)))
        for q, trace in self.examples:
            parts.append((f"Question: {q}\n" if q is not None else "") + trace.rstrip("\n"))
        return "\n\n".join(parts) + f"\n\nQuestion: {question}\n"

    # ----- the run -----------------------------------------------------------------------
    def run(
        self,
        model: Any,
        question: str | None = None,
        *,
        prompt: str | Sequence[int] | None = None,
        particles: int = 4,
        seed: int | np.random.Generator | None = 0,
        sampler: str = "auto",
        max_steps: int = 12,
        max_step_tokens: int = 48,
        max_tokens: int | None = None,
        time_limit: float | None = None,
        ess_threshold: float = 0.5,
        resampling: str = "multinomial",
        draw: Draw | None = None,
    ) -> Result:
        """Run the agent loop with SMC over steps (see the module docstring for the target).

        Args:
            model: A model with ``.potential(prompt)`` (``potentia.LM``, a toy LM).
            question: The question; the prompt is :meth:`prompt` of it.
            prompt: Instead of ``question``: the whole prompt as given (text, or token
                indices for a toy model); the trace starts right after it.
            particles: Number of particles N.
            seed: Seed or ``numpy.random.Generator``.
            sampler: Token sampler: ``"auto"`` (AWRS), ``"direct"``, ``"awrs"`` or any
                registered name (:func:`potentia.register_sampler`).
            max_steps: Most steps in a trace (model and environment steps together).
            max_step_tokens: Most tokens in one model step.
            max_tokens: Most tokens in a trace (``None``: what the context window leaves).
            time_limit: Wall-clock budget in seconds (``None``: none).
            ess_threshold: Resample after a round when ESS < ``ess_threshold · N``.
            resampling: ``"multinomial"``, ``"stratified"``, ``"systematic"`` or ``"residual"``.
            draw: For exact-enumeration tests: every token choice goes through
                ``draw(probs) -> index`` instead of ``seed``.

        Returns:
            A :class:`~potentia.result.Result`: ``texts`` are the traces (the steps after
            the prompt), ``posterior`` their weights; ``extra`` holds ``"prompt"``,
            ``"steps"`` (per particle, a list of :class:`Step`), ``"answers"`` (the content
            of each particle's answer step, or ``None``), ``"answer_posterior"``,
            ``"tool_calls"`` and ``"stopped_by"``.

        Raises:
            TypeError, ValueError: for bad arguments, before any LM call.
        """
        _int_arg(particles, "particles")
        _int_arg(max_steps, "max_steps")
        _int_arg(max_step_tokens, "max_step_tokens")
        _int_arg(max_tokens, "max_tokens", none_ok=True)
        validate_budgets(time_limit=time_limit)
        if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, int | float):
            raise TypeError(f"`ess_threshold` is {ess_threshold!r}; pass a number in [0, 1].")
        if not 0.0 <= float(ess_threshold) <= 1.0:
            raise ValueError(f"`ess_threshold` is {ess_threshold}; it must lie in [0, 1].")
        scheme = get_scheme(resampling)
        if sampler != "auto" and sampler not in SAMPLERS:
            raise ValueError(
                f"`sampler` is {sampler!r}; choose 'auto' or one of {sorted(SAMPLERS)}."
            )
        if sampler == "auto":
            sampler = "awrs" if "awrs" in SAMPLERS else "direct"
        if seed is not None and not isinstance(seed, int | np.integer | np.random.Generator):
            raise TypeError(f"`seed` is {seed!r}; pass an int or a numpy.random.Generator.")
        if (question is None) == (prompt is None):
            raise ValueError(
                "pass exactly one of `question` (the agent builds the prompt) and `prompt` "
                "(the whole prompt, as given)."
            )
        if not hasattr(model, "potential"):
            raise TypeError(
                f"`model` is {type(model).__name__}; pass a model such as potentia.LM.default() "
                "or a ToyLM."
            )
        text = self.prompt(question) if question is not None else prompt
        lm = model.potential(text)  # tokenizes; the first forward waits for the first step
        n_prompt = len(getattr(lm, "prompt_ids", ()))
        window = getattr(model, "context_window", None)
        room = None
        if isinstance(window, int) and window > 0:
            room = window - n_prompt
            if room < max_step_tokens:
                raise ValueError(
                    f"`prompt` has {n_prompt} tokens and the model's context window holds "
                    f"{window}, which leaves {max(room, 0)} tokens, fewer than one step of "
                    f"`max_step_tokens`={max_step_tokens}; shorten the prompt (fewer examples) "
                    "or lower `max_step_tokens`."
                )
        if max_tokens is not None:
            room = max_tokens if room is None else min(room, max_tokens)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return _Run(self, model, lm, text, sampler, rng, draw, room, scheme).go(
            int(particles), int(max_steps), int(max_step_tokens), time_limit, float(ess_threshold)
        )


class _Run:
    """One run of the loop (the mutable part)."""

    def __init__(self, agent, model, lm, prompt, sampler, rng, draw, room, scheme) -> None:
        self.agent, self.model, self.lm, self.prompt = agent, model, lm, prompt
        self.sampler_name, self.rng, self.draw, self.room = sampler, rng, draw, room
        self.scheme = scheme
        self.vocab: Vocabulary = lm.vocab
        self.samplers: dict[int, tuple[Any, Any]] = {}
        self.target_evals = self.constraint_checks = self.tool_calls = 0

    def _unit_sampler(self, c: LLGConstraint) -> tuple[UnitSampler, Any]:
        key = id(c)
        if key not in self.samplers:
            lifted = self.agent._lift(c, self.vocab)
            ts = SAMPLERS[self.sampler_name](self.lm, lifted)
            parts = getattr(ts.target, "parts", None)
            if parts is None or len(parts) != 2 or parts[0] is not self.lm:
                raise ValueError(
                    f"`sampler` {self.sampler_name!r} does not sample LM × constraint as a "
                    "two-factor product; use 'direct' or 'awrs'."
                )
            self.samplers[key] = (UnitSampler(ts, "\n"), lifted)
        return self.samplers[key]

    def _encode(self, text: str) -> list[int]:
        enc = getattr(self.model, "encode", None)
        if enc is not None:
            try:
                return [int(t) for t in enc(text)]
            except ValueError:
                pass
        try:
            return self.vocab.greedy_encode(text.encode("utf-8"))
        except ValueError:
            raise ValueError(
                f"the tool output {text!r:.60} has bytes that no token of the model's "
                "vocabulary spells; make the tool return text the model can read."
            ) from None

    def _env_step(self, p: _Particle, label: str) -> None:
        a = self.agent
        if p.tool not in a.tools or p.tool_input is None:
            p.status, p.logw = f"dead: {label} before a tool call was written", -np.inf
            return
        t: Tool = a.tools[p.tool]
        self.tool_calls += 1
        obs = call_tool(t, p.tool_input, a.tool_timeout, a.max_observation_chars)
        step = Step(label, obs, "environment")
        toks = self._encode(step.text)
        if self.room is not None and len(p.tokens) + len(toks) > self.room:
            p.status, p.why = "truncated", "the tool output does not fit `max_tokens`/the context"
            return
        st = p.state
        for tok in toks:
            st = st.advance(np.array([tok], dtype=np.int64))
        p.state, p.tokens = st, p.tokens + toks
        p.steps.append(step)
        p.q = self.agent.protocol.step(p.q, label)

    def _model_steps(self, group: list[_Particle], max_step_tokens: int) -> None:
        """One model step for particles that share one history (one batched unit draw).

        Copies made by resampling (and all particles at the start) hold the same LM state;
        they draw their steps as rows of one batch, whose equal contexts share forward rows.
        """
        p0, k = group[0], len(group)
        c = self.agent.step_language(p0.q, p0.tool)
        us, lifted = self._unit_sampler(c)
        limit = max_step_tokens
        if self.room is not None:
            limit = min(limit, self.room - len(p0.tokens))
        if limit <= 0:
            for p in group:
                p.status, p.why = "truncated", "`max_tokens` (or the context window) is full"
            return
        lm_rows = p0.state if k == 1 else p0.state.select(np.zeros(k, dtype=np.int64))
        state = ProductState(us.target, [lm_rows, lifted.init_state(k)])
        out = us.sample(state, self.rng, self.draw, max_len=limit)
        self.target_evals += out.target_evals
        self.constraint_checks += out.constraint_checks
        for r, p in enumerate(group):
            self._finish_step(p, out.status[r], float(out.log_w[r]), out.units[r], lifted)
            if p.status == "truncated" and not p.why:
                p.why = (
                    f"a step passed `max_step_tokens`={max_step_tokens}"
                    if limit == max_step_tokens
                    else "`max_tokens` (or the context window) ran out in a step"
                )

    def _finish_step(self, p: _Particle, status: str, lw: float, unit: list, lifted) -> None:
        """Apply one drawn unit to particle ``p`` (weight, state, trace, automaton)."""
        proto = self.agent.protocol
        p.model_tokens += len(unit) + (1 if status == "eos" else 0)
        if status == "dead":
            allowed = [x for x in proto.allowed(p.q) if x not in proto.environment]
            p.status = f"dead: no allowed next token in a step ({'|'.join(allowed)})"
            p.logw = -np.inf
            return
        p.logw += lw
        if status in ("length", "budget"):
            p.status = "truncated"
            return
        if status == "eos":
            p.status = "finished"
            return
        end = lifted.complete(unit)  # the exact completion test (full tool schema)
        if end == -np.inf:
            p.status, p.logw = "dead: the step failed its exact check (the tool's schema)", -np.inf
            return
        p.logw += end
        line = self.vocab.decode_bytes(unit)
        label, content = proto.split_step(line[:-1].decode("utf-8", errors="replace"))
        st = p.state
        for tok in unit:
            st = st.advance(np.array([tok], dtype=np.int64))
        p.state, p.tokens = st, p.tokens + list(unit)
        p.steps.append(Step(label, content, "model"))
        p.q = proto.step(p.q, label)
        if label == proto.tool_label:
            p.tool = content
        elif label == proto.input_label:
            p.tool_input = content

    def _stop(self, ps: list[_Particle], max_steps: int) -> None:
        """At ``max_steps``: end by EOS where the protocol accepts, else truncate."""
        V = len(self.vocab)
        for p in ps:
            if p.status != "running":
                continue
            if self.agent.protocol.accepting[p.q]:
                eos = float(p.state.logw_tokens(np.array([0]), np.array([V]))[0])
                p.logw += eos
                p.status = "finished" if eos > -np.inf else "dead: EOS has weight zero"
            else:
                p.status, p.why = "truncated", f"`max_steps`={max_steps} reached"

    def go(
        self,
        n: int,
        max_steps: int,
        max_step_tokens: int,
        time_limit: float | None,
        ess_threshold: float,
    ) -> Result:
        proto = self.agent.protocol
        t0 = time.perf_counter()
        root = self.lm.init_state(1)
        ps = [_Particle(root, q=proto.start) for _ in range(n)]
        for p in ps:
            if proto.done(p.q):
                p.status = "finished"
        log_z_acc, ess_history, resampled_at = 0.0, [], []
        stopped_by, rounds = None, 0
        try:
            while any(p.status == "running" for p in ps):
                if rounds >= max_steps:
                    self._stop(ps, max_steps)
                    break
                # one step per running particle: tool steps, then model steps grouped by
                # shared history (one batched draw per group)
                groups: dict[int, list[_Particle]] = {}
                for p in ps:
                    if p.status != "running":
                        continue
                    env = proto.env_turn(p.q)
                    if env is not None:
                        self._env_step(p, env)
                    else:
                        groups.setdefault(id(p.state), []).append(p)
                for group in groups.values():
                    if time_limit is not None and time.perf_counter() - t0 >= time_limit:
                        stopped_by = (
                            f"`time_limit`={time_limit:g} s ran out after {rounds} rounds "
                            "(raise `time_limit`)"
                        )
                        break
                    self._model_steps(group, max_step_tokens)
                for p in ps:
                    if p.status == "running" and proto.done(p.q):
                        p.status = "finished"
                if stopped_by:
                    break
                rounds += 1
                lw = np.array([p.logw for p in ps])
                ess = _ess(lw)
                ess_history.append(ess)
                running = any(p.status == "running" for p in ps)
                if running and 0 < ess < ess_threshold * n:
                    tot = logsumexp(lw)
                    idx = self.scheme(self.rng, np.exp(lw - tot), n)
                    log_z_acc += tot - np.log(n)
                    ps = [ps[i].fork() for i in idx]
                    for p in ps:
                        p.logw = 0.0
                    resampled_at.append(rounds)
        except KeyboardInterrupt:
            stopped_by = f"interrupted (KeyboardInterrupt) after {rounds} rounds"
        for p in ps:
            if p.status == "running":
                p.status, p.why = "truncated", stopped_by or "the run ended"
        return self._result(ps, log_z_acc, ess_history, resampled_at, rounds, t0, stopped_by)

    def _result(self, ps, log_z_acc, ess_history, resampled_at, rounds, t0, stopped_by) -> Result:
        n = len(ps)
        lw = np.array([p.logw for p in ps], dtype=float)
        fin = np.array([p.status == "finished" for p in ps])
        tot = logsumexp(np.where(fin, lw, -np.inf))
        log_z = float(log_z_acc + tot - np.log(n)) if tot > -np.inf else -np.inf
        proto = self.agent.protocol
        ans = [
            next((s.content for s in reversed(p.steps) if s.label == proto.answer), None)
            if p.status == "finished"
            else None
            for p in ps
        ]
        res = Result(
            contexts=[p.tokens for p in ps],
            texts=[self.vocab.decode(p.tokens) for p in ps],
            log_weights=lw,
            log_z=log_z,
            status=[p.status for p in ps],
            ess_history=ess_history,
            resampled_at=resampled_at,
            n_steps=rounds,
            target_evals=self.target_evals,
            constraint_checks=self.constraint_checks,
            wall_time=time.perf_counter() - t0,
            method=f"agent[{proto.name}, {self.sampler_name}]",
            message=_message(ps, rounds, log_z, stopped_by),
            extra={
                "prompt": self.prompt,
                "steps": [p.steps for p in ps],
                "answers": ans,
                "truncated_by": [p.why for p in ps],
                "tool_calls": self.tool_calls,
                "model_tokens": sum(p.model_tokens for p in ps),
            },
        )
        res.extra["answer_posterior"] = answers(res)
        if stopped_by:
            res.extra["stopped_by"] = stopped_by
        return res


def _ess(lw: np.ndarray) -> float:
    tot = logsumexp(lw)
    if tot == -np.inf:
        return 0.0
    w = np.exp(lw - tot)
    return float(1.0 / (w**2).sum())


_FIXES = {
    "no allowed next token": (
        "the model gave zero probability to every allowed token; check that the tool names "
        "and schemas can be spelt with this tokenizer"
    ),
    "exact check": "the finished Action Input broke the tool's schema (a late keyword)",
    "max_steps": "raise `max_steps`, or add examples that reach the answer sooner",
    "max_step_tokens": "raise `max_step_tokens`, or show shorter steps in the examples",
    "max_tokens": "raise `max_tokens` or shorten the prompt",
    "time_limit": "raise `time_limit`",
    "tool output": "make the tool output shorter or raise `max_tokens`",
}


def _message(ps: list[_Particle], rounds: int, log_z: float, stopped_by: str | None) -> str:
    causes = Counter(p.why if p.status == "truncated" else p.status for p in ps)
    n = len(ps)
    if log_z == -np.inf:
        parts = []
        for cause, k in causes.most_common(3):
            fix = next((f for key, f in _FIXES.items() if key in cause), "see `Result.status`")
            parts.append(f"{k} of {n} particles: {cause} ({fix})")
        msg = (
            f"no particle finished after {rounds} rounds: "
            + "; ".join(parts)
            + ". Their traces are in `Result.unfinished`."
        )
    else:
        fin = causes.pop("finished", 0)
        rest = ", ".join(f"{k} {c}" for c, k in causes.most_common())
        msg = f"ran {rounds} rounds: {fin} finished" + (f", {rest}" if rest else "")
    return f"stopped early: {stopped_by}; {msg}" if stopped_by else msg


def answers(result: Result) -> dict[str, float]:
    """The posterior over the answers of an agent run: weights summed per answer text.

    Args:
        result: A :class:`~potentia.result.Result` of :func:`agent` or :meth:`Agent.run`.
    """
    got = result.extra.get("answers")
    if got is None:
        raise ValueError("`result` is not an agent run (no extra['answers']).")
    acc: dict[str, float] = {}
    for a, w in zip(got, result.weights):
        if a is not None and w > 0:
            acc[a] = acc.get(a, 0.0) + float(w)
    tot = sum(acc.values())
    return (
        dict(sorted(((k, v / tot) for k, v in acc.items()), key=lambda kv: -kv[1])) if tot else {}
    )


def agent(
    spec: Protocol,
    model: Any,
    question: str | None = None,
    *,
    tools: Any = (),
    examples: Sequence[str | tuple[str, str]] = (),
    instructions: str = DEFAULT_INSTRUCTIONS,
    tool_timeout: float | None = 10.0,
    max_observation_chars: int = 400,
    **run: Any,
) -> Result:
    """Run an LM as an agent of protocol ``spec`` with ``tools``: properly weighted traces.

    ``pt.agent(spec, model, question, tools=...)`` is
    ``Agent(spec, tools, examples, ...).run(model, question, ...)``; build an
    :class:`Agent` once to run it on many questions. The module docstring states the target
    (LM × the protocol's constraints over the model-written steps, with tool outputs as
    fixed context) and how the weights stay proper.

    Args:
        spec: The protocol (``potentia.agents.REACT``, ``potentia.agents.PLAN_ACT``, ...).
        model: A model with ``.potential(prompt)``.
        question: The question (or pass ``prompt=`` through ``**run``).
        tools: The tools (:class:`~potentia.agents.tools.Tool` objects).
        examples: Few-shot traces, validated against ``spec`` (see :class:`Agent`).
        instructions: The prompt's first paragraph.
        tool_timeout: Seconds a tool may run before its Observation is a time-out error.
        max_observation_chars: Longest Observation kept (longer ones are cut).
        **run: Arguments of :meth:`Agent.run` (``particles``, ``seed``, ``max_steps``,
            ``max_step_tokens``, ``max_tokens``, ``time_limit``, ``sampler``, ...).

    Returns:
        The run's :class:`~potentia.result.Result` (see :meth:`Agent.run`).
    """
    a = Agent(
        spec,
        tools,
        examples,
        instructions=instructions,
        tool_timeout=tool_timeout,
        max_observation_chars=max_observation_chars,
    )
    return a.run(model, question, **run)
