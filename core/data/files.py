"""Reading bytes: existence, the memory guard, decompression and text encodings; the raw-file record.

Every reader (tables, CoNLL, folders of texts) goes through these, and hands back a :class:`Raw`:
the frame as read plus the user's row number of each row, so messages can point back.
"""

from __future__ import annotations

import bz2
import codecs
import difflib
import gzip
import lzma
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.errors import DataError, human_bytes, list_rows
from core.data.formats import COMPRESSIONS, LINE_FORMATS

# Decompressed text is several times its size on disk; the memory guard assumes this much.
COMPRESSED_EXPANSION = 5
ENCODING_NAMES = {"utf-16": "UTF-16", "gb18030": "GB18030", "cp1252": "Windows-1252", "latin-1": "Latin-1"}


@dataclass
class Raw:
    """A file as read, before column mapping: the frame plus the user's row number of each row."""

    frame: pd.DataFrame
    rows: np.ndarray
    path: str
    kind: str
    warnings: list[str] = field(default_factory=list)
    files: list[str] | None = None  # per row, for folders of text files
    headerless: bool = False  # a CSV/TSV whose first row was data, not column names
    sep: str | None = None  # a CSV/TSV's delimiter


def where(raw: Raw, positions: list[int] | np.ndarray) -> str:
    """Name rows for a message: file names for folders of texts, else row/line numbers."""
    if raw.files is not None:
        names = [raw.files[i] for i in positions]
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        return ("file " if len(names) == 1 else "files ") + ", ".join(names[:10]) + more
    text = list_rows(raw.rows[np.asarray(positions, dtype=int)])
    return text.replace("row", "line", 1) if raw.kind in LINE_FORMATS else text


def available_memory() -> int | None:
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


def check_exists(path: Path) -> None:
    """Raises DataError for a missing path, suggesting a close file name in the same folder."""
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


def check_size(path: Path, size: int) -> None:
    """Refuse files that would not fit: more than a quarter of the memory available now."""
    available = available_memory()
    if not available:
        return
    compressed = path.suffix.lower() in COMPRESSIONS
    needed = size * (COMPRESSED_EXPANSION if compressed else 1)
    if needed > available / 4:
        what = f"{human_bytes(size)} (compressed; about {human_bytes(needed)} once read)" if compressed else (
            human_bytes(size)
        )
        raise DataError(
            f"the file is {what}, more than a quarter of the {human_bytes(available)} of memory available",
            file=str(path),
            fix="split the file into smaller ones or keep a sample of its rows "
            "(max_train_samples only trims rows after the whole file is read)",
        )


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed (.gz/.bz2/.xz, or a .zip holding one file)."""
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


def decode(raw: bytes, path: str) -> tuple[str, str]:
    """Decode with UTF-8 (with or without BOM), then GB18030, then Windows-1252/Latin-1.

    Returns the text and the encoding used. Raises DataError for binary content.
    """
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


def encoding_warning(name: str, encoding: str) -> list[str]:
    """A warning for text that was not UTF-8 (its accents or CJK characters may need a look)."""
    if encoding in ("utf-8", "utf-16"):
        return []
    return [
        f"{name}: not UTF-8; read as {ENCODING_NAMES[encoding]} — check that accented or CJK characters look right"
    ]


def empty_file(path: Path) -> DataError:
    return DataError("the file is empty", file=str(path), fix="point to a file that holds data (check the export)")
