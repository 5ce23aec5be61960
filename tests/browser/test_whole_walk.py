"""The whole walk a new user takes, at 1280 × 720 and 1600 × 1000, checked by content at every step:

upload a 3-class CSV → map its columns → pre-flight every strategy (at 1280) → train → refresh mid-run →
cancel → resume → the evaluation → every confusion cell lists its own examples (at 1600: the corners) →
try it → error analysis → predict a file → compare → a deep link in a fresh browser shows the same run.
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import time

import pandas as pd
import pytest

from core import runs
from core.data import load_sample
from core.events import read_events
from tests.browser.helpers import (
    LOSS_POINTS_JS,
    choose,
    download_csv,
    open_every_confusion_cell,
    progress_step,
    set_number,
    settle,
    upload_on_data_page,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# the names of the curves every Plotly chart on the page draws (a single curve shows no legend)
TRACE_NAMES_JS = "[...document.querySelectorAll('.js-plotly-plot')].flatMap(p => (p.data || []).map(t => t.name || ''))"
WIDTHS = [{"width": 1280, "height": 720}, {"width": 1600, "height": 1000}]


def critics_csv(path, seed: int) -> pd.DataFrame:
    """1,500 reviews, 500 of each verdict, with columns named as a user's file names them (no text/label)."""
    frame, _ = load_sample("rotten_tomatoes_3way")
    picked = frame.groupby("label", group_keys=False).sample(500, random_state=seed).sample(frac=1, random_state=seed)
    data = pd.DataFrame({"critic": [f"critic {i % 17}" for i in range(len(picked))], "review": picked["text"].to_numpy(),
                         "verdict": picked["label"].to_numpy()})
    data.to_csv(path, index=False)
    return data


@pytest.mark.parametrize("viewport", WIDTHS, indirect=True, ids=["1280", "1600"])
def test_the_whole_walk(app_server, page, browser, shots, tmp_path, viewport, record_property):
    url, root = app_server
    width = viewport["width"]
    name = f"walk-{width}"
    shot = iter(range(1, 100))

    def snap(what: str) -> None:
        shots(page, f"walk_{width}_{next(shot):02d}_{what}")

    # --- upload and map -------------------------------------------------------------------------------
    data = critics_csv(tmp_path / "critics.csv", seed=width)
    upload_on_data_page(page, url, tmp_path / "critics.csv")
    choose(page, "Text", "review")
    choose(page, "Label", "verdict")
    page.get_by_text("Splits and subset").click()
    # 1,200 rows, 2 epochs at batch 8 is 300 steps: long enough that a refresh and a cancel land mid-run
    set_number(page, "max training rows", "1200")
    set_number(page, "max validation/test rows", "90")
    page.locator('[data-testid="stMetricValue"]', has_text=re.compile(r"^1,200$")).wait_for()
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    snap("data_mapped")

    # --- strategy and the pre-flight of every strategy ------------------------------------------------
    page.get_by_text("Next: choose the model and strategy").click()
    page.get_by_role("heading", name="Strategy").first.wait_for()
    page.get_by_text("critics.csv (uploaded)").wait_for()
    run_name = page.get_by_label("Run name", exact=True)
    run_name.fill(name)
    run_name.press("Enter")
    settle(page)
    for label, value in (("num layers", "2"), ("max length", "32"), ("epochs", "2"), ("batch size", "8"),
                         ("learning rate", "0.0003"), ("log every", "1")):
        set_number(page, label, value)
    page.get_by_text("2 of 6").wait_for()  # the model facts follow the truncation
    # Every strategy at once, in one pre-flight process: a line each; freeze (4 layers by default, of 2)
    # keeps its line, with the reason, and the others still have their numbers. At 1280 only: its table's
    # layout does not depend on the width, and the pre-flight costs a sixth of the walk.
    if width == 1280:
        page.get_by_role("button", name=re.compile("^Compare every strategy")).click()
        page.get_by_text("at the learning rate a comparison gives it (yours for full)").wait_for(timeout=180_000)
        table = page.locator('[data-testid="stDataFrame"]').last
        table.locator("td", has_text=re.compile(r"^full$")).wait_for(state="attached")  # glide-data-grid's accessible copy of its canvas
        cells = table.locator("td").all_text_contents()  # the rows in view (the grid draws only those)
        assert {"full", "head_only", "bitfit", "lora"} <= set(cells), cells[:30]
        freeze = table.locator("tr", has=page.locator("td", has_text=re.compile(r"^freeze$")))
        assert "only 2 encoder layers" in freeze.text_content()
        full = table.locator("tr", has=page.locator("td", has_text=re.compile(r"^full$"))).locator("td").all_text_contents()
        assert full[2:4] == ["100", "0.0003"], full  # every weight trains, at the user's rate (raw values: the grid's a11y copy)
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        table.scroll_into_view_if_needed()
        snap("every_strategy_preflight")

    # --- train, refresh, cancel, resume ---------------------------------------------------------------
    started = time.monotonic()
    page.get_by_role("button", name="Start training").click()
    page.get_by_role("heading", name="Training").wait_for()
    run_id = re.search(r"run=([^&]+)", page.url).group(1)
    run_dir = root / run_id
    config = runs.read_json(run_dir / runs.CONFIG)  # what trains is what the user set
    assert config["name"] == name and config["model"]["num_layers"] == 2 and config["train"]["epochs"] == 2
    assert config["data"]["text_column"] == "review" and config["data"]["label_column"] == "verdict"
    assert config["data"]["source"].endswith("critics.csv") and config["data"]["max_train_samples"] == 1200
    page.wait_for_function(LOSS_POINTS_JS, timeout=120_000)
    record_property("start_to_first_loss_point_s", round(time.monotonic() - started, 2))
    first_step = progress_step(page)
    snap("training_first_loss_point")
    page.wait_for_function(f"""() => {{
      const m = (document.querySelector('[data-testid="stProgress"]') || {{}}).innerText?.match(/step ([\\d,]+) of/);
      return m && parseInt(m[1].replace(/,/g, '')) > {first_step};
    }}""", timeout=60_000)  # the status redraws every 5 s

    before = progress_step(page)  # a refresh mid-run reattaches to the same run
    run_url = page.url
    page.reload()
    page.get_by_role("heading", name="Training").wait_for()
    page.wait_for_function(LOSS_POINTS_JS, timeout=30_000)
    assert page.url == run_url
    assert "Training: step" in page.locator('[data-testid="stProgress"]').first.inner_text(), "the run ended before the refresh"
    assert progress_step(page) >= before
    snap("training_after_refresh")

    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Resume").wait_for()  # the page offers it once the run has stopped
    assert runs.read_status(run_dir)["state"] == "cancelled"
    cancelled_at = runs.read_json(run_dir / runs.REPORT) if (run_dir / runs.REPORT).exists() else None
    assert cancelled_at is None, "a cancelled run has no report yet"
    snap("training_cancelled")
    page.get_by_role("button", name="Resume").click()
    # When the watched run completes, the page takes the user to its evaluation.
    page.get_by_role("heading", name="Evaluation").wait_for(timeout=300_000)
    events = read_events(run_dir / runs.EVENTS)[0]
    starts = [e for e in events if e["type"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_from_step"] > 0, starts
    report = runs.read_json(run_dir / runs.REPORT)
    assert report["steps"]["done"] == starts[0]["total_steps"] == 300
    page.get_by_text(run_id).first.wait_for()  # the caption names the run that trained
    page.locator(".js-plotly-plot .scatterlayer .trace .point").first.wait_for()
    snap("evaluation")

    # --- every confusion cell lists its own examples ---------------------------------------------------
    truth = pd.read_parquet(run_dir / runs.PREDICTIONS)
    labels = report["labels"]
    assert labels == ["fresh", "plot", "rotten"]
    def explained_cell(i: int, j: int) -> None:
        # a cell's examples come with why the model said its label: the first one explained, in words
        settle(page)
        if ((truth["gold"] == labels[i]) & (truth["predicted"] == labels[j])).any():
            legend = page.get_by_text("raised the probability of").filter(visible=True)
            legend.wait_for(timeout=60_000)
            assert f"raised the probability of {labels[j]}" in legend.inner_text()
        if (i, j) == (2, 0):
            snap("confusion_cell")

    # Every cell at 1280 × 720 (where the top row once hid under the header); at 1600 the corners and the
    # cell of the screenshot: the matrix is drawn at its own size at any width, and nine cells cost 15 s.
    only = None if width == 1280 else {(0, 0), (0, 2), (2, 0), (2, 2)}
    counts = open_every_confusion_cell(page, labels, truth, on_cell=explained_cell, only=only)
    assert sum(counts) == len(truth) == report[report["eval_split"]]["num_examples"]  # every cell's number, read off the chart

    # --- try it: the page's prediction is the run's own ---------------------------------------------
    from core.evaluate import predict_table, run_predictor

    sentence = "A warm, funny and beautifully acted film."
    expected = run_predictor(run_dir).predict_texts([sentence])
    page.get_by_role("tab", name="Try it").click()
    page.get_by_label("Text", exact=True).fill(sentence)
    page.get_by_label("Text", exact=True).press("Control+Enter")
    settle(page)
    page.get_by_role("button", name="Predict", exact=True).click()
    prediction = page.locator('[data-testid="stMetric"]', has_text="Prediction")
    prediction.wait_for()
    assert prediction.locator('[data-testid="stMetricValue"]').inner_text() == expected.loc[0, "predicted"]
    assert f"confidence {expected.loc[0, 'confidence']:.3f}" in prediction.inner_text()
    # why: every word of the sentence, coloured by its attribution, the legend naming the predicted label
    legend = page.get_by_text("raised the probability of").filter(visible=True)
    legend.wait_for(timeout=60_000)
    words = page.locator("span[title]").filter(visible=True)
    assert words.all_text_contents() == sentence.split()
    assert f"raised the probability of {expected.loc[0, 'predicted']}" in legend.inner_text()
    snap("try_it")

    # --- error analysis: slices by length, confidence and the file's own critic column ------------------
    page.get_by_role("tab", name="Error analysis").click()
    page.get_by_text("Analyse this run's errors").click()
    page.get_by_text("Where the model fails").wait_for(timeout=60_000)
    page.get_by_text("Likely label errors", exact=True).wait_for(timeout=60_000)
    titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()
    assert {"Accuracy by text length", "Accuracy by confidence", "Accuracy by critic"} <= set(titles), titles
    snap("error_analysis")

    # --- predict a file: its own columns stay, the predictions are the run's ---------------------------
    new = tmp_path / "new reviews.csv"
    data.head(12).assign(review=lambda d: d["review"].str.upper()).to_csv(new, index=False)
    page.get_by_role("tab", name="Predict a file").click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(str(new))
    settle(page, 1000)
    page.get_by_role("button", name="Predict the file").click()
    settle(page, 1000)
    rows = download_csv(page, "Download predictions (CSV)")
    assert [r["critic"] for r in rows] == data["critic"].head(12).tolist()
    assert [r["verdict"] for r in rows] == data["verdict"].head(12).tolist()  # the gold label the user had stays
    assert [r["predicted"] for r in rows] == predict_table(run_dir, new)["predicted"].tolist()
    snap("predict_a_file")

    # --- compare: find the run, tick it, its curves draw ------------------------------------------------
    page.get_by_role("link", name="Compare").first.click()
    page.get_by_role("heading", name="Compare").wait_for()
    search = page.get_by_role("textbox", name="Search", exact=True)
    search.fill(name)
    search.press("Enter")
    settle(page, 800)
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.locator("td", has_text=re.compile(re.escape(name))).first.wait_for(state="attached")
    assert len({t for t in grid.locator("td").all_text_contents() if name in t}) == 1  # the search kept this run only
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's tick box (rows and header are 35 px)
    settle(page, 800)
    page.get_by_text("Training loss").wait_for()
    page.wait_for_function(TRACE_NAMES_JS + f".some(n => n.startsWith('{name} · '))", timeout=30_000)
    traces = [t for t in page.evaluate(TRACE_NAMES_JS) if t]
    assert traces and all(t.startswith(f"{name} · ") and t.endswith(run_id[-4:]) for t in traces), traces  # only the ticked run
    snap("compare")

    # --- a deep link, opened by a teammate in a fresh browser, shows this run's evaluation --------------
    other = browser.new_context(viewport=viewport)
    try:
        teammate = other.new_page()
        teammate.goto(f"{url}/?page=evaluation&run={run_id}")
        teammate.get_by_role("heading", name="Evaluation").wait_for(timeout=30_000)
        teammate.get_by_text(run_id).first.wait_for()
        assert f"run={run_id}" in teammate.url
        teammate.locator(".js-plotly-plot .scatterlayer .textpoint text").first.wait_for()
        drawn = [int(c) for c in teammate.locator(".js-plotly-plot .scatterlayer .textpoint text").all_text_contents()]
        assert drawn == counts
        shots(teammate, f"walk_{width}_{next(shot):02d}_deep_link")
    finally:
        other.close()
