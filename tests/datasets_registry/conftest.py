"""Fixtures for the registry on an object store: a moto S3 server for the session, and a fresh
bucket with the environment that points Lance at it for each test."""

import itertools
from collections.abc import Iterator

import pytest
from s3_server import S3Server, running_s3_server

_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One S3-compatible server on 127.0.0.1 for the whole session (it starts in milliseconds,
    but Lance caches its connections per endpoint)."""
    with running_s3_server() as server:
        yield server


@pytest.fixture
def s3_root(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """`s3://BUCKET/registry` in a new empty bucket, with the AWS_* variables set (for this
    process and the subprocesses it starts) as a user sets them for a real store."""
    for key, value in s3_server.environment().items():
        monkeypatch.setenv(key, value)
    bucket = f"assay-test-{next(_buckets)}"
    s3_server.create_bucket(bucket)
    return f"s3://{bucket}/registry"
