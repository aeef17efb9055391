"""A freshly started viewer diffs versions whose digests were stored at commit in one step: the
page comes whole, as for versions whose digests it keeps; without stored digests, in two."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
from starlette.testclient import TestClient

from datasets_registry import Registry
from datasets_registry.digest_files import DIGEST_DIR
from viewer.app import ViewerSettings, create_app


def table(ids: range, answer: str) -> pa.Table:
    return pa.table(
        {
            "id": [f"r{i:03d}" for i in ids],
            "text": [f"{answer} {i}" for i in ids],
            "reward": [i / 100 for i in ids],
        }
    )


def diff_page(registry: Registry, models: Path) -> str:
    """The diff page v1 -> v2 from a viewer started just now (no digests in memory)."""
    with TestClient(create_app(ViewerSettings(registry.root, models))) as client:
        return client.get("/datasets/d/diff", params={"old": 1, "new": 2}).text


def test_a_fresh_viewer_serves_a_diff_whole_from_stored_digests(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    registry.write("d", table(range(100), "a"))
    registry.write("d", table(range(10, 110), "b"))
    page = diff_page(registry, tmp_path / "models")
    assert 'id="diff-changed"' in page and "data-src" not in page  # computed in this request
    assert ">90</td>" in page  # 90 rows in both, all changed
    shutil.rmtree(Path(registry.dataset_uri("d")) / DIGEST_DIR)
    cold = diff_page(registry, tmp_path / "models")
    assert 'data-src="/datasets/d/diff/full?old=1&amp;new=2"' in cold  # the second step, later
