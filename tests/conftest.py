"""Shared fixtures: offline mode, one torch thread, and the embedded real LMs.

``gemma`` and ``smollm`` load each embedded model once per test session (the first run on
a machine converts the GGUF into the cache folder, about a minute; later runs load it in
seconds). Tests that use them carry ``@pytest.mark.real_model``.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True, scope="session")
def _offline_single_thread():
    """No hub access; torch on ``POTENTIA_TEST_THREADS`` threads (default 1: shared CPUs)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("POTENTIA_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def gemma():
    """The embedded Gemma 3 270M as ``LM.default()`` gives it: the default backend
    (llama.cpp, fp16 weights; loaded once per session)."""
    from potentia.lm import LM

    return LM.default()


@pytest.fixture(scope="session")
def gemma_tf():
    """The embedded Gemma 3 270M on transformers, fp32: the reference the other backends
    and weight types are measured against (loaded once per session)."""
    from potentia.lm import LM

    return LM.default(backend="transformers")


@pytest.fixture(scope="session")
def smollm():
    """The embedded SmolLM2 135M Instruct as a ``potentia.LM`` (loaded once per session)."""
    from potentia.lm import LM

    return LM.smollm2()


# ----- tiny offline models: real transformers code paths, random weights, built in ms -----
_CORPUS = [
    "the cat sat on the mat. the dog ran far away!",
    "héllo wörld 🙂 naïve café, ünïcödé",
    "  spaces\n\nnew lines\tand tabs\r\n",
    "Paris Lyon Marseille 12345 + - * / = <> {} []",
] * 10


def tiny_bytelevel_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer (300 ids, EOS ``<|endoftext|>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(_CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<pad>"
    )


def tiny_sentencepiece_tokenizer():
    """A Gemma-style tokenizer: ``▁`` spaces, ``<0xNN>`` byte fallback, BOS added."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
    words = ["▁", "t", "h", "e", "a", "c", "▁t", "th", "▁th", "the", "▁the", "at", "\n"]
    pieces += words
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = [("▁", "t"), ("t", "h"), ("▁t", "h"), ("th", "e"), ("▁th", "e"), ("a", "t")]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>"))
    tk.normalizer = normalizers.Replace(" ", "▁")
    tk.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tk.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tk.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    return tok


def tiny_model(kind: str, vocab_size: int, seed: int = 0):
    """A random causal LM: ``"llama"`` or ``"gemma3"`` (sliding window of 4 tokens)."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        initializer_range=0.3,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, **common)).eval()
    cfg = Gemma3TextConfig(
        num_hidden_layers=3,
        head_dim=16,
        sliding_window=4,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        **common,
    )
    return Gemma3ForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return tiny_bytelevel_tokenizer()


@pytest.fixture(scope="session")
def tiny_sp_tokenizer():
    return tiny_sentencepiece_tokenizer()


@pytest.fixture(scope="session")
def make_tiny_model():
    """The :func:`tiny_model` builder (a fixture, so tests need not import conftest)."""
    return tiny_model


@pytest.fixture(scope="session", params=["llama", "gemma3"])
def tiny_lm(request, tiny_tokenizer):
    """``potentia.LM`` on a random tiny model (both cache layouts) and a byte-level BPE."""
    from potentia.lm import LM

    return LM(tiny_model(request.param, len(tiny_tokenizer)), tiny_tokenizer, name=request.param)
