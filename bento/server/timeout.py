"""The request timeout of the service's traffic settings (`traffic={"timeout": ...}`), without BentoML's cost.

BentoML's TimeoutMiddleware runs every request in a task of its own and arms a timer it never cancels (30 s of
timers stay pending under load): a tenth of a single-row request's CPU. `RequestTimeout` answers the same, in
the request's own task: past `timeout` seconds before the response starts, the request is cancelled and answered
504 with BentoML's body; once the response starts the timeout no longer applies, as BentoML's does.
bento/server/middlewares.py puts it in BentoML's stack in the place of BentoML's.
"""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestTimeout:
    """ASGI middleware: 504 where the response has not started within `timeout` seconds."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request under the deadline, disarmed by the response's first message."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def started_send(message: Message) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.app(scope, receive, started_send)
        except TimeoutError:
            if not deadline.expired() or started:  # not ours: the application's own
                raise
            answer = JSONResponse(
                {"error": f"Not able to process the request in {self.timeout} seconds"}, status_code=504
            )
            await answer(scope, receive, send)
