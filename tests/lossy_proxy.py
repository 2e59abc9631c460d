"""A local HTTP proxy that loses replies: the request reaches the server behind it, the
answer never reaches the client.

For the case no stand-in alone can show: Slack takes a post, and the connection drops
before its answer arrives (a dropped connection, a read timeout, a process killed while
it waits). Each request is forwarded whole; for the next `drop(n)` requests whose path
ends with `method`, the proxy reads the server's answer and closes the client's
connection without sending it.

    with running_proxy(slack.base_url) as proxy:
        proxy.drop(1, "chat.postMessage")
        client = WebClient(token="xoxb-test", base_url=proxy.base_url)
"""
from __future__ import annotations

import http.client
import socketserver
import threading
from contextlib import AbstractContextManager
from urllib.parse import urlsplit

from tests.background_server import BackgroundServer, running


class LossyProxy(BackgroundServer):
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.dropped: list[str] = []  # paths whose answer was lost
        self._drops: dict[str, int] = {}
        self._lock = threading.Lock()
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler_class())
        server.daemon_threads = True
        self._serve(server)

    def drop(self, count: int, method: str) -> None:
        """Lose the answers to the next `count` requests for `method`."""
        with self._lock:
            self._drops[method] = self._drops.get(method, 0) + count

    def _should_drop(self, path: str) -> bool:
        with self._lock:
            for method, left in self._drops.items():
                if left and path.split("?", 1)[0].endswith(method):
                    self._drops[method] = left - 1
                    self.dropped.append(path)
                    return True
        return False

    def _handler_class(self) -> type[socketserver.StreamRequestHandler]:
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request_line = self.rfile.readline().decode("latin-1").strip()
                if not request_line:
                    return
                method, path, _ = request_line.split(" ", 2)
                headers: dict[str, str] = {}
                while (line := self.rfile.readline().decode("latin-1").strip()):
                    name, _, value = line.partition(":")
                    headers[name.strip()] = value.strip()
                body = self.rfile.read(int(headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers.pop("Connection", None)
                upstream.request(method, path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                if proxy._should_drop(path):
                    return  # the connection closes without a byte of the answer
                self.wfile.write(f"HTTP/1.1 {answer.status} {answer.reason}\r\n".encode("latin-1"))
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.wfile.write(f"{name}: {value}\r\n".encode("latin-1"))
                self.wfile.write(f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
                                 .encode("latin-1"))
                self.wfile.write(data)

        return Handler


def running_proxy(upstream: str) -> AbstractContextManager[LossyProxy]:
    return running(LossyProxy(upstream))
