"""Throughput through the load balancer with 1 and 3 serving replicas, and a rolling restart.

Run from the repository root (needs nginx, prometheus and wrk from Debian:
``apt-get install nginx prometheus wrk``, and PostgreSQL as for the tests)::

    .venv/bin/python bench/topology.py                     # about 4 minutes on 2 cores
    .venv/bin/python bench/topology.py --duration 5 --no-write-docs   # quick check

The script starts the production shape of ``tests/topology/production_shape.py``
(PostgreSQL, SeaweedFS S3, MLflow with basic auth, the API, a worker, three
``modelreg serve`` replicas of ``fraud-detection`` behind nginx, Prometheus)
and a second nginx whose upstream is the first replica alone. wrk (a C load
generator, so the Python processes get the cores) sends one-row scoring
requests with a random ``X-User-ID`` at ``--connections`` connections, first
through the one-replica nginx (the baseline), then through the three-replica
one, ``--duration`` seconds each after a warm-up. Then it sends the same load
through the three-replica nginx while the replicas are restarted one at a
time (SIGTERM, start, ready) and counts every request that was not answered
200. No experiment runs (``tests/topology`` checks routing and counts); the
table is printed and, with ``--write-docs`` (the default), written to the
"Topology" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent / "tests" / "topology")]

from production_shape import (  # noqa: E402 - after the path to the tests' helpers
    COLUMNS,
    ProductionShape,
    Replica,
    Restart,
    missing_tools,
    start_nginx,
)

from registry import machine, write_section  # noqa: E402
from serving import group_cpu_seconds  # noqa: E402

DOCS = HERE.parent / "docs" / "benchmarks.md"
SECTION = "## Topology: load balancer, 1 vs 3 replicas"

# A random routing key per request; done() prints every number the table needs.
LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]

request = function()
  wrk.headers["X-User-ID"] = "user-" .. math.random(1, 100000)
  return wrk.format()
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {{\\"requests\\": %d, \\"duration_us\\": %d, \\"connect\\": %d, \\"read\\": %d, "
    .. "\\"write\\": %d, \\"status\\": %d, \\"timeout\\": %d, \\"p50_us\\": %d, "
    .. "\\"p99_us\\": %d}}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Run:
    """One wrk run: requests, seconds, failures, latency percentiles; what the replicas did."""

    requests: int
    seconds: float
    failed: int  # non-2xx answers plus connect, read, write errors and timeouts
    p50_ms: float
    p99_ms: float
    cores: float = 0.0  # CPU seconds of the replicas per second of the run
    rows_per_predict: float = 0.0

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds


def batch_totals(url: str) -> tuple[float, float]:
    """(rows, predict calls) so far, from a replica's batch-size histogram."""
    text = httpx.get(f"{url}/metrics", trust_env=False, timeout=10).text
    totals = {"sum": 0.0, "count": 0.0}
    for kind in totals:
        for found in re.finditer(
            rf"^modelreg_serving_batch_size_{kind}\{{.*\}} (\S+)$", text, re.M
        ):
            totals[kind] += float(found.group(1))
    return totals["sum"], totals["count"]


def parse(output: str) -> Run:
    """The numbers of the Lua ``done`` hook."""
    found = re.search(r"^BENCH (\{.*\})$", output, re.M)
    if found is None:
        raise RuntimeError(f"wrk printed no BENCH line; its output:\n{output}")
    n = json.loads(found.group(1))
    failed = n["status"] + n["connect"] + n["read"] + n["write"] + n["timeout"]
    return Run(n["requests"], n["duration_us"] / 1e6, failed, n["p50_us"] / 1e3, n["p99_us"] / 1e3)


def wrk_argv(script: Path, url: str, connections: int, seconds: float) -> list[str]:
    """The wrk command line of one run."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench/topology.py needs wrk: apt-get install wrk")
    return [
        wrk,
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout=30s",
        "-s",
        str(script),
        f"{url}/invocations",
    ]


def measure(
    script: Path,
    url: str,
    replicas: list[Replica],
    connections: int,
    seconds: float,
    warmup: float,
) -> Run:
    """Warm up, then one measured wrk run against ``url`` in front of ``replicas``."""
    if warmup:
        subprocess.run(wrk_argv(script, url, connections, warmup), capture_output=True, check=True)
    cpu = sum(group_cpu_seconds(r.process.pid or 0) for r in replicas)
    batches = [batch_totals(r.url) for r in replicas]
    done = subprocess.run(
        wrk_argv(script, url, connections, seconds), capture_output=True, text=True, check=True
    )
    run = parse(done.stdout)
    cpu = sum(group_cpu_seconds(r.process.pid or 0) for r in replicas) - cpu
    after = [batch_totals(r.url) for r in replicas]
    rows = sum(a[0] - b[0] for a, b in zip(after, batches, strict=True))
    calls = sum(a[1] - b[1] for a, b in zip(after, batches, strict=True))
    return replace(run, cores=cpu / run.seconds, rows_per_predict=rows / calls if calls else 0.0)


def rolling_restart(
    shape: ProductionShape, script: Path, connections: int
) -> tuple[Run, list[Restart]]:
    """wrk through the three-replica nginx while every replica restarts, one at a time."""
    wrk = subprocess.Popen(
        wrk_argv(script, shape.lb_url, connections, 3600),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    restarts = []
    try:
        time.sleep(2)
        for replica in shape.replicas:
            restarts.append(shape.restart_replica(replica))
            time.sleep(1)
        time.sleep(2)
    finally:
        wrk.send_signal(signal.SIGINT)  # wrk stops and reports on SIGINT
        output, _ = wrk.communicate(timeout=60)
    return parse(output), restarts


def section(
    args: argparse.Namespace, one: Run, three: Run, during: Run, restarts: list[Restart]
) -> str:
    """The docs section."""
    ratio = three.rate / one.rate
    rows = [
        ("1 replica behind nginx (baseline)", one),
        ("3 replicas behind nginx", three),
        ("3 replicas, rolling restart of all three", during),
    ]
    table = "\n".join(
        f"| {name} | {run.rate:,.0f} | {run.p50_ms:.1f} | {run.p99_ms:.1f} | "
        f"{run.requests:,} | {run.failed} | "
        f"{f'{run.cores:.2f}' if run.cores else '-'} | "
        f"{f'{run.rows_per_predict:.1f}' if run.rows_per_predict else '-'} |"
        for name, run in rows
    )
    restart_text = "; ".join(str(r) for r in restarts)
    one_ms, three_ms = (1000 * run.cores / run.rate for run in (one, three))
    load = os.getloadavg()[0]
    return f"""{SECTION}

`bench/topology.py`, {datetime.now(UTC):%Y-%m-%d}: {machine()}; 1-minute load average
{load:.1f} at the end of the run.

- The production shape of [topology.md](topology.md) as plain processes: PostgreSQL,
  SeaweedFS S3, MLflow with basic auth (2 workers, checked passwords cached 60 s), the
  API, a worker, three `modelreg serve` replicas (one process each, micro-batching on)
  of a small decision tree, Prometheus scraping every second; and nginx 1.22 in front
  of the replicas.
- Load: wrk, {args.connections} connections on 2 threads, one-row scoring requests with a
  random `X-User-ID`, {args.duration:g} s measured after {args.warmup:g} s of warm-up; no
  experiment running. The baseline is a second nginx whose upstream is replica 1 alone,
  measured in the same run.
- The rolling restart: the same load through the three-replica nginx while each replica in
  turn is stopped with SIGTERM, started again and waited for on `/v2/health/ready`.

| through nginx | req/s | p50 ms | p99 ms | requests | failed | replicas' cores | rows/predict |
|---|---|---|---|---|---|---|---|
{table}

**3 replicas / 1 replica: {ratio:.2f}x** requests/s. **Failed requests during the rolling
restart: {during.failed}** (target 0). Restarts: {restart_text}.

Why three replicas do not beat one here: the machine has 2 cores, and wrk, nginx, MLflow,
PostgreSQL and any other jobs (see the load average) share them with the replicas. One
replica kept {one.cores:.2f} cores busy at {one_ms:.2f} ms of CPU per request; three together
kept {three.cores:.2f} cores busy at {three_ms:.2f} ms per request. Each of three replicas sees
a third of the requests, so it merges fewer of them into one predict call
({one.rows_per_predict:.1f} rows per call with one replica, {three.rows_per_predict:.1f} with
three) and pays Python's per-call cost (parsing, pandas, predict) more often; three
processes also check the alias in MLflow and write their reports to the ledger three
times as often. With no idle core
for the extra processes, the extra CPU per request comes straight out of throughput.
Replicas scale throughput when each gets its own cores: the Kubernetes Deployment and its
HorizontalPodAutoscaler in `deploy/k8s/`, or `--workers N` on a bigger machine
([serving.md](serving.md)). On one 2-core machine they buy availability: the last row.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--keep", type=Path, help="keep the shape's data and logs here")
    parser.add_argument(
        "--write-docs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the results into docs/benchmarks.md",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print (and write) the section."""
    args = parse_args(argv)
    if missing := missing_tools():
        raise SystemExit(f"bench/topology.py needs {' and '.join(missing)}: apt-get install")
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="modelreg-bench-topology-"))
    script = workdir / "body.lua"
    workdir.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [[0.1, -0.2, 0.3]]}})
    script.write_text(LUA.format(body=body))
    print(f"starting the production shape in {workdir}", flush=True)
    with ProductionShape(workdir, experiment=False) as shape:
        nginx_one, one_url = start_nginx(workdir / "nginx-one", [shape.replicas[0].port])
        try:
            print("measuring through nginx with 1 replica", flush=True)
            one = measure(
                script, one_url, shape.replicas[:1], args.connections, args.duration, args.warmup
            )
            print(f"  {one.rate:,.0f} requests/s, {one.failed} failed", flush=True)
            print("measuring through nginx with 3 replicas", flush=True)
            three = measure(
                script, shape.lb_url, shape.replicas, args.connections, args.duration, args.warmup
            )
            print(f"  {three.rate:,.0f} requests/s, {three.failed} failed", flush=True)
            print("rolling restart under load", flush=True)
            during, restarts = rolling_restart(shape, script, args.connections)
        finally:
            nginx_one.stop()
    text = section(args, one, three, during, restarts)
    print(text)
    if args.write_docs:
        write_section(DOCS, SECTION, text)
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
