"""The dashboard's pages and forms: each reads the facade as the logged-in user and renders.

What a user may do is decided by the facade on every form post; the pages
only leave out the buttons of actions the user's role does not reach.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request
from starlette.datastructures import FormData
from starlette.responses import Response, StreamingResponse

from modelreg.dashboard.charts import LineChart, line_chart
from modelreg.dashboard.render import (
    MAX_PAGE_NUMBER,
    PER_PAGE,
    Pager,
    parse_time,
    part,
    text_field,
)
from modelreg.domain import Action
from modelreg.errors import InvalidInputError, VersionNotFoundError
from modelreg.policy import Permission, Role
from modelreg.registry import EventFilter, Registry
from modelreg.views import EventView, ExperimentView

if TYPE_CHECKING:
    from jinja2 import Environment

    from modelreg.experiments.timeline import Timeline, VariantSeries

PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE_NUMBER)]
Text = Annotated[str, Query(max_length=256)]
_EXPORT_PAGE = 500
_EXPORT_MAX = 100_000
_CSV_FIELDS = (
    *("id", "at", "model", "version", "semver", "action", "actor"),
    *("from_stage", "to_stage", "reason", "digest", "details"),
)


class Host(Protocol):
    """What the pages need from the app around them (sessions, rendering, form posts)."""

    def html(self, request: Request, template: str, code: int = 200, **values: Any) -> Response:
        """Render a template for the request's session."""
        ...

    def user(self, request: Request) -> str:
        """The logged-in user, or AuthenticationError."""
        ...

    async def act(
        self, request: Request, action: Callable[[str, FormData], object], done: str
    ) -> Response:
        """Check a form post, run ``action(user, form)``, redirect to ``done``."""
        ...


def abilities(role: Role) -> dict[str, bool]:
    """Which kinds of buttons to show a user of ``role`` (the facade still decides)."""
    return {p.value: p.allows(role) for p in Permission}


def _csv_cell(value: Any) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP's CSV injection advice)."""
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value or "")
    return "'" + text if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


class Pages:
    """The page handlers; :meth:`install` adds them to the dashboard app."""

    def __init__(self, registry: Registry, env: Environment) -> None:
        self.reg = registry
        self.env = env

    def common(self, user: str) -> dict[str, Any]:
        """Values every page needs: the user's role and which actions it reaches."""
        role = self.reg.role_of(user)
        return {"role": role, "can": abilities(role)}

    # -- reads ---------------------------------------------------------------------

    def models(self, user: str, q: str, has: str, page: int) -> dict[str, Any]:
        """The Models page: every model with Production, stage counts, requests, experiment."""
        counts = self.reg.model_counts()
        running = {e.model: e for e in self.reg.ab_list(state="running", actor=user)}
        rows = []
        for model in self.reg.models():
            if q and q.lower() not in model.name.lower():
                continue
            count = counts.get(model.name)
            requests = count.open_requests if count else 0
            if (
                (has == "production" and model.production is None)
                or (has == "requests" and not requests)
                or (has == "experiment" and model.name not in running)
            ):
                continue
            rows.append((model, count, running.get(model.name)))
        pager = Pager(page, len(rows), query=(("q", q), ("has", has))).check()
        shown = rows[pager.offset : pager.offset + pager.per_page]
        return {"rows": shown, "pager": pager, "q": q, "has": has}

    def model(self, user: str, name: str, page: int, events_page: int) -> dict[str, Any]:
        """The Model page: a page of versions, a page of its timeline, the rollback form."""
        versions = self.reg.versions_page(name, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
        pager = Pager(page, versions.total, query=(("events", str(events_page)),)).check()
        where = EventFilter(model=name)
        events = self.reg.audit(where, limit=PER_PAGE, offset=(events_page - 1) * PER_PAGE)
        events_pager = Pager(
            events_page, events.total, query=(("page", str(page)),), param="events"
        ).check()
        requests = self.reg.open_requests(name, limit=500).requests
        try:
            production: int | None = self.reg.alias_version(name, "production")
        except VersionNotFoundError:
            production = None
        archived = [v for v in versions.versions if v.stage.value == "Archived"]
        return {
            "name": name,
            "versions": versions.versions,
            "pager": pager,
            "events": events.events,
            "events_pager": events_pager,
            "requests": {r.version: r for r in requests},
            "production": production,
            "archived": archived,
        }

    def version(self, user: str, name: str, ref: str) -> dict[str, Any]:
        """The Version page: gates (required vs observed), lineage, digest, events."""
        shown = self.reg.show(name, ref)
        decision = self.reg.validate(name, shown.version, actor=user)
        lineage = self.reg.lineage(name, shown.version)
        where = EventFilter(model=name, version=shown.version)
        events = self.reg.audit(where, limit=100).events
        request = next(
            (
                r
                for r in self.reg.open_requests(name, limit=500).requests
                if r.version == shown.version
            ),
            None,
        )
        tracking = self.reg.settings.resolved_tracking_uri().rstrip("/")
        mlflow_links = tracking.startswith(("http://", "https://"))
        return {
            "v": shown,
            "decision": decision,
            "lineage": lineage,
            "events": events,
            "pending": request,
            "run_url": f"{tracking}/#/runs/{shown.run_id}" if mlflow_links and shown.run_id else "",
            "model_url": f"{tracking}/#/models/{name}/versions/{shown.version}"
            if mlflow_links
            else "",
        }

    def approvals(self, user: str, page: int) -> dict[str, Any]:
        """The approval queue: open requests, oldest first."""
        found = self.reg.open_requests(limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
        return {"requests": found.requests, "pager": Pager(page, found.total).check()}

    def experiments(self, user: str, model: str, state: str, page: int) -> dict[str, Any]:
        """Every experiment (of one model, in one state), newest first."""
        found = self.reg.ab_list(model=model or None, state=state or None, actor=user)
        pager = Pager(page, len(found), query=(("model", model), ("state", state))).check()
        shown = found[pager.offset : pager.offset + pager.per_page]
        return {"experiments": shown, "pager": pager, "model": model, "state": state}

    def experiment(self, user: str, name: str) -> dict[str, Any]:
        """One experiment with its report: traffic, latency, errors, metrics, verdict."""
        view, timeline = self.reg.ab_overview(name, actor=user)
        report = view.report or {}
        variants = report.get("variants", [])
        most = max([int(v.get("requests") or 0) for v in variants] + [1])
        slowest = max([float(v.get("p99_latency_ms") or 0) for v in variants] + [1.0])
        return {
            "x": view,
            "report": report,
            "most": most,
            "slowest": slowest,
            "charts": timeline_charts(timeline),
            "interval": timeline.minutes,
        }

    def serving(self, user: str, model: str, page: int) -> dict[str, Any]:
        """What serving replicas report: slots, reloads (paged), and experiment counts."""
        slots = self.reg.replicas(model or None, actor=user)
        reloads = self.reg.reloads(
            model or None, limit=PER_PAGE, offset=(page - 1) * PER_PAGE, actor=user
        )
        pager = Pager(page, reloads.total, query=(("model", model),)).check()
        experiments = self.reg.ab_list(model=model or None, actor=user)[:50]
        reports = self.reg.replica_reports([e.id for e in experiments])
        by_experiment: dict[str, list[Any]] = {}
        for report in reports:
            by_experiment.setdefault(report.experiment_id, []).append(report)
        shown: list[tuple[ExperimentView, list[Any]]] = [
            (e, by_experiment[e.id]) for e in experiments if e.id in by_experiment
        ]
        return {
            "slots": slots,
            "reloads": reloads.reloads,
            "pager": pager,
            "model": model,
            "experiments": shown,
        }

    def audit_filter(
        self, model: str, actor: str, action: str, since: str, until: str
    ) -> EventFilter:
        """The audit filter from the page's query; InvalidInputError for an unknown action."""
        chosen = None
        if action:
            try:
                chosen = Action(action)
            except ValueError:
                raise InvalidInputError(f"unknown action {action[:40]!r}") from None
        return EventFilter(
            model=model or None,
            actor=actor or None,
            action=chosen,
            since=parse_time(since),
            until=parse_time(until, end_of_day=True),
        )

    def export(self, where: EventFilter, fmt: str) -> Response:
        """Every matching event (at most 100,000), streamed as CSV or a JSON array."""
        self.reg.audit(where, limit=1)  # bad input fails here, before the stream starts

        def events() -> Iterator[EventView]:
            offset = 0
            while offset < _EXPORT_MAX:
                page = self.reg.audit(where, limit=_EXPORT_PAGE, offset=offset)
                yield from page.events
                offset += _EXPORT_PAGE
                if offset >= page.total:
                    return

        if fmt == "json":
            return StreamingResponse(
                _json_lines(events()),
                media_type="application/json",
                headers={"Content-Disposition": 'attachment; filename="modelreg-audit.json"'},
            )
        return StreamingResponse(
            _csv_lines(events()),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="modelreg-audit.csv"'},
        )

    # -- routes --------------------------------------------------------------------

    def install(self, app: FastAPI, dashboard: Host) -> None:  # noqa: C901, PLR0915
        """Add the pages and forms to ``app`` (each route function counts towards complexity)."""

        def render(request: Request, template: str, values: dict[str, Any]) -> Response:
            user = values.pop("_user")
            return dashboard.html(request, template, **self.common(user), **values)

        @app.get("/")
        def models(
            request: Request,
            q: Text = "",
            has: Literal["", "production", "requests", "experiment"] = "",
            page: PageNumber = 1,
        ) -> Response:
            user = dashboard.user(request)
            return render(
                request, "models.html", {"_user": user, **self.models(user, q, has, page)}
            )

        @app.get("/models/{name}")
        def model(
            request: Request, name: str, page: PageNumber = 1, events: PageNumber = 1
        ) -> Response:
            user = dashboard.user(request)
            values = self.model(user, name, page, events)
            return render(request, "model.html", {"_user": user, **values})

        @app.get("/models/{name}/versions/{ref}")
        def version(request: Request, name: str, ref: str) -> Response:
            user = dashboard.user(request)
            return render(request, "version.html", {"_user": user, **self.version(user, name, ref)})

        @app.get("/approvals")
        def approvals(request: Request, page: PageNumber = 1) -> Response:
            user = dashboard.user(request)
            return render(request, "approvals.html", {"_user": user, **self.approvals(user, page)})

        @app.get("/experiments")
        def experiments(
            request: Request,
            model: Text = "",
            state: Literal["", "running", "stopped", "concluded"] = "",
            page: PageNumber = 1,
        ) -> Response:
            user = dashboard.user(request)
            values = self.experiments(user, model, state, page)
            return render(request, "experiments.html", {"_user": user, **values})

        @app.get("/models/{name}/experiment")
        def experiment(request: Request, name: str) -> Response:
            user = dashboard.user(request)
            return render(
                request, "experiment.html", {"_user": user, **self.experiment(user, name)}
            )

        @app.get("/serving")
        def serving(request: Request, model: Text = "", page: PageNumber = 1) -> Response:
            user = dashboard.user(request)
            values = self.serving(user, model, page)
            return render(request, "serving.html", {"_user": user, **values})

        @app.get("/audit")
        def audit(
            request: Request,
            model: Text = "",
            actor: Text = "",
            action: Annotated[str, Query(max_length=32)] = "",
            since: Annotated[str, Query(max_length=40)] = "",
            until: Annotated[str, Query(max_length=40)] = "",
            page: PageNumber = 1,
            format: Literal["html", "csv", "json"] = "html",
        ) -> Response:
            user = dashboard.user(request)
            where = self.audit_filter(model, actor, action, since, until)
            if format != "html":
                return self.export(where, format)
            found = self.reg.audit(where, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
            query = (
                *(("model", model), ("actor", actor), ("action", action)),
                *(("since", since), ("until", until)),
            )
            pager = Pager(page, found.total, query=query).check()
            values = {
                "_user": user,
                "events": found.events,
                "pager": pager,
                "filters": dict(query),
                "actions": [a.value for a in Action],
                "export": urlencode([(k, v) for k, v in query if v]),
            }
            return render(request, "audit.html", values)

        # -- forms: each calls one facade method as the logged-in user ---------------

        def ref(form: FormData) -> str:
            return text_field(form, "version", 64)

        @app.post("/models/{name}/versions/{v}/request")
        async def request_promotion(request: Request, name: str, v: str) -> Response:
            def act(user: str, form: FormData) -> None:
                self.reg.request(name, v, comment=text_field(form, "comment"), actor=user)

            return await dashboard.act(
                request, act, f"/models/{part(name)}/versions/{part(v)}?notice=requested"
            )

        @app.post("/models/{name}/versions/{v}/approve")
        async def approve(request: Request, name: str, v: str) -> Response:
            def act(user: str, form: FormData) -> None:
                self.reg.approve(name, v, comment=text_field(form, "comment"), actor=user)

            return await dashboard.act(request, act, "/approvals?notice=approved")

        @app.post("/models/{name}/versions/{v}/reject")
        async def reject(request: Request, name: str, v: str) -> Response:
            def act(user: str, form: FormData) -> None:
                self.reg.reject(name, v, comment=text_field(form, "comment"), actor=user)

            return await dashboard.act(request, act, "/approvals?notice=rejected")

        @app.post("/models/{name}/rollback")
        async def rollback(request: Request, name: str) -> Response:
            def act(user: str, form: FormData) -> None:
                target = ref(form).strip() or None
                self.reg.rollback(name, target, reason=text_field(form, "reason"), actor=user)

            return await dashboard.act(request, act, f"/models/{part(name)}?notice=rolled-back")

        @app.post("/models/{name}/experiment/ramp")
        async def ramp(request: Request, name: str) -> Response:
            def act(user: str, form: FormData) -> None:
                traffic = _share(text_field(form, "traffic", 32))
                self.reg.ab_ramp(name, traffic, reason=text_field(form, "reason"), actor=user)

            return await dashboard.act(
                request, act, f"/models/{part(name)}/experiment?notice=ramped"
            )

        @app.post("/models/{name}/experiment/stop")
        async def stop(request: Request, name: str) -> Response:
            def act(user: str, form: FormData) -> None:
                self.reg.ab_stop(name, reason=text_field(form, "reason"), actor=user)

            return await dashboard.act(
                request, act, f"/models/{part(name)}/experiment?notice=stopped"
            )

        @app.post("/models/{name}/experiment/conclude")
        async def conclude(request: Request, name: str) -> Response:
            def act(user: str, form: FormData) -> None:
                promote = text_field(form, "promote", 8) == "yes"
                reason = text_field(form, "reason")
                self.reg.ab_conclude(name, promote=promote, reason=reason, actor=user)

            return await dashboard.act(
                request, act, f"/models/{part(name)}/experiment?notice=concluded"
            )


def _share(text: str) -> float:
    """A traffic share typed in a form: a number in (0, 1] (the facade checks the range)."""
    try:
        return float(text)
    except ValueError:
        raise InvalidInputError(f"traffic must be a number like 0.25; got {text[:20]!r}") from None


def _csv_lines(events: Iterator[EventView]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_CSV_FIELDS)
    for event in events:
        row = event.as_json()
        writer.writerow([_csv_cell(row[field]) for field in _CSV_FIELDS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _json_lines(events: Iterator[EventView]) -> Iterator[str]:
    yield "["
    for i, event in enumerate(events):
        yield ("," if i else "") + json.dumps(event.as_json(), sort_keys=True)
    yield "]\n"


_Pick = Callable[["VariantSeries"], Sequence[float | None]]


def timeline_charts(timeline: Timeline) -> list[LineChart]:
    """The Experiment page's charts: traffic, error rate, p99 latency, then each online metric."""
    ends = timeline.ends
    variants = timeline.variants

    def chart(title: str, pick: _Pick, unit: str = "") -> LineChart:
        return line_chart(title, ends, {s.variant: pick(s) for s in variants}, unit=unit)

    charts = [
        chart("Requests per minute", lambda s: s.requests_per_minute),
        chart("Error rate", lambda s: s.error_rate),
        chart("p99 latency", lambda s: s.p99_latency_ms, unit=" ms"),
    ]
    for name in dict.fromkeys(name for s in variants for name in s.metrics):
        series = {s.variant: s.metrics.get(name, ()) for s in variants}
        top = 1.0 if name in timeline.share_metrics else None
        charts.append(line_chart(f"{name} (all feedback so far)", ends, series, y_max=top))
    return charts
