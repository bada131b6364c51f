"""The two wirings of the one job service, assembled in one place from settings (used by `serve` and `worker`).

Embedded: the fair queue in memory with the SQLite (or any SQL) store, and this machine's worker processes.
Scale-out (database and broker URLs set): the shared fair queue in PostgreSQL, Redis for events, worker nodes.
"""

from __future__ import annotations

from oldphoto.engine.context import RunOptions
from oldphoto.engine.cost import Budget
from oldphoto.jobs.service import JobService, ServiceConfig
from oldphoto.jobs.store import JobStore
from oldphoto.settings import Settings


def run_options(settings: Settings) -> RunOptions:
    """What every job runs with. Worker processes read no settings: all they need travels in here.

    Except the CPU threads of a net (`threads`, left None): each worker process counts its share of its machine's cores
    (jobs/workers.py), because counting them as ncnn does means loading ncnn, and the web process must not.
    """
    return RunOptions(
        model=settings.model,
        models_dir=settings.models_dir,
        device=settings.device,
        input_size=settings.input_size,
        ab_upsample=settings.ab_upsample,
        runtime=settings.runtime,
        precision=settings.precision,
        batch_max=settings.batch_max,
        batch_wait_ms=settings.batch_wait_ms,
        runtime_cache_mb=settings.runtime_cache_mb,
        attention=settings.attention,
    )


def budget(settings: Settings) -> Budget:
    """The per-job caps every upload's workflow is costed against before its photo is decoded."""
    return Budget(settings.max_result_pixels, settings.max_job_memory_mb, settings.max_job_seconds)


def service_config(settings: Settings) -> ServiceConfig:
    return ServiceConfig(
        data_dir=settings.data_dir,
        run_options=run_options(settings),
        workers=settings.workers,
        user_concurrency=settings.user_concurrency,
        queue_max=settings.queue_max,
        job_timeout_s=settings.job_timeout_s,
        retention_s=settings.retention_hours * 3600,
        max_pixels=settings.max_pixels,
        jobs_per_worker=settings.batch_max,
        log_format=settings.log_format,
    )


def worker_max_rss_mb(settings: Settings) -> float | None:
    """The memory ceiling above which a worker process is replaced after a job (None: never)."""
    return settings.worker_max_rss_mb or None


def job_service(settings: Settings, store: JobStore) -> JobService:
    config = service_config(settings)
    if settings.comfyui_urls:
        if settings.scale_out:
            raise ValueError("OLDPHOTO_COMFYUI_URL runs with the embedded store only for now: unset OLDPHOTO_BROKER_URL (docs/comfyui.md)")
        return comfy_service(config, store, settings.comfyui_urls, settings.comfyui_slots, settings.comfyui_lost_s)
    if settings.scale_out:
        return scale_out_service(config, store, settings.broker_url or "", settings.broker_prefix, settings.lease_s)
    return embedded_service(config, store, worker_max_rss_mb(settings))


def embedded_service(config: ServiceConfig, store: JobStore, max_rss_mb: float | None = None) -> JobService:
    from oldphoto.jobs.bus import LocalBus
    from oldphoto.jobs.embedded import LocalQueue, LocalWorkers

    queue = LocalQueue(store)
    return JobService(config, store, LocalBus(), queue, LocalWorkers(config, queue, max_rss_mb=max_rss_mb))


def scale_out_service(config: ServiceConfig, store: JobStore, broker_url: str, prefix: str, lease_s: float = 30.0) -> JobService:
    from oldphoto.distributed.events import RedisBus
    from oldphoto.distributed.web import WorkerNodes
    from oldphoto.jobs.sharedqueue import SharedQueue

    bus = RedisBus(broker_url, prefix)
    return JobService(config, store, bus, SharedQueue(store), WorkerNodes(config, store, bus, lease_s))


def comfy_service(config: ServiceConfig, store: JobStore, urls: list[str], slots: int = 2, lost_after_s: float = 20.0) -> JobService:
    """The embedded queue and store, with ComfyUI instances running the jobs (docs/comfyui.md)."""
    from oldphoto.comfy.runner import ComfyInstances
    from oldphoto.jobs.bus import LocalBus
    from oldphoto.jobs.embedded import LocalQueue

    queue = LocalQueue(store)
    return JobService(config, store, LocalBus(), queue, ComfyInstances(config, queue, urls, slots, lost_after_s))
