"""The CLI through its real entry point: bad input gets one clear paragraph and a non-zero exit, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO


def cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    """The real entry point in a subprocess (slow: a fresh interpreter imports torch)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TUNEBOARD_HOME": str(root)}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def run_cli(capsys, monkeypatch, tmp_path):
    """The same CLI in-process: ``main(argv)`` → CompletedProcess-like (returncode, stdout, stderr)."""
    from core.__main__ import main

    monkeypatch.setenv("TUNEBOARD_HOME", str(tmp_path))
    monkeypatch.chdir(REPO)

    def call(*args: str) -> subprocess.CompletedProcess:
        code = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return call


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.epochz=2"], "did you mean 'epochs'"),
        (["train.batch_size=0"], "train.batch_size: 0 is below the minimum 1"),
        (["model.name=/nonexistent/model"], "does not exist"),
        (["data.source=sample:nope"], "nope"),
        (["task=ner"], "task"),
    ],
)
def test_bad_config_values_exit_2_with_a_message(run_cli, overrides, expected):
    args = ["train", "--config", "examples/rotten_tomatoes.yaml"]
    for o in overrides:
        args += ["--set", o]
    proc = run_cli(*args)
    assert proc.returncode in (1, 2), proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_folder_that_is_not_a_model(run_cli, tmp_path):
    (tmp_path / "notamodel").mkdir()
    proc = run_cli("train", "--config", "examples/rotten_tomatoes.yaml", "--set", f"model.name={tmp_path / 'notamodel'}")
    assert proc.returncode == 1 and "is not a model" in proc.stderr and "config.json" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hub_id_offline_fails_fast_with_what_to_do(tmp_path):
    proc = cli("train", "--config", "examples/rotten_tomatoes.yaml", "--set", "model.name=some-org/some-bert", root=tmp_path)
    assert proc.returncode == 1
    assert "HF_HUB_OFFLINE" in proc.stderr and "Traceback" not in proc.stderr
    # the failed run is recorded, not lost
    listed = cli("runs", root=tmp_path).stdout
    assert "failed" in listed


def test_missing_config_file_and_unknown_run(run_cli):
    proc = run_cli("train", "--config", "nope.yaml")
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = run_cli("predict", "no-such-run", "--data", "x.csv", "--out", "y.csv")
    assert proc.returncode == 2 and "no run 'no-such-run'" in proc.stderr


def test_bad_data_file_names_file_row_and_fix(run_cli, tmp_path):
    bad = tmp_path / "reviews.csv"
    bad.write_text("text,label\ngood film,pos\n,neg\nbad film,\nfine,pos\nawful,neg\n")
    proc = run_cli("train", "--config", "examples/rotten_tomatoes.yaml", "--set", f"data.source={bad}",
                   "--set", "data.max_train_samples=null")
    assert proc.returncode == 1
    assert "reviews.csv" in proc.stderr and "row" in proc.stderr and "Fix" in proc.stderr


def test_samples_lists_every_bundled_sample(run_cli):
    out = run_cli("samples").stdout
    for name in ("rotten_tomatoes", "rotten_tomatoes_3way", "bbc_news", "wnut16", "chinese_reviews", "peoples_daily_ner"):
        assert f"sample:{name}" in out
    assert "Chinese-capable" in out or "bert-base-chinese" in out
