"""The ledger: append-only events and registration facts, with per-model write locks."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from modelreg.domain import Event, LineageRecord, NewEvent, SemVer, Stage
from modelreg.errors import BackendError, BackendUnavailableError, InvalidInputError
from modelreg.integrity import Manifest
from modelreg.ledger import outbox, state
from modelreg.ledger.rows import event_of, utc
from modelreg.ledger.tables import EventRow, VersionRow
from modelreg.lifecycle import ModelState
from modelreg.lineage import record_from_json, record_to_json
from modelreg.semver import VersionFacts

_MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions (a unit test checks it against
# Alembic's head). A database already there skips importing Alembic, 0.2 s of
# every CLI command; any other revision takes Alembic's full path.
HEAD_REVISION = "0007"
_PROJECTION_REVISION = "0004"  # the migration that added version_state
# Many writers (50 concurrent promotions) queue on SQLite's single write lock
# while each holds it across a few MLflow calls; wait rather than fail.
_SQLITE_BUSY_SECONDS = 300


@dataclass(frozen=True)
class VersionRecord:
    """Registration facts of one model version, fixed when it was registered, decoded.

    Summary reads (listings) leave out the heavy parts: ``manifest``, ``facts``
    and ``lineage`` are None there; :meth:`Ledger.version_record` has them all.
    ``lineage`` is also None for a version whose lineage was never recorded.
    """

    model: str
    version: int
    semver: SemVer
    digest: str  # "sha256:<hex>" of the manifest
    manifest: Manifest | None
    run_id: str
    source: str
    lineage_complete: bool
    lineage_missing: tuple[str, ...]
    facts: VersionFacts | None
    lineage: LineageRecord | None
    registered_at: datetime
    registered_by: str


def _record(row: Any) -> VersionRecord:
    """A VersionRecord from a row; summary rows carry no manifest, facts or lineage."""
    manifest = getattr(row, "manifest", "")
    facts = getattr(row, "facts", None)
    lineage = getattr(row, "lineage", "")
    return VersionRecord(
        model=row.model,
        version=row.version,
        # The indexed columns hold the core; the text keeps build metadata.
        semver=SemVer(row.major, row.minor, row.patch, row.semver.partition("+")[2]),
        digest=row.digest,
        manifest=Manifest.from_json(manifest) if manifest else None,
        run_id=row.run_id,
        source=row.source,
        lineage_complete=row.lineage_complete,
        lineage_missing=tuple(m for m in row.lineage_missing.split(",") if m),
        facts=VersionFacts.from_json(facts) if facts is not None else None,
        lineage=record_from_json(lineage) if lineage else None,
        registered_at=utc(row.registered_at),
        registered_by=row.registered_by,
    )


class LedgerTransaction:
    """Reads and appends inside one serialised write transaction for a model."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def session(self) -> Session:
        """The transaction's session, for stores writing their own tables in it (experiments)."""
        return self._session

    def events(self, model: str, *, version: int | None = None) -> list[Event]:
        """Events of ``model`` (or of one version) in append order, as seen inside the lock."""
        return _select_events(self._session, model, version=version)

    def version_records(self, model: str) -> list[VersionRecord]:
        """Registration summaries (no manifest, facts or lineage) of every version."""
        return _select_records(self._session, model)

    def version_record(self, model: str, version: int) -> VersionRecord | None:
        """Full registration facts of one version, as seen inside the lock."""
        return _select_record(self._session, model, version)

    def state(self, model: str, versions: Collection[int] = ()) -> ModelState:
        """The projected state of ``versions`` and of the stage holders, inside the lock."""
        return state.select_state(self._session, model, versions)

    def model_state(self, model: str) -> ModelState:
        """The projected state of every version of ``model``, inside the lock."""
        return state.select_model_state(self._session, model)

    def highest_record(self, model: str) -> VersionRecord | None:
        """Full registration facts of the version with the highest semver."""
        return _select_highest(self._session, model)

    def append(self, new: NewEvent) -> Event:
        """Append one event and its outbox row; both become visible at commit."""
        row = EventRow(
            model=new.model,
            version=new.version,
            action=new.action.value,
            actor=new.actor,
            at=datetime.now(UTC),
            from_stage=new.from_stage.value if new.from_stage else None,
            to_stage=new.to_stage.value if new.to_stage else None,
            reason=new.reason,
            semver=new.semver,
            digest=new.digest,
            details=new.details,
        )
        self._session.add(row)
        self._session.flush()
        appended = event_of(row)
        # The state projection and subscribers see the event exactly when it commits.
        state.apply(self._session, appended)
        outbox.queue(self._session, appended)
        return appended

    def rebuild_state(self, model: str) -> int:
        """Re-derive ``model``'s projected state from its events; returns the rows written."""
        return state.rebuild(self._session, model)

    def add_version(self, record: VersionRecord) -> None:
        """Record the registration facts of a new version (all parts must be given)."""
        if record.manifest is None or record.facts is None:
            raise InvalidInputError(
                f"{record.model} v{record.version}: a new version needs its manifest and facts"
            )
        value = record.semver
        self._session.add(
            VersionRow(
                model=record.model,
                version=record.version,
                semver=str(value),
                major=value.major,
                minor=value.minor,
                patch=value.patch,
                digest=record.digest,
                manifest=record.manifest.to_json(),
                run_id=record.run_id,
                source=record.source,
                lineage_complete=record.lineage_complete,
                lineage_missing=",".join(record.lineage_missing),
                facts=record.facts.to_json(),
                lineage=record_to_json(record.lineage) if record.lineage else "",
                registered_at=record.registered_at,
                registered_by=record.registered_by,
            )
        )
        self._session.flush()


def _select_events(
    session: Session, model: str | None, until: datetime | None = None, version: int | None = None
) -> list[Event]:
    # Core rows, not ORM objects: folds read every event of a model, and building
    # ORM instances was most of the cost at 10k versions.
    query = select(*EventRow.__table__.columns).order_by(EventRow.id)
    if model is not None:
        query = query.where(EventRow.model == model)
    if version is not None:
        query = query.where(EventRow.version == version)
    if until is not None:
        query = query.where(EventRow.at <= until)
    return [event_of(row) for row in session.execute(query)]


_HEAVY = {"manifest", "lineage", "facts"}
_IN_CHUNK = 500  # versions per IN (...) list: well under SQLite's bound-parameter limit
_SUMMARY = [c for c in VersionRow.__table__.columns if c.name not in _HEAVY]


def _select_records(session: Session, model: str | None) -> list[VersionRecord]:
    # Lists need semvers and digests; decoding every version's JSON facts and
    # manifest was 90% of a 10k-version listing, so summaries leave them out.
    query = select(*_SUMMARY).order_by(VersionRow.model, VersionRow.version)
    if model is not None:
        query = query.where(VersionRow.model == model)
    return [_record(row) for row in session.execute(query)]


def _select_record(session: Session, model: str, version: int) -> VersionRecord | None:
    query = select(*VersionRow.__table__.columns).where(
        VersionRow.model == model, VersionRow.version == version
    )
    row = session.execute(query).first()
    return _record(row) if row else None


def _select_highest(session: Session, model: str) -> VersionRecord | None:
    query = (
        select(*VersionRow.__table__.columns)
        .where(VersionRow.model == model)
        .order_by(VersionRow.major.desc(), VersionRow.minor.desc(), VersionRow.patch.desc())
        .limit(1)
    )
    row = session.execute(query).first()
    return _record(row) if row else None


def _lock_key(model: str) -> int:
    # pg_advisory_xact_lock takes a signed 64-bit key; derive a stable one per model.
    return int.from_bytes(hashlib.sha256(model.encode()).digest()[:8], "big", signed=True)


def _sqlite_transactions(engine: Engine, *, immediate: bool) -> None:
    # pysqlite opens transactions lazily and as DEFERRED, so two writers can both
    # read, then deadlock on upgrade. BEGIN IMMEDIATE takes the write lock up
    # front, which is exactly the per-model serialisation we need on SQLite;
    # readers use plain BEGIN so they never queue behind a promotion (WAL).
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_SECONDS * 1000}")
        dbapi_connection.execute("PRAGMA journal_mode = WAL")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Ledger:
    """The governance ledger on PostgreSQL or SQLite."""

    def __init__(self, uri: str) -> None:
        try:
            url = make_url(uri)
        except ArgumentError as exc:
            raise InvalidInputError(f"invalid ledger URI {uri!r}: {exc}") from exc
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        self.uri = uri
        self._is_sqlite = url.get_backend_name() == "sqlite"
        if self._is_sqlite and url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"future": True}
        if self._is_sqlite:
            kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_SECONDS, "check_same_thread": False}
        else:
            kwargs.update(pool_size=10, max_overflow=60, pool_pre_ping=True)
        self.engine = create_engine(url, **kwargs)
        self._read_engine = self.engine
        if self._is_sqlite:
            self._read_engine = create_engine(url, **kwargs)
            _sqlite_transactions(self.engine, immediate=True)
            _sqlite_transactions(self._read_engine, immediate=False)
        self._migrated = threading.Event()

    def _connect_errors(self, exc: SQLAlchemyError) -> BackendError:
        if isinstance(exc, OperationalError):
            return BackendUnavailableError("ledger database", self._safe_uri(), str(exc.orig))
        return BackendError(f"ledger database error: {exc}")

    def _safe_uri(self) -> str:
        return make_url(self.uri).render_as_string(hide_password=True)

    def _at_head(self) -> bool:
        """Whether the schema is at :data:`HEAD_REVISION`: one query, no Alembic."""
        try:
            with self._read_engine.connect() as conn:
                found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
                return list(found) == [HEAD_REVISION]
        except SQLAlchemyError:
            return False  # no schema yet, or no database: migrate() tells which

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent, safe to race)."""
        if self._migrated.is_set():
            return
        if self._at_head():
            self._migrated.set()
            return
        from alembic import command
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        head = ScriptDirectory.from_config(config).get_current_head()
        try:
            with self.engine.begin() as conn:
                if not self._is_sqlite:
                    # Two processes starting at once must not both create tables.
                    conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
                before = MigrationContext.configure(conn).get_current_revision()
                if before != head:
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                if before is not None and before < _PROJECTION_REVISION:
                    # Events written before the projection existed get their rows now,
                    # in the upgrade's transaction, folded by the code that reads them.
                    with Session(bind=conn) as session:
                        state.rebuild(session)
                        session.flush()
        except SQLAlchemyError as exc:
            raise self._connect_errors(exc) from exc
        self._migrated.set()

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A migrated ORM session in one transaction (committed on normal exit).

        Writers use the write engine (on SQLite: ``BEGIN IMMEDIATE``); reads
        never queue behind a promotion. Database errors leave as BackendError.
        """
        self.migrate()
        engine = self.engine if write else self._read_engine
        try:
            with Session(engine, expire_on_commit=False) as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise self._connect_errors(exc) from exc

    @contextmanager
    def locked(self, model: str) -> Iterator[LedgerTransaction]:
        """Hold the per-model write lock for the duration of the block.

        Everything appended commits together when the block exits normally and
        nothing does if it raises, so a refused change leaves no trace.
        """
        with self.session(write=True) as session:
            if not self._is_sqlite:
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(model)})
            yield LedgerTransaction(session)

    def events(
        self, model: str | None = None, *, until: datetime | None = None, version: int | None = None
    ) -> list[Event]:
        """Events of one model (or all; or one version) in append order, optionally up to a time."""
        with self.session() as session:
            return _select_events(session, model, until, version)

    def state(self, model: str, versions: Collection[int] = ()) -> ModelState:
        """The projected state of ``versions`` and of the stage holders (a few rows)."""
        with self.session() as session:
            return state.select_state(session, model, versions)

    def model_state(self, model: str) -> ModelState:
        """The projected state of every version of ``model``."""
        with self.session() as session:
            return state.select_model_state(session, model)

    def holders(self) -> dict[str, ModelState]:
        """Per model, the projected state of its Production and Staging versions."""
        with self.session() as session:
            return state.select_holders(session)

    def in_stage(self, stage: Stage, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` (model, version) pairs in ``stage`` across every model."""
        with self.session() as session:
            return state.select_in_stage(session, stage, limit)

    def state_disagreements(self, model: str) -> list[int]:
        """Versions whose projected state differs from the fold over their events."""
        with self.session() as session:
            return state.disagreements(session, model)

    def rebuild_state(self, model: str) -> int:
        """Re-derive ``model``'s projected state from its events (under its lock)."""
        with self.locked(model) as txn:
            return txn.rebuild_state(model)

    def version_records(self, model: str | None = None) -> list[VersionRecord]:
        """Registration summaries (no manifest, facts or lineage) of a model's versions, or all."""
        with self.session() as session:
            return _select_records(session, model)

    def version_record(self, model: str, version: int) -> VersionRecord | None:
        """Full registration facts of one version, or None if it was never recorded."""
        with self.session() as session:
            return _select_record(session, model, version)

    def version_records_of(self, model: str, versions: Collection[int]) -> list[VersionRecord]:
        """Registration summaries of the given versions of ``model`` (an indexed IN query)."""
        wanted = sorted(set(versions))
        found: list[VersionRecord] = []
        with self.session() as session:
            for start in range(0, len(wanted), _IN_CHUNK):
                query = select(*_SUMMARY).where(
                    VersionRow.model == model,
                    VersionRow.version.in_(wanted[start : start + _IN_CHUNK]),
                )
                found += [_record(row) for row in session.execute(query)]
        return found

    def version_numbers(self, model: str, *, limit: int, offset: int) -> tuple[list[int], int]:
        """One page of ``model``'s recorded version numbers, highest first, and how many there are.

        Both queries walk the (model, version) primary key; nothing is decoded.
        """
        page = (
            select(VersionRow.version)
            .where(VersionRow.model == model)
            .order_by(VersionRow.version.desc())
            .limit(limit)
            .offset(offset)
        )
        count = select(func.count()).select_from(VersionRow).where(VersionRow.model == model)
        with self.session() as session:
            numbers = [int(version) for version in session.execute(page).scalars()]
            return numbers, int(session.execute(count).scalar_one())

    def highest_record(self, model: str) -> VersionRecord | None:
        """Full registration facts of the version of ``model`` with the highest semver."""
        with self.session() as session:
            return _select_highest(session, model)

    def version_by_semver(self, model: str, value: SemVer) -> VersionRecord | None:
        """The version of ``model`` whose semver core equals ``value``'s (indexed lookup)."""
        query = select(*_SUMMARY).where(
            VersionRow.model == model,
            VersionRow.major == value.major,
            VersionRow.minor == value.minor,
            VersionRow.patch == value.patch,
        )
        with self.session() as session:
            row = session.execute(query).first()
            return _record(row) if row else None

    def version_counts(self) -> dict[str, int]:
        """How many versions of each model the ledger has recorded (one GROUP BY)."""
        query = select(VersionRow.model, func.count()).group_by(VersionRow.model)
        with self.session() as session:
            return {str(model): int(count) for model, count in session.execute(query)}

    def known_versions(self) -> set[tuple[str, int]]:
        """Every (model, version) pair the ledger has registration facts for."""
        with self.session() as session:
            rows = session.execute(select(VersionRow.model, VersionRow.version))
            return {(model, version) for model, version in rows}

    def is_empty(self) -> bool:
        """Whether no version has been recorded yet; a SQLite file that is absent stays so."""
        database = make_url(self.uri).database
        if self._is_sqlite and database and not Path(database).exists():
            return True
        with self.session() as session:
            return session.execute(select(VersionRow.version).limit(1)).first() is None

    def ping(self) -> None:
        """Run ``SELECT 1`` on the database; raises BackendUnavailableError when it is down.

        ``migrate`` answers from memory once it has succeeded, so it cannot tell
        a health check that PostgreSQL went away.
        """
        try:
            with self._read_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise self._connect_errors(exc) from exc

    def location(self) -> str:
        """Where the ledger lives, without credentials (for messages and MLflow tags)."""
        return self._safe_uri()

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()
        self._read_engine.dispose()
