"""Prometheus metrics of one model server, registered in an injected CollectorRegistry.

Nothing here is module-global: each app gets its own :class:`ServingMetrics`,
so tests and several apps in one process never see each other's counts.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

UNKNOWN_MODEL = "_unknown"
"""Model label of requests for names the server does not serve (keeps cardinality bounded)."""

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: Loading a model takes from a fraction of a second (cached, small) to minutes (large, cold).
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Numeric predictions are mostly probabilities, class ids or scores of modest size;
# finer steps across [0, 1] show a shift in a classifier's output distribution. No
# negative bound: prometheus_client then drops the _sum series, and with it the mean.
_PREDICTION_BUCKETS = (
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 5.0, 10.0, 100.0, 1000.0,
)  # fmt: skip

NO_VERSION = ""
"""Version label of requests no model version was resolved for (unknown model, not ready)."""

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    """Request, batching and reload metrics of the model server."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "modelreg_serving_requests",
            "Scoring requests answered, by model, variant, version and HTTP status code.",
            ["model", "variant", "version", "code"],
            registry=registry,
        )
        self.errors = Counter(
            "modelreg_serving_errors",
            "Scoring requests that failed, by model, variant, version and error code.",
            ["model", "variant", "version", "error_code"],
            registry=registry,
        )
        self.latency = Histogram(
            "modelreg_serving_request_seconds",
            "Time from receiving a scoring request to answering it.",
            ["model", "variant", "version"],
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
        self.load_seconds = Histogram(
            "modelreg_serving_model_load_seconds",
            "Seconds from deciding to load a version to serving it: fetch, digest check, "
            "load and warm-up (the old version keeps answering meanwhile).",
            ["model", "variant"],
            buckets=_LOAD_BUCKETS,
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
        self.runtime_info = Gauge(
            "modelreg_serving_runtime_info",
            "What answers each model and variant right now (value 1): onnxruntime (a "
            "verified compiled form) or pyfunc (the MLflow pyfunc).",
            ["model", "variant", "runtime"],
            registry=registry,
        )
        self.compilations = Counter(
            "modelreg_serving_compilations",
            "Loads that chose a runtime, by result: compiled (a verified compiled form), "
            "fallback (unsupported or refused: the pyfunc serves), off (compilation off).",
            ["model", "variant", "result"],
            registry=registry,
        )
        self.compiled_max_abs_diff = Gauge(
            "modelreg_serving_compiled_max_abs_diff",
            "Largest absolute difference between the compiled form and the original on the "
            "verification rows of the version served (absent while the pyfunc serves).",
            ["model", "variant"],
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
        self.predictions = Histogram(
            "modelreg_serving_prediction",
            "Numeric first output of each scored request (shadow scores included).",
            ["model", "variant", "version"],
            buckets=_PREDICTION_BUCKETS,
            registry=registry,
        )
        self.missing_key = Counter(
            "modelreg_serving_missing_routing_key",
            "Experiment requests without the routing header, routed on X-Request-ID instead.",
            ["model"],
            registry=registry,
        )
        self.shadow_requests = Counter(
            "modelreg_serving_shadow_requests",
            "Mirrored requests scored by a shadow treatment, by result (ok or error).",
            ["model", "variant", "version", "result"],
            registry=registry,
        )
        self.shadow_dropped = Counter(
            "modelreg_serving_shadow_dropped",
            "Mirrored requests dropped because the shadow queue was full.",
            ["model"],
            registry=registry,
        )
        self.predictions_dropped = Counter(
            "modelreg_serving_prediction_log_dropped",
            "Prediction log records dropped because the buffer was full.",
            registry=registry,
        )
        self.flush_failures = Counter(
            "modelreg_serving_experiment_flush_failures",
            "Failed writes of experiment counts or prediction records (retried next round).",
            ["what"],
            registry=registry,
        )
        self.report_failures = Counter(
            "modelreg_serving_replica_report_failures",
            "Failed writes of this replica's report (slots and reloads; retried next round).",
            registry=registry,
        )
        self.experiment_degraded = Gauge(
            "modelreg_serving_experiment_degraded",
            "1 while a model's experiment routes some variant to control (its arm cannot load).",
            ["model"],
            registry=registry,
        )
        self._shown: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._runtimes: dict[tuple[str, str], str] = {}
        self._request_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}

    def observe_request(
        self,
        model: str,
        variant: str,
        version: str,
        code: int,
        seconds: float,
        error_code: str | None,
    ) -> None:
        """Count one answered scoring request and its latency (``version`` a label string)."""
        key = (model, variant, version, code)
        children = self._request_children.get(key)
        if children is None:
            # labels() takes a lock and builds a key per call: a few microseconds that
            # showed in the profile once the model itself took microseconds.
            children = (
                self.requests.labels(model, variant, version, str(code)),
                self.latency.labels(model, variant, version),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if error_code is not None:
            self.errors.labels(model, variant, version, error_code).inc()

    def forget(self, model: str, variant: str) -> None:
        """Drop the per-slot gauges of a slot that is gone (an experiment arm)."""
        shown = self._shown.pop((model, variant), None)
        if shown is not None:
            self.model_info.remove(model, variant, *shown)
        for gauge in (self.degraded, self.last_check, self.compiled_max_abs_diff):
            with contextlib.suppress(KeyError):
                gauge.remove(model, variant)
        runtime = self._runtimes.pop((model, variant), None)
        if runtime is not None:
            self.runtime_info.remove(model, variant, runtime)
        for key in [k for k in self._request_children if k[:2] == (model, variant)]:
            del self._request_children[key]

    def serving(self, model: str, variant: str, version: int, semver: str, digest: str) -> None:
        """Show that ``model``/``variant`` now serves ``version`` (replacing the previous one)."""
        previous = self._shown.get((model, variant))
        if previous is not None:
            self.model_info.remove(model, variant, *previous)
        shown = (str(version), semver, digest)
        self.model_info.labels(model, variant, *shown).set(1)
        self._shown[(model, variant)] = shown

    def runtime(self, model: str, variant: str, runtime: str, max_abs_diff: float | None) -> None:
        """Show what answers ``model``/``variant`` now, and the compiled form's difference."""
        previous = self._runtimes.get((model, variant))
        if previous is not None and previous != runtime:
            self.runtime_info.remove(model, variant, previous)
        self.runtime_info.labels(model, variant, runtime).set(1)
        self._runtimes[(model, variant)] = runtime
        if max_abs_diff is None:
            with contextlib.suppress(KeyError):
                self.compiled_max_abs_diff.remove(model, variant)
        else:
            self.compiled_max_abs_diff.labels(model, variant).set(max_abs_diff)


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of everything in ``registry``."""
    return generate_latest(registry)
