"""The little state the dashboard keeps: the runs root, the selected run id (``?run=<id>``) and sweep (``?sweep=<name>``).

Session state holds ids and small drafts only; everything durable is in the run directories.
This is the one ui module that imports streamlit.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

RUN_KEY = "run_id"
SWEEP_KEY = "sweep_name"
DRAFT_KEY = "draft_id"
# What a draft holds: the config form (cfg.*), the Strategy page's sweep builder (sweep.*) and the Data page's own pickers.
DRAFT_PREFIXES = ("cfg.", "sweep.", "col_")
DRAFT_KEYS = ("data_source_kind", "data_sample", "data_path", "data_task", "data_upload_path", "model_source",
              "compare_kinds", "lr_proposed", "data_drop_duplicates")


def runs_root() -> Path:
    from core.config import default_runs_root

    return Path(default_runs_root()).resolve()


def _draft_values() -> dict:
    return {k: v for k, v in st.session_state.items()
            if isinstance(k, str) and (k.startswith(DRAFT_PREFIXES) or k in DRAFT_KEYS)}


def draft_id() -> str:
    """This tab's draft: from the URL (?draft=), else this session's, else a new one; written back to the URL."""
    from core.drafts import new_draft_id, valid_id

    from_url = st.query_params.get("draft")
    if valid_id(from_url):
        st.session_state[DRAFT_KEY] = from_url
    elif not valid_id(st.session_state.get(DRAFT_KEY)):
        st.session_state[DRAFT_KEY] = new_draft_id()
    if st.query_params.get("draft") != st.session_state[DRAFT_KEY]:
        st.query_params["draft"] = st.session_state[DRAFT_KEY]
    return st.session_state[DRAFT_KEY]


def restore_draft() -> None:
    """Once per browser session: fill the form from the draft the URL names (kept on the server)."""
    from core.drafts import load_draft

    current = draft_id()
    if st.session_state.get("_draft_restored") == current:
        return
    st.session_state["_draft_restored"] = current
    for k, v in (load_draft(runs_root(), current) or {}).items():
        if k not in st.session_state:
            st.session_state[k] = v


def save_draft() -> None:
    """Store the form's values under this tab's draft id (merged into what is stored; see core.drafts)."""
    from core.drafts import save_draft as store

    if st.session_state.get(DRAFT_KEY):
        store(runs_root(), st.session_state[DRAFT_KEY], _draft_values())


def seed(widget_key: str, value: object) -> None:
    """Give a widget its first value through Session State (where a restored draft puts its values too),
    rather than with ``index=``: a widget's ``index`` is part of its identity, so changing it between
    runs would make a new widget and drop the value."""
    if st.session_state.get(widget_key) is None:
        st.session_state[widget_key] = value
def _from_url(param: str, key: str) -> str | None:
    """``?<param>=`` in the URL, else the last value picked in this session (written back to the URL, so the
    page stays reloadable and shareable)."""
    from_url = st.query_params.get(param)
    if from_url:
        st.session_state[key] = from_url
        return from_url
    remembered = st.session_state.get(key)
    if remembered:
        st.query_params[param] = remembered
    return remembered


def _select(param: str, key: str, value: str | None) -> None:
    st.session_state[key] = value
    if value:
        st.query_params[param] = value
    elif param in st.query_params:
        del st.query_params[param]


def current_run_id() -> str | None:
    """The run in the URL (``?run=``), else the last one picked in this session."""
    return _from_url("run", RUN_KEY)


def select_run(run_id: str | None) -> None:
    _select("run", RUN_KEY, run_id)


def current_sweep() -> str | None:
    """The sweep in the URL (``?sweep=``), else the last one picked in this session."""
    return _from_url("sweep", SWEEP_KEY)


def select_sweep(name: str | None) -> None:
    _select("sweep", SWEEP_KEY, name)


def show_run_problem(run_id: str | None, problem: str | None) -> None:
    """A run that can't be shown: say which and why, and point somewhere useful."""
    if not run_id:
        st.info("No run selected. Pick one in the sidebar, or start one on the **Strategy** page.")
        return
    st.error(problem or f"Run {run_id!r} can't be shown.")
    st.page_link("app_pages/training.py", label="See all runs on the Training page", icon=":material/list:")


def current_user():
    """Who is using this session. Local mode: the local user (an admin; no login on 127.0.0.1). Shared
    mode: the user of the signed session cookie, as the users file has them now (a role change applies
    at the next click); without one the page says so, links to the login, and stops."""
    from core import login, serving
    from core.access import LOCAL_USER

    if not serving.shared():
        return LOCAL_USER
    user = login.session_user(runs_root(), st.context.cookies.get(login.COOKIE))
    if user is None and st.user.is_logged_in:  # single sign-on: the role comes from users.yaml
        from core import users

        groups = st.user.get("groups")
        user = users.role_for_identity(runs_root(), st.user.get("email"), groups if isinstance(groups, list) else None)
    if user is None:
        st.warning("Your session has ended (logged out, expired, or your password or account changed).")
        st.link_button("Log in", login.LOGIN_PATH, type="primary")
        st.stop()
    return user


def logged_out(user) -> None:
    """End ``user``'s sessions everywhere (the cookie this browser holds stops working) and say so."""
    from core import actions, login

    if login.session_user(runs_root(), st.context.cookies.get(login.COOKIE)) is not None:
        actions.log_out(user, runs_root())
    elif st.user.is_logged_in:
        st.logout()  # single sign-on: Streamlit's own cookie goes (the provider's session is the provider's)
    st.success("Logged out: your sessions on every device have ended.")
    st.link_button("Log in again", login.LOGIN_PATH)
    st.stop()


def require(user, action) -> None:
    """Stop the page, saying which role it needs, unless ``user`` may do ``action`` (core.access decides)."""
    from core.access import refusal

    why = refusal(user, action)
    if why:
        st.info(why, icon=":material/lock:")
        st.page_link("app_pages/evaluation.py", label="Look at the runs' evaluations", icon=":material/fact_check:")
        st.stop()
