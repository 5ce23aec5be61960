"""The speed mechanisms of issue #5 change how fast, never what is computed: frozen-layer cache, token cache, bf16, fused AdamW."""

import json

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


def test_adamw_is_fused_unless_asked_not_to():
    model = tiny_model()
    groups = [{"params": list(model.parameters())}]
    assert make_optimizer(groups, 1e-3, torch.device("cpu")).defaults["fused"]
    assert not make_optimizer(groups, 1e-3, torch.device("cpu"), fused=False).defaults["fused"]


def _tiny(kind: str, dropout: float = 0.0, **extra):
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertForTokenClassification,
        ElectraConfig,
        ElectraForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    common = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=80, num_labels=3, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                  **extra)
    torch.manual_seed(0)
    return {"bert": lambda: BertForSequenceClassification(BertConfig(**common)),
            "bert-token": lambda: BertForTokenClassification(BertConfig(**common)),
            "roberta": lambda: RobertaForSequenceClassification(RobertaConfig(**common, pad_token_id=1)),
            "electra": lambda: ElectraForSequenceClassification(ElectraConfig(**common, embedding_size=16))}[kind]()


def _padded_batch():
    torch.manual_seed(1)
    ids = torch.randint(3, 60, (4, 11))
    mask = torch.ones_like(ids)
    for row, length in enumerate((11, 7, 3, 9)):
        mask[row, length:] = 0
        ids[row, length:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("kind", ["bert", "roberta", "electra"])
@pytest.mark.parametrize("attention", ["sdpa", "tuneboard_eager"])
def test_first_token_top_layer_gives_the_same_logits_and_gradients(kind, attention):
    from core.cls_top_layer import restore_top_layer, use_cls_only_top_layer
    from core.cpu_dropout import use_eager_attention

    batch, labels = _padded_batch(), torch.tensor([0, 2, 1, 2])
    results = []
    for first_token_only in (False, True):
        model = _tiny(kind)
        if attention == "tuneboard_eager":
            use_eager_attention(model)
        seen = []
        top = model.base_model.encoder.layer[-1]
        top.intermediate.dense.register_forward_hook(lambda m, args, out, seen=seen: seen.append(tuple(args[0].shape)))
        if first_token_only:
            assert use_cls_only_top_layer(model)
        model.train()  # dropout is 0: train mode, so autograd and the training branches run
        logits = model(**batch).logits
        torch.nn.functional.cross_entropy(logits, labels).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((logits.detach(), grads, list(seen)))
        if first_token_only:
            restore_top_layer(model)
            seen.clear()
            with torch.no_grad():
                assert torch.allclose(model(**batch).logits, logits, atol=1e-5)
            assert seen == [(4, 11, 32)]  # every token again
    (plain_logits, plain_grads, plain_seen), (fast_logits, fast_grads, fast_seen) = results
    assert plain_seen == [(4, 11, 32)] and fast_seen == [(4, 1, 32)]  # the feed-forward block ran for the first token only
    assert torch.allclose(plain_logits, fast_logits, atol=1e-5)
    assert plain_grads.keys() == fast_grads.keys()
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, fast_grads[name], atol=1e-5), name


def test_first_token_top_layer_is_not_used_where_every_token_is_read():
    from core.cls_top_layer import supports as first_token_supported
    from core.cls_top_layer import use_cls_only_top_layer

    model = _tiny("bert-token")
    assert not first_token_supported(model) and not use_cls_only_top_layer(model)
    assert "forward" not in model.bert.encoder.layer[-1].__dict__


@pytest.mark.parametrize("kind", ["bert", "roberta", "electra", "bert-token"])
@pytest.mark.parametrize("attention", ["sdpa", "tuneboard_eager"])
def test_unpadded_encoder_gives_the_padded_models_outputs_and_gradients(kind, attention):
    from core.cls_top_layer import use_cls_only_top_layer
    from core.cpu_dropout import use_eager_attention
    from core.unpadded import restore_encoder, use_unpadded_encoder

    batch = _padded_batch()
    real = batch["attention_mask"].bool()
    labels = torch.tensor([[0, 2, 1, 2, 0, 1, 1, 2, 0, 1, 2]] * 4) if kind == "bert-token" else torch.tensor([0, 2, 1, 2])
    first_token_options = (False,) if kind == "bert-token" else (False, True)
    for first_token_only in first_token_options:
        results = []
        for unpadded in (False, True):
            model = _tiny(kind)
            if attention == "tuneboard_eager":
                use_eager_attention(model)
            if first_token_only:
                assert use_cls_only_top_layer(model)
            seen = []
            model.base_model.encoder.layer[0].intermediate.dense.register_forward_hook(
                lambda m, args, out, seen=seen: seen.append(tuple(args[0].shape)))
            if unpadded:
                assert use_unpadded_encoder(model)
            model.train()  # dropout is 0: train mode, so autograd and the training branches run
            logits = model(**batch).logits
            if kind == "bert-token":
                logits = logits[real]  # padding positions are zeros unpadded: nobody reads them
                loss = torch.nn.functional.cross_entropy(logits, labels[real])
            else:
                loss = torch.nn.functional.cross_entropy(logits, labels)
            loss.backward()
            results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, seen))
            if unpadded:
                restore_encoder(model)
                assert "forward" not in model.base_model.encoder.__dict__
        (plain_logits, plain_grads, plain_seen), (fast_logits, fast_grads, fast_seen) = results
        assert plain_seen == [(4, 11, 32)] and fast_seen == [(30, 32)]  # 11 + 7 + 3 + 9 real tokens, no padding
        assert torch.allclose(plain_logits, fast_logits, atol=1e-5)
        assert plain_grads.keys() == fast_grads.keys()
        for name, grad in plain_grads.items():
            assert torch.allclose(grad, fast_grads[name], atol=1e-5), (first_token_only, name)


def test_unpadded_encoder_runs_the_models_own_forward_without_padding_with_left_padding_or_for_hidden_states():
    from core.unpadded import use_unpadded_encoder

    model = _tiny("bert").eval()
    seen = []
    model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    full = {"input_ids": torch.randint(3, 60, (2, 5)), "attention_mask": torch.ones(2, 5, dtype=torch.long)}
    left = {"input_ids": full["input_ids"], "attention_mask": torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])}
    expected = model(**full).logits, model(**left).logits
    assert use_unpadded_encoder(model)
    assert torch.allclose(model(**full).logits, expected[0], atol=1e-6)
    assert torch.allclose(model(**left).logits, expected[1], atol=1e-6)  # left padding: not packed either
    assert seen == [(2, 5, 32)] * 4
    right = {"input_ids": full["input_ids"], "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}
    assert len(model(**right, output_hidden_states=True).hidden_states) == 3  # captured from the layers' own calls
    assert seen[4:] == [(2, 5, 32)]


def test_the_loop_trains_with_the_first_token_top_layer_and_gives_the_model_back_whole(tmp_path):
    seen = []
    config = RunConfig(train=TrainConfig(epochs=1, batch_size=16, learning_rate=3e-3, log_every=1))
    plan = build_strategy(tiny_model(), config)
    plan.model.bert.encoder.layer[-1].intermediate.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    train(config, plan, synthetic(48, 0), synthetic(16, 1), collator=PaddingCollator(0, "single_label"),
          loss_fn=make_loss("single_label"), score=accuracy, metric_name="accuracy", events=lambda e: None,
          should_stop=lambda: False, checkpoint_dir=tmp_path / "ckpt", on_best=lambda m: None)
    assert seen and set(seen) == {1}  # training and validation batches: the top layer ran for the first token only
    assert "forward" not in plan.model.bert.encoder.layer[-1].__dict__
    assert "forward" not in plan.model.bert.encoder.__dict__  # the unpadded encoder (core.unpadded) is given back too
    seen.clear()
    plan.model(input_ids=torch.tensor([[1, 5, 6, 2]]))
    assert seen == [4]


def test_the_loop_trains_the_same_with_and_without_padding_in_the_encoder(tmp_path):
    runs, shapes = [], []
    for skip_padding in (True, False):
        config = RunConfig(train=TrainConfig(epochs=1, batch_size=16, learning_rate=3e-3, log_every=1, precision="fp32",
                                             skip_padding=skip_padding))  # fp32: where training leaves padding out
        plan = build_strategy(_tiny("bert"), config)  # dropout 0: the two runs draw no random numbers
        plan.model.bert.encoder.layer[0].intermediate.register_forward_hook(lambda m, args, out: shapes.append(args[0].dim()))
        events = []
        train(config, plan, synthetic(64, 0), synthetic(16, 1), collator=PaddingCollator(0, "single_label"),
              loss_fn=make_loss("single_label"), score=accuracy, metric_name="accuracy", events=events.append,
              should_stop=lambda: False, checkpoint_dir=tmp_path / str(skip_padding), on_best=lambda m: None)
        runs.append(([e["loss"] for e in events if e["type"] == "step"], plan.model.state_dict()))
        shapes.append("end")
    assert set(shapes[:shapes.index("end")]) == {2} and set(shapes[shapes.index("end") + 1:-1]) == {3}  # packed tokens vs padded rows
    (fast_losses, fast_state), (plain_losses, plain_state) = runs
    assert len(fast_losses) == 4 and np.allclose(fast_losses, plain_losses, atol=1e-5)
    for name, value in plain_state.items():
        assert torch.allclose(value, fast_state[name], atol=1e-5), name


@pytest.mark.parametrize("keep", [False, True])
def test_the_last_checkpoint_holds_the_loop_state_alone_unless_kept_and_resumes_to_the_report(tmp_path, keep):
    config = RunConfig(train=TrainConfig(epochs=1, batch_size=16, eval_every=2, keep_checkpoint=keep))
    ckpt = tmp_path / "ckpt"

    def run(resume: bool, events: list):
        return train(config, build_strategy(tiny_model(), config), synthetic(48, 0), synthetic(16, 1),
                     collator=PaddingCollator(0, "single_label"), loss_fn=make_loss("single_label"), score=accuracy,
                     metric_name="accuracy", events=events.append, should_stop=lambda: False, checkpoint_dir=ckpt,
                     on_best=lambda m: None, resume=resume)

    first = run(False, [])
    assert first.state == "completed" and [e["step"] for e in first.evals] == [2, 3]
    saved = json.loads((ckpt / "loop_state.json").read_text())
    assert saved["global_step"] == 3 and saved["finished"]
    # Not kept: no weights and no AdamW moments (~4x the model in bytes), only what a resume needs to report.
    assert any(p.suffix == ".safetensors" for p in ckpt.rglob("*")) == keep
    if not keep:
        assert [p.name for p in ckpt.iterdir()] == ["loop_state.json"]
    # Killed before the run completed: the resume trains nothing more and hands the same history to the report.
    events = []
    again = run(True, events)
    assert again.state == "completed" and again.global_step == 3 and again.evals == first.evals
    assert [e["type"] for e in events] == ["start"] and again.best_step == first.best_step


def test_evaluation_leaves_padding_out_and_gives_the_encoder_back_as_it_found_it():
    from accelerate import Accelerator

    from core.loop import predict
    from core.unpadded import use_unpadded_encoder

    model = _tiny("bert")
    seen = []
    model.bert.encoder.layer[0].intermediate.dense.register_forward_hook(lambda m, args, out: seen.append(args[0].dim()))
    data, collator, accelerator = synthetic(12, 2), PaddingCollator(0, "single_label"), Accelerator(cpu=True)
    padded = predict(model, data, collator, 4, None, accelerator)
    packed = predict(model, data, collator, 4, None, accelerator, skip_padding=True)
    assert set(seen[:3]) == {3} and set(seen[3:]) == {2}  # 3 batches padded, then 3 packed
    assert np.allclose(padded.scores, packed.scores, atol=1e-5)
    assert "forward" not in model.bert.encoder.__dict__  # given back padded, as it was
    assert use_unpadded_encoder(model)  # as fp32 training leaves it
    predict(model, data, collator, 4, None, accelerator, skip_padding=True)
    assert "forward" in model.bert.encoder.__dict__  # and still so after the evaluation
