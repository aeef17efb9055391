"""The viewer's server without a browser: access rules, escaping, queries against Lance."""

from __future__ import annotations

from pathlib import Path

import lance
import numpy as np
import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from viewer import queries
from viewer.app import ViewerSettings, create_app
from viewer.errors import ViewerError
from viewer.rows import column_values


@pytest.fixture(scope="module")
def client(site_data: tuple[Path, Path]) -> TestClient:
    registry_root, model_root = site_data
    return TestClient(create_app(ViewerSettings(str(registry_root), model_root)))


def test_a_token_is_required_when_set_then_kept_in_a_cookie(site_data: tuple[Path, Path]) -> None:
    registry_root, model_root = site_data
    app = create_app(ViewerSettings(str(registry_root), model_root, token="s3cret"))
    with TestClient(app) as anonymous:
        assert anonymous.get("/datasets").status_code == 401
        assert anonymous.get("/datasets?token=wrong").status_code == 401
        assert anonymous.get("/datasets", headers={"authorization": "Bearer s3cret"}).status_code == 200
    with TestClient(app) as user:
        first = user.get("/datasets?token=s3cret")
        assert first.status_code == 200
        assert "HttpOnly" in first.headers["set-cookie"]
        assert user.get("/datasets/chat").status_code == 200  # the cookie alone now


def test_the_server_is_read_only_and_sends_a_strict_csp(client: TestClient) -> None:
    assert client.post("/datasets").status_code == 405
    assert client.delete("/datasets/chat").status_code == 405
    policy = client.get("/datasets").headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


def test_row_content_is_escaped_in_the_html(client: TestClient) -> None:
    html = client.get("/datasets/hostile").text
    assert "<script>window" not in html and "onerror=" not in html.replace("onerror=&#34;", "")
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert 'href="javascript:' not in html
    assert "role-buser" not in html or 'class="turn role-buserb"' in html  # role kept to [a-z0-9-]


def test_a_bad_filter_is_reported_on_the_page(client: TestClient) -> None:
    answer = client.get("/datasets/chat", params={"where": "no_such_column = 1"})
    assert answer.status_code == 200
    assert 'id="error"' in answer.text and "no_such_column" in answer.text


def test_unknown_names_are_404(client: TestClient) -> None:
    assert client.get("/datasets/nope").status_code == 404
    assert client.get("/models/nope").status_code == 404
    assert client.get("/datasets/chat/histogram", params={"column": "nope"}).status_code == 404


def test_off_loopback_needs_a_token() -> None:
    from assay.cli.ui import is_loopback, ui

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(ViewerError, match="--token"):
        ui(registry=None, host="0.0.0.0", port=0, token=None)


@pytest.fixture(scope="module")
def numbers(tmp_path_factory: pytest.TempPathFactory) -> lance.LanceDataset:
    rng = np.random.default_rng(0)
    n = 5000
    table = pa.table(
        {
            "id": [f"x{i}" for i in range(n)],
            "score": rng.normal(size=n),
            "count": rng.integers(-3, 200, size=n),
            "small": rng.integers(0, 4, size=n),
            "flag": rng.random(n) > 0.3,
            "lang": rng.choice(["en", "fr", "it's"], size=n),
            "text": [f"row {i} " + "x" * int(rng.integers(0, 300)) for i in range(n)],
            "scores": pa.array([{"a": float(v)} for v in rng.random(n)]),
        }
    )
    uri = str(tmp_path_factory.mktemp("numbers") / "n.lance")
    lance.write_dataset(table, uri, max_rows_per_file=1500)
    return lance.dataset(uri)


@pytest.mark.parametrize("column", ["score", "count", "small", "flag", "lang", "text", "scores.a"])
def test_every_bar_filter_selects_exactly_the_rows_it_counts(
    numbers: lance.LanceDataset, column: str
) -> None:
    types = dict(queries.histogram_columns(numbers.schema))
    hist = queries.column_histogram(numbers, column, types[column], None)
    assert hist is not None and hist.bars
    assert sum(bar.count for bar in hist.bars) + hist.other == hist.count == numbers.count_rows()
    for bar in hist.bars:
        assert numbers.count_rows(filter=bar.clause) == bar.count, bar


def test_bars_under_a_filter_count_only_matching_rows(numbers: lance.LanceDataset) -> None:
    where = "lang = 'fr'"
    hist = queries.column_histogram(numbers, "count", pa.int64(), where)
    assert hist is not None
    assert hist.count == numbers.count_rows(filter=where)
    for bar in hist.bars:
        assert numbers.count_rows(filter=queries.combine(where, bar.clause)) == bar.count


def test_pages_read_by_offset_match_the_whole_table(numbers: lance.LanceDataset) -> None:
    whole = numbers.to_table(columns=["id"], filter="small = 2")["id"].to_pylist()
    seen = []
    for number in range(queries.read_page(numbers, where="small = 2").pages):
        page = queries.read_page(numbers, where="small = 2", page=number)
        assert page.total == len(whole) and page.exact
        seen += page.rows["id"].to_pylist()
    assert seen == whole


def test_search_stops_early_and_pages_in_order(numbers: lance.LanceDataset) -> None:
    first = queries.read_page(numbers, search="ROW 1", page=0, size=10)
    assert not first.exact and first.total >= 11  # stopped one row past the page
    assert first.rows["id"].to_pylist() == [f"x{i}" for i in (1, 10, 11, 12, 13, 14, 15, 16, 17, 18)]
    exact = queries.read_page(numbers, search="row 4999 ", where="small >= 0", size=10)
    assert exact.exact and exact.total == 1 and exact.rows["id"].to_pylist() == ["x4999"]


def test_a_bad_filter_is_a_viewer_error(numbers: lance.LanceDataset) -> None:
    with pytest.raises(ViewerError, match="nope"):
        queries.read_page(numbers, where="nope > 1")


def test_strings_that_are_not_utf8_are_replaced_not_raised() -> None:
    data = b"ok\xff\xfebad"
    offsets = pa.array([0, 2, len(data)], pa.int32())
    broken = pa.Array.from_buffers(pa.string(), 2, [None, offsets.buffers()[1], pa.py_buffer(data)])
    assert column_values(pa.chunked_array([broken])) == ["ok", "\ufffd\ufffdbad"]


def test_jobs_page_lists_jobs_and_their_logs(site_data: tuple[Path, Path], tmp_path: Path) -> None:
    store_module = pytest.importorskip("datagen.jobs.store", reason="the job system (datagen/jobs) is absent")
    registry_root, model_root = site_data
    store = store_module.JobStore(tmp_path / "_jobs" / "jobs.sqlite")
    job = store.submit(name="nightly", spec_path="spec.yaml", spec_text="name: nightly", overrides=[])
    Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
    Path(job.log_path).write_text("".join(f"line {i} <b>\n" for i in range(1000)))
    app = create_app(ViewerSettings(str(registry_root), model_root, jobs_path=store.path))
    with TestClient(app) as client:
        listing = client.get("/jobs").text
        assert job.id in listing and "queued" in listing and 'href="/jobs"' in listing
        log = client.get(f"/jobs/{job.id}/log").text
        assert "line 999 &lt;b&gt;" in log and "line 599 " not in log  # the last 400 lines, escaped
    without = create_app(ViewerSettings(str(registry_root), model_root))
    with TestClient(without) as client:
        assert client.get("/jobs").status_code == 404
        assert 'href="/jobs"' not in client.get("/datasets").text


def test_diff_summary_agrees_with_the_full_diff_and_a_computed_diff_is_shown_inline(
    client: TestClient, site_data: tuple[Path, Path]
) -> None:
    from datasets_registry import Registry
    from viewer.diffs import diff_summary

    registry = Registry(site_data[0])
    old, new = registry.open("chat@1"), registry.open("chat@2")
    summary, full = diff_summary(old.to_lance(), new.to_lance(), old.ref, new.ref), old.diff(new)
    assert (summary.added, summary.removed, summary.schema) == (full.added, full.removed, full.schema)
    assert summary.matched == full.changed.count + full.unchanged
    first = client.get("/datasets/chat/diff", params={"old": 2, "new": 1}).text
    assert 'data-src="/datasets/chat/diff/full?old=2&amp;new=1"' in first  # loaded by the script
    assert "changed" in client.get("/datasets/chat/diff/full", params={"old": 2, "new": 1}).text
    again = client.get("/datasets/chat/diff", params={"old": 2, "new": 1}).text
    assert 'id="diff-changed"' in again and "data-src" not in again  # computed once, now inline
    # Never computed as a pair, but both versions' digests are kept: served whole at once.
    other_way = client.get("/datasets/chat/diff", params={"old": 1, "new": 2}).text
    assert 'id="diff-changed"' in other_way and "data-src" not in other_way
    assert ">chat@1</div>" in other_way  # the first changed rows, old side, read by row offset


def test_model_page_draws_each_suites_latest_metrics_and_their_history(client: TestClient) -> None:
    html = client.get("/models/sft-demo").text
    suites = html.split('<section class="eval-suite"')[1:]
    assert [s.split("<h3>")[1].split(" ")[0] for s in suites] == ["ifeval", "xstest"]
    ifeval, xstest = suites
    assert "latest of 3 runs" in ifeval and "2026-12-03T10:00:00" in ifeval
    assert ifeval.count('<rect class="bar"') == 2 and ifeval.count('class="err"') == 2 + 2 * 3
    assert ">0.42</td>" in ifeval and ">0.31</td>" not in ifeval  # the table holds the latest run
    assert ifeval.count('<svg class="history"') == 2  # one per metric, over the three runs
    assert 'class="bar lower-better"' in xstest and 'class="history"' not in xstest  # one run
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in xstest and "<script>window" not in html
