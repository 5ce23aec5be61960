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
    page.get_by_role("checkbox", name="onnx-int8", exact=True).check(force=True)  # Streamlit hides the native box
    distill = page.locator('[data-testid="stExpander"]').filter(has_text="options")
    assert distill.count() == 2  # prune-layers and distill have options; the others none
    settle(page)
    shots(page, "50_deploy_form")
    page.get_by_role("button", name="Make the ticked variants").click()
    page.get_by_text("Queued 1 variant(s)").wait_for()

    # the worker makes it; the table redraws itself until it is done
    made = {}
    while not made:
        page.wait_for_timeout(1000)
        made = {s.derived_method: s for s in runs.list_runs(root) if s.parents == (parent,) and s.state == "completed"}
        assert not [s for s in runs.list_runs(root) if s.parents == (parent,) and s.state == "failed"]
    table = page.locator('[data-testid="stDataFrame"]').first

    def shown_rows() -> dict[str, list[str]]:  # glide-data-grid's accessible copy of its canvas
        return {r.locator("td").first.text_content(): r.locator("td").all_text_contents()
                for r in table.locator("tr").all() if r.locator("td").count()}

    rows = shown_rows()
    while "completed" not in rows.get("onnx-int8", []):  # the fragment redraws every 5 s here
        page.wait_for_timeout(1000)
        rows = shown_rows()
    assert rows["original"][1] == "completed" and float(rows["onnx-int8"][8]) > 1  # speed-up over the parent measured beside it
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


def test_fuse_on_the_compare_page_makes_a_run_shown_beside_its_members(app_server, seeded_ids, page, shots):
    import shutil

    url, root = app_server
    seeded = seeded_ids["completed"]
    twin = f"{seeded[:-4]}twin"  # a second member: the same run under another id (same split, same labels)
    if not (root / twin).exists():
        shutil.copytree(root / seeded, root / twin)
        config = runs.read_json(root / twin / runs.CONFIG)
        runs.atomic_write_json(root / twin / runs.CONFIG, {**config, "name": "twin"})
        runs.index_run(root, root / twin)
    page.goto(f"{url}/compare")
    page.get_by_role("heading", name="Compare").wait_for()
    search = page.get_by_role("textbox", name="Search")
    search.fill(seeded[:-4])  # both ids start so: the two rows, and no other
    search.press("Enter")
    settle(page, 800)
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.locator("td", has_text="twin").first.wait_for(state="attached")
    box = grid.bounding_box()
    for row in (0, 1):  # the rows' tick boxes (rows and header are 35 px)
        page.mouse.click(box["x"] + 18, box["y"] + 35 * (row + 1) + 17)
        settle(page, 800)
    page.get_by_text("Fuse the 2 ticked completed run(s) into one model").click()
    settle(page)
    shots(page, "52_compare_fuse")
    page.get_by_role("button", name="Fuse", exact=True).click()
    page.get_by_text("Queued the ensemble of 2 runs").wait_for()
    fused = None
    while fused is None or fused.state != "completed":
        page.wait_for_timeout(1000)
        fused = next((s for s in runs.list_runs(root) if s.derived_method == "ensemble"), None)
        assert fused is None or fused.state != "failed", fused.error
    assert set(fused.parents) == {seeded, twin}
    report = runs.read_json(root / fused.run_id / runs.REPORT)
    assert report["fusion"]["vs_best"] == pytest.approx(0.0, abs=1e-9)  # two identical members: the ensemble is each of them
    page.goto(f"{url}/evaluation?run={fused.run_id}")
    page.get_by_role("heading", name="Evaluation").wait_for()
    page.get_by_text("evaluated on their shared test split").first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    settle(page, 800)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    shots(page, "53_fused_evaluation")
