"""The speed mechanisms of issue #5 change how fast, never what is computed: frozen-layer cache, token cache, bf16, fused AdamW."""

import numpy as np
import pandas as pd
import pytest
import torch

from core.config import ModelConfig, RunConfig, StrategyConfig, TrainConfig
from core.frozen_cache import FrozenPrefixCache, frozen_prefix_modules, supports
from core.loop import make_loss, make_optimizer, train
from core.strategies import build_strategy
from core.tokenize import PaddingCollator, encode_split, token_cache_key
from tests.support.synthetic import accuracy, synthetic, tiny_model


def run_freeze(tmp_path, **train_opts):
    config = RunConfig(strategy=StrategyConfig(kind="freeze", freeze_layers=1),
                       train=TrainConfig(**{"epochs": 3, "batch_size": 16, "learning_rate": 3e-3, "log_every": 1, **train_opts}))
    plan = build_strategy(tiny_model(), config)
    events = []
    result = train(config, plan, synthetic(160, 0), synthetic(48, 1), collator=PaddingCollator(0, "single_label"),
                   loss_fn=make_loss("single_label"), score=accuracy, metric_name="accuracy", events=events.append,
                   should_stop=lambda: False, checkpoint_dir=tmp_path / "ckpt", on_best=lambda m: None)
    return result, events, plan


def test_frozen_layer_cache_gives_the_results_of_the_uncached_path(tmp_path):
    cached, cached_events, cached_plan = run_freeze(tmp_path / "a", cache_frozen_layers=True)
    plain, plain_events, plain_plan = run_freeze(tmp_path / "b", cache_frozen_layers=False)
    assert cached_plan.frozen_prefix_layers == 1
    losses = [[e["loss"] for e in ev if e["type"] == "step"] for ev in (cached_events, plain_events)]
    assert len(losses[0]) == cached.total_steps == 30
    assert np.allclose(losses[0], losses[1], atol=1e-5)
    assert [e["metrics"]["accuracy"] for e in cached.evals] == [e["metrics"]["accuracy"] for e in plain.evals]
    for (name, a), (_, b) in zip(cached_plan.model.state_dict().items(), plain_plan.model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name


def test_frozen_prefix_runs_without_dropout_and_each_row_is_computed_once():
    config = RunConfig(strategy=StrategyConfig(kind="freeze", freeze_layers=1))
    model = tiny_model()
    model.config.hidden_dropout_prob = 0.5
    plan = build_strategy(model, config)
    assert supports(model, 1) and not supports(model, 0)
    model.train()
    for module in frozen_prefix_modules(model, 1):
        module.eval()
    model.bert.encoder.layer[1].eval()  # the trainable top too, so the comparison below is deterministic
    model.dropout.eval()
    data = synthetic(10, 3)
    collator = PaddingCollator(0, "single_label", pad_to_multiple_of=8)
    cache = FrozenPrefixCache(plan.model, 1)
    rows = list(range(10))
    batch = {k: v for k, v in collator([data[i] for i in rows]).items() if k != "labels"}
    expected = model(**batch).logits
    assert torch.allclose(cache.forward(rows, batch), expected, atol=1e-5)
    # The same rows again, in another batch with other padding: served from the cache.
    pair = [3, 7]
    small = {k: v for k, v in PaddingCollator(0, "single_label", 1)([data[i] for i in pair]).items() if k != "labels"}
    assert torch.allclose(cache.forward(pair, small), expected[pair], atol=1e-5)
    assert cache.computed == 10
    assert model.bert.encoder.layer[0] in frozen_prefix_modules(model, 1)  # the model is whole again afterwards
    assert len(model.bert.encoder.layer) == 2


@pytest.fixture(scope="module")
def tokenizer():
    from core.models import load_tokenizer

    return load_tokenizer(ModelConfig())


def test_token_cache_hit_and_miss(tmp_path, tokenizer, monkeypatch):
    frame = pd.DataFrame({"text": ["a fine film", "dull and long", "the best of the year, by far"]})
    first = encode_split(frame, "single_label", tokenizer, 32, [1, 0, 1], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    import core.tokenize

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized although cached")

    monkeypatch.setattr(core.tokenize, "_encode", no_tokenizing)
    again = encode_split(frame, "single_label", tokenizer, 32, [0, 0, 1], cache_dir=tmp_path)  # targets aren't part of the key
    assert [r["input_ids"] for r in again.features] == [r["input_ids"] for r in first.features]
    assert [r["labels"] for r in again.features] == [0, 0, 1]
    assert again.features[0].keys() == first.features[0].keys()
    monkeypatch.undo()

    key = token_cache_key(frame, "single_label", tokenizer, 32, [1, 0, 1])
    assert token_cache_key(frame, "single_label", tokenizer, 16, [1, 0, 1]) != key  # max_length
    assert token_cache_key(frame.assign(text=frame["text"] + "!"), "single_label", tokenizer, 32, [1, 0, 1]) != key
    encode_split(frame, "single_label", tokenizer, 16, [1, 0, 1], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_token_cache_keeps_ner_label_alignment(tmp_path, tokenizer):
    frame = pd.DataFrame({"tokens": [["Jean-Luc", "visits", "Paris"], ["hello"]]})
    tags = [[1, 0, 2], [0]]
    first = encode_split(frame, "token", tokenizer, 32, tags, cache_dir=tmp_path)
    again = encode_split(frame, "token", tokenizer, 32, tags, cache_dir=tmp_path)
    assert again.features == first.features
    assert token_cache_key(frame, "token", tokenizer, 32, [[1, 0, 0], [0]]) != token_cache_key(frame, "token", tokenizer, 32, tags)


def test_bf16_training_runs_and_learns(tmp_path):
    result, events, _ = run_freeze(tmp_path, precision="bf16", epochs=2)
    losses = [e["loss"] for e in events if e["type"] == "step"]
    assert result.state == "completed" and all(np.isfinite(losses))


def test_adamw_is_fused_on_the_bf16_path_and_the_reference_one_in_fp32():
    model = tiny_model()
    groups = [{"params": list(model.parameters())}]
    assert make_optimizer(groups, 1e-3, torch.device("cpu")).defaults["fused"]
    assert not make_optimizer(groups, 1e-3, torch.device("cpu"), fused=False).defaults["fused"]
