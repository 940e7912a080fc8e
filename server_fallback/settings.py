"""Server settings: plain values, read from RID_* environment variables so that every uvicorn
worker process (`rid serve --workers N`) builds the same app."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from ridtrain.pixels import MAX_PIXELS

WEB_DIST = Path(__file__).resolve().parents[1] / "web" / "dist"
BUILD_WEB = "cd web && npm ci && npm run build"


@dataclass
class Settings:
    model: str = "default"  # bundled name, saved generator folder, or export folder
    web_dist: Path = WEB_DIST
    max_body_bytes: int = 40 * 2**20  # 413 above; a 24 MP JPEG is ~10 MB, a 24 MP PNG up to ~40 MB
    max_pixels: int = MAX_PIXELS  # header check before decoding; 413 above
    jobs: int = 2  # photos protected at once, each in a worker thread
    queue: int = 8  # requests that may wait for a job slot; beyond that, 503 + Retry-After
    retry_after_s: int = 2
    threads: int = 0  # onnxruntime intra-op threads per session; 0: cores / jobs
    cors_origins: list[str] = field(default_factory=list)  # the widget's host sites; closed by default
    rate_limit: str = "120/minute"  # per client address, on /v1/protect (slowapi syntax)

    @classmethod
    def from_env(cls, environ=os.environ) -> "Settings":
        values = {}
        for f in fields(cls):
            raw = environ.get(f"RID_{f.name.upper()}")
            if raw is None:
                continue
            if f.name == "cors_origins":
                values[f.name] = [o.strip() for o in raw.split(",") if o.strip()]
            elif f.name == "web_dist":
                values[f.name] = Path(raw)
            elif f.type == "int":
                values[f.name] = int(raw)
            else:
                values[f.name] = raw
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            env[f"RID_{f.name.upper()}"] = ",".join(value) if isinstance(value, list) else str(value)
        return env

    def onnx_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.jobs)
