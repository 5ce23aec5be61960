"""Strategy: the model, the fine-tuning strategy and its options, hyper-parameters; pre-flight; launch."""

from __future__ import annotations

import json
import math

import pandas as pd
import streamlit as st
import yaml

from core import actions
from core.access import AccessDenied, Action
from core.config import STRATEGY_KINDS, ConfigError, ModelConfig, TrainConfig, field_specs, from_dict
from core.jobs import JobError
from core.uploads import display_name
from ui import charts
from ui.app_state import current_user, require, runs_root, select_run
from ui.forms import (
    STRATEGY_HELP,
    cli_command,
    config_to_values,
    key,
    strategy_fields,
    train_fields,
    values_to_config,
    with_strategy,
    yaml_for_download,
)
from ui.html import md_literal
from ui.preflight import model_facts, strategy_table
from ui.runview import fmt_duration
from ui.widgets import draft_values, field_widget

BUNDLED = ["bundled:minilm-l6"]
user = current_user()
require(user, Action.TRAIN)  # pre-flight and launch: an operator's (a viewer is told so here)


def default_run_name(source: str) -> str:
    stem = source.removeprefix("sample:").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in stem)[:40] or "run"


@st.cache_data(show_spinner="Reading the model's config…", max_entries=16)
def facts(name: str, num_layers: int | None) -> dict:
    return model_facts(name, num_layers)


@st.cache_data(show_spinner="Pre-flight: building the model and timing a few steps of the training loop (in a separate process)…",
               max_entries=16)
def preflight(config_json: str) -> dict:
    from core.preflight import preflight_in_subprocess

    return preflight_in_subprocess(from_dict(json.loads(config_json)))


@st.cache_data(show_spinner="Pre-flight of every strategy on these data and settings (in a separate process)…", max_entries=8)
def preflight_every_strategy(config_json: str) -> list[dict]:
    from core.preflight import preflight_in_subprocess

    return preflight_in_subprocess(from_dict(json.loads(config_json)), every_strategy=True)


def propose_learning_rate() -> None:
    """On a change of strategy: propose that strategy's usual learning rate, unless the user typed their own."""
    from core.strategy_registry import spec

    kind = st.session_state[key("strategy", "kind")]
    lr_key = key("train", "learning_rate")
    usual = spec(kind).form_learning_rate
    current = st.session_state.get(lr_key)
    proposed_before = st.session_state.get("lr_proposed", TrainConfig().learning_rate)
    if current is None or math.isclose(float(current), float(proposed_before)):  # not typed by the user
        st.session_state[lr_key] = float(usual)
        st.session_state["lr_proposed"] = float(usual)
        st.session_state["lr_note"] = f"Learning rate set to {usual:g}, the usual rate for {kind}; type your own to keep it."
    else:
        st.session_state["lr_note"] = f"Kept your learning rate {float(current):g} (the usual rate for {kind} is {usual:g})."


def load_yaml_into_form() -> None:
    upload = st.session_state.get("yaml_upload")
    if upload is None:
        return
    try:
        config = from_dict(yaml.safe_load(upload.getvalue().decode("utf-8")) or {})
    except (ConfigError, yaml.YAMLError, UnicodeDecodeError) as exc:
        st.session_state["yaml_error"] = f"{upload.name}: {exc}"
        return
    st.session_state.update(config_to_values(config))
    st.session_state["model_source"] = "Bundled" if config.model.name.startswith("bundled:") else "Local folder or hub id"
    # The Data page's source widgets aren't drawn here, so Streamlit would forget values set for them
    # now: hand the source over in a plain key that the Data page applies before drawing them.
    st.session_state["pending_data_source"] = config.data.source
    st.session_state.pop("yaml_error", None)


st.title("Strategy")
values = draft_values()
task = values[key("run", "task")]
source = values[key("data", "source")]
st.caption(f"Data: **{md_literal(display_name(source, runs_root()))}** · task **{task}** (change them on the Data page)")

with st.sidebar.expander("Load a saved YAML config"):
    st.file_uploader("run.yaml", type=["yaml", "yml", "json"], key="yaml_upload", on_change=load_yaml_into_form)
    if st.session_state.get("yaml_error"):
        st.error(st.session_state["yaml_error"])

# --- model ------------------------------------------------------------------------------------------
st.subheader("Model")
left, right = st.columns([3, 2])
with left:
    origin = st.radio("Source", ["Bundled", "Local folder or hub id"], horizontal=True, key="model_source")
    if origin == "Bundled":
        if st.session_state.get(key("model", "name")) not in BUNDLED:
            st.session_state[key("model", "name")] = BUNDLED[0]
        st.selectbox("Model", BUNDLED, key=key("model", "name"), help="all-MiniLM-L6-v2, shipped with Tuneboard (works offline)")
    else:
        field_widget(next(s for s in field_specs(ModelConfig) if s["name"] == "name"), "model")
    c1, c2 = st.columns(2)
    for spec, col in zip([s for s in field_specs(ModelConfig) if s["name"] != "name"], (c1, c2), strict=True):
        field_widget(spec, "model", col)
with right:
    name = st.session_state[key("model", "name")]
    try:
        shown = facts(name, st.session_state.get(key("model", "num_layers")))
        rows = "\n".join(f"| {k} | {f'{v:,}' if isinstance(v, int) else v} |" for k, v in shown.items())
        st.markdown(f"| model fact | |\n|---|---|\n{rows}")
    except Exception as exc:  # noqa: BLE001 - ModelError and friends: the message says what to do
        st.error(str(exc))

# --- strategy -----------------------------------------------------------------------------------------
st.subheader("Strategy")
kind_key = key("strategy", "kind")
if st.session_state.get(kind_key) not in STRATEGY_KINDS:
    st.session_state[kind_key] = "full"
kind = st.selectbox("Fine-tuning strategy", STRATEGY_KINDS, key=kind_key, on_change=propose_learning_rate,
                    format_func=lambda k: f"{k} — {STRATEGY_HELP[k]}")
if st.session_state.get("lr_note"):
    st.caption(st.session_state["lr_note"])
options = strategy_fields(kind)
if options:
    cols = st.columns(3)
    for i, spec in enumerate(options):
        field_widget(spec, "strategy", cols[i % 3])

# --- hyper-parameters ---------------------------------------------------------------------------------
with st.expander("Hyper-parameters", expanded=True):
    if not st.session_state.get(key("run", "name")) or st.session_state.get(key("run", "name")) == "run":
        st.session_state[key("run", "name")] = default_run_name(source)
    st.text_input("Run name", key=key("run", "name"), help="letters, digits, - and _; the run id adds time and a suffix")
    cols = st.columns(4)
    for i, spec in enumerate(train_fields(task)):
        field_widget(spec, "train", cols[i % 4])

try:
    config = values_to_config(draft_values()).replace(output_dir=str(runs_root()))
    config_error = None
except ConfigError as exc:
    config, config_error = None, str(exc)
if config_error:
    st.error(config_error, icon=":material/error:")
    st.stop()

# --- pre-flight ------------------------------------------------------------------------------------------
st.subheader("Pre-flight")
config_json = json.dumps(config.to_dict(), sort_keys=True)
preflight_problem = None
if st.button("Check: trainable parameters, groups and time per epoch", icon=":material/flight_takeoff:") or \
        st.session_state.get("preflight_for") == config_json:
    from core.preflight import PreflightError

    try:
        pf = preflight(config_json)
        st.session_state["preflight_for"] = config_json
    except PreflightError as exc:  # data, model and strategy errors: the CLI's message, with its fix
        preflight_problem = str(exc)
        st.session_state["preflight_for"] = config_json
        st.error(f"Pre-flight found a problem: {preflight_problem}", icon=":material/error:")
    else:
        p = st.columns(4)
        p[0].metric("trainable parameters", f"{pf['trainable_params']:,}", border=True)
        p[1].metric("trainable share", f"{pf['trainable_percent']:.2f}%", border=True)
        p[2].metric("time per epoch (estimate)", fmt_duration(pf["epoch_seconds"]), border=True,
                    help=f"{pf['seconds_per_step']:.3f} s per optimizer step of {config.train.batch_size} rows, measured on "
                         f"{pf['device']} ({pf['precision']}) over {pf['measured_steps']} steps of the training loop itself; "
                         f"{pf['steps_per_epoch']:,} optimizer steps per epoch")
        p[3].metric("total steps", f"{pf['total_steps']:,}", border=True)
        groups = pd.DataFrame(pf["groups"])
        if kind in ("llrd", "discriminative") or groups["lr"].nunique() > 1:
            st.plotly_chart(charts.param_groups_figure(pf["groups"]))
        number = st.column_config.NumberColumn
        st.dataframe(groups, hide_index=True, width="stretch",
                     column_config={"lr": number(format="%.2e"), "params": number(format="%d"), "weight_decay": number(format="%.3g")})
        for note in pf.get("notes", []):
            st.caption(note)

if st.button("Compare every strategy: trainable parameters and time per epoch", icon=":material/table_chart:",
             key="preflight_all") or st.session_state.get("preflight_all_for") == config_json:
    from core.preflight import PreflightError

    st.session_state["preflight_all_for"] = config_json
    try:
        table = strategy_table(preflight_every_strategy(config_json))
    except PreflightError as exc:
        st.error(f"Pre-flight found a problem: {exc}", icon=":material/error:")
    else:
        number = st.column_config.NumberColumn
        st.dataframe(table, hide_index=True, width="stretch", key="preflight_all_table",
                     column_config={"trainable parameters": number(format="localized"),
                                    "trainable share %": number(format="%.3f"), "learning rate": number(format="%.0e"),
                                    "note": st.column_config.TextColumn(width="large")})
        st.caption(f"Each strategy on this model and these data and settings, at the learning rate a comparison gives it (yours for "
                   f"{kind}); the time is measured on a few steps of the training loop itself.")

# --- launch --------------------------------------------------------------------------------------------
st.subheader("Launch")
compare = st.multiselect("Also queue these strategies with the same data and settings (a comparison)",
                         [k for k in STRATEGY_KINDS if k != kind], key="compare_kinds")
label = "Start training" if not compare else f"Queue {1 + len(compare)} runs"
c1, c2 = st.columns([1, 3])
if c1.button(label, type="primary", icon=":material/play_arrow:", key="start", disabled=preflight_problem is not None,
             help="Pre-flight found a problem with these settings: fix it first." if preflight_problem else None):
    try:
        first, *_ = actions.submit(user, [config, *(with_strategy(config, other) for other in compare)], runs_root())
    except (AccessDenied, actions.LimitReached, JobError) as exc:
        st.error(str(exc), icon=":material/block:")
    else:
        select_run(first)
        st.switch_page("app_pages/training.py", query_params={"run": first})
c2.caption("The run trains in a separate process: you can close the tab, refresh or open a second one.")

with st.expander("Show config"):
    text = yaml_for_download(config, runs_root())
    st.code(text, language="yaml")
    st.code(cli_command(config), language="bash")
    st.download_button("Download run.yaml", text, file_name="run.yaml", mime="application/x-yaml", icon=":material/download:")
