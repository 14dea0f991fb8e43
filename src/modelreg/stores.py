"""The production stores behind ``modelreg up --postgres URL --s3 ENDPOINT``.

A production-like local stack keeps everything in two external services:

- **one PostgreSQL database** holds both MLflow's backend store (its tables in
  the ``public`` schema, as MLflow creates them) and the modelreg ledger (in a
  schema of its own, ``modelreg``, reached through ``search_path``). The two
  must not share a schema: both have an ``experiments`` and an
  ``alembic_version`` table. One database means one ``pg_dump`` backs up the
  registry consistently (docs/operations.md);
- **one S3 bucket** (``s3://mlflow/artifacts`` unless told otherwise) holds
  the artifacts; the MLflow server proxies every upload and download
  (``--serve-artifacts``), so only the server needs the bucket's credentials,
  which boto3 reads from the usual ``AWS_*`` variables or files.

:func:`production_stores` checks the input and turns it into the URIs the
stack passes on; :meth:`ProductionStores.prepare` creates what is missing
(the ledger's schema, the bucket) and fails with a clear message, before
anything starts, when a store cannot be reached or used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from modelreg.errors import BackendError, InvalidInputError

#: The PostgreSQL schema the ledger lives in, beside MLflow's tables in ``public``.
LEDGER_SCHEMA = "modelreg"
#: Where artifacts go when ``--s3`` names an endpoint and nothing names a bucket.
DEFAULT_ARTIFACTS = "s3://mlflow/artifacts"
_CONNECT_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class ProductionStores:
    """The URIs a stack on external stores uses; ``None`` keeps the embedded default.

    ``backend_store_uri`` and ``ledger_uri`` are SQLAlchemy URLs of the same
    PostgreSQL database (the ledger's with ``search_path`` set to
    :data:`LEDGER_SCHEMA`); ``artifacts_destination`` is ``s3://bucket/prefix``
    and ``s3_endpoint_url`` the S3 API's base URL.
    """

    backend_store_uri: str | None = None
    ledger_uri: str | None = None
    artifacts_destination: str | None = None
    s3_endpoint_url: str | None = None
    #: Whether ``ledger_uri`` is the one ``--postgres`` derived (schema :data:`LEDGER_SCHEMA`);
    #: a ledger URI the user gave is used as it is.
    ledger_in_schema: bool = False

    def prepare(self) -> None:
        """Create the ledger's schema and the bucket if missing.

        Raises :class:`BackendError` naming the store when it cannot
        be reached, and :class:`InvalidInputError` when it refuses (wrong
        password, no right to create the schema or the bucket).
        """
        if self.ledger_in_schema and self.ledger_uri is not None:
            _create_schema(self.ledger_uri)
        if self.s3_endpoint_url is not None and self.artifacts_destination is not None:
            _create_bucket(self.s3_endpoint_url, _bucket(self.artifacts_destination))


def production_stores(
    *,
    postgres: str | None,
    s3: str | None,
    backend_store_uri: str | None,
    artifacts_destination: str | None,
    ledger_uri: str | None,
) -> ProductionStores:
    """Combine ``--postgres``/``--s3`` with the explicit URIs into one set of stores.

    ``postgres`` is a PostgreSQL URL naming a database
    (``postgresql://user:password@host:5432/registry``); it cannot be combined
    with ``backend_store_uri`` (which one would MLflow use?). An explicit
    ``ledger_uri`` still wins for the ledger. ``s3`` is the S3 API's base URL
    (``http://127.0.0.1:8333``); ``artifacts_destination``, if given with it,
    must be an ``s3://`` URI and names the bucket, else
    :data:`DEFAULT_ARTIFACTS`. Raises :class:`InvalidInputError` for anything
    else, before any store is touched.
    """
    stores = ProductionStores(
        backend_store_uri=backend_store_uri,
        ledger_uri=ledger_uri,
        artifacts_destination=artifacts_destination,
    )
    if postgres is not None:
        if backend_store_uri is not None:
            raise InvalidInputError(
                "--postgres and --backend-store-uri both name MLflow's backend store; give one"
            )
        url = _postgres_url(postgres)
        stores = ProductionStores(
            backend_store_uri=url.render_as_string(hide_password=False),
            ledger_uri=ledger_uri or _ledger_url(url),
            artifacts_destination=artifacts_destination,
            ledger_in_schema=ledger_uri is None,
        )
    if s3 is not None:
        endpoint = urlsplit(s3)
        if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
            raise InvalidInputError(
                f"--s3 wants the S3 API's URL, such as http://127.0.0.1:8333; got {s3!r}"
            )
        destination = artifacts_destination or DEFAULT_ARTIFACTS
        _bucket(destination)
        stores = ProductionStores(
            backend_store_uri=stores.backend_store_uri,
            ledger_uri=stores.ledger_uri,
            artifacts_destination=destination,
            s3_endpoint_url=s3.rstrip("/"),
            ledger_in_schema=stores.ledger_in_schema,
        )
    return stores


def _postgres_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise InvalidInputError(f"--postgres is not a database URL: {exc}") from None
    if url.get_backend_name() != "postgresql":
        raise InvalidInputError(
            f"--postgres wants a postgresql:// URL; got one for {url.get_backend_name()!r}"
        )
    if not url.database:
        raise InvalidInputError(
            "--postgres must name a database, e.g. postgresql://user:password@host:5432/registry "
            "(MLflow's tables go in its public schema, the ledger in schema "
            f"{LEDGER_SCHEMA!r})"
        )
    # SQLAlchemy 2.1 resolves postgresql:// to psycopg (v3); say so for older readers.
    return url.set(drivername="postgresql+psycopg")


def _ledger_url(url: URL) -> str:
    """The same database with the ledger's schema first on the search path."""
    options = url.query.get("options", "")
    extra = options if isinstance(options, str) else " ".join(options)
    search_path = f"-c search_path={LEDGER_SCHEMA}"
    ledger = url.update_query_dict({"options": f"{extra} {search_path}".strip()})
    return ledger.render_as_string(hide_password=False)


def _bucket(destination: str) -> str:
    parts = urlsplit(destination)
    if parts.scheme != "s3" or not parts.netloc:
        raise InvalidInputError(
            f"with --s3 the artifacts destination must be s3://bucket[/prefix]; got {destination!r}"
        )
    return parts.netloc


def _create_schema(ledger_uri: str) -> None:
    url = make_url(ledger_uri)
    safe = url.render_as_string(hide_password=True)
    engine = create_engine(url, connect_args={"connect_timeout": _CONNECT_TIMEOUT_SECONDS})
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{LEDGER_SCHEMA}"'))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        if "permission denied" in reason or "authentication failed" in reason:
            raise InvalidInputError(f"PostgreSQL at {safe} refused: {reason}") from None
        raise BackendError(f"PostgreSQL at {safe} is not reachable: {reason}") from None
    finally:
        engine.dispose()


def _create_bucket(endpoint: str, bucket: str) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    client: Any = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2},
            connect_timeout=_CONNECT_TIMEOUT_SECONDS,
        ),
    )
    try:
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise InvalidInputError(
            f"S3 at {endpoint} refused bucket {bucket!r}: {error.get('Code')} "
            f"{error.get('Message', '')}".strip()
            + " (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        ) from None
    except NoCredentialsError:
        raise InvalidInputError(
            f"no credentials for S3 at {endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except BotoCoreError as exc:
        raise BackendError(f"S3 at {endpoint} is not reachable: {exc}") from None
