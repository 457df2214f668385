"""The dashboard at /ui: static files shipped in the package (services/gateway/ui/static).

The files hold no data, so they load without a key; every call the page makes goes to the API
with the key the user entered (`Authorization: Bearer`), and a refused key shows the login
again. Nothing is fetched from elsewhere: the Content-Security-Policy allows this origin only.
"""

from __future__ import annotations

from pathlib import Path

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).with_name("ui") / "static"
PREFIX = "/ui"

# Styles: uPlot sets inline style attributes on the elements it makes.
_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; connect-src 'self'; "
                                 b"img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                 b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # Revalidate every load (ETag/Last-Modified make that cheap), so a new gateway version's
    # modules never mix with an old cached one.
    (b"cache-control", b"no-cache"),
]


class _SecurityHeaders:
    """Adds the headers above to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def routes() -> list[Route | Mount]:
    """`/ui` (a redirect to `/ui/`, so the page's relative URLs resolve) and the files under it."""

    async def to_slash(request: Request) -> Response:
        return RedirectResponse(PREFIX + "/", status_code=308)

    # Compressed: the first load (scripts, uPlot, the world outline) shrinks about fourfold.
    files = GZipMiddleware(_SecurityHeaders(StaticFiles(directory=STATIC, html=True)), minimum_size=1024)
    return [Route(PREFIX, to_slash, methods=["GET", "HEAD"]),
            Mount(PREFIX, app=files, name="dashboard")]
