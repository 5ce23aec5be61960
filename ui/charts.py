"""Plotly figure builders: pure functions of plain data, so each is unit-tested without a browser.

Every live chart takes a ``uirevision``: Plotly keeps the user's zoom and legend choices across
redraws as long as that value stays the same (the run id), which is what lets the Training page
refresh every second without resetting a zoomed-in loss curve.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ui.runview import ema

ACCENT = "#4F46E5"
MUTED = "#A5B4FC"
GOOD = "#059669"
BAD = "#DC2626"
PALETTE = ["#4F46E5", "#059669", "#D97706", "#DC2626", "#0891B2", "#7C3AED", "#DB2777", "#65A30D", "#475569", "#EA580C"]
CM_MODES = {"counts": "Counts", "true": "Normalised by true label (recall)", "pred": "Normalised by prediction (precision)"}


def _layout(fig: go.Figure, title: str | None = None, *, height: int = 320, uirevision: Any = None, **extra: Any) -> go.Figure:
    fig.update_layout(title=title, height=height, margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
                      template="plotly_white", uirevision=uirevision, legend={"orientation": "h", "y": -0.2}, **extra)
    return fig


def loss_figure(steps: pd.DataFrame, *, smooth: bool = True, weight: float = 0.9, uirevision: Any = None) -> go.Figure:
    """Training loss per step; with ``smooth`` the raw curve fades behind its exponential average."""
    fig = go.Figure()
    if not steps.empty:
        data = steps.dropna(subset=["loss"])
        fig.add_scatter(x=data["step"], y=data["loss"], mode="lines+markers" if len(data) < 30 else "lines", name="loss",
                        line={"color": MUTED if smooth else ACCENT, "width": 1.5}, marker={"size": 5})
        if smooth and len(data) > 1:
            fig.add_scatter(x=data["step"], y=ema(data["loss"], weight), mode="lines", name=f"smoothed ({weight})",
                            line={"color": ACCENT, "width": 2.5})
    fig.update_xaxes(title="optimizer step")
    fig.update_yaxes(title="loss")
    return _layout(fig, "Training loss", uirevision=uirevision)


def lr_figure(steps: pd.DataFrame, *, uirevision: Any = None) -> go.Figure:
    fig = go.Figure()
    if not steps.empty:
        fig.add_scatter(x=steps["step"], y=steps["lr"], mode="lines", name="learning rate", line={"color": "#0891B2"})
    fig.update_xaxes(title="optimizer step")
    fig.update_yaxes(title="learning rate", exponentformat="e")
    return _layout(fig, "Learning rate", uirevision=uirevision)


def eval_figure(evals: pd.DataFrame, metrics: Sequence[str] | None = None, *, uirevision: Any = None) -> go.Figure:
    """Validation metrics per evaluation (loss left out: it has its own scale)."""
    fig = go.Figure()
    if not evals.empty:
        names = list(metrics) if metrics else [m for m in evals["metric"].unique() if m != "loss"]
        for i, name in enumerate(names):
            data = evals[evals["metric"] == name].sort_values("step")
            fig.add_scatter(x=data["step"], y=data["value"], mode="lines+markers", name=name,
                            line={"color": PALETTE[i % len(PALETTE)]})
    fig.update_xaxes(title="optimizer step")
    fig.update_yaxes(title="validation")
    return _layout(fig, "Validation metrics", uirevision=uirevision)


def cell_points(labels: Sequence[str]) -> list[tuple[int, int]]:
    """The (gold, predicted) index of each point of the confusion matrix's clickable overlay, in order."""
    k = len(labels)
    return [(i, j) for i in range(k) for j in range(k)]


def confusion_geometry(labels: Sequence[str]) -> dict[str, int]:
    """Pixel layout of the confusion matrix: cell side, margins and the figure's size.

    Fixed, not left to the container: the clickable overlay's square markers must be exactly one cell
    wide. A marker larger than its cell overlaps its neighbours, and a click then lands on the marker
    drawn last (the cell one row down and one column right), so the geometry is decided here and the
    page draws the figure at its own size (``width="content"``).
    """
    k = max(len(labels), 1)
    cell = max(36, min(96, 480 // k))
    longest = max((len(str(label)) for label in labels), default=1)
    tick = min(160, 7 * longest + 10)  # about 7 px per character at the tick font size
    left, bottom, top, right = tick + 40, tick + 40, 40, 10
    return {"cell": cell, "left": left, "right": right, "top": top, "bottom": bottom,
            "width": left + right + cell * k, "height": top + bottom + cell * k}


def confusion_figure(cm: dict[str, Any], mode: str = "counts", *, selected: tuple[int, int] | None = None) -> go.Figure:
    """Heatmap of a report's ``confusion_matrix`` plus an invisible scatter overlay, one point per cell.

    Streamlit returns no selection for clicks on a heatmap (streamlit#8760), but it does for scatter
    points: each cell gets a transparent square marker, exactly one cell wide (see
    :func:`confusion_geometry`), whose ``customdata`` is [gold, predicted, count].
    """
    labels = list(cm["labels"])
    counts = np.asarray(cm["counts"], dtype=float)
    values = {"counts": counts, "true": np.asarray(cm["normalized_true"]), "pred": np.asarray(cm["normalized_pred"])}[mode]
    k = len(labels)
    geometry = confusion_geometry(labels)
    fig = go.Figure()
    fig.add_heatmap(z=values, x=labels, y=labels, colorscale="Blues", showscale=False, hoverinfo="skip",
                    zmin=0, zmax=float(values.max()) if mode == "counts" and values.size else 1.0)
    pts = cell_points(labels)
    text = [f"{int(counts[i, j])}" if mode == "counts" else f"{values[i, j]:.2f}" for i, j in pts]
    high = float(values.max()) if values.size else 0.0
    colors = ["white" if high and values[i, j] > 0.55 * high else "#1E293B" for i, j in pts]
    fig.add_scatter(
        x=[labels[j] for _, j in pts], y=[labels[i] for i, _ in pts], mode="markers+text", text=text,
        textfont={"color": colors, "size": 14 if k <= 6 else 10},
        marker={"symbol": "square", "size": geometry["cell"] - 2, "color": "rgba(0,0,0,0)"},
        customdata=[[labels[i], labels[j], int(counts[i, j])] for i, j in pts],
        hovertemplate="true %{customdata[0]} → predicted %{customdata[1]}<br>%{customdata[2]} examples<br>"
                      "click to list them<extra></extra>",
        name="cells", showlegend=False,
        # keep every cell fully visible when one is selected
        selected={"marker": {"opacity": 1}}, unselected={"marker": {"opacity": 1}},
    )
    if selected is not None:
        i, j = selected
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line={"color": "#F59E0B", "width": 3})
    # Index ranges: the grid fills the plot area exactly, so cell (i, j) is where the geometry says.
    fig.update_xaxes(title="predicted", side="bottom", type="category", range=[-0.5, k - 0.5], automargin=False, fixedrange=True)
    fig.update_yaxes(title="true", type="category", range=[k - 0.5, -0.5], automargin=False, fixedrange=True)
    fig.update_layout(title=CM_MODES[mode], width=geometry["width"], height=geometry["height"], template="plotly_white",
                      margin={"l": geometry["left"], "r": geometry["right"], "t": geometry["top"], "b": geometry["bottom"]},
                      clickmode="event+select", dragmode=False, hovermode="closest", showlegend=False)
    return fig


def curve_figure(x: Sequence[float], y: Sequence[float], *, title: str, x_title: str, y_title: str,
                 diagonal: bool = False, name: str = "") -> go.Figure:
    fig = go.Figure()
    if diagonal:
        fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#94A3B8"}, name="chance")
    fig.add_scatter(x=list(x), y=list(y), mode="lines", line={"color": ACCENT, "width": 2.5}, name=name or title)
    fig.update_xaxes(title=x_title, range=[0, 1])
    fig.update_yaxes(title=y_title, range=[0, 1.02])
    return _layout(fig, title)


def reliability_figure(bins: list[dict[str, Any]], ece: float | None = None) -> go.Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    used = [b for b in bins if b.get("count")]
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#94A3B8"}, name="perfect calibration")
    fig.add_bar(x=[(b["lower"] + b["upper"]) / 2 for b in used], y=[b["accuracy"] for b in used],
                width=[b["upper"] - b["lower"] for b in used], marker={"color": ACCENT, "opacity": 0.75}, name="accuracy",
                customdata=[b["count"] for b in used], hovertemplate="confidence %{x:.2f}: accuracy %{y:.2f} (%{customdata} examples)")
    fig.update_xaxes(title="confidence", range=[0, 1])
    fig.update_yaxes(title="accuracy", range=[0, 1.02])
    title = "Reliability" + (f" (ECE {ece:.3f})" if ece is not None else "")
    return _layout(fig, title)


def confidence_figure(confidence: Sequence[float], correct: Sequence[bool], bins: int = 20) -> go.Figure:
    """Overlaid histograms of the model's confidence on right and on wrong predictions."""
    conf, ok = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=bool)
    fig = go.Figure()
    edges = {"start": 0.0, "end": 1.0, "size": 1.0 / bins}
    fig.add_histogram(x=conf[ok], xbins=edges, name=f"right ({int(ok.sum()):,})", marker={"color": GOOD}, opacity=0.7)
    fig.add_histogram(x=conf[~ok], xbins=edges, name=f"wrong ({int((~ok).sum()):,})", marker={"color": BAD}, opacity=0.7)
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title="confidence (probability of the predicted label)", range=[0, 1])
    fig.update_yaxes(title="examples")
    return _layout(fig, "Confidence, right vs wrong")


def regression_figure(gold: Sequence[float], predicted: Sequence[float]) -> go.Figure:
    """Predicted against true values with the diagonal of perfect predictions."""
    y, p = np.asarray(gold, dtype=float), np.asarray(predicted, dtype=float)
    low, high = (float(min(y.min(), p.min())), float(max(y.max(), p.max()))) if y.size else (0.0, 1.0)
    fig = go.Figure()
    fig.add_scatter(x=[low, high], y=[low, high], mode="lines", line={"dash": "dot", "color": "#94A3B8"}, name="perfect")
    fig.add_scatter(x=y, y=p, mode="markers", marker={"color": ACCENT, "size": 6, "opacity": 0.6}, name="examples")
    fig.update_xaxes(title="true value")
    fig.update_yaxes(title="predicted value")
    return _layout(fig, "Predicted vs true", height=380)


def distribution_figure(distribution: dict[str, dict[str, Any]], *, title: str = "Labels per split") -> go.Figure:
    """Grouped bars of ``{split: {label: count}}`` (data_checks' label_distribution)."""
    fig = go.Figure()
    for i, (split, counts) in enumerate(distribution.items()):
        if not counts or "count" in counts and "mean" in counts:
            continue  # regression summary: not a bar chart
        fig.add_bar(x=list(counts), y=list(counts.values()), name=split, marker={"color": PALETTE[i % len(PALETTE)]})
    fig.update_layout(barmode="group")
    return _layout(fig, title)


def token_length_figure(lengths: Sequence[int], max_length: int, share: float) -> go.Figure:
    """Histogram of tokens per example with the truncation limit and the share it cuts (core.tokenize.token_stats)."""
    arr = np.asarray(lengths)
    fig = go.Figure()
    fig.add_histogram(x=arr, nbinsx=50, marker={"color": ACCENT}, name="examples")
    fig.add_vline(x=max_length, line={"color": BAD, "dash": "dash"},
                  annotation_text=f"max_length {max_length}: {share:.1%} truncated", annotation_position="top right")
    fig.update_xaxes(title="tokens per example")
    fig.update_yaxes(title="examples")
    return _layout(fig, "Token lengths")


def param_groups_figure(groups: list[dict[str, Any]]) -> go.Figure:
    """Learning rate of each parameter group (bar), e.g. the geometric decay of LLRD."""
    fig = go.Figure()
    fig.add_bar(x=[g["name"] for g in groups], y=[g["lr"] for g in groups], marker={"color": ACCENT},
                customdata=[g.get("params", 0) for g in groups], hovertemplate="%{x}: lr %{y:.2e}, %{customdata:,} params")
    fig.update_yaxes(title="learning rate", exponentformat="e")
    return _layout(fig, "Parameter groups")


def pareto_front(cost: Sequence[float], quality: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower cost, higher quality), by cost."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -quality[i]))
    front, best = [], -np.inf
    for i in order:
        if quality[i] > best:
            front.append(i)
            best = quality[i]
    return front


def quality_cost_figure(frame: pd.DataFrame, cost: str, quality: str, *, label: str = "label") -> go.Figure:
    """Scatter of runs, quality against cost, with the Pareto frontier drawn and its runs marked."""
    data = frame.dropna(subset=[cost, quality]).reset_index(drop=True)
    front = pareto_front(data[cost].tolist(), data[quality].tolist()) if len(data) else []
    on_front = data.index.isin(front)
    fig = go.Figure()
    fig.add_scatter(x=data[cost], y=data[quality], mode="markers+text", text=data[label], textposition="top center",
                    marker={"size": 12, "color": [GOOD if f else "#94A3B8" for f in on_front],
                            "line": {"width": 1, "color": "#1E293B"}},
                    name="runs", hovertemplate=f"%{{text}}<br>{cost}: %{{x:.4g}}<br>{quality}: %{{y:.4f}}<extra></extra>")
    if front:
        pts = data.loc[front]
        fig.add_scatter(x=pts[cost], y=pts[quality], mode="lines", line={"color": GOOD, "dash": "dash", "shape": "hv"},
                        name="Pareto frontier")
    fig.update_xaxes(title=cost)
    fig.update_yaxes(title=quality)
    return _layout(fig, f"{quality} vs {cost}", height=420)


def overlay_figure(curves: dict[str, pd.DataFrame], *, x: str, y: str, title: str, uirevision: Any = None) -> go.Figure:
    """One line per run (``curves[label]`` holds columns x and y)."""
    fig = go.Figure()
    for i, (name, data) in enumerate(curves.items()):
        if data.empty:
            continue
        fig.add_scatter(x=data[x], y=data[y], mode="lines+markers" if len(data) < 30 else "lines", name=name,
                        line={"color": PALETTE[i % len(PALETTE)]})
    fig.update_xaxes(title=x)
    fig.update_yaxes(title=y)
    return _layout(fig, title, height=360, uirevision=uirevision)


def slice_figure(slicing: dict[str, Any]) -> go.Figure:
    """One slicing's score per slice with its 95% interval, against the whole split; flagged slices in orange."""
    slices = slicing["slices"]
    # names come from users' columns: escaped, as Plotly reads a few HTML tags in its texts
    names = [html.escape(s["name"]) for s in slices]
    colors = ["#E66101" if s["worse"] else ACCENT for s in slices]
    fig = go.Figure()
    fig.add_bar(x=names, y=[s["score"] for s in slices], marker={"color": colors, "opacity": 0.8}, name=slicing["metric"],
                error_y={"type": "data", "symmetric": False,
                         "array": [max(0.0, s["high"] - s["score"]) for s in slices],
                         "arrayminus": [max(0.0, s["score"] - s["low"]) for s in slices], "color": "#334155"},
                customdata=[[s["examples"], s["low"], s["high"]] for s in slices],
                hovertemplate="%{x}: %{y:.3f} [%{customdata[1]:.3f}, %{customdata[2]:.3f}], %{customdata[0]} examples<extra></extra>")
    fig.add_hline(y=slicing["overall"], line={"dash": "dot", "color": "#64748B"},
                  annotation_text=f"whole split {slicing['overall']:.3f}", annotation_position="top left")
    fig.update_xaxes(type="category", title=html.escape(slicing["name"]))
    fig.update_yaxes(title=slicing["metric"])
    return _layout(fig, f"{slicing['metric'].capitalize()} by {html.escape(slicing['name'])}", height=300)


# --- sweeps -------------------------------------------------------------------------------------------


def best_so_far(values: Sequence[float], *, maximize: bool) -> list[float]:
    """The running best of ``values`` in order (the highest so far, or the lowest when minimizing)."""
    out: list[float] = []
    for v in values:
        out.append(v if not out else (max if maximize else min)(out[-1], v))
    return out


def trial_value(trial: dict[str, Any]) -> float | None:
    """A sweep trial's value (a core.sweep.SweepResult row); for one without (running) the last value it reported.
    Optuna keeps a pruned trial's last reported value as its value."""
    value = trial.get("value")
    if value is None and trial.get("intermediate"):
        steps = trial["intermediate"]
        value = steps[max(steps, key=int)]
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None


def sweep_history_figure(trials: Sequence[dict[str, Any]], *, metric: str, maximize: bool, uirevision: Any = None) -> go.Figure:
    """Each trial's validation value by trial number: finished trials as dots, pruned ones as grey crosses at the
    last value they reported, running ones as hollow dots, and the best so far among finished trials as a step line."""
    ordered = sorted(trials, key=lambda t: t["number"])
    done = [t for t in ordered if t["state"] == "complete" and trial_value(t) is not None]
    fig = go.Figure()
    styles = {"complete": ("finished", {"color": ACCENT, "size": 9}),
              "pruned": ("pruned (last reported value)", {"color": "#94A3B8", "size": 10, "symbol": "x"}),
              "running": ("running (latest value)", {"color": ACCENT, "size": 9, "symbol": "circle-open"})}
    for state, (name, marker) in styles.items():
        shown = [t for t in ordered if t["state"] == state and trial_value(t) is not None]
        if shown:
            fig.add_scatter(x=[t["number"] for t in shown], y=[trial_value(t) for t in shown], mode="markers", name=name,
                            marker=marker, hovertemplate=f"trial %{{x}}: %{{y:.4f}} ({state})<extra></extra>")
    if done:
        fig.add_scatter(x=[t["number"] for t in done], y=best_so_far([trial_value(t) for t in done], maximize=maximize),
                        mode="lines", line={"color": GOOD, "width": 2.5, "shape": "hv"},
                        name=f"best so far ({'highest' if maximize else 'lowest'})")
    last = max((t["number"] for t in ordered), default=0)
    fig.update_xaxes(title="trial", range=[-0.5, last + 0.5], dtick=1 if last < 20 else None)  # no dot on the plot's edge
    shown = [v for t in ordered if (v := trial_value(t)) is not None]
    if shown and max(shown) - min(shown) < 1e-9:  # equal values: Plotly would span ±1 around them, a flat line at the bottom
        pad = max(abs(shown[0]) * 0.05, 1e-3)
        fig.update_yaxes(range=[shown[0] - pad, shown[0] + pad])
    fig.update_yaxes(title=f"validation {metric}")
    return _layout(fig, "Optimization history", height=360, uirevision=uirevision)


def _log_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """Ticks of a log10 axis, labelled with the values themselves."""
    lo, hi = np.log10(low), np.log10(high)
    decades = [float(e) for e in range(int(np.ceil(lo)), int(np.floor(hi)) + 1)]
    ticks = decades if len(decades) >= 2 else [float(v) for v in np.linspace(lo, hi, 4)]
    return ticks, [f"{10 ** t:.0e}" if t.is_integer() else f"{10 ** t:.2g}" for t in ticks]


def _linear_ticks(low: float, high: float, *, whole: bool) -> tuple[list[float], list[str]]:
    ticks = np.linspace(low, high, 4)
    if whole:  # an integer field's ticks on integers
        ticks = np.unique(np.round(ticks))
    return [float(t) for t in ticks], [f"{t:.3g}" for t in ticks]


def parallel_figure(trials: Sequence[dict[str, Any]], axes: dict[str, dict[str, Any]], *, metric: str,
                    maximize: bool) -> go.Figure:
    """Parallel coordinates of the finished trials: one axis per searched field, then the validation value, each
    line coloured by its value. Choices are drawn at integer positions named by ``ticktext``; a log-scale float
    is drawn as its log10 (the axis label says so, its ticks name the values). A strategy's option that a trial
    did not draw sits at a "not drawn" tick below the axis' range.

    ``axes``: field -> {kind: float|int|categorical, log, low, high, choices} (ui.sweep_view.axes_of).
    """
    done = [t for t in sorted(trials, key=lambda t: t["number"]) if t["state"] == "complete" and trial_value(t) is not None]
    values = [trial_value(t) for t in done]
    dims = []
    for key, axis in axes.items():
        raw = [t["params"].get(key) for t in done]
        missing = any(v is None for v in raw)
        label = html.escape(key)
        if axis["kind"] == "categorical":
            choices = list(axis["choices"])
            codes = [choices.index(v) if v in choices else len(choices) for v in raw]
            names = [html.escape(str(c)) for c in choices] + (["not drawn"] if missing else [])
            dims.append({"label": label, "values": codes, "tickvals": list(range(len(names))), "ticktext": names,
                         "range": [-0.25, len(names) - 0.75]})
            continue
        log = bool(axis.get("log"))
        low, high = (float(axis["low"]), float(axis["high"]))
        scaled_low, scaled_high = (np.log10(low), np.log10(high)) if log else (low, high)
        span = (scaled_high - scaled_low) or 1.0
        absent = scaled_low - 0.15 * span  # where a trial without this option is drawn
        points = [absent if v is None else float(np.log10(v) if log else v) for v in raw]
        dim: dict[str, Any] = {"label": f"{label}<br>(log10 scale)" if log else label, "values": points,
                               "range": [absent if missing else scaled_low, scaled_high]}
        if log or missing:
            ticks, text = _log_ticks(low, high) if log else _linear_ticks(low, high, whole=axis["kind"] == "int")
            dim["tickvals"] = ([absent] if missing else []) + ticks
            dim["ticktext"] = (["not drawn"] if missing else []) + text
        dims.append(dim)
    value_name = f"validation {html.escape(metric)}"
    dims.append({"label": value_name, "values": values})
    fig = go.Figure(go.Parcoords(
        dimensions=dims,
        # the last axis is the value itself: no colour bar repeating it
        line={"color": values, "colorscale": "Viridis", "reversescale": not maximize, "showscale": False},
        labelangle=0, labelside="top", labelfont={"size": 13}, tickfont={"size": 11}))
    _layout(fig, None, height=420)
    # The first and last axes sit on the plot's edges with their labels centred on them: room for those labels
    return fig.update_layout(margin={"l": 90, "r": 90, "t": 80, "b": 30})


def importance_figure(importances: dict[str, float]) -> go.Figure:
    """Each searched field's share of the objective's variance (Optuna's fANOVA), largest on top."""
    ordered = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure()
    fig.add_bar(x=[v for _, v in ordered], y=[html.escape(k) for k, _ in ordered], orientation="h", marker={"color": ACCENT},
                hovertemplate="%{y}: %{x:.1%}<extra></extra>")
    fig.update_xaxes(title="share of the variance of the validation value", tickformat=".0%", range=[0, 1])
    return _layout(fig, "Parameter importances", height=max(200, 60 + 40 * len(ordered)))
