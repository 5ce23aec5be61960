"""The little state the dashboard keeps: the runs root and the selected run id (``?run=<id>``).

Session state holds ids and small drafts only; everything durable is in the run directories.
This is the one ui module that imports streamlit.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

RUN_KEY = "run_id"


def runs_root() -> Path:
    return Path(os.environ.get("TUNEBOARD_HOME", "runs")).resolve()


def current_run_id() -> str | None:
    """The run in the URL, else the last one picked in this session (written back to the URL)."""
    from_url = st.query_params.get("run")
    if from_url:
        st.session_state[RUN_KEY] = from_url
        return from_url
    remembered = st.session_state.get(RUN_KEY)
    if remembered:
        st.query_params["run"] = remembered  # keep the page reloadable and shareable
    return remembered


def select_run(run_id: str | None) -> None:
    st.session_state[RUN_KEY] = run_id
    if run_id:
        st.query_params["run"] = run_id
    elif "run" in st.query_params:
        del st.query_params["run"]


def show_run_problem(run_id: str | None, problem: str | None) -> None:
    """A run that can't be shown: say which and why, and point somewhere useful."""
    if not run_id:
        st.info("No run selected. Pick one in the sidebar, or start one on the **Strategy** page.")
        return
    st.error(problem or f"Run {run_id!r} can't be shown.")
    st.page_link("app_pages/training.py", label="See all runs on the Training page", icon=":material/list:")
