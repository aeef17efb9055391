"""assay's SQL harness. Runs inside the sandbox as `python3 -I -S -B sql_harness.py`.

stdin: {"nonce", "query", "setup", "cases": [{"setup"}]}. For each case a fresh in-memory SQLite
database gets the shared setup and the case's own, then the query runs; the rows come back as
records `@@assay:<nonce> {"t": "rows", "i", "columns", "rows"}` (or {"t": "error", "i", "msg"}).
The expected rows never enter the sandbox: the host compares. A query that SQLite cannot
parse is reported once as {"t": "compile_error"}.
"""

from __future__ import annotations

import json
import os
import sqlite3


def _value(value: object) -> object:
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    return value


def main() -> None:
    """Run the query once per case and report its rows."""
    chunks = []
    while chunk := os.read(0, 1 << 20):
        chunks.append(chunk)
    request = json.loads(b"".join(chunks))
    prefix = f"\n@@assay:{request['nonce']} ".encode()

    def emit(record: dict) -> None:
        data = prefix + json.dumps(record).encode() + b"\n"
        while data:
            data = data[os.write(1, data) :]

    query = request["query"].strip().rstrip(";").strip()
    for index, case in enumerate(request["cases"]):
        db = sqlite3.connect(":memory:")
        try:
            db.executescript(request.get("setup") or "")
            db.executescript(case.get("setup") or "")
        except sqlite3.Error as err:
            emit({"t": "error", "i": index, "msg": f"the setup failed: {err}", "setup": True})
            continue
        try:
            cursor = db.execute(query)
            rows = cursor.fetchmany(100_000)
            columns = [d[0] for d in cursor.description or []]
        except sqlite3.Warning as err:  # several statements
            emit({"t": "error", "i": index, "msg": f"{err}"})
            continue
        except sqlite3.Error as err:
            message = str(err)
            if "syntax error" in message or "incomplete input" in message or "unrecognized token" in message:
                emit({"t": "compile_error", "msg": message})
                break
            emit({"t": "error", "i": index, "msg": message})
            continue
        emit(
            {"t": "rows", "i": index, "columns": columns, "rows": [[_value(v) for v in row] for row in rows]}
        )
        db.close()
    emit({"t": "done"})
    os._exit(0)


if __name__ == "__main__":
    main()
