"""File formats: which reader each file extension gets, and which formats number lines, not rows."""

from __future__ import annotations

from pathlib import Path

# Extension → reader. Compressed variants (.gz/.bz2/.xz/.zip) of the text formats are read too.
FORMATS = {
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
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip")
SUPPORTED_EXTENSIONS = tuple(FORMATS)
LINE_FORMATS = ("jsonl", "conll")  # their row numbers are line numbers


def format_name(path: Path) -> str | None:
    """The reader for ``path`` by its extension (``x.csv.gz`` → ``"csv"``); None when unsupported."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    return FORMATS.get(suffixes[-1]) if suffixes else None
