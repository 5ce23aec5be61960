"""Re-evaluate a saved run and predict files with it (``python -m core eval`` / ``predict``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import runs
from core.config import DataConfig
from core.data import DataError, label_ids, load_bundle, load_frame
from core.inference import Predictor
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


def evaluate_run(run_dir: str | Path, data_file: str | Path | None = None) -> dict[str, Any]:
    """Metrics of the run's saved model on its own test split (rebuilt from its config) or on ``data_file``."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    predictor = Predictor(run_dir / runs.MODEL_DIR, threshold=config.train.multi_label_threshold,
                          max_length=config.model.max_length)
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


def _columns_of(data: DataConfig, source: str | Path) -> DataConfig:
    """The run's column names and label delimiter, applied to another file."""
    return DataConfig(source=str(source), text_column=data.text_column, text_pair_column=data.text_pair_column,
                      label_column=data.label_column, label_delimiter=data.label_delimiter, empty_texts=data.empty_texts)


def predict_file(run_dir: str | Path, data_file: str | Path, out: str | Path) -> dict[str, Any]:
    """Predict every row of ``data_file`` and write them to ``out`` (.csv or .parquet)."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    predictor = Predictor(run_dir / runs.MODEL_DIR, threshold=config.train.multi_label_threshold,
                          max_length=config.model.max_length)
    frame = load_frame(data_file, config.task, _columns_of(config.data, data_file), require_labels=False)
    if config.task == "token":
        tags = predictor.predict_tokens(frame["tokens"].tolist())
        table = pd.DataFrame({"row": frame["row"], "tokens": [" ".join(t) for t in frame["tokens"]],
                              "predicted": [" ".join(t) for t in tags]})
    else:
        pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
        table = predictor.predict_texts(frame["text"].tolist(), pairs)
        table.insert(0, "row", frame["row"].to_numpy())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        table.to_parquet(out, index=False)
    else:
        table.to_csv(out, index=False)
    return {"path": str(out), "rows": len(table)}
