"""`assay ui` on a registered 1,000,000-row dataset, against a Parquet load-then-filter baseline.

Builds the 1M-row sft-like versions of `registry_1m.py` (v2: ~1 % rows removed, added and
changed, written whole as an overwrite), registers both, then `--appends` more versions, each
appending 1 % new rows to the previous one, writes v1 and v2 as Parquet files, then serves the
registry with the viewer in a child process (uvicorn, one worker) and times HTTP requests from
this process: the first page, a filtered page, a text-search page, two histograms and the diff
v1 → v2. Each figure is the median of `--runs` requests after one warm-up request. The
server's peak resident memory (VmHWM) is read after the page requests and again after the diffs.

v1 and v2 are written twice: to the registry served below, which stores each new fragment's
digest beside the data at commit (`datasets_registry/digest_files.py`), and to a second registry
that stores none (`write_digests=False`), alternately, each write timed: the cost of digests.

The diff is timed these ways. Cold without stored digests (the baseline): a server on the
registry without digests that keeps none (`digest_rows=0`), so every full diff reads both
versions' content. Cold with stored digests: a freshly started server for each run, on the
registry with digests, whose first request is the diff page (served whole, the full diff
computed from the stored digests), the server's first request included; and a server that keeps
no digests in memory (`digest_rows=0`, `diff_cache=0`), so every request loads the stored
digests again. Digests kept: the server keeps the versions' digests (the default) but no
computed diff (`diff_cache=0`), so every request computes the diff again from the digests, as a
diff of any pair of versions seen before is. Appended: on that server, the first diff of each
appended version against the one before it: the digest of the new version is its
predecessor's fragments (kept) plus the appended fragment (loaded from its stored digest).

The baseline, in a second child process: the Parquet-backed approach of a viewer that loads the
file and then filters (polars `read_parquet`, then filter, slice 100 rows; a histogram of the
loaded column; a diff as a join of both loaded files on `id` with row hashes), timed the same
way, with its own peak memory.

    .venv/bin/python benchmarks/ui_1m.py [--rows 1000000] [--record] [--diffs-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from registry_1m import build_chunk, build_versions, text_pool
from results_io import add_output_args, write_result

from datasets_registry import Registry
from datasets_registry.digest_files import DIGEST_DIR

NAME = "bench-sft"
WHERE = "language = 'fr' AND scores.ifeval_best > 0.9"
SEARCH = "rust while tests"
GOAL_MS = 300.0
BASELINE_OF = {
    "first_page": "first_page",
    "filtered_page": "filtered_page",
    "histogram_numeric": "histogram",
    "diff_page": "diff",
    "diff_full_cold": "diff",
    "diff_page_fresh_stored": "diff",
    "diff_page_fresh_after_page": "diff",
    "diff_full_stored": "diff",
    "diff_page_stored": "diff",
    "diff_full": "diff",
    "diff_page_digests": "diff",
    "diff_full_appended": "diff",
    "diff_page_revisited": "diff",
}
"""Which baseline figure each viewer figure stands beside."""

SERVER = """
import sys, uvicorn
from pathlib import Path
from viewer.app import ViewerSettings, create_app
settings = ViewerSettings(
    sys.argv[1], Path(sys.argv[2]), diff_cache=int(sys.argv[4]), digest_rows=int(sys.argv[5])
)
app = create_app(settings)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""

BASELINE = """
import json, statistics, sys, time
import numpy as np, polars as pl
v1, v2, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])

def timed(fn):
    fn()  # warm-up, as for the server
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000

def first_page():
    return pl.read_parquet(v2).slice(0, 100)

def filtered_page():
    frame = pl.read_parquet(v2)
    best = pl.col("scores").struct.field("ifeval_best")
    return frame.filter((pl.col("language") == "fr") & (best > 0.9)).slice(0, 100)

def histogram():
    frame = pl.read_parquet(v2)
    return np.histogram(frame["scores"].struct.field("ifeval_best").to_numpy(), bins=12)

def diff():
    old, new = pl.read_parquet(v1), pl.read_parquet(v2)
    old = old.with_columns(h=old.drop("id").hash_rows(seed=1)).select("id", "h")
    new = new.with_columns(h=new.drop("id").hash_rows(seed=1)).select("id", "h")
    both = old.join(new, on="id", how="full", coalesce=True)
    return (both["h"].is_null().sum(), both["h_right"].is_null().sum(), (both["h"] != both["h_right"]).sum())

tasks = [("first_page", first_page), ("filtered_page", filtered_page), ("histogram", histogram)]
out = {name: timed(fn) for name, fn in tasks + [("diff", diff)]}
status = open("/proc/self/status").read()
out["peak_rss_mib"] = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory of process `pid` so far (VmHWM), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024


def get(base: str, path: str, **params: Any) -> tuple[float, int, bytes]:
    """One GET: seconds, status, body."""
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as answer:
        body = answer.read()
        status = answer.status
    return time.perf_counter() - started, status, body


def median_ms(base: str, runs: int, path: str, must_contain: bytes, **params: Any) -> float:
    """Median milliseconds of `runs` GETs after one warm-up; checks the answer each time."""
    times = []
    for attempt in range(runs + 1):
        seconds, status, body = get(base, path, **params)
        if status != 200 or must_contain not in body or b'id="error"' in body:
            raise SystemExit(f"GET {path} {params}: status {status}, body starts {body[:300]!r}")
        if attempt:
            times.append(seconds)
    return statistics.median(times) * 1000


def fresh_diff_ms(root: str, models: str, runs: int, page: str, first: str | None = None) -> float:
    """Median ms of the v1 -> v2 diff page served whole by a newly started server per run
    (after a request of `first`, when given)."""
    times = []
    for _ in range(runs):
        with Server(root, models, diff_cache=0) as server:
            if first is not None:
                get(server.base, first)
            seconds, status, body = get(server.base, page + "/diff", old=1, new=2)
            if status != 200 or b'id="diff-changed"' not in body or b"data-src" in body:
                raise SystemExit(f"fresh server, diff page: status {status}, {body[:300]!r}")
            times.append(seconds)
    return statistics.median(times) * 1000


class Server:
    """The viewer in a child process (uvicorn, one worker) on a free port, for a `with` block."""

    def __init__(
        self, registry_root: str, model_root: str, *, diff_cache: int, digest_rows: int = 4_000_000
    ) -> None:
        self.args = [registry_root, model_root, str(free_port()), str(diff_cache), str(digest_rows)]
        self.base = f"http://127.0.0.1:{self.args[2]}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> Server:
        env = {**os.environ, "LANCE_LOG": "error"}
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, *self.args], env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                get(self.base, "/datasets")
                return self
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("the viewer did not start") from None
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="timed requests per figure (median)")
    parser.add_argument(
        "--appends", type=int, default=5, help="versions after v2, each appending 1 %% new rows"
    )
    parser.add_argument(
        "--diffs-only",
        action="store_true",
        help="time only the diffs and the writes (no pages, no Parquet baseline); result ui_1m_diffs",
    )
    add_output_args(parser, "ui_1m")
    args = parser.parse_args()
    if args.diffs_only:
        args.result_name = "ui_1m_diffs"

    started = time.perf_counter()
    v1_table, v2_table = build_versions(args.rows)
    print(
        f"built v1 {v1_table.num_rows:,} rows, v2 {v2_table.num_rows:,} rows "
        f"in {time.perf_counter() - started:.1f} s"
    )
    with tempfile.TemporaryDirectory(prefix="ui-1m-") as tmp:
        registry = Registry(Path(tmp) / "registry")
        plain = Registry(Path(tmp) / "plain", write_digests=False)
        write_s: dict[str, list[float]] = {"with_digests": [], "without_digests": []}
        for table in (v1_table, v2_table):  # alternately, so both see the same load
            for target, key in ((plain, "without_digests"), (registry, "with_digests")):
                started = time.perf_counter()
                target.write(NAME, table, kind="sft")
                write_s[key].append(time.perf_counter() - started)
        digest_dir = Path(registry.dataset_uri(NAME)) / DIGEST_DIR
        digest_mib = sum(f.stat().st_size for f in digest_dir.iterdir()) / 2**20  # v1's and v2's
        pool, added = text_pool(np.random.default_rng(77), 8 << 20), max(1, args.rows // 100)
        append_s = []
        for index in range(args.appends):  # new ids: `n` numbers past every earlier row's
            more = build_chunk(pool, 10 * args.rows + index * added, added, seed=77 + index)
            started = time.perf_counter()
            registry.write(NAME, more, kind="sft", mode="append")
            append_s.append(time.perf_counter() - started)
        print(
            f"1M-row writes (v1, v2): {', '.join(f'{s:.2f}' for s in write_s['with_digests'])} s with "
            f"digests, {', '.join(f'{s:.2f}' for s in write_s['without_digests'])} s without; "
            f"v1+v2 digests {digest_mib:.1f} MiB on disk"
        )
        v1_parquet, v2_parquet = Path(tmp) / "v1.parquet", Path(tmp) / "v2.parquet"
        pq.write_table(v1_table, v1_parquet)
        pq.write_table(v2_table, v2_parquet)
        del v1_table, v2_table

        models = str(Path(tmp) / "models")
        page = f"/datasets/{NAME}"
        figures: dict[str, float] = {}
        rss_start = rss_pages = rss_stored = 0.0
        # Diff caches off: every page computes its diff (summary or full) on request.
        with Server(registry.root, models, diff_cache=0) as server:
            rss_start = peak_rss_mib(server.pid)
            figures |= (
                {}
                if args.diffs_only
                else {
                    "first_page": median_ms(server.base, args.runs, page, "rows 1–100 of".encode()),
                    "filtered_page": median_ms(server.base, args.runs, page, b"matching", where=WHERE),
                    "search_page": median_ms(server.base, args.runs, page, b"matching", q=SEARCH),
                    "histogram_numeric": median_ms(
                        server.base, args.runs, page + "/histogram", b"bar-link", column="scores.ifeval_best"
                    ),
                    "histogram_category": median_ms(
                        server.base, args.runs, page + "/histogram", b"bar-link", column="language"
                    ),
                    "histogram_filtered": median_ms(
                        server.base,
                        args.runs,
                        page + "/histogram",
                        b"bar-link",
                        column="scores.ifeval_best",
                        where=WHERE,
                    ),
                }
            )
            rss_pages = peak_rss_mib(server.pid)
        # No digests stored or kept: the summary step, then every full diff reads both versions.
        with Server(plain.root, models, diff_cache=0, digest_rows=0) as server:
            figures["diff_page"] = median_ms(
                server.base, args.runs, page + "/diff", b"diff-rows", old=1, new=2
            )
            figures["diff_full_cold"] = median_ms(
                server.base, args.runs, page + "/diff/full", b"diff-changed", old=1, new=2
            )
            rss_cold = peak_rss_mib(server.pid)
        # Digests stored at commit. A fresh server per run; its first request is the diff page.
        figures["diff_page_fresh_stored"] = fresh_diff_ms(registry.root, models, args.runs, page)
        # The same, after the dataset page (where the diff link is): its first diff, not its first page.
        after_page = fresh_diff_ms(registry.root, models, args.runs, page, first=page)
        figures["diff_page_fresh_after_page"] = after_page
        # Nothing kept in memory: every request loads both versions' stored digests again.
        with Server(registry.root, models, diff_cache=0, digest_rows=0) as server:
            figures["diff_full_stored"] = median_ms(
                server.base, args.runs, page + "/diff/full", b"diff-changed", old=1, new=2
            )
            figures["diff_page_stored"] = median_ms(
                server.base, args.runs, page + "/diff", b"diff-changed", old=1, new=2
            )
            rss_stored = peak_rss_mib(server.pid)
        # Digests kept (the default), computed diffs not: each request computes the diff again.
        with Server(registry.root, models, diff_cache=0) as server:
            figures["diff_full"] = median_ms(
                server.base, args.runs, page + "/diff/full", b"diff-changed", old=1, new=2
            )
            figures["diff_page_digests"] = median_ms(
                server.base, args.runs, page + "/diff", b"diff-changed", old=1, new=2
            )
            appended = []
            for version in range(3, 3 + args.appends):  # the first diff of each appended version
                seconds, status, body = get(server.base, page + "/diff/full", old=version - 1, new=version)
                if status != 200 or b"diff-changed" not in body:
                    raise SystemExit(f"diff {version - 1} -> {version}: status {status}, {body[:300]!r}")
                appended.append(seconds)
            if appended:
                figures["diff_full_appended"] = statistics.median(appended) * 1000
            rss_diff = peak_rss_mib(server.pid)
        # The default caches: the full diff is computed once, then a revisited diff page shows it inline.
        with Server(registry.root, models, diff_cache=16) as server:
            get(server.base, page + "/diff/full", old=1, new=2)
            figures["diff_page_revisited"] = median_ms(
                server.base, args.runs, page + "/diff", b"diff-changed", old=1, new=2
            )

        baseline: dict[str, float] = {"peak_rss_mib": 0.0}
        if not args.diffs_only:
            baseline_run = subprocess.run(
                [sys.executable, "-c", BASELINE, str(v1_parquet), str(v2_parquet), str(args.runs)],
                capture_output=True,
                text=True,
                check=True,
            )
            baseline = json.loads(baseline_run.stdout.strip().splitlines()[-1])

    print(f"viewer (Lance) vs Parquet load-then-filter, median of {args.runs} requests, ms:")
    print(f"{'figure':<28} {'viewer':>9} {'parquet':>9} {'ratio':>7}  goal < {GOAL_MS:.0f} ms")
    result_rows = {}
    for figure, ms in figures.items():
        key = BASELINE_OF.get(figure)
        other = baseline.get(key) if key else None
        ratio = other / ms if other else None
        met = "yes" if ms < GOAL_MS else "NO"
        other_text = f"{other:9.1f}" if other else f"{'-':>9}"
        ratio_text = f"{ratio:6.1f}x" if ratio else f"{'-':>7}"
        print(f"{figure:<28} {ms:9.1f} {other_text} {ratio_text}  {met}")
        result_rows[figure] = {"viewer_ms": ms, "parquet_ms": other, "ratio_parquet_over_viewer": ratio}
    cold_ratio = figures["diff_full_cold"] / figures["diff_page_fresh_stored"]
    print(
        f"cold diff: {figures['diff_full_cold']:.1f} ms reading content (no stored digests), "
        f"{figures['diff_page_fresh_stored']:.1f} ms for a fresh server's first diff page from stored "
        f"digests: {cold_ratio:.1f}x; {figures['diff_full_stored']:.1f} ms full diff loading them each time"
    )
    print(
        f"peak RSS: viewer {rss_start:.0f} MiB at start, {rss_pages:.0f} MiB after pages and histograms; "
        f"{rss_cold:.0f} MiB after cold diffs; {rss_stored:.0f} MiB after diffs from stored digests; "
        f"{rss_diff:.0f} MiB after diffs with digests kept; "
        f"parquet baseline {baseline['peak_rss_mib']:.0f} MiB"
    )
    write_result(
        args,
        {
            "benchmark": "ui_1m",
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
            },
            "rows": args.rows,
            "runs": args.runs,
            "where": WHERE,
            "search": SEARCH,
            "figures": result_rows,
            "appends": args.appends,
            "diffs_only": args.diffs_only,
            "cold_no_digests_over_fresh_stored": cold_ratio,
            "write_1m_s": write_s,
            "append_s_with_digests": append_s,
            "digest_mib_v1_v2": digest_mib,
            "load_average": os.getloadavg(),
            "viewer_peak_rss_mib": {
                "start": rss_start,
                "after_pages": rss_pages,
                "after_cold_diffs": rss_cold,
                "after_diffs_from_stored_digests": rss_stored,
                "after_diffs_with_digests": rss_diff,
            },
            "parquet_peak_rss_mib": baseline["peak_rss_mib"],
            "goal_ms": GOAL_MS,
        },
    )


if __name__ == "__main__":
    main()
