"""Where a training step's time goes: ``python -m bench.profile [--steps 12] [--precision auto] [--strategy full]``.

The same step as core.loop (tuneboard's collator, autocast, loss, fused AdamW, clipping), under
torch.profiler after a warm-up; operator self-times are grouped into matmul, attention, optimizer,
dtype casts, other element-wise work and data; what the operators don't account for is Python and
dispatch overhead. Writes bench/results/profile_<precision>_<strategy>.md.

Read the shares with care: under the profiler a CPU step runs ~10x slower (1,117 ms against ~110 ms:
recording costs the same for each of ~5,000 small operators per step), which inflates the categories
made of many small operators (casts, element-wise work) and hides others — dropout's real share
(22%, found by switching it off) showed here as 5%. Switching a part off and timing the step (the
levers, ``python -m bench --levers``) measures what it costs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

GROUPS = [  # first match wins; patterns are substrings of aten operator names
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "mkldnn", "onednn")),
    ("attention (softmax, masks, SDPA glue)", ("softmax", "scaled_dot_product", "isneginf", "aten::where", "aten::all",
                                               "masked_fill", "aten::logical")),
    ("optimizer (fused AdamW, clipping, zero_grad)", ("adamw", "adam", "_foreach", "clip", "zero_grad", "linalg_vector_norm")),
    ("dtype casts (autocast)", ("aten::copy_", "aten::_to_copy", "aten::to")),
    ("dropout", ("bernoulli", "dropout", "native_dropout")),
    ("layer norm, GELU, residual adds, other element-wise", ("layer_norm", "gelu", "aten::add", "aten::mul", "aten::div", "aten::sum",
                                                              "aten::fill_", "aten::zero_", "tanh", "aten::sub", "embedding",
                                                              "index", "aten::cat", "aten::clone", "aten::empty", "cross_entropy",
                                                              "nll_loss", "log_softmax", "aten::mean", "aten::neg")),
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--strategy", default="full")
    args = parser.parse_args()
    from bench.common import BATCH, LEARNING_RATE, load_data, quiet

    quiet()
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from core.config import ModelConfig, RunConfig, StrategyConfig
    from core.data import label_ids
    from core.device import autocast, resolve_precision, tune_cpu_allocator
    from core.loop import make_loss, make_optimizer
    from core.models import load_model, load_tokenizer
    from core.strategies import build_strategy
    from core.tokenize import LengthGroupedBatches, PaddingCollator, encode_split

    tune_cpu_allocator()
    bundle = load_data(1600)
    tokenizer = load_tokenizer(ModelConfig())
    train_set = encode_split(bundle.train, "single_label", tokenizer, 128, label_ids(bundle.train, bundle, "single_label"))
    config = RunConfig(strategy=StrategyConfig(kind=args.strategy))
    plan = build_strategy(load_model(ModelConfig(), "single_label", bundle.labels.names), config)
    model, device = plan.model, torch.device("cpu")
    optimizer = make_optimizer(plan.param_groups, LEARNING_RATE[args.strategy], device, fused=resolve_precision(args.precision) == "bf16")
    collator, loss_fn = PaddingCollator(tokenizer.pad_token_id, "single_label"), make_loss("single_label")
    batches = LengthGroupedBatches(train_set.lengths, BATCH, 42).batches()
    params = list(model.parameters())
    model.train()

    def step(indices: list[int]) -> None:
        with record_function("## data (collate)"):
            batch = collator([train_set[i] for i in indices])
        with record_function("## forward"), autocast(args.precision, device):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = loss_fn(logits, batch["labels"])
        with record_function("## backward"):
            loss.backward()
        with record_function("## clip + optimizer"):
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    for indices in batches[:5]:
        step(indices)
    todo = batches[5 : 5 + args.steps]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for indices in todo:
            step(indices)
        wall = time.perf_counter() - start
    ops = [e for e in prof.key_averages() if not e.key.startswith(("##", "Optimizer.", "autograd::", "ProfilerStep"))]
    phases = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key.startswith("##")}
    totals = {name: 0.0 for name, _ in GROUPS}
    unmatched: dict[str, float] = {}
    for e in ops:
        seconds = e.self_cpu_time_total / 1e6
        key = e.key.lower()
        group = next((name for name, pats in GROUPS if any(p.lower() in key for p in pats)), None)
        if group:
            totals[group] += seconds
        else:
            unmatched[e.key] = unmatched.get(e.key, 0.0) + seconds
    totals["other operators"] = sum(unmatched.values())
    totals["Python, dispatch and autograd overhead (wall − operator time)"] = max(0.0, wall - sum(totals.values()))
    dtype = resolve_precision(args.precision)
    lines = [f"Profile: tuneboard {args.strategy} fine-tuning step, {'bf16 autocast' if dtype == 'bf16' else 'fp32'}, "
             f"batch {BATCH}, {len(todo)} steps, {wall / len(todo) * 1000:.0f} ms per step "
             f"({BATCH * len(todo) / wall:.1f} samples/s under the profiler), {torch.get_num_threads()} threads.", "",
             "| where | share of step time | ms per step |", "|---|---|---|"]
    for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {100 * seconds / wall:.0f}% | {1000 * seconds / len(todo):.1f} |")
    lines += ["", "Phases (inclusive): " + ", ".join(f"{k.strip('# ')} {100 * v / wall:.0f}%" for k, v in phases.items()), "",
              "Top operators by self time:", "", "```",
              prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), "```"]
    text = "\n".join(lines) + "\n"
    out = Path(__file__).resolve().parent / "results" / f"profile_{dtype}_{args.strategy}.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
