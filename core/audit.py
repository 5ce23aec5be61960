"""The audit log: one JSON line per state-changing action in ``<runs root>/audit.jsonl``, append-only.

Each line is written with a single ``write`` on a file opened with O_APPEND, so lines from several
processes never interleave, and nothing here ever rewrites or truncates the file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"


def record(root: str | Path, user: str, action: str, target: str, **details: Any) -> None:
    path = Path(root) / AUDIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.time(), "user": user, "action": action, "target": target, **details},
                      ensure_ascii=False, default=str) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read(root: str | Path) -> list[dict[str, Any]]:
    path = Path(root) / AUDIT_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
