"""Canonical frames: map a file's columns to the task's layout and validate every row.

=================  ===========================================================
single_label/pair  ``text`` (``text_pair`` for pair), ``label`` (str), ``row``
multi_label        ``text``, ``label`` (list[str]), ``row``
regression         ``text`` (optional ``text_pair``), ``label`` (float), ``row``
token              ``tokens`` (list[str]), ``tags`` (list[str], IOB2), ``row``
=================  ===========================================================

Every other column of a table (a ``source``, ``speaker`` or ``date``) rides along as ``extra:<name>``:
numbers as numbers, anything else as text. Evaluation keeps them in ``predictions.parquet``, where
error analysis slices by them (core.slices).
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.columns import as_text, is_missing
from core.data.errors import DataError, plural
from core.data.files import Raw, where
from core.data.labels import label_str, parse_multi
from core.data.tags import check_tag_syntax, to_iob2

EXTRA_PREFIX = "extra:"


def extra_columns(df: pd.DataFrame, mapping: dict) -> dict[str, list[Any]]:
    """The columns of ``df`` the task doesn't read, as ``extra:<name>`` (numbers kept, the rest as text, gaps None)."""
    used = {str(v) for v in mapping.values() if v is not None}
    out: dict[str, list[Any]] = {}
    for name in df.columns:
        if str(name) in used or str(name) == "row":
            continue
        series = df[name]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            out[EXTRA_PREFIX + str(name)] = series.astype(float).tolist()
        else:
            out[EXTRA_PREFIX + str(name)] = [None if is_missing(v) else as_text(v) for v in series]
    return out


def canonical(raw: Raw, task: str, mapping: dict, cfg: DataConfig, role: str) -> tuple[pd.DataFrame, list, int]:
    """Map ``raw`` to the task's canonical frame and validate it.

    Returns the frame, warnings, and the number of empty texts dropped. ``role`` is "" for the
    main source, else "validation"/"test" (to prefix warnings with the file they concern).

    Raises:
        DataError: empty texts (with ``empty_texts: error``), missing labels, lists where one
            label belongs, non-numeric regression targets, tags that don't fit their tokens.
    """
    df = raw.frame
    prefix = f"{raw.path}: " if role else ""
    label_col = mapping["label"]
    if task == "token":
        return _canonical_token(raw, mapping, cfg, prefix)

    texts = [as_text(v) for v in df[mapping["text"]]]
    columns = {"text": texts}
    pair_col = mapping.get("text_pair")
    if pair_col is not None:
        columns["text_pair"] = [as_text(v) for v in df[pair_col]]
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if pair_col is not None:
        empty = sorted(set(empty) | {i for i, t in enumerate(columns["text_pair"]) if not t.strip()})

    values = df[label_col].tolist()
    if task == "multi_label":
        labels: list[Any] = [parse_multi(v, cfg.label_delimiter) for v in values]
        missing = [i for i, v in enumerate(labels) if v is None]
    elif task == "regression":
        stripped = pd.Series([v.strip() if isinstance(v, str) else v for v in values], dtype=object)
        labels = pd.to_numeric(stripped, errors="coerce").astype(float).tolist()
        missing = [i for i, v in enumerate(values) if is_missing(v) or (isinstance(v, str) and not v.strip())]
    else:
        listy = [i for i, v in enumerate(values) if isinstance(v, (list, tuple, np.ndarray))]
        if listy:
            raise DataError(
                f"the labels are lists ({where(raw, listy[:3])} ...), i.e. several labels per text",
                file=raw.path,
                row=int(raw.rows[listy[0]]),
                column=str(label_col),
                fix="use the multi_label task for several labels per text",
            )
        labels = [None if is_missing(v) or not str(v).strip() else label_str(v) for v in values]
        missing = [i for i, v in enumerate(labels) if v is None]

    keep = np.ones(len(df), dtype=bool)
    warnings: list[str] = []
    if empty:
        what = f"{plural(len(empty), 'empty text')} ({where(raw, empty)})"
        if cfg.empty_texts == "error":
            raise DataError(
                f"{what} are empty or whitespace only" if len(empty) > 1 else f"{what} is empty or whitespace only",
                file=raw.path,
                row=int(raw.rows[empty[0]]),
                column=str(mapping["text"] if pair_col is None else f"{mapping['text']}/{pair_col}"),
                fix="fill in or delete those rows, or set data.empty_texts to drop to skip them",
            )
        keep[empty] = False
        warnings.append(f"{prefix}dropped {what}")
    missing = [i for i in missing if keep[i]]
    if missing:
        raise DataError(
            f"the label is missing in {where(raw, missing)}",
            file=raw.path,
            row=int(raw.rows[missing[0]]),
            column=str(label_col),
            fix="fill in the labels or delete those rows (and check that data.label_column is the label)"
            + ("; write [] for a text with none of the labels" if task == "multi_label" else ""),
        )
    if task == "regression":
        bad = [i for i, (v, x) in enumerate(zip(values, labels, strict=True)) if keep[i] and not math.isfinite(x)]
        if bad:
            shown = ", ".join(f"{where(raw, [i])} ({values[i]!r})" for i in bad[:5])
            raise DataError(
                f"the regression target must be a number; {plural(len(bad), 'value')} {'is' if len(bad) == 1 else 'are'} "
                f"not: {shown}{' ...' if len(bad) > 5 else ''}",
                file=raw.path,
                row=int(raw.rows[bad[0]]),
                column=str(label_col),
                fix="write plain numbers such as 3.5 in that column, or pick the classification task for named classes",
            )
    columns["label"] = labels
    columns |= extra_columns(df, mapping)
    frame = pd.DataFrame(columns)
    frame["row"] = raw.rows
    frame = frame[keep].reset_index(drop=True)
    if task == "regression":
        frame["label"] = frame["label"].astype(float)
    return frame, warnings, len(empty)


def _as_list(value: Any) -> list[str] | None:
    """A tokens/tags cell as a list: a list, a JSON or Python list literal, or whitespace-split text."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                try:
                    parsed = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    parsed = None
            if isinstance(parsed, list):
                return [str(v) for v in parsed]
        return text.split()
    return None


def _canonical_token(raw: Raw, mapping: dict, cfg: DataConfig, prefix: str) -> tuple[pd.DataFrame, list, int]:
    df = raw.frame
    tok_col, tag_col = mapping["text"], mapping["label"]
    tokens = [_as_list(v) for v in df[tok_col]]
    tags = [_as_list(v) for v in df[tag_col]]
    line_based = raw.kind == "conll"
    for i, (toks, tgs) in enumerate(zip(tokens, tags, strict=True)):
        row = int(raw.rows[i])
        if tgs is None or (toks is not None and len(toks) != len(tgs)):
            raise DataError(
                "the tags are missing" if tgs is None else f"{len(toks)} tokens but {len(tgs)} tags",
                file=raw.path,
                row=row,
                column=str(tag_col),
                fix="give exactly one tag per token",
            )
        check_tag_syntax(tgs, row, file=raw.path, line_based=line_based)
    warnings: list[str] = []
    # The scheme (IOB2, IOB1, BIOES, BILOU) is the file's, so it is judged on all sentences at once.
    conversion = to_iob2(tags, raw.rows, file=raw.path, line_based=line_based)
    tags = conversion.tags
    if conversion.note:
        warnings.append(f"{prefix}{conversion.note}")
    empty = [i for i, t in enumerate(tokens) if not t]
    if empty:
        what = f"{plural(len(empty), 'empty sentence')} ({where(raw, empty)})"
        if cfg.empty_texts == "error":
            raise DataError(
                f"{what} without tokens",
                file=raw.path,
                row=int(raw.rows[empty[0]]),
                column=str(tok_col),
                fix="delete those rows, or set data.empty_texts to drop to skip them",
            )
        warnings.append(f"{prefix}dropped {what}")
    frame = pd.DataFrame({"tokens": tokens, "tags": tags, "row": raw.rows})
    keep = np.array([bool(t) for t in tokens])
    return frame[keep].reset_index(drop=True), warnings, len(empty)
