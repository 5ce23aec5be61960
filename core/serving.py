"""How this dashboard is served: local (one person, 127.0.0.1, no login) or shared (a team link, login
required), and what a shared one may read from the server's disk.

The mode is an environment fact set by the process that starts the server (``make share`` sets
``TUNEBOARD_SHARED=1``), so the pages, the CLI and the tests all read it here and nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_ENV = "TUNEBOARD_SHARED"
DATA_ROOTS_ENV = "TUNEBOARD_DATA_ROOTS"
SECRETS_ENV = "TUNEBOARD_SECRETS"


class PathRefused(PermissionError):
    """A server path outside the configured data roots; the message names the roots and how to add one."""


def shared() -> bool:
    return os.environ.get(SHARED_ENV, "") not in ("", "0", "false")


def is_loopback(address: str | None) -> bool:
    """True for an address only this machine reaches (Streamlit binds every interface when it is empty)."""
    return bool(address) and (address == "localhost" or address == "::1" or address.startswith("127."))


def data_roots() -> list[Path] | None:
    """The folders whose files may be read by path (``TUNEBOARD_DATA_ROOTS``, separated by ``:``),
    resolved; None means any path (local mode with no roots configured); shared mode defaults to
    none at all: uploads only."""
    value = os.environ.get(DATA_ROOTS_ENV)
    if value is None:
        return [] if shared() else None
    return [Path(p).expanduser().resolve() for p in value.split(os.pathsep) if p.strip()]


def check_server_path(path: str | Path) -> Path:
    """``path`` resolved (symlinks and ``..`` followed first), when it lies under a data root."""
    roots = data_roots()
    resolved = Path(path).expanduser().resolve()
    if roots is None or any(resolved.is_relative_to(root) for root in roots):
        return resolved
    if not roots:
        raise PathRefused(f"{path}: this dashboard reads no server paths (none are configured): upload the file "
                          f"instead, or have the server started with {DATA_ROOTS_ENV}=/folder/with/data.")
    allowed = ", ".join(str(r) for r in roots)
    raise PathRefused(f"{path} is outside the data folders this dashboard may read ({allowed}). Move or link the "
                      f"file into one of them, upload it instead, or add its folder to {DATA_ROOTS_ENV}.")


def load_secrets(repo: str | Path) -> dict:
    """The dashboard's secrets: the TOML file ``TUNEBOARD_SECRETS`` names, else ``.streamlit/secrets.toml``."""
    import tomllib

    path = Path(os.environ.get(SECRETS_ENV) or Path(repo) / ".streamlit" / "secrets.toml")
    if not path.exists():
        return {}
    with open(path, "rb") as f:
        return tomllib.load(f)


def share_problem(home: str | Path, sso: bool = False) -> str | None:
    """Why the dashboard must not be shared yet (no one could log in), or None when it may. With single
    sign-on configured, it needs a user or a group with a role (else every identity is refused)."""
    from core import users

    try:
        if users.has_users(home) or (sso and users.has_groups(home)):
            return None
    except users.UsersError as exc:
        return f"Not sharing the dashboard: {exc}"
    return (f"Not sharing the dashboard: {users.users_path(home)} has no users, so no one could log in and anyone "
            "could reach the machine. Add yourself first:\n"
            "  .venv/bin/python -m core users add YOUR_NAME --role admin\n"
            "then run `make share` again (see 'Share with your team' in the README).")
