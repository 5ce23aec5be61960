"""``python -m bench.polling``: does watching a run in the dashboard slow the training down?

The same run, twice per pair: **cli** — ``python -m core train`` in a terminal, nobody watching;
**dashboard** — submitted to the dashboard's queue (as its Start button does) and watched in headless
chromium on the Training page, which redraws the progress every 5 s and the charts every 10 s. The
trainer is the same subprocess either way (the worker runs ``python -m core train``); what differs
is the Streamlit server and the browser competing for the same cores. Pairs alternate (cli,
dashboard, then dashboard, cli) so drift hits both. Reported: training samples/s over optimizer steps
(``report.json`` timings, evaluation excluded) and wall time, and the dashboard/cli ratio.

Results: bench/results/polling.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import ENV, RESULTS, ROOT


def run_config(name: str, rows: int, out_dir: Path) -> dict[str, Any]:
    """The rotten_tomatoes example (MiniLM-L6, full, the defaults), cut to ``rows`` training rows and one epoch."""
    import yaml

    config = yaml.safe_load((ROOT / "examples" / "rotten_tomatoes.yaml").read_text())
    config["name"] = name
    config["data"].update(max_train_samples=rows, max_eval_samples=200)
    config["train"].update(epochs=1, batch_size=16, log_every=5)
    config["output_dir"] = str(out_dir)
    return config


def read_report(run_dir: Path) -> dict[str, Any]:
    report = json.loads((run_dir / "report.json").read_text())
    t = report["timings"]
    return {"samples_per_s": t["samples_per_s"], "step_s": t["step_s"], "train_s": t["train_s"], "run_dir": str(run_dir)}


def via_cli(rows: int, root: Path) -> dict[str, Any]:
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    config_file = root / "cli.yaml"
    config_file.write_text(yaml.safe_dump(run_config("polling-cli", rows, root)))
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "core", "--root", str(root), "train", "--config", str(config_file)], cwd=ROOT,
                   env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - started
    run_dir = max((p for p in root.iterdir() if (p / "report.json").exists()), key=lambda p: p.stat().st_mtime)
    return {**read_report(run_dir), "wall_s": wall}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(root: Path, cadence: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**ENV, "TUNEBOARD_HOME": str(root), **(cadence or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError("streamlit did not start")


def cpu_seconds(match: Any) -> float:
    """User + system CPU seconds of the live processes whose pid and command line satisfy ``match``."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if match(int(proc.name), cmdline):
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total


def via_dashboard(rows: int, root: Path, page: Any, url: str, server_pid: int) -> dict[str, Any]:
    from core import jobs
    from core.config import from_dict

    config = from_dict(run_config("polling-dashboard", rows, root))
    def server(pid: int, cmd: str) -> bool:
        return pid == server_pid

    def browser(pid: int, cmd: str) -> bool:
        return "chrom" in cmd

    cpu_before = cpu_seconds(server), cpu_seconds(browser)
    started = time.monotonic()
    run_id = jobs.submit(config, root)
    page.goto(f"{url}/training?run={run_id}")  # the page starts the worker, as after pressing Start
    page.get_by_role("heading", name="Training").wait_for(timeout=60_000)
    run_dir = root / run_id
    while jobs.latest_job(root, run_id).state in ("queued", "running"):
        time.sleep(0.5)
        if time.monotonic() - started > 1800:
            raise RuntimeError(f"{run_id} did not finish in 30 min")
    wall = time.monotonic() - started
    # Where the watching costs CPU: the Streamlit server (its own process, not the worker it started)
    # and the browser, over the whole run.
    return {**read_report(run_dir), "wall_s": wall, "server_cpu_s": cpu_seconds(server) - cpu_before[0],
            "browser_cpu_s": cpu_seconds(browser) - cpu_before[1]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.polling", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1600, help="training rows (one epoch at batch 16; default %(default)s)")
    parser.add_argument("--pairs", type=int, default=2, help="(cli, dashboard) pairs, alternating order (default %(default)s)")
    parser.add_argument("--status-every", type=float, help="the Training page's status cadence, s (default: the page's, "
                                                             "ui.runview.live_cadence)")
    parser.add_argument("--charts-every", type=float, help="its charts' cadence, s (default: the page's)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from core import jobs

    work = Path(tempfile.mkdtemp(prefix="tuneboard-polling-"))
    dash_root = work / "dashboard"
    dash_root.mkdir()
    from ui.runview import live_cadence

    default_status, default_charts = live_cadence()
    args.status_every = args.status_every or default_status
    args.charts_every = args.charts_every or default_charts
    cadence = {"TUNEBOARD_STATUS_EVERY_S": str(args.status_every), "TUNEBOARD_CHARTS_EVERY_S": str(args.charts_every)}
    server, url = start_dashboard(dash_root, cadence)
    results: list[dict[str, Any]] = []
    load_start = os.getloadavg()[0]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for i in range(args.pairs):
                order = ("cli", "dashboard") if i % 2 == 0 else ("dashboard", "cli")
                for how in order:
                    print(f"pair {i + 1}, {how} ... ", end="", flush=True)
                    r = via_cli(args.rows, work / f"cli{i}") if how == "cli" else via_dashboard(args.rows, dash_root, page, url, server.pid)
                    results.append({"how": how, "pair": i + 1, **r})
                    extra = f", server {r['server_cpu_s']:.1f} CPU s, browser {r['browser_cpu_s']:.1f} CPU s" if how == "dashboard" else ""
                    print(f"{r['samples_per_s']:.1f} samples/s, {r['wall_s']:.0f} s wall{extra}", flush=True)
                page.goto("about:blank")
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        jobs.stop_worker(dash_root)

    def mean(how: str, key: str) -> float:
        return statistics.mean(r[key] for r in results if r["how"] == how)

    ratio = mean("dashboard", "samples_per_s") / mean("cli", "samples_per_s")
    wall_ratio = mean("dashboard", "wall_s") / mean("cli", "wall_s")
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    report = {"date": date, "rows": args.rows, "pairs": args.pairs, "status_every_s": args.status_every,
              "charts_every_s": args.charts_every, "results": results, "samples_per_s_ratio": ratio,
              "wall_ratio": wall_ratio, "load_start": load_start, "load_end": os.getloadavg()[0]}
    lines = [f"Dashboard polling overhead, {date}: MiniLM-L6 full fine-tuning, {args.rows} rotten_tomatoes rows, one epoch at "
             f"batch 16, the same config from the CLI and from the dashboard's queue watched in headless chromium "
             f"(Training page: status every {args.status_every:g} s, charts every {args.charts_every:g} s); "
             f"{args.pairs} alternating pairs (load {load_start:.2f} → {report['load_end']:.2f}).", "",
             "| pair | how | train samples/s | wall s | CPU s of the Streamlit server | CPU s of the browser |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['pair']} | {r['how']} | {r['samples_per_s']:.1f} | {r['wall_s']:.1f} | {r.get('server_cpu_s', 0):.1f} | "
              f"{r.get('browser_cpu_s', 0):.1f} |" for r in results]
    lines += ["", f"Dashboard / CLI: {ratio:.3f}x training samples/s (a slowdown of {100 * (1 - ratio):.1f}%), "
                  f"{wall_ratio:.3f}x wall time. Target: within 5%."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "polling.json").write_text(json.dumps(report, indent=2))
    (out / "polling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
