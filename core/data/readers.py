"""Table readers (CSV/TSV/JSON/JSONL/Parquet, compressed or not) and folders of ``<label>/*.txt``."""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.data.columns import KNOWN_NAMES, norm
from core.data.errors import DataError, plural
from core.data.files import (
    ENCODING_NAMES,
    Raw,
    check_exists,
    check_size,
    decode,
    empty_file,
    encoding_warning,
    read_bytes,
)
from core.data.formats import COMPRESSIONS, SUPPORTED_EXTENSIONS, format_name


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/JSON/JSONL/Parquet file (also ``.gz``/``.bz2``/``.xz``/``.zip``) as is.

    Text encodings tried: UTF-8 (with or without BOM), GB18030, Windows-1252/Latin-1. Only empty
    cells count as missing (``"NA"`` or ``"None"`` stay text). A first row that looks like data
    rather than column names is read as data with columns ``column_1..N``. Notes about the
    encoding or the header are in ``frame.attrs["warnings"]``.

    Raises:
        DataError: missing file, unsupported extension, empty file, unreadable encoding,
            malformed CSV/JSON, two columns of the same name, or a file too large for the memory
            available.
    """
    raw = read_table_raw(Path(path))
    frame = raw.frame
    frame.attrs["warnings"] = list(raw.warnings)
    return frame


def read_table_raw(path: Path, expect: tuple[str, ...] = (), *, as_written: bool = False) -> Raw:
    """:func:`read_table` with the rows as the user counts them. ``expect``: column names the
    config asks for (a header that holds one is trusted as a header). ``as_written``: CSV/TSV cells as
    the text they are (``01234`` stays ``01234``, an empty cell ``""``), for a copy that changes only what
    it means to (core.label_issues.corrected_copy)."""
    check_exists(path)
    if path.is_dir():
        raise DataError(
            "this is a folder, not a table file",
            file=str(path),
            fix="point to a CSV/TSV/JSON/JSONL/Parquet file, or use a folder of <label>/*.txt for single_label",
        )
    fmt = format_name(path)
    if fmt is None or fmt == "conll":
        raise unsupported(path, fmt)
    check_size(path, path.stat().st_size)
    name = str(path)
    warnings: list[str] = []
    if fmt == "parquet":
        if path.stat().st_size == 0:
            raise empty_file(path)
        frame = _read_parquet(path)
        rows = np.arange(1, len(frame) + 1)
    else:
        data = read_bytes(path)
        if not data.strip():
            raise empty_file(path)
        text, encoding = decode(data, name)
        warnings += encoding_warning(name, encoding)
        if fmt in ("csv", "tsv"):
            sep = "\t" if fmt == "tsv" else _sniff_sep(text)
            frame, rows, note = _parse_delimited(text, sep, name, expect, as_written)
            warnings += note
        elif fmt == "json":
            frame, rows, fmt = _parse_json(text, name)
        else:
            frame, rows = _parse_jsonl(text, name)
    if frame.shape[1] == 0 or len(frame) == 0:
        if frame.shape[1]:
            raise DataError(
                f"there is a header ({', '.join(map(str, frame.columns))}) but no data rows",
                file=name,
                fix="add data rows below the header, or point to the right file",
            )
        raise empty_file(path)
    headerless = fmt in ("csv", "tsv") and int(rows[0]) == 1
    return Raw(
        frame.reset_index(drop=True), np.asarray(rows, dtype=np.int64), name, fmt, warnings, headerless=headerless,
        sep=sep if fmt in ("csv", "tsv") else None,
    )


def unsupported(path: Path, fmt: str | None) -> DataError:
    """The error for a file no table reader takes (CoNLL files outside the token task included)."""
    if fmt == "conll":
        return DataError(
            f"{path.suffix} files are read as CoNLL token/tag files, which only the token task uses",
            file=str(path),
            fix="for classification use a CSV, TSV, JSON, JSONL or Parquet file or a folder of <label>/*.txt; "
            "for named entities set the task to token",
        )
    return DataError(
        f"unsupported file type {''.join(path.suffixes) or '(no extension)'!r}",
        file=str(path),
        fix=f"use one of {', '.join(SUPPORTED_EXTENSIONS)} (optionally compressed as "
        f"{', '.join(COMPRESSIONS)}), or a folder of <label>/*.txt",
    )


# --------------------------------------------------------------------------------------------
# Two columns of the same name
# --------------------------------------------------------------------------------------------


def repeated_names(names: list[Any], skip_empty: bool = True) -> dict[str, list[int]]:
    """Each name given more than once → its 1-based positions. Empty header cells don't count
    with ``skip_empty`` (pandas numbers those itself: 'Unnamed: 3')."""
    positions: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names, 1):
        if str(name).strip() or not skip_empty:
            positions[str(name)].append(i)
    return {name: where for name, where in positions.items() if len(where) > 1}


def describe_repeats(repeats: dict[str, list[int]], what: str = "columns") -> str:
    """``"columns 1 and 2 are both named 'text'"``, one clause per repeated name."""
    parts = []
    for name, where in repeats.items():
        shown = ", ".join(map(str, where[:-1])) + f" and {where[-1]}"
        parts.append(f"{what} {shown} are {'both' if len(where) == 2 else 'all'} named {name!r}")
    return "; ".join(parts)


def _duplicate_columns_error(repeats: dict[str, list[int]], name: str, row: int | None, where: str) -> DataError:
    first = next(iter(repeats))
    return DataError(
        f"{describe_repeats(repeats)}, so only one of them would be read",
        file=name,
        row=row,
        fix=f"rename one of them {where} (e.g. {first!r} and {first + '_2'!r}), or delete the one you don't need",
    )


# pandas renames a repeated header name 'text' to 'text.1' (then 'text.2' ...).
_MANGLED = re.compile(r".\.\d+$")


def _check_header(text: str, sep: str, columns: list[Any], name: str) -> None:
    """Refuse a CSV/TSV header that names two columns alike, judged on the header as written."""
    if not any(_MANGLED.search(str(c)) for c in columns):
        return
    header = pd.read_csv(io.StringIO(text), sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    repeats = repeated_names(header.iloc[0].tolist())
    if repeats:
        raise _duplicate_columns_error(repeats, name, 1, "in the header row")


def _read_parquet(path: Path) -> pd.DataFrame:
    name = str(path)
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        repeats: dict[str, list[int]] = {}
        try:
            import pyarrow.parquet as pq

            repeats = repeated_names(pq.read_schema(path).names)
        except Exception:  # not even a schema: the error below says why
            pass
        if repeats:
            raise _duplicate_columns_error(repeats, name, None, "before writing the Parquet file") from None
        raise DataError(
            f"can't read it as Parquet ({type(exc).__name__}: {exc})",
            file=name,
            fix="check that the file is a complete Parquet file, or save the data as CSV/JSONL",
        ) from None
    repeats = repeated_names(list(frame.columns))
    if repeats:
        raise _duplicate_columns_error(repeats, name, None, "before writing the Parquet file")
    return frame


class _RepeatedKeys(dict):
    """A JSON object that named a key twice; ``dict`` keeps the last value, ``names`` all the keys."""

    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__(pairs)
        self.names = [key for key, _ in pairs]


def _json_object(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else _RepeatedKeys(pairs)


def _repeated_keys_error(obj: _RepeatedKeys, name: str, row: int | None, what: str) -> DataError:
    repeats = repeated_names(obj.names, skip_empty=False)
    first = next(iter(repeats))
    return DataError(
        f"{what} repeats a key ({describe_repeats(repeats, 'keys')}), so only the last value would be read",
        file=name,
        row=row,
        fix=f"rename one of them (e.g. {first!r} and {first + '_2'!r}), or delete the one you don't need",
    )


# --------------------------------------------------------------------------------------------
# Parsers
# --------------------------------------------------------------------------------------------


def _sniff_sep(text: str) -> str:
    """The delimiter of a .csv file: whichever of , ; TAB | the first line holds most (ties: comma)."""
    first = text.split("\n", 1)[0]
    counts = {sep: first.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=lambda s: (counts[s], s == ","))
    return best if counts[best] else ","


def _header_looks_like_data(columns: list[Any], expect: tuple[str, ...]) -> bool:
    """Whether pandas' header row is really data: a number, or a sentence where a name should be.

    A header holding a known column name (or one the user named) is trusted.
    """
    names = [str(c) for c in columns]
    if any(name in expect or norm(name) in KNOWN_NAMES for name in names):
        return False
    if any(re.fullmatch(r"\s*-?\d+(\.\d*)?([eE]-?\d+)?\s*", name) for name in names):
        return True
    if any(set(norm(name).split("_")) & KNOWN_NAMES for name in names):
        return False
    return any(len(name.split()) >= 5 or len(name) > 60 for name in names)


def _parse_delimited(text: str, sep: str, name: str, expect: tuple[str, ...],
                     as_written: bool = False) -> tuple[pd.DataFrame, Any, list]:
    def parse(header: int | None) -> pd.DataFrame:
        if as_written:
            return pd.read_csv(io.StringIO(text), sep=sep, header=header, dtype=str, keep_default_na=False)
        return pd.read_csv(io.StringIO(text), sep=sep, header=header, keep_default_na=False, na_values=[""])

    try:
        frame = parse(0)
        warnings: list[str] = []
        first_row = 2
        if len(frame) and _header_looks_like_data(list(frame.columns), expect):
            shown = ", ".join(repr(str(c))[:40] for c in frame.columns[:3])
            frame = parse(None)
            frame.columns = [f"column_{i + 1}" for i in range(frame.shape[1])]
            first_row = 1
            warnings.append(
                f"{name}: the first row looks like data, not column names ({shown}); read it as data "
                f"with columns column_1..column_{frame.shape[1]}. Add a header row (e.g. text,label) "
                "to name the columns"
            )
        else:
            _check_header(text, sep, list(frame.columns), name)
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", file=name, fix="point to a file that holds data") from None
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+), saw (\d+)", str(exc))
        expected = re.search(r"Expected (\d+) fields", str(exc))
        if match and expected:
            raise DataError(
                f"expected {expected.group(1)} fields but found {match.group(2)} "
                f"(the delimiter is {sep!r})",
                file=name,
                row=int(match.group(1)),
                fix=f"quote cells that contain {sep!r} (\"like, this\"), or save the file again with proper quoting",
            ) from None
        raise DataError(
            f"can't parse it as {'TSV' if sep == chr(9) else 'CSV'} ({exc})",
            file=name,
            fix="check quoting and delimiters, or save the data as JSONL",
        ) from None
    return frame, np.arange(first_row, first_row + len(frame)), warnings


def _parse_json(text: str, name: str) -> tuple[pd.DataFrame, Any, str]:
    try:
        obj = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object per line: JSON Lines with a .json name
            frame, rows = _parse_jsonl(text, name)
            return frame, rows, "jsonl"
        raise DataError(
            f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
            file=name,
            fix="fix the JSON there; use a list of records [{\"text\": ..., \"label\": ...}] or an object of columns",
        ) from None
    if isinstance(obj, _RepeatedKeys):
        raise _repeated_keys_error(obj, name, None, "the JSON object")
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), list):
        inner = next(iter(obj.values()))
        if inner and all(isinstance(r, dict) for r in inner):
            obj = inner  # {"data": [records]}
    if isinstance(obj, list):
        bad = [i + 1 for i, r in enumerate(obj) if not isinstance(r, dict)]
        if bad:
            raise DataError(
                f"record {bad[0]} is a {type(obj[bad[0] - 1]).__name__}, not an object "
                f"({plural(len(bad), 'record')} like this)",
                file=name,
                row=bad[0],
                fix="make each record an object such as {\"text\": \"...\", \"label\": \"pos\"}",
            )
        repeated = next((i for i, r in enumerate(obj) if type(r) is _RepeatedKeys), None)
        if repeated is not None:
            raise _repeated_keys_error(obj[repeated], name, repeated + 1, f"record {repeated + 1}")
        frame = pd.DataFrame.from_records(obj)
    elif isinstance(obj, dict) and all(isinstance(v, (list, dict)) for v in obj.values()):
        lengths = {len(v) for v in obj.values()}
        if len(lengths) > 1:
            raise DataError(
                f"the columns have different lengths ({', '.join(f'{k}: {len(v)}' for k, v in obj.items())})",
                file=name,
                fix="give every column the same number of values",
            )
        frame = pd.DataFrame({k: list(v.values()) if isinstance(v, dict) else v for k, v in obj.items()})
    else:
        raise DataError(
            f"the JSON holds a {type(obj).__name__}, not records or columns",
            file=name,
            fix="use a list of records [{\"text\": ..., \"label\": ...}] or an object of columns {\"text\": [...]}",
        )
    return frame, np.arange(1, len(frame) + 1), "json"


def _parse_jsonl(text: str, name: str) -> tuple[pd.DataFrame, Any]:
    records, rows = [], []
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_json_object)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"not valid JSON ({exc.msg})",
                file=name,
                row=lineno,
                fix="each line must hold one JSON object, e.g. {\"text\": \"...\", \"label\": \"pos\"}",
            ) from None
        if not isinstance(obj, dict):
            raise DataError(
                f"the line holds a {type(obj).__name__}, not a JSON object",
                file=name,
                row=lineno,
                fix="each line must hold one JSON object, e.g. {\"text\": \"...\", \"label\": \"pos\"}",
            )
        if type(obj) is _RepeatedKeys:
            raise _repeated_keys_error(obj, name, lineno, "the line")
        records.append(obj)
        rows.append(lineno)
    return pd.DataFrame.from_records(records), np.asarray(rows, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Folders of text files
# --------------------------------------------------------------------------------------------


def read_text_folder(path: str | Path) -> pd.DataFrame:
    """Read a folder of ``<label>/*.txt`` (one document per file; the label is the folder name).

    Returns ``text``, ``label`` and ``file`` (path relative to the folder), sorted by label and file.

    Raises:
        DataError: missing folder, no ``<label>/*.txt`` inside, or too large for memory.
    """
    raw = read_text_folder_raw(Path(path))
    frame = raw.frame.copy()
    frame["file"] = raw.files
    frame.attrs["warnings"] = list(raw.warnings)
    return frame


def read_text_folder_raw(path: Path) -> Raw:
    """:func:`read_text_folder` as a :class:`Raw` (the file names kept aside, for messages)."""
    check_exists(path)
    files = sorted(
        p for p in path.glob("*/*.txt") if p.is_file() and not p.parent.name.startswith(".")
    )
    if not files:
        subfolders = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise DataError(
            "the folder holds no <label>/*.txt files"
            + (f" (subfolders seen: {', '.join(subfolders[:10])})" if subfolders else ""),
            file=str(path),
            fix="put each document in a .txt file inside a subfolder named after its label, e.g. pos/001.txt",
        )
    check_size(path, sum(p.stat().st_size for p in files))
    texts, labels, names = [], [], []
    odd: dict[str, list[str]] = {}
    for file in files:
        text, encoding = decode(file.read_bytes(), str(file))
        name = str(file.relative_to(path))
        if encoding != "utf-8":
            odd.setdefault(encoding, []).append(name)
        texts.append(text.strip())
        labels.append(file.parent.name)
        names.append(name)
    warnings = [
        f"{path}: {plural(len(odd_files), 'file')} not UTF-8, read as {ENCODING_NAMES[enc]} "
        f"({', '.join(odd_files[:5])}{' ...' if len(odd_files) > 5 else ''})"
        for enc, odd_files in sorted(odd.items())
    ]
    frame = pd.DataFrame({"text": texts, "label": labels})
    return Raw(frame, np.arange(1, len(frame) + 1), str(path), "folder", warnings, files=names)
