"""Shared fixtures. Tests never reach the Hugging Face hub; the bundled MiniLM is the real model."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def runs_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("TUNEBOARD_HOME", str(root))
    return root


@pytest.fixture(scope="session")
def tokenizer():
    from core.config import ModelConfig
    from core.models import load_tokenizer

    return load_tokenizer(ModelConfig())
