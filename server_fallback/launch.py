"""Start the app in a uvicorn subprocess on 127.0.0.1 and wait until it answers: for tests and
benchmarks that need real HTTP over a socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx

from server_fallback.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, path: str = "/readyz", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url}{path} not ready after {timeout} s")


@contextmanager
def running(settings: Settings, env: dict | None = None, port: int | None = None, ready_path: str = "/readyz"):
    """(base url, process) of `uvicorn server_fallback.app:create_app` with these settings, once
    `ready_path` answers 200: /readyz (the model passed its self-check) or /healthz (it is up:
    for callers that want to see a failing self-check in the API's answers, not wait for it)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "uvicorn", "server_fallback.app:create_app", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env={**os.environ, **settings.to_env(), **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, ready_path)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
