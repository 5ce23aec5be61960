"""Compare: every run in a filterable table; overlay the ticked runs' curves, diff their configs, and
plot quality against cost with the Pareto frontier."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import actions, fuse, runs
from core.access import Action, allowed
from core.config import field_specs
from ui import charts
from ui.app_state import current_user, runs_root
from ui.compare import COSTS, curves, display_table, filter_runs, fusion_rows, runs_table
from ui.html import md_literal
from ui.runview import config_diff, ema, short_label
from ui.widgets import field_widget

root = runs_root()
user = current_user()
st.title("Compare")
table = runs_table(root)
if table.empty:
    st.info("No runs yet. Start one on the **Strategy** page; tick several strategies there to queue a comparison.")
    st.stop()

f1, f2, f3, f4 = st.columns(4)
tasks = f1.multiselect("Task", sorted(table["task"].unique()), key="cmp_tasks")
strategies = f2.multiselect("Strategy", sorted(table["strategy"].unique()), key="cmp_strategies")
states = f3.multiselect("State", sorted(table["state"].unique()), default=None, key="cmp_states")
text = f4.text_input("Search", key="cmp_text", placeholder="run id or name")
shown = filter_runs(table, tasks=tasks, strategies=strategies, states=states, text=text)

st.caption("Tick runs (the boxes on the left) to compare them.")
display, shared = display_table(shown)
if shared:
    st.caption(" · ".join(f"{name}: **{value}**" for name, value in shared.items()))
event = st.dataframe(
    display, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row", key="cmp_table",
    column_config={
        "run": st.column_config.TextColumn("run", help="name · start time · id suffix"),
        "model": st.column_config.TextColumn("model", width="small"),
        "made_from": st.column_config.TextColumn("made from", width="small", help="a derived run: its method and parent run"),
        "value": st.column_config.NumberColumn("headline", format="%.4f"),
        "trainable_percent": st.column_config.NumberColumn("trainable %", format="%.3f"),
        "train_s": st.column_config.NumberColumn("train s", format="%.1f"),
        "peak_memory_mb": st.column_config.NumberColumn("peak MB", format="%.0f"),
        "saved_model_mb": st.column_config.NumberColumn("model MB", format="%.1f"),
    },
)
picked = [shown.loc[i, "run"] for i in event.selection.rows if i < len(shown)]
if not picked:
    st.info("Tick at least one run to overlay its curves; two or more for the config diff and the quality-vs-cost chart.")
    st.stop()

losses, evals = curves(root, picked)
names = dict(zip(shown["run"], shown["name"], strict=True))
losses = {short_label(r, names[r]): d for r, d in losses.items()}  # legends: name, time and suffix, not the long id
evals = {short_label(r, names[r]): d for r, d in evals.items()}
c1, c2 = st.columns(2)
with c1:
    smooth = st.toggle("Smoothed loss", value=True, key="cmp_smooth")
    loss_curves = {r: (d.assign(loss=ema(d["loss"])) if smooth and len(d) else d) for r, d in losses.items()}
    st.plotly_chart(charts.overlay_figure(loss_curves, x="step", y="loss", title="Training loss", uirevision="cmp"))
with c2:
    metrics = sorted({m for d in evals.values() for m in d["metric"].unique()})
    if metrics:
        first = next((m for m in ("f1_macro", "f1", "accuracy") if m in metrics), metrics[0])
        metric = st.selectbox("Validation metric", metrics, index=metrics.index(first), key="cmp_metric")
        metric_curves = {r: d[d["metric"] == metric].rename(columns={"value": metric}) for r, d in evals.items()}
        st.plotly_chart(charts.overlay_figure(metric_curves, x="step", y=metric, title=f"Validation {metric}", uirevision="cmp"))
    else:
        st.caption("No validation results yet.")

if len(picked) >= 2:
    st.subheader("Config differences")
    configs = {r: runs.read_json(root / r / runs.CONFIG) or {} for r in picked}
    diff = config_diff({r: {k: v for k, v in c.items() if k != "output_dir"} for r, c in configs.items()})
    if diff.empty:
        st.caption("The ticked runs have identical configs.")
    else:
        st.dataframe(diff, hide_index=True, width="stretch")

    st.subheader("Quality vs cost")
    done = shown[shown["run"].isin(picked) & shown["value"].notna()].copy()
    if len(done) < 2:
        st.caption("Needs two or more completed runs among the ticked ones.")
    else:
        cost_label = st.radio("Cost", list(COSTS), horizontal=True, key="cmp_cost")
        metric_names = done["metric"].dropna().unique()
        quality = metric_names[0] if len(metric_names) == 1 else "headline"
        done = done.rename(columns={"value": quality, COSTS[cost_label]: cost_label})
        done["label"] = done["strategy"] + " · " + done["run"].str[-4:]
        st.plotly_chart(charts.quality_cost_figure(done, cost_label, quality))
        front = charts.pareto_front(done[cost_label].fillna(float("inf")).tolist(), done[quality].tolist())
        st.caption("Green runs are on the Pareto frontier: no other run is both cheaper and better. "
                   f"Frontier: {', '.join(pd.Series(done['label']).iloc[front])}.")

# --- fusion: the ticked runs as one model ---------------------------------------------------------------
fused = fusion_rows(root, picked)
if not fused.empty:
    st.subheader("Fused runs")
    st.dataframe(fused, hide_index=True, width="stretch", key="cmp_fused", column_config={
        "value": st.column_config.NumberColumn("headline", format="%.4f", help="on the members' shared test split"),
        "vs_best": st.column_config.NumberColumn("vs best member", format="%+.4f"),
        "vs_mean": st.column_config.NumberColumn("vs members' mean", format="%+.4f"),
        "weights_mb": st.column_config.NumberColumn("weights MB", format="%.1f"),
        "p50_ms": st.column_config.NumberColumn("p50 ms", format="%.1f", help="one text"),
        "speed_vs_member": st.column_config.NumberColumn("texts/s vs a member", format="%.2fx",
                                                         help="an ensemble costs the sum of its members"),
    })
completed = [r for r in picked if (shown.loc[shown["run"] == r, "state"] == "completed").any()]
if allowed(user, Action.DERIVE) and completed:
    with st.expander(f"Fuse the {len(completed)} ticked completed run(s) into one model", icon=":material/merge:"):
        method = st.selectbox("Method", list(fuse.METHODS), key="cmp_fuse_method", help=" ".join(
            f"{name}: {m.help}" for name, m in fuse.METHODS.items()))
        specs = field_specs(fuse.METHODS[method].options)
        for spec in specs:
            field_widget(spec, method, st, widget_key=f"cmp_fuse_{method}_{spec['name']}")
        if st.button("Fuse", type="primary", icon=":material/merge:", key="cmp_fuse"):
            options = {s["name"]: st.session_state[f"cmp_fuse_{method}_{s['name']}"] for s in specs}
            try:
                made = actions.fuse(user, completed, root, method, options)
            except (ValueError, PermissionError) as exc:  # members that can't be fused, a limit: said, nothing queued
                st.error(md_literal(str(exc)), icon=":material/block:")  # it may quote run names and labels
            else:
                st.success(f"Queued the {method} of {len(completed)} runs as `{made}`; it appears in the table above "
                           "when the worker has made it (tick it to see it beside its members).")
                st.page_link("app_pages/training.py", label="Follow it", icon=":material/monitoring:", query_params={"run": made})
