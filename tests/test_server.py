"""The server fallback over real HTTP: a live uvicorn on 127.0.0.1 serving the bundled model."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from PIL import Image

from bad_inputs import corpus, encode, photo, with_orientation
from server_fallback.launch import free_port, running, wait_ready
from server_fallback.settings import Settings

MAX_BODY = 8 * 2**20
ORIGIN = "http://widget.test"


@pytest.fixture(scope="module")
def web_dist(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    (dist / "index.html").write_text("<!doctype html><title>RID</title>")
    (dist / "assets").mkdir()
    (dist / "assets" / "app-3F9A1C2B.js").write_text("export {};")
    (dist / "ort-wasm-simd-threaded.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00")
    (dist / "ort-wasm-simd-threaded.mjs").write_text("export {};")
    files = sorted(str(f.relative_to(dist)) for f in dist.rglob("*") if f.is_file())
    (dist / "build.json").write_text(json.dumps({"files": files}))  # written last, as web/build.mjs does
    return dist


@pytest.fixture(scope="module")
def server(web_dist, tmp_path_factory):
    """(base url, process, its TMPDIR). Two job slots and a queue of four, so that 8 concurrent
    clients overload it."""
    tmpdir = tmp_path_factory.mktemp("server-tmp")
    settings = Settings(web_dist=web_dist, max_body_bytes=MAX_BODY, jobs=2, queue=4, rate_limit="100000/minute",
                        cors_origins=[ORIGIN])
    with running(settings, env={"TMPDIR": str(tmpdir)}) as (url, proc):
        yield url, proc, tmpdir


def post(url: str, name: str, data: bytes, timeout: float = 60, **fields) -> httpx.Response:
    return httpx.post(url + "/v1/protect", files={"file": (name, data, "application/octet-stream")},
                      data={k: str(v) for k, v in fields.items()}, timeout=timeout)


def test_health_ready_and_models(server):
    url = server[0]
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(url + "/readyz").json()
    assert ready["status"] == "ready" and all(case["passes"] for case in ready["self_check"].values())
    models = httpx.get(url + "/v1/models").json()["models"]
    assert models[0]["manifest"]["web_default_file"] == "model.w16.onnx"
    manifest = httpx.get(url + models[0]["manifest_url"])
    assert manifest.status_code == 200 and manifest.json() == models[0]["manifest"]
    onnx = httpx.get(url + models[0]["manifest_url"].replace("manifest.json", "model.w16.onnx"))
    assert len(onnx.content) == manifest.json()["files"]["model.w16.onnx"]["bytes"]


def test_protect_returns_the_protected_photo_with_headers(server):
    rgb = np.asarray(photo(120, 90))
    r = post(server[0], "my photo.jpg", encode(Image.fromarray(rgb), "PNG"), eps=4, format="webp-lossless")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/webp" and r.headers["x-rid-eps"] == "4"
    assert r.headers["x-rid-model"] and len(r.headers["x-rid-model-sha256"]) == 64 and float(r.headers["x-rid-processing-ms"]) > 0
    assert 'filename="my_photo.protected.webp"' in r.headers["content-disposition"]
    out = np.asarray(Image.open(io.BytesIO(r.content)))
    assert out.shape == rgb.shape and 0 < np.abs(out.astype(int) - rgb).max() <= 4


@pytest.mark.parametrize("fmt, name, media_type", [("png", "grace.hopper.jpg", "image/png"), ("jpeg", "grace.hopper.jpg", "image/jpeg"),
                                                    ("webp", "grace.hopper.jpg", "image/webp"), ("webp-lossless", "grace.hopper.jpg", "image/webp"),
                                                    ("jpeg", "C:\\photos\\Zoë café.png", "image/jpeg")],
                         ids=["png", "jpeg", "webp", "webp-lossless-alias", "jpeg-non-ascii-name"])
def test_each_format_gives_its_type_and_protected_name(server, fmt, name, media_type):
    """The Content-Disposition name is ridpixels.protected_name's (filename= in plain ASCII,
    filename*= in UTF-8 where they differ); webp-lossless, the old name, still gives WebP."""
    from urllib.parse import quote

    import ridpixels

    rgb = np.asarray(photo(120, 90))
    r = post(server[0], name, encode(Image.fromarray(rgb), "PNG"), format=fmt)
    assert r.status_code == 200, r.text
    canonical = {"webp-lossless": "webp"}.get(fmt, fmt)
    expected = ridpixels.protected_name(name, canonical)
    assert r.headers["content-type"] == media_type == ridpixels.OUTPUT_FORMATS[canonical]["media_type"]
    disposition = r.headers["content-disposition"]
    if expected.isascii() and " " not in expected:
        assert disposition == f'inline; filename="{expected}"'
    else:
        assert disposition == f'inline; filename="Zo__caf_.protected.jpg"; filename*=UTF-8\'\'{quote(expected, safe="")}'
    out = Image.open(io.BytesIO(r.content))
    assert out.format == {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}[media_type] and out.size == (90, 120)
    change = np.abs(np.asarray(out.convert("RGB")).astype(int) - rgb).max()
    assert 0 < change <= 8 if ridpixels.OUTPUT_FORMATS[canonical]["lossless"] else change > 0


def test_jpeg_of_a_photo_with_transparent_parts_is_422_alpha_not_supported(server):
    rgba = np.asarray(photo(60, 50, mode="RGBA")).copy()
    rgba[:5, :5, 3] = 0
    data = encode(Image.fromarray(rgba), "PNG")
    r = post(server[0], "logo.png", data, format="jpeg")
    assert (r.status_code, r.json()) == (422, {"code": "alpha_not_supported", "detail": "this photo has transparent parts, "
                                                                                        "which JPEG cannot keep: choose PNG or WebP"})
    ok = post(server[0], "logo.png", data, format="png")  # the lossless formats keep it
    assert ok.status_code == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(ok.content)))[..., 3], rgba[..., 3])


def test_output_bytes_equal_rid_protect_backend_onnx(server, corpus, tmp_path):
    from rid.protect import run_protect

    src, seed = corpus / "heldout" / "rocket.jpg", "c0ffee00" * 4
    assert run_protect([src], tmp_path, "default", backend="onnx", seed=seed) == 0
    r = post(server[0], src.name, src.read_bytes(), seed=seed)
    assert r.status_code == 200 and r.content == (tmp_path / "rocket.png").read_bytes()


def test_each_protection_draws_a_fresh_seed_and_tells_no_one(server):
    rgb = np.asarray(photo(120, 90))
    data = encode(Image.fromarray(rgb), "PNG")
    first, second = post(server[0], "a.png", data), post(server[0], "a.png", data)
    a, b = (np.asarray(Image.open(io.BytesIO(r.content))).astype(int) for r in (first, second))
    assert not np.array_equal(a, b)  # two random seeds: two different protections ...
    assert all(0 < np.abs(v - rgb).max() <= 8 for v in (a, b))  # ... both within +-eps
    assert not any("seed" in k.lower() for r in (first, second) for k in r.headers)  # the seed is not sent back


def test_exif_orientation_is_applied_and_metadata_stripped(server):
    r = post(server[0], "o6.jpg", with_orientation(6))  # 60 x 40 stored, rotated 90 degrees
    out = Image.open(io.BytesIO(r.content))
    assert r.status_code == 200 and out.size == (40, 60) and not out.getexif()


@pytest.mark.parametrize("name,data,status,code", corpus(), ids=[c[0] for c in corpus()])
def test_bad_input_corpus(server, name, data, status, code):
    r = post(server[0], name, data)
    assert r.status_code == status, (r.status_code, r.text[:200])
    if status != 200:
        body = r.json()
        assert set(body) == {"code", "detail"} and (code is None or body["code"] == code), body


def test_request_errors_are_json_with_codes(server):
    url, png = server[0], encode(photo(), "PNG")
    cases = [
        (post(url, "a.png", png, eps=5), 422, "bad_eps"),
        (post(url, "a.png", png, seed="not-hex"), 422, "bad_seed"),
        (post(url, "a.png", png, format="gif"), 422, "bad_request"),
        (httpx.post(url + "/v1/protect", data={"eps": "8"}), 422, "bad_request"),  # no file
        (httpx.post(url + "/v1/protect", content=b"x" * 100, headers={"content-type": "multipart/form-data; boundary=zz"}), 400, "bad_request"),
        (post(url, "big.png", b"\x89PNG\r\n\x1a\n" + os.urandom(MAX_BODY)), 413, "body_too_large"),
        (httpx.get(url + "/v1/nothing"), 404, "not_found"),
        (httpx.get(url + "/v1/protect"), 405, "method_not_allowed"),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["code"]) == (status, code), response.text[:200]


def test_a_chunked_body_over_the_limit_is_cut_off_with_413(server):
    def chunks():  # a well-formed multipart start, then a file part that never ends
        yield b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        for _ in range(MAX_BODY // 2**20 + 2):
            yield b"\x00" * 2**20

    r = httpx.post(server[0] + "/v1/protect", content=chunks(), headers={"content-type": "multipart/form-data; boundary=zz"}, timeout=60)
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"


def test_still_healthy_after_the_corpus(server):
    url = server[0]
    assert httpx.get(url + "/healthz").status_code == 200
    assert post(url, "good.jpg", encode(photo(), "JPEG")).status_code == 200


def test_uploads_never_touch_the_disk(server):
    """The server's TMPDIR holds no new file after large uploads (what is there came at start-up:
    torch's and onnxruntime's own folders)."""
    url, proc, tmpdir = server
    before = sorted(Path(tmpdir).rglob("*"))
    big = encode(photo(1400, 1400, seed=3), "PNG")  # over Starlette's 1 MB spool threshold
    assert len(big) > 2**20
    for _ in range(3):
        assert post(url, "big.png", big).status_code == 200
    assert post(url, "big.png", big[: len(big) // 2]).status_code == 422
    assert sorted(Path(tmpdir).rglob("*")) == before


def test_static_app_headers_and_mime_types(server):
    url = server[0]
    index = httpx.get(url + "/")
    assert index.status_code == 200 and "RID" in index.text
    assert index.headers["cross-origin-opener-policy"] == "same-origin"
    assert index.headers["cross-origin-embedder-policy"] == "require-corp"
    assert "default-src 'self'" in index.headers["content-security-policy"] and index.headers["cache-control"] == "no-cache"
    hashed = httpx.get(url + "/assets/app-3F9A1C2B.js")
    assert hashed.headers["content-type"].startswith("text/javascript") and "immutable" in hashed.headers["cache-control"]
    assert httpx.get(url + "/ort-wasm-simd-threaded.wasm").headers["content-type"] == "application/wasm"
    mjs = httpx.get(url + "/ort-wasm-simd-threaded.mjs")
    assert mjs.headers["content-type"].startswith("text/javascript") and mjs.headers["cache-control"] == "no-cache"


def test_docs_load_only_from_this_server(server):
    """/docs and /redoc reference no other site (no CDN): their files come from /docs-assets/, each
    with its type, and their CSP keeps every request on this origin."""
    url = server[0]
    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
    for page in ("/docs", "/redoc"):
        r = httpx.get(url + page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "http://" not in r.text and "https://" not in r.text
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "http" not in csp
        refs = re.findall(r'(?:src|href|spec-url)="([^"]+)"|url: \'([^\']+)\'', r.text)
        paths = sorted({a or b for a, b in refs})
        assert "/openapi.json" in paths and any(p.startswith("/docs-assets/") and p.endswith(".js") for p in paths), paths
        for path in paths:
            assert path.startswith("/") and not path.startswith("//"), path
            asset = httpx.get(url + path)
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(types[Path(path).suffix]), path
    assert httpx.get(url + "/docs/oauth2-redirect").status_code == 200
    # the page's one inline script is the one its CSP allows
    script = re.search(r"<script>(.*?)</script>", httpx.get(url + "/docs").text, re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in httpx.get(url + "/docs").headers["content-security-policy"]


def test_cors_is_open_only_to_configured_origins(server):
    url = server[0]
    preflight = {"Access-Control-Request-Method": "POST"}
    ok = httpx.options(url + "/v1/protect", headers={"Origin": ORIGIN, **preflight})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    bad = httpx.options(url + "/v1/protect", headers={"Origin": "http://elsewhere.test", **preflight})
    assert "access-control-allow-origin" not in bad.headers
    r = httpx.post(url + "/v1/protect", files={"file": ("a.png", encode(photo(), "PNG"))}, headers={"Origin": ORIGIN}, timeout=60)
    assert r.headers["access-control-allow-origin"] == ORIGIN and "x-rid-model" in r.headers["access-control-expose-headers"].lower()


def test_openapi_documents_the_api(server):
    spec = httpx.get(server[0] + "/openapi.json").json()
    protect = spec["paths"]["/v1/protect"]["post"]
    assert {"200", "413", "415", "422", "429", "503"} <= set(protect["responses"])
    body = protect["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert {"file", "eps", "format", "keep_metadata"} <= set(spec["components"]["schemas"][body]["properties"])


def test_bounded_load_overload_is_503_and_memory_is_stable(server):
    """500 requests at 8 concurrent clients against 2 job slots + 4 queued: every answer is a
    200 or a 503 with Retry-After, none times out, and the server's memory does not grow."""
    url, proc = server[0], psutil.Process(server[1].pid)
    data = encode(photo(64, 64), "PNG")

    def one(_):
        with httpx.Client(timeout=60) as client:
            r = client.post(url + "/v1/protect", files={"file": ("a.png", data)})
            return r.status_code, r.headers.get("retry-after")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(40)))  # warm-up
        rss_warm = proc.memory_info().rss
        results = list(pool.map(one, range(500)))
    statuses = [s for s, _ in results]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 100, {s: statuses.count(s) for s in set(statuses)}
    assert statuses.count(503) > 0  # 8 clients against 6 places: overload must show, as 503
    assert all(retry == "2" for s, retry in results if s == 503)
    assert proc.memory_info().rss <= rss_warm + 64 * 2**20
    assert httpx.get(url + "/healthz").status_code == 200


def test_rate_limit_answers_429(tmp_path):
    from fastapi.testclient import TestClient

    from server_fallback.app import create_app

    with TestClient(create_app(Settings(web_dist=tmp_path / "none", rate_limit="2/minute"))) as client:
        codes = [client.post("/v1/protect", files={"file": ("a.png", encode(photo(16, 16), "PNG"))}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = client.post("/v1/protect", files={"file": ("a.png", b"x")})
        assert r.json()["code"] == "rate_limited" and "retry-after" in r.headers
        assert client.get("/").json()["code"] == "web_not_built"


def test_a_failed_self_check_is_not_ready(tmp_path):
    from fastapi.testclient import TestClient

    from ridexport.backends import onnx_folder
    from server_fallback.app import create_app

    folder = tmp_path / "export"
    shutil.copytree(onnx_folder("default"), folder)
    case = json.loads((folder / "fixture" / "parity.json").read_text())["photos"][0]
    expected = np.fromfile(folder / "fixture" / case["protected_f32"], dtype="<f4")
    (expected + 0.01).astype("<f4").tofile(folder / "fixture" / case["protected_f32"])
    with TestClient(create_app(Settings(model=str(folder), web_dist=tmp_path / "none"))) as client:
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["code"] == "not_ready"
        assert client.post("/v1/protect", files={"file": ("a.png", encode(photo(), "PNG"))}).status_code == 503


def half_written(dist: Path) -> Path:
    """What a web build that failed part-way used to leave: assets/ and nothing else."""
    (dist / "assets").mkdir(parents=True)
    (dist / "assets" / "ort.wasm.min.mjs").write_text("export {};")
    return dist


def test_a_web_build_missing_a_listed_file_is_incomplete(web_dist, tmp_path):
    from server_fallback.app import web_dist_problem

    assert web_dist_problem(web_dist) is None
    copy = tmp_path / "dist"
    shutil.copytree(web_dist, copy)
    (copy / "assets" / "app-3F9A1C2B.js").unlink()
    problem = web_dist_problem(copy)
    assert "incomplete" in problem and "assets/app-3F9A1C2B.js" in problem and "npm run build" in problem
    assert "no readable build.json" in web_dist_problem(half_written(tmp_path / "half"))


@pytest.mark.parametrize("dist, says", [(lambda tmp: tmp / "missing", "web app not built"),
                                        (lambda tmp: half_written(tmp / "half"), "web app incomplete")],
                         ids=["missing", "half-written"])
def test_rid_serve_without_a_web_build_says_so_in_one_line(tmp_path, dist, says):
    port = free_port()
    cmd = [sys.executable, "-m", "rid.cli", "serve", "--port", str(port), "--web-dist", str(dist(tmp_path))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, "/healthz")
        r = httpx.get(f"http://127.0.0.1:{port}/")
        assert r.status_code == 503 and "npm ci && npm run build" in r.json()["detail"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    first = err.splitlines()[0]
    assert says in first and "npm ci && npm run build" in first and "Traceback" not in err


def test_rid_serve_says_where_to_open_the_model_and_the_web_app(web_dist):
    port = free_port()
    cmd = [sys.executable, "-m", "rid.cli", "serve", "--port", str(port), "--web-dist", str(web_dist)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, "/healthz")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    from ridexport.backends import onnx_folder

    folder = onnx_folder("default")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert out.splitlines()[:4] == [
        f"Open http://127.0.0.1:{port}/ in a browser.",
        f"Model: {manifest['name']} (eps {manifest['eps_levels']}/255), from {folder.resolve()}",
        f"Web app: {web_dist.resolve()} (complete)",
        f"API docs: http://127.0.0.1:{port}/docs",
    ], (out, err)
    assert "Traceback" not in err


def test_startup_lines_for_all_interfaces_and_a_missing_web_app(tmp_path):
    from server_fallback.startup import open_url, startup_lines

    assert open_url("0.0.0.0", 80) == "http://127.0.0.1:80/" and open_url("::", 80) == "http://[::1]:80/"
    assert open_url("localhost", 8000) == "http://localhost:8000/" and open_url("fe80::1", 1) == "http://[fe80::1]:1/"
    lines = startup_lines("0.0.0.0", 8000, {"name": "m"}, tmp_path, tmp_path / "none")
    assert lines[0].startswith("Open http://127.0.0.1:8000/ in a browser (it listens on all interfaces, 0.0.0.0")
    assert lines[1] == f"Model: m, from {tmp_path.resolve()}"
    assert lines[2].startswith("Web app: none (web app not built") and lines[2].endswith("serving the API only")
    assert lines[3] == "API docs: http://127.0.0.1:8000/docs"


def test_rid_serve_refuses_a_missing_model_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "rid.cli", "serve", "--model", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "cannot serve model" in done.stderr and "Traceback" not in done.stderr
