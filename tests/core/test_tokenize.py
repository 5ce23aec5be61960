import numpy as np
import pandas as pd
import torch

from core.config import TrainConfig
from core.schedule import plan_steps
from core.tokenize import IGNORE_INDEX, LengthGroupedBatches, PaddingCollator, encode_split, eval_batches, token_stats


def test_ner_labels_align_to_first_subtoken_only(tokenizer):
    frame = pd.DataFrame({"tokens": [["Hello", "wonderfulness", "Paris"]], "tags": [["O", "B-LOC", "B-LOC"]]})
    enc = encode_split(frame, "token", tokenizer, 32, [[0, 1, 1]])
    row = enc[0]
    ids = row["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    labelled = [(p, lab) for p, lab in zip(pieces, row["labels"], strict=True) if lab != IGNORE_INDEX]
    assert [lab for _, lab in labelled] == [0, 1, 1]
    # special tokens and continuation pieces ('##...') carry -100
    assert row["labels"][0] == IGNORE_INDEX and row["labels"][-1] == IGNORE_INDEX
    assert all(lab == IGNORE_INDEX for p, lab in zip(pieces, row["labels"], strict=True) if p.startswith("##"))


def test_pair_encoding_uses_segment_ids(tokenizer):
    frame = pd.DataFrame({"text": ["a cat"], "text_pair": ["a dog sat"]})
    row = encode_split(frame, "pair", tokenizer, 32, [1])[0]
    assert set(row["token_type_ids"]) == {0, 1}


def test_truncation_respects_max_length(tokenizer):
    frame = pd.DataFrame({"text": ["word " * 500]})
    assert len(encode_split(frame, "single_label", tokenizer, 16, [0])[0]["input_ids"]) == 16


def test_collator_pads_to_multiple_of_8_and_masks_padding():
    collator = PaddingCollator(pad_token_id=0, task="token")
    rows = [{"input_ids": [101, 5, 102], "attention_mask": [1, 1, 1], "labels": [-100, 2, -100]},
            {"input_ids": [101, 5, 6, 7, 8, 9, 10, 11, 102], "attention_mask": [1] * 9, "labels": [-100] + [1] * 7 + [-100]}]
    batch = collator(rows)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"][0].sum() == 3 and batch["labels"][0, 3:].eq(IGNORE_INDEX).all()
    multi = PaddingCollator(0, "multi_label")([{"input_ids": [1], "attention_mask": [1], "labels": [0.0, 1.0]}])
    assert multi["labels"].dtype == torch.float32


def test_length_grouped_batches_cover_every_row_once_and_reduce_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000)
    sampler = LengthGroupedBatches(lengths, batch_size=16, seed=1)
    sampler.set_epoch(0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    grouped_pad = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)
    plain = LengthGroupedBatches(lengths, 16, 1, grouped=False)
    plain_pad = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in plain.batches())
    assert grouped_pad < plain_pad / 5


def test_a_small_set_is_grouped_in_several_windows_not_one_global_sort():
    # 512 rows of distinct lengths: one global sort would make every batch 16 consecutive lengths
    # (span 15), correlated batches that stalled LoRA; four windows of 128 rows keep batches mixed
    # yet far narrower than random ones.
    lengths = np.arange(512)
    sampler = LengthGroupedBatches(lengths, batch_size=16, seed=3)
    spans = [int(lengths[b].max() - lengths[b].min()) for b in sampler.batches()]
    random_spans = [int(lengths[b].max() - lengths[b].min()) for b in LengthGroupedBatches(lengths, 16, 3, grouped=False).batches()]
    assert np.median(spans) > 15 * 2
    assert np.median(spans) < np.median(random_spans) / 3


def test_batches_are_reproducible_per_epoch_and_skip_resumes_exactly():
    lengths = np.arange(100)
    a = LengthGroupedBatches(lengths, 8, seed=3)
    a.set_epoch(2)
    full = list(a)
    a.set_epoch(2, skip=5)
    assert list(a) == full[5:]
    a.set_epoch(3)
    assert list(a) != full


def test_sharding_gives_each_process_its_part_of_the_one_process_global_batch():
    lengths = np.arange(69)  # 4 global batches of 16, and 5 rows left: a fifth, smaller one
    whole = list(LengthGroupedBatches(lengths, 16, seed=0))
    shards = [list(LengthGroupedBatches(lengths, 8, seed=0, shard=(i, 2))) for i in range(2)]
    assert len(shards[0]) == len(shards[1]) == LengthGroupedBatches(lengths, 8, seed=0, shard=(1, 2)).num_batches() == 5
    for step, batch in enumerate(whole):  # step by step, the two processes see exactly the rows one process sees
        assert sorted(shards[0][step] + shards[1][step]) == sorted(batch) and not set(shards[0][step]) & set(shards[1][step])
    two, one = TrainConfig(batch_size=8, epochs=1), TrainConfig(batch_size=16, epochs=1)
    assert plan_steps(69, two, num_processes=2) == plan_steps(69, one) == (5, 5)
    one_row_left = [list(LengthGroupedBatches(np.arange(33), 8, seed=0, shard=(i, 2))) for i in range(2)]
    assert len(one_row_left[0]) == len(one_row_left[1]) == 2, "a last batch with a row for one process only is dropped"


def test_eval_batches_and_token_stats():
    lengths = np.array([3, 10, 7])
    assert eval_batches(lengths, 2) == [[1, 2], [0]]
    stats = token_stats(np.array([10, 20, 128, 128]), 128)
    assert stats["truncated_share"] == 0.5 and stats["max"] == 128
