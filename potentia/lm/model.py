"""``potentia.LM``: a model backend and its tokenizer as a potentia model.

The LM owns the *vocabulary*: position ``i`` of every next-token vector is the token with
tokenizer id ``vocab.ids[i]`` and byte string ``vocab.tokens[i]``. Special/control tokens
are left out by default, and the end-of-sequence tokens are not positions at all: their
summed probability is the last (EOS) entry of each vector. :meth:`LM.potential` conditions
the LM on a prompt and returns the :class:`~potentia.lm.state.LMPotential` that the
engines sample from. Nothing here downloads: models load from local folders or from the
embedded packages (:mod:`potentia.lm.embedded`). The model runs behind a
:class:`~potentia.lm.backend.Backend` (transformers: :mod:`potentia.lm.transformers_backend`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from potentia.lm.backend import Backend
from potentia.lm.state import LMPotential
from potentia.lm.tokenizer import ByteTable, byte_table
from potentia.lm.transformers_backend import (
    DTYPES,
    TransformersBackend,
    check_dtype,
    resolve_dtype,
)
from potentia.potentials.base import Vocabulary

__all__ = ["DEFAULT_BACKEND", "LM"]

#: The backend of ``LM.default()``: llama.cpp with fp16 weights, the fastest measured
#: configuration within 1e-5 mean KL of the fp32 model (docs/lm.md); ``"transformers"``
#: runs the same model in fp32 (the reference) or bf16.
DEFAULT_BACKEND = "llama.cpp"

#: Tokens that end a document or a chat turn; part of the default EOS set when present.
END_TOKENS = ("<eos>", "<end_of_turn>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end|>")


class LM:
    r"""A causal LM with an exact token → bytes vocabulary.

    Args:
        model: A ``transformers`` causal LM (``AutoModelForCausalLM``, fp32 or bf16), put in
            eval mode, or any :class:`~potentia.lm.backend.Backend` running the model.
        tokenizer: Its (fast) tokenizer.
        eos: The end-of-sequence set: ``None`` for the tokenizer's EOS plus the model's
            end-of-text/end-of-turn tokens; otherwise a token id, a string, or a sequence
            of them. A string names a special token (``"<end_of_turn>"``) or is a byte string
            (``"\n"``: every token whose bytes are exactly ``b"\n"`` ends the sequence).
        exclude_special: Leave special/control tokens out of the vocabulary.
        name: A label for messages (default: the model's name).

    Raises:
        TypeError: if ``model`` or ``tokenizer`` is not of the expected kind.
        ValueError: if the tokens cannot be mapped to bytes, an EOS string is no token, or
            the vocabulary is empty after exclusions.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        eos: int | str | Sequence[int | str] | None = None,
        exclude_special: bool = True,
        name: str | None = None,
    ) -> None:
        backend = model if isinstance(model, Backend) else TransformersBackend(model)
        if not hasattr(tokenizer, "get_vocab") or not callable(tokenizer):
            raise TypeError(
                f"`tokenizer` is {type(tokenizer).__name__}; pass the model's transformers "
                "tokenizer, e.g. AutoTokenizer.from_pretrained(path)."
            )
        #: the runtime that computes next-token scores (forwards, caches, counts)
        self.backend: Backend = backend
        self.tokenizer = tokenizer
        self.name = name or backend.name
        self._exclude_special = bool(exclude_special)
        self.table: ByteTable = byte_table(tokenizer, exclude_special=exclude_special)
        n_out = backend.n_out
        self.eos_ids = self._resolve_eos(eos, n_out)
        eos_set = set(self.eos_ids)
        ids = [
            i
            for i, b in enumerate(self.table.tokens[:n_out])
            if b is not None and b != b"" and i not in eos_set
        ]
        if not ids:
            raise ValueError(
                f"the vocabulary of `tokenizer` is empty after excluding special tokens "
                f"(exclude_special={exclude_special}) and EOS {self.eos_ids}; pass "
                "exclude_special=False or a tokenizer with ordinary tokens."
            )
        self.vocab = Vocabulary([self.table.tokens[i] for i in ids], ids=ids, name=self.name)
        self.vocab_ids_t = torch.as_tensor(self.vocab.ids, device=backend.device)
        self.eos_ids_t = torch.as_tensor(self.eos_ids, dtype=torch.long, device=backend.device)
        self._position = np.full(len(self.table.tokens), -1, dtype=np.int64)
        self._position[self.vocab.ids] = np.arange(len(ids))
        #: the most tokens (prompt + generated) the model accepts
        self.context_window = int(
            backend.context_window or getattr(tokenizer, "model_max_length", 0) or 2048
        )
        self._potentials: OrderedDict[tuple[str, bool], LMPotential] = OrderedDict()

    # ----- the backend's view ----------------------------------------------------------
    @property
    def max_length(self) -> int:
        """The model's context window (alias of :attr:`context_window`)."""
        return self.context_window

    @property
    def device(self) -> torch.device:
        """Where the backend's scores live."""
        return self.backend.device

    @property
    def dtype(self) -> str:
        """The backend's weight type, ``"fp32"`` or ``"bf16"``."""
        return self.backend.dtype

    @property
    def model(self) -> Any:
        """The transformers model (transformers backend only)."""
        try:
            return self.backend.model  # type: ignore[attr-defined]
        except AttributeError:
            raise AttributeError(
                f"`model`: the backend of {self.name} ({type(self.backend).__name__}) has no "
                "transformers model; use `lm.backend`."
            ) from None

    @property
    def cache_arg(self) -> str:
        """Keyword of the KV cache in ``model.forward`` (transformers backend only)."""
        return self.backend.cache_arg  # type: ignore[attr-defined]

    # ----- construction -------------------------------------------------------------
    @classmethod
    def default(
        cls,
        dtype: str | torch.dtype | None = None,
        *,
        backend: str = DEFAULT_BACKEND,
        n_threads: int = 1,
        n_ctx: int = 8192,
    ) -> LM:
        """The embedded default model, Gemma 3 270M (see :mod:`potentia.lm.embedded`).

        Args:
            dtype: Weight type. llama.cpp: ``"fp16"`` (its default), ``"fp32"``, ``"bf16"``
                or ``"q4_k_m"`` (the shipped file). transformers: ``"fp32"`` (the
                reference; its default) or ``"bf16"`` (CPUs with bf16 arithmetic).
                docs/lm.md has the measured distance of each from transformers fp32.
            backend: ``"llama.cpp"`` (the default) or ``"transformers"``.
            n_threads: CPU threads of the llama.cpp backend (transformers: torch's setting).
            n_ctx: Tokens the llama.cpp backend's KV cache holds for all live contexts
                together (prompt and particles; 18 KB of fp16 KV per token, 151 MB at the
                default 8192); the context window is ``min(n_ctx, 32768)``. transformers
                has no such limit below the model's 32,768.

        Raises:
            ValueError: if ``backend`` or ``dtype`` is unknown, or bf16 on transformers where
                the CPU has no bf16.
            ImportError: for ``backend="llama.cpp"`` without llama-cpp-python.
        """
        if backend == "transformers":
            from potentia.lm.embedded import load_gemma

            return load_gemma(cls, dtype="fp32" if dtype is None else dtype)
        if backend in ("llama.cpp", "llamacpp", "llama_cpp"):
            from potentia.lm.embedded import load_gemma_llamacpp

            return load_gemma_llamacpp(
                cls, dtype="fp16" if dtype is None else dtype, n_threads=n_threads, n_ctx=n_ctx
            )
        raise ValueError(f"`backend` is {backend!r}; pass 'transformers' or 'llama.cpp'.")

    @classmethod
    def from_gguf(
        cls,
        path: str | Path,
        tokenizer: Any,
        *,
        dtype: str = "q4_k_m",
        n_threads: int = 1,
        n_ctx: int = 8192,
        eos: int | str | Sequence[int | str] | None = None,
        exclude_special: bool = True,
        name: str | None = None,
    ) -> LM:
        """A GGUF model on the llama.cpp backend, with its HF tokenizer.

        Args:
            path: The ``.gguf`` file.
            tokenizer: The model's transformers tokenizer (same ids as the GGUF), or a local
                folder holding its tokenizer files.
            dtype: The file's weight type, for ``lm.dtype`` and messages.
            n_threads: CPU threads for llama.cpp.
            n_ctx: KV cells shared by all live rows (prompt + contexts).
            eos: The end-of-sequence set (see :class:`LM`).
            exclude_special: Leave special tokens out of the vocabulary.
            name: A label for messages (default: the file name).

        Raises:
            ImportError: without llama-cpp-python.
            ValueError: if ``path`` is no loadable GGUF file or ``dtype`` is unknown.
        """
        from potentia.lm.llamacpp_backend import LlamaCppBackend

        if isinstance(tokenizer, str | Path):
            folder = Path(tokenizer).expanduser()
            if not folder.is_dir():
                raise ValueError(
                    f"`tokenizer` is {str(tokenizer)!r}, not a folder; pass a tokenizer or "
                    "the local folder of its files."
                )
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        backend = LlamaCppBackend(path, dtype=dtype, n_threads=n_threads, n_ctx=n_ctx)
        return cls(
            backend,
            tokenizer,
            eos=eos,
            exclude_special=exclude_special,
            name=name or Path(path).stem,
        )

    @classmethod
    def smollm2(cls, dtype: str | torch.dtype = "fp32") -> LM:
        """The embedded SmolLM2 135M Instruct (byte-level BPE tokenizer).

        Args:
            dtype: ``"fp32"`` or ``"bf16"``, as for :meth:`default`.
        """
        from potentia.lm.embedded import load_smollm2

        return load_smollm2(cls, dtype=dtype)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        eos: int | str | Sequence[int | str] | None = None,
        exclude_special: bool = True,
        dtype: str | torch.dtype = "fp32",
        name: str | None = None,
    ) -> LM:
        """Load a model and tokenizer from a local folder (never from a model hub).

        Args:
            path: A folder holding ``config.json``, the weights and the tokenizer files.
            eos: The end-of-sequence set (see :class:`LM`).
            exclude_special: Leave special tokens out of the vocabulary.
            dtype: Weight type: ``"fp32"`` (exact to ~1e-6; the default) or ``"bf16"``
                (faster, where the CPU or GPU has bf16 arithmetic).
            name: A label for messages (default: the folder name).

        Raises:
            ValueError: if ``path`` is not an existing folder with a model in it, ``dtype``
                is unknown, or ``dtype="bf16"`` on a CPU without bf16 arithmetic.
        """
        dtype = resolve_dtype(dtype)
        check_dtype(dtype)
        folder = Path(path).expanduser()
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise ValueError(
                f"`path` is {str(path)!r}, which is not a local model folder (no config.json "
                "there). potentia never downloads: pass the folder of a saved model, or use "
                "LM.default() / LM.smollm2() for the embedded models."
            )
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=DTYPES[dtype], local_files_only=True
        )
        return cls(
            model, tokenizer, eos=eos, exclude_special=exclude_special, name=name or folder.name
        )

    # ----- public API -----------------------------------------------------------------
    def potential(self, prompt: str | list[dict] = "", chat: bool = False) -> LMPotential:
        """The LM conditioned on ``prompt``: ``prefix(x) = log P(x | prompt)``.

        Args:
            prompt: The prompt text, or a list of chat messages (``{"role": ..., "content":
                ...}`` dicts, rendered with the tokenizer's chat template and the
                generation prompt). Without ``chat`` a text is tokenized with the
                tokenizer's special tokens (BOS); an empty prompt becomes BOS (or EOS if
                there is none).
            chat: Wrap a text ``prompt`` as one user turn in the tokenizer's chat template,
                with the generation prompt for the assistant's reply.

        Raises:
            TypeError: if ``prompt`` is not a string.
            ValueError: if the prompt does not fit in the model's context, or ``chat`` is
                set and the tokenizer has no chat template.
        """
        if (
            isinstance(prompt, list)
            and all(
                isinstance(m, dict)
                and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)
                for m in prompt
            )
            and prompt
        ):
            messages: list[dict] | None = [
                {"role": m["role"], "content": m["content"]} for m in prompt
            ]
        elif not isinstance(prompt, str):
            raise TypeError(
                f"`prompt` is {type(prompt).__name__} ({prompt!r:.60}); pass the prompt text "
                'or a list of chat messages like [{"role": "user", "content": "..."}].'
            )
        else:
            messages = None
        key = (
            repr(messages) if messages is not None else prompt,
            bool(chat) or messages is not None,
        )
        if key in self._potentials:
            self._potentials.move_to_end(key)
            return self._potentials[key]
        ids = self.prompt_ids(prompt, chat) if messages is None else self._chat_ids(messages)
        pot = LMPotential(self, ids)
        self._potentials[key] = pot
        while len(self._potentials) > 4:
            self._potentials.popitem(last=False)
        return pot

    def _chat_ids(self, messages: list[dict]) -> list[int]:
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            raise ValueError(
                f"`chat` is set (or `prompt` is a list of messages) but the tokenizer of "
                f"{self.name} has no chat template; pass the prompt as text with chat=False."
            )
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if not isinstance(ids, list):  # BatchEncoding in recent transformers
            ids = ids["input_ids"]
        return self._checked_ids([int(i) for i in ids])

    def prompt_ids(self, prompt: str | list[dict], chat: bool = False) -> list[int]:
        """The tokenizer ids an LM potential conditions on for ``prompt`` (text or messages)."""
        tok = self.tokenizer
        if isinstance(prompt, list):
            return self._chat_ids(prompt)
        if chat:
            return self._chat_ids([{"role": "user", "content": prompt}])
        ids = [int(i) for i in tok(prompt, add_special_tokens=True)["input_ids"]]
        if not ids:
            start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            if start is None:
                raise ValueError(
                    "`prompt` is empty and the tokenizer has neither BOS nor EOS to start "
                    "from; pass a non-empty prompt."
                )
            ids = [int(start)]
        return self._checked_ids(ids)

    def window_fix(self) -> str:
        """How to get a longer context window, when the backend can give one ("" if not)."""
        train = int(getattr(self.backend, "n_ctx_train", 0) or 0)
        if train > self.context_window:
            return (
                f" (or load the model with a larger KV cache, up to {train} tokens: "
                "pt.LM.default(n_ctx=...) or pt.LM.from_gguf(..., n_ctx=...))"
            )
        return ""

    def _checked_ids(self, ids: list[int]) -> list[int]:
        if len(ids) >= self.max_length:
            raise ValueError(
                f"`prompt` has {len(ids)} tokens but the model's context holds "
                f"{self.max_length}; shorten the prompt so that generated tokens fit"
                f"{self.window_fix()}."
            )
        return ids

    def encode(self, text: str) -> list[int]:
        """Tokenize ``text`` into vocabulary *positions* whose bytes concatenate to it.

        Special-token names inside ``text`` are treated as plain text.

        Raises:
            ValueError: if the tokenizer produces a token outside the vocabulary, or its
                tokens do not spell ``text`` exactly (e.g. a dummy leading space).
        """
        if not isinstance(text, str):
            raise TypeError(f"`text` is {type(text).__name__}; pass a str.")
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids = np.asarray(ids, dtype=np.int64)
        pos = self._position[ids] if ids.size else ids
        if (pos < 0).any():
            bad = int(ids[pos < 0][0])
            raise ValueError(
                f"`text` {text!r:.60} tokenizes to id {bad} "
                f"({self.tokenizer.convert_ids_to_tokens(bad)!r}), which is not in the "
                "vocabulary (a special or EOS token)."
            )
        out = [int(p) for p in pos]
        if self.vocab.decode_bytes(out) != text.encode("utf-8"):
            raise ValueError(
                f"the tokens of `text` {text!r:.60} do not spell it exactly "
                f"({self.vocab.decode_bytes(out)!r:.60}); the tokenizer rewrites text "
                "(e.g. adds a leading space), so encode() cannot give exact positions."
            )
        return out

    def with_eos(self, eos: int | str | Sequence[int | str]) -> LM:
        r"""The same model and tokenizer with another EOS set (see :class:`LM`).

        Example: ``lm.with_eos([*lm.eos_ids, "\n"])`` also ends outputs at a newline.
        """
        return LM(
            self.backend,
            self.tokenizer,
            eos=eos,
            exclude_special=self._exclude_special,
            name=self.name,
        )

    def decode(self, positions: Sequence[int]) -> str:
        """Text of vocabulary positions (same as ``vocab.decode``)."""
        return self.vocab.decode(positions)

    def __repr__(self) -> str:
        return (
            f"LM({self.name!r}, vocab={len(self.vocab)} tokens, eos={self.eos_ids}, {self.dtype})"
        )

    # ----- helpers ------------------------------------------------------------------
    def _resolve_eos(self, eos: Any, n_out: int) -> list[int]:
        tok = self.tokenizer
        table = self.table.tokens
        added = {t.content: int(i) for i, t in tok.added_tokens_decoder.items() if t.special}
        if eos is None:
            found: set[int] = set()
            for src in (tok.eos_token_id, list(self.backend.eos_token_ids)):
                if isinstance(src, int):
                    found.add(src)
                elif isinstance(src, list | tuple):
                    found.update(int(s) for s in src)
            found.update(added[s] for s in END_TOKENS if s in added)
            found = {i for i in found if 0 <= i < n_out}
            if not found:
                raise ValueError(
                    "the tokenizer has no EOS token; pass `eos` (a token id or a string such "
                    "as '\\n')."
                )
            return sorted(found)
        items = [eos] if isinstance(eos, str | int | np.integer) else list(eos)
        if not items:
            raise ValueError("`eos` is empty; pass None for the default EOS set, or ids/strings.")
        out: set[int] = set()
        for item in items:
            if isinstance(item, bool) or not isinstance(item, str | int | np.integer):
                raise TypeError(f"`eos` holds {item!r}; pass token ids (int) or strings.")
            if isinstance(item, str):
                if item in added:
                    out.add(added[item])
                    continue
                b = item.encode("utf-8")
                hits = [i for i, t in enumerate(table[:n_out]) if t == b]
                if not hits:
                    raise ValueError(
                        f"`eos` string {item!r} is not the byte string of any token, so the "
                        "LM cannot produce it as one token. Use a single-token string such as "
                        "'\\n', a special token name, or a token id."
                    )
                out.update(hits)
            else:
                if not 0 <= int(item) < n_out:
                    raise ValueError(f"`eos` id {item} is outside the model's ids 0..{n_out - 1}.")
                out.add(int(item))
        return sorted(out)
