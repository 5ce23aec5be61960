"""The dashboard's server-side drafts, kept uploads and spreadsheet-safe exports (no browser needed)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from core import drafts
from core.exports import safe_frame, spreadsheet_safe, to_csv_bytes
from core.uploads import replace_upload_paths, save_upload


def test_a_draft_survives_a_new_process_and_drafts_stay_apart(tmp_path):
    first, second = drafts.new_draft_id(), drafts.new_draft_id()
    drafts.save_draft(tmp_path, first, {"cfg.train.epochs": 5.0, "data_source_kind": "Upload a file", "obj": object()})
    drafts.save_draft(tmp_path, second, {"cfg.train.epochs": 2.0})
    # a server restart is a new process reading the same file
    code = f"from core.drafts import load_draft; print(load_draft({str(tmp_path)!r}, {first!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'cfg.train.epochs': 5.0" in out and "obj" not in out  # what isn't JSON is left out, not a crash
    assert drafts.load_draft(tmp_path, second) == {"cfg.train.epochs": 2.0}
    # a page that doesn't draw the Data page's pickers saves without them: they stay in the draft
    drafts.save_draft(tmp_path, first, {"cfg.train.epochs": 6.0})
    assert drafts.load_draft(tmp_path, first) == {"cfg.train.epochs": 6.0, "data_source_kind": "Upload a file"}


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABCDEF0123456789", "", None, "0" * 15])
def test_a_draft_id_from_a_url_cannot_name_another_file(tmp_path, bad):
    assert drafts.load_draft(tmp_path, bad) is None
    with pytest.raises(ValueError):
        drafts.draft_path(tmp_path, bad)


def test_exports_never_run_as_formulas():
    assert spreadsheet_safe("=SUM(A1)") == "'=SUM(A1)" and spreadsheet_safe("@cmd") == "'@cmd"
    assert spreadsheet_safe("+1") == "'+1" and spreadsheet_safe("\tx") == "'\tx"
    assert spreadsheet_safe(-0.5) == -0.5 and spreadsheet_safe("plain") == "plain"
    frame = pd.DataFrame({"text": ["-rm", "fine"], "p": [-1.0, 0.5], "=bad": ["x", "y"]})
    safe = safe_frame(frame)
    assert safe["text"].tolist() == ["'-rm", "fine"] and safe["p"].tolist() == [-1.0, 0.5] and list(safe.columns)[2] == "'=bad"
    assert frame["text"].tolist() == ["-rm", "fine"]  # the caller's frame is not modified
    assert to_csv_bytes(frame).startswith(b"\xef\xbb\xbf")  # a BOM: Excel reads UTF-8


def test_uploads_are_kept_once_inside_their_folder_and_named_back(tmp_path):
    a = save_upload(tmp_path, "C:\\Users\\me\\reviews.csv", b"text,label\n")
    b = save_upload(tmp_path, "reviews.csv", b"text,label\n")
    c = save_upload(tmp_path, "reviews.csv", b"other,content\n")
    assert a == b and a != c and a.name == "reviews.csv" and a.read_bytes() == b"text,label\n"
    assert all(p.resolve().is_relative_to((tmp_path / ".uploads").resolve()) for p in (a, c))
    message = f"{a}: row 3, column 'label': the label is empty"
    assert replace_upload_paths(message, tmp_path) == "reviews.csv: row 3, column 'label': the label is empty"
