"""A newcomer's first stumbles in a real browser: a bad and an oversized upload, and a saved YAML that
fills the forms. (Their whole path, from an upload to a deep link, is tests/browser/test_whole_walk.py.)
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.helpers import settle, upload_on_data_page
from tests.support.paths import DATA_FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.slow]

def test_a_bad_upload_shows_the_message(app_server, page, shots, tmp_path):
    url, root = app_server
    bad = tmp_path / "reviews.json"
    bad.write_text('[{"text": "great film", "label": "pos"},\n {"text": "dull", "label": ', encoding="utf-8")
    upload_on_data_page(page, url, bad, wait_ms=0)
    alert = page.locator('[data-testid="stAlertContentError"]').first
    alert.wait_for()
    text = alert.inner_text()
    assert "reviews.json: not valid JSON" in text and "line 2" in text and "Fix:" in text
    assert ".uploads" not in text and "Traceback" not in text  # named as the user knows it
    shots(page, "08_bad_upload_message")

    big = tmp_path / "big.csv"
    big.write_text("text,label\n" + "a long review text,pos\n" * 60_000, encoding="utf-8")  # ~1.3 MB > the 1 MB limit
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(big))
    page.get_by_text("Up to 1 MB per file").wait_for()
    page.get_by_text("big.csv").hover()  # the refusal with the limit shows on the file's chip
    page.get_by_text(re.compile(r"File must be 1(\.0)?\s?MB or smaller")).wait_for()
    shots(page, "09_oversized_upload_refused")
    assert "big.csv" not in {p.name for p in (root / ".uploads").rglob("*")}, "a refused upload reached the server"


def test_a_saved_yaml_fills_the_strategy_form(app_server, page, shots, tmp_path):
    url, _ = app_server
    saved = tmp_path / "run.yaml"
    data_file = DATA_FIXTURES / "reviews_latin1.csv"
    saved.write_text(f"name: from-yaml\ntask: single_label\ndata:\n  source: {data_file}\nmodel:\n  num_layers: 3\n"
                     "train:\n  epochs: 7\n  batch_size: 4\n", encoding="utf-8")
    page.goto(f"{url}/strategy")
    page.get_by_role("heading", name="Strategy").first.wait_for()
    page.get_by_text("Load a saved YAML config").click()
    page.locator('[data-testid="stSidebar"] [data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(saved))
    settle(page, 1000)
    page.get_by_text("3 of 6").wait_for()
    assert page.get_by_label("epochs", exact=True).input_value() == "7"
    assert page.get_by_label("batch size", exact=True).input_value() == "4"
    assert page.get_by_label("Run name", exact=True).input_value() == "from-yaml"
    shots(page, "10_strategy_loaded_from_yaml")

    # The YAML's data file shows on the Data page too, as a path (it is no upload).
    page.get_by_role("link", name="Data").first.click()
    page.get_by_role("heading", name="Data").wait_for()
    settle(page, 1000)
    assert page.get_by_label("File or folder", exact=True).input_value() == str(data_file)
    assert page.get_by_role("radio", name="Path on this machine").is_checked()
    shots(page, "11_data_from_yaml")
