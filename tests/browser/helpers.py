"""What every browser test does with a Streamlit page: wait for reruns, fill inputs, read progress."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeout

LOSS_POINTS_JS = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const loss = plots.find(p => (p.querySelector('.ytitle') || {}).textContent === 'loss');
  // plotly.py 6 ships arrays base64-encoded; calcdata holds the points plotly.js actually drew
  return loss && loss.calcdata && loss.calcdata.length ? loss.calcdata[0].filter(pt => pt.y !== undefined).length : 0;
}"""


def settle(page, ms: int = 400) -> None:
    """Wait for the rerun a widget change triggered to finish drawing."""
    page.wait_for_timeout(ms)
    running = '[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"]'
    page.wait_for_function(f"() => !document.querySelector('{running}')", timeout=60_000)


def upload_on_data_page(page, url: str, path, wait_ms: int = 1000) -> None:
    """Open the Data page, open its "Upload a file" box and upload ``path``; ``wait_ms=0`` returns at once
    (for an upload the page refuses, whose message the caller waits for)."""
    page.goto(url)
    page.get_by_role("heading", name="Data").wait_for()
    page.get_by_text("Upload a file").click()
    settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    if wait_ms:
        settle(page, wait_ms)


def set_number(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    settle(page)


def wait_for_number(page, label: str, expected: float, timeout_ms: int = 15_000) -> None:
    """Wait until the number input ``label`` holds ``expected``, however Streamlit formats it (5.00e-5 or
    0.00005): a page still drawing its first run can show the input's minimum for a moment."""
    page.wait_for_function(
        """([label, want]) => {
          const box = [...document.querySelectorAll('input')].find(b => b.getAttribute('aria-label') === label);
          return box && Math.abs(parseFloat(box.value) - want) <= 1e-6 * Math.abs(want);
        }""", arg=[label, expected], timeout=timeout_ms)


def progress_step(page) -> int:
    text = page.locator('[data-testid="stProgress"]').first.inner_text()
    match = re.search(r"step ([\d,]+) of", text)
    return int(match.group(1).replace(",", "")) if match else 0


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``.

    A rerun that redraws the widget as it is clicked (a fragment's timer, a rerun still drawing) closes
    its list again: the click is repeated until the option shows."""
    settle(page)
    wanted = page.get_by_role("option", name=option, exact=True)
    for _ in range(5):
        page.get_by_label(label, exact=True).click()
        try:
            wanted.wait_for(timeout=3000)
            break
        except PlaywrightTimeout:
            settle(page)
    wanted.click()
    settle(page)


def choose_starting(page, label: str, prefix: str) -> None:
    """Pick the option of selectbox ``label`` whose text starts with ``prefix`` (options like 'lora — Low-rank…')."""
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option").filter(has_text=re.compile("^" + re.escape(prefix))).first.click()
    settle(page)


def download_csv(page, button_text: str) -> list[dict[str, str]]:
    """Click a download button and read the CSV it serves."""
    with page.expect_download() as info:
        page.get_by_role("button", name=button_text).click()
    data = Path(info.value.path()).read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(data)))


def open_every_confusion_cell(page, labels: list[str], truth, on_cell=None, only=None) -> list[int]:
    """Click each cell of the Evaluation page's confusion matrix at its centre and check what it lists.

    For every (gold, predicted) cell: the heading names that cell, the count equals the cell's number
    and the rows of ``truth`` (the run's predictions.parquet) with that pair, and every row of the
    cell's CSV download has that gold and that predicted label. Returns the counts, row by row.
    ``on_cell(i, j)`` runs after each cell's checks (a screenshot, say). ``only``: the (row, column) cells
    to open (default: all).
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from ui import charts

    k = len(labels)
    grid = page.locator(".js-plotly-plot .nsewdrag").first
    grid.wait_for()
    settle(page, 800)
    counts = [int(c) for c in page.locator(".js-plotly-plot .scatterlayer .textpoint text").all_text_contents()]
    assert len(counts) == k * k, counts
    box = grid.bounding_box()
    side = charts.confusion_geometry(labels)["cell"] * k  # drawn at its own size, not squeezed by the container
    assert abs(box["width"] - side) <= 2 and abs(box["height"] - side) <= 2, f"the grid is {box}, not {side} px square"
    for i, gold in enumerate(labels):
        for j, pred in enumerate(labels):
            if only is not None and (i, j) not in only:
                continue
            settle(page)  # the chart redraws with the chosen cell outlined: wait for the new one
            heading = page.get_by_role("heading", name=f"True {gold}, predicted {pred}")
            for attempt in range(3):  # a click that lands while the chart remounts (new highlight) is lost: click again
                # centred: "if needed" may leave the top row under Streamlit's fixed header, which takes the click
                grid.evaluate("e => e.scrollIntoView({block: 'center'})")
                page.wait_for_timeout(200)
                box = grid.bounding_box()  # where it is now: the list below it grows and the page scrolls
                page.mouse.click(box["x"] + (j + 0.5) * box["width"] / k, box["y"] + (i + 0.5) * box["height"] / k)
                try:
                    heading.wait_for(timeout=10_000)
                    break
                except PlaywrightTimeout:
                    if attempt == 2:
                        raise
                    settle(page)
            n = counts[k * i + j]
            assert n == int(((truth["gold"] == gold) & (truth["predicted"] == pred)).sum()), (gold, pred, n)
            if n == 0:  # said in words, with no empty table or empty download
                page.get_by_text(re.compile(rf"^No \w+ example whose gold label is {gold} was predicted {pred}")).wait_for()
                settle(page)  # the previous cell's elements go when this rerun ends
                assert page.get_by_role("button", name=re.compile("^Download these")).count() == 0
            else:
                page.get_by_text(re.compile(rf"^{n:,} examples, the most confident first")).wait_for()
                rows = download_csv(page, f"Download these {n:,} examples (CSV)")
                assert len(rows) == n and all(r["gold"] == gold and r["predicted"] == pred for r in rows), (gold, pred)
            if on_cell:
                on_cell(i, j)
    return counts
