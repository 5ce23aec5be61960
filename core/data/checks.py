"""data_checks: duplicates, conflicting labels, train/eval overlap, label distributions, empty texts."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from core.data.bundle import DatasetBundle
from core.data.labels import row_labels, sort_labels
from core.data.splits import text_keys


def _shown(key: str) -> str:
    return key.replace("\x1f", " ║ ")


def _distribution(frame: pd.DataFrame, task: str) -> dict:
    if task == "regression":
        values = frame["label"].astype(float)
        if values.empty:
            return {"count": 0}
        return {
            "count": int(values.size),
            "mean": float(values.mean()),
            "std": float(values.std(ddof=0)),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    if task == "token":  # entities per type (each entity starts with a B- tag in valid BIO)
        counts = Counter(t[2:] for tags in frame["tags"] for t in tags if t.startswith("B-"))
    else:
        counts = Counter(label for labels in row_labels(frame, task) for label in labels)
    return {name: int(counts[name]) for name in sort_labels(counts)}


def data_checks(bundle: DatasetBundle, max_examples: int = 5) -> dict:
    """Duplicates, train/eval overlap (leakage), label distributions and empty texts of a bundle.

    Texts compare exactly after trimming surrounding whitespace (tokens joined by spaces for the
    token task; text and text_pair together for pairs). Returns::

        {"sizes": {split: n},
         "duplicates": {"count": rows repeating an earlier train text, "examples": [{"text", "rows"}]},
         "conflicting_labels": {"count": train texts with several labels, "examples": [{"text", "rows", "labels"}]},
         "overlap": {"validation"|"test": {"count": rows whose text is also in train,
                                           "examples": [{"text", "rows", "train_rows"}]}},
         "label_distribution": {split: {label: count}} (regression: count/mean/std/min/max;
                                token: entities per type),
         "empty": {split: empty texts left, "dropped": empty texts dropped while loading}}
    """
    task = bundle.task
    train_keys = text_keys(bundle.train, task)
    train_rows: dict[str, list[int]] = {}
    for key, row in zip(train_keys, bundle.train["row"], strict=True):
        train_rows.setdefault(key, []).append(int(row))
    repeated = {k: rows for k, rows in train_rows.items() if len(rows) > 1}
    duplicates = {
        "count": sum(len(rows) - 1 for rows in repeated.values()),
        "examples": [{"text": _shown(k), "rows": rows} for k, rows in list(repeated.items())[:max_examples]],
    }
    conflicts: list[dict] = []
    if task in ("single_label", "pair", "multi_label") and repeated:
        label_of: dict[str, set] = {}
        for key, labels in zip(train_keys, row_labels(bundle.train, task), strict=True):
            if key in repeated:
                label_of.setdefault(key, set()).add("|".join(sorted(labels)))
        conflicts = [
            {"text": _shown(k), "rows": repeated[k], "labels": sorted(v)} for k, v in label_of.items() if len(v) > 1
        ]
    overlap = {}
    for split in ("validation", "test"):
        frame = getattr(bundle, split)
        hits: dict[str, list[int]] = {}
        for key, row in zip(text_keys(frame, task), frame["row"], strict=True):
            if key in train_rows:
                hits.setdefault(key, []).append(int(row))
        overlap[split] = {
            "count": sum(len(rows) for rows in hits.values()),
            "examples": [
                {"text": _shown(k), "rows": rows, "train_rows": train_rows[k]}
                for k, rows in list(hits.items())[:max_examples]
            ],
        }
    empty: dict[str, int] = {}
    for split, frame in bundle.frames().items():
        empty[split] = sum(1 for k in text_keys(frame, task) if not k.replace("\x1f", "").strip())
    empty["dropped"] = sum(bundle.dropped_empty.values())
    return {
        "sizes": bundle.sizes(),
        "duplicates": duplicates,
        "conflicting_labels": {"count": len(conflicts), "examples": conflicts[:max_examples]},
        "overlap": overlap,
        "label_distribution": {split: _distribution(frame, task) for split, frame in bundle.frames().items()},
        "empty": empty,
    }
