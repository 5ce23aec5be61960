"""load_bundle and load_frame: from a data config to validated, split frames and their label space."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.canonical import canonical
from core.data.columns import as_text, detect_columns
from core.data.conll import read_conll_raw
from core.data.errors import DataError, check_task, list_rows, plural
from core.data.files import Raw, check_exists, where
from core.data.formats import LINE_FORMATS, format_name
from core.data.labels import LabelSpace, label_space, row_labels
from core.data.readers import read_table_raw, read_text_folder_raw, unsupported
from core.data.samples import SAMPLE_INFO, cached_sample, copy_frame, list_samples
from core.data.splits import drop_repeated, holdout_size, split, subsample, tidy


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


def _read_for_task(source: str, task: str, expect: tuple[str, ...]) -> Raw:
    path = Path(source).expanduser()
    check_exists(path)
    if path.is_dir():
        if task != "single_label":
            raise DataError(
                f"a folder of <label>/*.txt holds one label per document, which fits single_label, not {task}",
                file=str(path),
                fix="set the task to single_label, or give a table file (CSV/JSONL/...)"
                + (" or a CoNLL file" if task == "token" else ""),
            )
        return read_text_folder_raw(path)
    fmt = format_name(path)
    if fmt == "conll":
        if task != "token":
            raise unsupported(path, fmt)
        return read_conll_raw(path)
    return read_table_raw(path, expect)


def _canonical_mapping(frame: pd.DataFrame, task: str) -> dict[str, str | None]:
    """The column mapping of a frame already in canonical layout (CoNLL, text folders, samples)."""
    if task == "token":
        return {"text": "tokens", "text_pair": None, "label": "tags"}
    return {"text": "text", "text_pair": "text_pair" if "text_pair" in frame else None, "label": "label"}


def _mapping_for(raw: Raw, task: str, cfg: DataConfig, like: dict | None = None) -> dict:
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
            preview = ", ".join(repr(as_text(v))[:40] for v in raw.frame.iloc[0, :3])
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
    counts = Counter(label for labels in row_labels(frame, task) for label in labels)
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
            f"every row has the same label {only!r} ({plural(len(frame), 'row')}); a classifier needs "
            "at least two classes",
            file=source,
            column=str(mapping["label"]),
            fix="add rows of the other classes, or check that data.label_column names the label column",
        )


def _check_seen(frame: pd.DataFrame, task: str, known: set[str], raw: Raw, mapping: dict, role: str) -> None:
    unseen_rows = [i for i, labels in enumerate(row_labels(frame, task)) if not labels <= known]
    if not unseen_rows:
        return
    names = sorted(set().union(*(row_labels(frame.iloc[unseen_rows], task))) - known)
    rows = frame["row"].to_numpy()[unseen_rows]
    word = "line" if raw.kind in LINE_FORMATS else "row"
    raise DataError(
        f"{role} has {'entity types' if task == 'token' else 'labels'} never seen in training: "
        f"{', '.join(map(repr, names[:10]))} ({list_rows(rows).replace('row', word, 1)})",
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
    Entity tags in IOB1, BIOES or BILOU are converted to IOB2, with a note in ``warnings``.

    Raises:
        DataError: any problem with the data, naming the file, row and column, and the fix.
    """
    check_task(task)
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
        frame, sample_task, notes, path = cached_sample(name)
        if sample_task != task:
            raise DataError(
                f"the sample {name!r} is a {sample_task} dataset, not {task}",
                fix=f"set the task to {sample_task}, or pick a sample made for {task} "
                f"({', '.join(i.name for i in list_samples() if i.task == task) or 'none yet'})",
            )
        frame = copy_frame(frame)
        warnings += notes
        kind = "conll" if task == "token" and path.endswith(".txt") else "sample"  # rows of .txt are lines
        main = Raw(frame, frame["row"].to_numpy(), path, kind)
        mapping = _canonical_mapping(frame, task)
        source_text = f"sample:{name} — {SAMPLE_INFO[name].description}"
    else:
        main = _read_for_task(cfg.source, task, expect)
        warnings += main.warnings
        mapping = _mapping_for(main, task, cfg)
        frame, notes, n_empty = canonical(main, task, mapping, cfg, "")
        warnings += notes
        if n_empty:
            dropped["train"] = n_empty
        source_text = f"{main.path} ({main.kind}, {plural(len(main.frame), 'row')})"
        if cfg.drop_duplicates:
            frame, notes = drop_repeated(frame, task)
            warnings += notes
    _check_classes(frame, task, mapping, main.path, cfg.label_delimiter)

    extra: dict[str, tuple[pd.DataFrame, Raw]] = {}
    for role, src in (("validation", cfg.validation_source), ("test", cfg.test_source)):
        if not src:
            continue
        raw = _read_for_task(src, task, expect)
        warnings += raw.warnings
        part_map = _mapping_for(raw, task, cfg, like=mapping if main.kind != "sample" else None)
        part, notes, n_empty = canonical(raw, task, part_map, cfg, role)
        warnings += notes
        if n_empty:
            dropped[role] = n_empty
        if part.empty:
            raise DataError(f"the {role} file has no usable rows", file=raw.path, fix=f"point data.{role}_source at a file with data")
        extra[role] = (part, raw)
        source_text += f"; {role}: {raw.path} ({plural(len(part), 'row')})"

    n = len(frame)
    n_val = 0 if "validation" in extra else holdout_size(n, cfg.validation_split)
    n_test = 0 if "test" in extra else holdout_size(n, cfg.test_split)
    train, validation, test = split(frame, task, cfg, n_val, n_test, warnings, main.path)
    if "validation" not in extra and validation.empty:
        raise DataError(
            "the validation split is empty: every row drawn for it had a label that occurs only once",
            file=main.path,
            fix="add rows (at least two per label), or raise data.validation_split",
        )
    _check_classes(train, task, mapping, main.path, cfg.label_delimiter)
    labels = label_space(train, task)
    known = set(labels.entity_types) if task == "token" else set(labels.names)
    if "validation" in extra:
        validation = extra["validation"][0]
        _check_seen(validation, task, known, extra["validation"][1], mapping, "validation")
    if "test" in extra:
        test = extra["test"][0]
        _check_seen(test, task, known, extra["test"][1], mapping, "test")

    train = tidy(subsample(train, cfg.max_train_samples, task, cfg.seed))
    validation = tidy(subsample(validation, cfg.max_eval_samples, task, cfg.seed))
    test = tidy(subsample(test, cfg.max_eval_samples, task, cfg.seed))
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


def read_source(source: str | Path, task: str) -> pd.DataFrame:
    """The file (or text folder) as read for ``task``, its own columns untouched: a table as is, a CoNLL
    file as one sentence per row (``tokens``, ``tags``), a folder as ``text``, ``label``.

    What the Data page maps columns on, and what predictions are written beside.

    Raises:
        DataError: as load_bundle (missing, unreadable, a format the task can't use).
    """
    check_task(task)
    raw = _read_for_task(str(source), task, ())
    frame = raw.frame.copy()
    frame.attrs["warnings"] = list(raw.warnings)
    return frame


def fixed_layout(source: str | Path) -> bool:
    """A CoNLL file or a folder of <label>/*.txt: its columns are the canonical ones, nothing to map."""
    path = Path(source).expanduser()
    return path.is_dir() or format_name(path) == "conll"


def load_frame(source: str | Path, task: str, cfg: DataConfig | None = None, *, require_labels: bool = True) -> pd.DataFrame:
    """Read one whole file (no split) into the task's canonical frame: what ``eval --data`` and ``predict`` read.

    With ``require_labels=False`` a file without a label column is fine: the frame then has only the
    text columns (``text``/``text_pair``, or ``tokens`` for the token task, where a table's text is
    split on whitespace). Column names follow ``cfg`` (the run's data config) when given.

    Raises:
        DataError: as load_bundle, naming the file, row and column.
    """
    check_task(task)
    cfg = cfg or DataConfig(source=str(source))
    if not require_labels:
        return load_unlabelled(source, task, cfg)[0]
    raw = _read_for_task(str(source), task, _expected(cfg))
    frame, notes, _ = canonical(raw, task, _mapping_for(raw, task, cfg), cfg, "")
    frame.attrs["warnings"] = [*raw.warnings, *notes]
    return frame


def _expected(cfg: DataConfig) -> tuple[str, ...]:
    return tuple(c for c in (cfg.text_column, cfg.text_pair_column, cfg.label_column) if c)


def load_unlabelled(source: str | Path, task: str, cfg: DataConfig | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the canonical text frame, the file's own table) from one read: what prediction needs.

    The first is ``load_frame(..., require_labels=False)``; the second holds every column of the file
    (as :func:`read_source`), row for row in the same order, so predictions can go beside them.

    Raises:
        DataError: as load_frame.
    """
    check_task(task)
    cfg = cfg or DataConfig(source=str(source))
    raw = _read_for_task(str(source), task, _expected(cfg))
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
        frame = pd.DataFrame({"text": df[mapping["text"]].map(as_text), "row": raw.rows})
        if mapping["text_pair"]:
            frame.insert(1, "text_pair", df[mapping["text_pair"]].map(as_text))
        empty = frame["text"].str.strip() == ""
        if empty.any():
            raise DataError(f"{int(empty.sum())} empty text(s) at {where(raw, np.flatnonzero(empty.to_numpy()))}",
                            file=raw.path, column=str(mapping["text"]), fix="fill in or remove those rows")
    frame.attrs["warnings"] = list(raw.warnings)
    original = df.reset_index(drop=True).copy()
    original.attrs["warnings"] = list(raw.warnings)
    return frame.reset_index(drop=True), original
