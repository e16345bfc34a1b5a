"""The LM room: ``potentia.LM``, its potential, and the embedded loaders.

``potentia.LM`` (model + tokenizer), its potential and KV-cached batch
state, the tokenizer byte tables, and the embedded model loaders; one module per backend.

``model`` imports ``state`` and ``tokenizer``; ``embedded`` imports neither (``LM.default()``
hands it the constructor), so the room has no import circle.
"""

from potentia.lm.model import LM
from potentia.lm.state import LMPotential, LMState

__all__ = ["LM", "LMPotential", "LMState"]
