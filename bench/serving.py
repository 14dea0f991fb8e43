"""Serving throughput: ``modelreg serve`` against ``mlflow models serve`` on the course model.

Run from the repository root (needs ``wrk``: ``apt-get install wrk``)::

    .venv/bin/python bench/serving.py                      # full run, about 5 minutes
    .venv/bin/python bench/serving.py --duration 5 --connections 1,16 --no-write-docs  # quick

The script starts its own MLflow server (SQLite backend and local artifacts in
a temporary directory) and a SQLite ledger, trains the course's RandomForest
(200 trees, depth 10, 20 double features, as in
``modelreg.examples.course_register``), registers it with
``modelreg.Registry.register`` and promotes it through Staging to Production.
It then serves ``models:/<name>@production`` with each server in turn, at its
defaults, on a free port:

- ``mlflow models serve -m models:/<name>@production --env-manager local``
  (``MLFLOW_TRACKING_URI`` set; MLflow's own default worker count), and
- ``modelreg serve <name>`` (micro-batching on, as by default).

Both get the same single-row ``dataframe_split`` JSON body from ``wrk`` (POST,
``Content-Type: application/json``) at 1, 16 and 64 connections: a warm-up of
``--warmup`` seconds, then ``--duration`` seconds measured. Requests/s, p50 and
p99 come from a Lua ``done`` hook; non-2xx answers from wrk's "Non-2xx or 3xx
responses" line; the servers' CPU time from ``/proc``; their full (generation-2)
garbage-collection pauses from a ``sitecustomize`` hook the script puts on their
``PYTHONPATH`` (it only logs). Only one model server runs at a time, but wrk
shares the machine's cores with it.

With py-spy installed (``.venv/bin/pip install py-spy``; not a project
dependency) the script then profiles ``modelreg serve`` for ``--profile-seconds``
under 64-connection load and summarises where its time goes; ``--no-profile``
skips that. The table is printed and, with ``--write-docs`` (the default),
written to the "Serving" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import mlflow
from sklearn.ensemble import RandomForestClassifier

from modelreg.domain import Stage
from modelreg.examples.course_register import fraud_data
from modelreg.registry import Registry
from modelreg.stack import MLFLOW_SERVER_ENV, ServiceProcess, free_port, mlflow_server_argv
from registry import machine, write_section

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SECTION = "## Serving"
MODEL_PARAMS = {"n_estimators": 200, "max_depth": 10}
TARGET_RATIO = 30.0
TARGET_P99_MS = 100.0
TARGET_CONNECTIONS = 64
PROFILE_RATE = 100  # py-spy samples per second
BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CPUS = len(os.sched_getaffinity(0))

MLFLOW = "mlflow models serve"
MODELREG = "modelreg serve"

# wrk calls done() once, in its main thread, with the statistics of all threads.
LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {{\\"requests\\": %d, \\"duration_us\\": %d, \\"connect\\": %d, \\"read\\": %d, "
    .. "\\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d, \\"p50_us\\": %d, "
    .. "\\"p99_us\\": %d, \\"max_us\\": %d}}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


# Loaded into both servers' Python processes through PYTHONPATH: it only observes,
# logging the wall-clock end and the pause of every full (generation-2) collection.
GC_HOOK = """\
import gc, os, time

_path = os.environ.get("BENCH_GC_LOG")
if _path:
    _log = open(f"{_path}.{os.getpid()}", "a", buffering=1)
    _started = [0.0]

    def _bench_gc(phase, info):
        if info["generation"] != 2:
            return
        if phase == "start":
            _started[0] = time.perf_counter()
        else:
            pause = (time.perf_counter() - _started[0]) * 1000
            _log.write(f"{time.time():.4f} {pause:.3f}\\n")

    gc.callbacks.append(_bench_gc)
"""


# -- measuring -------------------------------------------------------------------------


@dataclass
class Run:
    """One measured wrk run against one server at one connection count."""

    server: str
    connections: int
    threads: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: dict[str, int]
    server_cpu: float  # seconds of CPU the server's processes used during the run
    wrk_cpu: float
    load: float  # 1-minute load average after the run
    batch_rows: float | None = None  # mean rows per predict call (modelreg only)
    gc_pauses: list[float] = field(default_factory=list)  # full-collection pauses, ms

    @property
    def rps(self) -> float:
        """Requests per second over the measured duration."""
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU milliseconds per answered request."""
        return 1000 * self.server_cpu / max(self.requests, 1)

    @property
    def errors(self) -> int:
        """Non-2xx answers plus socket errors."""
        return self.non_2xx + sum(self.socket_errors.values())

    def cores(self, cpu: float) -> float:
        """``cpu`` seconds as the number of cores kept busy during the run."""
        return cpu / self.seconds


def check_wrk() -> str:
    """The path of ``wrk``, or exit with how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(
            "bench/serving.py needs the HTTP load generator wrk, which is not on PATH; "
            "install it with `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)"
        )
    return path


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # pgrp is field 5 of stat, third after the command
                total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def batch_totals(url: str) -> tuple[float, float]:
    """(rows, predict calls) so far, from modelreg's batch-size histogram."""
    text = httpx.get(f"{url}/metrics", trust_env=False, timeout=10).text
    totals = {"sum": 0.0, "count": 0.0}
    for kind in totals:
        for found in re.finditer(
            rf"^modelreg_serving_batch_size_{kind}\{{.*\}} (\S+)$", text, re.M
        ):
            totals[kind] += float(found.group(1))
    return totals["sum"], totals["count"]


def wrk_argv(
    wrk: str, script: Path, url: str, connections: int, seconds: float, args: argparse.Namespace
) -> list[str]:
    """The wrk command line for one run."""
    return [
        wrk,
        f"-t{min(args.threads, connections)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        f"--timeout={args.timeout:g}s",
        "--latency",
        "-s",
        str(script),
        f"{url}/invocations",
    ]


def parse_wrk(output: str) -> dict[str, int]:
    """The numbers of the Lua ``done`` hook, plus wrk's own non-2xx count."""
    found = re.search(r"^BENCH (\{.*\})$", output, re.M)
    if found is None:
        raise RuntimeError(f"wrk printed no BENCH line; its output:\n{output}")
    numbers: dict[str, int] = json.loads(found.group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    numbers["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    return numbers


def run_wrk(argv: list[str], log: Path) -> str:
    """Run wrk to completion, append its output to ``log`` and return it."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def measure(
    server: str,
    process: ServiceProcess,
    url: str,
    connections: int,
    ctx: Context,
) -> Run:
    """Warm up, then measure one server at one connection count."""
    args = ctx.args
    if args.warmup > 0:
        run_wrk(wrk_argv(ctx.wrk, ctx.script, url, connections, args.warmup, args), ctx.wrk_log)
    pgid = process.pid
    assert pgid is not None  # noqa: S101 - the server is running
    batches = batch_totals(url) if server == MODELREG else None
    cpu_before = group_cpu_seconds(pgid)
    wrk_before = _children_cpu()
    window_start = time.time()
    output = run_wrk(
        wrk_argv(ctx.wrk, ctx.script, url, connections, args.duration, args), ctx.wrk_log
    )
    wrk_cpu = _children_cpu() - wrk_before
    server_cpu = group_cpu_seconds(pgid) - cpu_before
    pauses = gc_pauses(ctx.gc_log, window_start, time.time())
    numbers = parse_wrk(output)
    batch_rows = None
    if batches is not None:
        rows, calls = batch_totals(url)
        batch_rows = (rows - batches[0]) / max(calls - batches[1], 1)
    run = Run(
        server=server,
        connections=connections,
        threads=min(args.threads, connections),
        requests=numbers["requests"],
        seconds=numbers["duration_us"] / 1e6,
        p50_ms=numbers["p50_us"] / 1000,
        p99_ms=numbers["p99_us"] / 1000,
        max_ms=numbers["max_us"] / 1000,
        non_2xx=numbers["non_2xx"],
        socket_errors={k: numbers[k] for k in ("connect", "read", "write", "timeout")},
        server_cpu=server_cpu,
        wrk_cpu=wrk_cpu,
        load=os.getloadavg()[0],
        batch_rows=batch_rows,
        gc_pauses=pauses,
    )
    batch = f", {batch_rows:.1f} rows/predict" if batch_rows is not None else ""
    batch += f", gen-2 GC {_gc_text(pauses)}"
    print(
        f"  {server} c={connections}: {run.rps:,.1f} req/s, p50 {run.p50_ms:,.1f} ms, "
        f"p99 {run.p99_ms:,.1f} ms, errors {run.errors}, server {run.cores(server_cpu):.2f} "
        f"cores, wrk {run.cores(wrk_cpu):.2f} cores{batch}",
        file=sys.stderr,
        flush=True,
    )
    return run


def gc_pauses(log: Path, start: float, end: float) -> list[float]:
    """Milliseconds of every full garbage collection that ended between ``start`` and ``end``."""
    pauses = []
    for path in log.parent.glob(f"{log.name}.*"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                at, pause = (float(x) for x in line.split())
                if start <= at <= end:
                    pauses.append(pause)
    return pauses


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- profiling -----------------------------------------------------------------------


@dataclass
class Profile:
    """Where ``modelreg serve`` spends its time under load, from py-spy samples."""

    seconds: float
    rps: float
    samples: int = 0
    loop: int = 0  # samples of the event-loop thread
    predict: int = 0  # samples of the predict threads
    parts: Counter[str] = field(default_factory=Counter)
    leaves: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def share(self, count: int) -> str:
        """``count`` samples as a percentage of all samples."""
        return f"{100 * count / max(self.samples, 1):.0f}%"

    def busy(self, count: int) -> str:
        """``count`` samples of one thread kind as a percentage of wall-clock time."""
        return f"{100 * count / max(self.seconds * PROFILE_RATE, 1):.0f}%"


# Where a sample of the event-loop thread goes: first a modelreg step anywhere in the
# stack (its callees count towards it), else the library of the innermost frame
# that belongs to one. Predict-thread samples: scikit-learn anywhere, else MLflow.
LOOP_STEPS = (
    ("request parsing: JSON body to DataFrame (protocol.parse_request)", ("parse_request (",)),
    ("response: predictions to JSON (protocol.predictions_json)", ("predictions_json (",)),
    ("batching: merge frames, split results (serving/batcher.py)", ("serving/batcher.py",)),
    ("Prometheus metrics", ("prometheus_client/", "serving/metrics.py")),
)
LOOP_LIBRARIES = (
    ("FastAPI/Starlette: routing, Request/Response objects", ("starlette/", "fastapi/")),
    ("uvicorn HTTP protocol (httptools parser, transport writes)", ("uvicorn/", "httptools")),
    ("other modelreg request code (app.score, request-id middleware)", ("modelreg/",)),
    ("event loop itself (uvloop C code, asyncio)", ("asyncio/", "uvloop", "selectors.py")),
)
PREDICT_PARTS = (
    ("predict: scikit-learn predict_proba (200 tree walks, joblib dispatch)", ("sklearn/",)),
    ("predict: MLflow pyfunc wrapper and schema enforcement", ("mlflow/",)),
)


def parse_profile(raw: str, profile: Profile) -> None:
    """Fold py-spy's collapsed stacks into per-category and per-function sample counts."""
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        profile.samples += count
        profile.leaves[_short(frames[-1])] += count
        if any("concurrent/futures/thread.py" in f for f in frames):
            if any("serving/loader.py" in f for f in frames):
                profile.predict += count
                profile.parts[_anywhere(PREDICT_PARTS, frames) or "predict: other"] += count
            else:
                profile.parts["background threads (registry polling)"] += count
            continue
        profile.loop += count
        part = _anywhere(LOOP_STEPS, frames) or _innermost(LOOP_LIBRARIES, frames)
        profile.parts[part or "other (event-loop thread)"] += count


def _anywhere(parts: Sequence[tuple[str, tuple[str, ...]]], frames: list[str]) -> str | None:
    for label, markers in parts:
        if any(marker in frame for frame in frames for marker in markers):
            return label
    return None


def _innermost(parts: Sequence[tuple[str, tuple[str, ...]]], frames: list[str]) -> str | None:
    for frame in reversed(frames):
        for label, markers in parts:
            if any(marker in frame for marker in markers):
                return label
    return None


def _short(frame: str) -> str:
    """``function (…/site-packages/pkg/mod.py:12)`` shortened to ``function (pkg/mod.py)``."""
    found = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if found is None:
        return frame
    function, path = found.groups()
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            path = path.rsplit(marker, 1)[1]
            break
    return f"{function} ({path})"


def profile_modelreg(process: ServiceProcess, url: str, ctx: Context) -> Profile:
    """Sample ``modelreg serve`` with py-spy while wrk loads it at 64 connections."""
    args = ctx.args
    seconds = args.profile_seconds
    profile = Profile(seconds=seconds, rps=0.0)
    py_spy = shutil.which("py-spy", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if py_spy is None:
        profile.error = "py-spy is not installed (`.venv/bin/pip install py-spy`)"
        return profile
    out = ctx.home / "profile.txt"
    load = subprocess.Popen(
        wrk_argv(ctx.wrk, ctx.script, url, TARGET_CONNECTIONS, seconds + 4, args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(2)
        spy = subprocess.run(
            [
                py_spy,
                "record",
                "--gil",
                "--subprocesses",  # --workers N: the uvicorn workers are child processes
                "--nonblocking",
                "--format",
                "raw",
                "-r",
                str(PROFILE_RATE),
                "-d",
                f"{seconds:g}",
                "-o",
                str(out),
                "-p",
                str(process.pid),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        output, _ = load.communicate()
    with ctx.wrk_log.open("a") as log:
        log.write(f"$ (profile run)\n{output}\n")
    if spy.returncode != 0 or not out.exists():
        profile.error = f"py-spy failed: {(spy.stderr or spy.stdout).strip()[-300:]}"
        return profile
    numbers = parse_wrk(output)
    profile.rps = numbers["requests"] / (numbers["duration_us"] / 1e6)
    parse_profile(out.read_text(), profile)
    return profile


# -- the services ----------------------------------------------------------------------


@dataclass
class Context:
    """What every measurement needs: options, wrk, its script, where logs go."""

    args: argparse.Namespace
    wrk: str
    home: Path
    script: Path
    tracking_uri: str = ""
    ledger_uri: str = ""
    model: str = ""
    body: str = ""

    @property
    def wrk_log(self) -> Path:
        """Where every wrk output is kept."""
        return self.home / "wrk.log"

    @property
    def gc_log(self) -> Path:
        """Prefix of the servers' garbage-collection logs (one file per process)."""
        return self.home / "gc.log"

    def observed(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` plus what loads the garbage-collection hook into a server."""
        hook = self.home / "gc-hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(GC_HOOK)
        path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
        return {**env, "PYTHONPATH": path, "BENCH_GC_LOG": str(self.gc_log)}


@contextlib.contextmanager
def mlflow_tracking(home: Path) -> Iterator[str]:
    """An MLflow tracking server on SQLite and local artifacts; yields its URI."""
    port = free_port()
    server = ServiceProcess(
        "mlflow",
        mlflow_server_argv(
            backend_store_uri=f"sqlite:///{home / 'mlflow.db'}",
            artifacts_destination=str(home / "artifacts"),
            host="127.0.0.1",
            port=port,
        ),
        health_url=f"http://127.0.0.1:{port}/health",
        env=MLFLOW_SERVER_ENV,
        log_path=home / "mlflow.log",
        cwd=home,
    )
    server.start()
    try:
        server.wait_ready(timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def register_model(ctx: Context) -> None:
    """Train the course RandomForest, register it with modelreg and promote it to Production."""
    x_train, x_test, y_train, _ = fraud_data()
    model = RandomForestClassifier(**MODEL_PARAMS, random_state=42, n_jobs=1).fit(x_train, y_train)
    ctx.model = f"bench-serving-{uuid.uuid4().hex[:6]}"
    registry = Registry.connect(ctx.tracking_uri, ctx.ledger_uri, actor="bench", home=ctx.home)
    try:
        registry.ledger.migrate()
        view = registry.register(
            model,
            name=ctx.model,
            training_data=x_train,
            params=MODEL_PARAMS,
            experiment="bench-serving",
        )
        for stage in (Stage.STAGING, Stage.PRODUCTION):
            registry.promote(ctx.model, view.version, stage, reason="bench serving")
    finally:
        registry.close()
    row = x_test.head(1)
    ctx.body = json.dumps(
        {"dataframe_split": {"columns": list(row.columns), "data": row.to_numpy().tolist()}}
    )
    ctx.script.write_text(LUA.format(body=ctx.body))


def mlflow_serving(ctx: Context, port: int) -> ServiceProcess:
    """``mlflow models serve`` of the Production alias, at MLflow's defaults."""
    return ServiceProcess(
        "mlflow-models-serve",
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{ctx.model}@production",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        health_url=f"http://127.0.0.1:{port}/ping",
        # MLflow starts uvicorn through a shell: the venv's bin must be on PATH.
        env=ctx.observed(
            {
                "MLFLOW_TRACKING_URI": ctx.tracking_uri,
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        ),
        log_path=ctx.home / "mlflow-models-serve.log",
        cwd=ctx.home,
    )


def modelreg_serving(ctx: Context, port: int) -> ServiceProcess:
    """``modelreg serve`` of the model, at modelreg's defaults but for ``--workers``."""
    return ServiceProcess(
        "modelreg-serve",
        [
            str(BIN / "modelreg"),
            "serve",
            ctx.model,
            "--port",
            str(port),
            "--workers",
            str(ctx.args.workers),
        ],
        health_url=f"http://127.0.0.1:{port}/ping",
        env=ctx.observed(
            {
                "MODELREG_TRACKING_URI": ctx.tracking_uri,
                "MODELREG_LEDGER_URI": ctx.ledger_uri,
                "MODELREG_HOME": str(ctx.home / "modelreg-home"),
                "MODELREG_RELOAD_TOKEN": "",
            }
        ),
        log_path=ctx.home / "modelreg-serve.log",
        cwd=ctx.home,
    )


@dataclass
class Served:
    """Everything measured on one server."""

    name: str
    command: str
    workers: str
    runs: list[Run] = field(default_factory=list)
    answer: str = ""
    profile: Profile | None = None


def bench_server(ctx: Context, name: str) -> Served:
    """Start one server, check its answer, measure every connection count, stop it."""
    port = free_port()
    process = mlflow_serving(ctx, port) if name == MLFLOW else modelreg_serving(ctx, port)
    url = f"http://127.0.0.1:{port}"
    print(f"== {name}: starting", file=sys.stderr, flush=True)
    process.start()
    try:
        process.wait_ready(timeout=300)
        answer = httpx.post(
            f"{url}/invocations",
            content=ctx.body,
            headers={"Content-Type": "application/json"},
            trust_env=False,
            timeout=30,
        )
        answer.raise_for_status()
        served = Served(
            name,
            _shown_command(name, ctx.args.workers),
            _workers(name, process),
            answer=answer.text,
        )
        for connections in ctx.args.connection_list:
            served.runs.append(measure(name, process, url, connections, ctx))
        if name == MODELREG and ctx.args.profile:
            print(f"== {name}: profiling", file=sys.stderr, flush=True)
            served.profile = profile_modelreg(process, url, ctx)
    finally:
        process.stop()
    return served


def _shown_command(name: str, workers: int) -> str:
    if name == MLFLOW:
        return (
            "MLFLOW_TRACKING_URI=... mlflow models serve -m models:/<name>@production "
            "--env-manager local -h 127.0.0.1 -p PORT"
        )
    return (
        "MODELREG_TRACKING_URI=... MODELREG_LEDGER_URI=... modelreg serve <name> --port PORT "
        f"--workers {workers}"
    )


def _workers(name: str, process: ServiceProcess) -> str:
    """How many server processes answer requests, as their start-up log says."""
    started = process.log_tail(500).count("Started server process")
    if name == MLFLOW:
        given = os.environ.get("MLFLOW_MODELS_WORKERS")
        how = f"MLFLOW_MODELS_WORKERS={given}" if given else "MLflow's default, no --workers"
        return f"{started} uvicorn worker process{'es' if started != 1 else ''} ({how})"
    return (
        f"{started} uvicorn process{'es' if started != 1 else ''}, one event loop each; "
        "predict in a thread pool; micro-batching on (max 64 rows, 2 ms wait)"
    )


# -- reporting -------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _gc_text(pauses: list[float]) -> str:
    if not pauses:
        return "none"
    return f"{len(pauses)}, longest {_ms(max(pauses))} ms"


def table(baseline: Served, ours: Served) -> str:
    """Both servers' runs side by side, per connection count."""
    lines = [
        "| connections | server | requests/s | p50 ms | p99 ms | errors "
        "| server CPU (cores) | wrk CPU (cores) | CPU ms / request | rows / predict "
        "| gen-2 GC pauses |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for theirs, mine in zip(baseline.runs, ours.runs, strict=True):
        for run in (theirs, mine):
            rows = f"{run.batch_rows:.1f}" if run.batch_rows is not None else "1"
            lines.append(
                f"| {run.connections} | `{run.server}` | {run.rps:,.1f} | {_ms(run.p50_ms)} "
                f"| {_ms(run.p99_ms)} | {run.errors:,} | {run.cores(run.server_cpu):.2f} "
                f"| {run.cores(run.wrk_cpu):.2f} | {run.cpu_ms_per_request:.2f} | {rows} "
                f"| {_gc_text(run.gc_pauses)} |"
            )
    lines += [
        "",
        "| connections | **throughput ratio modelreg / MLflow** | p50 ratio MLflow / modelreg |",
        "|---:|---:|---:|",
    ]
    for theirs, mine in zip(baseline.runs, ours.runs, strict=True):
        lines.append(
            f"| {mine.connections} | **{mine.rps / theirs.rps:.1f}x** "
            f"| {theirs.p50_ms / mine.p50_ms:.1f}x |"
        )
    return "\n".join(lines)


def verdict(baseline: Served, ours: Served) -> str:
    """The result at 64 connections against the 30x / 100 ms target."""
    pairs = [
        (t, m)
        for t, m in zip(baseline.runs, ours.runs, strict=True)
        if m.connections == TARGET_CONNECTIONS
    ]
    if not pairs:
        return f"Not measured at {TARGET_CONNECTIONS} connections: no verdict on the target."
    theirs, mine = pairs[0]
    ratio = mine.rps / theirs.rps
    met_ratio, met_p99 = ratio >= TARGET_RATIO, mine.p99_ms < TARGET_P99_MS
    status = "**met**" if met_ratio and met_p99 else "**missed**"
    return (
        f"Target at {TARGET_CONNECTIONS} connections: at least {TARGET_RATIO:.0f}x the "
        f"throughput of `mlflow models serve` with p99 under {TARGET_P99_MS:.0f} ms. Result: "
        f"{ratio:.1f}x ({mine.rps:,.0f} vs {theirs.rps:,.1f} req/s, "
        f"{'met' if met_ratio else 'missed'}) with p99 {_ms(mine.p99_ms)} ms "
        f"({'met' if met_p99 else 'missed'}): target {status}."
    )


def limits(ours: Served) -> str:
    """What bounds modelreg's throughput at the highest connection count, from CPU and profile."""
    run = ours.runs[-1]
    busy = run.cores(run.server_cpu) + run.cores(run.wrk_cpu)
    lines = [
        f"At {run.connections} connections `modelreg serve` used {run.cores(run.server_cpu):.2f} "
        f"cores ({run.cpu_ms_per_request:.2f} ms of CPU per request) and wrk "
        f"{run.cores(run.wrk_cpu):.2f} cores: together {busy:.2f} of the machine's {CPUS}. "
        f"Requests were merged into {run.batch_rows or 1:.1f} rows per predict call on average. "
        "A server process runs Python in one thread at a time (the GIL), so about one core is "
        "all one `modelreg serve` process can use however many cores the machine has.",
    ]
    if run.gc_pauses:
        lines.append(
            f"\nFull (generation-2) garbage collections stopped the server {len(run.gc_pauses)} "
            f"times during that run, {_ms(sum(run.gc_pauses))} ms in total, the longest "
            f"{_ms(max(run.gc_pauses))} ms (p99 latency: {_ms(run.p99_ms)} ms): while one runs, "
            "no request is parsed, predicted or answered. Each scans every object the process "
            "holds (MLflow, pandas, scikit-learn, the model), and per-request allocations "
            "trigger them every few seconds."
        )
    profile = ours.profile
    if profile is None:
        lines.append("\nNo profile was taken (`--no-profile`).")
        return "\n".join(lines)
    if profile.error:
        lines.append(f"\nNo profile: {profile.error}.")
        return "\n".join(lines)
    lines.append(
        f"\nProfile: `py-spy record --gil --nonblocking` sampled the thread holding the GIL "
        f"{PROFILE_RATE} times a second for {profile.seconds:g} s while wrk held "
        f"{TARGET_CONNECTIONS} connections ({profile.rps:,.0f} req/s during profiling). "
        f"The GIL was held {profile.busy(profile.samples)} of the time: by the event-loop "
        f"thread (HTTP, parsing, framework) {profile.busy(profile.loop)}, by the predict "
        f"threads {profile.busy(profile.predict)}. Share of the {profile.samples:,} samples:\n"
    )
    lines += [f"- {label}: {profile.share(n)}" for label, n in profile.parts.most_common()]
    lines.append("\nTop functions by own time (share of the samples):\n")
    lines += [f"- `{name}`: {profile.share(n)}" for name, n in profile.leaves.most_common(12)]
    return "\n".join(lines)


def section(
    args: argparse.Namespace, baseline: Served, ours: Served, started: datetime, body_bytes: int
) -> str:
    """The "Serving" section of docs/benchmarks.md."""
    same = "identical" if baseline.answer.strip() == ours.answer.strip() else "DIFFERENT"
    command = " ".join([".venv/bin/python bench/serving.py", *_shown_argv(args.argv)])
    loads = [run.load for run in baseline.runs + ours.runs]
    return f"""{SECTION}

`bench/serving.py` serves one registered model with `mlflow models serve` and with
`modelreg serve`, one after the other in the same run, and loads each with
[wrk](https://github.com/wg/wrk) sending the same single-row request. Ratio =
modelreg requests/s / MLflow requests/s at the same number of connections.

- Date: {started:%Y-%m-%d %H:%M} UTC
- Machine: {machine()}
- Model: the course's `RandomForestClassifier(n_estimators=200, max_depth=10)` on 20
  double features (`course_register.fraud_data`), registered with `Registry.register`
  and promoted to Production; both servers load `models:/<name>@production`
- Request: `POST /invocations`, `Content-Type: application/json`, one row as
  `{{"dataframe_split": {{"columns": [...20 names], "data": [[...20 numbers]]}}}}`
  ({body_bytes} bytes); the two servers' answers were {same} (`{ours.answer.strip()}`)
- MLflow: `{baseline.command}`: {baseline.workers}; access log on (its default)
- modelreg: `{ours.command}`: {ours.workers}
- Load: `wrk -t{args.threads} -c<connections> -d{args.duration:g}s --timeout {args.timeout:g}s
  --latency -s body.lua` (never more threads than connections), after a
  {args.warmup:g} s warm-up at the same concurrency
- **wrk and the server share the same {CPUS} cores**, so wrk's own CPU use
  (column "wrk CPU") is taken from the server; the other server is stopped meanwhile
- Command: `{command}`
- 1-minute load average after each run (wrk and the server count too):
  {min(loads):.1f} to {max(loads):.1f}

{table(baseline, ours)}

Errors = non-2xx answers plus socket errors (connect, read, write, timeout). CPU
is user + system time of the server's process group during the measured run,
divided by its duration; "rows / predict" is the mean batch size from modelreg's
`modelreg_serving_batch_size` histogram over the run.

{verdict(baseline, ours)}

### What limits it

{limits(ours)}
"""


def _shown_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--keep DIR``, which changes where logs go, not what is measured."""
    shown, skip = [], False
    for arg in argv:
        if not skip and not arg.startswith("--keep"):
            shown.append(arg)
        skip = arg == "--keep"
    return shown


def write_docs(path: Path, text: str) -> None:
    """Replace (or add) the Serving section of ``path``, keeping everything else."""
    write_section(path, SECTION, text)


# -- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before each run")
    parser.add_argument(
        "--connections", default="1,16,64", help="comma-separated wrk connection counts"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (at most connections)")
    parser.add_argument(
        "--workers", type=int, default=2, help="modelreg serve --workers (one per core)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="wrk request timeout in seconds"
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="profile modelreg serve at 64 connections with py-spy when it is installed",
    )
    parser.add_argument("--profile-seconds", type=float, default=10.0, help="py-spy duration")
    parser.add_argument(
        "--keep", type=Path, help="keep server logs, wrk output and the profile in this directory"
    )
    parser.add_argument(
        "--write-docs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="replace the Serving section of docs/benchmarks.md (default: on)",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="benchmarks page to update")
    args = parser.parse_args(argv)
    try:
        args.connection_list = [int(c) for c in args.connections.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--connections must be comma-separated integers, got {args.connections!r}")
    if not args.connection_list or min(args.connection_list) < 1:
        parser.error("--connections must be positive")
    if args.duration <= 0 or args.threads < 1:
        parser.error("--duration and --threads must be positive")
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and update the docs."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    wrk = check_wrk()
    # A plain kill must still stop the servers this script started (the finally blocks).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    warnings.filterwarnings("ignore", category=FutureWarning)
    started = datetime.now(UTC)
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            home = args.keep.resolve()
        else:
            home = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="modelreg-bench-serving-"))
            )
        ctx = Context(args, wrk, home, home / "body.lua")
        print("== starting MLflow and registering the model", file=sys.stderr, flush=True)
        ctx.tracking_uri = stack.enter_context(mlflow_tracking(home))
        ctx.ledger_uri = f"sqlite:///{home / 'ledger.db'}"
        mlflow.set_tracking_uri(ctx.tracking_uri)
        register_model(ctx)
        baseline = bench_server(ctx, MLFLOW)
        ours = bench_server(ctx, MODELREG)
    text = section(args, baseline, ours, started, len(ctx.body))
    print(text)
    if args.write_docs:
        write_docs(args.docs, text)
        print(f"wrote {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
