"""Registered models, versions, aliases and tags in MLflow's model registry.

Reads and the hot-path writes (aliases, version tags, native stages,
descriptions, deleting a version) go over the REST API when the server speaks
HTTP; creating models and versions, and every call on other stores (sqlite:///,
file:), go through ``MlflowClient``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from modelreg.domain import Stage
from modelreg.errors import (
    BackendError,
    BackendUnavailableError,
    InvalidInputError,
    ModelregError,
    VersionNotFoundError,
)
from modelreg.mlflow_gateway.connection import Connection
from modelreg.mlflow_gateway.rest import MlflowRest, pairs


def filter_literal(value: str) -> str | None:
    r"""``value`` as a string literal MLflow's filter parser reads back exactly, or None.

    MLflow strips the outer quotes and never unescapes (``_strip_quotes`` in
    MLflow 3.17 ``utils/search_utils.py``), so ``\'`` or ``''`` would reach the
    database as typed. A value is put in single quotes, else double quotes;
    each candidate is checked by parsing it with MLflow's own parser followed by
    another clause (a trailing backslash would swallow the closing quote). None
    means no literal can express the value (it holds both quote kinds).
    """
    if "'" not in value and "\\" not in value:
        return f"'{value}'"  # nothing to misread: no need to import MLflow's parser
    from mlflow.exceptions import MlflowException
    from mlflow.utils.search_utils import SearchModelVersionUtils

    for quote in ("'", '"'):
        if quote in value:
            continue
        literal = f"{quote}{value}{quote}"
        try:
            parsed = SearchModelVersionUtils.parse_search_filter(  # type: ignore[no-untyped-call]
                f"tags.k = {literal} and tags.k = 'end'"
            )
        except MlflowException:
            continue
        if len(parsed) == 2 and parsed[0].get("value") == value:
            return literal
    return None


PRODUCTION_ALIAS = "production"
STAGING_ALIAS = "staging"
_PAGE = 1000


@dataclass(frozen=True)
class VersionInfo:
    """What MLflow knows about one model version."""

    name: str
    version: int
    run_id: str
    source: str
    status: str
    native_stage: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    description: str
    created_ms: int
    user_id: str


@dataclass(frozen=True)
class ModelInfo:
    """What MLflow knows about one registered model."""

    name: str
    description: str
    aliases: dict[str, int]
    tags: dict[str, str]
    created_ms: int
    updated_ms: int


def _version(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=mv.name,
        version=int(mv.version),
        run_id=mv.run_id or "",
        source=mv.source or "",
        status=mv.status or "",
        native_stage=mv.current_stage or "None",
        aliases=tuple(mv.aliases or ()),
        tags=dict(mv.tags or {}),
        description=mv.description or "",
        created_ms=int(mv.creation_timestamp or 0),
        user_id=mv.user_id or "",
    )


class RegistryCalls(Connection):
    """Models, versions, aliases and tags (a part of :class:`MlflowGateway`)."""

    def current_user(self, username: str, password: str) -> tuple[str, bool] | None:
        """``(user, is_admin)`` when MLflow's basic-auth app accepts the credentials, else None.

        ``users/current`` answers any authenticated user with its name and admin
        flag (MLflow 3.17 ``server/auth/__init__.py`` ``get_current_user``); wrong
        credentials get 401, and MLflow never reveals which half was wrong.
        """
        import requests

        url = self.tracking_uri.rstrip("/") + "/api/2.0/mlflow/users/current"
        try:
            response = requests.get(url, auth=(username, password), timeout=10)
        except requests.exceptions.RequestException as exc:
            raise BackendUnavailableError("MLflow", self.tracking_uri, type(exc).__name__) from exc
        if response.status_code == 404:
            raise BackendError(
                f"MLflow at {self.tracking_uri} does not run the basic-auth app; start it with "
                "`--app-name basic-auth` or set MODELREG_AUTH=none"
            )
        if response.status_code == 401:
            return None
        if response.status_code != 200:
            # Fail closed: an auth database outage must never pass for a good password.
            raise BackendError(
                f"MLflow at {self.tracking_uri} could not check credentials "
                f"(HTTP {response.status_code}); try again later"
            )
        try:
            user = response.json()["user"]
            return str(user["username"]), bool(user.get("is_admin", False))
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(
                f"MLflow at {self.tracking_uri} answered users/current without a user"
            ) from exc

    def may_write_model(self, name: str, username: str) -> bool:
        """Whether ``username`` can create versions of ``name`` in MLflow itself.

        Asks MLflow's basic-auth app as modelreg's service account (an admin):
        MLflow admins can write anything; others need EDIT or MANAGE on the
        registered model, resolved the way MLflow's own check resolves them
        (roles, defaults; MLflow 3.17 ``users/permissions/get``). When MLflow
        cannot say, the answer is yes: separation of duties fails closed.
        """
        rest = self._rest or MlflowRest(self.tracking_uri)
        try:
            user = rest.get("users/get", {"username": username}).get("user", {})
            if user.get("is_admin"):
                return True
            found = rest.get(
                "users/permissions/get",
                {"username": username, "resource_type": "registered_model", "resource_id": name},
                api="3.0",
            )
        except ModelregError:
            return True
        return str(found.get("permission", "")).upper() in {"EDIT", "MANAGE"}

    def ping(self) -> None:
        """Raise BackendUnavailableError unless the server answers."""
        self._models_page(None, limit=1)

    # Reads: over the REST API when the server speaks HTTP (no mlflow import), else
    # through the client. Both give objects with the attributes MLflow's entities have.

    def _models_page(self, token: str | None, limit: int = _PAGE) -> tuple[list[Any], str | None]:
        if self._rest is None:
            page = self._call(
                lambda: self.client.search_registered_models(max_results=limit, page_token=token)
            )
            return list(page), page.token or None
        body = self._rest.get(
            "registered-models/search", {"max_results": limit, "page_token": token}
        )
        found = [_model_entity(m) for m in body.get("registered_models", [])]
        return found, body.get("next_page_token") or None

    def _versions_page(
        self,
        text: str | None,
        token: str | None,
        name: str | None,
        order_by: list[str] | None = None,
    ) -> tuple[list[Any], str | None]:
        if self._rest is None:
            page = self._call(
                lambda: self.client.search_model_versions(
                    filter_string=text, max_results=_PAGE, order_by=order_by, page_token=token
                ),
                name,
            )
            return list(page), page.token or None
        body = self._rest.get(
            "model-versions/search",
            {"filter": text, "max_results": _PAGE, "order_by": order_by, "page_token": token},
            name=name,
        )
        found = [_version_entity(v) for v in body.get("model_versions", [])]
        return found, body.get("next_page_token") or None

    def models(self) -> list[ModelInfo]:
        """Every registered model."""
        found: list[ModelInfo] = []
        token: str | None = None
        while True:
            page, token = self._models_page(token)
            found.extend(self._model(rm) for rm in page)
            if not token:
                return found

    def model(self, name: str) -> ModelInfo:
        """One registered model; ModelNotFoundError if absent."""
        if self._rest is None:
            return self._model(self._call(lambda: self.client.get_registered_model(name), name))
        body = self._rest.get("registered-models/get", {"name": name}, name=name)
        return self._model(_model_entity(body.get("registered_model", {})))

    @staticmethod
    def _model(rm: Any) -> ModelInfo:
        return ModelInfo(
            name=rm.name,
            description=rm.description or "",
            aliases={alias: int(v) for alias, v in (rm.aliases or {}).items()},
            tags=dict(rm.tags or {}),
            created_ms=int(rm.creation_timestamp or 0),
            updated_ms=int(rm.last_updated_timestamp or 0),
        )

    def versions(
        self, name: str | None = None, filter_string: str | None = None
    ) -> list[VersionInfo]:
        """Versions of ``name`` (or of every model), optionally narrowed by an MLflow filter.

        A name no MLflow literal can express is matched here instead of by MLflow.
        """
        found = self._search_versions(name, filter_string)
        models = [self.model(name)] if name is not None else self.models()
        return sorted(_with_aliases(found, models), key=lambda v: (v.name, v.version))

    def versions_numbered(self, name: str, numbers: Collection[int]) -> list[VersionInfo]:
        """The versions of ``name`` numbered ``numbers`` that MLflow has, highest first.

        For a page of versions whose numbers the caller already knows (the
        ledger's): one ``model-versions/search`` for the range between the lowest
        and highest number, which MLflow's SQL store answers from its
        (name, version) key, and one ``registered-models/get`` for the aliases,
        instead of listing every version. Numbers MLflow does not have (deleted
        there) are left out; versions inside the range that were not asked for
        are dropped. ModelNotFoundError when the model is gone.
        """
        wanted = set(numbers)
        if not wanted:
            return []
        ranged = f"version_number >= {min(wanted)} and version_number <= {max(wanted)}"
        found = [
            v
            for v in self._search_versions(name, ranged, order_by=["version_number DESC"])
            if v.version in wanted
        ]
        return _with_aliases(found, [self.model(name)])

    def _search_versions(
        self, name: str | None, filter_string: str | None, order_by: list[str] | None = None
    ) -> list[VersionInfo]:
        """Every page of a version search, without aliases (MLflow's search leaves them out)."""
        literal = filter_literal(name) if name is not None else None
        clauses = [f"name = {literal}"] if literal is not None else []
        if filter_string:
            clauses.append(filter_string)
        text = " and ".join(clauses) or None
        found: list[VersionInfo] = []
        token: str | None = None
        while True:
            page, token = self._versions_page(text, token, name, order_by)
            found.extend(_version(mv) for mv in page if name is None or mv.name == name)
            if not token:
                return found

    def any_version_tagged(self, key: str) -> VersionInfo | None:
        """The most recently updated version (of any model) tagged ``key``, or None: one call."""
        text = f"tags.`{key}` LIKE '%'"
        order = ["last_updated_timestamp DESC"]
        if self._rest is None:
            page = self._call(
                lambda: self.client.search_model_versions(
                    filter_string=text, max_results=1, order_by=order
                )
            )
            return _version(page[0]) if page else None
        body = self._rest.get(
            "model-versions/search", {"filter": text, "max_results": 1, "order_by": order}
        )
        found = body.get("model_versions", [])
        return _version(_version_entity(found[0])) if found else None

    def version(self, name: str, version: int) -> VersionInfo:
        """One model version; VersionNotFoundError / ModelNotFoundError if absent."""
        try:
            if self._rest is None:
                mv = self._call(
                    lambda: self.client.get_model_version(name, str(version)), name, version
                )
            else:
                body = self._rest.get(
                    "model-versions/get",
                    {"name": name, "version": str(version)},
                    name=name,
                    version=version,
                )
                mv = _version_entity(body.get("model_version", {}))
        except VersionNotFoundError:
            # Only now ask which is missing: get_registered_model loads every
            # version server-side, which grows with the model's history.
            self.model(name)
            raise
        return _version(mv)

    def create_version(
        self, name: str, source: str, run_id: str | None
    ) -> tuple[VersionInfo, bool]:
        """Register a new version of ``name``; also whether the model was created for it.

        A model created here is deleted again when MLflow refuses the version, so a
        refused registration leaves nothing behind.
        """
        from mlflow.exceptions import MlflowException

        created = False
        with self._errors(name, write=True):
            try:
                self.client.create_registered_model(name)
                created = True
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            # MLflow 3 logged models (models:/m-<id>) must name their model_id.
            model_id = source[len("models:/") :] if source.startswith("models:/m-") else None
            try:
                mv = self.client.create_model_version(
                    name, source, run_id=run_id, model_id=model_id
                )
            except BaseException:
                if created:
                    with contextlib.suppress(MlflowException):
                        self.client.delete_registered_model(name)
                raise
        return _version(mv), created

    def delete_model(self, name: str) -> None:
        """Delete a registered model (undo of a registration that created it)."""
        self._call(lambda: self.client.delete_registered_model(name), name, write=True)

    # Writes. MlflowClient (3.17) first sends GET registered-models/get for each of
    # these (``_raise_if_prompt``), which loads every version of the model server-side;
    # the REST calls below are the same endpoints and payloads MLflow's RestStore
    # sends (3.17 ``store/model_registry/rest_store.py``, paths from the
    # ModelRegistryService protos), without that read.

    def delete_version(self, name: str, version: int) -> None:
        """Delete a version (used to undo a registration that failed half-way).

        Raises VersionNotFoundError / ModelNotFoundError when it is not there.
        """
        if self._rest is None:
            self._call(
                lambda: self.client.delete_model_version(name, str(version)),
                name,
                version,
                write=True,
            )
            return
        self._rest.write(
            "DELETE",
            "model-versions/delete",
            {"name": name, "version": str(version)},
            name=name,
            version=version,
        )

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``; VersionNotFoundError when the version is gone."""
        if self._rest is None:
            self._call(
                lambda: self.client.set_registered_model_alias(name, alias, str(version)),
                name,
                version,
                write=True,
            )
            return
        self._rest.write(
            "POST",
            "registered-models/alias",
            {"name": name, "alias": alias, "version": str(version)},
            name=name,
            version=version,
        )

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` if it exists (MLflow 3.17 answers an unset one with success)."""
        if self._rest is None:
            from mlflow.exceptions import MlflowException

            with self._errors(name, write=True):
                try:
                    self.client.delete_registered_model_alias(name, alias)
                except MlflowException as exc:
                    if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                        raise
            return
        # RESOURCE_DOES_NOT_EXIST (no such alias or model) reads as "@alias not found":
        # nothing to remove, as the client path above treats it.
        with contextlib.suppress(VersionNotFoundError):
            self._rest.write(
                "DELETE",
                "registered-models/alias",
                {"name": name, "alias": alias},
                name=name,
                version=f"@{alias}",
            )

    def set_version_tags(
        self,
        name: str,
        version: int,
        tags: Mapping[str, str],
        *,
        current: Mapping[str, str] | None = None,
    ) -> None:
        """Set several tags on a version, one request each.

        ``current`` (the version's tags as the caller last read them, e.g.
        ``VersionInfo.tags``) lets tags that already hold their value be skipped;
        without it every tag is written. VersionNotFoundError when the version is gone.
        """
        changed = {k: v for k, v in tags.items() if current is None or current.get(k) != v}
        if self._rest is None:
            with self._errors(name, version, write=True):
                for key, value in changed.items():
                    self.client.set_model_version_tag(name, str(version), key, value)
            return
        for key, value in changed.items():
            self._rest.write(
                "POST",
                "model-versions/set-tag",
                {"name": name, "version": str(version), "key": key, "value": value},
                name=name,
                version=version,
            )

    def set_description(
        self, name: str, version: int, description: str, *, current: str | None = None
    ) -> None:
        """Set a version's description (skipped when ``current``, as last read, equals it)."""
        if current is not None and current == description:
            return
        if self._rest is None:
            self._call(
                lambda: self.client.update_model_version(
                    name, str(version), description=description
                ),
                name,
                version,
                write=True,
            )
            return
        self._rest.write(
            "PATCH",
            "model-versions/update",
            {"name": name, "version": str(version), "description": description},
            name=name,
            version=version,
        )

    def set_native_stage(self, name: str, version: int, stage: Stage) -> None:
        """Mirror ``stage`` into MLflow's deprecated stage field (never archives others)."""
        if self._rest is None:
            self._call(
                lambda: self.client.transition_model_version_stage(
                    name, str(version), stage.value, archive_existing_versions=False
                ),
                name,
                version,
                write=True,
            )
            return
        self._rest.write(
            "POST",
            "model-versions/transition-stage",
            {
                "name": name,
                "version": str(version),
                "stage": stage.value,
                "archive_existing_versions": False,
            },
            name=name,
            version=version,
        )

    def alias_version(self, name: str, alias: str) -> int:
        """The version ``alias`` points at, in one call (what model servers poll)."""
        try:
            if self._rest is None:
                mv = self._call(
                    lambda: self.client.get_model_version_by_alias(name, alias), name, f"@{alias}"
                )
            else:
                body = self._rest.get(
                    "registered-models/alias",
                    {"name": name, "alias": alias},
                    name=name,
                    version=f"@{alias}",
                )
                mv = _version_entity(body.get("model_version", {}))
        except (VersionNotFoundError, InvalidInputError) as exc:
            # MLflow 3.17 answers an unset alias with INVALID_PARAMETER_VALUE.
            self.model(name)  # ModelNotFoundError when the model itself is missing
            raise VersionNotFoundError(name, f"@{alias}") from exc
        return int(mv.version)


def _with_aliases(versions: list[VersionInfo], models: list[ModelInfo]) -> list[VersionInfo]:
    """``versions`` with the aliases ``models`` point at them (a version search has none)."""
    aliases: dict[tuple[str, int], list[str]] = {}
    for model in models:
        for alias, number in model.aliases.items():
            aliases.setdefault((model.name, number), []).append(alias)
    return [
        replace(v, aliases=tuple(sorted(aliases.get((v.name, v.version), ())))) for v in versions
    ]


def _model_entity(body: Mapping[str, Any]) -> SimpleNamespace:
    """A registered model from REST JSON, shaped like MLflow's ``RegisteredModel``."""
    return SimpleNamespace(
        name=body.get("name", ""),
        description=body.get("description", ""),
        aliases={str(a.get("alias")): a.get("version") for a in body.get("aliases") or []},
        tags=pairs(body.get("tags")),
        creation_timestamp=body.get("creation_timestamp", 0),
        last_updated_timestamp=body.get("last_updated_timestamp", 0),
    )


def _version_entity(body: Mapping[str, Any]) -> SimpleNamespace:
    """A model version from REST JSON, shaped like MLflow's ``ModelVersion``."""
    return SimpleNamespace(
        name=body.get("name", ""),
        version=body.get("version", 0),
        run_id=body.get("run_id", ""),
        source=body.get("source", ""),
        status=body.get("status", ""),
        current_stage=body.get("current_stage", "None"),
        aliases=list(body.get("aliases") or []),
        tags=pairs(body.get("tags")),
        description=body.get("description", ""),
        creation_timestamp=body.get("creation_timestamp", 0),
        user_id=body.get("user_id", ""),
    )
