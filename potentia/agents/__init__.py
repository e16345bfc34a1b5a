"""Agent protocols: the model writes some steps, tools write the others (``pt.agent``).

* :mod:`~potentia.agents.protocol` — :class:`Protocol` (labels, who writes them, an LTLf
  formula over their order) and the shipped specs :data:`REACT` and :data:`PLAN_ACT`;
* :mod:`~potentia.agents.tools` — :class:`Tool` (a callable with a JSON Schema for its
  input) and how tool errors become Observation text;
* :mod:`~potentia.agents.steps` — the language of one model step (one llguidance grammar);
* :mod:`~potentia.agents.agent` — :class:`Agent`, :func:`agent`: SMC over steps with tool
  outputs as forced text (the module docstring states the target).
"""

from potentia.agents.agent import DEFAULT_INSTRUCTIONS, Agent, Step, agent, answers
from potentia.agents.protocol import KINDS, PLAN_ACT, REACT, Protocol
from potentia.agents.tools import Tool, as_tools, call_tool, tool

__all__ = [
    "agent",
    "Agent",
    "Step",
    "answers",
    "Protocol",
    "REACT",
    "PLAN_ACT",
    "KINDS",
    "Tool",
    "tool",
    "as_tools",
    "call_tool",
    "DEFAULT_INSTRUCTIONS",
]
