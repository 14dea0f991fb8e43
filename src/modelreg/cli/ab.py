"""A/B experiment commands: ``modelreg ab start|status|ramp|stop|conclude|list``.

Each calls one :class:`modelreg.Registry` method; every read command has
``--json``. Like the other commands these import the facade when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from modelreg.cli.app import JsonOpt, ReasonOpt, app, emit, err, out, state_of

if TYPE_CHECKING:
    from modelreg.registry import Registry
    from modelreg.views import ExperimentView

ab_app = typer.Typer(
    help="A/B experiments: sticky traffic splits between registry versions, with statistics.",
    no_args_is_help=True,
)
app.add_typer(ab_app, name="ab")

WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        min=0,
        help="Then wait up to SECONDS until every serving replica follows the change "
        "(exit 1 naming those that do not).",
    ),
]

TrafficOpt = Annotated[
    float,
    typer.Option("--traffic", help="Each treatment's share of traffic, in (0, 1], e.g. 0.10."),
]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _summary(view: ExperimentView) -> None:
    arms = ", ".join(
        f"{a.variant} v{a.version} ({a.share:.0%})" for a in (view.control, *view.treatments)
    )
    follows = f" following @{view.control_alias}" if view.control_alias else ""
    mode = " shadow" if view.shadow else ""
    out.print(f"{view.model}: experiment {view.id} [bold]{view.state}[/bold]{mode}", markup=True)
    out.print(f"  arms: {arms}; control{follows}", markup=False)
    out.print(
        f"  routing key: {view.key_header}; metrics: {', '.join(view.metrics)}; "
        f"guardrails: {', '.join(view.guardrails) or 'none'}",
        markup=False,
    )
    out.print(f"  started by {view.started_by} at {view.started_at:%Y-%m-%d %H:%M:%S}Z")
    if view.stop_reason and view.state != "running":
        out.print(f"  stopped: {view.stop_reason}", markup=False)


def _report(report: dict[str, Any]) -> None:
    variants = Table("variant", "version", "requests", "errors", "p99 ms", "feedback", "metrics")
    for v in report.get("variants", []):
        metrics = ", ".join(
            f"{name}={_fmt(m.get('value'), 3)} (n={m.get('n')})"
            for name, m in (v.get("metrics") or {}).items()
        )
        variants.add_row(
            str(v.get("variant")),
            _fmt(v.get("version")),
            _fmt(v.get("requests")),
            _fmt(v.get("errors")),
            _fmt(v.get("p99_latency_ms")),
            _fmt(v.get("feedback")),
            metrics or "-",
        )
    out.print(variants)
    comparisons = Table("treatment", "metric", "effect [CI]", "p", "significant", "still needed")
    methods: dict[str, str] = {}
    for c in report.get("comparisons", []):
        effect = (
            f"{_fmt(c.get('effect'), 3)} [{_fmt(c.get('ci_low'), 3)}, {_fmt(c.get('ci_high'), 3)}]"
        )
        significant = bool(c.get("significant"))
        comparisons.add_row(
            str(c.get("treatment")),
            str(c.get("metric")),
            effect,
            _fmt(c.get("p_value"), 2),
            "yes" if significant else "no",
            "-" if significant else _fmt(c.get("still_needed")),
        )
        if c.get("method"):
            methods[str(c.get("metric"))] = str(c["method"])
    if report.get("comparisons"):
        out.print(comparisons)
        for metric, method in methods.items():
            out.print(f"  {metric}: {method}", markup=False)
    srm = report.get("srm") or {}
    if srm:
        flag = "[red]MISMATCH[/red]" if srm.get("flagged") else "ok"
        out.print(f"sample ratio: {flag} (chi-square p = {_fmt(srm.get('p_value'))})")
    for g in report.get("guardrails", []):
        verdict = "[red]BREACHED[/red]" if g.get("breached") else "ok"
        out.print(
            f"guardrail {g.get('treatment')} {g.get('guardrail')}: {verdict} "
            f"(observed {_fmt(g.get('observed'))})"
        )
    out.print(f"decision: [bold]{report.get('decision')}[/bold] ({report.get('reason', '')})")


def _wait_for_replicas(
    registry: Registry, view: ExperimentView, seconds: float, *, as_json: bool
) -> None:
    """Return once every live replica of the model follows ``view``; ModelregError past ``seconds``.

    Following means routing by its current revision (with every treatment
    loaded while it runs), or no longer routing by it once it is concluded
    (:func:`modelreg.registry.serving.experiment_routing`). Replicas report
    every ``flush_interval`` (2 s by default), so this takes at least until
    each one's next report after it switched.
    """
    from modelreg.errors import ModelregError
    from modelreg.experiments.definition import ExperimentState

    say = err if as_json else out  # JSON alone on stdout
    concluded = view.state == ExperimentState.CONCLUDED
    routing = registry.wait_for_routing(view, seconds)
    routes, waiting = routing.routed_by, routing.waiting
    if waiting:
        doing = (
            f"still route by experiment {view.id}"
            if concluded
            else f"do not yet route by experiment {view.id} revision {view.revision}"
        )
        raise ModelregError(
            f"{len(waiting)} of {len(routes) + len(waiting)} serving replica(s) of "
            f"{view.model} {doing} after {seconds:g} s: "
            f"{', '.join(waiting)} (see their logs and /version)"
        )
    if not routes:
        say.print(f"  no serving replica of {view.model} is reporting", markup=False)
    elif concluded:
        say.print(f"  let go by {len(routes)} serving replica(s)", markup=False)
    else:
        say.print(f"  routed by {len(routes)} serving replica(s)", markup=False)


def _show_and_wait(registry: Registry, view: ExperimentView, wait: float, as_json: bool) -> None:
    """Show ``view``; with ``wait`` > 0, then wait for the serving replicas to follow it."""
    _show(view, as_json)
    if wait > 0:
        _wait_for_replicas(registry, view, wait, as_json=as_json)


def _show(view: ExperimentView, as_json: bool) -> None:
    if as_json:
        emit(view, True)
        return
    _summary(view)
    if view.report:
        _report(view.report)
    if view.events:
        from modelreg.cli.tables import events_table

        out.print(events_table(view.events, with_time=False))


@ab_app.command("start")
def start(
    ctx: typer.Context,
    name: str,
    treatment: Annotated[
        list[str],
        typer.Option("--treatment", help="A version (number or semver) to test; repeatable."),
    ],
    traffic: TrafficOpt,
    control: Annotated[
        str, typer.Option("--control", help="An alias to follow, or a version.")
    ] = "production",
    key_header: Annotated[
        str, typer.Option("--key-header", help="Request header whose value keeps users sticky.")
    ] = "X-User-ID",
    shadow: Annotated[
        bool, typer.Option("--shadow", help="Score treatments on mirrored traffic only.")
    ] = False,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric", help="accuracy, conversion, value, auc or error_rate; first is primary."
        ),
    ] = None,
    guardrail: Annotated[
        list[str] | None,
        typer.Option("--guardrail", help="e.g. 'error_rate<0.05' or 'p99_latency_ms<500'."),
    ] = None,
    reason: ReasonOpt = "",
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Start an experiment: each --treatment gets --traffic of requests, control the rest.

    With ``--wait SECONDS`` it returns once every serving replica routes it.
    """
    registry = state_of(ctx).registry
    view = registry.ab_start(
        name,
        treatment,
        traffic=traffic,
        control=control,
        key_header=key_header,
        shadow=shadow,
        metrics=metric or (),
        guardrails=guardrail or (),
        reason=reason,
    )
    _show_and_wait(registry, view, wait, as_json)


@ab_app.command("status")
def status(ctx: typer.Context, name: str, as_json: JsonOpt = False) -> None:
    """The model's experiment with per-variant counts, statistics and the decision."""
    _show(state_of(ctx).registry.ab_status(name), as_json)


@ab_app.command("ramp")
def ramp(
    ctx: typer.Context,
    name: str,
    traffic: TrafficOpt,
    reason: ReasonOpt = "",
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Change each treatment's share; users already in a treatment stay there."""
    registry = state_of(ctx).registry
    _show_and_wait(registry, registry.ab_ramp(name, traffic, reason=reason), wait, as_json)


@ab_app.command("stop")
def stop(
    ctx: typer.Context,
    name: str,
    reason: ReasonOpt = "",
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Stop the experiment: everyone gets control; conclude it to record the decision."""
    registry = state_of(ctx).registry
    _show_and_wait(registry, registry.ab_stop(name, reason=reason), wait, as_json)


@ab_app.command("conclude")
def conclude(
    ctx: typer.Context,
    name: str,
    promote: Annotated[
        bool,
        typer.Option("--promote", help="Promote the winner through the gates and approvals."),
    ] = False,
    reason: ReasonOpt = "",
    wait: WaitOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Record the decision and end the experiment (--promote: promote the winner)."""
    registry = state_of(ctx).registry
    view = registry.ab_conclude(name, promote=promote, reason=reason)
    _show_and_wait(registry, view, wait, as_json)


@ab_app.command("list")
def list_experiments(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="running, stopped or concluded.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Experiments, newest first."""
    found = state_of(ctx).registry.ab_list(model=model, state=state)
    table = Table("id", "model", "state", "control", "treatments", "traffic", "started")
    for view in found:
        table.add_row(
            view.id,
            view.model,
            view.state,
            f"v{view.control.version}",
            ", ".join(f"{a.variant} v{a.version}" for a in view.treatments),
            f"{view.traffic:g}",
            f"{view.started_at:%Y-%m-%d %H:%M}",
        )
    emit(found, as_json, table, empty="no experiments")
