"""Sweeps for display: the Strategy page's search-space builder and the Sweeps page's reading of a sweep.

Pure functions, no streamlit: the builder's fields come from the same field metadata the forms use
(``core.config.field_specs``), so its bounds are the ones ``core.sweep.parse_space`` checks; a sweep is read
through ``core.sweep`` (its ``sweep.json`` and its Optuna study) into plain rows and frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core import runs, sweep
from core.config import STRATEGY_KINDS, ModelConfig, RunConfig, StrategyConfig, field_specs, from_dict
from ui.charts import trial_value
from ui.forms import form_state, train_fields, widget_kind

# Fields the builder does not offer, and why: a seed searched picks the luckiest draw, not a setting; the
# others decide when and where things are logged or evaluated (eval_every is also when the pruner looks, and
# metric_for_best what it compares), or how fast a run goes, not what it learns.
NOT_SEARCHED = {"train.seed", "train.log_every", "train.eval_every", "train.precision", "train.metric_for_best",
                "train.report_to"}
MODEL_SEARCHED = ("max_length",)  # model.num_layers: its useful range depends on the model's depth, unknown here
DEFAULT_TRIALS = 12
SETTINGS_PREFIX = "sweep."  # the builder's widget keys (kept in the form draft, see ui.app_state.DRAFT_PREFIXES)
FIELDS_KEY = "sweep.fields"
YAML_KEY = "sweep.yaml"  # the space as YAML, when the user writes it rather than building it


@dataclass(frozen=True)
class SearchField:
    """A field the builder offers: ``kind`` float or int (a range) or choice (a list)."""

    key: str  # section.field
    kind: str
    spec: dict[str, Any]


def low_key(key: str) -> str:
    return f"{SETTINGS_PREFIX}low.{key}"


def high_key(key: str) -> str:
    return f"{SETTINGS_PREFIX}high.{key}"


def log_key(key: str) -> str:
    return f"{SETTINGS_PREFIX}log.{key}"


def choices_key(key: str) -> str:
    return f"{SETTINGS_PREFIX}choices.{key}"


def searchable_fields(task: str, kinds: Sequence[str]) -> dict[str, SearchField]:
    """The fields a sweep may search for ``task``, keyed ``section.field``: strategy.kind, the number fields with
    bounds and the fields with choices of train, model (max_length) and strategy; a strategy's own options only
    for the strategies in ``kinds`` (the others' options would never be drawn)."""
    drawn = set(kinds)
    specs: list[tuple[str, dict[str, Any]]] = [
        ("strategy", s) for s in field_specs(StrategyConfig) if "strategies" not in s or drawn & set(s["strategies"])]
    specs += [("train", s) for s in train_fields(task)]
    specs += [("model", s) for s in field_specs(ModelConfig) if s["name"] in MODEL_SEARCHED]
    out: dict[str, SearchField] = {}
    for section, spec in specs:
        key = f"{section}.{spec['name']}"
        shape = widget_kind(spec)
        if key in NOT_SEARCHED or shape not in ("float", "int", "optional_int", "choice"):
            continue
        out[key] = SearchField(key, "int" if shape == "optional_int" else shape, spec)
    return out


def default_range(f: SearchField, current: Any) -> tuple[float, float, bool]:
    """A first range around the form's ``current`` value, inside the field's bounds: a decade either side on a
    log scale for a small positive float (a learning rate), else half to twice the value."""
    spec = f.spec
    lowest = spec.get("min", spec.get("exclusive_min"))
    highest = spec.get("max")
    value = float(current if isinstance(current, (int, float)) and not isinstance(current, bool) else spec.get("default") or 0)
    if f.kind == "float":
        log = 0 < value < 1e-2
        low, high = (value / 10, value * 10) if log else (value / 2, value * 2) if value else (0.0, 0.1)
        low, high = float(f"{low:.3g}"), float(f"{high:.3g}")  # 8.46e-05 in the YAML, not 8.459126528049374e-05
        if lowest is not None:
            low = max(low, float(lowest) if "min" in spec else float(lowest) + (value / 100 if value else 1e-6))
        if highest is not None:
            high = min(high, float(highest))
        return low, high, log
    low_i, high_i = max(int(value) // 2, 0), max(int(value) * 2, int(value) + 1)
    if lowest is not None:
        low_i = max(low_i, int(lowest) + (0 if "min" in spec else 1))
    if highest is not None:
        high_i = min(high_i, int(highest))
    return float(low_i), float(max(high_i, low_i + 1)), False


def builder_space(chosen: Sequence[SearchField], state: Mapping[str, Any]) -> dict[str, Any]:
    """The search space the builder's widgets describe (``state``: their values by key), as core.sweep reads it."""
    raw: dict[str, Any] = {}
    for f in chosen:
        if f.kind == "choice":
            raw[f.key] = list(state.get(choices_key(f.key)) or [])
            continue
        low, high = state.get(low_key(f.key)), state.get(high_key(f.key))
        if f.kind == "int":
            low, high = (int(v) if isinstance(v, (int, float)) else v for v in (low, high))
        item: dict[str, Any] = {"low": low, "high": high}
        if f.kind == "float" and state.get(log_key(f.key)):
            item["log"] = True
        raw[f.key] = item
    return raw


def space_yaml(raw: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True) if raw else "# no field chosen yet\n"


def space_from_text(text: str) -> tuple[dict[str, Any], str | None]:
    """A search space typed or pasted as YAML (a space.yaml of the CLI), with what is wrong with it, if anything:
    the YAML, or what :func:`core.sweep.parse_space` says (the field, its own bounds and choices)."""
    import yaml

    try:
        raw = yaml.safe_load(text or "")
    except yaml.YAMLError as exc:
        return {}, f"the search space is not valid YAML: {exc}"
    if not isinstance(raw, dict):
        return {}, "write the search space as section.field: {low: A, high: B} or section.field: [choices], one per line"
    return raw, check_space(raw)


def check_space(raw: dict[str, Any]) -> str | None:
    """What :func:`core.sweep.parse_space` refuses in ``raw`` (it names the field), or None."""
    try:
        sweep.parse_space(raw)
    except sweep.SweepError as exc:
        return str(exc)
    return None


def sweep_command(trials: int, workers: int, pruner: str, name: str) -> str:
    """The CLI that runs the same sweep, once the form's config is saved as base.yaml and the space as space.yaml."""
    return (f"python -m core sweep --config base.yaml --space space.yaml --trials {trials} --workers {workers} "
            f"--pruner {pruner} --name {name}")


def taken_names(root: str | Path) -> set[str]:
    """Sweep names already used under the runs root (a folder each)."""
    folder = Path(root, sweep.SWEEPS_DIR)
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()


def proposed_name(config_name: str, taken: set[str]) -> str:
    """``<config name>-sweep``, numbered when that name is taken (a sweep's name is its folder)."""
    base = (config_name or "run")[:56] + "-sweep"
    if base not in taken:
        return base
    return next(f"{base}-{i}" for i in range(2, 10_000) if f"{base}-{i}" not in taken)


def objective(config: RunConfig) -> str:
    """What a sweep of ``config`` optimizes, in words: "validation f1_macro (higher is better)"."""
    from core.metrics import greater_is_better, resolve_metric_for_best

    try:
        metric = resolve_metric_for_best(config.task, config.train.metric_for_best)
    except ValueError:  # the form says why elsewhere; the sweep would refuse it
        return f"validation {config.train.metric_for_best}"
    return f"validation {metric} ({'higher' if greater_is_better(metric) else 'lower'} is better)"


def search_notes(raw: dict[str, Any], config: RunConfig, pruner: str) -> list[str]:
    """What the form's settings mean for this sweep, in words (the few cases that waste a sweep)."""
    from core.strategy_registry import spec

    notes = []
    kinds = raw.get("strategy.kind")
    if isinstance(kinds, list) and len(kinds) > 1 and "train.learning_rate" not in raw:
        usual = ", ".join(f"{k} {spec(k).form_learning_rate:g}" for k in kinds if k in STRATEGY_KINDS)
        notes.append(f"Every strategy drawn trains at this form's learning rate {config.train.learning_rate:g}; their usual "
                     f"rates differ ({usual}), so search train.learning_rate too.")
    if pruner != "none" and not config.train.eval_every and config.train.epochs <= 1 and "train.epochs" not in raw:
        notes.append("A trial is evaluated once per epoch (eval every is 0) and trains one epoch, so the pruner has "
                     "nothing to compare before a trial ends: set eval every under Hyper-parameters.")
    return notes


# --- reading a sweep -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepView:
    """A sweep as the Sweeps page shows it; ``problem`` says why there is nothing more to show."""

    info: dict[str, Any]  # its sweep.json, plus "running"
    result: sweep.SweepResult | None = None
    axes: dict[str, dict[str, Any]] = field(default_factory=dict)  # param -> kind, log, low, high, choices
    importances: dict[str, float] = field(default_factory=dict)
    problem: str | None = None

    @property
    def running(self) -> bool:
        return bool(self.info.get("running"))


def storage_version(info: dict[str, Any]) -> tuple[Any, ...]:
    """Changes whenever the sweep's journal file does (a cache key); an RDB storage has none, so its running
    flag and the time do (the page's refresh cadence bounds how often it is read)."""
    import time

    storage = str(info.get("storage") or "")
    if storage and "://" not in storage:
        try:
            stat = Path(storage).stat()
            return (stat.st_mtime_ns, stat.st_size, bool(info.get("running")))
        except OSError:
            return (None, bool(info.get("running")))
    return (int(time.time()), bool(info.get("running")))


def read_sweep(root: str | Path, info: dict[str, Any]) -> SweepView:
    """The sweep ``info`` (a :func:`core.sweep.list_sweeps` row) with its trials, axes and importances."""
    name = str(info.get("name"))
    try:
        study = sweep.load_study(root, name, info)
    except sweep.SweepError as exc:
        return SweepView(info, problem=str(exc))
    except Exception as exc:  # noqa: BLE001 - an RDB storage that can't be reached: said on the page, not a traceback
        return SweepView(info, problem=f"Can't read sweep {name}'s study from its storage ({type(exc).__name__}: {exc}).")
    result = sweep.summarize(name, str(info.get("storage", "")), study)
    return SweepView(info, result, axes_of(study), {k: float(v) for k, v in sweep.importances(study).items()})


def axes_of(study: Any) -> dict[str, dict[str, Any]]:
    """Each searched field's distribution as the trials recorded it (sweep.json lists only the keys): kind
    (float, int, categorical), log, low/high or choices."""
    axes: dict[str, dict[str, Any]] = {}
    for trial in study.get_trials(deepcopy=False):
        for key, dist in trial.distributions.items():
            if key in axes:
                continue
            if hasattr(dist, "choices"):
                axes[key] = {"kind": "categorical", "choices": list(dist.choices), "log": False}
            else:
                kind = "int" if type(dist).__name__.startswith("Int") else "float"
                axes[key] = {"kind": kind, "low": dist.low, "high": dist.high, "log": bool(getattr(dist, "log", False))}
    return axes


def log_tail(root: str | Path, name: str, lines: int = 15) -> str:
    """The end of the sweep's own log (``sweeps/<name>/sweep.log``, written when the dashboard started it)."""
    try:
        text = Path(root, sweep.SWEEPS_DIR, name, "sweep.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def pending_note(root: str | Path, name: str) -> str | None:
    """A sweep the dashboard launched whose driver has not written sweep.json yet: the end of its log (where a
    start-up error appears), or "" while it is silent. None when there is no such folder."""
    folder = Path(root, sweep.SWEEPS_DIR, name)
    if not folder.is_dir() or (folder / sweep.SWEEP_INFO).exists():
        return None
    return log_tail(root, name)


def param_keys(view: SweepView) -> list[str]:
    """The searched fields in the order the sweep lists them, then any the trials hold besides."""
    keys = [str(k) for k in view.info.get("space") or []]
    for row in view.result.trials if view.result else []:
        keys += [k for k in row["params"] if k not in keys]
    return keys


def value_label(metric: str) -> str:
    return f"validation {metric}" if metric else "validation value"


def trials_frame(view: SweepView) -> pd.DataFrame:
    """One row per trial: number, state, validation value (a pruned or running trial's last reported one), each
    searched field (empty where a strategy's option was not drawn), its run id and how long it took."""
    assert view.result is not None
    keys = param_keys(view)
    value = value_label(view.result.metric)
    rows = []
    for t in view.result.trials:
        seconds = t["finished"] - t["started"] if t.get("finished") and t.get("started") else None
        rows.append({"trial": t["number"], "state": t["state"], value: trial_value(t),
                     **{k: _cell(t["params"].get(k)) for k in keys}, "run": t.get("run_id") or "", "seconds": seconds})
    return pd.DataFrame(rows, columns=["trial", "state", value, *keys, "run", "seconds"])


def _cell(value: Any) -> Any:
    # A column of one field holds one type; a strategy option not drawn for a trial is left empty.
    return value if value is None or isinstance(value, (int, float, str)) else str(value)


def state_counts(view: SweepView) -> dict[str, int]:
    counts = {s: 0 for s in ("complete", "pruned", "fail", "running", "waiting")}
    for t in view.result.trials if view.result else []:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    return counts


def status_line(view: SweepView) -> str:
    """Whether the sweep runs, and how many of its trials are done, in one line."""
    counts = state_counts(view)
    done = counts["complete"] + counts["pruned"]  # what the sweep counts towards its trials (failed ones are run again)
    if view.running:
        status = "Running"
    else:  # its process is gone: with trials left, it was stopped or died (Resume continues it)
        status = "Finished" if done >= int(view.info.get("trials") or 0) else "Stopped"
    parts = [f"{counts['complete']} finished", f"{counts['pruned']} pruned"]
    parts += [f"{counts[s]} {s if s != 'fail' else 'failed'}" for s in ("fail", "running", "waiting") if counts[s]]
    return f"{status}: {done} of {view.info.get('trials')} trials done ({', '.join(parts)})."


def settings_line(view: SweepView) -> str:
    """The sweep's settings in one line of plain text (names in it are users': the page shows it as text)."""
    info = view.info
    base = info.get("base") or {}
    workers = info.get("workers")
    at_a_time = "in the sweep's own process" if workers == 0 else f"{workers} at a time through the queue"
    return (f"{info.get('trials')} trials, {at_a_time}; {info.get('direction', '?')} validation {info.get('metric', '?')}; "
            f"pruner {info.get('pruner')}; TPE seed {info.get('seed')}. Base: {base.get('name')} on "
            f"{(base.get('data') or {}).get('source')}, model {(base.get('model') or {}).get('name')}, strategy "
            f"{(base.get('strategy') or {}).get('kind')}.")


def params_frame(params: dict[str, Any]) -> pd.DataFrame:
    """The best trial's settings, one row each (values as text: one column holds numbers and names)."""
    return pd.DataFrame([{"field": k, "value": f"{v:.4g}" if isinstance(v, float) else str(v)} for k, v in params.items()],
                        columns=["field", "value"])


def test_metrics_frame(best_test: dict[str, Any] | None) -> pd.DataFrame:
    """The best trial's test metrics, one row each."""
    metrics = (best_test or {}).get("metrics") or {}
    return pd.DataFrame([{"metric": k, "value": float(v)} for k, v in metrics.items()], columns=["metric", "value"])


def trial_label(row: dict[str, Any], metric: str) -> str:
    value = trial_value(row)
    shown = f"{value:.4f}" if value is not None else "no value"
    return f"trial {row['number']} · {row['state']} · {metric or 'value'} {shown} · {row.get('run_id')}"


def best_run_form(root: str | Path, run_id: str, sweep_name: str) -> dict[str, Any]:
    """The session values that put the best trial's run config (its config.json) into the Strategy page's form:
    every ``cfg.<section>.<field>`` plus the page keys a loaded config sets (``ui.forms.form_state``).

    Raises:
        RunIdError: the run id is not a plain run folder name.
        ConfigError: its config.json is missing or no longer valid.
    """
    from core.config import ConfigError

    raw = runs.read_json(runs.run_path(root, run_id) / runs.CONFIG)
    if not isinstance(raw, dict):
        raise ConfigError("(top)", f"run {run_id} has no readable config.json (deleted, or half-written)")
    config = from_dict({k: v for k, v in raw.items() if k != "derived"})
    return form_state(config.replace(name=f"{sweep_name}-best"))
