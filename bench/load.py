"""``python -m bench.load [--sessions 10] [--rows 800]``: the team link under load.

A shared dashboard (ui/share_app.py, login required) with a viewer and an operator account; one run
trains (MiniLM cut to 2 layers on rotten_tomatoes) while ``--sessions`` headless chromium sessions,
alternately logged in as the viewer and the operator, keep opening its Training page and a finished
run's Evaluation page. Each page load is timed from navigation to the page's own content drawn (the
run's progress bar; the confusion matrix). The same run is then trained again with no browser open,
and the trainer's samples/s (report.json: step time, evaluation and checkpoints left out) are
compared: the ratio is with / without browsers, in the same run of this script.

``--cores split`` (the default) gives the trainer its own core budget, as a server whose users'
browsers run on their own laptops would: the worker and its trainer are pinned to the first core
(one torch thread), the dashboard server and chromium to the others; ``--cores shared`` lets all of
them share every core (on 2 cores that measures 10 chromium renderers competing with the training,
which a real team link does not do). Results: bench/results/load-<cores>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from core import jobs, runs, users
from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PASSWORDS = {"vera": "viewer load password", "otto": "operator load password"}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def config(root: Path, rows: int, name: str) -> RunConfig:
    return RunConfig(name=name, output_dir=str(root),
                     data=DataConfig(source="sample:rotten_tomatoes", max_train_samples=rows, max_eval_samples=64),
                     model=ModelConfig(num_layers=2, max_length=64),
                     train=TrainConfig(epochs=2, batch_size=16, log_every=5))


class Cores:
    """Which cores the trainer side (the worker and the trainers it starts inherit this process's
    affinity when it spawns them) and the browser side (the server, chromium) get."""

    def __init__(self, mode: str):
        every = sorted(os.sched_getaffinity(0))
        self.split = mode == "split" and len(every) > 1
        self.trainer, self.browsers = ({every[0]}, set(every[1:])) if self.split else (set(every), set(every))
        if self.split:
            os.environ["OMP_NUM_THREADS"] = "1"  # the trainer's one core

    def start_worker(self, root: Path) -> None:
        os.sched_setaffinity(0, self.trainer)
        try:
            jobs.ensure_worker(root, idle_exit_s=2)
        finally:
            os.sched_setaffinity(0, self.browsers)


def train_alone(root: Path, rows: int, cores: Cores) -> float:
    run_id = jobs.submit(config(root, rows, "alone"), root)
    cores.start_worker(root)
    while runs.read_status(root / run_id).get("state") not in ("completed", "failed"):
        time.sleep(0.5)
    return runs.read_json(root / run_id / runs.REPORT)["timings"]["samples_per_s"]


def start_server(root: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "TUNEBOARD_HOME": str(root), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "ui/share_app.py", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("the dashboard did not start") from None
            time.sleep(0.3)


async def session(browser, url: str, name: str, done: str, shared: dict, timings: dict) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    await page.goto(f"{url}/tuneboard/login")
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password").fill(PASSWORDS[name])
    await page.get_by_role("button", name="Log in").click()
    try:
        await page.get_by_text(f"Logged in as {name}").wait_for(timeout=300_000)
    except Exception:
        await page.screenshot(path=str(RESULTS / f"load-login-failed-{name}.png"))
        raise
    shared["ready"] += 1
    await shared["go"].wait()  # every session is logged in: the measured run has started
    targets = [("training", f"{url}/training?run={shared['live']}", 'h3:has-text("with-browsers")'),  # the run's heading
               ("evaluation", f"{url}/evaluation?run={done}", ".js-plotly-plot .nsewdrag")]
    i = 0
    while not shared["stop"].is_set():
        page_name, target, ready = targets[i % 2]
        t0 = time.monotonic()
        try:
            await page.goto(target)
            await page.locator(ready).first.wait_for(timeout=120_000)
            timings[page_name].append(time.monotonic() - t0)
        except Exception as exc:  # noqa: BLE001 - a page that never answered is a result, not a crash
            timings["failed"].append(f"{page_name}: {type(exc).__name__}")
        i += 1
    await context.close()


async def browse(url: str, sessions: int, done: str, start_run) -> tuple[dict, str, float]:
    """Log ``sessions`` browsers in, then start the measured run (``start_run()`` returns its directory)
    and browse until it ends; the timings, the run id and the seconds it trained under load."""
    from playwright.async_api import async_playwright

    timings: dict = {"training": [], "evaluation": [], "failed": []}
    shared = {"ready": 0, "go": asyncio.Event(), "stop": asyncio.Event(), "live": None}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        names = [("vera", "otto")[i % 2] for i in range(sessions)]
        tasks = [asyncio.create_task(session(browser, url, n, done, shared, timings)) for n in names]
        while shared["ready"] < sessions:
            if any(t.done() for t in tasks):  # a login failed: its exception surfaces below
                break
            await asyncio.sleep(0.5)
        run_dir = start_run()
        shared["live"] = run_dir.name
        shared["go"].set()
        t0 = time.monotonic()
        while runs.read_status(run_dir).get("state") not in ("completed", "failed") and not all(t.done() for t in tasks):
            await asyncio.sleep(1)
        wall = time.monotonic() - t0
        shared["stop"].set()
        await asyncio.gather(*tasks)
        await browser.close()
    return timings, run_dir.name, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--rows", type=int, default=800, help="training rows of the measured run (2 epochs)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--cores", choices=["split", "shared"], default="split")
    args = parser.parse_args(argv)
    cores = Cores(args.cores)
    base = Path(tempfile.mkdtemp(prefix="tuneboard-load-"))
    root = base / "runs"
    for name, role in (("vera", "viewer"), ("otto", "operator")):
        users.add(root, name, role, PASSWORDS[name])
    done = jobs.submit(config(root, 64, "finished"), root)  # the run whose evaluation the sessions open
    cores.start_worker(root)
    while runs.read_status(root / done).get("state") not in ("completed", "failed"):
        time.sleep(0.5)
    server = start_server(root, args.port)
    try:
        def start_run() -> Path:
            live = jobs.submit(config(root, args.rows, "with-browsers"), root)
            cores.start_worker(root)
            return root / live

        timings, live, wall = asyncio.run(browse(f"http://127.0.0.1:{args.port}", args.sessions, done, start_run))
        with_browsers = runs.read_json(root / live / runs.REPORT)["timings"]["samples_per_s"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    jobs.stop_worker(root)
    alone = train_alone(root, args.rows, cores)
    jobs.stop_worker(root)

    def stats(values: list[float]) -> dict:
        return {"loads": len(values), "median_s": round(statistics.median(values), 2) if values else None,
                "worst_s": round(max(values), 2) if values else None}

    result = {"sessions": args.sessions, "rows": args.rows, "cpus": os.cpu_count(), "wall_s": round(wall, 1),
              "cores": {"mode": args.cores, "trainer": sorted(cores.trainer), "browsers_and_server": sorted(cores.browsers)},
              "pages": {"training": stats(timings["training"]), "evaluation": stats(timings["evaluation"])},
              "page_failures": timings["failed"], "trainer_samples_per_s": {"with_browsers": round(with_browsers, 1),
                                                                            "alone": round(alone, 1)},
              "ratio_with_over_alone": round(with_browsers / alone, 3)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"load-{args.cores}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if not timings["failed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
