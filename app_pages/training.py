"""Training: the queue of runs with cancel / resume / delete, and the live view of the selected run."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from core import actions, jobs, runs
from core.access import AccessDenied, Action, allowed
from core.diagnose import diagnose
from ui import charts
from ui.app_state import current_run_id, current_user, runs_root, select_run, show_run_problem
from ui.html import md_literal
from ui.runview import eval_frame, fmt_duration, live_cadence, load_run, progress, read_run_events, step_frame

# Seconds between status and chart redraws while a run is active (a step event is flushed the moment it
# happens): 10 s / 20 s on machines of up to 4 cores, 5 s / 10 s above (see ui.runview.live_cadence).
REFRESH_S, CHART_REFRESH_S = live_cadence()
root = runs_root()
user = current_user()
jobs.reconcile(root)  # a trainer that died while nobody watched shows as interrupted, not running forever
if jobs.list_jobs(root, ("queued",)):
    jobs.ensure_worker(root)

run_id = current_run_id()
watching = st.session_state.get("watching")
if watching and watching == run_id and load_run(root, run_id).state == "completed":
    # The user watched this run train to the end: take them to its report.
    st.session_state.pop("watching", None)
    st.switch_page("app_pages/evaluation.py", query_params={"run": run_id})

st.title("Training")

# --- the queue --------------------------------------------------------------------------------------
summaries = runs.list_runs(root)
if not summaries:
    st.info("No runs yet. Choose data on the **Data** page, then start a run on the **Strategy** page.")
    st.page_link("app_pages/data.py", label="Go to Data", icon=":material/table_view:")
    st.stop()
if deleted := st.session_state.pop("deleted_run", None):
    st.toast(f"Deleted run {deleted}.", icon=":material/delete:")


def queue(expanded: bool) -> None:
    """The runs table with live counts: redrawn on the status cadence while anything is queued or running."""
    current = runs.list_runs(root)
    positions = {j.run_id: i + 1 for i, j in enumerate(jobs.list_jobs(root, ("queued",)))}
    owners = jobs.owners(root)
    placed = jobs.placements(root)
    # Counted from the run directories: a job the worker has just claimed is "queued" there until its
    # trainer writes "running", and must not vanish from both counts in between.
    running = sum(s.state == "running" for s in current)
    queued = sum(s.state == "queued" for s in current)
    table = pd.DataFrame([{
        "run": s.run_id,
        "state": s.state + (f" (#{positions[s.run_id]} in queue)" if s.run_id in positions else ""),
        "strategy": s.strategy,
        "model": s.model,
        "by": owners.get(s.run_id, ""),
        "worker": placed.get(s.run_id, ""),
        "started": pd.Timestamp(s.created, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M"),
        "result": f"{s.headline_name} {s.headline_value:.4f}" if s.headline_value is not None else (s.error or "")[:90],
    } for s in current])
    with st.expander(f"Queue and history · {len(current)} runs · {running} running, {queued} queued", expanded=expanded):
        st.dataframe(table, hide_index=True, width="stretch")
        workers = jobs.live_workers(root)
        st.caption("Workers: " + "; ".join(
            f"{w['name']} on {w.get('host', '?')} (pid {w.get('pid')}, heartbeat "
            f"{time.time() - w.get('heartbeat', time.time()):.0f} s ago, running {len(w.get('running', []))})" for w in workers)
                   if workers else "Worker: idle (starts by itself when a run is queued)")


any_active = any(s.state in ("queued", "running") for s in summaries)
st.fragment(queue, run_every=REFRESH_S if any_active else None)(run_id is None)

if not run_id:
    show_run_problem(None, None)
    st.stop()

run = load_run(root, run_id)
if run.state in ("missing", "broken") and run.problem:
    show_run_problem(run_id, run.problem)
    if run.state == "broken" and allowed(user, Action.DELETE) and st.button("Delete this broken run", icon=":material/delete:"):
        actions.delete(user, run_id, root)
        select_run(None)
        st.rerun()
    st.stop()

# --- actions ----------------------------------------------------------------------------------------
st.subheader(f"{run.config.get('name', run_id)}")
st.caption(f"`{run_id}` · {run.config.get('model', {}).get('name')} · strategy {run.config.get('strategy', {}).get('kind')}")
cols = st.columns([1, 1, 1, 1, 3])
owner = jobs.owner_of(root, run_id)
# Drawn only for who may press them; core.actions checks again, so a stale tab is refused there.
if run.active and allowed(user, Action.CANCEL, owner) and cols[0].button("Cancel", icon=":material/stop:", key="cancel"):
    try:
        st.toast(actions.cancel(user, run_id, root))
    except (jobs.JobError, AccessDenied) as exc:
        st.error(str(exc))
    st.rerun()
if (jobs.can_resume(run.path) and allowed(user, Action.RESUME, owner)
        and cols[1].button("Resume", icon=":material/play_arrow:", key="resume", type="primary")):
    try:
        actions.resume(user, run_id, root)
        st.session_state["watching"] = run_id
    except (jobs.JobError, AccessDenied) as exc:
        st.error(str(exc))
    st.rerun()
if not run.active and allowed(user, Action.DELETE):
    with cols[2].popover("Delete", icon=":material/delete:"):
        st.write(f"Delete **{run_id}** and everything in its directory (model, checkpoints, predictions)?")
        # Keyed by the run: a confirmation is for this one run. After it the page shows no run (not the
        # next one with the confirmation still open, where one more click deleted a second run).
        if st.button("Yes, delete it", type="primary", key=f"delete_confirm_{run_id}"):
            actions.delete(user, run_id, root)
            select_run(None)
            st.session_state["deleted_run"] = run_id
            st.rerun()
if run.state == "completed":
    cols[3].page_link("app_pages/evaluation.py", label="Evaluation", icon=":material/fact_check:", query_params={"run": run_id})
if run.active:
    st.session_state["watching"] = run_id


# --- the live view ----------------------------------------------------------------------------------
# Two fragments at two rates: watching must not slow the training it watches. On 2 cores, with the
# browser on the same machine, redrawing everything every 2 s cost the trainer 14% of its speed
# (bench/polling.py: the server and the browser took ~6 CPU seconds per 20 s run); the status every
# 5 s and the charts (a Plotly figure on the server, a Plotly render in the browser) every 10 s cost
# 9.8% once the trainer got faster, every 10 s / 20 s 2.7% (live_cadence picks by core count).


def status(run_id: str, was_active: bool) -> None:
    view = load_run(root, run_id)
    if view.state == "running" and not jobs.pid_alive(view.status.get("pid")):
        jobs.reconcile(root)  # the trainer died while the worker was gone too: say so now, not at the next page load
        view = load_run(root, run_id)
    if was_active and not view.active:
        st.rerun(scope="app")  # the run ended: redraw the page without the auto-refresh (and maybe go to evaluation)
    events = read_run_events(view, st.session_state.setdefault("_events_cache", {}))
    prog = progress(events)
    state = view.state
    first_points = st.session_state.setdefault("_first_points_drawn", set())
    if state == "running" and prog.step > 0 and run_id not in first_points:
        # The first loss point shouldn't wait for the slower chart cadence: redraw the page once.
        first_points.add(run_id)
        st.rerun(scope="app")
    label = {"queued": "Waiting in the queue", "running": "Training", "completed": "Completed", "failed": "Failed",
             "cancelled": "Cancelled", "interrupted": "Interrupted", "pruned": "Pruned by its sweep"}.get(state, state)
    if state == "queued":
        pos = jobs.queue_position(root, run_id)
        st.info(f"⏳ Queued{f' (position {pos})' if pos else ''}: it starts when the runs ahead of it finish. "
                "You can close this tab; the run does not depend on it.")
    text = f"{label}: step {prog.step:,} of {prog.total:,}" if prog.total else f"{label}: preparing data and model…"
    st.progress(prog.fraction if state != "completed" else 1.0, text=text)
    m = st.columns(4)
    m[0].metric("Epoch", f"{prog.epoch:.2f}")
    m[1].metric("Elapsed", fmt_duration(prog.elapsed_s))
    m[2].metric("ETA", fmt_duration(prog.eta_s) if state == "running" else "–")
    m[3].metric("Samples/s", f"{prog.samples_per_s:,.1f}" if prog.samples_per_s else "–")  # the unit in the value gets cut off

    if state == "failed":
        st.error(view.status.get("error") or "The run failed without a message; see the log below.")
        if view.status.get("traceback"):
            with st.expander("Traceback (for a bug report)"):
                st.code(view.status["traceback"], language="text")
    elif state == "pruned":
        st.info(view.status.get("error") or "Pruned by its sweep.")
    elif state in ("interrupted", "cancelled"):
        reason = view.status.get("error") or ("Cancelled on request." if state == "cancelled" else "")
        resumable = jobs.can_resume(view.path)
        st.warning(f"{reason} {'Press Resume to continue from the last checkpoint.' if resumable else ''}".strip())
    # what the losses say so far (the Evaluation page adds what the predictions say)
    for finding in diagnose(events, config=view.config):
        st.warning(f"**{md_literal(finding.title)}.** {md_literal(finding.evidence)}  \n**Try:** "
                   + md_literal("; ".join(finding.fixes)) + ".", icon=":material/troubleshoot:")


def curves(run_id: str) -> None:
    view = load_run(root, run_id)
    events = read_run_events(view, st.session_state.setdefault("_events_cache", {}))
    steps = step_frame(events)
    evals = eval_frame(events)
    left, right = st.columns(2)
    with left:
        smooth = st.toggle("Smoothed", value=True, key="smooth", help="Exponential moving average of the loss (weight 0.9)")
        st.plotly_chart(charts.loss_figure(steps, smooth=smooth, uirevision=run_id), width="stretch")
    with right:
        available = [m for m in evals["metric"].unique() if m != "loss"]
        if not available:
            st.markdown("**Validation metrics**")
            every = view.config.get("train", {}).get("eval_every") or 0
            st.caption(f"They appear after the first evaluation ({f'step {every}' if every else 'the end of epoch 1'}).")
        else:
            preferred = [m for m in ("accuracy", "f1_macro", "f1", "pearson", "mse") if m in available][:3] or available[:3]
            chosen = st.multiselect("Validation metrics", available, default=preferred, key=f"metrics-{run_id}",
                                    label_visibility="collapsed", placeholder="validation metrics to plot")
            st.plotly_chart(charts.eval_figure(evals, chosen or preferred, uirevision=run_id), width="stretch")
    # Drawn only on request: every chart redrawn costs the browser and the trainer CPU time.
    if st.toggle("Learning rate", key="show_lr"):
        st.plotly_chart(charts.lr_figure(steps, uirevision=run_id), width="stretch")
    lines = jobs.log_lines(view.path, 15)
    with st.expander("Last log lines", expanded=view.state == "failed"):
        st.code("\n".join(lines) if lines else "(no log yet)", language="text")


active = run.active
# Charts carry no key: a keyed chart's id follows its figure, so each refresh would remount it and
# lose the zoom that uirevision keeps.
st.fragment(status, run_every=REFRESH_S if active else None)(run_id, active)
st.fragment(curves, run_every=CHART_REFRESH_S if active else None)(run_id)
