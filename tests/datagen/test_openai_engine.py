"""The `openai` engine against a local fake server: row/sample mapping, retries, per-row failures,
auth and model errors, timeouts, malformed answers, concurrency and rate limits, preflight."""

import socket
import time
from collections.abc import Iterator

import pytest
from openai_server import MALFORMED_MARKER, NO_CHOICES_MARKER, FakeOpenAIServer, reply_text
from timing import bound

from assay.errors import AssayError
from datagen.engines.config import OpenAIEngineConfig, SamplingConfig
from datagen.engines.openai_engine import (
    MalformedResponseError,
    OpenAIAuthError,
    OpenAIEngine,
    OpenAINotFoundError,
    OpenAIRequestError,
    parse_retry_after,
    preflight,
)

KEY = "sk-test-secret-123"
KEY_ENV = "ASSAY_TEST_OPENAI_KEY"


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def config(server: FakeOpenAIServer, **overrides: object) -> OpenAIEngineConfig:
    fields = dict(
        backend="openai",
        model="test-model",
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        max_in_flight=8,
        timeout_s=5.0,
        max_retries=3,
    )
    return OpenAIEngineConfig(**(fields | overrides))


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def make_engine() -> Iterator:
    engines: list[OpenAIEngine] = []

    def make(server: FakeOpenAIServer, **overrides: object) -> OpenAIEngine:
        engines.append(OpenAIEngine(config(server, **overrides), backoff_base_s=0.01))
        return engines[-1]

    yield make
    for engine in engines:
        engine.close()


def test_completions_map_to_rows_and_samples(make_engine) -> None:
    prompts = [f"prompt number {i}" for i in range(10)]
    sampling = SamplingConfig(n=3, temperature=[0.0, 0.7, 1.2], seed=40, max_tokens=64)
    with FakeOpenAIServer(latency_s=0.005, api_key=KEY) as server:
        engine = make_engine(server)
        results = engine.generate([chat(p) for p in prompts], sampling)
        assert server.requests == 30
    assert len(results) == len(prompts)
    for prompt, completions in zip(prompts, results, strict=True):
        assert isinstance(completions, list)
        assert [c.temperature for c in completions] == [0.0, 0.7, 1.2]
        for k, completion in enumerate(completions):
            expected = reply_text(prompt, [0.0, 0.7, 1.2][k], 40 + k)
            assert completion.text == expected
            assert completion.model == "test-model"
            assert completion.finish_reason == "stop"
            assert completion.prompt_tokens == 2 + len(prompt.split())  # "be brief" + prompt
            assert completion.completion_tokens == len(expected.split())
    # the request itself carried the sampling settings
    bodies = [body for _, body in server.log]
    assert {b["top_p"] for b in bodies} == {1.0} and {b["max_tokens"] for b in bodies} == {64}
    assert engine.generate([], sampling) == []


def test_max_tokens_cut_is_length(make_engine) -> None:
    with FakeOpenAIServer() as server:
        (completions,) = make_engine(server).generate([chat("a b c d e f")], SamplingConfig(max_tokens=3))
    (completion,) = completions
    assert completion.finish_reason == "length"
    assert completion.completion_tokens == 3 and completion.text == "echo: a b"


def test_retries_429_honouring_retry_after_then_succeeds(make_engine) -> None:
    with FakeOpenAIServer(fail_first=2, fail_status=429, retry_after="0.25") as server:
        started = time.monotonic()
        (completions,) = make_engine(server).generate([chat("hi")], SamplingConfig(seed=3))
        elapsed = time.monotonic() - started
        times = [t for t, _ in server.log]
    assert completions[0].text == reply_text("hi", 0.7, 3)
    assert server.requests == 3
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(gap >= 0.24 for gap in gaps), gaps  # waited as told, not the 10 ms backoff
    assert elapsed < bound(2.0)


def test_retries_500_then_succeeds(make_engine) -> None:
    with FakeOpenAIServer(fail_first=3, fail_status=500) as server:
        results = make_engine(server, max_in_flight=1).generate([chat("x"), chat("y")], SamplingConfig())
        assert server.requests == 5
    assert [r[0].text for r in results] == [reply_text("x", 0.7, 0), reply_text("y", 0.7, 0)]


def test_a_row_that_keeps_failing_fails_alone(make_engine) -> None:
    prompts = ["fine one", "ALWAYS_503 here", "fine two", "BAD_400 here"]
    with FakeOpenAIServer(fail_markers={"ALWAYS_503": 503, "BAD_400": 400}) as server:
        results = make_engine(server, max_retries=2).generate([chat(p) for p in prompts], SamplingConfig(n=2))
        bad_requests = [b for _, b in server.log if "ALWAYS_503" in b["messages"][-1]["content"]]
        bad_400 = [b for _, b in server.log if "BAD_400" in b["messages"][-1]["content"]]
    assert [c.text for c in results[0]] == [reply_text("fine one", 0.7, 0), reply_text("fine one", 0.7, 1)]
    assert [c.text for c in results[2]] == [reply_text("fine two", 0.7, 0), reply_text("fine two", 0.7, 1)]
    assert isinstance(results[1], OpenAIRequestError) and results[1].status == 503
    assert "3 attempt(s)" in str(results[1]) and "ALWAYS_503" in str(results[1])
    assert len(bad_requests) <= 2 * 3  # two samples, three attempts each at most
    assert isinstance(results[3], OpenAIRequestError) and results[3].status == 400
    assert len(bad_400) <= 2  # a 400 is not retried


def test_wrong_key_is_a_clear_error_without_the_key(make_engine, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-456")
    with FakeOpenAIServer(api_key=KEY) as server:
        results = make_engine(server).generate([chat("a"), chat("b")], SamplingConfig())
        assert server.requests == 2  # not retried
    for error in results:  # the server echoes the key it got: the message must not
        assert isinstance(error, OpenAIAuthError)
        assert "401" in str(error) and "invalid API key" in str(error) and KEY_ENV in str(error)
        assert "sk-wrong-key-456" not in str(error) and KEY not in str(error)


def test_unset_key_says_so(make_engine, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with FakeOpenAIServer(api_key=KEY) as server:
        (error,) = make_engine(server).generate([chat("a")], SamplingConfig())
    assert isinstance(error, OpenAIAuthError) and f"{KEY_ENV} is not set" in str(error)


def test_unknown_model_is_404_naming_model_and_url(make_engine) -> None:
    with FakeOpenAIServer() as server:
        (error,) = make_engine(server, model="nope-model").generate([chat("a")], SamplingConfig())
    assert isinstance(error, OpenAINotFoundError)
    assert "nope-model" in str(error) and server.base_url in str(error)


def test_timeouts_are_bounded(make_engine) -> None:
    with FakeOpenAIServer(latency_s=1.0) as server:
        engine = make_engine(server, timeout_s=0.1, max_retries=1)
        started = time.monotonic()
        (error,) = engine.generate([chat("slow")], SamplingConfig())
        elapsed = time.monotonic() - started
        assert server.requests == 2
    assert isinstance(error, OpenAIRequestError) and "timeout_s=0.1" in str(error)
    assert elapsed < bound(0.6)


def test_malformed_answers_fail_their_row(make_engine) -> None:
    with FakeOpenAIServer() as server:
        results = make_engine(server).generate(
            [chat(f"x {MALFORMED_MARKER}"), chat("ok"), chat(f"y {NO_CHOICES_MARKER}")], SamplingConfig()
        )
        assert server.requests == 3  # a malformed 200 is not retried
    assert isinstance(results[0], MalformedResponseError) and "not JSON" in str(results[0])
    assert results[1][0].text == reply_text("ok", 0.7, 0)
    assert isinstance(results[2], MalformedResponseError) and "without choices" in str(results[2])


def test_max_in_flight_is_respected(make_engine) -> None:
    with FakeOpenAIServer(latency_s=0.02) as server:
        results = make_engine(server, max_in_flight=4).generate(
            [chat(str(i)) for i in range(20)], SamplingConfig(n=2)
        )
        assert server.requests == 40
        assert server.max_in_flight == 4  # reached, never exceeded
    assert all(isinstance(r, list) for r in results)


def test_requests_per_second_bounds_the_rate(make_engine) -> None:
    with FakeOpenAIServer() as server:
        engine = make_engine(server, requests_per_second=40.0, max_in_flight=32)
        started = time.monotonic()
        engine.generate([chat(str(i)) for i in range(12)], SamplingConfig())
        elapsed = time.monotonic() - started
        times = sorted(t for t, _ in server.log)
    assert elapsed >= 11 / 40 * 0.95  # 12 evenly spaced starts at 40/s
    window = [sum(1 for t in times if start <= t < start + 0.1) for start in times]
    assert max(window) <= 5  # at most 40 × 0.1 + 1 starts in any 100 ms


def test_retries_pass_the_rate_limit_too(make_engine) -> None:
    # Four rows whose first attempts all fail: the four retries (10 ms backoff) must wait for
    # their own tokens. Unmetered, they would arrive 10 ms after each failure: 4 in 60 ms.
    with FakeOpenAIServer(fail_first=4, fail_status=500) as server:
        engine = make_engine(server, requests_per_second=20.0, max_in_flight=8)
        results = engine.generate([chat(str(i)) for i in range(4)], SamplingConfig())
        times = sorted(t for t, _ in server.log)
    assert all(isinstance(r, list) for r in results) and len(times) == 8
    assert times[-1] - times[0] >= 7 / 20 * 0.9  # 8 evenly spaced starts at 20/s
    window = [sum(1 for t in times if start <= t < start + 0.1) for start in times]
    assert max(window) <= 3, times  # at most 20 × 0.1 + 1 starts in any 100 ms


def test_no_key_sends_no_authorization_header(make_engine, monkeypatch) -> None:
    # The SDK would fall back to $OPENAI_API_KEY: a key the config does not name is never sent.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-this-server")
    with FakeOpenAIServer() as server:
        (completions,) = make_engine(server, api_key_env=None).generate([chat("a")], SamplingConfig())
        preflight(config(server, api_key_env=None))
        assert server.authorizations == [None, None]
        make_engine(server).generate([chat("a")], SamplingConfig())
        assert server.authorizations[-1] == f"Bearer {KEY}"
    assert completions[0].text == reply_text("a", 0.7, 0)


def test_engine_is_reused_across_calls_and_closes(make_engine) -> None:
    with FakeOpenAIServer() as server:
        engine = make_engine(server)
        first = engine.generate([chat("a")], SamplingConfig())
        assert engine.generate([chat("a")], SamplingConfig()) == first
        engine.close()
        engine.close()
        with pytest.raises(RuntimeError, match="closed"):
            engine.generate([chat("a")], SamplingConfig())


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "150", "Retry-After": "2"}) == 0.15
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({}) is None and parse_retry_after({"Retry-After": "soon"}) is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_preflight_passes_and_reports_problems(monkeypatch) -> None:
    with FakeOpenAIServer(api_key=KEY, models=["test-model", "other-model"]) as server:
        preflight(config(server))
        listing = r"'missing-model' is not served .*served: test-model, other-model"
        with pytest.raises(AssayError, match=listing):
            preflight(config(server, model="missing-model"))
        monkeypatch.setenv(KEY_ENV, "sk-bad-789")
        with pytest.raises(AssayError, match="401, invalid API key") as info:
            preflight(config(server))
        assert "sk-bad-789" not in str(info.value)
        assert server.model_listings == 3
    unreachable = OpenAIEngineConfig(
        backend="openai", model="test-model", base_url=f"http://127.0.0.1:{free_port()}/v1"
    )
    started = time.monotonic()
    with pytest.raises(AssayError, match="unreachable"):
        preflight(unreachable, timeout_s=2.0)
    assert time.monotonic() - started < bound(2.5)
