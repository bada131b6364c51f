"""`oldphoto restore`: files or folders through the engine, with a live bar or JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from oldphoto.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from oldphoto.engine import CancelToken, Reporter, RunOptions, Workflow, parse_workflow, run_workflow, warm_up, workflow_from_steps
from oldphoto.errors import BadInput, Cancelled, InvalidImage, OldphotoError, TooManyPixels, UnsupportedFormat
from oldphoto.models.realesrgan import default_threads
from oldphoto.protocol import JobEvent, Note, PrecisionUsed, translate
from oldphoto.settings import Settings

if TYPE_CHECKING:
    from oldphoto.imaging.querymaps import QueryMaps

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
INPUT_ERRORS = (BadInput, InvalidImage, UnsupportedFormat, TooManyPixels)


def restore(args: argparse.Namespace) -> int:
    try:
        settings = Settings()
        options = RunOptions(
            model=args.model or settings.model,
            models_dir=settings.models_dir,
            device=args.device or settings.device,
            input_size=args.input_size or settings.input_size,
            ab_upsample=args.ab_upsample or settings.ab_upsample,
            runtime=settings.runtime,
            precision=args.precision or settings.precision,
            threads=default_threads(1),  # one photo at a time, in this process
            attention=bool(args.attention),  # the terminal makes maps only when asked: nobody would see them
        )
        workflow = _workflow(args, options)
        jobs = _plan(args.inputs, Path(args.output))
    except (OldphotoError, OSError) as exc:
        print(f"oldphoto: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return EXIT_USAGE
    # The model's sessions start building while the first photo is read and decoded (only where that is cheap). Not
    # a daemon: ONNX Runtime aborts a process whose interpreter goes away under it.
    node_types = {spec.type for spec in workflow.nodes.values()}
    threading.Thread(target=warm_up, args=(options, node_types), name="warm-up").start()
    display = JsonLines(args.lang) if args.json else ProgressBar(args.lang)
    status = EXIT_OK
    with display:
        for source, target in jobs:
            status = max(status, _restore_one(source, target, workflow, options, settings.max_pixels, display))
            if status == 130:
                break
    return status


def _restore_one(source: Path, target: Path, workflow: Workflow, options: RunOptions, max_pixels: int, display: Display) -> int:
    from oldphoto.imaging import decode_file, save_png
    from oldphoto.jobs import querymaps

    maps: list[QueryMaps] = []
    events = display.start(source)
    reporter = Reporter(sink=events, cancel=CancelToken(), span=(1, 99))
    events(Note(stage="upload", message_key="upload", progress=0))
    try:
        image = decode_file(source, max_pixels=max_pixels)
        sink = maps.append if options.attention else None
        restored = run_workflow(workflow, image.rgb, options=options, reporter=reporter, query_maps=sink)
        target.parent.mkdir(parents=True, exist_ok=True)
        save_png(target, restored, image.alpha)
        if maps:
            querymaps.save(querymaps.path_for(target), maps[-1])
    except KeyboardInterrupt:
        reporter.cancel.cancel()
        display.finish(source, f"cancelled: {source}")
        return 130
    except Cancelled:
        return 130
    except INPUT_ERRORS as exc:
        events(Note(type="error", stage="preprocess", message_key="error", message_params={"error": exc.message}, progress=0))
        display.finish(source, None)
        print(f"oldphoto: {source}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except OldphotoError as exc:
        events(Note(type="error", stage="preprocess", message_key="error", message_params={"error": exc.message}, progress=0))
        display.finish(source, None)
        print(f"oldphoto: {source}: {exc.message} ({exc.code})", file=sys.stderr)
        return EXIT_FAILED
    events(Note(type="complete", stage="complete", message_key="complete", progress=100))
    display.finish(source, str(target))
    return EXIT_OK


def _workflow(args: argparse.Namespace, options: RunOptions) -> Workflow:
    if args.workflow and args.steps:
        raise BadInput("give either --steps or --workflow, not both")
    if args.workflow:
        return parse_workflow(Path(args.workflow).read_text(encoding="utf-8"), options)
    return workflow_from_steps(args.steps or "colorize", options)


def _plan(inputs: list[str], output: Path) -> list[tuple[Path, Path]]:
    """(source, target) pairs: with one input file OUT is a file, otherwise a folder."""
    sources = list(_expand(inputs))
    if not sources:
        raise BadInput("no images found in the inputs")
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    if single_file and not output.is_dir():
        return [(sources[0], output if output.suffix else output.with_suffix(".png"))]
    return [(source, output / f"{source.stem}.png") for source in sources]


def _expand(inputs: list[str]) -> Iterator[Path]:
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            yield path
        else:
            raise BadInput(f"{name}: no such file or folder")


def precision_sentence(used: PrecisionUsed, lang: str) -> str:
    return translate(f"precision.{used.reason}", lang, dtype=used.dtype)


class Display:
    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def start(self, source: Path) -> Callable[[Note], None]:
        raise NotImplementedError

    def finish(self, source: Path, saved: str | None) -> None:
        pass


class JsonLines(Display):
    """The protocol's events, one JSON object a line on stdout; `job_id` is the input's path."""

    def __init__(self, lang: str) -> None:
        self.lang = lang

    def start(self, source: Path) -> Callable[[Note], None]:
        seq = 0

        def emit(note: Note) -> None:
            nonlocal seq
            seq += 1
            event = JobEvent(**note.model_dump(), job_id=str(source), seq=seq)
            print(json.dumps(event.to_wire(self.lang), ensure_ascii=False), flush=True)

        return emit


class ProgressBar(Display):
    """A rich bar per photo: the stage sentence and the whole-job percent."""

    def __init__(self, lang: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.lang = lang
        self.progress = Progress(
            TextColumn("[bold]{task.fields[name]}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=Console(stderr=True),
        )
        self.precision_said = False

    def __enter__(self) -> ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, source: Path) -> Callable[[Note], None]:
        task = self.progress.add_task("", total=100, name=source.name)

        def show(note: Note) -> None:
            event = JobEvent(**note.model_dump(), job_id=str(source), seq=1)
            self.progress.update(task, completed=note.progress, description=event.message(self.lang))
            self._say_precision(note)

        return show

    def _say_precision(self, note: Note) -> None:
        """Once per run, when fast was asked for: the format DDColor runs in, and why when it is not the fast one."""
        used = note.precision
        if used is None or used.requested != "fast" or self.precision_said:
            return
        self.precision_said = True
        self.progress.console.print(precision_sentence(used, self.lang))

    def finish(self, source: Path, saved: str | None) -> None:
        if saved:
            self.progress.console.print(f"{source} → {saved}")
