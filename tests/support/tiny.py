"""A tiny but real run config shared by the jobs and dashboard tests (2-layer bundled MiniLM, seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig


def tiny_config(root: str | Path = "", name: str = "tiny", *, train_rows: int = 64, eval_rows: int = 48,
                **train: Any) -> RunConfig:
    """rotten_tomatoes, MiniLM cut to 2 layers, max_length 64: a few optimizer steps on 2 CPU cores."""
    opts = {"epochs": 1, "batch_size": 16, "log_every": 1, **train}
    return RunConfig(
        name=name,
        data=DataConfig(source="sample:rotten_tomatoes", max_train_samples=train_rows, max_eval_samples=eval_rows),
        model=ModelConfig(num_layers=2, max_length=64),
        train=TrainConfig(**opts),
        output_dir=str(root),
    )
