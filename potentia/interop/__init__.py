"""Interop with the tools users already have: transformers ``generate()`` and genlm-control.

* :func:`logits_processor` (:mod:`potentia.interop.hf`): a transformers ``LogitsProcessor``
  that masks what a potentia hard constraint rejects. Locally constrained decoding:
  valid outputs, *biased* distribution; :func:`potentia.sample` is the exact alternative.
* :func:`from_genlm` / :func:`to_genlm` (:mod:`potentia.interop.genlm_control`): a
  genlm-control ``Potential`` as a potentia :class:`~potentia.Potential` (its async API run
  synchronously and batched), and a potentia potential as a genlm-control ``Potential``.

Nothing is imported until a name is used: ``import potentia.interop`` loads neither
transformers' generation code nor genlm-control.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "logits_processor",
    "ConstraintLogitsProcessor",
    "from_genlm",
    "to_genlm",
    "GenlmPotential",
    "PotentiaPotential",
]

_WHERE = {
    "logits_processor": "potentia.interop.hf",
    "ConstraintLogitsProcessor": "potentia.interop.hf",
    "from_genlm": "potentia.interop.genlm_control",
    "to_genlm": "potentia.interop.genlm_control",
    "GenlmPotential": "potentia.interop.genlm_control",
    "PotentiaPotential": "potentia.interop.genlm_control",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'potentia.interop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
