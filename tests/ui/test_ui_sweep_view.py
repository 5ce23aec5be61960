"""The sweep builder's fields and the sweep charts: pure functions, checked without Streamlit or a study."""

from __future__ import annotations

import pytest

from core import sweep
from core.config import STRATEGY_KINDS, RunConfig
from ui import charts
from ui.sweep_view import builder_space, choices_key, default_range, high_key, log_key, low_key, proposed_name, searchable_fields


@pytest.mark.parametrize("task", ["single_label", "multi_label", "token"])
def test_every_offered_field_starts_with_a_range_core_accepts(task):
    # The builder's first range for each field must pass parse_space: a default outside a field's own bounds
    # would greet the user with an error they did not make.
    config = RunConfig(task=task)
    offered = searchable_fields(task, STRATEGY_KINDS)
    state = {}
    for key, f in offered.items():
        section, _, name = key.partition(".")
        current = getattr(getattr(config, section), name)
        if f.kind == "choice":
            state[choices_key(key)] = [current]
        else:
            low, high, log = default_range(f, current)
            state.update({low_key(key): low, high_key(key): high, log_key(key): log})
    raw = builder_space(list(offered.values()), state)
    assert [d.key for d in sweep.parse_space(raw)] == list(offered)
    assert raw["train.learning_rate"]["log"] is True and raw["strategy.lora_r"] == {"low": 4, "high": 16}
    assert ("train.multi_label_threshold" in offered) == (task == "multi_label")
    assert not {"train.seed", "train.eval_every", "model.name", "data.source"} & set(offered)


def test_a_strategys_own_options_are_offered_only_when_it_may_be_drawn():
    assert "strategy.lora_r" not in searchable_fields("single_label", ["full"])
    assert {"strategy.lora_r", "strategy.label_smoothing"} <= set(searchable_fields("single_label", ["full", "lora"]))
    assert "strategy.label_smoothing" in searchable_fields("single_label", [])  # every strategy's option


def test_a_taken_sweep_name_is_numbered():
    assert proposed_name("news", set()) == "news-sweep"
    assert proposed_name("news", {"news-sweep", "news-sweep-2"}) == "news-sweep-3"


def trial(number: int, state: str, value: float | None, **params) -> dict:
    return {"number": number, "state": state, "value": value, "params": params, "intermediate": {1: value or 0.3}}


def test_history_keeps_the_lowest_so_far_when_minimizing():
    assert charts.best_so_far([3.0, 1.0, 2.0, 0.5], maximize=False) == [3.0, 1.0, 1.0, 0.5]
    fig = charts.sweep_history_figure([trial(0, "complete", 0.4), trial(1, "pruned", None), trial(2, "complete", 0.2)],
                                      metric="loss", maximize=False)
    best = next(t for t in fig.data if t.name.startswith("best so far"))
    assert list(best.y) == [0.4, 0.2] and "lowest" in best.name
    pruned = next(t for t in fig.data if t.name.startswith("pruned"))
    assert list(pruned.y) == [0.3] and pruned.marker.symbol == "x"


def test_parallel_coordinates_place_an_option_not_drawn_below_its_axis():
    axes = {"strategy.kind": {"kind": "categorical", "choices": ["full", "lora"]},
            "strategy.lora_r": {"kind": "int", "low": 4, "high": 16, "log": False},
            "train.learning_rate": {"kind": "float", "low": 1e-5, "high": 1e-3, "log": True}}
    trials = [trial(0, "complete", 0.8, **{"strategy.kind": "lora", "strategy.lora_r": 8, "train.learning_rate": 1e-4}),
              trial(1, "complete", 0.7, **{"strategy.kind": "full", "train.learning_rate": 1e-5}),
              trial(2, "pruned", None, **{"strategy.kind": "full", "train.learning_rate": 1e-3})]
    kind, rank, rate, value = charts.parallel_figure(trials, axes, metric="f1", maximize=True).data[0].dimensions
    assert list(kind.values) == [1, 0] and list(kind.ticktext) == ["full", "lora"]
    assert rank.values[0] == 8 and rank.values[1] < 4 and rank.ticktext[0] == "not drawn"
    assert rate.label == "train.learning_rate<br>(log10 scale)" and list(rate.values) == pytest.approx([-4, -5])
    assert list(rate.ticktext) == ["1e-05", "1e-04", "1e-03"]
    assert value.label == "validation f1" and list(value.values) == [0.8, 0.7]  # finished trials only
