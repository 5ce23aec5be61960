"""Tokenization per task, NER label alignment, padding collator and length-grouped batching.

Texts are tokenized once, without padding; each batch is padded only to its own longest row
(dynamic padding), and training batches are drawn from groups of similar length so that little
of each batch is padding. Both are the main levers on CPU, where every padded token costs time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

IGNORE_INDEX = -100  # HF convention: the loss skips these positions (special tokens, continuation sub-tokens)


@dataclass
class EncodedSplit(torch.utils.data.Dataset):
    """Tokenized rows of one split: lists of ids (unpadded) and the gold target per row."""

    features: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(f["input_ids"]) for f in self.features), dtype=np.int64, count=len(self.features))


def encode_split(frame: pd.DataFrame, task: str, tokenizer: Any, max_length: int, targets: Sequence[Any]) -> EncodedSplit:
    """Tokenize a canonical frame (see core.data) and attach ``targets`` (from core.data.label_ids)."""
    if len(frame) == 0:
        return EncodedSplit([])
    if task == "token":
        enc = tokenizer(list(map(list, frame["tokens"])), is_split_into_words=True, truncation=True, max_length=max_length)
        features = []
        for i, tag_ids in enumerate(targets):
            word_ids = enc.word_ids(i)
            labels, previous = [], None
            for word in word_ids:
                # Only the first sub-token of each word carries its tag: the entity-level report is per word.
                labels.append(IGNORE_INDEX if word is None or word == previous else int(tag_ids[word]))
                previous = word
            features.append(_row(enc, i, labels))
        return EncodedSplit(features)
    texts = frame["text"].astype(str).tolist()
    pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame.columns else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    return EncodedSplit([_row(enc, i, targets[i]) for i in range(len(texts))])


def _row(enc: Any, i: int, labels: Any) -> dict[str, Any]:
    row = {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": labels}
    if "token_type_ids" in enc:
        row["token_type_ids"] = enc["token_type_ids"][i]
    return row


@dataclass
class PaddingCollator:
    """Pad a batch to its longest row (rounded up to ``pad_to_multiple_of``) and stack it into tensors."""

    pad_token_id: int
    task: str
    pad_to_multiple_of: int = 8

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(r["input_ids"]) for r in rows)
        width = int(math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of)
        batch: dict[str, torch.Tensor] = {}
        for key, pad in (("input_ids", self.pad_token_id), ("attention_mask", 0), ("token_type_ids", 0)):
            if key in rows[0]:
                batch[key] = torch.tensor([r[key] + [pad] * (width - len(r[key])) for r in rows], dtype=torch.long)
        labels = [r["labels"] for r in rows]
        if self.task == "token":
            batch["labels"] = torch.tensor([lab + [IGNORE_INDEX] * (width - len(lab)) for lab in labels], dtype=torch.long)
        elif self.task in ("multi_label", "regression"):
            batch["labels"] = torch.tensor(labels, dtype=torch.float32)
        else:
            batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return batch


class LengthGroupedBatches(torch.utils.data.Sampler[list[int]]):
    """Shuffled batches of similar-length rows, reproducible per (seed, epoch).

    Rows are shuffled, cut into windows of ``batch_size * window`` rows, sorted by length inside
    each window and split into batches; the batch order is shuffled again so long and short batches
    mix across the epoch. Call :meth:`set_epoch` before each epoch; ``skip`` drops the first batches
    (resuming mid-epoch replays exactly the batches that were not yet seen).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, window: int = 50, grouped: bool = True,
                 shard: tuple[int, int] = (0, 1)):
        self.lengths = np.asarray(lengths)
        self.shard = shard
        self.batch_size = batch_size
        self.seed = seed
        self.window = window
        self.grouped = grouped
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        if not self.grouped:
            return [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            window = order[start : start + span]
            window = window[np.argsort(-self.lengths[window], kind="stable")]
            batches.extend(window[i : i + self.batch_size].tolist() for i in range(0, len(window), self.batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def local_batches(self) -> list[list[int]]:
        """This process's share: with N processes each takes every N-th batch (and all of them with one)."""
        index, count = self.shard
        batches = self.batches()
        usable = len(batches) - len(batches) % count if count > 1 else len(batches)
        return batches[index:usable:count]

    def num_batches(self) -> int:
        full = math.ceil(len(self.lengths) / self.batch_size)
        index, count = self.shard
        return full // count if count > 1 else full

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.local_batches()[self.skip :]

    def __len__(self) -> int:
        return max(0, self.num_batches() - self.skip)


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """Evaluation batches sorted by length (least padding); callers restore row order from the indices."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def token_stats(lengths: np.ndarray, max_length: int) -> dict[str, float]:
    """Length summary under a tokenizer: what the data page and the run report show."""
    if len(lengths) == 0:
        return {"count": 0}
    lengths = np.asarray(lengths)
    return {
        "count": int(len(lengths)),
        "mean": float(lengths.mean()),
        "median": float(np.median(lengths)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "truncated_share": float((lengths >= max_length).mean()),
    }
