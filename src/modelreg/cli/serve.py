"""``modelreg serve``: the model server's command, and the app factory of its worker processes.

The command checks its flags, builds the serving config, checks that every
model names something servable, and runs the server over the registry (which
is the server's :class:`~modelreg.serving.source.ModelSource` and
:class:`~modelreg.serving.source.ExperimentSource`). With
``--workers N`` (default: one per usable core, as memory allows, see
:func:`default_workers`) uvicorn starts N processes; each gets the complete settings
as JSON in its app factory's arguments (:func:`worker_app`), not through
environment variables.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from modelreg.cli.app import app, out, state_of
from modelreg.errors import InvalidInputError

if TYPE_CHECKING:
    import socket

    from fastapi import FastAPI

    from modelreg.domain import CompileMode
    from modelreg.serving.config import ServerConfig, WorkerChoice
    from modelreg.settings import ServingSettings, Settings

_LOG_LEVELS = ("debug", "info", "warning", "error")
_COMPILE_MODES = ("auto", "require", "off")


@app.command()
def serve(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="Model to serve (or give several in --config).")
    ] = None,
    alias: Annotated[
        str | None, typer.Option(help="Alias to follow (default: production).")
    ] = None,
    version: Annotated[
        int | None, typer.Option(help="Serve this version number instead of following an alias.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file describing several models.")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    poll_interval: Annotated[
        float | None, typer.Option(help="Seconds between alias checks (default 1).")
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Requests per predict call (default 64; 1 = off).")
    ] = None,
    max_wait_ms: Annotated[
        float | None, typer.Option(help="Longest wait for a batch to fill (default 2 ms).")
    ] = None,
    max_body_bytes: Annotated[
        int | None, typer.Option(help="Largest scoring body (default 10 MiB).")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Model cache (default: <home>/serving-cache).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Server processes (default: one per usable core, as memory allows).",
        ),
    ] = None,
    compile_mode: Annotated[
        str | None,
        typer.Option(
            "--compile",
            help="auto (default): serve a verified ONNX form when one can be made; "
            "require: refuse versions without one; off: always the MLflow pyfunc. "
            "With --config, overrides every model's setting.",
        ),
    ] = None,
) -> None:
    """Serve models over HTTP (MLflow /invocations), reloading when their alias moves."""
    from modelreg.mlflow_gateway import use_serving_http_defaults
    from modelreg.serving import listener
    from modelreg.serving.app import create_app
    from modelreg.serving.config import load_config, single_model_config
    from modelreg.serving.slots import preflight

    use_serving_http_defaults()
    if log_level not in _LOG_LEVELS:
        raise InvalidInputError(
            f"--log-level {log_level[:20]!r}: use debug, info, warning or error"
        )
    if compile_mode is not None and compile_mode not in _COMPILE_MODES:
        raise InvalidInputError(f"--compile {compile_mode[:20]!r}: use auto, require or off")
    mode = cast("CompileMode | None", compile_mode)
    if config is not None:
        model_flags = {
            "NAME": name,
            "--alias": alias,
            "--version": version,
            "--poll-interval": poll_interval,
            "--max-batch-size": max_batch_size,
            "--max-wait-ms": max_wait_ms,
        }
        given = [flag for flag, value in model_flags.items() if value is not None]
        if given:
            raise InvalidInputError(
                f"--config describes the models; drop {', '.join(given)} or set it in the file"
            )
        server = (
            load_config(config)
            .updated(max_body_bytes=max_body_bytes, cache_dir=cache_dir)
            .with_compile(mode)
        )
    elif name is None:
        raise InvalidInputError("name a model to serve (modelreg serve NAME) or pass --config")
    else:
        server = single_model_config(
            name,
            alias=alias,
            version=version,
            poll_interval=poll_interval,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            max_body_bytes=max_body_bytes,
            cache_dir=cache_dir,
            compile=mode,
        )
    server = server.with_reload_token(state_of(ctx).settings.serving.reload_token)
    # Bound first: a busy port fails at once, before any model loads.
    sock = listener.bind(host, port)
    registry = state_of(ctx).registry
    fix = (
        f"set version = N or alias = NAME for it in {config}"
        if config is not None
        else "serve one with --version N or --alias NAME"
    )
    try:
        for model in server.models:
            # A misspelt name or an unset alias fails here with a clear message instead of a
            # server that never becomes ready; an unreachable registry is left to the watchers.
            warning = preflight(model, registry, fix)
            if warning is not None:
                out.print(f"warning: {warning}; serving starts and keeps retrying", markup=False)
    except BaseException:
        sock.close()
        raise
    configure_logging(log_level)
    out.print(f"serving {', '.join(m.reference for m in server.models)} on http://{host}:{port}")
    if workers is None:
        choice = default_workers()
        workers = choice.workers
        typer.echo(f"serving with {choice.reason}", err=True)
    options: dict[str, Any] = {
        "host": host,  # for uvicorn's "running on" line; it listens on sock
        "port": port,
        "log_level": log_level,
        "access_log": False,
    }
    # The registry's settings: with auth = mlflow their actor is the authenticated user.
    settings = registry.settings
    if workers == 1:
        try:
            listener.run(
                sock,
                create_app(
                    server, registry, experiments=registry, replicas=registry, settings=settings
                ),
                **options,
            )
        finally:
            registry.close()
        return
    registry.close()
    _run_workers(sock, settings, server, workers, log_level, options)


def _run_workers(
    sock: socket.socket,
    settings: Settings,
    server: ServerConfig,
    workers: int,
    log_level: str,
    options: dict[str, Any],
) -> None:
    """Run ``workers`` processes of :func:`worker_app` on ``sock`` until the server stops.

    uvicorn pickles the factory into each worker process: the settings travel
    as JSON in its arguments, with the URIs resolved here and the serving
    config inside. The workers share a group directory (removed afterwards),
    so a ``POST /-/reload`` to one reaches them all (:mod:`modelreg.serving.group`).
    """
    from modelreg.serving import listener

    with tempfile.TemporaryDirectory(prefix="modelreg-serve-workers-") as group:
        serving = settings.serving.model_copy(update={"worker_group": Path(group)})
        listener.run(
            sock,
            partial(worker_app, worker_settings(settings, server, serving), log_level),
            factory=True,
            workers=workers,
            **options,
        )


def default_workers() -> WorkerChoice:
    """The worker count for this machine or container: its cores, its quota, its memory."""
    from modelreg.serving.config import (
        available_memory,
        cgroup_cpu_quota,
        cgroup_dirs,
        choose_workers,
        usable_cpus,
    )

    dirs = cgroup_dirs()
    return choose_workers(
        cpus=usable_cpus(), cpu_quota=cgroup_cpu_quota(dirs), available_bytes=available_memory(dirs)
    )


def configure_logging(level: str) -> None:
    """Log modelreg's lines (loads, compiles, reloads) at ``level``; no-op once configured."""
    import logging

    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def worker_settings(
    settings: Settings, server: ServerConfig, serving: ServingSettings | None = None
) -> str:
    """The settings JSON a worker process builds its server from (see :func:`worker_app`).

    The MLflow and ledger URIs are resolved here, so every worker talks to the
    same services as the parent whatever its environment holds; ``serving``
    replaces the settings' serving group (e.g. with the worker group set).
    """
    resolved = settings.model_copy(
        update={
            "tracking_uri": settings.resolved_tracking_uri(),
            "ledger_uri": settings.resolved_ledger_uri(),
            "serving": (serving or settings.serving).model_copy(
                update={"serve_config": server.model_dump(mode="json")}
            ),
        }
    )
    return resolved.model_dump_json()


def worker_app(settings_json: str | None = None, log_level: str = "info") -> FastAPI:
    """Build one worker process's server from ``settings_json`` (default: the environment).

    This is the factory each uvicorn worker process calls when ``modelreg serve
    --workers N`` runs several processes: one Python process holds the GIL for
    routing and for ``predict``, so a second process is what uses a second core.
    Without ``settings_json`` (``uvicorn --factory modelreg.cli.serve:worker_app``)
    the settings come from ``MODELREG_*`` variables and the serving config
    from ``MODELREG_SERVE_CONFIG``. Either way the process is a new one (uvicorn
    spawns its workers): the fail-fast HTTP defaults and logging at
    ``log_level`` are set up here, as ``modelreg serve`` sets them up for itself.
    """
    from modelreg.mlflow_gateway import use_serving_http_defaults
    from modelreg.registry import Registry
    from modelreg.serving.app import create_app
    from modelreg.serving.config import build_config
    from modelreg.settings import Settings

    use_serving_http_defaults()
    configure_logging(log_level)
    settings = Settings.model_validate_json(settings_json) if settings_json else Settings()
    if settings.serving.serve_config is None:
        raise InvalidInputError(
            "MODELREG_SERVE_CONFIG is not set; start workers with `modelreg serve`"
        )
    server = build_config(settings.serving.serve_config, "MODELREG_SERVE_CONFIG")
    registry = Registry(settings)
    return create_app(server, registry, experiments=registry, replicas=registry, settings=settings)
