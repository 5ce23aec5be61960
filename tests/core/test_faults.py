"""kill -9 at the dangerous moments of a run, through the real worker: during a step, during an
evaluation, between the two renames of a checkpoint swap, halfway through the final save, and the
worker itself. Each time the run ends ``interrupted`` with the reason, every file in its directory
still reads, and resuming reaches the same final step count as a run that was never killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from core import faults, jobs, runs
from core.events import read_events
from tests.support.tiny import tiny_config
from tests.support.waits import state, wait_for, worker_of

pytestmark = pytest.mark.slow


def readable(run_dir) -> None:
    """Every JSON file parses, events.jsonl reads, and the checkpoint holds its loop state."""
    for path in run_dir.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
    assert read_events(run_dir / runs.EVENTS)[0], "events.jsonl lost its events"
    assert (run_dir / runs.CHECKPOINT_DIR / "loop_state.json").exists(), sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def starts_of(run_dir) -> list[dict]:
    return [e for e in read_events(run_dir / runs.EVENTS)[0] if e["type"] == "start"]


def crash_then_resume(root, monkeypatch, run_id: str, at: str | None) -> None:
    """Resume ``run_id`` (None: it is queued already) in a worker whose trainer kills itself at ``at``."""
    if at is None:
        monkeypatch.delenv(faults.ENV, raising=False)
    else:
        monkeypatch.setenv(faults.ENV, at)  # the worker and its trainers inherit it
    jobs.resume(run_id, root)
    jobs.ensure_worker(root, idle_exit_s=2)


def test_kill_9_at_every_dangerous_point_then_resume_to_the_same_end(runs_root, monkeypatch):
    root = runs_root
    # 64 rows, batch 16, 2 epochs: 8 steps; an evaluation and a checkpoint every 2 steps
    # keep_checkpoint: the last check below also reads the checkpoint a completed run keeps on request
    run_id = jobs.submit(tiny_config(root, "killed", train_rows=64, eval_rows=16, epochs=2, eval_every=2,
                                     keep_checkpoint=True), root)
    run_dir = root / run_id
    monkeypatch.setenv(faults.ENV, "step:3")  # during step 3, after the checkpoint of step 2
    jobs.ensure_worker(root, idle_exit_s=2)
    try:
        # each resumed trainer counts its own passes: "eval:2" is the 2nd evaluation since it resumed
        for at in ("eval:2", "swap:2", "final_save:1", None):
            wait_for(lambda: state(root, run_id) in ("interrupted", "completed", "failed"), "the killed run to stop", worker_of(root))
            status = runs.read_status(run_dir)
            assert status["state"] == "interrupted", status
            assert "killed by SIGKILL" in status["error"] and "Resume continues" in status["error"]
            readable(run_dir)
            assert not (run_dir / runs.MODEL_DIR).exists()  # no half-written model where a reader would load it
            wait_for(lambda: not jobs.worker_alive(root), "the idle worker to leave")
            crash_then_resume(root, monkeypatch, run_id, at)

        # the last resume runs clean; the worker is killed under it, and its trainer finishes regardless
        wait_for(lambda: len(starts_of(run_dir)) == 5, "the last trainer to start", worker_of(root))
        os.kill(jobs.worker_info(root)["pid"], signal.SIGKILL)
        trainer = runs.read_status(run_dir).get("pid")
        wait_for(lambda: not jobs.pid_alive(trainer), "the last trainer to finish")
        assert state(root, run_id) == "completed"
        jobs.ensure_worker(root, idle_exit_s=2)  # a new worker closes the job the killed one left open
        wait_for(lambda: not jobs.list_jobs(root, ("queued", "running")), "the job to close", worker_of(root))
    finally:
        jobs.stop_worker(root)

    starts = starts_of(run_dir)
    assert len(starts) == 5 and [s["resumed_from_step"] for s in starts] == [None, 2, 4, 6, 8], starts
    report = runs.read_json(run_dir / runs.REPORT)
    assert report["steps"] == {"done": 8, "total": 8}
    assert (run_dir / runs.MODEL_DIR / "config.json").exists() and (run_dir / runs.MODEL_DIR / "tokenizer.json").exists()
    leftovers = [p.name for p in run_dir.rglob("*") if p.name.endswith((".tmp", ".old"))]
    assert leftovers == [], leftovers
    readable(run_dir)


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs: room for configs, events and token ids, none for a model's weights."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"a small tmpfs can't be mounted here ({made.stderr.strip()}); this needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def other_run(root):
    """A finished run beside the one under test, which nothing may touch."""
    run_dir = runs.create_run_dir(root, "bystander", {"name": "bystander"})
    runs.write_status(run_dir, state="completed")
    return run_dir, {p.name: p.read_bytes() for p in run_dir.iterdir()}


def test_a_full_disk_fails_the_run_with_what_to_do_and_frees_what_it_took(small_disk):
    from core.recipe import RunFailed, run_training

    root = small_disk / "runs"
    bystander, before = other_run(root)
    with pytest.raises(RunFailed) as failed:
        run_training(tiny_config(root, "too-big", train_rows=32, eval_rows=16))
    message = str(failed.value)
    assert "Could not write to the runs folder (No space left on device" in message and "start the run again" in message
    run_dir = next(d for d in root.iterdir() if "too-big" in d.name)
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and status["error"] == message
    for path in run_dir.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
    assert [p.name for p in run_dir.rglob("*") if p.name.endswith(".tmp")] == []  # the half-written weights are gone
    used = sum(p.stat().st_size for p in small_disk.rglob("*") if p.is_file())
    assert used < 8 * 2**20, f"{used / 2**20:.1f} MB still taken"
    assert {p.name: p.read_bytes() for p in bystander.iterdir()} == before


def test_a_read_only_runs_folder_refuses_a_new_run_with_what_to_do(small_disk):
    root = small_disk / "runs"
    bystander, before = other_run(root)
    entries = sorted(p.name for p in root.iterdir())
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(jobs.JobError, match=r"Can't create the run in the runs folder .* \(Read-only file system\)\. .*make it writable"):
        jobs.submit(tiny_config(root, "nowhere"), root)
    assert sorted(p.name for p in root.iterdir()) == entries
    assert {p.name: p.read_bytes() for p in bystander.iterdir()} == before
