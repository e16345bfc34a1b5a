"""Models: toy LMs with exact targets, and loaders for the embedded real LMs."""

from potentia.models.exact import ExactTarget, enumerate_target
from potentia.models.toy import DFA, FiniteLanguage, NGramLM, TablePotential, ToyLM, random_ngram

__all__ = [
    "TablePotential",
    "NGramLM",
    "DFA",
    "FiniteLanguage",
    "ToyLM",
    "random_ngram",
    "ExactTarget",
    "enumerate_target",
]
from potentia.models.finite import exact_finite_target, language_strings, tokenizations  # noqa: E402, F401
