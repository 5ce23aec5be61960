"""The users file, passwords, lock-out and the signed session: what a shared dashboard's login rests on."""

from __future__ import annotations

import stat

import pytest
import yaml

from core import login, users
from core.access import Role, User

PASSWORD = "correct horse battery"


@pytest.fixture
def home(tmp_path):
    users.add(tmp_path, "alice", "operator", PASSWORD)
    return tmp_path


def test_passwords_are_stored_as_argon2id_hashes_in_a_file_only_its_owner_reads(home):
    text = users.users_path(home).read_text()
    entry = yaml.safe_load(text)["users"]["alice"]
    assert entry["role"] == "operator" and entry["password"].startswith("$argon2id$")
    assert PASSWORD not in text
    assert stat.S_IMODE(users.users_path(home).stat().st_mode) == 0o600
    users.add(home, "bob", "viewer", PASSWORD)  # same password, different salt
    assert yaml.safe_load(users.users_path(home).read_text())["users"]["bob"]["password"] != entry["password"]


def test_verify_set_role_passwd_remove_and_list(home):
    assert users.verify_password(home, "alice", PASSWORD) == User("alice", Role.OPERATOR)
    assert users.verify_password(home, "alice", PASSWORD + "!") is None
    assert users.verify_password(home, "nobody", PASSWORD) is None
    users.set_role(home, "alice", "admin")
    users.add(home, "carol@example.com", "viewer", None)  # single sign-on: no password to log in with
    assert users.verify_password(home, "carol@example.com", "") is None
    assert users.list_users(home) == [("alice", Role.ADMIN, "password"), ("carol@example.com", Role.VIEWER, "single sign-on")]
    users.set_password(home, "alice", "a brand new secret")
    assert users.verify_password(home, "alice", PASSWORD) is None
    users.remove(home, "alice")
    assert [u[0] for u in users.list_users(home)] == ["carol@example.com"]


@pytest.mark.parametrize(("call", "message"), [
    (lambda h: users.add(h, "alice", "viewer", PASSWORD), "exists already"),
    (lambda h: users.add(h, "../etc", "viewer", PASSWORD), "is not allowed"),
    (lambda h: users.add(h, "dave", "superuser", PASSWORD), "not one of viewer, operator, admin"),
    (lambda h: users.add(h, "dave", "viewer", "short"), "at least 10"),
    (lambda h: users.set_role(h, "dave", "viewer"), "No user dave"),
])
def test_bad_requests_say_what_is_wrong_and_change_nothing(home, call, message):
    before = users.users_path(home).read_bytes()
    with pytest.raises(users.UsersError, match=message):
        call(home)
    assert users.users_path(home).read_bytes() == before


def test_a_broken_users_file_is_named_not_a_traceback(tmp_path):
    users.users_path(tmp_path).write_text("users: [alice\n")
    with pytest.raises(users.UsersError, match="users.yaml is not valid YAML"):
        users.has_users(tmp_path)
    users.users_path(tmp_path).write_text("users:\n  alice: {role: boss}\n")
    with pytest.raises(users.UsersError, match="user alice: role 'boss'"):
        users.has_users(tmp_path)


def test_single_sign_on_roles_come_from_the_address_or_the_highest_group(home):
    users.add(home, "erin@example.com", "admin", None)
    users.set_group(home, "ml-team", "operator")
    users.set_group(home, "everyone", "viewer")
    assert users.list_groups(home) == [("everyone", Role.VIEWER), ("ml-team", Role.OPERATOR)]
    assert users.role_for_identity(home, "erin@example.com", ["everyone"]) == User("erin@example.com", Role.ADMIN)
    assert users.role_for_identity(home, "x@example.com", ["everyone", "ml-team"]) == User("x@example.com", Role.OPERATOR)
    assert users.role_for_identity(home, "x@example.com", ["other"]) is None
    users.set_group(home, "ml-team", None)
    assert users.role_for_identity(home, "x@example.com", ["ml-team"]) is None
    with pytest.raises(users.UsersError, match="No group ml-team"):
        users.set_group(home, "ml-team", None)


def test_lock_out_after_repeated_failures_per_user_and_per_address(home):
    policy = login.LockoutPolicy(max_failures=3)
    for _ in range(3):
        with pytest.raises(login.LoginRefused, match="Wrong user name or password"):
            login.log_in(home, "alice", "guess", "10.0.0.1", policy)
    # now even the right password is refused, from any address, and the message says for how long
    with pytest.raises(login.LoginRefused, match=r"Too many failed logins for this user: try again in \d+ min"):
        login.log_in(home, "alice", PASSWORD, "10.0.0.9", policy)
    # the address that guessed is locked for other users too
    users.add(home, "bob", "viewer", PASSWORD)
    with pytest.raises(login.LoginRefused, match="for this address"):
        login.log_in(home, "bob", PASSWORD, "10.0.0.1", policy)
    assert login.log_in(home, "bob", PASSWORD, "10.0.0.2", policy) == User("bob", Role.VIEWER)


def test_a_success_clears_the_users_failures(home):
    policy = login.LockoutPolicy(max_failures=3)
    for _ in range(2):
        with pytest.raises(login.LoginRefused):
            login.log_in(home, "alice", "guess", None, policy)
    login.log_in(home, "alice", PASSWORD, None, policy)
    for _ in range(2):
        with pytest.raises(login.LoginRefused, match="Wrong"):
            login.log_in(home, "alice", "guess", None, policy)


def test_a_session_is_signed_follows_the_users_file_and_ends_with_a_password_change(home):
    alice = login.log_in(home, "alice", PASSWORD, None)
    token = login.sign_session(home, alice)
    assert login.session_user(home, token) == alice
    assert stat.S_IMODE((home / login.AUTH_DIR / "secret").stat().st_mode) == 0o600
    value, signed_at, signature = token.rsplit(".", 2)
    assert login.session_user(home, f"{value.replace('alice', 'bob')}.{signed_at}.{signature}") is None  # forged name
    assert login.session_user(home, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
    assert login.session_user(home, None) is None
    users.set_role(home, "alice", "viewer")  # a role change applies at once
    assert login.session_user(home, token) == User("alice", Role.VIEWER)
    assert login.session_user(home, token, login.SessionPolicy(max_age_s=-1)) is None  # expired
    users.set_password(home, "alice", "another long secret")
    assert login.session_user(home, token) is None
    users.remove(home, "alice")
    assert login.session_user(home, login.sign_session(home, alice)) is None
