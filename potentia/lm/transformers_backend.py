"""The transformers backend: a causal LM with transformers' dynamic KV cache, fp32 or bf16.

Caches are transformers ``DynamicCache`` objects. Their layers replace their tensors on
update (``torch.cat``) instead of writing into them, so a shallow copy of the container and
of each layer (:func:`fork_cache`) is a new handle that later forwards of the copy leave
untouched; resampling reindexes every layer with ``index_select`` (no recomputation).

Weight types: ``"fp32"`` (the reference: next-token vectors exact to ~1e-6) and ``"bf16"``
(faster on CPUs with native bf16 arithmetic, AVX512-BF16 or AMX, and on GPUs that have it;
refused elsewhere, where it would be emulated and slower). Scores leave the model as
float32 in both cases, so :func:`potentia.lm.backend.log_probs` sees one type.
"""

from __future__ import annotations

import copy
import functools
import inspect
from pathlib import Path
from typing import Any

import torch

from potentia.lm.backend import Backend

__all__ = ["DTYPES", "TransformersBackend", "bf16_supported", "fork_cache", "resolve_dtype"]

#: The weight types: public name → torch dtype.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
_ALIASES = {"float32": "fp32", "bfloat16": "bf16"}
_SUPPORTED_LAYERS = ("DynamicLayer", "DynamicSlidingWindowLayer")


def resolve_dtype(dtype: str | torch.dtype) -> str:
    """The public name (``"fp32"`` / ``"bf16"``) of a ``dtype`` argument.

    Raises:
        ValueError: for any other value, naming ``dtype`` and the accepted ones.
    """
    if isinstance(dtype, torch.dtype):
        name = next((k for k, v in DTYPES.items() if v == dtype), None)
    elif isinstance(dtype, str):
        name = _ALIASES.get(dtype.lower(), dtype.lower())
    else:
        name = None
    if name not in DTYPES:
        raise ValueError(
            f"`dtype` is {dtype!r}; pass 'fp32' (exact reference) or 'bf16' (faster where "
            "the CPU or GPU has bf16 arithmetic)."
        )
    return name


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` does bf16 arithmetic natively.

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: the ``avx512_bf16`` or ``amx_bf16`` flag
    (x86) or ``bf16`` (ARM) in ``/proc/cpuinfo``; without that file, oneDNN's own check.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    flags = _cpu_flags()
    if flags:
        return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check is not None and check())


def check_dtype(dtype: str, device: torch.device | str = "cpu") -> None:
    """Refuse bf16 where ``device`` has no native bf16 arithmetic (a clear ``ValueError``)."""
    if dtype == "bf16" and not bf16_supported(device):
        raise ValueError(
            f"`dtype` is 'bf16' but this {torch.device(device).type.upper()} has no native "
            "bf16 arithmetic (no avx512_bf16/amx_bf16 CPU flag, or a GPU without bf16), so "
            "it would be emulated and slower; pass dtype='fp32'."
        )


def fork_cache(cache, rows: torch.Tensor | None = None):
    """A new cache container over the same tensors, optionally reindexed by ``rows``."""
    new = copy.copy(cache)
    new.layers = []
    for layer in cache.layers:
        lay = copy.copy(layer)
        if rows is not None and getattr(layer, "is_initialized", False):
            if layer.keys is not None and layer.keys.numel():
                lay.keys = layer.keys.index_select(0, rows)
                lay.values = layer.values.index_select(0, rows)
        new.layers.append(lay)
    return new


class TransformersBackend(Backend):
    """A ``transformers`` causal LM (``AutoModelForCausalLM``) as a :class:`Backend`.

    Args:
        model: The model; put in eval mode. Its weight type must be fp32 or bf16, and bf16
            only where the device supports it (:func:`bf16_supported`).

    Raises:
        TypeError: if ``model`` is not a transformers causal LM.
        ValueError: if its weights are bf16 on a device without bf16 arithmetic, or of
            another type.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
            raise TypeError(
                f"`model` is {type(model).__name__}; pass a transformers causal LM, e.g. "
                "AutoModelForCausalLM.from_pretrained(path), or use LM.from_pretrained(path)."
            )
        param = next(model.parameters())
        self.model = model.eval()
        self.device = param.device
        if param.dtype not in DTYPES.values():
            raise ValueError(
                f"`model` has {param.dtype} weights; potentia runs fp32 or bf16: load it with "
                "LM.from_pretrained(path, dtype='fp32' or 'bf16'), or call model.float()."
            )
        self.dtype = resolve_dtype(param.dtype)
        check_dtype(self.dtype, self.device)
        config = model.config
        self.name = str(getattr(config, "_name_or_path", "") or type(model).__name__)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if head is not None and getattr(head, "weight", None) is not None:
            self.n_out = int(head.weight.shape[0])
        else:
            self.n_out = int(config.vocab_size)
        #: 0 when the config does not say (the LM then asks the tokenizer)
        self.context_window = int(getattr(config, "max_position_embeddings", None) or 0)
        gen = getattr(model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_token_ids = tuple(int(e) for e in eos)
        params = inspect.signature(model.forward).parameters
        #: keyword of the KV cache in ``model.forward`` (``cache`` since transformers 5.2x)
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def _extend(self, cache, rows, ids, keep):
        kw = {}
        if cache is not None:
            idx = None if rows is None else torch.as_tensor(rows, device=self.device)
            kw[self.cache_arg] = fork_cache(cache, idx)
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=keep, **kw)
        new = getattr(out, "cache", None)
        logits = out.logits
        if logits.dtype != torch.float32 and logits.dtype != torch.float64:
            logits = logits.float()
        return logits, new if new is not None else out.past_key_values

    def _cache_rows(self, cache) -> int:
        return int(cache.layers[0].keys.shape[0])

    def _check_prompt_cache(self, cache) -> None:
        for layer in getattr(cache, "layers", [None]):
            name = type(layer).__name__
            if name not in _SUPPORTED_LAYERS:
                raise ValueError(
                    f"the model's KV cache has a layer of type {name}; potentia's LM potential "
                    f"supports transformers' dynamic caches ({', '.join(_SUPPORTED_LAYERS)}), "
                    "i.e. attention-only causal LMs."
                )

    def __repr__(self) -> str:
        return f"TransformersBackend({self.name!r}, {self.dtype}, {self.device})"
