"""A real S3-compatible server (moto in server mode) on 127.0.0.1, for tests of what assay
stores on an object store.

Lance reaches it over HTTP exactly as it reaches AWS S3; the only difference is the endpoint
and the credentials it reads from the environment (`S3Server.environment`).

moto checks `If-None-Match: *` (the conditional put Lance commits manifests with) and then
stores the object in two steps, and its server runs each request in a thread of its own: two
racing commits of one version could both pass the check. Real S3 does the check and the write
atomically, so the server here runs writes one at a time (reads stay concurrent).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

REGION = "us-east-1"
# moto accepts any credentials; these are what the client signs with.
ACCESS_KEY = "assay-test-key"
SECRET_KEY = "assay-test-secret"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _serialised_writes(app: WsgiApp, after_listing: dict[str, Callable[[], None]]) -> WsgiApp:
    """`app` with every request that changes state (anything but GET and HEAD) run alone, and
    the actions of `S3Server.after_listing` run where due."""
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            query = parse_qs(environ.get("QUERY_STRING", ""))
            listed = f"{environ.get('PATH_INFO', '').strip('/')}/{query.get('prefix', [''])[0]}"
            action = after_listing.pop(listed, None) if "list-type" in query else None
            if action is None:
                return app(environ, start_response)
            answer = list(app(environ, start_response))
            action()  # outside the lock: it may write
            return answer
        with lock:
            # Drained inside the lock: moto builds its whole response before returning.
            return list(app(environ, start_response))

    return serve


@dataclass(frozen=True)
class S3Server:
    """A running server: where it listens and a client for it."""

    endpoint: str
    _after_listing: dict[str, Callable[[], None]] = field(default_factory=dict, repr=False)

    def after_listing(self, bucket: str, prefix: str, action: Callable[[], None]) -> None:
        """Run `action` once, the next time a client lists `prefix` in `bucket`: after the
        listing is made and before the client gets it, so the client acts on a listing that
        `action` made stale (another writer's commit landing at just that moment)."""
        self._after_listing[f"{bucket}/{prefix}"] = action

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def environment(self) -> dict[str, str]:
        """The variables Lance (object_store), pyarrow and boto3 read to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",  # the server speaks plain HTTP
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def create_bucket(self, name: str) -> None:
        """Create an empty bucket."""
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> set[str]:
        """Every object key in `bucket` under `prefix`."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}


@contextmanager
def running_s3_server() -> Iterator[S3Server]:
    """Start a moto S3 server on a free port of 127.0.0.1; stop it on exit."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    after_listing: dict[str, Callable[[], None]] = {}
    app = _serialised_writes(DomainDispatcherApplication(create_backend_app), after_listing)
    # Port 0: the system picks a free one, with no window for another process to take it.
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True)
    thread.start()
    try:
        yield S3Server(endpoint=f"http://127.0.0.1:{server.server_port}", _after_listing=after_listing)
    finally:
        server.shutdown()
        thread.join(timeout=10)
