"""Word attributions on the Evaluation page: the try-it box, the confusion-matrix drill-down and the errors list.

The explainer (core.explain) is loaded once per run and model version; each explanation is cached by
its text, so a rerun of the page (a click elsewhere) doesn't integrate again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from ui.html import attribution_html, attribution_legend, md_literal

MAX_EXPLAINED = 5  # examples explained at once in a table (each takes ~0.1–1 s on 2 cores)


@st.cache_resource(show_spinner="Loading the model for explanations…", max_entries=2)
def explainer(run_path: str, mtime: float) -> Any:  # core.explain.Explainer, or the reason there is none
    from core.explain import ExplainError, explainer_for_run
    from core.models import ModelError

    try:
        return explainer_for_run(run_path)
    except (ExplainError, ModelError) as exc:  # kept, so a run that can't be explained isn't loaded at every rerun
        return str(exc)


@st.cache_data(show_spinner=False, max_entries=256)
def _explain(run_path: str, mtime: float, text: str, pair: str | None, target: str | None) -> list[dict[str, Any]]:
    from core.explain import ExplainError

    ex = explainer(run_path, mtime)
    if isinstance(ex, str):
        raise ExplainError(ex)
    if ex.predictor.task == "token":
        return [e.as_dict() for e in ex.explain_entities(text.split())]
    return [ex.explain(text, pair, target).as_dict()]


def model_mtime(run_path: Path) -> float:
    weights = [p.stat().st_mtime for p in (run_path / "model").rglob("*.safetensors")]
    weights += [p.stat().st_mtime for p in (run_path / "model").glob("*.onnx")]
    return max(weights, default=0.0)


def show(run_path: Path, text: str, pair: str | None = None, target: str | None = None, *, caption: bool = True) -> None:
    """Explain one text (every predicted entity, for NER) and draw it: coloured words, a legend, the facts."""
    from core.explain import ExplainError
    from core.models import ModelError

    try:
        with st.spinner("Explaining (integrated gradients)…"):
            found = _explain(str(run_path), model_mtime(run_path), text, pair, target)
    except (ExplainError, ModelError) as exc:
        st.info(f"No explanation: {md_literal(exc)}", icon=":material/info:")
        return
    if not found:
        st.caption("No entity predicted in this text: nothing to explain.")
        return
    for e in found:
        if e["span"]:
            st.markdown(f"Why **{md_literal(e['predicted'])}** is **{md_literal(e['target'])}**:")
        st.markdown(attribution_html(e["words"], e["scores"], span=tuple(e["span"]) if e["span"] else None),
                    unsafe_allow_html=True)
        if e["truncated_words"]:
            st.caption(f"The last {e['truncated_words']:,} words (uncoloured) lie past the model's max length: it never "
                       "read them.")
        if caption:
            st.markdown(attribution_legend(e["target"]), unsafe_allow_html=True)
            bound = "within" if e["converged"] else "NOT within"
            st.caption(f"Integrated gradients, {e['steps']} steps: p({md_literal(e['target'])}) {e['output']:.3f} against "
                       f"{e['baseline_output']:.3f} for the text with every word blanked; the words' scores add up to that "
                       f"difference, off by {abs(e['delta']):.4f} ({bound} the convergence bound)."
                       + (f" Explained through {md_literal(e['through'])}." if e.get("through") else ""))


def show_rows(run_path: Path, rows: Any, selection: Any, *, text_column: str = "text", target_column: str | None = None,
              first_by_default: bool = True) -> None:
    """Explanations of the table rows the user selected (with none: the first row, or nothing)."""
    picked = [i for i in (getattr(getattr(selection, "selection", None), "rows", None) or []) if 0 <= i < len(rows)]
    if not picked:  # at most one explanation per click on the page: a cell must not wait on five
        st.caption(f"Select rows in the table (up to {MAX_EXPLAINED}) to see why the model said what it did"
                   + ("; the first is explained below." if first_by_default else "."))
        picked = [0] if len(rows) and first_by_default else []
    elif len(picked) > MAX_EXPLAINED:
        st.caption(f"The first {MAX_EXPLAINED} of the {len(picked)} selected rows are explained.")
    for position in picked[:MAX_EXPLAINED]:
        row = rows.iloc[position]
        target = _one_label(row[target_column]) if target_column else None
        pair = str(row["text_pair"]) if "text_pair" in rows.columns else None
        label = f"row {int(row['row'])}" if "row" in rows.columns else f"example {position + 1}"
        st.markdown(f"**{label}**" + (f" · why **{md_literal(target)}**" if target else ""))
        show(run_path, str(row[text_column]), pair, target, caption=position == picked[0])


def _one_label(value: Any) -> str | None:
    """The label to explain: a multi-label row's first predicted label (None, the top one, when it has none)."""
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        labels = list(value.tolist() if hasattr(value, "tolist") else value)
        return str(labels[0]) if labels else None
    return str(value)
