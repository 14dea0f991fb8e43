"""Who acts and what they may do: the actor rule, MLflow authentication, the policy and roles.

One rule for every adapter (CLI, HTTP API, dashboard), :meth:`Access.caller`:

- ``auth = "none"`` (the embedded default): the caller acts as the name it
  claims (``--actor``, ``MODELREG_ACTOR`` or the OS user on the CLI; the
  ``X-Modelreg-Actor`` header on the API), or as ``anonymous`` when it claims
  none, who gets the policy's ``anonymous_role``.
- ``auth = "mlflow"``: the caller acts as the user MLflow's basic-auth app
  accepts its username and password for (``MODELREG_USERNAME``/``PASSWORD`` or
  MLflow's ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` on the CLI and in Python,
  HTTP Basic on the API); a claimed name is ignored. A verified password is
  trusted for :data:`CREDENTIALS_TTL_SECONDS`.

Facade methods take ``actor``: ``None`` is always the configured caller (the
rule above applied to the registry's own settings); a name is someone the
adapter already authenticated, which under MLflow auth only an MLflow admin
(modelreg's service account) may act for. Work modelreg does on its own behalf
(the background sync, a webhook reaction, adoption on demand) passes
:data:`SYSTEM` explicitly: it is not authorised against the policy, because no
caller asked for it.
"""

from __future__ import annotations

import enum
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from modelreg import policy
from modelreg.domain import check_model_name
from modelreg.errors import (
    AuthenticationError,
    InvalidInputError,
    PermissionDeniedError,
    PolicyError,
)
from modelreg.mlflow_gateway import MlflowGateway
from modelreg.policy import ANONYMOUS, Permission, PolicyFile, Role
from modelreg.settings import Settings
from modelreg.views import PolicyView

_MAX_ACTOR = 256

CREDENTIALS_TTL_SECONDS = 15.0
"""How long a verified password is trusted before MLflow is asked again (docs/security.md).

A password changed in MLflow can keep working for at most this long, unless the
new one is used first: any refusal for a user drops every cached entry of that user.
"""


class SystemActor(enum.Enum):
    """modelreg acting on its own behalf, as opposed to a caller (see :data:`SYSTEM`)."""

    SYSTEM = "system"


SYSTEM = SystemActor.SYSTEM
"""The explicit system actor: modelreg itself, not authorised against the policy."""

Caller = str | SystemActor | None
"""Who asks: a named actor, ``None`` for the configured actor, or :data:`SYSTEM`."""


@dataclass(frozen=True)
class Credentials:
    """A username and password for MLflow's basic-auth app (HTTP Basic, or the environment)."""

    username: str
    password: str = field(repr=False)


Identity = tuple[str, bool]
"""``(user, is_admin)`` as MLflow's ``users/current`` answers it."""


class CredentialCache:
    """Passwords MLflow accepted, trusted for ``ttl`` seconds; a refusal forgets the user's.

    Keys are sha256 digests of username and password, so no password is kept in
    memory past the request that sent it. Expired entries are dropped whenever a
    new one is stored, so the cache holds about as many entries as there are
    users active within ``ttl``. ``check`` (MLflow's answer) runs outside the
    lock: a slow MLflow holds up only the callers it is asked for.
    """

    def __init__(
        self,
        ttl: float = CREDENTIALS_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._verified: dict[str, tuple[Identity, float]] = {}

    def __len__(self) -> int:
        """Entries held now, expired or not (expired ones go when the next is stored)."""
        return len(self._verified)

    def verify(
        self, credentials: Credentials, check: Callable[[str, str], Identity | None]
    ) -> Identity:
        """The identity ``credentials`` prove: from the cache, else from ``check``.

        Raises AuthenticationError when ``check`` refuses them (None), after
        dropping every cached password of that user.
        """
        name = credentials.username
        key = hashlib.sha256(f"{name}\0{credentials.password}".encode()).hexdigest()
        with self._lock:
            known = self._verified.get(key)
        if known is not None and known[1] > self._clock():
            return known[0]
        found = check(name, credentials.password)
        with self._lock:
            if found is None:
                # MLflow refused this user: no password of theirs stays trusted from the cache.
                self._verified = {
                    k: v for k, v in self._verified.items() if v[0][0] != name and k != key
                }
            else:
                now = self._clock()
                self._verified = {k: v for k, v in self._verified.items() if v[1] > now}
                self._verified[key] = (found, now + self._ttl)
        if found is None:
            raise AuthenticationError(
                f"MLflow refused the credentials of {name[:60]!r}; check user and password"
            )
        return found


def _named(name: str) -> str:
    """``name`` stripped, or InvalidInputError when it is not 1 to 256 characters."""
    chosen = name.strip()
    if not chosen or len(chosen) > _MAX_ACTOR:
        raise InvalidInputError(f"actor must be 1 to {_MAX_ACTOR} characters")
    return chosen


class Access:
    """Resolve actors, authenticate them with MLflow and check their roles under the policy."""

    def __init__(self, settings: Settings, gateway: MlflowGateway) -> None:
        self.settings = settings
        self.gateway = gateway
        self._policy: tuple[tuple[int, int] | None, PolicyFile] | None = None
        self._credentials = CredentialCache()

    # -- who acts ------------------------------------------------------------------

    def caller(self, credentials: Credentials | None, claimed: str | None = None) -> str:
        """Who acts for a caller presenting ``credentials`` and claiming ``claimed``: the rule.

        With ``auth = "mlflow"`` it is the user MLflow authenticates from
        ``credentials`` (the claim is ignored); otherwise the claimed name, or
        ``anonymous`` (the policy's ``anonymous_role``) when ``claimed`` is None.
        Raises AuthenticationError (no or refused credentials) or
        InvalidInputError (a name that is not 1 to 256 characters).
        """
        if self.settings.auth == "mlflow":
            if credentials is None:
                raise AuthenticationError(
                    "MODELREG_AUTH=mlflow needs MLflow credentials: HTTP Basic auth on the API; "
                    "MODELREG_USERNAME and MODELREG_PASSWORD (or MLflow's "
                    "MLFLOW_TRACKING_USERNAME/PASSWORD) for the CLI and Python"
                )
            return self._identity(credentials)[0]
        return ANONYMOUS if claimed is None else _named(claimed)

    def configured_credentials(self) -> Credentials | None:
        """The registry's own credentials: the configured user's, else the MLflow client's."""
        username = self.settings.username or os.environ.get("MLFLOW_TRACKING_USERNAME", "")
        password = self.settings.password or os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
        return Credentials(username, password) if username and password else None

    def actor(self) -> str:
        """Who this registry acts as when no actor is given: :meth:`caller` for its settings."""
        return self.caller(self.configured_credentials(), self.settings.actor)

    def actor_name(self, actor: str | None) -> str:
        """Who acts: ``actor``, else (``None``) the configured actor of :meth:`actor`.

        With ``auth = "mlflow"`` this registry first proves who *it* is (its
        configured credentials); only an MLflow admin (the service, which
        authenticated its callers itself) may name someone else. A Python
        ``Registry`` with a wrong password therefore does nothing, and cannot
        claim another name. Raises AuthenticationError or InvalidInputError.
        """
        if not actor:
            return self.actor()
        if self.settings.auth == "mlflow":
            me, admin = self.identity()
            if actor != me and not admin:
                raise AuthenticationError(
                    f"{me} is authenticated with MLflow and cannot act as {actor[:60]!r}; "
                    "only modelreg's service account (an MLflow admin) acts for others"
                )
        return _named(actor)

    def identity(self) -> Identity:
        """The MLflow user this registry's own credentials prove, and whether it is an admin.

        Raises AuthenticationError without credentials or when MLflow refuses them.
        """
        credentials = self.configured_credentials()
        if credentials is None:
            raise AuthenticationError(
                "MODELREG_AUTH=mlflow needs credentials: set MODELREG_USERNAME and "
                "MODELREG_PASSWORD (or MLflow's MLFLOW_TRACKING_USERNAME/PASSWORD)"
            )
        return self._identity(credentials)

    def authenticate(self, username: str, password: str) -> str:
        """Check ``username``/``password`` against MLflow's basic-auth app; return the user.

        Answers from the credential cache within :data:`CREDENTIALS_TTL_SECONDS`.
        Raises AuthenticationError when either is empty or MLflow refuses them.
        """
        if not username or not password:
            raise AuthenticationError("give a username and password (MLflow basic-auth)")
        return self._identity(Credentials(username, password))[0]

    def _identity(self, credentials: Credentials) -> Identity:
        return self._credentials.verify(credentials, self.gateway.current_user)

    # -- the policy and roles --------------------------------------------------------

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

    def init_policy(self, *, force: bool = False, actor: str | None = None) -> PolicyView:
        """Write the starter policy with ``actor`` as its admin; return the new policy's view.

        Where a policy is in force only its admins may replace it (and only with
        ``force``); without one the open policy makes everyone an admin, so
        anyone may write the first. A policy file that does not parse raises
        PolicyError here too: fix or remove it by hand. Raises
        PermissionDeniedError, or ConflictError when a file exists and ``force``
        is not given.
        """
        who, _role = self.authorize(actor, Permission.ADMINISTER, "write the policy")
        policy.write_starter(self.settings.resolved_policy_file(), [who], force=force)
        return self.policy_view(actor=who)

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
            role=loaded.access.role_of(who),
        )

    def role_of(self, actor: str | None = None) -> Role:
        """The role the policy's [access] table gives ``actor``."""
        return self.policy().access.role_of(self.actor_name(actor))

    def authorize(self, actor: str | None, needed: Permission, action: str) -> tuple[str, Role]:
        """Check that ``actor`` holds ``needed``; return the actor's name and role.

        The adapters authenticate (:meth:`caller`); roles are enforced here
        either way. Raises PermissionDeniedError when the role is too low.
        """
        who = self.actor_name(actor)
        role = self.policy().access.role_of(who)
        if not needed.allows(role):
            raise PermissionDeniedError(
                who, action, f"that needs the {needed.minimum.value} role and you are {role.value}"
            )
        return who, role

    def authorize_caller(self, actor: Caller, needed: Permission, action: str) -> None:
        """Check a caller's role, unless it is :data:`SYSTEM` (modelreg's own work)."""
        if actor is not SYSTEM:
            self.authorize(actor, needed, action)
