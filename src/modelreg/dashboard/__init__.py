"""The web dashboard: server-rendered pages over the Registry facade, served at ``/ui``.

:func:`~modelreg.dashboard.app.create_dashboard` builds the app the API's
factory mounts; :mod:`~modelreg.dashboard.session` holds log-in sessions and
CSRF checks; templates and the one stylesheet are package data.
"""
