"""Temperature scaling (Guo et al., 2017): one number that makes a classifier's confidence honest.

The temperature ``T`` divides the logits before the softmax; it is fitted on the validation split by
minimising the negative log-likelihood, so it never sees the test split, and it changes no prediction
(the arg-max is the same), only how sure each one says it is. The expected calibration error (ECE) on
the test split before and after is what tells whether it helped.

The fit is made from the saved predictions (``predictions-validation.parquet``): a softmax's log
probabilities are the logits less a per-row constant, which a temperature divides the same way, so
the fit needs no model. It is saved in the run's ``calibration.json``; the Predictor applies it when
asked (``run_predictor(run_dir, calibrated=True)``, ``python -m core predict --calibrated``).
Single-label and pair tasks only: a multi-label model's labels would each need their own temperature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import runs
from core.metrics import expected_calibration_error, reliability_bins, softmax

TASKS = ("single_label", "pair")
BOUNDS = (0.05, 20.0)  # a temperature outside these says the fit failed, not that the model is that far off


class CalibrationError(ValueError):
    """The run can't be calibrated (its task, or its predictions are missing)."""


def split_predictions(run_dir: str | Path, split: str, report: dict[str, Any] | None = None) -> pd.DataFrame | None:
    """The saved predictions of ``split`` ("validation", "test", or "train": out-of-fold), or None when the run has none."""
    run_dir = Path(run_dir)
    report = report if report is not None else runs.read_json(run_dir / runs.REPORT) or {}
    evaluated = report.get("eval_split", "test")
    # the evaluated split is in predictions.parquet, whichever it is (validation, for a run without a test split)
    name = runs.PREDICTIONS if split == evaluated else {"validation": runs.VALIDATION_PREDICTIONS,
                                                        "train": runs.TRAIN_PREDICTIONS}.get(split)
    path = run_dir / name if name else None
    if path is None or not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError):
        return None


def _log_probs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    probs = np.clip(np.stack(frame["probabilities"].to_numpy()).astype(np.float64), 1e-12, 1.0)
    return np.log(probs), probs


def _gold_index(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    position = {n: i for i, n in enumerate(names)}
    return np.array([position[g] for g in frame["gold"]])


def nll(log_probs: np.ndarray, gold: np.ndarray, temperature: float) -> float:
    """The mean negative log-likelihood of ``gold`` after dividing the logits by ``temperature``."""
    z = log_probs / temperature
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(gold)), gold]))


def fit_temperature(log_probs: np.ndarray, gold: np.ndarray) -> float:
    """The temperature that minimises the validation NLL (a bounded search over log T)."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(lambda log_t: nll(log_probs, gold, float(np.exp(log_t))),
                            bounds=tuple(np.log(BOUNDS)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax probabilities as the model would give them at ``temperature``."""
    return softmax(np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature)


def calibrate(run_dir: str | Path, report: dict[str, Any] | None = None, *, save: bool = True) -> dict[str, Any]:
    """Fit the run's temperature on validation; ECE and NLL before and after on the evaluated split.

    ``report``: the run's report.json as a dict, when the caller is about to write it.
    Returns (and with ``save`` writes to ``calibration.json``) ``{"temperature", "fitted_on", "evaluated_on",
    "before": {"ece", "nll", "bins"}, "after": {...}}``.

    Raises:
        CalibrationError: a task temperature scaling doesn't apply to, or predictions missing.
    """
    run_dir = Path(run_dir)
    report = report if report is not None else runs.read_json(run_dir / runs.REPORT) or {}
    if report.get("task") not in TASKS:
        raise CalibrationError(f"temperature scaling applies to single-label and pair classification, not to "
                               f"{report.get('task') or 'this run'}'s task")
    names = list(report.get("labels") or [])
    validation = split_predictions(run_dir, "validation", report)
    evaluated_on = report.get("eval_split", "test")
    evaluated = split_predictions(run_dir, evaluated_on, report)
    if validation is None or evaluated is None:
        raise CalibrationError(f"run {run_dir.name} has no saved validation predictions (runs before this version "
                               f"wrote only the test split's): `python -m core analyze {run_dir.name}` saves them first")
    log_probs, _ = _log_probs(validation)
    temperature = fit_temperature(log_probs, _gold_index(validation, names))
    _, test_probs = _log_probs(evaluated)
    gold = _gold_index(evaluated, names)
    out: dict[str, Any] = {"temperature": temperature, "fitted_on": "validation", "evaluated_on": evaluated_on,
                           "examples": {"validation": len(validation), evaluated_on: len(evaluated)}}
    for name, probs in (("before", test_probs), ("after", scaled(test_probs, temperature))):
        confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == gold
        out[name] = {"ece": expected_calibration_error(confidence, correct),
                     "nll": nll(np.log(np.clip(probs, 1e-12, 1.0)), gold, 1.0), "bins": reliability_bins(confidence, correct)}
    if save:
        runs.atomic_write_json(run_dir / runs.CALIBRATION, out)
    return out


def saved_temperature(run_dir: str | Path) -> float | None:
    """The temperature saved with the run, or None when it was never fitted."""
    saved = runs.read_json(Path(run_dir) / runs.CALIBRATION) or {}
    value = saved.get("temperature")
    return float(value) if isinstance(value, (int, float)) and BOUNDS[0] <= value <= BOUNDS[1] else None


def for_report(run_dir: Path, report: dict[str, Any]) -> dict[str, Any] | None:
    """What a new report.json says of calibration: the fitted temperature and ECE before/after (None: not applicable)."""
    if report.get("task") not in TASKS:
        return None
    try:
        return summary(calibrate(run_dir, report))
    except CalibrationError:
        return None


def summary(fitted: dict[str, Any]) -> dict[str, Any]:
    """The report.json block of a fit (:func:`calibrate`'s result): temperature, ECE before and after."""
    return {"temperature": fitted["temperature"], "ece_before": fitted["before"]["ece"], "ece_after": fitted["after"]["ece"],
            "evaluated_on": fitted["evaluated_on"]}
