"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1 for plumbing tests of the LLM path.

It answers from a script the test writes (status codes, delays, message texts, tool calls), records every request
it receives, and says nothing about judging quality: the replies are whatever the test scripted.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Scripted:
    """One scripted answer: an HTTP status, an optional delay, the assistant's text and the tool calls it makes
    (``(name, arguments)`` pairs; arguments as the JSON text the model wrote, or a dict to be encoded)."""

    text: str = ""
    status: int = 200
    delay_s: float = 0.0
    prompt_tokens: int = 100
    completion_tokens: int = 20
    tool_calls: list[tuple[str, str | dict[str, Any]]] = field(default_factory=list)

    def message(self, request_number: int) -> dict[str, Any]:
        """The assistant message in OpenAI's format (content is null when the model only calls tools)."""
        if not self.tool_calls:
            return {"role": "assistant", "content": self.text}
        calls = [
            {
                "id": f"call_{request_number}_{i}",
                "type": "function",
                "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
            }
            for i, (name, args) in enumerate(self.tool_calls)
        ]
        return {"role": "assistant", "content": self.text or None, "tool_calls": calls}


@dataclass
class ServerState:
    script: deque[Scripted] = field(default_factory=deque)
    default: Callable[[dict[str, Any]], Scripted] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # per request, names lowercased


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            state.requests.append(body)
            # header names are case-insensitive (openai 3.x sends "authorization"): kept lowercased
            state.headers.append({name.lower(): value for name, value in self.headers.items()})
            if state.script:
                answer = state.script.popleft()
            elif state.default is not None:
                answer = state.default(body)
            else:
                answer = Scripted(status=500, text="script exhausted")
            if answer.delay_s:
                time.sleep(answer.delay_s)
            if answer.status != 200:
                payload = {"error": {"message": answer.text or "scripted failure", "type": "server_error"}}
            else:
                payload = {
                    "id": f"chatcmpl-{len(state.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "unknown"),
                    "choices": [
                        {
                            "index": 0,
                            "message": answer.message(len(state.requests)),
                            "finish_reason": "tool_calls" if answer.tool_calls else "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": answer.prompt_tokens,
                        "completion_tokens": answer.completion_tokens,
                        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
                    },
                }
            data = json.dumps(payload).encode()
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                pass

    return Handler


@contextmanager
def openai_compatible_server() -> Iterator[tuple[str, ServerState]]:
    """Yields (base_url, state) for a server on a free port of 127.0.0.1; stops it afterwards."""
    state = ServerState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()
