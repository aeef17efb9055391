"""A warm pool: requests go to idle workers, one request per worker at a time; broken workers
are discarded and replaced in the background, so a hostile program costs at most its container.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, Self

from sandbox.errors import SandboxError
from sandbox.execution import ExecRequest, ExecResult
from sandbox.validation import validate_request

log = logging.getLogger(__name__)


class WorkerBroken(Exception):
    """The worker (container) did not answer properly and must not be reused."""


class Worker(Protocol):
    """One isolated executor: a container with its fork server."""

    def execute(self, request: ExecRequest) -> ExecResult:
        """Run the request; raise WorkerBroken when the worker itself failed."""

    def close(self) -> None:
        """Stop and remove the worker."""


class WarmPool:
    """Keeps `size` workers ready and hands each request to an idle one.

    Args:
        factory: Starts a new, ready worker (raises on failure).
        size: Number of workers kept warm.
        backend: Name reported in the ExecResult of a request whose worker broke.
        acquire_timeout_s: Longest wait for an idle worker.
    """

    def __init__(
        self, factory: Callable[[], Worker], size: int, backend: str, acquire_timeout_s: float = 600.0
    ) -> None:
        self._factory = factory
        self._size = size
        self._backend = backend
        self._acquire_timeout_s = acquire_timeout_s
        self._idle: queue.Queue[Worker | None] = queue.Queue()
        self._lock = threading.Lock()
        self._workers: set[Worker] = set()  # idle and busy
        self._starting = 0
        self._closed = False
        self.replaced = 0  # workers replaced after breaking
        with ThreadPoolExecutor(max_workers=size) as starter:
            futures = [starter.submit(factory) for _ in range(size)]
        errors = [f.exception() for f in futures if f.exception() is not None]
        for future in futures:
            if future.exception() is None:
                worker = future.result()
                self._workers.add(worker)
                self._idle.put(worker)
        if errors:
            self.close()
            raise SandboxError(f"could not start {len(errors)} of {size} sandbox workers: {errors[0]}")

    @property
    def size(self) -> int:
        """Workers alive or starting."""
        with self._lock:
            return len(self._workers) + self._starting

    def run(self, request: ExecRequest) -> ExecResult:
        """Execute on an idle worker; a broken worker's request gets an `error` result (retry-worthy)."""
        worker = self._acquire()
        try:
            result = worker.execute(request)
        except WorkerBroken as err:
            self._discard(worker)
            return ExecResult(steps=(), backend=self._backend, error=f"sandbox broke and was replaced: {err}")
        except BaseException:
            self._discard(worker)
            raise
        self._release(worker)
        return result

    def _acquire(self) -> Worker:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        try:
            worker = self._idle.get(timeout=self._acquire_timeout_s)
        except queue.Empty:
            raise SandboxError(f"no idle sandbox within {self._acquire_timeout_s:.0f} s") from None
        if worker is None:  # close() wakes waiters with None
            self._idle.put(None)
            raise SandboxError("the sandbox is closed")
        return worker

    def _release(self, worker: Worker) -> None:
        if self._closed:
            self._close_worker(worker)
        else:
            self._idle.put(worker)

    def _discard(self, worker: Worker) -> None:
        self._close_worker(worker)
        with self._lock:
            if self._closed:
                return
            self._starting += 1
            self.replaced += 1
        threading.Thread(target=self._replace, name="sandbox-replace", daemon=True).start()

    def _replace(self) -> None:
        try:
            worker = self._factory()
        except Exception as err:  # noqa: BLE001 - a pool one worker smaller still works
            log.error("could not replace a broken sandbox worker: %s", err)
            with self._lock:
                self._starting -= 1
                empty = not self._workers and not self._starting
            if empty:
                self._idle.put(None)  # nobody will ever serve: fail waiters instead of hanging
            return
        with self._lock:
            self._starting -= 1
            if not self._closed:
                self._workers.add(worker)
                self._idle.put(worker)
                return
        worker.close()

    def _close_worker(self, worker: Worker) -> None:
        with self._lock:
            self._workers.discard(worker)
        try:
            worker.close()
        except Exception as err:  # noqa: BLE001 - closing is best effort; the reaper catches leftovers
            log.warning("closing a sandbox worker failed: %s", err)

    def close(self) -> None:
        """Close every worker, idle or busy (a busy one is closed when its request returns)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
            self._workers.clear()
        self._idle.put(None)
        with ThreadPoolExecutor(max_workers=max(1, len(workers))) as closer:
            list(closer.map(self._close_quietly, workers))

    @staticmethod
    def _close_quietly(worker: Worker) -> None:
        try:
            worker.close()
        except Exception as err:  # noqa: BLE001
            log.warning("closing a sandbox worker failed: %s", err)


class PooledSandbox:
    """What every backend's `Sandbox` shares: requests are validated, then run by a warm pool.

    Subclasses set `backend` and `_pool` and stop their workers in `close`.
    """

    backend: str
    _pool: WarmPool

    @property
    def pool(self) -> WarmPool:
        """The warm pool (for inspection: size, replaced)."""
        return self._pool

    def execute(self, request: ExecRequest) -> ExecResult:
        """Run the request in an idle warm worker (thread-safe).

        Raises:
            InvalidRequest: a file name escapes the work directory, a step has no argv, bad limits.
        """
        validate_request(request)
        return self._pool.run(request)

    def close(self) -> None:
        """Stop every worker of the pool."""
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
