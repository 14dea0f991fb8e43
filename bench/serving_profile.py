"""Where a model server's time goes: py-spy samples of all its processes, in buckets.

Used by ``bench/serving.py``. ``py-spy record --subprocesses`` samples every
Python thread of the server and its worker processes that is not idle (a
thread blocked in epoll or on a lock is idle; one inside ONNX Runtime's or
scikit-learn's C code is not), so ``samples / (rate x seconds)`` is the number
of Python threads kept busy on average, across workers.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

RATE = 100  # samples per second

# A sample goes to the first bucket whose marker is anywhere in its stack (the work a
# request step does, including its callees), else to the library of its innermost frame.
Buckets = tuple[tuple[str, tuple[str, ...]], ...]
ANYWHERE: Buckets = (
    ("model: ONNX Runtime", ("onnxruntime/",)),
    ("model: scikit-learn", ("sklearn/", "joblib/")),
    ("model: MLflow pyfunc wrapper", ("mlflow/pyfunc", "mlflow/models/", "serving/loader.py")),
    ("background: registry polling, ledger writes", ("urllib3/", "requests/", "sqlalchemy/")),
    ("metrics (Prometheus)", ("prometheus_client/", "serving/metrics.py")),
    ("batching (serving/batcher.py)", ("serving/batcher.py",)),
    (
        "parsing and serialising (JSON, arrays, DataFrames)",
        ("serving/protocol.py", "orjson", "msgspec", "json/", "pandas/", "numpy/"),
    ),
)
INNERMOST: Buckets = (
    ("thread-pool hand-off (run_in_executor)", ("concurrent/futures/",)),
    ("framework (Starlette/FastAPI)", ("starlette/", "fastapi/")),
    ("modelreg request code (app, routing, experiments)", ("modelreg/",)),
    (
        "HTTP server (uvicorn/granian, httptools, event loop)",
        (
            "uvicorn/",
            "httptools",
            "h11/",
            "granian/",
            "uvloop",
            "asyncio/",
            "selectors.py",
        ),
    ),
)


@dataclass
class Profile:
    """Bucketed py-spy samples of one server under load."""

    seconds: float
    rps: float = 0.0
    processes: int = 0
    samples: int = 0
    buckets: Counter[str] = field(default_factory=Counter)
    leaves: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def share(self, count: int) -> str:
        """``count`` samples as a percentage of all samples."""
        return f"{100 * count / max(self.samples, 1):.0f}%"

    def ms_per_request(self, count: int) -> str:
        """``count`` samples as milliseconds of thread time per answered request."""
        if self.rps <= 0:
            return "n/a"
        return f"{1000 * self.threads(count) / self.rps:.2f} ms"

    def threads(self, count: int) -> float:
        """``count`` samples as busy Python threads on average (1.0 = one thread all the time)."""
        return count / max(self.seconds * RATE, 1)


def record(py_spy: str, pid: int, seconds: float, out: Path) -> str | None:
    """Sample process ``pid`` and its children for ``seconds`` into ``out``; None or an error."""
    done = subprocess.run(
        [
            py_spy,
            "record",
            "--subprocesses",  # the worker processes are children of the one started
            "--nonblocking",  # never pause the server: it is under load
            "--format",
            "raw",
            "-r",
            str(RATE),
            "-d",
            f"{seconds:g}",
            "-o",
            str(out),
            "-p",
            str(pid),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        return f"py-spy failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return None


def parse(raw: str, profile: Profile) -> None:
    """Fold py-spy's collapsed stacks (``frame;frame;... count``) into buckets and leaves."""
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        profile.samples += count
        profile.leaves[short(frames[-1])] += count
        profile.buckets[bucket(frames)] += count


def bucket(frames: Sequence[str]) -> str:
    """The bucket of one sampled stack (outermost frame first)."""
    for label, markers in ANYWHERE:
        if any(marker in frame for frame in frames for marker in markers):
            return label
    for frame in reversed(frames):
        for label, markers in INNERMOST:
            if any(marker in frame for marker in markers):
                return label
    return "other"


def short(frame: str) -> str:
    """``function (…/site-packages/pkg/mod.py:12)`` shortened to ``function (pkg/mod.py)``."""
    if frame.startswith("process "):  # py-spy's root frame: no Python frame was running
        return "(native code outside any Python frame)"
    found = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if found is None:
        return frame
    function, path = found.groups()
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            path = path.rsplit(marker, 1)[1]
            break
    return f"{function} ({path})"


def markdown(profile: Profile, what: str) -> str:
    """The profile as a paragraph and two lists, for docs/benchmarks.md."""
    if profile.error:
        return f"No profile: {profile.error}."
    plural = "es" if profile.processes != 1 else ""
    lines = [
        f"`py-spy record --subprocesses --nonblocking -r {RATE}` sampled every busy Python "
        f"thread of {what} ({profile.processes} worker process{plural}) for {profile.seconds:g} s "
        f"({profile.rps:,.0f} req/s meanwhile): {profile.samples:,} samples, "
        f"{profile.threads(profile.samples):.2f} threads not idle on average (waiting for the GIL "
        "counts), "
        f"{profile.ms_per_request(profile.samples)} of thread time per request. By bucket "
        "(share of samples; threads not idle; thread time per request):\n"
    ]
    lines += [
        f"- {label}: {profile.share(n)} ({profile.threads(n):.2f}; {profile.ms_per_request(n)})"
        for label, n in profile.buckets.most_common()
    ]
    lines.append("\nTop functions by own time (share of samples):\n")
    lines += [f"- `{name}`: {profile.share(n)}" for name, n in profile.leaves.most_common(12)]
    return "\n".join(lines)
