"""Read models: resolve references, list models and versions, show, search, history, lineage.

Nothing here writes; every answer combines MLflow's record (versions, runs,
aliases) with the ledger's (semver, digest, lineage, the folded stages).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from modelreg import lifecycle, search, semver
from modelreg.domain import (
    LineageRecord,
    Stage,
    check_model_name,
    parse_version_number,
)
from modelreg.errors import InvalidInputError, VersionNotFoundError
from modelreg.ledger import Ledger, VersionRecord
from modelreg.ledger.overview import EventFilter, Overview
from modelreg.lifecycle import ModelState
from modelreg.mlflow_gateway import (
    PRODUCTION_ALIAS,
    STAGING_ALIAS,
    MlflowGateway,
    RunInfo,
    VersionInfo,
    filter_literal,
)
from modelreg.registration import adopted_lineage
from modelreg.registry.access import Access
from modelreg.registry.ledger_check import LedgerCheck
from modelreg.registry.projection import alias_holders
from modelreg.search import Query
from modelreg.views import (
    EventPage,
    EventView,
    HistoryView,
    LineageSource,
    LineageView,
    ModelCounts,
    ModelView,
    ReplicaView,
    RequestPage,
    RequestView,
    VersionPage,
    VersionView,
)

log = logging.getLogger("modelreg.registry")

_WHOLE_MODEL = 200  # more versions than this of one model: read all its rows at once
_FEW = 50  # up to this many versions are fetched one by one rather than listed
MAX_PAGE = 500  # rows per page of the paged reads (audit events, open requests)


class Reads:
    """Queries over MLflow and the ledger: references, models, versions, search, history."""

    def __init__(
        self, gateway: MlflowGateway, ledger: Ledger, access: Access, ledger_check: LedgerCheck
    ) -> None:
        self.gateway = gateway
        self.ledger = ledger
        self.access = access
        self.ledger_check = ledger_check
        self.overview = Overview(ledger)
        # (model, alias) -> the version MLflow and the ledger last agreed on, and the
        # version a bypass was last logged for (alias_version is polled every second).
        self._confirmed: dict[tuple[str, str], int] = {}
        self._bypass_logged: dict[tuple[str, str], int] = {}

    # -- references ----------------------------------------------------------------

    def resolve(self, name: str, ref: str | int) -> int:
        """Turn a version number (``3``) or semver (``1.2.0``) into the MLflow version number."""
        return self.resolve_info(name, ref).version

    def resolve_info(self, name: str, ref: str | int) -> VersionInfo:
        """MLflow's record of the version ``ref`` names, fetched once for callers that need it.

        Raises VersionNotFoundError (ModelNotFoundError for an unknown model).
        """
        check_model_name(name)
        if isinstance(ref, int) or "." not in str(ref):
            # An int from a JSON body is checked like typed text: 2**80 is bad input, not
            # something to hand MLflow (its SQLite store answers 500 to it).
            number = parse_version_number(str(ref))
            return self.gateway.version(name, number)
        wanted = semver.parse(str(ref))
        record = self.ledger.version_by_semver(name, wanted)
        if record is not None and (not wanted.build or record.semver.build == wanted.build):
            return self.gateway.version(name, record.version)
        self.gateway.model(name)
        raise VersionNotFoundError(name, str(ref))

    # -- reads -----------------------------------------------------------------------

    def models(self) -> list[ModelView]:
        """Every registered model with its Production and Staging versions."""
        self.ledger_check.ensure()
        # The projection's holder rows, not a fold over every event of every model.
        holders = self.ledger.holders()
        # Listing every version from MLflow to count them took a request per 1,000
        # versions of every model; the ledger counts what it recorded (sync adopts the rest).
        counts = self.ledger.version_counts()
        views = []
        for info in self.gateway.models():
            state = holders.get(info.name, ModelState())
            production = state.production
            record = self.ledger.version_record(info.name, production) if production else None
            latest = self.ledger.highest_record(info.name)
            views.append(
                ModelView(
                    name=info.name,
                    description=info.description,
                    versions=counts.get(info.name, 0),
                    production=production,
                    production_semver=str(record.semver) if record else None,
                    staging=state.staging,
                    latest_semver=str(latest.semver) if latest else None,
                )
            )
        return views

    def versions(self, name: str) -> list[VersionView]:
        """Every version of a model, oldest first."""
        check_model_name(name)
        self.ledger_check.ensure()
        self.gateway.model(name)
        return self._views(self.gateway.versions(name), with_run=False)

    def versions_page(self, name: str, *, limit: int, offset: int) -> VersionPage:
        """One page of a model's versions, newest first, with run metrics and params.

        Paged by the ledger, as ``models()`` counts: ``total`` is the versions
        modelreg has recorded, and a version registered with a plain MLflow client
        appears once sync adopts it. MLflow is asked only for the page's versions
        (one ranged search) and their runs (one search); a recorded version that
        was deleted from MLflow is left out of its page (``total`` still counts it).
        Listing every version from MLflow to slice 25 took 350 ms at 1,000 versions.

        Raises ModelNotFoundError, or InvalidInputError for a limit outside
        1..MAX_PAGE or a negative offset.
        """
        check_page(limit, offset)
        check_model_name(name)
        self.ledger_check.ensure()
        numbers, total = self.ledger.version_numbers(name, limit=limit, offset=offset)
        if numbers:
            infos = self.gateway.versions_numbered(name, numbers)  # ModelNotFoundError too
        else:
            self.gateway.model(name)
            infos = []
        views = self._views(infos, with_run=True)
        return VersionPage(versions=views, total=total, offset=offset, limit=limit)

    def show(self, name: str, ref: str | int) -> VersionView:
        """One version with its semver, stage, digest, lineage status, params and metrics."""
        return self._views([self.resolve_info(name, ref)], with_run=True)[0]

    def _views(self, infos: Sequence[VersionInfo], *, with_run: bool) -> list[VersionView]:
        self.ledger_check.ensure()
        records, states = self._ledger_rows(infos)
        runs: Mapping[str, RunInfo] = {}
        if with_run and len(infos) > 1:  # one run search, not a runs/get per version
            runs = self.gateway.runs([info.run_id for info in infos])
        elif with_run and infos:
            found = self.gateway.run(infos[0].run_id)
            runs = {found.run_id: found} if found else {}
        views = []
        for info in infos:
            record = records.get((info.name, info.version))
            run = runs.get(info.run_id) if info.run_id else None
            views.append(version_view(info, record, states.get(info.name, {}), run))
        return views

    def _ledger_rows(
        self, infos: Sequence[VersionInfo]
    ) -> tuple[dict[tuple[str, int], VersionRecord], dict[str, dict[int, Stage]]]:
        """The records and projected stages of ``infos``' versions: rows for those versions only.

        ``show`` and a search reading every event of a model made them grow
        with its history; a whole model's listing reads each of its rows once.
        """
        wanted: dict[str, set[int]] = {}
        for info in infos:
            wanted.setdefault(info.name, set()).add(info.version)
        records: dict[tuple[str, int], VersionRecord] = {}
        states: dict[str, dict[int, Stage]] = {}
        for model, versions in wanted.items():
            if len(versions) == 1:  # show: the full record, with its lineage
                record = self.ledger.version_record(model, next(iter(versions)))
                found = [record] if record else []
                states[model] = self.ledger.state(model, versions).stages
            elif len(versions) > _WHOLE_MODEL:
                found = self.ledger.version_records(model)
                states[model] = self.ledger.model_state(model).stages
            else:
                found = self.ledger.version_records_of(model, versions)
                states[model] = self.ledger.state(model, versions).stages
            records.update({(r.model, r.version): r for r in found})
        return records, states

    def search(self, filter_text: str) -> list[VersionView]:
        """Versions matching a filter over tags, params, metrics, stage, semver and more.

        Raises InvalidFilterError for a filter that does not parse.
        """
        query = search.parse(filter_text)
        self.ledger_check.ensure()
        # MLflow's version search answers tag and name clauses itself.
        pushed = query.by_namespace("tags") + [
            c for c in query.by_namespace("") if c.key == "name" and c.op in {"=", "like", "ilike"}
        ]
        mlflow_filter = " and ".join(c.mlflow_text(filter_literal) for c in pushed)
        infos = self._stage_candidates(query) if not query.by_namespace("tags") else None
        if infos is None:
            infos = self.gateway.versions(filter_string=mlflow_filter or None)
        run_clauses = query.by_namespace("params") + query.by_namespace("metrics")
        if run_clauses:
            run_ids = self.gateway.search_run_ids(
                " and ".join(c.mlflow_text(filter_literal) for c in run_clauses)
            )
            infos = [info for info in infos if info.run_id in run_ids]
        builtin = query.by_namespace("")
        # Ledger rows only for the versions MLflow returned, not the whole ledger.
        records, states = self._ledger_rows(infos)
        found = []
        for info in infos:
            record = records.get((info.name, info.version))
            candidate = search.Candidate(
                name=info.name,
                version=info.version,
                stage=states.get(info.name, {}).get(info.version, Stage.NONE),
                semver=record.semver if record else None,
                run_id=info.run_id,
                lineage_complete=bool(record and record.lineage_complete),
            )
            if all(search.matches(clause, candidate) for clause in builtin):
                found.append(version_view(info, record, states.get(info.name, {}), None))
        return found

    def _stage_candidates(self, query: Query) -> list[VersionInfo] | None:
        """For ``stage = S`` filters, the few versions the ledger says are in S.

        Listing every version from MLflow took 4.7 s at 10k versions to find
        the one in Production; the ledger knows it. Returns None (list from
        MLflow instead) when there is no such clause or too many candidates.
        """
        wanted = {
            Stage.parse(c.value) for c in query.by_namespace("") if c.key == "stage" and c.op == "="
        }
        if len(wanted) != 1:
            return None
        (stage,) = wanted
        # The projection's stage index: the rows in that stage, at most one too many.
        found = self.ledger.in_stage(stage, limit=_FEW + 1)
        if len(found) > _FEW:
            return None
        return [self.gateway.version(model, version) for model, version in found]

    def history(self, name: str, at: datetime | None = None) -> HistoryView:
        """The ordered event history and, with ``at``, the state at that moment."""
        check_model_name(name)
        self.ledger_check.ensure()
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        events = self.ledger.events(name, until=at)
        if not events:
            self.gateway.model(name)  # tell "unknown model" from "no history yet"
        state = lifecycle.fold(events)
        production = lifecycle.holder(state, Stage.PRODUCTION)
        record = self.ledger.version_record(name, production) if production else None
        return HistoryView(
            name=name,
            at=at,
            production=production,
            production_semver=str(record.semver) if record else None,
            stages=dict(state),
            events=[EventView.of(e) for e in events],
        )

    def lineage(self, name: str, ref: str | int) -> LineageView:
        """Lineage of a version: what modelreg captured, or what MLflow lets us rebuild."""
        info = self.resolve_info(name, ref)
        number = info.version
        record = self.ledger.version_record(name, number)
        lineage: LineageRecord | None
        if record is not None and record.lineage:
            lineage = record.lineage
        else:
            lineage = self.gateway.run_lineage(info.run_id) if info.run_id else None
            if lineage is None and (run := self.gateway.run(info.run_id)) is not None:
                lineage = adopted_lineage(run, None)
        # modelreg's own capture has git and environment; a rebuilt record lacks the host.
        origin = LineageSource.MODELREG if lineage and lineage.captured_at else LineageSource.MLFLOW
        missing = lineage.missing() if lineage else ["run"]
        return LineageView(
            name=name,
            version=number,
            semver=str(record.semver) if record else None,
            run_id=info.run_id,
            complete=not missing,
            missing=missing,
            record=lineage,
            source=origin,
        )

    # -- overviews across models (paged) ------------------------------------------

    def audit(self, where: EventFilter, *, limit: int, offset: int) -> EventPage:
        """Ledger events matching ``where``, newest first, one page of at most ``limit``.

        Raises InvalidInputError for a limit outside 1..MAX_PAGE, a negative
        offset, or an invalid model name in the filter.
        """
        check_page(limit, offset)
        if where.model is not None:
            check_model_name(where.model)
        self.ledger_check.ensure()
        events, total = self.overview.events(where, limit=limit, offset=offset)
        return EventPage(
            events=[EventView.of(e) for e in events], total=total, offset=offset, limit=limit
        )

    def open_requests(self, model: str | None, *, limit: int, offset: int) -> RequestPage:
        """Open promotion requests (of one model or all), oldest first, one page."""
        check_page(limit, offset)
        if model is not None:
            check_model_name(model)
        self.ledger_check.ensure()
        found, total = self.overview.open_requests(model, limit=limit, offset=offset)
        semvers: dict[tuple[str, int], str] = {}
        for name in {r.model for r in found}:
            wanted = [r.version for r in found if r.model == name]
            records = self.ledger.version_records_of(name, wanted)
            semvers.update({(r.model, r.version): str(r.semver) for r in records})
        views = [
            RequestView(
                name=r.model,
                version=r.version,
                semver=semvers.get((r.model, r.version)),
                stage=r.stage,
                requester=r.requester,
                requested_at=r.requested_at,
                comment=r.comment,
                approvers=list(r.approvers),
            )
            for r in found
        ]
        return RequestPage(requests=views, total=total, offset=offset, limit=limit)

    def model_counts(self) -> dict[str, ModelCounts]:
        """Per model: versions in each stage and open requests (two GROUP BY queries)."""
        self.ledger_check.ensure()
        stages = self.overview.stage_counts()
        requests = self.overview.request_counts()
        return {
            name: ModelCounts(stages=stages.get(name, {}), open_requests=requests.get(name, 0))
            for name in stages.keys() | requests.keys()
        }

    def replica_reports(self, experiment_ids: Sequence[str]) -> list[ReplicaView]:
        """What each serving replica last reported for these experiments, newest first."""
        return [
            ReplicaView.model_validate(r, from_attributes=True)
            for r in self.overview.replica_reports(experiment_ids)
        ]

    def alias_version(self, name: str, alias: str) -> int:
        """The version ``alias`` points at now: one cheap MLflow call, what model servers poll.

        Under a policy, the aliases modelreg manages (``production``, ``staging``)
        are the ledger's: if MLflow's alias was moved behind modelreg's back, the
        ledger's holder is answered (and the bypass logged once), so a server never
        follows a version that did not pass the gates. The ledger is read only
        when MLflow's answer differs from the last one it confirmed.
        """
        check_model_name(name)
        version = self.gateway.alias_version(name, alias)
        managed = alias in {PRODUCTION_ALIAS, STAGING_ALIAS}
        if (
            not managed
            or not self.access.governed()
            or self._confirmed.get((name, alias)) == version
        ):
            return version
        expected = alias_holders(self.ledger.state(name))[alias]
        if expected == version:
            self._confirmed[(name, alias)] = version
            return version
        if self._bypass_logged.get((name, alias)) != version:
            self._bypass_logged[(name, alias)] = version
            log.warning(
                "%s@%s points at v%d in MLflow, but the ledger says %s: following the ledger "
                "(run `modelreg doctor --fix` to put MLflow right)",
                name,
                alias,
                version,
                f"v{expected}" if expected else "no version",
            )
        if expected is None:
            raise VersionNotFoundError(name, f"@{alias}")
        return expected


def check_page(limit: int, offset: int) -> None:
    """Raise InvalidInputError unless 1 <= ``limit`` <= MAX_PAGE and ``offset`` >= 0."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"page size must be 1 to {MAX_PAGE}; got {limit}")
    if offset < 0:
        raise InvalidInputError(f"page offset must be 0 or more; got {offset}")


def version_view(
    info: VersionInfo,
    record: VersionRecord | None,
    state: Mapping[int, Stage],
    run: RunInfo | None,
) -> VersionView:
    """One version as MLflow (``info``, ``run``) and the ledger (``record``, ``state``) see it."""
    return VersionView(
        name=info.name,
        version=info.version,
        semver=str(record.semver) if record else None,
        stage=state.get(info.version, Stage.NONE),
        aliases=sorted(info.aliases),
        digest=record.digest if record else None,
        run_id=info.run_id,
        source=info.source,
        description=info.description,
        tags=info.tags,
        lineage_complete=record.lineage_complete if record else None,
        lineage_missing=list(record.lineage_missing) if record else [],
        registered_at=record.registered_at if record else None,
        registered_by=record.registered_by if record else None,
        adopted=record is not None,
        metrics=run.metrics if run else {},
        params=run.params if run else {},
        lineage=_lineage_of(record, run),
    )


def _lineage_of(record: VersionRecord | None, run: RunInfo | None) -> LineageRecord | None:
    """The recorded lineage (full records only), or what MLflow shows for one not adopted."""
    if record is not None:
        return record.lineage
    return adopted_lineage(run, None) if run is not None else None
