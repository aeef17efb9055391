"""A small OpenAI-compatible server for tests and benchmarks: aiohttp.web on a background thread.

    with FakeOpenAIServer(latency_s=0.01, api_key="sk-test") as server:
        engine = OpenAIEngine(EngineConfig(backend="openai", model="test-model",
                                           base_url=server.base_url))

It listens on 127.0.0.1, port 0 (the OS picks a free one). Replies are deterministic from the
request: `echo: <last user message> | t=<temperature> | seed=<seed>`, cut to `max_tokens` words
(then finish_reason is "length" and the words are joined by single spaces; an uncut reply keeps
its whitespace); usage counts words. Scripted failures:

- `fail_first` requests to /chat/completions get `fail_status` (with `Retry-After: retry_after`
  when set), whatever their prompt;
- a last user message containing a key of `fail_markers` always gets that status;
- one containing `MALFORMED_JSON` gets 200 with a body that is not JSON, `NO_CHOICES` gets 200
  with `{"choices": []}`.

Counters: `requests` (chat requests received), `model_listings`, `in_flight`, `max_in_flight`,
`log` (monotonic arrival time, parsed body) of every chat request, and `authorizations` (the
Authorization header of every request, None when absent). A rejected key is echoed in the 401's
message, as OpenAI echoes part of it, so tests can check that clients redact it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

MALFORMED_MARKER = "MALFORMED_JSON"
NO_CHOICES_MARKER = "NO_CHOICES"


def reply_text(last_user: str, temperature: float, seed: int) -> str:
    """The text the server answers for a request (before the max_tokens cut)."""
    return f"echo: {last_user} | t={temperature:g} | seed={seed}"


class FakeOpenAIServer:
    """An OpenAI-compatible chat-completions server with knobs; a context manager.

    Args:
        latency_s: Seconds each chat request waits before answering.
        api_key: When set, requests without `Authorization: Bearer <api_key>` get 401.
        models: Model names served; another model gets 404.
        fail_first: The first this-many chat requests fail with `fail_status`.
        fail_status: Status for the `fail_first` requests (429, 500, ...).
        retry_after: `Retry-After` header value sent with those failures (e.g. "0.3").
        fail_markers: Marker text → status for requests whose last user message contains it.
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        api_key: str | None = None,
        models: Sequence[str] = ("test-model",),
        fail_first: int = 0,
        fail_status: int = 429,
        retry_after: str | None = None,
        fail_markers: Mapping[str, int] | None = None,
    ) -> None:
        self.latency_s = latency_s
        self.api_key = api_key
        self.models = list(models)
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.fail_markers = dict(fail_markers or {})
        self.requests = 0
        self.model_listings = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.log: list[tuple[float, dict[str, Any]]] = []
        self.authorizations: list[str | None] = []
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FakeOpenAIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start serving on 127.0.0.1 (a free port); sets `base_url`."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-openai", daemon=True)
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._list_models)
        # handler_cancellation: a client that timed out stops its handler (and the in-flight count).
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.2, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return self._runner.addresses[0][1]

    # -- handlers -----------------------------------------------------------------------------

    def _unauthorised(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization")
        self.authorizations.append(given)
        if self.api_key is None or given == f"Bearer {self.api_key}":
            return None
        return _error(401, f"Incorrect API key provided: {given}.", "invalid_api_key")

    async def _list_models(self, request: web.Request) -> web.Response:
        self.model_listings += 1
        if (denied := self._unauthorised(request)) is not None:
            return denied
        data = [{"id": name, "object": "model", "owned_by": "test"} for name in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.Response:
        self.requests += 1
        number = self.requests
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.json()
            self.log.append((time.monotonic(), body))
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return self._answer(request, body, number)
        finally:
            self.in_flight -= 1

    def _answer(self, request: web.Request, body: dict[str, Any], number: int) -> web.Response:
        if (denied := self._unauthorised(request)) is not None:
            return denied
        if number <= self.fail_first:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
            return _error(self.fail_status, f"scripted failure {number}", "scripted", headers)
        model = body.get("model")
        if model not in self.models:
            return _error(404, f"The model `{model}` does not exist.", "model_not_found")
        messages = body.get("messages") or []
        last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        for marker, status in self.fail_markers.items():
            if marker in last_user:
                return _error(status, f"scripted failure for marker {marker}", "scripted")
        if MALFORMED_MARKER in last_user:
            return web.Response(status=200, text="{not json", content_type="application/json")
        if NO_CHOICES_MARKER in last_user:
            return web.json_response({"id": "x", "object": "chat.completion", "choices": []})
        text = reply_text(last_user, float(body.get("temperature", 1.0)), int(body.get("seed", 0)))
        words = text.split()
        max_tokens = int(body.get("max_tokens") or len(words))
        kept = words[:max_tokens]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        return web.json_response(
            {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        # Uncut, the text keeps its whitespace (code blocks stay code blocks).
                        "message": {
                            "role": "assistant",
                            "content": " ".join(kept) if len(kept) < len(words) else text,
                        },
                        "finish_reason": "length" if len(kept) < len(words) else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(kept),
                    "total_tokens": prompt_tokens + len(kept),
                },
            }
        )


def _error(status: int, message: str, code: str, headers: Mapping[str, str] | None = None) -> web.Response:
    payload = {"error": {"message": message, "type": "test_error", "code": code}}
    return web.Response(
        status=status, text=json.dumps(payload), content_type="application/json", headers=headers
    )
