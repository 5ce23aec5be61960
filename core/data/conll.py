"""CoNLL files: one ``token<TAB or space>tag`` per line, a blank line between sentences.

Reading only: the tags are checked (and converted to IOB2) by :mod:`core.data.tags` when a file
becomes a token-task frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.data.errors import DataError, plural
from core.data.files import Raw, check_exists, check_size, decode, empty_file, encoding_warning, read_bytes


def read_conll(path: str | Path) -> pd.DataFrame:
    """Read a CoNLL file (``.conll``/``.bio``/``.txt``): one ``token<TAB or space>tag`` per line.

    A blank line — or one holding only whitespace, such as a lone tab — ends a sentence;
    ``-DOCSTART-`` lines are skipped. Files with more columns (CoNLL-2003: token POS chunk tag)
    are read when every line has the same count: the first column is the token, the last the tag.
    Returns a frame with ``tokens``, ``tags`` (lists, as written) and ``row`` (line of the
    sentence's first token).

    Raises:
        DataError: missing or empty file, or a line with the wrong number of columns (file, line).
    """
    raw = read_conll_raw(Path(path))
    frame = raw.frame.copy()
    frame["row"] = raw.rows
    frame.attrs["warnings"] = list(raw.warnings)
    return frame


def read_conll_raw(path: Path) -> Raw:
    """:func:`read_conll` as a :class:`Raw` (rows are the line of each sentence's first token)."""
    check_exists(path)
    check_size(path, path.stat().st_size)
    data = read_bytes(path)
    if not data.strip():
        raise empty_file(path)
    name = str(path)
    text, encoding = decode(data, name)
    frame, rows = _parse_conll(text, name)
    return Raw(frame, rows, name, "conll", encoding_warning(name, encoding))


def _parse_conll(text: str, name: str) -> tuple[pd.DataFrame, np.ndarray]:
    sentences: list[list[str]] = []
    tag_lists: list[list[str]] = []
    rows: list[int] = []
    tokens: list[str] = []
    tags: list[str] = []
    columns = 0
    for lineno, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("-DOCSTART-"):
            if tokens:
                sentences.append(tokens)
                tag_lists.append(tags)
                tokens, tags = [], []
            continue
        parts = stripped.split("\t") if "\t" in stripped else stripped.split()
        if not columns:
            columns = len(parts)
        if len(parts) < 2 or len(parts) != columns:
            expected = f"{columns} like the first token line" if columns >= 2 else "2 (token and tag)"
            raise DataError(
                f"the line has {plural(len(parts), 'column')} ({stripped[:40]!r}); expected {expected}",
                file=name,
                row=lineno,
                fix="write one token and its tag per line, separated by a tab or a space, "
                "with a blank line between sentences",
            )
        if not tokens:
            rows.append(lineno)
        tokens.append(parts[0])
        tags.append(parts[-1])
    if tokens:
        sentences.append(tokens)
        tag_lists.append(tags)
    if not sentences:
        raise DataError("the file holds no tokens", file=name, fix="point to a CoNLL file with token<TAB>tag lines")
    return pd.DataFrame({"tokens": sentences, "tags": tag_lists}), np.asarray(rows, dtype=np.int64)
