"""Sweeps (issue #16, first slice): the search space is checked against the config's own field metadata, every
trial is a run, a trial that falls behind is pruned from the loop's evaluations, and a sweep resumes."""

from __future__ import annotations

import optuna
import pytest

from core import runs
from core.config import from_dict
from core.sweep import SweepError, importances, load_study, parse_space, run_sweep, suggest

pytestmark = pytest.mark.slow


def base(root):
    # the validation loss as the objective: it moves after 2 steps at a sane rate and not at all at 1e-7
    return from_dict({"name": "sw", "data": {"source": "sample:bbc_news", "max_train_samples": 64, "max_eval_samples": 32},
                      "model": {"num_layers": 2, "max_length": 64},
                      "train": {"epochs": 1, "batch_size": 16, "eval_every": 2, "log_every": 2, "metric_for_best": "loss"},
                      "output_dir": str(root)})


@pytest.mark.parametrize(("raw", "message"), [
    ({"train.learnin_rate": [1e-4]}, "did you mean train.learning_rate"),
    ({"optimizer.lr": [1]}, "not a config field"),
    ({"train.learning_rate": {"low": 0.0, "high": 1e-3}}, "must be greater than 0"),
    ({"train.learning_rate": {"low": 1e-5, "high": 1e-3, "step": 2}}, "write a range as"),
    ({"train.warmup_ratio": {"low": 0.1, "high": 2.0}}, "above the field's maximum"),
    ({"train.batch_size": {"low": 8, "high": 12.5}}, "whole numbers"),
    ({"strategy.kind": ["full", "nope"]}, "'nope' is not one of"),
    ({"strategy.kind": "full"}, "write a range as"),
    ({}, "the search space is empty"),
    ({"data.source": ["/etc/passwd"]}, "names a file or a model, not a hyper-parameter"),
    ({"model.name": ["/srv/models/x"]}, "names a file or a model"),
])
def test_a_space_outside_the_fields_own_bounds_is_refused_naming_the_field(raw, message):
    with pytest.raises(SweepError, match=message):
        parse_space(raw)


def test_a_strategys_own_option_is_searched_only_when_that_strategy_is_drawn():
    space = parse_space({"strategy.kind": ["full", "lora"], "strategy.lora_r": [4, 8],
                         "train.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}})
    full = suggest(optuna.trial.FixedTrial({"strategy.kind": "full", "train.learning_rate": 1e-4}), space)
    lora = suggest(optuna.trial.FixedTrial({"strategy.kind": "lora", "strategy.lora_r": 8, "train.learning_rate": 1e-4}), space)
    assert full == {"strategy.kind": "full", "train.learning_rate": 1e-4}
    assert lora["strategy.lora_r"] == 8


def test_trials_are_runs_a_hopeless_one_is_pruned_and_the_sweep_resumes(tmp_path):
    config = base(tmp_path)
    space = parse_space({"train.learning_rate": {"low": 1e-7, "high": 1e-3, "log": True}})
    result = run_sweep(config, space, 3, name="lr", enqueue=[{"train.learning_rate": 5e-4}, {"train.learning_rate": 4e-4},
                                                            {"train.learning_rate": 1e-7}])
    assert [t["state"] for t in result.trials] == ["complete", "complete", "pruned"]
    assert result.direction == "minimize" and result.metric == "loss"
    for trial in result.trials:  # each trial a run of its own, with the trial's settings
        run_dir = tmp_path / trial["run_id"]
        assert runs.read_json(run_dir / runs.CONFIG)["train"]["learning_rate"] == trial["params"]["train.learning_rate"]
    pruned = runs.read_status(tmp_path / result.trials[2]["run_id"])
    assert pruned["state"] == "pruned" and "Pruned by sweep lr at step" in pruned["error"]
    assert not (tmp_path / result.trials[2]["run_id"] / "checkpoints").exists(), "a pruned trial is not resumed"
    for trial in result.trials[:2]:  # the objective is the run's best validation value, never the test split's
        report = runs.read_json(tmp_path / trial["run_id"] / runs.REPORT)
        assert trial["value"] == pytest.approx(report["best_metric"]["value"]) and report["best_metric"]["name"] == "loss"
    assert result.best["number"] in (0, 1) and (tmp_path / "sweeps" / "lr" / "journal.log").exists()
    # the test split is read once, for the best trial only
    other = result.trials[1 - result.best["number"]]
    assert runs.read_json(tmp_path / other["run_id"] / runs.REPORT)["test"] is None
    best_report = runs.read_json(tmp_path / result.best["run_id"] / runs.REPORT)
    assert result.best_test["run_id"] == result.best["run_id"] and best_report["eval_split"] == "test"
    assert result.best_test["metrics"]["accuracy"] == pytest.approx(best_report["test"]["metrics"]["accuracy"])

    with pytest.raises(SweepError, match="add --resume"):
        run_sweep(config, space, 4, name="lr")
    resumed = run_sweep(config, space, 4, name="lr", resume=True)
    assert [t["run_id"] for t in resumed.trials[:3]] == [t["run_id"] for t in result.trials]  # finished trials kept
    assert len(resumed.trials) == 4 and resumed.trials[3]["state"] in ("complete", "pruned")
    assert resumed.best_test["run_id"] == resumed.best["run_id"]
    assert set(importances(load_study(tmp_path, "lr"))) <= {"train.learning_rate"}
    with pytest.raises(SweepError, match="no sweep"):
        run_sweep(config, space, 2, name="other", resume=True)


def test_a_trial_interrupted_by_a_dead_sweep_is_run_again_with_its_settings(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    folder = tmp_path / "sweeps" / "cut"
    folder.mkdir(parents=True)
    study = optuna.create_study(study_name="cut", direction="minimize",
                                storage=JournalStorage(JournalFileBackend(str(folder / "journal.log"))))
    cut = study.ask()  # the sweep process died while this trial trained
    cut.suggest_float("train.learning_rate", 1e-5, 1e-3, log=True)
    rate = cut.params["train.learning_rate"]
    space = parse_space({"train.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}})
    resumed = run_sweep(base(tmp_path), space, 1, name="cut", resume=True)
    assert [t["state"] for t in resumed.trials] == ["fail", "complete"]
    assert resumed.trials[1]["params"] == {"train.learning_rate": rate}


def test_a_queued_trial_is_pruned_by_its_own_trainer(tmp_path):
    """A trial a worker runs (``python -m core train`` on a run with trial.json) reports to the study and stops
    itself when the pruner says so; its run ends in the state ``pruned``."""
    from core.__main__ import main
    from core.sweep import _make_trial_run, open_storage, storage_of

    where = storage_of(tmp_path, "far", None)
    study = optuna.create_study(study_name="far", storage=open_storage(where), direction="minimize")
    rate = optuna.distributions.FloatDistribution(1e-7, 1e-3, log=True)
    for _ in range(2):  # two finished trials far ahead of anything real: a loss of 0 at every evaluation
        study.add_trial(optuna.trial.create_trial(value=0.0, params={"train.learning_rate": 1e-4},
                                                  distributions={"train.learning_rate": rate},
                                                  intermediate_values={s: 0.0 for s in range(1, 9)}))
    study.enqueue_trial({"train.learning_rate": 1e-7})
    trial = study.ask()
    space = parse_space({"train.learning_rate": {"low": 1e-7, "high": 1e-3, "log": True}})
    _, run_dir = _make_trial_run(study, trial, space, base(tmp_path), "far", where, "median", "loss")
    assert main(["--root", str(tmp_path), "train", "--config", str(run_dir / runs.CONFIG), "--run-dir", str(run_dir)]) == 0
    status = runs.read_status(run_dir)
    assert status["state"] == "pruned" and "Pruned by sweep far at step 2" in status["error"]
    reported = study.trials[2].intermediate_values
    assert list(reported) == [2] and reported[2] > 0.5  # its real validation loss at step 2, where it was pruned
    assert not (run_dir / runs.REPORT).exists() and not (run_dir / "checkpoints").exists()


def test_a_sweep_over_two_workers_on_postgresql(tmp_path):
    """The dashboard's way: the sweep runs in the background (core.sweep.launch), its trials are jobs in the
    queue, two named workers take them, and the study lives in a PostgreSQL server this test starts (skipped,
    saying why, where PostgreSQL can't run)."""
    import subprocess
    import sys

    from core import jobs
    from core.sweep import launch, list_sweeps, load_sweep
    from tests.support.paths import REPO
    from tests.support.postgres import postgres_server
    from tests.support.waits import wait_for

    with postgres_server() as url:
        workers = [subprocess.Popen([sys.executable, "-m", "core", "--root", str(tmp_path), "worker", "--name", name,
                                     "--idle-exit", "20"], cwd=REPO) for name in ("w1", "w2")]
        try:
            wait_for(lambda: len(jobs.live_workers(tmp_path)) == 2, "both workers")
            launch(base(tmp_path), {"train.learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}}, 2, name="pg",
                   workers=2, storage=url, owner="ada")
            wait_for(lambda: list_sweeps(tmp_path) and not list_sweeps(tmp_path)[0]["running"], "the sweep to finish")
            result = load_sweep(tmp_path, "pg")
            # a run says completed a moment before its trainer exits and the worker closes the job
            wait_for(lambda: not jobs.list_jobs(tmp_path, ("queued", "running")), "the jobs to close")
        finally:
            jobs.stop_worker(tmp_path)
            for w in workers:
                w.kill()
    log = (tmp_path / "sweeps" / "pg" / "sweep.log").read_text()
    assert result.storage == url and len(result.trials) == 2, log
    assert all(t["state"] in ("complete", "pruned") for t in result.trials)
    ran = jobs.list_jobs(tmp_path)
    assert sorted(j.run_id for j in ran) == sorted(t["run_id"] for t in result.trials), "each trial is one job, run once"
    assert {j.worker for j in ran} == {"w1", "w2"} and all(j.returncode == 0 and j.owner == "ada" for j in ran)
    assert result.best_test["run_id"] == result.best["run_id"] and "best trial on the test split" in log
    assert runs.read_json(tmp_path / result.best["run_id"] / runs.REPORT)["eval_split"] == "test"


def _study_with_a_queued_trial(root, name):
    from core import jobs
    from core.sweep import _make_trial_run, open_storage, storage_of

    where = storage_of(root, name, None)
    study = optuna.create_study(study_name=name, storage=open_storage(where), direction="minimize")
    space = parse_space({"train.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}})
    trial = study.ask()
    _, run_dir = _make_trial_run(study, trial, space, base(root), name, where, "median", "loss")
    jobs.queue_existing(root, run_dir, "train", "ada")
    return study, space, trial, run_dir


def test_resume_takes_a_trial_that_finished_while_the_sweep_was_gone(tmp_path):
    """A queued trial's run went on without its sweep: resuming reads its outcome instead of running it again."""
    study, space, trial, run_dir = _study_with_a_queued_trial(tmp_path, "gone")
    runs.write_status(run_dir, state="completed")
    runs.atomic_write_json(run_dir / runs.REPORT, {"best_metric": {"name": "loss", "value": 0.25}})
    from core import jobs

    with jobs._db(tmp_path) as con:  # its worker closed the job
        con.execute("UPDATE jobs SET state='done'")
    result = run_sweep(base(tmp_path), space, 1, name="gone", resume=True, workers=1, test=False)
    assert [(t["state"], t["value"], t["run_id"]) for t in result.trials] == [("complete", 0.25, run_dir.name)]


def test_stop_cancels_the_queued_trials_and_resume_starts_the_sweep_again(tmp_path, monkeypatch):
    import json
    import subprocess
    import sys

    from core import jobs, sweep

    study, space, trial, run_dir = _study_with_a_queued_trial(tmp_path, "halt")
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "sweep"])  # a "core sweep" by its command line
    info = {"name": "halt", "storage": sweep.storage_of(tmp_path, "halt", None), "trials": 3, "workers": 2, "pruner": "median",
            "seed": 0, "driver_pid": driver.pid, "base": base(tmp_path).to_dict(), "space_raw": sweep.raw_space(space), "owner": "ada"}
    (tmp_path / "sweeps" / "halt" / "sweep.json").write_text(json.dumps(info))
    with pytest.raises(SweepError, match="still running"):
        sweep.resume_launch(tmp_path, "halt")
    assert sweep.stop(tmp_path, "halt") == "sweep halt stopped; 1 trial(s) cancelled"
    assert driver.wait(timeout=10) != 0 and jobs.latest_job(tmp_path, run_dir.name).state == "cancelled"
    assert runs.read_status(run_dir)["state"] == "cancelled"

    spawned = []
    monkeypatch.setattr(sweep, "_spawn", lambda root, folder, args: spawned.append(args))
    sweep.resume_launch(tmp_path, "halt")
    args = spawned[0]
    assert "--resume" in args and args[args.index("--workers") + 1] == "2" and args[args.index("--owner") + 1] == "ada"
    assert sweep.load_space(tmp_path / "sweeps" / "halt" / "space.yaml") == space


class _AlwaysPrune:
    def report(self, value, step):
        self.last = (value, step)

    def should_prune(self):
        return True


def test_the_pruner_judges_a_trial_from_30_percent_of_its_steps_and_never_at_its_end():
    """Judged at its first evaluation, a slow start is pruned; at its last, a finished run would be called pruned."""
    from core.sweep import TrialWatch

    watch = TrialWatch(_AlwaysPrune(), "loss")
    watch({"type": "start", "total_steps": 10})
    watch({"type": "eval", "step": 2, "metrics": {"loss": 0.9}})
    assert watch.pruned_at is None and watch.trial.last == (0.9, 2)  # reported, not judged
    final = TrialWatch(_AlwaysPrune(), "loss")
    final({"type": "start", "total_steps": 10})
    final({"type": "eval", "step": 10, "metrics": {"loss": 0.5}})
    assert final.pruned_at is None
    watch({"type": "eval", "step": 3, "metrics": {"loss": 0.8}})
    assert watch.pruned_at == 3 and watch.should_stop()


def test_a_sweep_driver_is_told_from_a_sweeps_worker_by_its_subcommand():
    import subprocess
    import sys

    from core.sweep import _is_sweep_process

    wait = "import time; time.sleep(30)"
    driver = subprocess.Popen([sys.executable, "-c", wait, "sweep", "--name", "s1"])
    worker = subprocess.Popen([sys.executable, "-c", wait, "worker", "--name", "host-sweep-s1"])
    try:
        assert _is_sweep_process(driver.pid) and not _is_sweep_process(worker.pid)
    finally:
        for proc in (driver, worker):
            proc.kill()
            proc.wait()
