"""What an installed asrbench carries: the embedded corpus is package data, found from the
package itself, never from the repository checkout."""

from __future__ import annotations

import csv
from pathlib import Path

import asrbench
from asrbench.config.settings import EMBEDDED_CORPUS, EMBEDDED_RUNS


def test_embedded_corpus_lies_inside_the_package():
    package = Path(asrbench.__file__).resolve().parent
    assert EMBEDDED_CORPUS.resolve().is_relative_to(package)
    assert EMBEDDED_CORPUS.resolve() == package / "corpus" / "commonvoice-mini"


def test_every_embedded_run_has_its_table_and_clips():
    for locale, _language in EMBEDDED_RUNS:
        table = EMBEDDED_CORPUS / locale / "test.tsv"
        with open(table, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
        assert rows, table
        for row in rows:
            assert (EMBEDDED_CORPUS / locale / "clips" / row["path"]).is_file(), row["path"]
