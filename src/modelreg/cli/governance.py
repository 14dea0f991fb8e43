"""Governance commands: policy, validate, request, approve, reject, auto-promote.

Like the other commands these import the facade's modules when they run, not
at start-up (see :mod:`modelreg.cli.app`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from modelreg.cli.app import JsonOpt, app, emit, out, state_of
from modelreg.cli.exit_codes import EXIT_CODES
from modelreg.errors import ConflictError

if TYPE_CHECKING:
    from modelreg.views import DecisionView

policy_app = typer.Typer(help="Write and inspect the governance policy.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
webhooks_app = typer.Typer(help="Inspect and retry webhook deliveries.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")

CommentOpt = Annotated[str, typer.Option("--comment", help="Recorded in the ledger and MLflow.")]
# A declined promotion exits as the state refusing it would: CI steps can tell "not promoted".
DECLINED_EXIT = EXIT_CODES[ConflictError]


def _decision_table(view: DecisionView) -> Table:
    table = Table("gate", "result", "required", "observed")
    for gate in view.gates:
        verdict = "[green]pass[/green]" if gate.passed else "[red]FAIL[/red]"
        table.add_row(gate.gate, verdict, gate.required, gate.observed)
    return table


def _report(view: DecisionView, as_json: bool) -> None:
    from modelreg.cli.tables import events_table
    from modelreg.domain import Outcome

    if as_json:
        emit(view, True)
        return
    semver = f" ({view.semver})" if view.semver else ""
    out.print(f"{view.name} v{view.version}{semver}: [bold]{view.outcome}[/bold]")
    if view.gates:
        out.print(_decision_table(view))
    if view.required_approvals and view.outcome in {
        Outcome.PENDING,
        Outcome.PROMOTED,
        Outcome.REQUESTED,
    }:
        out.print(
            f"approvals: {len(view.approvers)}/{view.required_approvals}"
            + (f" ({', '.join(view.approvers)})" if view.approvers else "")
        )
    if view.message:
        out.print(view.message, markup=False)
    if view.events:
        out.print(events_table(view.events, with_time=False))


@policy_app.command("init")
def policy_init(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter policy with the course's rules (you become its admin).

    Anyone may write the first policy; replacing one (--force) takes its admin role.
    """
    view = state_of(ctx).registry.init_policy(force=force)
    out.print(
        f"wrote {view.source}; {view.actor} is its admin. Edit it, then `modelreg policy show`."
    )


@policy_app.command("show")
def policy_show(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Model (default: the default policy).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the effective policy for a model, with its source file and your role."""
    view = state_of(ctx).registry.policy_view(name)
    if as_json:
        emit(view, True)
        return
    if view.source is None:
        out.print(
            "no policy file: no gates, every user is an admin. "
            "Run `modelreg policy init` to govern promotions."
        )
    else:
        out.print(f"policy from {view.source}" + (f" for model {name}" if name else ""))
    out.print_json(data=view.policy)
    out.print(f"your role: {view.role}")


@app.command()
def validate(ctx: typer.Context, name: str, version: str, as_json: JsonOpt = False) -> None:
    """Run every policy gate against a version (exit 4 if one fails)."""
    view = state_of(ctx).registry.validate(name, version)
    _report(view, as_json)
    if not view.passed:
        raise typer.Exit(DECLINED_EXIT)


@app.command()
def request(
    ctx: typer.Context,
    name: str,
    version: str,
    stage: Annotated[
        str, typer.Option("--stage", help="Only Production is governed (the default).")
    ] = "Production",
    comment: CommentOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Request promotion to Production; the gates must pass."""
    from modelreg.domain import Stage

    view = state_of(ctx).registry.request(name, version, stage=Stage.parse(stage), comment=comment)
    _report(view, as_json)


@app.command()
def approve(
    ctx: typer.Context, name: str, version: str, comment: CommentOpt = "", as_json: JsonOpt = False
) -> None:
    """Approve a version's open request; it is promoted once enough approvals count."""
    _report(state_of(ctx).registry.approve(name, version, comment=comment), as_json)


@app.command()
def reject(
    ctx: typer.Context,
    name: str,
    version: str,
    comment: Annotated[str, typer.Option("--comment", help="Why (required).")],
    as_json: JsonOpt = False,
) -> None:
    """Reject a version's open request; only the ledger and tags change."""
    _report(state_of(ctx).registry.reject(name, version, comment=comment), as_json)


@app.command("auto-promote")
def auto_promote(ctx: typer.Context, name: str, version: str, as_json: JsonOpt = False) -> None:
    """Promote if the gates pass and the version beats Production (exit 4 if not)."""
    from modelreg.domain import Outcome

    view = state_of(ctx).registry.auto_promote(name, version)
    _report(view, as_json)
    if view.outcome is Outcome.DECLINED:
        raise typer.Exit(DECLINED_EXIT)


@webhooks_app.command("list")
def webhooks_list(
    ctx: typer.Context,
    subscriber: Annotated[str | None, typer.Option(help="Only this subscriber.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Webhook deliveries, newest first, with attempts and the last error."""
    found = state_of(ctx).registry.deliveries(subscriber=subscriber, status=status, limit=limit)
    table = Table(
        "id", "subscriber", "event", "model", "action", "status", "attempts", "last error"
    )
    for d in found:
        table.add_row(
            str(d.id),
            d.subscriber,
            str(d.event_id),
            d.model,
            d.action,
            d.status,
            str(d.attempts),
            d.last_error[:60],
        )
    emit(found, as_json, table)


@webhooks_app.command("retry")
def webhooks_retry(
    ctx: typer.Context,
    # The ledger's 64-bit row ids (modelreg.domain.MAX_LEDGER_ID, not imported here: domain
    # loads pydantic, which would slow every command's start-up): larger ids are usage errors.
    delivery_id: Annotated[int, typer.Argument(min=1, max=2**63 - 1)],
    as_json: JsonOpt = False,
) -> None:
    """Queue a failed delivery again (it is sent on the next round)."""
    view = state_of(ctx).registry.retry_delivery(delivery_id)
    if not as_json:
        out.print(f"delivery {view.id} to {view.subscriber} is pending again")
    emit(view, as_json)


@webhooks_app.command("deliver")
def webhooks_deliver(ctx: typer.Context) -> None:
    """Send due deliveries now instead of waiting for the API service's loop."""
    attempts = state_of(ctx).registry.deliver_webhooks()
    out.print(f"{attempts} delivery attempt(s) made")
