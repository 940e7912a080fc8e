"""/docs (Swagger UI) and /redoc without a network, by FastAPI's recipe for self-hosting the docs'
JavaScript and CSS: FastAPI's own pages load both from a CDN, so offline they stay blank.

The files are the ones the PyPI package fastapi-offline ships (Swagger UI 5, ReDoc 2), served
from /docs-assets/. Not swagger-ui-bundle: the newest release pip gets (1.1.0) holds Swagger UI
4.15.5, which refuses the OpenAPI 3.1 that FastAPI writes ("Unable to render this definition").
Swagger UI's validator badge is off (validatorUrl null): it would call an outside site.

The pages get a CSP of their own (static.py's is the web app's): every request stays on this
origin (ReDoc's footer would load Redocly's logo from its CDN; the CSP stops it, the page hides
the broken image), and the one inline script that FastAPI's HTML starts Swagger UI with is
allowed by its sha256, computed from the page as served. Both tools need inline styles.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
CSP = ("default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def assets_dir() -> Path:
    """The folder of fastapi-offline's packaged Swagger UI and ReDoc files."""
    folder = Path(str(files("fastapi_offline") / "static"))
    missing = [name for name in ASSETS if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"the API docs' files are missing from {folder}: {', '.join(missing)} (reinstall fastapi-offline)")
    return folder


def with_csp(page: HTMLResponse) -> HTMLResponse:
    """The page with CSP, its inline scripts allowed by their sha256."""
    scripts = INLINE_SCRIPT.findall(page.body.decode())
    hashes = "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()}'" for code in scripts)
    page.headers.update({"Content-Security-Policy": CSP.format(hashes=hashes), "X-Content-Type-Options": "nosniff"})
    return page


def install(app: FastAPI) -> None:
    """The docs' files at ASSETS_URL, /docs, its OAuth2 redirect page, and /redoc, on an app made
    with docs_url=None and redoc_url=None. Call it before anything is mounted at /."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return with_csp(get_swagger_ui_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title}: API",
            oauth2_redirect_url=root + redirect_url,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        ))

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return with_csp(get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return with_csp(get_redoc_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title}: API",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        ))
