"""Potentials: the contract, composition, and the built-in potentials."""

from potentia.potentials.base import (
    ContextState,
    Potential,
    PotentialState,
    Vocabulary,
    check_logw,
    logsumexp,
)
from potentia.potentials.ops import And, Lifted, Not, Or, Power, Product

__all__ = [
    "Potential",
    "PotentialState",
    "ContextState",
    "Vocabulary",
    "Product",
    "And",
    "Or",
    "Not",
    "Power",
    "Lifted",
    "check_logw",
    "logsumexp",
]
