"""The LM room: ``potentia.LM``, its potential, the backends, and the embedded loaders.

``potentia.LM`` (tokenizer, vocabulary, EOS set) sits on a backend (``backend.Backend``, the
contract: batched next-token scores, a prompt prefilled once, equal contexts sharing a row,
fork/drop on ``select``, the context window, counts of what was computed); transformers
(fp32 / bf16) is ``transformers_backend``, llama.cpp (GGUF: fp32 / fp16 / bf16 / q4_k_m)
is ``llamacpp_backend`` (imported only when used). ``state`` holds the potential and its batch state
over any backend; ``tokenizer`` the byte tables; ``embedded`` the embedded models.

``model`` imports ``state``, ``tokenizer`` and the backends; ``embedded`` imports only
``transformers_backend`` (``LM.default()`` hands it the constructor), so the room has no
import circle.
"""

from potentia.lm.backend import Backend, BackendStats
from potentia.lm.model import LM
from potentia.lm.state import LMPotential, LMState

__all__ = ["LM", "Backend", "BackendStats", "LMPotential", "LMState"]
