"""Which labels look wrong: confident learning over the model's out-of-sample probabilities, and a corrected copy.

The model never trained on the validation and test splits, so its probabilities there are
out-of-sample: where one confidently disagrees with the given label, that label is a candidate error
(Northcutt et al., 2021, "Confident Learning"). cleanlab's ``find_label_issues`` does the counting;
examples are ranked by the given label's self-confidence (lowest first). Single-label and pair runs.

A review (a row per candidate: ``keep``, ``relabel`` to the suggested or another label, or ``drop``) is
applied by :func:`corrected_copy` to a *copy* of the file the rows came from (the user's own file is
never touched): the same rows, columns and format, the relabelled rows' label cells changed and the
dropped rows left out. A CSV/TSV whose texts a spreadsheet would run as formulas is written as JSONL
instead (exports must be safe to open; escaping those texts would change the training data).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import runs
from core.calibration import split_predictions
from core.data import DataError
from core.exports import FORMULA_STARTS

TASKS = ("single_label", "pair")
DECISIONS = ("keep", "relabel", "drop")
REVIEW_COLUMNS = ("split", "row", "text", "given", "suggested", "given_probability", "suggested_probability", "decision")


class LabelIssueError(ValueError):
    """The run can't be searched for label issues, or a review can't be applied (what, where, how to fix)."""


def find_issues(run_dir: str | Path, splits: tuple[str, ...] = ("validation", "test", "train")) -> pd.DataFrame:
    """Candidate label errors in the run's held-out splits (and its training split, once :func:`cross_validated`
    has given it out-of-fold probabilities), the most likely first.

    Columns: ``split``, ``row`` (the row number in the file it came from), ``text`` (and ``text_pair``),
    ``given``, ``suggested`` (the model's label), ``given_probability``, ``suggested_probability``, and
    ``decision`` ("keep" until a reviewer changes it).

    Raises:
        LabelIssueError: not a single-label/pair run, or no saved predictions for the splits.
    """
    from cleanlab.filter import find_label_issues

    run_dir = Path(run_dir)
    report = runs.read_json(run_dir / runs.REPORT) or {}
    if report.get("task") not in TASKS:
        raise LabelIssueError(f"label issues are looked for in single-label and pair classification runs, not "
                              f"{report.get('task') or 'this run'}'s task")
    names = list(report.get("labels") or [])
    frames = []
    for split in dict.fromkeys(splits):
        frame = split_predictions(run_dir, split, report)
        if frame is not None:
            frames.append(frame.assign(split=split))
    if not frames:
        raise LabelIssueError(f"run {run_dir.name} has no saved predictions of {' or '.join(splits)}: "
                              f"`python -m core analyze {run_dir.name}` saves them")
    frame = pd.concat(frames, ignore_index=True)
    if "row" not in frame.columns:
        raise LabelIssueError(f"run {run_dir.name}'s predictions have no row numbers (an old run): "
                              f"`python -m core eval {run_dir.name}` can't add them; train it again to review its labels")
    position = {n: i for i, n in enumerate(names)}
    given = np.array([position[g] for g in frame["gold"]])
    probs = np.stack(frame["probabilities"].to_numpy()).astype(np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    present = sorted(set(given.tolist()))
    if len(present) < 2:
        return _empty(frame)
    # cleanlab counts per class: classes absent from these splits are left out (their column folded away)
    keep = np.array(present)
    sub_probs = probs[:, keep] / probs[:, keep].sum(axis=1, keepdims=True)
    remap = {c: i for i, c in enumerate(present)}
    # n_jobs=1: cleanlab would fork a process pool from the dashboard's threaded server (torch loaded)
    ranked = find_label_issues(np.array([remap[g] for g in given]), sub_probs,
                               return_indices_ranked_by="self_confidence", n_jobs=1)
    rows = frame.iloc[ranked]
    suggested = probs[ranked].argmax(axis=1)
    out = pd.DataFrame({
        "split": rows["split"].to_numpy(),
        "row": rows["row"].to_numpy(),
        "text": rows["text"].to_numpy(),
        **({"text_pair": rows["text_pair"].to_numpy()} if "text_pair" in rows else {}),
        "given": rows["gold"].to_numpy(),
        "suggested": [names[i] for i in suggested],
        "given_probability": probs[ranked, given[ranked]],
        "suggested_probability": probs[ranked, suggested],
        # nothing changes until a reviewer says so: the model's label written into a test split unread would
        # inflate the next run's test score
        "decision": "keep",
    })
    return out.reset_index(drop=True)


def _empty(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in REVIEW_COLUMNS})


def source_of(config: Any, split: str) -> str:
    """The file a split's rows are numbered in: its own file when the config names one, else the main source."""
    own = {"validation": config.data.validation_source, "test": config.data.test_source}.get(split)  # train: the source
    return own or config.data.source


def review_sources(run_dir: str | Path, splits: list[str]) -> dict[str, str]:
    """The file each split's rows come from (one file for all, unless the config gave a split its own)."""
    from core.recipe import load_run_config

    config = load_run_config(Path(run_dir))
    return {split: source_of(config, split) for split in splits}


def corrected_copy(run_dir: str | Path, review: pd.DataFrame, split: str | None = None,
                   labels: Mapping[str, str] | None = None) -> tuple[bytes, str, dict[str, int]]:
    """A corrected copy of the file the reviewed rows came from: (its bytes, a file name, counts).

    ``review``: rows with ``split``, ``row``, ``decision`` (keep / relabel / drop) and ``suggested`` (the label
    a relabelled row gets). Rows of one source file only (``split`` picks them when the review mixes files).
    Counts: ``{"relabelled", "dropped", "rows"}`` (rows: the copy's rows).

    Raises:
        LabelIssueError: an unknown decision or label, a row the file doesn't have, a source that isn't a file.
    """
    from core.recipe import load_run_config

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    report = runs.read_json(run_dir / runs.REPORT) or {}
    names = set(report.get("labels") or [])
    missing_columns = [c for c in ("split", "row", "decision", "suggested") if c not in review.columns]
    if missing_columns:
        raise LabelIssueError(f"the review table has no {', '.join(missing_columns)} column: it must be the table "
                              "`python -m core analyze RUN --review-out FILE` wrote (or the Evaluation page's review)")
    review = review.copy()
    numbers = pd.to_numeric(review["row"], errors="coerce")
    if numbers.isna().any() or (numbers % 1 != 0).any():
        first = review["row"][numbers.isna() | (numbers % 1 != 0)].iloc[0]
        raise LabelIssueError(f"the review table's row column holds {first!r}, not a row number: keep the numbers as written")
    review["row"] = numbers.astype(int)
    review["decision"] = review["decision"].astype(str).str.strip().str.lower()
    # a label such as "-1" comes back from a spreadsheet-safe CSV as "'-1" (core.exports): read it as written
    review["suggested"] = [str(v)[1:] if str(v)[1:] in names and str(v).startswith("'") else str(v) for v in review["suggested"]]
    bad = sorted(set(review["decision"]) - set(DECISIONS))
    if bad:
        raise LabelIssueError(f"unknown decisions {bad}: each row is one of {', '.join(DECISIONS)}")
    sources = {source_of(config, s) for s in review["split"].astype(str)}
    if split is not None:
        review = review[review["split"] == split]
        sources = {source_of(config, split)}
    if len(sources) > 1:
        raise LabelIssueError("the reviewed rows come from several files (the validation or test split has its own): "
                              "export one split at a time")
    source = sources.pop()
    relabel = review[review["decision"] == "relabel"]
    unknown = sorted(set(relabel["suggested"].astype(str)) - names)
    if unknown:
        raise LabelIssueError(f"labels {unknown} are not labels of this run ({sorted(names)}): pick one of them")
    try:
        frame, numbers, sep = _read_with_rows(source, config.task)
    except DataError as exc:
        raise LabelIssueError(f"the source {source} can't be read again: {exc}") from None
    label_column = (report.get("data") or {}).get("columns", {}).get("label") or "label"
    if label_column not in frame.columns:
        raise LabelIssueError(f"{source} has no column {label_column!r} (the run's label column) any more")
    where = {int(r): i for i, r in enumerate(numbers)}
    missing = sorted(int(r) for r in review["row"] if int(r) not in where)
    if missing:
        raise LabelIssueError(f"rows {missing[:10]} are not in {source}: was the file changed since the run?")
    if "given" in review.columns:  # the file still says what the run read, row for row
        changed = [int(r) for r, g in zip(review["row"], review["given"], strict=True)
                   if _label_text(frame[label_column].iloc[where[int(r)]]) != _label_text(g)]
        if changed:
            raise LabelIssueError(f"rows {changed[:10]} of {source} no longer hold the label the run read: the file changed "
                                  "since the run (or the review is another run's). Review this run's labels again.")
    out = frame.copy()
    column = out.columns.get_loc(label_column)
    for row, label in zip(relabel["row"], relabel["suggested"], strict=True):
        out.iat[where[int(row)], column] = _like(label, out[label_column])
    dropped = {where[int(r)] for r in review.loc[review["decision"] == "drop", "row"]}
    out = out.drop(index=out.index[sorted(dropped)]).reset_index(drop=True)
    try:
        data, name = _write_like(out, source, sep)
    except (ValueError, TypeError, OSError) as exc:  # pyarrow's type errors are ValueError/TypeError subclasses
        raise LabelIssueError(f"the corrected copy of {source} can't be written: {exc}") from None
    return data, name, {"relabelled": len(relabel), "dropped": len(dropped), "rows": len(out)}


def _label_text(value: Any) -> str:
    """A label cell as text, numbers without a trailing .0 (``2``, ``2.0`` and ``"2"`` are one label)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text[:-2] if text.endswith(".0") and text[:-2].lstrip("-").isdigit() else text


def _like(label: str, column: pd.Series) -> Any:
    """``label`` as the column's own type: a number in a column of numbers (a Parquet file keeps its schema)."""
    try:
        if pd.api.types.is_integer_dtype(column):
            return int(float(label))
        if pd.api.types.is_float_dtype(column):
            return float(label)
    except ValueError:
        return label  # a word in a column of numbers: written as it is (a CSV takes it; Parquet refuses, and says so)
    if pd.api.types.is_bool_dtype(column):
        return label.strip().lower() in ("true", "1")
    return label


def _read_with_rows(source: str, task: str) -> tuple[pd.DataFrame, np.ndarray, str | None]:
    """The source's own columns (CSV/TSV cells as written), the user's row number of each row, and its delimiter."""
    from core.data.bundle import _read_for_task
    from core.data.formats import format_name
    from core.data.readers import read_table_raw
    from core.data.samples import cached_sample

    if source.startswith("sample:"):
        frame = cached_sample(source.split(":", 1)[1])[0].copy()
        return frame.drop(columns=["row"]), frame["row"].to_numpy(), ","
    path = Path(source).expanduser()
    if path.is_file() and format_name(path) in ("csv", "tsv"):
        raw = read_table_raw(path, as_written=True)  # 01234 stays 01234, 1.50 stays 1.50
        return raw.frame.copy(), raw.rows, raw.sep
    raw = _read_for_task(source, task, ())
    return raw.frame.copy(), raw.rows, None


def _write_like(frame: pd.DataFrame, source: str, sep: str | None = None) -> tuple[bytes, str]:
    """``frame`` in the source's format and delimiter (CSV/TSV unless a text would run as a formula: then JSONL)."""
    stem = Path(source.split(":", 1)[-1]).name.split(".")[0] or "data"
    suffix = "".join(Path(source).suffixes).lower() if not source.startswith("sample:") else ".csv"
    if suffix.endswith(".parquet"):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue(), f"{stem}-corrected.parquet"
    if suffix.endswith((".jsonl", ".json")):
        return frame.to_json(orient="records", lines=True, force_ascii=False).encode(), f"{stem}-corrected.jsonl"
    risky = any(isinstance(v, str) and v.startswith(FORMULA_STARTS) for column in frame.columns for v in frame[column])
    if risky:
        return frame.to_json(orient="records", lines=True, force_ascii=False).encode(), f"{stem}-corrected.jsonl"
    sep = sep or ("\t" if suffix.endswith(".tsv") else ",")
    return frame.to_csv(index=False, sep=sep).encode("utf-8"), f"{stem}-corrected{'.tsv' if suffix.endswith('.tsv') else '.csv'}"


def cross_validated(run_dir: str | Path, folds: int = 5, *, epochs: int | None = None) -> pd.DataFrame:
    """Out-of-fold probabilities of the run's *training* split: ``folds`` short runs, each trained on the other folds.

    Each fold trains a fresh model with the run's own config (model, strategy, rates; ``epochs`` if given) on
    ``folds - 1`` stratified parts of the training split and predicts the part it left out, so every training row
    gets probabilities from a model that never saw it — what confident learning needs. The fold runs live in a
    temporary folder and are removed; what stays in the run directory is ``predictions-train-oof.parquet``
    (the predictions table's columns, ``split`` "train"), which :func:`find_issues` reads with ``"train"``.

    Raises:
        LabelIssueError: not a single-label/pair run, fewer than 2 folds, or a class with fewer rows than folds.
    """
    import dataclasses
    import tempfile

    from sklearn.model_selection import StratifiedKFold

    from core.config import DataConfig
    from core.data import load_bundle
    from core.recipe import load_run_config, run_training, write_parquet

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if config.task not in TASKS:
        raise LabelIssueError(f"cross-validated label issues are for single-label and pair runs, not {config.task}")
    if folds < 2:
        raise LabelIssueError(f"--folds must be at least 2; got {folds}")
    train = load_bundle(config.data, config.task).train.reset_index(drop=True)
    smallest = train["label"].value_counts().min()
    if smallest < folds:
        raise LabelIssueError(f"a class has only {smallest} training rows, fewer than {folds} folds: use --folds {max(2, smallest)}"
                              if smallest >= 2 else "a class has a single training row: it can't be held out and learned at once")
    names = sorted(train["label"].astype(str).unique())
    probabilities = np.full((len(train), len(names)), np.nan)
    columns = ["text", *(["text_pair"] if "text_pair" in train.columns else []), "label"]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.data.seed)
    with tempfile.TemporaryDirectory(prefix="tuneboard-folds-") as tmp:
        for i, (fit, held) in enumerate(splitter.split(train, train["label"].astype(str))):
            parts = {}
            for part, index in (("fit", fit), ("held", held)):
                path = Path(tmp) / f"fold{i + 1}-{part}.jsonl"
                train.iloc[index][columns].assign(position=index).to_json(path, orient="records", lines=True, force_ascii=False)
                parts[part] = str(path)
            # the best checkpoint is chosen on a validation share of the fit part; the held fold is the test split
            data = DataConfig(source=parts["fit"], test_source=parts["held"], validation_split=0.1, test_split=0.0,
                              text_column="text",
                              text_pair_column="text_pair" if "text_pair" in columns else None, label_column="label",
                              seed=config.data.seed, empty_texts=config.data.empty_texts)
            fold_config = config.replace(name=f"{config.name}-fold{i + 1}", data=data, output_dir=str(Path(tmp) / "runs"),
                                         train=dataclasses.replace(config.train, epochs=epochs or config.train.epochs))
            outcome = run_training(fold_config)
            if outcome.state != "completed":
                raise LabelIssueError(f"fold {i + 1} of {folds} ended {outcome.state}; see {outcome.run_dir}")
            held_out = pd.read_parquet(outcome.run_dir / runs.PREDICTIONS)
            fold_names = list((outcome.report or {}).get("labels") or [])
            where = [names.index(n) for n in fold_names]
            for position, probs in zip(held_out["extra:position"].astype(int), held_out["probabilities"], strict=True):
                probabilities[position] = 0.0
                probabilities[position, where] = probs
    table = pd.DataFrame({"row": train["row"].to_numpy(), "text": train["text"].to_numpy(),
                          **({"text_pair": train["text_pair"].to_numpy()} if "text_pair" in train.columns else {}),
                          "gold": train["label"].astype(str).to_numpy(),
                          "probabilities": [p.tolist() for p in probabilities]})
    table = table[~np.isnan(probabilities).any(axis=1)].reset_index(drop=True)  # rows a fold dropped (duplicates)
    report = runs.read_json(run_dir / runs.REPORT) or {}
    order = list(report.get("labels") or names)
    table["probabilities"] = [[p[names.index(n)] if n in names else 0.0 for n in order] for p in table["probabilities"]]
    write_parquet(table, run_dir / runs.TRAIN_PREDICTIONS)
    return table
