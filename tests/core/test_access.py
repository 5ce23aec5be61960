"""Roles on the server side: every (role × action) pair through core.actions, the job-owner rule,
limits, the audit log, run ids from links and the data roots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from core import actions, audit, jobs, runs, serving, users
from core.access import AccessDenied, Action, Role, User, check
from tests.support.paths import REPO
from tests.support.tiny import tiny_config

LEGACY = REPO / "tests" / "fixtures" / "legacy_run" / "20261202-211038-legacy-full-bb0a"  # a real 2-layer MiniLM run

# The table, written out (not derived from core.access.NEEDS, so a change there must match it).
ALLOWED = {
    Role.VIEWER: {Action.VIEW},
    Role.OPERATOR: {Action.VIEW, Action.UPLOAD, Action.TRAIN, Action.CANCEL, Action.RESUME, Action.DERIVE},
    Role.ADMIN: set(Action),
}


def queued_run(root: Path, owner: str) -> str:
    return jobs.submit(tiny_config(root, "r"), root, owner=owner)


def cancelled_run(root: Path, owner: str) -> str:
    run_id = queued_run(root, owner)
    jobs.cancel(run_id, root)
    (root / run_id / runs.CHECKPOINT_DIR).mkdir(parents=True)  # as a run cancelled after its first checkpoint
    return run_id


def do(action: Action, user: User, root: Path):
    """Do ``action`` as ``user`` through core.actions; returns a check that it took effect."""
    if action is Action.VIEW:  # viewing changes nothing
        check(user, action)
        return lambda: True
    if action is Action.DERIVE:
        parent = root / "legacy"
        if not parent.exists():
            shutil.copytree(LEGACY, parent)
        run_id, = actions.derive(user, "legacy", root, {"int8": {}}, start_worker=False)
        return lambda: jobs.latest_job(root, run_id).kind == "derive" and jobs.owner_of(root, run_id) == user.name
    if action is Action.UPLOAD:
        path = root / ".uploads"
        actions.save_upload(user, root, "reviews.csv", b"text,label\ngood,pos\n")
        return lambda: any(path.rglob("reviews.csv"))
    if action is Action.TRAIN:
        run_id, = actions.submit(user, [tiny_config(root, "mine")], root, start_worker=False)
        return lambda: jobs.latest_job(root, run_id).owner == user.name
    if action is Action.CANCEL:
        run_id = queued_run(root, user.name)
        actions.cancel(user, run_id, root)
        return lambda: runs.read_status(root / run_id)["state"] == "cancelled"
    if action is Action.RESUME:
        run_id = cancelled_run(root, user.name)
        actions.resume(user, run_id, root, start_worker=False)
        return lambda: runs.read_status(root / run_id)["state"] == "queued"
    if action is Action.DELETE:
        run_id = cancelled_run(root, "someone")
        actions.delete(user, run_id, root)
        return lambda: not (root / run_id).exists()
    if action is Action.READ_SERVER_PATH:
        (root / "data.csv").write_text("text,label\n")
        read = actions.read_server_path(user, root / "data.csv")
        return lambda: read == (root / "data.csv").resolve()
    if action is Action.MANAGE_USERS:
        actions.add_user(user, root, "newbie", "viewer", "a long enough password")
        return lambda: [u[0] for u in users.list_users(root)] == ["newbie"]
    raise AssertionError(f"no test for {action}")


@pytest.mark.parametrize("action", list(Action), ids=str)
@pytest.mark.parametrize("role", list(Role), ids=str)
def test_each_role_may_do_what_the_table_says_and_nothing_more(runs_root, role, action):
    runs_root.mkdir(parents=True)
    user = User(f"{role}-user", role)
    if action in ALLOWED[role]:
        took_effect = do(action, user, runs_root)
        assert took_effect()
        if action not in (Action.VIEW, Action.READ_SERVER_PATH):  # state changed: audited
            assert [(a["user"], a["action"]) for a in audit.read(runs_root)][-1][0] == user.name
    else:
        if action is Action.DERIVE:  # the parent run is set-up, not the refused action's doing
            shutil.copytree(LEGACY, runs_root / "legacy")
        before = sorted(p.relative_to(runs_root) for p in runs_root.rglob("*") if p.name != "audit.jsonl")
        with pytest.raises(AccessDenied, match=rf"To {action} you need the \w+ role, and {user.name} is a {role}\."):
            do(action, user, runs_root)
        # refused before anything was written (set-up rows aside: they are made outside core.actions)
        assert all(a["user"] != user.name for a in audit.read(runs_root))
        if action in (Action.UPLOAD, Action.MANAGE_USERS, Action.TRAIN, Action.DERIVE):
            assert sorted(p.relative_to(runs_root) for p in runs_root.rglob("*") if p.name != "audit.jsonl") == before


def test_an_operator_stops_only_their_own_jobs_and_an_admin_any(runs_root):
    runs_root.mkdir(parents=True)
    alice, bob, ada = User("alice", Role.OPERATOR), User("bob", Role.OPERATOR), User("ada", Role.ADMIN)
    alices = queued_run(runs_root, "alice")
    with pytest.raises(AccessDenied, match="started by alice: an operator can cancel only their own"):
        actions.cancel(bob, alices, runs_root)
    assert runs.read_status(runs_root / alices)["state"] == "queued"
    stopped = cancelled_run(runs_root, "alice")
    with pytest.raises(AccessDenied, match="only their own"):
        actions.resume(bob, stopped, runs_root, start_worker=False)
    assert "cancelled before it started" in actions.cancel(ada, alices, runs_root)
    actions.resume(ada, stopped, runs_root, start_worker=False)
    assert jobs.owner_of(runs_root, stopped) == "alice"  # resuming doesn't change who started it
    actions.cancel(alice, stopped, runs_root)  # so alice can still stop her resumed run
    assert [(a["user"], a["action"], a["target"]) for a in audit.read(runs_root)] == [
        ("ada", "cancel", alices), ("ada", "resume", stopped), ("alice", "cancel", stopped)]


def test_queued_runs_per_user_are_limited_and_the_refusal_says_how_to_raise_it(runs_root):
    runs_root.mkdir(parents=True)
    alice, bob = User("alice", Role.OPERATOR), User("bob", Role.OPERATOR)
    limits = actions.Limits(max_queued_per_user=2)
    actions.submit(alice, [tiny_config(runs_root, "a1")], runs_root, start_worker=False, limits=limits)
    with pytest.raises(actions.LimitReached, match="alice has 1 run.* the limit is 2 per user.*TUNEBOARD_MAX_QUEUED_PER_USER"):
        actions.submit(alice, [tiny_config(runs_root, "a2"), tiny_config(runs_root, "a3")], runs_root,
                       start_worker=False, limits=limits)
    assert len(jobs.list_jobs(runs_root, ("queued",))) == 1  # all or nothing
    actions.submit(bob, [tiny_config(runs_root, "b1"), tiny_config(runs_root, "b2")], runs_root, start_worker=False, limits=limits)
    assert [j.owner for j in jobs.list_jobs(runs_root, ("queued",))] == ["alice", "bob", "bob"]


def test_the_audit_log_only_grows(runs_root):
    audit.record(runs_root, "alice", "train", "run-1")
    first = (runs_root / audit.AUDIT_FILE).read_bytes()
    audit.record(runs_root, "bob", "delete", "run-1", note="a \"quoted\"\nline")
    assert (runs_root / audit.AUDIT_FILE).read_bytes().startswith(first)
    assert [(a["user"], a["action"]) for a in audit.read(runs_root)] == [("alice", "train"), ("bob", "delete")]


@pytest.mark.parametrize("bad", ["../etc", "..", ".", "a/../../b", "/etc/passwd", ".uploads", ".auth", "", "x\x00y"])
def test_a_run_id_from_a_link_never_reaches_outside_the_runs_root(runs_root, bad):
    from ui.runview import load_run

    runs_root.mkdir(parents=True)
    (runs_root.parent / "etc").mkdir()
    with pytest.raises(runs.RunIdError, match="is not a run id"):
        runs.run_path(runs_root, bad)
    with pytest.raises(runs.RunIdError):
        actions.delete(User("ada", Role.ADMIN), bad, runs_root)
    assert (runs_root.parent / "etc").is_dir()
    view = load_run(runs_root, bad)
    assert view.state == "missing" and "is not a run id" in view.problem


def test_server_paths_are_read_only_under_the_data_roots(tmp_path, monkeypatch):
    data, secret = tmp_path / "data", tmp_path / "private"
    data.mkdir()
    secret.mkdir()
    (data / "ok.csv").write_text("text,label\n")
    (secret / "keys.csv").write_text("secret\n")
    (data / "link.csv").symlink_to(secret / "keys.csv")  # a link inside a root pointing outside it
    monkeypatch.setenv(serving.DATA_ROOTS_ENV, str(data))
    assert serving.check_server_path(data / "ok.csv") == (data / "ok.csv").resolve()
    for escape in (data / "link.csv", f"{data}/../private/keys.csv", secret / "keys.csv", "/etc/passwd"):
        with pytest.raises(serving.PathRefused, match=rf"outside the data folders this dashboard may read \({data}\)"):
            serving.check_server_path(escape)
    monkeypatch.delenv(serving.DATA_ROOTS_ENV)
    assert serving.check_server_path(secret / "keys.csv")  # local mode with no roots: the user's own machine
    monkeypatch.setenv(serving.SHARED_ENV, "1")  # shared with no roots configured: uploads only
    with pytest.raises(serving.PathRefused, match="reads no server paths"):
        serving.check_server_path(data / "ok.csv")


def test_sharing_is_refused_until_someone_can_log_in(tmp_path):
    assert "has no users" in serving.share_problem(tmp_path) and "users add" in serving.share_problem(tmp_path)
    users.add(tmp_path, "ada", "admin", "a long enough password")
    assert serving.share_problem(tmp_path) is None
    assert serving.is_loopback("127.0.0.1") and not serving.is_loopback("0.0.0.0") and not serving.is_loopback("")
    assert os.environ.get(serving.SHARED_ENV) is None  # the tests run in local mode


def test_a_config_reads_server_files_only_for_who_may_and_under_the_data_roots(runs_root, tmp_path, monkeypatch):
    """A loaded YAML config (or a sweep's base) can't read what the Data page would refuse: the file named in
    data.source is checked for the role and the data roots when the run is queued."""
    import dataclasses

    outside = tmp_path / "private.csv"
    outside.write_text("text,label\na,b\n")
    inside = tmp_path / "data" / "ok.csv"
    inside.parent.mkdir()
    inside.write_text("text,label\na,b\n")
    monkeypatch.setenv(serving.DATA_ROOTS_ENV, str(inside.parent))
    operator, admin = User("olga", Role.OPERATOR), User("ada", Role.ADMIN)

    def reading(source):
        config = tiny_config(runs_root, "reads")
        return config.replace(data=dataclasses.replace(config.data, source=str(source)))

    with pytest.raises(AccessDenied, match=r"data.source names a file on the server .*private.csv.*Upload the file"):
        actions.submit(operator, [reading(outside)], runs_root, start_worker=False)
    with pytest.raises(serving.PathRefused, match="data.source: .*outside the data folders"):
        actions.submit(admin, [reading(outside)], runs_root, start_worker=False)
    upload = runs_root / ".uploads" / "olga" / "ab12" / "mine.csv"
    upload.parent.mkdir(parents=True)
    upload.write_text("text,label\na,b\n")
    assert len(actions.submit(operator, [reading(upload)], runs_root, start_worker=False)) == 1  # their upload
    assert len(actions.submit(admin, [reading(inside)], runs_root, start_worker=False)) == 1
    with pytest.raises(AccessDenied):  # a sweep's base config is checked the same way, before anything starts
        actions.start_sweep(operator, reading(outside), {"train.learning_rate": [1e-4]}, 2, runs_root, name="peek")
    assert not (runs_root / "sweeps" / "peek").exists()


def test_sweeps_are_started_stopped_and_resumed_only_by_roles_that_may(runs_root, monkeypatch):
    from core import sweep

    viewer, olga, bob = User("vera", Role.VIEWER), User("olga", Role.OPERATOR), User("bob", Role.OPERATOR)
    with pytest.raises(AccessDenied):
        actions.start_sweep(viewer, tiny_config(runs_root), {"train.learning_rate": [1e-4]}, 2, runs_root, name="v")
    (runs_root / "sweeps" / "olgas").mkdir(parents=True)
    runs.atomic_write_json(runs_root / "sweeps" / "olgas" / "sweep.json", {"name": "olgas", "owner": "olga", "workers": 1})
    monkeypatch.setattr(sweep, "stop", lambda root, name: "stopped")
    monkeypatch.setattr(sweep, "resume_launch", lambda root, name, owner=None: runs_root)
    for refused in (lambda: actions.stop_sweep(bob, runs_root, "olgas"), lambda: actions.resume_sweep(bob, runs_root, "olgas"),
                    lambda: actions.stop_sweep(viewer, runs_root, "olgas")):
        with pytest.raises(AccessDenied):  # another operator's sweep, or a viewer
            refused()
    assert actions.stop_sweep(olga, runs_root, "olgas") == "stopped"
    assert actions.resume_sweep(User("ada", Role.ADMIN), runs_root, "olgas") == runs_root
