"""Waiting for the job worker and its trainers, shared by the job and fault tests."""

from __future__ import annotations

import time
from pathlib import Path

from core import jobs, runs


def wait_for(predicate, what: str, while_alive=None, poll: float = 0.2):
    """Poll until ``predicate`` holds. No deadline: how fast is not what these tests check, and on a
    busy machine any deadline flakes (pytest-timeout ends a real hang). It gives up, and fails, as soon
    as ``while_alive`` says the process that would make it true is gone."""
    while not (value := predicate()):
        if while_alive is not None and not while_alive() and not (value := predicate()):
            raise AssertionError(f"the process that was to bring {what} is gone")
        time.sleep(poll)
    return value


def worker_of(root: Path):
    return lambda: jobs.worker_alive(root)


def state(root: Path, run_id: str) -> str | None:
    return runs.read_status(root / run_id).get("state")
