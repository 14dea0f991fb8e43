"""Registry writes through ``MlflowClient`` vs modelreg's gateway, on a model with many versions.

MLflow 3.17's ``MlflowClient`` sends ``GET registered-models/get`` before every
registry write (``_raise_if_prompt``, to refuse writing to a prompt), and that
read loads every version of the model server-side. The gateway sends the same
writes straight to the REST API (``modelreg.mlflow_gateway.rest``). This script
times each write both ways on one model with ``--versions`` versions and counts
the HTTP requests each sends.

Set-up: the versions are created in-process through MLflow's ``SqlAlchemyStore``
on a fresh SQLite file (seconds, not minutes), then an MLflow server is started
on that file, as ``bench/registry.py`` starts it (one worker, local artifacts).

    .venv/bin/python bench/mlflow_writes.py                 # 1,000 versions, 20 calls each
    .venv/bin/python bench/mlflow_writes.py --versions 200 --repeat 5 --no-write-docs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from mlflow import MlflowClient
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

from modelreg.domain import Stage
from modelreg.mlflow_gateway import MlflowGateway
from modelreg.stack import MLFLOW_SERVER_ENV, ServiceProcess, free_port, mlflow_server_argv
from registry import DOCS, machine, write_section

SECTION = "## MLflow writes"
MODEL = "bench-writes"


@dataclass(frozen=True)
class Row:
    """One write measured both ways on a model of ``versions`` versions: median ms, requests."""

    versions: int
    write: str
    client_ms: float
    client_requests: float
    gateway_ms: float
    gateway_requests: float

    @property
    def ratio(self) -> float:
        """How many times longer MlflowClient takes."""
        return self.client_ms / self.gateway_ms


def seed(db: Path, versions: int) -> None:
    """One registered model with ``versions`` versions, written straight into SQLite."""
    store = SqlAlchemyStore(f"sqlite:///{db}")
    store.create_registered_model(MODEL)
    for number in range(versions):
        store.create_model_version(MODEL, f"file:///tmp/bench/{number}", run_id=None)
    store.engine.dispose()


@contextmanager
def server(home: Path, db: Path) -> Iterator[str]:
    """An MLflow server on ``db``; yields its URI."""
    port = free_port()
    process = ServiceProcess(
        "mlflow",
        mlflow_server_argv(
            backend_store_uri=f"sqlite:///{db}",
            artifacts_destination=str(home / "artifacts"),
            host="127.0.0.1",
            port=port,
            workers=1,
        ),
        health_url=f"http://127.0.0.1:{port}/health",
        env=MLFLOW_SERVER_ENV,
        log_path=home / "mlflow.log",
        cwd=home,
    )
    process.start()
    try:
        process.wait_ready(timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


class RequestCounter:
    """Counts the HTTP requests MlflowClient sends (it uses one ``requests`` session)."""

    def __init__(self) -> None:
        self.count = 0
        self._original = requests.Session.request

    def __enter__(self) -> RequestCounter:
        original = self._original

        def counted(session: requests.Session, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(session, *args, **kwargs)

        requests.Session.request = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *_exc: object) -> None:
        requests.Session.request = self._original  # type: ignore[method-assign]


def timed(
    calls: list[Callable[[], object]],
    count: Callable[[], int],
    prepare: Callable[[], object] | None = None,
) -> tuple[float, float]:
    """Median ms per call and requests per call over ``calls``.

    ``prepare`` runs, untimed and uncounted, before each call.
    """
    times, requests_sent = [], 0
    for call in calls:
        if prepare is not None:
            prepare()
        before = count()
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
        requests_sent += count() - before
    return statistics.median(times), requests_sent / len(calls)


def measure(uri: str, versions: int, repeat: int) -> list[Row]:
    """Each write ``repeat`` times through MlflowClient, then through the gateway."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    gateway = MlflowGateway(uri)
    rest = gateway._rest
    if rest is None:
        raise SystemExit(f"{uri} is not an HTTP tracking URI")
    # Warm both connections (and the server's caches) before timing.
    client.get_model_version(MODEL, "1")
    gateway.version(MODEL, 1)
    targets = [1 + (i * 37) % (versions - 2 * repeat) for i in range(repeat)]
    # Deleting takes distinct versions from the end: the client's, then the gateway's.
    doomed = list(range(versions, versions - 2 * repeat, -1))
    writes: list[tuple[str, Callable[[int], object], Callable[[int], object]]] = [
        (
            "set alias",
            lambda v: client.set_registered_model_alias(MODEL, "bench", str(v)),
            lambda v: gateway.set_alias(MODEL, "bench", v),
        ),
        (
            "delete alias",
            lambda _v: client.delete_registered_model_alias(MODEL, "bench"),
            lambda _v: gateway.delete_alias(MODEL, "bench"),
        ),
        (
            "set version tag",
            lambda v: client.set_model_version_tag(MODEL, str(v), "bench", str(v)),
            lambda v: gateway.set_version_tags(MODEL, v, {"bench": str(v)}),
        ),
        (
            "transition stage",
            lambda v: client.transition_model_version_stage(
                MODEL, str(v), "Staging", archive_existing_versions=False
            ),
            lambda v: gateway.set_native_stage(MODEL, v, Stage.STAGING),
        ),
        (
            "update description",
            lambda v: client.update_model_version(MODEL, str(v), description=f"d{v}"),
            lambda v: gateway.set_description(MODEL, v, f"d{v}"),
        ),
    ]

    # delete alias needs an alias to delete: it is set before each call, untimed.
    def set_alias() -> object:
        return client.set_registered_model_alias(MODEL, "bench", "1")

    rows = []
    with RequestCounter() as counter:
        for label, by_client, by_gateway in writes:
            prepare = set_alias if label == "delete alias" else None
            client_ms, client_n = timed(
                [lambda v=v, w=by_client: w(v) for v in targets], lambda: counter.count, prepare
            )
            gateway_ms, gateway_n = timed(
                [lambda v=v, w=by_gateway: w(v) for v in targets], lambda: rest.requests, prepare
            )
            rows.append(Row(versions, label, client_ms, client_n, gateway_ms, gateway_n))
            print(f"{label}: {client_ms:.1f} ms vs {gateway_ms:.1f} ms", file=sys.stderr)
        client_ms, client_n = timed(
            [lambda v=v: client.delete_model_version(MODEL, str(v)) for v in doomed[:repeat]],
            lambda: counter.count,
        )
        gateway_ms, gateway_n = timed(
            [lambda v=v: gateway.delete_version(MODEL, v) for v in doomed[repeat:]],
            lambda: rest.requests,
        )
        rows.append(Row(versions, "delete version", client_ms, client_n, gateway_ms, gateway_n))
    # The read MlflowClient adds to every write, alone (the gateway never sends it).
    extra_ms, _n = timed(
        [lambda: rest.get("registered-models/get", {"name": MODEL})] * repeat, lambda: 0
    )
    rows.append(Row(versions, "its extra GET registered-models/get", extra_ms, 1, 0, 0))
    gateway.close()
    return rows


def report(rows: list[Row], repeat: int, when: datetime) -> str:
    """The docs section: a table and what it shows."""
    sizes = sorted({r.versions for r in rows})
    lines = [
        SECTION,
        "",
        f"`bench/mlflow_writes.py`, {when:%Y-%m-%d}: one model with "
        f"{' and '.join(f'{n:,}' for n in sizes)} versions (SQLite, one MLflow worker), "
        f"each write {repeat} times through `MlflowClient` and through the gateway; "
        "median ms per call and HTTP requests per call.",
        f"Machine: {machine()}.",
        "",
        "| versions | write | MlflowClient ms | requests | gateway ms | requests | ratio |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.gateway_requests == 0:
            lines.append(
                f"| {r.versions:,} | *MlflowClient's {r.write.removeprefix('its ')}, alone* "
                f"| {r.client_ms:.1f} | 1 | not sent | 0 | |"
            )
            continue
        lines.append(
            f"| {r.versions:,} | {r.write} | {r.client_ms:.1f} | {r.client_requests:g} "
            f"| {r.gateway_ms:.1f} | {r.gateway_requests:g} | {r.ratio:.1f}x |"
        )
    lines += [
        "",
        "MLflow 3.17's `MlflowClient` sends `GET registered-models/get` before every "
        "registry write (`_raise_if_prompt`, which refuses to write to a prompt), and "
        "`SqlAlchemyStore.get_registered_model` loads every version of the model to answer "
        "it, so that read grows with the model's history (last row of each size). The "
        "gateway sends each write as one request to the same endpoint with the same payload "
        "(`POST registered-models/alias`, `POST model-versions/set-tag`, ...), the same "
        "credentials, TLS settings and error translation. The server makes that full read "
        "once more by itself for alias and model-version tag writes (3.17 "
        "`server/handlers.py` `_is_prompt`, to choose which webhook to fire), so those "
        "still grow with the model through the gateway; stage, description and delete "
        "writes do not. What is left is not sending a write: `_project` already skips "
        "aliases whose holder did not change, and a tag or description write is skipped "
        "when the caller passes the value it already read "
        "(`set_version_tags(..., current=info.tags)`, "
        "`set_description(..., current=info.description)`); the gateway never reads to "
        "find out. The machine was shared with other jobs, so single rows are noisy; the "
        "request counts are exact.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Seed, start MLflow, measure, print, and write the docs section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--versions", default="1000", help="comma-separated model sizes (versions), e.g. 1000,10000"
    )
    parser.add_argument("--repeat", type=int, default=20, help="calls per write and path")
    parser.add_argument("--docs", type=Path, default=DOCS, help="benchmarks page to update")
    parser.add_argument("--no-write-docs", action="store_true", help="only print")
    args = parser.parse_args()
    # transition_model_version_stage is deprecated upstream; modelreg mirrors stages on purpose.
    warnings.simplefilter("ignore", FutureWarning)
    sizes = [int(n) for n in args.versions.split(",")]
    if min(sizes) < 4 * args.repeat:
        parser.error("--versions must be at least 4 times --repeat")
    rows: list[Row] = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="modelreg-bench-writes-") as tmp:
            home = Path(tmp)
            db = home / "mlflow.db"
            started = time.perf_counter()
            seed(db, size)
            took = time.perf_counter() - started
            print(f"seeded {size:,} versions in {took:.1f} s", file=sys.stderr)
            with server(home, db) as uri:
                rows += measure(uri, size, args.repeat)
    text = report(rows, args.repeat, datetime.now(UTC))
    print(text)
    if not args.no_write_docs:
        write_section(args.docs, SECTION, text)


if __name__ == "__main__":
    main()
