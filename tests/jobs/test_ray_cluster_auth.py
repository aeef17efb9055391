"""Joining a `ray start --head` cluster (token authentication on by default in Ray 2.60): it
works out of the box when the head's token is at hand, and fails in one line saying what to
set when it is not."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

BIN = Path(sys.executable).parent
JOIN = "import sys; from datagen.job import start_ray; import ray; start_ray(sys.argv[1], None); print('CPUs', ray.cluster_resources()['CPU'])"  # noqa: E501


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real head with 1 CPU, its own temp dir and its own HOME (where it writes its token)."""
    import tempfile

    home = tmp_path / "head-home"
    home.mkdir()
    # Ray's socket paths must stay under 107 bytes: a short folder of its own, not under tmp_path.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(home)}
    # As on a machine where the user once ran `ray get-auth-token --generate` (or another head
    # did): `ray start --head` then turns token authentication on.
    made = subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    started = subprocess.run(
        [str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=1", "--disable-usage-stats",
         "--include-dashboard=false", f"--temp-dir={temp}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}", home
    finally:  # this cluster's processes only (never `ray stop`: other Rays may be running)
        for process in psutil.process_iter(["cmdline"]):
            if str(temp) in " ".join(process.info["cmdline"] or []):
                try:
                    process.kill()
                except psutil.NoSuchProcess:
                    pass
        shutil.rmtree(temp, ignore_errors=True)


def join(address: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(home)}
    return subprocess.run([sys.executable, "-c", JOIN, address], env=env, capture_output=True, text=True,
                          timeout=180)  # fmt: skip


@pytest.mark.slow  # a real head and two clients: about 30 s
def test_joining_a_token_cluster_works_out_of_the_box_or_says_what_to_set(
    ray_head: tuple[str, Path], tmp_path: Path
) -> None:
    address, head_home = ray_head
    assert (head_home / ".ray" / "auth_token").is_file()  # Ray turned token authentication on
    joined = join(address, head_home)  # a client that has the token, RAY_AUTH_MODE unset
    assert joined.returncode == 0 and "CPUs 1.0" in joined.stdout, joined.stderr[-2000:]

    stranger = tmp_path / "no-token-home"
    stranger.mkdir()
    refused = join(address, stranger)
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert "requires token authentication" in last and "RAY_AUTH_MODE=token" in last
    assert "ray get-auth-token" in last
