"""What the browser tests share: Debian's Chromium with our flags, the built web app (web/dist)
and the real server app over HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

import pytest

from ridexport.browser import CHROMIUM, launch  # noqa: F401  (the tests' one way to start Chromium)
from server_fallback.launch import running
from server_fallback.settings import WEB_DIST, Settings

REPO = Path(__file__).resolve().parents[1]
DIST = WEB_DIST
# A repository path or file name, where a person reads: letters on both sides of a slash
# (ridtrain/weights, proxies/proxy-a; not 8/255).
PATH_LIKE = re.compile(r"(?<![\w.-])[A-Za-z_][\w.-]*/[A-Za-z_][\w.-]*")


def require_browser(missing: str | None = None):
    """The skip mark of a browser test module: it needs CHROMIUM and DIST/index.html, and whatever
    `missing` names (a reason, or None). Under RID_REQUIRE_BROWSER (CI) a missing browser is a
    failure, never a skip."""
    reason = missing or ("" if Path(CHROMIUM).exists() and (DIST / "index.html").exists() else
                         f"needs {CHROMIUM} and {DIST}/index.html (scripts/setup.sh installs and builds both)")
    if reason and os.environ.get("RID_REQUIRE_BROWSER"):
        raise RuntimeError(f"browser tests cannot run: {reason}")
    return pytest.mark.skipif(bool(reason), reason=reason or "runs")


@contextmanager
def serving():
    """The base URL of the server app serving DIST and the bundled model, without a rate limit that tests would hit."""
    with running(Settings(web_dist=DIST, rate_limit="100000/minute")) as (url, _):
        yield url


def run_app(page, url: str | None, files: list[tuple[str, bytes]], tmp_path, verify: bool = False) -> list:
    """The app at `url` (None: the page as it is): the photos written to tmp_path and chosen at
    once; waits for every row to be done or failed (in verify mode, for every verdict)."""
    if url is not None:
        page.goto(url)
    page.wait_for_selector("body[data-ready=yes]", timeout=120_000)
    paths = []
    for name, data in files:
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    page.set_input_files("#files", paths)
    done = "li => li.dataset.verify && li.dataset.verify !== 'pending'" if verify else \
        "li => li.classList.contains('done') || li.classList.contains('failed')"
    page.wait_for_function(f"n => {{ const rows = [...document.querySelectorAll('#photos li')]; return rows.length === n && rows.every({done}); }}",
                           arg=len(files), timeout=300_000)
    return page.locator("#photos li").all()
