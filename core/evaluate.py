"""Re-evaluate a saved run and predict files with it (``python -m core eval`` / ``predict``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import runs
from core.config import DataConfig
from core.data import DataError, label_ids, load_bundle, load_frame, load_unlabelled
from core.exports import to_csv_bytes
from core.inference import MEMBERS_DIR, EnsemblePredictor, Predictor
from core.metrics import build_report
from core.recipe import load_run_config


def _gold_and_scores(predictor: Predictor, frame: pd.DataFrame, task: str) -> tuple[Any, Any]:
    names = tuple(predictor.names)
    if task == "token":
        unknown = sorted({t for tags in frame["tags"] for t in tags} - set(names))
        if unknown:
            raise DataError(f"tags {unknown} were never seen in training; the model knows {list(names)}",
                            fix="evaluate on data annotated with the same tag set")
        return [list(t) for t in frame["tags"]], predictor.predict_tokens(frame["tokens"].tolist())
    pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame.columns else None
    logits = predictor.logits(frame["text"].astype(str).tolist(), pairs)
    if task == "regression":
        return frame["label"].astype(float).to_numpy(), logits[:, 0]
    from core.data import LabelSpace

    gold = label_ids(frame, LabelSpace(names), task)
    return np.asarray(gold), logits


def run_predictor(run_dir: str | Path, *, calibrated: bool = False, **options: Any) -> Predictor:
    """The run's saved model with the run's own settings: its multi-label threshold and max length.

    ``calibrated``: divide the logits by the temperature fitted on validation (core.calibration); a run
    without one predicts as it is.

    Every caller that predicts with a run (eval, predict, the dashboard's try-it box and predict-a-file)
    comes through here, so none of them can forget a setting the run trained with.
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    model_dir = run_dir / runs.MODEL_DIR
    ensemble = ensemble_marker(model_dir)
    temperature = None
    if calibrated:
        from core.calibration import CalibrationError, saved_temperature

        temperature = saved_temperature(run_dir)
        if temperature is None:
            raise CalibrationError(f"run {run_dir.name} has no fitted temperature: `python -m core analyze {run_dir.name}` "
                                   "fits one on its validation split (single-label and pair runs)")
    if ensemble is not None:  # a fused ensemble (core.fuse): its members, each with the settings of its own run
        members = [Predictor(model_dir / MEMBERS_DIR / m["run"], threshold=m["threshold"], max_length=m["max_length"], **options)
                   for m in ensemble["members"]]
        fused = EnsemblePredictor(members, [m["weight"] for m in ensemble["members"]], ensemble["options"].get("combine", "average"))
        fused.temperature = temperature or 1.0
        return fused
    if temperature is not None:
        options["temperature"] = temperature
    return Predictor(model_dir, threshold=config.train.multi_label_threshold, max_length=config.model.max_length, **options)


def ensemble_marker(model_dir: Path) -> dict[str, Any] | None:
    """The marker of an ensemble's ``model/`` folder (method, options, members), or None for any other model."""
    from core.compress import MARKER

    marker = (runs.read_json(model_dir / "config.json") or {}).get(MARKER) or {}
    return marker if marker.get("method") == "ensemble" else None


def evaluate_run(run_dir: str | Path, data_file: str | Path | None = None) -> dict[str, Any]:
    """Metrics of the run's saved model on its own test split (rebuilt from its config) or on ``data_file``."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    predictor = run_predictor(run_dir)
    task = config.task
    if data_file is None:
        bundle = load_bundle(config.data, task)
        frame = bundle.test if len(bundle.test) else bundle.validation
    else:
        frame = load_frame(data_file, task, _columns_of(config.data, data_file))
        if task not in ("token", "regression"):
            unknown = sorted({lab for v in frame["label"] for lab in (v if isinstance(v, list) else [v])} - set(predictor.names))
            if unknown:
                raise DataError(f"labels {unknown} were never seen in training; the model knows {predictor.names}",
                                file=str(data_file), column="label", fix="evaluate on data with the run's labels")
    gold, scores = _gold_and_scores(predictor, frame, task)
    return build_report(task, tuple(predictor.names), gold, scores, threshold=config.train.multi_label_threshold)


def evaluate_splits(run_dir: str | Path, predictor: Predictor | None = None, bundle: Any = None) -> dict[str, Any]:
    """The run's saved model on the validation and test splits its config rebuilds (a derived run: its parent's).

    Returns ``{"eval_split", "validation", "test"}`` (reports as a training run's report.json has them;
    ``test`` is None without a test split) and writes the splits' predictions (core.recipe.save_predictions).
    ``predictor`` and ``bundle``: the run's, when the caller has them already (they are loaded otherwise).
    """
    from core.recipe import save_predictions

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    predictor = predictor or run_predictor(run_dir)
    task, names = config.task, tuple(predictor.names)
    bundle = bundle if bundle is not None else load_bundle(config.data, task)
    eval_split = "test" if len(bundle.test) else "validation"
    out: dict[str, Any] = {"eval_split": eval_split, "test": None}
    for split in dict.fromkeys(("validation", eval_split)):
        frame = getattr(bundle, split)
        gold, scores = _gold_and_scores(predictor, frame, task)
        texts = [" ".join(t) for t in frame["tokens"]] if task == "token" else frame["text"].astype(str).tolist()
        threshold = config.train.multi_label_threshold
        out[split] = build_report(task, names, gold, scores, threshold=threshold, texts=texts)
        save_predictions(run_dir, split, split == eval_split, frame, task, names, gold, scores, threshold, texts)
    return out


def _columns_of(data: DataConfig, source: str | Path) -> DataConfig:
    """The run's column names and label delimiter, applied to another file."""
    return DataConfig(source=str(source), text_column=data.text_column, text_pair_column=data.text_pair_column,
                      label_column=data.label_column, label_delimiter=data.label_delimiter, empty_texts=data.empty_texts)


def _free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name (model)`` when the user's file already has a column of that name."""
    return name if name not in taken else f"{name} (model)"


def predict_table(run_dir: str | Path, data_file: str | Path, *, text_column: str | None = None,
                  text_pair_column: str | None = None, predictor: Predictor | None = None) -> pd.DataFrame:
    """Every row of ``data_file`` with all of its own columns, its row number, and the run's predictions.

    The file's columns are kept as they are (so the result joins back to anything by any of them); the
    predictions go beside them: ``predicted``, ``confidence`` and one ``p_<label>`` per label for
    classification, ``predicted`` for regression, the predicted tags for NER. A prediction column
    whose name the file already uses is called ``<name> (model)``. Text columns follow the run's data
    config unless ``text_column`` / ``text_pair_column`` are given.

    Raises:
        DataError: the file can't be read, or its text column is missing or empty (file, row, column).
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    predictor = predictor or run_predictor(run_dir)
    columns = _columns_of(config.data, data_file)
    if text_column or text_pair_column:
        columns = dataclasses.replace(columns, text_column=text_column or columns.text_column, text_pair_column=text_pair_column)
    frame, original = load_unlabelled(data_file, config.task, columns)  # one read: the texts and the file's own columns
    table = original.copy()
    for column in table.columns:  # lists (CoNLL tokens/tags) as the words they are
        if table[column].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            table[column] = table[column].map(lambda v: " ".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else v)
    taken = set(map(str, table.columns))
    table.insert(0, _free_name("row", taken), frame["row"].to_numpy())
    if config.task == "token":
        tags = predictor.predict_tokens(frame["tokens"].tolist())
        table[_free_name("predicted", taken)] = [" ".join(t) for t in tags]
        return table
    pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
    predicted = predictor.predict_texts(frame["text"].tolist(), pairs)
    for column in predicted.columns:
        if column not in ("text", "text_pair"):
            table[_free_name(column, taken)] = predicted[column].to_numpy()
    return table


def predict_file(run_dir: str | Path, data_file: str | Path, out: str | Path, *, calibrated: bool = False) -> dict[str, Any]:
    """Predict every row of ``data_file`` and write them, with the file's own columns, to ``out`` (.csv or .parquet).

    ``calibrated``: with the run's fitted temperature (core.calibration).
    """
    table = predict_table(run_dir, data_file, predictor=run_predictor(run_dir, calibrated=calibrated))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        table.to_parquet(out, index=False)
    else:
        out.write_bytes(to_csv_bytes(table))  # opened in spreadsheets: no text cell may run as a formula
    return {"path": str(out), "rows": len(table)}
