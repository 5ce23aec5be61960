"""Synthetic token data and a tiny random BERT, for tests whose point is a mechanism rather than a model."""

from __future__ import annotations

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification

from core.tokenize import EncodedSplit


def synthetic(n: int, seed: int, *, marker: int = 7, ids: tuple[int, int] = (10, 60), lengths: tuple[int, int] = (4, 20),
              cls: int = 1, sep: int = 2) -> EncodedSplit:
    """Label 1 when the marker token occurs in the row: learnable in a few steps by any strategy.

    The defaults fit `tiny_model`'s 64-token vocabulary; tests on the real MiniLM pass its own ids.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        length = int(rng.integers(*lengths))
        row = rng.integers(*ids, size=length).tolist()
        label = int(rng.random() < 0.5)
        if label:
            row[int(rng.integers(0, length))] = marker
        rows.append({"input_ids": [cls, *row, sep], "attention_mask": [1] * (length + 2), "labels": label})
    return EncodedSplit(rows)


def tiny_model(seed: int = 0, vocab_size: int = 64, max_positions: int = 64) -> BertForSequenceClassification:
    """A 2-layer, 32-wide random BERT: seconds to train, real BERT module names."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions, num_labels=2)
    return BertForSequenceClassification(config)


def accuracy(preds) -> dict[str, float]:
    return {"accuracy": float((preds.scores.argmax(1) == preds.gold).mean())}
