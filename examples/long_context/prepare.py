"""Register the long-context example's documents (kind `documents`) as `long-documents`.

Books: ../shared/data/gutenberg, read as a text folder (the same path as
`assay data import ../shared/data/gutenberg --name gutenberg-books`). Long documents: the
`input` of ../shared/data/leval/*.jsonl. LEval's `instructions` and `outputs` are its
evaluation questions and answers: they are never read into the rows. Books and LEval documents
are interleaved, so `source.limit` keeps both.

    .venv/bin/python examples/long_context/prepare.py --leval 4
"""

import argparse
import hashlib
import json
from pathlib import Path

import pyarrow as pa

from assay.settings import default_registry_root
from datasets_registry import Registry
from datasets_registry.lineage import Lineage
from datasets_registry.transfer import source_files, text_documents

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
LEVAL_LICENSE = "GPL-3.0 (LEval collection); each source text keeps its own license"


def identity(path: Path) -> str:
    return f"file:{path}#sha256={hashlib.sha256(path.read_bytes()).hexdigest()}"


def leval_documents(limit: int) -> tuple[list[dict], list[str]]:
    """The first `limit` documents of the LEval files: their `input` only."""
    rows, sources = [], []
    for path in sorted((SHARED / "leval").glob("*.jsonl")):
        sources.append(identity(path))
        for number, line in enumerate(path.read_text().splitlines()):
            text = json.loads(line)["input"]
            title = next((part.strip() for part in text.splitlines() if part.strip()), path.stem)[:200]
            rows.append({"id": f"leval-{path.stem}-{number:02d}", "title": " ".join(title.split()),
                         "text": text, "source": f"leval:{path.stem}", "license": LEVAL_LICENSE})  # fmt: skip
    return rows[:limit], sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leval", type=int, default=4, help="LEval documents to take")
    args = parser.parse_args()
    books = text_documents(SHARED / "gutenberg").to_pylist()
    leval, leval_sources = leval_documents(args.leval)
    rows = [row for pair in zip(books, leval, strict=False) for row in pair]
    rows += books[len(leval) :] + leval[len(books) :]
    lineage = Lineage(sources=[*(identity(p) for p in source_files(SHARED / "gutenberg")), *leval_sources])
    version = Registry(default_registry_root()).write(
        "long-documents", pa.Table.from_pylist(rows), kind="documents", lineage=lineage
    )
    print(f"{version.ref}: {len(books)} books, {len(leval)} LEval documents")


if __name__ == "__main__":
    main()
