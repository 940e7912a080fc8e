"""What `rid serve` says before uvicorn starts: the address to open, the model, the web app and
where the API docs are, in plain lines."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from server_fallback.app import web_dist_problem

ALL_INTERFACES = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def open_url(host: str, port: int) -> str:
    """The address a person on this machine opens: a host listening on all interfaces is reached
    at the loopback address; an IPv6 address goes in brackets."""
    host = ALL_INTERFACES.get(host, host)
    try:
        bracket = ipaddress.ip_address(host).version == 6
    except ValueError:  # a name, such as localhost
        bracket = False
    return f"http://{f'[{host}]' if bracket else host}:{port}/"


def startup_lines(host: str, port: int, manifest: dict, model_folder: Path, web_dist: Path) -> list[str]:
    """The lines, in order: open, model, web app, API docs."""
    url = open_url(host, port)
    where = (f" (it listens on all interfaces, {host or '0.0.0.0'}: from another machine, use this one's address)"
             if host in ALL_INTERFACES else "")
    problem = web_dist_problem(web_dist)
    web = f"{web_dist.resolve()} (complete)" if problem is None else f"none ({problem}); serving the API only"
    eps = manifest.get("eps_levels")
    return [
        f"Open {url} in a browser{where}.",
        f"Model: {manifest.get('name', '?')}{f' (eps {eps}/255)' if eps else ''}, from {model_folder.resolve()}",
        f"Web app: {web}",
        f"API docs: {url}docs",
    ]
