"""Dashboard sessions: a signed cookie naming the user, a per-session CSRF token, origin checks.

The cookie holds ``{"u": user or None, "c": csrf token}`` signed (not
encrypted: it holds no secret beyond the token, which the page shows anyway)
with a key from ``settings.dashboard_secret``, or one generated once and kept
in ``<home>/dashboard-secret`` with mode 0600. It is ``HttpOnly``,
``SameSite=Lax``, scoped to ``/ui`` and ``Secure`` when
``settings.dashboard_secure_cookie`` is set; it expires after
``settings.dashboard_session_hours``.

Every POST must come from the dashboard itself: the form's ``csrf_token``
equals the session's (compared in constant time), a browser's
``Sec-Fetch-Site`` says ``same-origin`` (or ``none``, typed by the user), and
an ``Origin`` header names this host. A visitor who is not logged in still
gets a session (user None) so that the log-in form is protected too.
"""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from modelreg.errors import AccessError, InvalidInputError
from modelreg.settings import Settings

COOKIE = "modelreg_session"
COOKIE_PATH = "/ui"
SECRET_FILE = "dashboard-secret"  # noqa: S105 - the file's name, not a secret
_SALT = "modelreg.dashboard.session"
_MIN_SECRET = 32


@dataclass(frozen=True)
class Session:
    """Who is logged in (None: nobody yet) and the session's CSRF token."""

    user: str | None
    csrf: str

    @classmethod
    def fresh(cls, user: str | None = None) -> Session:
        """A new session with a new random CSRF token (log-in rotates it)."""
        return cls(user, secrets.token_urlsafe(32))


def session_secret(settings: Settings) -> str:
    """The signing key: the configured one, else the one kept under the home (made once).

    A new key is written to a private temporary file (mode 0600) and linked
    into place, which fails if another process got there first: every process
    ends up with the same, complete key. Raises InvalidInputError for a kept
    key that is too short (someone edited the file).
    """
    if settings.dashboard_secret:
        return settings.dashboard_secret
    path = settings.home / SECRET_FILE
    if path.exists():
        return _read_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{SECRET_FILE}-")
    try:
        secret = secrets.token_urlsafe(48)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secret)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read_secret(path)
    finally:
        os.unlink(temporary)
    return secret


def _read_secret(path: Path) -> str:
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < _MIN_SECRET:
        raise InvalidInputError(
            f"{path} holds a dashboard secret shorter than {_MIN_SECRET} characters; "
            "delete the file (a new one is made) or set MODELREG_DASHBOARD_SECRET"
        )
    return secret


class Sessions:
    """Reads and writes the session cookie, and checks that a POST is the dashboard's own."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._made: URLSafeTimedSerializer | None = None
        self._max_age = int(settings.dashboard_session_hours * 3600)
        self._secure = settings.dashboard_secure_cookie

    @property
    def _signer(self) -> URLSafeTimedSerializer:
        # Made on the first dashboard request, not when the API app is built: an API
        # that never serves a page writes nothing under the home.
        with self._lock:
            if self._made is None:
                self._made = URLSafeTimedSerializer(session_secret(self._settings), salt=_SALT)
            return self._made

    def read(self, request: Request) -> Session | None:
        """The request's session, or None when the cookie is missing, forged or expired."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            data = self._signer.loads(value, max_age=self._max_age)
        except BadSignature:  # also SignatureExpired
            return None
        if not isinstance(data, dict):
            return None
        user, csrf = data.get("u"), data.get("c")
        if not isinstance(csrf, str) or not (user is None or isinstance(user, str)):
            return None
        return Session(user, csrf)

    def write(self, response: Response, session: Session) -> None:
        """Set the cookie holding ``session`` on ``response``."""
        response.set_cookie(
            COOKIE,
            self._signer.dumps({"u": session.user, "c": session.csrf}),
            max_age=self._max_age,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=self._secure,
        )

    def clear(self, response: Response) -> None:
        """Remove the cookie (log-out)."""
        response.delete_cookie(
            COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=self._secure
        )

    @staticmethod
    def check_post(request: Request, session: Session | None, token: str) -> Session:
        """``session`` when the POST carrying ``token`` is the dashboard's own, else AccessError.

        Refused: no session, a token that differs from the session's, a
        browser saying the request came from another site, or an ``Origin``
        naming another host.
        """
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in {"same-origin", "none"}:
            raise AccessError(f"refused a {site} form post: forms must come from the dashboard")
        origin = request.headers.get("origin")
        if origin is not None:
            host = request.headers.get("host", "")
            if urlsplit(origin).netloc.lower() != host.lower():
                raise AccessError("refused a form post from another origin")
        if session is None or not hmac.compare_digest(session.csrf.encode(), token.encode()):
            raise AccessError(
                "the form's security token is missing or stale; reload the page and try again"
            )
        return session
