"""``python -m bench.command``: the whole command, as a user types it, against an expert's Trainer script.

Three measurements per system, each a fresh process, the systems alternating over ``--pairs`` pairs
(medians reported):

- **whole**: ``python -m core train --config <yaml>`` from process start to exit (imports, data,
  training, the evaluation and save at the end of the epoch, the test prediction, the report) vs
  ``python -m bench.hf_command`` doing the same work with Trainer (bench/hf_command.py);
- **first step**: the same commands killed right after their first optimizer step
  (``TUNEBOARD_CRASH_AT=step:1``; a Trainer callback for the script): start-up as a user waits for it;
- **bytes written** by each whole command (the kernel's block-output count of the child, so files
  written and then deleted count too), and the size of what it leaves on disk.

Plus one ``python -X importtime`` start-up of ``core train``: the biggest imports, and which of the
libraries a full fine-tuning run must not load (peft, scikit-learn, seqeval, scipy) it did load.

Data: an 858-row training CSV (the size the issue measured), 107-row validation and test CSVs,
from the bundled rotten_tomatoes sample; MiniLM-L6, full fine-tuning, 1 epoch, batch 16,
max_length 128, learning rate 1e-4 for both. Results: bench/results/command-<precision>.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import BATCH, ENV, MAX_LENGTH, MODEL, RESULTS, ROOT, SEED, load_avg
from bench.hf_command import LEARNING_RATE

TRAIN_ROWS, EVAL_ROWS = 858, 107
# Imports a full fine-tuning run has no use for before its first step (issue #12).
NOT_NEEDED = ("peft", "sklearn", "seqeval", "scipy", "torch.distributed.tensor")


def write_data(folder: Path) -> None:
    """train/validation/test CSVs with text and label columns, one seeded split of the bundled sample."""
    from core.data.samples import load_sample

    frame = load_sample("rotten_tomatoes")[0].sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    frame = frame[["text", "label"]]
    parts = {"train": frame[:TRAIN_ROWS], "validation": frame[TRAIN_ROWS:TRAIN_ROWS + EVAL_ROWS],
             "test": frame[TRAIN_ROWS + EVAL_ROWS:TRAIN_ROWS + 2 * EVAL_ROWS]}
    for split, part in parts.items():
        part.to_csv(folder / f"{split}.csv", index=False)


def tuneboard_config(folder: Path, runs: Path, precision: str) -> Path:
    config = {
        "name": "bench-command", "task": "single_label", "output_dir": str(runs),
        "data": {"source": str(folder / "train.csv"), "validation_source": str(folder / "validation.csv"),
                 "test_source": str(folder / "test.csv"), "text_column": "text", "label_column": "label"},
        "model": {"name": MODEL, "max_length": MAX_LENGTH},
        "strategy": {"kind": "full"},
        "train": {"epochs": 1, "batch_size": BATCH, "learning_rate": LEARNING_RATE, "warmup_ratio": 0.06,
                  "weight_decay": 0.01, "max_grad_norm": 1.0, "seed": SEED, "precision": precision},
    }
    path = folder / f"tuneboard-{precision}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def timed(cmd: list[str], env: dict[str, str], stderr_to: Path | None = None) -> dict[str, Any]:
    """Wall seconds and bytes written of one child process, from its start to its exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock
    t0 = time.monotonic()
    with open(stderr_to or os.devnull, "w") as err:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    wall = time.monotonic() - t0
    written = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock - before) * 512
    return {"wall_s": wall, "bytes_written": written, "returncode": proc.returncode, "stdout": proc.stdout}


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def commands(system: str, folder: Path, out: Path, precision: str) -> list[str]:
    if system == "tuneboard":
        return [sys.executable, "-m", "core", "train", "--config", str(tuneboard_config(folder, out, precision))]
    from core.models import resolve_source

    return [sys.executable, "-m", "bench.hf_command", str(folder), str(out), precision, resolve_source(MODEL)]


def measure(system: str, folder: Path, precision: str) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix=f"bench-command-{system}-"))
    try:
        whole = timed(commands(system, folder, out, precision), ENV)
        if whole["returncode"]:
            again = " ".join(commands(system, folder, out, precision))
            raise RuntimeError(f"{system} failed ({whole['returncode']}); rerun by hand to see why: {again}")
        left = folder_bytes(out)
        shutil.rmtree(out)
        out.mkdir()
        stop_env = {**ENV, "TUNEBOARD_CRASH_AT": "step:1"} if system == "tuneboard" else {**ENV, "BENCH_STOP_AT_FIRST_STEP": "1"}
        first = timed(commands(system, folder, out, precision), stop_env)
        return {"system": system, "whole_s": whole["wall_s"], "bytes_written": whole["bytes_written"], "bytes_left": left,
                "first_step_s": first["wall_s"]}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def import_profile(folder: Path, precision: str) -> dict[str, Any]:
    """``-X importtime`` of ``core train`` up to its first step: the largest top-level imports and the unneeded ones loaded."""
    out = Path(tempfile.mkdtemp(prefix="bench-importtime-"))
    log = out / "importtime.txt"
    try:
        timed([sys.executable, "-X", "importtime", *commands("tuneboard", folder, out, precision)[1:]],
              {**ENV, "TUNEBOARD_CRASH_AT": "step:1"}, stderr_to=log)
        cumulative: dict[str, float] = {}
        top_level: dict[str, float] = {}
        for line in log.read_text().splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if not m:
                continue
            name, seconds, depth = m.group(4), int(m.group(2)) / 1e6, len(m.group(3))
            cumulative[name] = max(cumulative.get(name, 0.0), seconds)
            if depth <= 1:
                top_level[name] = seconds
        biggest = sorted(top_level.items(), key=lambda kv: -kv[1])[:8]
        return {"total_import_s": sum(top_level.values()), "biggest": biggest,
                "loaded_unneeded": [n for n in NOT_NEEDED if n in cumulative],
                "library_s": {n: cumulative.get(n) for n in ("torch", "transformers", "accelerate", "pandas", "pyarrow", "tokenizers")}}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def markdown(report: dict[str, Any]) -> str:
    med = report["medians"]
    tb, hf = med["tuneboard"], med["trainer"]
    imp = report["imports"]
    mb = 1e6
    lines = [
        f"Whole command, {report['date']}, {report['machine']} ({report['precision']}): {report['pairs']} interleaved pairs, "
        f"medians (load {report['load_start'][0]} → {report['load_end'][0]}). {TRAIN_ROWS}-row training CSV, {EVAL_ROWS}-row "
        "validation and test CSVs, MiniLM-L6, full fine-tuning, 1 epoch, batch 16, max_length 128; Tuneboard's "
        "`python -m core train --config` vs an expert's Trainer script (bench/hf_command.py: dynamic padding to 8, "
        "length grouping, fused AdamW, evaluation and save per epoch, best model kept, test prediction, model saved).",
        "",
        "| | Tuneboard `core train` | Trainer script | Tuneboard faster by |",
        "|---|---|---|---|",
        f"| whole command, wall s | {tb['whole_s']:.1f} | {hf['whole_s']:.1f} | {hf['whole_s'] / tb['whole_s']:.2f}x |",
        f"| start to first optimizer step, s | {tb['first_step_s']:.1f} | {hf['first_step_s']:.1f} | "
        f"{hf['first_step_s'] / tb['first_step_s']:.2f}x |",
        f"| bytes written by the command, MB | {tb['bytes_written'] / mb:.0f} | {hf['bytes_written'] / mb:.0f} | "
        f"{hf['bytes_written'] / max(tb['bytes_written'], 1):.2f}x |",
        f"| left on disk, MB | {tb['bytes_left'] / mb:.0f} | {hf['bytes_left'] / mb:.0f} | |",
        "",
        f"`python -X importtime -m core train` to the first step: {imp['total_import_s']:.2f} s of imports; the largest: "
        + ", ".join(f"{name} {s:.2f} s" for name, s in imp["biggest"]) + ". "
        + (f"Loaded though a full run does not need them: {', '.join(imp['loaded_unneeded'])}."
           if imp["loaded_unneeded"] else f"None of {', '.join(NOT_NEEDED)} is loaded."),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.command", description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="interleaved Tuneboard/Trainer pairs (default %(default)s)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    from bench.__main__ import machine

    load_start = load_avg()
    folder = Path(tempfile.mkdtemp(prefix="bench-command-data-"))
    try:
        write_data(folder)
        results: list[dict[str, Any]] = []
        for k in range(args.pairs):
            for system in ("tuneboard", "trainer") if k % 2 == 0 else ("trainer", "tuneboard"):
                print(f"  {system:<10} pair {k + 1} ... ", end="", flush=True)
                r = measure(system, folder, args.precision)
                results.append(r)
                print(f"whole {r['whole_s']:.1f} s, first step {r['first_step_s']:.1f} s, wrote {r['bytes_written'] / 1e6:.0f} MB",
                      flush=True)
        imports = import_profile(folder, args.precision)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    medians = {s: {key: statistics.median(r[key] for r in results if r["system"] == s)
                   for key in ("whole_s", "first_step_s", "bytes_written", "bytes_left")} for s in ("tuneboard", "trainer")}
    m = machine()
    report = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "precision": args.precision,
              "machine": f"{m['cpu']}, {m['cores']} cores, native bf16: {'yes' if m['native_bf16'] else 'no'}",
              "pairs": args.pairs, "results": results, "medians": medians, "imports": imports, "load_start": load_start,
              "load_end": load_avg()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"command-{args.precision}.json").write_text(json.dumps(report, indent=2))
    (out / f"command-{args.precision}.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
