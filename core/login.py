"""Logging in with the users file: lock-out after repeated failures, and the signed session cookie.

Lock-out counts failures per user name and per client address in ``<home>/.auth/failures.json``
(so neither guessing one user's password from many addresses nor many users' from one address
works); a success clears the name's count. The session is the user name and the time it was
signed, signed with a secret key kept in ``<home>/.auth/secret`` (itsdangerous, HMAC-SHA1 by
its default; the cookie is HttpOnly, so page scripts never see it). A session is checked against
the users file on every request: removing a user or changing their password ends it.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

from core import users
from core.access import User

AUTH_DIR = ".auth"
COOKIE = "tuneboard_session"
LOGIN_PATH = "/tuneboard/login"  # served by ui/share_app.py (Streamlit reserves /auth/ for its own sign-on)
LOGOUT_PATH = "/tuneboard/logout"


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5  # failed attempts in a row before a lock-out
    window_s: float = 15 * 60  # failures older than this are forgotten
    lock_s: float = 15 * 60  # how long a locked name or address waits


@dataclass(frozen=True)
class SessionPolicy:
    max_age_s: float = 8 * 3600  # a working day; then log in again


class LoginRefused(PermissionError):
    """Wrong name or password, or locked out; the message says which and, for a lock-out, for how long."""


def _auth_dir(home: str | Path) -> Path:
    path = Path(home) / AUTH_DIR
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@contextmanager
def _failures(home: str | Path, write: bool = True) -> Iterator[dict[str, list[float]]]:
    """The failure times by key ("user:NAME", "client:ADDRESS"), read (and with ``write``, written back)
    under a file lock."""
    path = _auth_dir(home) / "failures.json"
    with open(_auth_dir(home) / "failures.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except (OSError, ValueError):
            data = {}  # a damaged counter file only forgets failures; it never locks anyone out
        yield data
        if write:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, path)


def _locked_for(times: list[float], now: float, policy: LockoutPolicy) -> float:
    recent = [t for t in times if now - t < policy.window_s]
    if len(recent) < policy.max_failures:
        return 0.0
    return max(0.0, recent[-1] + policy.lock_s - now)


def log_in(home: str | Path, name: str, password: str, client: str | None,
           policy: LockoutPolicy = LockoutPolicy()) -> User:
    """The user for a correct name and password; :class:`LoginRefused` otherwise."""
    now = time.time()
    keys = [f"user:{name}"] + ([f"client:{client}"] if client else [])
    with _failures(home, write=False) as failures:
        for key in keys:
            wait = _locked_for(failures.get(key, []), now, policy)
            if wait:
                who = "this user" if key.startswith("user:") else "this address"
                raise LoginRefused(f"Too many failed logins for {who}: try again in {int(wait // 60) + 1} min, "
                                   "or ask an admin to set a new password (python -m core users passwd NAME).")
    user = users.verify_password(home, name, password)  # slow by design: outside the lock
    with _failures(home) as failures:
        if user is None:
            for key in keys:
                failures[key] = [t for t in failures.get(key, []) if now - t < policy.window_s] + [now]
        else:
            failures.pop(f"user:{name}", None)
    if user is None:
        raise LoginRefused("Wrong user name or password.")
    return user


def _signer(home: str | Path) -> TimestampSigner:
    path = _auth_dir(home) / "secret"
    if not path.exists():  # the first process to get here makes the key; link() never overwrites one
        tmp = path.with_name(f".secret-{os.getpid()}")
        tmp.write_text(secrets.token_hex(32))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return TimestampSigner(path.read_text().strip(), salt="tuneboard-session")


def sign_session(home: str | Path, user: User) -> str:
    return _signer(home).sign(f"{user.name}|{users.session_key(home, user.name)}").decode()


def session_user(home: str | Path, token: str | None, policy: SessionPolicy = SessionPolicy()) -> User | None:
    """The user a session cookie names, as the users file has them now; None if it is missing, forged,
    expired, or older than the user's last password change."""
    if not token:
        return None
    try:
        value = _signer(home).unsign(token, max_age=policy.max_age_s).decode()
    except (SignatureExpired, BadSignature, UnicodeDecodeError):
        return None
    name, _, key = value.rpartition("|")
    return users.current(home, name, key)
