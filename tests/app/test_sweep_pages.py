"""The Sweeps page and the Strategy page's sweep builder, rendered headless by AppTest. Nothing trains: the
sweep is an Optuna journal written here, and a started sweep's launch is recorded instead of spawned."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.paths import APP

NAME = "lr-sweep"
RUN_IDS = [f"20260101-00000{i}-{NAME}-t{i}-ab1{i}" for i in range(4)]
BEST_LR = 2.5e-4


def make_sweep(root: Path, trials: int = 4) -> None:
    """A finished sweep as core.sweep leaves it: sweep.json, a journal with three finished trials and a pruned one,
    the best trial's test metrics in the study, and the best trial's run directory with its config.json."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from core import runs, sweep
    from core.config import from_dict

    storage = sweep.storage_of(root, NAME, None)
    study = optuna.create_study(storage=sweep.open_storage(storage), study_name=NAME, direction="maximize")
    study.set_user_attr("metric", "accuracy")
    dists = {"train.learning_rate": FloatDistribution(1e-5, 1e-3, log=True),
             "strategy.kind": CategoricalDistribution(["full", "lora"])}
    for i, (value, lr, kind) in enumerate([(0.71, 3e-5, "full"), (0.84, BEST_LR, "lora"), (0.78, 1e-4, "full")]):
        study.add_trial(create_trial(params={"train.learning_rate": lr, "strategy.kind": kind}, distributions=dists, value=value,
                                     intermediate_values={2: value - 0.05, 4: value}, user_attrs={"run_id": RUN_IDS[i]}))
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"train.learning_rate": 1.2e-5, "strategy.kind": "full"},
                                 distributions=dists, intermediate_values={2: 0.52}, user_attrs={"run_id": RUN_IDS[3]}))
    study.set_user_attr("best_test", {"run_id": RUN_IDS[1], "trial": 1, "split": "test",
                                      "metrics": {"accuracy": 0.8312, "f1_macro": 0.8234},
                                      "headline": {"name": "accuracy", "value": 0.8312, "greater_is_better": True}})
    base = from_dict({"name": "tiny", "data": {"source": "sample:rotten_tomatoes", "max_train_samples": 64},
                      "model": {"num_layers": 2}, "output_dir": str(root)})
    runs.atomic_write_json(root / sweep.SWEEPS_DIR / NAME / sweep.SWEEP_INFO, {
        "name": NAME, "storage": storage, "metric": "accuracy", "direction": "maximize", "trials": trials, "workers": 1,
        "pruner": "median", "seed": 0, "driver_pid": None, "driver_started": time.time(), "base": base.to_dict(),
        "space": ["train.learning_rate", "strategy.kind"]})
    best = base.to_dict()
    best["name"] = f"{NAME}-t1"
    best["strategy"].update(kind="lora", lora_r=4)
    best["train"]["learning_rate"] = BEST_LR
    (root / RUN_IDS[1]).mkdir(parents=True)
    (root / RUN_IDS[1] / "config.json").write_text(json.dumps(from_dict(best).to_dict()), encoding="utf-8")


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_types(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["data"][0]["type"] for c in at.get("plotly_chart")]


def plain(messages) -> str:
    return "\n".join(m.value for m in messages).replace("\\", "")  # md_literal's escapes off


def test_the_sweeps_page_shows_trials_charts_and_the_best_trial_whose_settings_go_to_the_strategy_form(runs_root):
    make_sweep(runs_root)
    at = open_page("sweep")
    assert at.query_params["sweep"] in (NAME, [NAME])
    assert "Finished: 4 of 4 trials done (3 finished, 1 pruned)." in [t.value for t in at.text]

    table = at.dataframe[0].value
    assert table["trial"].tolist() == [0, 1, 2, 3] and table["state"].tolist() == ["complete"] * 3 + ["pruned"]
    assert table["validation accuracy"].tolist() == [0.71, 0.84, 0.78, 0.52]  # a pruned trial: what it last reported
    assert table["train.learning_rate"].tolist() == [3e-5, BEST_LR, 1e-4, 1.2e-5]
    assert table["strategy.kind"].tolist() == ["full", "lora", "full", "full"] and table["run"].tolist() == RUN_IDS
    links = [link.proto for link in at.get("page_link")]
    assert {(link.label, link.query_string) for link in links} >= {("Training", f"run={RUN_IDS[0]}"), ("Evaluation", f"run={RUN_IDS[0]}")}

    types = chart_types(at)
    assert types[0] == "scatter" and "parcoords" in types  # the history, then the importances (or their note) beside it
    history = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    best_line = next(trace for trace in history if trace["name"].startswith("best so far"))
    assert best_line["y"] == [0.71, 0.84, 0.84]
    pruned = next(trace for trace in history if trace["name"].startswith("pruned"))
    assert pruned["x"] == [3] and pruned["y"] == [0.52]
    parcoords = json.loads(at.get("plotly_chart")[types.index("parcoords")].proto.spec)["data"][0]
    labels = [d["label"] for d in parcoords["dimensions"]]
    assert labels == ["train.learning_rate<br>(log10 scale)", "strategy.kind", "validation accuracy"]
    assert parcoords["dimensions"][1]["ticktext"] == ["full", "lora"]

    shown = {m.label: m.value for m in at.metric}
    assert shown["validation accuracy"] == "0.8400" and shown["test accuracy"] == "0.8312"
    assert "computed once, at the end of the sweep, for trial 1 only" in plain(at.markdown)
    test_table = next(d.value for d in at.dataframe if list(d.value.columns) == ["metric", "value"])
    assert dict(zip(test_table["metric"], test_table["value"], strict=True)) == {"accuracy": 0.8312, "f1_macro": 0.8234}
    assert not [b for b in at.button if b.key in ("sweeps_stop", "sweeps_resume")]  # finished: nothing to stop or resume

    at.button(key="sweeps_use_best").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Strategy"]
    assert f"Loaded trial 1 of sweep {NAME}" in plain(at.toast)
    assert at.number_input(key="cfg.train.learning_rate").value == BEST_LR
    assert at.selectbox(key="cfg.strategy.kind").value == "lora" and at.number_input(key="cfg.strategy.lora_r").value == 4
    assert at.session_state["cfg.run.name"] == f"{NAME}-best" and at.session_state["cfg.data.max_train_samples"] == 64
    at.switch_page("app_pages/strategy.py").run()  # and stay on the next run of the page (AppTest reruns the page it opened)
    assert at.number_input(key="cfg.train.learning_rate").value == BEST_LR


def test_a_stopped_sweep_offers_resume_through_core_actions(runs_root, monkeypatch):
    from core import sweep

    make_sweep(runs_root, trials=6)  # four of six trials done, and no process: stopped
    resumed = []
    monkeypatch.setattr(sweep, "resume_launch", lambda root, name, owner=None: resumed.append((Path(root), name, owner)))
    at = open_page("sweep")
    assert "Stopped: 4 of 6 trials done (3 finished, 1 pruned)." in [t.value for t in at.text]
    at.button(key="sweeps_resume").click().run()
    assert not at.exception and not at.error, plain(at.error)
    assert resumed == [(runs_root.resolve(), NAME, "local")]


def test_without_sweeps_the_page_says_how_to_start_one(runs_root):
    at = open_page("sweep")
    assert "No sweeps yet" in plain(at.info)
    assert any("python -m core sweep --config base.yaml --space space.yaml --trials 12" in c.value for c in at.code)


def test_the_builder_refuses_a_bound_outside_the_field_and_starts_the_space_it_shows(runs_root, monkeypatch):
    from core import sweep

    launched: list[tuple] = []

    def record(base, raw_space, trials, **kwargs):
        launched.append((base, raw_space, trials, kwargs))
        folder = Path(base.runs_root) / sweep.SWEEPS_DIR / kwargs["name"]
        folder.mkdir(parents=True)
        return folder

    monkeypatch.setattr(sweep, "launch", record)
    at = open_page("strategy")
    assert not [t for t in at.toggle if t.key == "sweep.as_yaml"]  # drawn only once opened
    at.session_state["sweep_box"] = True  # the user opens "Sweep: search these settings"
    at.run()
    at.toggle(key="sweep.as_yaml").set_value(True).run()
    assert "train.learning_rate:" in at.text_area(key="sweep.yaml").value  # starts from the space built so far
    at.text_area(key="sweep.yaml").input("train.learning_rate: {low: 1.0e-5, high: 2.0}\n").run()
    assert "train.learning_rate: 2.0 is above the field's maximum 1.0" in plain(at.error)
    assert at.button(key="sweep_start").disabled

    at.toggle(key="sweep.as_yaml").set_value(False).run()
    at.multiselect(key="sweep.fields").set_value(["train.learning_rate", "strategy.kind"]).run()
    at.multiselect(key="sweep.choices.strategy.kind").set_value(["full", "lora"]).run()
    assert "strategy.lora_r" in at.multiselect(key="sweep.fields").options  # lora's own option, now that it may be drawn
    at.multiselect(key="sweep.fields").set_value(["train.learning_rate", "strategy.kind", "strategy.lora_r"]).run()
    at.number_input(key="sweep.high.strategy.lora_r").set_value(32).run()
    assert not at.error, plain(at.error)
    shown = next(c.value for c in at.code if c.language == "yaml" and c.value.startswith("train.learning_rate"))
    assert "strategy.lora_r:\n  low: 4\n  high: 32" in shown

    at.button(key="sweep_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (base, raw, trials, kwargs), = launched
    assert raw["train.learning_rate"] == {"low": pytest.approx(5e-6), "high": pytest.approx(5e-4), "log": True}
    assert raw["strategy.kind"] == ["full", "lora"] and raw["strategy.lora_r"] == {"low": 4, "high": 32}
    assert trials == 12 and kwargs["workers"] == 1 and kwargs["pruner"] == "median" and kwargs["owner"] == "local"
    assert kwargs["name"] == "rotten_tomatoes-sweep" and Path(base.runs_root) == runs_root.resolve()
    assert [t.value for t in at.title] == ["Sweeps"]  # switched there, where the sweep is starting
    assert at.query_params["sweep"] in (kwargs["name"], [kwargs["name"]])
    assert "Starting the sweep" in plain(at.info)
