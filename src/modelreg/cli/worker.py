"""``modelreg worker``: the background workers (sync, webhooks, experiment guardrails) alone.

The command only parses options; the workers, their health and the signal
handling live in :mod:`modelreg.workers`, the same code the API service runs
in-process.
"""

from __future__ import annotations

from typing import Annotated

import typer

from modelreg.cli.app import app, err, state_of


@app.command()
def worker(
    ctx: typer.Context,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve GET /health and GET /metrics of the loops on this port (0: any free one).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address for --metrics-port (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
) -> None:
    """Run the sync, webhook delivery and experiment guardrails until SIGTERM (then exit 0).

    Run the API with MODELREG_API_RUNS_WORKERS=false next to one or more of
    these, to scale API replicas and workers separately. Intervals come from
    MODELREG_SYNC_INTERVAL_SECONDS, MODELREG_WEBHOOK_INTERVAL_SECONDS and
    MODELREG_EXPERIMENT_INTERVAL_SECONDS.
    """
    import asyncio

    from modelreg.workers import Workers, run_standalone

    state = state_of(ctx)
    registry = state.registry  # with MODELREG_AUTH=mlflow this authenticates now
    settings = registry.settings

    def ready(url: str | None) -> None:
        where = f"; /health and /metrics on {url}" if url else ""
        err.print(
            f"modelreg worker: sync every {settings.sync_interval_seconds:g} s, webhook "
            f"delivery every {settings.webhook_interval_seconds:g} s, experiment guardrails "
            f"every {settings.experiment_interval_seconds:g} s{where}",
            markup=False,
        )

    address = (metrics_host, metrics_port) if metrics_port is not None else None
    try:
        asyncio.run(
            run_standalone(
                Workers(settings, registry), registry, metrics_address=address, on_ready=ready
            )
        )
    finally:
        registry.close()
    err.print("modelreg worker: stopped", markup=False)
