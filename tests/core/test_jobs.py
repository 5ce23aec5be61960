"""The job queue and its worker, driven through real (tiny) trainings in subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from core import jobs, runs
from core.events import read_events
from tests.support.paths import REPO
from tests.support.tiny import tiny_config
from tests.support.waits import state, wait_for, worker_of

pytestmark = pytest.mark.slow


@pytest.fixture
def root(runs_root):
    yield runs_root
    jobs.stop_worker(runs_root)
    assert not jobs.worker_alive(runs_root), "the worker outlived its test"


def test_two_simultaneous_submits_are_both_queued_and_run_in_order(root):
    barrier = threading.Barrier(2)
    ids: dict[str, str] = {}

    def submit(name: str) -> None:
        barrier.wait()  # both callers hit create_run_dir and the INSERT at the same moment
        ids[name] = jobs.submit(tiny_config(root, name), root)

    threads = [threading.Thread(target=submit, args=(n,)) for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queued = jobs.list_jobs(root, ("queued",))
    assert sorted(j.run_id for j in queued) == sorted(ids.values())
    assert all(state(root, r) == "queued" for r in ids.values())

    assert jobs.ensure_worker(root, idle_exit_s=3)
    wait_for(lambda: all(state(root, r) == "completed" for r in ids.values()), "both runs to complete", worker_of(root))
    # status.json says completed a moment before the trainer process exits and the job closes
    wait_for(lambda: all(j.state == "done" for j in jobs.list_jobs(root)), "both jobs to close", worker_of(root))
    first, second = jobs.list_jobs(root)
    assert first.state == second.state == "done" and first.returncode == second.returncode == 0
    # concurrency 1: the second job was claimed only after the first finished
    assert first.finished <= second.claimed
    for r in ids.values():
        assert (root / r / runs.REPORT).exists() and (root / r / runs.MODEL_DIR / "config.json").exists()
        assert "completed" in (root / r / runs.LOG).read_text()
    # idle for 3 s, the worker leaves by itself
    wait_for(lambda: not jobs.worker_alive(root), "the idle worker to exit")


def test_cancel_a_queued_and_a_running_job(root):
    long_run = jobs.submit(tiny_config(root, "long", train_rows=160, epochs=3, eval_every=30), root)
    waiting = jobs.submit(tiny_config(root, "waiting"), root)
    assert jobs.queue_position(root, waiting) == 2
    jobs.ensure_worker(root, idle_exit_s=3)
    events_path = root / long_run / runs.EVENTS
    wait_for(lambda: any(e["type"] == "step" for e in read_events(events_path)[0]), "the first step", worker_of(root))

    assert "before it started" in jobs.cancel(waiting, root)
    assert state(root, waiting) == "cancelled"
    assert "cancel requested" in jobs.cancel(long_run, root)
    wait_for(lambda: state(root, long_run) == "cancelled", "the running job to stop", worker_of(root))
    assert (root / long_run / runs.CHECKPOINT_DIR).is_dir() and jobs.can_resume(root / long_run)
    # Resumed the moment it shows "cancelled", before the worker has seen its trainer exit (a user's
    # quick click): the new job runs to the end, and the old trainer's exit code does not fail it.
    jobs.resume(long_run, root)
    wait_for(lambda: state(root, long_run) in ("completed", "failed"), "the resumed run to finish", worker_of(root))
    assert state(root, long_run) == "completed", runs.read_status(root / long_run).get("error")
    wait_for(lambda: not jobs.list_jobs(root, ("queued", "running")), "the queue to drain", worker_of(root))
    assert jobs.latest_job(root, waiting).pid is None, "a cancelled queued job must never start"
    with pytest.raises(jobs.JobError, match="only queued or running"):
        jobs.cancel(long_run, root)


def test_a_killed_trainer_is_marked_interrupted_and_resume_completes(root):
    run_id = jobs.submit(tiny_config(root, "crashy", train_rows=160, epochs=2, eval_every=3), root)
    jobs.ensure_worker(root, idle_exit_s=5)
    run_dir = root / run_id
    wait_for(lambda: (run_dir / runs.CHECKPOINT_DIR).is_dir() and state(root, run_id) == "running", "a checkpoint", worker_of(root))
    pid = runs.read_status(run_dir)["pid"]
    os.kill(pid, signal.SIGKILL)

    wait_for(lambda: state(root, run_id) == "interrupted", "the orphan to be detected", worker_of(root))
    error = runs.read_status(run_dir)["error"]
    assert "SIGKILL" in error and "Resume continues" in error
    with pytest.raises(jobs.JobError, match="cancelled, interrupted or failed"):
        jobs.resume(jobs.submit(tiny_config(root, "other"), root), root)  # a queued run can't resume
    jobs.cancel(jobs.list_jobs(root, ("queued",))[-1].run_id, root)

    jobs.resume(run_id, root)
    jobs.ensure_worker(root, idle_exit_s=5)
    wait_for(lambda: state(root, run_id) == "completed", "the resumed run to complete", worker_of(root))
    events = read_events(run_dir / runs.EVENTS)[0]
    starts = [e for e in events if e["type"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_from_step"] >= 3
    assert runs.read_json(run_dir / runs.REPORT)["steps"]["done"] == starts[0]["total_steps"]


def test_one_worker_per_name_and_it_leaves_when_its_parent_is_gone(root):
    parent = subprocess.Popen(["sleep", "1.5"])
    cmd = [sys.executable, "-m", "core", "--root", str(root), "worker", "--idle-exit", "60", "--parent-pid", str(parent.pid)]
    first = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: jobs.worker_alive(root), "the first worker", lambda: first.poll() is None)
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert second.returncode == 0 and "already serves" in second.stderr and "another --name" in second.stderr
    assert jobs.worker_info(root)["pid"] == first.pid
    assert not jobs.ensure_worker(root)
    parent.wait()
    # idle-exit is a minute away: only the parent's death can make it leave this soon
    assert first.wait(timeout=15) == 0
    assert not jobs.worker_alive(root) and not list((root / jobs.WORKERS_DIR).glob("*.json"))


# A stand-in trainer (the queue is the point here, not training): it records which worker ran which run,
# holds its job until a second job runs beside it (at most 5 s), then says completed.
FAKE_TRAINER = """
import sys, time
from pathlib import Path
from core import jobs, runs
run_dir, worker = Path(sys.argv[1]), sys.argv[2]
runs.write_status(run_dir, state="running", pid=__import__("os").getpid())
with open(run_dir.parent / "ran.log", "a") as log:
    log.write(f"{run_dir.name} {worker}\\n")
deadline = time.time() + 5
while time.time() < deadline and len(jobs.list_jobs(run_dir.parent, ("running",))) < 2:
    time.sleep(0.05)
runs.write_status(run_dir, state="completed", finished=time.time())
"""


def test_two_workers_share_one_queue_and_never_run_a_job_twice(root):
    run_ids = [runs.create_run_dir(root, f"job{i}", tiny_config(root, f"job{i}").to_dict()).name for i in range(6)]
    for run_id in run_ids:
        jobs.queue_existing(root, root / run_id, "train")
    worker_code = ("import sys; from core import jobs; "
                   f"jobs.train_command = lambda job, root: [sys.executable, '-c', {FAKE_TRAINER!r}, job.run_dir, job.worker]; "
                   "sys.exit(jobs.run_worker(sys.argv[1], idle_exit_s=1.5, name=sys.argv[2]))")
    workers = [subprocess.Popen([sys.executable, "-c", worker_code, str(root), name], cwd=REPO) for name in ("w1", "w2")]
    try:
        assert all(w.wait(timeout=120) == 0 for w in workers)
    finally:
        for w in workers:
            w.kill()
    ran = [line.split() for line in (root / "ran.log").read_text().splitlines()]
    assert sorted(r for r, _ in ran) == sorted(run_ids), "every job runs exactly once"
    assert {w for _, w in ran} == {"w1", "w2"}, "both workers take jobs"
    closed = {j.run_id: j for j in jobs.list_jobs(root)}
    assert all(closed[r].state == "done" and closed[r].returncode == 0 for r in run_ids)
    assert {r: w for r, w in ran} == {r: closed[r].worker for r in run_ids}
    assert all(state(root, r) == "completed" for r in run_ids)
    assert set(jobs.placements(root).values()) == {"w1 on " + closed[run_ids[0]].host, "w2 on " + closed[run_ids[0]].host}


def test_a_running_status_whose_process_is_gone_becomes_interrupted(root):
    run_dir = runs.create_run_dir(root, "ghost", tiny_config(root, "ghost").to_dict())
    dead = subprocess.Popen(["true"])
    dead.wait()
    runs.write_status(run_dir, state="running", pid=dead.pid)
    alive = runs.create_run_dir(root, "alive", tiny_config(root, "alive").to_dict())
    runs.write_status(alive, state="running", pid=os.getpid())
    assert jobs.reconcile(root) == [run_dir.name]
    status = runs.read_status(run_dir)
    assert status["state"] == "interrupted" and f"pid {dead.pid}" in status["error"]
    assert "Resume" not in status["error"]  # no checkpoint: resume is not offered
    assert state(root, alive.name) == "running"


def test_delete_refuses_an_active_run_and_removes_a_finished_one(root):
    queued = jobs.submit(tiny_config(root, "q"), root)
    with pytest.raises(jobs.JobError, match="cancel it first"):
        jobs.delete(queued, root)
    jobs.cancel(queued, root)
    jobs.delete(queued, root)
    assert not (root / queued).exists() and jobs.latest_job(root, queued) is None
    assert all(s.run_id != queued for s in runs.list_runs(root))
    with pytest.raises(jobs.JobError, match="does not exist"):
        jobs.cancel(queued, root)


def test_a_job_on_a_machine_that_went_silent_is_marked_interrupted(root, monkeypatch):
    """Another host's job is left alone while its worker beats; when the worker and the run have both been silent
    for STALE_ELSEWHERE_S, that machine is taken for dead and the job closed (a sweep waiting on it goes on)."""
    run_id = jobs.submit(tiny_config(root, "far"), root)
    with jobs._db(root) as con:
        con.execute("UPDATE jobs SET state='running', host='elsewhere', worker='box-b', pid=4242, claimed=? WHERE run_id=?",
                    (time.time(), run_id))
    runs.write_status(root / run_id, state="running", pid=4242, host="elsewhere")
    (root / jobs.WORKERS_DIR).mkdir(exist_ok=True)
    runs.atomic_write_json(root / jobs.WORKERS_DIR / "box-b.json", {"host": "elsewhere", "heartbeat": time.time()})
    assert jobs.reconcile(root) == [] and state(root, run_id) == "running"
    monkeypatch.setattr(jobs, "STALE_ELSEWHERE_S", 0.0)
    runs.atomic_write_json(root / jobs.WORKERS_DIR / "box-b.json", {"host": "elsewhere", "heartbeat": time.time() - 1})
    assert jobs.reconcile(root) == [run_id]
    assert state(root, run_id) == "interrupted" and jobs.latest_job(root, run_id).state == "done"
