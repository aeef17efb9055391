"""Rows as the pages show them: blocks per kind (chat turns, preference pairs side by side,
code with its per-test verdict, folded long text, dead letters with stage and error).

Values stay plain Python strings and numbers; the templates escape every one of them. Bytes
that are not UTF-8 are decoded with replacement characters, never passed through.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from datasets_registry.columns import is_message_list

FOLD_CHARS = 600
"""Text longer than this (or with more than FOLD_LINES lines) starts folded."""
FOLD_LINES = 12
CODE_COLUMNS = frozenset({"solution", "code", "completion_code", "program"})


@dataclass
class Block:
    """One thing drawn in a row: `type` picks the template macro, `data` is what it draws."""

    type: str
    column: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RowView:
    """A row as drawn: its id (if any) and its blocks."""

    id: str | None
    blocks: list[Block]


def column_values(column: pa.ChunkedArray) -> list[Any]:
    """Python values of a column; strings that are not valid UTF-8 come back with U+FFFD."""
    try:
        return column.to_pylist()
    except (UnicodeDecodeError, pa.ArrowInvalid):
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            raw = column.cast(pa.large_binary()).to_pylist()
            return [None if v is None else v.decode("utf-8", errors="replace") for v in raw]
        return [f"<unreadable {column.type} value>"] * len(column)


def _plain(value: Any) -> Any:
    """`value` with bytes decoded (replacing what is not UTF-8), for JSON display."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(_plain(value), ensure_ascii=False, indent=2, default=str)


def _folded(text: str) -> bool:
    return len(text) > FOLD_CHARS or text.count("\n") > FOLD_LINES


def _text_block(name: str, value: Any, *, code: bool = False) -> Block:
    text = _text(value)
    return Block("code" if code else "text", name, {"text": text, "folded": _folded(text)})


def _chat(name: str, value: Any) -> Block:
    turns = [
        {
            "role": str(turn.get("role") or "?"),
            "role_class": re.sub(r"[^a-z0-9-]", "", str(turn.get("role") or "").lower()),
            "content": _text(turn.get("content") or ""),
        }
        for turn in value or []
        if isinstance(turn, dict)
    ]
    return Block("chat", name, {"turns": turns})


def _side(value: Any, is_chat: bool) -> dict[str, Any]:
    if is_chat:
        return {"turns": _chat("", value).data["turns"]}
    text = _text(value) if value is not None else ""
    return {"text": text, "folded": _folded(text)}


def _verdict(name: str, value: Any) -> Block:
    if isinstance(value, str):  # the `code` kind stores the verdict as JSON text
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if not isinstance(value, dict):
        return _text_block(name, value)
    tests = [
        {
            "name": str(t.get("name", "")),
            "passed": bool(t.get("passed")),
            "message": _text(t.get("message") or ""),
        }
        for t in value.get("tests") or []
        if isinstance(t, dict)
    ]
    others = {k: _plain(v) for k, v in value.items() if k != "tests"}
    return Block("verdict", name, {"status": str(value.get("status", "")), "tests": tests, "fields": others})


def _score(row: dict[str, Any], side: str) -> Any:
    for key in (f"{side}_score", f"{side}_reward"):
        if row.get(key) is not None:
            return row[key]
    scores = row.get("scores")
    if isinstance(scores, dict):
        for key in (f"{side}_score", side):
            if scores.get(key) is not None:
                return scores[key]
    return None


def row_views(table: pa.Table, kind: str) -> list[RowView]:
    """The rows of `table` (one page) as blocks for the templates."""
    schema = table.schema
    values = {name: column_values(table.column(name)) for name in schema.names}
    chat_columns = {f.name for f in schema if is_message_list(f.type)}
    dead_letter = {"stage", "error"} <= set(schema.names)
    pair = {"chosen", "rejected"} <= set(schema.names)
    views = []
    for i in range(table.num_rows):
        row = {name: values[name][i] for name in schema.names}
        blocks: list[Block] = []
        used: set[str] = {"id"}
        if dead_letter:
            failed = row.get("row")
            try:
                failed = json.loads(failed) if isinstance(failed, str) else failed
            except ValueError:
                pass
            blocks.append(
                Block(
                    "dead",
                    "error",
                    {
                        "stage": _text(row.get("stage") or ""),
                        "error": _text(row.get("error") or ""),
                        "row": _text(failed) if failed is not None else "",
                    },  # fmt: skip
                )
            )
            used |= {"stage", "error", "row"}
        if pair:
            if row.get("prompt") is not None:
                name = "prompt"
                blocks.append(
                    _chat(name, row[name]) if name in chat_columns else _text_block(name, row[name])
                )
                used.add("prompt")
            blocks.append(
                Block(
                    "pair",
                    "chosen / rejected",
                    {
                        "chosen": _side(row["chosen"], "chosen" in chat_columns),
                        "rejected": _side(row["rejected"], "rejected" in chat_columns),
                        "chosen_score": _score(row, "chosen"),
                        "rejected_score": _score(row, "rejected"),
                    },
                )
            )
            used |= {"chosen", "rejected", "chosen_score", "rejected_score"}
        for name in schema.names:
            if name in used:
                continue
            value = row[name]
            if value is None:
                blocks.append(Block("null", name))
            elif name in chat_columns:
                blocks.append(_chat(name, value))
            elif name == "verdict":
                blocks.append(_verdict(name, value))
            elif isinstance(value, (str, bytes)):
                code = name in CODE_COLUMNS or (kind == "code" and name in ("solution", "tests"))
                blocks.append(_text_block(name, _plain(value), code=code))
            elif isinstance(value, (dict, list)):
                blocks.append(_text_block(name, value, code=True))
            else:
                blocks.append(Block("value", name, {"text": str(value)}))
        row_id = row.get("id")
        views.append(RowView(None if row_id is None else str(_plain(row_id)), blocks))
    return views
