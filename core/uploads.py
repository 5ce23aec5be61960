"""Files users upload through the dashboard: where they are kept and how they are named back to them.

An upload is written once under ``<runs root>/.uploads/<user>/<content hash>/<its own file name>``:
the training subprocess reads it from there, two uploads with the same name but other contents don't
collide, and the same file uploaded twice by one user is stored once. The folder is chosen by the
user and the content; the file name is only the last component, reduced to safe characters, so an
upload can't write outside its folder. (Runs made before uploads were per user read
``.uploads/<content hash>/<name>``; both layouts are recognised.) Uploads that no unfinished run
reads are removed after ``TUNEBOARD_UPLOAD_MAX_AGE_DAYS`` (14) days without use (:func:`clean_old`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from pathlib import Path

from core import runs

UPLOADS = ".uploads"
MAX_AGE_ENV = "TUNEBOARD_UPLOAD_MAX_AGE_DAYS"
_HASH = re.compile(r"^[0-9a-f]{16}$")


def safe_name(name: str) -> str:
    """The last path component of ``name`` with anything but letters, digits, ``.-_`` and spaces replaced."""
    base = re.split(r"[\\/]", name)[-1].strip()
    base = re.sub(r"[^\w.\- ]", "_", base).lstrip(".")
    return base[:120] or "upload"


def save_upload(root: str | Path, name: str, data: bytes, owner: str = "local") -> Path:
    """Keep ``data`` as ``name`` under the runs root in ``owner``'s uploads; returns the saved path
    (the same path, marked as used now, if that user uploaded that file before)."""
    folder = Path(root) / UPLOADS / safe_name(owner) / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe_name(name)
    if not path.exists():
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    os.utime(folder)  # used now: clean_old counts the age from here
    return path


def max_age_s() -> float:
    return float(os.environ.get(MAX_AGE_ENV, "14")) * 86400


def _upload_folders(root: Path) -> list[Path]:
    """Each upload's own folder (``<hash>``, under a user's folder or, for older runs, directly)."""
    base = root / UPLOADS
    if not base.is_dir():
        return []
    found = []
    for entry in base.iterdir():
        if _HASH.match(entry.name):
            found.append(entry)
        elif entry.is_dir():
            found += [d for d in entry.iterdir() if d.is_dir() and _HASH.match(d.name)]
    return found


def clean_old(root: str | Path, older_than_s: float | None = None) -> list[Path]:
    """Remove the uploads not used for ``older_than_s`` (default :func:`max_age_s`) that no unfinished run
    (queued, running, cancelled, interrupted, failed: it may still resume) reads; returns what went."""
    root = Path(root)
    limit = time.time() - (max_age_s() if older_than_s is None else older_than_s)
    needed = set()
    for run_dir in root.iterdir() if root.is_dir() else []:
        if run_dir.is_dir() and not run_dir.name.startswith(".") and runs.read_status(run_dir).get("state") != "completed":
            source = ((runs.read_json(run_dir / runs.CONFIG) or {}).get("data") or {}).get("source") or ""
            if is_upload(source, root):
                needed.add(Path(source).resolve().parent)
    removed = []
    for folder in _upload_folders(root):
        if folder.stat().st_mtime < limit and folder.resolve() not in needed:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def is_upload(path: str | Path, root: str | Path) -> bool:
    try:
        Path(path).resolve().relative_to((Path(root) / UPLOADS).resolve())
    except (ValueError, OSError):
        return False
    return True


def upload_name(source: str, root: str | Path) -> str | None:
    """The file name a saved upload had for its user; None when ``source`` is no upload (a sample, a path)."""
    if not source or source.startswith("sample:") or not is_upload(source, root):
        return None
    return Path(source).name


def display_name(source: str, root: str | Path) -> str:
    """How a data source is named to its user: an upload by its file name, anything else as given."""
    name = upload_name(source, root)
    return source if name is None else f"{name} (uploaded)"


def replace_upload_paths(text: str, root: str | Path) -> str:
    """``text`` (an error message) with every saved upload's path replaced by its file name."""
    folder = str((Path(root) / UPLOADS).resolve())
    return re.sub(re.escape(folder) + r"/(?:[\w.@+ -]+/)?[0-9a-f]{16}/([^\s,:;'\"]+)", r"\1", text)
