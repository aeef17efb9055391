"""N-gram overlap between training text and the evaluation sets: the decontamination index.

**Normalisation** (the same for evaluation items and training text): Unicode NFKC, lowercase,
every punctuation, symbol, control and format character (Unicode categories P*, S*, Cc, Cf)
replaced by a space, then split on whitespace. A whitespace token holding a character of a
script written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) goes,
whole, to the *character* stream, whose units are single characters (token boundaries are
dropped, as those scripts do not mark words); every other token is one unit of the *word*
stream. So "Janet's ducks lay 16 eggs" gives the words `janet s ducks lay 16 eggs`, and
"ジャネットのアヒルは1日に16個の卵を生みます。" gives 22 characters, the last six `卵を生みます`.

**N-grams**: `n` consecutive words (default 8) and `char_n` consecutive characters (default
16: about as many words of Chinese or Japanese as 8 English words; Thai, alphabetic, gets
fewer). An evaluation item shorter than that but at least half as long, in one stream only,
is indexed as one n-gram of its full length, so a short XSTest prompt copied verbatim is still
caught; a shorter one cannot be matched (`IndexStats.unmatchable`).

**Overlap** of a training text with an evaluation item: `shared` is the number of the item's
distinct n-grams found in the text; `overlap = shared / item n-grams` (how much of the item the
text contains) and `text_overlap = shared / the text's n-gram windows` (how much of the text is
that item; capped at 1). A row counts as contaminated when some item's `overlap` reaches the
threshold (`min_overlap`, default 0.5; 0 means any shared n-gram).

The practice: GPT-3 (Brown et al. 2020, arXiv 2005.14165) flagged test items sharing a 13-gram
with the training data, after lowercasing and dropping punctuation (EleutherAI's
lm-evaluation-harness `scripts/clean_training_data` README lists OpenAI's `ngram_n = 13`).
Tülu 3 (Lambert et al. 2024, arXiv 2411.15124) decontaminated its post-training sets with
open-instruct's `decontamination/search.py`, which scores an evaluation instance by the share of
its tokens covered by n-gram matches (the n a flag) against one training document, optionally
thresholded; runs of it on the Tülu 3 SFT mixture use 8-grams with a 0.5 threshold (e.g.
swiss-ai/posttraining-data, `--ngram_length 8 --diff_threshold 0.5`). Our default is the same:
8-grams, flagged at half of the evaluation item.

**Speed**: each unit becomes an integer id from the evaluation sets' own vocabulary (a unit no
evaluation item has gets 0, and no n-gram holding a 0 can match), n-grams are 64-bit polynomial
hashes computed for a whole batch at once with numpy prefix sums, and looked up by binary search
in sorted arrays. See docs/decontamination.md for the measured figures.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import regex

from assay.errors import AssayError

if TYPE_CHECKING:
    import pyarrow as pa

    from datasets_registry import DatasetVersion

DEFAULT_N = 8
DEFAULT_MIN_OVERLAP = 0.5
WORD, CJK, SEA = 0, 1, 2  # the streams ("channels") of a text: words, Han/kana, Thai & co.
STREAMS = (WORD, CJK, SEA)
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible modulo 2**64
_BASE_INVERSE = np.uint64(pow(int(_BASE), -1, 2**64))

# Scripts written without spaces between words: their tokens are read as characters. Han and
# kana carry about a word in two characters; Thai, Lao, Khmer and Myanmar, alphabetic, need more.
_CJK = "\u3005\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
_SEA = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"
_UNSPACED = re.compile(f"[{_CJK}{_SEA}]")
_CJK_CHAR = re.compile(f"[{_CJK}]")


class ContaminationError(AssayError):
    """A dataset overlaps an evaluation set beyond what the caller accepts."""


# Punctuation, symbols, control and format characters (`regex` knows Unicode categories; the
# standard `re` does not, and str.translate with a table of them is four times slower).
_SEPARATORS = regex.compile(r"[\p{P}\p{S}\p{Cc}\p{Cf}]+")
# ASCII text (most rows) takes a byte table instead: NFKC leaves it as it is, and bytes.translate
# is faster still.
_ASCII_SEPARATORS = bytes(ord(" ") if _SEPARATORS.match(chr(code)) else code for code in range(128)) + bytes(
    range(128, 256)
)


def normalize(text: str) -> str:
    """NFKC, lowercase, punctuation and symbols to spaces (see the module docstring)."""
    if text.isascii():
        return text.lower().encode("ascii").translate(_ASCII_SEPARATORS).decode("ascii")
    return _SEPARATORS.sub(" ", unicodedata.normalize("NFKC", text).lower())


def units(text: str) -> tuple[list[str], list[str], list[str]]:
    """The streams of a text after `normalize`: words, Han/kana characters, and characters of
    Thai, Lao, Khmer and Myanmar."""
    normalized = normalize(text)
    tokens = normalized.split()
    if normalized.isascii() or not _UNSPACED.search(normalized):
        return tokens, [], []
    streams: tuple[list[str], list[str], list[str]] = ([], [], [])
    for token in tokens:
        if not _UNSPACED.search(token):
            streams[WORD].append(token)
        else:
            streams[CJK if _CJK_CHAR.search(token) else SEA].extend(token)
    return streams


@dataclass(frozen=True)
class Match:
    """One evaluation item a text shares n-grams with."""

    set: str
    item: str
    shared: int
    overlap: float  # shared / the item's n-grams
    text_overlap: float  # shared / the text's n-gram windows, at most 1


@dataclass
class IndexStats:
    """What the index holds and how long it took to build."""

    n: int
    char_n: int
    items: dict[str, int] = field(default_factory=dict)
    ngrams: dict[str, int] = field(default_factory=dict)
    unmatchable: dict[str, int] = field(default_factory=dict)  # items too short to have an n-gram
    build_s: float = 0.0


class _Batch:
    """Unit ids of many texts in one stream, concatenated, with each text's row and bounds."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.rows: list[int] = []

    def add(self, row: int, ids: list[int]) -> None:
        if ids:
            self.starts.append(len(self.ids))
            self.ids.extend(ids)
            self.ends.append(len(self.ids))
            self.rows.append(row)

    def _prepare(self) -> None:
        """Prefix sums of the hashes and of the unknown units, once for every window length."""
        ids = np.asarray(self.ids, dtype=np.uint64)
        total = len(ids)
        self._lengths = np.asarray(self.ends) - np.asarray(self.starts)
        self._inverse = _inverse_powers(total + 1)
        self._prefix = np.zeros(total + 1, dtype=np.uint64)
        np.cumsum(ids * _powers(total + 1)[:total], out=self._prefix[1:])
        self._zeros = np.zeros(total + 1, dtype=np.int64)
        np.cumsum(ids == 0, out=self._zeros[1:])

    def windows(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hash, row, whole-window-known) of every k-unit window inside one text."""
        if not self.ids:
            empty = np.zeros(0, dtype=np.uint64)
            return empty, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        if not hasattr(self, "_prefix"):
            self._prepare()
        # Window start positions of each text: start .. end - k.
        counts = np.maximum(self._lengths - k + 1, 0)
        positions = np.repeat(np.asarray(self.starts) - np.cumsum(counts) + counts, counts)
        positions += np.arange(len(positions))
        rows = np.repeat(np.asarray(self.rows, dtype=np.int64), counts)
        hashes = (self._prefix[positions + k] - self._prefix[positions]) * self._inverse[positions]
        known = self._zeros[positions + k] == self._zeros[positions]
        return hashes, rows, known

    def text_windows(self, k: int, rows: int) -> np.ndarray:
        """The number of k-unit windows of each row (texts of a row summed)."""
        out = np.zeros(rows, dtype=np.int64)
        if self.ids:
            lengths = np.asarray(self.ends) - np.asarray(self.starts)
            np.add.at(out, np.asarray(self.rows), np.maximum(lengths - k + 1, 0))
        return out


@lru_cache(maxsize=4)
def _power_table(size: int, inverse: bool) -> np.ndarray:
    factors = np.full(size, _BASE_INVERSE if inverse else _BASE, dtype=np.uint64)
    factors[0] = 1
    return np.cumprod(factors, dtype=np.uint64)


def _powers(size: int) -> np.ndarray:
    return _power_table(1 << max(10, (size - 1).bit_length()), False)


def _inverse_powers(size: int) -> np.ndarray:
    return _power_table(1 << max(10, (size - 1).bit_length()), True)


class ContaminationIndex:
    """The n-grams of every evaluation item, for checking training text against them.

    Built once (a few seconds at most: see docs/decontamination.md) and queried with batches of
    rows, each row a list of texts (columns, message contents): `query_rows`.

    Example:
        >>> index = ContaminationIndex.build({"toy": [("toy-1", "one two three four five six seven eight")]})
        >>> [m.item for m in index.query("so: One, two, three four five six seven eight!")]
        ['toy-1']
    """

    def __init__(
        self,
        texts: Mapping[str, Sequence[tuple[str, str]]],
        *,
        n: int = DEFAULT_N,
        char_n: int | None = None,
        min_units: int | None = None,
    ) -> None:
        if n < 2:
            raise AssayError(f"n-gram length {n} is too short; use at least 2")
        started = time.perf_counter()
        self.n = n
        self.char_n = char_n or 2 * n
        self.lengths = (self.n, self.char_n, 2 * self.char_n)
        self.min_units = tuple(max(2, length // 2) for length in self.lengths)
        self.stats = IndexStats(n=self.n, char_n=self.char_n)
        self.vocab: tuple[dict[str, int], ...] = ({}, {}, {})
        self.item_set: list[str] = []
        self.item_id: list[str] = []
        streams: list[list[list[int]]] = []
        for set_name, items in texts.items():
            self.stats.items[set_name] = len(items)
            self.stats.unmatchable[set_name] = 0
            for item_id, text in items:
                streams.append([self._ids(part, c, grow=True) for c, part in enumerate(units(text))])
                self.item_set.append(set_name)
                self.item_id.append(item_id)
        self.set_names = list(texts)
        self._set_index = np.asarray([self.set_names.index(s) for s in self.item_set], dtype=np.int64)
        # For each stream and window length: sorted hashes and the item each comes from.
        self.tables: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        # A bitmap of each table's hashes (low bits) rules most windows out before the search.
        self.bitmaps: dict[tuple[int, int], np.ndarray] = {}
        item_grams = np.zeros(len(streams), dtype=np.int64)
        for channel in STREAMS:
            full, least = self.lengths[channel], self.min_units[channel]
            by_length: dict[int, _Batch] = {}
            for item, parts in enumerate(streams):
                size = len(parts[channel])
                # A short stream is one n-gram only when it is the whole item: the numbers between
                # the Thai words of an MGSM question are no n-gram of their own.
                if size >= full or (size >= least and sum(map(len, parts)) == size):
                    by_length.setdefault(min(size, full), _Batch()).add(item, parts[channel])
            for k, batch in by_length.items():
                hashes, items, _ = batch.windows(k)
                keys = np.unique(np.stack([items.astype(np.uint64), hashes], axis=1), axis=0)
                np.add.at(item_grams, keys[:, 0].astype(np.int64), 1)
                order = np.argsort(keys[:, 1], kind="stable")
                self.tables[channel, k] = (keys[order, 1], keys[order, 0].astype(np.int64))
                bitmap = np.zeros(1 << min(24, max(12, (16 * len(keys)).bit_length())), dtype=bool)
                bitmap[keys[:, 1] & np.uint64(len(bitmap) - 1)] = True
                self.bitmaps[channel, k] = bitmap
        self.item_grams = item_grams
        for item, grams in enumerate(item_grams):
            set_name = self.item_set[item]
            self.stats.ngrams[set_name] = self.stats.ngrams.get(set_name, 0) + int(grams)
            self.stats.unmatchable[set_name] += int(grams == 0)
        self.short_lengths = {
            channel: sorted(k for (c, k) in self.tables if c == channel and k < self.lengths[channel])
            for channel in STREAMS
        }
        self.stats.build_s = time.perf_counter() - started

    @classmethod
    def build(
        cls,
        texts: Mapping[str, Sequence[tuple[str, str]]] | None = None,
        *,
        n: int = DEFAULT_N,
        char_n: int | None = None,
        data_dir: Path | None = None,
    ) -> ContaminationIndex:
        """The index over `texts` ({set: [(item id, text)]}), by default every evaluation set's
        decontamination texts (`eval_sets.texts_for_decontamination`)."""
        if texts is None:
            from eval_sets.loaders import texts_for_decontamination

            texts = texts_for_decontamination(data_dir=data_dir)
        return cls(texts, n=n, char_n=char_n)

    def _ids(self, tokens: list[str], channel: int, *, grow: bool = False) -> list[int]:
        vocab = self.vocab[channel]
        if grow:
            return [vocab.setdefault(token, len(vocab) + 1) for token in tokens]
        return list(map(vocab.get, tokens, repeat(0, len(tokens))))

    def query(self, texts: str | Sequence[str]) -> list[Match]:
        """The evaluation items one text (or one row's texts) shares n-grams with, largest
        overlap first."""
        return self.query_rows([[texts] if isinstance(texts, str) else list(texts)])[0]

    def query_rows(self, rows: Sequence[Sequence[str | None]]) -> list[list[Match]]:
        """For each row (a list of texts; None skipped), its matches, largest overlap first."""
        batches = tuple(_Batch() for _ in STREAMS)
        for row, texts in enumerate(rows):
            for text in texts:
                if not text:
                    continue
                for channel, part in enumerate(units(text)):
                    batches[channel].add(row, self._ids(part, channel))
        windows = sum(
            batch.text_windows(k, len(rows)) for batch, k in zip(batches, self.lengths, strict=True)
        )
        found_rows, found_items, found_hashes = [], [], []
        for (channel, k), (keys, items) in self.tables.items():
            hashes, row_of, known = batches[channel].windows(k)
            bitmap = self.bitmaps[channel, k]
            maybe = known & bitmap[hashes & np.uint64(len(bitmap) - 1)]
            hashes, row_of = hashes[maybe], row_of[maybe]
            if not len(hashes):
                continue
            low = np.searchsorted(keys, hashes, side="left")
            hit = keys[np.minimum(low, len(keys) - 1)] == hashes
            if not hit.any():
                continue
            hashes, row_of, low = hashes[hit], row_of[hit], low[hit]
            counts = np.searchsorted(keys, hashes, side="right") - low
            positions = np.repeat(low - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            found_rows.append(np.repeat(row_of, counts))
            found_items.append(items[positions])
            found_hashes.append(np.repeat(hashes, counts))
        results: list[list[Match]] = [[] for _ in rows]
        if not found_rows:
            return results
        keys = np.stack(
            [
                np.concatenate(found_rows).astype(np.uint64),
                np.concatenate(found_items).astype(np.uint64),
                np.concatenate(found_hashes),
            ],
            axis=1,
        )
        pairs, shared = np.unique(np.unique(keys, axis=0)[:, :2], axis=0, return_counts=True)
        for (row, item), count in zip(pairs.tolist(), shared.tolist(), strict=True):
            results[row].append(
                Match(
                    set=self.item_set[item],
                    item=self.item_id[item],
                    shared=count,
                    overlap=round(count / int(self.item_grams[item]), 4),
                    text_overlap=round(min(1.0, count / max(1, int(windows[row]))), 4),
                )
            )
        for matches in results:
            matches.sort(key=lambda m: (-m.overlap, m.set, m.item))
        return results


@lru_cache(maxsize=4)
def default_index(
    n: int = DEFAULT_N, char_n: int | None = None, data_dir: str | None = None
) -> ContaminationIndex:
    """The index over every evaluation set, built once per process and kept."""
    return ContaminationIndex.build(n=n, char_n=char_n, data_dir=Path(data_dir) if data_dir else None)


def flagged(matches: Iterable[Match], min_overlap: float) -> list[Match]:
    """The matches that make a row contaminated: overlap >= `min_overlap` (0: any shared n-gram)."""
    return [m for m in matches if m.shared > 0 and m.overlap >= min_overlap]


# --- which texts of a row are checked -------------------------------------------------------

SKIPPED_COLUMNS = frozenset({"id", "_error", "_error_stage", "_failed_row", "contaminated"})


def text_columns(schema: pa.Schema) -> list[str]:
    """The columns checked by default: every string column, and every list of structs with a
    `content` string (a conversation: `prompt_messages`, `messages`, `chosen`, `rejected`);
    never `id` or the error columns."""
    import pyarrow as pa

    chosen = []
    for column in schema:
        if column.name in SKIPPED_COLUMNS:
            continue
        kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            chosen.append(column.name)
        elif (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_struct(kind.value_type):
            inner = kind.value_type
            index = inner.get_field_index("content")
            if index >= 0 and pa.types.is_string(inner.field(index).type):
                chosen.append(column.name)
    return chosen


def cell_texts(value: Any) -> list[str]:
    """The texts of one cell: a string, or the `content` of each message of a conversation."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [m["content"] for m in value if isinstance(m, dict) and isinstance(m.get("content"), str)]
    return []


def table_texts(table: pa.Table, columns: Sequence[str]) -> list[list[str]]:
    """Each row's texts from `columns`, in row order."""
    values = [table[name].to_pylist() for name in columns]
    return [[text for column in values for text in cell_texts(column[row])] for row in range(table.num_rows)]


# --- a whole registered dataset --------------------------------------------------------------


@dataclass
class RowMatch:
    """An overlapping row of a checked dataset and the item it overlaps most."""

    row: str
    set: str
    item: str
    overlap: float


@dataclass
class ContaminationReport:
    """How much of a dataset overlaps the evaluation sets."""

    dataset: str
    rows: int
    min_overlap: float
    n: int
    columns: list[str]
    by_set: dict[str, int]  # rows flagged with an item of each set
    flagged_rows: int
    examples: list[RowMatch]
    eval_sets: dict[str, str]  # set -> identity, or the set's name where its files are not at hand
    check_s: float = 0.0

    @property
    def fraction(self) -> float:
        """Flagged rows over rows checked (0 for an empty dataset)."""
        return self.flagged_rows / self.rows if self.rows else 0.0

    @property
    def worst_set(self) -> str | None:
        """The evaluation set with the most flagged rows, or None when none is flagged."""
        worst = max(self.by_set.items(), key=lambda kv: kv[1], default=(None, 0))
        return worst[0] if worst[1] else None

    def refuse_above(self, threshold: float) -> None:
        """Raise when more than `threshold` of the rows overlap an evaluation set.

        Raises:
            ContaminationError: naming the dataset, the fraction and the worst evaluation set.
        """
        if self.fraction > threshold:
            worst = self.worst_set
            raise ContaminationError(
                f"{self.dataset}: {self.flagged_rows} of {self.rows} rows ({self.fraction:.1%}) overlap "
                f"an evaluation set (>= {self.min_overlap:g} of an item's {self.n}-grams), above the "
                f"{threshold:.1%} allowed; most with {worst} ({self.by_set[worst] if worst else 0} rows); "
                "drop them with a `decontaminate` stage (drop: true)"
            )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able summary (what `assay data decontam --json` prints)."""
        return {
            "dataset": self.dataset,
            "rows": self.rows,
            "n": self.n,
            "min_overlap": self.min_overlap,
            "columns": self.columns,
            "flagged_rows": self.flagged_rows,
            "fraction": round(self.fraction, 6),
            "by_set": self.by_set,
            "worst_set": self.worst_set,
            "examples": [vars(example) for example in self.examples],
            "eval_sets": self.eval_sets,
            "check_s": round(self.check_s, 3),
        }


def set_identities(names: Iterable[str], data_dir: Path | None = None) -> dict[str, str]:
    """Each set's `identity` (which bytes were checked against); a set with a dev split (its items
    are in the index too) also as `NAME:dev`."""
    from eval_sets.loaders import DEV_SPLITS, identity

    identities = {}
    for name in names:
        identities[name] = identity(name, data_dir=data_dir)
        if name in DEV_SPLITS:
            identities[f"{name}:dev"] = identity(name, split="dev", data_dir=data_dir)
    return identities


def check_dataset(
    version: DatasetVersion,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    *,
    n: int = DEFAULT_N,
    columns: Sequence[str] | None = None,
    index: ContaminationIndex | None = None,
    examples: int = 5,
    batch_rows: int = 4096,
) -> ContaminationReport:
    """Check every row of a registered dataset version against every evaluation set.

    Args:
        version: The dataset version (`Registry.open(ref)`).
        min_overlap: A row is flagged when it holds at least this share of some evaluation
            item's n-grams (0: any shared n-gram).
        n: The word n-gram length (ignored when `index` is given).
        columns: The columns to read; default `text_columns` of the schema.
        index: A prebuilt index; default the process's `default_index(n)`.
        examples: How many flagged rows to keep as examples (the first ones, in row order).
        batch_rows: Rows read and checked at a time.

    Raises:
        AssayError: a named column is not in the dataset.
    """
    import pyarrow as pa

    started = time.perf_counter()
    index = index or default_index(n)
    schema = version.schema
    chosen = list(columns) if columns is not None else text_columns(schema)
    missing = [c for c in chosen if c not in schema.names]
    if missing:
        raise AssayError(
            f"{version.ref} has no column {', '.join(map(repr, missing))}; it has {', '.join(schema.names)}"
        )
    by_set = dict.fromkeys(index.set_names, 0)
    found: list[RowMatch] = []
    flagged_rows = rows = 0
    read = chosen + (["id"] if "id" in schema.names else [])
    for batch in version.to_lance().to_batches(columns=read, batch_size=batch_rows):
        table = pa.Table.from_batches([batch])
        ids = table["id"].to_pylist() if "id" in table.column_names else None
        for offset, matches in enumerate(index.query_rows(table_texts(table, chosen))):
            hits = flagged(matches, min_overlap)
            if hits:
                flagged_rows += 1
                for set_name in {m.set for m in hits}:
                    by_set[set_name] += 1
                if len(found) < examples:
                    row = str(ids[offset]) if ids else f"#{rows + offset}"
                    found.append(RowMatch(row, hits[0].set, hits[0].item, hits[0].overlap))
        rows += table.num_rows
    try:
        identities = set_identities(index.set_names)
    except AssayError:  # an index over texts given directly, not the files
        identities = {name: name for name in index.set_names}
    return ContaminationReport(
        dataset=version.ref,
        rows=rows,
        min_overlap=min_overlap,
        n=index.n,
        columns=chosen,
        by_set=by_set,
        flagged_rows=flagged_rows,
        examples=found,
        eval_sets=identities,
        check_s=time.perf_counter() - started,
    )
