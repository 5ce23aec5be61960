"""Labels: the label space a model predicts, label cells as names, and labels as model targets."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.data.columns import is_missing
from core.data.errors import DataError, check_task, list_rows


@dataclass(frozen=True)
class LabelSpace:
    """The labels a model predicts, in id order.

    ``names`` is sorted (numerically when every label is an integer); empty for regression; for the
    token task the BIO tags with ``O`` first, then ``B-``/``I-`` of every entity type, sorted.
    """

    names: tuple[str, ...]

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def num_labels(self) -> int:
        """Outputs of the head: one per label, or 1 for regression."""
        return len(self.names) or 1

    @property
    def entity_types(self) -> tuple[str, ...]:
        """Entity types of a BIO label space (``PER``, ``LOC`` ...); empty for other tasks."""
        return tuple(sorted({n[2:] for n in self.names if n[:2] in ("B-", "I-")}))


def sort_labels(names: set[str] | list[str]) -> tuple[str, ...]:
    """Label names in id order: numerically when every name is an integer, else alphabetically."""
    names = set(names)
    if names and all(re.fullmatch(r"-?\d+", n) for n in names):
        return tuple(sorted(names, key=int))
    return tuple(sorted(names))


def label_str(value: Any) -> str:
    """A label cell as its name: 3.0 → '3', ' pos ' → 'pos'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_multi(value: Any, delimiter: str) -> list[str] | None:
    """A multi-label cell as a list of names; None when the cell is missing.

    Takes a list, a JSON or Python list literal (``["a", "b"]``, ``['a']``, ``[]``), or text split
    on ``delimiter``. Names are trimmed; repeats and empty names are dropped.
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
    elif is_missing(value):
        return None
    else:
        text = str(value).strip()
        items = None
        if text.startswith("[") and text.endswith("]"):
            for parse in (json.loads, ast.literal_eval):
                try:
                    parsed = parse(text)
                except (ValueError, SyntaxError):
                    continue
                if isinstance(parsed, list):
                    items = parsed
                    break
        if items is None:
            items = text.split(delimiter) if delimiter else [text]
    out: list[str] = []
    for item in items:
        name = label_str(item)
        if name and name not in out:
            out.append(name)
    return out


def row_labels(frame: pd.DataFrame, task: str) -> list[set[str]]:
    """The label names each row uses (entity types for the token task); empty for regression."""
    if task == "regression":
        return [set() for _ in range(len(frame))]
    if task == "token":
        return [{t[2:] for t in set(tags) if t != "O"} for tags in frame["tags"]]
    if task == "multi_label":
        return [set(v) for v in frame["label"]]
    return [{v} for v in frame["label"]]


def label_space(frame: pd.DataFrame, task: str) -> LabelSpace:
    """The label space of a canonical frame (the training rows)."""
    if task == "regression":
        return LabelSpace(())
    names: set[str] = set().union(*row_labels(frame, task)) if len(frame) else set()
    if task == "token":
        return LabelSpace(("O", *sorted([f"B-{t}" for t in names] + [f"I-{t}" for t in names])))
    return LabelSpace(sort_labels(names))


def label_ids(frame: pd.DataFrame, bundle_or_labels: Any, task: str) -> list:
    """Gold labels of ``frame`` as model targets.

    ``bundle_or_labels`` is a :class:`~core.data.bundle.DatasetBundle` or a :class:`LabelSpace`.
    Returns one entry per row: an int (single_label/pair), a multi-hot list[float] (multi_label),
    a float (regression), or a list[int] of tag ids (token).

    Raises:
        DataError: a label is not in the label space (rows listed).
    """
    check_task(task)
    # A DatasetBundle carries its LabelSpace as .labels (duck-typed: bundle.py sits above this module).
    labels = bundle_or_labels if isinstance(bundle_or_labels, LabelSpace) else bundle_or_labels.labels
    if task == "regression":
        return [float(v) for v in frame["label"]]
    index = labels.label2id
    rows = frame["row"].tolist() if "row" in frame else list(range(1, len(frame) + 1))
    column = "tags" if task == "token" else "label"
    unknown = [
        (row, name)
        for row, names in zip(rows, frame[column], strict=True)
        for name in (names if task in ("token", "multi_label") else [names])
        if name not in index
    ]
    if unknown:
        raise DataError(
            f"{len({n for _, n in unknown})} label(s) not in the label space: "
            f"{', '.join(sorted({repr(n) for _, n in unknown})[:10])} ({list_rows(sorted({r for r, _ in unknown}))})",
            row=int(unknown[0][0]),
            column=column,
            fix=f"use labels the model knows ({', '.join(labels.names[:20])})",
        )
    if task == "token":
        return [[index[t] for t in tags] for tags in frame["tags"]]
    if task == "multi_label":
        out = []
        for names in frame["label"]:
            hot = [0.0] * len(labels.names)
            for name in names:
                hot[index[name]] = 1.0
            out.append(hot)
        return out
    return [index[v] for v in frame["label"]]
