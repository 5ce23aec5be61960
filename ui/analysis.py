"""The Evaluation page's "Error analysis" tab: slices, calibration, and the review of likely label errors.

Everything shown is computed in core (core.slices, core.calibration, core.label_issues); changes go
through core.actions, which checks the user's role.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core.access import Action, allowed, refusal
from core.exports import to_csv_bytes
from ui import charts
from ui.html import md_literal


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


@st.cache_data(show_spinner="Slicing the evaluated split…", max_entries=8)
def _slices(run_path: str, mtime: float) -> list[dict[str, Any]]:
    from dataclasses import asdict

    from core.slices import run_slices

    return [asdict(s) for s in run_slices(run_path)]


@st.cache_data(show_spinner="Looking for likely label errors…", max_entries=8)
def _issues(run_path: str, mtime: float) -> pd.DataFrame | str:
    from core.label_issues import LabelIssueError, find_issues

    try:
        return find_issues(run_path)
    except LabelIssueError as exc:
        return str(exc)


def slices_section(run_path: Path, task: str) -> None:
    st.markdown("#### Where the model fails")
    try:
        slicings = _slices(str(run_path), _mtime(run_path / "predictions.parquet"))
    except FileNotFoundError as exc:
        st.warning(md_literal(exc))
        return
    worse = [(s["name"], x["name"]) for s in slicings for x in s["slices"] if x["worse"]]
    if worse:
        st.warning("Significantly worse than the whole split (below it at the 5% level, corrected for the number of "
                   "slices): "
                   + "; ".join(f"{md_literal(a)} = {md_literal(b)}" for a, b in worse) + ".", icon=":material/flag:")
    else:
        st.caption("No slice is significantly worse than the whole split (5% level, corrected for the number of slices).")
    shown = [s for s in slicings if s["slices"]]
    for left_right in range(0, len(shown), 2):
        columns = st.columns(2)
        for column, slicing in zip(columns, shown[left_right:left_right + 2], strict=False):
            column.plotly_chart(charts.slice_figure(slicing), width="stretch")
    skipped = [s for s in slicings if s["note"]]
    if skipped:
        st.caption("Not sliced: " + "; ".join(f"{md_literal(s['name'])} ({md_literal(s['note'].removeprefix('not sliced: '))})"
                                              for s in skipped) + ".")
    with st.expander("Every slice as a table"):
        rows = [{"slicing": s["name"], "slice": x["name"], "examples": x["examples"], s["metric"]: x["score"],
                 "95% low": x["low"], "95% high": x["high"], "macro-F1": x["f1_macro"], "significantly worse": x["worse"]}
                for s in slicings for x in s["slices"]]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def calibration_section(run_path: Path, report: dict[str, Any], user: Any, root: Path) -> None:
    from core import actions, runs
    from core.calibration import TASKS

    if report.get("task") not in TASKS:
        return
    st.markdown("#### Calibration")
    fitted = runs.read_json(run_path / runs.CALIBRATION)
    if not fitted:
        st.caption("This run was made before validation predictions were kept, so no temperature was fitted.")
        if allowed(user, Action.DERIVE):
            if st.button("Fit a temperature (re-evaluates the saved model)", key="fit_temperature"):
                from core.calibration import CalibrationError

                try:
                    with st.spinner("Re-evaluating…"):
                        actions.save_analysis(user, run_path.name, root)
                except (CalibrationError, PermissionError) as exc:
                    st.error(md_literal(exc), icon=":material/error:")
                    return
                st.cache_data.clear()
                st.rerun()
        else:
            st.info(refusal(user, Action.DERIVE), icon=":material/lock:")
        return
    before, after = fitted["before"], fitted["after"]
    c = st.columns(3)
    c[0].metric("temperature", f"{fitted['temperature']:.3f}", help="Fitted on the validation split by minimising the "
                "negative log-likelihood; above 1 the model was over-confident. It changes no prediction.")
    c[1].metric(f"ECE on {fitted['evaluated_on']}", f"{after['ece']:.4f}", f"{after['ece'] - before['ece']:+.4f}",
                delta_color="inverse", help=f"Expected calibration error before scaling: {before['ece']:.4f}.")
    c[2].metric(f"NLL on {fitted['evaluated_on']}", f"{after['nll']:.4f}", f"{after['nll'] - before['nll']:+.4f}",
                delta_color="inverse")
    left, right = st.columns(2)
    left.plotly_chart(charts.reliability_figure(before["bins"], before["ece"]).update_layout(title="Reliability as trained "
                      f"(ECE {before['ece']:.3f})"), width="stretch")
    right.plotly_chart(charts.reliability_figure(after["bins"], after["ece"]).update_layout(
        title=f"After temperature scaling (ECE {after['ece']:.3f})"), width="stretch")
    st.caption("`python -m core predict RUN --calibrated` and the try-it box's calibrated confidence apply the temperature.")


def label_issues_section(run_path: Path, run_id: str, report: dict[str, Any], user: Any, root: Path) -> None:
    from core import actions, runs
    from core.label_issues import DECISIONS, LabelIssueError, review_sources

    st.markdown("#### Likely label errors")
    kept = max(_mtime(run_path / name) for name in (runs.PREDICTIONS, runs.VALIDATION_PREDICTIONS, runs.TRAIN_PREDICTIONS))
    found = _issues(str(run_path), kept)
    if not (run_path / runs.TRAIN_PREDICTIONS).exists():
        st.caption(f"The training split is looked at too after `python -m core label-issues {run_id} --folds 5` "
                   "(five short runs, each predicting the fifth of the training rows it did not train on).")
    if isinstance(found, str):
        st.caption(md_literal(found))
        return
    if found.empty:
        st.caption("Confident learning finds no example whose label the model confidently disputes.")
        return
    splits = " and ".join(dict.fromkeys(found["split"].astype(str)))
    st.caption(f"{len(found):,} examples ({splits}) whose given label the model's out-of-sample "
               "probabilities confidently dispute (confident learning, cleanlab), the least likely label first. Decide per "
               "row, then export a corrected copy of the data file: the original is never changed.")
    labels = list(report.get("labels") or [])
    # keyed on the issues themselves: decisions stay with their rows, and a new list starts a new review
    digest = hashlib.sha256(pd.util.hash_pandas_object(found[["split", "row", "given"]], index=False).values.tobytes())
    edited = st.data_editor(
        found, hide_index=True, width="stretch", key=f"review-{run_id}-{digest.hexdigest()[:12]}", num_rows="fixed",
        column_order=["split", "row", "given", "suggested", "decision", "given_probability", "suggested_probability", "text",
                      *(["text_pair"] if "text_pair" in found.columns else [])],
        disabled=[c for c in found.columns if c not in ("decision", "suggested")],
        column_config={
            "decision": st.column_config.SelectboxColumn("decision", options=list(DECISIONS), required=True,
                                                         help="keep the given label, relabel to 'suggested', or drop the row"),
            "suggested": st.column_config.SelectboxColumn("suggested", options=labels, required=True,
                                                          help="the label a relabelled row gets (the model's, unless changed)"),
            "given_probability": st.column_config.ProgressColumn("p(given)", min_value=0.0, max_value=1.0, format="%.2f"),
            "suggested_probability": st.column_config.ProgressColumn("p(suggested)", min_value=0.0, max_value=1.0, format="%.2f"),
        })
    split = None
    sources = review_sources(run_path, edited["split"].unique().tolist())
    if len(set(sources.values())) > 1:
        split = st.radio("Rows of", list(sources), horizontal=True, key=f"review-split-{run_id}",
                         help="The validation or test split has its own file: export one file at a time.")
    st.download_button("Download the review (CSV)", to_csv_bytes(edited), file_name=f"{run_id}-label-review.csv",
                       mime="text/csv", icon=":material/download:", key="review_download")
    if not allowed(user, Action.UPLOAD):  # the copy is the whole data file
        st.info(refusal(user, Action.UPLOAD), icon=":material/lock:")
        return
    changes = edited[edited["decision"] != "keep"]
    if changes.empty:
        st.caption("Every row is kept as it is: set a decision to relabel or drop to make a corrected copy.")
        return
    wanted = (run_id, split, hashlib.sha256(changes[["split", "row", "decision", "suggested"]].to_csv().encode()).hexdigest())
    made = st.session_state.get("corrected_copy")
    if made is None or made[0] != wanted:
        if st.button(f"Make the corrected copy ({len(changes)} change{'s' if len(changes) > 1 else ''})", key="corrected_make",
                     icon=":material/edit_document:", help="A copy of the data file with these decisions; yours is untouched."):
            try:
                with st.spinner("Writing the copy…"):
                    st.session_state["corrected_copy"] = (wanted, *actions.corrected_copy(user, root, run_id, edited, split))
            except (LabelIssueError, PermissionError) as exc:
                st.error(md_literal(exc), icon=":material/error:")
                return
            st.rerun()  # drawn again with the copy in place of the button
        else:
            return
    _, data, name, counts = made
    st.caption(f"{md_literal(name)}: {counts['rows']:,} rows, {counts['relabelled']} relabelled, {counts['dropped']} dropped.")
    c1, c2 = st.columns(2)
    c1.download_button("Download the corrected copy", data, file_name=name, icon=":material/download:",
                       key="corrected_download")
    if c2.button("Save the copy as a data file", key="corrected_save", icon=":material/save:",
                 help="Saved with your uploads: pick it on the Data page to train on the corrected labels."):
        path, counts = actions.save_corrected_copy(user, root, run_id, edited, split)
        st.success(f"Saved {md_literal(path.name)} ({counts['rows']:,} rows) with your uploads: choose it on the Data page.",
                   icon=":material/check:")
