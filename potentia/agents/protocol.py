r"""Agent protocols: which step labels may follow which, and who writes each step.

A *step* is one line ``"<Label>: <content>\n"`` (Crouse et al. 2023, "Formally
Specifying the High-Level Behavior of LLM-Based Agents"). A protocol names its labels,
says which of them the *environment* writes (``Observation``: the output of the tool
call just made), what the content of every model-written label is (free text, the name
of a registered tool, or the JSON input of the tool named last), and constrains the
sequence of labels with an LTLf formula (:func:`potentia.ltl`; each step carries exactly
one label). The formula compiles to a minimal DFA whose dead states are removed, so a
prefix of labels is allowed iff it can still be completed to an accepted trace.

Who writes the next step is read off the automaton: at a state whose only allowed next
label is an environment label, the environment writes it; at every other state the model
writes one of the allowed model labels (or ends the trace, if the state accepts). A
protocol whose automaton has a state that allows both an environment label and anything
else (another label, or ending) is refused when it is built, with a trace that reaches
that state.

:data:`REACT` (Thought, Action, Action Input, Observation, ..., Final Answer) and
:data:`PLAN_ACT` (one Plan, then Action, Action Input, Observation rounds, then Final
Answer) ship as specs; :meth:`Protocol.parse_trace` and :meth:`Protocol.check_labels`
validate few-shot examples (content checks live with the tools, in
:class:`potentia.agents.agent.Agent`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from potentia.constraints.ltl import ltl

__all__ = ["Protocol", "REACT", "PLAN_ACT", "KINDS"]

#: Content kinds of model-written steps: free text (one non-empty line), the name of a
#: registered tool, or the JSON input of the tool named by the last ``"tool"`` step.
KINDS = ("text", "tool", "input")


class Protocol:
    """A step protocol: labels, who writes them, and an LTLf formula over their order.

    Args:
        name: A short name for messages (``"ReAct"``).
        labels: The step labels (unique, non-empty, no ``":"`` or newline).
        formula: An LTLf formula over the labels (:func:`potentia.ltl` syntax; quote labels
            with spaces: ``"Action Input"``).
        content: For every model-written label, its content kind: ``"text"``, ``"tool"``
            or ``"input"`` (see :data:`KINDS`).
        environment: The labels the environment writes (the tool's output).
        answer: The label whose content is the run's answer (``None``: none).
        guide: Text put in the prompt to show the model the format; ``{tools}`` is
            replaced by the comma-separated tool names.

    Raises:
        ValueError: on bad labels, a formula over unknown labels, an empty language, a
            content kind for an environment label (or a model label without one), an
            ``"input"`` label without a ``"tool"`` label, an environment label without
            both, or a state where the environment and the model could both write next.
    """

    def __init__(
        self,
        name: str,
        labels: Sequence[str],
        formula: str,
        content: Mapping[str, str],
        environment: Sequence[str] = (),
        answer: str | None = None,
        guide: str = "",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` is {name!r}; give the protocol a non-empty name.")
        if isinstance(labels, str) or not isinstance(labels, Sequence):
            raise TypeError(f"`labels` is {labels!r}; pass a list of label strings.")
        for lab in labels:
            if not isinstance(lab, str) or not lab.strip() or ":" in lab or "\n" in lab:
                raise ValueError(
                    f"`labels` holds {lab!r}; a label is a non-empty string without ':' or "
                    "a newline (steps are written 'Label: content')."
                )
        self.name = name
        self.labels = tuple(labels)
        self.environment = tuple(environment)
        for lab in self.environment:
            if lab not in self.labels:
                raise ValueError(f"`environment` names {lab!r}, which is not in `labels`.")
        self.content = dict(content)
        model_labels = [x for x in self.labels if x not in self.environment]
        for lab, kind in self.content.items():
            if lab not in model_labels:
                what = "an environment label" if lab in self.environment else "not in `labels`"
                raise ValueError(
                    f"`content` gives {lab!r} a kind, but it is {what}; only labels the "
                    "model writes have a content kind."
                )
            if kind not in KINDS:
                raise ValueError(f"`content[{lab!r}]` is {kind!r}; choose one of {KINDS}.")
        missing = [x for x in model_labels if x not in self.content]
        if missing:
            raise ValueError(f"`content` has no kind for the model labels {missing}; add them.")
        by_kind = {k: [x for x, v in self.content.items() if v == k] for k in KINDS}
        if len(by_kind["tool"]) > 1 or len(by_kind["input"]) > 1:
            raise ValueError(
                "`content`: at most one label may name the tool and one give its input; got "
                f"tool labels {by_kind['tool']} and input labels {by_kind['input']}."
            )
        self.tool_label = by_kind["tool"][0] if by_kind["tool"] else None
        self.input_label = by_kind["input"][0] if by_kind["input"] else None
        if self.input_label and not self.tool_label:
            raise ValueError(
                f"`content` has an input label {self.input_label!r} but no 'tool' label to "
                "name the tool whose input it is."
            )
        if self.environment and not (self.tool_label and self.input_label):
            raise ValueError(
                f"the environment writes {list(self.environment)} (tool outputs), so the "
                "protocol needs a 'tool' label and an 'input' label in `content`."
            )
        if answer is not None and answer not in model_labels:
            raise ValueError(
                f"`answer` is {answer!r}; name one of the model labels {model_labels}."
            )
        self.answer = answer
        self.guide = guide
        self.formula = formula
        self.automaton = ltl(formula, labels=list(self.labels))
        self.delta = self.automaton.delta
        self.accepting = self.automaton.accepting
        self.start = self.automaton.state_of([])
        if self.start < 0:
            raise ValueError(f"`formula` {formula!r} accepts no trace; check the formula.")
        self._env = np.array([x in self.environment for x in self.labels])
        self._check_turns()

    # ----- the automaton ------------------------------------------------------------
    def allowed(self, q: int) -> list[str]:
        """The labels allowed after automaton state ``q``, in label order."""
        return [self.labels[a] for a in np.flatnonzero(self.delta[q] >= 0)]

    def env_turn(self, q: int) -> str | None:
        """The environment label that must come next at state ``q``, or ``None``."""
        nxt = np.flatnonzero(self.delta[q] >= 0)
        if len(nxt) == 1 and self._env[nxt[0]] and not self.accepting[q]:
            return self.labels[nxt[0]]
        return None

    def done(self, q: int) -> bool:
        """Whether the trace must end at state ``q`` (it accepts and nothing may follow)."""
        return bool(self.accepting[q]) and not (self.delta[q] >= 0).any()

    def step(self, q: int, label: str) -> int:
        """The state after a step labelled ``label`` (``-1``: not allowed)."""
        return int(self.delta[q, self.labels.index(label)])

    def _check_turns(self) -> None:
        """Refuse a state where the environment and something else could both come next."""
        seen, queue = {self.start: []}, deque([self.start])
        while queue:
            q = queue.popleft()
            nxt = np.flatnonzero(self.delta[q] >= 0)
            env = [a for a in nxt if self._env[a]]
            if env and (len(nxt) > 1 or self.accepting[q]):
                path = " → ".join(seen[q]) or "(the start)"
                other = [self.labels[a] for a in nxt if a not in env]
                also = f"the model labels {other}" if other else "ending the trace"
                raise ValueError(
                    f"`formula`: after {path} the protocol {self.name!r} allows the environment "
                    f"label {self.labels[env[0]]!r} and also {also}; the environment must be the "
                    'only possible next step where it writes (e.g. G("Action Input" -> X '
                    "Observation))."
                )
            for a in nxt:
                r = int(self.delta[q, a])
                if r not in seen:
                    seen[r] = [*seen[q], self.labels[a]]
                    queue.append(r)

    # ----- traces -------------------------------------------------------------------
    def split_step(self, line: str) -> tuple[str, str] | None:
        """``(label, content)`` of one step line (no newline), or ``None`` if no label fits."""
        best = None
        for lab in self.labels:
            if line.startswith(lab + ": ") and (best is None or len(lab) > len(best)):
                best = lab
        if best is None:
            return None
        return best, line[len(best) + 2 :]

    def parse_trace(self, text: str, where: str = "trace") -> list[tuple[str, str]]:
        """The steps of a trace text, one ``"Label: content"`` per line.

        Args:
            text: The trace (a final newline is optional).
            where: How to name the trace in errors (e.g. ``"`examples[0]`"``).

        Raises:
            ValueError: naming the line that is not a step of this protocol.
        """
        if not isinstance(text, str):
            raise TypeError(f"{where} is {type(text).__name__}; pass the trace as a str.")
        body = text[:-1] if text.endswith("\n") else text
        if not body:
            raise ValueError(f"{where} is empty; write its steps, one 'Label: content' a line.")
        steps = []
        for k, line in enumerate(body.split("\n")):
            parsed = self.split_step(line)
            if parsed is None:
                raise ValueError(
                    f"{where}, line {k + 1} ({line!r:.60}) is not a step of {self.name}: a step "
                    f"is 'Label: content' on one line with a label from {list(self.labels)}."
                )
            steps.append(parsed)
        return steps

    def check_step(self, q: int, label: str, k: int, prev: str, where: str = "trace") -> int:
        """The state after step ``k`` (1-based) labelled ``label`` at state ``q``.

        Raises:
            ValueError: if the protocol does not allow ``label`` at ``q``, naming the step,
                the label before it (``prev``) and the labels allowed there.
        """
        r = self.step(q, label)
        if r < 0:
            ok = self.allowed(q) or ["nothing (the trace must end)"]
            raise ValueError(
                f"{where}, step {k} ({label}): {self.name} does not allow {label!r} after "
                f"{prev}; allowed there: {ok}."
            )
        return r

    def check_end(self, q: int, n: int, prev: str, where: str = "trace") -> None:
        """Raise unless a trace of ``n`` steps may end at state ``q``."""
        if not self.accepting[q]:
            raise ValueError(
                f"{where} ends after step {n} ({prev}) but {self.name} is not satisfied "
                f"yet; it needs one of {self.allowed(q)} next."
            )

    def check_labels(self, labels: Sequence[str], where: str = "trace") -> None:
        """Raise unless the label sequence is a complete trace of the protocol.

        Raises:
            ValueError: naming the first step the protocol does not allow there and the
                labels it allows, or saying what the trace still needs at its end.
        """
        q, prev = self.start, "the start"
        for k, lab in enumerate(labels):
            q, prev = self.check_step(q, lab, k + 1, prev, where), repr(lab)
        self.check_end(q, len(labels), prev, where)

    def __repr__(self) -> str:
        return f"Protocol({self.name!r}, labels={list(self.labels)})"


#: ReAct (Yao et al. 2023) as specified by Crouse et al. 2023: a Thought starts the trace;
#: a Thought is followed by an Action or the Final Answer; an Action by its Action Input;
#: the Action Input by the environment's Observation; an Observation by a Thought; the
#: Final Answer ends the trace, and there must be one.
REACT = Protocol(
    "ReAct",
    labels=["Thought", "Action", "Action Input", "Observation", "Final Answer"],
    formula=(
        'Thought & G(Thought -> X (Action | "Final Answer")) & G(Action -> X "Action Input")'
        ' & G("Action Input" -> X Observation) & G(Observation -> X Thought)'
        ' & G("Final Answer" -> WX false) & F "Final Answer"'
    ),
    content={
        "Thought": "text",
        "Action": "tool",
        "Action Input": "input",
        "Final Answer": "text",
    },
    environment=["Observation"],
    answer="Final Answer",
    guide=(
        "Use this format, one step per line:\n"
        "Thought: your reasoning\n"
        "Action: the tool to use, one of [{tools}]\n"
        "Action Input: the tool's input as JSON\n"
        "Observation: the tool's answer\n"
        "(Thought, Action, Action Input and Observation may repeat)\n"
        "Thought: I know the answer\n"
        "Final Answer: the answer"
    ),
)

#: Plan-then-act: one Plan first, then rounds of Action, Action Input and the
#: environment's Observation, then the Final Answer, which ends the trace.
PLAN_ACT = Protocol(
    "PlanAct",
    labels=["Plan", "Action", "Action Input", "Observation", "Final Answer"],
    formula=(
        'Plan & X G !Plan & G(Plan -> X (Action | "Final Answer"))'
        ' & G(Action -> X "Action Input") & G("Action Input" -> X Observation)'
        ' & G(Observation -> X (Action | "Final Answer"))'
        ' & G("Final Answer" -> WX false) & F "Final Answer"'
    ),
    content={"Plan": "text", "Action": "tool", "Action Input": "input", "Final Answer": "text"},
    environment=["Observation"],
    answer="Final Answer",
    guide=(
        "Use this format, one step per line:\n"
        "Plan: how you will answer, in one line\n"
        "Action: the tool to use, one of [{tools}]\n"
        "Action Input: the tool's input as JSON\n"
        "Observation: the tool's answer\n"
        "(Action, Action Input and Observation may repeat)\n"
        "Final Answer: the answer"
    ),
)
