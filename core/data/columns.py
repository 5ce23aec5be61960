"""Columns: the names we recognise, cell helpers, and choosing the text/pair/label columns of a table."""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

import numpy as np
import pandas as pd

from core.data.errors import DataError, check_task

TEXT_NAMES = (
    "text", "sentence", "review", "content", "document", "body", "comment", "tweet",
    "utterance", "message", "passage_text",
)
FIRST_TEXT_NAMES = ("text", "sentence1", "text_a", "premise", "question", "sentence", "query", "text1")
PAIR_NAMES = ("text_pair", "sentence2", "text_b", "hypothesis", "answer", "passage", "text2", "second_text")
LABEL_NAMES = (
    "label", "labels", "category", "categories", "class", "target", "sentiment", "tag", "tags", "score",
    "topic", "intent", "rating", "gold", "y",
)
TOKEN_NAMES = ("tokens", "words", "token", "word")
TAG_NAMES = ("tags", "ner_tags", "labels", "tag", "label", "ner")
ID_NAMES = {"id", "idx", "index", "row", "row_id", "uid", "guid", "key"}
# Every name above: a header that holds one of them is a header, not a row of data.
KNOWN_NAMES = set(TEXT_NAMES + FIRST_TEXT_NAMES + PAIR_NAMES + LABEL_NAMES + TOKEN_NAMES + TAG_NAMES) | ID_NAMES


def is_missing(value: Any) -> bool:
    """None, NA, NaT or NaN (an empty CSV cell)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def as_text(value: Any) -> str:
    """A cell as text: '' when missing."""
    return "" if is_missing(value) else value if isinstance(value, str) else str(value)


def norm(name: Any) -> str:
    """A column name compared loosely: 'Review Text' → 'review_text'."""
    return re.sub(r"[\s\-.]+", "_", str(name).strip().lower())


def _is_texty(series: pd.Series) -> bool:
    values = [v for v in series.head(500) if not is_missing(v)]
    if not values:
        return False
    return sum(isinstance(v, str) for v in values) >= 0.9 * len(values)


def _is_listy(series: pd.Series) -> bool:
    values = [v for v in series.head(200) if not is_missing(v)]
    return bool(values) and all(isinstance(v, (list, tuple, np.ndarray)) for v in values)


def _is_id_like(name: Any, series: pd.Series) -> bool:
    normed = norm(name)
    if normed in ID_NAMES or normed.startswith("unnamed") or normed.endswith("_id"):
        return True
    return pd.api.types.is_integer_dtype(series) and len(series) > 20 and series.is_unique


def _nunique(series: pd.Series) -> int:
    values = [tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else v for v in series if not is_missing(v)]
    return len(set(values))


def _by_name(columns: list[Any], names: tuple[str, ...], exclude: set, want=None) -> Any | None:
    """First column whose normalised name is in ``names`` (in their order), then one that has a
    name as one of its words (``review_text``); ``want`` filters on the column's content."""
    norms = {c: norm(c) for c in columns if c not in exclude}
    for candidate in names:
        for column, normed in norms.items():
            if normed == candidate and (want is None or want(column)):
                return column
    for candidate in names:
        for column, normed in norms.items():
            if candidate in normed.split("_") and (want is None or want(column)):
                return column
    return None


def _resolve(df: pd.DataFrame, name: str, option: str) -> Any:
    columns = list(df.columns)
    if name in columns:
        return name
    folded = [c for c in columns if str(c).strip().lower() == str(name).strip().lower()]
    if len(folded) == 1:
        return folded[0]
    seen = ", ".join(map(str, columns))
    close = difflib.get_close_matches(str(name), [str(c) for c in columns], n=1, cutoff=0.4)
    hint = f"; the closest is {close[0]!r}" if close else ""
    raise DataError(
        f"there is no column {name!r} (data.{option}); columns seen: {seen}{hint}",
        column=str(name),
        fix=f"set data.{option} to one of: {seen} (or leave it empty to auto-detect)",
    )


def detect_columns(
    df: pd.DataFrame,
    task: str,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
) -> dict[str, str | None]:
    """Choose the text, second-text and label columns of ``df`` for ``task``.

    Named columns win (an exact name, or a unique case-insensitive match). Otherwise by name
    (text, sentence, review, content, document ... / label, labels, category, class, target,
    sentiment, tag, score ...; tokens/tags for the token task), then by content: the text is the
    string column with the longest mean length; the label the column with the fewest distinct
    values (the numeric one for regression, a list-valued one for multi_label).

    Returns ``{"text": ..., "text_pair": ... or None, "label": ...}``; for the token task ``text``
    is the tokens column and ``label`` the tags column.

    Raises:
        DataError: a named column is missing (listing the columns seen and the closest name), or
            no text/label column can be found.
    """
    check_task(task)
    columns = list(df.columns)
    text = _resolve(df, text_column, "text_column") if text_column else None
    pair = _resolve(df, text_pair_column, "text_pair_column") if text_pair_column else None
    label = _resolve(df, label_column, "label_column") if label_column else None
    taken = lambda: {c for c in (text, pair, label) if c is not None}  # noqa: E731

    if task == "token":
        text = text or _by_name(columns, TOKEN_NAMES, taken())
        label = label or _by_name(columns, TAG_NAMES, taken())
        listy = [c for c in columns if c not in taken() and _is_listy(df[c])]
        text = text or (listy.pop(0) if listy else None)
        label = label or (listy.pop(0) if listy else None)
        if text is None or label is None:
            raise DataError(
                f"can't find the {'tokens' if text is None else 'tags'} column; columns seen: "
                f"{', '.join(map(str, columns))}",
                fix="name the columns tokens and tags (lists of equal length), set data.text_column and "
                "data.label_column, or use a CoNLL file",
            )
        return {"text": text, "text_pair": None, "label": label}

    texty = lambda c: _is_texty(df[c])  # noqa: E731
    if text is None:
        text = _by_name(columns, FIRST_TEXT_NAMES if task == "pair" else TEXT_NAMES, taken(), texty)
    if pair is None and task in ("pair", "regression"):
        pair = _by_name(columns, PAIR_NAMES, taken(), texty)
    if label is None:
        label = _by_name(columns, LABEL_NAMES, taken())

    if text is None or (pair is None and task == "pair"):
        candidates = sorted(
            (c for c in columns if c not in taken() and texty(c)),
            key=lambda c: -df[c].map(lambda v: len(v) if isinstance(v, str) else 0).mean(),
        )
        if text is None and candidates:
            text = candidates.pop(0)
        if pair is None and task == "pair" and candidates:
            pair = candidates.pop(0)
    if text is None:
        raise DataError(
            f"can't find a text column; columns seen: {', '.join(map(str, columns))}",
            fix="set data.text_column to the column that holds the text",
        )
    if pair is None and task == "pair":
        raise DataError(
            f"the pair task needs two text columns but only {text!r} holds text; columns seen: "
            f"{', '.join(map(str, columns))}",
            fix="set data.text_pair_column to the column with the second text",
        )
    if label is None:
        label = _label_by_content(df, task, taken())
    if label is None:
        raise DataError(
            f"can't find a label column; columns seen: {', '.join(map(str, columns))}",
            fix="set data.label_column to the column that holds the labels",
        )
    return {"text": text, "text_pair": pair, "label": label}


def _numeric_share(series: pd.Series) -> float:
    if pd.api.types.is_bool_dtype(series) or _is_listy(series):
        return 0.0
    try:
        return float(pd.to_numeric(series, errors="coerce").notna().mean())
    except (TypeError, ValueError):
        return 0.0


def _label_by_content(df: pd.DataFrame, task: str, taken: set) -> Any | None:
    others = [c for c in df.columns if c not in taken and not _is_id_like(c, df[c])]
    if task == "regression":
        numeric = [c for c in others if _numeric_share(df[c]) >= 0.9]
        floats = [c for c in numeric if pd.api.types.is_float_dtype(df[c])]
        return (floats or numeric or [None])[-1]
    if task == "multi_label":
        listy = [c for c in others if _is_listy(df[c])]
        if listy:
            return listy[0]
    counted = [(c, _nunique(df[c])) for c in others]
    # A label repeats: at most half as many values as rows (or a handful, for tiny files).
    several = [(c, n) for c, n in counted if 2 <= n <= max(20, len(df) // 2)]
    if several:
        fewest = min(n for _, n in several)
        return [c for c, n in several if n == fewest][-1]
    single = [c for c, n in counted if n == 1]
    return single[-1] if single else None
