r"""The language of one model-written step, as one llguidance grammar.

At an automaton state the model may write any allowed model label, each followed by its
content and a newline (and, where the state accepts and more may follow, nothing at all:
the model may end the trace with EOS). The step language is the union of

* ``"Label: " TEXT "\n"`` for a ``"text"`` label (``TEXT``: one non-empty line),
* ``"Label: " ("name1" | "name2" | ...) "\n"`` for the ``"tool"`` label (the registered tools),
* ``"Label: " JSON "\n"`` for the ``"input"`` label, JSON being the input schema of the tool
  the last ``"tool"`` step named, written as ``json.dumps`` writes it (``", "`` and
  ``": "`` separators, no other whitespace, properties in the schema's order).

It compiles to one Lark grammar for llguidance (native token masks on any vocabulary).
The JSON part uses the tool's relaxed schema (what the engine enforces soundly while the
text is written); at the end of the step the finished input is checked against the *full*
schema (``potentia.json``'s exact ``complete``), so the step's complete language is exact
and its prefix language a superset (the sampler's weights handle the difference).

Every step string has exactly one newline, at its end, so a step is a unit ending at
``"\n"`` (:class:`potentia.samplers.units.UnitSampler` with delimiter ``"\n"``).
"""

from __future__ import annotations

import json

from potentia.agents.protocol import Protocol
from potentia.agents.tools import Tool
from potentia.constraints.llg import LLGConstraint

__all__ = ["step_constraint", "JSON_STYLE"]

#: llguidance options of the JSON inside a step: json.dumps's default spelling.
JSON_STYLE = {
    "json_allow_general_unicode_escapes": True,
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def step_constraint(
    protocol: Protocol,
    labels: list[str],
    may_end: bool,
    tools: dict[str, Tool],
    tool: Tool | None,
) -> LLGConstraint:
    """The byte-level hard constraint of one model step.

    Args:
        protocol: The protocol (content kinds of the labels).
        labels: The model labels allowed here.
        may_end: Whether the empty step (ending the trace with EOS) is allowed.
        tools: The registry (names allowed after the ``"tool"`` label).
        tool: The tool named by the last ``"tool"`` step (needed for an ``"input"`` label).

    Raises:
        ValueError: if an ``"input"`` label is allowed but no tool was named before it.
    """
    alts, rules = [], []
    for k, lab in enumerate(labels):
        kind = protocol.content[lab]
        if kind == "text":
            body = r"/[^\n]+/"
        elif kind == "tool":
            body = "(" + " | ".join(_lit(n) for n in tools) + ")"
        else:
            if tool is None:
                raise ValueError(
                    f"{protocol.name}: an {lab!r} step is allowed before any "
                    f"{protocol.tool_label!r} step named a tool; fix the protocol's formula."
                )
            relaxed = tool.json.relaxed
            schema = {} if relaxed is True else dict(relaxed)
            body = "%json " + json.dumps({**schema, "x-guidance": JSON_STYLE})
        rules.append(f"s{k}: {_lit(lab + ': ')} {body} {_lit(chr(10))}")
        alts.append(f"s{k}")
    if may_end:
        alts.append('""')
    lark = "start: " + " | ".join(alts) + "\n" + "\n".join(rules) + "\n"

    def check(data: bytes) -> bool:
        """Exact test of a finished step: the full input schema for an input step."""
        if not data:
            return True
        text = data.decode("utf-8", errors="replace")[:-1]
        parsed = protocol.split_step(text)
        if parsed is None:
            return False
        lab, content = parsed
        if protocol.content.get(lab) == "input":
            return tool is not None and tool.json.complete(list(content.encode("utf-8"))) == 0.0
        return True

    shown = "|".join(labels) + ("|end" if may_end else "")
    return LLGConstraint(lark, check=check, name=f"{protocol.name} step [{shown}]")
