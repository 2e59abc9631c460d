"""A local stand-in for Slack's Web API, for pointing a real WebClient at.

It listens on 127.0.0.1 on a free port in a background thread, records every request
(path, headers, form or JSON body) and answers each chat.postMessage from a script of
responses; once the script runs out it answers like a successful chat.postMessage with a
fresh `ts`. Messages it accepts are kept per channel, with their metadata, and
conversations.history returns them as Slack does (newest first, from `oldest` on,
metadata only with `include_all_metadata`; a channel that is not an ID is not found).

    with running_standin() as slack:
        slack.script(StandInResponse(429, {"ok": False, "error": "ratelimited"},
                                     {"Retry-After": "1"}))
        client = WebClient(token="xoxb-test", base_url=slack.base_url)
"""
from __future__ import annotations

import json
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.background_server import BackgroundServer, running


@dataclass(frozen=True)
class StandInResponse:
    """One scripted answer: an HTTP status, a JSON body (or raw text) and headers."""

    status: int = 200
    body: dict[str, Any] | str = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # Slack posted the message although it answers an error (a 5xx after posting).
    posted: bool = False
    # Seconds to wait before answering, after the message is kept.
    delay: float = 0.0


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


@dataclass(frozen=True)
class KeptMessage:
    channel: str
    ts: str
    text: str
    metadata: dict[str, Any] | None


class SlackStandIn(BackgroundServer):
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.answers: list[StandInResponse] = []  # answers[i] went to requests[i]
        self.messages: list[KeptMessage] = []  # what the channels hold, oldest first
        self.history_error: str | None = None  # e.g. "missing_scope"
        # Channels whose posts are refused, with the error code (e.g. "not_in_channel").
        self.refuse: dict[str, str] = {}
        self._script: list[StandInResponse] = []
        self._lock = threading.Lock()
        self._count = 0
        self._serve(ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class()))

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

    def in_channel(self, channel: str) -> list[KeptMessage]:
        return [m for m in self.messages if m.channel == channel]

    def _next_response(self, request: RecordedRequest) -> StandInResponse:
        with self._lock:
            self.requests.append(request)
            self._count += 1
            if request.method == "conversations.history":
                answer = self._history(request.fields)
            elif (request.method == "chat.postMessage"
                  and str(request.fields.get("channel", "")) in self.refuse):
                answer = error(self.refuse[str(request.fields["channel"])])
            elif self._script:
                answer = self._script.pop(0)
            else:
                answer = StandInResponse(200, {"ok": True,
                                               "channel": request.fields.get("channel", ""),
                                               "ts": f"{time.time() + self._count:.6f}"})
            if request.method == "chat.postMessage" and (
                    answer.posted or (isinstance(answer.body, dict) and answer.body.get("ok"))):
                fields = request.fields
                metadata = fields.get("metadata")
                ts = answer.body.get("ts") if isinstance(answer.body, dict) else None
                self.messages.append(KeptMessage(
                    channel=str(fields.get("channel", "")),
                    ts=str(ts or f"{time.time() + self._count:.6f}"),
                    text=str(fields.get("text", "")),
                    metadata=json.loads(metadata) if isinstance(metadata, str) else metadata))
            self.answers.append(answer)
            return answer

    def _history(self, fields: dict[str, Any]) -> StandInResponse:
        """conversations.history over the kept messages: newest first, between `oldest` and
        `latest` (inclusive when asked), `limit` a page, a cursor for the next."""
        channel = str(fields.get("channel", ""))
        if self.history_error:
            return error(self.history_error)
        if not channel[:1] in ("C", "G", "D") or "#" in channel:
            return error("channel_not_found")
        oldest = float(fields.get("oldest") or 0)
        latest = float(fields.get("latest") or "inf")
        inclusive = str(fields.get("inclusive", "")).lower() in ("1", "true")
        with_metadata = str(fields.get("include_all_metadata", "")).lower() in ("1", "true")
        limit = int(fields.get("limit") or 100)
        start = int(fields.get("cursor") or 0)
        found = []
        for m in reversed(self.in_channel(channel)):
            ts = float(m.ts)
            if not (oldest <= ts <= latest if inclusive else oldest < ts < latest):
                continue
            message = {"type": "message", "ts": m.ts, "text": m.text}
            if with_metadata and m.metadata is not None:
                message["metadata"] = m.metadata
            found.append(message)
        page = found[start:start + limit]
        more = start + limit < len(found)
        return StandInResponse(200, {"ok": True, "messages": page, "has_more": more,
                                     "response_metadata": {
                                         "next_cursor": str(start + limit) if more else ""}})

    def keep(self, channel: str, ts: float, text: str = "",
             metadata: dict[str, Any] | None = None) -> None:
        """A message already in the channel (another person's, another bot's)."""
        with self._lock:
            self.messages.append(KeptMessage(channel, f"{ts:.6f}", text, metadata))

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
                if response.delay:
                    time.sleep(response.delay)
                body = (response.body if isinstance(response.body, str)
                        else json.dumps(response.body))
                payload = body.encode("utf-8")
                is_json = not isinstance(response.body, str)
                try:
                    self.send_response(response.status)
                    self.send_header("Content-Type", "application/json; charset=utf-8"
                                     if is_json else "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (a killed run): nobody to answer

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # keep test output quiet

        return Handler



def running_standin() -> AbstractContextManager[SlackStandIn]:
    return running(SlackStandIn())
