"""Who acts and what they may do: the actor rule, MLflow authentication, the policy and roles.

One rule for every adapter (CLI, HTTP API, dashboard): a caller names an
actor, or ``None`` for the configured one; with ``auth = "mlflow"`` the
registry first authenticates itself and only an MLflow admin may act for
someone else. Work modelreg does on its own behalf (the background sync, a
webhook reaction, adoption on demand) passes :data:`SYSTEM` explicitly: it is
not authorised against the policy, because no caller asked for it.
"""

from __future__ import annotations

import enum
import os

from modelreg import policy
from modelreg.domain import check_model_name
from modelreg.errors import (
    AuthenticationError,
    InvalidInputError,
    PermissionDeniedError,
    PolicyError,
)
from modelreg.mlflow_gateway import MlflowGateway
from modelreg.policy import Permission, PolicyFile, Role
from modelreg.settings import Settings
from modelreg.views import PolicyView

_MAX_ACTOR = 256


class SystemActor(enum.Enum):
    """modelreg acting on its own behalf, as opposed to a caller (see :data:`SYSTEM`)."""

    SYSTEM = "system"


SYSTEM = SystemActor.SYSTEM
"""The explicit system actor: modelreg itself, not authorised against the policy."""

Caller = str | SystemActor | None
"""Who asks: a named actor, ``None`` for the configured actor, or :data:`SYSTEM`."""


class Access:
    """Resolve actors, authenticate them with MLflow and check their roles under the policy."""

    def __init__(self, settings: Settings, gateway: MlflowGateway) -> None:
        self.settings = settings
        self.gateway = gateway
        self._policy: tuple[tuple[int, int] | None, PolicyFile] | None = None
        self._authenticated: tuple[str, bool] | None = None

    def actor_name(self, actor: str | None) -> str:
        """Who acts: ``actor``, else the configured actor; authenticated with MLflow auth.

        With ``auth = "mlflow"`` this registry first proves who *it* is: the
        configured user (MODELREG_USERNAME/PASSWORD), else the MLflow client's
        (MLFLOW_TRACKING_USERNAME/PASSWORD, modelreg's service account). It then
        acts as that user; only an MLflow admin (the service, which authenticated
        its callers itself) may act for someone else. A Python ``Registry`` with a
        wrong password therefore does nothing, and cannot claim another name.
        Raises AuthenticationError or InvalidInputError (not 1 to 256 characters).
        """
        if self.settings.auth == "mlflow":
            me, admin = self.identity()
            if actor is None or actor == me:
                return me
            if not admin:
                raise AuthenticationError(
                    f"{me} is authenticated with MLflow and cannot act as {actor[:60]!r}; "
                    "only modelreg's service account (an MLflow admin) acts for others"
                )
        chosen = (actor or self.settings.actor).strip()
        if not chosen or len(chosen) > _MAX_ACTOR:
            raise InvalidInputError(f"actor must be 1 to {_MAX_ACTOR} characters")
        return chosen

    def actor(self) -> str:
        """Who this registry acts as when no actor is given (authenticated under MLflow auth)."""
        return self.actor_name(None)

    def identity(self) -> tuple[str, bool]:
        """The MLflow user this registry authenticated as, and whether it is an admin.

        Asked of MLflow once per registry; raises AuthenticationError without
        credentials or when MLflow refuses them.
        """
        if self._authenticated is None:
            username = self.settings.username or os.environ.get("MLFLOW_TRACKING_USERNAME", "")
            password = self.settings.password or os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
            if not username or not password:
                raise AuthenticationError(
                    "MODELREG_AUTH=mlflow needs credentials: set MODELREG_USERNAME and "
                    "MODELREG_PASSWORD (or MLflow's MLFLOW_TRACKING_USERNAME/PASSWORD)"
                )
            found = self.gateway.current_user(username, password)
            if found is None:
                raise AuthenticationError(
                    f"MLflow refused the credentials of {username[:60]!r}; check user and password"
                )
            self._authenticated = found
        return self._authenticated

    def policy(self) -> PolicyFile:
        """The governance policy, re-read when its file changes (open policy without one).

        Raises PolicyError when the file cannot be read or does not parse.
        """
        path = self.settings.resolved_policy_file()
        try:
            stat = path.stat()
            key: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            key = None
        except OSError as exc:
            raise PolicyError(str(path), f"cannot be read: {exc}") from exc
        if self._policy is None or self._policy[0] != key:
            self._policy = (key, policy.load(path))
        return self._policy[1]

    def governed(self) -> bool:
        """Whether a policy file is in force (without one the policy is open)."""
        return bool(self.policy().source)

    def policy_view(self, name: str | None = None, *, actor: str | None = None) -> PolicyView:
        """The effective policy for ``name`` (the default without one) and ``actor``'s role."""
        loaded = self.policy()
        if name is not None:
            check_model_name(name)
        who = self.actor_name(actor)
        return PolicyView(
            source=loaded.source or None,
            model=name,
            policy=(loaded.for_model(name) if name else loaded.default).model_dump(mode="json"),
            actor=who,
            role=loaded.access.role_of(who).value,
        )

    def role_of(self, actor: str | None = None) -> Role:
        """The role the policy's [access] table gives ``actor``."""
        return self.policy().access.role_of(self.actor_name(actor))

    def authorize(self, actor: str | None, needed: Permission, action: str) -> tuple[str, Role]:
        """Check that ``actor`` holds ``needed``; return the actor's name and role.

        The adapters authenticate (HTTP Basic against MLflow, or the configured
        actor in the embedded default); roles are enforced here either way.
        Raises PermissionDeniedError when the role is too low.
        """
        who = self.actor_name(actor)
        role = self.policy().access.role_of(who)
        if role.rank < needed.minimum.rank:
            raise PermissionDeniedError(
                who, action, f"that needs the {needed.minimum.value} role and you are {role.value}"
            )
        return who, role

    def authorize_caller(self, actor: Caller, needed: Permission, action: str) -> None:
        """Check a caller's role, unless it is :data:`SYSTEM` (modelreg's own work)."""
        if actor is not SYSTEM:
            self.authorize(actor, needed, action)

    def authenticate(self, username: str, password: str) -> str:
        """Check ``username``/``password`` against MLflow's basic-auth app; return the user.

        Raises AuthenticationError when either is empty or MLflow refuses them.
        """
        if not username or not password:
            raise AuthenticationError("give a username and password (MLflow basic-auth)")
        found = self.gateway.current_user(username, password)
        if found is None:
            raise AuthenticationError(
                f"MLflow refused the credentials of {username[:60]!r}; check user and password"
            )
        return found[0]
