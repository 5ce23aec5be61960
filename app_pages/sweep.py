"""Sweeps: a hyper-parameter sweep's trials, its optimization history, parallel coordinates and importances,
and its best trial (with its test metrics, read once) whose settings can go back into the Strategy form."""

from __future__ import annotations

import contextlib
import time

import streamlit as st

from core import actions, sweep
from core.access import AccessDenied, Action, allowed
from core.config import ConfigError
from core.runs import RunIdError
from ui import charts
from ui.app_state import current_sweep, current_user, runs_root, select_sweep
from ui.html import md_literal
from ui.runview import live_cadence
from ui.sweep_view import (
    SweepView,
    best_run_form,
    log_tail,
    params_frame,
    pending_note,
    read_sweep,
    settings_line,
    state_counts,
    status_line,
    storage_version,
    test_metrics_frame,
    trial_label,
    trials_frame,
    value_label,
)

REFRESH_S, _ = live_cadence()  # a running sweep's trials are re-read at the Training page's status cadence
root = runs_root()
user = current_user()
st.title("Sweeps")


@st.cache_data(show_spinner=False, max_entries=8)
def cached_sweep(root_text: str, info: dict, version: tuple) -> SweepView:
    # Keyed by the journal's size and mtime: a refresh that finds no new trial reads nothing again
    # (fANOVA importances fit a forest each time).
    return read_sweep(root_text, info)


def sweep_of(info: dict) -> SweepView:
    steady = {k: v for k, v in info.items() if k != "heartbeat"}  # a heartbeat alone does not re-read the study
    return cached_sweep(str(root), steady, storage_version(info))


sweeps = sweep.list_sweeps(root)
names = [s["name"] for s in sweeps]
wanted = current_sweep()

if wanted and wanted not in names:
    note = None
    with contextlib.suppress(sweep.SweepError):  # a hand-edited ?sweep= that can't be a sweep's folder
        note = pending_note(root, sweep.check_name(wanted))
    if note is not None:  # launched from the Strategy page; its driver hasn't written sweep.json yet
        st.subheader(md_literal(wanted), anchor=False)

        def starting() -> None:
            if (root / sweep.SWEEPS_DIR / wanted / sweep.SWEEP_INFO).exists():
                st.rerun(scope="app")
            st.info("Starting the sweep: its first trials are queued in a moment.", icon=":material/hourglass_top:")
            log = pending_note(root, wanted)
            if log:
                st.code(log, language="text")

        st.fragment(starting, run_every=2)()
        st.stop()
    if names:
        st.warning(f"There is no sweep named {md_literal(wanted)} in this runs folder; showing the newest.")

if not sweeps:
    st.info("No sweeps yet. A sweep trains one run per trial, each with settings drawn from a search space, and keeps the "
            "best on the validation split. Build one on the **Strategy** page (the **Sweep: search these settings** "
            "expander), or from a shell:", icon=":material/travel_explore:")
    st.code("python -m core sweep --config base.yaml --space space.yaml --trials 12 --workers 1", language="bash")
    st.code("# space.yaml\ntrain.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}\ntrain.epochs: {low: 1, high: 3}\n"
            "strategy.kind: [full, lora]\nstrategy.lora_r: [4, 8]          # searched only when lora is drawn", language="yaml")
    if allowed(user, Action.TRAIN):
        st.page_link("app_pages/strategy.py", label="Build a sweep on the Strategy page", icon=":material/tune:")
    st.stop()

by_name = {s["name"]: s for s in sweeps}
if wanted not in by_name:
    wanted = names[0]
    select_sweep(wanted)
st.session_state["sweeps_pick"] = wanted  # the URL (a link, a launch, the picker's own change below) decides
picked = st.selectbox("Sweep", names, key="sweeps_pick", on_change=lambda: select_sweep(st.session_state["sweeps_pick"]),
                      format_func=lambda n: f"{n} (running)" if by_name[n]["running"] else n,
                      help="Newest first; also in the URL as ?sweep=")
info = by_name[picked]


def live(name: str, was_running: bool) -> None:
    """Everything that changes while the sweep runs: redrawn on the status cadence while its driver runs."""
    info = sweep.sweep_status(root, name)
    if info is None:
        st.error(f"Sweep {md_literal(name)} is gone from the runs folder.")
        return
    if info["running"] != was_running:
        st.rerun(scope="app")  # it ended (the best trial's test metrics, no refresh) or a resume started it
    view = sweep_of(info)
    counts = state_counts(view)
    st.text(status_line(view))
    st.caption(md_literal(settings_line(view)))
    if view.problem or view.result is None:
        starting = info.get("state") == "starting"
        if starting and info["running"]:
            st.info("Starting the sweep: its first trials are queued in a moment.", icon=":material/hourglass_top:")
        else:
            st.info(view.problem or "No trial yet.")
        if starting and (log := log_tail(root, name)):  # a start-up error shows here
            st.code(log, language="text")
        return
    result = view.result
    metric = value_label(result.metric)
    number = st.column_config.NumberColumn

    st.subheader("Trials", anchor=False)
    st.dataframe(trials_frame(view), hide_index=True, width="stretch", column_config={
        metric: number(metric, format="%.4f", help="a finished trial's best validation value (what the sweep optimizes); "
                                                   "a pruned or running trial's last reported one"),
        "run": st.column_config.TextColumn("run", width="medium"),
        "seconds": number(format="%.1f"),
        **{key: number(format="%.2e") for key, axis in view.axes.items() if axis.get("log")},  # rates: 3.16e-05, not 0
    })
    with_runs = {t["number"]: t for t in result.trials if t.get("run_id")}
    if with_runs:
        c1, c2, c3 = st.columns([4, 1, 1], vertical_alignment="bottom")
        chosen = c1.selectbox("Open a trial's run", list(with_runs), key="sweeps_trial",
                              format_func=lambda n: trial_label(with_runs[n], result.metric))
        run_id = with_runs[chosen]["run_id"]
        c2.page_link("app_pages/training.py", label="Training", icon=":material/monitoring:", query_params={"run": run_id})
        c3.page_link("app_pages/evaluation.py", label="Evaluation", icon=":material/fact_check:", query_params={"run": run_id})

    left, right = st.columns(2)
    maximize = result.direction == "maximize"
    with left:
        if any(charts.trial_value(t) is not None for t in result.trials):
            st.plotly_chart(charts.sweep_history_figure(result.trials, metric=result.metric, maximize=maximize,
                                                        uirevision=name), width="stretch")
        else:
            st.markdown("**Optimization history**")
            st.caption("It appears with the first validation value a trial reports.")
    with right:
        if view.importances:
            st.plotly_chart(charts.importance_figure(view.importances), width="stretch")
            st.caption("How much of the spread of the validation values each field explains (Optuna's fANOVA over the "
                       "finished trials). A guide, not a proof: with few trials it can change a lot.")
        else:
            st.markdown("**Parameter importances**")
            st.caption("They appear once two or more trials have finished with different settings and different "
                       "validation values (with all values equal there is no spread to explain): each field's share of "
                       "the spread is estimated from the finished trials (fANOVA).")
    if counts["complete"] >= 2:  # one line alone compares nothing
        st.markdown("**Parallel coordinates**")
        st.plotly_chart(charts.parallel_figure(result.trials, view.axes, metric=result.metric, maximize=maximize),
                        width="stretch")
        st.caption("One line per finished trial, coloured by its validation value (the last axis); drag along an axis to "
                   "pick a range. Choices sit at named ticks; a log-scale field is drawn as its log10, its ticks naming "
                   "the values; a strategy's option that a trial did not draw sits at \"not drawn\".")

    st.subheader("Best trial", anchor=False)
    best = result.best
    if best is None:
        st.caption("No trial has finished yet.")
        return
    best_test = result.best_test if (result.best_test or {}).get("run_id") == best.get("run_id") else None
    with st.container(border=True):
        c1, c2, c3 = st.columns([1, 1, 2])
        c1.metric(metric, f"{best['value']:.4f}", help="the best validation value of its run: what the sweep compared")
        headline = (best_test or {}).get("headline") or {}
        if isinstance(headline.get("value"), (int, float)):
            c2.metric(f"test {headline.get('name')}", f"{headline['value']:.4f}", help="read once, for this trial only")
        c1.text(f"trial {best['number']}\nrun {best['run_id']}")
        c3.dataframe(params_frame(best["params"]), hide_index=True, width="stretch")
        if best_test and best_test.get("metrics"):
            said, table = st.columns([2, 1])
            said.markdown(f"**Test split** — computed once, at the end of the sweep, for trial {best_test.get('trial')} only. "
                          "The trials were compared on validation and the test split was read for no other trial, so these "
                          "numbers estimate how the chosen settings do on new data.")
            table.dataframe(test_metrics_frame(best_test), hide_index=True, width="stretch",
                            column_config={"value": number(format="%.4f")})
        elif best_test:
            st.caption(md_literal(f"No test metrics: {best_test.get('note') or 'none were recorded'}."))
        else:
            st.caption("The test metrics are computed once, when the sweep ends, for the best trial only"
                       + (" (this one may still be overtaken)." if view.running else "; this sweep ended before that."))


def stop_or_resume(name: str, info: dict) -> None:
    """Stop a running sweep (its queued and running trials are cancelled), or resume a stopped one."""
    owner = info.get("owner")
    # Drawn only for who may press them; core.actions checks again (a stale tab, a crafted request).
    can_stop = info["running"] and allowed(user, Action.CANCEL, owner)
    can_resume = not info["running"] and allowed(user, Action.RESUME, owner) and unfinished(info)
    try:
        if can_stop and st.button("Stop the sweep", icon=":material/stop:", key="sweeps_stop",
                                  help="Ends the sweep's process and cancels its queued or running trials; Resume runs them "
                                       "again"):
            st.toast(actions.stop_sweep(user, root, name))
            st.rerun()
        if can_resume and st.button("Resume the sweep", icon=":material/play_arrow:", key="sweeps_resume", type="primary",
                                    help="Continues it in the background: finished trials are kept, interrupted ones run "
                                         "again first"):
            actions.resume_sweep(user, root, name)
            st.session_state["sweeps_resumed"] = (name, time.time())
            st.rerun()
    except (sweep.SweepError, AccessDenied, actions.LimitReached) as exc:
        st.error(md_literal(str(exc)), icon=":material/block:")


def unfinished(info: dict) -> bool:
    view = sweep_of(info)
    counts = state_counts(view)
    return counts["complete"] + counts["pruned"] < int(info.get("trials") or 0)


st.subheader(md_literal(picked), anchor=False)
stop_or_resume(picked, info)
resumed = st.session_state.get("sweeps_resumed")
# Watched while its process runs, and for a minute after a resume (its new process writes sweep.json when it starts).
watch = info["running"] or bool(resumed and resumed[0] == picked and time.time() - resumed[1] < 60)
st.fragment(live, run_every=REFRESH_S if watch else None)(picked, info["running"])

# Outside the live fragment: switching pages from a fragment's rerun is not what a fragment is for.
if allowed(user, Action.TRAIN):
    if st.button("Use these settings", icon=":material/input:", type="primary", key="sweeps_use_best",
                 help="Load the best trial's run config into the Strategy page's form, to train it again or change it"):
        try:
            best = sweep.load_sweep(root, picked).best  # read now: the best may have changed since the page was drawn
            if best is None or not best.get("run_id"):
                raise ConfigError("(top)", "no trial has finished yet")
            st.session_state.update(best_run_form(root, best["run_id"], picked))
        except (sweep.SweepError, ConfigError, RunIdError) as exc:
            st.error(md_literal(f"Can't load the best trial's settings: {exc}"), icon=":material/error:")
        else:
            st.session_state["sweep_loaded"] = f"Loaded trial {best['number']} of sweep {picked} (run {best['run_id']})."
            st.switch_page("app_pages/strategy.py")
    st.caption("Puts the best trial's whole run config (data, model, strategy and hyper-parameters) into the Strategy form.")
