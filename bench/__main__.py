"""``python -m bench``: Tuneboard vs Hugging Face Trainer, side by side, on the same model, data and steps.

Every configuration runs in a fresh subprocess (honest peak RSS, no warm state shared), and the
systems alternate (A, B, C, then C, B, A for the next configuration) so that drift on a shared
machine hits all of them. Results: bench/results/latest.json and latest.md; the README's
Performance section is rewritten between its ``bench`` markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench.common import BATCH, RESULTS, ROOT, STEPS, Spec, load_avg, run_worker, train_flops

SYSTEMS = ("hf_tutorial", "hf_tuned", "hf_best", "hf_best_malloc", "tuneboard_fp32", "tuneboard")
FP32 = (("precision", "fp32"),)  # tuneboard_fp32: Tuneboard with precision=fp32, the default path of a CPU without native bf16
# Which Trainer variants run per strategy by default: the targets compare full against all three,
# freeze and lora against the tuned Trainer (bench --all-systems runs every pair).
DEFAULT_SYSTEMS = {"full": ("hf_tutorial", "hf_tuned", "hf_best", "tuneboard", "tuneboard_fp32", "hf_best_malloc"),
                   "freeze": ("hf_tuned", "tuneboard"), "lora": ("hf_tuned", "tuneboard")}
# --precision fp32: every comparison in fp32 (Trainer's bf16 variants left out).
FP32_SYSTEMS = {"full": ("hf_tutorial", "hf_tuned", "tuneboard_fp32"), "freeze": ("hf_tuned", "tuneboard_fp32"),
                "lora": ("hf_tuned", "tuneboard_fp32")}
# The tutorial Trainer is slow (everything padded to 128) and hf_best_malloc (hf_best given Tuneboard's malloc
# thresholds) is a reference point: one configuration each is enough.
ONE_CONFIG_ONLY, ONE_CONFIG_EPOCHS = ("hf_tutorial", "hf_best_malloc"), (1,)
LEVERS = [  # (label, strategy, epochs, A: tuneboard's defaults plus these, B: A with one lever switched off)
    ("bf16 autocast (vs fp32)", "full", 1, (), (("precision", "fp32"),)),
    ("CPU dropout + eager attention (vs torch dropout + SDPA)", "full", 1, (), (("fast_cpu_dropout", False),)),
    ("CPU dropout + eager attention, fp32", "full", 1, FP32, (*FP32, ("fast_cpu_dropout", False))),
    ("fused AdamW (vs for-loop AdamW)", "full", 1, (), (("fused_adamw", False),)),
    ("fused AdamW, fp32", "full", 1, FP32, (*FP32, ("fused_adamw", False))),
    ("first-token top layer (vs every token)", "full", 1, (), (("cls_only_top_layer", False),)),
    ("first-token top layer, fp32", "full", 1, FP32, (*FP32, ("cls_only_top_layer", False))),
    ("padding left out of the encoder, fp32 (bf16 training keeps it: levers-not-kept.md)", "full", 1, FP32,
     (*FP32, ("skip_padding", False))),
    ("padding left out of the encoder, LoRA, fp32", "lora", 1, FP32, (*FP32, ("skip_padding", False))),
    ("malloc thresholds (vs glibc defaults)", "full", 1, (), (("allocator", False),)),
    ("padding to a multiple of 8 (vs 1)", "full", 1, (), (("pad_to_multiple_of", 1),)),
    ("2 intra-op threads on 2 cores (vs 1)", "full", 1, (), (("threads", 1),)),
    ("frozen-layer cache (vs recomputing), freeze", "freeze", 3, (), (("frozen_cache", False),)),
]


def data_facts(spec: Spec) -> dict[str, Any]:
    """Non-padding token lengths of the training rows (the same rows for every system) and their FLOPs per pass."""
    from bench.common import MAX_LENGTH, MODEL, load_data, quiet
    from core.models import quiet_transformers, resolve_source

    quiet()
    quiet_transformers()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_source(MODEL))
    bundle = load_data(spec.train_rows)
    texts = bundle.train["text"].astype(str).tolist()
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]]
    return {"rows": len(lengths), "tokens_per_pass": int(sum(lengths)), "median_length": sorted(lengths)[len(lengths) // 2],
            "padded_tokens_per_pass": padded_tokens(lengths, spec.seed),
            "flops_per_pass": {s: train_flops(s, lengths) for s in ("full", "freeze", "lora")}}


def padded_tokens(lengths: list[int], seed: int) -> int:
    """Tokens Tuneboard's length-grouped batches compute, padding to a multiple of 8 included: the most
    sequence packing (no padding at all) could remove is this over the non-padding tokens."""
    import numpy as np

    from core.tokenize import LengthGroupedBatches

    batches = LengthGroupedBatches(np.asarray(lengths), BATCH, seed)
    batches.set_epoch(0)
    return int(sum(len(b) * -(-max(lengths[i] for i in b) // 8) * 8 for b in batches))


def measure(spec: Spec, facts: dict[str, Any], peak: dict[str, Any]) -> dict[str, Any]:
    print(f"  {spec.system:<14} {spec.strategy:<6} {spec.epochs} epoch(s) ... ", end="", flush=True)
    load_before = load_avg()
    run_as = spec if spec.system != "tuneboard_fp32" else Spec("tuneboard", spec.strategy, spec.epochs, spec.steps,
                                                                (*FP32, *spec.levers), spec.out_dir, spec.seed)
    r = run_worker("bench.worker", json.dumps(run_as.to_dict()))
    samples = spec.train_rows * spec.epochs
    r.update(system=spec.system, strategy=spec.strategy, epochs=spec.epochs, rows=spec.train_rows, samples=samples,
             levers=[list(x) for x in spec.levers], load_before=load_before, load_after=load_avg())
    r["train_samples_per_s"] = samples / r["train_s"]
    r["train_tokens_per_s"] = facts["tokens_per_pass"] * spec.epochs / r["train_s"]
    r["eval_samples_per_s"] = 1000 / r["eval_s"]
    r["model_gflops_per_s"] = facts["flops_per_pass"][spec.strategy] * spec.epochs / r["train_s"] / 1e9
    r["mfu"] = r["model_gflops_per_s"] / peak[r["dtype"]]
    print(f"{r['train_samples_per_s']:.1f} samples/s, acc {r['accuracy']:.3f}, {r['wall_s']:.0f}s wall (load {load_before[0]})", flush=True)
    return r


def ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted({(r["strategy"], r["epochs"]) for r in results}, key=lambda k: (["full", "freeze", "lora"].index(k[0]), k[1]))
    for strategy, epochs in keys:
        by = {r["system"]: r for r in results if (r["strategy"], r["epochs"]) == (strategy, epochs) and not r["levers"]}
        tb = by.get("tuneboard") or by.get("tuneboard_fp32")
        if not tb:
            continue
        row: dict[str, Any] = {"strategy": strategy, "epochs": epochs}
        for other in ("hf_best", "hf_tuned", "hf_tutorial", "hf_best_malloc"):
            if other in by:
                row[f"vs_{other}"] = tb["train_samples_per_s"] / by[other]["train_samples_per_s"]
                row[f"eval_vs_{other}"] = tb["eval_samples_per_s"] / by[other]["eval_samples_per_s"]
                row[f"accuracy_minus_{other}"] = tb["accuracy"] - by[other]["accuracy"]
        if "tuneboard_fp32" in by and "hf_tuned" in by:  # fp32 against fp32: the path of a CPU without native bf16
            row["fp32_vs_hf_tuned"] = by["tuneboard_fp32"]["train_samples_per_s"] / by["hf_tuned"]["train_samples_per_s"]
            row["fp32_accuracy_minus_hf_tuned"] = by["tuneboard_fp32"]["accuracy"] - by["hf_tuned"]["accuracy"]
        rows.append(row)
    return rows


def machine() -> dict[str, Any]:
    import torch

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from core.device import cpu_has_native_bf16

    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "native_bf16": cpu_has_native_bf16(),
            "torch": torch.__version__, "python": platform.python_version(), "memory_gib": round(os.sysconf("SC_PAGE_SIZE")
            * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def markdown(report: dict[str, Any]) -> str:
    m, peak = report["machine"], report["peak_gflops"]
    lines = [
        f"Benchmark of {report['date']} on {m['cpu']} ({m['cores']} cores, torch {m['torch']}, {m['torch_threads']} threads, "
        f"native bf16: {'yes' if m['native_bf16'] else 'no'}); load average {report['load_start'][0]} at the start, "
        f"{report['load_end'][0]} at the end; {report['minutes']:.1f} min in all.",
        "",
        f"MiniLM-L6 (all 6 layers), bundled rotten_tomatoes, batch {BATCH}, {report['steps']} optimizer steps per configuration "
        "(not full epochs of 4,000 rows: the whole benchmark has to fit in 20 minutes). \"1 epoch\" is one pass over a "
        f"{report['rows'].get(1, '?')}-row seeded subset of the training split; \"3 epochs\" is three passes over a "
        f"{report['rows'].get(3, '?')}-row "
        "subset. Evaluation: the same 1,000 validation rows, once, after training. Each cell is one run in a fresh process; "
        "the systems alternate. Throughput counts training steps only (no evaluation, no checkpoints); tokens are non-padding "
        f"tokens. Matmul peak (torch.mm): fp32 {peak['fp32']} GFLOP/s, bf16 {peak['bf16']} GFLOP/s; MFU is model FLOPs "
        "(6 x layer params x tokens + attention; less for freeze and LoRA, see bench/common.py) against the peak of the dtype used; "
        "work Tuneboard leaves out (the top layer's other tokens) still counts, as model FLOPs do by definition. "
        "hf_tutorial: Trainer, padding to 128, defaults; hf_tuned: + dynamic padding (multiple of 8) and length grouping; "
        "hf_best: + bf16; hf_best_malloc: hf_best given Tuneboard's malloc thresholds (a reference point: how much of the gap "
        "is the allocator). MB written: what the run wrote to disk (the Trainer runs here save nothing; Tuneboard "
        "writes its best model, and a resumable checkpoint only at evaluations before the last, which these runs don't have; "
        "bench.command compares like with like). Learning rates: 1e-4 (full, freeze), 1e-3 (LoRA r=8 on query/value); weight decay 0.01, "
        "6% warmup, linear decay, clipping at 1.0, seed 42, for every system.",
        "",
        "| strategy | epochs | system | dtype | train samples/s | train tokens/s | eval samples/s | MFU | peak RSS MB | wall s "
        "| MB written | accuracy | eval loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = ["full", "freeze", "lora"]
    for r in sorted(report["results"], key=lambda r: (order.index(r["strategy"]), r["epochs"], SYSTEMS.index(r["system"]))):
        lines.append(f"| {r['strategy']} | {r['epochs']} | {r['system']} | {r['dtype']} | {r['train_samples_per_s']:.1f} | "
                     f"{r['train_tokens_per_s']:.0f} | {r['eval_samples_per_s']:.1f} | {100 * r['mfu']:.0f}% | {r['peak_rss_mb']:.0f} | "
                     f"{r['wall_s']:.0f} | {written(r)} | {r['accuracy']:.3f} | {r['eval_loss']:.3f} |")
    lines += ["", "Ratios, tuneboard / Trainer (training samples/s; accuracy difference in points):", "",
              "| strategy | epochs | / hf_best | / hf_tuned | / hf_tutorial | / hf_best_malloc | accuracy vs hf_tuned "
              "| fp32: tuneboard_fp32 / hf_tuned | fp32 accuracy vs hf_tuned |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in report["ratios"]:
        def cell(key: str, row: dict[str, Any] = row) -> str:
            return f"{row[key]:.2f}x" if key in row else "—"
        acc = f"{100 * row['accuracy_minus_hf_tuned']:+.1f}" if "accuracy_minus_hf_tuned" in row else "—"
        acc32 = f"{100 * row['fp32_accuracy_minus_hf_tuned']:+.1f}" if "fp32_accuracy_minus_hf_tuned" in row else "—"
        lines.append(f"| {row['strategy']} | {row['epochs']} | {cell('vs_hf_best')} | {cell('vs_hf_tuned')} | "
                     f"{cell('vs_hf_tutorial')} | {cell('vs_hf_best_malloc')} | {acc} | {cell('fp32_vs_hf_tuned')} | {acc32} |")
    if report.get("padding"):
        by_epochs = {epochs: (padded, real) for _, epochs, padded, real in report["padding"]}  # the same rows per strategy
        lines += ["", "Padding: Tuneboard's length-grouped batches (padded to a multiple of 8) compute " + "; ".join(
            f"{100 * (padded / real - 1):.1f}% more tokens than the texts have in the {epochs}-epoch configurations"
            for epochs, (padded, real) in sorted(by_epochs.items())) + " (the most sequence packing could remove)."]
    for command in report.get("command", []):
        lines += ["", command]
    if report.get("predict"):
        p = report["predict"]
        tps = p["texts_per_s"]
        lines += ["", f"Prediction ({p['texts']} validation texts, the saved full-fine-tuning run): Predictor (fp32, its default) "
                      f"{tps['predictor']:.0f} texts/s; pipeline() {tps['pipeline']:.0f} texts/s, so {p['ratio_vs_pipeline']:.1f}x; "
                      f"pipeline(batch_size=32) {tps['pipeline_batch32']:.0f} texts/s ({p['ratio_vs_pipeline_batch32']:.1f}x). "
                      f"Predictor(precision='auto', bf16) {tps['predictor_bf16']:.0f} texts/s ({p['bf16_ratio_vs_pipeline']:.1f}x). "
                      f"Same labels as pipeline(): {100 * p['agreement']:.1f}% (fp32), {100 * p['bf16_agreement']:.1f}% (bf16)."]
    return "\n".join(lines) + "\n"


def written(r: dict[str, Any]) -> str:
    return f"{r['bytes_written'] / 1e6:.0f}" if r.get("bytes_written") is not None else "—"


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        readme.write_text(head + start + "\n" + table + end + rest.split(end, 1)[1])


def levers_markdown(report: dict[str, Any]) -> str:
    lines = [f"Levers, {report['date']}: tuneboard with its defaults (A) and with one lever switched off (B), run as A, B pairs "
             f"in fresh processes, {report['steps']} optimizer steps each (load {report['load_start'][0]} → {report['load_end'][0]}).", "",
             "| lever | strategy, epochs | A samples/s | B samples/s | gain A/B | accuracy A / B |", "|---|---|---|---|---|---|"]
    if report.get("partial"):
        lines[0] = lines[0].replace(report["date"], report["partial"])
    results = report["results"]
    for a, b in zip(results[0::2], results[1::2], strict=True):
        label, strategy, epochs = a["lever"], a["strategy"], a["epochs"]
        lines.append(f"| {label} | {strategy}, {epochs} | {a['train_samples_per_s']:.1f} | {b['train_samples_per_s']:.1f} | "
                     f"{a['train_samples_per_s'] / b['train_samples_per_s']:.2f}x | {a['accuracy']:.3f} / {b['accuracy']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS, help="optimizer steps per configuration (default %(default)s)")
    parser.add_argument("--strategies", default="full,freeze,lora", help="comma-separated subset of full,freeze,lora")
    parser.add_argument("--epochs", default="1,3", help="comma-separated subset of 1,3")
    parser.add_argument("--all-systems", action="store_true", help="run hf_best (and hf_tutorial) for every configuration")
    parser.add_argument("--levers", action="store_true", help="measure tuneboard's levers one by one instead (levers.json/md)")
    parser.add_argument("--only", default="", help="with --levers: only the levers whose label contains this text (the others keep "
                                                   "their results in levers.json)")
    parser.add_argument("--no-predict", action="store_true", help="skip the Predictor vs pipeline() measurement")
    parser.add_argument("--precision", choices=("auto", "fp32"), default="auto",
                        help="auto: Tuneboard's default and fp32 side by side with Trainer's variants; fp32: every system in fp32")
    parser.add_argument("--no-command", action="store_true", help="skip the whole-command measurement (bench.command)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder (default bench/results)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_root = Path(os.environ.get("BENCH_RUNS", "/tmp/tuneboard-bench-runs"))
    started, load_start = time.monotonic(), load_avg()
    print("matmul peak ... ", end="", flush=True)
    peak = run_worker("bench.peak")
    print(f"fp32 {peak['fp32']} GFLOP/s, bf16 {peak['bf16']} GFLOP/s (load {load_start[0]})", flush=True)

    results: list[dict[str, Any]] = []
    rows: dict[int, int] = {}
    padding: list[tuple[str, int, int, int]] = []
    from core.device import cpu_has_native_bf16

    native_bf16 = cpu_has_native_bf16()
    if args.levers:
        for label, strategy, epochs, base, levers in LEVERS:
            if args.only and args.only not in label:
                continue
            spec = Spec("tuneboard", strategy, epochs, steps=args.steps, levers=base, out_dir=str(runs_root))
            facts = data_facts(spec)
            results.append({**measure(spec, facts, peak), "lever": label})
            variant = Spec("tuneboard", strategy, epochs, steps=args.steps, levers=levers, out_dir=str(runs_root))
            results.append({**measure(variant, facts, peak), "lever": label})
    else:
        configs = [(s, int(e)) for s in args.strategies.split(",") for e in args.epochs.split(",")]
        for i, (strategy, epochs) in enumerate(configs):
            by_strategy = FP32_SYSTEMS if args.precision == "fp32" else DEFAULT_SYSTEMS
            systems = [s for s in (SYSTEMS if args.all_systems else by_strategy[strategy])
                       if s not in ONE_CONFIG_ONLY or args.all_systems or epochs in ONE_CONFIG_EPOCHS]
            if not native_bf16 and args.precision != "fp32":  # Tuneboard's default is fp32 here: the same run twice
                systems = [s for s in systems if s != "tuneboard_fp32"]
            systems = systems if i % 2 == 0 else systems[::-1]
            facts = data_facts(Spec("tuneboard", strategy, epochs, steps=args.steps))
            padding.append((strategy, epochs, facts["padded_tokens_per_pass"], facts["tokens_per_pass"]))
            rows[epochs] = facts["rows"]
            print(f"{strategy}, {epochs} epoch(s): {facts['rows']} rows, median {facts['median_length']} tokens", flush=True)
            for system in systems:
                results.append(measure(Spec(system, strategy, epochs, steps=args.steps, out_dir=str(runs_root)), facts, peak))
                (out / "partial.json").write_text(json.dumps({"peak_gflops": peak, "results": results}, indent=2))

    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "peak_gflops": peak,
        "steps": args.steps, "rows": rows, "results": results, "ratios": ratios(results), "load_start": load_start,
    }
    if args.levers:
        report.update(load_end=load_avg(), minutes=(time.monotonic() - started) / 60)
        if args.only and (out / "levers.json").exists():  # the levers not measured again keep their last pair
            measured = {r["lever"] for r in results}
            earlier = json.loads((out / "levers.json").read_text())
            kept = [r for r in earlier["results"] if r.get("lever") not in measured]
            report["results"] = [r for label, *_ in LEVERS for r in kept + results if r.get("lever") == label]
            report["partial"] = f"{earlier['date']}; measured again {report['date']}: {sorted(measured)}"
        (out / "levers.json").write_text(json.dumps(report, indent=2))
        (out / "levers.md").write_text(levers_markdown(report))
        print(levers_markdown(report))
        return
    full_runs = [r for r in results if r["system"] == "tuneboard" and r["strategy"] == "full"]
    if full_runs and not args.no_predict:
        print("prediction: Predictor vs pipeline() ...", flush=True)
        report["predict"] = run_worker("bench.predict", full_runs[0]["run_dir"])
    if not args.no_command:
        from bench import command

        report["command"] = []
        for precision in ("fp32", "bf16") if native_bf16 and args.precision == "auto" else ("fp32",):
            print(f"whole command ({precision}): core train vs a Trainer script ...", flush=True)
            report["command"].append(command.markdown(command.main(["--precision", precision, "--out", str(out)])))
    report["padding"] = padding
    report.update(load_end=load_avg(), minutes=(time.monotonic() - started) / 60)
    table = markdown(report)
    (out / "partial.json").unlink(missing_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=2))
    (out / "latest.md").write_text(table)
    if out.resolve() == RESULTS.resolve():
        update_readme(table)
    print(table)


if __name__ == "__main__":
    main()
