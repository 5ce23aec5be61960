"""Deploy: make smaller, faster variants of a finished run (compression), compare them with it on its own
test split, and download any of them. The variants are derived runs made by the job worker."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import actions, compress, deploy, runs
from core.access import Action, allowed
from core.config import ConfigError, field_specs
from ui import charts
from ui.app_state import current_run_id, current_user, runs_root, select_run
from ui.html import md_literal
from ui.runview import live_cadence, short_label
from ui.widgets import field_widget

root = runs_root()
user = current_user()
st.title("Deploy")
st.caption("A smaller, faster model from a finished run: each variant is a run of its own, evaluated on the "
           "parent's test split, with its size and speed measured beside the parent's on this machine.")

finished = [s for s in runs.list_runs(root) if s.state == "completed"]
if not finished:
    st.info("No finished run yet. Train one first: its variants are made from its saved model.")
    st.page_link("app_pages/evaluation.py", label="Evaluation", icon=":material/fact_check:")
    st.stop()
ids = [s.run_id for s in finished]
names = {s.run_id: s.name for s in finished}
selected = current_run_id()
base = st.selectbox("Run to compress", ids, index=ids.index(selected) if selected in ids else 0,
                    format_func=lambda r: short_label(r, names[r]) + (" (a variant)" if next(
                        s for s in finished if s.run_id == r).derived_method else ""),
                    help="A finished run; a variant too (distill, then int8).", key="deploy_base")
if base != selected:
    select_run(base)

# --- make variants ----------------------------------------------------------------------------------------
if allowed(user, Action.DERIVE):
    with st.form("deploy_form", border=True):
        st.markdown("**Make variants**")
        picked: dict[str, dict[str, object]] = {}
        columns = st.columns(len(compress.METHODS))
        for col, (name, method) in zip(columns, compress.METHODS.items(), strict=True):
            if col.checkbox(name, key=f"deploy_method_{name}", help=method.help):
                picked[name] = {}
            specs = field_specs(method.options)
            if specs:
                with col.expander("options"):
                    for spec in specs:
                        field_widget(spec, name, st, widget_key=f"deploy_opt_{name}_{spec['name']}")
        launch = st.form_submit_button("Make the ticked variants", type="primary", icon=":material/compress:")
    if launch:
        chosen = {name: {spec["name"]: st.session_state[f"deploy_opt_{name}_{spec['name']}"]
                         for spec in field_specs(compress.METHODS[name].options)} for name in picked}
        if not chosen:
            st.warning("Tick at least one method.")
        else:
            try:
                made = actions.derive(user, base, root, chosen)
            except (ValueError, PermissionError) as exc:  # a refusal, a bad option, a limit: said, nothing queued
                st.error(md_literal(str(exc) if not isinstance(exc, ConfigError) else f"Option {exc}"), icon=":material/block:")
            else:
                st.success(f"Queued {len(made)} variant(s): " + ", ".join(f"`{r}`" for r in made)
                           + ". The worker makes them one after another; this table fills in as each finishes.")
else:
    st.caption("Viewing only: making variants needs the operator role.")

# --- the variants ------------------------------------------------------------------------------------
rows = deploy.variants(root, base)
if len(rows) == 1:
    st.info("No variants of this run yet." + (" Tick a method above and make one." if allowed(user, Action.DERIVE) else ""))
COLUMNS = ["method", "state", "value", "change", "weights_mb", "p50_ms", "p95_ms", "batch32_texts_per_s", "speedup",
           "frontier", "run_id"]
NUMBERS = ["value", "change", "weights_mb", "p50_ms", "p95_ms", "batch32_texts_per_s", "speedup"]


POLLING = any(r["state"] in ("queued", "running") for r in rows)


# Redrawn while a variant is queued or being made (the Training page's status cadence): the table, the chart and
# the download follow it.
@st.fragment(run_every=live_cadence()[0] if POLLING else None)
def variants_view() -> None:
    current = deploy.variants(root, base)
    if POLLING and not any(r["state"] in ("queued", "running") for r in current):
        st.rerun()  # all made: one whole-page run redraws it without the timer (which would close an open dropdown)
    metric = current[0].get("metric") or "metric"
    table = pd.DataFrame(current).reindex(columns=COLUMNS)
    table[NUMBERS] = table[NUMBERS].apply(pd.to_numeric)  # a variant still being made: blank, not "None"
    st.dataframe(table, hide_index=True, width="stretch", key="deploy_table", column_config={
        "method": st.column_config.TextColumn("variant", width="medium"),
        "value": st.column_config.NumberColumn(metric, format="%.4f", help="on the parent's test split"),
        "change": st.column_config.NumberColumn("change", format="%+.4f", help=f"{metric} minus the original run's"),
        "weights_mb": st.column_config.NumberColumn("weights MB", format="%.1f"),
        "p50_ms": st.column_config.NumberColumn("p50 ms", format="%.1f", help="one text, tokenization included"),
        "p95_ms": st.column_config.NumberColumn("p95 ms", format="%.1f"),
        "batch32_texts_per_s": st.column_config.NumberColumn("texts/s (batch 32)", format="%.0f"),
        "speedup": st.column_config.NumberColumn("speed-up", format="%.2fx",
                                                 help="texts/s in batches of 32, against the parent measured beside it"),
        "frontier": st.column_config.CheckboxColumn("frontier", help="no other variant is as good, as small and as "
                                                    "fast and better in one of them"),
        "run_id": st.column_config.TextColumn("run"),
    })
    for r in current:
        if r["state"] == "failed":
            st.error(f"{md_literal(r['method'])} (`{r['run_id']}`) failed: {md_literal(r.get('error') or 'no reason recorded')}")
    threads = next((r["threads"] for r in current if r.get("threads")), None)
    st.caption(f"Speed on this machine's CPU{f', {threads} threads' if threads else ''} (as the worker measured it); "
               "p50/p95: one text at a time. Each variant's speed-up is measured against its parent in the same process.")

    scored = table.dropna(subset=["value", "p50_ms"])
    if len(scored) > 1:
        cost = st.radio("Cost axis", ["p50_ms", "weights_mb"], horizontal=True, key="deploy_cost",
                        format_func={"p50_ms": "latency (p50 ms)", "weights_mb": "size (weights MB)"}.get)
        st.plotly_chart(charts.quality_cost_figure(scored.rename(columns={"value": metric}), cost, metric, label="method"))

    done = [r for r in current if r["state"] == "completed"]
    pick = st.selectbox("Variant", [r["run_id"] for r in done], key="deploy_pick",
                        format_func=lambda r: next(f"{x['method']} · {r}" for x in done if x["run_id"] == r))
    if pick:
        c1, c2 = st.columns(2)
        c1.download_button("Download its model (.zip)", lambda: deploy.model_zip(root / pick), file_name=f"{pick}-model.zip",
                           mime="application/zip", icon=":material/download:", key="deploy_zip")
        c1.caption(deploy.loading_note(root / pick / runs.MODEL_DIR))
        c2.page_link("app_pages/evaluation.py", label="Open its evaluation", icon=":material/fact_check:",
                     query_params={"run": pick})
        c2.code(f"python -m core serve {pick}", language="bash")


variants_view()
