"""The `openai` engine: any OpenAI-compatible chat-completions server, many requests in flight.

Built on the OpenAI SDK (`openai.AsyncOpenAI` over its aiohttp transport, typed errors), driven
from an asyncio loop on a private thread: the engine lives inside a Ray actor whose `__call__` is
synchronous, and a server answers in parallel only if we ask in parallel (ray.data.llm's HTTP
processor awaits one request after another: 7-9 req/s against a 100 ms server, where 32 in flight
did ~150 req/s; benchmarks/openai_vs_ray_http.py).

One request per (conversation, sample), bounded by `max_in_flight` (a semaphore) and
`requests_per_second` (a token bucket). The SDK's own retries are off (`max_retries=0`): it would
retry inside one call, and every attempt must pass the token bucket (a provider counts retries
too) and give up its in-flight slot while it backs off. So a small loop here retries what the
SDK's typed errors mark retryable (APIConnectionError and APITimeoutError, RateLimitError,
InternalServerError, ConflictError, 408), honouring Retry-After, with exponential backoff and
jitter up to `max_retries`; any other error fails its request at once. A failed request fails its
conversation only: `generate` returns the exception in that conversation's place.

The API key is read from the environment variable named by `api_key_env` when the engine starts;
it is never stored in config, lineage or logs, and it is removed from every error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import openai
from openai.types.chat import ChatCompletion

from assay.errors import AssayError
from datagen.engines.base import Completion
from datagen.engines.config import OpenAIEngineConfig, SamplingConfig

Conversation = Sequence[dict[str, str]]
T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PREFLIGHT_TIMEOUT_S = 10.0
MAX_RETRY_WAIT_S = 60.0  # cap on one backoff or Retry-After wait, so a row cannot stall a job
ERROR_TEXT_CHARS = 300  # how much of a server's error body goes into a message
# The SDK insists on a key; with none configured it gets this and the header is omitted, so it
# never falls back to $OPENAI_API_KEY behind the config's back.
NO_KEY_PLACEHOLDER = "no-key"


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


def resolve_base_url(config: OpenAIEngineConfig) -> str:
    """The API root without a trailing slash (OpenAI's own when `base_url` is unset)."""
    return (config.base_url or DEFAULT_BASE_URL).rstrip("/")


def read_api_key(config: OpenAIEngineConfig) -> str | None:
    """The key from the environment variable `api_key_env` names, or None (then none is sent)."""
    if not config.api_key_env:
        return None
    return os.environ.get(config.api_key_env) or None


def _missing_key_hint(config: OpenAIEngineConfig, key: str | None) -> str:
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


def _server_message(error: openai.APIStatusError) -> str:
    """The `error.message` of an OpenAI-style error body, or the body itself."""
    body = error.body  # the SDK's parse of the body: its `error` member, the JSON, or the text
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str):
        return body
    return error.response.text


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
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


def _retryable(error: Exception) -> bool:
    """Worth another attempt: no answer, or a status that says "later" (408, 409, 429, 5xx)."""
    if isinstance(error, openai.APIConnectionError | TimeoutError):  # APITimeoutError is one
        return True
    if isinstance(error, openai.RateLimitError | openai.InternalServerError | openai.ConflictError):
        return True
    return isinstance(error, openai.APIStatusError) and error.status_code == 408


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
        """Wait for a token."""
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

    def __init__(self, config: OpenAIEngineConfig, *, backoff_base_s: float = 0.5) -> None:
        self.config = config
        self.model_id = config.model
        self.base_url = resolve_base_url(config)
        self.url = f"{self.base_url}/chat/completions"
        self.backoff_base_s = backoff_base_s
        self._key = read_api_key(config)
        # With no key the Authorization header is left out of each request.
        self._extra_headers = None if self._key else {"Authorization": openai.Omit()}
        self._client: openai.AsyncOpenAI | None = None
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
        """Close the HTTP client and stop the private loop. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._close_client(), self._loop).result(timeout=10)
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

    def _ensure_client(self) -> openai.AsyncOpenAI:
        # Created on the private loop: the aiohttp session binds to the loop that first uses it.
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._key or NO_KEY_PLACEHOLDER,
                base_url=self.base_url,
                timeout=self.config.timeout_s,
                max_retries=0,  # retried here, so each attempt passes the token bucket
                # trust_env=False: like a local server's clients, ignore proxy variables.
                http_client=openai.DefaultAioHttpClient(trust_env=False),
            )
            self._semaphore = asyncio.Semaphore(self.config.max_in_flight)
            if self.config.requests_per_second:
                self._bucket = TokenBucket(self.config.requests_per_second)
        return self._client

    async def _close_client(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _generate(
        self, conversations: Sequence[Conversation], sampling: SamplingConfig
    ) -> list[list[Completion] | Exception]:
        self._ensure_client()
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
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            try:
                assert self._semaphore is not None
                async with self._semaphore:  # released while backing off
                    if self._bucket is not None:
                        await self._bucket.acquire()  # every attempt, retries included
                    response = await self._create(conversation, sampling, temperature, seed)
                return self._completion(response, temperature)
            except (openai.APIError, TimeoutError) as error:
                if not _retryable(error):
                    raise self._request_error(error) from None
                if attempt + 1 == attempts:
                    raise OpenAIRequestError(
                        f"chat completion for model {self.model_id!r} at {self.base_url} failed after "
                        f"{attempts} attempt(s): {self._describe(error)}",
                        status=getattr(error, "status_code", None),
                    ) from None
                await asyncio.sleep(self._retry_wait(attempt, error))
        raise AssertionError("unreachable: the loop returns or raises")

    async def _create(
        self, conversation: Conversation, sampling: SamplingConfig, temperature: float, seed: int
    ) -> object:
        client = self._ensure_client()
        try:
            # asyncio.timeout bounds the whole attempt: the SDK's timeout bounds each read.
            async with asyncio.timeout(self.config.timeout_s):
                return await client.chat.completions.create(
                    model=self.config.model,
                    messages=[dict(message) for message in conversation],  # type: ignore[misc]
                    temperature=temperature,
                    top_p=sampling.top_p,
                    max_tokens=sampling.max_tokens,
                    seed=seed,
                    n=1,
                    extra_headers=self._extra_headers,
                )
        except json.JSONDecodeError as error:
            raise MalformedResponseError(
                f"model {self.model_id!r} at {self.base_url} answered 200 with a body that is "
                f"not JSON: {_redact(error.doc, self._key)!r}",
                status=200,
            ) from None

    def _retry_wait(self, attempt: int, error: Exception) -> float:
        response = getattr(error, "response", None)
        retry_after = parse_retry_after(response.headers) if response is not None else None
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_WAIT_S)
        # Full-ish jitter: spread retries of requests that failed together.
        ceiling = min(self.backoff_base_s * 2**attempt, MAX_RETRY_WAIT_S)
        return ceiling * random.uniform(0.5, 1.0)

    def _describe(self, error: Exception) -> str:
        """What went wrong in one attempt, the key removed."""
        if isinstance(error, openai.APITimeoutError | TimeoutError):
            return f"no answer within timeout_s={self.config.timeout_s:g} s"
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__ or error
            return _redact(f"connection error: {type(cause).__name__}: {cause}", self._key)
        if isinstance(error, openai.APIStatusError):
            return f"HTTP {error.status_code}: {_redact(_server_message(error), self._key)}"
        return _redact(f"{type(error).__name__}: {error}", self._key)

    def _request_error(self, error: Exception) -> OpenAIRequestError:
        """Our error for an SDK error that is not worth retrying."""
        if not isinstance(error, openai.APIStatusError):
            return OpenAIRequestError(
                f"chat completion for model {self.model_id!r} at {self.base_url} failed: "
                f"{self._describe(error)}"
            )
        status = error.status_code
        message = _redact(_server_message(error), self._key)
        if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
            return OpenAIAuthError(
                f"HTTP {status} from {self.base_url}: invalid API key or no access to model "
                f"{self.model_id!r} ({_missing_key_hint(self.config, self._key)}); server said: {message}",
                status=status,
            )
        if isinstance(error, openai.NotFoundError):
            return OpenAINotFoundError(
                f"HTTP 404 from {self.url}: wrong model {self.model_id!r} or wrong base_url "
                f"{self.base_url!r} (it should be the API root, e.g. http://host:8000/v1); "
                f"server said: {message}",
                status=status,
            )
        return OpenAIRequestError(
            f"HTTP {status} from {self.base_url} for model {self.model_id!r}: {message}", status=status
        )

    def _completion(self, response: object, temperature: float) -> Completion:
        if not isinstance(response, ChatCompletion):  # e.g. a 200 that was not JSON at all
            raise MalformedResponseError(
                f"model {self.model_id!r} at {self.base_url} answered 200 with something that is "
                f"not a chat completion: {_redact(str(response), self._key)!r}",
                status=200,
            )
        # The SDK builds responses without validating them, so check what we read.
        choices = response.choices
        if not isinstance(choices, list) or not choices:
            raise MalformedResponseError(
                f"model {self.model_id!r} at {self.base_url} answered without choices: "
                f"{_redact(response.to_json(indent=None), self._key)!r}",
                status=200,
            )
        choice = choices[0]
        message = getattr(choice, "message", None)
        content = getattr(message, "content", None)
        if message is None or not isinstance(content, str | None):
            raise MalformedResponseError(
                f"model {self.model_id!r} at {self.base_url} answered a choice without a message: "
                f"{_redact(str(choice), self._key)!r}",
                status=200,
            )
        usage = response.usage
        return Completion(
            text=(content or "").strip(),
            model=self.model_id,
            temperature=temperature,
            # "length" (vLLM, OpenAI) or "max_tokens" (some servers): cut off; anything else ended.
            finish_reason="length"
            if getattr(choice, "finish_reason", None) in ("length", "max_tokens")
            else "stop",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )


def preflight(config: OpenAIEngineConfig, *, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Check before a job starts that the server answers, accepts the key and serves the model.

    Does `GET {base_url}/models` (the SDK's `models.list`, no retries) with the key from
    `api_key_env`.

    Raises:
        AssayError: The server is unreachable (within `timeout_s`), rejects the key (401/403),
            has no models endpoint there, or does not serve `config.model` (the message lists
            what it serves). The key never appears in a message.
    """
    base_url = resolve_base_url(config)
    key = read_api_key(config)
    url = f"{base_url}/models"
    client = openai.OpenAI(
        api_key=key or NO_KEY_PLACEHOLDER,
        base_url=base_url,
        timeout=timeout_s,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(trust_env=False),  # like the engine's client
    )
    try:
        page = client.models.list(extra_headers=None if key else {"Authorization": openai.Omit()})
        served = [str(model.id) for model in page.data]
    except openai.APIStatusError as error:
        body = _redact(_server_message(error), key)
        if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
            raise AssayError(
                f"engine.base_url {base_url}: HTTP {error.status_code}, invalid API key "
                f"({_missing_key_hint(config, key)}); server said: {body}"
            ) from None
        if isinstance(error, openai.NotFoundError):
            raise AssayError(
                f"engine.base_url {base_url}: GET {url} gave 404; base_url should be the API root "
                "of an OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1)"
            ) from None
        raise AssayError(
            f"engine.base_url {base_url}: GET {url} gave HTTP {error.status_code}: {body}"
        ) from None
    except openai.APIConnectionError as error:  # APITimeoutError is one
        reason = _redact(str(error.__cause__ or error), key)
        raise AssayError(
            f"engine.base_url {base_url}: server unreachable within {timeout_s:g} s ({reason}); "
            "is it running, and is the URL right?"
        ) from None
    except (ValueError, TypeError, AttributeError) as error:
        text = error.doc if isinstance(error, json.JSONDecodeError) else str(error)
        raise AssayError(
            f"engine.base_url {base_url}: GET {url} did not return an OpenAI model list: "
            f"{_redact(text, key)!r}"
        ) from None
    finally:
        client.close()
    if config.model not in served:
        shown = ", ".join(served[:20]) + (f", ... ({len(served) - 20} more)" if len(served) > 20 else "")
        raise AssayError(
            f"engine.model {config.model!r} is not served at {base_url}; served: {shown or '(none)'}"
        )
