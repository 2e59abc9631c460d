"""A local stand-in for Slack's Web API, for pointing a real WebClient at.

It listens on 127.0.0.1 on a free port in a background thread, records every request
(path, headers, form or JSON body) and answers each from a script of responses; once the
script runs out it answers like a successful chat.postMessage with a fresh `ts`.

    with running_standin() as slack:
        slack.script(StandInResponse(429, {"ok": False, "error": "ratelimited"},
                                     {"Retry-After": "1"}))
        client = WebClient(token="xoxb-test", base_url=slack.base_url)
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class StandInResponse:
    """One scripted answer: an HTTP status, a JSON body (or raw text) and headers."""

    status: int = 200
    body: dict[str, Any] | str = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    json: dict[str, Any] | None

    @property
    def method(self) -> str:
        """The Web API method, e.g. 'chat.postMessage'."""
        return self.path.rsplit("/", 1)[-1].split("?", 1)[0]

    @property
    def fields(self) -> dict[str, Any]:
        """The call's arguments whichever way they were sent; `blocks` decoded."""
        data: dict[str, Any] = dict(self.json or self.form)
        if isinstance(data.get("blocks"), str):
            data["blocks"] = json.loads(data["blocks"])
        return data


def error(code: str, status: int = 200, **headers: str) -> StandInResponse:
    """Slack's usual failure shape: HTTP 200 with {"ok": false, "error": code}."""
    return StandInResponse(status, {"ok": False, "error": code}, dict(headers))


class SlackStandIn:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.answers: list[StandInResponse] = []  # answers[i] went to requests[i]
        self._script: list[StandInResponse] = []
        self._lock = threading.Lock()
        self._count = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def script(self, *responses: StandInResponse) -> None:
        """Answer the next requests with these, in order."""
        with self._lock:
            self._script.extend(responses)

    def posted(self) -> list[RecordedRequest]:
        """Every chat.postMessage request received, failed or not."""
        return [r for r in self.requests if r.method == "chat.postMessage"]

    def delivered(self) -> list[RecordedRequest]:
        """The chat.postMessage requests that were answered with success."""
        return [r for r, a in zip(self.requests, self.answers)
                if r.method == "chat.postMessage" and a.status == 200
                and isinstance(a.body, dict) and a.body.get("ok")]

    def _next_response(self, request: RecordedRequest) -> StandInResponse:
        with self._lock:
            self.requests.append(request)
            self._count += 1
            if self._script:
                answer = self._script.pop(0)
            else:
                answer = StandInResponse(200, {"ok": True,
                                               "channel": request.fields.get("channel", ""),
                                               "ts": f"{1715700000 + self._count}.000100"})
            self.answers.append(answer)
            return answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8")
                content_type = self.headers.get("Content-Type", "")
                form: dict[str, str] = {}
                body_json = None
                if content_type.startswith("application/json"):
                    body_json = json.loads(raw or "{}")
                else:
                    form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                request = RecordedRequest(self.path, dict(self.headers.items()), form, body_json)
                response = standin._next_response(request)
                body = (response.body if isinstance(response.body, str)
                        else json.dumps(response.body))
                payload = body.encode("utf-8")
                self.send_response(response.status)
                is_json = not isinstance(response.body, str)
                self.send_header("Content-Type", "application/json; charset=utf-8" if is_json
                                 else "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep test output quiet

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def running_standin() -> Iterator[SlackStandIn]:
    standin = SlackStandIn()
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()
