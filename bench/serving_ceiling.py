"""The HTTP ceiling of ``bench/serving.py``: an ASGI app that answers without a model.

``POST /invocations`` reads the whole body (as a scoring request must) and
answers the constant ``{"predictions": [0]}``; ``GET /ping`` answers 200.
Served by the same ASGI server, worker count and settings as ``modelreg
serve``, its requests/s is the most any app on that stack could answer on
this machine: the cost of the HTTP server, the event loop and the kernel,
with no framework, parsing or model. Run it as ``uvicorn serving_ceiling:app``
or ``granian --interface asgi serving_ceiling:app`` with ``bench/`` on the path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ANSWER = b'{"predictions": [0]}'
JSON_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"20")]


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """Answer every HTTP request with ``ANSWER`` once its body is read; accept lifespan."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # the body arrives in chunks; a scoring server must read all of it
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
