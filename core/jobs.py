"""The job queue: submit / cancel / resume / delete runs, and the worker that trains them.

The dashboard never trains. It calls :func:`submit`, which creates the run directory and a queued
row in the ``jobs`` table of ``<root>/runs.sqlite`` (beside the ``runs`` table that core.runs owns).
Workers (``python -m core worker [--name N]``) claim queued jobs in submission order and run each
as a ``python -m core train`` subprocess, so a crash of the trainer never takes the worker or the app
with it. Each worker has a name (the host's by default) guarded by an fcntl lock on
``<root>/workers/<name>.lock``; several may serve one root, on one machine or on several machines
sharing it: a claim is one ``BEGIN IMMEDIATE`` transaction, so no job is given to two workers (on
several machines the shared filesystem must honour SQLite's locks: NFSv4 with locking, not NFSv3).
The run directory stays the source of truth: the worker only reads status.json to learn how a run
ended, and writes ``interrupted`` when the trainer died without saying.

Stdlib only (no torch): the worker must start in well under a second.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import runs, uploads

WORKERS_DIR = "workers"  # <name>.lock (held while the worker lives) and <name>.json (its heartbeat)
WORKER_LOG = "worker.log"
HEARTBEAT_FRESH_S = 30.0  # a worker on another host counts as alive while its heartbeat is this recent
STALE_ELSEWHERE_S = 300.0  # another host's running job, silent this long with its worker's heartbeat: interrupted
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
JOB_STATES = ("queued", "running", "done", "cancelled")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IDLE_EXIT_S = float(os.environ.get("TUNEBOARD_WORKER_IDLE_S", "300"))


class JobError(ValueError):
    """A queue operation can't be done (unknown run, wrong state); the message says why and what to do."""


@dataclass(frozen=True)
class Job:
    id: int
    run_id: str
    run_dir: str
    kind: str  # "train" (fresh), "derive" (a derived run: core.derived) or "resume" (from checkpoints/last)
    state: str
    submitted: float
    claimed: float | None
    finished: float | None
    pid: int | None
    host: str | None
    returncode: int | None
    cancel_requested: bool
    owner: str | None = None  # the user who started it (None: before logins, or the CLI)
    worker: str | None = None  # the name of the worker that claimed it


def _connect(root: str | Path) -> sqlite3.Connection:
    con = runs.connect(root)  # it retries the "database is locked" of two first-ever connections
    con.execute(
        """CREATE TABLE IF NOT EXISTS jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, run_dir TEXT NOT NULL,
            kind TEXT NOT NULL, state TEXT NOT NULL, submitted REAL NOT NULL, claimed REAL, finished REAL,
            pid INTEGER, host TEXT, returncode INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0)"""
    )
    con.execute("CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id)")
    have = {row[1] for row in con.execute("PRAGMA table_info(jobs)")}
    for column in ("owner", "worker"):  # a runs root made before jobs had owners, or named workers
        if column not in have:
            try:
                con.execute(f"ALTER TABLE jobs ADD COLUMN {column} TEXT")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process added it a moment ago
                    raise
    return con


@contextlib.contextmanager
def _db(root: str | Path) -> Iterator[sqlite3.Connection]:
    con = _connect(root)
    try:
        yield con
    finally:
        con.close()


def _job(row: sqlite3.Row) -> Job:
    d = dict(row)
    d["cancel_requested"] = bool(d["cancel_requested"])
    return Job(**d)


# --- the API the dashboard (and the CLI) call ---------------------------------------------------------


def submit(config: Any, root: str | Path | None = None, owner: str | None = None) -> str:
    """Create the run directory of ``config`` (a RunConfig) with a queued job; return the run id.

    Safe to call from several processes at once: each call gets its own directory and row.
    """
    root = Path(root or config.runs_root)
    try:
        run_dir = runs.create_run_dir(root, config.name, config.to_dict())
    except OSError as exc:
        raise JobError(f"Can't create the run in the runs folder {root} ({exc.strerror or exc}). Free space on its "
                       "disk or make it writable (or point TUNEBOARD_HOME elsewhere), then start the run again.") from exc
    return queue_existing(root, run_dir, "train", owner)


def queue_existing(root: str | Path, run_dir: Path, kind: str, owner: str | None = None) -> str:
    """Queue a job for a run directory that already holds its config and a queued status; return the run id.

    ``kind``: ``train``, or ``derive`` for a derived run (core.derived makes its directory first).
    """
    with _db(root) as con:
        con.execute("INSERT INTO jobs (run_id, run_dir, kind, state, submitted, owner) VALUES (?, ?, ?, 'queued', ?, ?)",
                    (run_dir.name, str(run_dir), kind, time.time(), owner))
    runs.index_run(root, run_dir)
    return run_dir.name


def list_jobs(root: str | Path, states: tuple[str, ...] = JOB_STATES) -> list[Job]:
    """Jobs in submission order (the order the worker claims them)."""
    if not Path(root, runs.INDEX).exists():
        return []
    marks = ", ".join("?" * len(states))
    with _db(root) as con:
        rows = con.execute(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id", states).fetchall()
    return [_job(r) for r in rows]


def latest_job(root: str | Path, run_id: str) -> Job | None:
    if not Path(root, runs.INDEX).exists():
        return None
    with _db(root) as con:
        row = con.execute("SELECT * FROM jobs WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,)).fetchone()
    return _job(row) if row else None


def owners(root: str | Path) -> dict[str, str]:
    """Who started each run (its first job's owner); runs started from the CLI or before logins have none."""
    if not Path(root, runs.INDEX).exists():
        return {}
    with _db(root) as con:
        rows = con.execute("SELECT run_id, owner FROM jobs WHERE owner IS NOT NULL ORDER BY id DESC").fetchall()
    return {run_id: owner for run_id, owner in rows}  # the first job's row is read last and wins


def owner_of(root: str | Path, run_id: str) -> str | None:
    """Who started ``run_id``: the owner of its first job (resuming it does not change who owns it)."""
    if not Path(root, runs.INDEX).exists():
        return None
    with _db(root) as con:
        row = con.execute("SELECT owner FROM jobs WHERE run_id = ? AND owner IS NOT NULL ORDER BY id LIMIT 1",
                          (run_id,)).fetchone()
    return row["owner"] if row else None


def placements(root: str | Path) -> dict[str, str]:
    """Where each run's latest job ran or runs: ``worker`` or ``worker on host`` when the name is not the host's."""
    out = {}
    for job in list_jobs(root, ("running", "done")):
        if job.worker or job.host:
            name = job.worker or job.host or ""
            out[job.run_id] = name if not job.host or name == job.host else f"{name} on {job.host}"
    return out


def queue_position(root: str | Path, run_id: str) -> int | None:
    """1 for the next job to run; None when the run is not queued."""
    queued = [j.run_id for j in list_jobs(root, ("queued",))]
    return queued.index(run_id) + 1 if run_id in queued else None


def _run_dir(root: str | Path, run_id: str) -> Path:
    run_dir = runs.run_path(root, run_id)
    if not run_dir.is_dir():
        raise JobError(f"Run {run_id!r} does not exist under {root} (deleted, or a different runs folder).")
    return run_dir


def cancel(run_id: str, root: str | Path) -> str:
    """Cancel a run: a queued job never starts; a running one checkpoints and stops. Returns what happened."""
    run_dir = _run_dir(root, run_id)
    with _db(root) as con:
        con.execute("BEGIN IMMEDIATE")
        dropped = con.execute("UPDATE jobs SET state='cancelled', finished=? WHERE run_id=? AND state='queued'",
                              (time.time(), run_id)).rowcount
        # A job claimed a moment ago has a trainer that is still importing torch; run_training clears
        # stale cancel flags when it starts, so the worker re-raises the flag from this column.
        running = con.execute("UPDATE jobs SET cancel_requested=1 WHERE run_id=? AND state='running'", (run_id,)).rowcount
        con.execute("COMMIT")
    if dropped:
        runs.write_status(run_dir, state="cancelled", finished=time.time(), error=None)
        runs.index_run(root, run_dir)
        return "cancelled before it started"
    state = runs.read_status(run_dir).get("state")
    if running or state == "running":
        runs.request_cancel(run_dir)
        return "cancel requested: the run saves a checkpoint and stops after the current step"
    raise JobError(f"Run {run_id} is {state or 'not running'}; only queued or running runs can be cancelled.")


def can_resume(run_dir: str | Path) -> bool:
    state = runs.read_status(run_dir).get("state")
    return state in ("cancelled", "interrupted", "failed") and Path(run_dir, runs.CHECKPOINT_DIR).is_dir()


def resume(run_id: str, root: str | Path, owner: str | None = None) -> None:
    """Queue a cancelled, interrupted or failed run to continue from ``checkpoints/last``."""
    run_dir = _run_dir(root, run_id)
    state = runs.read_status(run_dir).get("state")
    if state not in ("cancelled", "interrupted", "failed"):
        raise JobError(f"Run {run_id} is {state or 'unreadable'}; only cancelled, interrupted or failed runs resume.")
    runs.recover_swap(Path(run_dir, runs.CHECKPOINT_DIR))
    if not Path(run_dir, runs.CHECKPOINT_DIR).is_dir():
        raise JobError(f"Run {run_id} stopped before its first checkpoint ({runs.CHECKPOINT_DIR} is missing); "
                       "start it again as a new run.")
    with _db(root) as con:
        con.execute("INSERT INTO jobs (run_id, run_dir, kind, state, submitted, owner) VALUES (?, ?, 'resume', 'queued', ?, ?)",
                    (run_id, str(run_dir), time.time(), owner))
    runs.write_status(run_dir, state="queued", error=None)
    runs.index_run(root, run_dir)


def delete(run_id: str, root: str | Path) -> None:
    """Remove a run's directory and jobs. A queued or running run must be cancelled first."""
    run_dir = runs.run_path(root, run_id)
    status = runs.read_status(run_dir) if run_dir.exists() else {}
    if status.get("state") in ("queued", "running") and pid_alive(status.get("pid")) or any(
        j.run_id == run_id for j in list_jobs(root, ("queued", "running"))
    ):
        raise JobError(f"Run {run_id} is queued or running; cancel it first, then delete it.")
    with _db(root) as con:
        con.execute("DELETE FROM jobs WHERE run_id = ?", (run_id,))
        con.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
    shutil.rmtree(run_dir, ignore_errors=True)


# --- process liveness and orphans ---------------------------------------------------------------------


def pid_alive(pid: Any) -> bool:
    """True if ``pid`` is a live (non-zombie) process on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie answers kill(0) but will never write another event
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def mark_interrupted(root: str | Path, run_dir: Path, reason: str) -> None:
    for folder in (runs.CHECKPOINT_DIR, runs.MODEL_DIR):  # killed between the two renames of a save
        runs.recover_swap(Path(run_dir, folder))
    hint = " Resume continues from the last checkpoint." if Path(run_dir, runs.CHECKPOINT_DIR).is_dir() else ""
    runs.write_status(run_dir, state="interrupted", error=reason + hint, finished=time.time())
    runs.index_run(root, run_dir)


def reconcile(root: str | Path, skip_jobs: set[int] | frozenset[int] = frozenset()) -> list[str]:
    """Find runs whose trainer died without recording an outcome and mark them ``interrupted``.

    Any process may call this (the worker each tick, the dashboard on page load): a run counts as
    orphaned only when its status says running and the pid in status.json is gone from this host (the
    host it names); a job of another host when its worker's heartbeat and its run have been silent for
    ``STALE_ELSEWHERE_S``.
    Returns the run ids it marked. ``skip_jobs``: the caller's own children, which it reaps itself
    (a child that just exited is a zombie until then, and only the parent learns its exit code).
    """
    root = Path(root)
    marked = []
    host = socket.gethostname()
    # A live worker reaps its own trainers: another that closed such a job the moment its trainer exited (a
    # zombie until reaped) would lose the exit code. A worker of the same name started after the claim is a
    # new one: the job is an orphan of the one before.
    serving = {(w["name"], w.get("host", host)): float(w.get("started") or 0) for w in live_workers(root)}
    for job in list_jobs(root, ("running",)):
        claimer = (job.worker, job.host or host)
        if claimer in serving and serving[claimer] <= (job.claimed or 0):
            continue
        if job.host not in (None, host):
            if _gone_elsewhere(root, job):
                _finish_job(root, job, None, runs.read_status(job.run_dir))
                marked.append(job.run_id)
            continue
        if job.id in skip_jobs or pid_alive(job.pid):
            continue
        if job.pid is None and time.time() - (job.claimed or 0) < 60:
            continue  # claimed a moment ago: the worker is starting its trainer
        status = runs.read_status(job.run_dir)
        if status.get("state") == "running" and pid_alive(status.get("pid")):
            continue  # the trainer outlived a worker that was killed; it is not an orphan
        _finish_job(root, job, None, status)
        marked.append(job.run_id)
    if root.exists():
        active = {j.run_id for j in list_jobs(root, ("queued", "running"))}
        for run_dir in root.iterdir():
            if not run_dir.is_dir() or run_dir.name in active:
                continue
            status = runs.read_status(run_dir)
            if status.get("state") == "running" and status.get("host", host) == host and not pid_alive(status.get("pid")):
                mark_interrupted(root, run_dir, f"The training process (pid {status.get('pid')}) is gone; it stopped "
                                                "without recording an outcome (crash, kill or machine restart).")
                marked.append(run_dir.name)
    return marked


def _gone_elsewhere(root: Path, job: Job) -> bool:
    """A job running on another host whose worker has stopped its heartbeat and whose run has written nothing
    for ``STALE_ELSEWHERE_S``: that machine died (or lost the shared filesystem). Its pid can't be checked here."""
    now = time.time()
    info = runs.read_json(_info_path(root, job.worker)) if job.worker else None
    if info and now - float(info.get("heartbeat") or 0) < STALE_ELSEWHERE_S:
        return False
    newest = max((p.stat().st_mtime for p in (Path(job.run_dir, runs.EVENTS), Path(job.run_dir, runs.STATUS)) if p.exists()),
                 default=job.claimed or 0)
    return now - newest > STALE_ELSEWHERE_S


def _finish_job(root: Path, job: Job, returncode: int | None, status: dict[str, Any] | None = None) -> None:
    """Close a job row and make sure its run's status tells how it ended.

    The row is closed first, and only if it is still open: of two processes reconciling at once (a worker
    and the dashboard), one closes it and says how the run ended; the other leaves both alone.
    """
    with _db(root) as con:
        closed = con.execute("UPDATE jobs SET state='done', finished=?, returncode=? WHERE id=? AND state='running'",
                             (time.time(), returncode, job.id)).rowcount
    if not closed:
        return
    status = status if status is not None else runs.read_status(job.run_dir)
    run_dir = Path(job.run_dir)
    if run_dir.exists() and status.get("state") in ("queued", "running") and not _queued_again(root, job):
        if returncode is not None and returncode < 0:
            why = f"was killed by {signal.Signals(-returncode).name}"
        elif returncode is not None:
            why = f"exited with code {returncode}"
        else:
            why = "is gone"
        log_tail = _tail(run_dir / runs.LOG, 6)
        if status.get("state") == "queued" and returncode not in (None,) and returncode > 0:
            # it never got as far as run_training (e.g. a broken config.json): a failure, not a crash
            runs.write_status(run_dir, state="failed", error=f"The trainer {why} before starting: {log_tail}", finished=time.time())
            runs.index_run(root, run_dir)
        else:
            mark_interrupted(root, run_dir, f"The training process (pid {job.pid}) {why} without recording an outcome."
                             + (f" Last log lines: {log_tail}" if log_tail else ""))


def _queued_again(root: Path, job: Job) -> bool:
    """A run resumed the moment it showed "cancelled" has a newer job before this job's trainer has
    exited: the "queued" status is that job's, not a trainer that died before starting."""
    with _db(root) as con:
        return con.execute("SELECT 1 FROM jobs WHERE run_id = ? AND id > ? AND state IN ('queued', 'running')",
                           (job.run_id, job.id)).fetchone() is not None


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    # tqdm redraws with carriage returns: keep only what the last redraw shows
    shown = [line.rsplit("\r", 1)[-1].strip() for line in text.splitlines()]
    return " | ".join(s for s in shown if s)[-600:] if shown else ""


def log_lines(run_dir: str | Path, n: int = 20) -> list[str]:
    """The last ``n`` lines of a run's train.log as a terminal would show them (tqdm redraws collapsed)."""
    try:
        text = Path(run_dir, runs.LOG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return [s for s in shown if s.strip()][-n:]


# --- the worker ---------------------------------------------------------------------------------------


def train_command(job: Job, root: Path) -> list[str]:
    if job.kind == "derive" or job.kind == "resume" and (runs.read_json(Path(job.run_dir, runs.CONFIG)) or {}).get("derived"):
        return [sys.executable, "-m", "core", "--root", str(root), "derive", "--run-dir", job.run_dir,
                *(["--resume"] if job.kind == "resume" else [])]
    base = [sys.executable, "-m", "core", "--root", str(root), "train"]
    if job.kind == "resume":
        return [*base, "--resume", job.run_dir]
    return [*base, "--config", str(Path(job.run_dir, runs.CONFIG)), "--run-dir", job.run_dir]


def _claim(root: Path, worker: str) -> Job | None:
    with _db(root) as con:
        con.execute("BEGIN IMMEDIATE")  # one claimer at a time, across processes and workers
        row = con.execute("SELECT * FROM jobs WHERE state='queued' ORDER BY id LIMIT 1").fetchone()
        if row is None:
            con.execute("COMMIT")
            return None
        con.execute("UPDATE jobs SET state='running', claimed=?, host=?, worker=? WHERE id=?",
                    (time.time(), socket.gethostname(), worker, row["id"]))
        con.execute("COMMIT")
        row = con.execute("SELECT * FROM jobs WHERE id=?", (row["id"],)).fetchone()
    return _job(row)


def _start(root: Path, job: Job) -> subprocess.Popen[bytes]:
    run_dir = Path(job.run_dir)
    if job.kind in ("train", "derive"):
        # A fresh start must not inherit a cancel from an earlier attempt of the same directory.
        Path(run_dir, runs.CANCEL_FLAG).unlink(missing_ok=True)
    env = {**os.environ, "TUNEBOARD_HOME": str(root), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with open(run_dir / runs.LOG, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(train_command(job, root)[1:])}\n".encode())
        log.flush()
        proc = subprocess.Popen(train_command(job, root), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=REPO_ROOT, env=env)
    with _db(root) as con:
        con.execute("UPDATE jobs SET pid=? WHERE id=?", (proc.pid, job.id))
    return proc


class Worker:
    """Claims queued jobs and supervises their trainer subprocesses; one per name and runs root."""

    def __init__(self, root: str | Path, concurrency: int = 1, idle_exit_s: float = DEFAULT_IDLE_EXIT_S,
                 parent_pid: int | None = None, poll_s: float = 0.5, name: str | None = None):
        self.root = Path(root)
        self.name = name or default_worker_name()
        self.concurrency = max(1, concurrency)
        self.idle_exit_s = idle_exit_s
        self.parent_pid = parent_pid
        self.poll_s = poll_s
        self.children: dict[int, tuple[Job, subprocess.Popen[bytes]]] = {}
        self.stopping = False
        self.started = time.time()

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stopping = True
        for _, proc in self.children.values():
            # run_training turns SIGTERM into a clean stop with a checkpoint
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    def _parent_gone(self) -> bool:
        return self.parent_pid is not None and not pid_alive(self.parent_pid)

    def _heartbeat(self) -> None:
        runs.atomic_write_json(_info_path(self.root, self.name), {
            "name": self.name, "pid": os.getpid(), "parent_pid": self.parent_pid, "host": socket.gethostname(),
            "started": self.started,
            "heartbeat": time.time(), "concurrency": self.concurrency,
            "running": [job.run_id for job, _ in self.children.values()]})

    def _reap(self) -> None:
        for job_id, (job, proc) in list(self.children.items()):
            rc = proc.poll()
            if rc is None:
                with _db(self.root) as con:
                    row = con.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
                if row and row["cancel_requested"] and not runs.cancel_requested(job.run_dir):
                    status = runs.read_status(job.run_dir)
                    if status.get("state") == "running" and status.get("pid") == proc.pid:
                        runs.request_cancel(job.run_dir)  # raised again after run_training cleared it
                continue
            del self.children[job_id]
            _finish_job(self.root, job, rc)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        idle_since = time.monotonic()
        while True:
            self._reap()
            reconcile(self.root, skip_jobs=set(self.children))
            draining = self.stopping or self._parent_gone()
            while not draining and len(self.children) < self.concurrency:
                job = _claim(self.root, self.name)
                if job is None:
                    break
                with _db(self.root) as con:
                    cancelled = con.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job.id,)).fetchone()[0]
                if cancelled or (job.kind in ("train", "derive") and runs.cancel_requested(job.run_dir)):
                    runs.write_status(job.run_dir, state="cancelled", finished=time.time())
                    runs.index_run(self.root, job.run_dir)
                    _finish_job(self.root, job, None)
                    continue
                self.children[job.id] = (job, _start(self.root, job))
            self._heartbeat()
            if self.children:
                idle_since = time.monotonic()
            elif draining or time.monotonic() - idle_since > self.idle_exit_s:
                return 0
            time.sleep(self.poll_s)


def default_worker_name() -> str:
    """The host's name, cut to the characters a worker name allows."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:64].lstrip("._-")
    return name or "worker"


def check_worker_name(name: str) -> str:
    if not _NAME_OK.fullmatch(name):
        raise JobError(f"worker name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit "
                       "(e.g. gpu-box-1)")
    return name


def _lock_path(root: Path, name: str) -> Path:
    return root / WORKERS_DIR / f"{name}.lock"


def _info_path(root: Path, name: str) -> Path:
    return root / WORKERS_DIR / f"{name}.json"


def run_worker(root: str | Path, concurrency: int = 1, idle_exit_s: float = DEFAULT_IDLE_EXIT_S,
               parent_pid: int | None = None, name: str | None = None) -> int:
    """Run the worker ``name`` until idle for ``idle_exit_s`` or the parent is gone; exit 0 at once if a
    worker of that name already serves ``root``. Workers of other names serve the same queue beside it."""
    root = Path(root)
    name = check_worker_name(name or default_worker_name())
    Path(root, WORKERS_DIR).mkdir(parents=True, exist_ok=True)
    lock = open(_lock_path(root, name), "a+")  # noqa: SIM115 - held for the whole life of the worker
    # worker_alive() probes by taking the lock for an instant: retry briefly so a probe is not
    # mistaken for a live worker.
    deadline = time.monotonic() + 1.0
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                info = runs.read_json(_info_path(root, name)) or {}
                print(f"a worker named {name} already serves {root} (pid {info.get('pid', '?')}); nothing to do. "
                      "Give another --name to run a second worker beside it.", file=sys.stderr)
                lock.close()
                return 0
            time.sleep(0.05)
    with contextlib.suppress(OSError):  # housekeeping as each worker starts; it never stops one from training
        uploads.clean_old(root)
    try:
        return Worker(root, concurrency, idle_exit_s, parent_pid, name=name).run()
    finally:
        _info_path(root, name).unlink(missing_ok=True)
        lock.close()


def _lock_held(path: Path) -> bool:
    try:
        with open(path, "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def live_workers(root: str | Path) -> list[dict[str, Any]]:
    """Every worker serving ``root``: name, host, pid, heartbeat, running runs. A worker on this host is
    alive while it holds its lock; one on another host while its heartbeat is fresh (locks on a shared
    filesystem are not to be trusted across machines)."""
    folder = Path(root, WORKERS_DIR)
    if not folder.is_dir():
        return []
    host, now, out = socket.gethostname(), time.time(), []
    for lock in sorted(folder.glob("*.lock")):
        info = runs.read_json(lock.with_suffix(".json")) or {}
        if info.get("host", host) == host:
            alive = _lock_held(lock)
        else:
            alive = now - float(info.get("heartbeat") or 0) < HEARTBEAT_FRESH_S
        if alive:
            out.append({"name": lock.stem, "pid": None, **info})
    return out


def worker_alive(root: str | Path) -> bool:
    """True while some worker serves ``root``, or a worker this process started is still starting up
    (it takes its lock a moment after it is spawned)."""
    if live_workers(root):
        return True
    spawned = _spawned.get(str(Path(root).resolve()))
    return spawned is not None and spawned.poll() is None


def worker_info(root: str | Path) -> dict[str, Any] | None:
    """The first live worker's name, pid, heartbeat and running jobs, or None when no worker serves ``root``."""
    workers = live_workers(root)
    if workers:
        return workers[0]
    return {"pid": None} if worker_alive(root) else None


_spawned: dict[str, subprocess.Popen[bytes]] = {}  # per app process and root: reaps exited workers, skips double starts


def ensure_worker(root: str | Path, concurrency: int = 1, idle_exit_s: float | None = None, *,
                  capacity: int | None = None, name: str | None = None) -> bool:
    """Start a worker for ``root`` unless one is alive; return True if one was started.

    ``capacity``: start one (named ``name``, with the missing concurrency) unless the live workers together
    run that many jobs at once already (a sweep's trials at a time). The worker gets its own session (a
    Ctrl-C in the app's terminal does not stop training) and watches this process: when the app is gone it
    finishes the running jobs and exits.
    """
    root = Path(root).resolve()
    _reap_spawned()
    key = str(root) if capacity is None else f"{root}:{name}"  # the app's own worker, or a sweep's by name
    if capacity is None:
        if worker_alive(root):
            return False
    else:
        have = sum(int(w.get("concurrency") or 1) for w in live_workers(root))
        spawned = _spawned.get(key)
        if have >= capacity or spawned is not None and spawned.poll() is None:
            return False
        concurrency = capacity - have
    root.mkdir(parents=True, exist_ok=True)
    idle = DEFAULT_IDLE_EXIT_S if idle_exit_s is None else idle_exit_s
    cmd = [sys.executable, "-m", "core", "--root", str(root), "worker", "--concurrency", str(concurrency),
           "--idle-exit", str(idle), "--parent-pid", str(os.getpid()), *(["--name", name] if name else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    with open(root / WORKER_LOG, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=REPO_ROOT, env=env, start_new_session=True)
    _spawned[key] = proc
    return True


def _reap_spawned() -> None:
    for key, proc in list(_spawned.items()):
        if proc.poll() is not None:
            del _spawned[key]


def stop_worker(root: str | Path, timeout_s: float = 30.0) -> None:
    """SIGTERM every worker of ``root`` on this host (their trainers checkpoint and stop) and wait for them to exit."""
    host = socket.gethostname()
    for info in live_workers(root):
        pid = info.get("pid")
        if info.get("host", host) == host and isinstance(pid, int) and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    def here() -> bool:
        spawned = _spawned.get(str(Path(root).resolve()))
        return any(w.get("host", host) == host for w in live_workers(root)) or spawned is not None and spawned.poll() is None

    deadline = time.monotonic() + timeout_s
    while here() and time.monotonic() < deadline:
        _reap_spawned()
        time.sleep(0.1)
    _reap_spawned()
