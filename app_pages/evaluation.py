"""Evaluation of a finished run: metrics, per-class report, a clickable confusion matrix, errors,
curves, calibration, NER spans, a try-it box, batch prediction and the model download."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core import deploy, derived
from core.access import Action, allowed, refusal
from core.exports import to_csv_bytes
from ui import analysis, charts, explain_view
from ui.app_state import current_run_id, current_user, runs_root, show_run_problem
from ui.html import entity_colors, highlight, md_literal
from ui.runview import fmt_duration, load_run
from ui.selection import cell_examples, confident_errors, positive_scores, roc_pr, selected_cell

root = runs_root()
run_id = current_run_id()
st.title("Evaluation")
run = load_run(root, run_id) if run_id else None
if run is None or run.state in ("missing", "broken"):
    show_run_problem(run_id, run.problem if run else None)
    st.stop()
if run.state != "completed" or run.report is None:
    why = {
        "queued": "is waiting in the queue", "running": "is still training", "failed": "failed",
        "cancelled": "was cancelled before it finished", "interrupted": "was interrupted before it finished",
        "pruned": "was pruned by its sweep (it fell behind the other trials)",
    }.get(run.state, f"is {run.state}")
    st.warning(run.problem or f"Run {run_id} {why}, so it has no evaluation report yet.")
    if run.status.get("error"):
        st.error(run.status["error"])
    st.page_link("app_pages/training.py", label="Open it on the Training page", icon=":material/monitoring:",
                 query_params={"run": run_id})
    st.stop()

report = run.report
task = report["task"]
labels = report.get("labels", [])
split = report.get("eval_split", "test")
shown = report.get(split) or report.get("validation") or {}
metrics = shown.get("metrics", {})


@st.cache_data(show_spinner=False, max_entries=8)
def read_predictions(path: str, mtime: float) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError):
        return None


pred_path = run.path / "predictions.parquet"
predictions = read_predictions(str(pred_path), pred_path.stat().st_mtime) if pred_path.exists() else None

# --- headline cards ---------------------------------------------------------------------------------
st.caption(f"`{run_id}` · {report.get('model', {}).get('name')} · strategy {report.get('strategy', {}).get('kind')} · "
           f"{shown.get('num_examples', 0):,} {split} examples")
lineage = derived.lineage(report)
if lineage:  # a derived run: what it was made from, and what that cost
    parent = lineage["parents"][0] if lineage["parents"] else "?"
    change = f" ({lineage['change']:+.4f})" if lineage["change"] is not None else ""
    sizes = (f" · weights {lineage['weights_mb']:.1f} MB, the parent's {lineage['parent_weights_mb']:.1f} MB"
             if lineage["weights_mb"] is not None and lineage["parent_weights_mb"] is not None else "")
    parent_value = f"{lineage['parent_value']:.4f}" if lineage["parent_value"] is not None else "?"
    if lineage["fused"] and lineage["vs_best"] is not None:
        members = ", ".join(f"`{p}`" for p in lineage["parents"])
        st.info(f"**{md_literal(lineage['method'])}** of runs {members}, evaluated on their shared {split} split: "
                f"{md_literal(lineage['metric'])} {lineage['value']:.4f}; the best member {lineage['best_member']:.4f} "
                f"({lineage['vs_best']:+.4f}), the members' mean {lineage['mean_member']:.4f} ({lineage['vs_mean']:+.4f})"
                f"{sizes.replace('the parent', 'the first member')}.", icon=":material/merge:")
    else:
        st.info(f"**{md_literal(lineage['method'])}** of run `{parent}`, evaluated on the parent's {split} split: "
                f"{md_literal(lineage['metric'])} {lineage['value']:.4f} against the parent's {parent_value}{change}{sizes}.",
                icon=":material/compress:")
    st.page_link("app_pages/evaluation.py", label="Open the first member" if lineage["fused"] else "Open the parent run",
                 icon=":material/arrow_upward:", query_params={"run": parent})
headline = shown.get("headline", {})
card_names = [n for n in (headline.get("name"), "accuracy", "f1_macro", "f1", "precision", "recall", "mse", "pearson", "loss")
              if n and n in metrics]
cards = st.columns(min(5, max(1, len(dict.fromkeys(card_names)))) + 1)
for col, name in zip(cards, dict.fromkeys(card_names), strict=False):
    col.metric(name.replace("_", " "), f"{metrics[name]:.4f}", border=True)
timings = report.get("timings", {})
cards[-1].metric("train time", fmt_duration(timings.get("train_s")), border=True,
                 help=f"{timings.get('samples_per_s', 0):.1f} samples/s; "
                      f"{report.get('strategy', {}).get('trainable_percent', 0):.2f}% of parameters trained")



@st.cache_data(show_spinner=False, max_entries=8)
def findings(path: str, mtime: float) -> list[dict]:
    from core.diagnose import diagnose_run

    return [f.as_dict() for f in diagnose_run(path)]


evaluated_at = max((p.stat().st_mtime for p in (run.path / "report.json", pred_path) if p.exists()), default=0.0)
for finding in findings(str(run.path), evaluated_at):
    st.warning(f"**{md_literal(finding['title'])}.** {md_literal(finding['evidence'])}  \n**Try:** "
               + md_literal("; ".join(finding["fixes"])) + ".", icon=":material/troubleshoot:")

# Every tab's content runs on every rerun (lazy tabs rerun the page on each tab click, which lost an upload made
# at once): what is costly — explanations, the error analysis — waits for the user to ask for it.
tabs = st.tabs(["Report", "Errors", "Error analysis", "Curves & calibration", "Try it", "Predict a file", "Download"])

# --- per-class report and confusion matrix -----------------------------------------------------------
with tabs[0]:
    per_class = pd.DataFrame(shown.get("per_class") or [])
    cm = shown.get("confusion_matrix")
    # Side by side when the matrix fits beside the table; a wide matrix (many or long labels) goes below it.
    wide = bool(cm and "counts" in cm and charts.confusion_geometry(cm["labels"])["width"] > 400)
    left, right = (st.container(), st.container()) if wide else st.columns([1, 1])
    with left:
        st.markdown("**Per class**" if task != "token" else "**Per entity type**")
        if not per_class.empty:
            st.dataframe(per_class, hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("precision", "recall", "f1")})
        with st.expander("All metrics"):
            st.dataframe(pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())}), hide_index=True)
    with right:
        if cm and "counts" in cm:
            mode = st.radio("Confusion matrix", list(charts.CM_MODES), format_func=lambda m: charts.CM_MODES[m].split(" (")[0],
                            horizontal=True, key="cm_mode")

            def remember_cell() -> None:
                # The chart's own selection resets whenever its figure changes (the highlight, the mode
                # radio): Streamlit derives the widget id from the figure. So the cell lives here. An empty
                # selection keeps it: the chart sends one when it redraws while a rerun is still going (a
                # download clicked while the cell's first example is being explained), which closed the cell.
                picked = selected_cell(st.session_state.get("cm_chart"), cm["labels"])
                if picked is not None:
                    st.session_state["cm_cell"] = (run_id, picked)

            remembered = st.session_state.get("cm_cell")
            cell = remembered[1] if remembered and remembered[0] == run_id else None
            st.plotly_chart(charts.confusion_figure(cm, mode, selected=cell), key="cm_chart", on_select=remember_cell,
                            selection_mode="points", width="content")
            if cell is None:
                st.caption("Click a cell to list its examples.")
        elif cm and "per_label" in cm:
            st.markdown("**One-vs-rest counts per label**")
            st.dataframe(pd.DataFrame(cm["per_label"]), hide_index=True)
            cell = None
        else:
            cell = None
    if cell is not None:
        gold, pred = cm["labels"][cell[0]], cm["labels"][cell[1]]
        st.markdown(f"#### True **{md_literal(gold)}**, predicted **{md_literal(pred)}**")
        rows = None if predictions is None else cell_examples(predictions, gold, pred)
        if rows is None:
            st.warning(f"predictions.parquet of run {run_id} is missing or unreadable, so the examples can't be listed.")
        elif rows.empty:
            st.caption(f"No {split} example whose gold label is {md_literal(gold)} was predicted {md_literal(pred)}: "
                       "nothing to list or download.")
        else:
            st.caption(f"{len(rows):,} examples, the most confident first" + (" — these are correct." if gold == pred else "."))
            picked = st.dataframe(rows, hide_index=True, width="stretch", key=f"cell_rows-{run_id}-{cell[0]}-{cell[1]}", on_select="rerun",
                                  selection_mode="multi-row",
                                  column_config={"confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                                               format="%.3f", width="small"),
                                                 "row": st.column_config.NumberColumn(width="small")})
            st.download_button(f"Download these {len(rows):,} examples (CSV)", to_csv_bytes(rows),
                               file_name=f"{run_id}-true-{gold}-predicted-{pred}.csv", mime="text/csv",
                               icon=":material/download:", key="cell_download")
            with st.expander(f"Why the model said {md_literal(pred)}", expanded=True, icon=":material/psychology:"):
                explain_view.show_rows(run.path, rows, picked, target_column="predicted")

# --- errors -------------------------------------------------------------------------------------------
with tabs[1]:
    if predictions is None:
        st.warning(f"predictions.parquet of run {run_id} is missing or unreadable.")
    elif task == "token":
        types = sorted({t[2:] for t in labels if t[:2] in ("B-", "I-")})
        colors = entity_colors(types)
        only_wrong = st.toggle("Only sentences with a mistake", value=True)
        rows = predictions[~predictions["correct"].astype(bool)] if only_wrong else predictions
        st.caption(f"{len(rows):,} sentences; the first 25, gold above, predicted below.")
        for _, row in rows.head(25).iterrows():
            tokens = list(row["tokens"])
            st.markdown("gold " + highlight(tokens, list(row["gold"]), colors), unsafe_allow_html=True)
            st.markdown("pred " + highlight(tokens, list(row["predicted"]), colors), unsafe_allow_html=True)
            st.divider()
    elif task == "regression":
        frame = predictions.assign(error=(predictions["predicted"] - predictions["gold"]).abs())
        st.dataframe(frame.sort_values("error", ascending=False).head(50), hide_index=True, width="stretch")
    else:
        st.markdown("**Most confident mistakes**")
        mistakes = confident_errors(predictions, 30)
        picked = st.dataframe(mistakes, hide_index=True, width="stretch", key=f"error_rows-{run_id}", on_select="rerun",
                              selection_mode="multi-row",
                              column_config={"confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                                           format="%.3f")})
        if len(mistakes):
            with st.expander("Why the model said what it did", expanded=True, icon=":material/psychology:"):
                explain_view.show_rows(run.path, mistakes, picked, target_column="predicted", first_by_default=False)

# --- error analysis: slices, calibration, likely label errors -----------------------------------------------
with tabs[2]:
    if st.toggle("Analyse this run's errors", key=f"analyse-{run_id}",
                 help="Slices by length, confidence and your file's own columns; calibration; likely label errors."):
        analysis.slices_section(run.path, task)
        analysis.calibration_section(run.path, report, current_user(), root)
        analysis.label_issues_section(run.path, run_id, report, current_user(), root)
    else:
        st.caption("Where the model fails (slices with intervals), how honest its confidence is (temperature scaling), "
                   "and which labels look wrong (confident learning): turn on the analysis above.")

# --- curves and calibration ----------------------------------------------------------------------------
with tabs[3]:
    if task in ("single_label", "pair") and predictions is not None and len(labels) >= 2:
        # One class against the rest: the ROC and precision-recall curves of any class, binary or not.
        c0, _ = st.columns([1, 2])
        positive = c0.selectbox("Class (against the rest)" if len(labels) > 2 else "Positive class", labels,
                                index=1 if len(labels) == 2 else 0, key="curve_class")
        y, score = positive_scores(predictions, labels, positive)
        curves = roc_pr(y, score)
        c1, c2 = st.columns(2)
        auc_text = f" (AUC {curves['roc_auc']:.3f})" if curves["roc_auc"] is not None else ""
        c1.plotly_chart(charts.curve_figure(curves["fpr"], curves["tpr"], title="ROC" + auc_text,
                                            x_title="false positive rate", y_title="true positive rate", diagonal=True))
        pr_text = f" (AUC {curves['pr_auc']:.3f})" if curves["pr_auc"] is not None else ""
        c2.plotly_chart(charts.curve_figure(curves["recall"], curves["precision"], title="Precision-recall" + pr_text,
                                            x_title="recall", y_title="precision"))
    calibration = shown.get("calibration")
    if calibration or (predictions is not None and "confidence" in predictions and predictions["confidence"].notna().any()):
        c3, c4 = st.columns(2)
        if calibration:
            c3.plotly_chart(charts.reliability_figure(calibration["bins"], calibration.get("ece")))
        if predictions is not None and "confidence" in predictions and predictions["confidence"].notna().any():
            c4.plotly_chart(charts.confidence_figure(predictions["confidence"].astype(float).tolist(),
                                                     predictions["correct"].astype(bool).tolist()))
    if task == "regression" and predictions is not None:
        st.plotly_chart(charts.regression_figure(predictions["gold"].astype(float).tolist(),
                                                 predictions["predicted"].astype(float).tolist()))
    if task == "token":
        st.info("Curves are drawn for classification and regression runs; an NER run's per-type report is on the Report tab.")

# --- try it -------------------------------------------------------------------------------------------
model_dir = run.path / "model"
# The columns training used (auto-detected ones included), not only those the config named.
pair_task = task == "pair" or bool((report.get("data") or {}).get("columns", {}).get("text_pair"))


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def predictor(path: str, mtime: float):  # noqa: ANN201 - core.inference.Predictor, imported lazily (torch)
    from core.evaluate import run_predictor
    from ui.preflight import warm_transformers

    warm_transformers()
    return run_predictor(path)  # the run's own threshold and max length


with tabs[4]:
    if not (model_dir / "config.json").exists():
        st.warning(f"Run {run_id} has no saved model (its model/ folder is missing).")
    else:
        text = st.text_area("Text" if not pair_task else "First text",
                            placeholder="Type a sentence to classify…" if task != "token" else "Type a sentence to tag…")
        second = st.text_area("Second text", placeholder="The text it is paired with…") if pair_task else None
        if st.button("Predict", type="primary", disabled=not text.strip() or (pair_task and not (second or "").strip())):
            p = predictor(str(run.path), explain_view.model_mtime(run.path))
            if task == "token":
                words = text.split()
                tags = p.predict_tokens([words])[0]
                st.markdown(highlight(words, tags, entity_colors({t[2:] for t in labels if "-" in t})), unsafe_allow_html=True)
            else:
                out = p.predict_texts([text], [second] if pair_task else None)
                temperature = (report.get("temperature_scaling") or {}).get("temperature")
                probs = {c[2:]: float(out.loc[0, c]) for c in out.columns if c.startswith("p_")}
                calibrated = ""
                if temperature and probs:
                    from core.calibration import scaled

                    honest = scaled(pd.Series(probs).to_numpy()[None, :], temperature)[0]
                    calibrated = f" (calibrated {honest.max():.3f})"
                st.metric("Prediction", str(out.loc[0, "predicted"]),
                          f"confidence {out.loc[0, 'confidence']:.3f}{calibrated}" if "confidence" in out else None,
                          delta_color="off", delta_arrow="off",
                          help=f"Calibrated: with the temperature {temperature:.2f} fitted on the validation split."
                          if temperature else None)
                if probs:
                    st.bar_chart(pd.Series(probs, name="probability"), horizontal=True)
            st.markdown("**Why**" if task != "token" else "**Why each entity**")
            explain_view.show(run.path, text, second if pair_task else None)

# --- predict a file -----------------------------------------------------------------------------------
with tabs[5]:
    kinds = ["csv", "tsv", "json", "jsonl", "parquet", *(["conll", "txt"] if task == "token" else [])]
    user = current_user()
    if not allowed(user, Action.UPLOAD):  # the file is saved on the server: an operator's
        st.info(refusal(user, Action.UPLOAD), icon=":material/lock:")
        upload = None
    else:
        upload = st.file_uploader("A file to predict (CSV/TSV/JSON/JSONL/Parquet" + (", or CoNLL" if task == "token" else "") + ")",
                                  type=kinds, key="predict_upload")
    if upload is not None and (model_dir / "config.json").exists():
        from core import actions
        from core.data import DataError, read_table
        from core.evaluate import predict_table
        from core.uploads import replace_upload_paths

        saved = actions.save_upload(user, root, upload.name, upload.getvalue())
        text_column = pair_column = None
        if task != "token":
            try:
                cols = [str(c) for c in read_table(saved).columns]
            except DataError as exc:
                st.error(replace_upload_paths(str(exc), root), icon=":material/error:")
                cols = []
            if cols:
                own = run.config.get("data", {}).get("text_column")
                c1, c2 = st.columns(2)
                choice = c1.selectbox("Text column", ["(as in training)", *cols], key="predict_text_column",
                                      index=1 + cols.index(own) if own in cols else 0,
                                      help="Left as in training, the run's text column (or auto-detection) picks it.")
                text_column = None if choice == "(as in training)" else choice
                if pair_task:
                    own_pair = run.config.get("data", {}).get("text_pair_column")
                    pick = c2.selectbox("Second text column", ["(as in training)", *cols], key="predict_pair_column",
                                        index=1 + cols.index(own_pair) if own_pair in cols else 0)
                    pair_column = None if pick == "(as in training)" else pick
        if st.button("Predict the file", type="primary", key="predict_file"):
            try:
                with st.spinner("Predicting…"):
                    out = predict_table(run.path, saved, text_column=text_column, text_pair_column=pair_column,
                                        predictor=predictor(str(run.path), explain_view.model_mtime(run.path)))
            except DataError as exc:
                st.error(replace_upload_paths(str(exc), root), icon=":material/error:")
            else:
                st.session_state["predicted_file"] = (run_id, upload.name, to_csv_bytes(out), len(out))
                st.dataframe(out.head(100), hide_index=True, width="stretch")
        done = st.session_state.get("predicted_file")
        if done and done[0] == run_id and done[1] == upload.name:
            st.caption(f"{done[3]:,} rows: every column of {md_literal(upload.name)} and the row number, with the predictions beside them.")
            st.download_button("Download predictions (CSV)", done[2], file_name=f"{Path(upload.name).stem}-predictions.csv",
                               mime="text/csv", icon=":material/download:", key="predict_download")

# --- download the model --------------------------------------------------------------------------------
with tabs[6]:
    if (model_dir / "config.json").exists():
        size_mb = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file()) / 2**20
        st.write(f"The best model ({size_mb:.0f} MB). {deploy.loading_note(model_dir)}")
        st.download_button("Download the model (.zip)", lambda: deploy.model_zip(run.path), file_name=f"{run_id}-model.zip",
                           mime="application/zip", icon=":material/download:")
    else:
        st.warning(f"Run {run_id} has no saved model.")
