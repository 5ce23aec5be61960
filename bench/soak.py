"""``python -m bench.soak [--kills 20] [--seed 0]``: kill -9 a training N times, at random moments, and
check that it still ends where an unkilled run ends.

One tiny run (MiniLM cut to 2 layers, 96 rows, 3 epochs, an evaluation and a checkpoint every 2 of
its 18 steps) trains through the real job worker. Each round picks a crash point (core.faults: a
step, an evaluation, the middle of a checkpoint swap, the final save) and a random pass of it, or
kills the worker from outside after a random delay; the run is then resumed. After every kill it
checks that the run ended ``interrupted`` with the reason, that every JSON in its directory parses
and that the checkpoint is there. At the end: ``completed`` with the same step count as planned.
Results: bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import tempfile
import time
from pathlib import Path

from core import faults, jobs, runs
from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.events import read_events

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = 18  # 96 rows / batch 16 × 3 epochs; an evaluation, a checkpoint swap every 2 steps; one final save
POINTS = ("step", "eval", "swap", "final_save")


def passes_left(point: str, done: int) -> int:
    """How often the trainer resumed at step ``done`` still passes ``point`` before the run ends."""
    left = STEPS - done
    return {"step": left, "eval": left // 2, "swap": left // 2, "final_save": 1}[point]


def config(root: Path) -> RunConfig:
    return RunConfig(name="soak", output_dir=str(root),
                     data=DataConfig(source="sample:rotten_tomatoes", max_train_samples=96, max_eval_samples=16),
                     model=ModelConfig(num_layers=2, max_length=64),
                     train=TrainConfig(epochs=3, batch_size=16, eval_every=2, log_every=1))


def wait(predicate, what: str, limit_s: float = 600) -> None:
    deadline = time.monotonic() + limit_s  # a soak script, not a test: a stuck round is reported, not awaited forever
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"soak: gave up waiting for {what}")
        time.sleep(0.2)


def check_readable(run_dir: Path) -> list[str]:
    problems = []
    for path in run_dir.rglob("*.json"):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            problems.append(f"{path.relative_to(run_dir)}: {exc}")
    if not (run_dir / runs.CHECKPOINT_DIR / "loop_state.json").exists():
        problems.append("no checkpoint")
    return problems


def finish(run_id: str, root: Path) -> dict:
    """Resume ``run_id`` without a kill until it completes; what it ended as."""
    run_dir = root / run_id
    os.environ.pop(faults.ENV, None)
    if runs.read_status(run_dir).get("state") != "completed":
        jobs.resume(run_id, root)
        jobs.ensure_worker(root, idle_exit_s=1)
        wait(lambda: runs.read_status(run_dir).get("state") in ("completed", "failed"), "the last resume")
    report = runs.read_json(run_dir / runs.REPORT) or {}
    starts = [e for e in read_events(run_dir / runs.EVENTS)[0] if e["type"] == "start"]
    return {"run": run_id, "state": runs.read_status(run_dir).get("state"), "steps": report.get("steps"),
            "trainer_starts": len(starts), "problems": check_readable(run_dir)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="tuneboard-soak-")) / "runs"
    rounds: list[dict] = []
    finished: list[dict] = []
    run_id, fresh = jobs.submit(config(root), root), True
    t0 = time.monotonic()
    while len(rounds) < args.kills:
        run_dir = root / run_id
        state = runs.read_json(run_dir / runs.CHECKPOINT_DIR / "loop_state.json") or {}
        done = state.get("global_step", 0)
        how = rng.choice([p for p in POINTS if passes_left(p, done) > 0] + ["worker"])
        if how == "worker":
            os.environ.pop(faults.ENV, None)
        else:
            os.environ[faults.ENV] = f"{how}:{rng.randint(1, passes_left(how, done))}"
        if not fresh:
            jobs.resume(run_id, root)
        fresh = False
        jobs.ensure_worker(root, idle_exit_s=1)
        if how == "worker":  # from outside, at a random moment of the trainer's life: the worker and its trainer
            wait(lambda d=run_dir: runs.read_status(d).get("state") == "running", "the trainer to start")
            time.sleep(rng.uniform(0.5, 8.0))
            for pid in ((jobs.worker_info(root) or {}).get("pid"), runs.read_status(run_dir).get("pid")):
                if jobs.pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            jobs.reconcile(root)
        wait(lambda d=run_dir: runs.read_status(d).get("state") in ("interrupted", "completed", "failed"), "the run to stop")
        wait(lambda: not jobs.worker_alive(root), "the worker to leave")
        status = runs.read_status(run_dir)
        if status["state"] == "completed":  # the timer fired after the end: not a kill; next run
            finished.append(finish(run_id, root))
            run_id, fresh = jobs.submit(config(root), root), True
            continue
        problems = check_readable(run_dir)
        rounds.append({"round": len(rounds), "run": run_id, "kill": os.environ.get(faults.ENV, "worker"),
                       "at_step": done, "state": status["state"], "reason": (status.get("error") or "")[:140],
                       "problems": problems})
        print(f"kill {len(rounds):2} ({run_id[-4:]}, from step {done:2}): {rounds[-1]['kill']:14} -> {status['state']}"
              f"{'  PROBLEMS: ' + '; '.join(problems) if problems else ''}")
        if done == STEPS and how == "final_save":  # killed in the very last save: finish it and start the next run
            finished.append(finish(run_id, root))
            run_id, fresh = jobs.submit(config(root), root), True
    finished.append(finish(run_id, root))
    jobs.stop_worker(root)
    summary = {"kills": len(rounds), "seed": args.seed, "runs": finished,
               "all_interrupted_with_reason": all(r["state"] == "interrupted" and r["reason"] for r in rounds),
               "unreadable_after": [r["round"] for r in rounds if r["problems"]],
               "wall_s": round(time.monotonic() - t0, 1), "rounds": rounds}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(summary, indent=2))
    ok = (all(r["state"] == "completed" and r["steps"] == {"done": STEPS, "total": STEPS} and not r["problems"] for r in finished)
          and summary["all_interrupted_with_reason"] and not summary["unreadable_after"])
    print(f"{'OK' if ok else 'FAILED'}: {summary['kills']} kills over {len(finished)} runs; every run completed at "
          f"{STEPS} of {STEPS} steps: {all(r['steps'] == {'done': STEPS, 'total': STEPS} for r in finished)}; "
          f"{summary['wall_s']} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
