"""Bounds on what one request may cost: the body size (checked while it streams in) and the
number of photos protected at once, with a short queue and 503 beyond it."""

from __future__ import annotations

import anyio
import anyio.to_thread

from server_fallback.errors import ApiError, error_response


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 when Content-Length says the body is too large, and 413 as soon as a
    streamed body passes the limit, before the rest is read. Whatever the app then answers
    (FastAPI turns any error while parsing a form into a 400) is replaced by the 413."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._too_large(scope, receive, send)
        seen, exceeded, answered = 0, False, False

        async def limited():
            nonlocal seen, exceeded
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                exceeded = True
                raise BodyTooLarge()
            return message

        async def guarded(message):
            nonlocal answered
            if exceeded:
                if not answered:
                    answered = True
                    await self._too_large(scope, receive, send)
                return
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except BodyTooLarge:
            pass
        if exceeded and not answered:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope, receive, send):
        response = error_response(413, "body_too_large", f"request body over the limit of {self.max_bytes} bytes",
                                  {"Connection": "close"})
        await response(scope, receive, send)


class JobGate:
    """At most `jobs` photos in worker threads at once and `queue` more waiting; past that,
    ApiError 503 with Retry-After. The counters live on the event loop's thread only."""

    def __init__(self, jobs: int, queue: int, retry_after_s: int):
        self.limiter = anyio.CapacityLimiter(jobs)
        self.capacity, self.retry_after_s, self.pending = jobs + queue, retry_after_s, 0

    async def run(self, fn, *args):
        if self.pending >= self.capacity:
            raise ApiError(503, "overloaded", "the server is busy; retry shortly", {"Retry-After": str(self.retry_after_s)})
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        finally:
            self.pending -= 1
