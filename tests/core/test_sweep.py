"""Sweeps (issue #16, first slice): the search space is checked against the config's own field metadata, every
trial is a run, a trial that falls behind is pruned from the loop's evaluations, and a sweep resumes."""

from __future__ import annotations

import optuna
import pytest

from core import runs
from core.config import from_dict
from core.sweep import SweepError, parse_space, run_sweep, suggest

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
    assert pruned["state"] == "cancelled" and pruned["pruned"] and "pruned by sweep lr" in pruned["error"]
    for trial in result.trials[:2]:  # the objective is the run's best validation value, never the test split's
        report = runs.read_json(tmp_path / trial["run_id"] / runs.REPORT)
        assert trial["value"] == pytest.approx(report["best_metric"]["value"]) and report["best_metric"]["name"] == "loss"
    assert result.best["number"] in (0, 1) and (tmp_path / "sweeps" / "lr" / "journal.log").exists()

    with pytest.raises(SweepError, match="add --resume"):
        run_sweep(config, space, 4, name="lr")
    resumed = run_sweep(config, space, 4, name="lr", resume=True)
    assert [t["run_id"] for t in resumed.trials[:3]] == [t["run_id"] for t in result.trials]  # finished trials kept
    assert len(resumed.trials) == 4 and resumed.trials[3]["state"] in ("complete", "pruned")
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
