"""Plumbing tests of the LLM gateway against a local OpenAI-compatible server on 127.0.0.1.

The server's answers are scripted by each test, so these tests check the litellm path (requests,
retries, timeouts, accounting, caching, key handling); they are not evidence of judging quality.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from openai_compatible_server import Scripted, openai_compatible_server

from agents.llm import LLMGateway, gateway_from_settings

MESSAGES = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
SECRET = "sk-test-secret-0123456789"


def _gateway(url: str, **kwargs) -> LLMGateway:
    kwargs.setdefault("backoff_s", 0.01)
    kwargs.setdefault("timeout_s", 5.0)
    return LLMGateway(kwargs.pop("model", "openai/gpt-4o-mini"), base_url=url, **kwargs)


def test_completion_sends_temperature_zero_and_accounts_tokens_and_cost() -> None:
    import litellm

    with openai_compatible_server() as (url, state):
        state.script.append(Scripted(text="yes", prompt_tokens=1000, completion_tokens=200))
        reply = _gateway(url, api_key=SECRET).complete(MESSAGES)
    assert reply.text == "yes"
    assert state.requests[0]["temperature"] == 0
    assert state.requests[0]["messages"] == MESSAGES
    assert (reply.call.prompt_tokens, reply.call.completion_tokens, reply.call.attempts) == (1000, 200, 1)
    price = litellm.model_cost["gpt-4o-mini"]
    expected = 1000 * price["input_cost_per_token"] + 200 * price["output_cost_per_token"]
    assert reply.call.cost_usd == pytest.approx(expected)
    assert state.headers[0]["authorization"] == f"Bearer {SECRET}"


def test_unknown_model_price_is_unknown_not_zero_and_a_configured_price_is_used() -> None:
    with openai_compatible_server() as (url, state):
        state.script.extend([Scripted(text="a", prompt_tokens=10, completion_tokens=5)] * 2)
        unknown = _gateway(url, model="openai/my-local-model").complete(MESSAGES)
        priced = _gateway(url, model="openai/my-local-model", price_per_token=(1e-3, 2e-3)).complete(MESSAGES)
    assert unknown.ok and unknown.call.cost_usd is None
    assert priced.call.cost_usd == pytest.approx(10 * 1e-3 + 5 * 2e-3)


def test_server_errors_are_retried_with_backoff_until_success() -> None:
    pauses: list[float] = []
    with openai_compatible_server() as (url, state):
        state.script.extend([Scripted(status=500), Scripted(status=503), Scripted(text="ok")])
        gateway = _gateway(url, backoff_s=0.5, sleep=pauses.append)
        reply = gateway.complete(MESSAGES)
    assert reply.text == "ok"
    assert reply.call.attempts == 3
    assert len(state.requests) == 3
    assert pauses == [0.5, 1.0]  # exponential backoff between the three attempts


def test_exhausted_retries_become_an_error_reply_not_an_exception() -> None:
    with openai_compatible_server() as (url, state):
        state.script.extend([Scripted(status=500, text="boom")] * 3)
        reply = _gateway(url, max_attempts=3).complete(MESSAGES)
    assert not reply.ok and reply.text is None
    assert reply.call.attempts == 3 and len(state.requests) == 3
    assert "InternalServerError" in (reply.call.error or "")


def test_client_errors_are_not_retried() -> None:
    with openai_compatible_server() as (url, state):
        state.script.extend([Scripted(status=400, text="bad request")] * 3)
        reply = _gateway(url, max_attempts=3).complete(MESSAGES)
    assert not reply.ok
    assert len(state.requests) == 1


def test_a_timeout_becomes_an_error_after_the_attempts() -> None:
    with openai_compatible_server() as (url, state):
        state.script.extend([Scripted(text="late", delay_s=3.0)] * 2)
        started = time.perf_counter()
        reply = _gateway(url, timeout_s=0.5, max_attempts=2).complete(MESSAGES)
        elapsed = time.perf_counter() - started
    assert not reply.ok
    assert "Timeout" in (reply.call.error or "")
    assert reply.call.attempts == 2
    assert elapsed < 5.0  # two half-second timeouts, not two three-second waits


def test_cache_is_keyed_by_the_full_prompt_and_holds_no_key(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with openai_compatible_server() as (url, state):
        state.default = lambda body: Scripted(text=f"answer to {body['messages'][-1]['content']}")
        gateway = _gateway(url, api_key=SECRET, cache_dir=cache)
        first = gateway.complete(MESSAGES)
        again = gateway.complete(MESSAGES)
        other = gateway.complete([{"role": "user", "content": "Is grass green?"}])
    assert len(state.requests) == 2  # the repeated prompt was answered from the cache
    assert again.text == first.text and again.call.cached and again.call.cost_usd == 0.0
    assert other.text == "answer to Is grass green?" and not other.call.cached
    files = list(cache.rglob("*.json"))
    assert len(files) == 2
    assert all(SECRET not in f.read_text() for f in files)
    assert gateway.ledger.prompt_tokens == 300  # three calls of 100 prompt tokens (the cached one counts)


def test_the_api_key_never_appears_in_errors_or_repr() -> None:
    with openai_compatible_server() as (url, state):
        state.script.append(Scripted(status=401, text=f"invalid api key {SECRET}"))
        gateway = _gateway(url, api_key=SECRET, max_attempts=1)
        reply = gateway.complete(MESSAGES)
    assert not reply.ok
    assert SECRET not in (reply.call.error or "") and "***" in (reply.call.error or "")
    assert SECRET not in repr(gateway)


def test_gateway_comes_from_settings_and_is_absent_without_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from hilnas.settings import get_settings

    monkeypatch.delenv("HILNAS_LLM_MODEL", raising=False)
    get_settings.cache_clear()
    assert gateway_from_settings() is None
    monkeypatch.setenv("HILNAS_LLM_MODEL", "openai/local")
    monkeypatch.setenv("HILNAS_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("HILNAS_LLM_API_KEY", SECRET)
    get_settings.cache_clear()
    gateway = gateway_from_settings()
    assert gateway is not None
    assert (gateway.model, gateway.base_url) == ("openai/local", "http://127.0.0.1:9/v1")
    assert SECRET not in json.dumps({"repr": repr(gateway), "key": gateway.cache_key(MESSAGES)})
