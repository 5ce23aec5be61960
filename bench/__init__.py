"""Tuneboard's fine-tuning benchmark against Hugging Face ``Trainer`` (issue #5); run with ``make bench``.

Not part of ``make test``. See ``python -m bench --help`` and bench/results/latest.md.
"""
