"""Model slots: what each served model variant runs right now, and the watcher that reloads it.

A slot serves one variant of one model (``(model, variant)``; the variant is
:data:`~modelreg.serving.router.DEFAULT_VARIANT` outside experiments) and
follows one :class:`~modelreg.serving.config.ModelConfig`. Its watcher asks
the :class:`~modelreg.serving.source.ModelSource` every ``poll_interval``
seconds which version the alias points at (one cheap MLflow call); when that
changes, the slot loads the new version beside the old one and swaps only
once the new one has proved it can serve. Any failure leaves the old version
serving and is reported as a degraded state in logs, metrics and
``/version``. The same watcher follows the model's A/B experiment through a
:class:`Follower` (:class:`~modelreg.serving.arms.ArmFollower`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from modelreg.domain import ReloadEvent, ReloadOutcome, ServedSlot
from modelreg.errors import (
    BackendError,
    IntegrityError,
    ModelNotReadyError,
    ModelregError,
    NotFoundError,
    VersionNotFoundError,
    nearest,
    shorten,
)
from modelreg.serving.batcher import INLINE_SECONDS, MicroBatcher
from modelreg.serving.config import ModelConfig
from modelreg.serving.loader import LoadedModel, ModelLoader
from modelreg.serving.metrics import ServingMetrics
from modelreg.serving.router import DEFAULT_VARIANT
from modelreg.serving.source import ModelSource

log = logging.getLogger("modelreg.serving")

# After a failed load of a version, wait this long before trying it again
# (doubling per failure, up to _MAX_BACKOFF): a refused artifact is not
# downloaded and hashed again every second. A forced check ignores the wait.
_MAX_BACKOFF = 300.0
# A load that failed because MLflow or the object store was unreachable says
# nothing against the version; it is tried at least this often, so it serves
# within seconds of the backend coming back, not minutes.
_MAX_BACKEND_BACKOFF = 5.0
# Checks that have not succeeded for this many poll intervals (and at least
# _STALE_FLOOR seconds) mark the slot degraded even while a call still hangs.
_STALE_POLLS = 5
_STALE_FLOOR = 10.0

_FAILURE_REASONS: Mapping[type[ModelregError], str] = {
    IntegrityError: "integrity",
    ModelNotReadyError: "not_adopted",
    NotFoundError: "not_found",
    BackendError: "backend",
}


class CheckResult(StrEnum):
    """What one check of a slot did."""

    UNCHANGED = "unchanged"
    RELOADED = "reloaded"
    FAILED = "failed"
    WAITING = "waiting"  # a failed version is in back-off; the old one keeps serving


def failure_reason(error: BaseException, stage: str) -> str:
    """The metrics label for a failed load: the error's class, or the stage that failed."""
    if stage == "load":
        return nearest(_FAILURE_REASONS, error, stage)
    return stage


def target_version(config: ModelConfig, source: ModelSource) -> int:
    """The version ``config`` asks for now: where its alias points, or the pinned version."""
    if config.alias is not None:
        return source.alias_version(config.name, config.alias)
    assert config.version is not None  # noqa: S101 - the config validator guarantees one of them
    return config.version


def preflight(config: ModelConfig, source: ModelSource, fix: str) -> str | None:
    """Check that ``config`` names something to serve before a server starts for it.

    Returns None, or the reason when the source cannot be reached (the
    watcher retries). An unknown model raises its NotFoundError; an alias no
    version holds raises a NotFoundError that ends with ``fix`` and lists what
    could be served instead.
    """
    try:
        target_version(config, source)
    except BackendError as exc:
        return exc.message
    except VersionNotFoundError as exc:
        if config.alias is None:
            raise
        raise NotFoundError(
            f"model {config.name!r} has no version with the alias {config.alias!r}; "
            f"{fix} ({_servable(source, config.name)})"
        ) from exc
    return None


def _servable(source: ModelSource, name: str) -> str:
    """What could be served instead, e.g. ``versions: 1, 2; aliases: @staging = v2``."""
    versions = source.versions(name)
    if not versions:
        return "it has no versions yet"
    aliases = sorted((alias, v.version) for v in versions for alias in v.aliases)
    listed = f"versions: {', '.join(str(v.version) for v in versions)}"
    if aliases:
        listed += "; aliases: " + ", ".join(f"@{alias} = v{number}" for alias, number in aliases)
    return listed


@dataclass(frozen=True)
class Serving:
    """A loaded model and the batcher in front of it; swapped as one value."""

    model: LoadedModel
    batcher: MicroBatcher
    load_seconds: float = 0.0  # fetch, verify, load and warm-up, before the swap


@dataclass(frozen=True)
class SlotError:
    """The last thing that went wrong in a slot."""

    message: str
    at: datetime
    version: int | None


@dataclass
class _Failure:
    version: int
    attempts: int
    retry_at: float


class ModelSlot:
    """One served variant of a model: the current version, its watcher and its health."""

    def __init__(
        self,
        config: ModelConfig,
        source: ModelSource,
        loader: ModelLoader,
        metrics: ServingMetrics,
        *,
        variant: str = DEFAULT_VARIANT,
        executor: Executor | None = None,
        on_reload: Callable[[ReloadEvent], None] | None = None,
    ) -> None:
        self.config = config
        self.on_reload = on_reload
        self.source = source
        self.loader = loader
        self.metrics = metrics
        self.variant = variant
        self.executor = executor
        self.current: Serving | None = None
        self.last_check: datetime | None = None
        self.last_error: SlotError | None = None
        self._last_ok = time.monotonic()
        self._check_failed: str | None = None
        self._failure: _Failure | None = None
        self._lock = asyncio.Lock()
        # Requests that picked this slot and have not reached its batcher yet
        # (reading their body): a retired arm waits for them before closing.
        self.inflight = 0

    @property
    def name(self) -> str:
        """The served model's name."""
        return self.config.name

    @property
    def key(self) -> tuple[str, str]:
        """What the slot is found by: ``(model, variant)``."""
        return (self.name, self.variant)

    @property
    def label(self) -> str:
        """How answers name the slot: the model, or ``model:variant`` for other variants.

        Model names cannot contain ``:``, so the label is unambiguous.
        """
        return self.name if self.variant == DEFAULT_VARIANT else f"{self.name}:{self.variant}"

    def serving(self) -> Serving:
        """What this slot serves now; ModelNotReadyError while nothing is loaded."""
        current = self.current
        if current is None:
            why = self.last_error.message if self.last_error else "the first load is running"
            raise ModelNotReadyError(self.name, why)
        return current

    # -- health --------------------------------------------------------------------

    def reasons(self) -> list[str]:
        """Why the slot is degraded; empty when it serves what the registry asks for."""
        found = []
        if self.current is None:
            found.append("no model loaded")
        if self._check_failed is not None:
            found.append(f"registry check failed: {self._check_failed}")
        stale = time.monotonic() - self._last_ok
        if stale > max(_STALE_POLLS * self.config.poll_interval, _STALE_FLOOR):
            found.append(f"no successful registry check for {stale:.0f} s")
        if self._failure is not None:
            serving = f"v{self.current.model.version}" if self.current else "nothing"
            found.append(f"version {self._failure.version} could not be loaded; serving {serving}")
        return found

    def status(self) -> dict[str, Any]:
        """What ``/version`` shows for this slot."""
        model = self.current.model if self.current else None
        load_seconds = round(self.current.load_seconds, 3) if self.current else None
        reasons = self.reasons()
        error = self.last_error
        return {
            "model": self.name,
            "variant": self.variant,
            "alias": self.config.alias,
            "pinned_version": self.config.version,
            "ready": model is not None,
            "version": model.version if model else None,
            "semver": model.semver if model else None,
            "digest": model.digest if model else None,
            "loaded_at": model.loaded_at.isoformat() if model else None,
            "load_seconds": load_seconds,
            "runtime": model.runtime.as_json() if model else None,
            "last_check": self.last_check.isoformat() if self.last_check else None,
            "last_error": {
                "message": error.message,
                "at": error.at.isoformat(),
                "version": error.version,
            }
            if error
            else None,
            "degraded": bool(reasons),
            "reasons": reasons,
        }

    def served(self, variant: str) -> ServedSlot:
        """What this slot serves, reported as ``variant`` (control is the default slot)."""
        model = self.current.model if self.current else None
        return ServedSlot(
            model=self.name,
            variant=variant,
            alias=self.config.alias,
            version=model.version if model else None,
            semver=model.semver if model else None,
            digest=model.digest if model else None,
            since=model.loaded_at if model else None,
            reasons=tuple(self.reasons()),
        )

    # -- checking and reloading ----------------------------------------------------------

    async def check(self, *, force: bool = False) -> CheckResult:
        """Ask the registry which version to serve and reload if it changed.

        ``force`` retries a version that failed before without waiting for its
        back-off (what ``POST /-/reload`` does). Never raises for registry or
        model problems: they are recorded and the current model keeps serving.
        """
        async with self._lock:
            self.last_check = datetime.now(UTC)
            try:
                wanted = await asyncio.to_thread(target_version, self.config, self.source)
            except ModelregError as exc:
                # Logged when checks start failing, not on every poll: an outage
                # would otherwise repeat the same warning every second.
                report = log.debug if self._check_failed is not None else log.warning
                report("%s: registry check failed: %s", self.config.reference, exc.message)
                self._check_failed = exc.message
                self._record_error(exc.message, None)
                self._update_gauges()
                return CheckResult.FAILED
            if self._check_failed is not None:
                log.info(
                    "%s: registry check works again after %.0f s",
                    self.config.reference,
                    time.monotonic() - self._last_ok,
                )
            self._check_failed = None
            self._last_ok = time.monotonic()
            self.metrics.last_check.labels(self.name, self.variant).set(time.time())
            result = await self._converge(wanted, force=force)
            # The registry answered before the load began: a load (and compile) that
            # takes longer than the staleness floor is not a registry that went quiet.
            self._last_ok = time.monotonic()
            self._update_gauges()
            return result

    async def _converge(self, wanted: int, *, force: bool) -> CheckResult:
        if self.current is not None and self.current.model.version == wanted:
            self._failure = None  # e.g. the alias moved back from a refused version
            return CheckResult.UNCHANGED
        failure = self._failure
        if (
            not force
            and failure is not None
            and failure.version == wanted
            and time.monotonic() < failure.retry_at
        ):
            return CheckResult.WAITING
        return await self._reload(wanted)

    async def _reload(self, version: int) -> CheckResult:
        # Load, verify and warm the new version while the old one keeps serving,
        # swap only then, drain the old batcher and drop the old model last. In
        # this order every request is answered by a model that has proved it can
        # predict, a failure at any step leaves the old model untouched, and
        # requests already queued for the old model finish on it.
        stage = "load"
        started = time.monotonic()
        try:
            loaded = await asyncio.to_thread(self.loader.load, self.name, version)
            stage = "warmup"
            await asyncio.to_thread(loaded.warm_up)
            stage = "compile"
            loaded = await asyncio.to_thread(self.loader.compile, loaded, self.config.compile)
        except Exception as exc:  # noqa: BLE001 - any failure must leave the old model serving
            self._load_failed(version, exc, stage)
            return CheckResult.FAILED
        load_seconds = time.monotonic() - started
        self.metrics.load_seconds.labels(self.name, self.variant).observe(load_seconds)
        batcher = MicroBatcher(
            loaded.predict,
            takes_arrays=True,
            inline_seconds=INLINE_SECONDS if loaded.compiled is not None else 0.0,
            max_batch_size=self.config.max_batch_size,
            max_wait_ms=self.config.max_wait_ms,
            executor=self.executor,
            on_batch=self._observe_batch,
        )
        old, self.current = self.current, Serving(loaded, batcher, load_seconds)
        self._failure = None
        self.metrics.serving(self.name, self.variant, version, loaded.semver, loaded.digest)
        self._show_runtime(loaded)
        self.metrics.reloads.labels(self.name, self.variant, "success").inc()
        self._reported(version, ReloadOutcome.LOADED, "", f"serving {loaded.semver}")
        if old is None:
            log.info(
                "%s: serving v%d (%s), loaded in %.1f s",
                self.config.reference,
                version,
                loaded.semver,
                load_seconds,
            )
            _settle_heap()
            await self._prune()
            return CheckResult.RELOADED
        log.info(
            "%s: now serving v%d (%s), loaded in %.1f s, was v%d; draining the old model",
            self.config.reference,
            version,
            loaded.semver,
            load_seconds,
            old.model.version,
        )
        await old.batcher.drain()
        del old  # the last reference: the old model can be freed
        _settle_heap()
        await self._prune()
        return CheckResult.RELOADED

    async def _prune(self) -> None:
        """Keep the model cache within its size once a load added to it (never fails a load)."""
        try:
            await asyncio.to_thread(self.loader.prune)
        except Exception:  # pruning is housekeeping: log it, keep serving
            log.exception("%s: pruning the model cache failed", self.config.reference)

    def _load_failed(self, version: int, error: BaseException, stage: str) -> None:
        reason = failure_reason(error, stage)
        message = error.message if isinstance(error, ModelregError) else f"{stage} failed: {error}"
        previous = self._failure
        attempts = previous.attempts + 1 if previous and previous.version == version else 1
        ceiling = _MAX_BACKEND_BACKOFF if reason == "backend" else _MAX_BACKOFF
        backoff = min(
            self.config.poll_interval * 2**attempts, max(ceiling, self.config.poll_interval)
        )
        self._failure = _Failure(version, attempts, time.monotonic() + backoff)
        self._record_error(message, version)
        self.metrics.reloads.labels(self.name, self.variant, "failure").inc()
        self.metrics.load_failures.labels(self.name, self.variant, reason).inc()
        self._reported(version, ReloadOutcome.REFUSED, reason, message)
        serving = f"v{self.current.model.version}" if self.current else "nothing"
        log_error = log.error if reason == "integrity" else log.warning
        log_error(
            "%s: refused v%d (%s): %s; still serving %s, next try in %.0f s",
            self.config.reference,
            version,
            reason,
            message,
            serving,
            backoff,
            exc_info=not isinstance(error, ModelregError),
        )

    def _reported(self, version: int, outcome: ReloadOutcome, reason: str, message: str) -> None:
        if self.on_reload is not None:
            event = ReloadEvent(
                self.name, self.variant, version, outcome, reason, message, datetime.now(UTC)
            )
            self.on_reload(event)

    def _show_runtime(self, loaded: LoadedModel) -> None:
        runtime = loaded.runtime
        self.metrics.compilations.labels(self.name, self.variant, runtime.outcome).inc()
        compiled = runtime.details if loaded.compiled is not None else None
        diff = compiled.max_abs_diff if compiled is not None else None
        self.metrics.runtime(self.name, self.variant, runtime.name, diff)

    def _record_error(self, message: str, version: int | None) -> None:
        self.last_error = SlotError(message, datetime.now(UTC), version)

    def _observe_batch(self, size: int) -> None:
        self.metrics.batch_size.labels(self.name, self.variant).observe(size)

    def _update_gauges(self) -> None:
        self.metrics.degraded.labels(self.name, self.variant).set(1 if self.reasons() else 0)

    async def retire(self, timeout: float = 30.0) -> None:
        """Close once no request is between picking this slot and queuing in it.

        For experiment arms no longer routed to: requests that chose the arm
        just before the switch still get their answer from it. ``timeout``
        (seconds) bounds the wait for a body that never finishes arriving.
        """
        deadline = time.monotonic() + timeout
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.close()
        self.metrics.forget(self.name, self.variant)

    async def close(self) -> None:
        """Finish queued requests and drop the model (server shutdown)."""
        current, self.current = self.current, None
        if current is not None:
            with contextlib.suppress(Exception):
                await current.batcher.drain()


class Follower(Protocol):
    """What follows a model's experiment after each check of its slot (see ``serving.arms``)."""

    async def follow(self, slot: ModelSlot, *, force: bool) -> dict[str, CheckResult]:
        """Bring the arms of ``slot``'s model in line with its experiment; results by label."""
        ...

    def status(self) -> dict[str, Any]:
        """What ``/version`` shows about each model's experiment, by model name."""
        ...

    def routed(self, name: str) -> tuple[str, int] | None:
        """The experiment (id, revision) ``name``'s requests are routed by now, or None."""
        ...

    @property
    def degraded(self) -> bool:
        """Whether some experiment routes a variant to control because its arm cannot load."""
        ...

    async def stop(self) -> None:
        """Wait for arms being retired to close."""
        ...


class SlotSet:
    """Every slot of one server, by ``(model, variant)``; the first slot is the default model's.

    The slots given at construction are the configured ones: the server is
    ready when each has a model loaded. Experiment arms come and go through
    :meth:`set_arms`; an arm that cannot load degrades the server but never
    makes it unready (its keys go to control). ``follower``, when given,
    follows each configured model's experiment after every check of its slot.
    """

    def __init__(self, slots: list[ModelSlot], *, follower: Follower | None = None) -> None:
        if not slots:
            raise ValueError("a server needs at least one model slot")
        self.slots = {slot.key: slot for slot in slots}
        if len(self.slots) != len(slots):
            raise ValueError("each (model, variant) may have one slot")
        self.configured = list(slots)
        self.default = slots[0]
        self.follower = follower
        # How requests find slots: the slots themselves plus, during an experiment,
        # the control variant answered by the model's default slot.
        self._lookup = dict(self.slots)
        self._arms: dict[str, dict[str, ModelSlot]] = {}
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def models(self) -> list[str]:
        """The served model names, in config order."""
        return list(dict.fromkeys(name for name, _ in self.slots))

    def get(self, name: str, variant: str = DEFAULT_VARIANT) -> ModelSlot:
        """The slot serving ``variant`` of ``name``; NotFoundError when this server has none."""
        slot = self._lookup.get((name, variant))
        if slot is not None:
            return slot
        shown = shorten(name, 60)
        if name in self.models:
            variants = ", ".join(v for n, v in self._lookup if n == name)
            raise NotFoundError(
                f"model {shown!r} has no variant {variant[:60]!r} here; it serves: {variants}"
            )
        raise NotFoundError(
            f"model {shown!r} is not served here; this server serves: {', '.join(self.models)}"
        )

    def set_arms(self, name: str, arms: dict[str, ModelSlot]) -> list[ModelSlot]:
        """Make ``arms`` (variant → slot) the experiment variants of ``name``, in one step.

        A variant may map to the model's default slot (control following the
        same alias). Returns the arm slots no longer used, for the caller to
        drain and close. No await: requests see the old arms or the new ones.
        """
        old = self._arms.pop(name, {})
        for variant, slot in old.items():
            self._lookup.pop((name, variant), None)
            if slot.variant == variant:
                self.slots.pop((name, variant), None)
        for variant, slot in arms.items():
            self._lookup[(name, variant)] = slot
            if slot.variant == variant:
                self.slots[(name, variant)] = slot
        if arms:
            self._arms[name] = dict(arms)
        kept = {id(slot) for slot in arms.values()}
        return [s for v, s in old.items() if s.variant == v and id(s) not in kept]

    def digests(self) -> set[str]:
        """The artifact digests every slot (configured and arms) serves now."""
        return {slot.current.model.digest for slot in self.slots.values() if slot.current}

    def served(self) -> list[ServedSlot]:
        """What every variant is served by now: configured slots, arms, and control.

        Each slot carries the experiment revision its model is routed by.
        """
        served = []
        for (name, variant), slot in self._lookup.items():
            report = slot.served(variant)
            routed = self.follower.routed(name) if self.follower is not None else None
            if routed is not None:
                report = replace(report, experiment=routed[0], experiment_revision=routed[1])
            served.append(report)
        return served

    def arm(self, name: str, variant: str) -> ModelSlot | None:
        """The experiment arm slot of ``variant`` of ``name`` (not the default slot), or None."""
        slot = self._arms.get(name, {}).get(variant)
        return slot if slot is not None and slot.variant == variant else None

    @property
    def ready(self) -> bool:
        """Whether every configured slot has a model loaded (possibly a stale one)."""
        return all(slot.current is not None for slot in self.configured)

    @property
    def degraded(self) -> bool:
        """Whether any slot or experiment is degraded."""
        follower = self.follower.degraded if self.follower else False
        return follower or any(slot.reasons() for slot in self.slots.values())

    def readiness(self) -> dict[str, Any]:
        """Ready and degraded flags of the server and of each slot (by label), with reasons."""
        states = {slot.label: slot.status() for slot in self.slots.values()}
        return {
            "ready": self.ready,
            "degraded": self.degraded,
            "models": {label: _readiness(state) for label, state in states.items()},
        }

    def versions(self) -> dict[str, Any]:
        """What every slot serves, when it last checked and what last went wrong."""
        states = [slot.status() for slot in self.slots.values()]
        body = {
            "default_model": self.default.name,
            "degraded": self.degraded,
            "models": states,
        }
        if self.follower is not None:
            body["experiments"] = self.follower.status()
        return body

    async def check_all(self, *, force: bool) -> dict[str, CheckResult]:
        """Check every configured slot at once, then follow experiments; results by slot label."""
        slots = list(self.configured)
        results = await asyncio.gather(*(slot.check(force=force) for slot in slots))
        found = {slot.label: result for slot, result in zip(slots, results, strict=True)}
        if self.follower is not None:
            for slot in slots:
                if slot.variant == DEFAULT_VARIANT:
                    found.update(await self.follower.follow(slot, force=force))
        return found

    async def start(self) -> None:
        """Load every model (failures are recorded, not raised), then start the watchers."""
        await self.check_all(force=True)
        self._watchers = [asyncio.create_task(self._watch(slot)) for slot in self.configured]

    async def _watch(self, slot: ModelSlot) -> None:
        # One loop per configured slot: the experiment of its model is polled as
        # often as its alias, so a ramp or stop lands as fast as a promotion.
        while True:
            await asyncio.sleep(slot.config.poll_interval)
            await slot.check()
            if self.follower is not None and slot.variant == DEFAULT_VARIANT:
                try:
                    await self.follower.follow(slot, force=False)
                except Exception:  # a bug there must not stop alias following
                    log.exception("%s: following its experiment failed", slot.config.reference)

    async def stop(self) -> None:
        """Stop the watchers and finish queued requests."""
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers = []
        if self.follower is not None:
            await self.follower.stop()
        await asyncio.gather(*(slot.close() for slot in self.slots.values()))


def _readiness(state: dict[str, Any]) -> dict[str, Any]:
    return {key: state[key] for key in ("ready", "version", "degraded", "reasons")}


def _settle_heap() -> None:
    """Collect once, then freeze what is left out of the garbage collector's sight.

    A loaded model is hundreds of thousands of long-lived objects (a forest's
    trees); every full collection walked all of them, stopping the server for
    80-190 ms, 18 times in 20 s under load (bench/serving.py). Frozen objects
    are skipped. Unfreezing first lets a replaced model be freed.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
