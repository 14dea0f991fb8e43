"""The demo's model server: ``modelreg serve fraud-detection`` on a port, and a client for it.

The replica is the real command in its own process (a
:class:`~modelreg.stack.ServiceProcess`, as ``modelreg up`` runs its
services), configured like the API service so that it reads the same
registry. The client scores held-out rows the way a caller would (MLflow's
``dataframe_split`` body, ``X-User-ID`` as the routing key, ``X-Request-ID``
naming the request), posts feedback, and times how long the replica takes
to answer with a newly promoted version.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx

from modelreg.errors import ConflictError, ModelregError
from modelreg.stack import ServiceProcess, StackConfig

#: How often the reload probe asks the replica which version answers.
_PROBE_SECONDS = 0.1


def check_serve_port(host: str, port: int) -> None:
    """Raise :class:`ConflictError` naming ``--serve-port`` when something listens on ``port``.

    Checked before anything starts, like the stack's ports: connecting
    finds a server of any kind there (a stack or replica left running).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        taken = probe.connect_ex((host, port)) == 0
    if taken:
        raise ConflictError(
            f"cannot start the model server: port {port} on {host} is already in use; "
            "stop the process listening there or choose another port with --serve-port"
        )


@dataclass(frozen=True)
class Answer:
    """What the replica answered for one scoring request."""

    request_id: str
    variant: str
    version: int
    prediction: Any


def scoring_body(row: dict[str, Any]) -> bytes:
    """An MLflow ``dataframe_split`` body with one row (feature name -> value)."""
    split = {"columns": list(row), "data": [list(row.values())]}
    return json.dumps({"dataframe_split": split}).encode()


class Replica:
    """``modelreg serve NAME --port PORT`` against the stack in ``config``, with a client."""

    def __init__(self, name: str, config: StackConfig, port: int) -> None:
        """Describe the replica; :meth:`start` starts it."""
        home = config.resolved_home()
        self.name = name
        self.port = port
        self.url = f"http://{config.host}:{port}"
        self.process = ServiceProcess(
            "serve",
            [
                sys.executable,
                "-c",
                "from modelreg.cli import run; run()",
                "serve",
                name,
                "--host",
                config.host,
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            health_url=f"{self.url}/ping",
            env={
                "MODELREG_HOME": str(home),
                "MODELREG_TRACKING_URI": config.tracking_uri,
                "MODELREG_LEDGER_URI": config.resolved_ledger_uri(),
            },
            log_path=home / "logs" / "serve.log",
            cwd=home,
        )
        # trust_env=False: a proxy configured for the outside world must not see loopback calls.
        self.client = httpx.Client(base_url=self.url, trust_env=False, timeout=30.0)

    @property
    def log_path(self) -> Path:
        """The replica's log file."""
        return self.process.log_path

    def start(self, timeout: float = 120.0) -> None:
        """Start the replica and wait until it has loaded the model (``/ping`` answers 200)."""
        self.process.start()
        self.process.wait_ready(timeout)

    def stop(self) -> None:
        """Stop the replica and close the client."""
        self.process.stop()
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def score(self, body: bytes, *, user: str | None = None, request_id: str = "") -> Answer:
        """Score one body; raises ModelregError on an error answer or none."""
        headers = {"Content-Type": "application/json"}
        if user is not None:
            headers["X-User-ID"] = user
        if request_id:
            headers["X-Request-ID"] = request_id
        response = self._post("/invocations", content=body, headers=headers)
        return Answer(
            request_id=response.headers.get("X-Request-ID", request_id),
            variant=response.headers.get("X-Variant", ""),
            version=int(response.headers.get("X-Model-Version", "0")),
            prediction=response.json()["predictions"][0],
        )

    def feedback(self, request_id: str, label: int) -> str:
        """Post the true label of a scored request; returns the server's result (``recorded``)."""
        response = self._post("/feedback", json={"request_id": request_id, "label": label})
        return str(response.json()["result"])

    def versions(self) -> dict[str, Any]:
        """The replica's ``/version``: what it serves and which experiments it follows."""
        served: dict[str, Any] = self._call("GET", "/version").json()
        return served

    def _post(self, path: str, **request: Any) -> httpx.Response:
        return self._call("POST", path, **request)

    def _call(self, method: str, path: str, **request: Any) -> httpx.Response:
        """Call the replica; an error answer or no answer is a ModelregError saying which."""
        try:
            response = self.client.request(method, path, **request)
        except httpx.HTTPError as exc:
            raise ModelregError(
                f"the model server did not answer {method} {path}: {exc}; log {self.log_path}"
            ) from exc
        if response.is_error:
            raise ModelregError(
                f"the model server answered {method} {path} with {response.status_code}: "
                f"{response.text[:300]}; log {self.log_path}"
            )
        return response

    def seconds_until_serving(
        self, version: int, body: bytes, *, since: float, timeout: float = 60.0
    ) -> float:
        """Seconds from ``since`` (``time.monotonic()``) to an answer from ``version``.

        Take ``since`` just before the call that promotes: the figure is then
        an upper bound on what a caller sees, the replica noticing the alias
        move, loading, warming and swapping the new version. ``inf`` when no
        such answer came ``timeout`` seconds after ``since``.
        """
        while (elapsed := time.monotonic() - since) < timeout:
            if self.score(body).version == version:
                return elapsed
            time.sleep(_PROBE_SECONDS)
        return float("inf")
