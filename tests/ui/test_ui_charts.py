"""Chart builders and run-reading helpers: pure functions, checked without a browser."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ui import charts
from ui.runview import config_diff, ema, eval_frame, fmt_duration, load_run, progress, step_frame

CM = {"labels": ["neg", "neu", "pos"], "counts": [[5, 1, 0], [2, 3, 1], [0, 4, 6]],
      "normalized_true": [[5 / 6, 1 / 6, 0], [2 / 6, 3 / 6, 1 / 6], [0, 0.4, 0.6]],
      "normalized_pred": [[5 / 7, 1 / 8, 0], [2 / 7, 3 / 8, 1 / 7], [0, 0.5, 6 / 7]]}


def test_confusion_overlay_has_one_clickable_point_per_cell_in_row_major_order():
    fig = charts.confusion_figure(CM, "counts")
    heat, overlay = fig.data
    assert heat.type == "heatmap" and heat.hoverinfo == "skip"  # clicks must land on the overlay
    assert overlay.type == "scatter" and len(overlay.x) == 9
    assert [tuple(c[:2]) for c in overlay.customdata] == [(g, p) for g in CM["labels"] for p in CM["labels"]]
    assert list(overlay.text[:3]) == ["5", "1", "0"]
    assert overlay.customdata[7][2] == 4  # true pos, predicted neu
    assert fig.layout.clickmode == "event+select"
    assert tuple(fig.layout.yaxis.range) == (2.5, -0.5)  # the first true label on top, as in a printed matrix


@pytest.mark.parametrize("labels", [["a", "b"], ["neg", "neu", "pos"], [f"class-{i}" for i in range(12)],
                                    ["business", "entertainment", "politics", "sport", "tech"]])
def test_confusion_markers_never_overlap_a_neighbouring_cell(labels):
    # A marker wider than its cell swallowed the clicks of its neighbours (the drill-down listed the
    # cell one down and one right); the figure's pixel size must hold exactly k cells of the marker's size.
    k = len(labels)
    cm = {"labels": labels, "counts": [[1] * k] * k, "normalized_true": [[1 / k] * k] * k, "normalized_pred": [[1 / k] * k] * k}
    fig = charts.confusion_figure(cm)
    g = charts.confusion_geometry(labels)
    margin = fig.layout.margin
    plot_w, plot_h = fig.layout.width - margin.l - margin.r, fig.layout.height - margin.t - margin.b
    assert plot_w == plot_h == g["cell"] * k
    assert fig.data[1].marker.size < g["cell"]
    assert tuple(fig.layout.xaxis.range) == (-0.5, k - 0.5)
    assert g["cell"] >= 36 and (k > 4 or g["cell"] >= 90)  # a 3-class grid is no longer 85 px wide


@pytest.mark.parametrize("mode,cell_text", [("true", "0.17"), ("pred", "0.12")])
def test_confusion_modes_show_normalised_values_but_keep_counts_for_hover(mode, cell_text):
    fig = charts.confusion_figure(CM, mode, selected=(0, 1))
    overlay = fig.data[1]
    assert overlay.text[1] == cell_text and overlay.customdata[1][2] == 1
    rect = fig.layout.shapes[0]
    assert (rect.x0, rect.x1, rect.y0, rect.y1) == (0.5, 1.5, -0.5, 0.5)


def test_pareto_front_keeps_only_undominated_points():
    cost = [100, 1, 10, 10, 50, 0.5]
    quality = [0.90, 0.70, 0.85, 0.80, 0.84, 0.60]
    assert charts.pareto_front(cost, quality) == [5, 1, 2, 0]
    assert charts.pareto_front([], []) == []


def test_quality_cost_figure_marks_the_frontier():
    frame = pd.DataFrame({"label": ["full", "lora", "bitfit"], "trainable %": [100, 1.0, 0.1], "f1": [0.9, 0.88, 0.7]})
    fig = charts.quality_cost_figure(frame, "trainable %", "f1")
    runs_trace, front = fig.data
    assert list(front.x) == [0.1, 1.0, 100]
    frame.loc[2, "f1"] = 0.95  # bitfit now beats everything: the frontier is one point
    assert list(charts.quality_cost_figure(frame, "trainable %", "f1").data[1].x) == [0.1]


def test_loss_figure_smoothing_and_uirevision():
    steps = step_frame([{"type": "step", "step": i, "loss": 1.0 / i, "lr": 1e-5, "epoch": 0.1 * i, "samples_per_s": 10, "time": i}
                        for i in range(1, 6)])
    smooth = charts.loss_figure(steps, smooth=True, uirevision="run-1")
    assert len(smooth.data) == 2 and smooth.layout.uirevision == "run-1"
    assert len(charts.loss_figure(steps, smooth=False).data) == 1
    assert len(charts.loss_figure(step_frame([])).data) == 0


def test_ema_is_bias_corrected():
    assert ema([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])
    out = ema([0.0, 10.0], weight=0.5)
    assert out[0] == 0.0 and out[1] == pytest.approx(10 * 0.5 / 0.75)


def test_progress_uses_the_recent_pace_not_the_startup():
    events = [{"type": "start", "time": 0.0, "total_steps": 100}]
    events += [{"type": "step", "time": 20.0 + i, "step": i, "epoch": i / 50, "samples_per_s": 16.0} for i in range(1, 11)]
    p = progress(events)
    assert (p.step, p.total) == (10, 100) and p.fraction == 0.1
    assert p.eta_s == pytest.approx(90.0)  # one second per step after the 21-second first step
    assert p.samples_per_s == 16.0
    empty = progress([{"type": "start", "time": 0.0, "total_steps": 7}])
    assert empty.eta_s is None and empty.fraction == 0.0


def test_progress_has_an_eta_from_the_first_logged_window():
    # log_every=50 on a 400-row epoch of batch 8: the first step event comes at step 50 and the ETA must
    # not wait for a second one (it used to stay "–" for the whole first epoch).
    events = [{"type": "start", "time": 0.0, "total_steps": 150, "train_size": 400, "steps_per_epoch": 50},
              {"type": "step", "time": 30.0, "step": 50, "epoch": 1.0, "samples_per_s": 16.0}]
    p = progress(events)
    assert p.eta_s == pytest.approx(100 * 8 / 16.0)  # 100 steps of 8 rows at 16 rows/s


def test_resumed_steps_replace_the_earlier_attempt():
    events = [{"type": "step", "step": 1, "loss": 1.0}, {"type": "step", "step": 2, "loss": 0.9},
              {"type": "step", "step": 2, "loss": 0.8}, {"type": "eval", "step": 2, "metrics": {"f1": 0.5, "loss": math.nan}}]
    assert step_frame(events)["loss"].tolist() == [1.0, 0.8]
    assert eval_frame(events)[["metric", "value"]].values.tolist() == [["f1", 0.5]]


def test_fmt_duration():
    assert [fmt_duration(s) for s in (None, 5, 65, 3700)] == ["–", "5 s", "1 min 05 s", "1 h 01 min"]


def test_config_diff_lists_only_differing_options():
    a = {"strategy": {"kind": "full", "lora_r": 8}, "train": {"epochs": 2}, "name": "a"}
    b = {"strategy": {"kind": "lora", "lora_r": 8}, "train": {"epochs": 2}, "name": "b"}
    diff = config_diff({"run-a": a, "run-b": b})
    assert diff["option"].tolist() == ["name", "strategy.kind"]
    assert diff.loc[1, "run-b"] == "lora"


def test_load_run_explains_missing_and_half_written_runs(tmp_path):
    missing = load_run(tmp_path, "nope")
    assert missing.state == "missing" and "'nope' was not found" in missing.problem
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "status.json").write_text('{"state": "runn')
    half = load_run(tmp_path, "half")
    assert half.state == "broken" and "config.json" in half.problem


def test_cached_event_reading_adds_only_new_lines_and_restarts_on_a_shorter_file(tmp_path):
    # The Training page redraws every few seconds: each redraw must see every event exactly once.
    import json

    from ui.runview import RunView, read_run_events

    view = RunView("r1", tmp_path, "running")
    path = view.events_path
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(mode: str, steps: range) -> None:
        with path.open(mode) as f:
            f.writelines(json.dumps({"type": "step", "step": s, "t": s}) + "\n" for s in steps)

    cache: dict = {}
    write("w", range(1, 4))
    assert [e["step"] for e in read_run_events(view, cache)] == [1, 2, 3]
    write("a", range(4, 6))
    with path.open("a") as f:
        f.write('{"type": "step", "st')  # a line still being written waits for the next redraw
    assert [e["step"] for e in read_run_events(view, cache)] == [1, 2, 3, 4, 5]
    assert read_run_events(view, cache) == read_run_events(view)  # the cache agrees with a full read
    write("w", range(1, 2))  # rewritten shorter: read again from the start
    assert [e["step"] for e in read_run_events(view, cache)] == [1]


def test_live_cadence_slows_down_on_small_machines_and_the_environment_wins(monkeypatch):
    from ui.runview import live_cadence

    monkeypatch.delenv("TUNEBOARD_STATUS_EVERY_S", raising=False)
    monkeypatch.delenv("TUNEBOARD_CHARTS_EVERY_S", raising=False)
    assert live_cadence(cores=2) == (10.0, 20.0)  # the browser likely shares the trainer's cores
    assert live_cadence(cores=16) == (5.0, 10.0)
    monkeypatch.setenv("TUNEBOARD_STATUS_EVERY_S", "3")
    assert live_cadence(cores=2) == (3.0, 20.0)


def test_confidence_figure_splits_right_from_wrong():
    fig = charts.confidence_figure([0.9, 0.8, 0.55, 0.6], [True, True, False, True])
    right, wrong = fig.data
    assert sorted(right.x) == [0.6, 0.8, 0.9] and list(wrong.x) == [0.55]
    assert right.name == "right (3)" and wrong.name == "wrong (1)"
    assert fig.layout.barmode == "overlay" and tuple(fig.layout.xaxis.range) == (0, 1)


def test_regression_figure_draws_the_diagonal_over_both_ranges():
    fig = charts.regression_figure([1.0, 2.0, 3.0], [0.5, 2.5, 4.0])
    diagonal, points = fig.data
    assert list(diagonal.x) == list(diagonal.y) == [0.5, 4.0]  # covers gold and predicted alike
    assert list(points.x) == [1.0, 2.0, 3.0] and list(points.y) == [0.5, 2.5, 4.0]
