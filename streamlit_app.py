"""Tuneboard dashboard router: page config, navigation, and the sidebar run picker bound to ``?run=<id>``.

Deep links: ``?run=<id>`` selects a run on any page; ``?run=<id>&page=evaluation`` opens that
run's report; ``/sweeps?sweep=<name>`` (or ``?page=sweeps&sweep=<name>``) opens a sweep. The app never
trains: pages submit jobs and start sweeps (core.actions) and read run and sweep directories.

Pages: Data, Strategy (with the sweep builder), Training, Evaluation, Compare, Sweeps, Deploy; a viewer's
navigation has no Data and Strategy.

The pages live in ``app_pages/``, not ``pages/``: with a ``pages/`` folder beside the entrypoint,
Streamlit 1.67 runs a server's first sessions in the legacy multipage mode (PagesManager.uses_pages_directory),
so a deep link such as ``/evaluation?run=...`` opened right after a start would bypass this router.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import streamlit as st  # noqa: E402

from core import runs, serving  # noqa: E402
from core.access import Action, allowed  # noqa: E402
from ui.app_state import current_run_id, current_user, logged_out, restore_draft, runs_root, save_draft, select_run  # noqa: E402
from ui.html import md_literal  # noqa: E402
from ui.runview import short_label  # noqa: E402
from ui.widgets import keep_draft  # noqa: E402

st.set_page_config(page_title="Tuneboard", page_icon=":material/tune:", layout="wide")
if not serving.shared() and not serving.is_loopback(st.get_option("server.address")):
    st.error(f"This dashboard has no login, and it listens on {st.get_option('server.address') or 'every interface'}: "
             "anyone who can reach this machine could train, delete runs and read its files. Run `make run` to keep it "
             "on this machine, or `make share` to share it behind a login (README: Share with your team).",
             icon=":material/lock:")
    st.stop()
user = current_user()

PAGES = {
    "data": st.Page("app_pages/data.py", title="Data", icon=":material/table_view:", url_path="data", default=True),
    "strategy": st.Page("app_pages/strategy.py", title="Strategy", icon=":material/tune:", url_path="strategy"),
    "training": st.Page("app_pages/training.py", title="Training", icon=":material/monitoring:", url_path="training"),
    "evaluation": st.Page("app_pages/evaluation.py", title="Evaluation", icon=":material/fact_check:", url_path="evaluation"),
    "compare": st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
    "sweeps": st.Page("app_pages/sweep.py", title="Sweeps", icon=":material/travel_explore:", url_path="sweeps"),
    "deploy": st.Page("app_pages/deploy.py", title="Deploy", icon=":material/rocket_launch:", url_path="deploy"),
}

# Preparing and launching runs is an operator's: a viewer's navigation has no Data and Strategy pages
# (and the pages refuse a viewer themselves, through core.actions).
PREPARE = ("data", "strategy")
shown = {k: p for k, p in PAGES.items() if k not in PREPARE or allowed(user, Action.TRAIN)}
page = st.navigation(list(shown.values()))
restore_draft()  # a refresh, a second tab on the same link or a server restart: the draft comes back from the server
keep_draft()

target = st.query_params.get("page")
if target:
    kept = {k: st.query_params[k] for k in ("run", "sweep") if st.query_params.get(k)}
    if target in shown and shown[target].url_path != page.url_path:
        st.switch_page(shown[target], query_params=kept or None)
    del st.query_params["page"]  # already there, or an unknown page name: drop it

with st.sidebar:
    st.markdown("### Tuneboard")
    root = runs_root()
    summaries = runs.list_runs(root)
    ids = [s.run_id for s in summaries]
    by_id = {s.run_id: s for s in summaries}
    selected = current_run_id()
    options = ids if selected in ids or not selected else [selected, *ids]

    def label(run_id: str) -> str:
        s = by_id.get(run_id)
        # no state here: the sidebar is not redrawn by the live view, so it would go stale
        return f"{run_id} (not found)" if s is None else short_label(run_id, s.name)

    if options:
        # No run picked (a fresh start, or the shown run was just deleted): say so, don't pick the next one.
        picked = st.selectbox("Run", options, index=options.index(selected) if selected in options else None,
                              format_func=label, placeholder="Choose a run",
                              help="The run the Training and Evaluation pages show; also in the URL as ?run=")
        if picked is not None and picked != selected:
            select_run(picked)
            selected = picked
    else:
        st.caption("No runs yet.")
    if allowed(user, Action.READ_SERVER_PATH):  # the server's own paths are an admin's to see
        st.caption(f"Runs folder: `{root}`")
    if serving.shared():
        st.caption(f"Logged in as **{md_literal(user.name)}** ({user.role})")
        if st.button("Log out", icon=":material/logout:", key="logout"):
            logged_out(user)

try:
    page.run()
finally:  # also after st.stop() and st.switch_page(), which end a page early by raising
    save_draft()
