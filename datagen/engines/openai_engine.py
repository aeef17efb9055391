"""The `openai` engine: any OpenAI-compatible chat-completions server, many requests in flight.

One request per (conversation, sample), sent with aiohttp from an asyncio loop on a private
thread: the engine lives inside a Ray actor whose `__call__` is synchronous, and a server answers
in parallel only if we ask in parallel (ray.data.llm's HTTP processor awaits one request after
another: ~6 req/s against a 100 ms server, where 32 in flight did 127 req/s).

Requests are bounded by `max_in_flight` (a semaphore) and `requests_per_second` (a token bucket);
connection errors, timeouts, 429 (honouring Retry-After) and 5xx are retried with exponential
backoff and jitter up to `max_retries`; any other 4xx fails its request at once. A failed request
fails its conversation only: `generate` returns the exception in that conversation's place.

The API key is read from the environment variable named by `api_key_env` when the engine starts;
it is never stored in config, lineage, logs or error messages.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import aiohttp

from assay.errors import AssayError
from datagen.engines.base import Completion
from datagen.engines.config import EngineConfig, SamplingConfig

Conversation = Sequence[dict[str, str]]
T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PREFLIGHT_TIMEOUT_S = 10.0
MAX_RETRY_WAIT_S = 60.0  # cap on one backoff or Retry-After wait, so a row cannot stall a job
RETRYABLE_STATUSES = frozenset({408, 409, 429})  # plus every 5xx
ERROR_TEXT_CHARS = 300  # how much of a server's error body goes into a message


class OpenAIRequestError(RuntimeError):
    """A chat-completions request that failed (after retries, where retrying made sense).

    Attributes:
        status: The HTTP status of the last attempt, or None when no response came back.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OpenAIAuthError(OpenAIRequestError):
    """The server rejected the API key (401/403)."""


class OpenAINotFoundError(OpenAIRequestError):
    """The server does not know the model or the URL (404)."""


class MalformedResponseError(OpenAIRequestError):
    """The server answered 200 with something that is not a chat completion."""


class _Retryable(Exception):
    """One failed attempt worth retrying; `retry_after` is the server's wait, if it gave one."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def resolve_base_url(config: EngineConfig) -> str:
    """The API root without a trailing slash (OpenAI's own when `base_url` is unset)."""
    return (config.base_url or DEFAULT_BASE_URL).rstrip("/")


def read_api_key(config: EngineConfig) -> str | None:
    """The key from the environment variable `api_key_env` names, or None (then none is sent)."""
    if not config.api_key_env:
        return None
    return os.environ.get(config.api_key_env) or None


def _missing_key_hint(config: EngineConfig, key: str | None) -> str:
    if key is not None:
        return f"the key in ${config.api_key_env} was rejected"
    if config.api_key_env:
        return f"no key was sent: environment variable {config.api_key_env} is not set"
    return "no key was sent: engine.api_key_env is unset"


def _redact(text: str, key: str | None) -> str:
    """A server's error text, shortened, with the key removed should the server echo it."""
    if key:
        text = text.replace(key, "***")
    text = " ".join(text.split())
    return text[:ERROR_TEXT_CHARS] + ("..." if len(text) > ERROR_TEXT_CHARS else "")


def _server_message(body: str) -> str:
    """The `error.message` of an OpenAI-style error body, or the body itself."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return body
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return error if isinstance(error, str) else body


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class TokenBucket:
    """At most `rate` acquisitions per second on average, and at most `capacity` at once.

    With capacity 1 (the engine's choice) starts are evenly spaced, so no one-second window sees
    more than `rate` + 1 requests: providers count per second or per minute, and a burst of
    `rate` requests right at the start is what trips them.
    """

    def __init__(self, rate: float, capacity: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        # The lock queues waiters in order, so each sleeps only for its own token.
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)


class OpenAIEngine:
    """Chat completions from an OpenAI-compatible server, many requests in flight.

    Args:
        config: The engine config (`backend: openai`): `model`, `base_url`, `api_key_env`,
            `max_in_flight`, `requests_per_second`, `timeout_s`, `max_retries`.
        backoff_base_s: The first retry waits about this long (with jitter), doubling each
            retry, at most 60 s; a Retry-After from the server replaces it. Tests shorten it.
    """

    def __init__(self, config: EngineConfig, *, backoff_base_s: float = 0.5) -> None:
        self.config = config
        self.model_id = config.model
        self.base_url = resolve_base_url(config)
        self.url = f"{self.base_url}/chat/completions"
        self.backoff_base_s = backoff_base_s
        self._key = read_api_key(config)
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._bucket: TokenBucket | None = None
        self._closed = False
        # A private loop: the caller (a Ray actor's synchronous __call__) may have none, or one
        # we must not block. Daemon, so a forgotten close() never keeps a process alive.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"openai-engine-{self.model_id}", daemon=True
        )
        self._thread.start()

    # -- public API ---------------------------------------------------------------------------

    def check_prompt(self, conversation: Conversation) -> None:
        """No check here: the server enforces its context length (a 400 fails that row)."""

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingConfig
    ) -> list[list[Completion] | Exception]:
        """Sample `sampling.n` completions per conversation, all requests in flight together.

        Sample k uses temperature `sampling.temperatures()[k]` and seed `sampling.seed + k`.

        Returns:
            One entry per conversation, in order: its `n` completions, or the exception that
            made one of its requests fail (the others are cancelled), so a bad row fails alone.
        """
        if not conversations:
            return []
        return self._run(self._generate(conversations, sampling))

    def close(self) -> None:
        """Close the HTTP session and stop the private loop. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._close_session(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> OpenAIEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside the private loop ----------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coroutine.close()
            raise RuntimeError("the openai engine is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"Content-Type": "application/json"}
            if self._key:
                headers["Authorization"] = f"Bearer {self._key}"
            connector = aiohttp.TCPConnector(limit=self.config.max_in_flight)
            self._session = aiohttp.ClientSession(
                headers=headers,
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            )
            self._semaphore = asyncio.Semaphore(self.config.max_in_flight)
            if self.config.requests_per_second:
                self._bucket = TokenBucket(self.config.requests_per_second)
        return self._session

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _generate(
        self, conversations: Sequence[Conversation], sampling: SamplingConfig
    ) -> list[list[Completion] | Exception]:
        self._ensure_session()
        rows = [self._row(conversation, sampling) for conversation in conversations]
        results = await asyncio.gather(*rows, return_exceptions=True)
        out: list[list[Completion] | Exception] = []
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancellation or interpreter exit is not a row failure
            out.append(result)
        return out

    async def _row(self, conversation: Conversation, sampling: SamplingConfig) -> list[Completion]:
        tasks = [
            asyncio.ensure_future(self._complete(conversation, sampling, temperature, sampling.seed + k))
            for k, temperature in enumerate(sampling.temperatures())
        ]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:  # one sample failed: the row fails, so stop paying for the rest
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _complete(
        self, conversation: Conversation, sampling: SamplingConfig, temperature: float, seed: int
    ) -> Completion:
        payload = {
            "model": self.config.model,
            "messages": [dict(message) for message in conversation],
            "temperature": temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": seed,
            "n": 1,
        }
        body = json.dumps(payload)
        attempts = self.config.max_retries + 1
        last: _Retryable | None = None
        for attempt in range(attempts):
            try:
                assert self._semaphore is not None
                async with self._semaphore:  # released while backing off
                    if self._bucket is not None:
                        await self._bucket.acquire()
                    data = await self._post(body)
                return self._completion(data, temperature)
            except _Retryable as error:
                last = error
                if attempt + 1 < attempts:
                    await asyncio.sleep(self._retry_wait(attempt, error.retry_after))
        assert last is not None
        raise OpenAIRequestError(
            f"chat completion for model {self.model_id!r} at {self.base_url} failed after "
            f"{attempts} attempt(s): {last}",
            status=last.status,
        )

    def _retry_wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_WAIT_S)
        # Full-ish jitter: spread retries of requests that failed together.
        ceiling = min(self.backoff_base_s * 2**attempt, MAX_RETRY_WAIT_S)
        return ceiling * random.uniform(0.5, 1.0)

    async def _post(self, body: str) -> dict[str, Any]:
        session = self._ensure_session()
        try:
            async with session.post(self.url, data=body) as response:
                text = (await response.read()).decode("utf-8", errors="replace")
                status = response.status
                headers = response.headers
        except TimeoutError as error:
            raise _Retryable(f"no answer within timeout_s={self.config.timeout_s:g} s") from error
        except aiohttp.ClientError as error:
            raise _Retryable(f"connection error: {type(error).__name__}: {error}") from error
        if status == 200:
            try:
                data = json.loads(text)
            except ValueError as error:
                raise MalformedResponseError(
                    f"model {self.model_id!r} at {self.base_url} answered 200 with a body that is "
                    f"not JSON: {_redact(text, self._key)!r}",
                    status=status,
                ) from error
            if not isinstance(data, dict):
                raise MalformedResponseError(
                    f"model {self.model_id!r} at {self.base_url} answered 200 with JSON that is "
                    f"not an object: {_redact(text, self._key)!r}",
                    status=status,
                )
            return data
        message = _redact(_server_message(text), self._key)
        if status in RETRYABLE_STATUSES or status >= 500:
            raise _Retryable(f"HTTP {status}: {message}", status, parse_retry_after(headers))
        if status in (401, 403):
            raise OpenAIAuthError(
                f"HTTP {status} from {self.base_url}: invalid API key or no access to model "
                f"{self.model_id!r} ({_missing_key_hint(self.config, self._key)}); server said: {message}",
                status=status,
            )
        if status == 404:
            raise OpenAINotFoundError(
                f"HTTP 404 from {self.url}: wrong model {self.model_id!r} or wrong base_url "
                f"{self.base_url!r} (it should be the API root, e.g. http://host:8000/v1); "
                f"server said: {message}",
                status=status,
            )
        raise OpenAIRequestError(
            f"HTTP {status} from {self.base_url} for model {self.model_id!r}: {message}", status=status
        )

    def _completion(self, data: dict[str, Any], temperature: float) -> Completion:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise MalformedResponseError(
                f"model {self.model_id!r} at {self.base_url} answered without choices: "
                f"{_redact(json.dumps(data), self._key)!r}"
            )
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content", ""), str | None):
            raise MalformedResponseError(
                f"model {self.model_id!r} at {self.base_url} answered a choice without a message: "
                f"{_redact(json.dumps(choice), self._key)!r}"
            )
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Completion(
            text=(message.get("content") or "").strip(),
            model=self.model_id,
            temperature=temperature,
            # "length" (vLLM, OpenAI) or "max_tokens" (some servers): cut off; anything else ended.
            finish_reason="length" if choice.get("finish_reason") in ("length", "max_tokens") else "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )


def preflight(config: EngineConfig, *, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Check before a job starts that the server answers, accepts the key and serves the model.

    Does `GET {base_url}/models` with the key from `api_key_env`.

    Raises:
        AssayError: The server is unreachable (within `timeout_s`), rejects the key (401/403),
            has no models endpoint there, or does not serve `config.model` (the message lists
            what it serves). The key never appears in a message.
    """
    base_url = resolve_base_url(config)
    key = read_api_key(config)
    url = f"{base_url}/models"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    # Like the engine's aiohttp session, ignore proxy environment variables.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        body = _redact(_server_message(error.read().decode("utf-8", errors="replace")), key)
        if error.code in (401, 403):
            raise AssayError(
                f"engine.base_url {base_url}: HTTP {error.code}, invalid API key "
                f"({_missing_key_hint(config, key)}); server said: {body}"
            ) from None
        if error.code == 404:
            raise AssayError(
                f"engine.base_url {base_url}: GET {url} gave 404; base_url should be the API root "
                "of an OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1)"
            ) from None
        raise AssayError(f"engine.base_url {base_url}: GET {url} gave HTTP {error.code}: {body}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise AssayError(
            f"engine.base_url {base_url}: server unreachable within {timeout_s:g} s ({reason}); "
            "is it running, and is the URL right?"
        ) from None
    try:
        listing = json.loads(text)
        served = [str(entry["id"]) for entry in listing["data"]]
    except (ValueError, KeyError, TypeError):
        raise AssayError(
            f"engine.base_url {base_url}: GET {url} did not return an OpenAI model list: "
            f"{_redact(text, key)!r}"
        ) from None
    if config.model not in served:
        shown = ", ".join(served[:20]) + (f", ... ({len(served) - 20} more)" if len(served) > 20 else "")
        raise AssayError(
            f"engine.model {config.model!r} is not served at {base_url}; served: {shown or '(none)'}"
        )
