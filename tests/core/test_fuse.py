"""Fusion (issue #15): ensembles average their members' probabilities, a soup of one member is that member,
weight merges reduce to the soup where the maths says they must, and members that can't be fused are refused
with the reason before anything is written."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from core import actions, compress, derived, fuse, jobs, runs
from core.access import Role, User
from core.derived import fuse_run
from core.evaluate import evaluate_run, run_predictor
from core.metrics import softmax
from core.recipe import run_training
from tests.core.test_recipe import quick_config

pytestmark = pytest.mark.slow
TEXTS = ["Shares in the bank rose after its results.", "The striker scored twice in the final.",
         "The minister defended the new budget.", "A new phone with a faster chip.", "The film won three awards."]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Two BBC-topic runs of the 2-layer model, same data, different seeds."""
    root = tmp_path_factory.mktemp("runs")
    return [run_training(quick_config(root, name=f"seed{seed}", data={"source": "sample:bbc_news", "max_train_samples": 240,
                                                                      "max_eval_samples": 120},
                                      train={"epochs": 2, "learning_rate": 3e-4, "seed": seed})).run_dir for seed in (1, 2)]


def weights(run_dir):
    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_a_uniform_soup_of_one_member_is_that_member(members):
    soup = fuse_run(members[:1], "soup").run_dir
    ours, theirs = weights(soup), weights(members[0])
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert run_predictor(soup).predict_texts(TEXTS)["predicted"].tolist() == \
        run_predictor(members[0]).predict_texts(TEXTS)["predicted"].tolist()


def test_an_ensembles_probabilities_are_its_members_average(members):
    outcome = fuse_run(members, "ensemble")
    ensemble = run_predictor(outcome.run_dir)
    expected = np.mean([softmax(run_predictor(m).logits(TEXTS)) for m in members], axis=0)
    assert np.allclose(softmax(ensemble.logits(TEXTS)), expected, atol=1e-6)
    # its report is on the members' shared test split, beside them
    report = outcome.report
    rows = pd.read_parquet(outcome.run_dir / "predictions.parquet")["row"].tolist()
    assert rows == pd.read_parquet(members[0] / "predictions.parquet")["row"].tolist()
    fusion = report["fusion"]
    member_values = [json.loads((m / "report.json").read_text())["test"]["headline"]["value"] for m in members]
    assert [m["value"] for m in fusion["members"]] == member_values
    assert fusion["vs_best"] == pytest.approx(report["test"]["headline"]["value"] - max(member_values))
    assert fusion["vs_mean"] == pytest.approx(report["test"]["headline"]["value"] - np.mean(member_values))
    assert report["derived"]["parents"] == [m.name for m in members]
    assert evaluate_run(outcome.run_dir)["metrics"]["accuracy"] == pytest.approx(report["test"]["metrics"]["accuracy"])
    # whole on its own: each member's model is inside (hard links), so the folder ships and loads alone
    assert sorted(p.name for p in (outcome.run_dir / "model" / "members").iterdir()) == sorted(m.name for m in members)


def test_weighted_and_voting_ensembles(members):
    ensemble = fuse_run(members, "ensemble", options={"weighting": "given", "weights": [3, 1]}).run_dir
    weighted = run_predictor(ensemble)
    p1, p2 = (softmax(run_predictor(m).logits(TEXTS)) for m in members)
    assert np.allclose(softmax(weighted.logits(TEXTS)), 0.75 * p1 + 0.25 * p2, atol=1e-6)
    # an ensemble is explained through its first member, and says so (issue #14)
    from core.explain import explainer_for_run

    explained = explainer_for_run(ensemble, steps=4, max_steps=4).explain(TEXTS[0])
    assert members[0].name in explained.through
    assert explained.output == pytest.approx(float(p1[0].max()), abs=1e-4)
    voting = run_predictor(fuse_run(members, "ensemble", options={"combine": "vote", "weighting": "given",
                                                                  "weights": [3, 1]}).run_dir)
    assert voting.predict_texts(TEXTS)["predicted"].tolist() == run_predictor(members[0]).predict_texts(TEXTS)["predicted"].tolist()


def test_task_arithmetic_of_halves_is_the_uniform_soup(members):
    # base + (d1 + d2) / 2 == (w1 + w2) / 2 for every pretrained weight; heads are averaged in both
    soup = weights(fuse_run(members, "soup").run_dir)
    merged = weights(fuse_run(members, "task_arithmetic", options={"weights": [0.5, 0.5]}).run_dir)
    assert soup.keys() == merged.keys()
    assert all(torch.allclose(soup[k], merged[k], atol=1e-5) for k in soup)
    ties = fuse_run(members, "ties", options={"density": 0.2})
    assert ties.report["fusion"]["head_from"] == "average" and any("classifier" in k for k in ties.report["fusion"]["head_parameters"])
    assert not all(torch.allclose(soup[k], w) for k, w in weights(ties.run_dir).items())  # trimming changed the weights


def test_a_greedy_soup_starts_from_the_best_member(members):
    best = max(members, key=lambda m: json.loads((m / "report.json").read_text())["validation"]["headline"]["value"])
    used = fuse_run(members, "soup", options=["recipe=greedy"]).report["fusion"]["members_used"]
    assert used[0] == best.name and set(used) <= {m.name for m in members}


def test_members_that_cant_be_fused_are_refused_with_the_reason(members, tmp_path):
    root = members[0].parent
    other = run_training(quick_config(root, name="other-data", data={"source": "sample:bbc_news", "max_train_samples": 64,
                                                                      "max_eval_samples": 40},
                                      train={"epochs": 1})).run_dir
    existing = set(root.iterdir())
    with pytest.raises(compress.CompressionError, match=r"trained on another split than .*max_eval_samples, max_train_samples"):
        fuse_run([members[0], other], "ensemble")
    with pytest.raises(compress.CompressionError, match="a run is named twice"):
        fuse_run([members[0], members[0]], "ensemble")
    with pytest.raises(compress.CompressionError, match="unknown method 'stack'"):
        fuse_run(members, "stack")
    with pytest.raises(compress.CompressionError, match="options.weights has 3 value"):
        fuse_run(members, "ensemble", options={"weighting": "given", "weights": [1, 2, 3]})

    def copy_of(run_dir, name, change):
        copy = root / name
        shutil.copytree(run_dir, copy)
        model_config = json.loads((copy / "model" / "config.json").read_text())
        change(model_config, copy)
        (copy / "model" / "config.json").write_text(json.dumps(model_config))
        return copy

    relabelled = copy_of(members[1], "relabelled", lambda c, _: c.update(id2label={k: v.upper() for k, v in c["id2label"].items()}))
    with pytest.raises(compress.CompressionError, match="must share the labels, in the same order"):
        fuse_run([members[0], relabelled], "ensemble")
    adapter = copy_of(members[1], "adapter-member", lambda c, _: c.update(tuneboard_adapter={"kind": "pfeiffer", "reduction_factor": 16}))
    with pytest.raises(compress.CompressionError, match="adapter-tuned model .* Ensemble it instead"):
        fuse_run([members[0], adapter], "soup")

    def deeper(model_config, copy):
        config = json.loads((copy / "config.json").read_text())
        config["model"]["num_layers"] = 3
        (copy / "config.json").write_text(json.dumps(config))

    other_base = copy_of(members[1], "other-base", deeper)
    with pytest.raises(compress.CompressionError, match="needs members fine-tuned from the same base model"):
        fuse_run([members[0], other_base], "ties")
    running = copy_of(members[1], "still-running", lambda c, copy: runs.write_status(copy, state="running"))
    with pytest.raises(compress.CompressionError, match="member still-running is running, not completed"):
        fuse_run([members[0], running], "ensemble")
    existing |= {relabelled, adapter, other_base, running}
    assert set(root.iterdir()) == existing  # nothing was made for a refused request


def test_an_operator_queues_a_fusion_for_the_worker_and_a_viewer_cant(members):
    root = members[0].parent
    run_id = actions.fuse(User("olga", Role.OPERATOR), [m.name for m in members], root, "ensemble", start_worker=False)
    job = jobs.latest_job(root, run_id)
    assert job.kind == "derive" and job.owner == "olga" and runs.read_status(root / run_id)["state"] == "queued"
    assert json.loads((root / run_id / "config.json").read_text())["derived"]["parents"] == [m.name for m in members]
    jobs.cancel(run_id, root)
    from core.access import AccessDenied

    with pytest.raises(AccessDenied):
        actions.fuse(User("vic", Role.VIEWER), [m.name for m in members], root, "ensemble", start_worker=False)


def test_cli_fuse_prints_the_members_beside_the_fused_run(members, capsys):
    from core.__main__ import main

    assert main(["fuse", *map(str, members), "--method", "ensemble", "--weights", "1,1", "--name", "cli-ensemble"]) == 0
    out = capsys.readouterr().out
    made = next(r for r in runs.list_runs(members[0].parent) if r.name == "cli-ensemble")
    assert made.derived_method == "ensemble" and made.parents == tuple(m.name for m in members)
    assert [line.split()[1] for line in out.splitlines() if line.startswith("member")] == [m.name for m in members]
    assert "to the best member" in out and "to the members' mean" in out
    assert main(["fuse", str(members[0]), "nope", "--method", "soup"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_a_ner_ensemble_averages_per_word(tmp_path):
    config = {"task": "token", "data": {"source": "sample:wnut16", "max_train_samples": 200, "max_eval_samples": 60},
              "train": {"epochs": 1, "learning_rate": 3e-4, "metric_for_best": "f1"}}
    ner = [run_training(quick_config(tmp_path, name=f"ner{s}", **{**config, "train": {**config["train"], "seed": s}})).run_dir
           for s in (1, 2)]
    outcome = fuse_run(ner, "ensemble")
    sentences = [s.split() for s in pd.read_parquet(ner[0] / "predictions.parquet")["text"].tolist()[:10]]
    expected = [np.mean([p[i] for p in (run_predictor(m).word_probabilities(sentences) for m in ner)], axis=0)
                for i in range(len(sentences))]
    names = run_predictor(ner[0]).names
    assert run_predictor(outcome.run_dir).predict_tokens(sentences) == [[names[j] for j in e.argmax(-1)] for e in expected]
    assert outcome.report["test"]["headline"]["name"] == "f1" and derived.lineage(outcome.report)["method"] == "ensemble"


def test_weights_typed_in_the_compare_pages_box_are_read_or_refused():
    from core.config import ConfigError

    ensemble = fuse.METHODS["ensemble"]
    assert compress.parse_options(ensemble, {"weighting": "given", "weights": "3, 1"}).weights == [3.0, 1.0]
    assert compress.parse_options(ensemble, {"weights": ""}).weights == []
    with pytest.raises(ConfigError, match="options.weights: 'three, one': write numbers separated by commas"):
        compress.parse_options(fuse.METHODS["ties"], {"weights": "three, one"})
