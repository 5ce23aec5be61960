"""A throwaway PostgreSQL server on localhost, started by the test that needs it and stopped after it.

It uses Debian's ``postgresql`` package (``make test`` tries to install it). When the server can't be found
or started, the test is skipped and says why.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an SQLAlchemy URL of a fresh database; skip the test when PostgreSQL can't run here."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; make test tries it)")
    # PostgreSQL refuses to run as root: as root, its files belong to the postgres user and it runs as that user.
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: PostgreSQL can't be started as another user")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    folder = Path(tempfile.mkdtemp(prefix="tb-pg-", dir="/tmp"))
    folder.chmod(0o755)
    data = folder / "data"
    if as_root:
        shutil.chown(folder, "postgres", "postgres")
    port = _free_port()

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)

    try:
        made = run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "tuneboard", "--no-sync")
        if made.returncode != 0:
            pytest.skip(f"initdb failed, so PostgreSQL can't run here: {made.stderr.strip()[-300:]}")
        started = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(folder / "server.log"),
                      "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        if started.returncode != 0:
            log = (folder / "server.log").read_text(errors="replace")[-300:] if (folder / "server.log").exists() else ""
            pytest.skip(f"PostgreSQL did not start: {started.stderr.strip()[-300:]} {log}")
        created = run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tuneboard", "sweeps")
        assert created.returncode == 0, created.stderr
        yield f"postgresql://tuneboard@127.0.0.1:{port}/sweeps"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
