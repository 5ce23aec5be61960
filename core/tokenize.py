"""Tokenization per task, NER label alignment, padding collator and length-grouped batching.

Texts are tokenized once, without padding; each batch is padded only to its own longest row
(dynamic padding), and training batches are drawn from groups of similar length so that little
of each batch is padding. Both are the main levers on CPU, where every padded token costs time.
With a ``cache_dir``, a split's token ids are stored on disk keyed by (texts, tokenizer, max_length,
task), so a later run on the same data and tokenizer skips tokenization.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
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


def encode_split(frame: pd.DataFrame, task: str, tokenizer: Any, max_length: int, targets: Sequence[Any],
                 cache_dir: str | Path | None = None) -> EncodedSplit:
    """Tokenize a canonical frame (see core.data) and attach ``targets`` (from core.data.label_ids).

    ``cache_dir``: reuse (or store) the token ids of an identical earlier call; see :func:`token_cache_key`.
    """
    if len(frame) == 0:
        return EncodedSplit([])
    key = token_cache_key(frame, task, tokenizer, max_length, targets) if cache_dir is not None else None
    if key is not None:
        cached = _load_cached(Path(cache_dir) / f"{key}.npz", task, targets)
        if cached is not None:
            return cached
    encoded = _encode(frame, task, tokenizer, max_length, targets)
    if key is not None:
        _store_cached(Path(cache_dir) / f"{key}.npz", encoded, task)
    return encoded


def _encode(frame: pd.DataFrame, task: str, tokenizer: Any, max_length: int, targets: Sequence[Any]) -> EncodedSplit:
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


def token_cache_key(frame: pd.DataFrame, task: str, tokenizer: Any, max_length: int, targets: Sequence[Any]) -> str | None:
    """A hash of everything the token ids depend on, or None for a tokenizer we can't fingerprint (slow ones).

    The tokenizer's fingerprint is its full serialised definition (vocabulary, normaliser, special
    tokens), so a changed vocabulary or lower-casing setting is a different key. Token-task keys include
    the tags, whose alignment to sub-tokens is stored with the ids.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    digest = hashlib.sha256()
    digest.update(json.dumps([task, max_length, type(tokenizer).__name__]).encode())
    definition = json.loads(backend.to_str())
    definition.pop("truncation", None), definition.pop("padding", None)  # set by the last call, not part of the tokenizer
    digest.update(json.dumps(definition, sort_keys=True).encode())
    columns = ["tokens"] if task == "token" else [c for c in ("text", "text_pair") if c in frame.columns]
    for column in columns:
        values = frame[column].map(list).tolist() if task == "token" else frame[column].astype(str).tolist()
        digest.update(json.dumps([column, values]).encode())
    if task == "token":
        digest.update(json.dumps([list(map(int, t)) for t in targets]).encode())
    return digest.hexdigest()[:32]


def _store_cached(path: Path, split: EncodedSplit, task: str) -> None:
    """Ids flattened with row offsets (.npz, no pickle); written atomically. A failed write only costs the cache."""
    rows = split.features
    offsets = np.cumsum([0] + [len(r["input_ids"]) for r in rows])
    arrays = {"offsets": offsets, "input_ids": np.fromiter((t for r in rows for t in r["input_ids"]), dtype=np.int64)}
    if "token_type_ids" in rows[0]:
        arrays["token_type_ids"] = np.fromiter((t for r in rows for t in r["token_type_ids"]), dtype=np.int8)
    if task == "token":
        arrays["labels"] = np.fromiter((t for r in rows for t in r["labels"]), dtype=np.int64)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass


def _load_cached(path: Path, task: str, targets: Sequence[Any]) -> EncodedSplit | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, KeyError):
        return None
    offsets = arrays["offsets"].tolist()
    if len(offsets) != len(targets) + 1:
        return None
    ids = arrays["input_ids"].tolist()
    types = arrays["token_type_ids"].tolist() if "token_type_ids" in arrays else None
    labels = arrays["labels"].tolist() if task == "token" else None
    features = []
    for i, target in enumerate(targets):
        a, b = offsets[i], offsets[i + 1]
        row = {"input_ids": ids[a:b], "attention_mask": [1] * (b - a), "labels": labels[a:b] if labels is not None else target}
        if types is not None:
            row["token_type_ids"] = types[a:b]
        features.append(row)
    return EncodedSplit(features)


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

    Rows are shuffled, cut into windows of ``batch_size * window`` rows (fewer for small sets: at
    least four windows per epoch), sorted by length inside
    each window and split into batches; the batch order is shuffled again so long and short batches
    mix across the epoch. Call :meth:`set_epoch` before each epoch; ``skip`` drops the first batches
    (resuming mid-epoch replays exactly the batches that were not yet seen).
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, window: int = 50, grouped: bool = True,
                 shard: tuple[int, int] = (0, 1)):
        self.lengths = np.asarray(lengths)
        self.shard = shard
        self.batch_size = batch_size * shard[1]  # the global batch: batch_size rows on each of the shard's processes
        self.seed = seed
        self.window = window
        self.grouped = grouped
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        if not self.grouped:
            order = rng.permutation(len(self.lengths))
            return [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        batches = self.window_batches(rng)
        return [batches[i] for i in rng.permutation(len(batches))]

    def window_batches(self, rng: np.random.Generator) -> list[list[int]]:
        """The grouped batches before their order is shuffled: window after window, each long to short."""
        order = rng.permutation(len(self.lengths))
        # At least 4 windows per epoch (as transformers' LengthGroupedSampler): with one window over a
        # small training set every batch holds texts of one length, and those correlated batches kept
        # LoRA at the class prior for 100 steps in 4 of 5 seeds (bench/accuracy.py: mean accuracy
        # 0.608 with one window, 0.648 with four).
        windows_of = max(1, min(self.window, len(order) // (self.batch_size * 4)))
        span = self.batch_size * windows_of
        batches = []
        for start in range(0, len(order), span):
            window = order[start : start + span]
            window = window[np.argsort(-self.lengths[window], kind="stable")]
            batches.extend(window[i : i + self.batch_size].tolist() for i in range(0, len(window), self.batch_size))
        return batches

    def local_batches(self) -> list[list[int]]:
        """This process's share. With N processes the batches are cut for the global batch
        (``batch_size * N`` rows) and each process takes every N-th row of each: a step sees the same rows
        as one process with the global batch, and each process similar lengths. A last global batch of
        fewer than N rows is dropped (a process without rows would hang the gradient all-reduce)."""
        index, count = self.shard
        if count == 1:
            return self.batches()
        return [batch[index::count] for batch in self.batches() if len(batch) >= count]

    def num_batches(self) -> int:
        count = self.shard[1]
        full, last = divmod(len(self.lengths), self.batch_size)  # self.batch_size is the global batch
        return full + (1 if last >= count else 0)

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.local_batches()[self.skip :]

    def __len__(self) -> int:
        return max(0, self.num_batches() - self.skip)


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """Evaluation batches sorted by length (least padding); callers restore row order from the indices."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def untruncated_lengths(frame: pd.DataFrame, task: str, tokenizer: Any) -> np.ndarray:
    """Tokens per row of a canonical frame with special tokens and without truncation (the Data page's histogram)."""
    if len(frame) == 0:
        return np.zeros(0, dtype=np.int64)
    if task == "token":
        enc = tokenizer([list(t) for t in frame["tokens"]], is_split_into_words=True, truncation=False)
    elif "text_pair" in frame.columns:
        enc = tokenizer(frame["text"].astype(str).tolist(), frame["text_pair"].astype(str).tolist(), truncation=False)
    else:
        enc = tokenizer(frame["text"].astype(str).tolist(), truncation=False)
    return np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(frame))


def token_stats(lengths: np.ndarray, max_length: int, *, truncated: bool = True) -> dict[str, float]:
    """Length summary under a tokenizer: what the data page and the run report show.

    ``truncated``: the lengths were measured after truncation to ``max_length`` (the run report), so a
    row at exactly ``max_length`` counts as cut; untruncated lengths (the Data page) are cut only above it.
    """
    if len(lengths) == 0:
        return {"count": 0}
    lengths = np.asarray(lengths)
    cut = lengths >= max_length if truncated else lengths > max_length
    return {
        "count": int(len(lengths)),
        "mean": float(lengths.mean()),
        "median": float(np.median(lengths)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "truncated_share": float(cut.mean()),
    }
