"""A local HTTP stand-in for the Cost Explorer endpoint, answering with the demo account.

boto3's real client talks to it through AWS_ENDPOINT_URL_COST_EXPLORER, so tests exercise
the endpoint setting, request signing, the JSON protocol and botocore's retry mode.
`script` holds canned failures to serve before real answers to GetCostAndUsage: (status,
error code). The commitment calls are answered by the demo account too, apart.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _util.sources.demo_account import DemoCostExplorer


class CostExplorerStandIn:
    def __init__(self, today: dt.date) -> None:
        self.demo = DemoCostExplorer(today)
        self.script: list[tuple[int, str]] = []
        self.requests: list[dict] = []  # GetCostAndUsage requests (scripted failures apply)
        # The other calls (Reserved Instances, Savings Plans), answered by the demo
        # account; those named in `denied` (e.g. "GetReservationCoverage") are refused.
        self.other_requests: list[dict] = []
        self.denied: set[str] = set()
        self.fail_forever: tuple[int, str] | None = None
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                target = self.headers.get("X-Amz-Target") or ""
                operation = target.rsplit(".", 1)[-1]
                if operation != "GetCostAndUsage":  # the commitments' calls
                    standin.other_requests.append({"target": target, "body": body})
                    if operation in standin.denied:
                        self._send(400, {"__type": "AccessDeniedException",
                                         "message": f"not authorized to perform ce:{operation}"})
                        return
                    method = re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
                    self._send(200, getattr(standin.demo, method)(**body))
                    return
                standin.requests.append({"target": target, "body": body})
                failure = standin.script.pop(0) if standin.script else standin.fail_forever
                if failure:
                    status, code = failure
                    self._send(status, {"__type": code, "message": f"stand-in {code}"})
                    return
                response = standin.demo.get_cost_and_usage(**body)
                response.pop("ResponseMetadata", None)
                self._send(200, response)

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def ce_calls(self) -> int:
        return len(self.requests)

    def __enter__(self) -> "CostExplorerStandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
