"""Tools: Python callables with a JSON Schema for their input, and how they are called.

A :class:`Tool` has a name (what the model writes after ``Action:``), a callable, and a
JSON Schema for its input (a dict schema or a Pydantic model). The model's ``Action Input``
is constrained to that schema while it is written (``potentia.json`` with
``property_order="schema"``: properties in the schema's order, ``required`` enforced as it
is written) and checked exactly when the step ends, so a tool is only ever called with a
valid input.

**Errors never crash the run.** :func:`call_tool` turns whatever the callable raises into
the observation text ``"Error: <ExceptionType>: <message>"``, and a call that takes longer
than its timeout into ``"Error: the tool timed out after <t> s"`` (the call keeps running in
a daemon thread, whose result is dropped). The model reads the error as the Observation,
like any other tool output. The output is made one line (newlines become spaces) and cut
to ``max_chars`` characters (``" ..."`` marks a cut).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from potentia.constraints.json_schema import JSONSchema

__all__ = ["Tool", "tool", "as_tools", "call_tool"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


class Tool:
    """A callable the agent may use, with a JSON Schema for its input.

    Args:
        name: What the model writes after ``Action:`` (letters, digits, ``_ . -``; starts
            with a letter or ``_``).
        fn: The callable. It receives one argument: the parsed JSON input (a ``dict`` for
            an object schema), or the validated instance when ``schema`` is a Pydantic
            model. Its return value becomes the Observation (``str(value)``).
        schema: A JSON Schema (dict) or a Pydantic model class for the input.
        description: One line shown to the model in the prompt.

    Raises:
        TypeError: if ``fn`` is not callable.
        ValueError: on a bad name or an invalid schema.
    """

    def __init__(
        self, name: str, fn: Callable[[Any], Any], schema: Any, description: str = ""
    ) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"`name` is {name!r}; a tool name is letters, digits, '_', '.' or '-', "
                "starting with a letter or '_' (the model writes it after 'Action:')."
            )
        if not callable(fn):
            raise TypeError(f"`fn` of tool {name!r} is {type(fn).__name__}; pass a callable.")
        if not isinstance(description, str) or "\n" in description:
            raise ValueError(f"`description` of tool {name!r} must be a one-line str.")
        self.name, self.fn, self.description = name, fn, description
        try:
            self.json = JSONSchema(schema, property_order="schema", mode="any")
        except (TypeError, ValueError) as err:
            raise ValueError(f"`schema` of tool {name!r}: {err}") from None
        self.model = self.json.model
        self.schema = self.json.schema

    def schema_text(self) -> str:
        """The input schema as one line of JSON (for the prompt)."""
        return json.dumps(self.schema, ensure_ascii=False)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


def tool(
    schema: Any, name: str | None = None, description: str | None = None
) -> Callable[[Callable[[Any], Any]], Tool]:
    """Decorator: a :class:`Tool` from a function (its name and the docstring's first line).

    Example:
        >>> from potentia.agents import tool
        >>> @tool({"type": "object", "properties": {"x": {"type": "integer"}}})
        ... def double(args):
        ...     "Twice x."
        ...     return 2 * args["x"]
        >>> double.name, double.description
        ('double', 'Twice x.')
    """

    def wrap(fn: Callable[[Any], Any]) -> Tool:
        doc = (fn.__doc__ or "").strip().splitlines()
        return Tool(
            name or fn.__name__,
            fn,
            schema,
            description if description is not None else (doc[0] if doc else ""),
        )

    return wrap


def as_tools(tools: Any) -> dict[str, Tool]:
    """The tool registry ``{name: Tool}`` from a sequence of tools or a mapping.

    Raises:
        TypeError: if an entry is not a :class:`Tool`.
        ValueError: if there is no tool, a name repeats, or a mapping key is not its tool's name.
    """
    if isinstance(tools, Tool):
        tools = [tools]
    if isinstance(tools, Mapping):
        for k, t in tools.items():
            if isinstance(t, Tool) and t.name != k:
                raise ValueError(f"`tools[{k!r}]` is a tool named {t.name!r}; use its name as key.")
        tools = list(tools.values())
    if isinstance(tools, str) or not isinstance(tools, Sequence):
        raise TypeError(
            f"`tools` is {type(tools).__name__}; pass a list of potentia.agents.Tool objects."
        )
    out: dict[str, Tool] = {}
    for i, t in enumerate(tools):
        if not isinstance(t, Tool):
            raise TypeError(
                f"`tools[{i}]` is {type(t).__name__}; wrap callables as "
                "potentia.agents.Tool(name, fn, schema) or with @potentia.agents.tool(schema)."
            )
        if t.name in out:
            raise ValueError(f"`tools` has two tools named {t.name!r}; names must be unique.")
        out[t.name] = t
    if not out:
        raise ValueError("`tools` is empty; an agent protocol with tool steps needs a tool.")
    return out


def call_tool(t: Tool, input_text: str, timeout: float | None, max_chars: int) -> str:
    """Run ``t`` on its JSON input text; the observation text (errors included, one line).

    Args:
        t: The tool.
        input_text: The model's Action Input (already valid for the schema).
        timeout: Seconds to wait for the call (``None``: no limit).
        max_chars: Longest observation kept.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            value = json.loads(input_text)
            arg = t.model.model_validate(value) if t.model is not None else value
            box["out"] = t.fn(arg)
        except BaseException as err:  # noqa: BLE001 - every tool failure becomes text
            box["err"] = err

    th = threading.Thread(target=run, name=f"potentia-tool-{t.name}", daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        text = f"Error: the tool timed out after {timeout:g} s"
    elif "err" in box:
        err = box["err"]
        text = f"Error: {type(err).__name__}: {err}"
    else:
        text = str(box.get("out"))
    text = " ".join(text.splitlines())
    if len(text) > max_chars:
        text = text[: max(max_chars - 4, 0)] + " ..."
    return text
