"""The dashboard app: server-rendered pages over the Registry facade, mounted at ``/ui``.

==========================================  ============================================
``GET  /ui/``                               models (``?q=``, ``?has=``, ``?page=``)
``GET  /ui/models/{name}``                  versions, the lifecycle timeline, rollback
``GET  /ui/models/{name}/versions/{ref}``   gates, lineage, digest, events of one version
``GET  /ui/approvals``                      open promotion requests
``GET  /ui/experiments``                    every A/B experiment
``GET  /ui/models/{name}/experiment``       one experiment's report and controls
``GET  /ui/serving``                        what serving replicas reported
``GET  /ui/audit``                          ledger events (``?format=csv|json`` exports)
``GET/POST /ui/login``, ``POST /ui/logout`` sessions (:mod:`.session`)
``POST ...``                                the forms: request, approve, reject, rollback,
                                            ramp, stop, conclude (CSRF-checked)
==========================================  ============================================

Handlers read input, call the facade as the logged-in user and render a
template; the facade enforces roles and every rule. Errors become a page with
the status of :func:`modelreg.http_status.status_for`; a GET without a session
is sent to the log-in page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response

from modelreg.dashboard.pages import Pages
from modelreg.dashboard.render import environment, text_field
from modelreg.dashboard.session import Session, Sessions
from modelreg.errors import AuthenticationError, InvalidInputError, ModelregError
from modelreg.http_status import status_for
from modelreg.registry import Registry

_MAX_FIELDS = 20
log = logging.getLogger("modelreg.dashboard")


class Dashboard:
    """Sessions, forms and error pages around :class:`~.pages.Pages`."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.sessions = Sessions(registry.settings)
        self.env = environment()
        self.pages = Pages(registry, self.env)

    # -- pages and errors --------------------------------------------------------

    def html(self, request: Request, template: str, code: int = 200, **values: Any) -> Response:
        """Render ``template`` with the common values (base path, user, CSRF token, nav)."""
        existing = self.sessions.read(request)
        session = existing or Session.fresh()
        body = self.env.get_template(template).render(
            base=request.scope.get("root_path", ""),
            path=request.url.path,
            user=session.user,
            csrf=session.csrf,
            notice=request.query_params.get("notice", ""),
            **values,
        )
        response = HTMLResponse(body, status_code=code)
        if existing is None:  # a visitor's first page; a log-in's expiry is never extended
            self.sessions.write(response, session)
        return response

    def error_page(self, request: Request, status: int, message: str) -> Response:
        """The friendly error page: what went wrong, with the right status and no traceback."""
        if status == 401 and request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            base = request.scope.get("root_path", "")
            return RedirectResponse(f"{base}/login?{urlencode({'next': target})}", 303)
        return self.html(request, "error.html", status, status=status, message=message, role=None)

    def user(self, request: Request) -> str:
        """The logged-in user, or AuthenticationError (a GET is then sent to the log-in page)."""
        session = self.sessions.read(request)
        if session is None or session.user is None:
            raise AuthenticationError("log in to use the dashboard")
        return session.user

    # -- forms -------------------------------------------------------------------

    async def posted(self, request: Request) -> tuple[str, FormData]:
        """The user and form of a POST that passed the CSRF and origin checks."""
        form = await request.form(max_files=0, max_fields=_MAX_FIELDS)
        session = self.sessions.check_post(
            request, self.sessions.read(request), text_field(form, "csrf_token", 200)
        )
        if session.user is None:
            raise AuthenticationError("log in to use the dashboard")
        return session.user, form

    async def act(
        self,
        request: Request,
        action: Callable[[str, FormData], object],
        done: str,
    ) -> Response:
        """Run a form's ``action(user, form)`` off the event loop, then show ``done``."""
        user, form = await self.posted(request)
        await run_in_threadpool(action, user, form)
        base = request.scope.get("root_path", "")
        return RedirectResponse(f"{base}{done}", 303)

    # -- log-in ------------------------------------------------------------------

    def login_page(self, request: Request, next_: str = "", message: str = "") -> Response:
        """The log-in form (a password field under MLflow auth)."""
        return self.html(
            request,
            "login.html",
            401 if message else 200,
            role=None,
            next=_safe_next(next_),
            message=message,
            needs_password=self.registry.settings.auth == "mlflow",
        )

    async def login(self, request: Request) -> Response:
        """Check the name (and password) with the registry's one rule; start a session."""
        form = await request.form(max_files=0, max_fields=_MAX_FIELDS)
        self.sessions.check_post(
            request, self.sessions.read(request), text_field(form, "csrf_token", 200)
        )
        name = text_field(form, "username", 256).strip()
        password = text_field(form, "password", 1024)
        target = _safe_next(text_field(form, "next", 2000))
        try:
            if self.registry.settings.auth == "mlflow":
                user = await run_in_threadpool(self.registry.authenticate, name, password)
            else:
                if not name:
                    raise InvalidInputError("type the name you act as")
                user = self.registry.caller(None, name)
        except (AuthenticationError, InvalidInputError) as exc:
            return self.login_page(request, target, exc.message)
        base = request.scope.get("root_path", "")
        response = RedirectResponse(target or f"{base}/", 303)
        self.sessions.write(response, Session.fresh(user))  # a new token after log-in
        return response

    async def logout(self, request: Request) -> Response:
        """End the session (a POST with the CSRF token, so no other site can log you out)."""
        await self.posted(request)
        base = request.scope.get("root_path", "")
        response = RedirectResponse(f"{base}/login", 303)
        self.sessions.clear(response)
        return response


def _safe_next(target: str) -> str:
    """``target`` when it is a path of this dashboard, else '' (no open redirect)."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return ""


def _install_error_pages(app: FastAPI, dashboard: Dashboard) -> None:
    @app.exception_handler(ModelregError)
    async def _error(request: Request, exc: ModelregError) -> Response:
        return dashboard.error_page(request, status_for(exc), exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        ]
        return dashboard.error_page(request, 400, "; ".join(problems) or "invalid request")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after sending this page, so the server log keeps the trace.
        log.error("dashboard error on %s %s: %r", request.method, request.url.path, exc)
        return dashboard.error_page(request, 500, "an internal error; the server log has details")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = "no such page" if exc.status_code == 404 else str(exc.detail)
        return dashboard.error_page(request, exc.status_code, message)


def create_dashboard(registry: Registry) -> FastAPI:
    """The dashboard as an app to mount at ``/ui`` (the API's app factory does)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    dashboard = Dashboard(registry)
    _install_error_pages(app, dashboard)
    pages = dashboard.pages

    css = resources.files("modelreg.dashboard").joinpath("static/dashboard.css").read_bytes()

    @app.get("/static/dashboard.css")
    def stylesheet() -> Response:
        return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})

    @app.get("/login")
    def login_form(request: Request, next: str = "") -> Response:
        return dashboard.login_page(request, next)

    app.add_api_route("/login", dashboard.login, methods=["POST"])
    app.add_api_route("/logout", dashboard.logout, methods=["POST"])
    pages.install(app, dashboard)
    return app
