"""Serving throughput: ``modelreg serve`` at its defaults against ``mlflow models serve``.

Run from the repository root (needs ``wrk``: ``apt-get install wrk``; py-spy
and granian come with ``.[dev]``)::

    .venv/bin/python bench/serving.py            # full run, about 12 minutes; writes the docs
    .venv/bin/python bench/serving.py --quick --no-write-docs   # about 5 minutes, a smoke test

``--servers mlflow,modelreg,ceiling,modelreg-granian,ceiling-granian`` picks
servers (the others follow the worker count ``modelreg`` chose, so keep it in),
``--no-ab`` and ``--no-profile`` skip those parts, ``--keep DIR`` keeps every
log, wrk output and the raw profile, and ``--wait-quiet 30`` waits (up to 30 s
a cell) for other jobs to leave the CPUs: on a shared machine the "other CPU"
column shows what they took.

The script starts its own MLflow server (SQLite, local artifacts, all in a
temporary directory) and SQLite ledger, trains the course's RandomForest (200
trees, depth 10, 20 double features, ``course_register.fraud_data``), registers
it twice with ``Registry.register`` (version 1 in Production, version 2 in
Staging, another seed) and serves ``<name>@production`` with, one server at a
time, on a free port:

- ``mlflow models serve`` (the baseline, MLflow's defaults);
- ``modelreg serve <name>`` with **default flags** (it picks its own worker
  count; what it printed is recorded), measured without and then with a
  running A/B experiment (``Registry.ab_start``: version 2 gets 50% of users,
  keyed by ``X-User-ID``), then profiled with py-spy at 64 connections;
- the HTTP ceiling: ``bench/serving_ceiling.py``, an ASGI app that reads the
  body and answers ``{"predictions": [0]}``, under uvicorn with the worker
  count modelreg chose and the uvicorn settings ``modelreg serve`` passes
  (loop, http, access log: read from ``src/modelreg/cli/serve.py``);
- the same two apps under granian (``granian --interface asgi``, modelreg
  through its factory ``modelreg.cli.serve:worker_app``, same worker count).

Every server gets the same requests from ``wrk`` (POST ``/invocations``,
``dataframe_split`` JSON of 1 row or of 1,000 rows, a different ``X-User-ID``
on each request) at 1, 16 and 64 connections: ``--warmup`` seconds, then
``--duration`` seconds measured. MLflow answers a few 1,000-row requests a
second, one at a time: 64 queued ones could wait longer than wrk's timeout, so
its 1,000-row cells hold at most ``--slow-connections`` connections (the table
says so) for ``--slow-duration`` seconds. Requests/s, rows/s, p50 and p99 come
from wrk's Lua ``done`` hook; the servers' CPU from ``/proc``, wrk's from ``getrusage``;
per-worker RSS and PSS from ``/proc/<pid>/smaps_rollup`` after the load. wrk
and the server share the machine's cores. The section is printed and, unless
``--no-write-docs``, replaces "## Serving" in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
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
from serving_profile import Profile, markdown, parse, record

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
# Where modelreg serve's uvicorn settings are written (the ceiling copies them).
SERVE_SOURCES = (
    ROOT / "src" / "modelreg" / "cli" / "serve.py",
    ROOT / "src" / "modelreg" / "serving" / "listener.py",
)
SECTION = "## Serving"
MODEL_PARAMS = {"n_estimators": 200, "max_depth": 10}
BIG_ROWS = 1000
BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CPUS = len(os.sched_getaffinity(0))

# The targets (issue 13, "Done when"), all at default flags, single-row unless said.
TARGET_RATIO_64 = 100.0
TARGET_P99_MS = 20.0
TARGET_CEILING_SHARE = 0.5
TARGET_RATIO_1 = 10.0
TARGET_ROWS_RATIO = 20.0

# wrk calls request() per request in each thread's Lua state, done() once with all threads' stats.
LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
local counter = math.random(1, 1000000)

request = function()
  counter = counter + 1
  wrk.headers["X-User-ID"] = "user-" .. counter
  return wrk.format()
end

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


# -- servers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """One server configuration: which app on which ASGI server."""

    key: str
    label: str
    app: str  # "mlflow", "modelreg" or "ceiling"
    stack: str  # "mlflow", "uvicorn" or "granian"


MLFLOW = Server("mlflow", "mlflow models serve", "mlflow", "mlflow")
MODELREG = Server("modelreg", "modelreg serve (defaults)", "modelreg", "uvicorn")
CEILING = Server("ceiling", "ceiling on uvicorn", "ceiling", "uvicorn")
MODELREG_GRANIAN = Server("modelreg-granian", "modelreg app on granian", "modelreg", "granian")
CEILING_GRANIAN = Server("ceiling-granian", "ceiling on granian", "ceiling", "granian")
SERVERS = (MLFLOW, MODELREG, CEILING, MODELREG_GRANIAN, CEILING_GRANIAN)


@dataclass
class Context:
    """What every server and measurement needs: options, wrk, where files go, the model."""

    args: argparse.Namespace
    wrk: str
    home: Path
    tracking_uri: str = ""
    ledger_uri: str = ""
    model: str = ""
    bodies: dict[int, str] = field(default_factory=dict)  # rows per request -> JSON body
    workers: int = 1  # what modelreg serve chose; the other stacks get the same
    uvicorn_options: dict[str, str] = field(default_factory=dict)

    @property
    def wrk_log(self) -> Path:
        """Where every wrk output is kept."""
        return self.home / "wrk.log"

    def script(self, rows: int) -> Path:
        """The wrk Lua script sending the ``rows``-row body."""
        return self.home / f"body-{rows}.lua"

    def modelreg_env(self) -> dict[str, str]:
        """The environment of a modelreg server process."""
        return {
            "MODELREG_TRACKING_URI": self.tracking_uri,
            "MODELREG_LEDGER_URI": self.ledger_uri,
            "MODELREG_HOME": str(self.home / "modelreg-home"),
            "MODELREG_RELOAD_TOKEN": "",
        }


def uvicorn_options() -> dict[str, str]:
    """The uvicorn settings ``modelreg serve`` passes (loop, http, access log), from its source.

    Read rather than assumed, so the ceiling follows whatever the server at HEAD does;
    a setting it does not pass is uvicorn's default.
    """
    source = "\n".join(path.read_text() for path in SERVE_SOURCES if path.exists())
    found = {}
    choices = {
        "loop": "auto|asyncio|uvloop",
        "http": "auto|h11|httptools",
        "access_log": "True|False",
    }
    for option, values in choices.items():
        # As a Config keyword (loop="uvloop") or an options-dict entry ("loop": "uvloop").
        match = re.search(rf'(?:"{option}":|\b{option}=)\s*"?({values})\b', source)
        found[option] = match.group(1) if match else values.split("|")[0]  # uvicorn default
    return found


def server_process(ctx: Context, server: Server, port: int) -> ServiceProcess:
    """The process of ``server`` on ``port`` (not started)."""
    host = "127.0.0.1"
    bench_dir = str(Path(__file__).resolve().parent)
    env: dict[str, str] = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if server is MLFLOW:
        argv = [
            str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{ctx.model}@production",
            "--env-manager", "local", "-h", host, "-p", str(port),
        ]  # fmt: skip
        env["MLFLOW_TRACKING_URI"] = ctx.tracking_uri
    elif server is MODELREG:
        argv = [str(BIN / "modelreg"), "serve", ctx.model, "--port", str(port)]
        argv += shlex.split(ctx.args.serve_args)
        env |= ctx.modelreg_env()
    elif server.stack == "uvicorn":
        opts = ctx.uvicorn_options
        argv = [
            str(BIN / "uvicorn"), "serving_ceiling:app", "--app-dir", bench_dir,
            "--host", host, "--port", str(port), "--workers", str(ctx.workers),
            "--loop", opts["loop"], "--http", opts["http"],
        ]  # fmt: skip
        if opts["access_log"] == "False":
            argv.append("--no-access-log")
    else:
        target = (
            "serving_ceiling:app" if server.app == "ceiling" else "modelreg.cli.serve:worker_app"
        )
        argv = [
            str(BIN / "granian"), "--interface", "asgi", "--host", host, "--port", str(port),
            "--workers", str(ctx.workers), "--no-ws", target,
        ]  # fmt: skip
        if server.app == "modelreg":
            argv.insert(-1, "--factory")
            env |= ctx.modelreg_env()
            env["MODELREG_SERVE_CONFIG"] = json.dumps({"models": [{"name": ctx.model}]})
        else:
            env["PYTHONPATH"] = bench_dir
    return ServiceProcess(
        server.key,
        argv,
        health_url=f"http://{host}:{port}/ping",
        env=env,
        log_path=ctx.home / f"{server.key}.log",
        cwd=ctx.home,
    )


def shown_command(ctx: Context, server: Server) -> str:
    """The command line of ``server`` as the docs show it."""
    opts = ctx.uvicorn_options
    access = " --no-access-log" if opts.get("access_log") == "False" else ""
    return {
        "mlflow": "MLFLOW_TRACKING_URI=... mlflow models serve -m models:/<name>@production "
        "--env-manager local -h 127.0.0.1 -p PORT",
        "modelreg": "MODELREG_TRACKING_URI=... MODELREG_LEDGER_URI=... modelreg serve <name> "
        f"--port PORT {ctx.args.serve_args}".rstrip(),
        "ceiling": f"uvicorn serving_ceiling:app --app-dir bench --workers {ctx.workers} "
        f"--loop {opts.get('loop')} --http {opts.get('http')}{access}",
        "modelreg-granian": 'MODELREG_SERVE_CONFIG=\'{"models": [{"name": "<name>"}]}\' '
        "MODELREG_TRACKING_URI=... granian --interface asgi --factory --no-ws "
        f"--workers {ctx.workers} modelreg.cli.serve:worker_app",
        "ceiling-granian": f"PYTHONPATH=bench granian --interface asgi --no-ws "
        f"--workers {ctx.workers} serving_ceiling:app",
    }[server.key]


# -- processes and memory --------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """One worker process's memory after load, from ``/proc/<pid>/smaps_rollup``."""

    pid: int
    rss_mib: float
    pss_mib: float  # shared pages divided among the processes sharing them


def group_stats(pgid: int) -> dict[int, list[str]]:
    """``/proc/<pid>/stat`` fields after the command of every live process in group ``pgid``."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # pgrp is field 5 of stat, third after the command
                found[int(stat.parent.name)] = fields
    return found


def worker_pids(pgid: int) -> list[int]:
    """The processes that answer requests: the group's leaves, minus multiprocessing helpers."""
    stats = group_stats(pgid)
    parents = {int(fields[1]) for fields in stats.values()}
    leaves = []
    for pid in set(stats) - parents:
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if command and b"resource_tracker" not in command:
                leaves.append(pid)
    return sorted(leaves)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid``."""
    total = sum(int(f[11]) + int(f[12]) for f in group_stats(pgid).values())
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent outside idle and iowait since boot, from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


def wait_quiet(most: float, busy_cores: float = 0.3) -> None:
    """Wait (at most ``most`` seconds) until the machine, server idle, is below ``busy_cores``."""
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        before = machine_busy_seconds()
        time.sleep(1)
        if machine_busy_seconds() - before < busy_cores:
            return
    print(f"  (machine still busy after {most:g} s; measuring anyway)", file=sys.stderr)


def memory(pgid: int) -> list[Memory]:
    """RSS and PSS of each worker process of group ``pgid``."""
    found = []
    for pid in worker_pids(pgid):
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            kib = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+):\s+(\d+) kB", text, re.M)}
            found.append(Memory(pid, kib.get("Rss", 0) / 1024, kib.get("Pss", 0) / 1024))
    return found


# -- measuring -------------------------------------------------------------------------


@dataclass
class Cell:
    """One measured wrk run: one server, body size, connection count, with or without A/B."""

    server: Server
    ab: bool
    rows: int
    connections: int  # the cell's connection count
    held: int  # the connections wrk really held (fewer for MLflow's 1,000-row cells)
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    server_cpu: float  # CPU seconds of the server's processes during the run
    wrk_cpu: float
    other_cores: float  # cores busy with everything else (other jobs, this script's probes)
    load: float  # 1-minute load average after the run

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds

    @property
    def rows_per_s(self) -> float:
        """Rows scored per second."""
        return self.rps * self.rows

    @property
    def errors(self) -> int:
        """Non-2xx answers plus socket errors."""
        return self.non_2xx + self.socket_errors

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


def wrk_argv(ctx: Context, url: str, rows: int, connections: int, seconds: float) -> list[str]:
    """The wrk command line for one run."""
    return [
        ctx.wrk,
        f"-t{min(ctx.args.threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",  # wrk takes whole seconds
        f"--timeout={ctx.args.timeout:g}s",
        "-s",
        str(ctx.script(rows)),
        f"{url}/invocations",
    ]


def run_wrk(ctx: Context, argv: list[str]) -> dict[str, int]:
    """Run wrk to completion, log its output and return its numbers (see ``LUA``)."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    with ctx.wrk_log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    found = re.search(r"^BENCH (\{.*\})$", done.stdout, re.M)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    numbers: dict[str, int] = json.loads(found.group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
    numbers["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
    return numbers


def children_cpu() -> float:
    """CPU seconds of this script's finished children (wrk; the servers are still running)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    ctx: Context, server: Server, pgid: int, url: str, rows: int, asked: int, *, ab: bool
) -> Cell:
    """Warm up, then measure one cell at ``asked`` connections (MLflow's big cells: fewer)."""
    args = ctx.args
    connections = held_connections(ctx, server, rows, asked)
    slow = connections != asked or (server is MLFLOW and rows > 1)
    seconds, warmup = (args.slow_duration, 1.0) if slow else (args.duration, args.warmup)
    if warmup > 0:
        run_wrk(ctx, wrk_argv(ctx, url, rows, connections, warmup))
    if args.wait_quiet > 0:
        wait_quiet(args.wait_quiet)
    cpu_before, wrk_before = group_cpu_seconds(pgid), children_cpu()
    busy_before, window = machine_busy_seconds(), time.monotonic()
    numbers = run_wrk(ctx, wrk_argv(ctx, url, rows, connections, seconds))
    server_cpu, wrk_cpu = group_cpu_seconds(pgid) - cpu_before, children_cpu() - wrk_before
    busy, window = machine_busy_seconds() - busy_before, time.monotonic() - window
    cell = Cell(
        server=server,
        ab=ab,
        rows=rows,
        connections=asked,
        held=connections,
        requests=numbers["requests"],
        seconds=numbers["duration_us"] / 1e6,
        p50_ms=numbers["p50_us"] / 1000,
        p99_ms=numbers["p99_us"] / 1000,
        non_2xx=numbers["non_2xx"],
        socket_errors=sum(numbers[k] for k in ("connect", "read", "write", "timeout")),
        server_cpu=server_cpu,
        wrk_cpu=wrk_cpu,
        other_cores=max(busy - server_cpu - wrk_cpu, 0.0) / window,
        load=os.getloadavg()[0],
    )
    print(
        f"  {server.label}{' A/B' if ab else ''} rows={rows} c={_held(cell)}: "
        f"{cell.rps:,.1f} req/s, {cell.rows_per_s:,.0f} rows/s, p50 {cell.p50_ms:,.1f} ms, "
        f"p99 {cell.p99_ms:,.1f} ms, errors {cell.errors}, server "
        f"{cell.cores(cell.server_cpu):.2f} cores, wrk {cell.cores(cell.wrk_cpu):.2f}, "
        f"others {cell.other_cores:.2f}",
        file=sys.stderr,
        flush=True,
    )
    return cell


@dataclass
class Served:
    """Everything measured on one server."""

    server: Server
    command: str
    workers: int = 0
    printed: list[str] = field(default_factory=list)  # what modelreg serve said it chose
    answer: str = ""
    cells: list[Cell] = field(default_factory=list)
    memory: dict[str, list[Memory]] = field(default_factory=dict)  # phase -> workers
    ab_probe: str = ""
    runtimes: list[str] = field(default_factory=list)  # what served each variant, per /version
    ab_runtimes: list[str] = field(default_factory=list)
    profile: Profile | None = None


def bench_server(ctx: Context, server: Server) -> Served:
    """Start one server, check its answer, measure every cell, stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = server_process(ctx, server, port)
    print(f"== {server.label}: starting", file=sys.stderr, flush=True)
    process.start()
    try:
        process.wait_ready(timeout=300)
        pgid = process.pid
        assert pgid is not None  # noqa: S101 - the server is running
        served = Served(server, shown_command(ctx, server), answer=score(url, ctx.bodies[1]).text)
        served.workers = len(worker_pids(pgid))
        if server.app == "modelreg":
            served.printed = chosen_lines(process.log_tail(400))
            served.runtimes = runtimes(url)
        measure_all(ctx, served, pgid, url, ab=False)
        served.memory["after load"] = memory(pgid)
        if server is MODELREG and ctx.args.profile:
            served.profile = profile(ctx, process, url, served.workers)
        if server is MODELREG and ctx.args.ab:
            with running_experiment(ctx, url):
                served.ab_probe = probe_variants(url, ctx.bodies[1])
                served.ab_runtimes = runtimes(url)
                measure_all(ctx, served, pgid, url, ab=True)
                served.memory["after load, A/B running (two models loaded)"] = memory(pgid)
    finally:
        process.stop()
    return served


def held_connections(ctx: Context, server: Server, rows: int, asked: int) -> int:
    """The connections wrk holds for a cell: ``asked``, or fewer for MLflow's 1,000-row cells."""
    if server is MLFLOW and rows > 1:
        return min(asked, int(ctx.args.slow_connections))
    return asked


def measure_all(ctx: Context, served: Served, pgid: int, url: str, *, ab: bool) -> None:
    """Every body size at every connection count (a cell held at the same count is reused)."""
    for rows in ctx.bodies:
        done: dict[int, Cell] = {}
        for asked in ctx.args.connection_list:
            held = held_connections(ctx, served.server, rows, asked)
            if held in done:
                served.cells.append(replace(done[held], connections=asked))
                continue
            done[held] = measure(ctx, served.server, pgid, url, rows, asked, ab=ab)
            served.cells.append(done[held])


def score(url: str, body: str, user: str = "user-0") -> httpx.Response:
    """One scoring request; raises on a non-2xx answer."""
    answer = httpx.post(
        f"{url}/invocations",
        content=body,
        headers={"Content-Type": "application/json", "X-User-ID": user},
        trust_env=False,
        timeout=60,
    )
    answer.raise_for_status()
    return answer


def chosen_lines(log: str) -> list[str]:
    """What ``modelreg serve`` printed before its server started (e.g. the workers it chose)."""
    lines = []
    for line in log.splitlines():
        if re.match(r"(INFO|WARNING|ERROR|DEBUG):|\[INFO\]|\d{4}-\d\d-\d\d |Traceback", line):
            break  # the server's (or a logger's) first line: the command's own output is over
        if line.strip():
            lines.append(line.strip())
    # Or a log line saying what it chose (uvicorn's and granian's own worker lines aside).
    lines += [
        line.strip()
        for line in log.splitlines()
        if re.search(r"(?i)\bworkers?\b", line)
        and not re.search(r"^INFO:|^\[INFO\]|Started server process|worker-\d", line)
    ][:2]
    return list(dict.fromkeys(lines))[:5]  # once each, in order


def runtimes(url: str) -> list[str]:
    """The runtime of every model slot ``/version`` shows (e.g. ``onnxruntime``), with why."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            runtime = node.get("runtime")
            if isinstance(runtime, dict):
                reason = f" ({str(runtime['reason'])[:80]})" if runtime.get("reason") else ""
                who = node.get("variant") or node.get("model") or "model"
                found.append(f"{who} v{node.get('version')}: {runtime.get('name')}{reason}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    with contextlib.suppress(httpx.HTTPError, ValueError):
        walk(httpx.get(f"{url}/version", trust_env=False, timeout=10).json())
    return found


@contextlib.contextmanager
def running_experiment(ctx: Context, url: str) -> Iterator[None]:
    """A 50/50 A/B experiment (version 2 vs production) that every worker has picked up."""
    registry = Registry.connect(ctx.tracking_uri, ctx.ledger_uri, actor="bench", home=ctx.home)
    try:
        registry.ab_start(ctx.model, ["2"], traffic=0.5, reason="bench serving: A/B overhead")
        print("== waiting for every worker to run the experiment", file=sys.stderr, flush=True)
        deadline, streak = time.monotonic() + 180, 0
        # Each new connection may land on any worker: 30 in a row saying running means all do.
        while streak < 30:
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not pick up the experiment within 180 s")
            with contextlib.suppress(httpx.HTTPError):
                text = httpx.get(f"{url}/version", trust_env=False, timeout=10).text
                streak = streak + 1 if '"running"' in text else 0
            time.sleep(0.05 if streak else 0.5)
        yield
    finally:
        with contextlib.suppress(Exception):
            registry.ab_conclude(ctx.model, reason="bench serving done")
        registry.close()


def probe_variants(url: str, body: str) -> str:
    """How 200 distinct users were split, from the answers' ``X-Variant`` headers."""
    seen: dict[str, int] = {}
    for user in range(200):
        variant = score(url, body, user=f"probe-{user}").headers.get("x-variant", "none")
        seen[variant] = seen.get(variant, 0) + 1
    return ", ".join(f"{name} {count}" for name, count in sorted(seen.items()))


def profile(ctx: Context, process: ServiceProcess, url: str, workers: int) -> Profile:
    """py-spy samples of every process of ``modelreg serve`` under 64-connection load."""
    seconds = ctx.args.profile_seconds
    result = Profile(seconds=seconds, processes=workers)
    py_spy = shutil.which("py-spy", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if py_spy is None or process.pid is None:
        result.error = "py-spy is not installed (`.venv/bin/pip install py-spy`)"
        return result
    print(f"== {MODELREG.label}: profiling", file=sys.stderr, flush=True)
    out = ctx.home / "profile.txt"
    load = subprocess.Popen(
        wrk_argv(ctx, url, 1, 64, seconds + 4), stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(2)
        result.error = record(py_spy, process.pid, seconds, out)
    finally:
        output, _ = load.communicate()
    with ctx.wrk_log.open("a") as log:
        log.write(f"$ (load while profiling)\n{output}\n")
    found = re.search(r"^BENCH (\{.*\})$", output, re.M)
    if found:
        numbers = json.loads(found.group(1))
        result.rps = numbers["requests"] / (numbers["duration_us"] / 1e6)
    if result.error is None:
        parse(out.read_text(), result)
    return result


# -- the model -------------------------------------------------------------------------


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
    """Register the course forest as version 1 (Production) and, another seed, 2 (Staging)."""
    x_train, x_test, y_train, _ = fraud_data()
    ctx.model = f"bench-serving-{uuid.uuid4().hex[:6]}"
    registry = Registry.connect(ctx.tracking_uri, ctx.ledger_uri, actor="bench", home=ctx.home)
    try:
        registry.ledger.migrate()
        for seed, stages in ((42, (Stage.STAGING, Stage.PRODUCTION)), (7, (Stage.STAGING,))):
            model = RandomForestClassifier(**MODEL_PARAMS, random_state=seed, n_jobs=1)
            view = registry.register(
                model.fit(x_train, y_train),
                name=ctx.model,
                training_data=x_train,
                params=MODEL_PARAMS,
                experiment="bench-serving",
            )
            for stage in stages:
                registry.promote(ctx.model, view.version, stage, reason="bench serving")
    finally:
        registry.close()
    for rows in (1, BIG_ROWS):
        frame = x_test.head(rows)
        body = {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}
        ctx.bodies[rows] = json.dumps(body)
        ctx.script(rows).write_text(LUA.format(body=ctx.bodies[rows]))


# -- reporting -------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def find(
    results: Sequence[Served], key: str, rows: int, connections: int, ab: bool = False
) -> Cell | None:
    """The cell of server ``key`` at ``rows`` and ``connections``, if measured."""
    for served in results:
        for cell in served.cells:
            if (cell.server.key, cell.rows, cell.connections, cell.ab) == (
                key, rows, connections, ab,
            ):  # fmt: skip
                return cell
    return None


def cells_table(results: Sequence[Served]) -> str:
    """Every measured cell."""
    lines = [
        "| server | A/B | rows / request | connections | requests/s | rows/s | p50 ms | p99 ms "
        "| errors | server CPU (cores) | wrk CPU | other CPU | load | measured s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for served in results:
        for c in served.cells:
            lines.append(
                f"| {c.server.label} | {'50/50' if c.ab else '-'} | {c.rows:,} | {_held(c)} "
                f"| {c.rps:,.1f} | {c.rows_per_s:,.0f} | {_lat(c, c.p50_ms)} | {_lat(c, c.p99_ms)} "
                f"| {c.errors:,} | {c.cores(c.server_cpu):.2f} | {c.cores(c.wrk_cpu):.2f} "
                f"| {c.other_cores:.2f} "
                f"| {c.load:.1f} | {c.seconds:.0f} |"
            )
    return "\n".join(lines)


def _lat(cell: Cell, value: float) -> str:
    return _ms(value) if cell.requests else "none answered"


def _held(cell: Cell) -> str:
    if cell.held == cell.connections:
        return str(cell.connections)
    return f"{cell.connections} (held {cell.held})"


def ratio(a: Cell | None, b: Cell | None, rows: bool = False) -> float | None:
    """``a``'s throughput over ``b``'s (rows/s when ``rows``), None when either is missing."""
    if a is None or b is None or b.rps == 0:
        return None
    return (a.rows_per_s / b.rows_per_s) if rows else a.rps / b.rps


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}x"


def peak(results: Sequence[Served], key: str, rows: int) -> Cell | None:
    """The cell of server ``key`` with the most rows/s at ``rows`` rows per request."""
    cells = [
        c for s in results for c in s.cells if c.server.key == key and c.rows == rows and not c.ab
    ]
    return max(cells, key=lambda c: c.rows_per_s, default=None)


def ratios(results: Sequence[Served], connections: Sequence[int]) -> str:
    """modelreg against MLflow and against the ceiling, per body size and connection count."""
    lines = [
        "| rows / request | connections | modelreg / MLflow (req/s) | modelreg with A/B / MLflow "
        "| modelreg / ceiling (uvicorn) | modelreg / ceiling (granian) | granian / uvicorn "
        "(modelreg app) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rows in (1, BIG_ROWS):
        for n in connections:
            ours, mlflow_cell = find(results, "modelreg", rows, n), find(results, "mlflow", rows, n)
            with_ab = find(results, "modelreg", rows, n, ab=True)
            share = ratio(ours, find(results, "ceiling", rows, n))
            granian = find(results, "modelreg-granian", rows, n)
            share_g = ratio(granian, find(results, "ceiling-granian", rows, n))
            lines.append(
                f"| {rows:,} | {n} | {_x(ratio(ours, mlflow_cell))} "
                f"| {_x(ratio(with_ab, mlflow_cell))} | {_pct(share)} | {_pct(share_g)} "
                f"| {_x(ratio(granian, ours))} |"
            )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def verdict(results: Sequence[Served]) -> str:
    """The issue's targets, each with its measured value and met / missed."""
    ours64, theirs64 = find(results, "modelreg", 1, 64), find(results, "mlflow", 1, 64)
    r64, r1 = (
        ratio(ours64, theirs64),
        ratio(find(results, "modelreg", 1, 1), find(results, "mlflow", 1, 1)),
    )
    share = ratio(ours64, find(results, "ceiling", 1, 64))
    ours_big, theirs_big = peak(results, "modelreg", BIG_ROWS), peak(results, "mlflow", BIG_ROWS)
    rows_ratio = ratio(ours_big, theirs_big, rows=True)
    p99 = ours64.p99_ms if ours64 else None

    def mark(value: float | None, target: float, above: bool = True) -> str:
        if value is None:
            return "not measured"
        return "met" if (value >= target if above else value <= target) else "**missed**"

    big = (
        f"{ours_big.rows_per_s:,.0f} rows/s at {_held(ours_big)} connections vs "
        f"{theirs_big.rows_per_s:,.0f} at {_held(theirs_big)}"
        if ours_big and theirs_big
        else "not measured"
    )
    p99_text = "n/a" if p99 is None else f"{_ms(p99)} ms"
    big_what = f"modelreg / MLflow rows/s, {BIG_ROWS:,}-row requests (best of each: {big})"
    rows = [
        ("modelreg / MLflow req/s at 64 connections", f"≥ {TARGET_RATIO_64:.0f}x", _x(r64),
         mark(r64, TARGET_RATIO_64)),
        ("modelreg p99 at 64 connections", f"≤ {TARGET_P99_MS:.0f} ms", p99_text,
         mark(p99, TARGET_P99_MS, above=False)),
        ("modelreg / HTTP ceiling (uvicorn) at 64", f"≥ {100 * TARGET_CEILING_SHARE:.0f}%",
         _pct(share), mark(share, TARGET_CEILING_SHARE)),
        ("modelreg / MLflow req/s at 1 connection", f"≥ {TARGET_RATIO_1:.0f}x", _x(r1),
         mark(r1, TARGET_RATIO_1)),
        (big_what, f"≥ {TARGET_ROWS_RATIO:.0f}x", _x(rows_ratio),
         mark(rows_ratio, TARGET_ROWS_RATIO)),
    ]  # fmt: skip
    lines = ["| target (issue 13, default flags) | wanted | measured | |", "|---|---:|---:|---|"]
    lines += [f"| {what} | {wanted} | {got} | {status} |" for what, wanted, got, status in rows]
    missed = [what.split(" (")[0] for what, _, _, status in rows if status != "met"]
    lines.append(
        "\nVerdict: **all targets met**."
        if not missed
        else f"\nVerdict: **{len(missed)} of {len(rows)} targets not met** ({'; '.join(missed)})."
    )
    return "\n".join(lines)


def comparisons(results: Sequence[Served]) -> str:
    """A/B cost and uvicorn against granian at 64 connections, single-row, in sentences."""
    ours = find(results, "modelreg", 1, 64)
    lines = []
    with_ab = find(results, "modelreg", 1, 64, ab=True)
    if ours and with_ab:
        lines.append(
            f"A running 50/50 experiment: {with_ab.rps:,.0f} req/s at 64 connections against "
            f"{ours.rps:,.0f} without ({_pct(ratio(with_ab, ours))}), p99 {_ms(with_ab.p99_ms)} "
            f"ms against {_ms(ours.p99_ms)} ms."
        )
    granian = find(results, "modelreg-granian", 1, 64)
    ceiling, ceiling_g = find(results, "ceiling", 1, 64), find(results, "ceiling-granian", 1, 64)
    if ours and granian:
        lines.append(
            f"uvicorn or granian, same worker count, 64 connections: the modelreg app answered "
            f"{ours.rps:,.0f} req/s (p99 {_ms(ours.p99_ms)} ms) on uvicorn and "
            f"{granian.rps:,.0f} (p99 {_ms(granian.p99_ms)} ms) on granian "
            f"({_x(ratio(granian, ours))}); the ceiling app {_x(ratio(ceiling_g, ceiling))} "
            "(granian / uvicorn)."
        )
    return " ".join(lines)


def memory_table(results: Sequence[Served]) -> str:
    """RSS and PSS of every worker process of every server, after its load."""
    lines = [
        "| server | when | workers | RSS MiB per worker | PSS MiB per worker | PSS MiB total |",
        "|---|---|---:|---|---|---:|",
    ]
    for served in results:
        for phase, workers in served.memory.items():
            rss = ", ".join(f"{m.rss_mib:,.0f}" for m in workers)
            pss = ", ".join(f"{m.pss_mib:,.0f}" for m in workers)
            total = sum(m.pss_mib for m in workers)
            lines.append(
                f"| {served.server.label} | {phase} | {len(workers)} | {rss} | {pss} "
                f"| {total:,.0f} |"
            )
    return "\n".join(lines)


def limits(results: Sequence[Served]) -> str:
    """What bounds modelreg at 64 connections, in measured numbers: CPU, ceiling, profile."""
    ours = find(results, "modelreg", 1, 64)
    ceiling = find(results, "ceiling", 1, 64)
    modelreg = next((s for s in results if s.server is MODELREG), None)
    if ours is None or modelreg is None:
        return "modelreg was not measured at 64 connections."
    busy = ours.cores(ours.server_cpu) + ours.cores(ours.wrk_cpu)
    per_request = 1000 * ours.server_cpu / max(ours.requests, 1)
    lines = [
        f"Single-row requests at 64 connections: `modelreg serve` ({_workers(modelreg.workers)}) "
        f"used {ours.cores(ours.server_cpu):.2f} cores, {per_request:.2f} ms of CPU "
        f"per request, and wrk {ours.cores(ours.wrk_cpu):.2f} cores: {busy:.2f} of the "
        f"machine's {CPUS} cores together (1-minute load average {ours.load:.1f})."
    ]
    spare = CPUS - ours.cores(ours.wrk_cpu)
    lines.append(
        f" At that CPU cost the {spare:.2f} cores wrk leaves could answer at most "
        f"{spare * 1000 / max(per_request, 1e-9):,.0f} req/s if nothing else ran; it answered "
        f"{ours.rps:,.0f} (other jobs on the machine took {ours.other_cores:.2f} cores)."
    )
    if ceiling is not None:
        ceiling_cpu = 1000 * ceiling.server_cpu / max(ceiling.requests, 1)
        lines.append(
            f" The ceiling app on the same stack answered {ceiling.rps:,.0f} req/s using "
            f"{ceiling.cores(ceiling.server_cpu):.2f} cores ({ceiling_cpu:.2f} ms of CPU per "
            f"request) with wrk at {ceiling.cores(ceiling.wrk_cpu):.2f} cores: that much of "
            f"every modelreg request is the HTTP server, the event loop and the kernel, and "
            f"the other {max(per_request - ceiling_cpu, 0):.2f} ms is modelreg's own work "
            "(framework, parsing, routing, batching, the model, metrics)."
        )
    big, big_ceiling = peak(results, "modelreg", BIG_ROWS), peak(results, "ceiling", BIG_ROWS)
    if big is not None and big.requests:
        big_cpu = 1000 * big.server_cpu / big.requests
        lines.append(
            f"\n\n{BIG_ROWS:,}-row requests: at best {big.rows_per_s:,.0f} rows/s "
            f"({big.connections} connections, p99 {_ms(big.p99_ms)} ms), {big_cpu:.1f} ms of "
            f"server CPU per request, {1000 * big_cpu / BIG_ROWS:.1f} µs per row."
        )
        if big_ceiling is not None and big_ceiling.requests:
            ceiling_big = 1000 * big_ceiling.server_cpu / big_ceiling.requests
            lines.append(
                f" Reading the same {BIG_ROWS:,}-row body costs the ceiling app "
                f"{ceiling_big:.2f} ms: the rest is parsing the JSON into the model's input, "
                "predicting and answering."
            )
    lines.append(
        '\n\nOn a shared machine requests/s fall when other jobs take CPU (the "other CPU" '
        "column); CPU milliseconds per request and the profile's shares hold."
    )
    if modelreg.profile is not None:
        lines.append("\n\n" + markdown(modelreg.profile, "`modelreg serve` at 64 connections"))
    else:
        lines.append("\n\nNo profile was taken (`--no-profile`).")
    return "".join(lines)


def section(ctx: Context, results: Sequence[Served], started: datetime) -> str:
    """The "Serving" section of docs/benchmarks.md."""
    args = ctx.args
    by_key = {s.server.key: s for s in results}
    modelreg = by_key.get("modelreg")
    mlflow_served = by_key.get("mlflow")
    answers = {s.server.label: s.answer.strip() for s in results if s.server.app != "ceiling"}
    same = "identical" if len(set(answers.values())) <= 1 else f"DIFFERENT: {answers}"
    printed = "; ".join(f"`{line}`" for line in modelreg.printed) if modelreg else ""
    commands = "\n".join(
        f"- {s.server.label}: `{s.command}` ({_workers(s.workers)})" for s in results
    )
    loads = [c.load for s in results for c in s.cells]
    command = " ".join([".venv/bin/python bench/serving.py", *args.argv])
    ab = (
        f"Experiment: `Registry.ab_start(name, ['2'], traffic=0.5)` (version 2, another seed, "
        f"against version 1 in Production), picked up by every worker before measuring; 200 "
        f"probe users were split {modelreg.ab_probe}."
        if modelreg and modelreg.ab_probe
        else "No A/B experiment was measured (`--no-ab`)."
    )
    mlflow_note = (
        f"MLflow's {BIG_ROWS:,}-row cells: at most {args.slow_connections} connections, "
        f"{args.slow_duration:g} s after a 1 s warm-up (it answers a few such requests a "
        "second, one at a time, so more connections only queue, up to wrk's timeout)."
        if mlflow_served
        else ""
    )
    runtime_text = (
        "; ".join(
            f"{s.server.label}{' with A/B' if ab else ''}: {', '.join(found)}"
            for s in results
            for ab, found in ((False, s.runtimes), (True, s.ab_runtimes))
            if found
        )
        or "not reported"
    )
    small, big = len(ctx.bodies.get(1, "")), len(ctx.bodies.get(BIG_ROWS, ""))
    return f"""{SECTION}

`bench/serving.py` serves one registered model with `mlflow models serve`, with
`modelreg serve` at its **default flags** (without and with a running A/B
experiment), and with a trivial app on the same ASGI server (the HTTP ceiling),
then the modelreg app and the trivial app under granian, one server at a time,
and loads each with [wrk](https://github.com/wg/wrk).

- Date: {started:%Y-%m-%d %H:%M} UTC; commit `{git_head()}`
- Machine: {machine()}
- Command: `{command}`
- Model: the course's `RandomForestClassifier(n_estimators=200, max_depth=10)` on 20
  double features (`course_register.fraud_data`), registered with `Registry.register`;
  every server loads `models:/<name>@production`
- Requests: `POST /invocations`, `dataframe_split` JSON of 1 row ({small:,} bytes)
  or {BIG_ROWS:,} rows ({big:,} bytes), a new `X-User-ID` on every request; the
  single-row answers were {same}
- Load: `wrk -t{args.threads} -c<connections> -d{args.duration:g}s --timeout {args.timeout:g}s
  -s body.lua` (never more threads than connections) after a {args.warmup:g} s warm-up.
  {mlflow_note}
- **wrk and the server share the same {CPUS} cores**; wrk's CPU is a column; 1-minute load
  average after each cell: {min(loads, default=0):.1f} to {max(loads, default=0):.1f}
- modelreg flags: {f"`{args.serve_args}`" if args.serve_args else "none (its defaults)"}; it
  printed: {printed or "nothing"}
- {ab}
- Model runtime (`/version`): {runtime_text}
- uvicorn settings of the ceiling, as `modelreg serve` passes them: {ctx.uvicorn_options}

Servers:

{commands}

{cells_table(results)}

Errors = non-2xx answers plus socket errors. Server CPU = user + system time
of the server's process group during the measured run, over its duration, in
cores; wrk CPU likewise; other CPU = the rest of the machine's busy time
(`/proc/stat`) in that window: other jobs sharing the machine (and interrupt
time no process is charged for), which the server could not use.

### Ratios and verdict

{ratios(results, args.connection_list)}

{verdict(results)}

{comparisons(results)}

### Memory per worker

{memory_table(results)}

### What limits it

{limits(results)}
"""


def _workers(count: int) -> str:
    return f"{count} worker process{'es' if count != 1 else ''}"


def git_head() -> str:
    """The short commit the run measured (with ``+dirty`` for uncommitted changes)."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{head}{'+dirty' if dirty else ''}" or "unknown"


# -- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s cells at 1 and 64 connections")
    parser.add_argument("--duration", type=float, help="measured seconds per cell (default 10)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per cell (default 2)")
    parser.add_argument(
        "--slow-duration", type=float, help="seconds of MLflow's 1,000-row cells (default 10)"
    )
    parser.add_argument(
        "--slow-connections", type=int, default=4, help="most connections, MLflow 1,000-row cells"
    )
    parser.add_argument("--connections", help="comma-separated wrk connections (default 1,16,64)")
    parser.add_argument(
        "--servers",
        default=",".join(s.key for s in SERVERS),
        help=f"which servers, comma-separated (default all: {','.join(s.key for s in SERVERS)})",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (at most connections)")
    parser.add_argument("--timeout", type=float, default=30.0, help="wrk request timeout, seconds")
    parser.add_argument(
        "--ab", action=argparse.BooleanOptionalAction, default=True, help="measure with A/B too"
    )
    parser.add_argument(
        "--profile", action=argparse.BooleanOptionalAction, default=True, help="py-spy profile"
    )
    parser.add_argument("--profile-seconds", type=float, help="py-spy duration (default 10)")
    parser.add_argument(
        "--serve-args",
        default="",
        help="extra modelreg serve flags, e.g. '--workers 2' (default none: its defaults)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each cell wait up to this many seconds for other jobs to leave the CPUs",
    )
    parser.add_argument("--keep", type=Path, help="keep logs, wrk output and profile here")
    parser.add_argument(
        "--write-docs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="replace the Serving section of docs/benchmarks.md (default: on)",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="benchmarks page to update")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "duration": 2.0 if quick else 10.0,
        "warmup": 1.0 if quick else 2.0,
        "slow_duration": 3.0 if quick else 10.0,
        "connections": "1,64" if quick else "1,16,64",
        "profile_seconds": 4.0 if quick else 10.0,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    try:
        args.connection_list = [int(c) for c in args.connections.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--connections must be comma-separated integers, got {args.connections!r}")
    if not args.connection_list or min(args.connection_list) < 1:
        parser.error("--connections must be positive")
    known = {s.key: s for s in SERVERS}
    try:
        args.server_list = [known[k.strip()] for k in args.servers.split(",") if k.strip()]
    except KeyError as exc:
        parser.error(f"--servers: unknown server {exc}; known: {', '.join(known)}")
    args.argv = shown_argv(argv)
    return args


def shown_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` without the options that change where output goes, not what is measured."""
    shown, skip = [], False
    for arg in argv:
        if not skip and not arg.startswith(("--keep", "--docs")) and arg != "--no-write-docs":
            shown.append(arg)
        skip = arg in ("--keep", "--docs")
    return shown


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the section and update the docs."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    wrk = check_wrk()
    # A plain kill must still stop the servers this script started (the finally blocks).
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    warnings.filterwarnings("ignore", category=FutureWarning)
    started = datetime.now(UTC)
    results: list[Served] = []
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            home = args.keep.resolve()
        else:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-serving-")))
        ctx = Context(args, wrk, home, uvicorn_options=uvicorn_options())
        print("== starting MLflow and registering the model", file=sys.stderr, flush=True)
        ctx.tracking_uri = stack.enter_context(mlflow_tracking(home))
        ctx.ledger_uri = f"sqlite:///{home / 'ledger.db'}"
        mlflow.set_tracking_uri(ctx.tracking_uri)
        register_model(ctx)
        # modelreg first among the ASGI servers: the others get the worker count it chose.
        order = sorted(args.server_list, key=SERVERS.index)
        for server in order:
            served = bench_server(ctx, server)
            if server is MODELREG:
                ctx.workers = max(served.workers, 1)
            results.append(served)
    text = section(ctx, results, started)
    print(text)
    if args.write_docs:
        write_section(args.docs, SECTION, text)
        print(f"wrote {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
