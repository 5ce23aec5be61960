"""Every state-changing action of the dashboard and the CLI, one call each: the role check
(:mod:`core.access`), the limits, the action, and its line in the audit log, in that order.

Pages call these, never :mod:`core.jobs` or :mod:`core.uploads` directly for a change, so a request
a page did not offer (a crafted websocket message, a stale tab after a role change) is refused here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import audit, jobs, runs, serving, uploads, users
from core.access import AccessDenied, Action, User, check, refusal


@dataclass(frozen=True)
class Limits:
    max_queued_per_user: int = 5  # runs one user may have waiting (TUNEBOARD_MAX_QUEUED_PER_USER)
    max_upload_rows: int = 1_000_000  # rows in one uploaded file (TUNEBOARD_MAX_UPLOAD_ROWS)

    @classmethod
    def from_env(cls) -> Limits:
        return cls(max_queued_per_user=int(os.environ.get("TUNEBOARD_MAX_QUEUED_PER_USER", cls.max_queued_per_user)),
                   max_upload_rows=int(os.environ.get("TUNEBOARD_MAX_UPLOAD_ROWS", cls.max_upload_rows)))


class LimitReached(PermissionError):
    """A configured limit refuses the action; the message names the limit and how to raise it."""


def check_sources(user: User, config: Any, root: str | Path) -> None:
    """The files and folders a config reads: a sample, a bundled model, an upload under the runs root or a hub id
    for anyone who may train; any other server path only for a role that may read server paths, under the data
    roots (a YAML config or a sweep must not read what the Data page would refuse).

    Raises:
        AccessDenied, serving.PathRefused: naming the field.
    """
    uploads_dir = (Path(root) / uploads.UPLOADS).resolve()
    named = (("data.source", config.data.source), ("data.validation_source", config.data.validation_source),
             ("data.test_source", config.data.test_source), ("model.name", config.model.name))
    for field_name, value in named:
        if not value or str(value).startswith(("sample:", "bundled:")):
            continue
        path = Path(str(value)).expanduser()
        if field_name == "model.name" and not path.exists():
            continue  # a hub id
        resolved = path.resolve()
        if resolved.is_relative_to(uploads_dir):
            continue
        if (why := refusal(user, Action.READ_SERVER_PATH)) is not None:
            raise AccessDenied(f"{field_name} names a file on the server ({value}): {why} Upload the file instead.")
        try:
            serving.check_server_path(resolved)
        except serving.PathRefused as exc:
            raise serving.PathRefused(f"{field_name}: {exc}") from None


def submit(user: User, configs: Sequence[Any], root: str | Path, *, start_worker: bool = True,
           limits: Limits | None = None) -> list[str]:
    """Queue one run per RunConfig, owned by ``user``; returns their run ids in queue order."""
    check(user, Action.TRAIN)
    for config in configs:
        check_sources(user, config, root)
    _check_queue_room(user, root, len(configs), limits)
    ids = [jobs.submit(config, root, owner=user.name) for config in configs]
    for run_id in ids:
        audit.record(root, user.name, "train", run_id)
    if start_worker:
        jobs.ensure_worker(root)
    return ids


def start_sweep(user: User, base: Any, raw_space: dict[str, Any], trials: int, root: str | Path, *, name: str,
                workers: int = 1, pruner: str = "median", seed: int = 0, limits: Limits | None = None) -> Path:
    """Start a sweep in the background whose trials (runs owned by ``user``) go through the queue; its folder."""
    from core import sweep

    check(user, Action.TRAIN)
    check_sources(user, base, root)  # the space can't name files: core.sweep.parse_space refuses those fields
    _check_queue_room(user, root, workers, limits)  # a sweep keeps ``workers`` trials queued or running at a time
    folder = sweep.launch(base.replace(output_dir=str(root)), raw_space, trials, name=name, workers=workers,
                          pruner=pruner, seed=seed, owner=user.name)
    audit.record(root, user.name, "sweep", name, trials=trials, workers=workers)
    return folder


def resume_sweep(user: User, root: str | Path, name: str, limits: Limits | None = None) -> Path:
    """Continue a stopped sweep in the background; its new trials are ``user``'s runs."""
    from core import sweep

    info = sweep.read_info(root, name)
    check(user, Action.RESUME, owner=info.get("owner"))
    _check_queue_room(user, root, max(1, int(info.get("workers") or 1)), limits)
    folder = sweep.resume_launch(root, name, owner=user.name)
    audit.record(root, user.name, "resume sweep", name)
    return folder


def stop_sweep(user: User, root: str | Path, name: str) -> str:
    """Stop a sweep and cancel its queued or running trials (its owner's, or an admin's action)."""
    from core import sweep

    check(user, Action.CANCEL, owner=sweep.read_info(root, name).get("owner"))
    message = sweep.stop(root, name)
    audit.record(root, user.name, "stop sweep", name)
    return message


def _check_queue_room(user: User, root: str | Path, adding: int, limits: Limits | None) -> None:
    limits = limits or Limits.from_env()
    waiting = sum(1 for j in jobs.list_jobs(root, ("queued",)) if j.owner == user.name)
    if waiting + adding > limits.max_queued_per_user:
        raise LimitReached(f"{user.name} has {waiting} run(s) waiting in the queue, and this would make "
                           f"{waiting + adding}; the limit is {limits.max_queued_per_user} per user. Wait for "
                           "them to start or cancel some (or have TUNEBOARD_MAX_QUEUED_PER_USER raised).")


def derive(user: User, parent_id: str, root: str | Path, methods: dict[str, dict[str, Any]], *, start_worker: bool = True,
           limits: Limits | None = None) -> list[str]:
    """Queue one derived run of ``parent_id`` per method (``{method: options}``); returns their run ids.

    Every method is checked (core.derived.plan: the parent, the task, the options) before any is queued.
    """
    from core import derived

    parent_dir = runs.run_path(root, parent_id)
    check(user, Action.DERIVE)
    _check_queue_room(user, root, len(methods), limits)
    for method, options in methods.items():
        derived.plan(parent_dir, method, options)
    ids = [derived.submit(parent_dir, method, options, owner=user.name) for method, options in methods.items()]
    for run_id, method in zip(ids, methods, strict=True):
        audit.record(root, user.name, "derive", run_id, method=method, parent=parent_id)
    if start_worker:
        jobs.ensure_worker(root)
    return ids


def cancel(user: User, run_id: str, root: str | Path) -> str:
    runs.run_path(root, run_id)
    check(user, Action.CANCEL, owner=jobs.owner_of(root, run_id))
    outcome = jobs.cancel(run_id, root)
    audit.record(root, user.name, "cancel", run_id, outcome=outcome)
    return outcome


def resume(user: User, run_id: str, root: str | Path, *, start_worker: bool = True) -> None:
    runs.run_path(root, run_id)
    check(user, Action.RESUME, owner=jobs.owner_of(root, run_id))
    jobs.resume(run_id, root, owner=user.name)
    audit.record(root, user.name, "resume", run_id)
    if start_worker:
        jobs.ensure_worker(root)


def delete(user: User, run_id: str, root: str | Path) -> None:
    runs.run_path(root, run_id)
    check(user, Action.DELETE)
    jobs.delete(run_id, root)
    audit.record(root, user.name, "delete", run_id)


def save_upload(user: User, root: str | Path, name: str, data: bytes) -> Path:
    check(user, Action.UPLOAD)
    path = uploads.save_upload(root, name, data, owner=user.name)
    audit.record(root, user.name, "upload", uploads.safe_name(name), bytes=len(data), stored=path.parent.name)
    return path


def check_upload_rows(name: str, rows: int, limits: Limits | None = None) -> None:
    """Refuse an uploaded table longer than the limit (it would tie up the shared machine's memory)."""
    limits = limits or Limits.from_env()
    if rows > limits.max_upload_rows:
        raise LimitReached(f"{name} has {rows:,} rows; an upload may have at most {limits.max_upload_rows:,}. Use a sample of "
                           "it (or have TUNEBOARD_MAX_UPLOAD_ROWS raised, or an admin can read it from a data folder).")


def read_server_path(user: User, path: str | Path) -> Path:
    """A server path the user typed, resolved, when their role and the data roots allow it."""
    check(user, Action.READ_SERVER_PATH)
    return serving.check_server_path(path)


def add_user(user: User, home: str | Path, name: str, role: str, password: str | None) -> None:
    check(user, Action.MANAGE_USERS)
    users.add(home, name, role, password)
    audit.record(home, user.name, "add user", name, role=role)


def set_role(user: User, home: str | Path, name: str, role: str) -> None:
    check(user, Action.MANAGE_USERS)
    users.set_role(home, name, role)
    audit.record(home, user.name, "set role", name, role=role)


def set_password(user: User, home: str | Path, name: str, password: str) -> None:
    check(user, Action.MANAGE_USERS)
    users.set_password(home, name, password)
    audit.record(home, user.name, "set password", name)


def log_out(user: User, home: str | Path) -> None:
    """End every session of ``user`` (anyone may log themselves out)."""
    users.end_sessions(home, user.name)
    audit.record(home, user.name, "log out", user.name)


def set_group(user: User, home: str | Path, group: str, role: str | None) -> None:
    check(user, Action.MANAGE_USERS)
    users.set_group(home, group, role)
    audit.record(home, user.name, "set group role" if role else "remove group", group, role=role)


def remove_user(user: User, home: str | Path, name: str) -> None:
    check(user, Action.MANAGE_USERS)
    users.remove(home, name)
    audit.record(home, user.name, "remove user", name)


def fuse(user: User, member_ids: Sequence[str], root: str | Path, method: str, options: dict[str, Any] | None = None, *,
         name: str | None = None, start_worker: bool = True, limits: Limits | None = None) -> str:
    """Queue one fused run of ``member_ids`` (core.fuse), checked before anything is written; returns its run id."""
    from core import derived

    member_dirs = [runs.run_path(root, run_id) for run_id in member_ids]
    check(user, Action.DERIVE)
    _check_queue_room(user, root, 1, limits)
    run_id = derived.submit_config(derived.plan_fusion(member_dirs, method, options, name), Path(root), owner=user.name)
    audit.record(root, user.name, "fuse", run_id, method=method, members=list(member_ids))
    if start_worker:
        jobs.ensure_worker(root)
    return run_id


def save_analysis(user: User, run_id: str, root: str | Path) -> dict[str, Any]:
    """Save what error analysis needs of a run made before it was kept: its validation predictions (the saved model
    re-evaluated) and its fitted temperature (core.calibration), also written into its report. Returns the calibration.
    The run's owner or an admin only: it rewrites the run's predictions files.

    Raises:
        CalibrationError: the predictions are saved, but no temperature applies (the reason).
    """
    from core.access import AccessDenied, Role
    from core.calibration import calibrate, summary
    from core.evaluate import evaluate_splits

    check(user, Action.DERIVE)
    run_dir = runs.run_path(root, run_id)
    owner = jobs.owner_of(root, run_id)
    if owner not in (None, user.name) and user.role is not Role.ADMIN:
        raise AccessDenied(f"run {run_id} is {owner}'s: only they or an admin can re-evaluate it")
    audit.record(root, user.name, "save analysis", run_id)
    evaluate_splits(run_dir)
    report = runs.read_json(run_dir / runs.REPORT) or {}
    fitted = calibrate(run_dir, report)  # CalibrationError: why there is no temperature, for the page to say
    report["temperature_scaling"] = summary(fitted)
    runs.atomic_write_json(run_dir / runs.REPORT, report)
    return fitted


def corrected_copy(user: User, root: str | Path, run_id: str, review: Any, split: str | None = None) -> tuple[bytes, str, dict[str, int]]:
    """A reviewed label-issue table applied to a copy of the run's data file (core.label_issues.corrected_copy).

    The copy holds the whole file, so it needs the upload role; a source on the server (not an upload or a sample)
    must lie under the data roots, as any server path the dashboard reads.
    """
    from core.label_issues import corrected_copy as make_copy
    from core.label_issues import review_sources

    check(user, Action.UPLOAD)
    run_dir = runs.run_path(root, run_id)
    splits = [split] if split else sorted(set(map(str, review["split"]))) if "split" in review else []
    for source in set(review_sources(run_dir, splits).values()):
        if not source.startswith("sample:") and not uploads.is_upload(source, root):
            serving.check_server_path(source)
    return make_copy(run_dir, review, split)


def save_corrected_copy(user: User, root: str | Path, run_id: str, review: Any, split: str | None = None) -> tuple[Path, dict[str, int]]:
    """:func:`corrected_copy`, saved as a new upload of ``user`` (their file is never touched), ready to train on."""
    data, name, counts = corrected_copy(user, root, run_id, review, split)
    path = uploads.save_upload(root, name, data, owner=user.name)
    audit.record(root, user.name, "corrected copy", run_id, stored=path.parent.name, **counts)
    return path, counts
