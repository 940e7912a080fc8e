"""Static files with the headers the web app needs: cross-origin isolation (COOP/COEP, so WASM
can use threads), a strict CSP, correct MIME types for .wasm/.mjs, and cache lifetimes."""

from __future__ import annotations

import mimetypes

from starlette.staticfiles import StaticFiles

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")

# 'wasm-unsafe-eval' lets onnxruntime-web compile its .wasm; blob: workers are how it starts threads.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
       "connect-src 'self'; img-src 'self' blob: data:; style-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
# The web build writes content-hashed file names (app-3F9A1C2B.js) into assets/ and nothing else
# there: such a URL changes whenever the content does, so it may be cached for a year.
HASHED_DIR = "assets/"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


# The widget's example host page stands for another site: it gets no cross-origin isolation.
NOT_ISOLATED = "examples/"


class WebFiles(StaticFiles):
    """The built web app: isolated and under the CSP; hashed assets immutable."""

    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        if not path.startswith(NOT_ISOLATED):
            response.headers.update(ISOLATION)
        response.headers.update({"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                 "Cross-Origin-Resource-Policy": "cross-origin",  # the widget loads from other sites
                                 "Cache-Control": IMMUTABLE if path.startswith(HASHED_DIR) else REVALIDATE})
        return response


class ModelFiles(StaticFiles):
    """An export folder (manifest, ONNX files, fixture). Browsers key their cache by the sha256
    in the manifest, so HTTP only revalidates."""

    async def get_response(self, path, scope):
        response = await super().get_response(path, scope)
        response.headers.update({"Cross-Origin-Resource-Policy": "cross-origin", "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": REVALIDATE})
        return response
