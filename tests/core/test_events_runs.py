import json
import math
import sqlite3

from core import runs
from core.events import EventWriter, read_events


def test_events_are_flushed_per_line_and_tailed_from_an_offset(tmp_path):
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer({"type": "start", "total_steps": 3})
    # Another process sees the line before the writer closes: it was flushed.
    events, offset = read_events(path)
    assert [e["type"] for e in events] == ["start"] and events[0]["time"] >= 0
    writer({"type": "step", "step": 1, "loss": math.nan})
    with path.open("a") as f:
        f.write('{"type": "step", "ste')  # a line still being written
    more, offset2 = read_events(path, offset)
    assert [e["step"] for e in more] == [1] and more[0]["loss"] is None
    assert read_events(path, offset2) == ([], offset2)
    writer.close()


def test_unknown_event_type_is_refused(tmp_path):
    writer = EventWriter(tmp_path / "e.jsonl")
    try:
        writer({"type": "bogus"})
        raise AssertionError("expected ValueError")
    except ValueError:
        pass
    finally:
        writer.close()


def test_resumed_writer_continues_the_clock(tmp_path):
    with EventWriter(tmp_path / "e.jsonl", time_offset=100.0) as w:
        w({"type": "log", "message": "resumed"})
    events, _ = read_events(tmp_path / "e.jsonl")
    assert events[0]["time"] >= 100.0


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    runs.atomic_write_json(tmp_path / "a.json", {"x": 1})
    runs.atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_run_directory_status_and_index(tmp_path):
    root = tmp_path / "runs"
    d = runs.create_run_dir(root, "demo", {"name": "demo", "task": "single_label", "strategy": {"kind": "full"}})
    assert runs.read_status(d)["state"] == "queued"
    runs.write_status(d, state="completed")
    runs.atomic_write_json(d / runs.REPORT, {"test": {"headline": {"name": "f1_macro", "value": 0.8}}})
    listed = runs.list_runs(root)
    assert [(r.run_id, r.state, r.headline_value) for r in listed] == [(d.name, "completed", 0.8)]
    con = sqlite3.connect(root / runs.INDEX)
    assert con.execute("SELECT state FROM runs").fetchall() == [("completed",)]
    assert runs.find_run(root, d.name[:20]) == d


def test_half_written_and_deleted_runs_never_crash_listing(tmp_path):
    root = tmp_path / "runs"
    d = runs.create_run_dir(root, "gone", {"name": "gone"})
    (d / runs.CONFIG).write_text("{not json")
    (root / "empty-dir").mkdir()
    rows = {r.run_id: r for r in runs.list_runs(root)}
    assert rows[d.name].state == "broken" and "config.json" in rows[d.name].error
    import shutil

    shutil.rmtree(d)
    assert d.name not in {r.run_id for r in runs.list_runs(root)}


def test_cancel_flag(tmp_path):
    assert not runs.cancel_requested(tmp_path)
    runs.request_cancel(tmp_path)
    assert runs.cancel_requested(tmp_path)


def test_many_sessions_refreshing_the_index_at_once_never_collide(tmp_path):
    # Every dashboard session refreshes the index on each page load: ten of them at once (the team
    # link's load benchmark) interleaved the DELETE and the INSERTs and failed on a run id.
    import threading

    from core import runs

    root = tmp_path / "runs"
    made = [runs.create_run_dir(root, f"r{i}", {"name": f"r{i}"}) for i in range(12)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def refresh() -> None:
        start.wait()
        try:
            for _ in range(15):
                assert len(runs.refresh_index(root)) == len(made)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
