"""Configuration from the environment (prefix ``MODELREG_``) and command-line overrides."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

HOME_DIR = ".modelreg"


def find_home_upwards(start: Path | None = None) -> Path | None:
    """The nearest ``.modelreg`` directory in ``start`` (the working directory) or above it.

    Like git finds ``.git``: commands run from a subdirectory of a project use
    the project's home instead of quietly starting a second, empty ledger.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / HOME_DIR
        if candidate.is_dir():
            return candidate
    return None


def user_home() -> Path:
    """The per-user home used when no ``.modelreg`` is found: ``$XDG_DATA_HOME/modelreg``."""
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "modelreg"


def discover_home() -> Path:
    """The home when none is set: the nearest ``.modelreg`` upwards, else :func:`user_home`."""
    return find_home_upwards() or user_home()


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container uid
        return f"uid-{os.getuid()}"


class ServingSettings(BaseSettings):
    """The model server's options that come from the environment, not its config file.

    A group of :class:`Settings` (``settings.serving``) that reads its own
    variables under their historic names, ``MODELREG_RELOAD_TOKEN``,
    ``MODELREG_SERVE_CONFIG`` and ``MODELREG_WORKER_GROUP``. An empty variable counts as unset.
    """

    model_config = SettingsConfigDict(env_prefix="MODELREG_", extra="ignore", env_ignore_empty=True)

    reload_token: str | None = Field(
        default=None,
        repr=False,
        description="Bearer token of the model server's POST /-/reload when the serving "
        "config sets none (at least 16 characters); unset disables the endpoint.",
    )
    serve_config: dict[str, Any] | None = Field(
        default=None,
        description="The serving config as JSON (the TOML file's fields), read by a server "
        "process started without `modelreg serve`, e.g. `uvicorn --factory "
        "modelreg.cli.serve:worker_app`.",
    )
    worker_group: Path | None = Field(
        default=None,
        description="A directory shared by the worker processes of one model server and "
        "nobody else: a POST /-/reload to any of them makes every one check at once. "
        "`modelreg serve` sets it up for its workers; set it when another ASGI server runs "
        "several processes of `modelreg.cli.serve:worker_app`.",
    )


class Settings(BaseSettings):
    """Where modelreg finds MLflow and its ledger, and who is acting.

    Every field can be set as ``MODELREG_<FIELD>`` in the environment; the CLI
    flags of the same name override it. The ``serving`` group keeps its own
    variable names (:class:`ServingSettings`). ``model_dump_json()`` and
    ``model_validate_json()`` carry a complete copy to another process.
    """

    model_config = SettingsConfigDict(env_prefix="MODELREG_", extra="ignore")

    home: Path = Field(
        default_factory=discover_home,
        description="Directory holding the embedded default: MLflow's SQLite DB, artifacts "
        "and the ledger. Used when the URIs below are not set. Default: the nearest "
        "`.modelreg` in the working directory or above it, else $XDG_DATA_HOME/modelreg "
        "(~/.local/share/modelreg).",
    )
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking/registry URI. Falls back to MLFLOW_TRACKING_URI, then to "
        "http://127.0.0.1:5000 (the server `modelreg up` starts).",
    )
    ledger_uri: str | None = Field(
        default=None,
        description="SQLAlchemy URI of the governance ledger (postgresql:// or sqlite:///). "
        "Defaults to sqlite:///<home>/ledger.db.",
    )
    actor: str = Field(
        default_factory=_default_actor,
        description="Who is acting, recorded on every ledger event. Defaults to the OS user.",
    )
    sync_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often the API service adopts versions registered by plain MLflow clients.",
    )
    download_dir: Path | None = Field(
        default=None,
        description="Where artifacts are downloaded for hashing. Defaults to <home>/cache.",
    )

    policy_file: Path | None = Field(
        default=None,
        description="Governance policy (TOML). Defaults to <home>/policy.toml; without a file "
        "there are no gates and every user is an admin. `modelreg policy init` writes one.",
    )
    auth: Literal["none", "mlflow"] = Field(
        default="none",
        description="'mlflow': users authenticate with their MLflow basic-auth credentials "
        "(HTTP Basic on the API; MODELREG_USERNAME/MODELREG_PASSWORD for the CLI). "
        "'none': the actor is taken as given, roles are still enforced.",
    )
    username: str | None = Field(
        default=None, description="CLI user to authenticate as when auth = 'mlflow'."
    )
    password: str | None = Field(
        default=None, description="Password of `username` when auth = 'mlflow'.", repr=False
    )
    automation_actor: str = Field(
        default="modelreg-automation",
        description="Actor recorded on promotions made by auto-promote.",
    )
    webhook_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the API service sends due webhook deliveries.",
    )
    api_runs_workers: bool = Field(
        default=True,
        description="Run the background workers (sync, webhook delivery) inside the API "
        "service. Set false when `modelreg worker` runs them in processes of their own.",
    )
    experiment_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often the workers check running A/B experiments' guardrails "
        "(a breach stops the experiment) and prune the prediction log.",
    )
    prediction_log_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="How long logged predictions take feedback; later feedback gets 410.",
    )
    prediction_log_max_rows: int = Field(
        default=1_000_000,
        gt=0,
        description="Logged predictions kept at most; the oldest beyond it expire first.",
    )
    replica_history_days: float = Field(
        default=14.0,
        gt=0,
        description=(
            "How long serving replicas' reloads and refused loads are kept, and how long a "
            "replica that stopped reporting stays listed (the shorter of this and one day)."
        ),
    )
    allow_new_ledger: bool = Field(
        default=False,
        description="Start an empty ledger even though MLflow holds versions another ledger "
        "adopted (normally refused: it would fork the audit history).",
    )
    mlflow_webhook_secret: str | None = Field(
        default=None,
        description="Secret of the MLflow registry webhook whose deliveries trigger a sync.",
        repr=False,
    )
    dashboard_secret: str | None = Field(
        default=None,
        min_length=32,
        repr=False,
        description="Key that signs the dashboard's session cookies (at least 32 characters). "
        "Unset: a random key is generated once and kept in <home>/dashboard-secret (mode "
        "0600); set it when several API replicas serve the dashboard.",
    )
    dashboard_secure_cookie: bool = Field(
        default=False,
        description="Mark the dashboard's session cookie Secure (sent over HTTPS only); "
        "set true whenever the dashboard is reached through HTTPS.",
    )
    dashboard_session_hours: float = Field(
        default=8.0,
        gt=0,
        le=24 * 30,
        description="How long a dashboard log-in lasts before the user logs in again.",
    )

    serving: ServingSettings = Field(
        default_factory=ServingSettings,
        description="Model server options (MODELREG_RELOAD_TOKEN, MODELREG_SERVE_CONFIG).",
    )

    def stack_home(self) -> Path:
        """Where `modelreg up` keeps a new stack: the home if set or found, else ./.modelreg."""
        if "home" in self.model_fields_set:
            return self.home
        return find_home_upwards() or Path(HOME_DIR)

    def resolved_policy_file(self) -> Path:
        """Where the governance policy lives."""
        return (self.policy_file or self.home / "policy.toml").resolve()

    def resolved_tracking_uri(self) -> str:
        """The MLflow tracking URI to use."""
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "http://127.0.0.1:5000"

    def resolved_ledger_uri(self) -> str:
        """The ledger database URI to use."""
        return self.ledger_uri or f"sqlite:///{self.home.resolve() / 'ledger.db'}"

    def resolved_download_dir(self) -> Path:
        """Directory for temporary artifact downloads."""
        return (self.download_dir or self.home / "cache").resolve()
