"""Typer commands. Each parses input, calls the Registry facade and formats the answer.

Every command starts a fresh interpreter, so start-up time is the CLI's
latency: the facade (and with it MLflow, pandas, SQLAlchemy and Alembic, over
a second to import) and the view tables are imported by the commands that use
them, never at module import; ``--help`` and usage errors answer at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelreg.errors import InvalidInputError

if TYPE_CHECKING:
    from modelreg.domain import CompileDetails
    from modelreg.registry import Registry
    from modelreg.settings import Settings
    from modelreg.views import EventView, View

app = typer.Typer(
    name="modelreg",
    help="A governed model registry on MLflow: semver, lineage, lifecycle, audit history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why; recorded in the audit history.")]


@dataclass
class CliState:
    """Settings gathered from global options; the registry is opened on first use."""

    settings: Settings
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def registry(self) -> Registry:
        """The facade, created lazily so `--help` and `up` need no running stack.

        A stopped MLflow is reported by the first read (MLflow's REST API, no
        retries on a refused connection), within a fraction of a second.
        Who acts is the core's rule (:mod:`modelreg.registry.access`): with
        ``MODELREG_AUTH=mlflow`` the user MLflow authenticates from
        MODELREG_USERNAME / MODELREG_PASSWORD, whatever ``--actor`` or
        MODELREG_ACTOR say; commands pass no actor, so each acts as that caller.
        """
        if self._registry is None:
            from modelreg.registry import Registry

            registry = Registry(self.settings)
            # Resolved now: a wrong password or actor fails before any command runs.
            registry.actor()
            self._registry = registry
        return self._registry


def state_of(ctx: typer.Context) -> CliState:
    """The CLI state the global-options callback stored on the context."""
    state = ctx.obj
    assert isinstance(state, CliState)  # noqa: S101 - set by the callback below, always
    return state


@app.callback()
def _options(
    ctx: typer.Context,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow server (default: $MLFLOW_TRACKING_URI or http://127.0.0.1:5000)."
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            help="modelreg home directory (default: $MODELREG_HOME, else the nearest "
            ".modelreg here or above, else ~/.local/share/modelreg; `up` creates ./.modelreg)."
        ),
    ] = None,
    ledger_uri: Annotated[
        str | None, typer.Option(help="Ledger database URI (default: sqlite under the home).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option(help="Who is acting (default: $MODELREG_ACTOR or the OS user).")
    ] = None,
) -> None:
    """Global options (also accepted after the command); `--traceback` prints full tracebacks."""
    from modelreg.settings import Settings

    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "tracking_uri": tracking_uri,
            "home": home,
            "ledger_uri": ledger_uri,
            "actor": actor,
        }.items()
        if value is not None
    }
    ctx.obj = CliState(Settings(**overrides))


def emit(
    value: View | Sequence[View],
    as_json: bool,
    table: Table | None = None,
    *,
    empty: str = "no matches",
) -> None:
    """Print ``value`` as JSON, or ``table`` for people; an empty list prints ``empty``.

    An empty table (headers only) reads like a rendering fault; a sentence does not.
    """
    if as_json:
        data = [v.as_json() for v in value] if isinstance(value, Sequence) else value.as_json()
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    elif isinstance(value, Sequence) and not value:
        out.print(empty, markup=False)
    elif table is not None:
        out.print(table)


def warn_overrides(events: Sequence[EventView]) -> None:
    """One stderr warning per override: an admin's promotion past failing policy gates."""
    for event in events:
        if event.action != "override":
            continue
        gates = event.details.get("failed_gates")
        failed = [
            f"{gate.get('gate', '?')} (required {gate.get('required', '?')}, "
            f"observed {gate.get('observed', '?')})"
            for gate in (gates if isinstance(gates, list) else [])
            if isinstance(gate, Mapping)
        ]
        err.print(
            f"warning: override: {event.model} v{event.version} promoted to Production "
            f"although these gates fail: {'; '.join(failed) or 'not recorded'}",
            markup=False,
        )


@contextmanager
def _progress() -> Iterator[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def update(label: str, done: int, total: int) -> None:
            bar.update(task, description=label, completed=done, total=total)

        yield update


# -- the stack ----------------------------------------------------------------


@app.command()
def up(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="MLflow server port.")] = 5000,
    api_port: Annotated[int, typer.Option(min=1, max=65535, help="modelreg API port.")] = 8000,
    backend_store_uri: Annotated[
        str | None,
        typer.Option(help="MLflow backend store, e.g. postgresql://... (default SQLite)."),
    ] = None,
    artifacts_destination: Annotated[
        str | None,
        typer.Option(help="Artifact store, e.g. s3://bucket/prefix (default local dir)."),
    ] = None,
    basic_auth_config: Annotated[
        Path | None,
        typer.Option(
            help="MLflow basic-auth ini: run MLflow's auth app and require MLflow "
            "credentials on the API (see docs/governance.md)."
        ),
    ] = None,
    postgres: Annotated[
        str | None,
        typer.Option(
            "--postgres",
            help="PostgreSQL database for MLflow and the ledger (schema 'modelreg'), e.g. "
            "postgresql://user:password@host:5432/registry.",
        ),
    ] = None,
    s3: Annotated[
        str | None,
        typer.Option(
            "--s3",
            help="S3 endpoint for artifacts, e.g. http://127.0.0.1:8333 (bucket from "
            "--artifacts-destination, default s3://mlflow/artifacts; AWS_* credentials).",
        ),
    ] = None,
) -> None:
    """Start MLflow and the modelreg API service; stop both on Ctrl-C."""
    from sqlalchemy.engine import make_url

    from modelreg.stack import Stack, StackConfig
    from modelreg.stores import production_stores

    settings = state_of(ctx).settings
    stores = production_stores(
        postgres=postgres,
        s3=s3,
        backend_store_uri=backend_store_uri,
        artifacts_destination=artifacts_destination,
        ledger_uri=settings.ledger_uri,
    )
    config = StackConfig(
        home=settings.stack_home(),
        host=host,
        port=port,
        api_port=api_port,
        backend_store_uri=stores.backend_store_uri,
        artifacts_destination=stores.artifacts_destination,
        ledger_uri=stores.ledger_uri,
        s3_endpoint_url=stores.s3_endpoint_url,
        basic_auth_config=basic_auth_config,
    )
    stack = Stack(config)
    stack.check_ports()  # a taken port is named before any store is changed
    stores.prepare()
    out.print(f"starting MLflow on {config.tracking_uri} and the API on {config.api_url} ...")
    stack.start()
    out.print(
        f"[green]ready[/green]  MLflow: {config.tracking_uri}   modelreg API: {config.api_url}"
    )
    out.print(f"home: {config.resolved_home()}   logs: {config.resolved_home() / 'logs'}")
    home = config.resolved_home()
    out.print(f"elsewhere: export MLFLOW_TRACKING_URI={config.tracking_uri} MODELREG_HOME={home}")
    if stores.ledger_uri is not None and stores.ledger_uri != settings.ledger_uri:
        # Other commands find the ledger through the same URI; its password is not printed.
        masked = make_url(stores.ledger_uri).render_as_string(hide_password=True)
        out.print(f"           export MODELREG_LEDGER_URI='{masked}' (*** = your password)")
    out.print("press Ctrl-C to stop")
    raise typer.Exit(stack.run_until_signal())


@app.command()
def demo(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=1, max=65535, help="MLflow server port.")] = 5000,
    api_port: Annotated[int, typer.Option(min=1, max=65535, help="modelreg API port.")] = 8000,
    serve_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port of the demo's model server.")
    ] = 8080,
    keep_running: Annotated[
        bool,
        typer.Option(help="Keep the stack and the model server running after the walkthrough."),
    ] = True,
    keep_home: Annotated[
        bool,
        typer.Option(
            "--keep-home", help="Run on ./.modelreg-demo as it is instead of emptying it first."
        ),
    ] = False,
) -> None:
    """Start a fresh stack in ./.modelreg-demo and walk through the whole course.

    Governance, serving, a 90/10 A/B test and rollback, each step checked;
    exit 1 naming the step that did not behave as stated.
    """
    from modelreg.cli.demo import run_demo

    # The demo's own console wraps long lines at the terminal width; `out` does not.
    raise typer.Exit(
        run_demo(
            state_of(ctx).settings,
            port=port,
            api_port=api_port,
            serve_port=serve_port,
            keep_running=keep_running,
            keep_home=keep_home,
        )
    )


# -- reads ------------------------------------------------------------------------


@app.command()
def models(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List registered models with their Production and Staging versions."""
    found = state_of(ctx).registry.models()
    table = Table("model", "versions", "production", "staging", "latest semver")
    for m in found:
        prod = f"v{m.production} ({m.production_semver})" if m.production else "-"
        table.add_row(
            m.name,
            str(m.versions),
            prod,
            f"v{m.staging}" if m.staging else "-",
            m.latest_semver or "-",
        )
    emit(found, as_json, table, empty="no models yet")


@app.command()
def versions(ctx: typer.Context, name: str, as_json: JsonOpt = False) -> None:
    """List every version of a model."""
    from modelreg.cli.tables import versions_table

    found = state_of(ctx).registry.versions(name)
    emit(found, as_json, versions_table(found), empty="no versions yet")


@app.command()
def show(
    ctx: typer.Context,
    name: str,
    version: Annotated[str, typer.Argument(help="Version number or semver.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one version: semver, stage, digest, lineage, params and metrics."""
    view = state_of(ctx).registry.show(name, version)
    table = Table("field", "value", show_header=False)
    rows: list[tuple[str, str]] = [
        ("model", view.name),
        ("version", str(view.version)),
        ("semver", view.semver or "(not adopted: run `modelreg sync`)"),
        ("stage", view.stage.value),
        ("aliases", ", ".join(view.aliases) or "-"),
        ("digest", view.digest or "-"),
        ("run", view.run_id),
        ("source", view.source),
        (
            "registered",
            f"{view.registered_at} by {view.registered_by}" if view.registered_at else "-",
        ),
        (
            "lineage",
            "complete"
            if view.lineage_complete
            else f"incomplete (missing: {', '.join(view.lineage_missing)})",
        ),
        ("description", view.description or "-"),
        ("compiled", _compiled_text(view.compiled)),
    ]
    rows += [(f"param {k}", v) for k, v in sorted(view.params.items())]
    rows += [(f"metric {k}", f"{v:.6g}") for k, v in sorted(view.metrics.items())]
    rows += [(f"tag {k}", v) for k, v in sorted(view.tags.items())]
    for key, value in rows:
        table.add_row(key, value)
    emit(view, as_json, table)


def _compiled_text(compiled: CompileDetails | None) -> str:
    """One line on the verified compiled form model servers recorded for a version."""
    if compiled is None:
        return "- (no model server has compiled it yet)"
    converters = ", ".join(f"{k} {v}" for k, v in sorted(compiled.converters.items()))
    return (
        f"{compiled.runtime} {compiled.compiled_digest}, verified on {compiled.rows} rows "
        f"(max difference {compiled.max_abs_diff or 0.0:.2g} <= {compiled.tolerance:g}); "
        f"{converters}"
    )


@app.command("search")
def search_cmd(
    ctx: typer.Context,
    filter_text: Annotated[
        str,
        typer.Argument(
            metavar="FILTER", help="e.g. \"stage = 'Production' and metrics.test_auc > 0.85\""
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Find versions by tags, params, metrics, stage, semver (ranges) and lineage."""
    from modelreg.cli.tables import versions_table

    found = state_of(ctx).registry.search(filter_text)
    emit(found, as_json, versions_table(found))


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            f"invalid time {text[:40]!r}: use ISO 8601, e.g. 2026-11-26T10:30:00+00:00"
        ) from None


@app.command()
def history(
    ctx: typer.Context,
    name: str,
    at: Annotated[str | None, typer.Option(help="ISO time: show the state at that moment.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The append-only audit history; with --at, what was in Production then."""
    from modelreg.cli.tables import events_table

    view = state_of(ctx).registry.history(name, _parse_time(at) if at else None)
    if as_json:
        emit(view, True)
        return
    when = f" at {view.at.isoformat()}" if view.at else ""
    prod = f"v{view.production} ({view.production_semver})" if view.production else "nothing"
    out.print(f"Production{when}: {prod}")
    emit(view.events, False, events_table(view.events), empty="no events")


@app.command()
def lineage(ctx: typer.Context, name: str, version: str, as_json: JsonOpt = False) -> None:
    """Which run, code, data, parameters and environment produced a version."""
    view = state_of(ctx).registry.lineage(name, version)
    if as_json:
        emit(view, True)
        return
    out.print(f"{view.name} v{view.version} ({view.semver or 'not adopted'}), run {view.run_id}")
    out.print(
        "lineage: "
        + ("complete" if view.complete else f"incomplete, missing {', '.join(view.missing)}")
        + f" (from {view.source})"
    )
    if view.record is not None:
        out.print_json(view.record.model_dump_json(exclude={"environment": {"packages"}}))


# -- changes ------------------------------------------------------------------------


@app.command()
def promote(
    ctx: typer.Context,
    name: str,
    version: str,
    stage: Annotated[str, typer.Option("--stage", help="Staging, Production, Archived or None.")],
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Move a version to a stage; a new Production archives the previous one."""
    from modelreg.cli.tables import events_table

    events = state_of(ctx).registry.promote(name, version, stage, reason=reason)
    emit(events, as_json, events_table(events))
    warn_overrides(events)


@app.command()
def rollback(
    ctx: typer.Context,
    name: str,
    to: Annotated[
        str | None, typer.Option(help="Version to return to (default: the previous Production).")
    ] = None,
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Return Production to the previous (or a given) Production version."""
    from modelreg.cli.tables import events_table

    events = state_of(ctx).registry.rollback(name, to, reason=reason)
    emit(events, as_json, events_table(events))


@app.command()
def register(
    ctx: typer.Context,
    name: str,
    model_uri: Annotated[str, typer.Argument(help="A logged model, e.g. runs:/<run_id>/model.")],
    semver_text: Annotated[
        str | None, typer.Option("--semver", help="Explicit semver (must exceed all).")
    ] = None,
    description: Annotated[str, typer.Option(help="Version description.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Register an already logged model as a new version with semver, digest and lineage."""
    from modelreg.cli.tables import versions_table

    view = state_of(ctx).registry.register_uri(
        name, model_uri, semver=semver_text, description=description
    )
    emit(view, as_json, versions_table([view]))


@app.command()
def sync(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Adopt versions registered by plain MLflow clients (semver, digest, lineage record)."""
    from modelreg.cli.tables import versions_table

    skipped: list[str] = []
    with _progress() as update:
        adopted = state_of(ctx).registry.sync(
            name,
            progress=update,
            on_skip=lambda info, exc: skipped.append(
                f"warning: skipped {info.name} v{info.version}: {exc.message}"
            ),
        )
    for line in skipped:
        err.print(line, markup=False)
    if adopted and not as_json:
        out.print(f"adopted {len(adopted)} version(s)")
    emit(adopted, as_json, versions_table(adopted), empty="no versions to adopt")


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    name: str,
    version: Annotated[str | None, typer.Argument()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-hash artifacts and report any change since registration (exit 5 if tampered)."""
    with _progress() as update:
        results = state_of(ctx).registry.verify(name, version, progress=update)
    table = Table("version", "semver", "result", "problems")
    for r in results:
        table.add_row(
            str(r.version),
            r.semver or "-",
            "[green]ok[/green]" if r.ok else "[red]TAMPERED[/red]",
            "; ".join(r.problems),
        )
    emit(results, as_json, table)
    if not all(r.ok for r in results):
        raise typer.Exit(5)


@app.command()
def doctor(
    ctx: typer.Context,
    fix: Annotated[bool, typer.Option("--fix", help="Repair MLflow from the ledger.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find drift between the ledger and MLflow (exit 1 if found and not fixed)."""
    drifts = state_of(ctx).registry.doctor(fix=fix)
    table = Table("model", "version", "what", "ledger says", "MLflow shows", "fixed")
    for d in drifts:
        table.add_row(
            d.name, str(d.version or "-"), d.kind, d.expected, d.actual, "yes" if d.fixed else "no"
        )
    if drifts and not as_json:
        out.print(f"{len(drifts)} difference(s)")
    emit(drifts, as_json, table, empty="no drift")
    if drifts and not fix:
        raise typer.Exit(1)
