"""The Deploy page in chromium: tick methods, launch, watch the variants arrive beside the run, download one."""

from __future__ import annotations

import zipfile

import pytest

from core import runs
from tests.browser.helpers import choose, settle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_variants_are_made_by_the_worker_and_shown_beside_their_run(app_server, seeded_ids, page, shots):
    url, root = app_server
    parent = seeded_ids["completed"]
    page.goto(f"{url}/deploy?run={parent}")
    page.get_by_role("heading", name="Deploy").wait_for()
    page.get_by_text("No variants of this run yet").wait_for()
    for method in ("int8", "onnx-int8"):
        page.get_by_role("checkbox", name=method, exact=True).check(force=True)  # Streamlit hides the native box
    distill = page.locator('[data-testid="stExpander"]').filter(has_text="options")
    assert distill.count() == 2  # prune-layers and distill have options; the others none
    settle(page)
    shots(page, "50_deploy_form")
    page.get_by_role("button", name="Make the ticked variants").click()
    page.get_by_text("Queued 2 variant(s)").wait_for()

    # the worker makes them one after another; the table redraws itself until both are done
    made = {}
    while len(made) < 2:
        page.wait_for_timeout(1000)
        made = {s.derived_method: s for s in runs.list_runs(root) if s.parents == (parent,) and s.state == "completed"}
        assert not [s for s in runs.list_runs(root) if s.parents == (parent,) and s.state == "failed"]
    table = page.locator('[data-testid="stDataFrame"]').first

    def shown_rows() -> dict[str, list[str]]:  # glide-data-grid's accessible copy of its canvas
        return {r.locator("td").first.text_content(): r.locator("td").all_text_contents()
                for r in table.locator("tr").all() if r.locator("td").count()}

    rows = shown_rows()
    while not all("completed" in rows.get(m, []) for m in ("int8", "onnx-int8")):  # the fragment redraws every 10 s
        page.wait_for_timeout(1000)
        rows = shown_rows()
    assert rows["original"][1] == "completed" and float(rows["int8"][8]) > 1  # speed-up over the parent measured beside it
    page.locator(".js-plotly-plot").first.wait_for()  # quality against latency, frontier drawn
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    settle(page, 800)
    shots(page, "51_deploy_variants")

    # download the ONNX variant: its model.onnx and the predict.py that runs it without Tuneboard
    onnx_id = made["onnx-int8"].run_id
    choose(page, "Variant", f"onnx-int8 · {onnx_id}")
    page.get_by_text("runs with onnxruntime and the tokenizer alone").wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download its model (.zip)").click()
    with zipfile.ZipFile(download.value.path()) as archive:
        names = archive.namelist()
    assert {f"{onnx_id}/model.onnx", f"{onnx_id}/predict.py", f"{onnx_id}/tokenizer.json"} <= set(names), names
