"""Combine benchmark passes: ``python -m bench.merge a.json b.json ...`` → bench/results/latest.{json,md}.

On a shared machine a pass can be hit by someone else's burst of work. Per (system, strategy,
epochs) this keeps the fastest run (best-of-N, the same rule for every system) and records every
pass's number beside it, so nothing is hidden.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.__main__ import markdown, ratios, update_readme
from bench.common import RESULTS


def main(paths: list[str]) -> None:
    reports = [json.loads(Path(p).read_text()) for p in paths]
    for report, path in zip(reports, paths, strict=True):  # a pass cut short leaves partial.json: results only
        report.setdefault("date", f"{Path(path).name} (partial)")
        report.setdefault("minutes", 0.0)
        report.setdefault("load_start", min((r["load_before"] for r in report["results"]), key=lambda x: x[0]))
        report.setdefault("load_end", report["results"][-1]["load_after"])
        report.setdefault("rows", {})
    reports.sort(key=lambda r: "predict" in r)  # the base (machine, peak, prediction) is a complete pass
    cells: dict[tuple, list[dict]] = {}
    for report in reports:
        for r in report["results"]:
            r.setdefault("eval_loss", float("nan"))
            cells.setdefault((r["system"], r["strategy"], r["epochs"]), []).append(r)
    best = []
    for runs in cells.values():
        top = dict(max(runs, key=lambda r: r["train_samples_per_s"]))
        top["all_passes_samples_per_s"] = [round(r["train_samples_per_s"], 1) for r in runs]
        best.append(top)
    last = reports[-1]
    merged = {**last, "results": best, "ratios": ratios(best), "passes": [r["date"] for r in reports],
              "load_start": min((r["load_start"] for r in reports), key=lambda x: x[0]),
              "minutes": sum(r["minutes"] for r in reports), "rows": {int(k): v for r in reports for k, v in r["rows"].items()}}
    merged["date"] = " and ".join(r["date"] for r in reports) + f" (best of {len(reports)} passes per cell)"
    table = markdown(merged)
    passes = ["", "Every pass, training samples/s (the table keeps the best):", ""]
    for (system, strategy, epochs), runs in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        passes.append(f"- {strategy}, {epochs} epoch(s), {system}: " + ", ".join(
            f"{r['train_samples_per_s']:.1f} (load {r['load_before'][0]})" for r in runs))
    table += "\n".join(passes) + "\n"
    (RESULTS / "latest.json").write_text(json.dumps(merged, indent=2))
    (RESULTS / "latest.md").write_text(table)
    update_readme(table)
    print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
