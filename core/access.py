"""Who may do what on a shared dashboard: the roles, the actions, and the one check they all go through.

Every state-changing action of the dashboard, the CLI and (later) the HTTP API calls :func:`check`
through :mod:`core.actions` before it does anything, so a viewer who crafts a request is refused
by the server, not only shown fewer buttons. Pages use :func:`allowed` just to decide what to draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class Action(StrEnum):
    VIEW = "view"  # runs, progress, evaluation, compare, the try-it box, downloads of reports and predictions
    UPLOAD = "upload"  # save a data file on the server (also: predict a file)
    TRAIN = "train"  # start runs, and the pre-flight that runs a few real steps
    CANCEL = "cancel"
    RESUME = "resume"
    DERIVE = "derive"  # compress, fuse, sweep: new runs made from a run
    DELETE = "delete"  # a run and everything in its directory
    READ_SERVER_PATH = "read server path"  # a file or folder on the server, by its path
    MANAGE_USERS = "manage users"


# The least role each action needs; the roles are ordered viewer < operator < admin.
NEEDS: dict[Action, Role] = {
    Action.VIEW: Role.VIEWER,
    Action.UPLOAD: Role.OPERATOR,
    Action.TRAIN: Role.OPERATOR,
    Action.CANCEL: Role.OPERATOR,
    Action.RESUME: Role.OPERATOR,
    Action.DERIVE: Role.OPERATOR,
    Action.DELETE: Role.ADMIN,
    Action.READ_SERVER_PATH: Role.ADMIN,
    Action.MANAGE_USERS: Role.ADMIN,
}
# Actions on a job someone else started need admin: an operator stops or restarts only their own.
OWN_JOBS_ONLY = frozenset({Action.CANCEL, Action.RESUME})


@dataclass(frozen=True)
class User:
    name: str
    role: Role


# Local mode (`make run`: bound to 127.0.0.1, one person on their own machine) has no login.
LOCAL_USER = User("local", Role.ADMIN)


class AccessDenied(PermissionError):
    """The user's role does not allow the action; the message says which role it needs and how to get it."""


def refusal(user: User, action: Action, owner: str | None = None) -> str | None:
    """Why ``user`` may not do ``action`` (on a job started by ``owner``), or None when they may."""
    needed = NEEDS[action]
    if user.role.rank < needed.rank:
        return (f"To {action} you need the {needed} role, and {user.name} is a {user.role}. "
                f"An admin can grant it: python -m core users set-role {user.name} {needed}")
    if action in OWN_JOBS_ONLY and owner is not None and owner != user.name and user.role is not Role.ADMIN:
        return f"This job was started by {owner}: an operator can {action} only their own jobs (an admin can {action} any)."
    return None


def allowed(user: User, action: Action, owner: str | None = None) -> bool:
    return refusal(user, action, owner) is None


def check(user: User, action: Action, owner: str | None = None) -> None:
    """Raise :class:`AccessDenied` unless ``user`` may do ``action``."""
    why = refusal(user, action, owner)
    if why is not None:
        raise AccessDenied(why)
