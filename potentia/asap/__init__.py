"""ASAp room: whole-string engines on a θ trie of expected future grammaticality.

ASAp (grammar-aligned sampling), CARS (exact rejection), LCD (the masking baseline) and
θ-twisted SMC.
"""

from potentia.asap.asap import CARS, LCD, ASAp, Trie, twisted_smc

__all__ = ["ASAp", "CARS", "LCD", "Trie", "twisted_smc"]
