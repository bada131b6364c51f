"""The terminal front: `oldphoto serve | restore | models | token | worker | db` (SPEC "Commands").

Exit status: 0 success, 1 a job failed or the job store cannot be opened (message on stderr), 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from oldphoto import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oldphoto", description="Restore old photographs, with live progress.")
    parser.add_argument("--version", action="version", version=f"oldphoto {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="the web page, REST API and WebSocket progress")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", help="overrides OLDPHOTO_DATA_DIR")
    serve.add_argument("--model", help="overrides OLDPHOTO_MODEL")
    serve.add_argument("--device", help="overrides OLDPHOTO_DEVICE")
    serve.add_argument("--workers", type=int, help="overrides OLDPHOTO_WORKERS")
    serve.add_argument("--auth", choices=["anonymous", "required"], help="overrides OLDPHOTO_AUTH")
    serve.add_argument("--log-level", default="info")

    restore = commands.add_parser("restore", help="restore files or folders from the terminal")
    restore.add_argument("inputs", nargs="+", metavar="IN")
    restore.add_argument("-o", "--output", required=True, metavar="OUT", help="a file for one input, a folder for several")
    restore.add_argument("--steps", default=None, help="comma list of denoise,colorize,upscale,sharpen (default colorize)")
    restore.add_argument("--workflow", metavar="F.json", help="a workflow file (the seed's form or ComfyUI's API form)")
    restore.add_argument("--model", help="a known model name or a checkpoint file")
    restore.add_argument("--ab-upsample", choices=["nearest", "bilinear"], help="nearest reproduces the authors' pipeline exactly")
    restore.add_argument("--input-size", type=int, help="the model's input size (default 512)")
    restore.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    restore.add_argument(
        "--precision",
        choices=["faithful", "fast"],
        help="faithful (float32, default) or fast (bfloat16 on CPUs that have it, float16 on CUDA, where colours stay the same to the eye)",
    )
    restore.add_argument(
        "--attention",
        action="store_true",
        help="also write each colorized photo's colour-query maps beside it, as OUT.attention.zip (docs/protocol.md)",
    )
    restore.add_argument("--json", action="store_true", help="print the progress events as JSON lines instead of a bar")
    restore.add_argument("--lang", default="en", choices=["en", "zh-CN"], help="language of the stage sentences")

    models = commands.add_parser("models", help="known models: list, pull")
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    model_commands.add_parser("list", help="known models and where each is cached")
    pull = model_commands.add_parser("pull", help="download a model into the cache")
    pull.add_argument("name")

    token = commands.add_parser("token", help="print a signed access token for a user")
    token.add_argument("--user", required=True)
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")

    worker = commands.add_parser("worker", help="a scale-out worker process (needs OLDPHOTO_BROKER_URL and OLDPHOTO_DATABASE_URL)")
    worker.add_argument("--data-dir", help="overrides OLDPHOTO_DATA_DIR")
    worker.add_argument("--metrics-port", type=int, help="overrides OLDPHOTO_WORKER_METRICS_PORT (several nodes on one machine)")

    db = commands.add_parser("db", help="the job store's schema: upgrade, current")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="migrate the job store to the newest schema (serve and worker do it at start)")
    db_commands.add_parser("current", help="print the job store's schema revision")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from oldphoto.commands.serve import serve

        return serve(args)
    if args.command == "restore":
        from oldphoto.commands.restore import restore

        return restore(args)
    if args.command == "models":
        from oldphoto.commands.models import models

        return models(args)
    if args.command == "token":
        from oldphoto.commands.token import token

        return token(args)
    if args.command == "db":
        from oldphoto.commands.db import db

        return db(args)
    from oldphoto.commands.worker import worker

    return worker(args)


if __name__ == "__main__":
    sys.exit(main())
