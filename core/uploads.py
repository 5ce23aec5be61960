"""Files users upload through the dashboard: where they are kept and how they are named back to them.

An upload is written once under ``<runs root>/.uploads/<content hash>/<its own file name>``: the
training subprocess reads it from there, two uploads with the same name but other contents don't
collide, and the same file uploaded twice is stored once. The file name is reduced to its last path
component and to safe characters, so an upload can't write outside its folder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

UPLOADS = ".uploads"


def safe_name(name: str) -> str:
    """The last path component of ``name`` with anything but letters, digits, ``.-_`` and spaces replaced."""
    base = re.split(r"[\\/]", name)[-1].strip()
    base = re.sub(r"[^\w.\- ]", "_", base).lstrip(".")
    return base[:120] or "upload"


def save_upload(root: str | Path, name: str, data: bytes) -> Path:
    """Keep ``data`` as ``name`` under the runs root; returns the saved path (unchanged if already there)."""
    folder = Path(root) / UPLOADS / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe_name(name)
    if not path.exists():
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


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
    return re.sub(re.escape(folder) + r"/[0-9a-f]+/([^\s,:;'\"]+)", r"\1", text)
