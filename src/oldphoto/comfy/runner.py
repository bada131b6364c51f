"""ComfyUI instances as the job service's runner (docs/comfyui.md).

The service's fair queue decides what runs next; each instance is handed at most `slots` prompts at once, so
ComfyUI's own first-in-first-out queue never decides between users. A job's prompt carries the job's id as its
`prompt_id`, so it can be found on the instance again (`/history`, `/queue`) after a dropped connection or a
restart of this service. What an instance says about a prompt reaches the same `Recorder` as the engine's workers'
messages (Noted, Previewed, Done, Failed, Cancelled), on the service's writer thread.

Threads: `queue_changed` and `cancel_running` run on the writer thread and only hand work to the loop; everything
that talks to ComfyUI runs on the loop (asynchronous I/O); files and pictures are read and written in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from oldphoto.comfy.client import ComfyClient, ComfyRefused, output_images
from oldphoto.comfy.events import (
    ComfyEvent,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    Other,
    Preview,
    Progress,
    ProgressState,
    Status,
)
from oldphoto.comfy.prompt import Prompt, check, for_job, from_workflow, is_comfy_prompt
from oldphoto.comfy.relay import Paces, PromptRelay, source_of
from oldphoto.engine.context import RunOptions
from oldphoto.engine.graph import Workflow, parse_workflow
from oldphoto.errors import InvalidWorkflow, OldphotoError
from oldphoto.imaging import write_atomic
from oldphoto.jobs import querymaps
from oldphoto.jobs.durations import Durations
from oldphoto.jobs.embedded import LocalQueue
from oldphoto.jobs.lifecycle import JobStatus
from oldphoto.jobs.messages import Cancelled, Done, Failed, JobMessage, Noted, Previewed, TimedOut
from oldphoto.jobs.recorder import Recorder
from oldphoto.jobs.store import Job
from oldphoto.protocol import Note, PreviewImage

if TYPE_CHECKING:
    from oldphoto.jobs.service import Capacity, JobService, ServiceConfig

log = logging.getLogger(__name__)
TICK_S = 0.5  # how often a silent node's estimate moves
PREVIEW_EVERY_S = 0.5  # previews are kept at most this often per job (ComfyUI may send one per sampler step)
RECONNECT_MAX_S = 10.0
UNAVAILABLE = "backend_unavailable"
CANCEL_WAIT_S = 10.0  # how long a running prompt may take to say it was interrupted before the job is cancelled anyway
PACES_FILE = "comfyui-paces.json"
REFRESH_S = 60.0  # how often each instance's /object_info is read again
LOST_AFTER_S = 20.0  # an instance unreachable this long has lost its prompts (killed, or its machine gone)


@dataclass
class Instance:
    url: str
    slots: int
    client: ComfyClient
    connected: bool = False
    down_since: float | None = None  # loop: when the connection was lost (None: connected, or never was)
    object_info: dict[str, Any] = field(default_factory=dict)
    jobs: set[str] = field(default_factory=set)  # writer thread: the prompts handed to it and not ended
    executing: str | None = None  # loop: the prompt it runs now, for previews that name none

    @property
    def free(self) -> int:
        return self.slots - len(self.jobs) if self.connected and self.object_info else 0

    def state(self) -> dict[str, Any]:
        return {"url": self.url, "connected": self.connected, "prompts": len(self.jobs), "slots": self.slots}


@dataclass
class Tracked:
    """A prompt this service follows on an instance (loop only)."""

    job_id: str
    instance: Instance
    relay: PromptRelay
    images: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0
    last_preview: float = 0.0
    cancelled: bool = False
    ended: bool = False
    since: float = field(default_factory=time.monotonic)


class ComfyInstances:
    def __init__(
        self, config: ServiceConfig, queue: LocalQueue, urls: list[str], slots: int = 2, lost_after_s: float = LOST_AFTER_S
    ) -> None:
        self.lost_after_s = lost_after_s
        self.config = config
        self.queue = queue
        self.store = queue.store
        self.instances = [Instance(url.rstrip("/"), slots, ComfyClient(url)) for url in urls]
        self.client_id = ""  # start(): kept in the data dir, so a restarted service hears its prompts again
        self.paces = Paces()
        self.durations = Durations(self.store, config.run_options)
        self.service: JobService | None = None
        self.recorder: Recorder | None = None
        self.placed: dict[str, Instance] = {}  # writer thread: job -> the instance it was handed to
        self.tracked: dict[str, Tracked] = {}  # loop: job -> what is followed of it
        self.tasks: set[asyncio.Task[Any]] = set()
        self._draining = False

    # -- lifetime ----------------------------------------------------------------------------------------------

    async def start(self, service: JobService) -> None:
        self.service = service
        self.client_id = await asyncio.to_thread(_client_id, self.config.data_dir)
        kept = await asyncio.to_thread(_read_text, self.config.data_dir / PACES_FILE)
        if kept is not None:
            self.paces.loads(kept)
        self.recorder = Recorder(
            self.store, service.publish, self.config.results_dir, self.config.job_timeout_s, self.durations, service.telemetry
        )
        await service.offload.write(self._recover)
        for instance in self.instances:
            self._spawn(self._follow(instance))
            self._spawn(self._refresh(instance))
        self._spawn(self._tick())

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for instance in self.instances:
            await instance.client.close()
        # Nothing is handed back: prompts run on their instances and outlive this process; the next start finds
        # them again (`_recover`).

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the Runner interface (writer thread unless said) --------------------------------------------------------

    def take_input(self, job_id: str, upload: Path) -> tuple[str, bytes | None]:
        stored = self.config.inputs_dir / job_id
        upload.replace(stored)
        return str(stored), None

    def queue_changed(self, at: float) -> None:
        """Hand the next jobs in fair order to instances with a free slot."""
        assert self.service is not None
        recorder = self._recorder
        while not self._draining:
            instance = max(self.instances, key=lambda i: i.free)
            if instance.free <= 0:
                return
            job = self.queue.start_next()
            if job is None:
                return
            recorder.started(job.id, job.progress, job.created_at.timestamp())
            instance.jobs.add(job.id)
            self.placed[job.id] = instance
            self.service.call_on_loop(self._spawn, self._launch(instance, job))

    def cancel_running(self, job_id: str) -> None:
        instance = self.placed.get(job_id)
        if instance is not None and self.service is not None:
            self.service.call_on_loop(self._spawn, self._cancel(instance, job_id))

    def result_path(self, job: Job) -> Path | None:
        path = Path(job.result_path) if job.result_path else None
        return path if path is not None and path.is_file() else None

    def query_maps_path(self, job: Job) -> Path | None:
        return None  # ComfyUI's DDColor node exposes no colour queries

    def capacity(self, queued: int) -> Capacity:
        from oldphoto.jobs.service import Capacity

        slots = sum(i.slots for i in self.instances if i.connected)
        return Capacity(workers=slots, workers_ready=slots, queued=queued, running=len(self._recorder.running))

    def backends(self) -> list[dict[str, Any]]:
        """Each instance's state, for /healthz."""
        return [instance.state() for instance in self.instances]

    def local_files(self, job: Job) -> list[Path]:
        files = [Path(path) for path in (job.input_path, job.result_path) if path]
        return [*files, querymaps.path_for(Path(job.result_path))] if job.result_path else files

    def drain(self) -> None:
        self._draining = True

    def running_here(self) -> int:
        return 0  # prompts run on the instances and outlive this process: nothing to wait for

    def admits(self, text: str, options: RunOptions) -> Workflow | None:
        """Judged against the node types of the instances (as last fetched; no I/O). Before any instance has answered,
        this service's own workflows are judged by the engine alone and ComfyUI prompts wait to be judged when sent."""
        info = self._object_info()
        try:
            workflow = parse_workflow(text, options)
        except InvalidWorkflow:
            data = json.loads(text)  # valid JSON: parse_workflow said so first otherwise
            if not is_comfy_prompt(data):
                raise
            if info is not None:
                check(data, info)
            return None
        if info is not None:
            from_workflow(workflow, options, info)
        return workflow

    def prompt_for(self, text: str, model: str | None, object_info: Mapping[str, Any]) -> Prompt:
        """The job's prompt for an instance: this service's workflow mapped, or ComfyUI's own prompt as it is."""
        try:
            workflow = parse_workflow(text, self.config.run_options)
        except InvalidWorkflow:
            data = json.loads(text)
            if not is_comfy_prompt(data):
                raise
            check(data, object_info)
            return {str(k): dict(v) for k, v in data.items()}
        return from_workflow(workflow, self.config.run_options, object_info, model)

    @property
    def _recorder(self) -> Recorder:
        assert self.recorder is not None, "start() makes it"
        return self.recorder

    def _object_info(self) -> dict[str, Any] | None:
        return next((i.object_info for i in self.instances if i.object_info), None)

    # -- the writer's side ---------------------------------------------------------------------------------------

    def _on_message(self, message: JobMessage) -> None:
        assert self.service is not None
        if self._recorder.on_message(message):
            instance = self.placed.pop(message.job_id, None)
            if instance is not None:
                instance.jobs.discard(message.job_id)
            self.service.call_on_loop(self.tracked.pop, message.job_id, None)
            self.service.queue_changed()

    def _recover(self) -> None:
        """At start: prompts sent before a restart are looked for on the instances (`_reattach`); waiting jobs queue."""
        assert self.service is not None
        for job in self.store.with_status(JobStatus.RUNNING):
            self._recorder.started(job.id, job.progress)
            self.service.call_on_loop(self._spawn, self._reattach(job))
        for job in self.store.with_status(JobStatus.QUEUED):
            self._recorder.floors.setdefault(job.id, job.progress)
            told = self.queue.put_back(job)
            if told is not None:
                self.service.publish(told)

    def _say(self, message: JobMessage) -> None:
        if self.service is not None:
            self.service.offload.write_later(self._on_message, message)

    # -- the loop's side -----------------------------------------------------------------------------------------

    async def _launch(self, instance: Instance, job: Job) -> None:
        try:
            prompt = self.prompt_for(job.workflow, job.model, instance.object_info)
            data = await asyncio.to_thread(Path(job.input_path).read_bytes)
            image = await instance.client.upload(f"oldphoto-{job.id}", data)
            prompt = for_job(prompt, image, job.id)
            tracked = Tracked(job.id, instance, PromptRelay(prompt, self.paces))
            self.tracked[job.id] = tracked
            await instance.client.submit(job.id, prompt, self.client_id)
            if tracked.cancelled:
                await instance.client.cancel(job.id)
        except OldphotoError as refused:
            self._say(Failed(job.id, refused.code, str(refused)))
        except ComfyRefused as refused:
            where = f"node {refused.node!r}: " if refused.node else ""
            self._say(Failed(job.id, "invalid_workflow", f"ComfyUI refused the workflow: {where}{refused}"))
        except (httpx.HTTPError, OSError) as lost:
            self._say(Failed(job.id, UNAVAILABLE, f"The ComfyUI instance could not be reached ({type(lost).__name__})."))

    async def _cancel(self, instance: Instance, job_id: str) -> None:
        tracked = self.tracked.get(job_id)
        if tracked is not None:
            tracked.cancelled = True
        try:
            await instance.client.cancel(job_id)
            running = (await instance.client.queued())[0]
        except (httpx.HTTPError, OSError):
            running = set()
        if job_id not in running:  # taken out of its queue (or never got there): no interruption will be said
            if tracked is not None:
                self._end(tracked, Cancelled(job_id))
            else:
                self._say(Cancelled(job_id))
        elif tracked is not None:
            # A node that never checks ComfyUI's interrupt flag runs on; the user's cancel is not left hanging on it.
            await asyncio.sleep(CANCEL_WAIT_S)
            self._end(tracked, Cancelled(job_id))

    async def _follow(self, instance: Instance) -> None:
        """The instance's messages, for as long as this service runs: reconnects, then reconciles what it missed."""
        delay = 0.5
        while True:
            try:
                instance.object_info = await instance.client.object_info()
                async with instance.client.listen(self.client_id) as events:
                    # Listening first, then reconciling: a prompt that ends between the two is still heard.
                    instance.connected, instance.down_since = True, None
                    delay = 0.5
                    await self._reconcile(instance)
                    if self.service is not None:
                        await self.service.offload.write(self.service.queue_changed)
                    async for event in events:
                        await self._dispatch(instance, event)
            except asyncio.CancelledError:
                raise
            except Exception as lost:  # refused, reset, closed: the same answer, try again
                if instance.connected:
                    log.warning("ComfyUI at %s: connection lost (%s); reconnecting", instance.url, type(lost).__name__)
            if instance.connected or instance.down_since is None:
                instance.down_since = time.monotonic()
            instance.connected = False
            if time.monotonic() - instance.down_since > self.lost_after_s:
                self._lose_all(instance)
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def _dispatch(self, instance: Instance, event: ComfyEvent) -> None:
        match event:
            case Status() | Other():
                return
            case Preview():
                await self._preview(instance, event)
                return
            case Executing(prompt_id, node):
                instance.executing = prompt_id if node is not None else None
            case _:
                pass
        tracked = self.tracked.get(getattr(event, "prompt_id", ""))
        if tracked is None:
            return
        match event:
            case ExecutionStart() | ExecutionCached() | Executing() | Progress() | ProgressState():
                note = tracked.relay.on_event(event)
                if note is not None:
                    self._say(Noted(tracked.job_id, note))
            case Executed(_, _, output):
                tracked.images.extend(output_images({"node": output}))
            case ExecutionSuccess():
                tracked.relay.finish()
                await self._finish(tracked)
            case ExecutionError(_, node, node_type, message):
                said = f"ComfyUI's {node_type or 'node'} (node {node}) failed: {message}"
                self._end(tracked, Failed(tracked.job_id, "comfyui_error", said))
            case ExecutionInterrupted():
                self._end(tracked, Cancelled(tracked.job_id))

    def _end(self, tracked: Tracked, outcome: JobMessage) -> None:
        if not tracked.ended:
            tracked.ended = True
            self._say(outcome)

    async def _finish(self, tracked: Tracked, images: list[dict[str, Any]] | None = None) -> None:
        images = images if images is not None else tracked.images
        if tracked.ended:
            return
        if not images:
            self._end(tracked, Failed(tracked.job_id, "comfyui_error", "The ComfyUI workflow saved no image."))
            return
        try:
            data = await tracked.instance.client.view(images[-1])
        except (httpx.HTTPError, OSError):
            self._end(tracked, Failed(tracked.job_id, UNAVAILABLE, "The result could not be fetched from the ComfyUI instance."))
            return
        await asyncio.to_thread(_save_png, self.config.results_dir / f"{tracked.job_id}.png", data)
        self._end(tracked, Done(tracked.job_id))

    async def _preview(self, instance: Instance, event: Preview) -> None:
        tracked = self.tracked.get(event.prompt_id or instance.executing or "")
        now = time.monotonic()
        if tracked is None or now - tracked.last_preview < PREVIEW_EVERY_S:
            return
        tracked.last_preview = now
        shrunk = await asyncio.to_thread(_small_jpeg, event.image)
        if shrunk is None:
            return
        jpeg, width, height = shrunk
        tracked.frames += 1
        running = tracked.relay.running
        note = Note(
            type="preview",
            stage="inference",
            source=source_of(running.class_type) if running else "comfyui",
            node=running.node if running else None,
            message_key="comfy.node" if running else "comfy.start",
            message_params={"class_type": running.class_type, "node": running.node} if running else {},
            progress=tracked.relay.floor,
            preview=PreviewImage(width=width, height=height, frame=tracked.frames),
        )
        self._say(Previewed(tracked.job_id, note, jpeg))

    async def _tick(self) -> None:
        """Silent nodes' estimates, the job time limit (OLDPHOTO_JOB_TIMEOUT_S) of prompts that run too long, and the
        node durations learned, kept in the data dir (a restarted service estimates from them at once)."""
        while True:
            await asyncio.sleep(TICK_S)
            if self.paces.changed:
                await asyncio.to_thread(write_atomic, self.config.data_dir / PACES_FILE, self.paces.dumps().encode())
            now = time.monotonic()
            for tracked in list(self.tracked.values()):
                if tracked.ended or not tracked.instance.connected:  # no guessing about a prompt out of reach
                    continue
                if now - tracked.since > self.config.job_timeout_s:
                    self._end(tracked, TimedOut(tracked.job_id))
                    self._spawn(self._interrupt(tracked))
                    continue
                note = tracked.relay.tick()
                if note is not None:
                    self._say(Noted(tracked.job_id, note))

    async def _interrupt(self, tracked: Tracked) -> None:
        with contextlib.suppress(httpx.HTTPError, OSError):
            await tracked.instance.client.cancel(tracked.job_id)

    async def _refresh(self, instance: Instance) -> None:
        """The instance's node types and model files again now and then: a model file added there becomes usable."""
        while True:
            await asyncio.sleep(REFRESH_S)
            if instance.connected:
                with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
                    instance.object_info = await instance.client.object_info()

    async def _reconcile(self, instance: Instance) -> None:
        """After a (re)connection: a followed prompt that ended meanwhile is finished from the instance's history; one
        the instance no longer knows (it was restarted) is lost (`_lose`)."""
        followed = [t for t in self.tracked.values() if t.instance is instance and not t.ended]
        if not followed:
            return
        with contextlib.suppress(httpx.HTTPError, OSError):
            running, pending = await instance.client.queued()
            for tracked in followed:
                if not await self._settle_from_history(tracked) and tracked.job_id not in running | pending:
                    self._lose(tracked)

    def _lose_all(self, instance: Instance) -> None:
        for tracked in [t for t in self.tracked.values() if t.instance is instance and not t.ended]:
            self._lose(tracked)

    def _lose(self, tracked: Tracked) -> None:
        """A prompt its instance lost: the job runs again from the start, once (here or on another instance), else fails."""
        tracked.ended = True
        if self.service is not None:
            self.service.offload.write_later(self._run_again_or_fail, tracked.job_id)

    def _run_again_or_fail(self, job_id: str) -> None:
        """Writer thread: the same rule as a restart of the embedded server (jobs/embedded.py `_recover`)."""
        assert self.service is not None
        job = self.store.get(job_id)
        if job is None or job.status != JobStatus.RUNNING:
            return
        if job.attempts >= 1:
            self._on_message(Failed(job_id, UNAVAILABLE, "The ComfyUI instance running this job stopped, twice; please try again."))
            return
        recorder = self._recorder
        recorder.running.discard(job_id)
        recorder.floors[job_id] = max(recorder.floors.get(job_id, 0), job.progress)  # the run again never shows less
        instance = self.placed.pop(job_id, None)
        if instance is not None:
            instance.jobs.discard(job_id)
        self.service.call_on_loop(self.tracked.pop, job_id, None)
        self.store.set_status(job_id, JobStatus.QUEUED, attempts=job.attempts + 1)
        requeued = self.store.get(job_id)
        told = self.queue.put_back(requeued) if requeued is not None else None
        if told is not None:
            self.service.publish(told)
        self.service.queue_changed()

    async def _settle_from_history(self, tracked: Tracked) -> bool:
        entry = await tracked.instance.client.history(tracked.job_id)
        if entry is None:
            return False
        status = entry.get("status") or {}
        if status.get("completed"):
            await self._finish(tracked, output_images(entry.get("outputs") or {}))
        elif status.get("status_str") == "error":
            messages = [m for m in status.get("messages", []) if m and m[0] == "execution_error"]
            said = messages[-1][1] if messages else {}
            text = f"ComfyUI's {said.get('node_type', 'node')} (node {said.get('node_id')}) failed: {said.get('exception_message', '')}"
            self._end(tracked, Failed(tracked.job_id, "comfyui_error", text.strip()))
        else:
            self._end(tracked, Cancelled(tracked.job_id))
        return True

    async def _reattach(self, job: Job) -> None:
        """A job this service sent before it stopped: found again on an instance (ended, running or waiting) and
        followed; one that no instance knows runs again (`_run_again_or_fail`). Instances not reachable yet are
        waited for, up to `lost_after_s`."""
        deadline = time.monotonic() + self.lost_after_s
        while True:
            asked = 0
            for instance in self.instances:
                try:
                    prompt = self.prompt_for(job.workflow, job.model, instance.object_info or await instance.client.object_info())
                    tracked = Tracked(job.id, instance, PromptRelay(prompt, self.paces))
                    if await self._settle_from_history(tracked):
                        return
                    running, pending = await instance.client.queued()
                    asked += 1
                except (httpx.HTTPError, OSError, OldphotoError):
                    continue
                if job.id in running | pending:
                    self.tracked[job.id] = tracked
                    self._adopt(tracked)
                    return
            if asked == len(self.instances) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        if self.service is not None:
            self.service.offload.write_later(self._run_again_or_fail, job.id)

    def _adopt(self, tracked: Tracked) -> None:
        def place() -> None:
            tracked.instance.jobs.add(tracked.job_id)
            self.placed[tracked.job_id] = tracked.instance

        if self.service is not None:
            self.service.offload.write_later(place)


def _save_png(path: Path, data: bytes) -> None:
    """SaveImage writes PNG already; anything else is converted, so the result is always a PNG."""
    if not data.startswith(b"\x89PNG"):
        from PIL import Image

        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").save(buffer, "PNG")
        data = buffer.getvalue()
    write_atomic(path, data)


def _small_jpeg(data: bytes) -> tuple[bytes, int, int] | None:
    from PIL import Image

    try:
        picture = Image.open(io.BytesIO(data)).convert("RGB")
    except (OSError, ValueError):
        return None
    picture.thumbnail((256, 256))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=80)
    return buffer.getvalue(), picture.width, picture.height


def _client_id(data_dir: Path) -> str:
    """This service's name to ComfyUI, kept across restarts: ComfyUI sends a prompt's events to the client that sent it."""
    path = data_dir / "comfyui-client-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        name = f"oldphoto-{uuid.uuid4().hex}"
        write_atomic(path, name.encode())
        return name


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
