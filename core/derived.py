"""Derived runs: a model made from finished runs (compressed now; fused later) that is a run like any other.

A derived run has its own directory under the same root, laid out as a training run's (DESIGN.md,
"Derived runs"): ``config.json`` is the parent's config with its own ``name`` and a ``derived``
section (method, options, parent run ids); ``status.json``; ``events.jsonl``; ``model/``;
``report.json`` with the metrics, per-class report and confusion matrix computed on the **parent's**
validation and test splits (rebuilt from the parent's data config: same rows, same seed) plus a
``derived`` block (the parent's headline beside this one's, weight sizes, speed measured beside the
parent's in the same process); and ``predictions.parquet``. So the Evaluation page, the try-it box,
``core eval``, ``core predict`` and ``core serve`` read it as they read any run.

How the model is made depends on the method (core.compress): ``at_load`` links the parent's files and
marks the folder; ``export`` writes an ONNX file; ``train`` writes a student with fewer layers into
``student/`` and trains it through :func:`core.recipe.run_training` — events, curves, early stopping,
cancel and resume as any run — with the teacher's soft targets for ``distill``.

The dashboard submits derived runs to the job queue (:func:`submit`: the directory is made and queued
at once; the worker runs ``python -m core derive --run-dir``); the CLI's ``compress`` makes them in its
own process (:func:`compress_run`). Either way the parent is never written to: ``model/`` files are hard
links to the parent's (or copies) and the one file that differs, ``config.json``, is written as new.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import calibration, compress, runs
from core.config import ModelConfig, RunConfig, StrategyConfig, from_dict
from core.events import EventSink, EventWriter


class DerivedRunError(ValueError):
    """The parent run can't be used for this method; the message says why and what to do."""


@dataclass(frozen=True)
class DerivedOutcome:
    run_dir: Path
    report: dict[str, Any]


def find_method(name: str) -> compress.Method:
    """A compression or fusion method by name (core.compress.METHODS, core.fuse.METHODS)."""
    from core import fuse

    found = compress.METHODS.get(name) or fuse.METHODS.get(name)
    if found is None:
        raise compress.CompressionError(f"unknown method {name!r}; the compression methods are: {', '.join(compress.METHODS)}; "
                                        f"the fusion methods: {', '.join(fuse.METHODS)}")
    return found


def check_parent(parent_dir: Path, method_name: str) -> dict[str, Any]:
    """The parent's config as a dict, or DerivedRunError before any work is done."""
    from core.model_format import saved_format

    method = compress.method(method_name)
    status = runs.read_status(parent_dir)
    if status.get("state") != "completed":
        raise DerivedRunError(f"run {parent_dir.name} is {status.get('state') or 'broken'}, not completed: only a "
                              "completed run has a final model to compress. Finish or resume it first.")
    config = runs.read_json(parent_dir / runs.CONFIG)
    model_dir = parent_dir / runs.MODEL_DIR
    model_config = runs.read_json(model_dir / "config.json")
    weights = any(model_dir.glob("*.safetensors")) or (model_dir / "model.onnx").is_file()
    if not config or not model_config or not weights:
        raise DerivedRunError(f"run {parent_dir.name} has no complete saved model ({model_dir} is "
                              "missing or has no weights); train it again to get one.")
    if config.get("task") not in method.tasks:
        raise DerivedRunError(f"{method.name} can't compress a {config.get('task')} model; it takes "
                              f"{', '.join(method.tasks)}.")
    why = compress.refusal(method.name, model_config, saved_format(model_config))
    if why:
        raise DerivedRunError(f"{method.name} can't compress run {parent_dir.name}: {why}.")
    return config


def plan(parent_dir: str | Path, method_name: str, options: dict[str, Any] | list[str] | None = None,
         name: str | None = None) -> RunConfig:
    """The derived run's config, checked before anything is written (DerivedRunError, CompressionError,
    ConfigError for a bad option)."""
    parent_dir = Path(parent_dir)
    parent_config = check_parent(parent_dir, method_name)
    method = compress.method(method_name)
    chosen = compress.parse_options(method, options)
    config = from_dict({**parent_config, "name": name or f"{parent_config.get('name', 'run')}-{method_name}",
                        "derived": {"method": method_name, "options": compress.options_dict(chosen),
                                    "parents": [parent_dir.name]}})
    if method.made == "export":
        from core.onnx_export import require_onnxruntime

        require_onnxruntime()
    if method.made != "train":
        return config
    parent = from_dict(parent_config)
    if method_name == "prune-layers":  # a drop that doesn't fit the parent's depth is refused now, not in the worker
        from core.student import layers_to_keep

        model_config = runs.read_json(parent_dir / runs.MODEL_DIR / "config.json") or {}
        layers_to_keep(chosen.drop, int(model_config.get("num_hidden_layers") or model_config.get("n_layers") or 0))
    if method_name == "distill" and chosen.student:
        _check_student_tokenizer(chosen.student, parent_dir)
    # The student trains as a full fine-tuning of its own layers, at its own rate (a LoRA parent's 1e-3 would
    # be far too high for every weight); the parent's loss options (class weights, smoothing) stay.
    from core.strategy_registry import BASE_LEARNING_RATE, spec

    rate = chosen.learning_rate or (parent.train.learning_rate if spec(parent.strategy.kind).default_learning_rate is None
                                    else BASE_LEARNING_RATE)
    return config.replace(
        model=ModelConfig(name=chosen.student if method_name == "distill" and chosen.student else "",  # "": create() fills it
                          num_layers=None, max_length=parent.model.max_length),
        strategy=StrategyConfig(kind="full", class_weights=parent.strategy.class_weights,
                                label_smoothing=parent.strategy.label_smoothing),
        train=dataclasses.replace(parent.train, epochs=chosen.epochs, learning_rate=rate))


def _check_student_tokenizer(student: str, parent_dir: Path) -> None:
    from core.models import load_tokenizer
    from core.student import check_same_tokenizer

    check_same_tokenizer(load_tokenizer(ModelConfig(name=student)), load_tokenizer(ModelConfig(name=str(parent_dir / runs.MODEL_DIR))),
                         student)


def create(config: RunConfig, root: Path) -> Path:
    """The derived run's directory with its config and a queued status; a student's config names its folder."""
    run_dir = runs.create_run_dir(root, config.name, config.to_dict())
    if find_method(config.derived.method).made == "train" and not config.model.name:
        from core.student import STUDENT_DIR

        config = config.replace(model=dataclasses.replace(config.model, name=str(run_dir / STUDENT_DIR)))
        runs.atomic_write_json(run_dir / runs.CONFIG, config.to_dict())
    return run_dir


def plan_fusion(member_dirs: list[str | Path], method_name: str, options: dict[str, Any] | list[str] | None = None,
                name: str | None = None) -> RunConfig:
    """The fused run's config (the first member's, with the members as parents), checked before anything is written."""
    from core import fuse

    member_dirs = [Path(d) for d in member_dirs]
    found = find_method(method_name)
    if found.made != "fuse":
        raise compress.CompressionError(f"{method_name} is a compression method; fuse with one of: {', '.join(fuse.METHODS)}")
    configs = fuse.check_members(member_dirs, method_name)
    chosen = compress.parse_options(found, options)
    if method_name == "ensemble":
        fuse.member_weights(member_dirs, chosen)  # weights that don't fit the members are refused now
    elif getattr(chosen, "weights", None) and len(chosen.weights) != len(member_dirs):
        raise compress.CompressionError(f"options.weights has {len(chosen.weights)} value(s) for {len(member_dirs)} member(s).")
    first = configs[0]
    return from_dict({**first, "name": name or f"{first.get('name', 'run')}-{method_name}",
                      "derived": {"method": method_name, "options": compress.options_dict(chosen),
                                  "parents": [d.name for d in member_dirs]}})


def submit_config(config: RunConfig, root: Path, owner: str | None = None) -> str:
    """Create a planned derived run and queue it for the job worker; return its run id."""
    from core import jobs

    return jobs.queue_existing(root, create(config, root), kind="derive", owner=owner)


def submit(parent_dir: str | Path, method_name: str, options: dict[str, Any] | list[str] | None = None, *,
           name: str | None = None, owner: str | None = None) -> str:
    """Queue a derived run of ``parent_dir`` for the job worker; return its run id. Refusals come first."""
    parent_dir = Path(parent_dir)
    return submit_config(plan(parent_dir, method_name, options, name), parent_dir.parent, owner)


def fuse_run(member_dirs: list[str | Path], method_name: str, *, name: str | None = None,
             options: dict[str, Any] | list[str] | None = None, echo: EventSink | None = None) -> DerivedOutcome:
    """Make the fused run of ``member_dirs`` in this process (the CLI's ``fuse``); refusals come before any work."""
    config = plan_fusion(member_dirs, method_name, options, name)
    return make(create(config, Path(member_dirs[0]).parent), echo=echo)


def compress_run(parent_dir: str | Path, method_name: str, *, name: str | None = None,
                 options: dict[str, Any] | list[str] | None = None, echo: EventSink | None = None) -> DerivedOutcome:
    """Make the derived run of ``parent_dir`` with ``method_name`` in this process, evaluate it and return it.

    Raises DerivedRunError (or CompressionError, ConfigError) before any work when the parent can't be used;
    once the derived run exists, a failure is recorded in its status and re-raised, and the parent stays as it was.
    """
    parent_dir = Path(parent_dir)
    run_dir = create(plan(parent_dir, method_name, options, name), parent_dir.parent)
    return make(run_dir, echo=echo)


def make(run_dir: str | Path, *, resume: bool = False, echo: EventSink | None = None) -> DerivedOutcome:
    """Make the model of the derived run ``run_dir`` (created by :func:`create`), evaluate it, write its report.

    What the job worker runs (``python -m core derive``). A failure is recorded in the run's status, its
    half-made model removed, and raised as core.recipe.RunFailed with that message.
    """
    from core.recipe import load_run_config

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    parent_dir = run_dir.parent / config.derived.parents[0]
    made = find_method(config.derived.method)
    if made.made == "train":
        return _train_student(config, run_dir, parent_dir, resume, echo)
    if made.made == "fuse":
        return _fuse(config, run_dir, echo)

    def build() -> dict[str, Any]:
        check_parent(parent_dir, made.name)  # the parent may have changed since the run was queued
        if made.made == "at_load":
            _marked_copy(parent_dir, run_dir, {"method": made.name, "options": config.derived.options})
        else:
            _export(parent_dir, run_dir, config)
        return {}

    return _without_training(config, run_dir, [parent_dir], build, echo)


def _without_training(config: RunConfig, run_dir: Path, parent_dirs: list[Path], build: Any,
                      echo: EventSink | None) -> DerivedOutcome:
    """Make a model that needs no training (``build()`` writes ``run_dir/model`` and returns what it decided),
    evaluate it on the parent's splits and write the report; a failure removes the half-made model."""
    from core.data import load_bundle
    from core.evaluate import evaluate_splits, run_predictor

    t0 = time.monotonic()
    root = run_dir.parent
    try:
        with EventWriter(run_dir / runs.EVENTS, echo=echo) as events:
            events({"type": "start", "derived": config.to_dict()["derived"]})
            runs.write_status(run_dir, state="running", pid=os.getpid(), started=time.time(), error=None)
            runs.index_run(root, run_dir)
            decided = build()
            # loaded once: evaluated on the splits, then timed beside the parent
            predictor, bundle = run_predictor(run_dir), load_bundle(config.data, config.task)
            evaluated = evaluate_splits(run_dir, predictor, bundle)
            report = derived_report(run_dir, parent_dirs[0], config, evaluated, time.monotonic() - t0, predictor, bundle)
            if find_method(config.derived.method).made == "fuse":
                from core.fuse import fusion_block

                report["fusion"] = fusion_block(parent_dirs, report, decided, time.monotonic() - t0)
            report["temperature_scaling"] = calibration.for_report(run_dir, report)
            runs.atomic_write_json(run_dir / runs.REPORT, report)
            events({"type": "end", "state": "completed", "test_headline": report[report["eval_split"]]["headline"]})
        runs.write_status(run_dir, state="completed", finished=time.time())
    except BaseException as exc:
        shutil.rmtree(run_dir / runs.MODEL_DIR, ignore_errors=True)  # links or a copy: the parents keep their own
        shutil.rmtree(run_dir / (runs.MODEL_DIR + ".tmp"), ignore_errors=True)
        _failed(run_dir, parent_dirs, config.derived.method, exc)
    runs.index_run(root, run_dir)
    return DerivedOutcome(run_dir, report)


def _fuse(config: RunConfig, run_dir: Path, echo: EventSink | None) -> DerivedOutcome:
    from core import fuse

    member_dirs = [run_dir.parent / p for p in config.derived.parents]
    found = find_method(config.derived.method)
    options = compress.parse_options(found, config.derived.options)

    def build() -> dict[str, Any]:
        configs = fuse.check_members(member_dirs, found.name)  # the members may have changed since it was queued
        if found.name == "ensemble":
            fuse.write_ensemble(member_dirs, run_dir / runs.MODEL_DIR, options)
            return {}
        model, tokenizer, decided = fuse.merged_model(member_dirs, found.name, options, configs)
        tmp = run_dir / (runs.MODEL_DIR + ".tmp")
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        runs.swap_in(tmp, run_dir / runs.MODEL_DIR)
        return decided

    return _without_training(config, run_dir, member_dirs, build, echo)


def _failed(run_dir: Path, parent_dirs: list[Path], method_name: str, exc: BaseException) -> None:
    """Record the failure in the derived run's status and raise it as core.recipe.RunFailed (the CLI's exit 1
    with the message, never a traceback); KeyboardInterrupt and the like go on as they are."""
    from core.recipe import RunFailed

    which = ", ".join(p.name for p in parent_dirs)
    message = (f"{method_name} failed: {_message(exc).rstrip('.')}. The run{'s' if len(parent_dirs) > 1 else ''} it was "
               f"made from ({which}) {'are' if len(parent_dirs) > 1 else 'is'} unchanged.")
    runs.write_status(run_dir, state="failed", finished=time.time(), error=message)
    runs.index_run(run_dir.parent, run_dir)
    if isinstance(exc, Exception):
        raise RunFailed(run_dir, message) from exc
    raise exc


def _message(exc: BaseException) -> str:
    if isinstance(exc, (DerivedRunError, compress.CompressionError)):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return (f"Could not write the derived run ({exc.strerror}: {exc.filename}). Free space on the runs folder's disk "
                "or fix its permissions, then make it again.")
    return f"{type(exc).__name__}: {exc}."


def _marked_copy(parent_dir: Path, run_dir: Path, marker: dict[str, Any]) -> Path:
    """``run_dir/model``: the parent's files as hard links, and a new ``config.json`` that carries ``marker``."""
    model_dir = run_dir / runs.MODEL_DIR
    runs.link_or_copy_tree(parent_dir / runs.MODEL_DIR, model_dir)
    model_config = runs.read_json(model_dir / "config.json") or {}
    (model_dir / "config.json").unlink()  # a hard link to the parent's: replaced, never written through
    runs.atomic_write_json(model_dir / "config.json", {**model_config, compress.MARKER: marker})
    return model_dir


def _export(parent_dir: Path, run_dir: Path, config: RunConfig) -> None:
    """``run_dir/model``: the parent's tokenizer and config with the marker, and ``model.onnx`` (+ predict.py)."""
    from core.data import load_bundle
    from core.model_format import load_saved
    from core.onnx_export import export

    model, tokenizer, task = load_saved(parent_dir / runs.MODEL_DIR)
    bundle = load_bundle(config.data, config.task)
    frame = bundle.validation if len(bundle.validation) else bundle.train
    texts = [" ".join(t) for t in frame["tokens"][:16]] if task == "token" else frame["text"].astype(str).tolist()[:16]
    tmp = run_dir / (runs.MODEL_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    facts = export(model, tokenizer, task, tmp, quantize=config.derived.method == "onnx-int8", check_texts=texts)
    tokenizer.save_pretrained(tmp)
    model_config = runs.read_json(parent_dir / runs.MODEL_DIR / "config.json") or {}
    export_facts = {**facts, "max_length": config.model.max_length, "threshold": config.train.multi_label_threshold}
    runs.atomic_write_json(tmp / "config.json", {**model_config, compress.MARKER: {
        "method": config.derived.method, "options": config.derived.options, "export": export_facts}})
    runs.swap_in(tmp, run_dir / runs.MODEL_DIR)


def _train_student(config: RunConfig, run_dir: Path, parent_dir: Path, resume: bool,
                   echo: EventSink | None) -> DerivedOutcome:
    from core.recipe import RecipeHooks, run_training
    from core.student import STUDENT_DIR, distill_loss, every_other_layer, layers_to_keep, write_student

    student_dir = run_dir / STUDENT_DIR
    options = compress.parse_options(find_method(config.derived.method), config.derived.options)
    if not resume or not student_dir.is_dir():
        try:
            check_parent(parent_dir, config.derived.method)
            if Path(config.model.name) == student_dir:  # else a named student model: trained from its own weights
                shutil.rmtree(student_dir, ignore_errors=True)
                write_student(parent_dir / runs.MODEL_DIR, student_dir,
                              (lambda depth: layers_to_keep(options.drop, depth)) if config.derived.method == "prune-layers"
                              else every_other_layer)
        except BaseException as exc:
            _failed(run_dir, [parent_dir], config.derived.method, exc)
    t0 = time.monotonic()
    hooks = RecipeHooks(
        train_loss=(lambda train_set, collator, hard: distill_loss(config, parent_dir, train_set, collator, hard, options))
        if config.derived.method == "distill" else None,
        amend_report=lambda report: {**report, "derived": lineage_block(run_dir, parent_dir, config, report,
                                                                        time.monotonic() - t0)})
    outcome = run_training(config, run_dir, resume=resume, echo=echo, hooks=hooks)  # RunFailed says why it failed
    if outcome.state == "completed" and not config.train.keep_checkpoint:
        shutil.rmtree(student_dir, ignore_errors=True)  # the starting weights: needed to resume, not once completed
    return DerivedOutcome(run_dir, outcome.report or {})


def folder_mb(path: Path) -> float:
    """Size on disk of a folder, each file counted once even when hard-linked from elsewhere."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def derived_report(run_dir: Path, parent_dir: Path, config: RunConfig, evaluated: dict[str, Any],
                   seconds: float, predictor: Any = None, bundle: Any = None) -> dict[str, Any]:
    """report.json of a derived run that did not train: the parent's report with this model's evaluations."""
    parent_report = runs.read_json(parent_dir / runs.REPORT) or {}
    eval_split = evaluated["eval_split"]
    report = {**parent_report, "run_id": run_dir.name, "eval_split": eval_split, "validation": evaluated["validation"],
              "test": evaluated.get("test"), "history": [], "best_step": None,
              "timings": {"eval_s": seconds}, "saved_model_mb": folder_mb(run_dir / runs.MODEL_DIR)}
    report["derived"] = lineage_block(run_dir, parent_dir, config, report, seconds, predictor, bundle)
    return report


def lineage_block(run_dir: Path, parent_dir: Path, config: RunConfig, report: dict[str, Any], seconds: float,
                  predictor: Any = None, bundle: Any = None) -> dict[str, Any]:
    """The ``derived`` block of report.json: lineage, headlines, weight sizes, and speed beside the parent's.

    ``predictor`` and ``bundle``: the derived run's, when the caller has them; else both models are loaded from
    their saved folders (a student's is saved before its report is written) and the splits rebuilt.
    """
    from core.data import load_bundle
    from core.deploy import measure_speed
    from core.evaluate import run_predictor

    parent_report = runs.read_json(parent_dir / runs.REPORT) or {}
    eval_split = report["eval_split"]
    predictors = {"parent": run_predictor(parent_dir), "derived": predictor or run_predictor(run_dir)}
    bundle = bundle if bundle is not None else load_bundle(config.data, config.task)
    frame = bundle.test if len(bundle.test) else bundle.validation
    texts = [" ".join(t) for t in frame["tokens"]] if config.task == "token" else frame["text"].astype(str).tolist()
    speed = measure_speed(predictors, texts)
    return {**config.to_dict()["derived"], "parent_headline": (parent_report.get(eval_split) or {}).get("headline") or {},
            "headline": (report.get(eval_split) or {}).get("headline") or {},
            "weights_mb": compress.serialized_mb(predictors["derived"].model),
            "parent_weights_mb": compress.serialized_mb(predictors["parent"].model),
            "speed": speed.get("derived"), "parent_speed": speed.get("parent"), "seconds": seconds}


def lineage(report: dict[str, Any]) -> dict[str, Any] | None:
    """What a page says about a derived run: method, parent, the headline beside the parent's, weight sizes.

    None for a training run. ``change`` is None when the parent's report had no headline.
    """
    derived = report.get("derived")
    if not derived:
        return None
    mine, theirs = derived.get("headline") or {}, derived.get("parent_headline") or {}
    value, parent_value = mine.get("value"), theirs.get("value")
    fusion = report.get("fusion") or {}
    return {"method": derived.get("method"), "parents": list(derived.get("parents") or []), "metric": mine.get("name"),
            "value": value, "parent_value": parent_value,
            "change": value - parent_value if value is not None and parent_value is not None else None,
            "weights_mb": derived.get("weights_mb"), "parent_weights_mb": derived.get("parent_weights_mb"),
            "fused": bool(fusion), "best_member": fusion.get("best_member"), "vs_best": fusion.get("vs_best"),
            "mean_member": fusion.get("mean_member"), "vs_mean": fusion.get("vs_mean")}
