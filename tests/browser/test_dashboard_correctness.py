"""What a user clicks is what they get, and nothing they set is lost: each test checks content
(which examples a click lists, which values a form holds after a refresh, which run a page shows),
in headless chromium against one real `streamlit run` server. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest

from core import runs
from tests.browser.helpers import (
    choose,
    choose_starting,
    download_csv,
    set_number,
    settle,
    upload_on_data_page,
    wait_for_number,
)
from tests.support.paths import DATA_FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.slow]
WNUT_TYPES = {"company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product", "sportsteam", "tvshow"}
WIDTHS = [{"width": 1280, "height": 720}, {"width": 1600, "height": 1000}]


def test_a_refresh_keeps_the_draft_and_tabs_keep_their_own(app_server, page, browser, shots, tmp_path):
    url, _ = app_server
    data = tmp_path / "party statements.csv"
    pd.DataFrame({"speaker": [f"s{i % 7}" for i in range(90)],
                  "statement": [f"statement number {i} about the budget and {'taxes' if i % 3 else 'schools'}" for i in range(90)],
                  "party": [["left", "right", "centre"][i % 3] for i in range(90)]}).to_csv(data, index=False)
    upload_on_data_page(page, url, data)
    choose(page, "Label", "party")
    page.get_by_text("Splits and subset").click()
    set_number(page, "max training rows", "60")
    page.locator('[data-testid="stMetricValue"]', has_text=re.compile(r"^60$")).wait_for()
    page.get_by_text("Next: choose the model and strategy").click()
    page.get_by_role("heading", name="Strategy").first.wait_for()
    page.get_by_text("party statements.csv (uploaded)").wait_for()  # named as the user knows it, not the server's path
    set_number(page, "num layers", "3")
    set_number(page, "epochs", "5")
    choose_starting(page, "Fine-tuning strategy", "lora")
    draft_url = page.url
    assert "draft=" in draft_url

    page.reload()
    page.get_by_role("heading", name="Strategy").first.wait_for()
    settle(page, 1000)
    assert page.get_by_label("epochs", exact=True).input_value() == "5"
    assert page.get_by_label("num layers", exact=True).input_value() == "3"
    assert page.get_by_label("Fine-tuning strategy", exact=True).input_value().startswith("lora —")
    page.get_by_text("party statements.csv (uploaded)").wait_for()
    shots(page, "21_strategy_after_refresh")
    page.get_by_role("link", name="Data").first.click()
    page.get_by_role("heading", name="Data").wait_for()
    page.get_by_text("Using party statements.csv, uploaded earlier").wait_for()
    assert page.get_by_label("max training rows", exact=True).input_value() == "60"
    assert page.get_by_label("Label", exact=True).input_value() == "party"
    shots(page, "22_data_after_refresh")

    # A second tab on the same link shares the draft; a tab opened on the bare address starts its own.
    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        same = other.new_page()
        same.goto(draft_url)
        same.get_by_role("heading", name="Strategy").first.wait_for()
        settle(same, 1000)
        shots(same, "22b_second_tab_same_link")
        wait_for_number(same, "epochs", 5)
        fresh = other.new_page()
        fresh.goto(f"{url}/strategy")
        fresh.get_by_role("heading", name="Strategy").first.wait_for()
        settle(fresh, 1000)
        assert fresh.get_by_label("epochs", exact=True).input_value() != "5"
        assert re.search(r"draft=([0-9a-f]+)", fresh.url).group(1) != re.search(r"draft=([0-9a-f]+)", draft_url).group(1)
    finally:
        other.close()


def test_a_delete_confirmation_deletes_one_run_and_closes(app_server, seeded_ids, page, shots):
    url, root = app_server
    copies = []
    for suffix in ("aaaa", "bbbb"):  # two throwaway copies of the completed run
        target = root / f"20300101-00000{len(copies)}-doomed-{suffix}"
        shutil.copytree(root / seeded_ids["completed"], target, ignore=shutil.ignore_patterns("model", "checkpoints"))
        copies.append(target)
    page.goto(f"{url}/training?run={copies[0].name}")
    page.get_by_role("heading", name="Training").wait_for()
    page.get_by_role("button", name="Delete").click()
    page.get_by_text(f"Delete {copies[0].name} and everything").wait_for()
    confirm = page.get_by_role("button", name="Yes, delete it")
    confirm.dblclick()  # a double-click must not delete a second run
    settle(page, 1500)
    assert not copies[0].exists() and copies[1].exists()
    page.get_by_text("No run selected").wait_for()
    assert page.get_by_role("button", name="Yes, delete it").count() == 0
    assert "run=" not in page.url
    shots(page, "23_after_delete")
    shutil.rmtree(copies[1])


def test_a_conll_file_uploaded_for_ner_previews_its_entities_and_trains(app_server, page, shots):
    url, root = app_server
    upload_on_data_page(page, url, DATA_FIXTURES / "wnut16_excerpt.conll")
    choose_starting(page, "Task", "token")
    page.get_by_text("A CoNLL file").wait_for()
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    page.get_by_role("tab", name="Entities").click()
    settle(page)
    types = page.locator('[data-testid="stMarkdownContainer"] span :is(b, strong)')
    types.first.wait_for()
    entity_tags = types.all_inner_texts()
    assert entity_tags and set(entity_tags) <= WNUT_TYPES
    shots(page, "24_ner_upload_entities")

    # ...and it trains: a token-classification run whose report is per entity type.
    page.get_by_text("Next: choose the model and strategy").click()
    page.get_by_role("heading", name="Strategy").first.wait_for()
    page.get_by_text("wnut16_excerpt.conll (uploaded)").wait_for()
    for label, value in (("num layers", "2"), ("max length", "48"), ("epochs", "2"), ("batch size", "8"), ("learning rate", "0.001")):
        set_number(page, label, value)
    page.get_by_role("button", name="Start training").click()
    page.get_by_role("heading", name="Training").wait_for()
    run_id = re.search(r"run=([^&]+)", page.url).group(1)
    page.get_by_role("heading", name="Evaluation").wait_for(timeout=180_000)  # the watched run completed
    report = runs.read_json(root / run_id / runs.REPORT)
    assert report["task"] == "token" and runs.read_json(root / run_id / runs.CONFIG)["data"]["source"].endswith("wnut16_excerpt.conll")
    page.get_by_text("Per entity type").wait_for()
    reported = {row["label"] for row in report[report["eval_split"]]["per_class"]} - {"micro avg", "macro avg", "weighted avg"}
    assert reported and reported <= WNUT_TYPES, reported
    shots(page, "24b_ner_upload_trained")


def test_predict_a_file_keeps_every_column_of_it(app_server, seeded_ids, page, shots, tmp_path):
    url, _ = app_server
    data = tmp_path / "new reviews.csv"
    pd.DataFrame({"speaker": ["ann", "bob", "cy"], "text": ["a warm and funny film", "=1+1 dull and far too long", "fine"],
                  "debate": ["d1", "d2", "d3"]}).to_csv(data, index=False)
    page.goto(f"{url}/evaluation?run={seeded_ids['completed']}")
    page.get_by_role("heading", name="Evaluation").wait_for()
    page.get_by_role("tab", name="Predict a file").click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(str(data))
    settle(page, 1000)
    page.get_by_role("button", name="Predict the file").click()
    settle(page, 1000)
    rows = download_csv(page, "Download predictions (CSV)")
    assert [r["speaker"] for r in rows] == ["ann", "bob", "cy"] and [r["debate"] for r in rows] == ["d1", "d2", "d3"]
    assert [r["row"] for r in rows] == ["2", "3", "4"]
    assert all(r["predicted"] in ("fresh", "rotten") for r in rows)
    assert rows[1]["text"].startswith("'=")  # a formula-looking text stays text in a spreadsheet
    shots(page, "25_predict_a_file")


def test_switching_strategy_proposes_its_learning_rate_and_adalora_preflight_works(app_server, page, shots):
    url, _ = app_server
    page.goto(f"{url}/strategy")
    page.get_by_role("heading", name="Strategy").first.wait_for()
    settle(page, 800)
    lr = page.get_by_label("learning rate", exact=True)
    wait_for_number(page, "learning rate", 5e-5)
    choose_starting(page, "Fine-tuning strategy", "lora")
    wait_for_number(page, "learning rate", 1e-3)  # a busy server redraws late
    page.get_by_text("Learning rate set to 0.001, the usual rate for lora").wait_for()
    set_number(page, "learning rate", "0.0002")  # the user's own rate is kept on the next switch
    choose_starting(page, "Fine-tuning strategy", "adalora")
    assert float(lr.input_value()) == pytest.approx(2e-4)
    page.get_by_text("Kept your learning rate 0.0002").wait_for()
    assert page.get_by_label("multi label threshold", exact=True).count() == 0  # a single-label task
    set_number(page, "num layers", "2")
    set_number(page, "max length", "32")
    page.get_by_role("button", name=re.compile("^Check: trainable parameters")).click()
    page.locator('[data-testid="stMetricLabel"]', has_text="time per epoch (estimate)").wait_for(timeout=120_000)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    assert page.get_by_role("button", name="Start training").is_enabled()
    shots(page, "26_adalora_preflight")
