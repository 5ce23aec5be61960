"""Parsing Plotly selection events and filtering predictions for the clicked confusion-matrix cell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data.tags import bio_spans
from ui.selection import cell_examples, confident_errors, positive_scores, roc_pr, selected_cell

LABELS = ["fresh", "rotten"]
PRED = pd.DataFrame({
    "row": [1, 2, 3, 4],
    "text": ["a", "b", "c", "d"],
    "gold": ["fresh", "rotten", "rotten", "fresh"],
    "predicted": ["fresh", "fresh", "fresh", "rotten"],
    "confidence": [0.9, 0.6, 0.8, 0.7],
    "correct": [True, False, False, False],
    "probabilities": [[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]],
})


def test_selected_cell_reads_customdata_of_the_overlay():
    event = {"selection": {"points": [{"curve_number": 1, "point_index": 2, "x": "fresh", "y": "rotten",
                                        "customdata": ["rotten", "fresh", 2]}], "point_indices": [2]}}
    assert selected_cell(event, LABELS) == (1, 0)


def test_selected_cell_falls_back_to_axes_and_ignores_other_traces():
    assert selected_cell({"selection": {"points": [{"curve_number": 1, "x": "rotten", "y": "fresh"}]}}, LABELS) == (0, 1)
    assert selected_cell({"selection": {"points": [{"curve_number": 0, "x": "rotten", "y": "fresh"}]}}, LABELS) is None
    assert selected_cell({"selection": {"points": [{"curve_number": 1, "x": "meh", "y": "fresh"}]}}, LABELS) is None


@pytest.mark.parametrize("event", [None, {}, {"selection": {"points": []}}, {"selection": None}])
def test_no_selection(event):
    assert selected_cell(event, LABELS) is None


def test_attribute_style_event_as_streamlit_returns_it():
    class Obj:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    event = Obj(selection=Obj(points=[{"curve_number": 1, "customdata": ["fresh", "rotten", 1]}]))
    assert selected_cell(event, LABELS) == (0, 1)


def test_cell_examples_are_the_cell_rows_most_confident_first():
    rows = cell_examples(PRED, "rotten", "fresh")
    assert rows["row"].tolist() == [3, 2] and "probabilities" not in rows
    assert cell_examples(PRED, "fresh", "fresh")["row"].tolist() == [1]
    assert confident_errors(PRED, 2)["row"].tolist() == [3, 4]


def test_roc_and_pr_of_a_perfect_and_a_one_class_scorer():
    y, score = positive_scores(PRED, LABELS, "rotten")
    assert y.tolist() == [0, 1, 1, 0] and score.tolist() == pytest.approx([0.1, 0.4, 0.2, 0.7])
    perfect = roc_pr(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect["roc_auc"] == 1.0 and perfect["pr_auc"] == pytest.approx(1.0)
    assert roc_pr(np.array([1, 1]), np.array([0.2, 0.3]))["roc_auc"] is None


def test_bio_spans():
    tokens = ["John", "Smith", "visited", "New", "York", "today"]
    assert bio_spans(tokens, ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]) == [(0, 2, "PER"), (3, 5, "LOC")]
    assert bio_spans(tokens[:3], ["I-PER", "B-PER", "I-LOC"]) == [(0, 1, "PER"), (1, 2, "PER"), (2, 3, "LOC")]


def test_highlighted_spans_are_escaped_and_labelled():
    from ui.html import entity_colors, highlight

    out = highlight(["<b>Ann</b>", "met", "Bob"], ["B-PER", "O", "B-PER"], entity_colors(["PER"]))
    assert "&lt;b&gt;Ann&lt;/b&gt;" in out and "<b>Ann</b>" not in out
    assert out.count(">PER</b>") == 2 and " met " in out


def test_md_literal_leaves_no_markdown_to_read():
    from markdown_it import MarkdownIt

    from ui.html import md_literal

    hostile = "**bold** _it_ [a](javascript:x) `code` # not a heading <b>x</b> :red[x] $x$ 1. item\nsecond line"
    rendered = MarkdownIt("commonmark").render(md_literal(hostile))
    # the renderer gives back one paragraph with the text as written (HTML-escaped), no markup of its own
    assert rendered == "<p>" + hostile.replace("\n", " ").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") + "</p>\n"


def test_attributions_are_escaped_coloured_by_sign_and_scaled_by_size():
    import re

    from ui.html import OPPOSES, SUPPORTS, attribution_html, attribution_legend

    out = attribution_html(['<img src=x onerror="1">', "good", "bad"], [0.0, 0.4, -0.2], span=(1, 2))
    assert "<img" not in out and "&lt;img src=x onerror=&quot;1&quot;&gt;" in out
    alphas = [float(a) for a in re.findall(r"rgba\(\d+,\d+,\d+,([\d.]+)\)", out)]
    assert alphas == [0.0, 0.85, 0.42]  # the largest |score| gets full colour, half the score half of it
    assert f"rgba({SUPPORTS[0]},{SUPPORTS[1]},{SUPPORTS[2]},0.85)" in out
    assert f"rgba({OPPOSES[0]},{OPPOSES[1]},{OPPOSES[2]},0.42)" in out
    assert out.count("border-bottom") == 1 and 'title="+0.4000"' in out
    assert "&lt;script&gt;" in attribution_legend("<script>")
