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
    """The embedded Gemma 3 270M as a ``potentia.LM`` (loaded once per session)."""
    from potentia.models.embedded import load_gemma

    return load_gemma()


@pytest.fixture(scope="session")
def smollm():
    """The embedded SmolLM2 135M Instruct as a ``potentia.LM`` (loaded once per session)."""
    from potentia.models.embedded import load_smollm2

    return load_smollm2()
