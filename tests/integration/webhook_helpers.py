"""A real webhook receiver and a hand-moved clock, shared by the webhook tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelreg.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER

SECRET = b"receiver-secret"


class FakeClock:
    """A clock the test moves by hand, so backoff needs no sleeping."""

    def __init__(self) -> None:
        # Starts at the real time: the receiver checks timestamps are fresh.
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver on a real port: records requests, checks signatures, fails on demand."""

    def __init__(self, clock: FakeClock, secret: bytes = SECRET) -> None:
        self.received: list[Received] = []
        self.fail_next = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                # The documented recipe, computed independently of modelreg's code.
                timestamp = self.headers.get(TIMESTAMP_HEADER, "")
                mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
                verified = self.headers.get(SIGNATURE_HEADER) == f"sha256={mac.hexdigest()}"
                verified &= abs(clock.now.timestamp() - int(timestamp or 0)) <= 300
                with receiver._lock:
                    receiver.received.append(Received(dict(self.headers), body, verified))
                    failing = receiver.fail_next != 0
                    receiver.fail_next -= 1 if receiver.fail_next > 0 else 0
                status = 500 if failing else (200 if verified else 401)
                reply = b"receiver is broken" if failing else b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
