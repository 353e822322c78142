"""The LLM gateway: every model call in hilnas goes through ``LLMGateway.complete``.

It wraps ``litellm.completion`` so that any provider, or a local OpenAI-compatible server (Ollama,
vLLM), works from three settings (``HILNAS_LLM_MODEL``, ``HILNAS_LLM_BASE_URL``,
``HILNAS_LLM_API_KEY``). It adds what a judge needs to be reproducible and accountable: temperature 0,
a timeout, retries with exponential backoff on transient failures, tokens and cost for every call, and
an on-disk response cache keyed by the full prompt. A failed call is returned as an ``LLMReply`` with an
``error``, never raised, so that callers turn it into an ``error`` verdict rather than a wrong answer.

The API key is handed to litellm and nowhere else: it is not part of the cache key, and any error text
that would echo it is redacted before it leaves this module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from hilnas.errors import UserError
from hilnas.settings import get_settings

# litellm fetches its price table from the internet at import unless told to use the copy it ships.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REDACTED = "***"


@dataclass(frozen=True)
class LLMCall:
    """Accounting for one ``complete`` call (all its attempts)."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None when litellm knows no price for this model and none was configured
    latency_s: float
    attempts: int
    cached: bool
    error: str | None = None


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for: its id, the tool's name and the arguments as the JSON text it wrote
    (parsed and validated by the caller, which can then say exactly what was wrong with it)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class LLMReply:
    """The text the model returned (None on failure, or when it only called tools), the tool calls it made, and
    the call's accounting."""

    text: str | None
    call: LLMCall
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def ok(self) -> bool:
        return self.call.error is None and (self.text is not None or bool(self.tool_calls))


@dataclass
class Ledger:
    """Running totals over a gateway's calls (reports show them)."""

    calls: list[LLMCall] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.calls)

    @property
    def cost_usd(self) -> float | None:
        """Total cost of uncached calls; None if any paid call had an unknown price."""
        paid = [c for c in self.calls if not c.cached and c.error is None]
        if any(c.cost_usd is None for c in paid):
            return None
        return sum(c.cost_usd or 0.0 for c in paid)


class ResponseCache:
    """JSON files under ``directory``, one per prompt hash; written atomically so readers never see half."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as f:
            json.dump(value, f)
        os.replace(f.name, path)


def _retryable_exceptions() -> tuple[type[BaseException], ...]:
    """litellm's transient failures: worth another attempt after a pause."""
    import litellm

    return (
        litellm.Timeout,
        litellm.APIConnectionError,
        litellm.RateLimitError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.BadGatewayError,
    )


class LLMGateway:
    """Calls one model through litellm with timeouts, retries, a cache and cost accounting."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_attempts: int = 4,
        backoff_s: float = 1.0,
        max_tokens: int = 1024,
        cache_dir: Path | None = None,
        price_per_token: tuple[float, float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise UserError("The LLM gateway needs at least one attempt per call.")
        self.model = model
        self.base_url = base_url
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_tokens = max_tokens
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self.price_per_token = price_per_token
        self.ledger = Ledger()
        self._sleep = sleep

    def __repr__(self) -> str:  # the key must not show up in logs or tracebacks
        return f"LLMGateway(model={self.model!r}, base_url={self.base_url!r})"

    def cache_key(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """Hash of everything that determines the answer: model, endpoint, the full prompt, tools, sampling."""
        payload = {
            "model": self.model,
            "base_url": self.base_url,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        if tools:
            payload["tools"] = tools
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> LLMReply:
        """One chat completion at temperature 0, offering ``tools`` (OpenAI function-tool schemas) when given;
        failures come back as a reply with ``error`` set."""
        key = self.cache_key(messages, tools)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            call = LLMCall(self.model, hit["prompt_tokens"], hit["completion_tokens"], 0.0, 0.0, 0, cached=True)
            calls = tuple(ToolCall(**c) for c in hit.get("tool_calls", []))
            return self._record(LLMReply(hit["text"], call, calls))

        import litellm

        litellm.suppress_debug_info = True
        retryable = _retryable_exceptions()
        started = time.perf_counter()
        error = "no attempt was made"
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = litellm.completion(
                    model=self.model,
                    messages=messages,
                    temperature=0,
                    max_tokens=self.max_tokens,
                    timeout=self.timeout_s,
                    api_base=self.base_url,
                    api_key=self._api_key_for_request(),
                    max_retries=0,  # retries are ours, so that every attempt is counted and backed off
                    # litellm routes any call with tools through its MCP gateway first, which imports the optional
                    # ``mcp`` package; hilnas's tools are plain functions the caller runs itself.
                    **({"tools": tools, "_skip_mcp_handler": True} if tools else {}),
                )
            except retryable as exc:
                error = self._describe(exc)
                if attempt < self.max_attempts:
                    self._sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            except Exception as exc:  # authentication, bad request, unknown model: retrying will not help
                error = self._describe(exc)
                break
            reply = self._reply_from(response, attempt, time.perf_counter() - started)
            if self.cache is not None and reply.ok:
                self.cache.put(
                    key,
                    {
                        "text": reply.text,
                        "prompt_tokens": reply.call.prompt_tokens,
                        "completion_tokens": reply.call.completion_tokens,
                        "tool_calls": [dataclasses.asdict(c) for c in reply.tool_calls],
                    },
                )
            return self._record(reply)
        call = LLMCall(self.model, 0, 0, None, time.perf_counter() - started, attempt, cached=False, error=error)
        return self._record(LLMReply(None, call))

    def _api_key_for_request(self) -> str | None:
        # OpenAI-compatible local servers take any key, but the OpenAI client refuses to send none.
        if self._api_key is None and self.base_url is not None:
            return "no-key"
        return self._api_key

    def _reply_from(self, response: Any, attempts: int, latency_s: float) -> LLMReply:
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        try:
            message = response.choices[0].message
        except (AttributeError, IndexError):
            message = None
        text = getattr(message, "content", None)
        text = text if isinstance(text, str) else None
        tool_calls = tuple(
            ToolCall(str(c.id), str(c.function.name), c.function.arguments or "")
            for c in (getattr(message, "tool_calls", None) or [])
        )
        error = None if text is not None or tool_calls else "the response carried no message text"
        call = LLMCall(
            self.model,
            prompt_tokens,
            completion_tokens,
            self._cost(response),
            latency_s,
            attempts,
            cached=False,
            error=error,
        )
        return LLMReply(text if error is None else None, call, tool_calls)

    def _cost(self, response: Any) -> float | None:
        import litellm

        kwargs: dict[str, Any] = {"completion_response": response}
        if self.price_per_token is not None:
            kwargs["custom_cost_per_token"] = {
                "input_cost_per_token": self.price_per_token[0],
                "output_cost_per_token": self.price_per_token[1],
            }
        try:
            return float(litellm.completion_cost(**kwargs))
        except Exception:  # litellm raises when the model has no known price: the cost is unknown, not zero
            return None

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'}"
        return self.redact(text)[:500]

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced, for anything that may be shown or stored."""
        if self._api_key:
            text = text.replace(self._api_key, REDACTED)
        return text

    def _record(self, reply: LLMReply) -> LLMReply:
        self.ledger.calls.append(reply.call)
        return reply


class GatewayOptions(BaseSettings):
    """How patiently the gateway calls the model (``HILNAS_LLM_TIMEOUT_S`` etc.); the model itself is in Settings."""

    model_config = SettingsConfigDict(env_prefix="HILNAS_LLM_", extra="ignore")

    timeout_s: float = Field(120.0, gt=0, description="seconds before one attempt times out")
    max_attempts: int = Field(4, ge=1, description="attempts per call, including the first")
    backoff_s: float = Field(1.0, ge=0, description="pause before the second attempt; doubles after each")
    max_tokens: int = Field(1024, ge=1, description="longest answer asked for")


def gateway_from_settings(**overrides: Any) -> LLMGateway | None:
    """The gateway that ``HILNAS_LLM_*`` describes, or None when no model is configured (offline judging)."""
    settings = get_settings()
    if not settings.llm_model:
        return None
    try:
        options = GatewayOptions().model_dump()
    except ValidationError as exc:
        raise UserError(f"An HILNAS_LLM_* setting is invalid: {exc.errors()[0]['msg']}.") from exc
    options["cache_dir"] = settings.cache_dir / "llm-responses"
    return LLMGateway(
        settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key,
        **(options | overrides),
    )
