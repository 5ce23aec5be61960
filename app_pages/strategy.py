"""Strategy: the model, the fine-tuning strategy and its options, hyper-parameters; pre-flight; launch."""

from __future__ import annotations

import json
import math

import pandas as pd
import streamlit as st
import yaml

from core import actions, sweep
from core.access import AccessDenied, Action
from core.config import STRATEGY_KINDS, ConfigError, ModelConfig, RunConfig, TrainConfig, field_specs, from_dict
from core.jobs import JobError
from core.serving import PathRefused
from core.uploads import display_name
from ui import charts
from ui.app_state import current_user, require, runs_root, seed, select_run, select_sweep
from ui.forms import (
    MODEL_SOURCES,
    STRATEGY_HELP,
    cli_command,
    form_state,
    key,
    number_bounds,
    strategy_fields,
    train_fields,
    values_to_config,
    with_strategy,
    yaml_for_download,
)
from ui.html import md_literal
from ui.preflight import model_facts, strategy_table
from ui.runview import fmt_duration
from ui.sweep_view import (
    DEFAULT_TRIALS,
    FIELDS_KEY,
    YAML_KEY,
    builder_space,
    check_space,
    choices_key,
    default_range,
    high_key,
    log_key,
    low_key,
    objective,
    proposed_name,
    search_notes,
    searchable_fields,
    space_from_text,
    space_yaml,
    sweep_command,
    taken_names,
)
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
    st.session_state.update(form_state(config))  # the data source goes to the Data page through pending_data_source
    st.session_state.pop("yaml_error", None)


st.title("Strategy")
if loaded := st.session_state.pop("sweep_loaded", None):  # "Use these settings" on the Sweeps page
    st.toast(md_literal(loaded), icon=":material/input:")  # a toast: an element here would shift (and close) expanders below
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
    origin = st.radio("Source", MODEL_SOURCES, horizontal=True, key="model_source")
    if origin == MODEL_SOURCES[0]:
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
    except (AccessDenied, actions.LimitReached, JobError, PathRefused) as exc:
        st.error(md_literal(str(exc)), icon=":material/block:")
    else:
        select_run(first)
        st.switch_page("app_pages/training.py", query_params={"run": first})
c2.caption("The run trains in a separate process: you can close the tab, refresh or open a second one.")

# --- sweep ---------------------------------------------------------------------------------------------
def start_yaml() -> None:
    """Writing the space as YAML starts from the space built so far (unless some YAML was written before)."""
    if st.session_state.get("sweep.as_yaml") and not st.session_state.get(YAML_KEY):
        st.session_state[YAML_KEY] = st.session_state.get("sweep_built_yaml", "")


def sweep_builder(config: RunConfig) -> None:
    """The search space from the field metadata (or typed as YAML), the sweep's settings, and Start."""
    st.caption(md_literal(f"A sweep trains one run per trial: this form's settings with the fields chosen here drawn by "
                          f"Optuna's TPE sampler. It keeps the trial with the best {objective(config)}; trials that fall "
                          "behind at an evaluation are pruned (stopped early). The test split is read once, for that "
                          "trial only."))
    as_yaml = st.toggle("Write the space as YAML", key="sweep.as_yaml", on_change=start_yaml,
                        help="Type or paste a search space (a space.yaml of python -m core sweep); it is checked against "
                             "the same field metadata as the builder's inputs.")
    if as_yaml:
        st.text_area("Search space (YAML)", key=YAML_KEY, height=180,
                     placeholder="train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}\nstrategy.kind: [full, lora]")
        raw, space_error = space_from_text(st.session_state.get(YAML_KEY) or "")
    else:
        kinds_key = choices_key("strategy.kind")
        chosen = st.session_state.get(FIELDS_KEY) or []
        # A strategy's own options are offered for the strategies the sweep may draw (the kinds picked last run).
        kinds = (st.session_state.get(kinds_key) or [kind]) if "strategy.kind" in chosen else [kind]
        offered = searchable_fields(task, kinds)
        seed(FIELDS_KEY, ["train.learning_rate"])
        st.session_state[FIELDS_KEY] = [k for k in st.session_state[FIELDS_KEY] if k in offered]  # options of kinds no longer picked
        fields = st.multiselect("Fields to search", list(offered), key=FIELDS_KEY, placeholder="choose the settings to search",
                                help="Number fields get a range (within the field's own bounds), fields with choices a list; "
                                     "pick strategy.kind to search strategies, and their own options are offered here too.")
        for field_key in fields:
            f = offered[field_key]
            section, _, field_name = field_key.partition(".")
            current = getattr(getattr(config, section), field_name)
            label, *inputs = st.columns([2, 1, 1, 1] if f.kind != "choice" else [2, 3], vertical_alignment="bottom")
            label.markdown(f"**{md_literal(field_key)}**", help=f.spec.get("help"))
            if f.kind == "choice":
                options = list(f.spec["choices"])
                seed(choices_key(field_key), [current] if current in options else options[:1])
                st.session_state[choices_key(field_key)] = [c for c in st.session_state[choices_key(field_key)] if c in options]
                inputs[0].multiselect("choices", options, key=choices_key(field_key), label_visibility="collapsed",
                                      placeholder="choose at least one")
                continue
            low, high, log = default_range(f, current)
            cast = int if f.kind == "int" else float
            seed(low_key(field_key), cast(low))
            seed(high_key(field_key), cast(high))
            bounds = {k: v for k, v in number_bounds(f.spec).items() if k in ("min_value", "max_value", "format", "step")}
            if f.kind == "int":
                bounds = {k: int(v) for k, v in bounds.items() if k in ("min_value", "max_value")} | {"step": 1}
            inputs[0].number_input("low", key=low_key(field_key), **bounds)
            inputs[1].number_input("high", key=high_key(field_key), **bounds)
            if f.kind == "float":
                seed(log_key(field_key), log)
                inputs[2].checkbox("log scale", key=log_key(field_key), help="draw on a log scale (rates: each decade as likely)")
        raw = builder_space([offered[k] for k in fields], st.session_state)
        space_error = check_space(raw)
        st.session_state["sweep_built_yaml"] = space_yaml(raw)  # what "Write the space as YAML" starts from
        st.code(st.session_state["sweep_built_yaml"], language="yaml")
    s1, s2, s3, s4 = st.columns(4)
    seed("sweep.trials", DEFAULT_TRIALS)
    trials = s1.number_input("Trials", min_value=1, max_value=500, step=1, key="sweep.trials",
                             help="runs in all (pruned ones count: they end early)")
    seed("sweep.workers", 1)
    workers = s2.number_input("Trials at a time", min_value=1, max_value=16, step=1, key="sweep.workers",
                              help="each trial is a queued run; the job worker trains this many at once (the queue limit "
                                   "per user applies)")
    seed("sweep.pruner", "median")
    pruner = s3.selectbox("Pruner", sweep.PRUNERS, key="sweep.pruner",
                          help="median: stop a trial whose validation value at an evaluation is below the median of earlier "
                               "trials' at that step; halving: successive halving; none: every trial runs to its end")
    proposed = proposed_name(config.name, taken_names(runs_root()))
    s4.text_input("Sweep name", key="sweep.name", placeholder=proposed, help="letters, digits, '.', '_' and '-' (a folder "
                  "under the runs folder); empty: the name shown")
    sweep_name = str(st.session_state.get("sweep.name") or "").strip() or proposed
    if space_error:  # parse_space's words: the field, and what its metadata allows
        st.error(md_literal(space_error), icon=":material/error:")
    for note in search_notes(raw, config, pruner):
        st.caption(md_literal(note))
    c1, c2 = st.columns([1, 3], vertical_alignment="center")
    if c1.button("Start sweep", type="primary", icon=":material/travel_explore:", key="sweep_start",
                 disabled=space_error is not None or preflight_problem is not None,
                 help="Fix the search space first." if space_error else "Pre-flight found a problem with these settings: fix "
                      "it first." if preflight_problem else None):
        try:
            actions.start_sweep(user, config, raw, int(trials), runs_root(), name=sweep_name, workers=int(workers), pruner=pruner)
        except (sweep.SweepError, AccessDenied, actions.LimitReached, OSError) as exc:
            st.error(md_literal(f"The sweep was not started: {exc}"), icon=":material/block:")
        else:
            select_sweep(sweep_name)
            st.switch_page("app_pages/sweep.py", query_params={"sweep": sweep_name})
    c2.caption(md_literal(f"Sweep {sweep_name}: {int(trials)} trials, {int(workers)} at a time. It runs in the background; "
                          "follow it on the Sweeps page. The same from a shell, with this form's config saved as base.yaml "
                          "(Show config) and the space above as space.yaml:"))
    st.code(sweep_command(int(trials), int(workers), pruner, sweep_name), language="bash")


# Keyed, and drawn only while open: its open state then survives reruns that add or remove elements above it (a
# pre-flight's results, a message), which closed it under the user's hands.
sweep_box = st.expander("Sweep: search these settings", icon=":material/travel_explore:", key="sweep_box", on_change="rerun")
if sweep_box.open:
    with sweep_box:
        sweep_builder(config)

with st.expander("Show config"):
    text = yaml_for_download(config, runs_root())
    st.code(text, language="yaml")
    st.code(cli_command(config), language="bash")
    st.download_button("Download run.yaml", text, file_name="run.yaml", mime="application/x-yaml", icon=":material/download:")
