"""The loop's mechanics on a tiny random BERT (the point here is the mechanism, not the model)."""

import math

import numpy as np
import pytest
import torch

from core.config import RunConfig, StrategyConfig, TrainConfig
from core.loop import make_loss, predict, train
from core.strategies import build_strategy
from core.tokenize import PaddingCollator
from tests.support.synthetic import accuracy, synthetic, tiny_model


def run(tmp_path, *, steps_to_cancel=None, resume=False, model=None, **train_opts):
    config = RunConfig(train=TrainConfig(**{"epochs": 3, "batch_size": 16, "learning_rate": 3e-3, "log_every": 1,
                                            **train_opts}), strategy=StrategyConfig())
    model = model or tiny_model()
    plan = build_strategy(model, config)
    events, saved = [], []
    counter = {"n": 0}

    def should_stop():
        counter["n"] += 1
        return steps_to_cancel is not None and counter["n"] >= steps_to_cancel

    result = train(config, plan, synthetic(320, 0), synthetic(80, 1), collator=PaddingCollator(0, "single_label"),
                   loss_fn=make_loss("single_label"), score=accuracy, metric_name="accuracy", events=events.append,
                   should_stop=should_stop, checkpoint_dir=tmp_path / "ckpt", on_best=lambda m: saved.append(1),
                   resume=resume)
    return result, events, plan.model, saved


def test_loss_falls_and_the_task_is_learned(tmp_path):
    result, events, _, saved = run(tmp_path)
    losses = [e["loss"] for e in events if e["type"] == "step"]
    assert result.state == "completed" and result.global_step == result.total_steps == 60
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    assert result.best_metric > 0.8 and saved  # best checkpoint was saved at least once
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds.count("eval") == 3  # one evaluation per epoch


def test_logged_learning_rate_is_the_one_each_step_used(tmp_path):
    # Warmup rounds up as transformers' Trainer does (60 steps x 0.1 = 6; x 0.105 = 6.3 -> 7 steps, where
    # round() would give 6), and each step event carries the rate its optimizer step used: 0 on the first
    # step of a warmup from zero.
    for ratio, warmup in ((0.1, 6), (0.105, 7)):
        _, events, _, _ = run(tmp_path / str(ratio), warmup_ratio=ratio)
        lrs = [e["lr"] for e in events if e["type"] == "step"]
        assert lrs[0] == 0.0
        assert lrs[warmup] == pytest.approx(3e-3) and lrs[warmup - 1] < 3e-3
        assert lrs[-1] == pytest.approx(3e-3 / (60 - warmup))  # linear decay: the last step's rate is one step above zero


def test_fast_cpu_dropout_is_a_switch(tmp_path):
    # On (the default) the loop trains with core.cpu_dropout and its eager attention; off, torch's own stays.
    def dropout_kinds(model):
        return {type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.Dropout)}

    _, _, on, _ = run(tmp_path / "on", epochs=1)
    _, _, off, _ = run(tmp_path / "off", epochs=1, fast_cpu_dropout=False)
    assert dropout_kinds(on) == {"CpuDropout"} and on.config._attn_implementation == "tuneboard_eager"
    assert dropout_kinds(off) == {"Dropout"} and off.config._attn_implementation != "tuneboard_eager"


def test_accumulation_and_fractional_epochs_set_the_step_count(tmp_path):
    result, events, _, _ = run(tmp_path, epochs=1.5, gradient_accumulation_steps=3)
    per_epoch = math.ceil(20 / 3)  # 320 rows / 16 = 20 batches
    assert result.total_steps == math.ceil(1.5 * per_epoch) == result.global_step
    assert events[0]["steps_per_epoch"] == per_epoch


def test_eval_every_n_steps_and_early_stopping(tmp_path):
    result, events, _, _ = run(tmp_path, eval_every=5, early_stopping_patience=1, learning_rate=0.0 + 1e-12)
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals][:2] == [5, 10]
    assert result.early_stopped and result.global_step < result.total_steps


def test_cancel_then_resume_matches_an_uninterrupted_run(tmp_path):
    full, _, full_model, _ = run(tmp_path / "a")
    cancelled, _, _, _ = run(tmp_path / "b", steps_to_cancel=25)
    assert cancelled.state == "cancelled" and cancelled.global_step == 25
    resumed, events, resumed_model, _ = run(tmp_path / "b", resume=True, model=tiny_model(seed=123))
    assert resumed.state == "completed" and resumed.global_step == full.global_step == full.total_steps
    assert events[0]["resumed_from_step"] == 25
    assert [e["step"] for e in events if e["type"] == "step"][0] == 26
    for (name, a), (_, b) in zip(full_model.state_dict().items(), resumed_model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


def test_predict_returns_rows_in_their_original_order(tmp_path):
    model = tiny_model()
    data = synthetic(37, 5)
    from accelerate import Accelerator

    preds = predict(model, data, PaddingCollator(0, "single_label"), 8, make_loss("single_label"), Accelerator())
    assert preds.scores.shape == (37, 2)
    assert (preds.gold == np.array([r["labels"] for r in data.features])).all()
    model.eval()
    one = model(input_ids=torch.tensor([data[0]["input_ids"]])).logits[0].detach().numpy()
    assert np.allclose(preds.scores[0], one, atol=1e-4)


@pytest.mark.parametrize("task", ["single_label", "multi_label", "regression", "token"])
def test_losses_per_task(task):
    torch.manual_seed(0)
    if task == "token":
        logits, labels = torch.randn(2, 5, 3), torch.tensor([[-100, 1, 2, 0, -100], [-100, -100, -100, -100, -100]])
        full = make_loss(task)(logits, labels)
        manual = torch.nn.functional.cross_entropy(logits[0, 1:4], labels[0, 1:4])
        assert torch.allclose(full, manual)
    elif task == "multi_label":
        assert make_loss(task)(torch.zeros(2, 3), torch.ones(2, 3)).item() == pytest.approx(math.log(2))
    elif task == "regression":
        assert make_loss(task)(torch.tensor([[1.0], [3.0]]), torch.tensor([1.0, 1.0])).item() == pytest.approx(2.0)
    else:
        weights = torch.tensor([1.0, 3.0])
        logits, labels = torch.zeros(2, 2), torch.tensor([0, 1])
        assert make_loss(task, weights)(logits, labels).item() == pytest.approx(math.log(2))
        smoothed = make_loss(task, label_smoothing=0.2)(torch.tensor([[5.0, -5.0]]), torch.tensor([0]))
        assert smoothed > make_loss(task)(torch.tensor([[5.0, -5.0]]), torch.tensor([0]))


def test_peak_memory_restarts_per_run():
    # A comparison runs its strategies in one process: each run's peak must be its own, not the largest
    # so far. In a fresh process: an earlier test's malloc tuning keeps freed memory resident here.
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the CPU peak is reset through /proc")
    code = (
        "import torch\n"
        "from core.device import peak_memory_mb, reset_peak_memory\n"
        "cpu = torch.device('cpu')\n"
        "big = torch.ones(64 * 2**20)  # 256 MB, touched\n"
        "with_big = peak_memory_mb(cpu)\n"
        "del big\n"
        "reset_peak_memory(cpu)\n"
        "print(with_big, peak_memory_mb(cpu))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    with_big, after_reset = map(float, out)
    assert after_reset < with_big - 200


# The keys of loop_state.json as the loop wrote them when its state was a dict: checkpoints written
# then must still resume.
LEGACY_KEYS = ["global_step", "epoch", "micro_in_epoch", "best_metric", "best_step", "bad_evals", "samples_seen",
               "tokens_seen", "elapsed", "side_seconds", "evals"]


def test_loop_state_reads_and_writes_the_earlier_format():
    import json

    from core.loop import LoopState

    text = ('{"global_step": 25, "epoch": 1, "micro_in_epoch": 5, "best_metric": 0.75, "best_step": 20, "bad_evals": 0, '
            '"samples_seen": 400, "tokens_seen": 5120, "elapsed": 3.5, "side_seconds": 0.25, '
            '"evals": [{"step": 20, "epoch": 1.0, "split": "validation", "metrics": {"accuracy": 0.75}}]}')
    state = LoopState.from_json(text)
    assert (state.global_step, state.epoch, state.micro_in_epoch, state.best_metric, state.evals[0]["step"]) == (25, 1, 5, 0.75, 20)
    # The earlier keys in their order, then the later ones at their defaults (an earlier checkpoint's loop wasn't finished).
    assert list(json.loads(state.to_json())) == [*LEGACY_KEYS, "finished", "early_stopped"]
    assert json.loads(state.to_json()) == {**json.loads(text), "finished": False, "early_stopped": False}
    state.advance_epoch(1)
    state.advance_epoch(1)  # idempotent: the end-of-epoch evaluation and the end of the epoch both advance it
    assert (state.epoch, state.micro_in_epoch) == (2, 0)


def test_resume_from_a_checkpoint_in_the_earlier_format(tmp_path):
    import json

    full, _, full_model, _ = run(tmp_path / "a")
    cancelled, _, _, _ = run(tmp_path / "b", steps_to_cancel=25)
    path = tmp_path / "b" / "ckpt" / "loop_state.json"
    saved = json.loads(path.read_text())
    assert list(saved)[:len(LEGACY_KEYS)] == LEGACY_KEYS and not saved["finished"]
    # Written back the way the dict-based loop wrote it: json.dumps of a plain dict in its key order.
    path.write_text(json.dumps({key: saved[key] for key in LEGACY_KEYS}))
    resumed, events, resumed_model, _ = run(tmp_path / "b", resume=True, model=tiny_model(seed=123))
    assert resumed.global_step == full.global_step and events[0]["resumed_from_step"] == 25
    assert [e["step"] for e in resumed.evals] == [e["step"] for e in full.evals]
    for (name, a), (_, b) in zip(full_model.state_dict().items(), resumed_model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


@pytest.mark.parametrize("name", ["linear", "cosine", "constant"])
@pytest.mark.parametrize(("warmup", "total"), [(0, 10), (3, 10), (6, 100), (10, 10)])
def test_schedules_are_transformers_own_step_for_step(name, warmup, total):
    # core.schedule writes transformers' formulas out (importing transformers.optimization pulls in
    # all of peft); they must give the same rate at every step, and save their state the same way.
    from transformers import get_scheduler

    from core.schedule import lr_schedule

    def rates(make):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        scheduler = make(optimizer)
        out = []
        for _ in range(total + 2):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out, scheduler.state_dict()

    ours, our_state = rates(lambda o: lr_schedule(name, o, warmup, total))
    theirs, their_state = rates(lambda o: get_scheduler("constant_with_warmup" if name == "constant" else name, o,
                                                        num_warmup_steps=warmup, num_training_steps=total))
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert our_state["last_epoch"] == their_state["last_epoch"] and our_state["_last_lr"] == pytest.approx(their_state["_last_lr"])
