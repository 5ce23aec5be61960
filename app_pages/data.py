"""Data: pick a bundled sample, an upload or a path; map columns; see what training will get."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core import actions
from core.access import AccessDenied, Action, allowed
from core.config import TASKS, ConfigError, DataConfig, ModelConfig
from core.data import DataError, data_checks, detect_columns, fixed_layout, list_samples, load_bundle, read_source
from core.serving import PathRefused
from core.uploads import is_upload, replace_upload_paths
from ui import charts
from ui.app_state import current_user, require, runs_root, seed
from ui.forms import TASK_HELP, for_the_form, key
from ui.html import entity_colors, highlight, md_literal

PAGE_ROWS = 25
UPLOAD_TYPES = ["csv", "tsv", "txt", "json", "jsonl", "parquet", "conll"]
AUTO = "(auto-detect)"
NONE = "(none)"


@st.cache_data(show_spinner=False)
def samples() -> list[Any]:
    return list_samples()


@st.cache_data(show_spinner="Reading the file…", max_entries=8)
def table(path: str, mtime: float, task: str) -> pd.DataFrame:
    return read_source(path, task)


@st.cache_data(show_spinner="Loading, validating and splitting the data…", max_entries=8)
def bundle_and_checks(cfg_json: str, task: str, mtime: float) -> tuple[Any, dict[str, Any]]:
    bundle = load_bundle(DataConfig(**json.loads(cfg_json)), task)
    return bundle, data_checks(bundle)


@st.cache_resource(show_spinner="Loading the tokenizer…", max_entries=4)
def tokenizer(model_name: str) -> Any:
    from core.models import load_tokenizer
    from ui.preflight import warm_transformers

    warm_transformers()
    return load_tokenizer(ModelConfig(name=model_name))


@st.cache_data(show_spinner="Counting tokens…", max_entries=8)
def token_lengths(cfg_json: str, task: str, mtime: float, model_name: str, limit: int = 3000) -> list[int]:
    from core.tokenize import untruncated_lengths

    bundle, _ = bundle_and_checks(cfg_json, task, mtime)
    return untruncated_lengths(bundle.train.head(limit), task, tokenizer(model_name)).tolist()


def say(exc: Exception) -> str:
    """An error message naming uploads by their own name and options by the widgets on this page."""
    return for_the_form(replace_upload_paths(str(exc), runs_root()))


def mtime_of(source: str) -> float:
    try:
        return Path(source).stat().st_mtime
    except OSError:
        return 0.0


st.title("Data")
st.caption("Choose what to train on. Every problem is reported with where it is and how to fix it.")
user = current_user()
require(user, Action.TRAIN)  # choosing training data is an operator's

sample_list = samples()
PATH_KIND = "Path on this machine"
# Reading the server's disk by path is an admin's, and only under the configured data roots.
kinds = ["Bundled sample", "Upload a file", *([PATH_KIND] if allowed(user, Action.READ_SERVER_PATH) else [])]
pending = st.session_state.pop("pending_data_source", None)
if pending:  # a YAML config loaded on the Strategy page: show its data source here
    if pending.startswith("sample:"):
        st.session_state["data_source_kind"] = kinds[0]
        st.session_state.pop("data_sample", None)  # the picker then follows cfg.data.source
    elif PATH_KIND in kinds:
        st.session_state["data_source_kind"] = PATH_KIND
        st.session_state["data_path"] = pending
    else:
        st.warning(f"The loaded config reads {pending} from the server; reading server paths needs the admin role. "
                   "Upload that file instead.", icon=":material/lock:")
if st.session_state.get("data_source_kind") not in kinds:  # a draft made by someone with more rights
    st.session_state["data_source_kind"] = kinds[0]
kind = st.radio("Source", kinds, horizontal=True, key="data_source_kind")
source: str | None = None
suggested_task = st.session_state.get(key("run", "task"), "single_label")

if kind == "Bundled sample":
    names = [s.name for s in sample_list]
    current = st.session_state.get(key("data", "source"), "sample:rotten_tomatoes").removeprefix("sample:")
    seed("data_sample", current if current in names else names[0])
    name = st.selectbox("Sample", names, key="data_sample",
                        format_func=lambda n: f"{n} — {next(s for s in sample_list if s.name == n).description}")
    info = next(s for s in sample_list if s.name == name)
    st.caption(f"{info.num_rows:,} rows · task {info.task} · labels: {', '.join(info.labels[:12])}{' …' if len(info.labels) > 12 else ''}")
    if info.note:
        st.info(info.note)
    source = f"sample:{name}"
    suggested_task = info.task
elif kind == "Upload a file":
    limit_mb = st.get_option("server.maxUploadSize")
    upload = st.file_uploader("Data file", type=UPLOAD_TYPES, key="data_upload",
                              help="CSV/TSV/JSON/JSONL/Parquet, or CoNLL (word and tag per line) for NER.")
    st.caption(f"Up to {limit_mb} MB per file; a larger file is refused (give its path instead, or raise "
               "server.maxUploadSize in .streamlit/config.toml).")
    if upload is not None:
        source = str(actions.save_upload(user, runs_root(), upload.name, upload.getvalue()))
        st.session_state["data_upload_path"] = source
    elif st.session_state.get("data_upload_path") and Path(st.session_state["data_upload_path"]).exists():
        # After a refresh the uploader is empty (a browser can't be handed a file back), but the
        # server kept the file: go on with it rather than silently fall back to a sample.
        source = st.session_state["data_upload_path"]
        st.caption(f"Using **{md_literal(Path(source).name)}**, uploaded earlier. Upload another file to replace it.")
else:
    path_text = st.text_input("File or folder", key="data_path", placeholder="/data/reviews.csv or a folder of <label>/*.txt")
    if path_text.strip():
        try:
            source = str(actions.read_server_path(user, path_text.strip()))
        except (AccessDenied, PathRefused) as exc:
            st.error(str(exc), icon=":material/block:")
            st.stop()

if source is None:
    st.info("Choose a sample, upload a file or give a path to continue.")
    st.stop()

seed("data_task", suggested_task if suggested_task in TASKS else TASKS[0])
task = st.selectbox("Task", TASKS,
                    format_func=lambda t: f"{t} — {TASK_HELP[t]}", key="data_task")

# --- column mapping (files only: samples come in the canonical layout) ------------------------------------
columns: dict[str, str | None] = {"text_column": None, "text_pair_column": None, "label_column": None}
detect_problem: str | None = None
if not source.startswith("sample:"):
    try:
        raw = table(source, mtime_of(source), task)
        if is_upload(source, runs_root()):
            actions.check_upload_rows(Path(source).name, len(raw))
    except DataError as exc:
        st.error(say(exc), icon=":material/error:")
        st.stop()
    except actions.LimitReached as exc:
        st.error(md_literal(exc), icon=":material/block:")
        st.stop()
    except Exception as exc:  # noqa: BLE001 - an unreadable file is a message on this page, never a traceback
        st.error(f"{md_literal(Path(source).name)} could not be read ({type(exc).__name__}: {exc}). "
                 "Fix: save it as UTF-8 CSV with a header row.")
        st.stop()
if not source.startswith("sample:") and fixed_layout(source):
    st.caption("A CoNLL file (one word and its tag per line, a blank line between sentences) or a folder of "
               "<label>/*.txt: the columns are fixed.")
elif not source.startswith("sample:"):
    try:
        detected = detect_columns(raw, task)
    except DataError as exc:
        detect_problem = say(exc)  # shown once, below, if the pickers don't resolve it
        detected = {"text": None, "text_pair": None, "label": None}
    names = [str(c) for c in raw.columns]
    st.markdown("**Columns** (auto-detected; change them if they are wrong)")
    c1, c2, c3 = st.columns(3)
    for widget in (f"col_text_{task}", f"col_pair_{task}", f"col_label_{task}"):  # a draft from another file
        if st.session_state.get(widget) not in (None, AUTO, NONE, *names):
            del st.session_state[widget]
    seed(f"col_text_{task}", str(detected["text"]) if str(detected["text"]) in names else AUTO)
    seed(f"col_pair_{task}", str(detected["text_pair"]) if str(detected["text_pair"]) in names else NONE)
    seed(f"col_label_{task}", str(detected["label"]) if str(detected["label"]) in names else AUTO)
    pick_text = c1.selectbox("Text" if task != "token" else "Tokens", [AUTO, *names], key=f"col_text_{task}")
    pick_pair = c2.selectbox("Second text", [NONE, *names], key=f"col_pair_{task}", disabled=task not in ("pair", "regression"))
    pick_label = c3.selectbox("Label" if task != "token" else "Tags", [AUTO, *names], key=f"col_label_{task}")
    columns = {"text_column": None if pick_text == AUTO else pick_text,
               "text_pair_column": None if pick_pair == NONE else pick_pair,
               "label_column": None if pick_label == AUTO else pick_label}

with st.expander("Splits and subset"):
    s1, s2, s3, s4 = st.columns(4)
    validation_split = s1.number_input("validation share", 0.0, 0.5, float(st.session_state.get(key("data", "validation_split"), 0.1)),
                                       0.05, help=DataConfig.__dataclass_fields__["validation_split"].metadata["help"])
    test_split = s2.number_input("test share", 0.0, 0.5, float(st.session_state.get(key("data", "test_split"), 0.1)), 0.05,
                                 help=DataConfig.__dataclass_fields__["test_split"].metadata["help"])
    max_train = s3.number_input("max training rows", 1, None, st.session_state.get(key("data", "max_train_samples")), 100,
                                placeholder="all", help=DataConfig.__dataclass_fields__["max_train_samples"].metadata["help"])
    max_eval = s4.number_input("max validation/test rows", 1, None, st.session_state.get(key("data", "max_eval_samples")), 100,
                               placeholder="all", help=DataConfig.__dataclass_fields__["max_eval_samples"].metadata["help"])
    drop_duplicates = False
    if not source.startswith("sample:"):  # the samples come deduplicated
        seed("data_drop_duplicates", bool(st.session_state.get(key("data", "drop_duplicates"), False)))
        drop_duplicates = st.checkbox("drop repeated texts", key="data_drop_duplicates",
                                      help=DataConfig.__dataclass_fields__["drop_duplicates"].metadata["help"])

try:
    data_cfg = DataConfig(source=source, validation_split=validation_split, test_split=test_split, max_train_samples=max_train,
                          max_eval_samples=max_eval, drop_duplicates=drop_duplicates, **columns)
except ConfigError as exc:
    st.error(str(exc))
    st.stop()
cfg_json = json.dumps(dataclasses.asdict(data_cfg), sort_keys=True)
try:
    bundle, checks = bundle_and_checks(cfg_json, task, mtime_of(source))
except DataError as exc:
    st.error(say(exc) if detect_problem is None or columns != {k: None for k in columns} else detect_problem,
             icon=":material/error:")
    st.stop()
except Exception as exc:  # noqa: BLE001
    st.error(f"The data could not be loaded ({type(exc).__name__}: {say(exc)}).")
    st.stop()

# The draft the Strategy page starts from: plain values, no objects.
for name, value in dataclasses.asdict(data_cfg).items():
    st.session_state[key("data", name)] = value
st.session_state[key("run", "task")] = task

# --- what training will get --------------------------------------------------------------------------
sizes = bundle.sizes()
m = st.columns(4)
m[0].metric("train", f"{sizes['train']:,}", border=True)
m[1].metric("validation", f"{sizes['validation']:,}", border=True)
m[2].metric("test", f"{sizes['test']:,}", border=True)
label_count = len(bundle.labels.entity_types if task == "token" else bundle.labels.names)
m[3].metric("labels" if task != "token" else "entity types", f"{label_count:,}", border=True)
for warning in bundle.warnings:
    st.warning(warning, icon=":material/warning:")
st.page_link("app_pages/strategy.py", label="Next: choose the model and strategy", icon=":material/arrow_forward:")

tabs = st.tabs(["Preview", "Labels", "Token lengths", "Duplicates & leakage", *(["Entities"] if task == "token" else [])])
with tabs[0]:
    split = st.radio("Split", ["train", "validation", "test"], horizontal=True, key="preview_split")
    frame = getattr(bundle, split)
    pages = max(1, -(-len(frame) // PAGE_ROWS))
    page_no = st.number_input(f"Page (of {pages:,})", 1, pages, 1, key=f"preview_page_{split}")
    st.dataframe(frame.iloc[(page_no - 1) * PAGE_ROWS: page_no * PAGE_ROWS], width="stretch")
with tabs[1]:
    distribution = checks["label_distribution"]
    if task == "regression":
        st.dataframe(pd.DataFrame(distribution).T)
    else:
        st.plotly_chart(charts.distribution_figure(distribution, title="Entities per type" if task == "token" else "Labels per split"))
with tabs[2]:
    model_name = st.session_state.get(key("model", "name"), "bundled:minilm-l6")
    max_length = int(st.session_state.get(key("model", "max_length"), 128))
    st.caption(f"Tokenized with **{model_name}** (change the model on the Strategy page); max_length {max_length}.")
    try:
        lengths = token_lengths(cfg_json, task, mtime_of(source), model_name)
    except Exception as exc:  # noqa: BLE001 - a model that can't load is explained, not raised
        st.error(str(exc))
    else:
        from core.tokenize import token_stats

        stats = token_stats(lengths, max_length, truncated=False)
        st.metric("truncated at max_length", f"{stats.get('truncated_share', 0.0):.1%}", help=f"of {len(lengths):,} training examples")
        st.plotly_chart(charts.token_length_figure(lengths, max_length, stats.get("truncated_share", 0.0)))
with tabs[3]:
    d1, d2, d3 = st.columns(3)
    d1.metric("duplicate training texts", f"{checks['duplicates']['count']:,}")
    d2.metric("validation texts also in train", f"{checks['overlap']['validation']['count']:,}")
    d3.metric("test texts also in train", f"{checks['overlap']['test']['count']:,}")
    if checks["conflicting_labels"]["count"]:
        st.warning(f"{checks['conflicting_labels']['count']} training texts appear with different labels.")
        st.dataframe(pd.DataFrame(checks["conflicting_labels"]["examples"]), hide_index=True)
    for split in ("validation", "test"):
        if checks["overlap"][split]["examples"]:
            st.markdown(f"**Leakage into {split}** (examples)")
            st.dataframe(pd.DataFrame(checks["overlap"][split]["examples"]), hide_index=True)
    if checks["duplicates"]["examples"]:
        st.markdown("**Duplicates in train** (examples)")
        st.dataframe(pd.DataFrame(checks["duplicates"]["examples"]), hide_index=True)
    repeated = (checks["duplicates"]["count"] + checks["overlap"]["validation"]["count"] + checks["overlap"]["test"]["count"]
                + checks["conflicting_labels"]["count"])
    if not repeated:
        st.success("No duplicates and no overlap between train and the evaluation splits.")
    elif not source.startswith("sample:") and not drop_duplicates:
        def drop_them() -> None:
            st.session_state["data_drop_duplicates"] = True

        st.button(f"Drop them: keep one row per text before splitting ({repeated:,} repeated or leaked rows found)",
                  icon=":material/cleaning_services:", on_click=drop_them, key="drop_duplicates_offer",
                  help="The same as ticking 'drop repeated texts' under Splits and subset; the file itself is not changed.")
if task == "token":
    with tabs[4]:
        colors = entity_colors(bundle.labels.entity_types)
        joiner = "" if any(s.language == "zh" for s in sample_list if f"sample:{s.name}" == source) else " "
        for _, row in bundle.train.head(8).iterrows():
            st.markdown(highlight(list(row["tokens"]), list(row["tags"]), colors, joiner=joiner), unsafe_allow_html=True)
