"""The FastAPI app: the web app at /, export folders at /models/NAME/, and the API.

    POST /v1/protect   multipart: file, eps?, format? (png | jpeg | webp; webp-lossless is webp's
                       old name), keep_metadata?, seed?; the protected photo, named
                       NAME.protected.EXT (ridpixels.protected_name) in Content-Disposition
    GET  /v1/models    the manifests served
    GET  /healthz      the process answers
    GET  /readyz       the model is loaded and passed its parity self-check at start-up
    GET  /docs, /redoc the API's docs (Swagger UI, ReDoc), their files served here (docs.py): no network needed

Run it with `rid serve` (uvicorn); settings come from RID_* variables (settings.py).
"""

from __future__ import annotations

import json
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address
from starlette.formparsers import MultiPartParser

from ridpixels import OUTPUT_FORMATS, protected_name
from ridtrain.defender.seeds import parse_seed
from server_fallback import docs, errors
from server_fallback.limits import BodyLimit, JobGate
from server_fallback.settings import BUILD_WEB, Settings
from server_fallback.static import ModelFiles, WebFiles
from server_fallback.uploads import FORMAT_CHOICES, output_format, protect_upload

MODEL_HEADERS = ("X-RID-Model", "X-RID-Model-SHA256", "X-RID-Processing-Ms", "X-RID-Eps")


class ErrorBody(BaseModel):
    code: str = Field(examples=["unsupported_type"], description="stable, for programs")
    detail: str = Field(examples=["not a JPEG, PNG or WebP image (judged by its content, not its name)"])


ERRORS = {
    413: "body_too_large, too_many_pixels (checked from the header, before decoding)",
    415: "unsupported_type: the content is not JPEG, PNG or WebP",
    422: "empty_file, corrupt_image (also truncated, or unreadable behind valid magic bytes), unsupported_mode, "
         "alpha_not_supported (a photo with transparent parts asked for as jpeg), bad_eps, bad_seed, bad_request",
    429: "rate_limited (per client address); see Retry-After",
    503: "overloaded: all job slots and the queue are busy; see Retry-After",
}


FORMAT_HELP = ("png and webp are lossless; jpeg (quality " + str(OUTPUT_FORMATS["jpeg"]["quality"]) + ") is the smaller "
               "file and keeps no transparency (422 alpha_not_supported); webp-lossless is webp's old name")


def content_disposition(upload_name: str | None, fmt: str) -> str:
    """inline, named NAME.protected.EXT (ridpixels.protected_name): filename= in plain ASCII (other
    characters become _, the stem at most 100 of them), and, where the name has others,
    filename*= with the name as uploaded, in UTF-8 (RFC 6266), which browsers prefer."""
    name = protected_name(upload_name or "photo", fmt)
    suffix = f".protected.{OUTPUT_FORMATS[fmt]['extension']}"
    plain = (re.sub(r"[^A-Za-z0-9._-]", "_", name[:-len(suffix)])[:100] or "photo") + suffix
    value = f'inline; filename="{plain}"'
    return value if plain == name else value + f"; filename*=UTF-8''{quote(name, safe='')}"


def web_dist_problem(web_dist: Path) -> str | None:
    """Why the built web app cannot be served, or None. web/build.mjs writes build.json last,
    listing every file of the build: a folder without it, or without one of its files, is what a
    build that stopped part-way (or a copy cut short) leaves, and serving it gives a blank page."""
    if not web_dist.is_dir():
        return f"web app not built ({web_dist} is missing): run `{BUILD_WEB}`"
    try:
        files = json.loads((web_dist / "build.json").read_text()).get("files", ["index.html"])
    except (OSError, ValueError, AttributeError):
        return f"web app incomplete ({web_dist} has no readable build.json: a build stopped part-way): run `{BUILD_WEB}`"
    missing = [f for f in files if not (web_dist / f).is_file()]
    if missing:
        return (f"web app incomplete ({web_dist} lacks {len(missing)} of the {len(files)} files its build.json lists, "
                f"such as {missing[0]}): run `{BUILD_WEB}`")
    return None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    # Starlette spools uploads over 1 MB to a temporary file; uploads must never touch the disk.
    # The body limit below keeps every upload under this spool size, so it stays in memory.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, settings.max_body_bytes + 1)
    gate = JobGate(settings.jobs, settings.queue, settings.retry_after_s)
    limiter = Limiter(key_func=get_remote_address)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from ridexport.backends import load_backend
        from ridexport.parity import self_check

        protector = load_backend(settings.model, "onnx", threads=settings.onnx_threads())
        app.state.protector = protector
        app.state.self_check = self_check(protector)
        app.state.ready = all(case["passes"] for case in app.state.self_check.values())
        yield

    app = FastAPI(title="RID server fallback", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Protects photos with the same exported ONNX generator that the browser runs.")
    docs.install(app)  # /docs and /redoc from packaged files, not a CDN
    app.state.limiter = limiter
    errors.install(app)

    @app.exception_handler(RateLimitExceeded)
    async def rate_limited(request: Request, exc: RateLimitExceeded):
        return errors.error_response(429, "rate_limited", f"rate limit exceeded: {exc.detail}", {"Retry-After": "60"})

    @app.get("/healthz", tags=["health"])
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorBody}})
    async def readyz(request: Request):
        state = request.app.state
        if not getattr(state, "ready", False):
            return errors.error_response(503, "not_ready", f"model not loaded or parity self-check failed: {getattr(state, 'self_check', None)}")
        return {"status": "ready", "model": state.protector.manifest["name"], "self_check": state.self_check}

    @app.get("/v1/models", tags=["models"])
    async def models(request: Request):
        manifest = request.app.state.protector.manifest
        return {"models": [{"name": manifest["name"], "manifest_url": f"/models/{manifest['name']}/manifest.json", "manifest": manifest}]}

    @app.post(
        "/v1/protect",
        tags=["protect"],
        response_class=Response,
        responses={200: {"content": {spec["media_type"]: {} for spec in OUTPUT_FORMATS.values()},
                         "description": "the protected image, named NAME.protected.EXT in Content-Disposition; headers: "
                         + ", ".join(MODEL_HEADERS)},
                   **{status: {"model": ErrorBody, "description": text} for status, text in ERRORS.items()}},
    )
    @limiter.limit(settings.rate_limit)
    async def protect(
        request: Request,
        file: UploadFile = File(..., description="JPEG, PNG or WebP photo"),
        eps: int | None = Form(None, description="bound in 8-bit levels; default the model's", examples=[8]),
        format: Literal[FORMAT_CHOICES] = Form("png", description=FORMAT_HELP),
        keep_metadata: bool = Form(False, description="keep EXIF (GPS included); stripped by default"),
        seed: str | None = Form(None, description="32 hex digits, to reproduce bytes in parity checks only; omit it "
                                "in real use: the server then draws a fresh secret seed per photo and keeps none"),
    ):
        if not request.app.state.ready:
            raise errors.ApiError(503, "not_ready", "the model failed its parity self-check at start-up; see /readyz")
        protector = request.app.state.protector
        if eps is not None and eps not in protector.eps_allowed:
            raise errors.ApiError(422, "bad_eps", f"eps must be one of {protector.eps_allowed}, got {eps}")
        if seed is not None:
            try:
                seed = parse_seed(seed)
            except ValueError as err:
                raise errors.ApiError(422, "bad_seed", str(err)) from None
        data = await file.read()
        fmt = output_format(format)
        body, ms = await gate.run(protect_upload, protector, data, eps, fmt, keep_metadata, settings.max_pixels, seed)
        manifest = protector.manifest
        headers = {"X-RID-Model": manifest["name"], "X-RID-Model-SHA256": manifest["files"][protector.generator.file]["sha256"],
                   "X-RID-Processing-Ms": f"{ms:.1f}", "X-RID-Eps": str(protector.check_eps(eps)),
                   "Content-Disposition": content_disposition(file.filename, fmt), "Cache-Control": "no-store"}
        return Response(body, media_type=OUTPUT_FORMATS[fmt]["media_type"], headers=headers)

    @app.api_route("/v1/protect", methods=["GET", "HEAD", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def protect_wrong_method():
        # Without this, the web app mounted at / would answer these with its 404.
        raise errors.ApiError(405, "method_not_allowed", "use POST with a multipart form", {"Allow": "POST"})

    _mount_files(app, settings)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["*"], expose_headers=list(MODEL_HEADERS))
    return app


def _mount_files(app: FastAPI, settings: Settings) -> None:
    """/models/NAME/ (the export folder) and / (the web app, or one line on how to build it)."""
    from ridexport.backends import onnx_folder

    folder = onnx_folder(settings.model)
    name = json.loads((folder / "manifest.json").read_text())["name"]  # verified at start-up (lifespan)
    app.mount(f"/models/{name}", ModelFiles(directory=folder), name="models")
    problem = web_dist_problem(settings.web_dist)
    if problem is None:
        app.mount("/", WebFiles(directory=settings.web_dist, html=True), name="web")
        return

    @app.get("/", include_in_schema=False)
    async def no_web_app():
        return JSONResponse({"code": "web_not_built", "detail": problem}, status_code=503)
