"""Texts and labels from users' files are shown as text: markup in them runs nowhere and formats nothing.

A run whose class names are HTML, markdown and a script, and whose every text starts with a script,
is opened on the Evaluation page: its confusion matrix (ticks and hover), a cell's heading and its
examples, the report and the errors tab. Nothing of it may run, and the labels must read literally.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from core import runs
from tests.browser.helpers import settle
from tests.support.seeded import three_class_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]
HOSTILE = ('<img src=x onerror="window.__pwned=1">', "**bold** [link](javascript:window.__pwned=2)",
           "<script>window.__pwned=3</script>")
TEXT_PREFIX = '<script>window.__pwned=4</script><b onmouseover="window.__pwned=5">look</b> '
INJECTED_JS = """() => ({
  pwned: window.__pwned || 0,
  imgs: document.querySelectorAll('img[src="x"]').length,
  handlers: [...document.querySelectorAll('*')].filter(e => e.hasAttribute('onerror') || e.hasAttribute('onmouseover')).length,
  scripts: [...document.querySelectorAll('script')].filter(s => s.textContent.includes('__pwned')).length,
  bold: [...document.querySelectorAll('strong, b')].filter(e => e.textContent === 'bold').length,
  links: [...document.querySelectorAll('a')].filter(a => (a.getAttribute('href') || '').startsWith('javascript')).length,
})"""


@pytest.fixture(scope="module")
def hostile_run(app_server, seeded_ids):
    _, root = app_server
    return three_class_run(root, seeded_ids["completed"], name="hostile", labels=HOSTILE, text_prefix=TEXT_PREFIX)


def assert_nothing_ran(page, where: str) -> None:
    assert page.evaluate(INJECTED_JS) == {"pwned": 0, "imgs": 0, "handlers": 0, "scripts": 0, "bold": 0, "links": 0}, where


def test_markup_in_labels_and_texts_shows_literally_and_runs_nowhere(app_server, hostile_run, page, shots):
    url, root = app_server
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{url}/evaluation?run={hostile_run}")
    page.get_by_role("heading", name="Evaluation").wait_for()
    grid = page.locator(".js-plotly-plot .nsewdrag").first
    grid.wait_for()
    settle(page, 800)
    # the confusion matrix's ticks read the labels as written
    ticks = page.locator(".js-plotly-plot").first.locator(".xtick text").all_text_contents()
    assert sorted(ticks) == sorted(HOSTILE), ticks
    assert_nothing_ran(page, "report")
    shots(page, "40_hostile_report")

    # a cell: its heading names the labels literally, its hover too, and its examples show the texts as text
    grid.evaluate("e => e.scrollIntoView({block: 'center'})")  # not under Streamlit's fixed header
    page.wait_for_timeout(200)
    box = grid.bounding_box()
    at = (box["x"] + box["width"] / 6, box["y"] + box["height"] / 2)  # gold: the markdown label, predicted: the <img>
    page.mouse.move(*at, steps=5)
    hover = page.locator(".hoverlayer .hovertext").first
    hover.wait_for()
    assert f"true {HOSTILE[1]} → predicted {HOSTILE[0]}" in hover.text_content()
    page.mouse.click(*at)
    heading = page.get_by_role("heading", name=re.compile("^True "))
    heading.wait_for()
    assert heading.inner_text() == f"True {HOSTILE[1]}, predicted {HOSTILE[0]}"
    truth = pd.read_parquet(root / hostile_run / runs.PREDICTIONS)
    n = int(((truth["gold"] == HOSTILE[1]) & (truth["predicted"] == HOSTILE[0])).sum())
    page.get_by_text(re.compile(rf"^{n:,} examples, the most confident first")).wait_for()
    assert_nothing_ran(page, "a cell")
    shots(page, "41_hostile_cell")

    page.get_by_role("tab", name="Errors").click()
    settle(page, 800)
    assert_nothing_ran(page, "errors")
    assert dialogs == []
