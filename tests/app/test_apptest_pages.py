"""Each dashboard page rendered headless by streamlit's AppTest against a seeded runs folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.paths import APP as APP_PATH
from tests.support.seeded import seeded_root

APP = str(APP_PATH)

pytestmark = pytest.mark.slow


@pytest.fixture
def seeded(monkeypatch) -> dict[str, str]:
    seeded = seeded_root()
    monkeypatch.setenv("TUNEBOARD_HOME", seeded["root"])
    return seeded


def app(run: str | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if run:
        at.query_params["run"] = run
    if page:
        at.query_params["page"] = page
    return at


def open_page(page: str, run: str | None = None) -> AppTest:
    at = app(run)
    at.run()
    at.switch_page(f"app_pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_data_file(path: Path) -> AppTest:
    """The Data page with ``path`` typed into "Path on this machine"."""
    at = open_page("data")
    at.radio(key="data_source_kind").set_value("Path on this machine").run()
    at.text_input(key="data_path").input(str(path)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption] + [m.value for m in at.title]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info] + [s.value for s in at.subheader]
    return "\n".join(map(str, parts))


def test_training_page_shows_a_completed_run(seeded):
    at = open_page("training", seeded["completed"])
    assert seeded["completed"] in texts(at)
    bar = at.get("progress")[0]
    assert bar.proto.value == 100 and "Completed" in bar.proto.text
    assert {m.label for m in at.metric} >= {"Epoch", "Elapsed", "ETA", "Samples/s"}
    assert len(at.get("plotly_chart")) >= 2


def test_training_page_shows_a_failure_in_words(seeded):
    at = open_page("training", seeded["failed"])
    assert any("row 7" in e.value and "Fix:" in e.value for e in at.error)


def test_training_page_shows_progress_of_a_running_run(seeded):
    at = open_page("training", seeded["running"])
    bar = at.get("progress")[0]
    assert bar.proto.value == 25 and "step 10 of 40" in bar.proto.text
    assert any(b.label == "Cancel" for b in at.button)


def test_half_written_and_missing_runs_are_explained_not_crashed(seeded):
    at = open_page("training", seeded["half"])
    assert any("incomplete" in e.value for e in at.error)
    for page in ("training", "evaluation"):
        at = open_page(page, "20990101-gone-ffff")
        assert any("20990101-gone-ffff" in e.value and "not found" in e.value for e in at.error), page


def test_deep_link_opens_the_evaluation_of_a_run(seeded):
    at = app(seeded["completed"], "evaluation")
    at.run()
    assert not at.exception
    assert any(t.value == "Evaluation" for t in at.title)
    assert at.query_params.get("run") in (seeded["completed"], [seeded["completed"]])
    labels = {m.label for m in at.metric}
    assert "f1 macro" in labels and "accuracy" in labels
    assert any(df.value.columns.tolist()[:2] == ["label", "precision"] for df in at.dataframe)
    downloads = [d.proto.label for d in at.get("download_button")]
    assert "Download the model (.zip)" in downloads
    assert len(at.get("plotly_chart")) >= 3  # confusion matrix, ROC, PR (+ reliability)


def test_evaluation_of_an_unfinished_run_says_why(seeded):
    at = open_page("evaluation", seeded["running"])
    assert any("still training" in w.value for w in at.warning)
    at = open_page("evaluation", seeded["failed"])
    assert any("row 7" in e.value for e in at.error)


def test_data_page_loads_a_sample_with_sizes_checks_and_token_lengths(seeded):
    at = open_page("data")
    assert at.selectbox(key="data_sample").value == "rotten_tomatoes"
    labels = {m.label: m.value for m in at.metric}
    assert int(labels["train"].replace(",", "")) > 5000 and labels["labels"] == "2"
    assert "truncated at max_length" in labels and "duplicate training texts" in labels
    assert at.session_state["cfg.data.source"] == "sample:rotten_tomatoes"
    at.number_input[2].set_value(300).run()  # max training rows
    assert {m.label: m.value for m in at.metric}["train"] == "300"
    assert at.session_state["cfg.data.max_train_samples"] == 300


def test_data_page_shows_a_bad_file_as_a_message(seeded, tmp_path):
    bad = tmp_path / "reviews.csv"
    bad.write_text("text,label\nfine film,pos\n\"unterminated,neg\n", encoding="utf-8")
    at = open_data_file(bad)
    assert at.error and "reviews.csv" in at.error[0].value
    at.text_input(key="data_path").input(str(tmp_path / "nope.csv")).run()
    assert not at.exception and "nope.csv" in at.error[0].value


def test_strategy_form_is_built_from_the_config_metadata(seeded):
    at = open_page("strategy")
    assert not at.error
    epochs = at.number_input(key="cfg.train.epochs")
    assert epochs.value == 3.0 and "Passes over the training data" in epochs.help
    assert at.number_input(key="cfg.train.batch_size").max == 4096
    assert at.selectbox(key="cfg.train.scheduler").options == ["linear", "cosine", "constant"]
    # only the chosen strategy's options are shown
    assert not any(w.key == "cfg.strategy.lora_r" for w in at.number_input)
    at.number_input(key="cfg.model.num_layers").set_value(2).run()
    assert any("| layers | 2 of 6 |" in m.value for m in at.markdown)
    at.number_input(key="cfg.train.batch_size").set_value(0).run()  # below the bound: refused by the widget
    assert at.number_input(key="cfg.train.batch_size").value != 0 or at.error


def test_strategy_preflight_and_start_queue_a_run(monkeypatch, tmp_path):
    from core import jobs, runs

    root = tmp_path / "runs"
    monkeypatch.setenv("TUNEBOARD_HOME", str(root))
    at = app()
    at.session_state["cfg.data.max_train_samples"] = 48
    at.session_state["cfg.data.max_eval_samples"] = 32
    at.run()
    at.switch_page("app_pages/strategy.py").run()
    at.number_input(key="cfg.model.num_layers").set_value(2).run()
    at.number_input(key="cfg.model.max_length").set_value(32).run()
    at.number_input(key="cfg.train.epochs").set_value(1.0).run()
    at.button[0].click().run()  # pre-flight
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = {m.label: m.value for m in at.metric}
    assert shown["trainable share"] == "100.00%" and shown["time per epoch (estimate)"] != "–"
    yaml_text = next(c.value for c in at.code if c.language == "yaml")
    assert "num_layers: 2" in yaml_text and "output_dir" not in yaml_text  # it follows $TUNEBOARD_HOME where it is run
    try:
        at.button(key="start").click().run()
        assert not at.exception
        queued = runs.list_runs(root)
        assert len(queued) == 1 and queued[0].state in ("queued", "running")
        assert at.query_params.get("run") in (queued[0].run_id, [queued[0].run_id])
    finally:
        jobs.stop_worker(root)


def test_compare_page_lists_and_filters_runs(seeded):
    at = open_page("compare")
    from core import runs
    from ui.runview import short_label

    names = {r.run_id: r.name for r in runs.list_runs(seeded["root"])}

    def label(run_id: str, _: str) -> str:
        return short_label(run_id, names[run_id])

    table = at.dataframe[0].value
    # shown as "name · time · suffix" so that every column fits; the ids stay behind the selection
    assert {label(seeded["completed"], "seeded"), label(seeded["failed"], "broken-data"), label(seeded["running"], "live")} \
        <= set(table["run"])
    at.multiselect(key="cmp_states").set_value(["completed"]).run()
    assert at.dataframe[0].value["run"].tolist() == [label(seeded["completed"], "seeded")]
    assert any("Tick at least one run" in i.value for i in at.info)


def test_data_page_shows_ner_sentences_with_their_entities(seeded):
    at = app()
    at.session_state["cfg.data.source"] = "sample:wnut16"
    at.run()
    assert not at.exception
    assert at.selectbox(key="data_sample").value == "wnut16" and at.selectbox(key="data_task").value == "token"
    assert {m.label: m.value for m in at.metric}["entity types"] == "10"
    spans = [m.value for m in at.markdown if "border-radius:6px" in m.value]
    assert len(spans) >= 3 and any(t in "".join(spans) for t in (">person<", ">geo-loc<", ">company<"))


def test_repeated_and_leaked_texts_are_offered_for_dropping(seeded, tmp_path):
    data = tmp_path / "statements.csv"
    rows = ["text,label", *["the same words here,a"] * 3, "conflict text now,a", "conflict text now,b"]
    rows += [f"unique text number {i} here,{'ab'[i % 2]}" for i in range(30)]
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    at = open_data_file(data)
    offer = at.button(key="drop_duplicates_offer")
    assert "repeated or leaked rows found" in offer.label
    offer.click().run()
    assert at.checkbox(key="data_drop_duplicates").value is True
    assert at.session_state["cfg.data.drop_duplicates"] is True
    warnings = " ".join(w.value for w in at.warning)
    assert "dropped 1 text found with more than one label" in warnings and "dropped 2 repeated texts" in warnings
    assert {m.label: m.value for m in at.metric}["duplicate training texts"] == "0"
    assert not [b for b in at.button if b.key == "drop_duplicates_offer"]


def test_a_one_column_file_names_the_label_picker_once(seeded, tmp_path):
    data = tmp_path / "statements.csv"
    data.write_text("statement\nhello there friend\nanother one here\nthird text row\n", encoding="utf-8")
    at = open_data_file(data)
    messages = [m.value for m in [*at.error, *at.warning] if "label" in m.value.lower()]
    assert len(messages) == 1, messages
    assert "the Label picker" in messages[0] and "data.label_column" not in messages[0]


def test_the_queue_counts_what_is_running_and_shows_no_glyphs(seeded):
    at = open_page("training", seeded["completed"])
    header = next(e.label for e in at.expander if e.label.startswith("Queue and history"))
    assert "1 running, 0 queued" in header  # the seeded live run, counted from its directory
    table = at.dataframe[0].value
    assert list(table.columns[:2]) == ["run", "state"]  # no icon column: chromium drew its emoji as boxes


def test_evaluation_of_a_derived_run_names_its_parent_and_what_it_cost(seeded, tmp_path, monkeypatch):
    import shutil

    from core.derived import compress_run

    root = tmp_path / "runs"  # its own root: the seeded one's run counts are other tests' facts
    parent = root / seeded["completed"]
    shutil.copytree(Path(seeded["root"]) / seeded["completed"], parent)
    derived = compress_run(parent, "int8")
    monkeypatch.setenv("TUNEBOARD_HOME", str(root))
    at = app(derived.run_dir.name, "evaluation")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    said = " ".join(i.value for i in at.info)
    value = derived.report["derived"]["headline"]["value"]
    assert f"**int8** of run `{parent.name}`" in said and f"{value:.4f} against the parent's" in said
    assert {"f1 macro", "accuracy"} <= {m.label for m in at.metric}
    assert len(at.get("plotly_chart")) >= 1  # its own confusion matrix, from its own predictions


def legacy_root(tmp_path: Path, monkeypatch) -> tuple[Path, str]:
    """A runs root holding a copy of the fixture run (a completed run of a tiny 1-layer BERT)."""
    import shutil

    from tests.support.paths import REPO

    run_id = "20261202-211038-legacy-full-bb0a"
    root = tmp_path / "runs"
    shutil.copytree(REPO / "tests" / "fixtures" / "legacy_run" / run_id, root / run_id)
    monkeypatch.setenv("TUNEBOARD_HOME", str(root))
    return root, run_id


def test_deploy_page_queues_the_ticked_methods_with_their_options(monkeypatch, tmp_path):
    from core import jobs

    root, run_id = legacy_root(tmp_path, monkeypatch)
    monkeypatch.setattr(jobs, "ensure_worker", lambda *a, **k: False)  # queued, not made: the worker is tested elsewhere
    at = open_page("deploy", run_id)
    assert "No variants of this run yet" in texts(at)
    at.checkbox(key="deploy_method_int8").check()
    at.checkbox(key="deploy_method_distill").check()
    at.number_input(key="deploy_opt_distill_alpha").set_value(0.7)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Queued 2 variant(s)" in "\n".join(s.value for s in at.success)
    queued = {j.run_id: j for j in jobs.list_jobs(root, ("queued",))}
    assert len(queued) == 2 and {j.kind for j in queued.values()} == {"derive"}
    configs = {json.loads((root / r / "config.json").read_text())["derived"]["method"]: json.loads((root / r / "config.json").read_text())
               for r in queued}
    assert configs["distill"]["derived"]["options"]["alpha"] == 0.7 and configs["int8"]["derived"]["parents"] == [run_id]
    table = at.dataframe[0].value
    assert sorted(table["method"]) == ["distill", "int8", "original"]
    assert set(table.loc[table["method"] != "original", "state"]) == {"queued"}


def test_deploy_page_refuses_a_bad_option_and_queues_nothing(monkeypatch, tmp_path):
    from core import jobs

    root, run_id = legacy_root(tmp_path, monkeypatch)
    monkeypatch.setattr(jobs, "ensure_worker", lambda *a, **k: False)
    at = open_page("deploy", run_id)
    at.checkbox(key="deploy_method_int8").check()
    at.checkbox(key="deploy_method_prune-layers").check()
    at.text_input(key="deploy_opt_prune-layers_drop").input("top:1")
    at.button[0].click().run()
    assert "drops all 1 layers; keep at least one" in "\n".join(e.value for e in at.error).replace("\\", "")  # shown literally
    assert jobs.list_jobs(root, ("queued",)) == []  # int8 was fine, but nothing is queued when one method is refused


def test_deploy_page_shows_a_made_variant_beside_its_run(monkeypatch, tmp_path):
    from core.derived import compress_run

    root, run_id = legacy_root(tmp_path, monkeypatch)
    variant = compress_run(root / run_id, "int8").run_dir.name
    at = open_page("deploy", run_id)
    table = at.dataframe[0].value
    row = table[table["run_id"] == variant].iloc[0]
    # (this tiny 1-layer BERT is mostly embeddings: its int8 weights are no smaller; test_compress checks the saving)
    assert row["method"] == "int8" and row["state"] == "completed" and row["weights_mb"] > 0
    assert row["p50_ms"] > 0 and row["speedup"] > 0
    at.selectbox(key="deploy_pick").set_value(variant).run()
    assert "quantizes them to int8 when it loads them" in texts(at)
    assert any(f"core serve {variant}" in c.value for c in at.code)
    # a variant is a run: its training page and its evaluation open as any run's
    assert variant in texts(open_page("training", variant))
    assert f"of run `{run_id}`, evaluated on the parent's test split" in "\n".join(i.value for i in open_page("evaluation", variant).info)
