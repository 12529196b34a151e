"""A size limit on request bodies, checked before anything parses them.

A 54 MB dry run once took 27 s and 380 MB of the api's memory to refuse. This
ASGI middleware answers 413 as soon as ``Content-Length``, or the bytes that
arrive without one, pass the limit. Artifact uploads stream to disk with their
own limit (``max_artifact_bytes``), so they are exempt.
"""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_UPLOAD = re.compile(r"^/api/v1/runs/[^/]+/artifacts/[^/]+$")


def _detail(max_bytes: int) -> dict[str, str]:
    return {"message": f"the request body is over the limit of {max_bytes} bytes", "field": "body"}


class _TooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException, so the body parser lets it through
    and the app answers 413 itself."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _detail(max_bytes))  # type: ignore[arg-type]


class BodyLimit:
    """``paths`` gives routes a limit of their own (``/api/v1/triage`` reads whole dumps)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, paths: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _UPLOAD.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        max_bytes = self.paths.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            await self._refuse(send, max_bytes)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise _TooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, max_bytes)

    async def _refuse(self, send: Send, max_bytes: int) -> None:
        payload = json.dumps({"detail": _detail(max_bytes)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
