"""Pre-flight: the strategy plan the run would build and a time estimate from the real loop, for every strategy."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core.config import STRATEGY_KINDS, DataConfig, ModelConfig, RunConfig, StrategyConfig, TrainConfig
from core.loop import plan_steps
from core.preflight import PreflightError, cli_error, preflight, preflight_in_subprocess

pytestmark = pytest.mark.slow


def config_for(kind: str, root, **data) -> RunConfig:
    return RunConfig(name=f"pf-{kind}", data=DataConfig(source="sample:rotten_tomatoes", max_train_samples=96, max_eval_samples=16, **data),
                     model=ModelConfig(num_layers=2, max_length=32), strategy=StrategyConfig(kind=kind, freeze_layers=1),
                     train=TrainConfig(batch_size=8, epochs=2, learning_rate=2e-4), output_dir=str(root))


@pytest.mark.parametrize("kind", STRATEGY_KINDS)
def test_preflight_works_for_every_strategy(kind, tmp_path):
    config = config_for(kind, tmp_path)
    facts = preflight(config, batches=2)
    assert facts["kind"] == kind
    assert 0 < facts["trainable_params"] <= facts["total_params"]
    assert sum(g["params"] for g in facts["groups"]) == facts["trainable_params"] or kind == "gradual_unfreeze"
    # the estimate is timed on the loop's own optimizer steps, and scaled to the whole training split
    assert facts["measured_steps"] == 2
    assert facts["train_rows"] == 96 and (facts["steps_per_epoch"], facts["total_steps"]) == plan_steps(96, config.train)
    assert facts["epoch_seconds"] > 0 and facts["seconds_per_step"] > 0
    assert facts["epoch_seconds"] == pytest.approx(facts["seconds_per_step"] / 8 * 96, rel=1e-6)
    if kind == "full":
        assert facts["trainable_params"] == facts["total_params"]
    if kind == "lora":
        assert facts["trainable_percent"] < 5


def test_preflight_leaves_no_run_behind(tmp_path):
    preflight(config_for("full", tmp_path), batches=1)
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")], "pre-flight wrote a run directory"


def test_preflight_subprocess_returns_the_facts_and_says_what_is_wrong(tmp_path):
    facts = preflight_in_subprocess(config_for("adalora", tmp_path))
    assert facts["kind"] == "adalora" and facts["trainable_params"] > 0 and facts["measured_steps"] >= 1
    json.dumps(facts)  # plain JSON all the way to the page
    bad = dataclasses.replace(config_for("full", tmp_path), data=DataConfig(source=str(tmp_path / "missing.csv")))
    with pytest.raises(PreflightError) as info:
        preflight_in_subprocess(bad)
    assert "missing.csv" in str(info.value) and "Traceback" not in str(info.value)


def test_cli_error_reads_the_last_error_block_past_warnings():
    stderr = "FutureWarning: something\n  warnings.warn(\nerror: data.csv, row 7: the label is empty.\n       Fix: fill it in.\n"
    assert cli_error(stderr) == "data.csv, row 7: the label is empty. Fix: fill it in."
    assert cli_error("just a warning\n") is None
