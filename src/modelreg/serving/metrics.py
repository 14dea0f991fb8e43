"""Prometheus metrics of one model server, registered in an injected CollectorRegistry.

Nothing here is module-global: each app gets its own :class:`ServingMetrics`,
so tests and several apps in one process never see each other's counts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

UNKNOWN_MODEL = "_unknown"
"""Model label of requests for names the server does not serve (keeps cardinality bounded)."""

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    """Request, batching and reload metrics of the model server."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "modelreg_serving_requests",
            "Scoring requests answered, by model, variant and HTTP status code.",
            ["model", "variant", "code"],
            registry=registry,
        )
        self.errors = Counter(
            "modelreg_serving_errors",
            "Scoring requests that failed, by model, variant and error code.",
            ["model", "variant", "error_code"],
            registry=registry,
        )
        self.latency = Histogram(
            "modelreg_serving_request_seconds",
            "Time from receiving a scoring request to answering it.",
            ["model", "variant"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "modelreg_serving_batch_size",
            "Rows per predict call (several requests merged into one call).",
            ["model", "variant"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.reloads = Counter(
            "modelreg_serving_reloads",
            "Model reload attempts, by result (success or failure).",
            ["model", "variant", "result"],
            registry=registry,
        )
        self.load_failures = Counter(
            "modelreg_serving_load_failures",
            "Versions that could not be loaded, by reason "
            "(integrity, backend, not_found, not_adopted, load, warmup).",
            ["model", "variant", "reason"],
            registry=registry,
        )
        self.model_info = Gauge(
            "modelreg_serving_model_info",
            "The version each model and variant serves right now (value 1).",
            ["model", "variant", "version", "semver", "digest"],
            registry=registry,
        )
        self.degraded = Gauge(
            "modelreg_serving_degraded",
            "1 while a model serves a stale version or cannot reach the registry.",
            ["model", "variant"],
            registry=registry,
        )
        self.last_check = Gauge(
            "modelreg_serving_last_check_timestamp_seconds",
            "Unix time of the last successful registry check.",
            ["model", "variant"],
            registry=registry,
        )
        self._shown: dict[tuple[str, str], tuple[str, str, str]] = {}

    def observe_request(
        self, model: str, variant: str, code: int, seconds: float, error_code: str | None
    ) -> None:
        """Count one answered scoring request and its latency."""
        self.requests.labels(model, variant, str(code)).inc()
        self.latency.labels(model, variant).observe(seconds)
        if error_code is not None:
            self.errors.labels(model, variant, error_code).inc()

    def serving(self, model: str, variant: str, version: int, semver: str, digest: str) -> None:
        """Show that ``model``/``variant`` now serves ``version`` (replacing the previous one)."""
        previous = self._shown.get((model, variant))
        if previous is not None:
            self.model_info.remove(model, variant, *previous)
        shown = (str(version), semver, digest)
        self.model_info.labels(model, variant, *shown).set(1)
        self._shown[(model, variant)] = shown


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of everything in ``registry``."""
    return generate_latest(registry)
