"""The dashboard's draft of a run — data source, column mapping, task, strategy, hyper-parameters —
kept on the server so that a browser refresh, a second tab on the same link, or a restart of the
Streamlit server gives it back.

A draft is a flat dict of JSON values (the form's widget values) stored as
``<runs root>/.drafts/<draft id>.json``. The id travels in the page's URL (``?draft=<id>``), so two
tabs with two drafts never see each other's values, and a copied link opens the same draft.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

from core import runs

DRAFTS = ".drafts"
_ID = re.compile(r"^[0-9a-f]{16}$")


def new_draft_id() -> str:
    return secrets.token_hex(8)


def valid_id(draft_id: Any) -> bool:
    """Only ids this module makes: a URL can't name a file outside the drafts folder."""
    return isinstance(draft_id, str) and bool(_ID.match(draft_id))


def draft_path(root: str | Path, draft_id: str) -> Path:
    if not valid_id(draft_id):
        raise ValueError(f"not a draft id: {draft_id!r}")
    return Path(root) / DRAFTS / f"{draft_id}.json"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def save_draft(root: str | Path, draft_id: str, values: dict[str, Any]) -> None:
    """Merge the JSON-able values into the stored draft (others — uploaded file objects, say — are
    skipped); a no-op if nothing changed.

    Merged, not replaced: the dashboard holds only the values of the widgets its current page draws
    (Streamlit forgets the others), and the draft must not forget them too.
    """
    stored = load_draft(root, draft_id) or {}
    merged = {**stored, **{k: v for k, v in values.items() if isinstance(k, str) and _jsonable(v)}}
    if merged != stored:
        runs.atomic_write_json(draft_path(root, draft_id), {"saved": time.time(), "values": merged})


def load_draft(root: str | Path, draft_id: str) -> dict[str, Any] | None:
    """The stored values, or None for an unknown (or malformed) id."""
    if not valid_id(draft_id):
        return None
    data = runs.read_json(draft_path(root, draft_id))
    return data.get("values") if isinstance(data, dict) and isinstance(data.get("values"), dict) else None
