"""Run directories, atomic writes, and the SQLite run index.

Layout of ``<root>/<run_id>/`` is in DESIGN.md. The directory is the source of truth; the index
(``<root>/runs.sqlite``) is a cache for fast listing that :func:`refresh_index` rebuilds from the
directories at any time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import faults

STATES = ("queued", "running", "completed", "failed", "cancelled", "interrupted", "pruned")
FINAL_STATES = ("completed", "failed", "cancelled", "pruned")  # pruned: a sweep stopped the trial early

CONFIG = "config.json"
STATUS = "status.json"
EVENTS = "events.jsonl"
REPORT = "report.json"
PREDICTIONS = "predictions.parquet"
VALIDATION_PREDICTIONS = "predictions-validation.parquet"  # when the evaluated split is the test split
TRAIN_PREDICTIONS = "predictions-train-oof.parquet"  # out-of-fold, for label issues (core.label_issues.cross_validated)
TRIAL = "trial.json"  # a sweep's trial: its study, storage and pruner (core.sweep); the test split is held back
CALIBRATION = "calibration.json"  # the temperature fitted on validation (core.calibration)
MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints/last"
CANCEL_FLAG = "cancel.flag"
LOG = "train.log"
INDEX = "runs.sqlite"


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write JSON to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=str)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run files are meant to be read by the team
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> Any | None:
    """Read a JSON file; None if it is missing or unreadable (a half-deleted run must not crash a page)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def new_run_id(name: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{secrets.token_hex(2)}"


def create_run_dir(root: str | Path, name: str, config: dict[str, Any]) -> Path:
    """Make a fresh run directory holding its config and a ``queued`` status."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    while True:
        run_dir = root / new_run_id(name)
        try:
            run_dir.mkdir()
            break
        except FileExistsError:
            continue
    try:
        atomic_write_json(run_dir / CONFIG, config)
        write_status(run_dir, state="queued", created=time.time())
    except OSError:  # a full disk: leave no half-made run behind
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir


def read_status(run_dir: str | Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / STATUS) or {}


def write_status(run_dir: str | Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into status.json (atomically) and return the new status."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    status.update(fields)
    status["run_id"] = run_dir.name
    status["updated"] = time.time()
    atomic_write_json(run_dir / STATUS, status)
    return status


def request_cancel(run_dir: str | Path) -> None:
    """Ask a running loop to stop: it checks this flag every step, saves a checkpoint and exits."""
    Path(run_dir, CANCEL_FLAG).touch()


def cancel_requested(run_dir: str | Path) -> bool:
    return Path(run_dir, CANCEL_FLAG).exists()


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    path: str
    name: str
    task: str
    strategy: str
    model: str
    state: str
    created: float
    finished: float | None
    headline_name: str | None
    headline_value: float | None
    error: str | None
    derived_method: str | None = None  # a derived run (core.derived): the method, and the runs it was made from
    parents: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def summarize(run_dir: str | Path) -> RunSummary:
    """Read a run directory into a summary; a broken or half-written one gets state ``broken``."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / CONFIG) or {}
    status = read_status(run_dir)
    report = read_json(run_dir / REPORT) or {}
    headline = (report.get("test") or report.get("validation") or {}).get("headline") or {}
    state = status.get("state") or "broken"
    error = status.get("error")
    if not config:
        state, error = "broken", error or "config.json is missing or unreadable"
    return RunSummary(
        run_id=run_dir.name,
        path=str(run_dir),
        name=config.get("name", run_dir.name),
        task=config.get("task", "?"),
        strategy=(config.get("strategy") or {}).get("kind", "?"),
        model=(config.get("model") or {}).get("name", "?"),
        state=state,
        created=float(status.get("created") or _mtime(run_dir)),
        finished=status.get("finished"),
        headline_name=headline.get("name"),
        headline_value=headline.get("value"),
        error=error,
        derived_method=(config.get("derived") or {}).get("method"),
        parents=tuple((config.get("derived") or {}).get("parents") or ()),
    )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def connect(root: str | Path) -> sqlite3.Connection:
    """Open the index with WAL so the dashboard reads while the worker writes."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # Switching a fresh database to WAL takes an exclusive lock that SQLite's busy timeout does not
    # wait for: two first-ever connections at once (the dashboard and the worker) get "database is
    # locked". Retry that case.
    for attempt in range(50):
        con = sqlite3.connect(root / INDEX, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(
                """CREATE TABLE IF NOT EXISTS runs (
                    run_id TEXT PRIMARY KEY, path TEXT, name TEXT, task TEXT, strategy TEXT, model TEXT,
                    state TEXT, created REAL, finished REAL, headline_name TEXT, headline_value REAL, error TEXT)"""
            )
            break
        except sqlite3.OperationalError as exc:
            con.close()
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.05 + 0.01 * attempt)
    con.row_factory = sqlite3.Row
    return con


# The index's columns (its schema, in connect); the summary's lineage fields are read from the directories.
INDEX_COLUMNS = ("run_id", "path", "name", "task", "strategy", "model", "state", "created", "finished", "headline_name",
                 "headline_value", "error")


def _insert(con: sqlite3.Connection, summaries: list[RunSummary]) -> None:
    for s in summaries:
        d = {k: v for k, v in s.as_dict().items() if k in INDEX_COLUMNS}
        con.execute(f"INSERT OR REPLACE INTO runs ({', '.join(d)}) VALUES ({', '.join('?' * len(d))})", list(d.values()))


def index_run(root: str | Path, run_dir: str | Path) -> RunSummary:
    summary = summarize(run_dir)
    with contextlib.closing(connect(root)) as con:
        _insert(con, [summary])
    return summary


def refresh_index(root: str | Path) -> list[RunSummary]:
    """Rebuild the index from the run directories (deleted runs drop out) and return newest first.

    One transaction: every dashboard session refreshes on each page load, and two refreshes whose
    deletes and inserts interleaved used to collide on a run id.
    """
    root = Path(root)
    if not root.exists():
        return []
    summaries = [summarize(p) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    summaries = [s for s in summaries if s.state != "broken" or Path(s.path, STATUS).exists() or Path(s.path, CONFIG).exists()]
    with contextlib.closing(connect(root)) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM runs")
            _insert(con, summaries)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    return sorted(summaries, key=lambda s: s.created, reverse=True)


def list_runs(root: str | Path) -> list[RunSummary]:
    return refresh_index(root)


class RunIdError(ValueError):
    """Not a run id: a run id is one folder name under the runs root, never a path."""


def run_path(root: str | Path, run_id: str) -> Path:
    """The directory of ``run_id`` under ``root``. Refuses anything but one plain folder name (no ``/``,
    ``..`` or hidden name such as ``.uploads``), so a link's ``?run=../..`` can't reach outside the root."""
    if (not isinstance(run_id, str) or not run_id or run_id.startswith(".") or "/" in run_id or "\\" in run_id
            or "\x00" in run_id or len(run_id) > 255):
        raise RunIdError(f"{str(run_id)[:80]!r} is not a run id: a run id is a folder name under the runs folder, "
                         "such as 20261204-101500-bbc-news-1a2b, as the Training page lists them.")
    return Path(root) / run_id


def swap_in(new: Path, final: Path) -> None:
    """Make the directory ``new`` be ``final``, replacing an older ``final`` whole: a crash at any moment
    leaves the old or the new one, or (between the two renames) ``final.old``, which :func:`recover_swap`
    puts back. Checkpoints and the saved model are written this way."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    faults.point("swap")
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def recover_swap(final: Path) -> bool:
    """After a crash between :func:`swap_in`'s renames, put the previous ``final`` back; True if it did."""
    old = final.with_name(final.name + ".old")
    if not final.exists() and old.is_dir():
        os.replace(old, final)
        return True
    return False


def find_run(root: str | Path, run_id_or_path: str) -> Path | None:
    """Resolve a run id (or a unique prefix) or a path to a run directory."""
    p = Path(run_id_or_path)
    if (p / CONFIG).exists() or (p / STATUS).exists():
        return p
    root = Path(root)
    if (root / run_id_or_path).is_dir():
        return root / run_id_or_path
    if root.exists():
        matches = [d for d in root.iterdir() if d.is_dir() and d.name.startswith(run_id_or_path)]
        if len(matches) == 1:
            return matches[0]
    return None


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (no second copy on disk), or a copy across file systems.

    Derived runs (compressed, fused) share their parents' files this way; a parent's file is never written
    through a link: a file that differs is written as a new file.
    """
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def link_or_copy_tree(source: Path, target: Path) -> None:
    """``target`` as a copy of the folder ``source`` whose files are hard links where the file system allows."""
    for path in source.rglob("*"):
        out = target / path.relative_to(source)
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(path, out)
