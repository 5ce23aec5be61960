"""Fixtures for the browser tests: a real `streamlit run` server on a free port and headless chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import ARTIFACTS, REPO

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(script: str, root: Path, log_dir: Path, port: int | None = None, **extra_env: str) -> Iterator[str]:
    """``streamlit run script`` on ``port`` (default: a free one) with ``root`` as its runs folder; yields
    its URL, and on exit stops it and the job worker it started."""
    from core import jobs

    port = port or free_port()
    env = {**os.environ, "TUNEBOARD_HOME": str(root), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TUNEBOARD_WORKER_IDLE_S": "30",  # OMP_NUM_THREADS: the test process's share (tests/conftest.py)
           # The faster cadence of larger machines: the test's waits (progress moves, refresh mid-run)
           # were sized for it, and what it checks does not depend on the pace.
           "TUNEBOARD_STATUS_EVERY_S": "5", "TUNEBOARD_CHARTS_EVERY_S": "10", **extra_env}
    log = (log_dir / f"streamlit-{port}.log").open("wb")
    # a 1 MB upload limit lets the test prove that an oversized upload is refused without a 200 MB file
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port), "--server.headless", "true",
         "--server.maxUploadSize", "1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    while True:  # until it answers or exits (a hang is ended by pytest-timeout)
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit did not start; see {log.name}")
        time.sleep(0.3)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        jobs.stop_worker(root)
        assert not jobs.worker_alive(root), "the worker outlived the app"


def browser_root(tmp_path_factory, name: str) -> Path:
    """A runs folder holding a copy of the seeded runs (one real tiny run, failed, half-written and
    running ones) and a 3-class run for the confusion-matrix drill-down."""
    from tests.support.seeded import seeded_root, three_class_run

    seeded = seeded_root()
    root = tmp_path_factory.mktemp(name) / "runs"
    shutil.copytree(seeded["root"], root, ignore=shutil.ignore_patterns("runs.sqlite*"))
    three_class_run(root, seeded["completed"])
    return root


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """The dashboard as a user runs it (`make run`), one server for every local-mode browser test;
    yields (url, runs root)."""
    root = browser_root(tmp_path_factory, "browser")
    # every optimizer step takes at least 50 ms: the walk's run (300 steps) is still training when it cancels it
    with streamlit_server("streamlit_app.py", root, tmp_path_factory.getbasetemp(), TUNEBOARD_PACE_STEP_S="0.05") as url:
        yield url, root


@pytest.fixture(scope="session")
def seeded_ids(app_server):
    """{kind: run_id} of the runs in the browser tests' runs folder."""
    from tests.support.seeded import seeded_root

    ids = {k: v for k, v in seeded_root().items() if k != "root"}
    _, root = app_server
    from core import runs

    ids["three_class"] = next(s.run_id for s in runs.list_runs(root) if s.name == "three-class")
    return ids


@pytest.fixture(scope="session")
def browser():
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (make browser-deps installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.failed_call = report.failed
    return report


@pytest.fixture(params=[None])
def viewport(request):
    return request.param or {"width": 1400, "height": 1000}


@pytest.fixture
def page(browser, request, viewport):
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    if getattr(request.node, "failed_call", False):  # what the browser showed when the test failed
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture(scope="session")
def shots():
    ARTIFACTS.mkdir(exist_ok=True)

    def save(page, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
