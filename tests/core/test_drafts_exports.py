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


def test_uploads_are_kept_per_user_and_the_name_never_chooses_the_folder(tmp_path):
    from core.uploads import UPLOADS, is_upload, upload_name

    alice = save_upload(tmp_path, "../../../etc/reviews.csv", b"text,label\n", owner="alice")
    bob = save_upload(tmp_path, "reviews.csv", b"text,label\n", owner="bob")
    assert alice != bob and alice.parent.parent == tmp_path / UPLOADS / "alice" and bob.parent.parent.name == "bob"
    assert alice.name == bob.name == "reviews.csv" and is_upload(alice, tmp_path) and upload_name(str(bob), tmp_path) == "reviews.csv"
    assert replace_upload_paths(f"{alice}: row 2 is empty", tmp_path) == "reviews.csv: row 2 is empty"


def test_old_uploads_that_no_unfinished_run_reads_are_cleaned(tmp_path):
    import os
    import time

    from core import runs
    from core.uploads import clean_old

    root = tmp_path / "runs"
    old_unused = save_upload(root, "a.csv", b"text,label\na,x\n", owner="alice")
    old_needed = save_upload(root, "b.csv", b"text,label\nb,y\n", owner="alice")
    fresh = save_upload(root, "c.csv", b"text,label\nc,z\n", owner="bob")
    legacy = root / ".uploads" / "0123456789abcdef"  # the layout of runs made before uploads were per user
    legacy.mkdir()
    (legacy / "d.csv").write_text("text,label\n")
    waiting = runs.create_run_dir(root, "waiting", {"data": {"source": str(old_needed)}})  # queued: may still train
    done = runs.create_run_dir(root, "done", {"data": {"source": str(old_unused)}})
    runs.write_status(done, state="completed")  # its predictions are saved: it needs its file no more
    month_ago = time.time() - 30 * 86400
    for folder in (old_unused.parent, old_needed.parent, legacy):
        os.utime(folder, (month_ago, month_ago))
    removed = clean_old(root, older_than_s=14 * 86400)
    assert sorted(removed) == sorted([old_unused.parent, legacy])
    assert old_needed.exists() and fresh.exists() and not old_unused.exists() and (waiting / runs.CONFIG).exists()
    # using an upload again counts as use: the same file re-uploaded is kept for another 14 days
    os.utime(fresh.parent, (month_ago, month_ago))
    assert save_upload(root, "c.csv", b"text,label\nc,z\n", owner="bob") == fresh
    assert clean_old(root, older_than_s=14 * 86400) == []


def test_an_upload_longer_than_the_row_limit_is_refused_with_how_to_raise_it():
    import pytest

    from core import actions

    actions.check_upload_rows("big.csv", 10, actions.Limits(max_upload_rows=10))
    with pytest.raises(actions.LimitReached, match=r"big.csv has 11 rows; an upload may have at most 10\..*TUNEBOARD_MAX_UPLOAD_ROWS"):
        actions.check_upload_rows("big.csv", 11, actions.Limits(max_upload_rows=10))
