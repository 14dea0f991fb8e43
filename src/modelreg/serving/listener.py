"""The listening socket of the model server, bound before any model loads.

uvicorn binds only after the app has started (models loaded), and answers a
busy port with its generic start-up failure exit code 3, which the CLI uses
for "not found". Binding first fails fast and says what to do.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from modelreg.errors import ConflictError, InvalidInputError


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, ready to hand to uvicorn.

    Raises ConflictError when the port is taken and InvalidInputError when
    the address cannot be used at all.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a port left in TIME_WAIT by a stopped server is free to reuse.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConflictError(f"port {port} is in use; pick another with --port") from exc
        raise InvalidInputError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "check --host and pick another --port"
        ) from exc
    except OverflowError as exc:  # a port outside 0-65535
        sock.close()
        raise InvalidInputError(f"cannot listen on port {port}: use 1-65535") from exc
    sock.set_inheritable(True)
    return sock


def run(sock: socket.socket, app: Any, **options: Any) -> None:
    """Serve ``app`` with uvicorn on the bound ``sock`` until stopped; ``options`` go to its Config.

    What ``uvicorn.run`` does, minus its own bind: one server in this process,
    or ``workers`` processes sharing the socket.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(app, **options)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a foreground server is stopped, as with uvicorn.run
    finally:
        sock.close()
