"""Settings from `OLDPHOTO_*` environment variables (SPEC "Settings"); `serve`'s flags override them."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OLDPHOTO_", extra="ignore")

    data_dir: Path = Path("./oldphoto-data")
    # serve's and worker's logs: one JSON object per line (json), or human-readable lines (text); oldphoto/logs.py.
    log_format: Literal["json", "text"] = "json"
    models_dir: Path = Path("~/.cache/oldphoto/models").expanduser()
    model: str = "ddcolor_paper_tiny"
    device: str = "auto"
    input_size: int = Field(512, ge=64, le=2048, multiple_of=32)
    ab_upsample: Literal["nearest", "bilinear"] = "bilinear"
    # DDColor's runtime: auto (ONNX Runtime on the CPU when installed, else PyTorch), torch or onnx
    # (docs/benchmarks.md has the measurements).
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    # DDColor's number format: faithful (float32, the authors' computation) or fast (bfloat16 on a CPU that has it
    # natively, float16 on CUDA, for the models measured to keep colours; else float32, and the events say why:
    # models/ddcolor/precision.py, docs/models.md "Precision").
    precision: Literal["faithful", "fast"] = "faithful"
    # Concurrent colorize jobs of one worker process sharing a forward pass: at most this many per pass (1: off,
    # measured slower on a 2-core CPU), gathered for up to batch_wait_ms (docs/benchmarks.md).
    batch_max: int = Field(1, ge=1, le=64)
    batch_wait_ms: float = Field(20.0, ge=0, le=10_000)
    # Colorize jobs keep a map of DDColor's colour queries beside their result (GET /api/jobs/{id}/attention; under
    # 10 % of the colorize time, docs/protocol.md "Colour queries"). Off: nothing of it is computed, kept or exported.
    attention: bool = True

    # The ComfyUI backend (docs/comfyui.md): one or several ComfyUI instances (comma-separated http:// URLs) that run
    # the admitted jobs instead of this machine's worker processes; each is handed at most `comfyui_slots` prompts at
    # once, so the fair queue here, not ComfyUI's first-in-first-out, decides who goes next.
    comfyui_url: str | None = None
    comfyui_slots: int = Field(2, ge=1, le=16)
    # An instance unreachable this long has lost its prompts: each of its jobs runs again once (on any instance), a
    # second loss fails it with `backend_unavailable`.
    comfyui_lost_s: float = Field(20.0, gt=0)

    workers: int = Field(1, ge=1)
    # A worker process that still holds more than this (resident, MB) after a job, once it has given back what it
    # can, is replaced by a fresh one between jobs (0: never). Measured after a job (docs/benchmarks.md, section
    # 10): 0.7 GB with an upscaler loaded, 1.6 GB with the tiny DDColor, 3.3 GB with the large one (a second large
    # one would add about 2.6 GB more, not measured): only a worker that keeps what it should not, or holds more
    # models than that, goes over.
    worker_max_rss_mb: int = Field(8192, ge=0)
    # `oldphoto worker` serves its own /metrics here (scale-out: the node that runs a job counts its stages, queue wait
    # and end); None: not served. Loopback unless the operator opens it (OLDPHOTO_WORKER_METRICS_HOST).
    worker_metrics_port: int | None = Field(None, ge=0, le=65535)
    # `oldphoto worker` on its first SIGTERM takes no new job and lets the running ones finish for up to this long,
    # then hands back what still runs (at once, not after its lease); a second SIGTERM stops at once.
    drain_grace_s: float = Field(30.0, ge=0.0)
    worker_metrics_host: str = "127.0.0.1"
    user_concurrency: int = Field(3, ge=1)
    # "address": the anonymous sessions of one client address take one user's turns and room (docs/jobs.md,
    # "Fairness"); "session": each anonymous session is a user of its own (many people behind one address).
    anonymous_share: Literal["address", "session"] = "address"
    queue_max: int = Field(1000, ge=1)
    job_timeout_s: float = Field(600.0, gt=0)
    retention_hours: float = Field(24.0, gt=0)

    max_upload_mb: float = Field(25.0, gt=0)
    max_pixels: int = Field(40_000_000, gt=0)
    # Per-job caps on what the workflow would cost (engine/cost.py), judged from the header before any decode: the
    # result's width x height, the worker's peak resident memory, and the seconds on a 2-core machine (keep it
    # below job_timeout_s). Over any of them: 422 over_budget with the numbers (docs/jobs.md, "What a job may cost").
    max_result_pixels: int = Field(64_000_000, gt=0)
    max_job_memory_mb: int = Field(6144, gt=0)
    max_job_seconds: float = Field(300.0, gt=0)
    # DDColor's exported ONNX graphs (one per weights and input size) under <models dir>/.oldphoto-runtime: the least
    # recently used are removed past this many MB.
    runtime_cache_mb: int = Field(4096, ge=0)
    # Uploads are decoded to judge them in this many checker processes (one user holds at most half of them),
    # each decode refused past check_timeout_s (real photos take well under a second).
    check_processes: int = Field(2, ge=1, le=32)
    check_timeout_s: float = Field(10.0, gt=0)

    auth: Literal["anonymous", "required"] = "anonymous"
    jwt_secret: str | None = None
    jwt_public_key_file: Path | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    allowed_origins: str = ""
    # Peers whose X-Forwarded-For / X-Forwarded-Proto are believed (comma list of addresses or networks, "*" for
    # any): the reverse proxy in front (docs/deploy.md). Empty: no proxy is trusted, so a client can never choose the
    # address the per-address limits count, nor turn its cookie Secure, by sending the headers itself.
    forwarded_allow_ips: str = ""

    broker_url: str | None = None
    database_url: str | None = None
    # Redis keys and channels start with it: several deployments (or test runs) can share one Redis.
    broker_prefix: str = Field("oldphoto", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # A worker node renews its running jobs' leases every lease_s / 6; a lease older than lease_s is taken back.
    lease_s: float = Field(30.0, ge=1, le=3600)

    # The web process's garbage collector (server/gcpolicy.py): what has lived this long is frozen out of its walks,
    # and everything is unfrozen and collected once every gc_sweep_every_s.
    # How long another thread of the web process may hold the GIL while the event loop waits for it (Python's
    # default is 5 ms; each wait is loop lag). docs/benchmarks.md, queue storm.
    gil_switch_ms: float = Field(1.0, gt=0, le=100)
    gc_freeze_every_s: float = Field(1.0, gt=0)
    gc_sweep_every_s: float = Field(120.0, gt=0)

    ws_ping_interval_s: float = Field(20.0, gt=0)
    ws_ping_timeout_s: float = Field(20.0, gt=0)
    ws_queue_size: int = Field(256, ge=8)
    sse_heartbeat_s: float = Field(15.0, gt=0)
    # Idle and slow clients (docs/security.md, "Slow clients"): a request's headers must be complete this long after
    # the connection opens or the request begins; an idle keep-alive connection is closed after keep_alive_s
    # (uvicorn's timeout_keep_alive); a WebSocket that follows no job must send its first message within
    # ws_first_message_s.
    header_timeout_s: float = Field(10.0, gt=0)
    keep_alive_s: int = Field(5, ge=1)
    ws_first_message_s: float = Field(10.0, gt=0)

    @property
    def origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def store_url(self) -> str:
        """The job store: OLDPHOTO_DATABASE_URL, or the SQLite file jobs.sqlite3 in the data dir."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'jobs.sqlite3'}"

    @property
    def scale_out(self) -> bool:
        return bool(self.broker_url and self.database_url)

    @property
    def comfyui_urls(self) -> list[str]:
        return [url.strip() for url in (self.comfyui_url or "").split(",") if url.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
