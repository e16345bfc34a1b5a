r"""Token → bytes tables for Hugging Face tokenizers.

An LM samples *token ids*; constraints judge *bytes*. This module gives the exact byte
string each token id contributes when it appears inside a generated text, for the two
tokenizer families in common use:

* **byte-level BPE** (GPT-2, Llama 3, SmolLM2): every piece is written in the GPT-2
  printable alphabet, one character per byte; the table inverts that alphabet;
* **SentencePiece-style** (Llama 2, Gemma): pieces spell spaces as ``▁`` (U+2581) and fall
  back to single bytes written ``<0xNN>``; the table maps ``▁`` to a space and ``<0xNN>`` to
  the byte ``NN``.

Added (non-special) tokens contribute their literal content. Special/control tokens have no
bytes: they are reported separately so the LM can leave them out of its vocabulary.
Several ids may share one byte string (``"\n"`` and ``<0x0A>``); both are kept.

A tokenizer of another kind (WordPiece, CTC) raises ``ValueError``: its tokens do not
concatenate to the text and no table can be right. SentencePiece tokenizers that add a
dummy leading ``▁`` (Llama 2) are supported for generation (a token's bytes inside a text
are right); only the first token of :func:`encode`-d text then carries the extra space.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["ByteTable", "byte_table", "bytes_to_unicode", "tokenizer_kind"]

_SPACE = "\u2581"  # the SentencePiece space marker "▁"
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte → printable character map used by byte-level BPE vocabularies.

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``)
    stand for themselves; the other 68 bytes are shifted, in increasing order, to the
    characters U+0100, U+0101, ...
    """
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    out: dict[int, str] = {b: chr(b) for b in keep}
    shift = 0
    for b in range(256):
        if b not in out:
            out[b] = chr(0x100 + shift)
            shift += 1
    return out


@dataclass
class ByteTable:
    """The byte string of every token id of a tokenizer.

    Attributes:
        tokens: ``tokens[i]`` is the byte string of id ``i``, or ``None`` for a special or
            control token (which has no bytes of its own).
        special: Ids of special/control tokens (``tokens[i] is None`` for them when they
            were excluded, their literal text otherwise).
        kind: ``"byte_level"`` or ``"sentencepiece"``.
    """

    tokens: list[bytes | None]
    special: set[int]
    kind: str


def _walk(node: Any) -> list[dict]:
    """Flatten nested ``Sequence`` components of a tokenizer.json section."""
    if not node:
        return []
    if node.get("type") == "Sequence":
        parts = node.get("decoders") or node.get("pretokenizers") or node.get("normalizers")
        return [x for p in parts or [] for x in _walk(p)]
    return [node]


def tokenizer_kind(spec: dict) -> str:
    """Classify a parsed ``tokenizer.json`` as ``"byte_level"`` or ``"sentencepiece"``.

    Raises:
        ValueError: if it is neither (its tokens cannot be mapped to bytes).
    """
    decoders = _walk(spec.get("decoder"))
    pre = _walk(spec.get("pre_tokenizer"))
    types = {d.get("type") for d in decoders} | {p.get("type") for p in pre}
    if "ByteLevel" in types:
        return "byte_level"
    space_back = any(
        d.get("type") == "Replace" and d.get("pattern", {}).get("String") == _SPACE
        for d in decoders
    )
    if "Metaspace" in types or space_back or "ByteFallback" in types:
        if any(d.get("type") in ("WordPiece", "BPEDecoder", "CTC") for d in decoders):
            raise ValueError(
                "`tokenizer` has a decoder that rewrites text "
                f"({sorted(t for t in types if t)}); its tokens cannot be mapped to bytes "
                "exactly. Use a byte-level BPE or SentencePiece tokenizer."
            )
        return "sentencepiece"
    model = spec.get("model", {}).get("type")
    raise ValueError(
        f"`tokenizer` (model {model!r}, decoder/pre-tokenizer components "
        f"{sorted(t for t in types if t)}) is neither byte-level BPE nor SentencePiece-style, "
        "so its tokens cannot be mapped to bytes. potentia supports GPT-2-style byte-level "
        "tokenizers and SentencePiece tokenizers with '▁' spaces and <0xNN> byte fallback."
    )


def _backend_spec(tokenizer: Any) -> dict:
    """The decoder, pre-tokenizer and model type of the tokenizer's fast backend.

    Reads each component's own JSON state rather than the whole ``tokenizer.json``
    (which holds the merges and takes seconds to parse for a 262k vocabulary).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(
            f"`tokenizer` is a {type(tokenizer).__name__} without a fast (tokenizers) backend, "
            "so its tokens cannot be mapped to bytes. Load it with "
            "AutoTokenizer.from_pretrained(path) (fast tokenizers are the default)."
        )

    def state(component: Any) -> dict | None:
        return None if component is None else json.loads(component.__getstate__())

    return {
        "decoder": state(backend.decoder),
        "pre_tokenizer": state(backend.pre_tokenizer),
        "model": {"type": type(backend.model).__name__},
    }


def byte_table(tokenizer: Any, exclude_special: bool = True) -> ByteTable:
    """Build the token → bytes table of a Hugging Face (fast) tokenizer.

    Args:
        tokenizer: A ``transformers`` tokenizer with a ``tokenizers`` backend.
        exclude_special: Give special/control tokens no bytes (``None``). With ``False``
            they get their literal text, as if they were ordinary added tokens.

    Returns:
        The table, one entry per id in ``range(len(tokenizer))``.

    Raises:
        ValueError: if the tokenizer is of an unsupported kind, or a piece is not written
            in the byte-level alphabet its kind requires.
    """
    spec = _backend_spec(tokenizer)
    kind = tokenizer_kind(spec)
    vocab: dict[str, int] = tokenizer.get_vocab()
    n = max(len(tokenizer), max(vocab.values(), default=-1) + 1)
    tokens: list[bytes | None] = [None] * n
    added = {int(i): tok for i, tok in tokenizer.added_tokens_decoder.items()}
    special = {i for i, tok in added.items() if tok.special}
    special |= {int(i) for i in tokenizer.all_special_ids}
    sp_normalises_spaces = kind == "sentencepiece"

    if kind == "byte_level":
        inv = {c: b for b, c in bytes_to_unicode().items()}
        for piece, i in vocab.items():
            if i in added:
                continue
            try:
                tokens[i] = bytes(inv[c] for c in piece)
            except KeyError as err:
                raise ValueError(
                    f"`tokenizer` piece {piece!r} (id {i}) uses character {err.args[0]!r}, "
                    "which is outside the GPT-2 byte alphabet of a byte-level tokenizer; "
                    "the token cannot be mapped to bytes."
                ) from None
    else:
        for piece, i in vocab.items():
            if i in added:
                continue
            m = _BYTE_PIECE.match(piece)
            tokens[i] = bytes([int(m.group(1), 16)]) if m else piece.replace(_SPACE, " ").encode()

    for i, tok in added.items():
        if i in special and exclude_special:
            tokens[i] = None
            continue
        text = tok.content
        if sp_normalises_spaces and tok.normalized:
            text = text.replace(_SPACE, " ")
        tokens[i] = text.encode("utf-8")
    if exclude_special:
        for i in special:
            if i < n:
                tokens[i] = None
    return ByteTable(tokens=tokens, special=special, kind=kind)
