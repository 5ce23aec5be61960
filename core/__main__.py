"""Command line: ``python -m core <command>`` (train, eval, predict, compress, fuse, serve, runs, samples, compare, preflight, worker,
users, share-check)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, NoReturn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _print_error(message: str) -> None:
    print("error: " + textwrap.fill(message, width=100, subsequent_indent="       "), file=sys.stderr)


class ProgressPrinter:
    """Turns the event stream into a startup banner, a tqdm bar and eval lines."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, event: dict[str, Any]) -> None:
        from tqdm import tqdm

        kind = event["type"]
        if kind == "start" and "train_size" not in event:  # a derived run that does not train (core.derived)
            made = event.get("derived") or {}
            print(f"making {made.get('method')} of {', '.join(made.get('parents') or [])}", flush=True)
        elif kind == "start":
            print(f"training {event['train_size']:,} examples, validating on {event['validation_size']:,}; "
                  f"{event['total_steps']:,} optimizer steps ({event['steps_per_epoch']:,}/epoch); "
                  f"strategy {event['kind']}: {event['trainable_params']:,} of {event['total_params']:,} parameters "
                  f"train ({event['trainable_percent']:.2f}%)")
            self.bar = tqdm(total=event["total_steps"], initial=event.get("resumed_from_step") or 0,
                            unit="step", dynamic_ncols=True, file=sys.stderr)
        elif kind == "step" and self.bar is not None:
            self.bar.update(event["step"] - self.bar.n)
            self.bar.set_postfix(loss=f"{event['loss']:.4f}", lr=f"{event['lr']:.2e}", sps=f"{event['samples_per_s']:.1f}")
        elif kind == "eval":
            shown = {k: round(v, 4) for k, v in event["metrics"].items() if isinstance(v, float)}
            line = f"eval @ step {event['step']}: {shown}{' (best so far)' if event.get('improved') else ''}"
            (self.bar.write if self.bar is not None else print)(line)
        elif kind == "log":
            (self.bar.write if self.bar is not None else print)(f"{event.get('level', 'info')}: {event['message']}")
        elif kind == "end" and self.bar is not None:
            self.bar.close()


def runs_root(args: argparse.Namespace) -> str:
    """``--root``, else the default root ($TUNEBOARD_HOME or ./runs: core.config.default_runs_root)."""
    from core.config import default_runs_root

    return args.root or default_runs_root()


def cmd_train(args: argparse.Namespace) -> int:
    from core.config import load_config
    from core.device import process_rank
    from core.recipe import RunFailed, load_run_config, run_training
    from core.runs import find_run
    from core.sweep import watch_run

    if args.resume:
        run_dir = find_run(runs_root(args), args.resume)
        if run_dir is None:
            _print_error(f"no run {args.resume!r} found. `python -m core runs` lists the runs.")
            return 2
        config = load_run_config(run_dir)
    else:
        config = load_config(args.config, args.set)
        if args.root:
            config = config.replace(output_dir=args.root)
        run_dir = Path(args.run_dir) if args.run_dir else None
    # A sweep's trial (its run directory has trial.json) reports its evaluations and may be pruned.
    trial = watch_run(run_dir, ProgressPrinter()) if run_dir is not None else None
    watch = trial[0] if trial else None
    try:
        outcome = run_training(config, run_dir, resume=bool(args.resume), echo=watch or ProgressPrinter(),
                               should_stop=watch.should_stop if watch else None)
    except RunFailed as exc:
        _print_error(f"{exc} (run directory: {exc.run_dir})")
        return 1
    if trial and watch.pruned_at is not None:
        watch.record_pruned(outcome.run_dir, trial[1])
        print(f"pruned by sweep {trial[1]} at step {watch.pruned_at}")
        return 0
    global _EXIT_WITHOUT_TEARDOWN
    # No tracker (wandb and mlflow finish their runs at exit) and one process (torch.distributed's own teardown).
    _EXIT_WITHOUT_TEARDOWN = config.train.report_to == "none" and process_rank()[1] == 1
    if process_rank()[0] != 0:
        return 0  # another than the main process of torchrun / accelerate launch: the main one reports
    if outcome.state == "cancelled":
        print(f"cancelled at step {outcome.result.global_step}; resume with: python -m core train --resume {outcome.run_dir.name}")
        return 3
    report = outcome.report or {}
    split = report["eval_split"]
    metrics = report[split]["metrics"]
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    print(f"\ncompleted {outcome.run_dir.name} in {report['timings']['train_s']:.1f}s of training "
          f"({report['timings']['samples_per_s']:.1f} samples/s)")
    print(f"{split}: {shown}")
    print_findings(outcome.run_dir)
    print(f"run directory: {outcome.run_dir}\nmodel: {outcome.run_dir / 'model'}")
    return 0


def print_findings(run_dir: Path) -> None:
    """The run's diagnosis (core.diagnose), one warning per paragraph; nothing when all is well."""
    from core.diagnose import diagnose_run

    for finding in diagnose_run(run_dir):
        print("warning: " + textwrap.fill(finding.text(), width=100, subsequent_indent="         "))


def cmd_eval(args: argparse.Namespace) -> int:
    from core.evaluate import evaluate_run

    report = evaluate_run(_run_dir(args), args.data)
    print(json.dumps({"metrics": report["metrics"], "per_class": report.get("per_class")}, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from core.evaluate import predict_file

    out = predict_file(_run_dir(args), args.data, args.out, calibrated=args.calibrated)
    print(f"wrote {out['rows']:,} predictions to {out['path']}")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from core.compress import METHODS
    from core.derived import compress_run
    from core.recipe import RunFailed

    parent = _run_dir(args)
    methods = [m.strip() for m in (args.methods or args.method or "").split(",") if m.strip()]
    if not methods:
        _print_error("name a method: --method int8, or several: --methods int8,onnx-int8,distill "
                     "(int8, onnx, onnx-int8, prune-layers, distill)")
        return 2
    if args.name and len(methods) > 1:
        _print_error("--name names one derived run; with several --methods each is named <parent name>-<method>")
        return 2
    failed = 0
    for method in methods:
        print(f"{method}: making a derived run of {parent.name} ...", file=sys.stderr)
        try:
            compress_run(parent, method, name=args.name, options=args.set or None,
                         echo=ProgressPrinter() if getattr(METHODS.get(method), "made", None) == "train" else None)
        except RunFailed as exc:
            _print_error(f"{method}: {exc} (run directory: {exc.run_dir})")
            failed += 1
    print_variants(parent)
    return 1 if failed else 0


def print_variants(parent: Path) -> None:
    """The Deploy page's table in text: the run and every variant made from it."""
    from core.deploy import variants

    rows = variants(parent.parent, parent.name)
    metric = rows[0].get("metric") or "metric"

    def cell(value: Any, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, (int, float)) else "—"

    print(f"{'variant':24} {'run':42} {metric:>9} {'change':>8} {'MB':>7} {'p50 ms':>7} {'p95 ms':>7} {'texts/s':>8} "
          f"{'speed-up':>8} frontier")
    for r in rows:
        print(f"{r['method'][:24]:24} {r['run_id'][:42]:42} {cell(r.get('value'), '.4f'):>9} {cell(r.get('change'), '+.4f'):>8} "
              f"{cell(r.get('weights_mb'), '.1f'):>7} {cell(r.get('p50_ms'), '.1f'):>7} {cell(r.get('p95_ms'), '.1f'):>7} "
              f"{cell(r.get('batch32_texts_per_s'), '.0f'):>8} {cell(r.get('speedup'), '.2f') + ('x' if r.get('speedup') else ''):>8} "
              f"{'*' if r.get('frontier') else ''}{'  ' + r['state'] if r['state'] != 'completed' else ''}")


def cmd_fuse(args: argparse.Namespace) -> int:
    from core.derived import fuse_run
    from core.recipe import RunFailed
    from core.runs import find_run

    members = []
    for given in args.runs:
        found = find_run(runs_root(args), given)
        if found is None:
            _print_error(f"no run {given!r}: give run directories or ids (`python -m core runs` lists them)")
            return 2
        members.append(found)
    options = list(args.set or [])
    if args.weights:
        options.append(f"weights=[{args.weights}]")
        if args.method == "ensemble" and not any(o.startswith("weighting=") for o in options):
            options.append("weighting=given")
    try:
        report = fuse_run(members, args.method, name=args.name, options=options or None).report
    except RunFailed as exc:
        _print_error(f"{exc} (run directory: {exc.run_dir})")
        return 1
    print_fusion(report)
    return 0


def print_fusion(report: dict[str, Any]) -> None:
    """The members' headlines beside the fused run's, with its difference to the best and to the mean member."""
    fusion, derived = report["fusion"], report["derived"]
    metric = (derived.get("headline") or {}).get("name") or "metric"
    print(f"{'':10} {'run':45} {metric + ' (' + report['eval_split'] + ')':>22}")
    for member in fusion["members"]:
        value = member["value"]
        print(f"{'member':10} {member['run']:45} {value if value is None else format(value, '.4f'):>22}")
    value = derived["headline"].get("value")
    print(f"{derived['method']:10} {report['run_id']:45} {value:>22.4f}")
    if fusion.get("vs_best") is not None:
        print(f"change: {fusion['vs_best']:+.4f} to the best member ({fusion['best_member']:.4f}), "
              f"{fusion['vs_mean']:+.4f} to the members' mean ({fusion['mean_member']:.4f}); "
              f"weights {derived['weights_mb']:.1f} MB (the first member's: {derived['parent_weights_mb']:.1f} MB)")


def cmd_derive(args: argparse.Namespace) -> int:
    from core.derived import make
    from core.recipe import RunFailed

    try:
        make(Path(args.run_dir), resume=args.resume, echo=ProgressPrinter())
    except RunFailed as exc:
        _print_error(str(exc))
        return 1
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from core.explain import explain_file, explainer_for_run

    run_dir = _run_dir(args)
    if bool(args.text) == bool(args.data):
        raise CliError("give --text \"...\" (one text) or --data FILE --out FILE.jsonl (every row of a file)")
    if args.data and not args.out:
        raise CliError("--data needs --out FILE.jsonl: where to write one line of attributions per row")
    if args.data:
        _check_output(args.out, [Path(args.data).expanduser().resolve(), *_run_sources(run_dir)])
    explainer = explainer_for_run(run_dir, steps=args.steps, max_steps=args.max_steps)
    if explainer.through:
        print(f"note: explained through {explainer.through}")
    if args.data:
        out = explain_file(explainer, run_dir, args.data, args.out, target=args.target)
        print(f"wrote {out['rows']:,} explanations to {out['path']} ({out['not_converged']} not within the convergence bound)")
        return 0
    if explainer.predictor.task == "token":
        explanations = explainer.explain_entities(args.text.split())
        if not explanations:
            print("no entity predicted in this text")
    else:
        explanations = [explainer.explain(args.text, args.pair, args.target)]
    for e in explanations:
        head = f"entity {e.predicted!r} ({e.target})" if e.span else f"{e.target} (predicted {e.predicted})"
        print(f"{head}: output {e.output:.4f}, baseline {e.baseline_output:.4f}, delta {e.delta:+.4f} after {e.steps} steps"
              f"{'' if e.converged else ' (not within the convergence bound: raise --max-steps)'}")
        for i in e.top_words(min(10, len(e.words))):
            print(f"  {e.scores[i]:+.4f}  {e.words[i]}")
    return 0


class CliError(ValueError):
    """Command-line arguments that don't fit together, or an output that would overwrite a data file."""


def _run_sources(run_dir: Path) -> list[Path]:
    """The data files a run read (its source and its own validation/test files): never written by a command."""
    from core.recipe import load_run_config

    data = load_run_config(run_dir).data
    return [Path(s).expanduser().resolve() for s in (data.source, data.validation_source, data.test_source)
            if s and not s.startswith("sample:")]


def _check_output(out: str, protected: list[Path], *, force: bool = True) -> Path:
    """``out`` as a path, unless it is one of the ``protected`` files (or exists, without ``force``)."""
    path = Path(out).expanduser()
    if path.resolve() in protected:
        raise CliError(f"{out} is a data file this command reads: write to another file (nothing you made is "
                              "overwritten)")
    if path.exists() and not force:
        raise CliError(f"{out} exists: pick another --out, or add --force to replace it")
    return path


def cmd_analyze(args: argparse.Namespace) -> int:
    from core import runs
    from core.calibration import CalibrationError, calibrate
    from core.label_issues import LabelIssueError, find_issues
    from core.slices import run_slices

    run_dir = _run_dir(args)
    report = runs.read_json(run_dir / runs.REPORT)
    if not report:
        raise LabelIssueError(f"run {run_dir.name} has no report yet: analysis needs a completed run")
    if report.get("eval_split") == "test" and not (run_dir / runs.VALIDATION_PREDICTIONS).exists():
        from core.evaluate import evaluate_splits

        print("saving the validation split's predictions (this run was made before they were kept)…")
        evaluate_splits(run_dir)
    findings = False
    from core.diagnose import diagnose_run

    for finding in diagnose_run(run_dir):
        findings = True
        print("warning: " + textwrap.fill(finding.text(), width=100, subsequent_indent="         "))
    if not findings:
        print("diagnosis: nothing looks wrong")
    print()
    try:
        slicings = run_slices(run_dir)
    except FileNotFoundError as exc:
        raise LabelIssueError(f"{exc}: `python -m core eval {run_dir.name}` can't rebuild it; the run's evaluation "
                              "files are incomplete (train it again)") from None
    for slicing in slicings:
        print(f"by {slicing.name} ({slicing.metric}; whole split {slicing.overall:.3f})"
              + (f": {slicing.note}" if slicing.note else ""))
        for s in slicing.slices:
            flag = "  << significantly worse" if s.worse else ""
            print(f"  {s.name:<24} n={s.examples:<5} {s.score:.3f}  [{s.low:.3f}, {s.high:.3f}]{flag}")
    try:
        fitted = calibrate(run_dir)
    except CalibrationError as exc:
        print(f"\ncalibration: {exc}")
    else:
        print(f"\ncalibration: temperature {fitted['temperature']:.3f} fitted on validation; ECE on {fitted['evaluated_on']} "
              f"{fitted['before']['ece']:.4f} -> {fitted['after']['ece']:.4f} (predict --calibrated applies it)")
    try:
        issues = find_issues(run_dir)
    except LabelIssueError as exc:
        print(f"label issues: {exc}")
        return 0
    print(f"\nlikely label errors: {len(issues)} in the validation and test splits" + (", the first 10:" if len(issues) else ""))
    for _, row in issues.head(10).iterrows():
        print(f"  {row['split']:<10} row {int(row['row']):<6} given {row['given']!r}, suggested {row['suggested']!r} "
              f"({row['suggested_probability']:.2f})  {str(row['text'])[:60]!r}")
    if args.review_out:
        from core.exports import to_csv_bytes

        _check_output(args.review_out, _run_sources(run_dir)).write_bytes(to_csv_bytes(issues))
        print(f"wrote the review table to {args.review_out}: set each decision to keep, relabel or drop, then "
              f"`python -m core correct {run_dir.name} --review {args.review_out} --out FILE`")
    return 0


def cmd_label_issues(args: argparse.Namespace) -> int:
    from core.label_issues import cross_validated, find_issues

    run_dir = _run_dir(args)
    print(f"training {args.folds} fold models on the training split of {run_dir.name}…", flush=True)
    table = cross_validated(run_dir, args.folds, epochs=args.epochs)
    issues = find_issues(run_dir)
    train = issues[issues["split"] == "train"]
    print(f"out-of-fold probabilities for {len(table):,} training rows; likely label errors: {len(train)} in the training "
          f"split, {len(issues) - len(train)} in validation and test" + (" (the first 10 of training:)" if len(train) else ""))
    for _, row in train.head(10).iterrows():
        print(f"  row {int(row['row']):<6} given {row['given']!r}, suggested {row['suggested']!r} "
              f"({row['suggested_probability']:.2f})  {str(row['text'])[:60]!r}")
    print(f"`python -m core analyze {run_dir.name} --review-out FILE` writes them all for review")
    return 0


def cmd_correct(args: argparse.Namespace) -> int:
    from core.data import read_table
    from core.label_issues import corrected_copy

    run_dir = _run_dir(args)
    review = read_table(args.review)
    data, name, counts = corrected_copy(run_dir, review, split=args.split)
    out = _check_output(args.out or name, [Path(args.review).expanduser().resolve(), *_run_sources(run_dir)],
                        force=args.force)
    out.write_bytes(data)
    print(f"wrote {out}: {counts['rows']:,} rows, {counts['relabelled']} relabelled, {counts['dropped']} dropped "
          "(the original file is unchanged)")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from core.config import load_config
    from core.sweep import load_space, run_sweep

    base = load_config(args.config, args.set)
    if args.root:
        base = base.replace(output_dir=args.root)
    space = load_space(args.space)
    result = run_sweep(base, space, args.trials, name=args.name, storage=args.storage, seed=args.seed,
                       pruner=args.pruner, resume=args.resume, workers=args.workers, owner=args.owner,
                       echo=_trial_printer if args.workers else None)
    print(f"sweep {result.name} ({result.storage}): {result.direction} validation {result.metric}")
    for t in result.trials:
        value = f"{t['value']:.4f}" if t["value"] is not None else "-"
        print(f"  #{t['number']:<3} {t['state']:<9} {value:>8}  {t['run_id'] or ''}  {t['params']}")
    if result.best:
        print(f"best: trial {result.best['number']} ({result.best['run_id']}), validation {result.metric} "
              f"{result.best['value']:.4f}, {result.best['params']}")
    if result.best_test and result.best_test.get("metrics"):
        shown = ", ".join(f"{k}={v:.4f}" for k, v in result.best_test["metrics"].items() if k != "loss")
        print(f"best trial on the test split (read once, for this trial only): {shown}")
    return 0


def _trial_printer(event: dict) -> None:
    if event.get("type") == "trial":
        value = f" {event['value']:.4f}" if event.get("value") is not None else ""
        print(f"trial {event['number']} ({event['run_id']}): {event['state']}{value}", flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from core.serve import serve

    serve(_run_dir(args), host=args.host, port=args.port)
    return 0


def _run_dir(args: argparse.Namespace) -> Path:
    from core.models import ModelError
    from core.runs import find_run

    run_dir = find_run(runs_root(args), args.run)
    if run_dir is None:
        raise ModelError(f"no run {args.run!r}: give a run directory or a run id (`python -m core runs` lists them)")
    return run_dir


def cmd_runs(args: argparse.Namespace) -> int:
    from core.runs import list_runs

    rows = list_runs(runs_root(args))
    if not rows:
        print("no runs yet; start one with: python -m core train --config examples/rotten_tomatoes.yaml")
        return 0
    print(f"{'run':45} {'state':11} {'task':12} {'strategy':16} headline")
    for r in rows:
        value = f"{r.headline_name}={r.headline_value:.4f}" if r.headline_value is not None else (r.error or "")[:60]
        print(f"{r.run_id:45} {r.state:11} {r.task:12} {r.strategy:16} {value}"
              + (f"  ({r.derived_method} of {', '.join(r.parents)})" if r.derived_method else ""))
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    from core.data import list_samples

    for s in list_samples():
        labels = ", ".join(s.labels[:12]) + (" …" if len(s.labels) > 12 else "")
        print(f"sample:{s.name:20} {s.task:12} {s.num_rows:>7,} rows  {s.description}")
        print(f"{'':28} labels: {labels}")
        if s.note:
            print(f"{'':28} note: {s.note}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from core.compare import compare
    from core.config import ConfigError, load_config

    config = load_config(args.config, args.set)
    if args.root:
        config = config.replace(output_dir=args.root)
    pinned: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in (args.lr or "").split(","))):
        kind, sep, value = item.partition("=")
        try:
            pinned[kind.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError("--lr", f"{item!r} is not kind=rate, e.g. --lr lora=1e-3,full=5e-5")
    result = compare(config, args.strategies.split(","), seeds=args.seeds, echo=ProgressPrinter(),
                     learning_rates=pinned, same_learning_rate=args.same_lr)
    print()
    print(result.table())
    print(f"comparison: {result.directory}")
    return 0 if all(r["mean"] is not None for r in result.rows) else 1


def cmd_preflight(args: argparse.Namespace) -> int:
    from core.config import load_config
    from core.preflight import preflight, preflight_strategies

    config = load_config(args.config, args.set)
    if args.root:
        config = config.replace(output_dir=args.root)
    if args.every_strategy:
        rows = preflight_strategies(config)
        if args.json:
            print(json.dumps(rows, default=str))
            return 0
        for row in rows:
            if "error" in row:
                print(f"{row['kind']:17} can't run with these settings: {row['error']}")
            else:
                print(f"{row['kind']:17} {row['trainable_params']:>12,} trainable ({row['trainable_percent']:7.3f}%)  "
                      f"lr {row['learning_rate']:.0e}  {row['seconds_per_step']:.3f} s/step  ~{row['epoch_seconds']:.0f} s/epoch")
        return 0
    facts = preflight(config)
    if args.json:
        print(json.dumps(facts, default=str))
        return 0
    print(f"strategy {facts['kind']}: {facts['trainable_params']:,} of {facts['total_params']:,} parameters train "
          f"({facts['trainable_percent']:.2f}%)")
    for group in facts["groups"]:
        print(f"  {group['name']:32} lr {group['lr']:.2e}  weight decay {group['weight_decay']:g}  {group['params']:,} params")
    print(f"{facts['seconds_per_step']:.3f} s per optimizer step on {facts['device']} ({facts['precision']}), measured over "
          f"{facts['measured_steps']} steps of the training loop; about {facts['epoch_seconds']:.0f} s per epoch of "
          f"{facts['train_rows']:,} rows, {facts['total_steps']:,} steps in all")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from core.jobs import JobError, run_worker

    try:
        return run_worker(runs_root(args), concurrency=args.concurrency,
                          idle_exit_s=args.idle_exit, parent_pid=args.parent_pid, name=args.name)
    except JobError as exc:
        _print_error(str(exc))
        return 2


def _new_password(args: argparse.Namespace) -> str:
    """The password from stdin (``--password-stdin``: one line, for scripts), else typed twice at a prompt."""
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"Password for {args.name}: ")
    if first != getpass.getpass("Again: "):
        raise ValueError("The two passwords differ; nothing was changed.")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    from core import actions, users
    from core.access import LOCAL_USER

    home = runs_root(args)  # the users file lives beside the runs: $TUNEBOARD_HOME/users.yaml
    try:
        if args.users_command == "list":
            rows = users.list_users(home)
            for name, role, how in rows:
                print(f"{name:32} {role:9} {how}")
            if not rows:
                print(f"no users in {users.users_path(home)} yet: python -m core users add NAME --role admin")
        elif args.users_command == "add":
            actions.add_user(LOCAL_USER, home, args.name, args.role, None if args.sso else _new_password(args))
            print(f"added {args.name} ({args.role}) to {users.users_path(home)}")
        elif args.users_command == "set-role":
            actions.set_role(LOCAL_USER, home, args.name, args.role)
            print(f"{args.name} is now {args.role}")
        elif args.users_command == "passwd":
            actions.set_password(LOCAL_USER, home, args.name, _new_password(args))
            print(f"new password set for {args.name}; their open sessions have ended")
        elif args.users_command == "remove":
            actions.remove_user(LOCAL_USER, home, args.name)
            print(f"removed {args.name}")
        elif args.users_command == "group":
            actions.set_group(LOCAL_USER, home, args.group, None if args.remove else args.role)
            print(f"group {args.group}: {'removed' if args.remove else args.role}")
        if args.users_command == "list":
            for group, role in users.list_groups(home):
                print(f"group {group:26} {role:9} single sign-on")
    except ValueError as exc:  # UsersError, or two different passwords
        _print_error(str(exc))
        return 2
    return 0


def cmd_share_check(args: argparse.Namespace) -> int:
    from core.serving import share_problem

    problem = share_problem(runs_root(args))
    if problem:
        print(problem, file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Tuneboard: fine-tune BERT-family encoders.")
    parser.add_argument("--root", help="runs root folder (default: $TUNEBOARD_HOME or ./runs)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one run from a YAML config")
    p.add_argument("--config", help="YAML/JSON run config (see examples/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.epochs=2")
    p.add_argument("--resume", metavar="RUN", help="resume a cancelled or interrupted run from its last checkpoint")
    p.add_argument("--run-dir", help=argparse.SUPPRESS)  # the job worker pre-creates the directory
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="re-evaluate a run's saved model and print the report")
    p.add_argument("run", help="run directory or id")
    p.add_argument("--data", help="evaluate on this labelled file instead of the run's test split")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="predict a file with a run's saved model")
    p.add_argument("run", help="run directory or id")
    p.add_argument("--data", required=True, help="CSV/TSV/JSON/JSONL/Parquet (or CoNLL for NER) to predict")
    p.add_argument("--out", required=True, help="where to write the predictions (.csv or .parquet)")
    p.add_argument("--calibrated", action="store_true",
                   help="divide the logits by the temperature fitted on validation (python -m core analyze fits it)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("explain", help="which words drove a run's prediction (integrated gradients; per entity for NER)")
    p.add_argument("run", help="run directory or id")
    p.add_argument("--text", help="one text to explain (words separated by spaces for NER)")
    p.add_argument("--pair", help="the second text, for a pair run")
    p.add_argument("--data", help="a file to explain row by row (CSV/TSV/JSON/JSONL/Parquet, or CoNLL for NER)")
    p.add_argument("--out", help="with --data: the JSONL file to write, one line per row")
    p.add_argument("--target", help="the label to explain (default: the predicted one)")
    p.add_argument("--steps", type=int, default=16, help="integration steps tried first (doubled until converged)")
    p.add_argument("--max-steps", type=int, default=256, help="the most integration steps tried")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("analyze", help="a run's diagnosis, slices, calibration and likely label errors")
    p.add_argument("run", help="run directory or id")
    p.add_argument("--review-out", help="write the likely label errors as a review table (CSV)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("label-issues", help="likely label errors in the training split too: out-of-fold probabilities from "
                       "K short runs (k-fold cross-validation)")
    p.add_argument("run", help="run directory or id")
    p.add_argument("--folds", type=int, default=5, help="folds, each a run trained on the others (default 5)")
    p.add_argument("--epochs", type=int, help="epochs of each fold run (default: the run's own)")
    p.set_defaults(func=cmd_label_issues)

    p = sub.add_parser("correct", help="a corrected copy of a run's data file from a reviewed label-issue table")
    p.add_argument("run", help="run directory or id")
    p.add_argument("--review", required=True, help="the review table (from analyze --review-out), decisions filled in")
    p.add_argument("--out", help="where to write the copy (default: <file>-corrected.<ext> here)")
    p.add_argument("--split", choices=("train", "validation", "test"),
                   help="only this split's rows (when they come from its own file)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (never the run's own data files)")
    p.set_defaults(func=cmd_correct)

    p = sub.add_parser("compress", help="a smaller, faster model from a completed run, evaluated on its test split "
                                       "(a derived run)")
    p.add_argument("run", help="run directory or id")
    p.add_argument("--method", help="int8, onnx, onnx-int8, prune-layers or distill")
    p.add_argument("--methods", help="several, comma-separated: one derived run each, e.g. int8,onnx-int8,distill")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a method option, e.g. --set drop=top:2 (prune-layers), --set alpha=0.7 (distill); repeatable")
    p.add_argument("--name", help="name of the derived run (default: <parent name>-<method>)")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("fuse", help="one model from several completed runs of one task (a derived run), evaluated on "
                                   "their shared test split")
    p.add_argument("runs", nargs="+", help="run directories or ids (the members)")
    p.add_argument("--method", required=True, help="ensemble, soup, task_arithmetic, ties or dare_ties")
    p.add_argument("--weights", help="comma-separated, one per member (ensemble: weighting=given)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a method option, e.g. --set recipe=greedy (soup), --set density=0.3 (ties); repeatable")
    p.add_argument("--name", help="name of the fused run (default: <first member's name>-<method>)")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("derive", help=argparse.SUPPRESS)  # the job worker: make a queued derived run
    p.add_argument("--run-dir", required=True)
    p.add_argument("--resume", action="store_true")
    p.set_defaults(func=cmd_derive)

    p = sub.add_parser("sweep", help="a hyper-parameter search on Optuna: each trial a run, pruned from its evaluations")
    p.add_argument("--config", required=True, help="the base run config (YAML/JSON)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the base config")
    p.add_argument("--space", required=True, help="the search space YAML (section.field: {low, high, log} or [choices])")
    p.add_argument("--trials", type=int, required=True, help="trials in all (with --resume: the total, finished ones kept)")
    p.add_argument("--name", help="the sweep's name (default: <config name>-sweep)")
    p.add_argument("--storage", help="an RDB URL for workers on several machines (default: a journal file under the "
                   "runs root)")
    p.add_argument("--seed", type=int, default=0, help="the TPE sampler's seed")
    p.add_argument("--pruner", default="median", choices=("median", "halving", "none"))
    p.add_argument("--resume", action="store_true", help="continue the sweep of that name")
    p.add_argument("--workers", type=int, default=0,
                   help="0: trials one after another in this process (default); K: K trials at a time as queued jobs, for "
                        "the job workers (one is started here unless a worker serves the runs root; workers on other "
                        "machines sharing the root and an RDB --storage take trials too)")
    p.add_argument("--owner", help=argparse.SUPPRESS)  # the dashboard's user, who owns the queued trials
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("serve", help="an HTTP API for a run's model: POST /predict, GET /health, docs at /docs")
    p.add_argument("run", help="run directory or id (a derived run too)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (another than loopback needs "
                                                         "TUNEBOARD_SERVE_TOKEN; default %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="default %(default)s")
    p.set_defaults(func=cmd_serve)

    sub.add_parser("runs", help="list runs with state and headline metric").set_defaults(func=cmd_runs)
    sub.add_parser("samples", help="list the bundled sample datasets").set_defaults(func=cmd_samples)

    p = sub.add_parser("compare", help="run several strategies on the same split and seeds; print a table")
    p.add_argument("--config", help="base YAML/JSON run config")
    p.add_argument("--strategies", required=True, help="comma-separated kinds, e.g. full,freeze,llrd,lora,adapter")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per strategy, counting up from train.seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.epochs=2")
    p.add_argument("--lr", help="pin learning rates per kind, e.g. lora=1e-3,full=5e-5 (else each kind's default)")
    p.add_argument("--same-lr", action="store_true", help="use the config's train.learning_rate for every strategy")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("preflight", help="what a config would train, and a time-per-epoch estimate from a few real steps")
    p.add_argument("--config", help="YAML/JSON run config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. strategy.kind=lora")
    p.add_argument("--json", action="store_true", help="print one JSON object (what the dashboard reads)")
    p.add_argument("--every-strategy", action="store_true",
                   help="one row per strategy on the same data and model, at the learning rates `compare` would use")
    p.set_defaults(func=cmd_preflight)

    p = sub.add_parser("worker", help="run queued jobs (the dashboard starts one by itself; start more, here or on other "
                                      "machines sharing the runs root, to run several jobs at once)")
    p.add_argument("--name", help="this worker's name, unique per runs root (default: the host name); a second worker "
                                  "on the same machine needs its own")
    p.add_argument("--concurrency", type=int, default=1, help="trainings at once (default 1)")
    p.add_argument("--idle-exit", type=float, default=300.0, help="exit after this many seconds without jobs")
    p.add_argument("--parent-pid", type=int, help="exit (after the running jobs) when this process is gone")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("users", help="the users of a shared dashboard ($TUNEBOARD_HOME/users.yaml)")
    us = p.add_subparsers(dest="users_command", required=True)
    us.add_parser("list", help="every user, their role and how they log in")
    q = us.add_parser("add", help="add a user (asks for the password)")
    q.add_argument("name", help="user name, or the e-mail address of a single sign-on user")
    q.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    q.add_argument("--sso", action="store_true", help="no password: the user logs in through single sign-on")
    q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    q = us.add_parser("set-role", help="change a user's role")
    q.add_argument("name")
    q.add_argument("role", choices=["viewer", "operator", "admin"])
    q = us.add_parser("passwd", help="set a new password (ends the user's open sessions)")
    q.add_argument("name")
    q.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    q = us.add_parser("remove", help="remove a user (ends their open sessions)")
    q.add_argument("name")
    q = us.add_parser("group", help="give a single sign-on group (a 'groups' claim) a role, or --remove it")
    q.add_argument("group")
    q.add_argument("role", nargs="?", choices=["viewer", "operator", "admin"])
    q.add_argument("--remove", action="store_true")
    p.set_defaults(func=cmd_users)

    sub.add_parser("share-check", help="exit 2, saying why, when the dashboard can't be shared yet (no users)"
                   ).set_defaults(func=cmd_share_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("worker", "users", "share-check"):  # no torch: these must answer at once
        return args.func(args)
    from core.calibration import CalibrationError
    from core.compress import CompressionError
    from core.config import ConfigError
    from core.data import DataError
    from core.derived import DerivedRunError
    from core.explain import ExplainError
    from core.label_issues import LabelIssueError
    from core.models import ModelError
    from core.serve import ServeRefused
    from core.strategies import StrategyError
    from core.sweep import SweepError

    try:
        return args.func(args)
    except (ConfigError, DataError, ModelError, StrategyError, CompressionError, DerivedRunError, ServeRefused,
            ExplainError, CalibrationError, LabelIssueError, CliError, SweepError) as exc:
        _print_error(str(exc))
        return 2
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130


# Set by cmd_train where nothing still needs the interpreter's teardown once the run has ended.
_EXIT_WITHOUT_TEARDOWN = False


def exit_without_teardown(code: int) -> NoReturn:
    """End the process now, skipping the interpreter's teardown.

    After a training run, Python spends ~0.8-1.2 s freeing the objects that torch's and transformers'
    imports made (measured on 2 cores: a 15 s ``core train`` command, bench/results/command-*.md), work
    the operating system does at once when the process ends. By then the run's files are written and
    closed (atomic writes, the event file closed with its run); logging and the standard streams are
    flushed here. Only for ``python -m core train`` run as a program: tests calling :func:`main` keep
    their interpreter.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_code = main()
    if _EXIT_WITHOUT_TEARDOWN:
        exit_without_teardown(exit_code)
    sys.exit(exit_code)
