"""Constraints: the built-in potentials users declare.

Regex, CFG, JSON Schema, lexical
constraints, predicates), over bytes, with fast lifting to an LM's token vocabulary.
"""
