"""Splits: stratified, seeded train/validation/test splits and subsampling of canonical frames."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.errors import DataError, plural
from core.data.labels import row_labels


def text_keys(frame: pd.DataFrame, task: str) -> list[str]:
    """What makes two rows "the same text": trimmed text (and pair), or the words of a token row."""
    if task == "token":
        return [" ".join(tokens) for tokens in frame["tokens"]]
    if "text_pair" in frame:
        return [f"{a.strip()}\x1f{b.strip()}" for a, b in zip(frame["text"], frame["text_pair"], strict=True)]
    return [t.strip() for t in frame["text"]]


def drop_repeated(frame: pd.DataFrame, task: str) -> tuple[pd.DataFrame, list[str]]:
    """Before splitting: drop texts that carry different labels (all their rows), then repeats of a text
    (the first row stays) — what the bundled samples get, so that no text lands in two splits.

    Returns the frame and notes for the bundle's warnings (nothing dropped: no note)."""
    keys = pd.Series(text_keys(frame, task), index=frame.index)
    notes: list[str] = []
    if task in ("single_label", "pair", "multi_label"):
        labels = pd.Series(["|".join(sorted(v)) for v in row_labels(frame, task)], index=frame.index)
        conflicting = labels.groupby(keys).transform("nunique") > 1
        if conflicting.any():
            notes.append(f"dropped {plural(int(keys[conflicting].nunique()), 'text')} found with more than one label "
                         f"({plural(int(conflicting.sum()), 'row')})")
            frame, keys = frame[~conflicting.to_numpy()], keys[~conflicting]
    repeated = keys.duplicated().to_numpy()
    if repeated.any():
        notes.append(f"dropped {plural(int(repeated.sum()), 'repeated text')} (the first row of each stays)")
    return frame[~repeated].reset_index(drop=True), notes


def _strat_key(frame: pd.DataFrame, task: str) -> np.ndarray | None:
    if task in ("single_label", "pair"):
        return frame["label"].astype(str).to_numpy()
    if task == "multi_label":
        return np.array(["|".join(sorted(v)) for v in frame["label"]], dtype=object)
    if task == "regression" and len(frame) >= 10:
        bins = pd.qcut(frame["label"], q=min(5, len(frame) // 5), labels=False, duplicates="drop")
        return bins.astype(str).to_numpy()
    return None


def _take(idx: np.ndarray, size: int, key: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Split ``size`` indices off ``idx``; stratified on ``key`` where every class can be split."""
    if size <= 0:  # before the import: a run whose splits are all given never loads scikit-learn (0.7 s)
        return idx, idx[:0], True
    from sklearn.model_selection import train_test_split

    strat = None
    if key is not None:
        counts = Counter(key[idx])
        if min(counts.values()) >= 2 and len(counts) <= size and len(counts) <= len(idx) - size:
            strat = key[idx]
    rest, taken = train_test_split(idx, test_size=size, random_state=seed, stratify=strat)
    return rest, taken, strat is not None or key is None


def holdout_size(n: int, share: float) -> int:
    """Rows to hold out of ``n`` for a split ``share``: rounded, at least 1 when the share is above 0."""
    return max(1, int(n * share + 0.5)) if share > 0 else 0


def split(frame: pd.DataFrame, task: str, cfg: DataConfig, n_val: int, n_test: int, warnings: list, source: str):
    """Split ``n_val`` validation and ``n_test`` test rows off ``frame`` (stratified where it can).

    Returns train, validation, test. Appends to ``warnings`` when the split could not be stratified
    or rows had to move to training (a label that occurs nowhere else can't be learned).

    Raises:
        DataError: too few rows to hold out that many.
    """
    n = len(frame)
    if n - n_val - n_test < 1:
        raise DataError(
            f"only {plural(n, 'row')}: too few to hold out {n_val} for validation and {n_test} for test",
            file=source,
            fix="add rows, or lower data.validation_split / data.test_split",
        )
    key = _strat_key(frame, task)
    idx = np.arange(n)
    rest, test_idx, ok_test = _take(idx, n_test, key, cfg.seed)
    train_idx, val_idx, ok_val = _take(rest, n_val, key, cfg.seed)
    if not (ok_test and ok_val) and task in ("single_label", "pair"):
        rare = sorted(c for c, k in Counter(key).items() if k < 2)
        why = f"{plural(len(rare), 'class')} with a single row ({', '.join(rare[:5])})" if rare else "too few rows"
        warnings.append(f"could not stratify the split ({why}); split at random instead")
    train, val, test = frame.iloc[train_idx], frame.iloc[val_idx], frame.iloc[test_idx]
    # A class that landed only in validation/test can't be learned: move those rows to training.
    seen = set().union(*row_labels(train, task)) if len(train) else set()
    moved = 0
    parts = []
    for part in (val, test):
        unseen = np.array([not labels <= seen for labels in row_labels(part, task)], dtype=bool)
        if unseen.any():
            moved += int(unseen.sum())
            train = pd.concat([train, part[unseen]])
            seen |= set().union(*row_labels(part[unseen], task))
        parts.append(part[~unseen])
    if moved:
        warnings.append(
            f"moved {plural(moved, 'validation/test row')} whose label occurs nowhere else into training"
        )
    return train, parts[0], parts[1]


def subsample(frame: pd.DataFrame, limit: int | None, task: str, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows of ``frame``, stratified and seeded; in their original order."""
    if limit is None or len(frame) <= limit:
        return frame
    key = _strat_key(frame, task)
    _, taken, _ = _take(np.arange(len(frame)), limit, key, seed)
    return frame.iloc[np.sort(taken)]


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Sorted by the user's row number, with a fresh index."""
    return frame.sort_values("row", kind="stable").reset_index(drop=True)
