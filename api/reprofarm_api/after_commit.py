"""Telling others about a request's committed work: the outbox relay (a new job's
task) and idle agents' long-polls (runs became ready).

A handler marks ``request.state.poke_relay`` / ``request.state.runs_ready`` /
``request.state.tokens_revoked`` (token hashes: every process's token cache forgets
them); they
are acted on when the response starts, which is after the request's transaction
committed (the session dependency exits before the answer). A plain ASGI
middleware: Starlette's ``BaseHTTPMiddleware`` ran every request through an extra
task group and body stream, measurable at thousands of long-polls.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class AfterCommit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        poke_relay: Callable[[], None],
        runs_ready: Callable[[int], None],
        tokens_revoked: Callable[[list[str]], None],
    ) -> None:
        self.app = app
        self.poke_relay = poke_relay
        self.runs_ready = runs_ready
        self.tokens_revoked = tokens_revoked

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        state = scope.setdefault("state", {})  # where request.state keeps its attributes

        async def send_then_tell(message: Message) -> None:
            if message["type"] == "http.response.start":
                if state.get("poke_relay"):
                    self.poke_relay()
                if ready := state.get("runs_ready", 0):
                    self.runs_ready(ready)
                if revoked := state.get("tokens_revoked"):
                    self.tokens_revoked(revoked)
            await send(message)

        await self.app(scope, receive, send_then_tell)
