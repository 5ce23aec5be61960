"""The users file of a shared dashboard: ``$TUNEBOARD_HOME/users.yaml``, written by ``python -m core users``.

Passwords are stored as argon2id hashes (argon2-cffi: salted, slow, memory-hard; never a plain or
fast hash). Single sign-on users have no password: they get their role from their e-mail address
listed under ``users`` or from a group under ``groups``. The file is written atomically, readable
by its owner only, and read afresh on every check, so a role change or a removal takes effect at
the user's next click.

    users:
      alice: {role: operator, password: "$argon2id$v=19$...", session: 9f2c41d0a7b3e815}
      bob@example.com: {role: viewer}
    groups:
      ml-team: operator
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.access import Role, User

USERS_FILE = "users.yaml"
MIN_PASSWORD_LENGTH = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
_HASHER = PasswordHasher()  # argon2id with the library's current recommended cost


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the name is unknown, so a wrong name costs as long as a wrong
    password (made on the first login, not when the module is imported)."""
    return _HASHER.hash("not a password of anyone")


class UsersError(ValueError):
    """The users file or a request to change it is wrong; the message says what and how to fix it."""


def users_path(home: str | Path) -> Path:
    return Path(home) / USERS_FILE


def _read(home: str | Path) -> dict[str, Any]:
    path = users_path(home)
    if not path.exists():
        return {"users": {}, "groups": {}}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UsersError(f"{path} is not valid YAML ({exc}). Fix it by hand or move it away and add the users again.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("users", {}), dict) or not isinstance(data.get("groups", {}), dict):
        raise UsersError(f"{path} must hold a 'users' mapping (name: {{role, password}}) and optionally 'groups' (group: role).")
    data.setdefault("users", {})
    data.setdefault("groups", {})
    for name, entry in data["users"].items():
        if not isinstance(entry, dict):
            raise UsersError(f"{path}: user {name} needs a role (viewer, operator or admin), as in `{name}: {{role: viewer}}`.")
        _role(entry.get("role"), f"{path}: user {name}")
    for group, role in data["groups"].items():
        _role(role, f"{path}: group {group}")
    return data


def _role(value: Any, where: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise UsersError(f"{where}: role {value!r} is not one of viewer, operator, admin.") from None


def _write(home: str | Path, data: dict[str, Any]) -> None:
    path = users_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# Tuneboard users, written by `python -m core users`; passwords are argon2id hashes.\n" + yaml.safe_dump(
        data, sort_keys=True, allow_unicode=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsersError(f"The password is {len(password)} characters long; use at least {MIN_PASSWORD_LENGTH}.")


def add(home: str | Path, name: str, role: str, password: str | None) -> None:
    """Add a user. ``password=None`` adds a single sign-on user (an e-mail address) who logs in through OIDC."""
    if not _NAME.match(name):
        raise UsersError(f"User name {name!r} is not allowed: use 1-64 letters, digits and . _ @ + - (starting with a letter or digit).")
    data = _read(home)
    if name in data["users"]:
        raise UsersError(f"User {name} exists already; change it with `users set-role` or `users passwd`.")
    entry: dict[str, Any] = {"role": str(_role(role, f"user {name}"))}
    if password is not None:
        _check_password(password)
        entry |= {"password": _HASHER.hash(password), "session": secrets.token_hex(8)}
    data["users"][name] = entry
    _write(home, data)


def _existing(data: dict[str, Any], name: str, home: str | Path) -> dict[str, Any]:
    if name not in data["users"]:
        known = ", ".join(sorted(data["users"])) or "none yet"
        raise UsersError(f"No user {name} in {users_path(home)} (users: {known}).")
    return data["users"][name]


def set_role(home: str | Path, name: str, role: str) -> None:
    data = _read(home)
    _existing(data, name, home)["role"] = str(_role(role, f"user {name}"))
    _write(home, data)


def set_password(home: str | Path, name: str, password: str) -> None:
    """A new password; sessions signed before it stop working."""
    _check_password(password)
    data = _read(home)
    _existing(data, name, home).update(password=_HASHER.hash(password), session=secrets.token_hex(8))
    _write(home, data)


def end_sessions(home: str | Path, name: str) -> None:
    """Log ``name`` out everywhere: every session signed before now stops working (at the next click)."""
    data = _read(home)
    _existing(data, name, home)["session"] = secrets.token_hex(8)
    _write(home, data)


def remove(home: str | Path, name: str) -> None:
    data = _read(home)
    _existing(data, name, home)
    del data["users"][name]
    _write(home, data)


def list_users(home: str | Path) -> list[tuple[str, Role, str]]:
    """(name, role, how they log in) for each user, by name."""
    data = _read(home)
    return [(name, Role(e["role"]), "password" if e.get("password") else "single sign-on")
            for name, e in sorted(data["users"].items())]


def has_users(home: str | Path) -> bool:
    return bool(_read(home)["users"])


def set_group(home: str | Path, group: str, role: str | None) -> None:
    """Give single sign-on group ``group`` a role (``None``: take it away)."""
    data = _read(home)
    if role is None:
        if group not in data["groups"]:
            raise UsersError(f"No group {group} in {users_path(home)} (groups: {', '.join(sorted(data['groups'])) or 'none'}).")
        del data["groups"][group]
    else:
        data["groups"][group] = str(_role(role, f"group {group}"))
    _write(home, data)


def list_groups(home: str | Path) -> list[tuple[str, Role]]:
    return [(g, Role(r)) for g, r in sorted(_read(home)["groups"].items())]


def has_groups(home: str | Path) -> bool:
    return bool(_read(home)["groups"])


def verify_password(home: str | Path, name: str, password: str) -> User | None:
    """The user when ``password`` is theirs, else None (the same work is done for an unknown name)."""
    entry = _read(home)["users"].get(name) or {}
    stored = entry.get("password") or _dummy_hash()
    try:
        _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    return User(name, Role(entry["role"])) if entry.get("password") else None


def session_key(home: str | Path, name: str) -> str | None:
    """What a session of ``name`` is bound to: a new password or a log-out changes it, ending older sessions."""
    entry = _read(home)["users"].get(name) or {}
    return str(entry.get("session")) if entry.get("password") else None


def current(home: str | Path, name: str, key: str) -> User | None:
    """The user as the file has them now, for a session bound to ``key``: None once they were removed
    or changed their password since it was signed."""
    entry = _read(home)["users"].get(name)
    if entry is None or not entry.get("password") or str(entry.get("session")) != key:
        return None
    return User(name, Role(entry["role"]))


def role_for_identity(home: str | Path, email: str | None, groups: list[str] | None = None) -> User | None:
    """The role of a single sign-on identity: its e-mail address under ``users``, else the highest role
    of its groups under ``groups``; None when the file names neither (no access)."""
    data = _read(home)
    if email and email in data["users"]:
        return User(email, Role(data["users"][email]["role"]))
    roles = [Role(data["groups"][g]) for g in groups or [] if g in data["groups"]]
    if email and roles:
        return User(email, max(roles, key=lambda r: r.rank))
    return None
