"""Hyper-parameter sweeps on Optuna: every trial a normal Tuneboard run, pruned from the loop's evaluations.

``python -m core sweep --config base.yaml --space space.yaml --trials N [--storage URL] [--resume NAME]``

The search space is a small YAML (or dict) keyed by config field, ``section.field``::

    train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}
    train.epochs: {low: 1, high: 3}            # whole numbers: an integer range
    strategy.kind: [full, lora, freeze]         # a list: categorical
    strategy.lora_r: [4, 8, 16]                 # a strategy's own option: suggested only when that kind is drawn

Every key must be a field of the run config; a range outside the field's own bounds (its metadata, the same the
forms use), or a value its choices don't allow, is refused naming the field. The objective is the run's best
*validation* value of ``train.metric_for_best`` (the test split is never looked at). Each evaluation reports to
the trial; Optuna's pruner (median by default, or successive halving) stops a trial that falls behind, and the
trial ends as Optuna's PRUNED with its run cancelled at that step (its status says why).

Storage: Optuna's journal file under ``<runs root>/sweeps/<name>/journal.log`` by default (SQLite locks under
parallel workers, optuna#820), or any RDB URL (PostgreSQL, MySQL). ``--resume NAME`` continues a sweep: finished
trials are kept, a trial that was running when the sweep died is marked failed and its settings run again first.

``--workers 0`` runs the trials in the calling process, one after another; ``--workers K`` queues them as jobs,
K at a time, for the job workers (on this machine or others sharing the runs root and an RDB storage).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import SECTIONS, ConfigError, RunConfig, field_specs, from_dict

SWEEPS_DIR = "sweeps"
SWEEP_INFO = "sweep.json"  # sweeps/<name>/: the storage, the settings, the driver's pid (what the Sweep view reads)
PRUNERS = ("median", "halving", "none")
PRUNE_AFTER = 0.3  # a trial is judged by the pruner from this share of its steps on (its evaluations all reported)
NOT_SEARCHED = frozenset({"data.source", "data.validation_source", "data.test_source", "model.name"})
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class SweepError(ValueError):
    """A search space or sweep setting that can't be used (the field, what is wrong, how to fix it)."""


@dataclass(frozen=True)
class Dimension:
    """One searched field: a float or int range (``log`` for a log scale) or a list of choices."""

    key: str  # section.field
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    strategies: tuple[str, ...] = ()  # a strategy option: searched only when strategy.kind is one of these


def _spec(key: str) -> dict[str, Any]:
    section, _, name = key.partition(".")
    if section not in SECTIONS or not name:
        raise SweepError(f"{key!r} is not a config field: write section.field with a section of "
                         f"{', '.join(SECTIONS)} (e.g. train.learning_rate)")
    specs = {s["name"]: s for s in field_specs(SECTIONS[section])}
    if name not in specs:
        close = sorted(specs, key=lambda n: _distance(n, name))[:3]
        raise SweepError(f"{key!r} is not a field of {section}; did you mean {', '.join(f'{section}.{c}' for c in close)}?")
    return specs[name]


def _distance(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(a, b, strict=False)) + abs(len(a) - len(b))


def parse_space(raw: dict[str, Any]) -> list[Dimension]:
    """The search space as dimensions, every range and choice checked against the field's own metadata.

    Raises:
        SweepError: an unknown field, a malformed range, a bound outside the field's, a choice it doesn't allow.
    """
    if not isinstance(raw, dict) or not raw:
        raise SweepError("the search space is empty: give at least one field, e.g. "
                         "train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}")
    out = []
    for key, value in raw.items():
        if key in NOT_SEARCHED:
            raise SweepError(f"{key} names a file or a model, not a hyper-parameter: set it in the base config, and "
                             "sweep one data set and model at a time")
        spec = _spec(str(key))
        strategies = tuple(spec.get("strategies") or ())
        if isinstance(value, list):
            if not value:
                raise SweepError(f"{key}: the list of choices is empty")
            for choice in value:
                if "choices" in spec and choice not in spec["choices"]:
                    raise SweepError(f"{key}: {choice!r} is not one of {', '.join(map(str, spec['choices']))}")
                _in_bounds(key, spec, choice)
            out.append(Dimension(str(key), "categorical", choices=tuple(value), strategies=strategies))
            continue
        if not isinstance(value, dict) or not {"low", "high"} <= set(value) or set(value) - {"low", "high", "log"}:
            raise SweepError(f"{key}: write a range as {{low: A, high: B}} (log: true for a log scale) or a list of choices")
        low, high, log = value["low"], value["high"], bool(value.get("log", False))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            raise SweepError(f"{key}: low and high must be numbers with low < high; got {low!r}, {high!r}")
        if log and low <= 0:
            raise SweepError(f"{key}: a log scale needs low > 0; got {low}")
        whole = "int" in str(spec["type"]) and "float" not in str(spec["type"])
        if "float" not in str(spec["type"]) and not whole:
            raise SweepError(f"{key} is not a number field ({spec['type']}): list its values instead")
        if whole and not (float(low).is_integer() and float(high).is_integer()):
            raise SweepError(f"{key} takes whole numbers: give whole low and high")
        _in_bounds(key, spec, low), _in_bounds(key, spec, high)
        out.append(Dimension(str(key), "int" if whole else "float", float(low), float(high), log, strategies=strategies))
    return out


def _in_bounds(key: str, spec: dict[str, Any], value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if "min" in spec and value < spec["min"]:
        raise SweepError(f"{key}: {value} is below the field's minimum {spec['min']}")
    if "max" in spec and value > spec["max"]:
        raise SweepError(f"{key}: {value} is above the field's maximum {spec['max']}")
    if spec.get("exclusive_min") is not None and value <= spec["exclusive_min"]:
        raise SweepError(f"{key}: {value} must be greater than {spec['exclusive_min']}")


def raw_space(space: list[Dimension]) -> dict[str, Any]:
    """The YAML form of parsed dimensions (what :func:`parse_space` reads back)."""
    out: dict[str, Any] = {}
    for dim in space:
        if dim.kind == "categorical":
            out[dim.key] = list(dim.choices)
        else:
            low, high = (int(dim.low), int(dim.high)) if dim.kind == "int" else (dim.low, dim.high)
            out[dim.key] = {"low": low, "high": high, **({"log": True} if dim.log else {})}
    return out


def suggest(trial: Any, space: list[Dimension]) -> dict[str, Any]:
    """One trial's values: the strategy first, then only the options that apply to the strategy drawn."""
    values: dict[str, Any] = {}
    ordered = sorted(space, key=lambda d: d.key != "strategy.kind")
    for dim in ordered:
        kind = values.get("strategy.kind")
        if dim.strategies and kind is not None and kind not in dim.strategies:
            continue  # e.g. strategy.lora_r when full was drawn
        if dim.kind == "categorical":
            values[dim.key] = trial.suggest_categorical(dim.key, list(dim.choices))
        elif dim.kind == "int":
            values[dim.key] = trial.suggest_int(dim.key, int(dim.low), int(dim.high), log=dim.log)
        else:
            values[dim.key] = trial.suggest_float(dim.key, dim.low, dim.high, log=dim.log)
    return values


def apply(base: RunConfig, values: dict[str, Any], name: str) -> RunConfig:
    """``base`` with the trial's values, validated as any config is."""
    raw = base.to_dict()
    for key, value in values.items():
        section, _, field_name = key.partition(".")
        raw[section][field_name] = value
    raw["name"] = name
    try:
        return from_dict(raw)
    except ConfigError as exc:
        raise SweepError(f"the trial's settings {values} make an invalid config: {exc}") from None


@dataclass(frozen=True)
class SweepResult:
    name: str
    storage: str
    metric: str
    direction: str
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_test: dict[str, Any] | None = None  # the best trial's test report (read once: test_best)
    # A trial row's "value" is its final validation value when complete; Optuna keeps a pruned trial's last
    # reported (intermediate) value there, which is not a result: read it as "where it stood when stopped".


def _is_url(storage: str) -> bool:
    return "://" in storage


def open_storage(storage: str) -> Any:
    """An RDB URL as Optuna takes it (opened, so a wrong URL is said here), or the journal file at that path.

    Raises:
        SweepError: the database can't be reached or its driver is missing, or the journal can't be written.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    try:
        if _is_url(storage):
            return optuna.storages.RDBStorage(storage)
        return JournalStorage(JournalFileBackend(storage))
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy, the DB driver or the OS: said with the storage, not a traceback
        raise SweepError(f"can't open the sweep storage {_redacted(storage)} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
                         "Check the URL, that the database server runs and its driver is installed (PostgreSQL: psycopg), "
                         "or leave --storage out for a journal file under the runs root") from None


def _redacted(storage: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", storage)


def check_name(name: str) -> str:
    """A sweep's name is a folder under the runs root: letters, digits, ``.``, ``_``, ``-``."""
    if not _NAME_OK.fullmatch(name):
        raise SweepError(f"sweep name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def storage_of(root: Path, name: str, url: str | None) -> str:
    """``url``, else the sweep's journal file under the runs root (the sweep's folder is made either way)."""
    folder = root / SWEEPS_DIR / check_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    return url or str(folder / "journal.log")


def _pruner(name: str) -> Any:
    import optuna

    if name not in PRUNERS:
        raise SweepError(f"pruner {name!r} is not one of {', '.join(PRUNERS)}")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


class TrialWatch:
    """A trial's eye on its run's events: each evaluation is reported, and the pruner may stop the run.

    The same object serves a trial run in the sweep's process and one a worker runs (:func:`watch_run`).
    Every evaluation is reported, but the pruner is asked only from :data:`PRUNE_AFTER` of the trial's
    steps on: judged at its first evaluation, a trial that starts slowly (a low learning rate, warmup)
    was pruned while it would have ended among the best (bench/results/sweep.md).
    """

    def __init__(self, trial: Any, metric: str, echo: Any = None):
        self.trial, self.metric, self.echo = trial, metric, echo
        self.pruned_at: int | None = None
        self.total_steps: int | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        if self.echo is not None:
            self.echo(event)
        if event.get("type") == "start":
            self.total_steps = int(event.get("total_steps") or 0) or None
        if event.get("type") == "eval" and self.pruned_at is None:
            value = (event.get("metrics") or {}).get(self.metric)
            step = int(event["step"])
            if isinstance(value, (int, float)) and math.isfinite(value):
                try:
                    self.trial.report(float(value), step)
                    judged = self.total_steps is None or PRUNE_AFTER * self.total_steps <= step < self.total_steps
                    if judged and self.trial.should_prune():
                        self.pruned_at = step
                except Exception as exc:  # noqa: BLE001 - the storage went away: the run trains on, unwatched
                    print(f"warning: can't report to the sweep ({type(exc).__name__}: {exc}); no pruning from here on",
                          file=sys.stderr)
                    self.pruned_at, self.trial = None, _Unwatched()

    def should_stop(self) -> bool:
        return self.pruned_at is not None

    def record_pruned(self, run_dir: Path, sweep: str) -> None:
        """The run's own state says pruned, with why; its checkpoint goes (a pruned trial is not resumed)."""
        import shutil

        from core import runs

        runs.write_status(run_dir, state="pruned", error=f"Pruned by sweep {sweep} at step {self.pruned_at}: its validation "
                                                         f"{self.metric} fell behind the earlier trials' at that step.")
        runs.index_run(run_dir.parent, run_dir)
        shutil.rmtree(run_dir / Path(runs.CHECKPOINT_DIR).parent, ignore_errors=True)


class _Unwatched:
    def report(self, value: float, step: int) -> None:
        pass

    def should_prune(self) -> bool:
        return False


def watch_run(run_dir: Path, echo: Any = None) -> tuple[TrialWatch, str] | None:
    """The watch of a run that is a sweep's trial (it has ``trial.json``), with the sweep's name; else None."""
    from core import runs

    link = runs.read_json(Path(run_dir, runs.TRIAL))
    if not link:
        return None  # before importing optuna: every queued training asks
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=link["study"], storage=open_storage(link["storage"]), pruner=_pruner(link["pruner"]))
        state = study._storage.get_trial(int(link["trial_id"])).state
    except SweepError:
        raise
    except Exception as exc:  # noqa: BLE001 - a study that is gone: the run trains on, unwatched
        print(f"warning: sweep {link['study']} can't be read ({type(exc).__name__}); this run trains without pruning",
              file=sys.stderr)
        return None
    if state.is_finished():  # the sweep has told this trial already (a run resumed by hand): train, unwatched
        return None
    return TrialWatch(optuna.trial.Trial(study, int(link["trial_id"])), link["metric"], echo), link["study"]


def _make_trial_run(study: Any, trial: Any, space: list[Dimension], base: RunConfig, name: str, storage: str,
                    pruner: str, metric: str) -> tuple[RunConfig, Path]:
    from core import runs

    values = suggest(trial, space)
    config = apply(base, values, f"{name}-t{trial.number}")
    run_dir = runs.create_run_dir(Path(base.runs_root), config.name, config.to_dict())
    runs.atomic_write_json(run_dir / runs.TRIAL, {"study": name, "storage": storage, "trial_id": trial._trial_id,
                                                  "number": trial.number, "pruner": pruner, "metric": metric})
    trial.set_user_attr("run_id", run_dir.name)
    return config, run_dir


def _outcome(root: Path, run_id: str | None) -> tuple[str, float | None] | None:
    """How a trial's run ended: ("complete", value), ("pruned", None) or ("fail", None); None while it goes on."""
    from core import jobs, runs

    if not run_id:
        return ("fail", None)
    run_dir = root / run_id
    # The job first: it closes only after its trainer has exited, so the status read after it is the final one
    # (a pruned trial's run says cancelled for a moment before it says pruned).
    job = jobs.latest_job(root, run_id)
    if job is not None and job.state in ("queued", "running"):
        return None
    status = runs.read_status(run_dir)
    state = status.get("state")
    if state in ("queued", "running"):
        return None if job is None and jobs.pid_alive(status.get("pid")) else ("fail", None)
    if state == "completed":
        value = ((runs.read_json(run_dir / runs.REPORT) or {}).get("best_metric") or {}).get("value")
        return ("complete", float(value)) if isinstance(value, (int, float)) else ("fail", None)
    return ("pruned", None) if state == "pruned" else ("fail", None)


def _tell(study: Any, number: int, outcome: tuple[str, float | None]) -> None:
    import optuna

    kind, value = outcome
    if kind == "complete":
        study.tell(number, value)
    else:
        study.tell(number, state=optuna.trial.TrialState.PRUNED if kind == "pruned" else optuna.trial.TrialState.FAIL)


def run_sweep(base: RunConfig, space: list[Dimension], trials: int, *, name: str | None = None, storage: str | None = None,
              seed: int = 0, pruner: str = "median", resume: bool = False, echo: Any = None,
              enqueue: list[dict[str, Any]] | None = None, workers: int = 0, owner: str | None = None,
              poll_s: float = 1.0, test: bool = True) -> SweepResult:
    """Run ``trials`` trials (more on ``resume``: up to ``trials`` finished or pruned in all) of the sweep ``name``.

    ``workers``: 0 runs each trial in this process, one after another; K >= 1 queues trials as jobs, K at a
    time, for the job workers (one with concurrency K is started here unless a worker serves the root; workers
    on other machines sharing the root and an RDB ``storage`` take trials too). ``enqueue``: settings to try
    first, as ``{section.field: value}`` (the defaults, a known good run). ``owner``: who queued the trials.
    ``test``: evaluate the best trial on the test split at the end (:func:`test_best`).

    Raises:
        SweepError: no trials, an unknown pruner, a sweep name that exists (without ``resume``) or doesn't (with it).
    """
    import optuna

    from core import jobs, runs
    from core.metrics import greater_is_better, resolve_metric_for_best
    from core.recipe import RunFailed, run_training

    if trials < 1:
        raise SweepError(f"--trials must be at least 1; got {trials}")
    if workers < 0:
        raise SweepError(f"--workers must be 0 (trials in this process) or more; got {workers}")
    root = Path(base.runs_root).resolve()  # the workers run elsewhere (cwd, machine): every path they get is absolute
    base = base.replace(output_dir=str(root))
    name = check_name(name or f"{base.name}-sweep")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    running = runs.read_json(root / SWEEPS_DIR / name / SWEEP_INFO) or {}  # absent for a new sweep
    if running.get("driver_pid") != os.getpid() and running.get("state") != "starting" and driver_running(running):
        raise SweepError(f"sweep {name} is running already (pid {running.get('driver_pid')} on "
                         f"{running.get('driver_host', 'this host')}); stop it before resuming it here")
    where = storage_of(root, name, storage)
    where = str(Path(where).resolve()) if not _is_url(where) else where
    store = open_storage(where)
    metric = resolve_metric_for_best(base.task, base.train.metric_for_best)
    direction = "maximize" if greater_is_better(metric) else "minimize"
    exists = name in {s.study_name for s in optuna.get_all_study_summaries(store)}
    if exists and not resume:
        raise SweepError(f"a sweep named {name!r} exists ({where}): add --resume to continue it, or pick another --name")
    if resume and not exists:
        raise SweepError(f"there is no sweep {name!r} in {where} to resume")
    _pruner(pruner)  # refused before a study is made
    study = optuna.create_study(study_name=name, storage=store, direction=direction, load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=workers > 1),
                                pruner=_pruner(pruner))
    study.set_user_attr("metric", metric)
    update_info(root, name, **{
        "name": name, "storage": where, "metric": metric, "direction": direction, "trials": trials,
        "workers": workers, "pruner": pruner, "seed": seed, "driver_pid": os.getpid(), "driver_host": socket.gethostname(),
        "driver_started": time.time(), "heartbeat": time.time(), "state": "running",
        "base": base.to_dict(), "space": [d.key for d in space], "space_raw": raw_space(space), "owner": owner})
    in_flight: dict[int, str] = {}  # trial number -> run id, trials whose runs go on in the queue
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):  # the sweep died during it
        outcome = _outcome(root, stale.user_attrs.get("run_id"))
        if outcome is None and workers:
            in_flight[stale.number] = stale.user_attrs["run_id"]  # still queued or training: wait for it
        elif outcome is not None and outcome[0] != "fail":
            _tell(study, stale.number, outcome)
        else:
            study._storage.set_trial_state_values(stale._trial_id, optuna.trial.TrialState.FAIL)
            if stale.params:  # (settings that make no valid config are told FAIL when asked, never left running)
                study.enqueue_trial(dict(stale.params))  # run again with the same settings, first
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    to_ask = max(0, trials - len(study.get_trials(deepcopy=False, states=finished)) - len(in_flight))
    for values in enqueue or []:
        study.enqueue_trial(values, skip_if_exists=True)

    last_beat = [0.0]

    def beat_and_echo(event: dict[str, Any]) -> None:
        _beat(root, name, last_beat)
        if echo is not None:
            echo(event)

    if workers == 0:
        def objective(trial: optuna.Trial) -> float:
            config, run_dir = _make_trial_run(study, trial, space, base, name, where, pruner, metric)
            watch = TrialWatch(trial, metric, beat_and_echo)
            try:
                outcome = run_training(config, run_dir, echo=watch, should_stop=watch.should_stop)
            except RunFailed as exc:
                raise SweepError(f"trial {trial.number} ({run_dir.name}) failed: {exc}") from None
            if outcome.state == "cancelled" and watch.pruned_at is not None:
                watch.record_pruned(run_dir, name)
                raise optuna.TrialPruned()
            if outcome.state != "completed":  # cancelled by hand or SIGTERM: the sweep stops with it
                study.stop()
                raise SweepError(f"trial {trial.number} ({run_dir.name}) ended {outcome.state}; the sweep stops "
                                 "(--resume runs the trial again)")
            return float(outcome.report["best_metric"]["value"])

        if to_ask:
            study.optimize(objective, n_trials=to_ask, catch=(SweepError,))
    else:
        while to_ask or in_flight:
            while to_ask and len(in_flight) < workers:
                trial = study.ask()
                to_ask -= 1
                try:
                    _, run_dir = _make_trial_run(study, trial, space, base, name, where, pruner, metric)
                except SweepError as exc:  # settings that make no valid config (a cross-field rule): that trial fails
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    if echo is not None:
                        echo({"type": "trial", "number": trial.number, "run_id": None, "state": f"fail ({exc})", "value": None})
                    continue
                jobs.queue_existing(root, run_dir, "train", owner)
                in_flight[trial.number] = run_dir.name
            # K trials at a time need K job slots: a worker of this sweep makes up what the live ones lack.
            jobs.ensure_worker(root, idle_exit_s=60, capacity=workers,
                               name=f"{jobs.default_worker_name()}-sweep-{name}"[:64].rstrip("._-"))
            time.sleep(poll_s)
            _beat(root, name, last_beat)
            for number, run_id in list(in_flight.items()):
                outcome = _outcome(root, run_id)
                if outcome is not None:
                    _tell(study, number, outcome)
                    del in_flight[number]
                    if echo is not None:
                        echo({"type": "trial", "number": number, "run_id": run_id, "state": outcome[0], "value": outcome[1]})
    if test:
        test_best(root, study)
    update_info(root, name, state="finished", heartbeat=time.time())
    return summarize(name, where, study)


def summarize(name: str, where: str, study: Any) -> SweepResult:
    """The sweep's trials and its best (with the best trial's test metrics once :func:`test_best` has run)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": dict(t.params),
                     "run_id": t.user_attrs.get("run_id"), "intermediate": dict(t.intermediate_values),
                     "started": t.datetime_start.timestamp() if t.datetime_start else None,
                     "finished": t.datetime_complete.timestamp() if t.datetime_complete else None})
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    maximize = study.direction.name == "MAXIMIZE"
    best = (max if maximize else min)(done, key=lambda r: r["value"]) if done else None
    return SweepResult(name, where, study.user_attrs.get("metric", ""), "maximize" if maximize else "minimize", rows, best,
                       study.user_attrs.get("best_test"))


def test_best(root: Path, study: Any) -> dict[str, Any] | None:
    """The best trial's run on its test split, once: kept in the study (any storage) and in the run's report.

    The trials never read the test split (their runs hold it back); this is the only place it is read, for
    the trial the validation chose. Asked again for the same best trial, it returns what was kept.
    """
    from core import runs
    from core.evaluate import evaluate_splits

    result = summarize(study.study_name, "", study)
    if result.best is None or not result.best.get("run_id"):
        return None
    run_id = result.best["run_id"]
    kept = study.user_attrs.get("best_test")
    if kept and kept.get("run_id") == run_id:
        return kept
    run_dir = Path(root) / run_id
    out = evaluate_splits(run_dir)
    if out["test"] is None:
        best_test = {"run_id": run_id, "trial": result.best["number"], "split": "validation",
                     "note": "the data has no test split (data.test_split is 0)", "metrics": None, "headline": None}
    else:
        best_test = {"run_id": run_id, "trial": result.best["number"], "split": "test",
                     "metrics": {k: v for k, v in out["test"]["metrics"].items() if isinstance(v, (int, float))},
                     "headline": out["test"].get("headline")}
        report = runs.read_json(run_dir / runs.REPORT) or {}
        report.update(eval_split="test", test=out["test"])
        report.pop("test_held_back", None)
        runs.atomic_write_json(run_dir / runs.REPORT, report)
        runs.index_run(root, run_dir)
    study.set_user_attr("best_test", best_test)
    return best_test


def read_info(root: str | Path, name: str) -> dict[str, Any]:
    """The sweep's ``sweep.json``.

    Raises:
        SweepError: there is no sweep of that name under ``root``.
    """
    from core import runs

    info = runs.read_json(Path(root, SWEEPS_DIR, check_name(name), SWEEP_INFO))
    if not info:
        raise SweepError(f"there is no sweep {name!r} under {root} (python -m core sweep starts one)")
    return info


def update_info(root: str | Path, name: str, /, **changes: Any) -> None:
    """Merge ``changes`` into the sweep's ``sweep.json`` (made if missing): written atomically, read by the page."""
    from core import runs

    path = Path(root, SWEEPS_DIR, check_name(name), SWEEP_INFO)
    runs.atomic_write_json(path, {**(runs.read_json(path) or {}), **changes})


HEARTBEAT_S = 10.0  # how often a sweep's process touches its sweep.json (a driver on another host is judged by it)
DRIVER_SILENT_S = 120.0


def _beat(root: Path, name: str, last: list[float]) -> None:
    """Touch sweep.json's heartbeat at most every HEARTBEAT_S (``last``: the caller's one-item memory)."""
    now = time.time()
    if now - last[0] >= HEARTBEAT_S:
        last[0] = now
        update_info(root, name, heartbeat=now)


def driver_running(info: dict[str, Any]) -> bool:
    """Whether the sweep's own process still runs: its pid on this host, its heartbeat on another."""
    from core import jobs

    if info.get("state") == "finished":
        return False
    if info.get("driver_host", socket.gethostname()) == socket.gethostname():
        return jobs.pid_alive(info.get("driver_pid")) and _is_sweep_process(info.get("driver_pid"))
    return time.time() - float(info.get("heartbeat") or 0) < DRIVER_SILENT_S


def _is_sweep_process(pid: Any) -> bool:
    """The pid is still a ``core sweep`` process (not another that got the pid of one that ended)."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            # the subcommand as an argument of its own: a sweep's worker (--name <host>-sweep-<name>) is not one
            return b"sweep" in f.read().split(b"\0")
    except (OSError, ValueError, TypeError):
        return True  # no /proc to ask: trust the pid


def list_sweeps(root: str | Path) -> list[dict[str, Any]]:
    """Every sweep under the runs root (its ``sweep.json``), newest first, with whether its process still runs."""
    from core import runs

    out = []
    for info_path in Path(root, SWEEPS_DIR).glob(f"*/{SWEEP_INFO}"):
        info = runs.read_json(info_path)
        if info and info.get("name"):
            out.append(with_running(info))
    return sorted(out, key=lambda i: i.get("driver_started") or 0, reverse=True)


def with_running(info: dict[str, Any]) -> dict[str, Any]:
    """A sweep's ``sweep.json`` as :func:`list_sweeps` lists it: with whether its process still runs."""
    return {**info, "running": driver_running(info)}


def sweep_status(root: str | Path, name: str) -> dict[str, Any] | None:
    """The one sweep ``name`` as :func:`list_sweeps` lists it (without reading every other sweep); None if there is none."""
    try:
        return with_running(read_info(root, name))
    except SweepError:
        return None


def load_study(root: str | Path, name: str, info: dict[str, Any] | None = None) -> Any:
    """The Optuna study of the sweep ``name`` (from the storage its ``sweep.json`` names; ``info``: that file,
    when the caller has read it)."""
    import optuna

    info = info or read_info(root, name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=open_storage(info["storage"]))
    except KeyError:
        raise SweepError(f"sweep {name!r} has not recorded a trial yet in {info['storage']}") from None


def load_sweep(root: str | Path, name: str) -> SweepResult:
    info = read_info(root, name)
    return summarize(name, info.get("storage", ""), load_study(root, name, info))


def importances(study: Any) -> dict[str, float]:
    """How much each searched field explains the objective (Optuna's fANOVA, summing to 1); empty before two
    finished trials with different settings."""
    import optuna

    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if len(done) < 2 or len({tuple(sorted(t.params.items())) for t in done}) < 2:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)))
    except (RuntimeError, ValueError):  # e.g. a single value of every parameter among finished trials
        return {}


def launch(base: RunConfig, raw: dict[str, Any], trials: int, *, name: str, workers: int = 1,
           pruner: str = "median", seed: int = 0, storage: str | None = None, owner: str | None = None) -> Path:
    """Start ``python -m core sweep`` in the background for the dashboard (it outlives the page); its trials go
    through the job queue (``workers`` at a time). Everything is checked before it starts; returns its folder.

    Raises:
        SweepError: a bad space, trials or pruner, or a sweep of that name exists.
    """
    import yaml

    parse_space(raw)
    _pruner(pruner)
    if trials < 1 or workers < 1:
        raise SweepError(f"a sweep from the dashboard needs at least 1 trial and 1 worker; got {trials} and {workers}")
    root = Path(base.runs_root).resolve()
    base = base.replace(output_dir=str(root))
    folder = root / SWEEPS_DIR / check_name(name)
    if (folder / SWEEP_INFO).exists() or (folder / "journal.log").exists():
        raise SweepError(f"a sweep named {name!r} exists; pick another name")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(base.to_dict(), sort_keys=False), encoding="utf-8")
    (folder / "space.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    pid = _spawn(root, folder, ["--trials", str(trials), "--name", name, "--workers", str(workers), "--pruner", pruner,
                                "--seed", str(seed), *(["--storage", storage] if storage else []),
                                *(["--owner", owner] if owner else [])])
    _starting(folder, name, pid, storage_of(root, name, storage), trials=trials, workers=workers, pruner=pruner, seed=seed,
              base=base.to_dict(), space=list(raw), space_raw=raw, owner=owner)
    return folder


def _starting(folder: Path, name: str, pid: int, storage: str, **settings: Any) -> None:
    """sweep.json before the sweep's process writes its own: the page shows it starting (or that it died starting)."""
    update_info(folder.parent.parent, name, **settings, name=name, storage=storage, driver_pid=pid,
                driver_host=socket.gethostname(), driver_started=time.time(), heartbeat=time.time(), state="starting")


def _spawn(root: Path, folder: Path, args: list[str]) -> int:
    import subprocess
    import sys

    from core import jobs

    cmd = [sys.executable, "-m", "core", "--root", str(root), "sweep", "--config", str(folder / "base.yaml"),
           "--space", str(folder / "space.yaml"), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(jobs.REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    with open(folder / "sweep.log", "ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=jobs.REPO_ROOT, env=env,
                                start_new_session=True).pid


def resume_launch(root: str | Path, name: str, owner: str | None = None) -> Path:
    """Continue a stopped sweep in the background, its trials through the queue (the dashboard's Resume).

    Raises:
        SweepError: the sweep is still running, has all its trials, or doesn't exist.
    """
    import optuna
    import yaml


    root = Path(root).resolve()
    info = read_info(root, name)
    if driver_running(info):
        raise SweepError(f"sweep {name} is still running (pid {info['driver_pid']}); stop it first to resume it later")
    finished = load_study(root, name, info).get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                                          optuna.trial.TrialState.PRUNED))
    if len(finished) >= int(info.get("trials") or 0):
        raise SweepError(f"sweep {name} has all its {info.get('trials')} trials; start a new sweep (or resume it from the "
                         "command line with a higher --trials)")
    folder = root / SWEEPS_DIR / name
    (folder / "base.yaml").write_text(yaml.safe_dump(info["base"], sort_keys=False), encoding="utf-8")
    (folder / "space.yaml").write_text(yaml.safe_dump(info["space_raw"], sort_keys=False), encoding="utf-8")
    storage = info.get("storage", "")
    pid = _spawn(root, folder, ["--trials", str(info["trials"]), "--name", name, "--workers", str(max(1, int(info.get("workers") or 0))),
                          "--pruner", str(info.get("pruner", "median")), "--seed", str(info.get("seed", 0)), "--resume",
                          *(["--storage", storage] if storage and storage != storage_of(root, name, None) else []),
                          *(["--owner", owner or info["owner"]] if owner or info.get("owner") else [])])
    _starting(folder, name, pid, storage)
    return folder


def stop(root: str | Path, name: str) -> str:
    """Stop a sweep: its background process ends and its queued or running trials are cancelled (a resume runs
    them again with the same settings). Returns what happened."""
    import signal

    import optuna

    from core import jobs

    root = Path(root)
    info = read_info(root, name)
    pid = info.get("driver_pid")
    stopped = driver_running(info) and info.get("driver_host", socket.gethostname()) == socket.gethostname()
    if driver_running(info) and not stopped:
        raise SweepError(f"sweep {name} runs on {info['driver_host']}: stop it there (or wait {DRIVER_SILENT_S:.0f} s after "
                         "that machine is gone)")
    if stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    cancelled = 0
    for trial in load_study(root, name, info).get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        run_id = trial.user_attrs.get("run_id")
        if run_id:
            with contextlib.suppress(jobs.JobError):
                jobs.cancel(run_id, root)
                cancelled += 1
    return (f"sweep {name} stopped" if stopped else f"sweep {name} was not running") + f"; {cancelled} trial(s) cancelled"


def load_space(path: str | Path) -> list[Dimension]:
    """A search-space YAML file, parsed and checked (:func:`parse_space`)."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SweepError(f"can't read the search space {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SweepError(f"{path} is not valid YAML: {exc}") from None
    return parse_space(raw)
