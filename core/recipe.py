"""The training recipe: build every object from the RunConfig, run the loop, write the run directory.

``run_training`` is what ``python -m core train`` and the job worker call. It owns the run's files
(status, events, report, predictions, model) so that the loop only trains.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from core import calibration, model_format, runs, trackers
from core.cls_top_layer import restore_top_layer, use_cls_only_top_layer
from core.config import ConfigError, RunConfig, from_dict, parse_class_weights
from core.data import DataError, DatasetBundle, label_ids, load_bundle
from core.device import make_accelerator, process_rank, reset_peak_memory, shared_value
from core.events import EventSink, EventWriter, read_events
from core.loop import LOOP_STATE, LossFn, Predictions, RowLossFn, TrainResult, make_loss, predict, train
from core.metrics import build_report, predictions_frame, resolve_metric_for_best
from core.models import ModelError, load_model, load_tokenizer, model_facts
from core.strategies import StrategyError, build_strategy
from core.tokenize import EncodedSplit, PaddingCollator, encode_split, token_stats

USER_ERRORS = (ConfigError, DataError, ModelError, StrategyError)
BEST_WEIGHTS = "checkpoints/best.safetensors"


class RunFailed(RuntimeError):
    """A run ended in ``failed``; the message is the one written to status.json."""

    def __init__(self, run_dir: Path, message: str):
        self.run_dir = run_dir
        super().__init__(message)


@dataclass(frozen=True)
class RecipeHooks:
    """What a derived run (core.derived: a distilled or pruned student) adds to a training run."""

    # the training loss from the encoded training split, the collator and the task's loss (distillation)
    train_loss: Callable[[EncodedSplit, PaddingCollator, LossFn], RowLossFn] | None = None
    # report.json before it is written and the run is marked completed, model/ already saved (the lineage block)
    amend_report: Callable[[dict[str, Any]], dict[str, Any]] | None = None


@dataclass
class RunOutcome:
    run_dir: Path
    state: str
    result: TrainResult | None
    report: dict[str, Any] | None


def class_weight_tensor(config: RunConfig, bundle: DatasetBundle, targets: list[Any]) -> torch.Tensor | None:
    """``balanced``: n_samples / (n_classes * count) as in scikit-learn; explicit: by label name."""
    spec = config.strategy.class_weights
    if spec == "none" or config.task == "regression":
        return None
    names = bundle.labels.names
    if spec == "balanced":
        if config.task == "multi_label":
            positives = np.asarray(targets).sum(0)
            return torch.tensor((len(targets) - positives) / np.maximum(positives, 1), dtype=torch.float32)
        flat = np.concatenate([np.asarray(t).ravel() for t in targets]) if config.task == "token" else np.asarray(targets)
        flat = flat[flat >= 0]
        counts = np.bincount(flat, minlength=len(names)).astype(np.float64)
        return torch.tensor(len(flat) / (len(names) * np.maximum(counts, 1)), dtype=torch.float32)
    weights = parse_class_weights(spec)
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError("strategy.class_weights", f"unknown label(s) {unknown}; the labels are {list(names)}")
    return torch.tensor([weights.get(n, 1.0) for n in names], dtype=torch.float32)


def scorer(task: str, names: tuple[str, ...], threshold: float) -> Callable[[Predictions], dict[str, float]]:
    from core.metrics import compute_metrics

    def score(preds: Predictions) -> dict[str, float]:
        gold, scores = to_metric_inputs(task, names, preds)
        return compute_metrics(task, names, gold, scores, threshold=threshold)

    return score


def to_metric_inputs(task: str, names: tuple[str, ...], preds: Predictions) -> tuple[Any, Any]:
    """Token predictions are id lists; the entity-level metrics want tag names."""
    if task == "token":
        return ([[names[i] for i in row] for row in preds.gold], [[names[i] for i in row] for row in preds.scores])
    return preds.gold, preds.scores


def run_training(
    config: RunConfig,
    run_dir: Path | None = None,
    *,
    resume: bool = False,
    echo: EventSink | None = None,
    should_stop: Callable[[], bool] | None = None,
    hooks: RecipeHooks | None = None,
) -> RunOutcome:
    """Train and evaluate one run; every outcome (success, cancel, error) is recorded in its directory.

    ``hooks``: what a derived run's student adds (core.derived). Raises RunFailed (with the user-facing
    message) when the run fails.
    """
    # Under torchrun / accelerate launch every process trains its share; the main one (rank 0) makes the run
    # directory and alone writes to it: status, events, checkpoints' swap, the model, predictions and report.
    main = process_rank()[0] == 0
    if run_dir is None:
        run_dir = shared_value(lambda: runs.create_run_dir(config.runs_root, config.name, config.to_dict()))
    run_dir = Path(run_dir)
    checkpoint_dir = run_dir / runs.CHECKPOINT_DIR
    if resume and not checkpoint_dir.exists():
        raise RunFailed(run_dir, f"Run {run_dir.name} has no checkpoint to resume from ({checkpoint_dir} is missing).")
    if not main:
        # torchrun sends SIGTERM to every process: the others keep going until the main one's stop reaches them
        # (core.loop's agreed stop), so the run still ends with a checkpoint.
        if _main_thread():
            signal.signal(signal.SIGTERM, lambda signum, frame: None)
        return _train_and_report(config, run_dir, lambda event: None, lambda: False, resume, hooks or RecipeHooks(),
                                 main=False)
    runs.atomic_write_json(run_dir / runs.CONFIG, config.to_dict())
    Path(run_dir, runs.CANCEL_FLAG).unlink(missing_ok=True)
    prior = 0.0
    if resume:
        prior = max((e.get("time", 0.0) for e in read_events(run_dir / runs.EVENTS)[0]), default=0.0)
    runs.write_status(run_dir, state="running", pid=os.getpid(), host=socket.gethostname(), started=time.time(), error=None,
                      finished=None)
    runs.index_run(config.runs_root, run_dir)

    stop_signal = {"hit": False}

    def on_sigterm(signum: int, frame: Any) -> None:
        stop_signal["hit"] = True

    previous_handler = signal.signal(signal.SIGTERM, on_sigterm) if _main_thread() else None
    # A caller's stop (a sweep's pruner) adds to the cancel flag and SIGTERM; it never replaces them.
    stop = lambda: runs.cancel_requested(run_dir) or stop_signal["hit"] or bool(should_stop and should_stop())  # noqa: E731

    with EventWriter(run_dir / runs.EVENTS, time_offset=prior, echo=echo) as events:
        try:
            outcome = _train_and_report(config, run_dir, events, stop, resume, hooks or RecipeHooks())
        except USER_ERRORS as exc:
            _fail(config, run_dir, events, str(exc))
            raise RunFailed(run_dir, str(exc)) from exc
        except Exception as exc:
            if not _unwritable(exc):  # an internal error: keep the traceback in the run, say what happened
                message = f"Internal error ({type(exc).__name__}: {exc}). The traceback is in {run_dir / runs.STATUS}."
                _fail(config, run_dir, events, message, traceback.format_exc())
                raise RunFailed(run_dir, message) from exc
            # the runs folder's disk is full or can't be written: the user's to fix
            last = runs.read_json(checkpoint_dir / LOOP_STATE) if checkpoint_dir.exists() else None
            why = getattr(exc, "strerror", None) or _unwritable(exc)
            message = (f"Could not write to the runs folder ({why}: {getattr(exc, 'filename', None) or run_dir}). Free space on "
                       "its disk or fix its permissions, then "
                       + (f"press Resume: the checkpoint of step {last.get('global_step')} is intact." if isinstance(last, dict)
                          else "start the run again (it had saved no checkpoint yet)."))
            _fail(config, run_dir, events, message, traceback.format_exc())
            raise RunFailed(run_dir, message) from exc
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
    return outcome


_UNWRITABLE = {errno.ENOSPC: "No space left on device", errno.EROFS: "Read-only file system", errno.EACCES: "Permission denied",
               errno.EDQUOT: "Disk quota exceeded"}


def _unwritable(exc: BaseException) -> str | None:
    """Why the runs folder can't be written, when that is what ``exc`` says (an OSError, or a library's
    own error such as safetensors' that carries the OS message); None for any other error."""
    if isinstance(exc, OSError) and exc.errno in _UNWRITABLE:
        return _UNWRITABLE[exc.errno]
    return next((why for why in _UNWRITABLE.values() if why in str(exc)), None)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _fail(config: RunConfig, run_dir: Path, events: EventSink, message: str, tb: str | None = None) -> None:
    with contextlib.suppress(OSError):  # a full disk may refuse the event line: the status says how the run ended
        events({"type": "end", "state": "failed", "error": message})
    runs.write_status(run_dir, state="failed", error=message, traceback=tb, finished=time.time())
    runs.index_run(config.runs_root, run_dir)


def _train_and_report(config: RunConfig, run_dir: Path, events: EventSink, stop: Callable[[], bool],
                      resume: bool, hooks: RecipeHooks, main: bool = True) -> RunOutcome:
    t0 = time.monotonic()
    # The loop applies config.train.precision itself (see core.device.autocast); a tracker rides on the accelerator.
    accelerator = make_accelerator(**trackers.accelerator_options(config, run_dir))
    track = trackers.start(config, run_dir, accelerator) if main else None

    def sink(event: dict[str, Any]) -> None:
        events(event)
        if track is not None:
            track(event)

    try:
        return _train_and_evaluate(config, run_dir, sink, stop, resume, hooks, main, accelerator, t0)
    finally:
        if track is not None:
            accelerator.end_training()


def _train_and_evaluate(config: RunConfig, run_dir: Path, events: EventSink, stop: Callable[[], bool], resume: bool,
                        hooks: RecipeHooks, main: bool, accelerator: Any, t0: float) -> RunOutcome:
    task = config.task
    if accelerator.num_processes > 1 and config.strategy.kind == "gradual_unfreeze":
        # DDP all-reduces the parameters that train when it wraps the model: layers unfrozen later would drift apart.
        raise ConfigError("strategy.kind", "gradual_unfreeze can't train on several processes (layers it unfreezes later "
                                           "would not be synchronised); train it in one process, or pick another strategy")
    reset_peak_memory(accelerator.device)  # the device whose peak the loop reports; data loading counts too
    bundle = load_bundle(config.data, task)
    for warning in bundle.warnings:
        events({"type": "log", "level": "warning", "message": warning})
    tokenizer = load_tokenizer(config.model)
    # The new head's initial weights come from the global RNG: seed it so a config reproduces its run.
    from accelerate.utils import set_seed

    set_seed(config.train.seed)
    model = load_model(config.model, task, bundle.labels.names)
    plan = build_strategy(model, config, num_train_rows=len(bundle.train))
    metric_name = resolve_metric_for_best(task, config.train.metric_for_best)

    max_length = min(config.model.max_length, getattr(model.config, "max_position_embeddings", 512))
    targets = {split: label_ids(getattr(bundle, split), bundle.labels, task) for split in ("train", "validation", "test")}
    token_cache = config.runs_root / ".cache" / "tokens"  # token ids reused by later runs on the same data and tokenizer
    encoded = {split: encode_split(getattr(bundle, split), task, tokenizer, max_length, targets[split], cache_dir=token_cache)
               for split in ("train", "validation", "test")}
    setup_seconds = time.monotonic() - t0

    collator = PaddingCollator(tokenizer.pad_token_id or 0, task)
    loss_fn = make_loss(task, class_weight_tensor(config, bundle, targets["train"]), config.strategy.label_smoothing)
    names = bundle.labels.names
    score = scorer(task, names, config.train.multi_label_threshold)
    best_path = run_dir / BEST_WEIGHTS

    def save_best(m: torch.nn.Module) -> None:
        from safetensors.torch import save_model

        if not main:
            return
        best_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = best_path.with_suffix(".tmp")
        try:
            save_model(m, str(tmp))
        except Exception:  # a full disk (safetensors says so in its own error): give the space back first
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, best_path)

    result = train(config, plan, encoded["train"], encoded["validation"], collator=collator, loss_fn=loss_fn,
                   score=score, metric_name=metric_name, events=events, should_stop=stop,
                   checkpoint_dir=run_dir / runs.CHECKPOINT_DIR, on_best=save_best, resume=resume,
                   accelerator=accelerator,
                   train_loss=hooks.train_loss(encoded["train"], collator, loss_fn) if hooks.train_loss else None)
    accelerator.wait_for_everyone()  # the main process has saved the best weights the others load next
    if not main and result.state == "cancelled":
        return RunOutcome(run_dir, "cancelled", result, None)
    if result.state == "cancelled":
        events({"type": "end", "state": "cancelled", "step": result.global_step})
        runs.write_status(run_dir, state="cancelled", finished=time.time(), step=result.global_step)
        runs.index_run(config.runs_root, run_dir)
        return RunOutcome(run_dir, "cancelled", result, None)

    # --- the best model on the held-out split -----------------------------------------------
    model = accelerator.unwrap_model(plan.model)
    if best_path.exists():
        from safetensors.torch import load_model as load_weights

        load_weights(model, str(best_path))
    # A sweep's trial is chosen on validation; its test split is read once, for the chosen trial (core.sweep).
    held_back = (run_dir / runs.TRIAL).exists()
    eval_split = "test" if len(bundle.test) and not held_back else "validation"
    t_eval = time.monotonic()
    reports = {}
    first_token_only = config.train.cls_only_top_layer and use_cls_only_top_layer(model)
    for split in dict.fromkeys(("validation", eval_split)):
        if split == "validation" and result.best_predictions is not None:
            preds = result.best_predictions  # the loop's, from the weights just reloaded: the same predictions again
        else:
            preds = predict(model, encoded[split], collator, config.train.batch_size * 2, loss_fn, accelerator,
                            precision=config.train.precision, skip_padding=config.train.skip_padding)
        if not main:
            continue  # it took part in the gathering; the main process writes
        gold, scores = to_metric_inputs(task, names, preds)
        frame = getattr(bundle, split)
        texts = [" ".join(t) for t in frame["tokens"]] if task == "token" else frame["text"].astype(str).tolist()
        reports[split] = build_report(task, names, gold, scores, threshold=config.train.multi_label_threshold, texts=texts)
        reports[split]["metrics"]["loss"] = preds.loss
        save_predictions(run_dir, split, split == eval_split, frame, task, names, gold, scores,
                         config.train.multi_label_threshold, texts)
    eval_seconds = time.monotonic() - t_eval
    if first_token_only:
        restore_top_layer(model)
    if not main:
        return RunOutcome(run_dir, "completed", result, None)

    model_dir = run_dir / runs.MODEL_DIR
    model_format.save(plan, model, model_dir, tokenizer=tokenizer, task=task)
    saved_mb = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file()) / 2**20

    train_lengths = encoded["train"].lengths
    report = {
        "run_id": run_dir.name,
        "task": task,
        "labels": list(names),
        "eval_split": eval_split,
        "validation": reports["validation"],
        "test": reports.get("test"),
        **({"test_held_back": "a sweep trial: the test split is evaluated for the sweep's best trial only"} if held_back else {}),
        "best_step": result.best_step,
        "best_metric": {"name": metric_name, "value": result.best_metric},
        "early_stopped": result.early_stopped,
        "steps": {"done": result.global_step, "total": result.total_steps},
        "strategy": plan.describe(),
        "model": {"name": config.model.name, **model_facts(model).as_dict()},
        "data": {"source": bundle.source, "sizes": bundle.sizes(), "warnings": bundle.warnings,
                 "columns": bundle.columns, "train_tokens": token_stats(train_lengths, max_length)},
        "timings": {"setup_s": setup_seconds, "train_s": result.train_seconds, "eval_s": eval_seconds,
                    "step_s": result.step_seconds,  # train_s less evaluation and checkpoints: the base of the rates
                    "samples_per_s": result.samples_seen / max(result.step_seconds, 1e-9),
                    "tokens_per_s": result.tokens_seen / max(result.step_seconds, 1e-9)},
        "peak_memory_mb": result.peak_memory_mb,
        "saved_model_mb": saved_mb,
        "history": result.evals,
    }
    if hooks.amend_report is not None:
        report = hooks.amend_report(report)
    report["temperature_scaling"] = calibration.for_report(run_dir, report)
    runs.atomic_write_json(run_dir / runs.REPORT, report)
    headline = reports[eval_split]["headline"]
    events({"type": "end", "state": "completed", "best_step": result.best_step, "best_metric": result.best_metric,
            "metric": metric_name, "test_headline": headline})
    runs.write_status(run_dir, state="completed", finished=time.time(), step=result.global_step)
    runs.index_run(config.runs_root, run_dir)
    if not config.train.keep_checkpoint:  # after "completed": a kill before this leaves only extra bytes
        shutil.rmtree(run_dir / Path(runs.CHECKPOINT_DIR).parent, ignore_errors=True)
    return RunOutcome(run_dir, "completed", result, report)


def save_predictions(run_dir: Path, split: str, evaluated: bool, frame: pd.DataFrame, task: str, names: tuple[str, ...],
                     gold: Any, scores: Any, threshold: float, texts: list[str]) -> None:
    """One split's predictions, one row per example, with the example's row number and the file's extra columns.

    ``texts``: the examples' texts as the report has them (an NER sentence's words joined by spaces).

    The evaluated split goes to ``predictions.parquet`` (the Evaluation page's drill-down, slices); the
    validation split, when it isn't the evaluated one, to ``predictions-validation.parquet`` (temperature
    scaling is fitted on it, label issues are looked for in it).
    """
    from core.data.canonical import EXTRA_PREFIX

    pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame.columns else None
    table = predictions_frame(task, names, gold, scores, texts=texts, text_pairs=pairs, threshold=threshold)
    if "row" in frame.columns:
        table.insert(0, "row", frame["row"].to_numpy())
    for column in frame.columns:
        if str(column).startswith(EXTRA_PREFIX):
            table[column] = frame[column].to_numpy()
    write_parquet(table, run_dir / (runs.PREDICTIONS if evaluated else runs.VALIDATION_PREDICTIONS))


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def load_run_config(run_dir: Path) -> RunConfig:
    raw = runs.read_json(run_dir / runs.CONFIG)
    if raw is None:
        raise ConfigError("run", f"{run_dir} has no readable config.json")
    return from_dict(raw)
